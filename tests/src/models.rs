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
//! - `models/edge_aware/`: the committed exposure-aware `edge` run (the redshift and the
//!   exposure join the dense head; `codegen/tests/fixtures/edge-aware-e30`, trained on
//!   exposures log-uniform in [`AWARE_EXPOSURE_RANGE`]) exported with a calibration sample of
//!   [`CALIB_CLUSTERS`] mocks of such exposures simulated with seed [`CALIB_SEED`]; the same
//!   files as `models/edge`. [`edge_aware_run`] writes a seeded, untrained network of the
//!   same architecture (its code is the same; the tests compare it with burn's forward).

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
/// Seed of the untrained exposure-aware `edge` network.
pub const EDGE_AWARE_SEED: u64 = 11;
/// Exposures (s) of the mocks of the exposure-aware `edge` run.
pub const AWARE_EXPOSURE_RANGE: (f64, f64) = (100.0, 30_000.0);

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
    export_fixture("edge-e30", "edge", "erass8", |_| {}, out)
}

/// Write the exposure-aware `edge` export into `out` (the files in [`EDGE_FILES`]).
pub fn export_edge_aware(out: &Path) -> Result<codegen::export::ExportSummary> {
    let (lo, hi) = AWARE_EXPOSURE_RANGE;
    export_fixture(
        "edge-aware-e30",
        "edge-aware",
        &format!("exp{lo}-{hi}"),
        |c| c.instrument.exposure_range_s = Some(AWARE_EXPOSURE_RANGE),
        out,
    )
}

/// Export the committed run `codegen/tests/fixtures/{fixture}` as `name` with golden
/// samples, calibrated on [`CALIB_CLUSTERS`] mocks (seed [`CALIB_SEED`], configured by
/// `tweak`; `what` names them).
fn export_fixture(
    fixture: &str,
    name: &str,
    what: &str,
    tweak: impl FnOnce(&mut trainer::sim::SimConfig),
    out: &Path,
) -> Result<codegen::export::ExportSummary> {
    let tmp = tempfile::tempdir()?;
    let calib = tmp.path().join(format!(
        "mocks-{what}-seed{CALIB_SEED}-n{CALIB_CLUSTERS}.npz"
    ));
    trainer::generate::generate_dataset(&crate::simulator(CALIB_SEED, tweak), CALIB_CLUSTERS)
        .save(&calib)?;
    export(
        &workspace().join("codegen/tests/fixtures").join(fixture),
        out,
        &ExportOptions {
            calib: Some(calib),
            name: name.into(),
            command: COMMAND.into(),
            samples: SAMPLES,
        },
    )
}

/// Write a run directory holding a seeded, untrained network of `model` (model.json,
/// model.safetensors, calibration.npz with `clusters` mocks simulated with `seed` and
/// `tweak`) into `dir`.
fn untrained_run(
    dir: &Path,
    model: &trainer::fit::config::ModelConfig,
    name: &str,
    seed: u64,
    clusters: usize,
    tweak: impl FnOnce(&mut trainer::sim::SimConfig),
) -> Result<()> {
    let layers = model.layers()?;
    let dev = trainer::fit::train::device(trainer::fit::config::Backend::Flex);
    let net = trainer::fit::net::init_seeded(&layers, trainer::fit::net::INPUT, &dev, seed)?;
    let ds = trainer::generate::generate_dataset(&crate::simulator(seed, tweak), clusters);
    let idx: Vec<usize> = (0..ds.len()).collect();
    let pre = trainer::fit::prep::Preprocess::fit(&ds, &idx, &model.aux_inputs)?;
    trainer::fit::export::export(
        dir,
        &net,
        &layers,
        &pre,
        None,
        serde_json::json!({ "preset": name, "untrained_seed": seed }),
    )?;
    ds.save(&dir.join("calibration.npz"))
}

/// Write a run directory holding the seeded, untrained `seed-lab` network (model.json,
/// model.safetensors, calibration.npz with `clusters` mocks) into `dir`.
pub fn seed_lab_run(dir: &Path, clusters: usize) -> Result<()> {
    use trainer::fit::config::Preset;
    let model = Preset::SeedLab.config().model;
    untrained_run(dir, &model, "seed-lab", SEED_LAB_SEED, clusters, |_| {})
}

/// Write a run directory holding the seeded, untrained exposure-aware `edge` network
/// (the `edge` preset with `aux_inputs = ["exposure_s"]`), with `clusters` mocks of
/// exposures log-uniform in [`AWARE_EXPOSURE_RANGE`], into `dir`.
pub fn edge_aware_run(dir: &Path, clusters: usize) -> Result<()> {
    use trainer::fit::config::Preset;
    let mut model = Preset::Edge.config().model;
    model.aux_inputs = vec![arch::model::AuxQuantity::Exposure];
    untrained_run(dir, &model, "edge-aware", EDGE_AWARE_SEED, clusters, |c| {
        c.instrument.exposure_range_s = Some(AWARE_EXPOSURE_RANGE)
    })
}

/// The generated module of the `seed-lab` architecture.
pub fn seed_lab_module() -> Result<String> {
    let tmp = tempfile::tempdir()?;
    seed_lab_run(tmp.path(), 8)?;
    module_of(tmp.path(), "seed-lab")
}

/// The generated module of the run in `run` (code only: no calibration, no samples).
fn module_of(run: &Path, name: &str) -> Result<String> {
    let out = run.join("export");
    export(
        run,
        &out,
        &ExportOptions {
            calib: None,
            name: name.into(),
            command: COMMAND.into(),
            samples: 0,
        },
    )?;
    std::fs::read_to_string(out.join("model.rs"))
        .with_context(|| format!("reading the {name} module"))
}

/// Regenerate `models/edge`, `models/seed_lab/model.rs` and `models/edge_aware` under `root`.
pub fn regenerate(root: &Path) -> Result<()> {
    export_edge(&root.join("models/edge"))?;
    let dir = root.join("models/seed_lab");
    std::fs::create_dir_all(&dir)?;
    codegen::export::write_atomic(&dir.join("model.rs"), seed_lab_module()?.as_bytes())?;
    export_edge_aware(&root.join("models/edge_aware"))?;
    Ok(())
}
