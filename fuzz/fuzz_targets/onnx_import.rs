//! Any bytes as an ONNX model through the importer (onnx-ir's parser, then the mapping
//! onto the project's layer list): an error or an imported model, never a panic of ours.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let p = dir.path().join("model.onnx");
    if std::fs::write(&p, data).is_err() {
        return;
    }
    let _ = codegen::onnx::import(&p, &codegen::onnx::sidecar::Sidecar::default());
});
