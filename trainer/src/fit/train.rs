//! The training loop: deterministic batches, a checkpoint after every epoch
//! (resumable; killing the process loses at most the epoch in progress), early
//! stopping on the validation loss, and sigma calibration on the validation split.

use super::config::{Backend, Loss, Optimizer, RunConfig};
use super::net::{self, Masks, Net};
use super::prep::{self, Preprocess};
use super::run::{self, EpochRecord, RunState};
use crate::data::{Dataset, Splits};
use crate::sim::{NPIX, spectrum::NBANDS};
use anyhow::{Context, Result, bail};
use arch::Layer;
use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamConfig, GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use std::time::Instant;

use super::net::INPUT;

/// The plain (inference) device of a backend.
pub fn device(backend: Backend) -> Device {
    match backend {
        Backend::Flex => Device::flex(),
        #[allow(deprecated)] // burn-ndarray is deprecated upstream; kept selectable on purpose
        Backend::Ndarray => Device::ndarray(),
    }
}

/// Predictions of a network on some clusters: mean and sigma (before calibration), in
/// batches of 256.
pub fn predict(
    net: &Net,
    layers: &[Layer],
    pre: &Preprocess,
    ds: &Dataset,
    idx: &[usize],
    dev: &Device,
) -> Result<(Vec<f64>, Vec<f64>)> {
    predict_batched(net, layers, pre, ds, idx, dev, 256)
}

/// [`predict`] in batches of `batch` clusters.
pub fn predict_batched(
    net: &Net,
    layers: &[Layer],
    pre: &Preprocess,
    ds: &Dataset,
    idx: &[usize],
    dev: &Device,
    batch: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (mut mu, mut sigma) = (Vec::with_capacity(idx.len()), Vec::with_capacity(idx.len()));
    for chunk in idx.chunks(batch.max(1)) {
        let b = prep::batch(ds, chunk, pre, &[])?;
        let n = chunk.len();
        let x = Tensor::<4>::from_data(TensorData::new(b.x, [n, NBANDS, NPIX, NPIX]), dev);
        let z = Tensor::<2>::from_data(TensorData::new(b.s, [n, b.scalars]), dev);
        let (m, s) = net::mean_sigma(net.forward(layers, x, z, None));
        mu.extend(to_vec(m).into_iter().map(f64::from));
        sigma.extend(to_vec(s).into_iter().map(f64::from));
    }
    Ok((mu, sigma))
}

/// A 1-D tensor's values on the host.
pub fn to_vec(t: Tensor<1>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .expect("f32 tensor data")
}

fn scalar(t: Tensor<1>) -> f64 {
    f64::from(to_vec(t)[0])
}

/// The most memory a training step may plan for (activations of a batch, kept for the
/// backward pass, with their gradients and burn's working copies).
pub const MAX_TRAINING_BYTES: u64 = 16 << 30;

/// Refuse, before anything is built, a network and batch whose activations alone would
/// not fit [`MAX_TRAINING_BYTES`]: f32 activations of every layer for every image of
/// the batch, three times (forward values, their gradients, a working copy).
pub fn check_training_memory(stats: &[arch::LayerStats], batch: usize) -> Result<()> {
    let per_image: u64 = stats.iter().map(|s| s.out.len() as u64).sum::<u64>() + INPUT.len() as u64;
    let bytes = per_image.saturating_mul(batch as u64).saturating_mul(4 * 3);
    if bytes > MAX_TRAINING_BYTES {
        bail!(
            "training would need about {:.1} GB for activations ({per_image} values per image, batch {batch}); at most {:.0} GB is planned for: use a smaller --batch-size or a smaller network",
            bytes as f64 / 1e9,
            MAX_TRAINING_BYTES as f64 / 1e9
        );
    }
    Ok(())
}

/// Everything `fit` hands back.
pub struct FitOutcome {
    /// The trained (best-epoch) network on the inference device.
    pub net: Net,
    /// Its layers.
    pub layers: Vec<Layer>,
    /// The preprocessing.
    pub pre: Preprocess,
    /// The split used.
    pub splits: Splits,
    /// Final state (history, calibration).
    pub state: RunState,
}

/// Train (or resume) a run in `run_dir` on `ds`.
pub fn fit(
    ds: &Dataset,
    cfg: &RunConfig,
    run_dir: &Path,
    resume: bool,
    progress: bool,
) -> Result<FitOutcome> {
    Ok(fit_until(ds, cfg, run_dir, resume, progress, None)?
        .expect("runs to the end without stop_after"))
}

/// [`fit`] (resuming if `resume`), but return right after the checkpoint of epoch
/// `stop_after` (1-based), as if the process had been killed there (tests of `--resume`).
pub fn fit_interrupted(
    ds: &Dataset,
    cfg: &RunConfig,
    run_dir: &Path,
    resume: bool,
    stop_after: usize,
) -> Result<()> {
    fit_until(ds, cfg, run_dir, resume, false, Some(stop_after)).map(|_| ())
}

fn fit_until(
    ds: &Dataset,
    cfg: &RunConfig,
    run_dir: &Path,
    resume: bool,
    progress: bool,
    stop_after: Option<usize>,
) -> Result<Option<FitOutcome>> {
    cfg.train.check()?;
    let layers = cfg.model.layers()?;
    let t = &cfg.train;
    check_training_memory(&arch::analyze(INPUT, &layers)?, t.batch_size)?;
    let labels = ds
        .log_mass
        .as_ref()
        .context("training needs `log_mass` labels")?;
    let splits = Splits::new(ds.len(), t.split_seed, Splits::DEFAULT);
    if splits.train.len() < t.batch_size.min(32) || splits.val.is_empty() {
        bail!(
            "{} clusters are too few to train (need a training split of at least one batch and a validation split)",
            ds.len()
        );
    }
    let ys: Vec<f64> = splits.train.iter().map(|&i| f64::from(labels[i])).collect();
    let (y_mean, y_sd) = prep::mean_sd(&ys);

    let plain = device(t.backend);
    let train_dev = plain.clone().autodiff();
    let fingerprint = ds.fingerprint();
    let (mut state, pre, mut net, mut optim, mut best) = match run::load_checkpoint(
        run_dir, &layers, &train_dev,
    )? {
        Some(ckpt) if resume => {
            let optim = make_optimizer(cfg)
                .load(&ckpt.optim)
                .with_context(|| format!("loading optimizer state {}", ckpt.optim.display()))?;
            if let Some(f) = ckpt.state.dataset_fingerprint
                && f != fingerprint
            {
                bail!(
                    "{}: the run was trained on another dataset (fingerprint {f:016x}, this one {fingerprint:016x}); resume it with the dataset it was started on",
                    run_dir.display()
                );
            }
            run::restore(run_dir, &ckpt)?;
            if progress {
                eprintln!(
                    "resuming {} after epoch {} ({})",
                    run_dir.display(),
                    ckpt.state.epochs_done,
                    ckpt.dir.display()
                );
            }
            let pre = ckpt.state.preprocess.clone();
            (ckpt.state, pre, ckpt.net, optim, ckpt.best)
        }
        Some(_) => bail!(
            "{} already holds a run; use --resume to continue it or choose another --run-dir",
            run_dir.display()
        ),
        None if resume => bail!(
            "{}: nothing to resume: the run has no checkpoint (it stopped before its first epoch ended); start it again without --resume",
            run_dir.display()
        ),
        None => {
            let net = net::init_seeded(&layers, INPUT, &train_dev, t.seed)?.init_head(y_mean, y_sd);
            let pre = Preprocess::fit(ds, &splits.train, &cfg.model.aux_inputs)?;
            let mut state = RunState::new(pre.clone());
            state.dataset_fingerprint = Some(fingerprint);
            (state, pre, net, make_optimizer(cfg), Vec::new())
        }
    };

    let n_masks = layers
        .iter()
        .filter(|l| matches!(l, Layer::Dropout { .. }))
        .count();
    let train_idx: Vec<usize> = if t.max_train > 0 {
        splits.train.iter().copied().take(t.max_train).collect()
    } else {
        splits.train.clone()
    };
    let steps = train_idx.len().div_ceil(t.batch_size);
    for epoch in state.epochs_done..t.epochs {
        if t.patience > 0 && state.epochs_since_best() >= t.patience {
            eprintln!(
                "early stop: no better validation loss for {} epochs",
                t.patience
            );
            break;
        }
        let lr = t.lr_at(epoch);
        let mut rng = ChaCha8Rng::seed_from_u64(t.seed);
        rng.set_stream(epoch as u64 + 1);
        let mut order = train_idx.clone();
        order.shuffle(&mut rng);
        let pb = crate::progress::bar(
            steps,
            progress,
            &format!("epoch {:>3}/{}", epoch + 1, t.epochs),
            "batches",
        );
        let t0 = Instant::now();
        let (mut loss_sum, mut n_seen) = (0.0, 0usize);
        for chunk in order.chunks(t.batch_size) {
            let n = chunk.len();
            let transforms: Vec<usize> = if t.augment {
                (0..n).map(|_| rng.random_range(0..8)).collect()
            } else {
                Vec::new()
            };
            let b = prep::batch(ds, chunk, &pre, &transforms)?;
            let x =
                Tensor::<4>::from_data(TensorData::new(b.x, [n, NBANDS, NPIX, NPIX]), &train_dev);
            let z = Tensor::<2>::from_data(TensorData::new(b.s, [n, b.scalars]), &train_dev);
            let y = Tensor::<1>::from_data(TensorData::new(b.y, [n]), &train_dev);
            let masks = dropout_masks(&layers, n_masks, n, &mut rng, &train_dev);
            let raw = net.forward(&layers, x, z, Some(&masks));
            let (mu, sigma) = net::mean_sigma(raw);
            let data_loss = match t.loss {
                Loss::Nll => net::nll(mu, sigma, y).mean(),
                Loss::Mse => net::squared_error(mu, y).mean(),
            };
            let mut loss = data_loss.clone();
            if t.l1 > 0.0 || t.l2 > 0.0 {
                let (l1, l2) = net.penalties();
                loss = loss + l1 * t.l1 + l2 * t.l2;
            }
            let value = scalar(data_loss);
            if !value.is_finite() {
                bail!(
                    "the training loss became {value} in epoch {} (learning rate {lr:.2e} too high?)",
                    epoch + 1
                );
            }
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(lr, net, grads);
            loss_sum += value * n as f64;
            n_seen += n;
            pb.set_message(format!("loss {:.4}", loss_sum / n_seen as f64));
            pb.inc(1);
        }
        let train_secs = t0.elapsed().as_secs_f64();
        // Validation on the inference device (batch norm uses running statistics, no dropout).
        let valid = net.valid();
        let (mu, sigma) = predict(&valid, &layers, &pre, ds, &splits.val, &plain)?;
        let rec = EpochRecord::score(
            epoch,
            lr,
            loss_sum / n_seen as f64,
            &mu,
            &sigma,
            &splits.val,
            labels,
            t.loss,
            n_seen as f64 / train_secs,
        );
        pb.finish_and_clear();
        if progress {
            eprintln!(
                "epoch {:>3}/{}  loss {:.4}  val loss {:.4}  val scatter {:.4} dex  lr {:.2e}  {:.0} img/s",
                epoch + 1,
                t.epochs,
                rec.train_loss,
                rec.val_loss,
                rec.val_scatter,
                lr,
                rec.images_per_s
            );
        }
        let improved = state.push(rec);
        run::save_checkpoint(run_dir, &state, &net, &optim, improved, &mut best)?;
        if stop_after == Some(epoch + 1) {
            return Ok(None);
        }
    }

    // The best epoch's weights, on the inference device.
    let best = run::load_best(run_dir, &layers, &plain)?;
    let (mu, sigma) = predict(&best, &layers, &pre, ds, &splits.val, &plain)?;
    state.calibrate_sigma(&mu, &sigma, &splits.val, labels, t.loss);
    run::save_state(run_dir, &state)?;
    Ok(Some(FitOutcome {
        net: best,
        layers,
        pre,
        splits,
        state,
    }))
}

fn make_optimizer(cfg: &RunConfig) -> burn::optim::ModuleOptimizer {
    match cfg.train.optimizer {
        Optimizer::Adam => AdamConfig::new().init(),
        Optimizer::Sgd => SgdConfig::new()
            .with_momentum(Some(
                MomentumConfig::new()
                    .with_momentum(cfg.train.momentum)
                    .with_dampening(0.0),
            ))
            .init(),
    }
}

/// Host-drawn inverted-dropout masks (deterministic for the seed, identical on every backend).
fn dropout_masks(
    layers: &[Layer],
    n_masks: usize,
    batch: usize,
    rng: &mut ChaCha8Rng,
    dev: &Device,
) -> Masks {
    if n_masks == 0 {
        return Vec::new();
    }
    let mut shape_units = Vec::new();
    let mut last_units = 0;
    for l in layers {
        match *l {
            Layer::Dense { units } => last_units = units,
            Layer::Dropout { rate } => shape_units.push((last_units, rate)),
            _ => {}
        }
    }
    shape_units
        .into_iter()
        .map(|(units, rate)| {
            let keep = 1.0 - rate;
            let v: Vec<f32> = (0..batch * units)
                .map(|_| {
                    if rng.random::<f64>() < keep {
                        (1.0 / keep) as f32
                    } else {
                        0.0
                    }
                })
                .collect();
            Tensor::<2>::from_data(TensorData::new(v, [batch, units]), dev)
        })
        .collect()
}
