//! Writing a [`Catalogue`]: CSV with `#` header lines, or a FITS binary table (extension
//! `CATALOG`) whose header carries the same items as keywords. Both are written whole or
//! not at all (temporary file, sync, rename).
//!
//! CSV numbers have the fewest digits that read back exactly in the precision they were
//! computed in: f32 for every blob output, burn's `log_mass`, `z` and `exposure_s`; f64
//! otherwise. Unknown values (no `ra`, `dec` or exposure) are empty fields. FITS columns are
//! f64 (`D`; NaN for unknown), `flags` i32 (`J`), strings `A`.

use super::{Catalogue, flags};
use crate::fits_table::{Column, KeyValue, Table};
use anyhow::Result;
use std::path::Path;

/// Column names, units (FITS strings) and meanings, in file order.
pub const COLUMNS: [(&str, &str, &str); 9] = [
    ("id", "", "identifier (row index when the dataset has none)"),
    ("ra", "deg", "right ascension"),
    ("dec", "deg", "declination"),
    ("z", "", "redshift"),
    ("exposure_s", "s", "exposure"),
    ("log_mass", "log(solMass)", "log10 M500c / Msun"),
    ("sigma", "dex", "1-sigma uncertainty of log_mass"),
    ("flags", "", "quality flags (bit field)"),
    ("flag_names", "", "names of the flags set, |-separated"),
];

/// The shortest text that reads back as `v` in its own precision (empty for NaN).
pub fn number(v: f64) -> String {
    if v.is_nan() {
        String::new()
    } else if f64::from(v as f32) == v {
        format!("{}", v as f32)
    } else {
        format!("{v}")
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Write `cat` as CSV to `path`.
pub fn write_csv(cat: &Catalogue, path: &Path) -> Result<()> {
    let mut text =
        String::from("# cluster-mass catalogue: log10 M500c / Msun and sigma per cluster\n");
    for h in &cat.header {
        text.push_str(&format!("# {}: {}\n", h.label, one_line(&h.value)));
    }
    for (bit, name, meaning) in flags::FLAGS {
        text.push_str(&format!("# flag {bit}: {name}: {meaning}\n"));
    }
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|(n, u, _)| {
            if u.is_empty() {
                n.to_string()
            } else {
                format!("{n} [{u}]")
            }
        })
        .collect();
    text.push_str(&format!("# columns: {}\n", cols.join(", ")));
    let mut w = csv::Writer::from_writer(text.into_bytes());
    w.write_record(COLUMNS.iter().map(|c| c.0))?;
    for i in 0..cat.id.len() {
        w.write_record([
            cat.id[i].clone(),
            number(cat.ra[i]),
            number(cat.dec[i]),
            number(cat.z[i]),
            number(cat.exposure_s[i]),
            number(cat.log_mass[i]),
            number(cat.sigma[i]),
            cat.flags[i].to_string(),
            flags::names(cat.flags[i]),
        ])?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// Write `cat` as a FITS binary table to `path`.
pub fn write_fits(cat: &Catalogue, path: &Path) -> Result<()> {
    let mut t = Table::new("CATALOG");
    let f64s = [
        &cat.ra,
        &cat.dec,
        &cat.z,
        &cat.exposure_s,
        &cat.log_mass,
        &cat.sigma,
    ];
    t.push(Column::string(COLUMNS[0].0, cat.id.clone()).describe(COLUMNS[0].2));
    for (k, v) in f64s.into_iter().enumerate() {
        let (name, unit, what) = COLUMNS[k + 1];
        let mut c = Column::f64(name, v.clone()).describe(what);
        if !unit.is_empty() {
            c = c.unit(unit);
        }
        t.push(c);
    }
    t.push(Column::i32(COLUMNS[7].0, cat.flags.clone()).describe(COLUMNS[7].2));
    t.push(
        Column::string(
            COLUMNS[8].0,
            cat.flags.iter().map(|f| flags::names(*f)).collect(),
        )
        .describe(COLUMNS[8].2),
    );
    for h in &cat.header {
        if h.key == "NCLUST" {
            t.key(h.key, KeyValue::I64(cat.id.len() as i64), h.comment);
        } else {
            t.key_str(h.key, &one_line(&h.value), h.comment);
        }
    }
    for (k, (bit, name, meaning)) in flags::FLAGS.iter().enumerate() {
        t.key(
            &format!("FLAGBIT{k}"),
            KeyValue::Str(name.to_string()),
            &format!("{bit}: {meaning}"),
        );
    }
    t.history.push(format!(
        "written by: {}",
        one_line(
            &cat.header
                .iter()
                .find(|h| h.key == "COMMAND")
                .map_or(String::new(), |h| h.value.clone()),
        )
    ));
    t.write(path)
}
