//! The `Model` of one numeric path (`pub mod f32`, `f16`, `int8`): its blob fields, the
//! loader that validates them, and the entry points that run the memory plan's steps.

use super::fields::{Field, Role};
use super::ops::{self, emitter};
use super::tokens::{doc, num};
use super::{Cx, Path};
use crate::model::Op;
use crate::plan::Step;
use anyhow::{Result, bail};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

/// Every blob tensor of `path`, in blob order: the model constants, each op's, then (int8)
/// the activations' scales and zero points.
pub(super) fn fields(cx: &Cx, path: Path) -> Vec<Field> {
    let m = cx.m;
    let n = m.ops.len();
    let meta = Field {
        role: Role::Meta,
        path,
        // Meta::<BANDS, EXTRA>::LEN: the band scales, 7 constants, each auxiliary input's
        // record (as `load::expected_tensors` and the blobs have it).
        len: runtime::model::Meta::<0>::LEN
            + m.input.c
            + runtime::model::ExtraScalar::LEN * m.preprocess.extra.len(),
    };
    let mut f = vec![meta];
    for i in 0..n {
        f.extend(emitter(cx, i).fields(path));
    }
    if path == Path::Int8 {
        for role in [Role::ActScales, Role::ZeroPoints] {
            f.push(Field {
                role,
                path,
                len: n + 1,
            });
        }
    }
    f
}

/// The struct fields, `Model::new` and the entry points of `path`.
pub(super) fn path_module(cx: &Cx, path: Path) -> Result<TokenStream> {
    let m = cx.m;
    let fields = fields(cx, path);
    let name = format_ident!("{}", path.name());
    let act = path.act_ty();
    let dtype = format_ident!(
        "{}",
        match path {
            Path::F32 => "F32",
            Path::F16 => "F16",
            Path::Int8 => "Int8",
        }
    );
    let what = doc(format!(
        "The model with {}.",
        match path {
            Path::F32 => "f32 weights and arithmetic",
            Path::F16 => "f16 weights (half the flash), f32 arithmetic",
            Path::Int8 => {
                "int8 weights and activations (TFLite / CMSIS-NN scheme), bit-exact on every target"
            }
        }
    ));
    // int8: what the fields and calls name (a layer's requantisation is its `QuantArgs`).
    let quant_uses = match path {
        Path::Int8 => {
            let has = |pick: fn(&Role) -> bool| fields.iter().any(|f| pick(&f.role));
            let args = has(|r| matches!(r, Role::RequantPos { .. })).then(|| {
                quote!(
                    use runtime::kernels::conv2d::QuantArgs;
                )
            });
            let requant = has(|r| {
                matches!(
                    r,
                    Role::RequantPos { .. } | Role::RequantNeg { .. } | Role::LeakyPair { .. }
                )
            })
            .then(|| quote!(, Requant));
            quote! {
                #args
                use runtime::quant::{QParams #requant};
            }
        }
        Path::F32 | Path::F16 => quote!(),
    };
    let (scratch_ty, scratch_len) = match path {
        Path::Int8 => (quote!(i16), format_ident!("SCRATCH_S8")),
        Path::F32 | Path::F16 => (quote!(f32), format_ident!("SCRATCH_F32")),
    };
    let scratch_doc = doc(format!(
        "The convolutions' scratch [`Model::infer`] takes ([`{scratch_len}`] values, 16-byte aligned): owned by the caller, on its stack or in a `static`; `Scratch::new()` makes one."
    ));
    let n_tensors = num(fields.len());
    let tensors = fields.iter().map(|f| {
        let (e, len) = (f.elem(), num(f.len));
        quote!((Elem::#e, #len))
    });
    let model_doc = doc(format!(
        "A validated {} weight blob, borrowed in place (e.g. from flash).",
        path.name()
    ));
    let decls = fields.iter().map(Field::decl);
    let loads = fields
        .iter()
        .enumerate()
        .map(|(k, f)| f.load(k, &fields))
        .collect::<Result<Vec<_>>>()?;
    let names = fields.iter().map(Field::ident);

    let Some((first, rest)) = cx.steps.split_first().filter(|(f, _)| f.preprocess) else {
        bail!("the first step must preprocess the counts (a codegen bug)");
    };
    let has_conv = |st: &[Step]| {
        st.iter()
            .any(|s| s.op.is_some_and(|i| matches!(m.ops[i], Op::Conv2d(_))))
    };
    let scratch_slice = |convs: bool| {
        if convs {
            quote!(let scratch = scratch.as_mut_slice();)
        } else {
            quote!(let _ = scratch;)
        }
    };
    let steps = |st: &[Step]| -> Result<TokenStream> {
        st.iter().map(|s| ops::step(cx, s, path)).collect()
    };

    let streaming_note = if cx.stream.is_some() {
        " Where `runtime::model::STREAM_INPUT` (Cortex-M, aarch64, the reference) this is [`Model::infer_streamed`]: the first convolution streams its input and [`ARENA_LEN`] is [`ARENA_STREAMED`]; elsewhere (the x86-64 SIMD engines) the preprocessed input is stored, [`ARENA_WHOLE`]."
    } else {
        ""
    };
    let infer_doc = doc(format!(
        "Estimate the mass of one cluster from its raw counts (`[band][y][x]`, [`INPUT_LEN`] values, u16 or u8: the same counts give the same bits in either type) and its scalar inputs ([`SCALAR_NAMES`], physical units), using `arena` for every activation and `scratch` for the convolutions' buffers (no kernel keeps one of its own: the inference writes nothing else but its stack frames). A scalar that is not physically valid (not finite, a redshift outside [0, 20], an exposure not in (0, 1e9] s) is `Error::BadScalar` with its index; inputs outside the training ranges ([`Meta::z_range`], [`Meta::extra`]), an all-zero cube or a saturated one (a count at the type's maximum, 65535 or 255), and too few net counts for a detection ([`DETECTION`]) give an estimate with [`Estimate::flags`] set; an `Ok` estimate is always finite (`Error::NonFinite` otherwise).{streaming_note}"
    ));
    let to_streamed = match cx.stream {
        Some(_) => quote! {
            if runtime::model::STREAM_INPUT { return self.streamed(counts, z, flags, arena, scratch); }
        },
        None => quote!(),
    };
    let infer = quote! {
        #infer_doc
        pub fn infer<N: runtime::Count>(&self, counts: &[N], scalars: &[f32; SCALARS], arena: &mut [#act; ARENA_LEN], scratch: &mut Scratch) -> Result<Estimate, Error> {
            let (z, flags) = self.checks(counts, scalars)?;
            #to_streamed
            self.input(counts, arena)?;
            self.layers(z, flags, arena, scratch)
        }
    };
    let streamed = match cx.stream {
        None => quote!(),
        Some(st) => {
            let same = if path == Path::Int8 {
                "the same estimate, bit for bit"
            } else {
                "the same estimate up to the engine's float rounding (bit for bit on the reference)"
            };
            let streamed_doc = doc(format!(
                "[`Model::infer`] with the first convolution streaming its input, on every build: the preprocessing writes the {} input rows of every band the convolution's window needs as it slides ([`runtime::kernels::conv2d::Conv2d::s8_pooled_streamed`]), so the preprocessed input is never stored and the arena is [`ARENA_STREAMED`]; {same} as storing it.",
                st.rows
            ));
            let first = cx.conv(st.conv)?.streamed_call(cx, &st, path)?;
            quote! {
                #[doc = " [`Model::infer`] with the preprocessed input stored whole ([`ARENA_WHOLE`]), on every build: what `infer` runs on the x86-64 SIMD engines; on a Cortex-M4F it takes about 4 % fewer instructions than streaming (edge: 2.62 M against 2.74 M) for the larger arena. The same estimate (int8 bit for bit)."]
                pub fn infer_whole<N: runtime::Count>(&self, counts: &[N], scalars: &[f32; SCALARS], arena: &mut [#act; ARENA_WHOLE], scratch: &mut Scratch) -> Result<Estimate, Error> {
                    let (z, flags) = self.checks(counts, scalars)?;
                    self.input(counts, arena)?;
                    self.layers(z, flags, arena, scratch)
                }
                #streamed_doc
                pub fn infer_streamed<N: runtime::Count>(&self, counts: &[N], scalars: &[f32; SCALARS], arena: &mut [#act; ARENA_STREAMED], scratch: &mut Scratch) -> Result<Estimate, Error> {
                    let (z, flags) = self.checks(counts, scalars)?;
                    self.streamed(counts, z, flags, arena, scratch)
                }
                #[doc = " The streamed plan after the checks: the merged first step, then [`Model::rest`]."]
                fn streamed<N: runtime::Count>(&self, counts: &[N], z: [f32; SCALARS], flags: runtime::model::Flags, arena: &mut [#act], scratch: &mut Scratch) -> Result<Estimate, Error> {
                    let p = &self.meta.preprocess;
                    let scratch = scratch.as_mut_slice();
                    #first
                    self.rest(z, flags, arena, scratch)
                }
            }
        }
    };
    let input_step = ops::step(cx, first, path)?;
    // int8 with an arena no larger than the cube: the activations can reuse a u8 cube once
    // its first step has read it (that step writes its output to the front of the arena,
    // in place over the counts it has consumed).
    let in_place = path == Path::Int8
        && !first.input_at_front
        && crate::plan::arena_len(&cx.steps) <= m.input.len()
        && matches!(first.op.map(|i| &m.ops[i]), None | Some(Op::Pool2d { .. }));
    let in_place = if in_place {
        let run = match first.op {
            Some(i) => cx.pool(i)?.in_place_call(),
            None => ops::Preprocess.in_place_call(),
        };
        quote! {
            #[doc = " [`Model::infer`] of a u8 or u16 cube that it consumes: the activations reuse the cube's own memory (its bytes, [`runtime::Count::bytes_mut`]) once the first step has read it ([`ARENA_WHOLE`] <= [`INPUT_LEN`]), so the whole inference needs no RAM but the cube, `scratch` and the kernels' frames. The same estimate, bit for bit, as `infer` on the same counts; `cube` is overwritten."]
            pub fn infer_in_place<N: runtime::Count>(&self, cube: &mut [N; INPUT_LEN], scalars: &[f32; SCALARS], scratch: &mut Scratch) -> Result<Estimate, Error> {
                let (z, flags) = self.checks(&cube[..], scalars)?;
                let p = &self.meta.preprocess;
                #run
                self.layers(z, flags, runtime::model::arena_in::<ARENA_WHOLE>(N::bytes_mut(cube))?, scratch)
            }
        }
    } else {
        quote!()
    };
    let layers_sig = quote! {
        #[doc = " The steps of [`Model::infer`] after the first: from the preprocessed input in the arena to the estimate."]
        fn layers(&self, z: [f32; SCALARS], flags: runtime::model::Flags, arena: &mut [#act], scratch: &mut Scratch) -> Result<Estimate, Error>
    };
    let layers = match (cx.stream, rest.split_first()) {
        (Some(_), Some((second, after))) => {
            let (s, second, after_steps) = (
                scratch_slice(true),
                ops::step(cx, second, path)?,
                steps(after)?,
            );
            let unused = if has_conv(after) {
                quote!()
            } else {
                quote!(let _ = scratch;)
            };
            quote! {
                #layers_sig {
                    #s
                    #second
                    self.rest(z, flags, arena, scratch)
                }
                #[doc = " The steps after the first convolution (and its pooling), shared by both plans."]
                fn rest(&self, z: [f32; SCALARS], flags: runtime::model::Flags, arena: &mut [#act], scratch: &mut [#scratch_ty]) -> Result<Estimate, Error> {
                    #unused
                    #after_steps
                }
            }
        }
        _ => {
            let (s, all) = (scratch_slice(has_conv(rest)), steps(rest)?);
            quote!(#layers_sig { #s #all })
        }
    };

    Ok(quote! {
        #what
        pub mod #name {
            use super::*;
            use runtime::blob::{Blob, BlobError, Dtype, Elem};
            #quant_uses
            #[allow(unused_imports)] use runtime::model::{Estimate, Meta, ping_pong, ping_pong_line, ping_pong_window};
            #[allow(unused_imports)] use runtime::kernels::pool::PoolKind;
            use runtime::Error;
            #scratch_doc
            pub type Scratch = runtime::model::Scratch<#scratch_ty, #scratch_len>;
            #[doc = " The blob's tensors in order: element type and length."]
            pub const TENSORS: [(Elem, usize); #n_tensors] = [#(#tensors),*];
            #model_doc
            #[derive(Debug, Clone, Copy)]
            pub struct Model<'a> {
                #(#decls,)*
            }
            impl<'a> Model<'a> {
                #[doc = " Validate `blob` and borrow its tensors: header, checksum, reserved bytes, canonical layout (no overlap, no trailing bytes), dtype, architecture, every tensor's type and size, and every value the kernels use (model constants and redshift range in bounds, finite float weights, int8 biases and requantisation that cannot overflow the i32 accumulators, positive scales, zero points in [-128, 127])."]
                pub fn new(blob: &'a [u8]) -> Result<Self, BlobError> {
                    let b = Blob::parse(blob, Dtype::#dtype, ARCH_HASH, &TENSORS)?;
                    let bad = |index: usize| BlobError::BadValue { index };
                    #(#loads)*
                    Ok(Self { #(#names),* })
                }
                #[doc = " The model constants (preprocessing, sigma floor and calibration) read from the blob."]
                pub fn meta(&self) -> &Meta<BANDS, { SCALARS - 1 }> { &self.meta }
                #[doc = " The scalar checks and input flags of every entry point: the network's scalar inputs and the estimate's flags."]
                fn checks<N: runtime::Count>(&self, counts: &[N], scalars: &[f32; SCALARS]) -> Result<([f32; SCALARS], runtime::model::Flags), Error> {
                    let mut z = [0.0f32; SCALARS];
                    let flags = self.meta.scalars(scalars, &mut z)? | runtime::model::cube_flags(counts, N::MAX) | runtime::detect::flags(DETECTION.as_ref(), counts, scalars[0])?;
                    Ok((z, flags))
                }
                #infer
                #streamed
                #[doc = " The first step of [`Model::infer`], the only one that depends on the count type: the counts preprocessed (and pooled) into the arena."]
                fn input<N: runtime::Count>(&self, counts: &[N], arena: &mut [#act]) -> Result<(), Error> {
                    let p = &self.meta.preprocess;
                    #input_step
                    Ok(())
                }
                #in_place
                #layers
            }
        }
    })
}
