//! Shape sub-graphs, folded at import.
//!
//! Exporters often compute a `Reshape`'s target at run time from the shape of the tensor it
//! flattens: Keras 3's `Flatten` and `Reshape` layers use `ops.shape(x)[0]`, which tf2onnx writes
//! as `Shape -> Gather -> Cast -> Slice -> Concat -> Cast -> Reshape`; PyTorch's
//! `x.view(x.size(0), -1)` becomes `Shape -> Gather -> Unsqueeze -> Concat -> Reshape`. The walk
//! knows every activation's shape exactly (only the batch is dynamic), so such a chain has one
//! value, and it is computed here, in integers, following the ONNX definition of each operator:
//! `Shape`, `Gather`, `Cast` (between integer types), `Slice`, `Concat`, `Unsqueeze`, `Squeeze`,
//! `Reshape`, `Identity`, `Add`, `Sub`, `Mul`, `Div` and `ConstantOfShape` on integer tensors,
//! constants included. (onnx-ir 0.22 itself refuses `ReduceProd` of a shape.) The dynamic batch is a symbol
//! ([`Dim::Batch`]) that moves through indexing, casts and concatenation, and through the
//! arithmetic that leaves it unchanged (`x 1`, `+ 0`); any other use of it, a value read from the
//! data, floating-point shape arithmetic or another operator is refused with the node, the
//! `Reshape` it feeds and what to change in Keras or PyTorch ([`HINT`]). The folded target then
//! goes through the same checks as a constant one ([`Walk::reshape`]), and each fold is listed
//! in the export report ([`FoldedShape`]).

use super::map::{Ax, Val, Walk, describe};
use anyhow::{Result, anyhow, bail, ensure};
use onnx_ir::reshape::ReshapeInput;
use onnx_ir::slice::SliceInput;
use onnx_ir::squeeze::SqueezeInput;
use onnx_ir::unsqueeze::UnsqueezeConfig;
use onnx_ir::{Argument, DType, Node, TensorDataExt};

/// What to do when a shape cannot be fixed at export (appended to every such refusal).
pub const HINT: &str = "the runtime needs every shape fixed when the model is exported (only the batch may be dynamic). Keras: declare fixed inputs (keras.Input(shape=(50, 50, 10)), no None besides the batch), flatten with keras.layers.Flatten() or keras.layers.Reshape((-1,)), compute no sizes from tensor values in custom layers, and export with tf2onnx.convert.from_keras(model, input_signature=[tf.TensorSpec((None, 50, 50, 10), tf.float32, name=\"image\"), tf.TensorSpec((None, 1), tf.float32, name=\"redshift\")], opset=17). PyTorch: flatten with torch.flatten(x, 1), nn.Flatten() or x.view(x.size(0), -1), compute no sizes from tensor values, and export with dynamic_axes on the batch only";

/// One element of a shape value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// A number.
    Known(i64),
    /// The (dynamic) batch size.
    Batch,
}

/// An integer tensor whose value is known at import.
#[derive(Debug, Clone, PartialEq)]
pub struct Ints {
    /// Its shape.
    pub shape: Vec<usize>,
    /// Its elements, row-major.
    pub data: Vec<Dim>,
    /// Its integer type.
    pub dtype: DType,
    /// The nodes that computed it (indices into the graph's nodes, ascending).
    pub from: Vec<usize>,
}

/// A `Reshape` whose target shape was computed in the graph and folded at import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedShape {
    /// The `Reshape` node as the exporter named it.
    pub node: String,
    /// The constant target it was given (`-1` for the batch).
    pub target: Vec<i64>,
    /// The ONNX operators of the folded sub-graph, in graph order.
    pub ops: Vec<String>,
}

/// Range of an integer ONNX type (`None` for a type that is not an integer).
fn int_range(t: DType) -> Option<(i64, i64)> {
    Some(match t {
        DType::I64 => (i64::MIN, i64::MAX),
        DType::I32 => (i32::MIN.into(), i32::MAX.into()),
        DType::I16 => (i16::MIN.into(), i16::MAX.into()),
        DType::I8 => (i8::MIN.into(), i8::MAX.into()),
        DType::U64 => (0, i64::MAX),
        DType::U32 => (0, u32::MAX.into()),
        DType::U16 => (0, u16::MAX.into()),
        DType::U8 => (0, u8::MAX.into()),
        _ => return None,
    })
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1];
    }
    s
}

/// `axis` in `[-rank, rank)` as an index.
fn axis(a: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    ensure!(
        (-r..r).contains(&a),
        "axis {a} out of range for rank {rank}"
    );
    Ok(if a < 0 { a + r } else { a } as usize)
}

impl Ints {
    fn vector(data: Vec<Dim>, dtype: DType) -> Self {
        Ints {
            shape: vec![data.len()],
            data,
            dtype,
            from: Vec::new(),
        }
    }

    /// The elements as numbers (`what` names them in the error when one is the batch).
    fn known(&self, what: &str) -> Result<Vec<i64>> {
        self.data
            .iter()
            .map(|d| match d {
                Dim::Known(v) => Ok(*v),
                Dim::Batch => Err(anyhow!("{what} depends on the batch size")),
            })
            .collect()
    }

    fn shape_known(&self, what: &str) -> Result<Vec<usize>> {
        self.known(what)?
            .into_iter()
            .map(|v| usize::try_from(v).map_err(|_| anyhow!("{what} has a negative entry {v}")))
            .collect()
    }

    pub(super) fn display(&self) -> String {
        let items: Vec<String> = self
            .data
            .iter()
            .map(|d| match d {
                Dim::Known(v) => v.to_string(),
                Dim::Batch => "N".into(),
            })
            .collect();
        format!("[{}]", items.join(", "))
    }
}

/// A node input, as the folding sees it.
enum In {
    /// A known integer tensor (folded, or a constant).
    Ints(Ints),
    /// A tensor computed from the data (its meaning in the walk).
    Data(Val),
    /// A constant that is not an integer tensor.
    Other,
}

/// Numpy broadcasting of two shapes.
fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    (0..r)
        .map(|k| {
            let da = if k + a.len() >= r {
                a[k + a.len() - r]
            } else {
                1
            };
            let db = if k + b.len() >= r {
                b[k + b.len() - r]
            } else {
                1
            };
            match (da, db) {
                _ if da == db => Ok(da),
                (1, d) | (d, 1) => Ok(d),
                _ => bail!("shapes {a:?} and {b:?} do not broadcast"),
            }
        })
        .collect()
}

/// Index into a tensor of shape `from` of the element at `idx` of its broadcast to `to`.
fn broadcast_index(idx: &[usize], from: &[usize], to: &[usize]) -> usize {
    let off = to.len() - from.len();
    let st = strides(from);
    from.iter()
        .enumerate()
        .map(|(k, d)| if *d == 1 { 0 } else { idx[k + off] * st[k] })
        .sum()
}

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        idx[k] = flat % shape[k].max(1);
        flat /= shape[k].max(1);
    }
    idx
}

/// `a op b` on two elements, exactly (checked), with the batch symbol where the result is the
/// batch itself.
fn arith(op: &str, a: Dim, b: Dim, t: DType) -> Result<Dim> {
    use Dim::{Batch, Known};
    let r = match (op, a, b) {
        ("Mul", Batch, Known(1)) | ("Mul", Known(1), Batch) => return Ok(Batch),
        ("Add" | "Sub", Batch, Known(0)) | ("Add", Known(0), Batch) => return Ok(Batch),
        ("Div", Batch, Known(1)) => return Ok(Batch),
        (_, Known(x), Known(y)) => match op {
            "Add" => x.checked_add(y),
            "Sub" => x.checked_sub(y),
            "Mul" => x.checked_mul(y),
            // ONNX integer division truncates toward zero, like Rust's.
            "Div" if y == 0 => bail!("divides by zero"),
            "Div" => x.checked_div(y),
            _ => bail!("internal error: operator {op}"),
        },
        _ => bail!(
            "{op} of {} and {}: the result depends on the batch size, which is dynamic",
            show(a),
            show(b)
        ),
    };
    let (lo, hi) = int_range(t).ok_or_else(|| anyhow!("{op} on a non-integer type {t:?}"))?;
    match r {
        Some(v) if (lo..=hi).contains(&v) => Ok(Known(v)),
        _ => bail!("{op} overflows {t:?}"),
    }
}

fn show(d: Dim) -> String {
    match d {
        Dim::Known(v) => v.to_string(),
        Dim::Batch => "the batch size".into(),
    }
}

impl Walk<'_> {
    /// How node `i` reads argument `a`.
    fn fold_in(&self, i: usize, a: &Argument) -> Result<In> {
        if let Some(Val::Ints(t)) = self.vals.get(&a.name) {
            return Ok(In::Ints(t.clone()));
        }
        if let Some(data) = a.value() {
            let dtype = data.elem_type();
            if int_range(dtype).is_none() {
                return Ok(In::Other);
            }
            let values = data
                .to_i64_vec()
                .or_else(|_| -> Result<Vec<i64>> {
                    let f = data.to_f64_vec().map_err(|e| anyhow!("{e:?}"))?;
                    Ok(f.iter().map(|v| *v as i64).collect())
                })
                .map_err(|e| anyhow!("{}: unreadable integer constant: {e}", self.p.at(i)))?;
            let shape: Vec<usize> = data.shape().iter().copied().collect();
            return Ok(In::Ints(Ints {
                shape,
                data: values.into_iter().map(Dim::Known).collect(),
                dtype,
                from: Vec::new(),
            }));
        }
        Ok(In::Data(self.val(i, a)?))
    }

    /// The shape of a data tensor as a shape value (the batch as [`Dim::Batch`]).
    fn shape_value(&self, i: usize, v: &Val) -> Result<Vec<Dim>> {
        Ok(match v {
            Val::Spatial { s, axes, .. } => axes
                .iter()
                .map(|a| match a {
                    Ax::N => Dim::Batch,
                    Ax::C => Dim::Known(s.c as i64),
                    Ax::H => Dim::Known(s.h as i64),
                    Ax::W => Dim::Known(s.w as i64),
                })
                .collect(),
            Val::Vector { index, .. } => vec![Dim::Batch, Dim::Known(index.len() as i64)],
            Val::Scalar { rank, .. } => {
                let mut d = vec![Dim::Batch];
                d.extend((1..*rank).map(|_| Dim::Known(1)));
                d
            }
            Val::Ints(t) => t.shape.iter().map(|d| Dim::Known(*d as i64)).collect(),
            other => bail!(
                "{}: takes the shape of {}; supported: shapes of the image features, feature vectors, the redshift and the auxiliary inputs",
                self.p.at(i),
                describe(other)
            ),
        })
    }

    /// A refusal of node `i` in a shape sub-graph: what, the `Reshape` it feeds, the hint.
    fn unfoldable(&self, i: usize, why: impl std::fmt::Display) -> anyhow::Error {
        let feeds = self.shape_feeds[i].map_or(String::new(), |k| {
            format!(
                ", in the sub-graph computing the target shape of {}",
                self.p.node(k)
            )
        });
        anyhow!(
            "{}: cannot be folded to a constant{feeds}: {why}; {HINT}",
            self.p.at(i)
        )
    }

    /// Fold node `i` if it computes on shape values (then its output is a [`Val::Ints`] and
    /// `true` is returned); `false` leaves the node to the walk.
    pub(super) fn fold_shape(&mut self, i: usize) -> Result<bool> {
        let p = self.p;
        let node = &p.graph.nodes[i];
        let op = p.origins[i].op.clone();
        let shape_op = matches!(
            node,
            Node::Shape(_)
                | Node::Gather(_)
                | Node::Cast(_)
                | Node::Slice(_)
                | Node::Concat(_)
                | Node::Unsqueeze(_)
                | Node::Squeeze(_)
                | Node::Reshape(_)
                | Node::Identity(_)
                | Node::Add(_)
                | Node::Sub(_)
                | Node::Mul(_)
                | Node::Div(_)
                | Node::ConstantOfShape(_)
        );
        if !shape_op {
            if self.shape_feeds[i].is_some() {
                return Err(self.unfoldable(
                    i,
                    format!("operator {op} is not folded (folded: Shape, Gather, Cast between integer types, Slice, Concat, Unsqueeze, Squeeze, Reshape, Identity, Add, Sub, Mul, Div, ConstantOfShape)"),
                ));
            }
            return Ok(false);
        }
        let args: Vec<&Argument> = node.inputs().iter().filter(|a| !a.is_optional()).collect();
        let ins: Vec<In> = args
            .iter()
            .map(|a| self.fold_in(i, a))
            .collect::<Result<_>>()?;
        let is_ints = |x: &In| matches!(x, In::Ints(_));
        // Shape reads a data tensor; every other operator folds when its data operand
        // (the first; for the element-wise and Concat ones, any) is a known integer tensor.
        let folds = match node {
            Node::Shape(_) => true,
            Node::Concat(_) | Node::Add(_) | Node::Sub(_) | Node::Mul(_) | Node::Div(_) => {
                ins.iter().any(is_ints) && ins.iter().all(|x| !matches!(x, In::Other))
            }
            Node::ConstantOfShape(_) => ins.first().is_some_and(is_ints),
            _ => ins.first().is_some_and(is_ints),
        };
        if !folds {
            // A data tensor. In a shape sub-graph, the shape would come from the data.
            if self.shape_feeds[i].is_some() {
                let what = ins
                    .iter()
                    .find_map(|x| match x {
                        In::Data(v) => Some(describe(v)),
                        _ => None,
                    })
                    .unwrap_or_else(|| "a non-integer constant".into());
                return Err(self.unfoldable(
                    i,
                    format!("{op} computes a shape from the data ({what}), which is known only at run time"),
                ));
            }
            return Ok(false);
        }
        let mut out = self
            .fold_node(i, node, &ins)
            .map_err(|e| self.unfoldable(i, format!("{op}: {e:#}")))?;
        let mut from: Vec<usize> = ins
            .iter()
            .flat_map(|x| match x {
                In::Ints(t) => t.from.clone(),
                _ => Vec::new(),
            })
            .chain([i])
            .collect();
        from.sort_unstable();
        from.dedup();
        out.from = from;
        self.set_out(i, Val::Ints(out), false)?;
        Ok(true)
    }

    /// The value of shape operator `node` on `ins` (the errors say what, without the node).
    fn fold_node(&self, i: usize, node: &Node, ins: &[In]) -> Result<Ints> {
        let ints = |k: usize| -> Result<&Ints> {
            match ins.get(k) {
                Some(In::Ints(t)) => Ok(t),
                Some(In::Data(v)) => bail!(
                    "input {k} is computed from the data ({}), which is known only at run time",
                    describe(v)
                ),
                Some(In::Other) => bail!("input {k} is a non-integer constant"),
                None => bail!("input {k} is missing"),
            }
        };
        // A parameter given either in the node's configuration or by an input.
        let param = |s: &SliceInput, what: &str| -> Result<Vec<i64>> {
            match s {
                SliceInput::Static(v) => Ok(v.clone()),
                SliceInput::Runtime(r) => {
                    let a = &node.inputs()[r.input_index];
                    match self.fold_in(i, a)? {
                        In::Ints(t) => t.known(what),
                        _ => bail!("{what} is computed from the data"),
                    }
                }
            }
        };
        Ok(match node {
            Node::Shape(n) => {
                let dims = match &ins[0] {
                    In::Data(v) => self.shape_value(i, v)?,
                    In::Ints(t) => t.shape.iter().map(|d| Dim::Known(*d as i64)).collect(),
                    In::Other => bail!("takes the shape of a non-integer constant"),
                };
                let (start, end) = (n.config.start.min(dims.len()), n.config.end.min(dims.len()));
                Ints::vector(dims[start..end.max(start)].to_vec(), DType::I64)
            }
            Node::Gather(n) => {
                let (data, idx) = (ints(0)?, ints(1)?);
                let ax = n.config.axis;
                ensure!(
                    ax < data.shape.len(),
                    "axis {ax} of a rank-{} tensor",
                    data.shape.len()
                );
                let len = data.shape[ax];
                let idx_v: Vec<usize> = idx
                    .known("the indices")?
                    .into_iter()
                    .map(|k| {
                        let k2 = if k < 0 { k + len as i64 } else { k };
                        usize::try_from(k2)
                            .ok()
                            .filter(|k| *k < len)
                            .ok_or_else(|| {
                                anyhow!("index {k} out of range for a dimension of {len}")
                            })
                    })
                    .collect::<Result<_>>()?;
                let outer: usize = data.shape[..ax].iter().product();
                let inner: usize = data.shape[ax + 1..].iter().product();
                let mut out = Vec::with_capacity(outer * idx_v.len() * inner);
                for o in 0..outer {
                    for &k in &idx_v {
                        let base = (o * len + k) * inner;
                        out.extend_from_slice(&data.data[base..base + inner]);
                    }
                }
                let mut shape = data.shape[..ax].to_vec();
                shape.extend_from_slice(&idx.shape);
                shape.extend_from_slice(&data.shape[ax + 1..]);
                Ints {
                    shape,
                    data: out,
                    dtype: data.dtype,
                    from: vec![],
                }
            }
            Node::Cast(n) => {
                let t = ints(0)?;
                let to = n.config.to;
                let (lo, hi) = int_range(to).ok_or_else(|| {
                    anyhow!("casts the shape value {} to {to:?}; only integer shape arithmetic is folded", t.display())
                })?;
                for d in &t.data {
                    if let Dim::Known(v) = d {
                        ensure!((lo..=hi).contains(v), "{v} does not fit {to:?}");
                    }
                }
                Ints {
                    dtype: to,
                    ..t.clone()
                }
            }
            Node::Slice(n) => {
                let t = ints(0)?;
                let starts = param(&n.config.starts, "the starts")?;
                let ends = param(&n.config.ends, "the ends")?;
                let axes = match &n.config.axes {
                    Some(a) => param(a, "the axes")?,
                    None => (0..starts.len() as i64).collect(),
                };
                let steps = match &n.config.steps {
                    Some(s) => param(s, "the steps")?,
                    None => vec![1; starts.len()],
                };
                ensure!(
                    ends.len() == starts.len()
                        && axes.len() == starts.len()
                        && steps.len() == starts.len(),
                    "starts, ends, axes and steps differ in length"
                );
                let rank = t.shape.len();
                // Per axis: the source indices it keeps (ONNX clamping rules).
                let mut keep: Vec<Vec<usize>> = t.shape.iter().map(|d| (0..*d).collect()).collect();
                for k in 0..starts.len() {
                    let ax = axis(axes[k], rank)?;
                    let d = t.shape[ax] as i64;
                    let step = steps[k];
                    ensure!(step != 0, "step 0");
                    let norm = |v: i64| if v < 0 { v + d } else { v };
                    let (s, e) = if step > 0 {
                        (norm(starts[k]).clamp(0, d), norm(ends[k]).clamp(0, d))
                    } else {
                        (
                            norm(starts[k]).clamp(0, d - 1),
                            norm(ends[k]).clamp(-1, d - 1),
                        )
                    };
                    let mut v = Vec::new();
                    let mut x = s;
                    while (step > 0 && x < e) || (step < 0 && x > e) {
                        v.push(x as usize);
                        x += step;
                    }
                    keep[ax] = v;
                }
                let shape: Vec<usize> = keep.iter().map(Vec::len).collect();
                let st = strides(&t.shape);
                let n_out: usize = shape.iter().product();
                let data = (0..n_out)
                    .map(|f| {
                        let idx = unravel(f, &shape);
                        let src: usize = idx
                            .iter()
                            .enumerate()
                            .map(|(a, j)| keep[a][*j] * st[a])
                            .sum();
                        t.data[src]
                    })
                    .collect();
                Ints {
                    shape,
                    data,
                    dtype: t.dtype,
                    from: vec![],
                }
            }
            Node::Concat(n) => {
                let parts: Vec<&Ints> = (0..ins.len()).map(ints).collect::<Result<_>>()?;
                let first = parts[0];
                let ax = n.config.axis;
                ensure!(
                    ax < first.shape.len(),
                    "axis {ax} of a rank-{} tensor",
                    first.shape.len()
                );
                for t in &parts {
                    let same = t.shape.len() == first.shape.len()
                        && t.shape
                            .iter()
                            .zip(&first.shape)
                            .enumerate()
                            .all(|(k, (a, b))| k == ax || a == b);
                    ensure!(
                        same,
                        "inputs of shapes {:?} and {:?} do not concatenate on axis {ax}",
                        first.shape,
                        t.shape
                    );
                }
                let outer: usize = first.shape[..ax].iter().product();
                let mut data = Vec::new();
                for o in 0..outer {
                    for t in &parts {
                        let chunk: usize = t.shape[ax..].iter().product();
                        data.extend_from_slice(&t.data[o * chunk..(o + 1) * chunk]);
                    }
                }
                let mut shape = first.shape.clone();
                shape[ax] = parts.iter().map(|t| t.shape[ax]).sum();
                Ints {
                    shape,
                    data,
                    dtype: first.dtype,
                    from: vec![],
                }
            }
            Node::Unsqueeze(n) => {
                let t = ints(0)?;
                let axes = match &n.config {
                    UnsqueezeConfig::Static(a) => a.clone(),
                    UnsqueezeConfig::Runtime(r) => {
                        param(&SliceInput::Runtime(r.clone()), "the axes")?
                    }
                };
                let rank = t.shape.len() + axes.len();
                let mut axes: Vec<usize> =
                    axes.iter().map(|a| axis(*a, rank)).collect::<Result<_>>()?;
                axes.sort_unstable();
                let mut shape = t.shape.clone();
                for a in axes {
                    ensure!(a <= shape.len(), "axis {a} out of range");
                    shape.insert(a, 1);
                }
                Ints { shape, ..t.clone() }
            }
            Node::Squeeze(n) => {
                let t = ints(0)?;
                let axes: Vec<usize> = match &n.config.axes {
                    None => (0..t.shape.len()).filter(|k| t.shape[*k] == 1).collect(),
                    Some(SqueezeInput::Static(a)) => a
                        .iter()
                        .map(|a| axis(*a, t.shape.len()))
                        .collect::<Result<_>>()?,
                    Some(SqueezeInput::Runtime(r)) => {
                        param(&SliceInput::Runtime(r.clone()), "the axes")?
                            .iter()
                            .map(|a| axis(*a, t.shape.len()))
                            .collect::<Result<_>>()?
                    }
                };
                for a in &axes {
                    ensure!(
                        t.shape[*a] == 1,
                        "squeezes axis {a} of size {}",
                        t.shape[*a]
                    );
                }
                let shape = t
                    .shape
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| !axes.contains(k))
                    .map(|(_, d)| *d)
                    .collect();
                Ints { shape, ..t.clone() }
            }
            Node::Reshape(n) => {
                let t = ints(0)?;
                let target = match &n.config.shape {
                    ReshapeInput::Static(v) => v.clone(),
                    ReshapeInput::Runtime(r) => {
                        param(&SliceInput::Runtime(r.clone()), "the target shape")?
                    }
                };
                let total = t.data.len();
                let mut shape: Vec<Option<usize>> = target
                    .iter()
                    .enumerate()
                    .map(|(k, v)| match v {
                        -1 => Ok(None),
                        0 => t
                            .shape
                            .get(k)
                            .copied()
                            .map(Some)
                            .ok_or_else(|| anyhow!("0 at axis {k} beyond the input's rank")),
                        v => usize::try_from(*v)
                            .map(Some)
                            .map_err(|_| anyhow!("target entry {v}")),
                    })
                    .collect::<Result<_>>()?;
                let known: usize = shape.iter().flatten().product();
                match shape.iter().filter(|d| d.is_none()).count() {
                    0 => {}
                    1 if known > 0 && total % known == 0 => {
                        for d in shape.iter_mut().filter(|d| d.is_none()) {
                            *d = Some(total / known);
                        }
                    }
                    _ => bail!("target {target:?} does not fit {total} elements"),
                }
                let shape: Vec<usize> = shape.into_iter().flatten().collect();
                ensure!(
                    shape.iter().product::<usize>() == total,
                    "target {target:?} does not fit {total} elements"
                );
                Ints { shape, ..t.clone() }
            }
            Node::Identity(_) => ints(0)?.clone(),
            Node::Add(_) | Node::Sub(_) | Node::Mul(_) | Node::Div(_) => {
                let (a, b) = (ints(0)?, ints(1)?);
                let op = self.p.origins[i].op.as_str();
                let shape = broadcast(&a.shape, &b.shape)?;
                let n_out: usize = shape.iter().product();
                let data = (0..n_out)
                    .map(|f| {
                        let idx = unravel(f, &shape);
                        let x = a.data[broadcast_index(&idx, &a.shape, &shape)];
                        let y = b.data[broadcast_index(&idx, &b.shape, &shape)];
                        arith(op, x, y, a.dtype)
                    })
                    .collect::<Result<_>>()?;
                Ints {
                    shape,
                    data,
                    dtype: a.dtype,
                    from: vec![],
                }
            }
            Node::ConstantOfShape(n) => {
                let shape = ints(0)?.shape_known("the shape")?;
                let (value, dtype) = match &n.config.value {
                    Some(v) if int_range(v.elem_type()).is_some() => (
                        v.scalar_i64()
                            .map_err(|e| anyhow!("unreadable value: {e:?}"))?,
                        v.elem_type(),
                    ),
                    _ => {
                        bail!("fills a floating-point tensor; only integer shape values are folded")
                    }
                };
                Ints {
                    data: vec![Dim::Known(value); shape.iter().product()],
                    shape,
                    dtype,
                    from: vec![],
                }
            }
            _ => bail!("internal error: not a shape operator"),
        })
    }

    /// The constant target of `Reshape` node `i` whose shape input folded to `t`, reading `v`
    /// (recorded for the report). The batch becomes `-1`; a `-1` beside it is resolved first,
    /// from the number of elements per cluster.
    pub(super) fn folded_target(&mut self, i: usize, v: &Val, t: &Ints) -> Result<Vec<i64>> {
        let at = self.p.at(i);
        ensure!(
            t.shape.len() == 1,
            "{at}: the computed target shape {} has rank {}, expected a vector",
            t.display(),
            t.shape.len()
        );
        let per_cluster = match v {
            Val::Spatial { s, .. } => s.len(),
            Val::Vector { index, .. } => index.len(),
            Val::Scalar { .. } => 1,
            _ => 0,
        };
        let batches = t.data.iter().filter(|d| **d == Dim::Batch).count();
        ensure!(
            batches <= 1,
            "{at}: the computed target shape {} holds the batch size twice; {HINT}",
            t.display()
        );
        let others: Vec<i64> = t
            .data
            .iter()
            .filter_map(|d| match d {
                Dim::Known(v) => Some(*v),
                Dim::Batch => None,
            })
            .collect();
        let mut target: Vec<i64> = Vec::with_capacity(t.data.len());
        for d in &t.data {
            target.push(match d {
                Dim::Batch => -1,
                Dim::Known(-1) if batches == 1 => {
                    let known: i64 = others.iter().filter(|x| **x != -1).product();
                    ensure!(
                        known > 0
                            && per_cluster as i64 % known == 0
                            && others.iter().all(|x| *x > 0 || *x == -1),
                        "{at}: the computed target shape {} does not fit {per_cluster} elements per cluster",
                        t.display()
                    );
                    per_cluster as i64 / known
                }
                Dim::Known(v) => *v,
            });
        }
        let mut ops: Vec<String> = t
            .from
            .iter()
            .map(|k| self.p.origins[*k].op.clone())
            .collect();
        ops.push(self.p.origins[i].op.clone());
        self.folded.push(FoldedShape {
            node: self.p.origins[i].name.clone(),
            target: target.clone(),
            ops,
        });
        Ok(target)
    }
}
