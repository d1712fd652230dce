//! The `trainer cutout` command: read tiles and a catalogue, cut out every cluster,
//! write the dataset (NPZ, atomically) and the list of skipped clusters.

use super::catalog::{Catalog, Columns, write_skipped};
use super::cutout::{Grid, Tile, cutout};
use crate::data::{NpzOut, SkyColumns};
use crate::sim::NPIX;
use crate::sim::SimConfig;
use anyhow::{Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything `trainer cutout` needs.
#[derive(Debug, Clone)]
pub struct CutoutOptions {
    /// Event lists, one per tile.
    pub events: Vec<PathBuf>,
    /// Exposure maps, one per tile, in the same order.
    pub expmaps: Vec<PathBuf>,
    /// The cluster catalogue.
    pub catalog: PathBuf,
    /// Its columns.
    pub columns: Columns,
    /// Output dataset (.npz).
    pub out: PathBuf,
    /// Skipped-clusters file (CSV).
    pub skipped: PathBuf,
    /// The simulator configuration whose grid (pixel size, bands) and cosmology the cubes
    /// follow: the one the model was trained on.
    pub config: SimConfig,
}

/// What a cutout run did.
#[derive(Debug, Clone, Serialize)]
pub struct CutoutSummary {
    /// Clusters in the catalogue.
    pub catalog_rows: usize,
    /// Clusters written.
    pub written: usize,
    /// Clusters skipped.
    pub skipped: usize,
    /// Events kept / read over all tiles.
    pub events_kept: usize,
    /// Events read.
    pub events_read: usize,
    /// Seconds reading the tiles.
    pub read_s: f64,
    /// Seconds cutting out.
    pub cutout_s: f64,
}

/// The default skipped-clusters file of an output `data.npz`: `data.skipped.csv`.
pub fn default_skipped(out: &Path) -> PathBuf {
    PathBuf::from(format!("{}.skipped.csv", out.with_extension("").display()))
}

/// Run `trainer cutout`.
pub fn run(o: &CutoutOptions, progress: bool) -> Result<CutoutSummary> {
    if o.events.is_empty() {
        bail!("--events: give at least one event list");
    }
    if o.events.len() != o.expmaps.len() {
        bail!(
            "{} event lists but {} exposure maps: give one exposure map per event list, in the same order",
            o.events.len(),
            o.expmaps.len()
        );
    }
    if o.out.extension().is_none_or(|e| e != "npz") {
        bail!(
            "--out {}: the dataset is written as NPZ; use a .npz file name",
            o.out.display()
        );
    }
    let edges = o.config.spectral.band_edges_kev.to_vec();
    let grid = Grid {
        pixel_arcsec: o.config.instrument.pixel_arcsec,
        edges_kev: edges.clone(),
    };
    let catalog = Catalog::read(&o.catalog, &o.columns)?;
    let t0 = Instant::now();
    let pb = crate::progress::bar(o.events.len(), progress, "reading tiles", "tiles");
    let mut tiles = Vec::new();
    for (e, m) in o.events.iter().zip(&o.expmaps) {
        tiles.push(Tile::read(e, m, &edges)?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let read_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let pb = crate::progress::bar(catalog.entries.len(), progress, "cutting out", "clusters");
    let (done, skipped) = cutout(&tiles, &catalog, &grid, &pb)?;
    pb.finish_and_clear();
    let cutout_s = t1.elapsed().as_secs_f64();
    write_skipped(&o.skipped, &skipped)?;
    if done.is_empty() {
        bail!(
            "no cluster of {} could be cut out ({} skipped, listed in {}); nothing written to {}",
            o.catalog.display(),
            skipped.len(),
            o.skipped.display(),
            o.out.display()
        );
    }
    let n = done.len();
    let mut npz = NpzOut::create(&o.out)?;
    {
        let mut images = npz.images(n)?;
        for c in &done {
            images.write(&c.counts)?;
        }
        images.finish()?;
    }
    npz.f32(
        "redshift",
        &done.iter().map(|c| c.entry.z as f32).collect::<Vec<_>>(),
    )?;
    npz.f32(
        "exposure_s",
        &done.iter().map(|c| c.exposure_s).collect::<Vec<_>>(),
    )?;
    npz.sky(&SkyColumns {
        id: done.iter().map(|c| c.entry.id.clone()).collect(),
        ra: done.iter().map(|c| c.entry.ra).collect(),
        dec: done.iter().map(|c| c.entry.dec).collect(),
        edge_margin_arcsec: done.iter().map(|c| c.edge_margin_arcsec).collect(),
    })?;
    let files: Vec<serde_json::Value> = tiles
        .iter()
        .map(|t| {
            serde_json::json!({
                "events": t.events.path,
                "expmap": t.expmap_path,
                "selection": t.events.counts,
            })
        })
        .collect();
    let meta = serde_json::json!({
        "generator": concat!("trainer ", env!("CARGO_PKG_VERSION"), " cutout"),
        "n": n,
        "config": {
            "instrument": { "pixel_arcsec": grid.pixel_arcsec, "npix": NPIX },
            "spectral": { "band_edges_kev": edges },
            "cosmology": o.config.cosmology,
        },
        "cutout": {
            "projection": "gnomonic (TAN) centred on the catalogue position; +x west (CDELT1 < 0), +y north; the position at continuous pixel (25, 25), the corner of pixels 24 and 25",
            "selection": "PI > 0, energy within the band edges, PAT_TYP 1-4 and (FLAG & 0xE000F000) == 0 where those columns exist",
            "tiles": files,
            "catalog": o.catalog,
            "catalog_location": catalog.location,
            "columns": o.columns,
            "skipped": skipped.len(),
            "skipped_file": o.skipped,
            "tile_of_cluster": done.iter().map(|c| c.tile).collect::<Vec<_>>(),
            "saturated_pixels": done.iter().map(|c| c.saturated).collect::<Vec<_>>(),
        },
    });
    npz.meta(&meta)?;
    npz.commit()?;
    Ok(CutoutSummary {
        catalog_rows: catalog.entries.len() + catalog.skipped.len(),
        written: n,
        skipped: skipped.len(),
        events_kept: tiles.iter().map(|t| t.events.counts.kept).sum(),
        events_read: tiles.iter().map(|t| t.events.counts.rows).sum(),
        read_s,
        cutout_s,
    })
}
