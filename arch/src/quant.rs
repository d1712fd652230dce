//! The int8 graph: [`QuantModel`] and its ops, with their weights, biases, requantisation
//! tables and tensor parameters. codegen's post-training quantisation (`codegen::quantize`)
//! produces it and writes it into blobs and generated code; [`crate::load`] reads it back
//! from a blob, and [`QuantModel::forward_s8`] runs it with the interpreter's int8 kernels
//! ([`crate::interp`]).

use crate::interp::{
    Prediction, Traced, conv2d_s8, dense_acc_s8, leaky_s8, pool_s8, prediction, preprocess, record,
};
use crate::model::{ConvGeom, PreprocessDesc, SigmaCalibration};
use crate::{PoolKind, Shape};
use anyhow::{Result, anyhow, ensure};
use runtime::kernels::conv2d::QuantArgs;
use runtime::quant::{QParams, Requant};

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
    ///
    /// [`FoldedModel::z_range`]: crate::model::FoldedModel::z_range
    pub z_range: [f32; 2],
    /// Training ranges of the auxiliary inputs ([`FoldedModel::extra_ranges`]).
    ///
    /// [`FoldedModel::extra_ranges`]: crate::model::FoldedModel::extra_ranges
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

/// What the int8 head produces.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadOutput {
    /// int32 accumulators.
    pub acc: Vec<i32>,
    /// Dequantised: `out_scale[o] * acc[o]` in f32.
    pub real: Vec<f32>,
}

impl QuantModel {
    /// Run the int8 network on a preprocessed input and preprocessed scalars. `trace`
    /// receives the quantised input and every int8 op output (the head's is in the return
    /// value).
    pub fn forward_s8(
        &self,
        x: &[f32],
        z: &[f32],
        mut trace: Option<&mut Vec<Traced<i8>>>,
    ) -> Result<HeadOutput> {
        ensure!(
            x.len() == self.input.len(),
            "input of {} values, expected {}",
            x.len(),
            self.input.len()
        );
        let mut cur: Vec<i8> = x.iter().map(|v| self.tensor_q[0].quantize(*v)).collect();
        record(&mut trace, "input".into(), self.shapes[0], &cur);
        for (i, op) in self.ops.iter().enumerate() {
            let s = self.shapes[i];
            cur = match op {
                QOp::Conv2d(c) => conv2d_s8(&cur, s, &c.geom, &c.weight, &c.bias, &c.args()),
                QOp::Pool2d { kind, size } => pool_s8(&cur, s, *kind, *size, *size),
                QOp::GlobalAvgPool => pool_s8(&cur, s, PoolKind::Avg, s.h, s.w),
                QOp::FlattenConcatZ { z_q } => cur
                    .iter()
                    .copied()
                    .chain(z.iter().map(|v| z_q.quantize(*v)))
                    .collect(),
                QOp::Dense(d) => {
                    let acc = dense_acc_s8(&cur, d.units, &d.weight, &d.bias, d.in_q.zero_point);
                    let q = d.args();
                    acc.iter()
                        .enumerate()
                        .map(|(o, a)| q.output(o, *a))
                        .collect()
                }
                QOp::LeakyRelu(l) => {
                    leaky_s8(&cur, l.in_q.zero_point, l.pos, l.neg, l.out_q.zero_point)
                }
                QOp::Head(h) => {
                    let acc = dense_acc_s8(&cur, h.units, &h.weight, &h.bias, h.in_q.zero_point);
                    let real = acc
                        .iter()
                        .zip(&h.out_scale)
                        .map(|(a, s)| s * *a as f32)
                        .collect();
                    return Ok(HeadOutput { acc, real });
                }
            };
            record(
                &mut trace,
                format!("{i}:{}", op.name()),
                self.shapes[i + 1],
                &cur,
            );
        }
        Err(anyhow!("the quantised model has no head"))
    }

    /// Preprocess raw counts and scalars (`[z, extra...]`), run in int8, and turn the
    /// head into (mu, sigma).
    pub fn predict(&self, counts: &[u16], scalars: &[f32]) -> Result<Prediction> {
        let (x, zp) = preprocess(&self.preprocess, self.input, counts, scalars)?;
        let h = self.forward_s8(&x, &zp, None)?;
        Ok(prediction(
            [h.real[0], h.real[1]],
            self.sigma_floor,
            self.sigma_calibration,
        ))
    }
}
