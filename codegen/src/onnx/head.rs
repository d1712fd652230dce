//! The head: which dense layers produce the graph's outputs, and how they become the runtime's
//! 2-unit head (mu, raw sigma; `sigma = softplus(raw) + floor`, then calibrated).
//!
//! Supported outputs:
//! - one output `[N, 2]`: (mu, raw sigma), as the trainer's networks;
//! - one output `[N, 1]`: the mass only. The head gets a second unit with zero weights and bias
//!   (a constant raw sigma), and the export replaces sigma by a constant
//!   ([`SigmaCalibration::Constant`](crate::model::SigmaCalibration)) measured on the calibration
//!   sample, so the runtime reports the network's typical error instead of a made-up one;
//! - two outputs `[N, 1]`: the mass first, then sigma, each from a 1-unit dense layer reading the
//!   same features (merged into one 2-unit head); the sigma output is the raw value, or `Softplus`
//!   of it (the runtime applies the softplus itself).
//!
//! Outputs are traced back from the graph's outputs through an optional `Softplus` (sigma only)
//! and `Add`s of constants (biases kept separate by the exporter) to their dense layers.

use super::graph::Parsed;
use anyhow::{Result, anyhow, bail, ensure};
use onnx_ir::Node;
use std::collections::HashMap;

/// What a head dense layer computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The only output: (mu, raw sigma) or the mass alone.
    Both,
    /// The mass output of a two-output graph.
    Mu,
    /// The sigma output of a two-output graph.
    Sigma,
}

/// How a graph output relates to the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    /// The head dense layer's value (plus constant biases).
    Raw(Role),
    /// Softplus of the sigma head's value.
    Softplus,
}

/// The graph's outputs, as the ONNX file defines them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outputs {
    /// One `[N, 2]` output: (mu, raw sigma).
    MuRawSigma,
    /// One `[N, 1]` output: the mass.
    MassOnly,
    /// Two `[N, 1]` outputs: mass, then sigma (raw, or after Softplus).
    MassAndSigma {
        /// The sigma output is `Softplus(raw)`.
        softplus: bool,
    },
}

impl Outputs {
    /// In words, for reports.
    pub fn describe(&self) -> &'static str {
        match self {
            Outputs::MuRawSigma => "one [N, 2] output (mu, raw sigma)",
            Outputs::MassOnly => "one [N, 1] output (mass only)",
            Outputs::MassAndSigma { softplus: false } => "two outputs (mass, raw sigma)",
            Outputs::MassAndSigma { softplus: true } => {
                "two outputs (mass, Softplus(raw sigma); the runtime applies the softplus)"
            }
        }
    }

    /// What the ONNX graph outputs, given the runtime head's raw values (mu, raw sigma); one
    /// value per output element, in the graph's output order.
    pub fn onnx_values(&self, raw: [f32; 2]) -> Vec<f64> {
        let (mu, s) = (f64::from(raw[0]), f64::from(raw[1]));
        match self {
            Outputs::MuRawSigma => vec![mu, s],
            Outputs::MassOnly => vec![mu],
            Outputs::MassAndSigma { softplus: false } => vec![mu, s],
            Outputs::MassAndSigma { softplus: true } => {
                vec![mu, s.max(0.0) + (-s.abs()).exp().ln_1p()]
            }
        }
    }
}

/// Roles of the head nodes, found before the walk.
pub struct HeadPlan {
    /// Node index -> role, for the head dense layers.
    roles: HashMap<usize, Role>,
    /// What each graph output is.
    pub outputs: Vec<OutKind>,
    /// The Softplus node of the sigma output, if any.
    pub sigma_softplus: Option<usize>,
}

impl HeadPlan {
    /// Trace the outputs of `p` back to their dense layers.
    pub fn new(p: &Parsed) -> Result<Self> {
        let g = &p.graph;
        let file = p.path.display();
        let n = g.outputs.len();
        ensure!(
            n == 1 || n == 2,
            "{file}: the graph has {n} outputs; supported: one or two: one [N, 2] (mu, raw sigma) or [N, 1] (mass), or two [N, 1] (mass, then sigma)"
        );
        let producer = &p.producers;
        let mut roles = HashMap::new();
        let mut outputs = Vec::new();
        let mut sigma_softplus = None;
        for (k, out) in g.outputs.iter().enumerate() {
            let role = match (n, k) {
                (1, _) => Role::Both,
                (_, 0) => Role::Mu,
                _ => Role::Sigma,
            };
            let what = match role {
                Role::Both => "the output",
                Role::Mu => "the mass output (the first)",
                Role::Sigma => "the sigma output (the second)",
            };
            let mut i = *producer.get(&out.name).ok_or_else(|| {
                anyhow!("{file}: output `{}` is not computed by any node (it is an input or a constant)", p.output_names[k])
            })?;
            let mut kind = OutKind::Raw(role);
            if matches!(g.nodes[i], Node::Softplus(_)) && role == Role::Sigma {
                sigma_softplus = Some(i);
                kind = OutKind::Softplus;
                i = prev(p, i)?;
            }
            while let Node::Add(a) = &g.nodes[i] {
                if !a.inputs.iter().any(|x| x.value().is_some()) {
                    break;
                }
                i = prev(p, i)?;
            }
            if !matches!(g.nodes[i], Node::Linear(_) | Node::Gemm(_)) {
                bail!(
                    "{}: computes {what} `{}`; supported: outputs produced by a dense layer (Gemm, or MatMul + Add) without activation{}",
                    p.at(i),
                    p.output_names[k],
                    if role == Role::Sigma {
                        ", the sigma output optionally through Softplus (raw sigma: sigma = softplus(raw) + floor, applied by the runtime)"
                    } else {
                        ""
                    }
                );
            }
            ensure!(
                roles.insert(i, role).is_none(),
                "{}: computes both outputs; supported: one output [N, 2], or two outputs from two 1-unit dense layers",
                p.at(i)
            );
            outputs.push(kind);
        }
        Ok(Self {
            roles,
            outputs,
            sigma_softplus,
        })
    }

    /// The role of node `i`, if it is a head dense layer.
    pub fn role(&self, i: usize) -> Option<Role> {
        self.roles.get(&i).copied()
    }
}

/// The node computing the data input of node `i`.
fn prev(p: &Parsed, i: usize) -> Result<usize> {
    p.graph.nodes[i]
        .inputs()
        .iter()
        .filter(|a| a.value().is_none())
        .find_map(|a| p.producers.get(&a.name).copied())
        .ok_or_else(|| anyhow!("{}: its input is not computed by a node", p.at(i)))
}

/// One head dense layer: role, inputs, units, weights `[n_in][units]`, biases.
type Part = (Role, usize, usize, Vec<f32>, Vec<f32>);

/// The head dense layers met during the walk.
#[derive(Debug, Default)]
pub struct Head {
    /// The tensor the head reads.
    pub reads: Option<String>,
    parts: Vec<Part>,
    /// Final weights `[n_in][2]`.
    pub weight: Vec<f32>,
    /// Final biases `[2]`.
    pub bias: Vec<f32>,
    /// Inputs of the final head.
    pub n_in: usize,
    /// The graph's outputs.
    pub outputs: Option<Outputs>,
}

impl Head {
    /// Record a head dense layer (weights already in the runtime's row order).
    pub fn add(
        &mut self,
        role: Role,
        reads: &str,
        n_in: usize,
        units: usize,
        w: Vec<f32>,
        bias: Vec<f32>,
    ) -> Result<()> {
        match role {
            Role::Both => ensure!(
                units == 1 || units == 2,
                "the head has {units} units; supported: 1 or 2 units (mass, or mu and raw sigma)"
            ),
            Role::Mu | Role::Sigma => ensure!(
                units == 1,
                "the {} output has {units} units; supported: 1",
                if role == Role::Mu { "mass" } else { "sigma" }
            ),
        }
        if let Some((_, n, ..)) = self.parts.first() {
            ensure!(*n == n_in, "the two head layers read different features");
        }
        self.reads = Some(reads.to_string());
        self.parts.push((role, n_in, units, w, bias));
        Ok(())
    }

    /// Units of the head layer of `role`.
    pub fn units(&self, role: Role) -> usize {
        self.parts.iter().find(|p| p.0 == role).map_or(0, |p| p.2)
    }

    /// Add a (broadcast) bias to the head layer of `role`.
    pub fn add_bias(&mut self, role: Role, b: &[f32]) {
        if let Some(p) = self.parts.iter_mut().find(|p| p.0 == role) {
            p.4.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
    }

    /// Merge into the runtime's 2-unit head.
    pub fn finish(mut self, file: &str, softplus: bool) -> Result<Head> {
        let find = |r: Role| self.parts.iter().find(|p| p.0 == r);
        let (n_in, w, b, outputs) = match (find(Role::Both), find(Role::Mu), find(Role::Sigma)) {
            (Some((_, n, 2, w, b)), None, None) => (*n, w.clone(), b.clone(), Outputs::MuRawSigma),
            (Some((_, n, 1, w, b)), None, None) => {
                // Mass only: a zero second unit (raw sigma 0); sigma is then a calibrated constant.
                let w2 = w.iter().flat_map(|v| [*v, 0.0]).collect();
                (*n, w2, vec![b[0], 0.0], Outputs::MassOnly)
            }
            (None, Some((_, n, _, wm, bm)), Some((_, _, _, ws, bs))) => {
                let w2 = wm.iter().zip(ws).flat_map(|(a, s)| [*a, *s]).collect();
                (
                    *n,
                    w2,
                    vec![bm[0], bs[0]],
                    Outputs::MassAndSigma { softplus },
                )
            }
            _ => bail!("{file}: the head dense layers were not all found on the chain of layers"),
        };
        self.n_in = n_in;
        self.weight = w;
        self.bias = b;
        self.outputs = Some(outputs);
        Ok(self)
    }
}
