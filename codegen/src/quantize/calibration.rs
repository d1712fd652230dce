//! Calibration: the value range of every activation tensor, from which
//! [`quantize`](super::quantize) derives the int8 parameters.
//!
//! [`calibrate`] runs the f32 interpreter over calibration inputs, histograms every
//! activation tensor (the preprocessed input, each op's output after its fused
//! activation, and the concatenated vector of features and z') and chooses each one's
//! range ([`RangeMethod`]; default: minimum squared error, see below).
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
//! The measurements behind the default (int8 cost with each method, per tensor, per
//! brightness decile): `docs/quantization.md`.
//!
//! [`Requant`]: runtime::quant::Requant

use crate::interp::{FloatPath, preprocess};
use crate::model::{FoldedModel, Op};
use anyhow::{Result, ensure};
use runtime::quant::QParams;

/// Value range of every activation tensor (`[0]` input, `[i + 1]` op `i`) that
/// [`quantize`](super::quantize) turns into its int8 parameters.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::testutil::{Rng, e30_dir, synthetic_cube};

    fn cubes(seed: u64, n: usize) -> Vec<(Vec<u16>, f32)> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| synthetic_cube(&mut rng, 10, 50)).collect()
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
