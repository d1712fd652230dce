//! Any bytes as a run's `calibration.npz` (zip archive of NPY arrays) read by
//! `codegen::export::read_calibration` and as a training sample's range by
//! `TrainingRange::of_sample`: an error naming the file, or samples, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let p = dir.path().join("calibration.npz");
    if std::fs::write(&p, data).is_err() {
        return;
    }
    if let Err(e) = codegen::export::read_calibration(&p, 25_000) {
        assert!(format!("{e:#}").contains("calibration.npz"));
    }
    let _ = codegen::load::TrainingRange::of_sample(&p);
});
