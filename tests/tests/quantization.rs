//! What int8 costs in accuracy: the committed `edge` export (trained on seed-1 mocks) run
//! through codegen's f32 and int8 reference interpreters on freshly simulated clusters it
//! never saw, scatter of each against the true masses.

use arch::interp::FloatPath;
use arch::model::Model;
use codegen::quantize::{calibrate, quantize};
use trainer::generate::generate_dataset;

fn scatter(r: &[f64]) -> f64 {
    let m = r.iter().sum::<f64>() / r.len() as f64;
    (r.iter().map(|v| (v - m).powi(2)).sum::<f64>() / r.len() as f64).sqrt()
}

#[test]
fn int8_scatter_cost_on_unseen_clusters() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../codegen/tests/fixtures/edge-e30");
    let folded = Model::load(&dir).unwrap().fold_batch_norm().unwrap();
    let ds = generate_dataset(&tests::simulator(77, |_| {}), 1200);
    let (calib_idx, test_idx) = (0..200, 200..ds.len());
    let inputs: Vec<(&[u16], &[f32])> = calib_idx
        .map(|i| (ds.image(i), std::slice::from_ref(&ds.redshift[i])))
        .collect();
    let q = quantize(&folded, &calibrate(&folded, &inputs).unwrap()).unwrap();
    let (mut r32, mut r16, mut r8) = (Vec::new(), Vec::new(), Vec::new());
    for i in test_idx {
        let y = f64::from(ds.log_mass.as_ref().unwrap()[i]);
        r32.push(
            folded
                .predict(ds.image(i), &[ds.redshift[i]], FloatPath::F32)
                .unwrap()
                .mu
                - y,
        );
        r16.push(
            folded
                .predict(ds.image(i), &[ds.redshift[i]], FloatPath::F16)
                .unwrap()
                .mu
                - y,
        );
        r8.push(q.predict(ds.image(i), &[ds.redshift[i]]).unwrap().mu - y);
    }
    let (s32, s16, s8) = (scatter(&r32), scatter(&r16), scatter(&r8));
    println!(
        "scatter on {} unseen clusters: f32 {s32:.4}, f16 {s16:.4}, int8 {s8:.4} dex",
        r32.len()
    );
    // The export is the model the trainer scored at 0.113 dex on its own test split.
    assert!((0.09..0.14).contains(&s32), "f32 {s32}");
    assert!((s16 - s32).abs() < 0.001, "f16 {s16} vs f32 {s32}");
    // Issue 4's target, at most 0.005 dex, on this set (0.0023 with MSE range calibration;
    // min/max gave about 0.006 on large sets). The figure quoted in the README comes from
    // 10,000 scoring clusters (+0.0026; `codegen --example int8_study`).
    assert!(s8 - s32 <= 0.005, "int8 {s8} vs f32 {s32}");
}

/// `codegen export` on a run directory: three blobs that the runtime's loader accepts for
/// this architecture, and a report with the accuracy of each dtype.
#[test]
fn export_writes_blobs_the_runtime_accepts() {
    use runtime::blob::{Blob, Dtype};
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../codegen/tests/fixtures/edge-e30");
    let run = tempfile::tempdir().unwrap();
    for f in ["model.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), run.path().join(f)).unwrap();
    }
    let ds = generate_dataset(&tests::simulator(79, |_| {}), 60);
    ds.save(&run.path().join("calibration.npz")).unwrap();
    let out = run.path().join("export");
    let opts = codegen::export::ExportOptions {
        calib: None,
        name: "test".into(),
        command: "codegen export (test)".into(),
        samples: 2,
    };
    let s = codegen::export::export(run.path(), &out, &opts).unwrap();
    assert_eq!(s.accuracy.len(), 3);
    let folded = Model::load(run.path()).unwrap().fold_batch_norm().unwrap();
    let hash = arch::load::arch_hash(&folded);
    #[repr(C, align(16))]
    struct Aligned([u8; 1 << 17]);
    for (dtype, name, tensors) in [
        (
            Dtype::F32,
            "f32",
            codegen::export::float_tensors(&folded, false),
        ),
        (
            Dtype::F16,
            "f16",
            codegen::export::float_tensors(&folded, true),
        ),
    ] {
        let bytes = std::fs::read(out.join(format!("model-{name}.bin"))).unwrap();
        let mut a = Box::new(Aligned([0; 1 << 17]));
        a.0[..bytes.len()].copy_from_slice(&bytes);
        let expected: Vec<_> = tensors.iter().map(|t| (t.elem(), t.len())).collect();
        let blob = Blob::parse(&a.0[..bytes.len()], dtype, hash, &expected).unwrap();
        assert_eq!(blob.len(), expected.len());
        // A blob for another architecture is refused.
        assert!(Blob::parse(&a.0[..bytes.len()], dtype, hash ^ 1, &expected).is_err());
    }
    let header =
        runtime::blob::Header::read(&std::fs::read(out.join("model-int8.bin")).unwrap()).unwrap();
    assert_eq!((header.dtype, header.arch_hash), (Dtype::Int8 as u8, hash));
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("| int8 |")
    );
}
