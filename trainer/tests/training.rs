//! Training behaviour: losses against closed forms, learning, exact resume,
//! determinism, backend agreement and configuration errors.

use burn::tensor::{Device, Tensor, TensorData};
use trainer::data::Dataset;
use trainer::fit::config::{Backend, Loss, Preset, RunConfig};
use trainer::fit::export::named_tensors;
use trainer::fit::net;
use trainer::fit::train::{self, device, predict};
use trainer::generate::generate_dataset;
use trainer::sim::{SimConfig, Simulator};

fn dataset(n: usize, seed: u64) -> Dataset {
    generate_dataset(
        &Simulator::new(SimConfig {
            seed,
            ..SimConfig::default()
        }),
        n,
    )
}

fn t1(v: &[f32], dev: &Device) -> Tensor<1> {
    Tensor::from_data(TensorData::new(v.to_vec(), [v.len()]), dev)
}

fn host(t: Tensor<1>) -> Vec<f64> {
    train::to_vec(t).into_iter().map(f64::from).collect()
}

#[test]
fn losses_match_their_closed_forms() {
    let dev = Device::flex();
    let (mu, sigma, y) = (
        [14.0f32, 14.5, 13.9],
        [0.1f32, 0.2, 0.05],
        [14.1f32, 14.0, 13.9],
    );
    let nll = host(net::nll(t1(&mu, &dev), t1(&sigma, &dev), t1(&y, &dev)));
    for i in 0..3 {
        let (m, s, t) = (f64::from(mu[i]), f64::from(sigma[i]), f64::from(y[i]));
        let expected = -((-(t - m).powi(2) / (2.0 * s * s)).exp()
            / (2.0 * std::f64::consts::PI * s * s).sqrt())
        .ln();
        assert!(
            (nll[i] - expected).abs() < 1e-4,
            "nll[{i}] = {}, expected {expected}",
            nll[i]
        );
    }
    let se = host(net::squared_error(t1(&mu, &dev), t1(&y, &dev)));
    for i in 0..3 {
        assert!((se[i] - f64::from(y[i] - mu[i]).powi(2)).abs() < 1e-5);
    }
    // The sigma head: softplus(raw) + floor = ln(1 + e^raw) + floor.
    let raw = Tensor::<2>::from_data(
        TensorData::new(vec![14.0f32, -2.0, 14.2, 0.0, 14.4, 3.0], [3, 2]),
        &dev,
    );
    let (m, s) = net::mean_sigma(raw);
    assert_eq!(host(m), vec![14.0, f64::from(14.2f32), f64::from(14.4f32)]);
    for (got, r) in host(s).iter().zip([-2.0f64, 0.0, 3.0]) {
        assert!((got - ((1.0 + r.exp()).ln() + net::SIGMA_FLOOR)).abs() < 1e-5);
    }
}

/// d NLL / d mu = -(y - mu) / sigma^2 and d NLL / d sigma = 1/sigma - (y - mu)^2 / sigma^3.
#[test]
fn nll_gradients_match_the_analytic_derivatives() {
    let dev = Device::flex().autodiff();
    let (m0, s0, y0) = (14.2f32, 0.15f32, 14.35f32);
    let mu = t1(&[m0], &dev).require_grad();
    let sigma = t1(&[s0], &dev).require_grad();
    let loss = net::nll(mu.clone(), sigma.clone(), t1(&[y0], &dev)).sum();
    let grads = loss.backward();
    let gm = host(mu.grad(&grads).expect("grad of mu"))[0];
    let gs = host(sigma.grad(&grads).expect("grad of sigma"))[0];
    let (m, s, y) = (f64::from(m0), f64::from(s0), f64::from(y0));
    assert!(
        (gm - (-(y - m) / (s * s))).abs() < 1e-3 * gm.abs().max(1.0),
        "{gm}"
    );
    assert!(
        (gs - (1.0 / s - (y - m).powi(2) / s.powi(3))).abs() < 1e-3 * gs.abs().max(1.0),
        "{gs}"
    );
}

fn quick(epochs: usize, max_train: usize) -> RunConfig {
    let mut cfg = Preset::Edge.config();
    cfg.train.epochs = epochs;
    cfg.train.max_train = max_train;
    cfg
}

fn scatter(ds: &Dataset, idx: &[usize], mu: &[f64]) -> f64 {
    let r: Vec<f64> = idx
        .iter()
        .zip(mu)
        .map(|(&i, m)| m - f64::from(ds.log_mass.as_ref().unwrap()[i]))
        .collect();
    let mean = r.iter().sum::<f64>() / r.len() as f64;
    (r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / r.len() as f64).sqrt()
}

/// A short run learns far more than the mean: test scatter well below the constant
/// predictor's (0.52 dex for a flat prior over 1.8 dex).
#[test]
fn short_training_beats_a_constant_by_a_wide_margin() {
    let ds = dataset(6000, 31);
    let dir = tempfile::tempdir().unwrap();
    let out = train::fit(&ds, &quick(5, 0), dir.path(), false, false).unwrap();
    let (mu, _) = predict(
        &out.net,
        &out.layers,
        &out.pre,
        &ds,
        &out.splits.test,
        &device(Backend::Flex),
    )
    .unwrap();
    let cnn = scatter(&ds, &out.splits.test, &mu);
    let mean = out
        .splits
        .train
        .iter()
        .map(|&i| f64::from(ds.log_mass.as_ref().unwrap()[i]))
        .sum::<f64>()
        / out.splits.train.len() as f64;
    let constant = scatter(&ds, &out.splits.test, &vec![mean; out.splits.test.len()]);
    assert!(cnn < 0.5 * constant, "CNN {cnn} vs constant {constant}");
}

/// Compare two sets of named tensors bit for bit, reporting the first difference briefly.
fn assert_same(a: &[(String, Vec<usize>, Vec<f32>)], b: &[(String, Vec<usize>, Vec<f32>)]) {
    assert_eq!(a.len(), b.len());
    for ((na, sa, va), (nb, sb, vb)) in a.iter().zip(b) {
        assert_eq!((na, sa), (nb, sb));
        if let Some(i) = va
            .iter()
            .zip(vb)
            .position(|(x, y)| x.to_bits() != y.to_bits())
        {
            panic!("{na}[{i}] differs: {} vs {}", va[i], vb[i]);
        }
    }
}

fn weights(dir: &std::path::Path, cfg: &RunConfig) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let layers = cfg.model.layers().unwrap();
    named_tensors(&trainer::fit::run::load_best(dir, &layers, &device(Backend::Flex)).unwrap())
}

/// Killing a run after a checkpoint and resuming gives bit-identical weights and history.
#[test]
fn resumed_run_equals_uninterrupted_run() {
    let ds = dataset(1500, 32);
    let mut cfg = quick(3, 400);
    cfg.model.dropout = 0.1; // exercise the host-drawn dropout masks too
    cfg.model.dense = vec![16];
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let full = train::fit(&ds, &cfg, a.path(), false, false).unwrap();
    train::fit_interrupted(&ds, &cfg, b.path(), false, 2).unwrap();
    let resumed = train::fit(&ds, &cfg, b.path(), true, false).unwrap();
    assert_eq!(full.state.history.len(), resumed.state.history.len());
    for (x, y) in full.state.history.iter().zip(&resumed.state.history) {
        assert_eq!(
            (x.train_loss, x.val_loss),
            (y.train_loss, y.val_loss),
            "epoch {}",
            x.epoch
        );
    }
    assert_same(&weights(a.path(), &cfg), &weights(b.path(), &cfg));
    // Starting over in a used directory without --resume is refused.
    let err = train::fit(&ds, &cfg, a.path(), false, false)
        .err()
        .expect("must refuse")
        .to_string();
    assert!(err.contains("--resume"), "{err}");
}

fn copy_dir(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

fn checkpoint_dirs(run: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(run)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("checkpoint") || n.starts_with(".checkpoint"))
        .collect();
    v.sort();
    v
}

/// Kills at the moments that used to lose a run or keep the wrong model: after a
/// checkpoint is installed but before the run directory's `best-model.bpk` and
/// `state.json` are written (in epoch 1: no best weights at all; in epoch 2: the
/// previous epoch's), and before the superseded checkpoint is removed. Each state is
/// made on disk as the kill leaves it; every one resumes to the uninterrupted run's
/// history and weights. What cannot be resumed is refused, loudly.
#[test]
fn a_kill_at_any_step_of_a_checkpoint_resumes_to_the_same_model() {
    let ds = dataset(1500, 34);
    let cfg = quick(3, 400);
    let full_dir = tempfile::tempdir().unwrap();
    let full = train::fit(&ds, &cfg, full_dir.path(), false, false).unwrap();
    let run = tempfile::tempdir().unwrap();
    let b = run.path();
    let keep = tempfile::tempdir().unwrap();

    // Killed in epoch 1 after installing its checkpoint, before writing the copies.
    train::fit_interrupted(&ds, &cfg, b, false, 1).unwrap();
    assert_eq!(checkpoint_dirs(b), ["checkpoint-0001"]);
    copy_dir(
        &b.join("checkpoint-0001"),
        &keep.path().join("checkpoint-0001"),
    );
    std::fs::copy(b.join("state.json"), keep.path().join("state-1.json")).unwrap();
    std::fs::remove_file(b.join("best-model.bpk")).unwrap();
    std::fs::remove_file(b.join("state.json")).unwrap();
    train::fit_interrupted(&ds, &cfg, b, true, 2).unwrap();
    assert_eq!(checkpoint_dirs(b), ["checkpoint-0002"]);

    // Killed in epoch 2 after installing, before the copies and before removing epoch 1's.
    copy_dir(
        &keep.path().join("checkpoint-0001"),
        &b.join("checkpoint-0001"),
    );
    std::fs::copy(
        keep.path().join("checkpoint-0001/best-model.bpk"),
        b.join("best-model.bpk"),
    )
    .unwrap();
    std::fs::copy(keep.path().join("state-1.json"), b.join("state.json")).unwrap();
    let resumed = train::fit(&ds, &cfg, b, true, false).unwrap();
    assert_eq!(checkpoint_dirs(b), ["checkpoint-0003"]);
    let losses = |h: &[trainer::fit::run::EpochRecord]| -> Vec<(f64, f64)> {
        h.iter().map(|r| (r.train_loss, r.val_loss)).collect()
    };
    assert_eq!(losses(&full.state.history), losses(&resumed.state.history));
    assert_eq!(full.state.best_epoch, resumed.state.best_epoch);
    assert_same(&weights(full_dir.path(), &cfg), &weights(b, &cfg));

    // Another dataset is refused, as is a damaged checkpoint (never a silent restart).
    let other = dataset(1500, 35);
    let err = format!(
        "{:#}",
        train::fit(&other, &cfg, b, true, false).err().unwrap()
    );
    assert!(err.contains("another dataset"), "{err}");
    std::fs::remove_file(b.join("checkpoint-0003/model.bpk")).unwrap();
    let err = format!("{:#}", train::fit(&ds, &cfg, b, true, false).err().unwrap());
    assert!(
        err.contains("checkpoint-0003") && err.contains("model.bpk"),
        "{err}"
    );
    // Nothing to resume in a directory whose run never finished an epoch.
    let empty = tempfile::tempdir().unwrap();
    let err = format!(
        "{:#}",
        train::fit(&ds, &cfg, empty.path(), true, false)
            .err()
            .unwrap()
    );
    assert!(err.contains("nothing to resume"), "{err}");
}

/// The same seed trains the same model whatever the number of threads.
#[test]
fn training_is_identical_with_one_and_two_threads() {
    let ds = dataset(1200, 33);
    let cfg = quick(2, 400);
    let run = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| train::fit(&ds, &cfg, dir.path(), false, false))
            .unwrap();
        weights(dir.path(), &cfg)
    };
    assert_same(&run(1), &run(2));
}

/// burn-ndarray and flex compute the same forward pass of the same weights.
#[test]
fn ndarray_and_flex_agree_on_a_trained_network() {
    let ds = dataset(1000, 34);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick(1, 300);
    cfg.model.batch_norm = true;
    let out = train::fit(&ds, &cfg, dir.path(), false, false).unwrap();
    let layers = &out.layers;
    let flex = trainer::fit::run::load_best(dir.path(), layers, &device(Backend::Flex)).unwrap();
    let nd = trainer::fit::run::load_best(dir.path(), layers, &device(Backend::Ndarray)).unwrap();
    let idx: Vec<usize> = out.splits.test.iter().copied().take(64).collect();
    let (m1, s1) = predict(&flex, layers, &out.pre, &ds, &idx, &device(Backend::Flex)).unwrap();
    let (m2, s2) = predict(&nd, layers, &out.pre, &ds, &idx, &device(Backend::Ndarray)).unwrap();
    for i in 0..idx.len() {
        assert!(
            (m1[i] - m2[i]).abs() < 1e-4 && (s1[i] - s2[i]).abs() < 1e-5,
            "cluster {i}: {} {} vs {} {}",
            m1[i],
            s1[i],
            m2[i],
            s2[i]
        );
    }
}

#[test]
fn bad_configurations_are_refused_clearly() {
    let ds = dataset(300, 35);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick(1, 100);
    cfg.model.blocks[0].kernel = 2; // even kernel with "same" padding
    let e = train::fit(&ds, &cfg, dir.path(), false, false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("odd kernel"), "{e}");
    let mut cfg = quick(1, 100);
    cfg.train.lr = 0.0;
    assert!(
        train::fit(&ds, &cfg, dir.path(), false, false)
            .err()
            .unwrap()
            .to_string()
            .contains("lr")
    );
    let mut cfg = quick(1, 100);
    cfg.model.blocks[0].pool = "median".into();
    assert!(
        train::fit(&ds, &cfg, dir.path(), false, false)
            .err()
            .unwrap()
            .to_string()
            .contains("median")
    );
    let mut cfg = quick(1, 100);
    cfg.model.blocks.iter_mut().for_each(|b| b.pool_size = 8); // 25 -> 3 -> 0: does not fit
    assert!(
        train::fit(&ds, &cfg, dir.path(), false, false)
            .err()
            .unwrap()
            .to_string()
            .contains("does not fit")
    );
    // Dilation with "same" padding keeps the map's size (burn's own `Same` ignored the
    // dilation and the head's input no longer matched: a panic inside burn).
    let mut cfg = quick(1, 100);
    cfg.model.blocks.iter_mut().for_each(|b| b.dilation = 2);
    let d = tempfile::tempdir().unwrap();
    train::fit(&ds, &cfg, d.path(), false, false).unwrap();
    // Absurd sizes are refused before anything is allocated.
    let mut cfg = quick(1, 100);
    cfg.model.blocks[0].filters = 1 << 30;
    let e = train::fit(&ds, &cfg, dir.path(), false, false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("filters (at most"), "{e}");
    let mut cfg = quick(1, 100);
    cfg.model.blocks.iter_mut().for_each(|b| b.filters = 4096);
    cfg.model.blocks.truncate(1);
    cfg.train.batch_size = 1 << 20;
    let e = train::fit(&ds, &cfg, dir.path(), false, false)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("GB for activations"), "{e}");
    let e = toml::from_str::<RunConfig>("[train]\nlearning_rate = 0.1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("learning_rate"), "{e}");
    let mut unlabeled = ds.clone();
    unlabeled.log_mass = None;
    assert!(
        train::fit(&unlabeled, &quick(1, 100), dir.path(), false, false)
            .err()
            .unwrap()
            .to_string()
            .contains("log_mass")
    );
    let _ = Loss::Nll;
}
