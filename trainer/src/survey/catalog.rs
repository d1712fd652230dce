//! Cluster catalogues: a FITS binary table or a CSV file with an id, RA, Dec and
//! redshift per cluster. Column names differ between catalogues and are configurable;
//! the defaults are the eRASS1 cluster catalogue's (Bulbul et al. 2024): `NAME`, `RA`,
//! `DEC`, `BEST_Z`. Names match case-insensitively.
//!
//! A catalogue whose positions are unusable (RA/Dec missing, non-finite or out of
//! range) or whose ids repeat is refused with the file, column and row named. A row
//! whose redshift is missing, non-finite, negative or above 20 is not an error: that
//! cluster is listed as skipped with the reason (catalogues often lack redshifts).

use super::fits::FitsIn;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which catalogue columns hold what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Columns {
    /// Cluster id (any text or integer).
    pub id: String,
    /// Right ascension, J2000 degrees.
    pub ra: String,
    /// Declination, J2000 degrees.
    pub dec: String,
    /// Redshift.
    pub z: String,
    /// FITS: the table's EXTNAME (default: the first table HDU).
    pub hdu: Option<String>,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            id: "NAME".into(),
            ra: "RA".into(),
            dec: "DEC".into(),
            z: "BEST_Z".into(),
            hdu: None,
        }
    }
}

/// One usable catalogue row.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Row number, 1-based (FITS rows; CSV data lines after the header).
    pub row: usize,
    /// Id.
    pub id: String,
    /// RA, deg.
    pub ra: f64,
    /// Dec, deg.
    pub dec: f64,
    /// Redshift.
    pub z: f64,
}

/// A cluster left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    /// Id.
    pub id: String,
    /// Catalogue row, 1-based.
    pub row: usize,
    /// RA, deg (NaN if unknown).
    pub ra: f64,
    /// Dec, deg (NaN if unknown).
    pub dec: f64,
    /// Why.
    pub reason: String,
}

/// A catalogue read and checked.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The file.
    pub path: PathBuf,
    /// Where in the file (`HDU name` or `CSV`).
    pub location: String,
    /// Usable rows, in file order.
    pub entries: Vec<Entry>,
    /// Rows left out (bad redshift).
    pub skipped: Vec<Skipped>,
}

fn is_fits(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    [".fits", ".fit", ".fts", ".fits.gz"]
        .iter()
        .any(|e| name.ends_with(e))
}

impl Catalog {
    /// Read a FITS table (`.fits`, `.fit`, `.fts`, `.fits.gz`) or a CSV file.
    pub fn read(path: &Path, cols: &Columns) -> Result<Self> {
        let (location, ids, ra, dec, z) = if is_fits(path) {
            let mut f = FitsIn::open(path)?;
            let t = f.table(cols.hdu.as_deref())?;
            let ids = f.col_string(&t, &cols.id)?;
            let ra = f.col_f64(&t, &cols.ra)?;
            let dec = f.col_f64(&t, &cols.dec)?;
            // Redshift read as text so an empty or NaN cell is a skipped row, not an error.
            let z = f
                .col_string(&t, &cols.z)?
                .into_iter()
                .map(|s| s.parse::<f64>().unwrap_or(f64::NAN))
                .collect();
            (format!("HDU {}", t.name), ids, ra, dec, z)
        } else {
            read_csv(path, cols)?
        };
        let mut entries = Vec::with_capacity(ids.len());
        let mut skipped = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let at = |col: &str, row: usize| {
            format!(
                "catalogue {} {location} column {col} row {row}",
                path.display()
            )
        };
        for (k, id) in ids.into_iter().enumerate() {
            let row = k + 1;
            if id.is_empty() {
                bail!("{}: empty id", at(&cols.id, row));
            }
            if let Some(first) = seen.insert(id.clone(), row) {
                bail!(
                    "{}: id {id:?} repeats the id of row {first}; ids must be unique",
                    at(&cols.id, row)
                );
            }
            let (r, d) = (ra[k], dec[k]);
            if !(r.is_finite() && (0.0..360.0).contains(&r)) {
                bail!(
                    "{}: RA {r} is not in [0, 360) degrees (is the column in degrees?)",
                    at(&cols.ra, row)
                );
            }
            if !(d.is_finite() && (-90.0..=90.0).contains(&d)) {
                bail!(
                    "{}: Dec {d} is not in [-90, 90] degrees",
                    at(&cols.dec, row)
                );
            }
            let zv = z[k];
            let z_max = f64::from(runtime::model::MAX_REDSHIFT);
            if !(zv.is_finite() && (0.0..=z_max).contains(&zv)) {
                skipped.push(Skipped {
                    id,
                    row,
                    ra: r,
                    dec: d,
                    reason: format!(
                        "redshift {zv} in column {} (row {row}) is missing or outside 0-{z_max}",
                        cols.z
                    ),
                });
                continue;
            }
            entries.push(Entry {
                row,
                id,
                ra: r,
                dec: d,
                z: zv,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            location,
            entries,
            skipped,
        })
    }
}

type Parsed = (String, Vec<String>, Vec<f64>, Vec<f64>, Vec<f64>);

fn read_csv(path: &Path, cols: &Columns) -> Result<Parsed> {
    let mut r = csv::ReaderBuilder::new()
        .comment(Some(b'#'))
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("catalogue {}: cannot read", path.display()))?;
    let header: Vec<String> = r
        .headers()
        .with_context(|| format!("catalogue {}: no CSV header line", path.display()))?
        .iter()
        .map(String::from)
        .collect();
    let find = |want: &str| {
        header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(want))
            .with_context(|| {
                format!(
                    "catalogue {}: no column {want} (columns: {})",
                    path.display(),
                    header.join(", ")
                )
            })
    };
    let (ci, cr, cd, cz) = (
        find(&cols.id)?,
        find(&cols.ra)?,
        find(&cols.dec)?,
        find(&cols.z)?,
    );
    let (mut ids, mut ra, mut dec, mut z) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (k, rec) in r.records().enumerate() {
        let row = k + 1;
        let rec = rec.with_context(|| format!("catalogue {} row {row}", path.display()))?;
        let cell = |c: usize| rec.get(c).unwrap_or("");
        let num = |c: usize, name: &str| -> Result<f64> {
            cell(c).parse::<f64>().with_context(|| {
                format!(
                    "catalogue {} column {name} row {row}: {:?} is not a number",
                    path.display(),
                    cell(c)
                )
            })
        };
        ids.push(cell(ci).to_string());
        ra.push(num(cr, &cols.ra)?);
        dec.push(num(cd, &cols.dec)?);
        z.push(cell(cz).parse::<f64>().unwrap_or(f64::NAN));
    }
    Ok(("CSV".into(), ids, ra, dec, z))
}

/// Write the skipped clusters as CSV (id, row, ra, dec, reason), atomically.
pub fn write_skipped(path: &Path, skipped: &[Skipped]) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["id", "row", "ra", "dec", "reason"])?;
    for s in skipped {
        w.write_record([
            s.id.clone(),
            s.row.to_string(),
            format!("{:.6}", s.ra),
            format!("{:.6}", s.dec),
            s.reason.clone(),
        ])?;
    }
    let bytes = w.into_inner().context("CSV buffer")?;
    crate::fsutil::write_atomic(path, &bytes)
}
