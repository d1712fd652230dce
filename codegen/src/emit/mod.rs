//! The generated Rust module of one architecture: const-generic kernel types for every
//! op, the memory plan as `const`s, and per dtype (`f32`, `f16`, `int8`) a `Model` that
//! borrows its weights in place from a validated blob and runs one cluster through the
//! runtime's kernels, allocation-free and panic-free (every failure is an error value).
//!
//! The code depends only on the architecture (the same [`arch_hash`](crate::export::arch_hash)
//! the blobs carry): a retrained model of the same architecture needs a new blob, not new
//! code. It is built as tokens with `quote!`, parsed with `syn` (so a generator bug is an
//! error here, not in the user's build) and formatted with `prettyplease`.
//!
//! - `ops`: an emitter per op kind (`EmitOp`: the op's kernel type, its blob fields, the
//!   call of its step of the memory plan on each numeric path), with a snapshot test per op
//!   kind and dtype (`snapshots`, expected files in `codegen/tests/snapshots/`).
//! - `fields`: the blob tensors typed by role (weights, biases with their taps,
//!   requantisation, scales, zero points), which decides each one's getter and value checks.
//! - `header`: the module's docs, constants, kernel types and the compile-time asserts that
//!   tie the memory plan ([`crate::plan`]) to the kernel types.
//! - `model`: the `Model` of each dtype: its fields, the loader, the entry points.
//!
//! The op sequence mirrors [`crate::interp`] exactly (same kernels, same order, same
//! quantisation parameters), which is what makes the generated int8 path bit-exact to it.

mod fields;
mod header;
mod model;
mod ops;
#[cfg(test)]
mod snapshots;
mod tokens;

use crate::arch::Shape;
use crate::model::{FoldedModel, Op};
use crate::plan::{self, Step, Stream};
use anyhow::{Context, Result, ensure};
use proc_macro2::TokenStream;
use quote::quote;

/// The three numeric paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    F32,
    F16,
    Int8,
}

impl Path {
    /// Every path, in the order of the generated modules.
    const ALL: [Path; 3] = [Path::F32, Path::F16, Path::Int8];

    /// The module's name (`f32`, `f16`, `int8`).
    fn name(self) -> &'static str {
        match self {
            Path::F32 => "f32",
            Path::F16 => "f16",
            Path::Int8 => "int8",
        }
    }

    /// The activations' element type.
    fn act_ty(self) -> TokenStream {
        match self {
            Path::F32 | Path::F16 => quote!(f32),
            Path::Int8 => quote!(i8),
        }
    }
}

/// What every emitter reads: the model, its activation shapes, its memory plan and the
/// report's description of every op.
struct Cx<'a> {
    m: &'a FoldedModel,
    /// `[0]` the input, `[i + 1]` op `i`'s output.
    shapes: Vec<Shape>,
    steps: Vec<Step>,
    stream: Option<Stream>,
    /// Per op, its description in the report ("conv 3x3 16 s1 d1 same + leaky 0.1").
    descs: Vec<String>,
}

impl<'a> Cx<'a> {
    fn new(m: &'a FoldedModel) -> Result<Self> {
        let steps = plan::steps(m)?;
        let stream = plan::stream(m, &steps)?;
        let descs = crate::report::report(m)?
            .layers
            .into_iter()
            .map(|l| l.op)
            .collect();
        Ok(Self {
            m,
            shapes: m.shapes()?,
            steps,
            stream,
            descs,
        })
    }

    /// The length of op `i`'s input as code: `Op{i}::IN_LEN`, else (an op without a kernel
    /// type) its producer's `Op{i-1}::OUT_LEN`, else the plan's number `len`.
    fn input_len(&self, i: usize, len: usize) -> TokenStream {
        let ops = &self.m.ops;
        if ops::has_kernel_type(&ops[i]) {
            let o = tokens::op(i);
            quote!(#o::IN_LEN)
        } else if i > 0 && ops::has_kernel_type(&ops[i - 1]) {
            let o = tokens::op(i - 1);
            quote!(#o::OUT_LEN)
        } else {
            let n = tokens::num(len);
            quote!(#n)
        }
    }

    /// The length of op `i`'s output as code: `Op{i}::OUT_LEN`, else its consumer's
    /// `Op{i+1}::IN_LEN`, else the plan's number `len`.
    fn output_len(&self, i: usize, len: usize) -> TokenStream {
        let ops = &self.m.ops;
        if ops::has_kernel_type(&ops[i]) {
            let o = tokens::op(i);
            quote!(#o::OUT_LEN)
        } else if ops.get(i + 1).is_some_and(ops::has_kernel_type) {
            let o = tokens::op(i + 1);
            quote!(#o::IN_LEN)
        } else {
            let n = tokens::num(len);
            quote!(#n)
        }
    }

    /// The arena elements step `st` reads, as code (0 when it reads the counts).
    fn step_in(&self, st: &Step) -> TokenStream {
        match st.op {
            Some(i) if st.in_len > 0 => self.input_len(i, st.in_len),
            _ => quote!(0),
        }
    }

    /// The arena elements step `st` writes, as code (0 for the head).
    fn step_out(&self, st: &Step) -> TokenStream {
        if st.out_len == 0 {
            return quote!(0);
        }
        match st.op {
            // The preprocessing alone writes the network's input.
            None => self.input_len(0, st.out_len),
            Some(i) => self.output_len(st.pool.unwrap_or(i), st.out_len),
        }
    }
}

/// Write the module for `m` (with architecture hash `hash`); `name` and `command` go
/// into the header.
///
/// `observation` (the training data's conventions, when the export knows them) becomes
/// `BAND_EDGES_EV` and `DETECTION`, the check behind `Flags::FEW_COUNTS`; without it both
/// are `None` and `infer` sets no detection flag.
pub fn module(
    m: &FoldedModel,
    hash: u64,
    name: &str,
    command: &str,
    observation: Option<&crate::load::Observation>,
) -> Result<String> {
    ensure!(
        matches!(m.ops.last(), Some(Op::Dense(d)) if d.units == 2),
        "the last op must be the 2-unit dense head"
    );
    let cx = Cx::new(m)?;
    let mut file = header::items(&cx, hash, name, command, observation)?;
    for path in Path::ALL {
        file.extend(model::path_module(&cx, path)?);
    }
    unparse(file)
}

/// Parse `tokens` as a file and print it the way `prettyplease` does.
fn unparse(tokens: TokenStream) -> Result<String> {
    let file: syn::File =
        syn::parse2(tokens).context("codegen produced invalid Rust (a codegen bug)")?;
    Ok(prettyplease::unparse(&file))
}

/// "a redshift" or "a redshift and an exposure (s)": the scalar inputs in prose.
fn scalar_list(m: &FoldedModel) -> String {
    let names: Vec<&str> = std::iter::once("a redshift")
        .chain(m.preprocess.extra.iter().map(|e| match e.quantity {
            crate::model::AuxQuantity::Exposure => "an exposure (s)",
        }))
        .collect();
    names.join(" and ")
}
