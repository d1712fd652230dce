//! Any bytes as an ONNX model through the importer (onnx-ir's parser, then the mapping
//! onto the project's layer list): an error or an imported model, never a panic of ours.
//! Each input is imported twice: with the default sidecar, and with one that names an
//! auxiliary `exposure` input (the seeds `onnx-*exposure*.onnx` have one), so mutations of
//! a three-input graph reach the auxiliary-input mapping too.
#![no_main]

use codegen::onnx::sidecar::{Sidecar, SidecarExtra};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let p = dir.path().join("model.onnx");
    if std::fs::write(&p, data).is_err() {
        return;
    }
    let _ = codegen::onnx::import(&p, &Sidecar::default());
    let aux = Sidecar {
        extra: vec![SidecarExtra {
            input: "exposure".into(),
            quantity: "exposure_s".into(),
            shift: 3.5,
            scale: 2.0,
        }],
        ..Sidecar::default()
    };
    let _ = codegen::onnx::import(&p, &aux);
});
