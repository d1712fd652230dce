//! Per-channel `Mul` and `Add` of constants after a convolution or a dense layer.
//!
//! Keras 3 computes `BatchNormalization` at inference as `x * inv + (beta - mean * inv)` with
//! plain tensor operations, so tf2onnx writes it as `Mul` by a `[1, C, 1, 1]` constant and `Add`
//! of another, instead of a `BatchNormalization` node (tf.keras 2's fused kernel). Each maps onto
//! the runtime's batch-norm layer, folded into the layer before like any other: a `Mul` by `s`
//! is a batch norm with gamma `s`, beta 0, mean 0, variance 1 and epsilon 0 (so the folded
//! factor is `s` itself), a `Mul` after a batch norm scales its gamma and beta, and an `Add` of
//! `t` adds to the batch norm's beta or to the layer's bias. Only a constant with one value per
//! channel (or one value) on the channel axis of an NCHW tensor, or per unit of a dense layer's
//! output, is accepted; anything else is refused.

use super::graph::const_f32;
use super::map::{NCHW, Val, Walk, describe};
use crate::arch::Layer;
use crate::model::TensorF32;
use anyhow::{Result, anyhow, bail, ensure};
use onnx_ir::Argument;

impl Walk<'_> {
    /// The data operand of a `Mul` or `Add` with one constant, and the constant.
    fn with_constant<'n>(
        &self,
        i: usize,
        inputs: &'n [Argument],
        what: &str,
    ) -> Result<(&'n Argument, Val, &'n Argument)> {
        let at = self.p.at(i);
        let vals: Vec<Val> = inputs
            .iter()
            .map(|a| self.val(i, a))
            .collect::<Result<_>>()?;
        match vals.as_slice() {
            [Val::Const, v] => Ok((&inputs[1], v.clone(), &inputs[0])),
            [v, Val::Const] => Ok((&inputs[0], v.clone(), &inputs[1])),
            _ => bail!(
                "{at}: {what} {}; supported: a constant per channel {what} directly after a convolution or dense layer (Keras 3's BatchNormalization)",
                vals.iter().map(describe).collect::<Vec<_>>().join(" and ")
            ),
        }
    }

    /// One value per channel of `v` (of `n` channels) from constant `c`, broadcast on the
    /// channel axis (axis 1) only.
    fn per_channel(&self, i: usize, v: &Val, c: &Argument) -> Result<Vec<f32>> {
        let at = self.p.at(i);
        let (shape, data) = const_f32(c).ok_or_else(|| anyhow!("{at}: unreadable constant"))?;
        let (n, rank) = match v {
            Val::Spatial { s, .. } => (s.c, 4),
            Val::Vector { index, .. } => (index.len(), 2),
            _ => (0, 0),
        };
        if data.len() == 1 && shape.len() <= rank {
            return Ok(vec![data[0]; n]);
        }
        // Right-aligned against [N, C, (H, W)]: the channel axis holds n, every other 1.
        let ok = data.len() == n
            && shape.len() <= rank
            && shape.len() + 1 >= rank
            && shape.iter().rev().enumerate().all(|(k, d)| {
                let is_channel = k + 2 == rank;
                *d == if is_channel { n } else { 1 }
            });
        ensure!(
            ok,
            "{at}: constant of shape {shape:?} on {}; supported: one value, or one per channel ({n}) on axis 1",
            describe(v)
        );
        Ok(data)
    }

    /// The data must be the last layer's output: a convolution's (NCHW) or a dense layer's,
    /// or a batch norm's after one of them.
    fn affine_target(&self, i: usize, data: &Argument, v: &Val, what: &str) -> Result<()> {
        let at = self.p.at(i);
        let after = match self.layers.last() {
            Some(Layer::Conv2d { .. }) => "conv",
            Some(Layer::Dense { .. }) => "dense",
            Some(Layer::BatchNorm { .. }) => "bn",
            _ => "",
        };
        let ok = data.name == self.tail
            && match v {
                Val::Spatial { axes, pooled, .. } => {
                    *axes == NCHW && !pooled && matches!(after, "conv" | "bn")
                }
                Val::Vector {
                    pre_dense: false, ..
                } => matches!(after, "dense" | "bn"),
                _ => false,
            };
        ensure!(
            ok,
            "{at}: {what} a constant to {}, which is not the output of a convolution (NCHW) or dense layer; supported: a per-channel {what} directly after a convolution or dense layer, with no activation between (Keras 3's BatchNormalization), so that it folds into it",
            describe(v)
        );
        Ok(())
    }

    /// `Mul` by a per-channel constant: a batch norm of gamma `s` (or its gamma and beta scaled).
    pub(super) fn scale(&mut self, i: usize, inputs: &[Argument]) -> Result<()> {
        let (data, v, c) = self.with_constant(i, inputs, "multiplies")?;
        self.affine_target(i, data, &v, "multiplies")?;
        let s = self.per_channel(i, &v, c)?;
        if let Some(Layer::BatchNorm { .. }) = self.layers.last() {
            let ni = self.counts[1] - 1;
            for name in ["gamma", "beta"] {
                let t = self
                    .tensors
                    .get_mut(&format!("bn{ni}.{name}"))
                    .ok_or_else(|| anyhow!("{}: internal error: no bn{ni}.{name}", self.p.at(i)))?;
                t.data.iter_mut().zip(&s).for_each(|(x, y)| *x *= y);
            }
        } else {
            let n = s.len();
            let ni = self.counts[1];
            self.push_tensor(format!("bn{ni}.gamma"), vec![n], s);
            self.push_tensor(format!("bn{ni}.beta"), vec![n], vec![0.0; n]);
            self.push_tensor(format!("bn{ni}.running_mean"), vec![n], vec![0.0; n]);
            self.push_tensor(format!("bn{ni}.running_var"), vec![n], vec![1.0; n]);
            self.counts[1] += 1;
            self.layers.push(Layer::BatchNorm { epsilon: 0.0 });
        }
        self.set_out(i, v, true)
    }

    /// `Add` of a per-channel constant to a convolution's or batch norm's output.
    pub(super) fn shift(&mut self, i: usize, inputs: &[Argument]) -> Result<()> {
        let (data, v, c) = self.with_constant(i, inputs, "adds")?;
        self.affine_target(i, data, &v, "adds")?;
        let t = self.per_channel(i, &v, c)?;
        let name = match self.layers.last() {
            Some(Layer::BatchNorm { .. }) => format!("bn{}.beta", self.counts[1] - 1),
            _ => format!("conv{}.bias", self.counts[0] - 1),
        };
        let n = t.len();
        let bias = self.tensors.entry(name).or_insert_with(|| TensorF32 {
            shape: vec![n],
            data: vec![0.0; n],
        });
        ensure!(
            bias.data.len() == n,
            "{}: internal error: bias of {} for {n} channels",
            self.p.at(i),
            bias.data.len()
        );
        bias.data.iter_mut().zip(&t).for_each(|(x, y)| *x += y);
        self.set_out(i, v, true)
    }
}
