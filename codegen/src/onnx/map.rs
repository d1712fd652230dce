//! Walking an ONNX graph onto the layer list trained runs use ([`ModelDescription`]).
//!
//! Every tensor of the graph gets a meaning in terms of the network the runtime runs ([`Val`]):
//! the image or an activation computed from it, with its logical shape (channels, height, width
//! as the runtime stores them) and the **physical axis order** the ONNX tensor has; a feature
//! vector, with the position each of its elements has in the runtime's vector; a scalar input
//! (the redshift, or an auxiliary input the sidecar's `extra` names); or a head output. Each
//! supported operator transforms these meanings exactly (a `Transpose` permutes the axis order, a
//! `Flatten` records the order in which it reads the axes, a `Concat` records where each scalar
//! input lands), and each operator that computes on the data checks that its input is laid out
//! as the runtime's kernel expects (a `Conv` needs `[N, C, H, W]`). The first dense layer's
//! weight rows are then permuted from the ONNX vector's order into the runtime's (channel-major
//! flatten, then the redshift, then the auxiliary inputs in the sidecar's order). Nothing is
//! matched by pattern: a layout that cannot be proved is refused.
//!
//! The graph must be one chain of layers from the image to the head, joined by the scalar inputs
//! before the first dense layer; every node must read the output of the previous layer. Every error names the file, the node
//! (as the exporter named it), its operator, the problem, and what is supported.

use super::fold::{FoldedShape, HINT, Ints};
use super::graph::{Parsed, shape_of};
use super::head::{Head, HeadPlan, Role};
use super::sidecar::ImageLayout;
use crate::arch::{Layer, Shape};
use crate::model::TensorF32;
use anyhow::{Result, anyhow, bail, ensure};
use onnx_ir::padding::AutoPad;
use onnx_ir::{Argument, Node};
use std::collections::{BTreeMap, HashMap};

/// Operators the importer maps (for error messages).
pub const SUPPORTED: &str = "Conv, MaxPool, AveragePool, GlobalAveragePool, BatchNormalization, Mul and Add of per-channel constants after a convolution or dense layer (Keras 3 BatchNormalization), Relu, LeakyRelu, Flatten, Reshape / Squeeze to [N, features] (the target constant or computed from shapes), Transpose of the image axes, Concat of the flattened image with the redshift and the sidecar's auxiliary inputs, Gemm, MatMul (+ Add), Dropout and Identity (inference: no-ops), Softplus on the sigma output";

/// Logical axes of the image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ax {
    /// Batch.
    N,
    /// Channels (bands, filters).
    C,
    /// Rows.
    H,
    /// Columns.
    W,
}

pub(super) const NCHW: [Ax; 4] = [Ax::N, Ax::C, Ax::H, Ax::W];

/// What a tensor of the graph means (see the module docs).
#[derive(Debug, Clone)]
pub enum Val {
    /// A constant (weights, shapes).
    Const,
    /// The image or an activation before flattening: logical shape and physical axis order.
    Spatial {
        /// Channels, height, width as the runtime stores them.
        s: Shape,
        /// `axes[i]`: the logical axis physical axis `i` holds.
        axes: [Ax; 4],
        /// After global average pooling (no further spatial layer).
        pooled: bool,
    },
    /// A feature vector `[N, len]`.
    Vector {
        /// Position in the runtime's vector of each ONNX element.
        index: Vec<usize>,
        /// Before the first dense layer: the runtime's vector is the flattened image
        /// (channel-major) followed by scalar input `k` at position `flat_len + k`.
        pre_dense: bool,
        /// Bit `k`: scalar input `k` is part of the vector (after a dense layer: every one).
        joined: u32,
    },
    /// A scalar input, `[N]` (rank 1) or `[N, 1]` (rank 2): the redshift (slot 0) or the
    /// sidecar's auxiliary input `extra[slot - 1]`.
    Scalar {
        /// Its position among the runtime's scalar inputs.
        slot: usize,
        /// Rank.
        rank: usize,
        /// The graph input it comes from.
        input: String,
    },
    /// An output of the head (before the sigma's Softplus).
    Head(Role),
    /// Softplus of the sigma head output.
    SigmaSoftplus,
    /// An integer tensor computed from shapes, known at import ([`super::fold`]).
    Ints(Ints),
}

/// The layer list and tensors, as `model.json` + `model.safetensors` would hold them.
pub struct Mapped {
    /// Input shape (bands, height, width).
    pub input: Shape,
    /// Layers.
    pub layers: Vec<Layer>,
    /// Named tensors (`conv0.weight`, `bn0.gamma`, `dense0.bias`, ...).
    pub tensors: BTreeMap<String, TensorF32>,
    /// The head's outputs.
    pub head: Head,
    /// Layout of the image input.
    pub layout: ImageLayout,
    /// The computed `Reshape` targets folded to constants.
    pub folded: Vec<FoldedShape>,
}

pub(super) struct Walk<'a> {
    pub(super) p: &'a Parsed,
    pub(super) vals: HashMap<String, Val>,
    /// The tensor holding the output of the last layer.
    pub(super) tail: String,
    pub(super) layers: Vec<Layer>,
    pub(super) tensors: BTreeMap<String, TensorF32>,
    pub(super) counts: [usize; 3], // conv, batch norm, dense
    /// Length of the flattened image (the redshift's position in the runtime's vector).
    pub(super) flat_len: usize,
    /// The graph input of each scalar slot (the redshift, then the sidecar's `extra`; `None`:
    /// a graph without a redshift input).
    pub(super) scalar_inputs: Vec<Option<String>>,
    pub(super) plan: HeadPlan,
    pub(super) head: Head,
    /// Whether onnx-ir's static shapes can still be trusted for the cross-check (see `set_out`).
    pub(super) shapes_reliable: bool,
    /// Per node, the `Reshape` whose target shape it helps compute ([`Parsed::shape_target_of`]).
    pub(super) shape_feeds: Vec<Option<usize>>,
    /// The computed `Reshape` targets folded so far.
    pub(super) folded: Vec<FoldedShape>,
}

fn t(shape: Vec<usize>, data: Vec<f32>) -> TensorF32 {
    TensorF32 { shape, data }
}

/// Physical shape of a logical image shape under `axes` (batch as `None`).
fn physical(s: Shape, axes: [Ax; 4]) -> Vec<Option<usize>> {
    axes.iter()
        .map(|a| match a {
            Ax::N => None,
            Ax::C => Some(s.c),
            Ax::H => Some(s.h),
            Ax::W => Some(s.w),
        })
        .collect()
}

pub(super) fn axes_text(axes: [Ax; 4]) -> String {
    axes.iter().map(|a| format!("{a:?}")).collect()
}

/// The auxiliary scalar inputs the sidecar names, for [`map`].
pub struct AuxInputs<'a> {
    /// Graph input names, in the runtime's order (after the redshift).
    pub names: Vec<&'a str>,
    /// What each is (`exposure_s`), for messages.
    pub quantities: Vec<&'a str>,
    /// `the preprocessing sidecar <file>`, for messages.
    pub sidecar: String,
}

impl AuxInputs<'_> {
    fn listed(&self) -> String {
        if self.names.is_empty() {
            "lists none".into()
        } else {
            format!(
                "lists {}",
                self.names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// Whether a graph input of `shape` is a scalar per cluster: `[N]` or `[N, 1]`.
fn scalar_shape(shape: &[Option<usize>]) -> bool {
    matches!(shape.len(), 1 | 2) && shape.get(1).is_none_or(|d| *d == Some(1))
}

/// Map the graph of `p` (image layout `layout`, redshift input if any, the auxiliary inputs
/// `aux`) onto layers.
pub fn map(
    p: &Parsed,
    layout: Option<ImageLayout>,
    bands_hint: Option<usize>,
    aux: &AuxInputs,
) -> Result<Mapped> {
    let file = p.path.display().to_string();
    let g = &p.graph;
    // Inputs: one image (rank 4), at most one redshift ([N] or [N, 1]), and the auxiliary
    // inputs the sidecar names ([N] or [N, 1] each).
    let mut image = None;
    let mut redshift: Option<(String, usize)> = None;
    let mut extra: Vec<Option<usize>> = vec![None; aux.names.len()];
    let f32_tensor = |a: &Argument| matches!(&a.ty, onnx_ir::ArgType::Tensor(t) if t.dtype == onnx_ir::DType::F32);
    if let Some(k) =
        (0..aux.names.len()).find(|&k| !g.inputs.iter().any(|a| a.name == aux.names[k]))
    {
        bail!(
            "{file}: {} describes the auxiliary input `{}` ({}), but the graph has no input of that name; its inputs are {}",
            aux.sidecar,
            aux.names[k],
            aux.quantities[k],
            g.inputs
                .iter()
                .map(|a| format!("`{}`", a.name))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for a in &g.inputs {
        if let Some(k) = aux.names.iter().position(|n| *n == a.name) {
            let shape = shape_of(a);
            ensure!(
                f32_tensor(a) && shape.as_deref().is_some_and(scalar_shape),
                "{file}: input `{}`, the auxiliary input extra[{k}] ({}) of {}, is {} (? = dynamic); supported: a float32 tensor of shape [N] or [N, 1] (one value per cluster)",
                a.name,
                aux.quantities[k],
                aux.sidecar,
                a.ty
            );
            extra[k] = shape.map(|s| s.len());
            continue;
        }
        let Some(shape) = shape_of(a) else {
            bail!("{file}: input `{}` is not a tensor ({})", a.name, a.ty);
        };
        if !f32_tensor(a) {
            bail!(
                "{file}: input `{}` has type {}, expected float32 (the preprocessed image and redshift)",
                a.name,
                a.ty
            );
        }
        match shape.len() {
            4 if image.is_none() => image = Some((a.name.clone(), shape)),
            1 | 2 if redshift.is_none() && scalar_shape(&shape) => {
                redshift = Some((a.name.clone(), shape.len()))
            }
            _ if scalar_shape(&shape) => bail!(
                "{file}: inputs `{}` and `{}` both take one value per cluster ([N] or [N, 1]): one is the redshift, and any other must be an auxiliary input listed in the \"extra\" of {} (which {}), e.g. \"extra\": [{{\"input\": \"{}\", \"quantity\": \"exposure_s\", \"shift\": 0.0, \"scale\": 1.0}}]",
                redshift.as_ref().map_or("", |r| r.0.as_str()),
                a.name,
                aux.sidecar,
                aux.listed(),
                a.name
            ),
            _ => bail!(
                "{file}: unexpected input `{}` of shape {:?}; supported: one image input of rank 4, at most one redshift input of shape [N] or [N, 1], and the auxiliary inputs ([N] or [N, 1]) listed in the \"extra\" of {} (which {})",
                a.name,
                shape,
                aux.sidecar,
                aux.listed()
            ),
        }
    }
    let (image_name, ishape) =
        image.ok_or_else(|| anyhow!("{file}: no image input of rank 4 among the graph inputs"))?;
    let dims: Vec<usize> = ishape[1..]
        .iter()
        .map(|d| d.ok_or_else(|| anyhow!("{file}: image input `{image_name}` has a dynamic dimension {ishape:?}; only the batch may be dynamic: {HINT}")))
        .collect::<Result<_>>()?;
    ensure!(
        ishape[0].is_none_or(|n| n == 1),
        "{file}: image input `{image_name}` has batch {:?}; the runtime infers one cluster at a time (export with a dynamic or unit batch)",
        ishape[0]
    );
    let (a, b, c) = (dims[0], dims[1], dims[2]);
    let layout = match layout {
        Some(l) => l,
        None if b == c && a != b => ImageLayout::Nchw,
        None if a == b && c != a => ImageLayout::Nhwc,
        None => bail!(
            "{file}: cannot tell which axis of the image input `{image_name}` {ishape:?} holds the bands; set \"image_layout\": \"NCHW\" or \"NHWC\" in the preprocessing sidecar"
        ),
    };
    let (s, axes) = match layout {
        ImageLayout::Nchw => (Shape { c: a, h: b, w: c }, NCHW),
        ImageLayout::Nhwc => (Shape { c, h: a, w: b }, [Ax::N, Ax::H, Ax::W, Ax::C]),
    };
    if let Some(n) = bands_hint {
        ensure!(
            n == s.c,
            "{file}: the sidecar gives {n} band scales but the image input `{image_name}` {ishape:?} read as {layout:?} has {} bands",
            s.c
        );
    }
    let mut vals = HashMap::new();
    vals.insert(
        image_name.clone(),
        Val::Spatial {
            s,
            axes,
            pooled: false,
        },
    );
    let mut scalar_inputs = vec![redshift.as_ref().map(|r| r.0.clone())];
    scalar_inputs.extend(aux.names.iter().map(|n| Some(n.to_string())));
    let ranks = std::iter::once(redshift.as_ref().map(|r| r.1)).chain(extra);
    for (slot, (name, rank)) in scalar_inputs.iter().zip(ranks).enumerate() {
        if let (Some(name), Some(rank)) = (name, rank) {
            vals.insert(
                name.clone(),
                Val::Scalar {
                    slot,
                    rank,
                    input: name.clone(),
                },
            );
        }
    }
    let plan = HeadPlan::new(p)?;
    let mut w = Walk {
        p,
        vals,
        tail: image_name,
        layers: Vec::new(),
        tensors: BTreeMap::new(),
        counts: [0; 3],
        flat_len: 0,
        scalar_inputs,
        plan,
        head: Head::default(),
        shapes_reliable: true,
        shape_feeds: (0..g.nodes.len()).map(|i| p.shape_target_of(i)).collect(),
        folded: Vec::new(),
    };
    for i in 0..g.nodes.len() {
        w.node(i)?;
    }
    let head = w.finish()?;
    Ok(Mapped {
        input: s,
        layers: w.layers,
        tensors: w.tensors,
        head,
        layout,
        folded: w.folded,
    })
}

impl Walk<'_> {
    pub(super) fn val(&self, i: usize, a: &Argument) -> Result<Val> {
        if a.value().is_some() {
            return Ok(Val::Const);
        }
        self.vals.get(&a.name).cloned().ok_or_else(|| {
            anyhow!(
                "{}: reads {}, which is neither a graph input nor computed from one (supported: {SUPPORTED})",
                self.p.at(i),
                self.p.tensor(&a.name)
            )
        })
    }

    /// The single data input of node `i`, which must be the chain's tail.
    pub(super) fn chain_input(&self, i: usize) -> Result<(String, Val)> {
        let node = &self.p.graph.nodes[i];
        let a = node
            .inputs()
            .first()
            .ok_or_else(|| anyhow!("{}: has no input", self.p.at(i)))?;
        let v = self.val(i, a)?;
        if a.name != self.tail && !matches!(v, Val::Scalar { .. } | Val::Const) {
            bail!(
                "{}: reads {}, which is not the output of the previous layer ({}): only a single chain of layers from the image to the head is supported (no branches or residual connections)",
                self.p.at(i),
                self.p.tensor(&a.name),
                self.p.tensor(&self.tail)
            );
        }
        Ok((a.name.clone(), v))
    }

    pub(super) fn set_out(&mut self, i: usize, v: Val, chain: bool) -> Result<()> {
        let node = &self.p.graph.nodes[i];
        let out = node
            .outputs()
            .first()
            .ok_or_else(|| anyhow!("{}: has no output", self.p.at(i)))?;
        // Cross-check the shape onnx-ir inferred against ours.
        // onnx-ir 0.22 infers a Conv's output shape from its explicit pads only: after a Conv
        // with auto_pad SAME_* its static shapes are off (ours follow the ONNX definition, and
        // the tests check them against onnxruntime), so the cross-check stops there.
        if let Node::Conv2d(c) = node
            && matches!(c.config.auto_pad, AutoPad::SameUpper | AutoPad::SameLower)
        {
            self.shapes_reliable = false;
        }
        if let (Val::Spatial { s, axes, .. }, Some(got), true) =
            (&v, shape_of(out), self.shapes_reliable)
        {
            let want = physical(*s, *axes);
            let clash = got.len() != 4
                || got
                    .iter()
                    .zip(&want)
                    .any(|(g, w)| matches!((g, w), (Some(g), Some(w)) if g != w));
            ensure!(
                !clash,
                "{}: output shape {got:?} differs from the runtime's {want:?}: this model would not compute what the file says",
                self.p.at(i)
            );
        }
        if chain {
            self.tail = out.name.clone();
        }
        self.vals.insert(out.name.clone(), v);
        Ok(())
    }

    pub(super) fn spatial(&self, i: usize, v: &Val, what: &str) -> Result<Shape> {
        match v {
            Val::Spatial { s, axes, pooled } => {
                ensure!(
                    !pooled,
                    "{}: {what} after global average pooling; supported: {SUPPORTED}",
                    self.p.at(i)
                );
                ensure!(
                    *axes == NCHW,
                    "{}: {what} on a tensor in layout {} (logical axes N, C = bands or filters, H, W); ONNX {what} reads [N, C, H, W], so this graph would mix bands and pixels. A channels-last graph must transpose to NCHW (perm [0, 3, 1, 2]) before its first convolution or pooling",
                    self.p.at(i),
                    axes_text(*axes)
                );
                Ok(*s)
            }
            _ => bail!(
                "{}: {what} on a tensor that is not the image (it is {}); supported: {SUPPORTED}",
                self.p.at(i),
                describe(v)
            ),
        }
    }

    /// Scalar input `slot` in words: `the redshift`, `the auxiliary input `t``.
    pub(super) fn scalar_name(&self, slot: usize) -> String {
        match (
            slot,
            self.scalar_inputs.get(slot).and_then(|n| n.as_deref()),
        ) {
            (0, _) => "the redshift".into(),
            (_, Some(n)) => format!("the auxiliary input `{n}`"),
            _ => format!("auxiliary input {slot}"),
        }
    }

    pub(super) fn push_tensor(&mut self, name: String, shape: Vec<usize>, data: Vec<f32>) {
        self.tensors.insert(name, t(shape, data));
    }

    fn node(&mut self, i: usize) -> Result<()> {
        let p = self.p;
        let node = &p.graph.nodes[i];
        let at = || p.at(i);
        if !matches!(node, Node::Constant(_)) && self.fold_shape(i)? {
            return Ok(());
        }
        match node {
            Node::Constant(_) => Ok(()),
            Node::Identity(_) => {
                let (_, v) = self.chain_input(i)?;
                self.set_out(i, v, true)
            }
            Node::Dropout(d) => self.dropout(i, d),
            Node::Conv2d(c) => self.conv(i, c),
            Node::MaxPool2d(n) => self.max_pool(i, n),
            Node::AveragePool2d(n) => self.avg_pool(i, n),
            Node::GlobalAveragePool(_) => self.global_avg_pool(i),
            Node::BatchNormalization(n) => self.batch_norm(i, n),
            Node::Relu(_) => self.activation(i, 0.0),
            Node::LeakyRelu(n) => self.activation(i, n.config.alpha),
            Node::Flatten(n) => self.flatten_node(i, n),
            Node::Reshape(n) => self.reshape_node(i, n),
            Node::Squeeze(n) => self.squeeze_node(i, n),
            Node::Unsqueeze(n) => self.unsqueeze(i, n),
            Node::Transpose(n) => self.transpose(i, n),
            Node::Concat(n) => self.concat(i, n.config.axis, &n.inputs),
            Node::Linear(n) => self.linear(i, n),
            Node::Gemm(n) => self.gemm(i, n),
            Node::MatMul(_) => bail!(
                "{}: the second operand is not a constant matrix; supported: MatMul of the features with a constant [in, out] weight",
                at()
            ),
            Node::Add(n) => self.add(i, &n.inputs),
            Node::Mul(n) => self.scale(i, &n.inputs),
            Node::Softplus(_) => {
                let a = node
                    .inputs()
                    .first()
                    .ok_or_else(|| anyhow!("{}: no input", at()))?;
                match self.val(i, a)? {
                    Val::Head(Role::Sigma) if self.plan.sigma_softplus == Some(i) => {
                        self.set_out(i, Val::SigmaSoftplus, false)
                    }
                    v => bail!(
                        "{}: Softplus on {}; supported: Softplus only as the last operation of the sigma output (the runtime applies it)",
                        at(),
                        describe(&v)
                    ),
                }
            }
            other => {
                let ins: Vec<Val> = other
                    .inputs()
                    .iter()
                    .filter(|a| !a.is_optional())
                    .filter_map(|a| self.val(i, a).ok())
                    .collect();
                if ins.iter().any(|v| matches!(v, Val::Head(Role::Sigma))) {
                    bail!(
                        "{}: the sigma output goes through this operator; supported: the raw value (sigma = softplus(raw) + floor, as the trainer's networks) or Softplus of it",
                        at()
                    );
                }
                bail!(
                    "{}: operator {} is not supported by the runtime; supported: {SUPPORTED}",
                    at(),
                    self.p.origins[i].op
                )
            }
        }
    }

    fn finish(&mut self) -> Result<Head> {
        let g = &self.p.graph;
        let file = self.p.path.display();
        for (k, o) in g.outputs.iter().enumerate() {
            let v = self.vals.get(&o.name);
            let want = self.plan.outputs[k];
            let ok = match (want, v) {
                (super::head::OutKind::Softplus, Some(Val::SigmaSoftplus)) => true,
                (super::head::OutKind::Raw(r), Some(Val::Head(h))) => r == *h,
                _ => false,
            };
            ensure!(
                ok,
                "{file}: output `{}` is not computed by the head as expected ({})",
                self.p.output_names[k],
                v.map_or("not computed".into(), describe)
            );
        }
        let head = std::mem::take(&mut self.head)
            .finish(&file.to_string(), self.plan.sigma_softplus.is_some())?;
        ensure!(
            head.reads.as_deref() == Some(self.tail.as_str()),
            "{file}: layers follow the features the head reads ({}); supported: the head dense layer(s) last",
            self.p.tensor(head.reads.as_deref().unwrap_or("?"))
        );
        let di = self.counts[2];
        self.push_tensor(
            format!("dense{di}.weight"),
            vec![head.n_in, 2],
            head.weight.clone(),
        );
        self.push_tensor(format!("dense{di}.bias"), vec![2], head.bias.clone());
        self.counts[2] += 1;
        self.layers.push(Layer::Dense { units: 2 });
        Ok(head)
    }
}

pub(super) fn spatial_val(s: Shape) -> Val {
    Val::Spatial {
        s,
        axes: NCHW,
        pooled: false,
    }
}

pub(super) fn describe(v: &Val) -> String {
    match v {
        Val::Const => "a constant".into(),
        Val::Spatial { s, axes, .. } => format!(
            "the image features ({} x {} x {}, layout {})",
            s.c,
            s.h,
            s.w,
            axes_text(*axes)
        ),
        Val::Vector { index, .. } => format!("a feature vector of {}", index.len()),
        Val::Scalar { slot: 0, rank, .. } => format!("the redshift (rank {rank})"),
        Val::Scalar { rank, input, .. } => {
            format!("the auxiliary input `{input}` (rank {rank})")
        }
        Val::Head(r) => format!("the {r:?} head output"),
        Val::SigmaSoftplus => "the sigma output".into(),
        Val::Ints(t) => format!("a shape value computed at import, {}", t.display()),
    }
}
