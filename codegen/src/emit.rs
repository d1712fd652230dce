//! The generated Rust module of one architecture: const-generic kernel types for every
//! op, the memory plan as `const`s, and per dtype (`f32`, `f16`, `int8`) a `Model` that
//! borrows its weights in place from a validated blob and runs one cluster through the
//! runtime's kernels, allocation-free and panic-free (every failure is an error value).
//!
//! The code depends only on the architecture (the same [`arch_hash`](crate::export::arch_hash)
//! the blobs carry): a retrained model of the same architecture needs a new blob, not new
//! code. The text is built, parsed with `syn` (so a generator bug is a syntax error here,
//! not in the user's build) and formatted with `prettyplease`.
//!
//! The op sequence mirrors [`crate::interp`] exactly (same kernels, same order, same
//! quantisation parameters), which is what makes the generated int8 path bit-exact to it.

use crate::model::{FoldedModel, Op};
use crate::plan::{self, Step};
use crate::report;
use anyhow::{Context, Result, bail, ensure};
use std::fmt::Write as _;

/// The three numeric paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    F32,
    F16,
    Int8,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::F32 => "f32",
            Path::F16 => "f16",
            Path::Int8 => "int8",
        }
    }
}

fn pool_kind(kind: crate::arch::PoolKind) -> &'static str {
    match kind {
        crate::arch::PoolKind::Max => "max",
        crate::arch::PoolKind::Avg => "avg",
    }
}

fn slope_of(op: &Op) -> Option<f32> {
    match op {
        Op::Conv2d(c) => Some(c.slope),
        Op::Dense(d) => Some(d.slope),
        Op::LeakyRelu { slope } => Some(*slope),
        _ => None,
    }
}

/// `BAND_EDGES_EV` and `DETECTION`: the observation conventions of the training data.
fn observation_consts(
    w: &mut String,
    m: &FoldedModel,
    observation: Option<&crate::load::Observation>,
) -> Result<()> {
    let edges = observation
        .filter(|o| o.band_edges_kev.len() == m.input.c + 1)
        .map(|o| {
            o.band_edges_kev
                .iter()
                // Whole eV, as the host's event binning rounds them (exact in f32).
                .map(|e| format!("{:?}", (e * 1000.0).round() as f32))
                .collect::<Vec<_>>()
                .join(", ")
        });
    writeln!(
        w,
        "/// Energy band edges of the input cube in eV (event `PI`), low edge of band 0 to high edge of the last band, as the training data were binned (`runtime::events::BandEdges`); `None` if the export did not know them."
    )?;
    match edges {
        Some(e) => writeln!(
            w,
            "pub const BAND_EDGES_EV: Option<[f32; BANDS + 1]> = Some([{e}]);"
        )?,
        None => writeln!(
            w,
            "pub const BAND_EDGES_EV: Option<[f32; BANDS + 1]> = None;"
        )?,
    }
    let det = observation.and_then(|o| o.detection(m.input.w, m.input.h));
    writeln!(
        w,
        "/// The training data's observation conventions (pixel scale, centre pixel, soft bands, cosmology) and the detection check `infer` applies to every cube: fewer net 0.5-2 keV counts than `min_net_counts` in the 400 kpc aperture flags the estimate `Flags::FEW_COUNTS` (`runtime::detect`); `None` if the export did not know the conventions (no flag then)."
    )?;
    match det {
        Some(d) => writeln!(
            w,
            "pub const DETECTION: Option<runtime::detect::Detection> = Some(runtime::detect::Detection {{ width: {}, height: {}, centre2: [{}, {}], pixel_arcsec: {:?}, bands: [{}, {}], h0: {:?}, omega_m: {:?}, aperture_kpc: {:?}, aperture_limits_arcmin: [{:?}, {:?}], background_inner_arcmin: {:?}, min_net_counts: {:?} }});",
            d.width,
            d.height,
            d.centre2[0],
            d.centre2[1],
            d.pixel_arcsec,
            d.bands[0],
            d.bands[1],
            d.h0,
            d.omega_m,
            d.aperture_kpc,
            d.aperture_limits_arcmin[0],
            d.aperture_limits_arcmin[1],
            d.background_inner_arcmin,
            d.min_net_counts
        )?,
        None => writeln!(
            w,
            "pub const DETECTION: Option<runtime::detect::Detection> = None;"
        )?,
    }
    Ok(())
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
    let shapes = m.shapes()?;
    let steps = plan::steps(m)?;
    let arena = plan::arena_len(&steps);
    let stream = plan::stream(m, &steps)?;
    let streamed = stream.map(|st| plan::arena_len_streamed(&steps, &st));
    let n = m.ops.len();
    ensure!(
        matches!(m.ops.last(), Some(Op::Dense(d)) if d.units == 2),
        "the last op must be the 2-unit dense head"
    );
    let rep = report::report(m)?;
    let input = m.input;
    let mut s = String::new();
    let w = &mut s;

    // Header.
    writeln!(
        w,
        "//! Cluster-mass model `{name}`: {} x {} x {} photon counts and {} in, log10 M500c and its sigma out.",
        input.c,
        input.h,
        input.w,
        scalar_list(m)
    )?;
    writeln!(w, "//!")?;
    writeln!(
        w,
        "//! Generated by `{command}` (codegen {}). Do not edit: change the model and run the command again.",
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(w, "//!")?;
    writeln!(
        w,
        "//! | op | layer | output (c x h x w) | MACs | receptive field (px) |"
    )?;
    writeln!(w, "//! |---|---|---|---|---|")?;
    for l in &rep.layers {
        writeln!(
            w,
            "//! | {} | {} | {} x {} x {} | {} | {} |",
            l.index, l.op, l.out.c, l.out.h, l.out.w, l.macs, l.rf
        )?;
    }
    writeln!(w, "//!")?;
    match streamed {
        Some(sa) => {
            writeln!(
                w,
                "//! {} multiply-accumulates and {} parameters per inference. RAM: one activation arena of [`ARENA_LEN`] elements,",
                rep.macs, rep.params
            )?;
            writeln!(
                w,
                "//! [`ARENA_STREAMED`] = {sa} with the first convolution streaming its input where `runtime::model::STREAM_INPUT` (Cortex-M, aarch64,"
            )?;
            writeln!(
                w,
                "//! the reference; {} B as f32 for the `f32` and `f16` models, {sa} B as i8 for `int8`), else [`ARENA_WHOLE`] = {arena}",
                4 * sa
            )?;
            writeln!(
                w,
                "//! ({} B as f32, {arena} B as i8; the x86-64 SIMD engines, or [`int8::Model::infer_streamed`] there with the smaller one), plus the caller's {} counts",
                4 * arena,
                input.len()
            )?;
        }
        None => {
            writeln!(
                w,
                "//! {} multiply-accumulates and {} parameters per inference. RAM: one activation arena of [`ARENA_LEN`] = {arena} elements",
                rep.macs, rep.params
            )?;
            writeln!(
                w,
                "//! ({} B as f32 for the `f32` and `f16` models, {arena} B as i8 for `int8`), plus the caller's {} counts",
                4 * arena,
                input.len()
            )?;
        }
    }
    writeln!(
        w,
        "//! ({} B as u16, or {} B as u8: `infer` takes either, `runtime::Count`, with the same bits for the same counts).",
        2 * input.len(),
        input.len()
    )?;
    writeln!(w, "//!")?;
    writeln!(
        w,
        "//! Usage (`counts`: the `[band][y][x]` cube, u16 or u8, e.g. from `runtime::events::Binner`):"
    )?;
    writeln!(w, "//!")?;
    writeln!(w, "//! ```text")?;
    writeln!(
        w,
        "//! const N: usize = include_bytes!(\"model-int8.bin\").len();"
    )?;
    writeln!(
        w,
        "//! static BLOB: runtime::blob::Aligned<[u8; N]> = runtime::blob::Aligned(*include_bytes!(\"model-int8.bin\"));"
    )?;
    writeln!(
        w,
        "//! let model = int8::Model::new(&BLOB.0)?;  // validates before use"
    )?;
    writeln!(w, "//! let mut arena = [0i8; ARENA_LEN];")?;
    writeln!(w, "//! let mut scratch = int8::Scratch::new();")?;
    writeln!(
        w,
        "//! let estimate = model.infer(&counts, &[{}], &mut arena, &mut scratch)?;",
        m.preprocess.scalar_names().join(", ")
    )?;
    writeln!(
        w,
        "//! if !estimate.flags.is_empty() {{ /* inputs outside the training ranges, empty or saturated cube, too few counts */ }}"
    )?;
    writeln!(w, "//! ```")?;
    writeln!(
        w,
        "//!\n//! See `firmware-examples/minimal` for a complete program (`main() -> !` handles the errors)."
    )?;
    // The file defines every variant and constant; a firmware uses a few of them, and
    // `#[path]`-including it into a binary must not warn about the rest.
    writeln!(w, "#![allow(dead_code)]")?;
    writeln!(w)?;
    writeln!(
        w,
        "/// Architecture fingerprint; a blob for any other architecture is refused."
    )?;
    writeln!(w, "pub const ARCH_HASH: u64 = {hash:#018x};")?;
    writeln!(w, "/// Energy bands of the input cube.")?;
    writeln!(w, "pub const BANDS: usize = {};", input.c)?;
    writeln!(w, "/// Image height in pixels.")?;
    writeln!(w, "pub const HEIGHT: usize = {};", input.h)?;
    writeln!(w, "/// Image width in pixels.")?;
    writeln!(w, "pub const WIDTH: usize = {};", input.w)?;
    writeln!(
        w,
        "/// Counts per observation (u16 or u8), band-major (`[band][y][x]`)."
    )?;
    writeln!(w, "pub const INPUT_LEN: usize = BANDS * HEIGHT * WIDTH;")?;
    writeln!(
        w,
        "/// Scalar inputs `infer` takes, in order: {}.",
        scalar_list(m)
    )?;
    writeln!(w, "pub const SCALARS: usize = {};", m.preprocess.scalars())?;
    writeln!(
        w,
        "/// Names of the scalar inputs (units: redshift; seconds for `exposure_s`)."
    )?;
    writeln!(
        w,
        "pub const SCALAR_NAMES: [&str; SCALARS] = [{}];",
        m.preprocess
            .scalar_names()
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    observation_consts(w, m, observation)?;
    match streamed {
        Some(sa) => {
            writeln!(
                w,
                "/// Activation arena length in elements (f32 for `f32`/`f16`, i8 for `int8`) `infer` takes: [`ARENA_STREAMED`] on builds where `infer` streams the first convolution's input (`runtime::model::STREAM_INPUT`), else [`ARENA_WHOLE`]."
            )?;
            writeln!(
                w,
                "pub const ARENA_LEN: usize = if runtime::model::STREAM_INPUT {{ ARENA_STREAMED }} else {{ ARENA_WHOLE }};"
            )?;
            writeln!(
                w,
                "/// The arena of the memory plan with the preprocessed input stored: the largest input + output of any step."
            )?;
            writeln!(w, "pub const ARENA_WHOLE: usize = {arena};")?;
            writeln!(
                w,
                "/// The arena of the plan whose first convolution streams its input (`infer_streamed`): its window of rows replaces the stored input."
            )?;
            writeln!(w, "pub const ARENA_STREAMED: usize = {sa};")?;
        }
        None => {
            writeln!(
                w,
                "/// Activation arena length in elements (f32 for `f32`/`f16`, i8 for `int8`): the largest input + output of any step of the memory plan."
            )?;
            writeln!(w, "pub const ARENA_LEN: usize = {arena};")?;
            writeln!(
                w,
                "/// The arena of the memory plan with the preprocessed input stored (this model has no other: [`ARENA_LEN`])."
            )?;
            writeln!(w, "pub const ARENA_WHOLE: usize = ARENA_LEN;")?;
        }
    }
    let convs: Vec<usize> = (0..n)
        .filter(|&i| matches!(m.ops[i], Op::Conv2d(_)))
        .collect();
    {
        for (name, what) in [
            ("F32", "f32 values (`f32` and `f16` models)"),
            ("S8", "i16 values (`int8` model)"),
        ] {
            writeln!(
                w,
                "/// Scratch of the SIMD convolutions, {what}: the largest any layer needs on this build's path for the target (im2col columns, and on the Cortex-M DSP path every buffer of its engine); 0 when the build has none. The caller owns it (`Scratch`) and passes it to `infer`."
            )?;
            writeln!(
                w,
                "pub const SCRATCH_{name}: usize = runtime::kernels::simd::max_len([{}]);",
                convs
                    .iter()
                    .map(|i| format!("Op{i}::SCRATCH_{name}"))
                    .chain(stream.map(|st| format!("Op{}Window::SCRATCH_{name}", st.conv)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
    }

    // Kernel types and constants per op.
    let mut macs = Vec::new();
    for (i, op) in m.ops.iter().enumerate() {
        let si = shapes[i];
        let desc = &rep.layers[i].op;
        match op {
            Op::Conv2d(c) => {
                let g = c.geom;
                writeln!(w, "/// Op {i}: {desc}.")?;
                writeln!(
                    w,
                    "pub type Op{i} = runtime::kernels::conv2d::Conv2d<{}, {}, {}, {}, {}, {}, {}, {}>;",
                    si.c,
                    si.h,
                    si.w,
                    g.filters,
                    g.kernel,
                    g.stride,
                    g.dilation,
                    g.pad()
                )?;
                macs.push(format!("Op{i}::MACS"));
                if let Some(st) = stream.filter(|st| st.conv == i) {
                    writeln!(
                        w,
                        "/// Op {i} streaming its input (`infer_streamed`): the convolution on a window of {} input rows.",
                        st.rows
                    )?;
                    writeln!(
                        w,
                        "pub type Op{i}Window = runtime::kernels::conv2d::Conv2d<{}, {}, {}, {}, {}, {}, {}, {}>;",
                        si.c,
                        st.rows,
                        si.w,
                        g.filters,
                        g.kernel,
                        g.stride,
                        g.dilation,
                        g.pad()
                    )?;
                }
            }
            Op::Pool2d { size, .. } => {
                writeln!(w, "/// Op {i}: {desc}.")?;
                writeln!(
                    w,
                    "pub type Op{i} = runtime::kernels::pool::Pool2d<{}, {}, {}, {size}>;",
                    si.c, si.h, si.w
                )?;
            }
            Op::GlobalAvgPool => {
                writeln!(w, "/// Op {i}: {desc}.")?;
                writeln!(
                    w,
                    "pub type Op{i} = runtime::kernels::pool::GlobalAvgPool<{}, {}, {}>;",
                    si.c, si.h, si.w
                )?;
            }
            Op::Dense(d) => {
                writeln!(w, "/// Op {i}: {desc}.")?;
                writeln!(
                    w,
                    "pub type Op{i} = runtime::kernels::dense::Dense<{}, {}>;",
                    d.n_in, d.units
                )?;
                macs.push(format!("Op{i}::MACS"));
            }
            Op::FlattenConcatZ | Op::LeakyRelu { .. } => {}
        }
        if let Some(slope) = slope_of(op).filter(|s| *s != 1.0) {
            writeln!(w, "/// Leaky ReLU slope of op {i} ({slope}).")?;
            writeln!(
                w,
                "pub const SLOPE{i}: f32 = f32::from_bits({:#010x});",
                slope.to_bits()
            )?;
        }
    }
    writeln!(w, "/// Multiply-accumulates per inference.")?;
    writeln!(w, "pub const MACS: usize = {};", macs.join(" + "))?;
    // The plan, checked against the kernel types at compile time.
    for st in &steps {
        let Some(i) = st.op else { continue };
        let has_type = !matches!(m.ops[i], Op::FlattenConcatZ | Op::LeakyRelu { .. });
        if has_type && !st.preprocess {
            writeln!(
                w,
                "const _: () = assert!(Op{i}::IN_LEN == {} && {} <= ARENA_WHOLE);",
                st.in_len,
                st.need()
            )?;
        }
        let last = st.pool.unwrap_or(i);
        if let Some((p, Op::Pool2d { size, .. })) = st.pool.map(|p| (p, &m.ops[p])) {
            writeln!(
                w,
                "const _: () = assert!(Op{i}::OUT_LEN == Op{p}::IN_LEN && Op{i}::line_len::<{size}>() == {});",
                st.line_len
            )?;
        }
        if has_type && last + 1 < n {
            writeln!(
                w,
                "const _: () = assert!(Op{last}::OUT_LEN == {});",
                st.out_len
            )?;
        }
    }

    if let Some(st) = &stream {
        let (i, pk) = (st.conv, st.pool_size);
        writeln!(
            w,
            "const _: () = assert!(Op{i}::window_rows::<{pk}>() == {} && Op{i}::window_len::<{pk}>() == {} && Op{i}Window::IN_LEN == {} && {} <= ARENA_STREAMED);",
            st.rows,
            st.step.in_len,
            st.step.in_len,
            st.step.need()
        )?;
    }

    for path in [Path::F32, Path::F16, Path::Int8] {
        path_module(w, m, &steps, stream.as_ref(), path)?;
    }

    let file = syn::parse_file(&s).context("codegen produced invalid Rust (a codegen bug)")?;
    Ok(prettyplease::unparse(&file))
}

/// One blob tensor the generated code reads: field name, element type, length, Rust type.
struct Field {
    name: String,
    elem: &'static str,
    len: usize,
    /// How the field is stored: `slice` (borrowed) or a fixed array copied at load.
    kind: FieldKind,
    /// For an int8 bias: multiply-accumulates per output of its layer (the loader checks
    /// that no accumulator can overflow).
    taps: Option<usize>,
}

enum FieldKind {
    Slice(&'static str),
    Array(&'static str),
}

fn fields(m: &FoldedModel, path: Path) -> Vec<Field> {
    let n = m.ops.len();
    let mut f = vec![Field {
        name: "meta".into(),
        elem: "F32",
        // Meta::<BANDS, EXTRA>::LEN: the band scales, 7 constants, each auxiliary input's
        // record (as `load::expected_tensors` and the blobs have it).
        len: runtime::model::Meta::<0>::LEN
            + m.input.c
            + runtime::model::ExtraScalar::LEN * m.preprocess.extra.len(),
        kind: FieldKind::Slice("f32"),
        taps: None,
    }];
    let (welem, wty) = match path {
        Path::F32 => ("F32", "f32"),
        Path::F16 => ("F16", "runtime::half::f16"),
        Path::Int8 => ("I8", "i8"),
    };
    for (i, op) in m.ops.iter().enumerate() {
        let (wlen, units, taps) = match op {
            Op::Conv2d(c) => (
                c.weight.len(),
                c.geom.filters,
                c.geom.in_c * c.geom.kernel * c.geom.kernel,
            ),
            Op::Dense(d) => (d.n_in * d.units, d.units, d.n_in),
            Op::LeakyRelu { .. } if path == Path::Int8 => {
                f.push(Field {
                    name: format!("lk{i}"),
                    elem: "I32",
                    len: 4,
                    kind: FieldKind::Array("Requant"),
                    taps: None,
                });
                continue;
            }
            _ => continue,
        };
        f.push(Field {
            name: format!("w{i}"),
            elem: welem,
            len: wlen,
            kind: FieldKind::Slice(wty),
            taps: None,
        });
        if path == Path::Int8 {
            f.push(Field {
                name: format!("b{i}"),
                elem: "I32",
                len: units,
                kind: FieldKind::Slice("i32"),
                taps: Some(taps),
            });
            if i + 1 == n {
                f.push(Field {
                    name: format!("os{i}"),
                    elem: "F32",
                    len: units,
                    kind: FieldKind::Array("f32"),
                    taps: None,
                });
            } else {
                for t in ["rp", "rn"] {
                    f.push(Field {
                        name: format!("{t}{i}"),
                        elem: "I32",
                        len: 2 * units,
                        kind: FieldKind::Slice("Requant"),
                        taps: None,
                    });
                }
            }
        } else {
            f.push(Field {
                name: format!("b{i}"),
                elem: "F32",
                len: units,
                kind: FieldKind::Slice("f32"),
                taps: None,
            });
        }
    }
    if path == Path::Int8 {
        f.push(Field {
            name: "scale".into(),
            elem: "F32",
            len: n + 1,
            kind: FieldKind::Array("f32"),
            taps: None,
        });
        f.push(Field {
            name: "zp".into(),
            elem: "I32",
            len: n + 1,
            kind: FieldKind::Array("i32"),
            taps: None,
        });
    }
    f
}

fn path_module(
    w: &mut String,
    m: &FoldedModel,
    steps: &[Step],
    stream: Option<&plan::Stream>,
    path: Path,
) -> Result<()> {
    let n = m.ops.len();
    let name = path.name();
    let fields = fields(m, path);
    let (act_ty, dtype) = match path {
        Path::F32 => ("f32", "F32"),
        Path::F16 => ("f32", "F16"),
        Path::Int8 => ("i8", "Int8"),
    };
    let what = match path {
        Path::F32 => "f32 weights and arithmetic",
        Path::F16 => "f16 weights (half the flash), f32 arithmetic",
        Path::Int8 => {
            "int8 weights and activations (TFLite / CMSIS-NN scheme), bit-exact on every target"
        }
    };
    writeln!(w, "/// The model with {what}.")?;
    writeln!(w, "pub mod {name} {{")?;
    writeln!(w, "use super::*;")?;
    writeln!(w, "use runtime::blob::{{Blob, BlobError, Dtype, Elem}};")?;
    if path == Path::Int8 {
        writeln!(w, "use runtime::kernels::conv2d::QuantArgs;")?;
        writeln!(w, "use runtime::quant::{{QParams, Requant}};")?;
    }
    writeln!(
        w,
        "#[allow(unused_imports)] use runtime::model::{{Estimate, Meta, ping_pong, ping_pong_line, ping_pong_window}};"
    )?;
    writeln!(
        w,
        "#[allow(unused_imports)] use runtime::kernels::pool::PoolKind;"
    )?;
    writeln!(w, "use runtime::Error;")?;
    let (scratch_ty, scratch_len) = match path {
        Path::Int8 => ("i16", "SCRATCH_S8"),
        _ => ("f32", "SCRATCH_F32"),
    };
    writeln!(
        w,
        "/// The convolutions' scratch [`Model::infer`] takes ([`{scratch_len}`] values, 16-byte aligned): owned by the caller, on its stack or in a `static`; `Scratch::new()` makes one."
    )?;
    writeln!(
        w,
        "pub type Scratch = runtime::model::Scratch<{scratch_ty}, {scratch_len}>;"
    )?;
    writeln!(
        w,
        "/// The blob's tensors in order: element type and length."
    )?;
    writeln!(
        w,
        "pub const TENSORS: [(Elem, usize); {}] = [{}];",
        fields.len(),
        fields
            .iter()
            .map(|f| format!("(Elem::{}, {})", f.elem, f.len))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        w,
        "/// A validated {name} weight blob, borrowed in place (e.g. from flash)."
    )?;
    writeln!(w, "#[derive(Debug, Clone, Copy)]")?;
    writeln!(w, "pub struct Model<'a> {{")?;
    writeln!(w, "meta: Meta<BANDS, {{ SCALARS - 1 }}>,")?;
    for f in fields.iter().skip(1) {
        match f.kind {
            FieldKind::Slice(t) => writeln!(w, "{}: &'a [{t}],", f.name)?,
            FieldKind::Array(t) => {
                let len = if t == "Requant" { f.len / 2 } else { f.len };
                writeln!(w, "{}: [{t}; {len}],", f.name)?
            }
        }
    }
    writeln!(w, "}}")?;
    writeln!(w, "impl<'a> Model<'a> {{")?;
    writeln!(
        w,
        "/// Validate `blob` and borrow its tensors: header, checksum, reserved bytes, canonical layout (no overlap, no trailing bytes), dtype, architecture, every tensor's type and size, and every value the kernels use (model constants and redshift range in bounds, finite float weights, int8 biases and requantisation that cannot overflow the i32 accumulators, positive scales, zero points in [-128, 127])."
    )?;
    writeln!(
        w,
        "pub fn new(blob: &'a [u8]) -> Result<Self, BlobError> {{"
    )?;
    writeln!(
        w,
        "let b = Blob::parse(blob, Dtype::{dtype}, ARCH_HASH, &TENSORS)?;"
    )?;
    writeln!(
        w,
        "let bad = |index: usize| BlobError::BadValue {{ index }};"
    )?;
    writeln!(
        w,
        "let meta = b.f32(0).and_then(Meta::from_slice).ok_or(bad(0))?;"
    )?;
    for (k, f) in fields.iter().enumerate().skip(1) {
        let get = match f.kind {
            FieldKind::Slice("Requant") | FieldKind::Array("Requant") => "requant",
            // Float weights and biases: every value finite.
            FieldKind::Slice("runtime::half::f16") => "finite_f16",
            FieldKind::Slice("f32") => "finite_f32",
            FieldKind::Slice(t) | FieldKind::Array(t) => t,
        };
        match f.kind {
            FieldKind::Slice(_) => {
                writeln!(w, "let {} = b.{get}({k}).ok_or(bad({k}))?;", f.name)?;
            }
            FieldKind::Array(t) => {
                let len = if t == "Requant" { f.len / 2 } else { f.len };
                writeln!(
                    w,
                    "let {}: [{t}; {len}] = b.{get}({k}).and_then(|s| s.try_into().ok()).ok_or(bad({k}))?;",
                    f.name
                )?;
            }
        }
        // Value checks.
        if f.name == "scale" || f.name.starts_with("os") {
            writeln!(
                w,
                "if {}.iter().any(|s| !(s.is_finite() && *s > 0.0)) {{ return Err(bad({k})); }}",
                f.name
            )?;
        } else if f.name == "zp" {
            writeln!(
                w,
                "if zp.iter().any(|z| !(-128..=127).contains(z)) {{ return Err(bad({k})); }}"
            )?;
        } else if matches!(f.kind, FieldKind::Array("Requant")) {
            // A stand-alone leaky ReLU: exact for every int8 input.
            writeln!(
                w,
                "if !runtime::quant::leaky_is_exact({0}[0], {0}[1]) {{ return Err(bad({k})); }}",
                f.name
            )?;
        } else if matches!(f.kind, FieldKind::Slice("Requant")) {
            writeln!(
                w,
                "if !{}.iter().all(|r| r.is_valid()) {{ return Err(bad({k})); }}",
                f.name
            )?;
        }
        // int8 accumulators: `|bias| + taps * 128 * 255`, requantised, cannot overflow
        // (checked once the layer's requantisation is read; the head has none).
        if let Some(i) = f.name.strip_prefix("rn") {
            let taps = fields[k - 2]
                .taps
                .context("an int8 bias without taps (a codegen bug)")?;
            writeln!(
                w,
                "if !runtime::quant::layer_is_exact(b{i}, {taps}, rp{i}, rn{i}) {{ return Err(bad({})); }}",
                k - 2
            )?;
        } else if let (Some(taps), Some(i)) = (f.taps, f.name.strip_prefix('b'))
            && i.parse::<usize>().is_ok_and(|i| i + 1 == n)
        {
            writeln!(
                w,
                "if !runtime::quant::head_is_exact(b{i}, {taps}) {{ return Err(bad({k})); }}"
            )?;
        }
    }
    writeln!(
        w,
        "Ok(Self {{ {} }})",
        fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(w, "}}")?;
    writeln!(
        w,
        "/// The model constants (preprocessing, sigma floor and calibration) read from the blob."
    )?;
    writeln!(
        w,
        "pub fn meta(&self) -> &Meta<BANDS, {{ SCALARS - 1 }}> {{ &self.meta }}"
    )?;
    let Some((first, rest)) = steps.split_first().filter(|(f, _)| f.preprocess) else {
        bail!("the first step must preprocess the counts (a codegen bug)");
    };
    let has_conv = |st: &[Step]| {
        st.iter()
            .any(|s| s.op.is_some_and(|i| matches!(m.ops[i], Op::Conv2d(_))))
    };
    let scratch_slice = |w: &mut String, convs: bool| -> Result<()> {
        if convs {
            writeln!(w, "let scratch = scratch.as_mut_slice();")?;
        } else {
            writeln!(w, "let _ = scratch;")?;
        }
        Ok(())
    };
    writeln!(
        w,
        "/// The scalar checks and input flags of every entry point: the network's scalar inputs and the estimate's flags."
    )?;
    writeln!(
        w,
        "fn checks<N: runtime::Count>(&self, counts: &[N], scalars: &[f32; SCALARS]) -> Result<([f32; SCALARS], runtime::model::Flags), Error> {{"
    )?;
    writeln!(w, "let mut z = [0.0f32; SCALARS];")?;
    writeln!(
        w,
        "let flags = self.meta.scalars(scalars, &mut z)? | runtime::model::cube_flags(counts, N::MAX) | runtime::detect::flags(DETECTION.as_ref(), counts, scalars[0])?;"
    )?;
    writeln!(w, "Ok((z, flags))")?;
    writeln!(w, "}}")?;
    let streaming_note = if stream.is_some() {
        " Where `runtime::model::STREAM_INPUT` (Cortex-M, aarch64, the reference) this is [`Model::infer_streamed`]: the first convolution streams its input and [`ARENA_LEN`] is [`ARENA_STREAMED`]; elsewhere (the x86-64 SIMD engines) the preprocessed input is stored, [`ARENA_WHOLE`]."
    } else {
        ""
    };
    writeln!(
        w,
        "/// Estimate the mass of one cluster from its raw counts (`[band][y][x]`, [`INPUT_LEN`] values, u16 or u8: the same counts give the same bits in either type) and its scalar inputs ([`SCALAR_NAMES`], physical units), using `arena` for every activation and `scratch` for the convolutions' buffers (no kernel keeps one of its own: the inference writes nothing else but its stack frames). A scalar that is not physically valid (not finite, a redshift outside [0, 20], an exposure not in (0, 1e9] s) is `Error::BadScalar` with its index; inputs outside the training ranges ([`Meta::z_range`], [`Meta::extra`]), an all-zero cube or a saturated one (a count at the type's maximum, 65535 or 255), and too few net counts for a detection ([`DETECTION`]) give an estimate with [`Estimate::flags`] set; an `Ok` estimate is always finite (`Error::NonFinite` otherwise).{streaming_note}"
    )?;
    writeln!(
        w,
        "pub fn infer<N: runtime::Count>(&self, counts: &[N], scalars: &[f32; SCALARS], arena: &mut [{act_ty}; ARENA_LEN], scratch: &mut Scratch) -> Result<Estimate, Error> {{"
    )?;
    writeln!(w, "let (z, flags) = self.checks(counts, scalars)?;")?;
    if stream.is_some() {
        writeln!(
            w,
            "if runtime::model::STREAM_INPUT {{ return self.streamed(counts, z, flags, arena, scratch); }}"
        )?;
    }
    writeln!(w, "self.input(counts, arena)?;")?;
    writeln!(w, "self.layers(z, flags, arena, scratch)")?;
    writeln!(w, "}}")?;
    if stream.is_some() {
        writeln!(
            w,
            "/// [`Model::infer`] with the preprocessed input stored whole ([`ARENA_WHOLE`]), on every build: what `infer` runs on the x86-64 SIMD engines; on a Cortex-M4F it takes about 4 % fewer instructions than streaming (edge: 2.62 M against 2.74 M) for the larger arena. The same estimate (int8 bit for bit)."
        )?;
        writeln!(
            w,
            "pub fn infer_whole<N: runtime::Count>(&self, counts: &[N], scalars: &[f32; SCALARS], arena: &mut [{act_ty}; ARENA_WHOLE], scratch: &mut Scratch) -> Result<Estimate, Error> {{"
        )?;
        writeln!(w, "let (z, flags) = self.checks(counts, scalars)?;")?;
        writeln!(w, "self.input(counts, arena)?;")?;
        writeln!(w, "self.layers(z, flags, arena, scratch)")?;
        writeln!(w, "}}")?;
    }
    if let Some(st) = stream {
        let same = if path == Path::Int8 {
            "the same estimate, bit for bit"
        } else {
            "the same estimate up to the engine's float rounding (bit for bit on the reference)"
        };
        writeln!(
            w,
            "/// [`Model::infer`] with the first convolution streaming its input, on every build: the preprocessing writes the {} input rows of every band the convolution's window needs as it slides ([`runtime::kernels::conv2d::Conv2d::s8_pooled_streamed`]), so the preprocessed input is never stored and the arena is [`ARENA_STREAMED`]; {same} as storing it.",
            st.rows
        )?;
        writeln!(
            w,
            "pub fn infer_streamed<N: runtime::Count>(&self, counts: &[N], scalars: &[f32; SCALARS], arena: &mut [{act_ty}; ARENA_STREAMED], scratch: &mut Scratch) -> Result<Estimate, Error> {{"
        )?;
        writeln!(w, "let (z, flags) = self.checks(counts, scalars)?;")?;
        writeln!(w, "self.streamed(counts, z, flags, arena, scratch)")?;
        writeln!(w, "}}")?;
        writeln!(
            w,
            "/// The streamed plan after the checks: the merged first step, then [`Model::rest`]."
        )?;
        writeln!(
            w,
            "fn streamed<N: runtime::Count>(&self, counts: &[N], z: [f32; SCALARS], flags: runtime::model::Flags, arena: &mut [{act_ty}], scratch: &mut Scratch) -> Result<Estimate, Error> {{"
        )?;
        writeln!(w, "let p = &self.meta.preprocess;")?;
        stream_step(w, m, st, path)?;
        writeln!(w, "self.rest(z, flags, arena, scratch)")?;
        writeln!(w, "}}")?;
    }
    writeln!(
        w,
        "/// The first step of [`Model::infer`], the only one that depends on the count type: the counts preprocessed (and pooled) into the arena."
    )?;
    writeln!(
        w,
        "fn input<N: runtime::Count>(&self, counts: &[N], arena: &mut [{act_ty}]) -> Result<(), Error> {{"
    )?;
    writeln!(w, "let p = &self.meta.preprocess;")?;
    step(w, m, first, path)?;
    writeln!(w, "Ok(())")?;
    writeln!(w, "}}")?;
    // int8 with an arena no larger than the cube: the activations can reuse a u8 cube once
    // its first step has read it (that step writes its output to the front of the arena,
    // in place over the counts it has consumed).
    let in_place = path == Path::Int8
        && !first.input_at_front
        && plan::arena_len(steps) <= m.input.len()
        && matches!(first.op.map(|i| &m.ops[i]), None | Some(Op::Pool2d { .. }));
    if in_place {
        writeln!(
            w,
            "/// [`Model::infer`] of a u8 or u16 cube that it consumes: the activations reuse the cube's own memory (its bytes, [`runtime::Count::bytes_mut`]) once the first step has read it ([`ARENA_WHOLE`] <= [`INPUT_LEN`]), so the whole inference needs no RAM but the cube, `scratch` and the kernels' frames. The same estimate, bit for bit, as `infer` on the same counts; `cube` is overwritten."
        )?;
        writeln!(
            w,
            "pub fn infer_in_place<N: runtime::Count>(&self, cube: &mut [N; INPUT_LEN], scalars: &[f32; SCALARS], scratch: &mut Scratch) -> Result<Estimate, Error> {{"
        )?;
        writeln!(w, "let (z, flags) = self.checks(&cube[..], scalars)?;")?;
        writeln!(w, "let p = &self.meta.preprocess;")?;
        match first.op.map(|i| (i, &m.ops[i])) {
            Some((i, Op::Pool2d { kind, .. })) => writeln!(
                w,
                "Op{i}::{}_counts_s8_in_place(p, cube, {})?;",
                pool_kind(*kind),
                qp(0)
            )?,
            _ => writeln!(w, "p.counts_s8_in_place(cube, {})?;", qp(0))?,
        }
        writeln!(
            w,
            "self.layers(z, flags, runtime::model::arena_in::<ARENA_WHOLE>(N::bytes_mut(cube))?, scratch)"
        )?;
        writeln!(w, "}}")?;
    }
    writeln!(
        w,
        "/// The steps of [`Model::infer`] after the first: from the preprocessed input in the arena to the estimate."
    )?;
    writeln!(
        w,
        "fn layers(&self, z: [f32; SCALARS], flags: runtime::model::Flags, arena: &mut [{act_ty}], scratch: &mut Scratch) -> Result<Estimate, Error> {{"
    )?;
    match (stream, rest.split_first()) {
        (Some(_), Some((second, after))) => {
            scratch_slice(w, true)?;
            step(w, m, second, path)?;
            writeln!(w, "self.rest(z, flags, arena, scratch)")?;
            writeln!(w, "}}")?; // layers
            writeln!(
                w,
                "/// The steps after the first convolution (and its pooling), shared by both plans."
            )?;
            writeln!(
                w,
                "fn rest(&self, z: [f32; SCALARS], flags: runtime::model::Flags, arena: &mut [{act_ty}], scratch: &mut [{scratch_ty}]) -> Result<Estimate, Error> {{"
            )?;
            if !has_conv(after) {
                writeln!(w, "let _ = scratch;")?;
            }
            for st in after {
                step(w, m, st, path)?;
            }
        }
        _ => {
            scratch_slice(w, has_conv(rest))?;
            for st in rest {
                step(w, m, st, path)?;
            }
        }
    }
    writeln!(w, "}}")?; // layers or rest
    writeln!(w, "}}")?; // impl
    writeln!(w, "}}")?; // mod
    Ok(())
}

/// The merged first step of the streamed plan: the first convolution (and its pooling) fed
/// rows by the preprocessing (and its pooling).
fn stream_step(w: &mut String, m: &FoldedModel, st: &plan::Stream, path: Path) -> Result<()> {
    let i = st.conv;
    let (Some(Op::Pool2d { kind: k0, .. }), Some(pi)) = (m.ops.first(), st.step.pool) else {
        bail!("a streamed step without its poolings (a codegen bug)");
    };
    let Op::Pool2d { kind, .. } = &m.ops[pi] else {
        bail!("op {pi} fused as a pooling is not one (a codegen bug)");
    };
    let (k0, kind) = (pool_enum(*k0), pool_enum(*kind));
    let (pk, rows) = (st.pool_size, st.rows);
    let (outl, front) = (st.step.out_len, st.step.input_at_front);
    writeln!(w, "let scratch = scratch.as_mut_slice();")?;
    writeln!(
        w,
        "{{ let (window, y, line) = ping_pong_window(arena, Op{i}::window_len::<{pk}>(), {outl}, Op{i}::line_len::<{pk}>(), {front})?;"
    )?;
    match path {
        Path::Int8 => {
            writeln!(w, "let q = {};", qp(0))?;
            writeln!(
                w,
                "Op{i}::s8_pooled_streamed::<{pk}, {rows}>({kind}, |r, win| Op0::counts_s8_rows(p, {k0}, counts, q, r, win), self.w{i}, self.b{i}, {}, y, line, window, scratch)?; }}",
                qargs(i)
            )?;
        }
        _ => {
            let slope = slope_arg(&m.ops[i], i);
            writeln!(
                w,
                "Op{i}::f32_pooled_streamed::<{pk}, {rows}, _>({kind}, |r, win| Op0::counts_f32_rows(p, {k0}, counts, r, win), self.w{i}, self.b{i}, {slope}, y, line, window, scratch)?; }}"
            )?;
        }
    }
    Ok(())
}

/// `PoolKind::Max` / `PoolKind::Avg` in the generated code.
fn pool_enum(kind: crate::arch::PoolKind) -> &'static str {
    match kind {
        crate::arch::PoolKind::Max => "PoolKind::Max",
        crate::arch::PoolKind::Avg => "PoolKind::Avg",
    }
}

/// The slope argument of op `i`'s call: its `SLOPE{i}` constant, or `1.0` (no activation).
fn slope_arg(op: &Op, i: usize) -> String {
    match slope_of(op) {
        Some(s) if s != 1.0 => format!("SLOPE{i}"),
        _ => "1.0".into(),
    }
}

/// The `&QuantArgs` of int8 op `i` in the generated code.
fn qargs(i: usize) -> String {
    format!(
        "&QuantArgs {{ input_zero_point: self.zp[{i}], requant_pos: self.rp{i}, requant_neg: self.rn{i}, output_zero_point: self.zp[{}] }}",
        i + 1
    )
}

/// The code of one step of the plan.
fn step(w: &mut String, m: &FoldedModel, st: &Step, path: Path) -> Result<()> {
    let n = m.ops.len();
    let (inl, outl, front) = (st.in_len, st.out_len, st.input_at_front);
    let Some(i) = st.op else {
        // Preprocessing alone.
        writeln!(w, "{{ let (_, y) = ping_pong(arena, 0, {outl}, {front})?;")?;
        match path {
            Path::Int8 => writeln!(w, "p.counts_s8(counts, {}, y)?; }}", qp(0))?,
            _ => writeln!(w, "p.counts_f32(counts, y)?; }}")?,
        }
        return Ok(());
    };
    let op = &m.ops[i];
    let head = i + 1 == n;
    let slope = slope_arg(op, i);
    let qargs = || qargs(i);
    if head {
        writeln!(w, "let (x, _) = ping_pong(arena, {inl}, 0, {front})?;")?;
        match path {
            Path::Int8 => {
                writeln!(w, "let mut acc = [0i32; 2];")?;
                writeln!(
                    w,
                    "Op{i}::acc_s8_fast(x, self.w{i}, self.b{i}, self.zp[{i}], &mut acc)?;"
                )?;
                writeln!(
                    w,
                    "let raw = [self.os{i}[0] * acc[0] as f32, self.os{i}[1] * acc[1] as f32];"
                )?;
            }
            _ => {
                writeln!(w, "let mut raw = [0.0f32; 2];")?;
                writeln!(
                    w,
                    "Op{i}::f32_fast(x, self.w{i}, self.b{i}, 1.0, &mut raw)?;"
                )?;
            }
        }
        writeln!(w, "self.meta.output(raw, flags)")?;
        return Ok(());
    }
    let int8 = path == Path::Int8;
    if let (Some(pi), Op::Conv2d(_)) = (st.pool, op) {
        let Op::Pool2d { kind, size } = &m.ops[pi] else {
            bail!("op {pi} fused as a pooling is not one (a codegen bug)");
        };
        let line = st.line_len;
        writeln!(
            w,
            "{{ let (x, y, line) = ping_pong_line(arena, {inl}, {outl}, {line}, {front})?;"
        )?;
        let kind = pool_enum(*kind);
        match path {
            Path::Int8 => writeln!(
                w,
                "Op{i}::s8_pooled::<{size}>({kind}, x, self.w{i}, self.b{i}, {}, y, line, scratch)?; }}",
                qargs()
            )?,
            _ => writeln!(
                w,
                "Op{i}::f32_pooled::<{size}, _>({kind}, x, self.w{i}, self.b{i}, {slope}, y, line, scratch)?; }}"
            )?,
        }
        return Ok(());
    }
    let x = if st.preprocess { "_" } else { "x" };
    writeln!(
        w,
        "{{ let ({x}, y) = ping_pong(arena, {inl}, {outl}, {front})?;"
    )?;
    let call = match op {
        Op::Pool2d { kind, .. } if st.preprocess => {
            let k = pool_kind(*kind);
            if int8 {
                format!("Op{i}::{k}_counts_s8(p, counts, {}, y)?;", qp(0))
            } else {
                format!("Op{i}::{k}_counts_f32(p, counts, y)?;")
            }
        }
        Op::Pool2d { kind, .. } => {
            let k = match kind {
                crate::arch::PoolKind::Max => "max",
                crate::arch::PoolKind::Avg => "avg",
            };
            format!("Op{i}::{k}_{}(x, y)?;", if int8 { "s8" } else { "f32" })
        }
        Op::GlobalAvgPool => format!("Op{i}::{}(x, y)?;", if int8 { "s8" } else { "f32" }),
        Op::Conv2d(_) => match path {
            Path::Int8 => format!(
                "Op{i}::s8_rows(x, self.w{i}, self.b{i}, {}, 0, y, scratch)?;",
                qargs()
            ),
            _ => format!(
                "Op{i}::{}_rows(x, self.w{i}, self.b{i}, {slope}, 0, y, scratch)?;",
                path.name()
            ),
        },
        Op::Dense(_) => match path {
            Path::Int8 => format!("Op{i}::s8_fast(x, self.w{i}, self.b{i}, {}, y)?;", qargs()),
            _ => format!("Op{i}::f32_fast(x, self.w{i}, self.b{i}, {slope}, y)?;"),
        },
        Op::FlattenConcatZ => {
            if int8 {
                format!(
                    "let q = {}; runtime::kernels::act::concat(x, &z.map(|v| q.quantize(v)), y)?;",
                    qp(i + 1)
                )
            } else {
                "runtime::kernels::act::concat(x, &z, y)?;".into()
            }
        }
        Op::LeakyRelu { .. } => {
            if int8 {
                format!(
                    "runtime::kernels::act::leaky_s8(x, self.zp[{i}], self.lk{i}[0], self.lk{i}[1], self.zp[{}], y)?;",
                    i + 1
                )
            } else {
                format!("runtime::kernels::act::leaky_f32(x, {slope}, y)?;")
            }
        }
    };
    writeln!(w, "{call} }}")?;
    Ok(())
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

/// `QParams` of activation tensor `t` (0: the input, `i + 1`: op `i`'s output) in the generated code.
fn qp(t: usize) -> String {
    format!("QParams {{ scale: self.scale[{t}], zero_point: self.zp[{t}] }}")
}
