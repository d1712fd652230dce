//! Dynamic-shape reference interpreter of a [`FoldedModel`] (f32 and f16 weights) and
//! of a [`QuantModel`](crate::quant::QuantModel) (int8), with exactly the runtime kernels' semantics, so that
//! generated const-generic code reproduces it bit for bit.
//!
//! - **f32** ([`FloatPath::F32`]): convolution accumulates `bias`, then over input
//!   channel, kernel row, kernel column (padding taps skipped), then applies the fused
//!   `max(x, slope x)` as `if acc < 0 { acc * slope } else { acc }`; dense sums in input
//!   order from the bias; average pooling sums the window in row order from `0.0` and
//!   multiplies by `1 / K^2`; max pooling folds `f32::max` from `-inf`. No fused
//!   multiply-add anywhere (Rust never contracts `a + b * c`).
//! - **f16** ([`FloatPath::F16`]): the same, with every weight rounded to the nearest
//!   `half::f16` and widened back (what the runtime's `f16` kernels read); biases stay f32.
//! - **int8** ([`QuantModel::forward_s8`](crate::quant::QuantModel::forward_s8)): the TFLite / CMSIS-NN scheme of
//!   `runtime::kernels`: the preprocessed f32 input is quantised with the input tensor's
//!   `QParams` (no fusion of preprocessing and the first pooling); convolution and dense
//!   accumulate `bias + w (x - zp_in)` in wrapping i32 and requantise through
//!   [`QuantArgs::output`] (fused leaky ReLU: the negative table is used for accumulators
//!   < 0); pooling works on raw int8 values sharing the input's parameters (average
//!   rounded half away from zero); the redshift is quantised into the concatenated
//!   vector's parameters; the head gives i32 accumulators dequantised in f32 as
//!   `(s_in * s_w[o]) * acc`.
//! - Global average pooling (no runtime kernel yet) is average pooling with one window
//!   covering the whole plane, in both arithmetics.
//!
//! [`Prediction`]: `mu` = head output 0; `sigma = softplus(head 1) + sigma_floor`, then the
//! calibration (scale multiplies, constant replaces), in the runtime's f32 arithmetic.

use crate::model::{ConvGeom, FoldedModel, Op, PreprocessDesc, SigmaCalibration};
use crate::{PoolKind, Shape};
use anyhow::{Result, anyhow, ensure};
use runtime::kernels::conv2d::QuantArgs;
use runtime::kernels::preprocess::Preprocess;
use runtime::quant::Requant;

/// Weight precision of the float interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatPath {
    /// f32 weights.
    F32,
    /// Weights rounded to f16, arithmetic in f32.
    F16,
}

/// One recorded activation tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Traced<T> {
    /// `input` or `{op index}:{op}`.
    pub name: String,
    /// Shape.
    pub shape: Shape,
    /// Values, channel-major.
    pub data: Vec<T>,
}

/// Final answer for one cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Predicted log10 M500c / Msun.
    pub mu: f64,
    /// Calibrated uncertainty, dex.
    pub sigma: f64,
    /// Raw head outputs (mu, pre-softplus sigma).
    pub raw: [f32; 2],
}

/// Head outputs -> [`Prediction`], with the runtime's own f32 arithmetic
/// ([`runtime::model::estimate`]): `sigma = softplus(raw[1]) + floor`, then calibrated.
pub fn prediction(
    raw: [f32; 2],
    sigma_floor: f64,
    calibration: Option<SigmaCalibration>,
) -> Prediction {
    let e = runtime::model::estimate(raw, sigma_floor as f32, runtime_calibration(calibration));
    Prediction {
        mu: f64::from(e.log_mass),
        sigma: f64::from(e.sigma),
        raw,
    }
}

/// The runtime's form of a sigma calibration (f32).
pub fn runtime_calibration(c: Option<SigmaCalibration>) -> runtime::model::SigmaCalibration {
    match c {
        None => runtime::model::SigmaCalibration::None,
        Some(SigmaCalibration::Scale { scale }) => {
            runtime::model::SigmaCalibration::Scale(scale as f32)
        }
        Some(SigmaCalibration::Constant { sigma }) => {
            runtime::model::SigmaCalibration::Constant(sigma as f32)
        }
    }
}

/// Preprocess raw counts `[band][y][x]` and the raw scalar inputs (the redshift, then
/// [`PreprocessDesc::extra`]) with the runtime's own code (one single-band `Preprocess`
/// per band, so any band count works; the scalars as `runtime::model::Meta::scalars` maps
/// them, physically invalid values refused).
pub fn preprocess(
    p: &PreprocessDesc,
    input: Shape,
    counts: &[u16],
    scalars: &[f32],
) -> Result<(Vec<f32>, Vec<f32>)> {
    ensure!(
        counts.len() == input.len() && !input.is_empty(),
        "{} counts for an input of {input:?}",
        counts.len()
    );
    ensure!(
        p.band_scale.len() == input.c,
        "{} band scales for {} bands",
        p.band_scale.len(),
        input.c
    );
    let plane = input.h * input.w;
    let one = |s: f32| Preprocess::<1> {
        band_scale: [s],
        z_shift: p.z_shift,
        z_scale: p.z_scale,
    };
    let mut x = vec![0.0f32; counts.len()];
    for ((c, o), s) in counts
        .chunks_exact(plane)
        .zip(x.chunks_exact_mut(plane))
        .zip(&p.band_scale)
    {
        one(*s)
            .counts_f32(c, o)
            .map_err(|e| anyhow!("preprocessing: {e}"))?;
    }
    Ok((x, preprocess_scalars(p, scalars)?))
}

/// The network's scalar inputs for raw `[z, extra...]`, as the runtime computes them.
pub fn preprocess_scalars(p: &PreprocessDesc, scalars: &[f32]) -> Result<Vec<f32>> {
    ensure!(
        scalars.len() == p.scalars(),
        "{} scalar inputs given, the model takes {} ({})",
        scalars.len(),
        p.scalars(),
        p.scalar_names().join(", ")
    );
    let z = scalars[0];
    ensure!(
        z <= runtime::model::MAX_REDSHIFT,
        "redshift {z}: above {}",
        runtime::model::MAX_REDSHIFT
    );
    let zp = Preprocess::<1> {
        band_scale: [1.0],
        z_shift: p.z_shift,
        z_scale: p.z_scale,
    }
    .redshift(z)
    .map_err(|e| anyhow!("redshift {z}: {e}"))?;
    let mut out = vec![zp];
    for (e, &raw) in p.extra.iter().zip(&scalars[1..]) {
        let q = e.quantity.runtime();
        ensure!(
            raw.is_finite() && q.valid(raw),
            "{} {raw}: not physically valid",
            q.name()
        );
        out.push((q.feature(raw) - e.shift) * e.scale);
    }
    Ok(out)
}

#[inline(always)]
fn leaky(acc: f32, slope: f32) -> f32 {
    if acc < 0.0 { acc * slope } else { acc }
}

/// Convolution in the runtime's loop and summation order (f32 or f16-rounded weights).
pub fn conv2d_f32(
    x: &[f32],
    s: Shape,
    g: &ConvGeom,
    w: &[f32],
    bias: &[f32],
    slope: f32,
) -> Vec<f32> {
    conv(
        x,
        s,
        g,
        w,
        |oc| bias[oc],
        |acc, w, x| acc + w * x,
        |_, acc| leaky(acc, slope),
    )
}

/// int8 convolution: `bias + sum w (x - zp)` in wrapping i32, requantised per channel.
pub fn conv2d_s8(
    x: &[i8],
    s: Shape,
    g: &ConvGeom,
    w: &[i8],
    bias: &[i32],
    q: &QuantArgs<'_>,
) -> Vec<i8> {
    let zp = q.input_zero_point;
    conv(
        x,
        s,
        g,
        w,
        |oc| bias[oc],
        |acc: i32, w: i8, x: i8| acc.wrapping_add(i32::from(w) * (i32::from(x) - zp)),
        |oc, acc| q.output(oc, acc),
    )
}

/// Outputs in `[oc][oy][ox]` order, each accumulated from `init(oc)` over (ic, ky, kx)
/// with padding taps skipped, then finished by `fin(oc, acc)`.
fn conv<X: Copy, W: Copy, A, O: Copy + Default>(
    x: &[X],
    s: Shape,
    g: &ConvGeom,
    w: &[W],
    init: impl Fn(usize) -> A,
    mac: impl Fn(A, W, X) -> A,
    fin: impl Fn(usize, A) -> O,
) -> Vec<O> {
    let o = g.out_shape(s);
    let (k, st, d, p) = (g.kernel, g.stride, g.dilation, g.pad() as isize);
    let mut out = vec![O::default(); o.len()];
    for oc in 0..o.c {
        for oy in 0..o.h {
            for ox in 0..o.w {
                let mut acc = init(oc);
                for ic in 0..s.c {
                    for ky in 0..k {
                        let iy = (oy * st + ky * d) as isize - p;
                        if iy < 0 || iy >= s.h as isize {
                            continue;
                        }
                        for kx in 0..k {
                            let ix = (ox * st + kx * d) as isize - p;
                            if ix < 0 || ix >= s.w as isize {
                                continue;
                            }
                            acc = mac(
                                acc,
                                w[((oc * s.c + ic) * k + ky) * k + kx],
                                x[(ic * s.h + iy as usize) * s.w + ix as usize],
                            );
                        }
                    }
                }
                out[(oc * o.h + oy) * o.w + ox] = fin(oc, acc);
            }
        }
    }
    out
}

/// Pool `kh x kw` windows with stride equal to the window, in the runtime's order.
fn pool<T: Copy, A: Copy + Default>(
    x: &[T],
    s: Shape,
    kh: usize,
    kw: usize,
    f: impl Fn(&mut dyn Iterator<Item = T>) -> A,
) -> Vec<A> {
    let (oh, ow) = (s.h / kh, s.w / kw);
    let mut out = vec![A::default(); s.c * oh * ow];
    for c in 0..s.c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut it = (0..kh)
                    .flat_map(|ky| (0..kw).map(move |kx| (ky, kx)))
                    .map(|(ky, kx)| x[(c * s.h + oy * kh + ky) * s.w + ox * kw + kx]);
                out[(c * oh + oy) * ow + ox] = f(&mut it);
            }
        }
    }
    out
}

/// f32 pooling (`kh = h, kw = w` is global average pooling).
pub fn pool_f32(x: &[f32], s: Shape, kind: PoolKind, kh: usize, kw: usize) -> Vec<f32> {
    match kind {
        PoolKind::Max => pool(x, s, kh, kw, |it| it.fold(f32::NEG_INFINITY, f32::max)),
        PoolKind::Avg => {
            let inv = 1.0 / (kh * kw) as f32;
            pool(x, s, kh, kw, |it| it.fold(0.0f32, |a, v| a + v) * inv)
        }
    }
}

/// int8 pooling on raw values (input and output share quantisation parameters).
pub fn pool_s8(x: &[i8], s: Shape, kind: PoolKind, kh: usize, kw: usize) -> Vec<i8> {
    match kind {
        PoolKind::Max => pool(x, s, kh, kw, |it| it.fold(i8::MIN, i8::max)),
        PoolKind::Avg => {
            let n = (kh * kw) as i32;
            pool(x, s, kh, kw, |it| {
                let sum: i32 = it.map(i32::from).sum();
                let r = if sum >= 0 {
                    (sum + n / 2) / n
                } else {
                    (sum - n / 2) / n
                };
                r.clamp(-128, 127) as i8
            })
        }
    }
}

/// Dense layer, weights `[n_in][units]`, summed in input order from the bias.
pub fn dense_f32(x: &[f32], units: usize, w: &[f32], bias: &[f32], slope: f32) -> Vec<f32> {
    (0..units)
        .map(|o| {
            let mut acc = bias[o];
            for (i, v) in x.iter().enumerate() {
                acc += w[i * units + o] * v;
            }
            leaky(acc, slope)
        })
        .collect()
}

/// int32 accumulators `bias + sum w (x - zp)` of an int8 dense layer.
pub fn dense_acc_s8(
    x: &[i8],
    units: usize,
    w: &[i8],
    bias: &[i32],
    input_zero_point: i32,
) -> Vec<i32> {
    (0..units)
        .map(|o| {
            let mut acc = bias[o];
            for (i, v) in x.iter().enumerate() {
                acc = acc
                    .wrapping_add(i32::from(w[i * units + o]) * (i32::from(*v) - input_zero_point));
            }
            acc
        })
        .collect()
}

/// Standalone int8 leaky ReLU: `x - zp_in` rescaled by `pos` (x >= 0) or `neg` (x < 0).
pub fn leaky_s8(
    x: &[i8],
    input_zero_point: i32,
    pos: Requant,
    neg: Requant,
    output_zero_point: i32,
) -> Vec<i8> {
    let (p, n) = ([pos], [neg]);
    let q = QuantArgs {
        input_zero_point,
        requant_pos: &p,
        requant_neg: &n,
        output_zero_point,
    };
    x.iter()
        .map(|v| q.output(0, i32::from(*v) - input_zero_point))
        .collect()
}

pub(crate) fn record<T: Clone>(
    trace: &mut Option<&mut Vec<Traced<T>>>,
    name: String,
    shape: Shape,
    data: &[T],
) {
    if let Some(t) = trace.as_deref_mut() {
        t.push(Traced {
            name,
            shape,
            data: data.to_vec(),
        });
    }
}

fn op_name(i: usize, op: &Op) -> String {
    let n = match op {
        Op::Conv2d(_) => "conv2d",
        Op::Pool2d {
            kind: PoolKind::Max,
            ..
        } => "max_pool",
        Op::Pool2d {
            kind: PoolKind::Avg,
            ..
        } => "avg_pool",
        Op::GlobalAvgPool => "global_avg_pool",
        Op::FlattenConcatZ => "flatten_concat_z",
        Op::Dense(_) => "dense",
        Op::LeakyRelu { .. } => "leaky_relu",
    };
    format!("{i}:{n}")
}

impl FoldedModel {
    /// Run on a preprocessed input `x` (`[c][h][w]`) and preprocessed scalars `z`
    /// ([`preprocess_scalars`]); returns the raw head outputs. `trace` receives the input
    /// and every op's output (after activation).
    pub fn forward_f32(
        &self,
        x: &[f32],
        z: &[f32],
        path: FloatPath,
        mut trace: Option<&mut Vec<Traced<f32>>>,
    ) -> Result<Vec<f32>> {
        let shapes = self.shapes()?;
        ensure!(
            z.len() == self.preprocess.scalars(),
            "{} scalar inputs, the model takes {}",
            z.len(),
            self.preprocess.scalars()
        );
        ensure!(
            x.len() == self.input.len(),
            "input of {} values, expected {}",
            x.len(),
            self.input.len()
        );
        let wt = |w: &[f32]| -> Vec<f32> {
            match path {
                FloatPath::F32 => w.to_vec(),
                FloatPath::F16 => w.iter().map(|v| half::f16::from_f32(*v).to_f32()).collect(),
            }
        };
        let mut cur = x.to_vec();
        record(&mut trace, "input".into(), shapes[0], &cur);
        for (i, op) in self.ops.iter().enumerate() {
            let s = shapes[i];
            cur = match op {
                Op::Conv2d(c) => conv2d_f32(&cur, s, &c.geom, &wt(&c.weight), &c.bias, c.slope),
                Op::Pool2d { kind, size } => pool_f32(&cur, s, *kind, *size, *size),
                Op::GlobalAvgPool => pool_f32(&cur, s, PoolKind::Avg, s.h, s.w),
                Op::FlattenConcatZ => cur.iter().chain(z).copied().collect(),
                Op::Dense(d) => dense_f32(&cur, d.units, &wt(&d.weight), &d.bias, d.slope),
                Op::LeakyRelu { slope } => cur.iter().map(|v| leaky(*v, *slope)).collect(),
            };
            record(&mut trace, op_name(i, op), shapes[i + 1], &cur);
        }
        Ok(cur)
    }

    /// Preprocess raw counts and scalars (`[z, extra...]`), run, and turn the head into
    /// (mu, sigma).
    pub fn predict(&self, counts: &[u16], scalars: &[f32], path: FloatPath) -> Result<Prediction> {
        let (x, zp) = preprocess(&self.preprocess, self.input, counts, scalars)?;
        let raw = self.forward_f32(&x, &zp, path, None)?;
        Ok(prediction(
            [raw[0], raw[1]],
            self.sigma_floor,
            self.sigma_calibration,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConvOp, DenseOp};
    use crate::testutil::{Rng, e30_dir, model_a, model_b, synthetic_cube, vals};
    use runtime::kernels::{conv2d::Conv2d, dense::Dense, pool::Pool2d};

    fn c(m: &FoldedModel, i: usize) -> &ConvOp {
        match &m.ops[i] {
            Op::Conv2d(c) => c,
            _ => panic!("op {i}"),
        }
    }
    fn d(m: &FoldedModel, i: usize) -> &DenseOp {
        match &m.ops[i] {
            Op::Dense(d) => d,
            _ => panic!("op {i}"),
        }
    }
    fn h16(w: &[f32]) -> Vec<half::f16> {
        w.iter().map(|v| half::f16::from_f32(*v)).collect()
    }
    /// Call a runtime kernel `$k::$f32` or `$k::$f16` on op `$o`.
    macro_rules! fl {
        ($k:ty, $len:expr, $x:expr, $o:expr, $half:expr) => {{
            let mut y = vec![0f32; $len];
            if $half {
                <$k>::f16(&$x, &h16(&$o.weight), &$o.bias, $o.slope, &mut y).unwrap();
            } else {
                <$k>::f32(&$x, &$o.weight, &$o.bias, $o.slope, &mut y).unwrap();
            }
            y
        }};
    }
    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// The const-generic runtime kernels chained by hand, tensor by tensor.
    fn runtime_float(m: &FoldedModel, which: char, x: &[f32], z: f32, half: bool) -> Vec<Vec<f32>> {
        let mut t = vec![x.to_vec()];
        if which == 'a' {
            type C0 = Conv2d<3, 13, 12, 4, 3, 1, 1, 1>;
            type C2 = Conv2d<4, 6, 6, 5, 3, 1, 2, 2>;
            type C3 = Conv2d<5, 6, 6, 6, 2, 1, 1, 0>;
            t.push(fl!(C0, C0::OUT_LEN, t[0], c(m, 0), half));
            let mut p = vec![0f32; Pool2d::<4, 13, 12, 2>::OUT_LEN];
            Pool2d::<4, 13, 12, 2>::avg_f32(&t[1], &mut p).unwrap();
            t.push(p);
            t.push(fl!(C2, C2::OUT_LEN, t[2], c(m, 2), half));
            t.push(fl!(C3, C3::OUT_LEN, t[3], c(m, 3), half));
            let mut p = vec![0f32; Pool2d::<6, 5, 5, 2>::OUT_LEN];
            Pool2d::<6, 5, 5, 2>::max_f32(&t[4], &mut p).unwrap();
            t.push(p.clone());
            p.push(z);
            t.push(p);
            t.push(fl!(Dense<25, 7>, 7, t[6], d(m, 6), half));
            t.push(fl!(Dense<7, 2>, 2, t[7], d(m, 7), half));
        } else {
            type C0 = Conv2d<2, 7, 7, 3, 3, 2, 1, 0>;
            t.push(fl!(C0, C0::OUT_LEN, t[0], c(m, 0), half));
            let mut p = vec![0f32; 3];
            Pool2d::<3, 3, 3, 3>::avg_f32(&t[1], &mut p).unwrap();
            t.push(p.clone());
            let mut l: Vec<f32> = p
                .iter()
                .map(|v| if *v < 0.0 { 0.25 * v } else { *v })
                .collect();
            t.push(l.clone());
            l.push(z);
            t.push(l);
            t.push(fl!(Dense<4, 2>, 2, t[4], d(m, 4), half));
        }
        t
    }

    #[test]
    fn float_paths_equal_runtime_kernels_bit_for_bit() {
        let mut rng = Rng::new(11);
        for (which, m) in [('a', model_a(&mut rng)), ('b', model_b(&mut rng))] {
            for _ in 0..5 {
                let x = vals(&mut rng, m.input.len(), 2.0);
                let z = rng.uniform(-1.5, 1.5);
                for (path, half) in [(FloatPath::F32, false), (FloatPath::F16, true)] {
                    let mut tr = Vec::new();
                    m.forward_f32(&x, &[z], path, Some(&mut tr)).unwrap();
                    let want = runtime_float(&m, which, &x, z, half);
                    assert_eq!(tr.len(), want.len());
                    for (t, w) in tr.iter().zip(&want) {
                        assert_eq!(t.shape.len(), w.len(), "{which} {path:?} {}", t.name);
                        assert_eq!(bits(&t.data), bits(w), "{which} {path:?} {}", t.name);
                    }
                }
            }
        }
    }

    #[test]
    fn f16_weights_stay_within_1e2_of_f32_on_e30() {
        let f = crate::model::Model::load(e30_dir())
            .unwrap()
            .fold_batch_norm()
            .unwrap();
        let mut rng = Rng::new(5);
        let mut differs = false;
        for _ in 0..20 {
            let (c, z) = synthetic_cube(&mut rng, 10, 50);
            let a = f.predict(&c, &[z], FloatPath::F32).unwrap();
            let b = f.predict(&c, &[z], FloatPath::F16).unwrap();
            differs |= a.raw != b.raw;
            assert!((a.mu - b.mu).abs() <= 1e-2 * a.mu.abs(), "{a:?} {b:?}");
            assert!((a.sigma - b.sigma).abs() <= 1e-2 * a.sigma, "{a:?} {b:?}");
        }
        assert!(differs, "the f16 path rounds the weights");
    }

    #[test]
    fn preprocessing_and_head_follow_their_definitions() {
        let f = crate::model::Model::load(e30_dir())
            .unwrap()
            .fold_batch_norm()
            .unwrap();
        let (c, z) = synthetic_cube(&mut Rng::new(3), 10, 50);
        let (x, zp) = preprocess(&f.preprocess, f.input, &c, &[z]).unwrap();
        let p = f.preprocess.clone();
        let r = Preprocess::<10> {
            band_scale: p.band_scale.clone().try_into().unwrap(),
            z_shift: p.z_shift,
            z_scale: p.z_scale,
        };
        let mut y = vec![0f32; c.len()];
        r.counts_f32(&c, &mut y).unwrap();
        assert_eq!(bits(&x), bits(&y));
        assert_eq!(zp, [(z - p.z_shift) * p.z_scale]);
        assert!(preprocess(&f.preprocess, f.input, &c[1..], &[z]).is_err());
        let pr = prediction(
            [14.2, 0.3],
            0.005,
            Some(SigmaCalibration::Scale { scale: 2.0 }),
        );
        assert_eq!(pr.mu, f64::from(14.2f32));
        // f32 arithmetic (the runtime's): within a few f32 ulps of the f64 closed form.
        let want = 2.0 * ((1.0 + f64::from(0.3f32).exp()).ln() + 0.005);
        assert!((pr.sigma - want).abs() < 3e-7 * want);
        let pr = prediction([14.2, -40.0], 0.005, None);
        assert!((pr.sigma - 0.005 - (-40f64).exp()).abs() < 3e-7 * 0.005);
        assert_eq!(
            prediction(
                [0.0, 3.0],
                0.005,
                Some(SigmaCalibration::Constant { sigma: 0.1 })
            )
            .sigma,
            f64::from(0.1f32)
        );
    }
}
