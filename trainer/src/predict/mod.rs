//! `trainer predict`: log10 M500, sigma and quality flags for every cluster of any dataset
//! (no truth needed), from a trained run or from an exported weight blob, written as a CSV
//! or FITS catalogue whose header names the model, its hashes and the command.
//!
//! - A run directory predicts through burn, with `eval`'s own code ([`TrainedRun::predict`]
//!   (crate::fit::commands::TrainedRun::predict), the best epoch's weights, recorded
//!   preprocessing and sigma calibration, batches of 256 by default): on the same clusters in
//!   the same order, the numbers are `eval`'s.
//! - A blob (`model-{f32,f16,int8}.bin`) is decoded for the reference interpreters (`arch`), which
//!   are bit-identical to the runtime's kernels and the generated code: the numbers are the
//!   bits a device computes from the same blob (tested against the golden vectors of
//!   `models/edge`).
//!
//! Columns: `id`, `ra`, `dec` (degrees; empty / NaN when the dataset has none), `z`,
//! `exposure_s` (empty / NaN when unknown), `log_mass` (log10 M500c / Msun), `sigma` (dex,
//! calibrated), `flags` (bit field, [`flags`]) and `flag_names`. Nothing is written until
//! every cluster is computed; the file then appears whole (temporary file and rename).

pub mod flags;
pub mod model;
pub mod output;

use crate::data::Dataset;
use anyhow::{Context, Result, bail};
use model::{Engine, LoadedModel, ModelDtype};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to predict, from what, into what.
#[derive(Debug, Clone)]
pub struct PredictOptions {
    /// Run directory or blob file.
    pub model: PathBuf,
    /// Dataset (NPZ, `images.npy` or a directory of `.npy` files).
    pub data: PathBuf,
    /// Output catalogue (`.csv`, or `.fits` / `.fit` / `.fts`).
    pub out: PathBuf,
    /// Which weights of a run to use (`burn` by default), or the dtype a blob must have.
    pub model_dtype: Option<ModelDtype>,
    /// Clusters per forward pass of a burn run (per parallel work item of a blob).
    pub batch: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// The command line recorded in the header.
    pub command: String,
}

/// One catalogue: a row per cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalogue {
    /// Identifiers (the row index when the dataset has none).
    pub id: Vec<String>,
    /// Right ascension, degrees (NaN when unknown).
    pub ra: Vec<f64>,
    /// Declination, degrees (NaN when unknown).
    pub dec: Vec<f64>,
    /// Redshift.
    pub z: Vec<f64>,
    /// Exposure, s (NaN when unknown).
    pub exposure_s: Vec<f64>,
    /// log10 M500c / Msun.
    pub log_mass: Vec<f64>,
    /// Calibrated sigma, dex.
    pub sigma: Vec<f64>,
    /// Quality flags ([`flags`]).
    pub flags: Vec<i32>,
    /// Header lines: (FITS keyword, label, value, meaning), in order.
    pub header: Vec<HeaderItem>,
}

/// One line of a catalogue's header.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderItem {
    /// FITS keyword (at most 8 characters).
    pub key: &'static str,
    /// The CSV header's label.
    pub label: &'static str,
    /// The value.
    pub value: String,
    /// What it means (FITS comment).
    pub comment: &'static str,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with `#` header lines.
    Csv,
    /// A FITS binary table.
    Fits,
}

impl Format {
    /// The format a file name asks for.
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("fits" | "fit" | "fts") => Ok(Format::Fits),
            _ => bail!(
                "--out {}: name the catalogue .csv or .fits (the extension picks the format)",
                path.display()
            ),
        }
    }
}

/// What a finished prediction reports.
#[derive(Debug, Clone)]
pub struct PredictSummary {
    /// Clusters predicted.
    pub n: usize,
    /// Seconds spent in the model (not loading or writing).
    pub model_seconds: f64,
    /// Clusters per second through the model.
    pub clusters_per_s: f64,
    /// How many clusters have each flag (in [`flags::FLAGS`] order).
    pub flag_counts: Vec<usize>,
    /// Model kind and dtype, e.g. `weight blob int8`.
    pub model: String,
}

/// Mean and calibrated sigma of every cluster of `ds`, with a progress bar.
pub fn run_model(
    m: &LoadedModel,
    ds: &Dataset,
    batch: usize,
    progress: bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let n = ds.len();
    let batch = batch.max(1);
    let pb = crate::progress::bar(
        n,
        progress,
        &format!("predicting ({} {})", m.kind, m.dtype),
        "clusters",
    );
    let (mut mu, mut sigma) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let idx: Vec<usize> = (0..n).collect();
    match &m.engine {
        Engine::Burn(run) => {
            // Whole batches per step, so the batches are those of one call over everything.
            for chunk in idx.chunks(batch * 4) {
                let (a, b) = run.predict(ds, chunk, batch)?;
                mu.extend(a);
                sigma.extend(b);
                pb.inc(chunk.len() as u64);
            }
        }
        Engine::Blob(decoded) => {
            // Each cluster is independent: any thread count gives the same bits.
            for chunk in idx.chunks(batch * 8) {
                let out: Vec<(f64, f64)> = chunk
                    .par_chunks(batch)
                    .map(|c| {
                        c.iter()
                            .map(|&i| {
                                scalars(decoded.preprocess(), ds, i)
                                    .and_then(|z| decoded.predict(ds.image(i), &z))
                                    .map(|p| (p.mu, p.sigma))
                                    .with_context(|| format!("cluster {i}"))
                            })
                            .collect::<Result<Vec<_>>>()
                    })
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .flatten()
                    .collect();
                for (a, b) in out {
                    mu.push(a);
                    sigma.push(b);
                }
                pb.inc(chunk.len() as u64);
            }
        }
    }
    pb.finish_and_clear();
    Ok((mu, sigma))
}

/// Predict every cluster of `o.data` with `o.model` and write the catalogue `o.out`.
pub fn predict(o: &PredictOptions) -> Result<PredictSummary> {
    let format = Format::of(&o.out)?;
    if o.out.is_dir() {
        bail!("--out {}: is a directory", o.out.display());
    }
    let m = model::load(&o.model, o.model_dtype)?;
    let ds = Dataset::load(&o.data)?;
    let t0 = Instant::now();
    let (mu, sigma) = run_model(&m, &ds, o.batch, o.progress)?;
    let model_seconds = t0.elapsed().as_secs_f64();
    let cat = catalogue(&m, &ds, mu, sigma, o)?;
    match format {
        Format::Csv => output::write_csv(&cat, &o.out)?,
        Format::Fits => output::write_fits(&cat, &o.out)?,
    }
    Ok(PredictSummary {
        n: ds.len(),
        model_seconds,
        clusters_per_s: ds.len() as f64 / model_seconds.max(1e-9),
        flag_counts: flags::FLAGS
            .iter()
            .map(|(bit, _, _)| cat.flags.iter().filter(|f| *f & bit != 0).count())
            .collect(),
        model: format!("{} {}", m.kind, m.dtype),
    })
}

/// Assemble the catalogue and its header.
pub fn catalogue(
    m: &LoadedModel,
    ds: &Dataset,
    log_mass: Vec<f64>,
    sigma: Vec<f64>,
    o: &PredictOptions,
) -> Result<Catalogue> {
    let n = ds.len();
    let nan = || vec![f64::NAN; n];
    let range = m.training_range.as_ref();
    let sky = ds.sky.as_ref();
    let flags = flags::flags(ds, range);
    let fmt_range = |r: [f64; 2]| format!("{} {}", r[0], r[1]);
    let mut header = vec![
        item(
            "MODEL",
            "model",
            m.path.display().to_string(),
            "run directory or weight blob",
        ),
        item(
            "MODELTYP",
            "model kind",
            m.kind.into(),
            "burn run or weight blob",
        ),
        item("DTYPE", "dtype", m.dtype.into(), "arithmetic of the model"),
        item(
            "ARCHHASH",
            "architecture hash",
            arch::load::hash_hex(m.arch_hash),
            "FNV-1a 64 of the folded layer list",
        ),
        item(
            "MODELHSH",
            "model hash",
            format!("fnv1a64:{:016x}", m.weights_hash),
            "FNV-1a 64 of the weights file",
        ),
        item(
            "WEIGHTS",
            "weights file",
            m.weights_file.display().to_string(),
            "the file MODELHSH hashes",
        ),
        item(
            "ARCHDESC",
            "architecture from",
            m.description.display().to_string(),
            "where the layer list was read",
        ),
        item(
            "DATASET",
            "dataset",
            o.data.display().to_string(),
            "input dataset",
        ),
        item("NCLUST", "clusters", n.to_string(), "rows"),
        item(
            "COMMAND",
            "command",
            o.command.clone(),
            "command that wrote this file",
        ),
        item(
            "CREATOR",
            "creator",
            concat!("trainer ", env!("CARGO_PKG_VERSION"), " predict").into(),
            "program that wrote this file",
        ),
        item("DATE", "date", utc_now(), "UTC time of writing"),
    ];
    match range {
        Some(r) => {
            header.push(item(
                "TRAINZ",
                "training redshift range",
                fmt_range(r.redshift),
                "flag 1 outside it",
            ));
            header.push(item(
                "TRAINEXP",
                "training exposure range (s)",
                r.exposure_s.map_or("unknown".into(), fmt_range),
                "flag 2 outside it",
            ));
            header.push(item(
                "TRAINSRC",
                "training range from",
                r.source.clone(),
                "source of the training range",
            ));
        }
        None => header.push(item(
            "TRAINZ",
            "training redshift range",
            "unknown (flags 1 and 2 never set)".into(),
            "the model records no training range",
        )),
    }
    Ok(Catalogue {
        id: sky.map_or_else(|| (0..n).map(|i| i.to_string()).collect(), |k| k.id.clone()),
        ra: sky.map_or_else(nan, |k| k.ra.clone()),
        dec: sky.map_or_else(nan, |k| k.dec.clone()),
        z: ds.redshift.iter().map(|&z| f64::from(z)).collect(),
        exposure_s: (0..n).map(|i| ds.exposure(i).unwrap_or(f64::NAN)).collect(),
        log_mass,
        sigma,
        flags,
        header,
    })
}

fn item(
    key: &'static str,
    label: &'static str,
    value: String,
    comment: &'static str,
) -> HeaderItem {
    HeaderItem {
        key,
        label,
        value,
        comment,
    }
}

/// The current UTC time as `YYYY-MM-DDThh:mm:ss` (FITS `DATE` format).
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The raw scalar inputs of cluster `i` a model with preprocessing `p` takes: the redshift,
/// then each auxiliary input (the exposure from the truth column or the metadata).
fn scalars(p: &arch::model::PreprocessDesc, ds: &Dataset, i: usize) -> Result<Vec<f32>> {
    let mut v = vec![ds.redshift[i]];
    for e in &p.extra {
        match e.quantity {
            arch::model::AuxQuantity::Exposure => v.push(
                ds.exposure(i)
                    .context("the model takes the exposure as an input, but the dataset records none (no `exposure_s` truth column or metadata)")?
                    as f32,
            ),
        }
    }
    Ok(v)
}
