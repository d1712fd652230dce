//! The generated model code (`models/`, written by `codegen export`) against independent
//! references: burn's forward pass of the same weights (flex and ndarray), codegen's
//! scalar reference interpreters (bit for bit in int8 on every path, and in f32/f16 when the
//! scalar kernels run; within 2e-5 dex on a SIMD host), the golden vectors exported with the
//! model, and every kind of damaged blob.

use arch::interp::FloatPath;
use arch::model::{FoldedModel, Model};
use arch::quant::QuantModel;
use codegen::blob::Tensor;
use codegen::export::{float_tensors, int8_tensors};
use codegen::quantize::{calibrate, quantize};
use models::{blobs, edge, edge_aware, edge_samples, seed_lab};
use runtime::blob::{Aligned, BlobError, Dtype};
use runtime::kernels::simd::{engines, with_path};
use runtime::{Error, Estimate};
use std::path::{Path, PathBuf};
use trainer::data::Dataset;
use trainer::generate::generate_dataset;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../codegen/tests/fixtures/edge-e30")
}

/// A blob copied into 16-byte-aligned heap memory.
fn aligned(bytes: &[u8]) -> Box<Aligned<[u8; 1 << 20]>> {
    let mut a = Box::new(Aligned([0u8; 1 << 20]));
    a.0[..bytes.len()].copy_from_slice(bytes);
    a
}

/// The declared length of the blob at the start of `buf` (header bytes 20..24).
fn len(buf: &[u8]) -> usize {
    u32::from_le_bytes(buf[20..24].try_into().unwrap()) as usize
}

fn arena<T: Copy + Default + std::fmt::Debug, const N: usize>() -> Box<[T; N]> {
    vec![T::default(); N].into_boxed_slice().try_into().unwrap()
}

/// A zeroed convolution scratch on the heap (a model's `Scratch` can be large for the SIMD
/// paths).
fn scratch<T, const N: usize>() -> Box<runtime::model::Scratch<T, N>>
where
    runtime::model::Scratch<T, N>: Default,
{
    // SAFETY: `Scratch` is implemented (Default) only for i16 and f32 values, for which
    // all-zero bytes are valid.
    unsafe { Box::new_zeroed().assume_init() }
}

fn bits(e: Estimate) -> [u32; 2] {
    [e.log_mass.to_bits(), e.sigma.to_bits()]
}

fn ref_bits(p: arch::interp::Prediction) -> [u32; 2] {
    [(p.mu as f32).to_bits(), (p.sigma as f32).to_bits()]
}

/// Tolerance (dex, on log mass and sigma) of the float models' SIMD path against the scalar
/// reference: fused multiply-add and another summation order move the last bits of every
/// accumulator; over the network that stays far below 1e-5 dex (measured: about 1e-6).
const SIMD_FLOAT_TOL: f32 = 2e-5;

/// True when the float kernels run the scalar reference in this build on this machine.
fn float_reference() -> bool {
    runtime::kernels::simd::active() == runtime::kernels::simd::Path::Reference
}

/// A float model's estimate against the reference's bits: identical when the scalar kernels
/// run, within [`SIMD_FLOAT_TOL`] on a SIMD path. Returns whether the bits differ.
fn float_close(got: Estimate, want: [u32; 2], what: &str) -> bool {
    if float_reference() {
        assert_eq!(bits(got), want, "{what}");
        return false;
    }
    let w = [f32::from_bits(want[0]), f32::from_bits(want[1])];
    assert!(
        (got.log_mass - w[0]).abs() <= SIMD_FLOAT_TOL && (got.sigma - w[1]).abs() <= SIMD_FLOAT_TOL,
        "{what}: {got:?} vs reference {w:?}"
    );
    bits(got) != want
}

/// int8 model of `folded` calibrated on `calib` clusters of `ds`, and its blob.
fn int8_blob(
    folded: &FoldedModel,
    ds: &Dataset,
    calib: std::ops::Range<usize>,
) -> (QuantModel, Vec<u8>) {
    let scalars: Vec<Vec<f32>> = calib.clone().map(|i| raw_scalars(folded, ds, i)).collect();
    let inputs: Vec<(&[u16], &[f32])> = calib
        .zip(&scalars)
        .map(|(i, s)| (ds.image(i), s.as_slice()))
        .collect();
    let q = quantize(folded, &calibrate(folded, &inputs).unwrap()).unwrap();
    let hash = arch::load::arch_hash(folded);
    let blob = codegen::blob::write(Dtype::Int8, hash, &int8_tensors(folded, &q));
    (q, blob)
}

/// The f32, f16 and int8 blobs of `folded` for the architecture `hash` (int8 calibrated on
/// clusters 0..20 of `ds`), aligned for in-place use, with the int8 model.
fn test_blobs(
    folded: &FoldedModel,
    ds: &Dataset,
    hash: u64,
) -> (QuantModel, [Box<Aligned<[u8; 1 << 20]>>; 3]) {
    let f32b = aligned(&codegen::blob::write(
        Dtype::F32,
        hash,
        &float_tensors(folded, false),
    ));
    let f16b = aligned(&codegen::blob::write(
        Dtype::F16,
        hash,
        &float_tensors(folded, true),
    ));
    let (q, i8b) = int8_blob(folded, ds, 0..20);
    (q, [f32b, f16b, aligned(&i8b)])
}

/// The generated f32 estimates `gen_mu` of clusters `idx` equal burn's forward pass `burn`
/// ([`burn_mu`]: flex and ndarray) within 2e-4 dex (relative above 1); `what` names the run.
fn burn_agrees(burn: &[(String, Vec<f64>)], idx: &[usize], gen_mu: &[f64], what: &str) {
    for (backend, mu) in burn {
        for (k, m) in mu.iter().enumerate() {
            assert!(
                (gen_mu[k] - m).abs() < 2e-4 * m.abs().max(1.0),
                "{what}: {backend} cluster {}: generated {} vs burn {m}",
                idx[k],
                gen_mu[k]
            );
        }
    }
}

/// The raw scalar inputs `folded` takes for cluster `i` of `ds`: the redshift, then the
/// exposure if it takes one.
fn raw_scalars(folded: &FoldedModel, ds: &Dataset, i: usize) -> Vec<f32> {
    let mut v = vec![ds.redshift[i]];
    for e in &folded.preprocess.extra {
        match e.quantity {
            arch::model::AuxQuantity::Exposure => v.push(ds.exposure(i).unwrap() as f32),
        }
    }
    v
}

/// burn's forward pass (mean log mass) of a run's exported weights on clusters `idx` of `ds`,
/// on flex and on ndarray.
fn burn_mu(run: &Path, ds: &Dataset, idx: &[usize]) -> Vec<(String, Vec<f64>)> {
    use trainer::fit::config::Backend;
    use trainer::fit::train::{device, predict};
    let model = Model::load(run).unwrap();
    let layers = model.desc.layers.clone();
    let pre: trainer::fit::prep::Preprocess =
        serde_json::from_value(serde_json::to_value(&model.desc.preprocess).unwrap()).unwrap();
    [Backend::Flex, Backend::Ndarray]
        .into_iter()
        .map(|backend| {
            let dev = device(backend);
            let net = trainer::fit::export::load_safetensors(
                &run.join("model.safetensors"),
                &layers,
                &dev,
            )
            .unwrap();
            (
                format!("{backend:?}"),
                predict(&net, &layers, &pre, ds, idx, &dev).unwrap().0,
            )
        })
        .collect()
}

/// The committed `models/` are exactly what the exporter writes today.
#[test]
fn committed_models_are_a_fresh_export() {
    let tmp = tempfile::tempdir().unwrap();
    tests::models::export_edge(tmp.path()).unwrap();
    let committed = tests::models::workspace().join("models");
    let hint = "regenerate with `cargo run --release -p tests --example regen-models` and commit";
    for f in tests::models::EDGE_FILES {
        let fresh = std::fs::read(tmp.path().join(f)).unwrap();
        let old = std::fs::read(committed.join("edge").join(f)).unwrap();
        assert!(fresh == old, "models/edge/{f} is stale: {hint}");
    }
    let fresh = tests::models::seed_lab_module().unwrap();
    let old = std::fs::read_to_string(committed.join("seed_lab/model.rs")).unwrap();
    assert!(fresh == old, "models/seed_lab/model.rs is stale: {hint}");
    assert!(old.contains("Do not edit"));
    let tmp = tempfile::tempdir().unwrap();
    tests::models::export_edge_aware(tmp.path()).unwrap();
    for f in tests::models::EDGE_FILES {
        let fresh = std::fs::read(tmp.path().join(f)).unwrap();
        let old = std::fs::read(committed.join("edge_aware").join(f)).unwrap();
        assert!(fresh == old, "models/edge_aware/{f} is stale: {hint}");
    }
}

/// The generated `edge` code on the embedded golden samples gives the exported host results
/// bit for bit in int8, and the float dtypes too when the scalar kernels run (within
/// [`SIMD_FLOAT_TOL`] on a SIMD host; the golden vectors carry their provenance in samples.rs).
#[test]
fn edge_reproduces_its_golden_vectors() {
    let f32m = edge::f32::Model::new(&blobs::EDGE_F32.0).unwrap();
    let f16m = edge::f16::Model::new(&blobs::EDGE_F16.0).unwrap();
    let i8m = edge::int8::Model::new(&blobs::EDGE_INT8.0).unwrap();
    let (mut af, mut ai) = (
        arena::<f32, { edge::ARENA_LEN }>(),
        arena::<i8, { edge::ARENA_LEN }>(),
    );
    let (mut sf, mut si) = (
        scratch::<f32, { edge::SCRATCH_F32 }>(),
        scratch::<i16, { edge::SCRATCH_S8 }>(),
    );
    // The plan whose first convolution streams its input (what `infer` runs on Cortex-M and
    // aarch64), with its smaller arena.
    let (mut wf, mut wi) = (
        arena::<f32, { edge::ARENA_STREAMED }>(),
        arena::<i8, { edge::ARENA_STREAMED }>(),
    );
    const { assert!(edge::ARENA_STREAMED < edge::ARENA_WHOLE) };
    let mut ai_whole = arena::<i8, { edge::ARENA_WHOLE }>();
    // On every engine this CPU has (reference, AVX2, AVX-512 on x86-64), in this process.
    for p in engines() {
        with_path(p, || {
            assert_eq!(runtime::kernels::simd::active(), p);
            for i in 0..edge_samples::N {
                let counts = edge_samples::counts(i).unwrap();
                let z = edge_samples::REDSHIFT[i];
                float_close(
                    f32m.infer(counts, &[z], &mut af, &mut sf).unwrap(),
                    edge_samples::F32[i],
                    &format!("f32 {i} {p:?}"),
                );
                float_close(
                    f16m.infer(counts, &[z], &mut af, &mut sf).unwrap(),
                    edge_samples::F16[i],
                    &format!("f16 {i} {p:?}"),
                );
                assert_eq!(
                    bits(i8m.infer(counts, &[z], &mut ai, &mut si).unwrap()),
                    edge_samples::INT8[i],
                    "int8 {i} {p:?}"
                );
                assert_eq!(
                    bits(i8m.infer_streamed(counts, &[z], &mut wi, &mut si).unwrap()),
                    edge_samples::INT8[i],
                    "int8 streamed {i} {p:?}"
                );
                assert_eq!(
                    bits(
                        i8m.infer_whole(counts, &[z], &mut ai_whole, &mut si)
                            .unwrap()
                    ),
                    edge_samples::INT8[i],
                    "int8 whole {i} {p:?}"
                );
                float_close(
                    f32m.infer_streamed(counts, &[z], &mut wf, &mut sf).unwrap(),
                    edge_samples::F32[i],
                    &format!("f32 streamed {i} {p:?}"),
                );
                float_close(
                    f16m.infer_streamed(counts, &[z], &mut wf, &mut sf).unwrap(),
                    edge_samples::F16[i],
                    &format!("f16 streamed {i} {p:?}"),
                );
                // Sanity of the samples themselves: a plausible mass near the truth.
                let mu = f32::from_bits(edge_samples::F32[i][0]);
                assert!(
                    (mu - edge_samples::TRUE_LOG_MASS[i]).abs() < 0.6,
                    "sample {i}: {mu}"
                );
            }
        });
    }
    assert!(edge_samples::counts(edge_samples::N).is_none());
}

/// On a few hundred unseen mocks: the generated f32 model equals burn's forward pass of the
/// same weights on both backends within 2e-4 dex (different summation order), the int8
/// model equals codegen's scalar reference bit for bit and is deterministic, and f32/f16
/// equal theirs bit for bit on the scalar kernels, within 2e-5 dex on a SIMD host.
#[test]
fn edge_generated_code_matches_burn_and_the_scalar_references() {
    let dir = fixture();
    let model = Model::load(&dir).unwrap();
    let folded = model.fold_batch_norm().unwrap();
    let ds = generate_dataset(&tests::simulator(81, |_| {}), 300);
    let (q, qblob) = int8_blob(&folded, &ds, 0..64);
    let qlen = qblob.len();
    let qblob = aligned(&qblob);
    // Exactly the blob: bytes after its declared end are refused.
    assert_eq!(
        edge::int8::Model::new(&qblob.0[..]).map(|_| ()),
        Err(BlobError::TrailingBytes)
    );
    let i8m = edge::int8::Model::new(&qblob.0[..qlen]).unwrap();
    let f32m = edge::f32::Model::new(&blobs::EDGE_F32.0).unwrap();
    let f16m = edge::f16::Model::new(&blobs::EDGE_F16.0).unwrap();
    let (mut af, mut ai) = (
        arena::<f32, { edge::ARENA_LEN }>(),
        arena::<i8, { edge::ARENA_LEN }>(),
    );
    let (mut sf, mut si) = (
        scratch::<f32, { edge::SCRATCH_F32 }>(),
        scratch::<i16, { edge::SCRATCH_S8 }>(),
    );
    // The scalar references and burn once; the generated code on every engine this CPU has
    // (reference, AVX2, AVX-512 on x86-64), in this process.
    let want: Vec<[[u32; 2]; 3]> = (0..ds.len())
        .map(|i| {
            let (c, z) = (ds.image(i), ds.redshift[i]);
            [
                ref_bits(folded.predict(c, &[z], FloatPath::F32).unwrap()),
                ref_bits(folded.predict(c, &[z], FloatPath::F16).unwrap()),
                ref_bits(q.predict(c, &[z]).unwrap()),
            ]
        })
        .collect();
    let idx: Vec<usize> = (0..ds.len()).collect();
    let burn = burn_mu(&dir, &ds, &idx);
    for p in engines() {
        with_path(p, || {
            let mut gen_mu = Vec::new();
            let mut differ = 0;
            for (i, w) in want.iter().enumerate() {
                let (c, z) = (ds.image(i), ds.redshift[i]);
                let e = f32m.infer(c, &[z], &mut af, &mut sf).unwrap();
                differ += usize::from(float_close(e, w[0], &format!("f32 {i} {p:?}")));
                gen_mu.push(f64::from(e.log_mass));
                let e16 = f16m.infer(c, &[z], &mut af, &mut sf).unwrap();
                differ += usize::from(float_close(e16, w[1], &format!("f16 {i} {p:?}")));
                let e8 = i8m.infer(c, &[z], &mut ai, &mut si).unwrap();
                assert_eq!(bits(e8), w[2], "int8 {i} {p:?}");
                // Deterministic: a second run through a dirty arena gives the same bits.
                assert_eq!(
                    bits(i8m.infer(c, &[z], &mut ai, &mut si).unwrap()),
                    bits(e8)
                );
            }
            // On a SIMD engine the generated code really took it: FMA rounding shows.
            assert!(
                float_reference() || differ > 0,
                "no float result differs on {p:?}: did SIMD run?"
            );
            burn_agrees(&burn, &idx, &gen_mu, &format!("edge {p:?}"));
        });
    }
}

/// The `seed-lab` preset (the lab's network: convolution first, no fused first pool, five
/// dense layers) exports and runs through its generated code in every dtype, equal to the
/// scalar references (int8 bit for bit; float as above) and to burn within 2e-4 (relative).
#[test]
fn seed_lab_exports_and_runs() {
    let run = tempfile::tempdir().unwrap();
    tests::models::seed_lab_run(run.path(), 40).unwrap();
    let model = Model::load(run.path()).unwrap();
    let folded = model.fold_batch_norm().unwrap();
    assert_eq!(arch::load::arch_hash(&folded), seed_lab::ARCH_HASH);
    let ds = Dataset::load(&run.path().join("calibration.npz")).unwrap();
    let (q, [f32b, f16b, i8b]) = test_blobs(&folded, &ds, seed_lab::ARCH_HASH);
    let f32m = seed_lab::f32::Model::new(&f32b.0[..len(&f32b.0)]).unwrap();
    let f16m = seed_lab::f16::Model::new(&f16b.0[..len(&f16b.0)]).unwrap();
    let i8m = seed_lab::int8::Model::new(&i8b.0[..len(&i8b.0)]).unwrap();
    let (mut af, mut ai) = (
        arena::<f32, { seed_lab::ARENA_LEN }>(),
        arena::<i8, { seed_lab::ARENA_LEN }>(),
    );
    let (mut sf, mut si) = (
        scratch::<f32, { seed_lab::SCRATCH_F32 }>(),
        scratch::<i16, { seed_lab::SCRATCH_S8 }>(),
    );
    let idx: Vec<usize> = (20..40).collect();
    let want: Vec<[[u32; 2]; 3]> = idx
        .iter()
        .map(|&i| {
            let (c, z) = (ds.image(i), ds.redshift[i]);
            [
                ref_bits(folded.predict(c, &[z], FloatPath::F32).unwrap()),
                ref_bits(folded.predict(c, &[z], FloatPath::F16).unwrap()),
                ref_bits(q.predict(c, &[z]).unwrap()),
            ]
        })
        .collect();
    let burn = burn_mu(run.path(), &ds, &idx);
    for p in engines() {
        with_path(p, || {
            let mut gen_mu = Vec::new();
            for (&i, w) in idx.iter().zip(&want) {
                let (c, z) = (ds.image(i), ds.redshift[i]);
                let e = f32m.infer(c, &[z], &mut af, &mut sf).unwrap();
                float_close(e, w[0], &format!("seed-lab f32 {i} {p:?}"));
                gen_mu.push(f64::from(e.log_mass));
                let e16 = f16m.infer(c, &[z], &mut af, &mut sf).unwrap();
                float_close(e16, w[1], &format!("seed-lab f16 {i} {p:?}"));
                let e8 = i8m.infer(c, &[z], &mut ai, &mut si).unwrap();
                assert_eq!(bits(e8), w[2], "seed-lab int8 {i} {p:?}");
            }
            burn_agrees(&burn, &idx, &gen_mu, &format!("seed-lab {p:?}"));
        });
    }
}

/// The exposure-aware `edge` architecture (the redshift and the exposure join the dense
/// head) exports and runs through its generated code in every dtype on mocks of exposures
/// from 100 s to 30 ks: equal to the scalar references (int8 bit for bit; float as above)
/// and to burn's forward pass within 2e-4 dex; the exposure input moves the estimate, an
/// exposure outside the training range is flagged, and a NaN or negative exposure is a
/// typed error.
#[test]
fn edge_aware_exports_and_runs() {
    let run = tempfile::tempdir().unwrap();
    tests::models::edge_aware_run(run.path(), 40).unwrap();
    let model = Model::load(run.path()).unwrap();
    let mut folded = model.fold_batch_norm().unwrap();
    // The training exposures, as an export with the calibration sample records them.
    let (lo, hi) = tests::models::AWARE_EXPOSURE_RANGE;
    folded.extra_ranges = vec![codegen::export::accepted_exposure_range([lo, hi]).unwrap()];
    assert_eq!(folded.preprocess.scalars(), 2);
    assert_eq!(arch::load::arch_hash(&folded), edge_aware::ARCH_HASH);
    assert_eq!(edge_aware::SCALARS, 2);
    let ds = Dataset::load(&run.path().join("calibration.npz")).unwrap();
    let (q, [f32b, f16b, i8b]) = test_blobs(&folded, &ds, edge_aware::ARCH_HASH);
    let f32m = edge_aware::f32::Model::new(&f32b.0[..len(&f32b.0)]).unwrap();
    let f16m = edge_aware::f16::Model::new(&f16b.0[..len(&f16b.0)]).unwrap();
    let i8m = edge_aware::int8::Model::new(&i8b.0[..len(&i8b.0)]).unwrap();
    let (mut af, mut ai) = (
        arena::<f32, { edge_aware::ARENA_LEN }>(),
        arena::<i8, { edge_aware::ARENA_LEN }>(),
    );
    let (mut sf, mut si) = (
        scratch::<f32, { edge_aware::SCRATCH_F32 }>(),
        scratch::<i16, { edge_aware::SCRATCH_S8 }>(),
    );
    let idx: Vec<usize> = (20..40).collect();
    let want: Vec<[[u32; 2]; 3]> = idx
        .iter()
        .map(|&i| {
            let (c, s) = (ds.image(i), raw_scalars(&folded, &ds, i));
            [
                ref_bits(folded.predict(c, &s, FloatPath::F32).unwrap()),
                ref_bits(folded.predict(c, &s, FloatPath::F16).unwrap()),
                ref_bits(q.predict(c, &s).unwrap()),
            ]
        })
        .collect();
    let burn = burn_mu(run.path(), &ds, &idx);
    let mut wi = arena::<i8, { edge_aware::ARENA_STREAMED }>();
    let mut wf = arena::<f32, { edge_aware::ARENA_STREAMED }>();
    for p in engines() {
        with_path(p, || {
            let mut gen_mu = Vec::new();
            for (&i, w) in idx.iter().zip(&want) {
                let c = ds.image(i);
                let s = raw_scalars(&folded, &ds, i);
                let sa = [s[0], s[1]];
                let e = f32m.infer(c, &sa, &mut af, &mut sf).unwrap();
                float_close(e, w[0], &format!("edge-aware f32 {i} {p:?}"));
                gen_mu.push(f64::from(e.log_mass));
                let e16 = f16m.infer(c, &sa, &mut af, &mut sf).unwrap();
                float_close(e16, w[1], &format!("edge-aware f16 {i} {p:?}"));
                let e8 = i8m.infer(c, &sa, &mut ai, &mut si).unwrap();
                assert_eq!(bits(e8), w[2], "edge-aware int8 {i} {p:?}");
                // The streamed plan: the same bits in int8, the reference's within tolerance
                // in f32.
                assert_eq!(
                    bits(i8m.infer_streamed(c, &sa, &mut wi, &mut si).unwrap()),
                    w[2],
                    "edge-aware int8 streamed {i} {p:?}"
                );
                float_close(
                    f32m.infer_streamed(c, &sa, &mut wf, &mut sf).unwrap(),
                    w[0],
                    &format!("edge-aware f32 streamed {i} {p:?}"),
                );
            }
            burn_agrees(&burn, &idx, &gen_mu, &format!("edge-aware {p:?}"));
        });
    }
    // The exposure is an input: ten times the exposure moves the estimate.
    let (c, z) = (ds.image(25), ds.redshift[25]);
    let a = f32m.infer(c, &[z, 1000.0], &mut af, &mut sf).unwrap();
    let b = f32m.infer(c, &[z, 10_000.0], &mut af, &mut sf).unwrap();
    assert!(
        a.log_mass != b.log_mass,
        "the exposure does not reach the head"
    );
    // Inside the training ranges: no range flag (the detection check may flag a faint one).
    let ranges = runtime::model::Flags::EXPOSURE_OUTSIDE_TRAINING.0
        | runtime::model::Flags::REDSHIFT_OUTSIDE_TRAINING.0;
    assert!(
        a.flags.0 & ranges == 0 && b.flags.0 & ranges == 0,
        "{:?} {:?}",
        a.flags,
        b.flags
    );
    // Outside the training exposures (the calibration sample's range): flagged.
    let far = i8m.infer(c, &[z, 1e6], &mut ai, &mut si).unwrap();
    assert!(
        far.flags
            .contains(runtime::model::Flags::EXPOSURE_OUTSIDE_TRAINING)
    );
    for t in [f32::NAN, -5.0, 0.0, f32::INFINITY] {
        assert_eq!(
            i8m.infer(c, &[z, t], &mut ai, &mut si).err(),
            Some(Error::BadScalar { index: 1 }),
            "exposure {t}"
        );
    }
}

/// Every kind of damaged or foreign blob is refused by the generated loader with a typed
/// error, and bad inputs to `infer` are errors; nothing panics.
#[test]
fn generated_loaders_refuse_damaged_blobs_and_bad_inputs() {
    let good = blobs::EDGE_INT8.0.to_vec();
    let load = |b: &[u8]| edge::int8::Model::new(&aligned(b).0[..b.len()]).map(|_| ());
    assert_eq!(load(&good), Ok(()));
    // Truncated anywhere.
    for n in [0, 10, 40, good.len() / 2, good.len() - 1] {
        assert_eq!(load(&good[..n]), Err(BlobError::Truncated), "{n} bytes");
    }
    // A flipped bit anywhere (header, table, weights, tables, zero points).
    for pos in (0..good.len()).step_by(97) {
        let mut b = good.clone();
        b[pos] ^= 0x10;
        assert!(load(&b).is_err(), "flip at {pos}");
    }
    // Another dtype of the same model, another architecture.
    assert_eq!(
        edge::int8::Model::new(&blobs::EDGE_F32.0).map(|_| ()),
        Err(BlobError::WrongDtype)
    );
    let folded = Model::load(fixture()).unwrap().fold_batch_norm().unwrap();
    let mut tensors = float_tensors(&folded, false);
    let foreign = codegen::blob::write(Dtype::F32, seed_lab::ARCH_HASH, &tensors);
    assert!(matches!(
        seed_lab::f32::Model::new(&aligned(&foreign).0[..foreign.len()]),
        Err(BlobError::WrongTensor { .. })
    ));
    let hash = arch::load::arch_hash(&folded);
    let other = codegen::blob::write(Dtype::F32, hash ^ 1, &tensors);
    assert_eq!(
        edge::f32::Model::new(&aligned(&other).0[..other.len()]).map(|_| ()),
        Err(BlobError::WrongArchitecture)
    );
    // Misaligned in memory.
    let a = aligned(&[&[0u8][..], &blobs::EDGE_F16.0[..]].concat());
    assert_eq!(
        edge::f16::Model::new(&a.0[1..1 + blobs::EDGE_F16.0.len()]).map(|_| ()),
        Err(BlobError::Misaligned)
    );
    // Well-formed blobs with unusable values: NaN in the model constants.
    if let Tensor::F32(meta) = &mut tensors[0] {
        meta[0] = f32::NAN;
    }
    let nan = codegen::blob::write(Dtype::F32, hash, &tensors);
    assert_eq!(
        edge::f32::Model::new(&aligned(&nan).0[..nan.len()]).map(|_| ()),
        Err(BlobError::BadValue { index: 0 })
    );
    // Bad inputs to a good model.
    let m = edge::f32::Model::new(&blobs::EDGE_F32.0).unwrap();
    let mut af = arena::<f32, { edge::ARENA_LEN }>();
    let mut sf = scratch::<f32, { edge::SCRATCH_F32 }>();
    let counts = vec![1u16; edge::INPUT_LEN];
    assert!(m.infer(&counts, &[0.3], &mut af, &mut sf).is_ok());
    assert!(matches!(
        m.infer(&counts[1..], &[0.3], &mut af, &mut sf),
        Err(Error::BadLength { .. })
    ));
    let mut wf = arena::<f32, { edge::ARENA_STREAMED }>();
    assert!(m.infer_streamed(&counts, &[0.3], &mut wf, &mut sf).is_ok());
    for bad in [&counts[1..], &[]] {
        assert!(matches!(
            m.infer_streamed(bad, &[0.3], &mut wf, &mut sf),
            Err(Error::BadLength { .. })
        ));
    }
    // Not physically valid (more, and the training-range flags, in models/tests/loaders.rs).
    for z in [f32::NAN, f32::INFINITY, -0.1, 100.0, f32::MAX] {
        assert_eq!(
            m.infer(&counts, &[z], &mut af, &mut sf),
            Err(Error::BadScalar { index: 0 }),
            "z = {z}"
        );
    }
}
