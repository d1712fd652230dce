//! The emitter of every op kind ([`EmitOp`]): the kernel type it defines at the top of the
//! generated module, the blob fields it reads, and the call that runs its step of the
//! memory plan on each numeric path. Lengths in the calls are the kernel types' own
//! constants (`Op3::IN_LEN`, `Op4::OUT_LEN`, `Op3::line_len::<2>()`) wherever the op has a
//! kernel type (or its neighbour has: a concat reads `Op6::OUT_LEN`); the module's
//! compile-time asserts tie them to the plan's numbers.

use super::fields::{self, Field};
use super::tokens::{hex, num, op, pool_enum, pool_kind, slope, window};
use super::{Cx, Path};
use crate::arch::{PoolKind, Shape};
use crate::model::{ConvOp, DenseOp, Op};
use crate::plan::{Step, Stream};
use anyhow::{Result, bail};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// What the generator needs of one op kind.
pub(super) trait EmitOp {
    /// The items that define the op's kernel at the top of the module: its type alias
    /// `OpN` (a `runtime::kernels` type with the op's shapes as const generics), and the
    /// slope `SLOPEN` of its leaky ReLU; empty when the op has neither.
    fn kernel_type(&self, cx: &Cx) -> Result<TokenStream>;
    /// The code of `step` (a step of the memory plan that runs this op) on `path`: a block
    /// that splits the arena (`ping_pong*`) and calls the kernel; the head's ends with the
    /// estimate.
    fn call(&self, cx: &Cx, step: &Step, path: Path) -> Result<TokenStream>;
    /// The blob tensors the op reads on `path`, in blob order.
    fn fields(&self, _path: Path) -> Vec<Field> {
        Vec::new()
    }
    /// `OpN::MACS` when the op multiply-accumulates.
    fn macs(&self) -> Option<TokenStream> {
        None
    }
}

/// Whether `op` has a kernel type `OpN` (and so `OpN::IN_LEN` and `OpN::OUT_LEN`).
pub(super) fn has_kernel_type(op: &Op) -> bool {
    !matches!(op, Op::FlattenConcatZ | Op::LeakyRelu { .. })
}

/// The emitter of op `i`.
pub(super) fn emitter<'a>(cx: &'a Cx, i: usize) -> Box<dyn EmitOp + 'a> {
    let input = cx.shapes[i];
    match &cx.m.ops[i] {
        Op::Conv2d(c) => Box::new(Conv { i, c, input }),
        Op::Pool2d { kind, size } => Box::new(Pool {
            i,
            kind: *kind,
            size: *size,
            input,
        }),
        Op::GlobalAvgPool => Box::new(GlobalAvgPool { i, input }),
        Op::Dense(d) => Box::new(Dense {
            i,
            d,
            head: i + 1 == cx.m.ops.len(),
        }),
        Op::FlattenConcatZ => Box::new(FlattenConcatZ { i }),
        Op::LeakyRelu { slope } => Box::new(LeakyRelu { i, slope: *slope }),
    }
}

/// The code of one step of the plan.
pub(super) fn step(cx: &Cx, st: &Step, path: Path) -> Result<TokenStream> {
    match st.op {
        None => Preprocess.call(cx, st, path),
        Some(i) => emitter(cx, i).call(cx, st, path),
    }
}

/// `/// Op {i}: {desc}.`, the doc of op `i`'s kernel type.
fn type_doc(cx: &Cx, i: usize) -> TokenStream {
    super::tokens::doc(format!("Op {i}: {}.", cx.descs[i]))
}

/// `SLOPE{i}` of a leaky ReLU with `slope` (none for the identity, slope 1).
fn slope_const(i: usize, s: f32) -> TokenStream {
    if s == 1.0 {
        return quote!();
    }
    let (doc, name, bits) = (
        super::tokens::doc(format!("Leaky ReLU slope of op {i} ({s}).")),
        slope(i),
        hex(s.to_bits().into(), 8),
    );
    quote!(#doc pub const #name: f32 = f32::from_bits(#bits);)
}

/// The slope argument of op `i`'s call: its `SLOPE{i}`, or `1.0` (no activation).
fn slope_arg(i: usize, s: f32) -> TokenStream {
    if s == 1.0 {
        quote!(1.0)
    } else {
        let name = slope(i);
        quote!(#name)
    }
}

/// The step's input and output lengths and which end of the arena its input is at.
fn lens(cx: &Cx, st: &Step) -> (TokenStream, TokenStream, bool) {
    (cx.step_in(st), cx.step_out(st), st.input_at_front)
}

/// `(kind, size)` of op `p`, fused into a convolution's step as its pooling.
fn fused_pool(cx: &Cx, p: usize) -> Result<(PoolKind, usize)> {
    match cx.m.ops.get(p) {
        Some(Op::Pool2d { kind, size }) => Ok((*kind, *size)),
        _ => bail!("op {p} fused as a pooling is not one (a codegen bug)"),
    }
}

/// The preprocessing of the counts alone (the first step of a model that does not start
/// with a pooling): the network input written to the arena.
pub(super) struct Preprocess;

impl Preprocess {
    /// The int8 preprocessing over the counts' own memory (`infer_in_place`).
    pub(super) fn in_place_call(&self) -> TokenStream {
        let q = fields::qparams(0);
        quote!(p.counts_s8_in_place(cube, #q)?;)
    }
}

impl EmitOp for Preprocess {
    fn kernel_type(&self, _cx: &Cx) -> Result<TokenStream> {
        Ok(quote!())
    }

    fn call(&self, cx: &Cx, st: &Step, path: Path) -> Result<TokenStream> {
        let (_, outl, front) = lens(cx, st);
        let run = match path {
            Path::Int8 => {
                let q = fields::qparams(0);
                quote!(p.counts_s8(counts, #q, y)?;)
            }
            Path::F32 | Path::F16 => quote!(p.counts_f32(counts, y)?;),
        };
        Ok(quote!({ let (_, y) = ping_pong(arena, 0, #outl, #front)?; #run }))
    }
}

/// A convolution (+ folded BatchNorm, + fused leaky ReLU): alone (`*_rows`), fused with the
/// pooling after it (`*_pooled`, over a line buffer), or streaming its input from the
/// preprocessing ([`Conv::streamed_call`]).
pub(super) struct Conv<'a> {
    i: usize,
    c: &'a ConvOp,
    input: Shape,
}

impl Conv<'_> {
    /// The convolution `OpN<...>` of this op on an input of `rows` rows.
    fn kernel(&self, rows: usize) -> TokenStream {
        let g = self.c.geom;
        let [c, h, w, f, k, s, d, p] = [
            self.input.c,
            rows,
            self.input.w,
            g.filters,
            g.kernel,
            g.stride,
            g.dilation,
            g.pad(),
        ]
        .map(num);
        quote!(runtime::kernels::conv2d::Conv2d<#c, #h, #w, #f, #k, #s, #d, #p>)
    }

    /// The merged first step of the streamed plan `st`: this convolution (and its pooling)
    /// fed rows of its input by the preprocessing and pooling of op 0 as its window slides.
    pub(super) fn streamed_call(&self, cx: &Cx, st: &Stream, path: Path) -> Result<TokenStream> {
        let i = self.i;
        let (Some(Op::Pool2d { kind: k0, .. }), Some(pi)) = (cx.m.ops.first(), st.step.pool) else {
            bail!("a streamed step without its poolings (a codegen bug)");
        };
        let (kind, _) = fused_pool(cx, pi)?;
        let (k0, kind) = (pool_enum(*k0), pool_enum(kind));
        let (pk, rows) = (num(st.pool_size), num(st.rows));
        let (outl, front) = (cx.step_out(&st.step), st.step.input_at_front);
        let (op, first) = (op(i), op(0));
        let (w, b) = (fields::weights(i), fields::bias(i));
        let run = match path {
            Path::Int8 => {
                let (q, args) = (fields::qparams(0), fields::quant_args(i));
                quote! {
                    let q = #q;
                    #op::s8_pooled_streamed::<#pk, #rows>(
                        #kind,
                        |r, win| #first::counts_s8_rows(p, #k0, counts, q, r, win),
                        self.#w, self.#b, #args, y, line, window, scratch,
                    )?;
                }
            }
            Path::F32 | Path::F16 => {
                let slope = slope_arg(i, self.c.slope);
                quote! {
                    #op::f32_pooled_streamed::<#pk, #rows, _>(
                        #kind,
                        |r, win| #first::counts_f32_rows(p, #k0, counts, r, win),
                        self.#w, self.#b, #slope, y, line, window, scratch,
                    )?;
                }
            }
        };
        Ok(quote!({
            let (window, y, line) = ping_pong_window(
                arena,
                #op::window_len::<#pk>(),
                #outl,
                #op::line_len::<#pk>(),
                #front,
            )?;
            #run
        }))
    }
}

impl EmitOp for Conv<'_> {
    fn kernel_type(&self, cx: &Cx) -> Result<TokenStream> {
        let i = self.i;
        let (doc, name, kernel) = (type_doc(cx, i), op(i), self.kernel(self.input.h));
        let window = match cx.stream.filter(|st| st.conv == i) {
            Some(st) => {
                let doc = super::tokens::doc(format!(
                    "Op {i} streaming its input (`infer_streamed`): the convolution on a window of {} input rows.",
                    st.rows
                ));
                let (name, kernel) = (window(i), self.kernel(st.rows));
                quote!(#doc pub type #name = #kernel;)
            }
            None => quote!(),
        };
        let slope = slope_const(i, self.c.slope);
        Ok(quote!(#doc pub type #name = #kernel; #window #slope))
    }

    fn call(&self, cx: &Cx, st: &Step, path: Path) -> Result<TokenStream> {
        let i = self.i;
        if st.preprocess {
            bail!("op {i}: a convolution cannot read the counts (a codegen bug)");
        }
        let (inl, outl, front) = lens(cx, st);
        let (op, w, b) = (op(i), fields::weights(i), fields::bias(i));
        let slope = slope_arg(i, self.c.slope);
        if let Some(pi) = st.pool {
            let (kind, size) = fused_pool(cx, pi)?;
            let (kind, k) = (pool_enum(kind), num(size));
            let run = match path {
                Path::Int8 => {
                    let args = fields::quant_args(i);
                    quote!(#op::s8_pooled::<#k>(#kind, x, self.#w, self.#b, #args, y, line, scratch)?;)
                }
                Path::F32 | Path::F16 => quote! {
                    #op::f32_pooled::<#k, _>(#kind, x, self.#w, self.#b, #slope, y, line, scratch)?;
                },
            };
            return Ok(quote!({
                let (x, y, line) = ping_pong_line(arena, #inl, #outl, #op::line_len::<#k>(), #front)?;
                #run
            }));
        }
        let run = match path {
            Path::Int8 => {
                let args = fields::quant_args(i);
                quote!(#op::s8_rows(x, self.#w, self.#b, #args, 0, y, scratch)?;)
            }
            Path::F32 | Path::F16 => {
                let f = format_ident!("{}_rows", path.name());
                quote!(#op::#f(x, self.#w, self.#b, #slope, 0, y, scratch)?;)
            }
        };
        Ok(quote!({ let (x, y) = ping_pong(arena, #inl, #outl, #front)?; #run }))
    }

    fn fields(&self, path: Path) -> Vec<Field> {
        let g = self.c.geom;
        let taps = g.in_c * g.kernel * g.kernel;
        fields::layer(self.i, self.c.weight.len(), g.filters, taps, false, path)
    }

    fn macs(&self) -> Option<TokenStream> {
        let op = op(self.i);
        Some(quote!(#op::MACS))
    }
}

/// A pooling: alone, or fused with the preprocessing (the model's first op: the counts
/// preprocessed and pooled in one pass, the full-resolution input never stored).
pub(super) struct Pool {
    i: usize,
    kind: PoolKind,
    size: usize,
    input: Shape,
}

impl Pool {
    /// The first op's int8 preprocessing and pooling over the counts' own memory
    /// (`infer_in_place`).
    pub(super) fn in_place_call(&self) -> TokenStream {
        let (op, q) = (op(self.i), fields::qparams(0));
        let f = format_ident!("{}_counts_s8_in_place", pool_kind(self.kind));
        quote!(#op::#f(p, cube, #q)?;)
    }
}

impl EmitOp for Pool {
    fn kernel_type(&self, cx: &Cx) -> Result<TokenStream> {
        let (doc, name) = (type_doc(cx, self.i), op(self.i));
        let [c, h, w, k] = [self.input.c, self.input.h, self.input.w, self.size].map(num);
        Ok(quote!(#doc pub type #name = runtime::kernels::pool::Pool2d<#c, #h, #w, #k>;))
    }

    fn call(&self, cx: &Cx, st: &Step, path: Path) -> Result<TokenStream> {
        let (inl, outl, front) = lens(cx, st);
        let (op, k) = (op(self.i), pool_kind(self.kind));
        if st.preprocess {
            let run = match path {
                Path::Int8 => {
                    let (f, q) = (format_ident!("{k}_counts_s8"), fields::qparams(0));
                    quote!(#op::#f(p, counts, #q, y)?;)
                }
                Path::F32 | Path::F16 => {
                    let f = format_ident!("{k}_counts_f32");
                    quote!(#op::#f(p, counts, y)?;)
                }
            };
            return Ok(quote!({ let (_, y) = ping_pong(arena, 0, #outl, #front)?; #run }));
        }
        let f = format_ident!("{k}_{}", if path == Path::Int8 { "s8" } else { "f32" });
        Ok(quote!({ let (x, y) = ping_pong(arena, #inl, #outl, #front)?; #op::#f(x, y)?; }))
    }
}

/// The mean of every channel.
pub(super) struct GlobalAvgPool {
    i: usize,
    input: Shape,
}

impl EmitOp for GlobalAvgPool {
    fn kernel_type(&self, cx: &Cx) -> Result<TokenStream> {
        let (doc, name) = (type_doc(cx, self.i), op(self.i));
        let [c, h, w] = [self.input.c, self.input.h, self.input.w].map(num);
        Ok(quote!(#doc pub type #name = runtime::kernels::pool::GlobalAvgPool<#c, #h, #w>;))
    }

    fn call(&self, cx: &Cx, st: &Step, path: Path) -> Result<TokenStream> {
        let (inl, outl, front) = lens(cx, st);
        let op = op(self.i);
        let f = format_ident!("{}", if path == Path::Int8 { "s8" } else { "f32" });
        Ok(quote!({ let (x, y) = ping_pong(arena, #inl, #outl, #front)?; #op::#f(x, y)?; }))
    }
}

/// A dense layer (+ fused leaky ReLU), hidden or the 2-unit head (whose outputs go to the
/// stack and become the estimate).
pub(super) struct Dense<'a> {
    i: usize,
    d: &'a DenseOp,
    head: bool,
}

impl EmitOp for Dense<'_> {
    fn kernel_type(&self, cx: &Cx) -> Result<TokenStream> {
        let (doc, name) = (type_doc(cx, self.i), op(self.i));
        let (n_in, units) = (num(self.d.n_in), num(self.d.units));
        let slope = slope_const(self.i, self.d.slope);
        Ok(quote!(#doc pub type #name = runtime::kernels::dense::Dense<#n_in, #units>; #slope))
    }

    fn call(&self, cx: &Cx, st: &Step, path: Path) -> Result<TokenStream> {
        let i = self.i;
        let (inl, outl, front) = lens(cx, st);
        let (op, w, b) = (op(i), fields::weights(i), fields::bias(i));
        if self.head {
            let run = match path {
                Path::Int8 => {
                    let (zp, os, zi) = (fields::zero_points(), fields::output_scale(i), num(i));
                    quote! {
                        let mut acc = [0i32; 2];
                        #op::acc_s8_fast(x, self.#w, self.#b, self.#zp[#zi], &mut acc)?;
                        let raw = [self.#os[0] * acc[0] as f32, self.#os[1] * acc[1] as f32];
                    }
                }
                Path::F32 | Path::F16 => quote! {
                    let mut raw = [0.0f32; 2];
                    #op::f32_fast(x, self.#w, self.#b, 1.0, &mut raw)?;
                },
            };
            return Ok(quote! {
                let (x, _) = ping_pong(arena, #inl, 0, #front)?;
                #run
                self.meta.output(raw, flags)
            });
        }
        let run = match path {
            Path::Int8 => {
                let args = fields::quant_args(i);
                quote!(#op::s8_fast(x, self.#w, self.#b, #args, y)?;)
            }
            Path::F32 | Path::F16 => {
                let slope = slope_arg(i, self.d.slope);
                quote!(#op::f32_fast(x, self.#w, self.#b, #slope, y)?;)
            }
        };
        Ok(quote!({ let (x, y) = ping_pong(arena, #inl, #outl, #front)?; #run }))
    }

    fn fields(&self, path: Path) -> Vec<Field> {
        let d = self.d;
        fields::layer(self.i, d.n_in * d.units, d.units, d.n_in, self.head, path)
    }

    fn macs(&self) -> Option<TokenStream> {
        let op = op(self.i);
        Some(quote!(#op::MACS))
    }
}

/// Flatten, then append the preprocessed scalar inputs (int8: quantised with the output's
/// parameters).
pub(super) struct FlattenConcatZ {
    i: usize,
}

impl EmitOp for FlattenConcatZ {
    fn kernel_type(&self, _cx: &Cx) -> Result<TokenStream> {
        Ok(quote!())
    }

    fn call(&self, cx: &Cx, st: &Step, path: Path) -> Result<TokenStream> {
        let (inl, outl, front) = lens(cx, st);
        let run = match path {
            Path::Int8 => {
                let q = fields::qparams(self.i + 1);
                quote! {
                    let q = #q;
                    runtime::kernels::act::concat(x, &z.map(|v| q.quantize(v)), y)?;
                }
            }
            Path::F32 | Path::F16 => quote!(runtime::kernels::act::concat(x, &z, y)?;),
        };
        Ok(quote!({ let (x, y) = ping_pong(arena, #inl, #outl, #front)?; #run }))
    }
}

/// A leaky ReLU that could not be fused (int8: its own requantisation pair).
pub(super) struct LeakyRelu {
    i: usize,
    slope: f32,
}

impl EmitOp for LeakyRelu {
    fn kernel_type(&self, _cx: &Cx) -> Result<TokenStream> {
        Ok(slope_const(self.i, self.slope))
    }

    fn call(&self, cx: &Cx, st: &Step, path: Path) -> Result<TokenStream> {
        let i = self.i;
        let (inl, outl, front) = lens(cx, st);
        let run = match path {
            Path::Int8 => {
                let (zp, lk, zi, zo) = (
                    fields::zero_points(),
                    fields::leaky_pair(i),
                    num(i),
                    num(i + 1),
                );
                quote! {
                    runtime::kernels::act::leaky_s8(x, self.#zp[#zi], self.#lk[0], self.#lk[1], self.#zp[#zo], y)?;
                }
            }
            Path::F32 | Path::F16 => {
                let slope = slope_arg(i, self.slope);
                quote!(runtime::kernels::act::leaky_f32(x, #slope, y)?;)
            }
        };
        Ok(quote!({ let (x, y) = ping_pong(arena, #inl, #outl, #front)?; #run }))
    }

    fn fields(&self, path: Path) -> Vec<Field> {
        match path {
            Path::Int8 => vec![Field {
                role: fields::Role::LeakyPair { op: self.i },
                path,
                len: 4,
            }],
            Path::F32 | Path::F16 => Vec::new(),
        }
    }
}

/// The constructors the plan's special steps need.
impl<'a> Cx<'a> {
    /// The convolution op `i` (the streamed one).
    pub(super) fn conv(&self, i: usize) -> Result<Conv<'a>> {
        let m: &'a crate::model::FoldedModel = self.m;
        match &m.ops[i] {
            Op::Conv2d(c) => Ok(Conv {
                i,
                c,
                input: self.shapes[i],
            }),
            _ => bail!("op {i} streamed as a convolution is not one (a codegen bug)"),
        }
    }

    /// The pooling op `i` (the first, fused with the preprocessing).
    pub(super) fn pool(&self, i: usize) -> Result<Pool> {
        match &self.m.ops[i] {
            Op::Pool2d { kind, size } => Ok(Pool {
                i,
                kind: *kind,
                size: *size,
                input: self.shapes[i],
            }),
            _ => bail!("op {i} is not a pooling (a codegen bug)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tokens::f32_lit;
    use super::*;

    #[test]
    fn slope_literal_is_the_bit_pattern() {
        assert_eq!(slope_const(1, 1.0).to_string(), "");
        assert!(slope_const(1, 0.1).to_string().contains("0x3dcccccd"));
        assert!(f32_lit(f32::NAN).is_err());
    }
}
