//! What `trainer fit`, `eval` and `scan` do, as library calls (the CLI parses
//! arguments; tests and `scan` call these directly).

use super::config::RunConfig;
use super::export::export;
use super::net::INPUT;
use super::report::{self, Report};
use super::run::{self, RunState, write_atomic};
use super::train::{self, device, predict};
use crate::data::{Dataset, Splits};
use crate::generate::generate_npz;
use crate::sim::{SimConfig, Simulator};
use anyhow::{Context, Result, bail};
use arch::analyze;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Validation clusters saved with every run for quantisation calibration.
pub const CALIBRATION_CLUSTERS: usize = 512;

/// The dataset `trainer fit` uses when given none (simulated on first use).
pub const DEFAULT_DATASET: &str = "data/mock-erass8-s1-n20000.npz";

/// Load `path`, simulating the default dataset first if that is what is missing.
pub fn load_or_simulate(path: &Path, progress: bool) -> Result<Dataset> {
    if !path.exists() && path == Path::new(DEFAULT_DATASET) {
        eprintln!(
            "{DEFAULT_DATASET} not found: simulating it (20,000 eRASS:8 clusters, seed 1; a few seconds)"
        );
        let sim = Simulator::new(SimConfig {
            seed: 1,
            ..SimConfig::default()
        });
        generate_npz(&sim, 20_000, path, progress)?;
    }
    Ok(Dataset::load(path)?)
}

/// A run directory name that does not exist yet: `base`, `base-2`, `base-3`, ...
pub fn fresh_run_dir(base: &Path) -> PathBuf {
    if !base.exists() {
        return base.to_path_buf();
    }
    (2..)
        .map(|k| PathBuf::from(format!("{}-{k}", base.display())))
        .find(|p| !p.exists())
        .expect("some free name")
}

/// What a finished fit reports.
#[derive(Debug, Clone, Serialize)]
pub struct FitSummary {
    /// Run directory.
    pub run_dir: PathBuf,
    /// Scores on the held-out test split, CNN next to the baselines.
    pub test: Report,
    /// The same on the "detected" test clusters (>= 50 net 0.5-2 keV counts in the
    /// count-rate aperture): the population the literature's figures describe.
    pub test_detected: Report,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Parameters.
    pub params: u64,
    /// Mean training throughput over the epochs, images/s.
    pub train_images_per_s: f64,
    /// Wall-clock seconds of this invocation.
    pub seconds: f64,
}

/// Provenance recorded with a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// Dataset the run was trained on.
    pub dataset: PathBuf,
    /// Trainer version.
    pub trainer: String,
}

/// Train (or resume) and write everything a run directory holds.
pub fn fit(
    cfg: &RunConfig,
    dataset: &Path,
    run_dir: &Path,
    resume: bool,
    progress: bool,
) -> Result<FitSummary> {
    let t0 = Instant::now();
    let layers = cfg.model.layers()?;
    let stats =
        analyze(INPUT, &layers).context("the architecture does not fit a 10 x 50 x 50 input")?;
    cfg.train.check()?;
    let ds = load_or_simulate(dataset, progress)?;
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    if !resume {
        write_atomic(
            &run_dir.join("config.toml"),
            toml::to_string_pretty(cfg)?.as_bytes(),
        )?;
        // Absolute, so that `eval` and `--resume` find it from any working directory.
        let info = RunInfo {
            dataset: std::path::absolute(dataset)
                .with_context(|| format!("resolving {}", dataset.display()))?,
            trainer: env!("CARGO_PKG_VERSION").into(),
        };
        write_atomic(
            &run_dir.join("run.json"),
            &serde_json::to_vec_pretty(&info)?,
        )?;
    }
    let out = train::fit(&ds, cfg, run_dir, resume, progress)?;
    let plain = device(cfg.train.backend);
    let (mu, sigma) = predict(
        &out.net,
        &out.layers,
        &out.pre,
        &ds,
        &out.splits.test,
        &plain,
    )?;
    let calib = out.state.sigma_calibration.context("sigma calibrated")?;
    let sigma: Vec<f64> = sigma.iter().map(|s| calib.apply(*s)).collect();
    let name = format!("CNN ({})", cfg.preset);
    let (test, test_detected) = score_both(&name, &ds, &out.splits, &mu, &sigma)?;

    let provenance = serde_json::json!({
        "dataset": dataset, "preset": cfg.preset, "epochs": out.state.epochs_done,
        "best_epoch": out.state.best_epoch, "trainer": env!("CARGO_PKG_VERSION"),
    });
    export(
        run_dir,
        &out.net,
        &out.layers,
        &out.pre,
        Some(calib),
        provenance,
    )?;
    // A sample of the validation split travels with the run: codegen calibrates int8
    // activation ranges on it without reading the (large) dataset or linking the trainer.
    let sample: Vec<usize> = out
        .splits
        .val
        .iter()
        .copied()
        .take(CALIBRATION_CLUSTERS)
        .collect();
    ds.subset(&sample).save(&run_dir.join("calibration.npz"))?;
    let y: Vec<f64> = out
        .splits
        .test
        .iter()
        .map(|&i| f64::from(ds.log_mass.as_ref().expect("labels")[i]))
        .collect();
    let z: Vec<f64> = out
        .splits
        .test
        .iter()
        .map(|&i| f64::from(ds.redshift[i]))
        .collect();
    report::plot_history(&out.state.history, &run_dir.join("loss.png"))?;
    report::plot_predictions(&y, &z, &mu, &sigma, &run_dir.join("predictions.png"))?;
    let h = &out.state.history;
    let summary = FitSummary {
        run_dir: run_dir.to_path_buf(),
        test,
        test_detected,
        macs: stats.iter().map(|s| s.macs).sum(),
        params: stats.iter().map(|s| s.params).sum(),
        train_images_per_s: h.iter().map(|r| r.images_per_s).sum::<f64>() / h.len().max(1) as f64,
        seconds: t0.elapsed().as_secs_f64(),
    };
    let metrics =
        serde_json::json!({ "summary": &summary, "history": h, "sigma_calibration": calib });
    write_atomic(
        &run_dir.join("metrics.json"),
        &serde_json::to_vec_pretty(&metrics)?,
    )?;
    Ok(summary)
}

/// Score the test split, then its detected clusters, next to the baselines (`mu`, `sigma`
/// indexed like `splits.test`).
pub fn score_both(
    name: &str,
    ds: &Dataset,
    splits: &Splits,
    mu: &[f64],
    sigma: &[f64],
) -> Result<(Report, Report)> {
    let baselines = crate::baseline::Baselines::fit(ds, splits, &Default::default())?;
    let all = report::score(name, ds, &baselines, &splits.test, mu, sigma)?;
    let keep = baselines.detected(&splits.test);
    let pick = |v: &[f64]| keep.iter().map(|&k| v[k]).collect::<Vec<f64>>();
    let idx: Vec<usize> = keep.iter().map(|&k| splits.test[k]).collect();
    let detected = report::score(name, ds, &baselines, &idx, &pick(mu), &pick(sigma))?;
    Ok((all, detected))
}

/// Read a run's configuration and state.
pub fn open_run(run_dir: &Path) -> Result<(RunConfig, RunState, RunInfo)> {
    let read = |f: &str| {
        std::fs::read(run_dir.join(f))
            .with_context(|| format!("{}: not a run directory (no {f})", run_dir.display()))
    };
    let cfg: RunConfig = toml::from_str(std::str::from_utf8(&read("config.toml")?)?)
        .with_context(|| format!("{}/config.toml", run_dir.display()))?;
    let state: RunState = serde_json::from_slice(&read("state.json")?)
        .with_context(|| format!("{}/state.json", run_dir.display()))?;
    let info: RunInfo = serde_json::from_slice(&read("run.json")?)
        .with_context(|| format!("{}/run.json", run_dir.display()))?;
    Ok((cfg, state, info))
}

/// A finished run, ready to predict: what `eval` and `predict` load.
pub struct TrainedRun {
    /// Its directory.
    pub dir: PathBuf,
    /// Configuration.
    pub cfg: RunConfig,
    /// State (preprocessing, history).
    pub state: RunState,
    /// Provenance (training dataset).
    pub info: RunInfo,
    /// Layers.
    pub layers: Vec<arch::Layer>,
    /// The best epoch's network on the inference device.
    pub net: super::net::Net,
    /// Sigma calibration.
    pub calib: super::run::SigmaCalibration,
    /// The inference device.
    pub device: burn::tensor::Device,
}

/// Load a finished run's best network, preprocessing and sigma calibration.
pub fn load_run(run_dir: &Path) -> Result<TrainedRun> {
    let (cfg, state, info) = open_run(run_dir)?;
    let Some(calib) = state.sigma_calibration else {
        bail!("{}: the run has not finished training", run_dir.display())
    };
    let layers = cfg.model.layers()?;
    let device = device(cfg.train.backend);
    let net = run::load_best(run_dir, &layers, &device)?;
    Ok(TrainedRun {
        dir: run_dir.to_path_buf(),
        cfg,
        state,
        info,
        layers,
        net,
        calib,
        device,
    })
}

impl TrainedRun {
    /// Calibrated predictions (mean, sigma) on clusters `idx` of `ds`, in batches of
    /// `batch` (eval's are [`EVAL_BATCH`]; the same batches give the same bits).
    pub fn predict(
        &self,
        ds: &Dataset,
        idx: &[usize],
        batch: usize,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let (mu, sigma) = train::predict_batched(
            &self.net,
            &self.layers,
            &self.state.preprocess,
            ds,
            idx,
            &self.device,
            batch,
        )?;
        let sigma = sigma.iter().map(|s| self.calib.apply(*s)).collect();
        Ok((mu, sigma))
    }
}

/// The fewest test clusters `eval` scores (scatter, bias and coverage of fewer say nothing).
pub const MIN_EVAL_TEST: usize = 10;
/// The fewest training clusters `eval` fits the baselines on.
pub const MIN_EVAL_TRAIN: usize = 50;

/// Batch size of `eval`'s (and by default `predict`'s) forward passes.
pub const EVAL_BATCH: usize = 256;

/// What `eval` scores: the test split of a dataset and the run's predictions on it.
pub struct EvalPredictions {
    /// The dataset scored.
    pub dataset: Dataset,
    /// Its split (by the run's split seed).
    pub splits: Splits,
    /// Calibrated predictions on `splits.test`, in that order.
    pub mu: Vec<f64>,
    /// Their sigmas.
    pub sigma: Vec<f64>,
    /// Estimator name in the tables.
    pub name: String,
}

/// The predictions `eval` scores (the run's own dataset by default).
pub fn eval_predictions(run_dir: &Path, dataset: Option<&Path>) -> Result<EvalPredictions> {
    let run = load_run(run_dir)?;
    let path = dataset.unwrap_or(&run.info.dataset);
    let ds = Dataset::load(path)?;
    if ds.log_mass.is_none() {
        bail!("{}: evaluation needs `log_mass` labels", path.display());
    }
    let splits = Splits::new(ds.len(), run.cfg.train.split_seed, Splits::DEFAULT);
    if splits.test.len() < MIN_EVAL_TEST || splits.train.len() < MIN_EVAL_TRAIN {
        bail!(
            "{}: {} clusters are too few to evaluate: its test split holds {} and its training split {}, and `eval` scores at least {MIN_EVAL_TEST} test clusters next to baselines fitted on at least {MIN_EVAL_TRAIN} (a dataset of {} clusters or more); for the masses of a few clusters use `trainer predict`",
            path.display(),
            ds.len(),
            splits.test.len(),
            splits.train.len(),
            (ds.len()..)
                .find(|&n| {
                    let s = Splits::new(n, run.cfg.train.split_seed, Splits::DEFAULT);
                    s.test.len() >= MIN_EVAL_TEST && s.train.len() >= MIN_EVAL_TRAIN
                })
                .unwrap_or(usize::MAX)
        );
    }
    let (mu, sigma) = run.predict(&ds, &splits.test, EVAL_BATCH)?;
    Ok(EvalPredictions {
        dataset: ds,
        splits,
        mu,
        sigma,
        name: format!("CNN ({})", run.cfg.preset),
    })
}

/// Score a finished run on a dataset's test split (the run's own dataset by default):
/// all test clusters, and the detected ones.
pub fn eval(run_dir: &Path, dataset: Option<&Path>) -> Result<(Report, Report)> {
    let p = eval_predictions(run_dir, dataset)?;
    score_both(&p.name, &p.dataset, &p.splits, &p.mu, &p.sigma)
}
