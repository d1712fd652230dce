//! The run directory: configuration, per-epoch history, checkpoints and the best
//! weights. Every file is written to a temporary name and renamed into place, and
//! a checkpoint (model + optimiser + state + best weights) is installed as one new
//! directory before the previous one goes ([`save_checkpoint`]), so an interrupted
//! run loses at most the epoch in progress and never reads a torn or mismatched file.

use super::config::Loss;
use super::net::INPUT;
use super::net::{self, Net};
use super::prep::Preprocess;
use crate::stats::Summary;
use anyhow::{Context, Result};
use arch::Layer;
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Scores of one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 0-based epoch.
    pub epoch: usize,
    /// Learning rate used.
    pub lr: f64,
    /// Mean training loss (without weight penalties).
    pub train_loss: f64,
    /// Validation loss (same loss as training).
    pub val_loss: f64,
    /// Validation scatter, dex.
    pub val_scatter: f64,
    /// Validation bias, dex.
    pub val_bias: f64,
    /// Training throughput.
    pub images_per_s: f64,
}

impl EpochRecord {
    /// Score validation predictions.
    #[allow(clippy::too_many_arguments)]
    pub fn score(
        epoch: usize,
        lr: f64,
        train_loss: f64,
        mu: &[f64],
        sigma: &[f64],
        idx: &[usize],
        labels: &[f32],
        loss: Loss,
        images_per_s: f64,
    ) -> Self {
        let res: Vec<f64> = idx
            .iter()
            .zip(mu)
            .map(|(&i, m)| m - f64::from(labels[i]))
            .collect();
        let s = Summary::of(&res);
        let val_loss = match loss {
            Loss::Nll => res
                .iter()
                .zip(sigma)
                .map(|(r, s)| {
                    s.ln() + 0.5 * (r / s).powi(2) + 0.5 * (2.0 * std::f64::consts::PI).ln()
                })
                .sum::<f64>(),
            Loss::Mse => res.iter().map(|r| r * r).sum::<f64>(),
        } / res.len().max(1) as f64;
        Self {
            epoch,
            lr,
            train_loss,
            val_loss,
            val_scatter: s.scatter,
            val_bias: s.bias,
            images_per_s,
        }
    }
}

/// How a run's sigma is turned into the calibrated one (one definition, shared with
/// codegen, which reads it back from `model.json`).
pub use arch::model::SigmaCalibration;

/// Everything about a run's progress that is not weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// Preprocessing, fitted on the training split.
    pub preprocess: Preprocess,
    /// Epochs completed.
    pub epochs_done: usize,
    /// Per-epoch scores.
    pub history: Vec<EpochRecord>,
    /// Epoch with the lowest validation loss.
    pub best_epoch: Option<usize>,
    /// Sigma calibration (set when training ends).
    pub sigma_calibration: Option<SigmaCalibration>,
    /// [`crate::data::Dataset::fingerprint`] of the dataset trained on (absent in runs
    /// made before it was recorded): a resume on other data is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_fingerprint: Option<u64>,
}

impl RunState {
    /// A fresh run.
    pub fn new(preprocess: Preprocess) -> Self {
        Self {
            preprocess,
            epochs_done: 0,
            history: Vec::new(),
            best_epoch: None,
            sigma_calibration: None,
            dataset_fingerprint: None,
        }
    }

    /// Record an epoch; true if it is the best so far.
    pub fn push(&mut self, rec: EpochRecord) -> bool {
        let best = self
            .best_epoch
            .and_then(|e| self.history.iter().find(|r| r.epoch == e))
            .map(|r| r.val_loss);
        let improved = best.is_none_or(|b| rec.val_loss < b);
        if improved {
            self.best_epoch = Some(rec.epoch);
        }
        self.epochs_done = rec.epoch + 1;
        self.history.push(rec);
        improved
    }

    /// Epochs since the best one.
    pub fn epochs_since_best(&self) -> usize {
        self.best_epoch
            .map_or(0, |b| self.epochs_done.saturating_sub(b + 1))
    }

    /// Calibrate sigma on validation predictions.
    pub fn calibrate_sigma(
        &mut self,
        mu: &[f64],
        sigma: &[f64],
        idx: &[usize],
        labels: &[f32],
        loss: Loss,
    ) {
        let res: Vec<f64> = idx
            .iter()
            .zip(mu)
            .map(|(&i, m)| m - f64::from(labels[i]))
            .collect();
        self.sigma_calibration = Some(match loss {
            Loss::Nll => {
                let z: Vec<f64> = res.iter().zip(sigma).map(|(r, s)| r / s).collect();
                let rms = (z.iter().map(|v| v * v).sum::<f64>() / z.len().max(1) as f64).sqrt();
                SigmaCalibration::Scale { scale: rms }
            }
            Loss::Mse => SigmaCalibration::Constant {
                sigma: (res.iter().map(|r| r * r).sum::<f64>() / res.len().max(1) as f64).sqrt(),
            },
        });
    }
}

pub use crate::fsutil::write_atomic;

fn module_bytes(net: &Net) -> Result<Vec<u8>> {
    let bytes = net
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("serialising the model: {e:?}"))?;
    Ok(bytes.to_vec())
}

/// Legacy single-directory checkpoint names (runs made before numbered checkpoints).
const LEGACY: [&str; 2] = ["checkpoint", "checkpoint.old"];

/// The directory of the checkpoint taken after `epochs` epochs.
pub fn checkpoint_dir(run_dir: &Path, epochs: usize) -> PathBuf {
    run_dir.join(format!("checkpoint-{epochs:04}"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Save the checkpoint of the epoch just finished. `best` holds the best epoch's
/// weights; it becomes this epoch's weights when `improved`.
///
/// A checkpoint is one directory holding everything a resume needs (model, optimiser,
/// state, and the best weights that state's `best_epoch` names), built under a
/// temporary name and renamed to `checkpoint-NNNN` (its epoch count) in one step. The
/// previous one is removed only after the new one is in place, and the run directory's
/// `best-model.bpk` and `state.json` are copies written after it, which a resume
/// rewrites from the checkpoint. A kill at any moment leaves one complete checkpoint
/// whose best weights match its state.
pub fn save_checkpoint(
    run_dir: &Path,
    state: &RunState,
    net: &Net,
    optim: &burn::optim::ModuleOptimizer,
    improved: bool,
    best: &mut Vec<u8>,
) -> Result<()> {
    crate::fsutil::sweep_stale(run_dir);
    let tmp = tempfile::Builder::new()
        .prefix(&crate::fsutil::temp_prefix("checkpoint"))
        .tempdir_in(run_dir)
        .with_context(|| format!("creating a checkpoint directory in {}", run_dir.display()))?;
    let model = module_bytes(net)?;
    if improved {
        best.clone_from(&model);
    }
    if best.is_empty() {
        anyhow::bail!("internal: a checkpoint without best weights");
    }
    let optim_bytes = optim
        .to_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("serialising the optimizer: {e:?}"))?;
    let files: [(&str, &[u8]); 4] = [
        ("model.bpk", &model),
        ("optim.bpk", &optim_bytes),
        ("best-model.bpk", best),
        ("state.json", &serde_json::to_vec_pretty(state)?),
    ];
    for (name, bytes) in files {
        let p = tmp.path().join(name);
        let mut f =
            std::fs::File::create(&p).with_context(|| format!("writing {}", p.display()))?;
        std::io::Write::write_all(&mut f, bytes)
            .and_then(|_| f.sync_all())
            .with_context(|| format!("writing {}", p.display()))?;
    }
    sync_dir(tmp.path())?;
    let target = checkpoint_dir(run_dir, state.epochs_done);
    if target.exists() {
        // Only a checkpoint of the same epoch count, from a run that was resumed from an
        // older one; the new one replaces it.
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("replacing {}", target.display()))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, &target)
        .with_context(|| format!("installing the checkpoint {}", target.display()))?;
    sync_dir(run_dir)?;
    publish(run_dir, state, best)?;
    // Only now that the new checkpoint is in place: the older ones go.
    for (dir, _) in checkpoints(run_dir)? {
        if dir != target {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("removing the superseded {}", dir.display()))?;
        }
    }
    Ok(())
}

/// Write the run directory's copies of the best weights and the state.
fn publish(run_dir: &Path, state: &RunState, best: &[u8]) -> Result<()> {
    write_atomic(&run_dir.join("best-model.bpk"), best)?;
    save_state(run_dir, state)
}

/// The run's checkpoint directories with their epoch counts (legacy ones count as 0
/// and are read only when nothing newer exists).
fn checkpoints(run_dir: &Path) -> Result<Vec<(PathBuf, usize)>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(run_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", run_dir.display())),
    };
    for e in rd {
        let e = e.with_context(|| format!("reading {}", run_dir.display()))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !e.path().is_dir() {
            continue;
        }
        if let Some(n) = name
            .strip_prefix("checkpoint-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            out.push((e.path(), n));
        } else if LEGACY.contains(&name) {
            out.push((e.path(), 0));
        }
    }
    // Newest first; of two legacy ones, `checkpoint` before `checkpoint.old`.
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    Ok(out)
}

/// A run's latest checkpoint.
pub struct Checkpoint {
    /// Its directory.
    pub dir: PathBuf,
    /// Progress so far.
    pub state: RunState,
    /// The network after the last completed epoch.
    pub net: Net,
    /// The optimiser's state file.
    pub optim: PathBuf,
    /// The best epoch's weights (burnpack bytes).
    pub best: Vec<u8>,
}

/// The latest checkpoint, if the run has one. A checkpoint that exists but cannot be
/// read is an error (never silently replaced by an older one or a fresh start).
pub fn load_checkpoint(
    run_dir: &Path,
    layers: &[Layer],
    dev: &Device,
) -> Result<Option<Checkpoint>> {
    let Some((dir, n)) = checkpoints(run_dir)?.into_iter().next() else {
        return Ok(None);
    };
    let legacy = LEGACY.iter().any(|l| dir.ends_with(l));
    let state: RunState = serde_json::from_slice(
        &std::fs::read(dir.join("state.json"))
            .with_context(|| format!("reading {}/state.json", dir.display()))?,
    )
    .with_context(|| format!("{}/state.json is not a run state", dir.display()))?;
    if !legacy && state.epochs_done != n {
        anyhow::bail!(
            "{}: its state.json records {} epochs; the checkpoint is damaged",
            dir.display(),
            state.epochs_done
        );
    }
    let net = load_net(&dir.join("model.bpk"), layers, dev)?;
    // Legacy checkpoints kept the best weights only at the top of the run directory.
    let best_path = if legacy {
        run_dir.join("best-model.bpk")
    } else {
        dir.join("best-model.bpk")
    };
    let best = std::fs::read(&best_path).with_context(|| {
        format!(
            "{}: the best weights of the checkpoint are missing",
            best_path.display()
        )
    })?;
    load_net(&best_path, layers, dev)?;
    Ok(Some(Checkpoint {
        optim: dir.join("optim.bpk"),
        dir,
        state,
        net,
        best,
    }))
}

/// Make the run directory's `best-model.bpk` and `state.json` those of `ckpt` (a kill
/// between installing a checkpoint and writing them leaves them one epoch behind).
pub fn restore(run_dir: &Path, ckpt: &Checkpoint) -> Result<()> {
    publish(run_dir, &ckpt.state, &ckpt.best)
}

/// Write `state.json` at the top of the run directory.
pub fn save_state(run_dir: &Path, state: &RunState) -> Result<()> {
    write_atomic(
        &run_dir.join("state.json"),
        &serde_json::to_vec_pretty(state)?,
    )
}

/// Rebuild a network for `layers` on `dev` and load weights from a burnpack file.
pub fn load_net(path: &Path, layers: &[Layer], dev: &Device) -> Result<Net> {
    let net = net::init(layers, INPUT, dev)?;
    let record = ModuleRecord::load(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read model weights: {e:?}", path.display()))?;
    net.try_load_record(record).map_err(|e| {
        anyhow::anyhow!(
            "{}: weights do not fit this architecture: {e:?}",
            path.display()
        )
    })
}

/// The best epoch's weights.
pub fn load_best(run_dir: &Path, layers: &[Layer], dev: &Device) -> Result<Net> {
    load_net(&run_dir.join("best-model.bpk"), layers, dev)
}
