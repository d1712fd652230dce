//! Post-training int8 quantisation (TFLite / CMSIS-NN scheme) of a [`FoldedModel`].
//!
//! [`calibrate`] runs the f32 interpreter over calibration inputs, histograms every
//! activation tensor (the preprocessed input, each op's output after its fused
//! activation, and the concatenated vector of features and z') and chooses each one's
//! range ([`RangeMethod`]; default: minimum squared error, see below).
//! [`quantize`] then derives:
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
//! # Activation ranges
//!
//! [`RangeMethod::Mse`] (the default) gives each tensor the range that minimises the
//! squared quantisation error of its calibration values: `scale^2 / 12` of rounding noise
//! per non-zero value inside the range, the squared distance to the range for values
//! clipped outside it (exact zeros, most of the input and of the leaky-ReLU outputs,
//! cost nothing). The histograms ([`ActivationStats`], 2 x 2048 bins per tensor) keep
//! calibration memory constant; the search is a coordinate descent over the bin edges of
//! each side (TensorRT's MSE calibrator, two-sided because of the leaky ReLU's negative
//! side). Min/max ([`RangeMethod::MinMax`], TFLite's default and what this module did
//! before) and percentiles ([`RangeMethod::Percentile`]) stay available through
//! [`calibrate_with`]; the arithmetic (per-tensor asymmetric int8, [`QParams`],
//! [`Requant`]) is the same whatever the method.
//!
//! Why (measured with `codegen/examples/int8_study.rs` on run `e30`, the `edge` preset,
//! and the eRASS:8 mocks `data/mock-erass8-s1-n20000.npz`):
//!
//! - With min/max ranges int8 cost 0.0067 dex of scatter (f32 0.1099, int8 0.1166;
//!   10,000 clusters of the file's first half calibrate, 10,000 of its second half
//!   score), the target being 0.005. The per-cluster error (sd of int8 - f32 mu 0.039
//!   dex, up to 0.22) sat on faint clusters: sd 0.045-0.050 dex in the five faintest
//!   deciles of total counts against 0.013-0.015 in the two brightest.
//! - Attribution (fake quantisation of one tensor group at a time in the f32 pass; 4,000
//!   calibrate, 3,000 score): with min/max parameters the conv0 output (with its pool)
//!   alone costs 0.033 dex of the 0.038 total sd, conv1's 0.014, conv2's (with the
//!   concatenated vector) 0.013, the input 0.0055, dense0's 0.002, int8 weights 0.0013;
//!   everything but conv0's output 0.020. The min/max range of conv0's output,
//!   [-4.1, 42.8], is set by a few bright pixels of bright clusters: at 0.17 per
//!   step the faint clusters' activations get a handful of levels. (A faithful fake
//!   quantisation must pool on the int8 values: the interpreter's average rounds the raw
//!   int8 sum half away from zero, so with zero points near -128 ties round down, by
//!   0.09-0.16 steps on average per pooled tensor; rounding the real average instead
//!   doubles the apparent int8 cost.)
//! - MSE ranges clip the long tails (input 30.8 -> 21, conv0 42.8 -> 23, conv1 10.6 ->
//!   6.1, conv2 7.5 -> 3.9; conv2's group keeps z' in [-3.0, 1.4]). Scatter cost
//!   (f32 -> int8, with [`correct_head_bias`] as `codegen export` runs it):
//!
//!   | split (calibrate / score)                      | f32    | min/max | MSE              | 99.99 %  |
//!   |------------------------------------------------|--------|---------|------------------|----------|
//!   | 10k first half / 10k second half               | 0.1099 | +0.0067 | +0.0026 (0.1125) | +0.0019  |
//!   | 10k second half / 10k first half               | 0.1116 | +0.0082 | +0.0021 (0.1137) | +0.0017  |
//!   | 10k / 10k never-trained (n60000, 20k.., 30k..) | 0.1115 | +0.0088 | +0.0032 (0.1147) | +0.0018  |
//!   | 256 (three disjoint sets) / 10k second half    | 0.1099 | +0.0045..+0.0048 | +0.0020..+0.0026 | +0.0018..+0.0023 |
//!
//!   sd(int8 - f32 mu) falls from 0.039 to 0.025 dex (faint deciles 0.050 -> 0.032);
//!   the attribution with MSE parameters is conv0 0.019, conv2 0.011, conv1 0.009,
//!   input 0.004, dense0 0.002 (total 0.025). After the head-bias correction the int8
//!   bias stays within 0.001 dex of f32's.
//! - The price is at the bright end: clipping moves the brightest decile's scatter from
//!   0.0604 (f32) to 0.0652 (min/max: 0.0605), and its clusters change by the most
//!   (0.21-0.22 dex at most, as with min/max's faint ones). The 99.99th percentile
//!   gains another 0.0005 dex of overall scatter but clips harder (0.0684 in the
//!   brightest decile, single clusters moved by up to 0.20-0.33 dex); 99.95-99.98 % are
//!   no better overall (+0.0016..+0.0018) and worse at the bright end. Choosing per tensor group the percentile that minimised the int8 output error
//!   on 1,000 calibration clusters (coordinate descent, tried on 4,000 / 3,000) gained
//!   under 0.001 dex over 99.99 %, clipped even harder (single clusters moved by 0.34
//!   dex) and took five minutes: not kept. Keeping the input or later tensors at
//!   min/max does not recover the bright decile either.
//! - Going further would take arithmetic changes rather than ranges (untested): e.g.
//!   int16 activations for conv0's output, the largest remaining term.

use crate::arch::{PoolKind, Shape};
use crate::interp::{FloatPath, preprocess};
use crate::model::{ConvGeom, FoldedModel, Op, PreprocessDesc, SigmaCalibration};
use anyhow::{Result, bail, ensure};
use runtime::kernels::conv2d::QuantArgs;
use runtime::quant::{QParams, Requant};

/// Value range of every activation tensor (`[0]` input, `[i + 1]` op `i`) that
/// [`quantize`] turns into its int8 parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// (min, max) per tensor.
    pub ranges: Vec<(f32, f32)>,
    /// Number of inputs seen.
    pub samples: usize,
}

/// How the range of each activation tensor is chosen from the calibration inputs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum RangeMethod {
    /// The observed minimum and maximum (TFLite's default).
    MinMax,
    /// Per side, the given percentile (e.g. `99.99`) of the non-zero values' magnitudes.
    Percentile(f64),
    /// Per tensor, the range minimising the squared quantisation error of its values
    /// (rounding noise `scale^2 / 12` inside, clipping error outside; exact zeros cost nothing).
    #[default]
    Mse,
}

/// Calibrate on raw count cubes `[band][y][x]` with their redshifts ([`RangeMethod::default`]).
pub fn calibrate(model: &FoldedModel, inputs: &[(&[u16], &[f32])]) -> Result<Calibration> {
    calibrate_with(model, inputs, RangeMethod::default())
}

/// Calibrate on raw count cubes with a given range method.
pub fn calibrate_with(
    model: &FoldedModel,
    inputs: &[(&[u16], &[f32])],
    method: RangeMethod,
) -> Result<Calibration> {
    let mut stats = ActivationStats::new(model);
    for (counts, z) in inputs {
        let (x, zp) = preprocess(&model.preprocess, model.input, counts, z)?;
        stats.observe(model, &x, &zp)?;
    }
    stats.calibration(model, method)
}

/// Calibrate on already preprocessed inputs `(x, z')` ([`RangeMethod::default`]).
pub fn calibrate_preprocessed(
    model: &FoldedModel,
    inputs: &[(Vec<f32>, Vec<f32>)],
) -> Result<Calibration> {
    let mut stats = ActivationStats::new(model);
    for (x, z) in inputs {
        stats.observe(model, x, z)?;
    }
    stats.calibration(model, RangeMethod::default())
}

impl Calibration {
    /// No observation yet (empty ranges).
    pub fn empty(model: &FoldedModel) -> Self {
        Self {
            ranges: vec![(f32::INFINITY, f32::NEG_INFINITY); model.ops.len() + 1],
            samples: 0,
        }
    }

    /// Run the f32 interpreter on one preprocessed input and widen the ranges (min/max).
    pub fn observe(&mut self, model: &FoldedModel, x: &[f32], z: &[f32]) -> Result<()> {
        let mut trace = Vec::new();
        model.forward_f32(x, z, FloatPath::F32, Some(&mut trace))?;
        ensure!(
            trace.len() == self.ranges.len(),
            "calibration of another model"
        );
        for (r, t) in self.ranges.iter_mut().zip(&trace) {
            for &v in &t.data {
                ensure!(
                    v.is_finite(),
                    "calibration: non-finite value in tensor {}",
                    t.name
                );
                *r = (r.0.min(v), r.1.max(v));
            }
        }
        self.samples += 1;
        Ok(())
    }
}

/// Bins per sign of a [`Histogram`].
const BINS: usize = 2048;

/// Magnitude histogram of one tensor's values, positive and negative apart, exact zeros
/// counted alone. Bin `k` covers `[k w, (k + 1) w)`; the width `w` is a power of two that
/// doubles (merging bin pairs, exactly) whenever a value falls beyond the last bin, so
/// histograms of the same tensor merge exactly.
#[derive(Debug, Clone, PartialEq)]
struct Histogram {
    /// Bin width (0 before the first non-zero value).
    width: f64,
    pos: Vec<u64>,
    neg: Vec<u64>,
    zeros: u64,
    min: f32,
    max: f32,
}

impl Histogram {
    fn new() -> Self {
        Self {
            width: 0.0,
            pos: vec![0; BINS],
            neg: vec![0; BINS],
            zeros: 0,
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
        }
    }

    /// Double the width until it is at least `width`.
    fn coarsen_to(&mut self, width: f64) {
        while self.width < width {
            for side in [&mut self.pos, &mut self.neg] {
                for k in 0..BINS / 2 {
                    side[k] = side[2 * k] + side[2 * k + 1];
                }
                side[BINS / 2..].fill(0);
            }
            self.width *= 2.0;
        }
    }

    fn add(&mut self, v: f32) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if v == 0.0 {
            self.zeros += 1;
            return;
        }
        let a = f64::from(v.abs());
        if self.width == 0.0 {
            self.width = (a / BINS as f64)
                .log2()
                .ceil()
                .exp2()
                .max(f64::MIN_POSITIVE);
        }
        if a >= BINS as f64 * self.width {
            let mut w = self.width;
            while a >= BINS as f64 * w {
                w *= 2.0;
            }
            self.coarsen_to(w);
        }
        let k = ((a / self.width) as usize).min(BINS - 1);
        if v > 0.0 {
            self.pos[k] += 1;
        } else {
            self.neg[k] += 1;
        }
    }

    fn merge(&mut self, o: &Histogram) {
        if o.width == 0.0 {
            self.zeros += o.zeros;
        } else {
            let mut o = o.clone();
            if self.width == 0.0 {
                self.width = o.width;
            }
            let w = self.width.max(o.width);
            self.coarsen_to(w);
            o.coarsen_to(w);
            for (a, b) in self.pos.iter_mut().zip(&o.pos) {
                *a += b;
            }
            for (a, b) in self.neg.iter_mut().zip(&o.neg) {
                *a += b;
            }
            self.zeros += o.zeros;
        }
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    /// Upper edge of the bin where the magnitudes of `side` reach fraction `p`, at most `limit`.
    fn quantile(&self, side: &[u64], p: f64, limit: f32) -> f32 {
        let total: u64 = side.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let target = (p * total as f64).ceil() as u64;
        let mut acc = 0;
        for (k, n) in side.iter().enumerate() {
            acc += n;
            if acc >= target.max(1) {
                return ((k + 1) as f64 * self.width).min(f64::from(limit)) as f32;
            }
        }
        limit
    }

    /// Squared quantisation error of the observed values with parameters of `[lo, hi]`.
    fn sq_error(&self, lo: f32, hi: f32) -> f64 {
        let q = QParams::from_range(lo, hi);
        let s = f64::from(q.scale);
        let rep_hi = s * f64::from(127 - q.zero_point);
        let rep_lo = s * f64::from(128 + q.zero_point);
        let noise = s * s / 12.0;
        let side = |bins: &[u64], rep: f64| -> f64 {
            bins.iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| {
                    let c = (k as f64 + 0.5) * self.width;
                    let e = if c > rep { (c - rep).powi(2) } else { noise };
                    *n as f64 * e
                })
                .sum()
        };
        side(&self.pos, rep_hi) + side(&self.neg, rep_lo)
    }

    /// `(lo, hi)` minimising [`Histogram::sq_error`], by alternating searches over each
    /// side's bin edges (geometric grid between 1/256 of the extreme and the extreme).
    fn mse_range(&self) -> (f32, f32) {
        let (mut lo, mut hi) = (self.min.min(0.0), self.max.max(0.0));
        if self.width == 0.0 {
            return (lo, hi);
        }
        let grid = |extreme: f32| -> Vec<f32> {
            let top = (f64::from(extreme) / self.width).ceil().max(1.0);
            let mut v: Vec<f32> = (0..=160)
                .map(|i| (top * 256f64.powf(-f64::from(i) / 160.0)).ceil().max(1.0))
                .map(|k| ((k * self.width) as f32).min(extreme))
                .collect();
            v.dedup();
            v
        };
        let (his, los) = (grid(hi), grid(-lo));
        for _ in 0..3 {
            if hi > 0.0 {
                hi = *his
                    .iter()
                    .min_by(|a, b| self.sq_error(lo, **a).total_cmp(&self.sq_error(lo, **b)))
                    .expect("candidates");
            }
            if lo < 0.0 {
                lo = -*los
                    .iter()
                    .min_by(|a, b| self.sq_error(-**a, hi).total_cmp(&self.sq_error(-**b, hi)))
                    .expect("candidates");
            }
        }
        (lo, hi)
    }

    fn range(&self, method: RangeMethod) -> (f32, f32) {
        match method {
            RangeMethod::MinMax => (self.min, self.max),
            RangeMethod::Percentile(p) => {
                let p = (p / 100.0).clamp(0.0, 1.0);
                let hi = if self.max > 0.0 {
                    self.quantile(&self.pos, p, self.max)
                } else {
                    self.max
                };
                let lo = if self.min < 0.0 {
                    -self.quantile(&self.neg, p, -self.min)
                } else {
                    self.min
                };
                (lo, hi)
            }
            RangeMethod::Mse => self.mse_range(),
        }
    }
}

/// Value histograms of every activation tensor over calibration inputs, from which
/// [`ActivationStats::calibration`] chooses the ranges. Gather them in parallel with one
/// `ActivationStats` per thread and [`ActivationStats::merge`].
#[derive(Debug, Clone, PartialEq)]
pub struct ActivationStats {
    hists: Vec<Histogram>,
    /// Range of the preprocessed scalar inputs (redshift and auxiliary; they must never be
    /// clipped).
    z_range: (f32, f32),
    samples: usize,
}

impl ActivationStats {
    /// Nothing observed yet.
    pub fn new(model: &FoldedModel) -> Self {
        Self {
            hists: vec![Histogram::new(); model.ops.len() + 1],
            z_range: (f32::INFINITY, f32::NEG_INFINITY),
            samples: 0,
        }
    }

    /// Inputs observed.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Run the f32 interpreter on one preprocessed input and record every tensor.
    pub fn observe(&mut self, model: &FoldedModel, x: &[f32], z: &[f32]) -> Result<()> {
        let mut trace = Vec::new();
        model.forward_f32(x, z, FloatPath::F32, Some(&mut trace))?;
        ensure!(
            trace.len() == self.hists.len(),
            "calibration of another model"
        );
        for (h, t) in self.hists.iter_mut().zip(&trace) {
            for &v in &t.data {
                ensure!(
                    v.is_finite(),
                    "calibration: non-finite value in tensor {}",
                    t.name
                );
                h.add(v);
            }
        }
        for &z in z {
            self.z_range = (self.z_range.0.min(z), self.z_range.1.max(z));
        }
        self.samples += 1;
        Ok(())
    }

    /// Add another set of observations of the same model.
    pub fn merge(&mut self, other: &ActivationStats) -> Result<()> {
        ensure!(
            self.hists.len() == other.hists.len(),
            "statistics of different models"
        );
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            a.merge(b);
        }
        self.z_range = (
            self.z_range.0.min(other.z_range.0),
            self.z_range.1.max(other.z_range.1),
        );
        self.samples += other.samples;
        Ok(())
    }

    /// The ranges `method` chooses from the histograms. The output of a
    /// flatten-and-concatenate op always covers every observed z' (a clipped redshift
    /// would bias every cluster at that redshift); the head's output (f32, not
    /// quantised) keeps its min/max.
    pub fn calibration(&self, model: &FoldedModel, method: RangeMethod) -> Result<Calibration> {
        ensure!(self.samples > 0, "calibration needs at least one input");
        ensure!(
            self.hists.len() == model.ops.len() + 1,
            "calibration has {} tensors, the model {}",
            self.hists.len(),
            model.ops.len() + 1
        );
        let n = model.ops.len();
        let ranges = self
            .hists
            .iter()
            .enumerate()
            .map(|(t, h)| {
                if t == n {
                    return (h.min, h.max);
                }
                let (lo, hi) = h.range(method);
                if t > 0 && matches!(model.ops[t - 1], Op::FlattenConcatZ) {
                    (lo.min(self.z_range.0), hi.max(self.z_range.1))
                } else {
                    (lo, hi)
                }
            })
            .collect();
        Ok(Calibration {
            ranges,
            samples: self.samples,
        })
    }
}

/// An int8 convolution.
#[derive(Debug, Clone, PartialEq)]
pub struct QConv {
    /// Geometry.
    pub geom: ConvGeom,
    /// Weights `[filters][in_c][k][k]`.
    pub weight: Vec<i8>,
    /// Biases in units of `s_in * s_w[oc]`.
    pub bias: Vec<i32>,
    /// Weight scale per output channel.
    pub w_scale: Vec<f32>,
    /// Requantisation of accumulators >= 0, per output channel.
    pub requant_pos: Vec<Requant>,
    /// Requantisation of accumulators < 0 (slope x the positive one).
    pub requant_neg: Vec<Requant>,
    /// Input parameters.
    pub in_q: QParams,
    /// Output parameters.
    pub out_q: QParams,
}

/// An int8 hidden dense layer (weights `[n_in][units]`).
#[derive(Debug, Clone, PartialEq)]
pub struct QDense {
    /// Inputs.
    pub n_in: usize,
    /// Outputs.
    pub units: usize,
    /// Weights `[n_in][units]`.
    pub weight: Vec<i8>,
    /// Biases in units of `s_in * s_w[o]`.
    pub bias: Vec<i32>,
    /// Weight scale per output.
    pub w_scale: Vec<f32>,
    /// Requantisation of accumulators >= 0.
    pub requant_pos: Vec<Requant>,
    /// Requantisation of accumulators < 0.
    pub requant_neg: Vec<Requant>,
    /// Input parameters.
    pub in_q: QParams,
    /// Output parameters.
    pub out_q: QParams,
}

/// The head: int8 weights, i32 accumulators dequantised to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct QHead {
    /// Inputs.
    pub n_in: usize,
    /// Outputs (2: mu, raw sigma).
    pub units: usize,
    /// Weights `[n_in][units]`.
    pub weight: Vec<i8>,
    /// Biases in units of `s_in * s_w[o]`.
    pub bias: Vec<i32>,
    /// Weight scale per output.
    pub w_scale: Vec<f32>,
    /// Input parameters.
    pub in_q: QParams,
    /// `s_in * s_w[o]`: real output = `out_scale[o] * acc[o]`.
    pub out_scale: Vec<f32>,
}

/// A standalone (unfused) int8 leaky ReLU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QLeaky {
    /// Input parameters.
    pub in_q: QParams,
    /// Output parameters.
    pub out_q: QParams,
    /// `s_in / s_out`.
    pub pos: Requant,
    /// `slope s_in / s_out`.
    pub neg: Requant,
}

/// One op of the int8 graph.
#[derive(Debug, Clone, PartialEq)]
pub enum QOp {
    /// Convolution.
    Conv2d(QConv),
    /// Pooling on raw int8 (shared parameters).
    Pool2d {
        /// Max or average.
        kind: PoolKind,
        /// Window side.
        size: usize,
    },
    /// Global average pooling (shared parameters).
    GlobalAvgPool,
    /// Flatten and append `z_q.quantize(z')`; `z_q` equals the features' parameters.
    FlattenConcatZ {
        /// Parameters of the whole concatenated vector.
        z_q: QParams,
    },
    /// Hidden dense layer.
    Dense(QDense),
    /// Standalone leaky ReLU.
    LeakyRelu(QLeaky),
    /// The last dense layer.
    Head(QHead),
}

impl QOp {
    /// Short name for traces and reports.
    pub fn name(&self) -> &'static str {
        match self {
            QOp::Conv2d(_) => "conv2d",
            QOp::Pool2d {
                kind: PoolKind::Max,
                ..
            } => "max_pool",
            QOp::Pool2d {
                kind: PoolKind::Avg,
                ..
            } => "avg_pool",
            QOp::GlobalAvgPool => "global_avg_pool",
            QOp::FlattenConcatZ { .. } => "flatten_concat_z",
            QOp::Dense(_) => "dense",
            QOp::LeakyRelu(_) => "leaky_relu",
            QOp::Head(_) => "head",
        }
    }
}

impl QConv {
    /// The runtime kernels' quantisation arguments.
    pub fn args(&self) -> QuantArgs<'_> {
        QuantArgs {
            input_zero_point: self.in_q.zero_point,
            requant_pos: &self.requant_pos,
            requant_neg: &self.requant_neg,
            output_zero_point: self.out_q.zero_point,
        }
    }
}

impl QDense {
    /// The runtime kernels' quantisation arguments.
    pub fn args(&self) -> QuantArgs<'_> {
        QuantArgs {
            input_zero_point: self.in_q.zero_point,
            requant_pos: &self.requant_pos,
            requant_neg: &self.requant_neg,
            output_zero_point: self.out_q.zero_point,
        }
    }
}

/// Everything the int8 interpreter and code generation need.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantModel {
    /// Input shape.
    pub input: Shape,
    /// Preprocessing (f32, before input quantisation).
    pub preprocess: PreprocessDesc,
    /// Smallest sigma added after the softplus.
    pub sigma_floor: f64,
    /// Sigma calibration.
    pub sigma_calibration: Option<SigmaCalibration>,
    /// Redshifts the model accepts ([`FoldedModel::z_range`]).
    pub z_range: [f32; 2],
    /// Training ranges of the auxiliary inputs ([`FoldedModel::extra_ranges`]).
    pub extra_ranges: Vec<[f32; 2]>,
    /// Activation shapes: `[0]` input, `[i + 1]` output of op `i`.
    pub shapes: Vec<Shape>,
    /// Calibrated f32 ranges, indexed like `shapes`.
    pub ranges: Vec<(f32, f32)>,
    /// Parameters of every int8 tensor, indexed like `shapes` (the head's entry, an
    /// f32 output, only records its calibrated range).
    pub tensor_q: Vec<QParams>,
    /// Ops; the last is the head.
    pub ops: Vec<QOp>,
}

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
    use crate::testutil::{Rng, e30_dir, synthetic_cube};

    fn cubes(seed: u64, n: usize) -> Vec<(Vec<u16>, f32)> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| synthetic_cube(&mut rng, 10, 50)).collect()
    }

    /// The int8 network against the f32 one on the real run, 50 synthetic clusters it was
    /// not calibrated on (100 calibration clusters), no head-bias correction. Per-tensor int8
    /// activations cost this network about 0.02 dex on average (mostly a common offset) and
    /// 0.048 dex on the worst of these inputs with MSE ranges (0.055 with min/max; up to
    /// 0.2 dex over 10,000 real eRASS:8 mocks, see the module documentation), the conv0
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

    /// Histograms merge exactly: statistics gathered in two parts and merged equal those
    /// gathered in one pass, whatever the order; min/max reproduces `Calibration::observe`.
    #[test]
    fn histograms_merge_exactly_and_min_max_is_the_old_calibration() {
        let f = Model::load(e30_dir()).unwrap().fold_batch_norm().unwrap();
        let cal = cubes(7, 12);
        let pre: Vec<(Vec<f32>, Vec<f32>)> = cal
            .iter()
            .map(|(c, z)| preprocess(&f.preprocess, f.input, c, &[*z]).unwrap())
            .collect();
        let mut whole = ActivationStats::new(&f);
        let mut old = Calibration::empty(&f);
        for (x, z) in &pre {
            whole.observe(&f, x, z).unwrap();
            old.observe(&f, x, z).unwrap();
        }
        let (mut a, mut b) = (ActivationStats::new(&f), ActivationStats::new(&f));
        for (x, z) in pre[..5].iter().rev() {
            b.observe(&f, x, z).unwrap();
        }
        for (x, z) in &pre[5..] {
            a.observe(&f, x, z).unwrap();
        }
        a.merge(&b).unwrap();
        assert_eq!(a, whole);
        assert_eq!(a.samples(), 12);
        let minmax = whole.calibration(&f, RangeMethod::MinMax).unwrap();
        assert_eq!(minmax, old);
        let refs: Vec<(&[u16], &[f32])> = cal
            .iter()
            .map(|(c, z)| (c.as_slice(), std::slice::from_ref(z)))
            .collect();
        assert_eq!(
            calibrate(&f, &refs).unwrap(),
            whole.calibration(&f, RangeMethod::default()).unwrap()
        );
        assert_eq!(
            calibrate_preprocessed(&f, &pre).unwrap(),
            calibrate(&f, &refs).unwrap()
        );
    }

    /// Percentile and MSE ranges on known distributions.
    #[test]
    fn percentile_and_mse_ranges() {
        // 0.01, 0.02, ..., 100 (uniform), plus as many exact zeros.
        let mut h = Histogram::new();
        for i in 1..=10_000 {
            h.add(i as f32 * 0.01);
            h.add(0.0);
        }
        assert_eq!(h.range(RangeMethod::MinMax), (0.0, 100.0));
        let (lo, hi) = h.range(RangeMethod::Percentile(99.0));
        assert_eq!(lo, 0.0);
        assert!((hi - 99.0).abs() <= 2.0 * h.width as f32, "{hi}");
        // Uniform values: clipping only hurts, the MSE range stays (nearly) the full one.
        let (lo, hi) = h.range(RangeMethod::Mse);
        assert_eq!(lo, 0.0);
        assert!(hi > 97.0 && hi <= 100.0, "{hi}");
        // Exponential values (a long tail, maximum ~ 11.5 for 10^5 of them), a tenth of them
        // mirrored and scaled by 0.1 (a leaky ReLU's negative side): MSE clips the tail
        // (at 8 bits about 10 mean values, Banner et al. 2019) and beats min/max on its
        // own criterion.
        let mut rng = Rng::new(9);
        let mut h = Histogram::new();
        for i in 0..100_000 {
            let v = -(rng.unit().max(1e-12).ln()) as f32;
            h.add(if i % 10 == 0 { -0.1 * v } else { v });
        }
        let (lo, hi) = h.range(RangeMethod::Mse);
        assert!(hi > 6.0 && hi < 0.95 * h.max, "{hi} (max {})", h.max);
        assert!(lo < 0.0 && lo >= h.min, "{lo} (min {})", h.min);
        assert!(h.sq_error(lo, hi) < 0.9 * h.sq_error(h.min, h.max));
    }
}
