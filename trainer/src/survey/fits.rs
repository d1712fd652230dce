//! Reading FITS files through `fitsio` (the reference cfitsio, built from source):
//! binary-table columns by name (case-insensitive, as FITS column names are), header
//! keywords, and 2-D images with their celestial WCS. Every error names the file, the
//! HDU and, where it applies, the column and the (1-based, as FITS counts) row.
//!
//! fitsio panics on a few states it does not expect; each call into it is wrapped so a
//! malformed file is an error, never a crash.

use super::sky::{Keywords, Projection};
use anyhow::{Context, Result, anyhow, bail};
use fitsio::FitsFile;
use fitsio::hdu::{FitsHdu, HduInfo};
use std::path::{Path, PathBuf};

/// An open FITS file.
pub struct FitsIn {
    /// Its path.
    pub path: PathBuf,
    file: FitsFile,
}

/// A binary table HDU of an open file.
#[derive(Debug)]
pub struct Table {
    hdu: FitsHdu,
    /// `EXTNAME` (or `HDU n`).
    pub name: String,
    /// Column names as stored.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: usize,
}

/// A 2-D image HDU with its projection.
#[derive(Debug)]
pub struct Image {
    /// Values, row-major: `data[j * nx + i]` is pixel `(i, j)` (FITS order).
    pub data: Vec<f32>,
    /// Its celestial WCS.
    pub projection: Projection,
    /// `BUNIT`, if present.
    pub unit: Option<String>,
    /// HDU name.
    pub hdu_name: String,
}

/// Run a fitsio call, turning a panic inside it into an error.
fn guarded<T>(what: impl FnOnce() -> String, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(anyhow!("{}: the FITS library failed on this file", what())),
    }
}

/// The WCS keywords read from an image header.
const WCS_KEYS: [&str; 24] = [
    "NAXIS1", "NAXIS2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2", "CDELT1", "CDELT2", "CD1_1",
    "CD1_2", "CD2_1", "CD2_2", "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CROTA2", "LONPOLE", "LATPOLE",
    "EQUINOX", "PV2_1", "PV2_2", "PV1_1", "PV1_2",
];

impl FitsIn {
    /// Open for reading.
    pub fn open(path: &Path) -> Result<Self> {
        if !path.exists() {
            bail!("{}: no such file", path.display());
        }
        let file = guarded(
            || path.display().to_string(),
            || {
                FitsFile::open(path).map_err(|e| {
                    anyhow!(
                        "{}: not a readable FITS file (truncated or corrupted?): {e}",
                        path.display()
                    )
                })
            },
        )?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    fn hdu_names(&mut self) -> Vec<String> {
        let n = self.file.num_hdus().unwrap_or(0);
        (0..n)
            .map(|i| {
                self.file
                    .hdu(i)
                    .ok()
                    .and_then(|h| h.read_key::<String>(&mut self.file, "EXTNAME").ok())
                    .unwrap_or_else(|| {
                        if i == 0 {
                            "PRIMARY".into()
                        } else {
                            format!("HDU {i}")
                        }
                    })
            })
            .collect()
    }

    /// The binary table `extname`, or the first table HDU when `None`.
    pub fn table(&mut self, extname: Option<&str>) -> Result<Table> {
        let path = self.path.clone();
        let names = self.hdu_names();
        let index = match extname {
            Some(want) => names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(want))
                .with_context(|| {
                    format!(
                        "{}: no HDU named {want} (HDUs: {})",
                        path.display(),
                        names.join(", ")
                    )
                })?,
            None => (1..names.len())
                .find(|&i| {
                    self.file
                        .hdu(i)
                        .is_ok_and(|h| matches!(h.info, HduInfo::TableInfo { .. }))
                })
                .with_context(|| {
                    format!(
                        "{}: no binary table HDU (HDUs: {})",
                        path.display(),
                        names.join(", ")
                    )
                })?,
        };
        let name = names[index].clone();
        let hdu = guarded(
            || format!("{} HDU {name}", path.display()),
            || {
                self.file
                    .hdu(index)
                    .map_err(|e| anyhow!("{} HDU {name}: {e}", path.display()))
            },
        )?;
        let HduInfo::TableInfo {
            column_descriptions,
            num_rows,
        } = &hdu.info
        else {
            bail!("{} HDU {name}: not a table", path.display());
        };
        Ok(Table {
            columns: column_descriptions.iter().map(|c| c.name.clone()).collect(),
            rows: *num_rows,
            name,
            hdu,
        })
    }

    /// The stored name of column `want` (case-insensitive), if the table has it.
    pub fn find_column<'t>(table: &'t Table, want: &str) -> Option<&'t str> {
        table
            .columns
            .iter()
            .find(|c| c.eq_ignore_ascii_case(want))
            .map(String::as_str)
    }

    fn column_name(&self, table: &Table, col: &str) -> Result<String> {
        Self::find_column(table, col)
            .map(String::from)
            .with_context(|| {
                format!(
                    "{} HDU {}: no column {col} (columns: {})",
                    self.path.display(),
                    table.name,
                    table.columns.join(", ")
                )
            })
    }

    fn col<T: fitsio::tables::ReadsCol>(&mut self, table: &Table, col: &str) -> Result<Vec<T>> {
        let name = self.column_name(table, col)?;
        let what = || format!("{} HDU {} column {name}", self.path.display(), table.name);
        let what_s = what();
        let v: Vec<T> = guarded(what, || {
            table
                .hdu
                .read_col(&mut self.file, &name)
                .map_err(|e| anyhow!("{what_s}: {e}"))
        })?;
        if v.len() != table.rows {
            bail!("{what_s}: {} values for {} rows", v.len(), table.rows);
        }
        Ok(v)
    }

    /// A numeric column as f64 (cfitsio applies `TSCALn`/`TZEROn`).
    pub fn col_f64(&mut self, table: &Table, col: &str) -> Result<Vec<f64>> {
        self.col(table, col)
    }

    /// An integer column as i64.
    pub fn col_i64(&mut self, table: &Table, col: &str) -> Result<Vec<i64>> {
        self.col(table, col)
    }

    /// A column as text (numbers are formatted by cfitsio).
    pub fn col_string(&mut self, table: &Table, col: &str) -> Result<Vec<String>> {
        let v: Vec<String> = self.col(table, col)?;
        Ok(v.into_iter().map(|s| s.trim().to_string()).collect())
    }

    /// The `TUNITn` of a column, if set.
    pub fn col_unit(&mut self, table: &Table, col: &str) -> Option<String> {
        let k = table
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(col))?;
        table
            .hdu
            .read_key::<String>(&mut self.file, &format!("TUNIT{}", k + 1))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// A header keyword of the table's HDU.
    pub fn key_f64(&mut self, table: &Table, key: &str) -> Option<f64> {
        table.hdu.read_key::<f64>(&mut self.file, key).ok()
    }

    /// The first 2-D image: the primary HDU if it has data, else the first image extension.
    pub fn image(&mut self) -> Result<Image> {
        let path = self.path.clone();
        let names = self.hdu_names();
        let found = (0..names.len()).find_map(|i| {
            let h = self.file.hdu(i).ok()?;
            match &h.info {
                HduInfo::ImageInfo { shape, .. } if shape.len() == 2 && shape[0] * shape[1] > 0 => {
                    Some((i, h))
                }
                _ => None,
            }
        });
        let Some((index, hdu)) = found else {
            bail!(
                "{}: no 2-D image HDU (HDUs: {})",
                path.display(),
                names.join(", ")
            );
        };
        let name = names[index].clone();
        let what = format!("{} HDU {name}", path.display());
        let HduInfo::ImageInfo { shape, .. } = &hdu.info else {
            unreachable!("matched above")
        };
        let (ny, nx) = (shape[0], shape[1]);
        let mut k = Keywords::new();
        for key in ["CTYPE1", "CTYPE2", "RADESYS"] {
            if let Ok(v) = hdu.read_key::<String>(&mut self.file, key) {
                k.insert(key.into(), v.trim().into());
            }
        }
        for key in WCS_KEYS {
            if let Ok(v) = hdu.read_key::<f64>(&mut self.file, key) {
                k.insert(key.into(), v.into());
            }
        }
        k.insert("NAXIS1".into(), nx.into());
        k.insert("NAXIS2".into(), ny.into());
        let projection = Projection::from_keywords(&k).with_context(|| what.clone())?;
        let unit = hdu
            .read_key::<String>(&mut self.file, "BUNIT")
            .ok()
            .map(|s| s.trim().to_string());
        let data: Vec<f32> = guarded(
            || what.clone(),
            || {
                hdu.read_image(&mut self.file)
                    .map_err(|e| anyhow!("{what}: reading the image: {e}"))
            },
        )?;
        if data.len() != nx * ny {
            bail!("{what}: {} values for a {nx} x {ny} image", data.len());
        }
        Ok(Image {
            data,
            projection,
            unit,
            hdu_name: name,
        })
    }
}

impl Image {
    /// The value of the pixel holding (`ra`, `dec`), if it lies on the image.
    pub fn at(&self, ra: f64, dec: f64) -> Option<f32> {
        let (i, j) = self.projection.pixel_index(ra, dec)?;
        Some(self.data[j * self.projection.size.0 + i])
    }
}
