//! Test helpers, for this crate's tests and (feature `testutil`) codegen's: a seeded PRNG,
//! plausible synthetic photon-count cubes (neither crate has a dataset reader, and neither
//! may depend on the trainer), small folded models, and the committed trained run.

use crate::model::{ConvGeom, ConvOp, DenseOp, FoldedModel, Op, PreprocessDesc};
use crate::{Padding, PoolKind, Shape};
use std::path::PathBuf;

/// The real exported run shipped with the repository (`codegen/tests/fixtures/edge-e30`).
pub fn e30_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../codegen/tests/fixtures/edge-e30")
}

/// SplitMix64.
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit() as f32
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.unit()).cos()
    }
    /// Poisson: Knuth's product method for small means, a rounded normal above 30.
    pub fn poisson(&mut self, lambda: f64) -> u16 {
        if lambda < 30.0 {
            let (limit, mut p, mut k) = ((-lambda).exp(), 1.0, 0u32);
            loop {
                p *= self.unit();
                if p <= limit {
                    return k.min(65535) as u16;
                }
                k += 1;
            }
        }
        (lambda + lambda.sqrt() * self.normal())
            .round()
            .clamp(0.0, 65535.0) as u16
    }
}

/// A cluster-like cube `[bands][side][side]` of Poisson counts, with statistics close to
/// the eRASS:8 mocks (background about 0.06 counts per pixel and band, peak pixels from a
/// few to about a hundred counts): a beta-model blob of random brightness and core radius
/// with a band spectrum peaking at a random band, a background varying by band, and up to
/// three point sources; plus a redshift in 0.05-1.3.
pub fn synthetic_cube(rng: &mut Rng, bands: usize, side: usize) -> (Vec<u16>, f32) {
    let amp = 10f64.powf(-1.5 + 3.2 * rng.unit()); // peak counts per pixel, summed over bands
    let rc = 1.5 + 6.0 * rng.unit();
    let (cx, cy) = (
        side as f64 / 2.0 + rng.normal(),
        side as f64 / 2.0 + rng.normal(),
    );
    let peak = 1.0 + 3.0 * rng.unit();
    let spec: Vec<f64> = (0..bands)
        .map(|b| (-(b as f64 - peak).powi(2) / 8.0).exp())
        .collect();
    let norm: f64 = spec.iter().sum();
    let bg: Vec<f64> = (0..bands).map(|_| 0.03 + 0.06 * rng.unit()).collect();
    let sources: Vec<(f64, f64, f64)> = (0..rng.next_u64() % 4)
        .map(|_| {
            (
                rng.unit() * side as f64,
                rng.unit() * side as f64,
                10f64.powf(2.5 * rng.unit()) / bands as f64 / 9.0,
            )
        })
        .collect();
    let mut out = Vec::with_capacity(bands * side * side);
    for (s, bg) in spec.iter().zip(&bg) {
        for y in 0..side {
            for x in 0..side {
                let r2 = (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2);
                let mut lam = bg + amp * s / norm * (1.0 + r2 / (rc * rc)).powf(-1.5);
                for &(sx, sy, f) in &sources {
                    lam += f * (-((y as f64 - sy).powi(2) + (x as f64 - sx).powi(2)) / 3.0).exp();
                }
                out.push(rng.poisson(lam));
            }
        }
    }
    (out, 0.05 + 1.25 * rng.unit() as f32)
}

/// `n` values uniform in [-a, a).
pub fn vals(rng: &mut Rng, n: usize, a: f32) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-a, a)).collect()
}
/// A convolution op with weights and biases from `rng` (weights scaled by the fan-in).
#[allow(clippy::too_many_arguments)]
pub fn conv(
    rng: &mut Rng,
    in_c: usize,
    filters: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
    slope: f32,
) -> Op {
    let geom = ConvGeom {
        in_c,
        filters,
        kernel,
        stride,
        dilation,
        padding,
    };
    let a = 1.0 / ((in_c * kernel * kernel) as f32).sqrt();
    Op::Conv2d(ConvOp {
        geom,
        weight: vals(rng, filters * in_c * kernel * kernel, a),
        bias: vals(rng, filters, 0.3),
        slope,
    })
}
/// A dense op with weights and biases from `rng` (weights scaled by the fan-in).
pub fn dense(rng: &mut Rng, n_in: usize, units: usize, slope: f32) -> Op {
    Op::Dense(DenseOp {
        n_in,
        units,
        weight: vals(rng, n_in * units, 1.0 / (n_in as f32).sqrt()),
        bias: vals(rng, units, 0.3),
        slope,
    })
}
/// A folded model of `ops` on a `c x h x w` input, with neutral preprocessing.
pub fn model(c: usize, h: usize, w: usize, ops: Vec<Op>) -> FoldedModel {
    let preprocess = PreprocessDesc {
        band_scale: vec![1.0; c],
        z_shift: 0.0,
        z_scale: 1.0,
        extra: vec![],
    };
    FoldedModel {
        input: Shape { c, h, w },
        preprocess,
        sigma_floor: 0.005,
        extra_ranges: vec![],
        sigma_calibration: None,
        z_range: crate::model::FULL_Z_RANGE,
        ops,
    }
}
/// Test model A: same (dilated) and valid convolutions, avg and max pooling with remainders, dense layers.
pub fn model_a(rng: &mut Rng) -> FoldedModel {
    let ops = vec![
        conv(rng, 3, 4, 3, 1, 1, Padding::Same, 0.1),
        Op::Pool2d {
            kind: PoolKind::Avg,
            size: 2,
        },
        conv(rng, 4, 5, 3, 1, 2, Padding::Same, 0.0),
        conv(rng, 5, 6, 2, 1, 1, Padding::Valid, 1.0),
        Op::Pool2d {
            kind: PoolKind::Max,
            size: 2,
        },
        Op::FlattenConcatZ,
        dense(rng, 25, 7, 0.1),
        dense(rng, 7, 2, 1.0),
    ];
    model(3, 13, 12, ops)
}
/// Test model B: strided valid convolution, global average pooling, a standalone leaky ReLU.
pub fn model_b(rng: &mut Rng) -> FoldedModel {
    let ops = vec![
        conv(rng, 2, 3, 3, 2, 1, Padding::Valid, 1.0),
        Op::GlobalAvgPool,
        Op::LeakyRelu { slope: 0.25 },
        Op::FlattenConcatZ,
        dense(rng, 4, 2, 1.0),
    ];
    model(2, 7, 7, ops)
}
