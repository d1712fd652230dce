//! The run directory: configuration, per-epoch history, checkpoints and the best
//! weights. Every file is written to a temporary name and renamed into place, and
//! a checkpoint (model + optimiser + state) is swapped in as one directory, so an
//! interrupted run loses at most the epoch in progress and never reads a torn file.

use super::config::Loss;
use super::net::{self, Net};
use super::prep::Preprocess;
use super::train::INPUT;
use crate::stats::Summary;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::store::ModuleRecord;
use burn::tensor::Device;
use codegen::arch::Layer;
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
pub use codegen::model::SigmaCalibration;

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

const CHECKPOINT: &str = "checkpoint";

/// Save the checkpoint of the epoch just finished (and the best weights if it improved).
pub fn save_checkpoint(
    run_dir: &Path,
    state: &RunState,
    net: &Net,
    optim: &burn::optim::ModuleOptimizer,
    improved: bool,
) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".checkpoint-")
        .tempdir_in(run_dir)
        .context("creating a checkpoint directory")?;
    let model = module_bytes(net)?;
    std::fs::write(tmp.path().join("model.bpk"), &model)?;
    let optim_bytes = optim
        .to_record()
        .into_bytes()
        .map_err(|e| anyhow::anyhow!("serialising the optimizer: {e:?}"))?;
    std::fs::write(tmp.path().join("optim.bpk"), optim_bytes.to_vec())?;
    std::fs::write(
        tmp.path().join("state.json"),
        serde_json::to_vec_pretty(state)?,
    )?;
    for f in ["model.bpk", "optim.bpk", "state.json"] {
        std::fs::File::open(tmp.path().join(f))?.sync_all()?;
    }
    let target = run_dir.join(CHECKPOINT);
    let old = run_dir.join(format!("{CHECKPOINT}.old"));
    let _ = std::fs::remove_dir_all(&old);
    if target.exists() {
        std::fs::rename(&target, &old).context("retiring the previous checkpoint")?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, &target).context("installing the checkpoint")?;
    let _ = std::fs::remove_dir_all(&old);
    if improved {
        write_atomic(&run_dir.join("best-model.bpk"), &model)?;
    }
    save_state(run_dir, state)
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

/// The latest checkpoint, if the run has one: state, network, and the optimizer file.
pub fn load_checkpoint(
    run_dir: &Path,
    layers: &[Layer],
    dev: &Device,
) -> Result<Option<(RunState, Net, PathBuf)>> {
    let mut dir = run_dir.join(CHECKPOINT);
    if !dir.exists() {
        // A crash between retiring and installing leaves only the previous one.
        dir = run_dir.join(format!("{CHECKPOINT}.old"));
        if !dir.exists() {
            return Ok(None);
        }
    }
    let state: RunState = serde_json::from_slice(
        &std::fs::read(dir.join("state.json"))
            .with_context(|| format!("reading {}", dir.display()))?,
    )
    .with_context(|| format!("{}/state.json is not a run state", dir.display()))?;
    let net = load_net(&dir.join("model.bpk"), layers, dev)?;
    Ok(Some((state, net, dir.join("optim.bpk"))))
}

/// The best epoch's weights.
pub fn load_best(run_dir: &Path, layers: &[Layer], dev: &Device) -> Result<Net> {
    load_net(&run_dir.join("best-model.bpk"), layers, dev)
}
