//! `trainer cutout`: from sky tiles of events and exposure maps to the model's count
//! cubes, one per catalogue cluster, on the simulator's grid.
//!
//! For each cluster the cube is the 10-band x 50 x 50 count image of the selected events
//! ([`super::events`]) in the cluster's cutout projection ([`Projection::cutout`]: a
//! gnomonic projection centred on the catalogue position, the simulator's pixel size,
//! west along +x, north along +y), each event counted in pixel `(floor x, floor y)` and
//! in the band holding its energy, at most 65535 per pixel as in the mocks.
//!
//! Tiles: a cluster is taken from a tile only if the tile's exposure map covers the
//! whole stamp (every one of its 2,500 pixel centres lies on the map with exposure > 0).
//! Among such tiles the one where the cluster lies furthest from the map's edge wins.
//! A cluster no tile covers fully is skipped with the reason, never zero-filled. Its
//! exposure is the map's value at the cluster's position.

use super::catalog::{Catalog, Entry, Skipped};
use super::events::EventList;
use super::fits::{FitsIn, Image};
use super::sky::Projection;
use crate::sim::NPIX;
use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// One sky tile: its events and its exposure map.
pub struct Tile {
    /// Events.
    pub events: EventList,
    /// Exposure map (seconds).
    pub expmap: Image,
    /// The exposure map's file.
    pub expmap_path: PathBuf,
}

impl Tile {
    /// Read a tile; the exposure map must overlap the events.
    pub fn read(events: &Path, expmap: &Path, edges_kev: &[f64]) -> Result<Self> {
        let ev = EventList::read(events, edges_kev)?;
        let map = FitsIn::open(expmap)?.image()?;
        if let Some(u) = &map.unit
            && !(u.is_empty() || u.eq_ignore_ascii_case("s") || u.eq_ignore_ascii_case("sec"))
        {
            bail!(
                "{} HDU {}: BUNIT {u:?}; an exposure map in seconds was expected",
                expmap.display(),
                map.hdu_name
            );
        }
        if let Some(k) = map.data.iter().position(|v| !v.is_finite() || *v < 0.0) {
            let nx = map.projection.size.0;
            bail!(
                "{} HDU {}: exposure {} at pixel ({}, {}) (1-based) is negative or not a number",
                expmap.display(),
                map.hdu_name,
                map.data[k],
                k % nx + 1,
                k / nx + 1
            );
        }
        if !ev.ra.is_empty() {
            let on = (0..ev.ra.len())
                .step_by((ev.ra.len() / 1000).max(1))
                .filter(|&i| map.at(ev.ra[i], ev.dec[i]).is_some())
                .count();
            if on == 0 {
                bail!(
                    "exposure map {} does not overlap the events of {} (pass the maps in the order of the event files)",
                    expmap.display(),
                    events.display()
                );
            }
        }
        Ok(Self {
            events: ev,
            expmap: map,
            expmap_path: expmap.to_path_buf(),
        })
    }

    /// Distance in arcsec from (`ra`, `dec`) to the nearest edge of the exposure map, if
    /// the position lies on it.
    pub fn edge_margin_arcsec(&self, ra: f64, dec: f64) -> Option<f64> {
        let p = &self.expmap.projection;
        let (x, y) = p.to_pixel(ra, dec)?;
        let (nx, ny) = (p.size.0 as f64, p.size.1 as f64);
        if !(x >= 0.0 && y >= 0.0 && x < nx && y < ny) {
            return None;
        }
        Some((x.min(nx - x) * p.pixel_arcsec.0).min(y.min(ny - y) * p.pixel_arcsec.1))
    }

    /// Does the exposure map cover the whole stamp with exposure > 0?
    fn covers(&self, stamp: &Projection) -> bool {
        (0..NPIX * NPIX).all(|p| {
            let (i, j) = (p % NPIX, p / NPIX);
            stamp
                .to_sky(i as f64 + 0.5, j as f64 + 0.5)
                .and_then(|(r, d)| self.expmap.at(r, d))
                .is_some_and(|e| e > 0.0)
        })
    }
}

/// Grid of the cubes.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    /// Pixel size, arcsec.
    pub pixel_arcsec: f64,
    /// Band edges, keV.
    pub edges_kev: Vec<f64>,
}

/// One cluster's cutout.
#[derive(Debug, Clone)]
pub struct Cutout {
    /// Its catalogue entry.
    pub entry: Entry,
    /// Counts `[band][y][x]`.
    pub counts: Vec<u16>,
    /// Exposure at the cluster, s.
    pub exposure_s: f32,
    /// Distance to the edge of its tile's exposure map, arcsec.
    pub edge_margin_arcsec: f32,
    /// Index of the tile it came from.
    pub tile: usize,
    /// Pixels that hit 65535.
    pub saturated: u32,
}

/// Every cluster of `catalog` cut out of `tiles`, in catalogue order, and those skipped.
pub fn cutout(
    tiles: &[Tile],
    catalog: &Catalog,
    grid: &Grid,
    progress: &indicatif::ProgressBar,
) -> Result<(Vec<Cutout>, Vec<Skipped>)> {
    let nb = grid.edges_kev.len() - 1;
    let half_diag_deg = NPIX as f64 / 2.0 * grid.pixel_arcsec * 2f64.sqrt() / 3600.0 * 1.01;
    let results: Vec<Result<std::result::Result<Cutout, Skipped>>> = catalog
        .entries
        .par_iter()
        .map(|e| {
            let r = one(tiles, e, grid, nb, half_diag_deg);
            progress.inc(1);
            r
        })
        .collect();
    let mut done = Vec::new();
    let mut skipped = catalog.skipped.clone();
    for r in results {
        match r? {
            Ok(c) => done.push(c),
            Err(s) => skipped.push(s),
        }
    }
    skipped.sort_by_key(|s| s.row);
    Ok((done, skipped))
}

fn one(
    tiles: &[Tile],
    e: &Entry,
    grid: &Grid,
    nb: usize,
    radius_deg: f64,
) -> Result<std::result::Result<Cutout, Skipped>> {
    let stamp = Projection::cutout(e.ra, e.dec, grid.pixel_arcsec, NPIX)
        .with_context(|| format!("cluster {} (catalogue row {})", e.id, e.row))?;
    let skip = |reason: String| Skipped {
        id: e.id.clone(),
        row: e.row,
        ra: e.ra,
        dec: e.dec,
        reason,
    };
    let mut best: Option<(usize, f64)> = None;
    let mut on_tiles = Vec::new();
    for (k, t) in tiles.iter().enumerate() {
        let Some(m) = t.edge_margin_arcsec(e.ra, e.dec) else {
            continue;
        };
        on_tiles.push((k, m));
        if best.is_none_or(|(_, bm)| m > bm) && t.covers(&stamp) {
            best = Some((k, m));
        }
    }
    let Some((k, margin)) = best else {
        if on_tiles.is_empty() {
            return Ok(Err(skip("outside every tile's exposure map".into())));
        }
        let list: Vec<String> = on_tiles
            .iter()
            .map(|(k, m)| {
                format!(
                    "{} ({m:.0} arcsec from its edge)",
                    tiles[*k].expmap_path.display()
                )
            })
            .collect();
        return Ok(Err(skip(format!(
            "too close to the edge of (or to zero exposure in) every tile that holds it: {}; a full cutout needs the whole {:.0} x {:.0} arcsec stamp exposed",
            list.join(", "),
            NPIX as f64 * grid.pixel_arcsec,
            NPIX as f64 * grid.pixel_arcsec
        ))));
    };
    let t = &tiles[k];
    let mut counts = vec![0u16; nb * NPIX * NPIX];
    let mut saturated = 0u32;
    for i in t.events.near(e.ra, e.dec, radius_deg) {
        let Some(pix) = stamp.pixel_index(t.events.ra[i], t.events.dec[i]) else {
            continue;
        };
        let slot = &mut counts[usize::from(t.events.band[i]) * NPIX * NPIX + pix.1 * NPIX + pix.0];
        if *slot == u16::MAX {
            saturated += 1;
        } else {
            *slot += 1;
        }
    }
    let exposure = t.expmap.at(e.ra, e.dec).expect("the stamp is covered");
    Ok(Ok(Cutout {
        entry: e.clone(),
        counts,
        exposure_s: exposure,
        edge_margin_arcsec: margin as f32,
        tile: k,
        saturated,
    }))
}
