//! What int8 costs in accuracy: the committed `edge` export (trained on seed-1 mocks) run
//! through codegen's f32 and int8 reference interpreters on freshly simulated clusters it
//! never saw, scatter of each against the true masses.

use codegen::interp::FloatPath;
use codegen::model::Model;
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
    let inputs: Vec<(&[u16], f32)> = calib_idx.map(|i| (ds.image(i), ds.redshift[i])).collect();
    let q = quantize(&folded, &calibrate(&folded, &inputs).unwrap()).unwrap();
    let (mut r32, mut r16, mut r8) = (Vec::new(), Vec::new(), Vec::new());
    for i in test_idx {
        let y = f64::from(ds.log_mass.as_ref().unwrap()[i]);
        r32.push(
            folded
                .predict(ds.image(i), ds.redshift[i], FloatPath::F32)
                .unwrap()
                .mu
                - y,
        );
        r16.push(
            folded
                .predict(ds.image(i), ds.redshift[i], FloatPath::F16)
                .unwrap()
                .mu
                - y,
        );
        r8.push(q.predict(ds.image(i), ds.redshift[i]).unwrap().mu - y);
    }
    let (s32, s16, s8) = (scatter(&r32), scatter(&r16), scatter(&r8));
    println!(
        "scatter on {} unseen clusters: f32 {s32:.4}, f16 {s16:.4}, int8 {s8:.4} dex",
        r32.len()
    );
    // The export is the model the trainer scored at 0.113 dex on its own test split.
    assert!((0.09..0.14).contains(&s32), "f32 {s32}");
    assert!((s16 - s32).abs() < 0.001, "f16 {s16} vs f32 {s32}");
    // Regression guard, not the target: issue 4 asks for at most 0.005 dex, measured on
    // 10,000 scoring clusters (MSE range calibration: +0.0026; `codegen --example int8_study`,
    // README). On 1,000 clusters the difference itself carries ~0.002 dex of noise.
    assert!(s8 - s32 <= 0.01, "int8 {s8} vs f32 {s32}");
}

/// codegen's f32 interpreter (bit-exact to the runtime's kernels, see codegen's tests)
/// computes the same network as burn's forward pass, on both CPU backends.
#[test]
fn f32_reference_equals_burn_forward_on_flex_and_ndarray() {
    use trainer::fit::config::Backend;
    use trainer::fit::prep::Preprocess;
    use trainer::fit::train::{device, predict};
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../codegen/tests/fixtures/edge-e30");
    let model = Model::load(&dir).unwrap();
    let folded = model.fold_batch_norm().unwrap();
    let desc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    let layers: Vec<codegen::arch::Layer> = serde_json::from_value(desc["layers"].clone()).unwrap();
    let pre: Preprocess = serde_json::from_value(desc["preprocess"].clone()).unwrap();
    let ds = generate_dataset(&tests::simulator(78, |_| {}), 300);
    let idx: Vec<usize> = (0..ds.len()).collect();
    for backend in [Backend::Flex, Backend::Ndarray] {
        let dev = device(backend);
        let net =
            trainer::fit::export::load_safetensors(&dir.join("model.safetensors"), &layers, &dev)
                .unwrap();
        let (mu, _) = predict(&net, &layers, &pre, &ds, &idx, &dev);
        for &i in &idx {
            let p = folded
                .predict(ds.image(i), ds.redshift[i], FloatPath::F32)
                .unwrap();
            // Same f32 arithmetic, different summation order: agreement to ~1e-5 dex.
            assert!(
                (p.mu - mu[i]).abs() < 2e-4,
                "{backend:?} cluster {i}: reference {} vs burn {}",
                p.mu,
                mu[i]
            );
        }
    }
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
    let hash = codegen::export::arch_hash(&folded);
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
