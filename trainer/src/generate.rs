//! Parallel, deterministic dataset generation: clusters are simulated in chunks
//! on the rayon pool and streamed into the NPZ by a writer thread, so memory
//! stays bounded and the bytes do not depend on the number of threads.

use crate::data::{Dataset, NpzOut, SkyColumns, TruthColumns};
use crate::sim::{IMAGE_LEN, Simulator, Truth};
use anyhow::{Context, Result};
use rayon::prelude::*;
use std::path::Path;
use std::sync::mpsc;

/// Clusters simulated per parallel chunk.
const CHUNK: usize = 512;

/// Simulate clusters `start..start+count` into one buffer, in index order.
pub fn simulate_chunk(sim: &Simulator, start: usize, count: usize) -> (Vec<u16>, Vec<Truth>) {
    let mut images = vec![0u16; count * IMAGE_LEN];
    let truths = images
        .par_chunks_mut(IMAGE_LEN)
        .enumerate()
        .map(|(k, img)| sim.observe((start + k) as u64, img))
        .collect();
    (images, truths)
}

/// The metadata stored with a dataset: the whole configuration and derived levels.
/// Deterministic (no time stamps, paths or thread counts) so equal seeds give equal bytes.
pub fn metadata(sim: &Simulator, n: usize) -> serde_json::Value {
    let mut meta = serde_json::json!({
        "generator": concat!("trainer ", env!("CARGO_PKG_VERSION"), " simulate"),
        "n": n,
        "exposure_s": sim.instrument.exposure_s,
        "background_per_pixel": sim.instrument.bkg_per_pixel,
        "psf_king_rc_arcsec": sim.instrument.psf_rc_arcsec,
        "agn_mean_number": sim.instrument.agn_mean_number,
        "config": sim.config,
    });
    if sim.exposure_varies() {
        // The exposures clusters can have (the training range of a model fitted on it).
        let (lo, hi) = sim.exposure_bounds();
        meta["exposure_range_s"] = serde_json::json!([lo, hi]);
    }
    meta
}

fn collect_truth(
    truths: &[Truth],
    redshift: &mut Vec<f32>,
    log_mass: &mut Vec<f32>,
    cols: &mut TruthColumns,
) {
    for t in truths {
        redshift.push(t.redshift as f32);
        log_mass.push(t.log_mass as f32);
        cols.push(t);
    }
}

/// Simulate `n` clusters and write them to `out` atomically.
pub fn generate_npz(sim: &Simulator, n: usize, out: &Path, progress: bool) -> Result<()> {
    generate_npz_with(sim, n, out, progress, None)
}

/// [`generate_npz`], with the clusters' sky positions and ids (a simulated tile's).
pub fn generate_npz_with(
    sim: &Simulator,
    n: usize,
    out: &Path,
    progress: bool,
    sky: Option<&SkyColumns>,
) -> Result<()> {
    let mut npz = NpzOut::create(out)?;
    let (mut redshift, mut log_mass, mut cols) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        TruthColumns::default(),
    );
    let pb = crate::progress::bar(n, progress, "simulating", "clusters");
    {
        let mut images = npz.images(n).context("starting the images array")?;
        // The NPY writer is not Send, so this thread writes and a helper thread
        // drives the simulation (on the rayon pool), two chunks ahead at most.
        let (tx, rx) = mpsc::sync_channel::<(Vec<u16>, Vec<Truth>)>(2);
        std::thread::scope(|s| -> Result<()> {
            s.spawn(move || {
                for start in (0..n).step_by(CHUNK) {
                    if tx
                        .send(simulate_chunk(sim, start, CHUNK.min(n - start)))
                        .is_err()
                    {
                        break; // the writer stopped on an error
                    }
                }
            });
            for (chunk, truths) in rx {
                images
                    .write(&chunk)
                    .with_context(|| format!("writing images to {}", out.display()))?;
                collect_truth(&truths, &mut redshift, &mut log_mass, &mut cols);
                pb.inc(truths.len() as u64);
            }
            Ok(())
        })?;
        images
            .finish()
            .with_context(|| format!("writing images to {}", out.display()))?;
    }
    pb.finish_and_clear();
    npz.f32("redshift", &redshift)?;
    npz.f32("log_mass", &log_mass)?;
    npz.truth(&cols)?;
    if let Some(k) = sky {
        npz.sky(k)?;
    }
    npz.meta(&metadata(sim, n))?;
    npz.commit()
}

/// Simulate `n` clusters into memory (tests, previews, quick experiments).
pub fn generate_dataset(sim: &Simulator, n: usize) -> Dataset {
    let (mut redshift, mut log_mass, mut cols) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        TruthColumns::default(),
    );
    let mut images = Vec::with_capacity(n * IMAGE_LEN);
    for start in (0..n).step_by(CHUNK) {
        let (chunk, truths) = simulate_chunk(sim, start, CHUNK.min(n - start));
        images.extend_from_slice(&chunk);
        collect_truth(&truths, &mut redshift, &mut log_mass, &mut cols);
    }
    Dataset {
        path: None,
        images,
        redshift,
        log_mass: Some(log_mass),
        truth: Some(cols),
        meta: Some(metadata(sim, n)),
        sky: None,
    }
}
