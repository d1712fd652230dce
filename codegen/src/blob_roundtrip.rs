//! Blobs written here ([`crate::blob::write`] of [`float_tensors`] / [`int8_tensors`]) read
//! back through `arch::load` ([`decode`] against the skeleton of an [`ArchDescription`]):
//! the same model and the same predictions bit for bit, and every damaged, foreign or
//! unusable blob refused.

use crate::blob::{Tensor, write};
use crate::export::{float_tensors, int8_tensors};
use crate::interp::FloatPath;
use crate::load::{ArchDescription, Decoded, arch_hash, decode};
use crate::model::{AuxQuantity, ExtraInput, FoldedModel, Model, Op, SigmaCalibration};
use crate::quantize::{QOp, calibrate, quantize};
use crate::testutil::{Rng, e30_dir, synthetic_cube};
use runtime::blob::Dtype;

fn e30() -> FoldedModel {
    Model::load(e30_dir()).unwrap().fold_batch_norm().unwrap()
}

/// What a blob keeps of a model: its f64 constants as the f32 the blob stores.
fn as_stored(mut m: FoldedModel) -> FoldedModel {
    m.sigma_floor = f64::from(m.sigma_floor as f32);
    m.sigma_calibration = m.sigma_calibration.map(|c| match c {
        SigmaCalibration::Scale { scale } => SigmaCalibration::Scale {
            scale: f64::from(scale as f32),
        },
        SigmaCalibration::Constant { sigma } => SigmaCalibration::Constant {
            sigma: f64::from(sigma as f32),
        },
    });
    m
}

fn description(m: &FoldedModel) -> ArchDescription {
    let d = ArchDescription::of(m, "e30", "test", None, serde_json::Value::Null);
    let text = serde_json::to_string_pretty(&d).unwrap();
    let back: ArchDescription = serde_json::from_str(&text).unwrap();
    assert_eq!(back, d);
    back
}

fn cubes(seed: u64, n: usize) -> Vec<(Vec<u16>, f32)> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| synthetic_cube(&mut rng, 10, 50)).collect()
}

/// encode -> decode gives the model back (f32 exactly; f16 with its weights rounded as
/// stored), and the same predictions bit for bit.
#[test]
fn float_blobs_round_trip() {
    let m = e30();
    let skel = description(&m).skeleton().unwrap();
    assert_eq!(arch_hash(&skel), arch_hash(&m));
    let bytes = write(Dtype::F32, arch_hash(&m), &float_tensors(&m, false));
    let Decoded::Float(back, FloatPath::F32) = decode(&skel, &bytes).unwrap() else {
        panic!("an f32 model")
    };
    assert_eq!(back, as_stored(m.clone()));
    let bytes16 = write(Dtype::F16, arch_hash(&m), &float_tensors(&m, true));
    let d16 = decode(&skel, &bytes16).unwrap();
    let Decoded::Float(back16, FloatPath::F16) = &d16 else {
        panic!("an f16 model")
    };
    assert_eq!(float_tensors(back16, true), float_tensors(&m, true));
    for (c, z) in cubes(4, 5) {
        let a = m.predict(&c, &[z], FloatPath::F32).unwrap();
        assert_eq!(back.predict(&c, &[z], FloatPath::F32).unwrap(), a);
        let a16 = m.predict(&c, &[z], FloatPath::F16).unwrap();
        assert_eq!(d16.predict(&c, &[z]).unwrap(), a16);
    }
}

/// encode -> decode -> encode gives the same bytes, the decoded model equals the
/// quantised one but for what a blob does not store, and predicts the same bits.
#[test]
fn int8_blobs_round_trip() {
    let m = e30();
    let cal = cubes(1, 20);
    let refs: Vec<(&[u16], &[f32])> = cal
        .iter()
        .map(|(c, z)| (c.as_slice(), std::slice::from_ref(z)))
        .collect();
    let q = quantize(&m, &calibrate(&m, &refs).unwrap()).unwrap();
    let bytes = write(Dtype::Int8, arch_hash(&m), &int8_tensors(&m, &q));
    let skel = description(&m).skeleton().unwrap();
    let Decoded::Int8(back) = decode(&skel, &bytes).unwrap() else {
        panic!("an int8 model")
    };
    let stored = as_stored(m.clone());
    assert_eq!(
        write(Dtype::Int8, arch_hash(&m), &int8_tensors(&stored, &back)),
        bytes
    );
    let mut want = q.clone();
    want.sigma_floor = stored.sigma_floor;
    want.sigma_calibration = stored.sigma_calibration;
    want.ranges = back.ranges.clone();
    for op in &mut want.ops {
        match op {
            QOp::Conv2d(c) => c.w_scale.clear(),
            QOp::Dense(d) => d.w_scale.clear(),
            QOp::Head(h) => h.w_scale.clear(),
            _ => {}
        }
    }
    assert_eq!(back, want);
    for (r, p) in back.ranges.iter().zip(&q.tensor_q) {
        assert_eq!(p.quantize(r.0), -128);
        assert_eq!(p.quantize(r.1), 127);
    }
    for (c, z) in cubes(2, 5) {
        assert_eq!(
            back.predict(&c, &[z]).unwrap(),
            q.predict(&c, &[z]).unwrap()
        );
    }
}

/// A blob of another architecture, a damaged one, and unusable values are refused.
#[test]
fn foreign_damaged_and_unusable_blobs_are_refused() {
    let m = e30();
    let skel = description(&m).skeleton().unwrap();
    let h = arch_hash(&m);
    let good = float_tensors(&m, false);
    // Another architecture (another fused slope in the last convolution).
    let mut other = m.clone();
    if let Op::Conv2d(c) = &mut other.ops[5] {
        c.slope = 0.2;
    }
    let e = decode(&skel, &write(Dtype::F32, arch_hash(&other), &good)).unwrap_err();
    assert!(e.to_string().contains("architecture"), "{e}");
    // Flipped byte: checksum.
    let mut bytes = write(Dtype::F32, h, &good);
    let k = bytes.len() - 40;
    bytes[k] ^= 1;
    let e = decode(&skel, &bytes).unwrap_err().to_string();
    assert!(e.contains("checksum"), "{e}");
    // Truncated.
    let bytes = write(Dtype::F32, h, &good);
    let e = decode(&skel, &bytes[..bytes.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    // Right hash, wrong tensor table.
    let e = decode(&skel, &write(Dtype::F32, h, &good[..good.len() - 1]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tensor"), "{e}");
    // NaN weight, non-positive band scale.
    let mut bad = good.clone();
    if let Tensor::F32(v) = &mut bad[3] {
        v[0] = f32::NAN;
    }
    let e = decode(&skel, &write(Dtype::F32, h, &bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tensor 3"), "{e}");
    let mut bad = good.clone();
    if let Tensor::F32(v) = &mut bad[0] {
        v[2] = -1.0;
    }
    let e = decode(&skel, &write(Dtype::F32, h, &bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tensor 0"), "{e}");
}

/// `e30` with an exposure input: one more row in the first dense layer (weights that
/// make the exposure matter), `log10 t` shifted by 3 and scaled by 2, trained on
/// 150 s to 20 ks.
fn with_exposure() -> FoldedModel {
    let mut m = e30();
    let d = m
        .ops
        .iter_mut()
        .find_map(|op| match op {
            Op::Dense(d) => Some(d),
            _ => None,
        })
        .unwrap();
    d.n_in += 1;
    d.weight
        .extend((0..d.units).map(|o| 0.3 * ((o % 5) as f32 - 2.0)));
    m.preprocess.extra = vec![ExtraInput {
        quantity: AuxQuantity::Exposure,
        shift: 3.0,
        scale: 2.0,
    }];
    m.extra_ranges = vec![[150.0, 20000.0]];
    m.shapes().unwrap();
    m
}

/// A model with an auxiliary input: its blobs carry the input's kind, constants and
/// training range in tensor 0 (as the runtime's `Meta::<BANDS, 1>` reads them, with the
/// very same mapping of the raw exposure as the host's interpreter), they decode back to
/// the same model and predictions in f32 and int8, the exposure changes the estimate,
/// and a missing or invalid exposure is an error.
#[test]
fn exposure_inputs_round_trip_through_blobs() {
    let m = with_exposure();
    assert_ne!(arch_hash(&m), arch_hash(&e30()), "another architecture");
    let meta = float_tensors(&m, false).remove(0);
    let Tensor::F32(v) = meta else {
        panic!("tensor 0 is f32")
    };
    let rt = runtime::model::Meta::<10, 1>::from_slice(&v).expect("the runtime reads it");
    assert_eq!(rt.extra[0].range, [150.0, 20000.0]);
    assert!(runtime::model::Meta::<10, 0>::from_slice(&v).is_none());
    for t in [150.0f32, 640.0, 20000.0, 1e5] {
        let mut out = [0.0f32; 2];
        let flags = rt.scalars(&[0.4, t], &mut out).unwrap();
        let host = crate::interp::preprocess_scalars(&m.preprocess, &[0.4, t]).unwrap();
        assert_eq!(host[1].to_bits(), out[1].to_bits(), "t = {t}");
        let want = (f64::from(t).log10() - 3.0) * 2.0;
        assert!((f64::from(host[1]) - want).abs() < 1e-5);
        assert_eq!(
            flags.contains(runtime::model::Flags::EXPOSURE_OUTSIDE_TRAINING),
            t > 20000.0
        );
    }
    let skel = description(&m).skeleton().unwrap();
    assert_eq!(skel.preprocess.scalars(), 2);
    let h = arch_hash(&m);
    let Decoded::Float(back, _) =
        decode(&skel, &write(Dtype::F32, h, &float_tensors(&m, false))).unwrap()
    else {
        panic!("a float model")
    };
    assert_eq!(back.preprocess.extra, m.preprocess.extra);
    assert_eq!(back.extra_ranges, m.extra_ranges);
    let cal = cubes(4, 12);
    let exposures = [200.0f32, 1500.0, 9000.0];
    let scal: Vec<[f32; 2]> = cal
        .iter()
        .enumerate()
        .map(|(i, (_, z))| [*z, exposures[i % 3]])
        .collect();
    let refs: Vec<(&[u16], &[f32])> = cal
        .iter()
        .zip(&scal)
        .map(|((c, _), s)| (c.as_slice(), s.as_slice()))
        .collect();
    let q = quantize(&m, &calibrate(&m, &refs).unwrap()).unwrap();
    let Decoded::Int8(qb) = decode(&skel, &write(Dtype::Int8, h, &int8_tensors(&m, &q))).unwrap()
    else {
        panic!("an int8 model")
    };
    assert_eq!(qb.extra_ranges, m.extra_ranges);
    for (c, s) in &refs {
        let a = m.predict(c, s, FloatPath::F32).unwrap();
        assert_eq!(back.predict(c, s, FloatPath::F32).unwrap(), a);
        assert_eq!(qb.predict(c, s).unwrap(), q.predict(c, s).unwrap());
        let other = m.predict(c, &[s[0], s[1] * 8.0], FloatPath::F32).unwrap();
        assert_ne!(other.mu, a.mu, "the exposure is an input");
    }
    let (c, z) = &cal[0];
    assert!(
        m.predict(c, &[*z], FloatPath::F32).is_err(),
        "missing exposure"
    );
    for t in [f32::NAN, 0.0, -10.0, f32::INFINITY] {
        assert!(m.predict(c, &[*z, t], FloatPath::F32).is_err(), "t = {t}");
        assert!(q.predict(c, &[*z, t]).is_err(), "t = {t}");
    }
}

/// What the generated `Model::new` refuses, `decode` refuses too (issue 18): int8
/// biases that can wrap the i32 accumulator, a requantisation whose left shift
/// overflows, a redshift range beyond the hard limit; and the recorded range survives.
#[test]
fn decode_refuses_what_the_generated_loader_refuses() {
    let mut m = e30();
    m.z_range = [0.1, 0.9];
    let skel = description(&m).skeleton().unwrap();
    let h = arch_hash(&m);
    let Decoded::Float(back, _) =
        decode(&skel, &write(Dtype::F32, h, &float_tensors(&m, false))).unwrap()
    else {
        panic!("a float model")
    };
    assert_eq!(back.z_range, [0.1, 0.9]);
    let cal = cubes(1, 8);
    let refs: Vec<(&[u16], &[f32])> = cal
        .iter()
        .map(|(c, z)| (c.as_slice(), std::slice::from_ref(z)))
        .collect();
    let q = quantize(&m, &calibrate(&m, &refs).unwrap()).unwrap();
    let good = int8_tensors(&m, &q);
    let Decoded::Int8(back) = decode(&skel, &write(Dtype::Int8, h, &good)).unwrap() else {
        panic!("an int8 model")
    };
    assert_eq!(back.z_range, [0.1, 0.9]);
    let refused = |t: &[Tensor]| {
        format!(
            "{:#}",
            decode(&skel, &write(Dtype::Int8, h, t)).unwrap_err()
        )
    };
    // Biases: conv 1 (tensor 2), hidden dense (14), head (18).
    for i in [2, 14, 18] {
        for v in [i32::MAX, i32::MIN] {
            let mut bad = good.clone();
            if let Tensor::I32(b) = &mut bad[i] {
                b[0] = v;
            }
            let e = refused(&bad);
            assert!(
                e.contains(&format!("tensor {i}")) && e.contains("overflow"),
                "{e}"
            );
        }
    }
    // A requantisation of conv 1 (tensor 3) with a left shift of 30.
    let mut bad = good.clone();
    if let Tensor::I32(r) = &mut bad[3] {
        r[..2].copy_from_slice(&[1 << 30, 30]);
    }
    let e = refused(&bad);
    assert!(e.contains("tensor 2") && e.contains("overflow"), "{e}");
    // A redshift range up to z = 100, and an inverted one.
    for (j, v) in [(16, 100.0), (15, 2.0)] {
        let mut bad = good.clone();
        if let Tensor::F32(c) = &mut bad[0] {
            c[j] = v;
        }
        let e = refused(&bad);
        assert!(e.contains("tensor 0") && e.contains("redshift"), "{e}");
    }
}
