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
