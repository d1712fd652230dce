//! The quantisation of a calibrated [`FoldedModel`]: [`quantize`] derives, from a
//! [`Calibration`] of it,
//!
//! - activations: per-tensor asymmetric `QParams::from_range`. Pooling, global
//!   pooling and the concatenation do not requantise: their output shares the
//!   parameters of their input, so such chains get the union of their ranges. In
//!   particular the flattened features and z' share one set of parameters whose range
//!   is the union of both, and z' is quantised into it (never clipped);
//! - weights: symmetric per output channel, `s_w = max|w| / 127` (an all-zero channel
//!   gets `s_w = 1`), `q = round(w / s_w)` in [-127, 127];
//! - biases: `round(b / (s_in s_w))` in i32;
//! - requantisation per output channel: `Requant::from_real(s_in s_w / s_out)` for
//!   accumulators >= 0 and `from_real(slope s_in s_w / s_out)` for accumulators < 0
//!   (the fused leaky ReLU; slope 1 = none, so both tables are equal);
//! - the head (last dense layer) keeps i32 accumulators and dequantises with
//!   `out_scale[o] = s_in * s_w[o]` (an f32 product).
//!
//! [`correct_head_bias`] then removes the mean int8 - f32 offset of the head's outputs over
//! calibration inputs (as `codegen export` runs it).

use super::{Calibration, QConv, QDense, QHead, QLeaky, QOp, QuantModel};
use crate::interp::{FloatPath, preprocess};
use crate::model::{FoldedModel, Op};
use anyhow::{Result, bail, ensure};
use runtime::quant::{QParams, Requant};

/// Symmetric per-channel quantisation of `w` where `channel(i)` gives element `i`'s channel.
fn quantize_weights(
    w: &[f32],
    channels: usize,
    channel: impl Fn(usize) -> usize,
) -> (Vec<i8>, Vec<f32>) {
    let mut max = vec![0f32; channels];
    for (i, v) in w.iter().enumerate() {
        max[channel(i)] = max[channel(i)].max(v.abs());
    }
    let scale: Vec<f32> = max
        .iter()
        .map(|m| if *m > 0.0 { m / 127.0 } else { 1.0 })
        .collect();
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (f64::from(*v) / f64::from(scale[channel(i)]))
                .round()
                .clamp(-127.0, 127.0) as i8
        })
        .collect();
    (q, scale)
}

fn quantize_bias(b: &[f32], s_in: f32, w_scale: &[f32]) -> Vec<i32> {
    b.iter()
        .zip(w_scale)
        .map(|(b, sw)| {
            (f64::from(*b) / (f64::from(s_in) * f64::from(*sw)))
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect()
}

fn requants(
    s_in: f32,
    w_scale: &[f32],
    s_out: f32,
    slope: f32,
) -> Result<(Vec<Requant>, Vec<Requant>)> {
    ensure!(
        slope >= 0.0,
        "int8: leaky ReLU slope {slope} < 0 is not supported"
    );
    let m = |sw: &f32| f64::from(s_in) * f64::from(*sw) / f64::from(s_out);
    Ok((
        w_scale.iter().map(|sw| Requant::from_real(m(sw))).collect(),
        w_scale
            .iter()
            .map(|sw| Requant::from_real(f64::from(slope) * m(sw)))
            .collect(),
    ))
}

/// Quantise a folded model with a calibration of it.
pub fn quantize(model: &FoldedModel, calib: &Calibration) -> Result<QuantModel> {
    let shapes = model.shapes()?;
    let n = model.ops.len();
    ensure!(
        calib.ranges.len() == n + 1,
        "calibration has {} tensors, the model {}",
        calib.ranges.len(),
        n + 1
    );
    // Pooling and concatenation pass parameters through: group them with their input.
    let mut group: Vec<usize> = (0..=n).collect();
    for (i, op) in model.ops.iter().enumerate() {
        if matches!(
            op,
            Op::Pool2d { .. } | Op::GlobalAvgPool | Op::FlattenConcatZ
        ) {
            group[i + 1] = group[i];
        }
    }
    let mut grange = vec![(f32::INFINITY, f32::NEG_INFINITY); n + 1];
    for (t, r) in calib.ranges.iter().enumerate() {
        ensure!(
            r.0.is_finite() && r.1.is_finite(),
            "calibration: tensor {t} has no finite range"
        );
        let g = &mut grange[group[t]];
        *g = (g.0.min(r.0), g.1.max(r.1));
    }
    let tensor_q: Vec<QParams> = (0..=n)
        .map(|t| QParams::from_range(grange[group[t]].0, grange[group[t]].1))
        .collect();
    let mut ops = Vec::with_capacity(n);
    for (i, op) in model.ops.iter().enumerate() {
        let (in_q, out_q) = (tensor_q[i], tensor_q[i + 1]);
        ops.push(match op {
            Op::Conv2d(c) => {
                let per = c.geom.in_c * c.geom.kernel * c.geom.kernel;
                let (weight, w_scale) = quantize_weights(&c.weight, c.geom.filters, |k| k / per);
                let (requant_pos, requant_neg) =
                    requants(in_q.scale, &w_scale, out_q.scale, c.slope)?;
                let bias = quantize_bias(&c.bias, in_q.scale, &w_scale);
                QOp::Conv2d(QConv {
                    geom: c.geom,
                    weight,
                    bias,
                    w_scale,
                    requant_pos,
                    requant_neg,
                    in_q,
                    out_q,
                })
            }
            Op::Pool2d { kind, size } => QOp::Pool2d {
                kind: *kind,
                size: *size,
            },
            Op::GlobalAvgPool => QOp::GlobalAvgPool,
            Op::FlattenConcatZ => QOp::FlattenConcatZ { z_q: out_q },
            Op::Dense(d) => {
                let units = d.units;
                let (weight, w_scale) = quantize_weights(&d.weight, units, |k| k % units);
                let bias = quantize_bias(&d.bias, in_q.scale, &w_scale);
                if i + 1 == n {
                    ensure!(d.slope == 1.0, "the head must not have an activation");
                    let out_scale = w_scale.iter().map(|sw| in_q.scale * sw).collect();
                    QOp::Head(QHead {
                        n_in: d.n_in,
                        units,
                        weight,
                        bias,
                        w_scale,
                        in_q,
                        out_scale,
                    })
                } else {
                    let (requant_pos, requant_neg) =
                        requants(in_q.scale, &w_scale, out_q.scale, d.slope)?;
                    QOp::Dense(QDense {
                        n_in: d.n_in,
                        units,
                        weight,
                        bias,
                        w_scale,
                        requant_pos,
                        requant_neg,
                        in_q,
                        out_q,
                    })
                }
            }
            Op::LeakyRelu { slope } => {
                let (pos, neg) = requants(in_q.scale, &[1.0], out_q.scale, *slope)?;
                QOp::LeakyRelu(QLeaky {
                    in_q,
                    out_q,
                    pos: pos[0],
                    neg: neg[0],
                })
            }
        });
    }
    if !matches!(ops.last(), Some(QOp::Head(_))) {
        bail!("the model must end in a dense head");
    }
    Ok(QuantModel {
        input: model.input,
        preprocess: model.preprocess.clone(),
        sigma_floor: model.sigma_floor,
        sigma_calibration: model.sigma_calibration,
        z_range: model.z_range,
        extra_ranges: model.extra_ranges.clone(),
        shapes,
        ranges: calib.ranges.clone(),
        tensor_q,
        ops,
    })
}

/// Empirical bias correction of the head (as in Nagel et al. 2019, "Data-free quantization
/// through weight equalization and bias correction", here with data): the mean difference
/// between the int8 and f32 head outputs over `inputs` is removed from the head's int32
/// bias, so quantisation error no longer shifts every prediction the same way. Returns the
/// mean differences (log mass, raw sigma) before correction.
pub fn correct_head_bias(
    q: &mut QuantModel,
    model: &FoldedModel,
    inputs: &[(&[u16], &[f32])],
) -> Result<[f64; 2]> {
    ensure!(
        !inputs.is_empty(),
        "bias correction needs calibration inputs"
    );
    let mut diff = [0f64; 2];
    for (counts, z) in inputs {
        let (x, zp) = preprocess(&model.preprocess, model.input, counts, z)?;
        let f = model.forward_f32(&x, &zp, FloatPath::F32, None)?;
        let h = q.forward_s8(&x, &zp, None)?;
        for ((d, hi), fi) in diff.iter_mut().zip(&h.real).zip(&f) {
            *d += f64::from(*hi) - f64::from(*fi);
        }
    }
    diff.iter_mut().for_each(|d| *d /= inputs.len() as f64);
    let Some(QOp::Head(head)) = q.ops.last_mut() else {
        bail!("the quantised model does not end in a head")
    };
    for ((b, step), d) in head.bias.iter_mut().zip(&head.out_scale).zip(&diff) {
        if *step > 0.0 {
            *b = b.saturating_sub((d / f64::from(*step)).round() as i32);
        }
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::quantize::calibrate;
    use crate::testutil::{Rng, e30_dir, synthetic_cube};

    fn cubes(seed: u64, n: usize) -> Vec<(Vec<u16>, f32)> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| synthetic_cube(&mut rng, 10, 50)).collect()
    }

    /// The int8 network against the f32 one on the real run, 50 synthetic clusters it was
    /// not calibrated on (100 calibration clusters), no head-bias correction. Per-tensor int8
    /// activations cost this network about 0.02 dex on average (mostly a common offset) and
    /// 0.048 dex on the worst of these inputs with MSE ranges (0.055 with min/max; up to
    /// 0.2 dex over 10,000 real eRASS:8 mocks, see docs/quantization.md), the conv0
    /// output's range being the main cost. Bounds: mean |d mu| <= 0.03 dex, max <= 0.1 dex;
    /// 0.03 dex on every cluster is not reached by this scheme.
    #[test]
    fn e30_int8_tracks_f32() {
        let f = Model::load(e30_dir()).unwrap().fold_batch_norm().unwrap();
        let cal = cubes(1, 100);
        let refs: Vec<(&[u16], &[f32])> = cal
            .iter()
            .map(|(c, z)| (c.as_slice(), std::slice::from_ref(z)))
            .collect();
        let q = quantize(&f, &calibrate(&f, &refs).unwrap()).unwrap();
        let (mut worst, mut sum, mut worst_s, mut spread) =
            (0f64, 0f64, 0f64, (f64::INFINITY, f64::NEG_INFINITY));
        let test = cubes(2, 50);
        for (c, z) in &test {
            let a = f.predict(c, &[*z], FloatPath::F32).unwrap();
            let b = q.predict(c, &[*z]).unwrap();
            worst = worst.max((a.mu - b.mu).abs());
            sum += (a.mu - b.mu).abs();
            worst_s = worst_s.max((a.sigma - b.sigma).abs() / a.sigma);
            spread = (spread.0.min(a.mu), spread.1.max(a.mu));
        }
        let mean = sum / test.len() as f64;
        eprintln!(
            "int8 vs f32: mean |d mu| {mean:.4}, max {worst:.4} dex; max rel d sigma {worst_s:.3}; f32 mu range {spread:?}"
        );
        assert!(mean <= 0.03, "mean |d mu| = {mean}");
        assert!(worst <= 0.1, "max |d mu| = {worst}");
        assert!(worst_s <= 0.2, "max relative sigma change {worst_s}");
        // The test inputs must exercise the network (not all predict the same mass).
        assert!(spread.1 - spread.0 > 0.5, "{spread:?}");
    }

    /// Properties of the derived parameters, checked against their definitions.
    #[test]
    fn weights_biases_and_ranges_follow_the_scheme() {
        let mut f = Model::load(e30_dir()).unwrap().fold_batch_norm().unwrap();
        // Zero one output channel of the first convolution: it must stay finite and zero.
        if let Op::Conv2d(c) = &mut f.ops[1] {
            let per = c.geom.in_c * 9;
            c.weight[..per].fill(0.0);
        }
        let cal = cubes(3, 20);
        let refs: Vec<(&[u16], &[f32])> = cal
            .iter()
            .map(|(c, z)| (c.as_slice(), std::slice::from_ref(z)))
            .collect();
        let calib = calibrate(&f, &refs).unwrap();
        let q = quantize(&f, &calib).unwrap();
        let (Op::Conv2d(c), QOp::Conv2d(qc)) = (&f.ops[1], &q.ops[1]) else {
            panic!("op 1 is a convolution")
        };
        assert_eq!(qc.w_scale[0], 1.0);
        assert!(qc.weight[..90].iter().all(|w| *w == 0));
        let per = 90;
        for oc in 1..c.geom.filters {
            let ws = &c.weight[oc * per..(oc + 1) * per];
            let qs = &qc.weight[oc * per..(oc + 1) * per];
            assert_eq!(
                qs.iter().map(|v| v.unsigned_abs()).max(),
                Some(127),
                "channel {oc} uses the full range"
            );
            for (w, qv) in ws.iter().zip(qs) {
                assert!((f32::from(*qv) * qc.w_scale[oc] - w).abs() <= 0.5001 * qc.w_scale[oc]);
            }
            let unit = f64::from(qc.in_q.scale) * f64::from(qc.w_scale[oc]);
            assert!(
                (f64::from(qc.bias[oc]) * unit - f64::from(c.bias[oc])).abs() <= 0.5 * unit + 1e-12
            );
            let m = unit / f64::from(qc.out_q.scale);
            assert!((qc.requant_pos[oc].to_real() / m - 1.0).abs() < 1e-8);
            assert!((qc.requant_neg[oc].to_real() / (0.1 * m) - 1.0).abs() < 1e-6);
        }
        // Pools share their input's parameters; the concat covers features and z'.
        assert_eq!(q.tensor_q[0], q.tensor_q[1], "input avg pool");
        assert_eq!(q.tensor_q[6], q.tensor_q[8], "last conv -> pool -> concat");
        let zs: Vec<f32> = refs
            .iter()
            .map(|(c, z)| preprocess(&f.preprocess, f.input, c, z).unwrap().1[0])
            .collect();
        let qz = q.tensor_q[8];
        for z in zs {
            assert!(
                (qz.dequantize(qz.quantize(z)) - z).abs() <= 0.5001 * qz.scale,
                "z' {z} clipped by {qz:?}"
            );
        }
        // Every activation's calibrated range is representable.
        for (t, (r, p)) in calib
            .ranges
            .iter()
            .zip(&q.tensor_q)
            .enumerate()
            .take(q.ops.len())
        {
            for v in [r.0, r.1] {
                assert!(
                    (p.dequantize(p.quantize(v)) - v).abs() <= 0.5001 * p.scale,
                    "tensor {t}: {v} vs {p:?}"
                );
            }
        }
    }

    /// After correction the mean int8-minus-f32 head output over the calibration inputs is
    /// within half an accumulator step (the rounding of the bias adjustment), whatever it was before.
    #[test]
    fn head_bias_correction_removes_the_mean_offset() {
        let folded = crate::model::Model::load(crate::testutil::e30_dir())
            .unwrap()
            .fold_batch_norm()
            .unwrap();
        let mut rng = crate::testutil::Rng::new(5);
        let cubes: Vec<(Vec<u16>, f32)> = (0..60)
            .map(|_| crate::testutil::synthetic_cube(&mut rng, 10, 50))
            .collect();
        let inputs: Vec<(&[u16], &[f32])> = cubes
            .iter()
            .map(|(c, z)| (c.as_slice(), std::slice::from_ref(z)))
            .collect();
        let mut q = quantize(&folded, &calibrate(&folded, &inputs[..30]).unwrap()).unwrap();
        correct_head_bias(&mut q, &folded, &inputs).unwrap();
        let after = correct_head_bias(&mut q.clone(), &folded, &inputs).unwrap();
        let Some(QOp::Head(h)) = q.ops.last() else {
            panic!("no head")
        };
        for (o, (d, step)) in after.iter().zip(&h.out_scale).enumerate() {
            assert!(
                d.abs() <= 0.5 * f64::from(*step) + 1e-6,
                "output {o}: {d} vs step {step}"
            );
        }
    }
}
