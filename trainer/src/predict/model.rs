//! The two kinds of model `predict` runs: a trained run (burn, f32, exactly `eval`'s code
//! path) or an exported weight blob, decoded for the reference interpreters (`arch`, which
//! codegen exports with), which compute the bits the runtime computes on a device.
//!
//! A blob does not carry its layer list. It is read from the `model-arch.json` that
//! `codegen export` writes next to the blobs or, failing that, from the run directory two
//! levels up (`runs/x/export/model-int8.bin` -> `runs/x`: `model.json`, folded as the export
//! folded it); the blob's architecture hash must equal the description's.

use crate::fit::commands::{TrainedRun, load_run};
use anyhow::{Context, Result, bail};
use arch::load::{ARCH_FILE, ArchDescription, Decoded, TrainingRange, blob_dtype, hash_hex};
use runtime::blob::{Dtype, Header, fnv1a64};
use std::path::{Path, PathBuf};

/// How a model computes.
pub enum Engine {
    /// A trained run through burn.
    Burn(Box<TrainedRun>),
    /// A weight blob through the reference interpreters.
    Blob(Box<Decoded>),
}

/// What `--model-dtype` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModelDtype {
    /// A run's burn network (f32); only for run directories.
    Burn,
    /// The f32 blob.
    F32,
    /// The f16 blob.
    F16,
    /// The int8 blob.
    Int8,
}

impl ModelDtype {
    fn blob_name(self) -> Option<&'static str> {
        match self {
            ModelDtype::Burn => None,
            ModelDtype::F32 => Some("model-f32.bin"),
            ModelDtype::F16 => Some("model-f16.bin"),
            ModelDtype::Int8 => Some("model-int8.bin"),
        }
    }
}

/// A model ready to predict, with what the output's header says about it.
pub struct LoadedModel {
    /// The computation.
    pub engine: Engine,
    /// The path given (run directory or blob).
    pub path: PathBuf,
    /// `burn run` or `weight blob`.
    pub kind: &'static str,
    /// `f32`, `f16` or `int8`.
    pub dtype: &'static str,
    /// Architecture hash (of the folded model, as in blobs).
    pub arch_hash: u64,
    /// FNV-1a 64 of the weights file (the blob, or the run's `best-model.bpk`).
    pub weights_hash: u64,
    /// The weights file hashed.
    pub weights_file: PathBuf,
    /// Where the architecture came from (blobs) or the run's configuration.
    pub description: PathBuf,
    /// Training range, if known.
    pub training_range: Option<TrainingRange>,
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("model {}: cannot read", path.display()))
}

/// Open `path`: a run directory (with `dtype` `burn`, the default, or a blob dtype picking
/// `export/model-<dtype>.bin` of the run) or a blob file (whose dtype `dtype` must match).
pub fn load(path: &Path, dtype: Option<ModelDtype>) -> Result<LoadedModel> {
    if !path.exists() {
        bail!("model {}: no such file or directory", path.display());
    }
    if path.is_dir() {
        match dtype.and_then(ModelDtype::blob_name) {
            Some(name) => {
                let blob = path.join("export").join(name);
                if !blob.exists() {
                    bail!(
                        "model {}: no {} (export the run with `codegen export {}`)",
                        path.display(),
                        blob.display(),
                        path.display()
                    );
                }
                load_blob(&blob, None)
            }
            None => load_burn(path),
        }
    } else {
        if dtype == Some(ModelDtype::Burn) {
            bail!(
                "model {}: --model-dtype burn needs a run directory, not a blob",
                path.display()
            );
        }
        load_blob(path, dtype)
    }
}

fn load_burn(dir: &Path) -> Result<LoadedModel> {
    let run = load_run(dir).with_context(|| format!("model {}", dir.display()))?;
    let folded = arch::model::Model::load(dir)
        .and_then(|m| m.fold_batch_norm())
        .with_context(|| format!("model {}: its framework-neutral export", dir.display()))?;
    let weights_file = dir.join("best-model.bpk");
    let weights_hash = fnv1a64(&read(&weights_file)?);
    Ok(LoadedModel {
        engine: Engine::Burn(Box::new(run)),
        path: dir.to_path_buf(),
        kind: "burn run",
        dtype: "f32",
        arch_hash: arch::load::arch_hash(&folded),
        weights_hash,
        weights_file,
        description: dir.join("config.toml"),
        training_range: run_training_range(dir)?,
    })
}

/// A run's training range, from its `calibration.npz` (validation clusters carrying the
/// training dataset's metadata).
fn run_training_range(dir: &Path) -> Result<Option<TrainingRange>> {
    let calib = dir.join("calibration.npz");
    if !calib.exists() {
        return Ok(None);
    }
    TrainingRange::of_sample(&calib)
        .with_context(|| format!("model {}: reading the training range", dir.display()))
}

/// The architecture of a blob: `model-arch.json` beside it, else the run two levels up.
fn describe(blob: &Path) -> Result<(ArchDescription, PathBuf)> {
    let beside = blob.with_file_name(ARCH_FILE);
    if beside.exists() {
        return Ok((ArchDescription::load(&beside)?, beside));
    }
    let run = blob
        .parent()
        .and_then(Path::parent)
        .filter(|r| r.join("model.json").exists());
    let Some(run) = run else {
        bail!(
            "model {}: a blob does not describe its layers, and there is no {} next to it nor a \
             run directory (with model.json) two levels up; export again with `codegen export`, \
             which writes {ARCH_FILE}",
            blob.display(),
            beside.display()
        );
    };
    let folded = arch::model::Model::load(run)
        .and_then(|m| m.fold_batch_norm())
        .with_context(|| {
            format!(
                "model {}: describing it from {}",
                blob.display(),
                run.display()
            )
        })?;
    let d = ArchDescription::of(
        &folded,
        &run.file_name()
            .map_or("model".into(), |n| n.to_string_lossy().into_owned()),
        "",
        run_training_range(run)?,
        serde_json::Value::Null,
    );
    Ok((d, run.join("model.json")))
}

fn load_blob(path: &Path, dtype: Option<ModelDtype>) -> Result<LoadedModel> {
    let bytes = read(path)?;
    let named = |e: &dyn std::fmt::Display| anyhow::anyhow!("model {}: {e}", path.display());
    let header = Header::read(&bytes).map_err(|e| named(&e))?;
    let blob_dtype = blob_dtype(&header).map_err(|e| named(&e))?;
    let (name, want) = match blob_dtype {
        Dtype::F32 => ("f32", ModelDtype::F32),
        Dtype::F16 => ("f16", ModelDtype::F16),
        Dtype::Int8 => ("int8", ModelDtype::Int8),
    };
    if let Some(d) = dtype
        && d != want
    {
        bail!(
            "model {}: the blob holds {name} weights, not {d:?} (--model-dtype)",
            path.display()
        );
    }
    let (desc, desc_path) = describe(path)?;
    let desc_hash = desc.hash().map_err(|e| named(&e))?;
    if header.arch_hash != desc_hash {
        bail!(
            "model {}: the blob is for architecture {}, but {} describes architecture {}: \
             they belong to different networks (use the description exported with this blob)",
            path.display(),
            hash_hex(header.arch_hash),
            desc_path.display(),
            hash_hex(desc_hash)
        );
    }
    let skel = desc
        .skeleton()
        .with_context(|| format!("{}", desc_path.display()))?;
    let decoded = arch::load::decode(&skel, &bytes).map_err(|e| named(&e))?;
    Ok(LoadedModel {
        engine: Engine::Blob(Box::new(decoded)),
        path: path.to_path_buf(),
        kind: "weight blob",
        dtype: name,
        arch_hash: header.arch_hash,
        weights_hash: fnv1a64(&bytes),
        weights_file: path.to_path_buf(),
        description: desc_path,
        training_range: desc.training_range,
    })
}
