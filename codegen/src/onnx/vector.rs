//! Feature-vector layers of the ONNX walk: flattening (recording the order in which each
//! element is read), the concatenation of the scalar inputs (the redshift and the sidecar's
//! auxiliary inputs), dense layers (weight rows permuted into the runtime's order) and their
//! biases.

use super::fold::HINT;
use super::graph::const_f32;
use super::map::{Ax, Val, Walk, axes_text, describe};
use crate::arch::Layer;
use anyhow::{Result, anyhow, bail, ensure};
use onnx_ir::flatten::FlattenNode;
use onnx_ir::gemm::GemmNode;
use onnx_ir::linear::LinearNode;
use onnx_ir::reshape::{ReshapeInput, ReshapeNode};
use onnx_ir::squeeze::{SqueezeInput, SqueezeNode};
use onnx_ir::unsqueeze::{UnsqueezeConfig, UnsqueezeNode};
use onnx_ir::{Argument, Node};

impl Walk<'_> {
    pub(super) fn flatten_node(&mut self, i: usize, n: &FlattenNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        ensure!(
            n.config.axis == 1,
            "{}: axis {}; supported: axis 1 (keep the batch, flatten the rest)",
            at(),
            n.config.axis
        );
        let out = self.flatten(i, &v)?;
        self.set_out(i, out, true)
    }

    pub(super) fn reshape_node(&mut self, i: usize, n: &ReshapeNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        let target = match &n.config.shape {
            ReshapeInput::Static(t) => t.clone(),
            ReshapeInput::Runtime(r) => {
                let a = n.inputs.get(r.input_index).map_or("", |a| a.name.as_str());
                match self.vals.get(a) {
                    Some(Val::Ints(t)) => {
                        let t = t.clone();
                        self.folded_target(i, &v, &t)?
                    }
                    _ => bail!(
                        "{}: the target shape is {}, computed at run time and not folded to a constant; supported: a target [N, features], constant or computed from shapes; {HINT}",
                        at(),
                        p.tensor(a)
                    ),
                }
            }
        };
        let out = self.reshape(i, &v, &target)?;
        let chain = !matches!(out, Val::Scalar { .. });
        self.set_out(i, out, chain)
    }

    pub(super) fn squeeze_node(&mut self, i: usize, n: &SqueezeNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        let axes = match &n.config.axes {
            Some(SqueezeInput::Static(a)) => Some(a.clone()),
            None => None,
            Some(SqueezeInput::Runtime(_)) => {
                bail!(
                    "{}: axes computed at run time; supported: constant axes",
                    at()
                )
            }
        };
        let out = self.squeeze(i, &v, axes)?;
        let chain = !matches!(out, Val::Scalar { .. });
        self.set_out(i, out, chain)
    }

    pub(super) fn unsqueeze(&mut self, i: usize, n: &UnsqueezeNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let (_, v) = self.chain_input(i)?;
        let ok = matches!(v, Val::Scalar { rank: 1, .. })
            && matches!(&n.config, UnsqueezeConfig::Static(a) if a == &[1] || a == &[-1]);
        ensure!(
            ok,
            "{}: Unsqueeze of {}; supported: the redshift (or an auxiliary input) [N] to [N, 1]",
            at(),
            describe(&v)
        );
        let Val::Scalar { slot, input, .. } = v else {
            unreachable!("checked above")
        };
        self.set_out(
            i,
            Val::Scalar {
                slot,
                rank: 2,
                input,
            },
            false,
        )
    }

    pub(super) fn linear(&mut self, i: usize, n: &LinearNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let x = n.inputs.first().map(|a| a.name.clone()).unwrap_or_default();
        let (wshape, w) = n.inputs.get(1).and_then(const_f32).ok_or_else(|| {
            anyhow!(
                "{}: the weights are computed at run time; supported: constant weights",
                at()
            )
        })?;
        ensure!(
            wshape.len() == 2,
            "{}: weight of shape {wshape:?}, expected a matrix",
            at()
        );
        // Gemm-sourced weights are [out, in], MatMul-sourced [in, out].
        let (n_in, units, w) = if n.config.transpose_weight {
            (wshape[1], wshape[0], transpose(&w, wshape[0], wshape[1]))
        } else {
            (wshape[0], wshape[1], w)
        };
        let b = match n.inputs.get(2).filter(|a| !a.is_optional()) {
            Some(a) => Some(
                const_f32(a)
                    .ok_or_else(|| anyhow!("{}: the bias is computed at run time", at()))?,
            ),
            None => None,
        };
        let bias = bias_vec(b, units).map_err(|e| anyhow!("{}: {e}", at()))?;
        self.dense(i, &x, n_in, units, w, bias)
    }

    pub(super) fn gemm(&mut self, i: usize, n: &GemmNode) -> Result<()> {
        let p = self.p;
        let at = || p.at(i);
        let c = &n.config;
        ensure!(
            c.trans_a == 0,
            "{}: transA = 1 (the activations transposed); supported: transA = 0",
            at()
        );
        let x = n.inputs.first().map(|a| a.name.clone()).unwrap_or_default();
        let (bshape, b) = n.inputs.get(1).and_then(const_f32).ok_or_else(|| {
            anyhow!(
                "{}: B is computed at run time; supported: constant weights",
                at()
            )
        })?;
        ensure!(
            bshape.len() == 2,
            "{}: B of shape {bshape:?}, expected a matrix",
            at()
        );
        let (n_in, units, mut w) = if c.trans_b != 0 {
            (bshape[1], bshape[0], transpose(&b, bshape[0], bshape[1]))
        } else {
            (bshape[0], bshape[1], b)
        };
        w.iter_mut().for_each(|v| *v *= c.alpha);
        let cc = match n.inputs.get(2).filter(|a| !a.is_optional()) {
            Some(a) => {
                Some(const_f32(a).ok_or_else(|| anyhow!("{}: C is computed at run time", at()))?)
            }
            None => None,
        };
        let mut bias = bias_vec(cc, units).map_err(|e| anyhow!("{}: {e}", at()))?;
        bias.iter_mut().for_each(|v| *v *= c.beta);
        self.dense(i, &x, n_in, units, w, bias)
    }

    /// Flatten an image tensor in its physical axis order.
    pub(super) fn flatten(&mut self, i: usize, v: &Val) -> Result<Val> {
        match v {
            Val::Spatial { s, axes, .. } => {
                ensure!(
                    axes[0] == Ax::N,
                    "{}: flattens a tensor whose first axis is not the batch ({})",
                    self.p.at(i),
                    axes_text(*axes)
                );
                let dim = |a: Ax| match a {
                    Ax::C => s.c,
                    Ax::H => s.h,
                    Ax::W => s.w,
                    Ax::N => 1,
                };
                let d = [dim(axes[1]), dim(axes[2]), dim(axes[3])];
                let mut index = Vec::with_capacity(s.len());
                for p1 in 0..d[0] {
                    for p2 in 0..d[1] {
                        for p3 in 0..d[2] {
                            let mut l = [0usize; 3]; // c, h, w
                            for (ax, pos) in axes[1..].iter().zip([p1, p2, p3]) {
                                match ax {
                                    Ax::C => l[0] = pos,
                                    Ax::H => l[1] = pos,
                                    Ax::W => l[2] = pos,
                                    Ax::N => {}
                                }
                            }
                            index.push((l[0] * s.h + l[1]) * s.w + l[2]);
                        }
                    }
                }
                self.flat_len = s.len();
                Ok(Val::Vector {
                    index,
                    pre_dense: true,
                    joined: 0,
                })
            }
            Val::Vector { .. } => Ok(v.clone()),
            _ => bail!(
                "{}: flattens {}; supported: flattening the image features",
                self.p.at(i),
                describe(v)
            ),
        }
    }

    pub(super) fn reshape(&mut self, i: usize, v: &Val, target: &[i64]) -> Result<Val> {
        let at = self.p.at(i);
        match v {
            Val::Scalar { slot, input, .. } => {
                ensure!(
                    matches!(target, [-1 | 0, 1] | [-1 | 0]),
                    "{at}: reshapes {} to {target:?}; supported: [N, 1] or [N]",
                    self.scalar_name(*slot)
                );
                Ok(Val::Scalar {
                    slot: *slot,
                    rank: target.len(),
                    input: input.clone(),
                })
            }
            Val::Spatial { .. } | Val::Vector { .. } => {
                let len = match v {
                    Val::Spatial { s, .. } => s.len(),
                    Val::Vector { index, .. } => index.len(),
                    _ => 0,
                };
                let ok = match target {
                    [b, f] => {
                        matches!(b, -1..=1)
                            && (*f == -1 && *b != -1 || usize::try_from(*f).is_ok_and(|f| f == len))
                    }
                    _ => false,
                };
                ensure!(
                    ok,
                    "{at}: target shape {target:?}; supported: [N, features] (e.g. [-1, {len}] or [0, -1]) to flatten the image features"
                );
                self.flatten(i, v)
            }
            _ => bail!(
                "{at}: reshapes {}; supported: flattening the image features",
                describe(v)
            ),
        }
    }

    pub(super) fn squeeze(&mut self, i: usize, v: &Val, axes: Option<Vec<i64>>) -> Result<Val> {
        let at = self.p.at(i);
        match v {
            Val::Spatial { s, axes: ax, .. } if s.h == 1 && s.w == 1 => {
                let mut want: Vec<i64> = (1..4)
                    .filter(|k| matches!(ax[*k], Ax::H | Ax::W))
                    .map(|k| k as i64)
                    .collect();
                if s.c == 1 {
                    want = vec![]; // ambiguous: refuse below unless the axes are explicit
                }
                let got: Vec<i64> = axes
                    .unwrap_or_default()
                    .iter()
                    .map(|a| if *a < 0 { a + 4 } else { *a })
                    .collect();
                let mut got_sorted = got.clone();
                got_sorted.sort_unstable();
                ensure!(
                    !want.is_empty() && got_sorted == want,
                    "{at}: squeezes axes {got:?} of a {}x1x1 tensor; supported: squeezing the two 1-pixel spatial axes after global average pooling",
                    s.c
                );
                self.flatten(i, v)
            }
            Val::Scalar {
                slot,
                rank: 2,
                input,
            } if matches!(axes.as_deref(), Some([1] | [-1])) => Ok(Val::Scalar {
                slot: *slot,
                rank: 1,
                input: input.clone(),
            }),
            _ => bail!(
                "{at}: Squeeze of {}; supported: squeezing the spatial axes after global average pooling",
                describe(v)
            ),
        }
    }

    pub(super) fn concat(&mut self, i: usize, axis: usize, inputs: &[Argument]) -> Result<()> {
        let at = self.p.at(i);
        let vals: Vec<(String, Val)> = inputs
            .iter()
            .map(|a| Ok((a.name.clone(), self.val(i, a)?)))
            .collect::<Result<_>>()?;
        let feats: Vec<&(String, Val)> = vals
            .iter()
            .filter(|(_, v)| matches!(v, Val::Vector { .. }))
            .collect();
        let slots: Vec<usize> = vals
            .iter()
            .filter_map(|(_, v)| match v {
                Val::Scalar { slot, rank: 2, .. } => Some(*slot),
                _ => None,
            })
            .collect();
        let ok =
            feats.len() == 1 && !slots.is_empty() && vals.len() == slots.len() + 1 && axis == 1;
        if !ok {
            bail!(
                "{at}: concatenates {} along axis {axis}; supported: the flattened image features [N, F] with the redshift [N, 1] (and the auxiliary inputs of the sidecar's \"extra\", [N, 1] each) along axis 1",
                vals.iter()
                    .map(|(n, v)| format!("{} ({})", self.p.tensor(n), describe(v)))
                    .collect::<Vec<_>>()
                    .join(" and ")
            );
        }
        let (name, v) = feats[0];
        let Val::Vector {
            index,
            pre_dense,
            joined,
        } = v
        else {
            bail!("{at}: internal error: the features are not a vector");
        };
        ensure!(
            *name == self.tail,
            "{at}: concatenates {}, which is not the output of the previous layer ({})",
            self.p.tensor(name),
            self.p.tensor(&self.tail)
        );
        if !*pre_dense {
            if slots == [0] {
                bail!(
                    "{at}: the redshift joins after a dense layer; supported: the redshift concatenated with the flattened image features, before the first dense layer (as the trainer's networks do)"
                );
            }
            bail!(
                "{at}: {} join{} after a dense layer; supported: the redshift and the auxiliary inputs concatenated with the flattened image features, before the first dense layer",
                slots
                    .iter()
                    .map(|k| self.scalar_name(*k))
                    .collect::<Vec<_>>()
                    .join(" and "),
                if slots.len() == 1 { "s" } else { "" }
            );
        }
        let mut added = 0u32;
        for &k in &slots {
            let bit = 1u32 << k;
            ensure!(
                (joined | added) & bit == 0,
                "{at}: {} joins the features twice; supported: each scalar input concatenated once",
                self.scalar_name(k)
            );
            added |= bit;
        }
        let mut out = Vec::with_capacity(index.len() + slots.len());
        for (_, v) in &vals {
            match v {
                Val::Vector { index, .. } => out.extend_from_slice(index),
                Val::Scalar { slot, .. } => out.push(self.flat_len + slot),
                _ => bail!("{at}: internal error: neither features nor a scalar"),
            }
        }
        if *joined == 0 {
            // The runtime's flatten appends every scalar input at once.
            self.layers.push(Layer::FlattenConcatZ {
                scalars: self.scalar_inputs.len(),
            });
        }
        let v = Val::Vector {
            index: out,
            pre_dense: true,
            joined: joined | added,
        };
        self.set_out(i, v, true)
    }

    /// A dense layer reading tensor `x` with weights `w` `[n_in][units]` in the ONNX vector's order.
    pub(super) fn dense(
        &mut self,
        i: usize,
        x: &str,
        n_in: usize,
        units: usize,
        w: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<()> {
        let at = self.p.at(i);
        let role = self.plan.role(i);
        let xa = self.p.graph.nodes[i]
            .inputs()
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("{at}: has no input"))?;
        let v = self.val(i, &xa)?;
        let sibling = role.is_some() && self.head.reads.as_deref() == Some(x);
        ensure!(
            x == self.tail || sibling,
            "{at}: reads {}, which is not the output of the previous layer ({}): only a single chain of layers is supported",
            self.p.tensor(x),
            self.p.tensor(&self.tail)
        );
        let Val::Vector {
            index,
            pre_dense,
            joined,
        } = v
        else {
            bail!(
                "{at}: dense layer on {}; supported: dense layers on the flattened features [N, F]",
                describe(&v)
            );
        };
        ensure!(
            index.len() == n_in,
            "{at}: weight for {n_in} inputs on a vector of {}",
            index.len()
        );
        let n_rt = if pre_dense {
            // Every scalar input the graph has must have joined; the runtime's vector holds
            // them all (a graph without a redshift input: z' with zero weights).
            let missing = (0..self.scalar_inputs.len())
                .find(|&k| self.scalar_inputs[k].is_some() && joined & (1 << k) == 0);
            if let Some(k) = missing {
                let name = self.scalar_inputs[k].clone().unwrap_or_default();
                let join = (i + 1..self.p.graph.nodes.len()).find(|&n| {
                    matches!(&self.p.graph.nodes[n], Node::Concat(c) if c.inputs.iter().any(|a| a.name == name || matches!(self.vals.get(&a.name), Some(Val::Scalar { slot, .. }) if *slot == k)))
                });
                let later = join.map_or(String::new(), |n| {
                    format!(", which joins later at {}", self.p.node(n))
                });
                if k == 0 {
                    bail!(
                        "{at}: the first dense layer reads the image features without the redshift{later}; supported: the redshift concatenated with the flattened image features before the first dense layer (as the trainer's networks do)"
                    );
                }
                bail!(
                    "{at}: the first dense layer reads the image features without {}{later}; supported: the redshift and every auxiliary input concatenated with the flattened image features before the first dense layer",
                    self.scalar_name(k)
                );
            }
            if joined == 0 {
                self.layers.push(Layer::FlattenConcatZ {
                    scalars: self.scalar_inputs.len(),
                });
            }
            self.flat_len + self.scalar_inputs.len()
        } else {
            n_in
        };
        // Rows into the runtime's order.
        let mut wr = vec![0f32; n_rt * units];
        let mut seen = vec![false; n_rt];
        for (row, &dst) in index.iter().enumerate() {
            ensure!(
                dst < n_rt && !seen[dst],
                "{at}: internal error: feature order is not a permutation"
            );
            seen[dst] = true;
            wr[dst * units..(dst + 1) * units].copy_from_slice(&w[row * units..(row + 1) * units]);
        }
        if let Some(role) = role {
            self.head
                .add(role, x, n_rt, units, wr, bias)
                .map_err(|e| anyhow!("{at}: {e}"))?;
            return self.set_out(i, Val::Head(role), false);
        }
        let di = self.counts[2];
        self.push_tensor(format!("dense{di}.weight"), vec![n_rt, units], wr);
        self.push_tensor(format!("dense{di}.bias"), vec![units], bias);
        self.counts[2] += 1;
        self.layers.push(Layer::Dense { units });
        let v = Val::Vector {
            index: (0..units).collect(),
            pre_dense: false,
            joined: u32::MAX,
        };
        self.set_out(i, v, true)
    }

    /// `Add` of a constant to a dense layer's output (a bias the exporter kept separate).
    pub(super) fn add(&mut self, i: usize, inputs: &[Argument]) -> Result<()> {
        let at = self.p.at(i);
        let vals: Vec<Val> = inputs
            .iter()
            .map(|a| self.val(i, a))
            .collect::<Result<_>>()?;
        let (k_data, k_const) = match vals.as_slice() {
            [Val::Const, _] => (1, 0),
            [_, Val::Const] => (0, 1),
            _ => bail!(
                "{at}: adds {}; supported: a constant bias added to a dense layer's output (residual connections are not supported)",
                vals.iter().map(describe).collect::<Vec<_>>().join(" and ")
            ),
        };
        // Keras 3's BatchNormalization: a per-channel Add after a convolution or batch norm.
        let after_bn = matches!(self.layers.last(), Some(Layer::BatchNorm { .. }));
        if matches!(vals[k_data], Val::Spatial { .. })
            || (after_bn
                && matches!(
                    vals[k_data],
                    Val::Vector {
                        pre_dense: false,
                        ..
                    }
                ))
        {
            return self.shift(i, inputs);
        }
        let data = &inputs[k_data];
        let c = const_f32(&inputs[k_const]).ok_or_else(|| anyhow!("{at}: unreadable constant"))?;
        match vals[k_data].clone() {
            Val::Head(role) => {
                let units = self.head.units(role);
                let b = bias_vec(Some(c), units).map_err(|e| anyhow!("{at}: {e}"))?;
                self.head.add_bias(role, &b);
                self.set_out(i, Val::Head(role), false)
            }
            v @ Val::Vector {
                pre_dense: false, ..
            } if data.name == self.tail
                && matches!(self.layers.last(), Some(Layer::Dense { .. })) =>
            {
                let name = format!("dense{}.bias", self.counts[2].saturating_sub(1));
                let t = self
                    .tensors
                    .get_mut(&name)
                    .ok_or_else(|| anyhow!("{at}: internal error: no {name}"))?;
                let b = bias_vec(Some(c), t.data.len()).map_err(|e| anyhow!("{at}: {e}"))?;
                t.data.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                self.set_out(i, v, true)
            }
            v => bail!(
                "{at}: adds a constant to {}; supported: a constant bias added directly to a dense layer's output",
                describe(&v)
            ),
        }
    }
}

/// `rows x cols` row-major -> `cols x rows`.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    out
}

/// A bias broadcast to `units` values (`[]`, `[1]`, `[units]` or `[1, units]`).
fn bias_vec(b: Option<(Vec<usize>, Vec<f32>)>, units: usize) -> Result<Vec<f32>> {
    match b {
        None => Ok(vec![0.0; units]),
        Some((_, v)) if v.len() == 1 => Ok(vec![v[0]; units]),
        Some((shape, v)) => {
            let ok = v.len() == units && shape.iter().filter(|d| **d != 1).count() <= 1;
            ensure!(
                ok,
                "bias of shape {shape:?} does not broadcast to {units} units per cluster"
            );
            Ok(v)
        }
    }
}
