//! How the committed generated models (`models/`) are produced, so that a test can prove
//! they are what `codegen export` writes today and anyone can regenerate them with
//! `cargo run --release -p tests --example regen-models`.
//!
//! - `models/edge/`: the committed `edge` run (`codegen/tests/fixtures/edge-e30`) exported
//!   with a calibration sample of [`CALIB_CLUSTERS`] eRASS:8 mocks simulated with seed
//!   [`CALIB_SEED`] (first half calibrates int8, second half scores and provides the golden
//!   samples).
//! - `models/seed_lab/model.rs`: the code of the `seed-lab` architecture, exported from a
//!   seeded, untrained network of that preset (the code depends on the architecture only).

use anyhow::{Context, Result};
use codegen::export::{ExportOptions, export};
use std::path::Path;

/// The command recorded in the generated headers.
pub const COMMAND: &str = "cargo run --release -p tests --example regen-models";
/// Simulation seed of the calibration sample.
pub const CALIB_SEED: u64 = 2026;
/// Clusters in the calibration sample.
pub const CALIB_CLUSTERS: usize = 512;
/// Golden samples embedded with `edge`.
pub const SAMPLES: usize = 4;
/// Seed of the untrained `seed-lab` network.
pub const SEED_LAB_SEED: u64 = 7;

/// Files of `models/edge` that are generated.
pub const EDGE_FILES: [&str; 9] = [
    "model.rs",
    "model-arch.json",
    "model-f32.bin",
    "model-f16.bin",
    "model-int8.bin",
    "samples.rs",
    "samples-counts.bin",
    "report.md",
    "report.json",
];

/// The workspace root.
pub fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Write the `edge` export into `out` (the files in [`EDGE_FILES`]).
pub fn export_edge(out: &Path) -> Result<codegen::export::ExportSummary> {
    let tmp = tempfile::tempdir()?;
    let calib = tmp.path().join(format!(
        "mocks-erass8-seed{CALIB_SEED}-n{CALIB_CLUSTERS}.npz"
    ));
    trainer::generate::generate_dataset(&crate::simulator(CALIB_SEED, |_| {}), CALIB_CLUSTERS)
        .save(&calib)?;
    export(
        &workspace().join("codegen/tests/fixtures/edge-e30"),
        out,
        &ExportOptions {
            calib: Some(calib),
            name: "edge".into(),
            command: COMMAND.into(),
            samples: SAMPLES,
        },
    )
}

/// Write a run directory holding the seeded, untrained `seed-lab` network (model.json,
/// model.safetensors, calibration.npz with `clusters` mocks) into `dir`.
pub fn seed_lab_run(dir: &Path, clusters: usize) -> Result<()> {
    use trainer::fit::config::Preset;
    let layers = Preset::SeedLab.config().model.layers()?;
    let dev = trainer::fit::train::device(trainer::fit::config::Backend::Flex);
    let net =
        trainer::fit::net::init_seeded(&layers, trainer::fit::train::INPUT, &dev, SEED_LAB_SEED)?;
    let ds =
        trainer::generate::generate_dataset(&crate::simulator(SEED_LAB_SEED, |_| {}), clusters);
    let idx: Vec<usize> = (0..ds.len()).collect();
    let pre = trainer::fit::prep::Preprocess::fit(&ds, &idx, &[])?;
    trainer::fit::export::export(
        dir,
        &net,
        &layers,
        &pre,
        None,
        serde_json::json!({ "preset": "seed-lab", "untrained_seed": SEED_LAB_SEED }),
    )?;
    ds.save(&dir.join("calibration.npz"))
}

/// The generated module of the `seed-lab` architecture.
pub fn seed_lab_module() -> Result<String> {
    let tmp = tempfile::tempdir()?;
    seed_lab_run(tmp.path(), 8)?;
    let out = tmp.path().join("export");
    export(
        tmp.path(),
        &out,
        &ExportOptions {
            calib: None,
            name: "seed-lab".into(),
            command: COMMAND.into(),
            samples: 0,
        },
    )?;
    std::fs::read_to_string(out.join("model.rs")).context("reading the seed-lab module")
}

/// Regenerate `models/edge` and `models/seed_lab/model.rs` under `root`.
pub fn regenerate(root: &Path) -> Result<()> {
    export_edge(&root.join("models/edge"))?;
    let dir = root.join("models/seed_lab");
    std::fs::create_dir_all(&dir)?;
    codegen::export::write_atomic(&dir.join("model.rs"), seed_lab_module()?.as_bytes())
}
