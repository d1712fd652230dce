//! Reading an ONNX file: the protobuf itself (to refuse a damaged file with the file's name, and to
//! keep the node names the exporter wrote), then `onnx-ir`'s typed graph, with each of its nodes
//! paired with the ONNX node it came from.
//!
//! `onnx-ir` renames nodes (`conv2d1`, `linear2`, ...) and fuses a `MatMul` with the `Add` after it
//! (and a plain `Gemm`) into `Linear`; errors should name the node as the user's exporter wrote it
//! (`/conv1/Conv`, `model/conv2d/Conv2D`), which is what Netron shows. `onnx-ir` keeps the order of
//! the nodes (it only drops `Identity` nodes and fuses the `Add` that directly follows a `MatMul`),
//! so each of its nodes is paired with the next ONNX node of a compatible operator.

use anyhow::{Context, Result, anyhow, bail};
use onnx_ir::{ArgType, Argument, Message, ModelProto, Node, NodeType, OnnxGraph, TensorDataExt};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where a node came from in the ONNX file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Node name as written in the file (or `onnx-ir`'s name when the file has none).
    pub name: String,
    /// ONNX operator type (`Conv`, `Gemm`, ...).
    pub op: String,
}

/// A parsed ONNX file.
pub struct Parsed {
    /// The file.
    pub path: PathBuf,
    /// `onnx-ir`'s typed graph (no simplification passes: the graph as exported).
    pub graph: OnnxGraph,
    /// The origin of each node of `graph.nodes` (same index).
    pub origins: Vec<Origin>,
    /// `producer_name producer_version` of the file.
    pub producer: String,
    /// Default-domain opset the file imports.
    pub opset: i64,
    /// The graph outputs' names as written in the file (`graph.outputs` order).
    pub output_names: Vec<String>,
    /// Tensor name (onnx-ir's) -> index of the node computing it.
    pub producers: HashMap<String, usize>,
}

impl Parsed {
    /// `file: node "name" (Op)`, the prefix of every error about node `i`.
    pub fn at(&self, i: usize) -> String {
        format!("{}: {}", self.path.display(), self.node(i))
    }

    /// `node "name" (Op)`.
    pub fn node(&self, i: usize) -> String {
        let o = &self.origins[i];
        format!("node \"{}\" ({})", o.name, o.op)
    }

    /// Whether any node or graph output reads tensor `name`.
    pub fn used(&self, name: &str) -> bool {
        self.graph.outputs.iter().any(|o| o.name == name)
            || self
                .graph
                .nodes
                .iter()
                .any(|n| n.inputs().iter().any(|a| a.name == name))
    }

    /// The `Reshape` node whose target shape node `i` helps compute, if any: the first one
    /// reached from its outputs by the `shape` input, through any nodes but `Shape` and `Size`
    /// (whose outputs do not depend on the values they read).
    pub fn shape_target_of(&self, i: usize) -> Option<usize> {
        let nodes = &self.graph.nodes;
        let mut seen = vec![false; nodes.len()];
        let mut todo = vec![i];
        while let Some(k) = todo.pop() {
            if std::mem::replace(&mut seen[k], true) {
                continue;
            }
            for out in nodes[k].outputs() {
                for (c, node) in nodes.iter().enumerate().skip(k + 1) {
                    let Some(pos) = node.inputs().iter().position(|a| a.name == out.name) else {
                        continue;
                    };
                    match node {
                        Node::Reshape(_) if pos == 1 => return Some(c),
                        Node::Shape(_) | Node::Size(_) => {}
                        _ => todo.push(c),
                    }
                }
            }
        }
        None
    }

    /// A tensor as the user knows it: the output of a named node, or a graph input or output.
    pub fn tensor(&self, name: &str) -> String {
        if let Some(k) = self.graph.outputs.iter().position(|o| o.name == name) {
            return format!("output `{}`", self.output_names[k]);
        }
        match self.producers.get(name) {
            Some(&i) => format!("the output of {}", self.node(i)),
            None if self.graph.inputs.iter().any(|a| a.name == name) => format!("input `{name}`"),
            None => format!("`{name}`"),
        }
    }
}

/// The ONNX operator types an `onnx-ir` node type can come from.
fn onnx_ops(t: &NodeType) -> Vec<String> {
    match t {
        NodeType::Conv1d | NodeType::Conv2d | NodeType::Conv3d => vec!["Conv".into()],
        NodeType::MaxPool1d | NodeType::MaxPool2d | NodeType::MaxPool3d => vec!["MaxPool".into()],
        NodeType::AveragePool1d | NodeType::AveragePool2d | NodeType::AveragePool3d => {
            vec!["AveragePool".into()]
        }
        NodeType::Linear => vec!["Gemm".into(), "MatMul".into()],
        other => vec![other.to_string()],
    }
}

/// Read `path`, refusing anything that is not a well-formed ONNX model with an error naming it.
pub fn parse(path: &Path) -> Result<Parsed> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let proto = ModelProto::parse_from_bytes(&bytes).map_err(|e| {
        anyhow!(
            "{}: not a readable ONNX model ({e}); the file is truncated, damaged or not ONNX",
            path.display()
        )
    })?;
    if proto.graph.node.is_empty() {
        bail!(
            "{}: not a readable ONNX model: the graph has no nodes (truncated, damaged or not ONNX)",
            path.display()
        );
    }
    let opset = proto
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(0, |o| o.version);
    let producer = format!("{} {}", proto.producer_name, proto.producer_version)
        .trim()
        .to_string();
    // onnx-ir validates most things with errors but, being a general parser, may still assert on
    // a malformed graph: turn a panic into an error naming the file.
    let parsed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        onnx_ir::OnnxGraphBuilder::new()
            .simplify(false)
            .parse_file(path)
    }));
    let graph = match parsed {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => bail!("{}: onnx-ir cannot read this graph: {e}", path.display()),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            bail!(
                "{}: onnx-ir failed on this graph (internal error: {msg}); the file is malformed or uses a construct it does not handle",
                path.display()
            )
        }
    };
    let origins = align(&graph, &proto);
    let mut output_names: Vec<String> = proto.graph.output.iter().map(|o| o.name.clone()).collect();
    output_names.resize_with(graph.outputs.len(), String::new);
    for (n, o) in output_names.iter_mut().zip(&graph.outputs) {
        if n.is_empty() {
            n.clone_from(&o.name);
        }
    }
    let producers = graph
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs().iter().map(move |o| (o.name.clone(), i)))
        .collect();
    Ok(Parsed {
        path: path.to_path_buf(),
        graph,
        origins,
        producer,
        opset,
        output_names,
        producers,
    })
}

/// Pair each `onnx-ir` node with the ONNX node it came from (see the module docs).
fn align(graph: &OnnxGraph, proto: &ModelProto) -> Vec<Origin> {
    let pn = &proto.graph.node;
    let mut cursor = 0;
    graph
        .nodes
        .iter()
        .map(|node| {
            let fallback = Origin {
                name: node.name().to_string(),
                op: onnx_ops(&node.node_type())[0].clone(),
            };
            if matches!(node, Node::Constant(_)) {
                return fallback;
            }
            let ops = onnx_ops(&node.node_type());
            let Some(k) = (cursor..pn.len()).find(|&k| ops.contains(&pn[k].op_type)) else {
                return fallback;
            };
            cursor = k + 1;
            // A MatMul fused with the Add that directly follows it: skip that Add.
            if matches!(node, Node::Linear(_))
                && pn[k].op_type == "MatMul"
                && node.inputs().len() == 3
                && pn.get(k + 1).is_some_and(|a| a.op_type == "Add")
            {
                cursor = k + 2;
            }
            let name = if pn[k].name.is_empty() {
                pn[k]
                    .output
                    .first()
                    .map_or(fallback.name.clone(), |o| format!("producing {o}"))
            } else {
                pn[k].name.clone()
            };
            Origin {
                name,
                op: pn[k].op_type.clone(),
            }
        })
        .collect()
}

/// The value of a constant argument as f32 (`None` when the argument is computed at run time).
pub fn const_f32(arg: &Argument) -> Option<(Vec<usize>, Vec<f32>)> {
    let data = arg.value()?;
    let shape: Vec<usize> = data.shape().iter().copied().collect();
    let values = data.to_f32_vec().ok()?;
    Some((shape, values))
}

/// Static shape of a tensor argument (`None` for unknown dimensions).
pub fn shape_of(arg: &Argument) -> Option<Vec<Option<usize>>> {
    match &arg.ty {
        ArgType::Tensor(t) => Some(t.static_shape.clone().unwrap_or_else(|| vec![None; t.rank])),
        _ => None,
    }
}
