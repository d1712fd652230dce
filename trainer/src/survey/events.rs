//! Calibrated event lists (eROSITA DR1 layout: an `EVENTS` binary table with `RA`,
//! `DEC` in J2000 degrees and `PI` in eV, plus optional `FLAG` and `PAT_TYP`) and the
//! event selection applied before binning.
//!
//! Selection (every rule is applied only when its column is present):
//! - `PI > 0`: eSASS stores the pattern's total energy as a positive `PI` on the main
//!   pixel and negative values on the other pixels of a split pattern;
//! - the energy inside the model's bands, `[edge_0, edge_10)` (0.2-10 keV by default);
//! - `PAT_TYP` between 1 and 4 (valid single, double, triple and quadruple patterns);
//! - `(FLAG & 0xE000F000) == 0`, the DR1 release's own good-event filter (nominal field
//!   of view, no bad pixels; DR1 lists are already filtered with it).
//!
//! `PI` must be in eV: a `TUNIT` of keV, or a median energy below 20 (an eV list has
//! its median near 1000), is refused instead of silently binning everything into the
//! lowest band.

use super::fits::FitsIn;
use super::sky::check_sky;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The DR1 good-event mask: events with any of these `FLAG` bits set are dropped.
pub const FLAG_MASK: u32 = 0xE000_F000;

/// Energy band edges in eV from keV, rounded to 1 meV so `0.3 keV` is exactly `300 eV`.
pub fn edges_ev(edges_kev: &[f64]) -> Vec<f64> {
    edges_kev.iter().map(|k| (k * 1e6).round() / 1e3).collect()
}

/// The band of energy `pi` (eV): `b` with `edges[b] <= pi < edges[b + 1]`.
pub fn band_of(edges: &[f64], pi: f64) -> Option<usize> {
    if !(pi >= edges[0] && pi < edges[edges.len() - 1]) {
        return None;
    }
    Some(edges.partition_point(|&e| e <= pi) - 1)
}

/// What the selection kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SelectionCounts {
    /// Rows in the table.
    pub rows: usize,
    /// Dropped: `PI <= 0` (secondary pattern pixels).
    pub secondary: usize,
    /// Dropped: energy outside the bands.
    pub energy: usize,
    /// Dropped: invalid pattern (`PAT_TYP` outside 1-4).
    pub pattern: usize,
    /// Dropped: flagged (`FLAG & 0xE000F000`).
    pub flagged: usize,
    /// Kept.
    pub kept: usize,
}

/// The selected events of one file.
#[derive(Debug, Clone)]
pub struct EventList {
    /// The file.
    pub path: PathBuf,
    /// RA, deg.
    pub ra: Vec<f64>,
    /// Dec, deg.
    pub dec: Vec<f64>,
    /// Band index of each event.
    pub band: Vec<u8>,
    /// Selection summary.
    pub counts: SelectionCounts,
    /// Event indices sorted by Dec (for position look-ups).
    by_dec: Vec<u32>,
}

impl EventList {
    /// Read the `EVENTS` table of `path` and select events into the bands `edges_kev`.
    pub fn read(path: &Path, edges_kev: &[f64]) -> Result<Self> {
        let edges = edges_ev(edges_kev);
        let mut f = FitsIn::open(path)?;
        let t = f.table(Some("EVENTS"))?;
        let at = |col: &str, row: usize| {
            format!("{} HDU {} column {col} row {row}", path.display(), t.name)
        };
        let ra = f.col_f64(&t, "RA")?;
        let dec = f.col_f64(&t, "DEC")?;
        let pi = f.col_f64(&t, "PI")?;
        let pat = match FitsIn::find_column(&t, "PAT_TYP") {
            Some(_) => Some(f.col_i64(&t, "PAT_TYP")?),
            None => None,
        };
        let flag = match FitsIn::find_column(&t, "FLAG") {
            Some(_) => Some(f.col_i64(&t, "FLAG")?),
            None => None,
        };
        if let Some(unit) = f.col_unit(&t, "PI")
            && unit.eq_ignore_ascii_case("kev")
        {
            bail!(
                "{} HDU {} column PI: TUNIT is keV; eROSITA PI is in eV (multiply by 1000)",
                path.display(),
                t.name
            );
        }
        let mut positive: Vec<f64> = pi.iter().copied().filter(|&p| p > 0.0).collect();
        if !positive.is_empty() {
            let mid = positive.len() / 2;
            let median = *positive
                .select_nth_unstable_by(mid, |a, b| a.total_cmp(b))
                .1;
            if median < 20.0 {
                bail!(
                    "{} HDU {} column PI: median energy {median:.3} looks like keV; eROSITA PI is in eV (multiply by 1000)",
                    path.display(),
                    t.name
                );
            }
        }
        let mut counts = SelectionCounts {
            rows: t.rows,
            ..Default::default()
        };
        let (mut ra_k, mut dec_k, mut band_k) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..t.rows {
            let row = k + 1;
            if !pi[k].is_finite() {
                bail!("{}: PI {} is not a number", at("PI", row), pi[k]);
            }
            check_sky(ra[k], dec[k]).with_context(|| at("RA/DEC", row))?;
            if pi[k] <= 0.0 {
                counts.secondary += 1;
                continue;
            }
            if let Some(p) = &pat
                && !(1..=4).contains(&p[k])
            {
                counts.pattern += 1;
                continue;
            }
            if let Some(fl) = &flag
                && (fl[k] as u32) & FLAG_MASK != 0
            {
                counts.flagged += 1;
                continue;
            }
            let Some(b) = band_of(&edges, pi[k]) else {
                counts.energy += 1;
                continue;
            };
            ra_k.push(ra[k]);
            dec_k.push(dec[k]);
            band_k.push(b as u8);
        }
        counts.kept = ra_k.len();
        if counts.kept > u32::MAX as usize {
            bail!("{}: more than 2^32 events", path.display());
        }
        let mut by_dec: Vec<u32> = (0..counts.kept as u32).collect();
        by_dec.sort_by(|&a, &b| dec_k[a as usize].total_cmp(&dec_k[b as usize]));
        Ok(Self {
            path: path.to_path_buf(),
            ra: ra_k,
            dec: dec_k,
            band: band_k,
            counts,
            by_dec,
        })
    }

    /// Indices of the events within `radius_deg` of Dec `dec` and, away from the poles,
    /// within the matching RA window around `ra` (a superset of the cap of that radius).
    pub fn near(&self, ra: f64, dec: f64, radius_deg: f64) -> impl Iterator<Item = usize> + '_ {
        let lo = self
            .by_dec
            .partition_point(|&i| self.dec[i as usize] < dec - radius_deg);
        let hi = self
            .by_dec
            .partition_point(|&i| self.dec[i as usize] <= dec + radius_deg);
        let max_abs_dec = dec.abs() + radius_deg;
        let ra_window = if max_abs_dec < 89.0 {
            Some(radius_deg / max_abs_dec.to_radians().cos())
        } else {
            None
        };
        self.by_dec[lo..hi]
            .iter()
            .map(|&i| i as usize)
            .filter(move |&i| match ra_window {
                Some(w) => {
                    let d = (self.ra[i] - ra).rem_euclid(360.0);
                    d.min(360.0 - d) <= w
                }
                None => true,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_by_edges() {
        let e = edges_ev(&[0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 5.0, 7.0, 10.0]);
        assert_eq!(e[1], 300.0);
        assert_eq!(e[3], 700.0);
        assert_eq!(band_of(&e, 199.999), None);
        assert_eq!(band_of(&e, 200.0), Some(0));
        assert_eq!(band_of(&e, 299.9999), Some(0));
        assert_eq!(band_of(&e, 300.0), Some(1));
        assert_eq!(band_of(&e, 9999.0), Some(9));
        assert_eq!(band_of(&e, 10000.0), None);
        assert_eq!(band_of(&e, f64::NAN), None);
    }
}
