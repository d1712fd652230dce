//! The command line: bad arguments and bad files give one clear line, not a panic.

use std::process::Command;

fn trainer(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(args)
        .output()
        .expect("run trainer");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn simulate_rejects_bad_ranges_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.npz");
    let out = out.to_str().unwrap();
    let (ok, msg) = trainer(&[
        "simulate", "--n", "5", "--out", out, "--z-min", "1.0", "--z-max", "0.5",
    ]);
    assert!(!ok && msg.contains("redshift range"), "{msg}");
    let (ok, msg) = trainer(&["simulate", "--n", "5", "--out", out, "--exposure=-3"]);
    assert!(!ok && msg.contains("exposure must be positive"), "{msg}");
    let (ok, msg) = trainer(&["simulate", "--n", "5", "--out", "x.h5"]);
    assert!(!ok && msg.contains(".npz"), "{msg}");
    assert!(!msg.contains("panicked"), "{msg}");
}

#[test]
fn simulate_then_baseline_runs_and_a_bad_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.npz");
    let (ok, msg) = trainer(&[
        "--threads",
        "2",
        "simulate",
        "--n",
        "300",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{msg}");
    let (ok, msg) = trainer(&["baseline", out.to_str().unwrap()]);
    assert!(
        ok && msg.contains("count rate") && msg.contains("oracle"),
        "{msg}"
    );
    let bad = dir.path().join("bad.npz");
    std::fs::write(&bad, b"PK\x03\x04 truncated").unwrap();
    let (ok, msg) = trainer(&["baseline", bad.to_str().unwrap()]);
    assert!(
        !ok && msg.contains("bad.npz") && !msg.contains("panicked"),
        "{msg}"
    );
}

#[test]
fn print_config_is_valid_toml_that_round_trips() {
    let (ok, text) = trainer(&["simulate", "--print-config"]);
    assert!(ok, "{text}");
    let parsed: trainer::sim::SimConfig = toml::from_str(&text).expect("printed config parses");
    assert_eq!(parsed, trainer::sim::SimConfig::default());
}

#[test]
fn fit_eval_and_scan_run_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.npz");
    let data_s = data.to_str().unwrap();
    let (ok, msg) = trainer(&["simulate", "--n", "600", "--quiet", "--out", data_s]);
    assert!(ok, "{msg}");
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let quick = ["--epochs", "1", "--max-train", "200", "--quiet"];
    let mut args = vec!["fit", "--dataset", data_s, "--run-dir", run_s];
    args.extend(quick);
    let (ok, msg) = trainer(&args);
    assert!(
        ok && msg.contains("CNN (edge)") && msg.contains("count rate") && msg.contains("coverage"),
        "{msg}"
    );
    for f in [
        "config.toml",
        "metrics.json",
        "model.json",
        "model.safetensors",
        "loss.png",
        "predictions.png",
        "best-model.bpk",
        "checkpoint-0001/model.bpk",
        "checkpoint-0001/best-model.bpk",
        "calibration.npz",
    ] {
        assert!(run.join(f).exists(), "missing {f}");
    }
    // Resuming a finished run with more epochs continues it.
    let (ok, msg) = trainer(&[
        "fit",
        "--run-dir",
        run_s,
        "--resume",
        "--epochs",
        "2",
        "--max-train",
        "200",
        "--quiet",
    ]);
    assert!(ok && msg.contains("CNN (edge)"), "{msg}");
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["history"].as_array().unwrap().len(), 2);
    let (ok, msg) = trainer(&["eval", run_s]);
    assert!(
        ok && msg.contains("CNN (edge)") && msg.contains("oracle"),
        "{msg}"
    );
    // A bad override names itself.
    let (ok, msg) = trainer(&[
        "fit",
        "--dataset",
        data_s,
        "--run-dir",
        dir.path().join("r2").to_str().unwrap(),
        "--loss",
        "huber",
    ]);
    assert!(
        !ok && msg.contains("loss") && msg.contains("nll") && !msg.contains("panicked"),
        "{msg}"
    );
    // explain writes its panels, filters, feature maps, profile and numbers.
    let ex = dir.path().join("explain");
    let (ok, msg) = trainer(&[
        "explain",
        run_s,
        data_s,
        "--n",
        "1",
        "--population",
        "8",
        "--steps",
        "16",
        "--quiet",
        "--out",
        ex.to_str().unwrap(),
    ]);
    assert!(
        ok && msg.contains("completeness error") && msg.contains("cool core"),
        "{msg}"
    );
    let names: Vec<String> = std::fs::read_dir(&ex)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for want in ["filters-conv0.png", "radial.png", "explain.json"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(names.iter().any(|n| n.starts_with("cluster-")), "{names:?}");
    assert!(
        names.iter().filter(|n| n.starts_with("features-")).count() == 3,
        "{names:?}"
    );
    let (ok, msg) = trainer(&[
        "explain",
        run_s,
        data_s,
        "--patch",
        "4",
        "--out",
        ex.to_str().unwrap(),
    ]);
    assert!(!ok && msg.contains("--patch 4"), "{msg}");
    let (ok, msg) = trainer(&[
        "explain",
        run_s,
        data_s,
        "--clusters",
        "nope",
        "--out",
        ex.to_str().unwrap(),
    ]);
    assert!(!ok && msg.contains("\"nope\""), "{msg}");
    // eval on a handful of clusters says why it cannot score them, and what to use.
    for n in ["1", "10"] {
        let tiny = dir.path().join(format!("tiny{n}.npz"));
        let tiny_s = tiny.to_str().unwrap();
        let (ok, msg) = trainer(&["simulate", "--n", n, "--quiet", "--out", tiny_s]);
        assert!(ok, "{msg}");
        let (ok, msg) = trainer(&["eval", run_s, "--dataset", tiny_s]);
        assert!(
            !ok && msg.contains("too few to evaluate")
                && msg.contains("trainer predict")
                && msg.contains(tiny_s),
            "{msg}"
        );
    }
    // The run records its dataset's absolute path: eval works from any directory.
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert!(
        std::path::Path::new(recorded["dataset"].as_str().unwrap()).is_absolute(),
        "{recorded}"
    );
    // eval of something that is not a run.
    let (ok, msg) = trainer(&["eval", dir.path().to_str().unwrap()]);
    assert!(!ok && msg.contains("not a run directory"), "{msg}");
    let scan = dir.path().join("scan");
    let (ok, msg) = trainer(&[
        "scan",
        "--param",
        "dropout=0,0.3",
        "--dataset",
        data_s,
        "--out",
        scan.to_str().unwrap(),
        "--epochs",
        "1",
        "--max-train",
        "150",
        "--dense",
        "16",
    ]);
    assert!(ok && msg.contains("test scatter"), "{msg}");
    assert!(scan.join("scan.png").exists() && scan.join("scan.json").exists());
}
