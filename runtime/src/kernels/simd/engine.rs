//! The dispatch table: one function per kernel, each a single `match` on the path this call
//! takes ([`active`] / [`active_s8`], read once), with an arm per engine of the build (the
//! `simd_*` cfgs) and `false` (or `Ok(false)`) where none takes the call: the caller then runs
//! its scalar reference, the generic fallback. The kernels take plain data (slices, the shape as const
//! parameters, [`QuantArgs`]), so this module, like every engine, depends on no front-end.

use super::Lanes;
#[cfg(any(simd_x86, simd_neon, simd_dsp))]
use super::Path;
use super::{Sink, active, active_s8};
use crate::Error;
use crate::kernels::args::{FloatWeight, QuantArgs};
use crate::quant::QParams;

#[cfg(any(simd_x86, simd_neon))]
use super::Geom;
#[cfg(simd_dsp)]
use super::dsp;
#[cfg(simd_neon)]
use super::neon;
#[cfg(simd_x86)]
use super::{x2, x86, x512};

/// One float convolution call (lengths checked by the caller): output rows
/// `oy0..oy0 + rows` of `act(bias + sum w x)`, `act` the leaky ReLU of `slope`.
#[derive(Clone, Copy)]
pub(crate) struct ConvF32<'a, W> {
    /// `[IC][IH][IW]`.
    pub input: &'a [f32],
    /// `[OC][IC][K][K]`.
    pub weights: &'a [W],
    /// `[OC]`.
    pub bias: &'a [f32],
    /// Leaky ReLU slope (1: none).
    pub slope: f32,
    /// First output row.
    pub oy0: usize,
    /// Output rows.
    pub rows: usize,
    /// False: `scratch` holds the weights a previous call with the same weights packed (the
    /// x86 im2col engine; the others ignore it).
    pub pack: bool,
}

/// One int8 convolution call (lengths and `q` checked by the caller), as [`ConvF32`].
#[derive(Clone, Copy)]
pub(crate) struct ConvS8<'a> {
    /// `[IC][IH][IW]`.
    pub input: &'a [i8],
    /// `[OC][IC][K][K]`.
    pub weights: &'a [i8],
    /// `[OC]`.
    pub bias: &'a [i32],
    /// Zero points and requantisation.
    pub q: &'a QuantArgs<'a>,
    /// First output row.
    pub oy0: usize,
    /// Output rows.
    pub rows: usize,
    /// As [`ConvF32::pack`].
    pub pack: bool,
}

/// Scratch i16 values an int8 convolution of this shape needs on this build's path: the
/// DSP engine's own layout on Cortex-M, else [`super::scratch_s8`].
pub(crate) const fn conv_scratch_s8<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
>() -> usize {
    #[cfg(simd_dsp)]
    return dsp::Conv::<IC, IH, IW, OC, K, S, D, P>::SCRATCH;
    #[allow(unreachable_code)]
    super::scratch_s8([IC, IH, IW, OC, K, S, D, P])
}

/// `Err` when `scratch` holds fewer than `need` values.
#[cfg(any(simd_x86, simd_neon, simd_dsp))]
fn check_scratch(need: usize, got: usize) -> Result<(), Error> {
    if got < need {
        return Err(Error::BadLength {
            expected: need,
            got,
        });
    }
    Ok(())
}

/// A float convolution into `sink` on this call's engine: `Ok(true)` done, `Ok(false)` no
/// engine takes it (the reference's turn; a pooled `sink` then wants rows: only the flat x86
/// engines pool), `Err` a short `scratch` (it needs [`super::scratch_f32`] values).
#[allow(unused_variables)]
pub(crate) fn conv_f32<
    W: FloatWeight,
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
>(
    c: &ConvF32<'_, W>,
    sink: Sink<'_, f32>,
    scratch: &mut [f32],
) -> Result<bool, Error> {
    let need = const { super::scratch_f32([IC, IH, IW, OC, K, S, D, P]) };
    let &ConvF32 {
        input,
        weights,
        bias,
        slope,
        oy0,
        rows,
        pack,
    } = c;
    let ran = match active() {
        #[cfg(simd_x86)]
        Path::Avx512 if S == 1 && sink.pk() <= x512::MAX_POOL => {
            check_scratch(need, scratch.len())?;
            let dm = &const { x512::Dims::new([IC, IH, IW, OC, K, S, D, P]) };
            let s = &mut scratch[..need];
            macro_rules! go {
                ($n:literal) => {
                    // SAFETY: `active` checked the AVX-512 features; lengths checked by the
                    // caller, the scratch above.
                    unsafe {
                        x512::conv_f32::<W, $n, K, D>(
                            dm, input, weights, bias, slope, oy0, rows, s, sink,
                        )
                    }
                };
            }
            match x512::block(OC) {
                4 => go!(4),
                8 => go!(8),
                12 => go!(12),
                16 => go!(16),
                20 => go!(20),
                _ => go!(24),
            }
            true
        }
        #[cfg(simd_x86)]
        Path::Avx2 if S == 1 && sink.pk() <= x2::MAX_POOL => {
            check_scratch(need, scratch.len())?;
            let s = &mut scratch[..need];
            // SAFETY: `active` checked AVX2/FMA/F16C; lengths checked by the caller, the
            // scratch above.
            unsafe {
                x2::conv_f32::<W, IC, IH, IW, OC, K, D, P, 4, 2>(
                    input, weights, bias, slope, oy0, rows, s, sink,
                )
            };
            true
        }
        #[cfg(simd_x86)]
        Path::Avx2 | Path::Avx512 => {
            let Sink::Rows(out) = sink else {
                return Ok(false); // pooled: by rows
            };
            check_scratch(need, scratch.len())?;
            let g = &const { Geom::new([IC, IH, IW, OC, K, S, D, P]) };
            let s = &mut scratch[..need];
            let act = |acc: f32| if acc < 0.0 { acc * slope } else { acc };
            // SAFETY: `active` checked AVX2/FMA/F16C; lengths checked by the caller, the
            // scratch above.
            unsafe {
                x86::conv_f32::<W, K, S, D>(
                    g, OC, input, weights, bias, oy0, rows, out, s, act, pack,
                )
            };
            true
        }
        #[cfg(simd_neon)]
        Path::Neon => {
            let Sink::Rows(out) = sink else {
                return Ok(false); // pooled: by rows
            };
            check_scratch(need, scratch.len())?;
            let g = &const { Geom::new([IC, IH, IW, OC, K, S, D, P]) };
            let act = |acc: f32| if acc < 0.0 { acc * slope } else { acc };
            let (window, plane) = (g.window(), rows * g.ow);
            let lp = super::padded(window);
            g.blocks(
                input,
                oy0,
                rows,
                scratch,
                0.0,
                |v| v,
                |cols, n, first| {
                    let mut emit = |oc: usize, q: usize, sum: f32| {
                        out[oc * plane + first + q] = act(bias[oc] + sum);
                    };
                    neon::gemm_f32(cols, lp, n, weights, window, &mut emit);
                },
            );
            true
        }
        _ => false,
    };
    Ok(ran)
}

/// An int8 convolution into `sink` on this call's engine, bit-identical to the reference;
/// results as [`conv_f32`] (`scratch` needs [`conv_scratch_s8`] values).
#[allow(unused_variables)]
pub(crate) fn conv_s8<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
>(
    c: &ConvS8<'_>,
    sink: Sink<'_, i8>,
    scratch: &mut [i16],
) -> Result<bool, Error> {
    let need = const { conv_scratch_s8::<IC, IH, IW, OC, K, S, D, P>() };
    let &ConvS8 {
        input,
        weights,
        bias,
        q,
        oy0,
        rows,
        pack,
    } = c;
    let zp = q.input_zero_point;
    // The flat x86 engines hold activations as bytes.
    let byte_zp = (-128..=127).contains(&zp);
    let ran = match active_s8() {
        #[cfg(simd_x86)]
        Path::Avx512 if S == 1 && sink.pk() <= x512::MAX_POOL && byte_zp => {
            check_scratch(need, scratch.len())?;
            // SAFETY: the i16 scratch viewed as its bytes.
            let bytes: &mut [u8] =
                unsafe { core::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast(), 2 * need) };
            let dm = &const { x512::Dims::new([IC, IH, IW, OC, K, S, D, P]) };
            macro_rules! go {
                ($n:literal) => {
                    // SAFETY: `active_s8` checked the AVX-512 features, the zero point is an
                    // int8; lengths checked by the caller, the scratch above.
                    unsafe {
                        x512::conv_s8::<$n>(dm, input, weights, bias, q, oy0, rows, bytes, sink)
                    }
                };
            }
            match x512::block_s8(OC) {
                4 => go!(4),
                _ => go!(8),
            }
            true
        }
        #[cfg(simd_x86)]
        Path::Avx2 if S == 1 && sink.pk() <= x2::MAX_POOL && byte_zp => {
            check_scratch(need, scratch.len())?;
            // SAFETY: the i16 scratch viewed as its bytes.
            let bytes: &mut [u8] =
                unsafe { core::slice::from_raw_parts_mut(scratch.as_mut_ptr().cast(), 2 * need) };
            macro_rules! go {
                ($n:literal, $sb:literal) => {
                    // SAFETY: `active_s8` checked AVX2, the zero point is an int8; lengths
                    // checked by the caller, the scratch above.
                    unsafe {
                        x2::conv_s8::<IC, IH, IW, OC, K, D, P, $n, $sb>(
                            input, weights, bias, q, oy0, rows, bytes, sink,
                        )
                    }
                };
            }
            match x2::runs_s8([IC, IH, IW, OC, K, S, D, P]) {
                2 => go!(2, 2),
                _ => go!(4, 1),
            }
            true
        }
        #[cfg(simd_x86)]
        Path::Avx2 | Path::Avx512 => {
            let Sink::Rows(out) = sink else {
                return Ok(false); // pooled: by rows
            };
            check_scratch(need, scratch.len())?;
            let g = &const { Geom::new([IC, IH, IW, OC, K, S, D, P]) };
            let s = &mut scratch[..need];
            // SAFETY: `active_s8` checked AVX2; lengths checked by the caller, the scratch
            // above.
            unsafe {
                x86::conv_s8::<K, S, D>(g, OC, input, zp, weights, bias, oy0, rows, s, q, out, pack)
            };
            true
        }
        #[cfg(simd_neon)]
        Path::Neon => {
            let Sink::Rows(out) = sink else {
                return Ok(false); // pooled: by rows
            };
            check_scratch(need, scratch.len())?;
            let g = &const { Geom::new([IC, IH, IW, OC, K, S, D, P]) };
            let widen = |v: i8| (i32::from(v) - zp) as i16;
            let (window, plane) = (g.window(), rows * g.ow);
            let lp = super::padded(window);
            g.blocks(input, oy0, rows, scratch, 0, widen, |cols, n, first| {
                let mut emit = |oc: usize, p: usize, sum: i32| {
                    out[oc * plane + first + p] = q.output(oc, bias[oc].wrapping_add(sum));
                };
                neon::gemm_s8(cols, lp, n, weights, window, &mut emit);
            });
            true
        }
        #[cfg(simd_dsp)]
        Path::Dsp => {
            let Sink::Rows(out) = sink else {
                return Ok(false); // pooled: by rows
            };
            check_scratch(need, scratch.len())?;
            // The SMLAD engine (its own column layout, see `dsp`). It declines only unusual
            // arguments (an input zero point outside int8, or a window too long for its
            // buffer with a scratch that is not 4-byte aligned): the reference's turn.
            dsp::Conv::<IC, IH, IW, OC, K, S, D, P>::run(
                input, weights, bias, q, oy0, rows, out, scratch,
            )
        }
        _ => false,
    };
    Ok(ran)
}

/// A dense layer's float outputs `out = act(bias + x W)` (`W` `[IN][OUT]`, `out.len()` =
/// `OUT`, lengths checked by the caller) on this call's engine; `false`: none takes it (below
/// 8 outputs the x86 engines leave it to the reference, which is faster there).
#[allow(unused_variables)]
pub(crate) fn dense_f32<W: FloatWeight>(
    input: &[f32],
    weights: &[W],
    bias: &[f32],
    slope: f32,
    out: &mut [f32],
) -> bool {
    #[cfg(any(simd_x86, simd_neon))]
    use crate::kernels::args::TypedWeights;
    let ran = match active() {
        #[cfg(simd_x86)]
        Path::Avx512 if out.len() >= 8 => {
            out.copy_from_slice(bias);
            // SAFETY: `active` checked the AVX-512 features; lengths checked by the caller.
            unsafe {
                match W::typed(weights) {
                    TypedWeights::F32(w) => super::x512_dense::dense_f32(input, w, out),
                    TypedWeights::F16(w) => super::x512_dense::dense_f32(input, w, out),
                }
            }
            true
        }
        #[cfg(simd_x86)]
        Path::Avx2 if out.len() >= 8 => {
            out.copy_from_slice(bias);
            // SAFETY: `active` checked AVX2/FMA/F16C; lengths checked by the caller.
            unsafe {
                match W::typed(weights) {
                    TypedWeights::F32(w) => x86::dense_f32(input, w, out),
                    TypedWeights::F16(w) => x86::dense_f32(input, w, out),
                }
            }
            true
        }
        #[cfg(simd_neon)]
        Path::Neon => {
            out.copy_from_slice(bias);
            match W::typed(weights) {
                TypedWeights::F32(w) => neon::dense_f32(input, w, out),
                TypedWeights::F16(w) => neon::dense_f32(input, w, out),
            }
            true
        }
        _ => false,
    };
    if ran {
        for y in out.iter_mut() {
            if *y < 0.0 {
                *y *= slope;
            }
        }
    }
    ran
}

/// Adds `sum_i w[i][o0 + k] (x[i] - zp)` to `acc[k]` (`w` `[IN][stride]`, `stride` the
/// layer's outputs, lengths checked by the caller) on this call's engine, bit-identical to
/// the reference; `false`: none takes it (below 8 outputs, as [`dense_f32`]).
#[allow(unused_variables)]
pub(crate) fn dense_acc_s8(
    input: &[i8],
    zp: i32,
    weights: &[i8],
    stride: usize,
    o0: usize,
    acc: &mut [i32],
) -> bool {
    match active_s8() {
        #[cfg(simd_x86)]
        Path::Avx512 if stride >= 8 => {
            // SAFETY: `active_s8` checked the AVX-512 features; outputs o0.. of the
            // [IN][OUT] weights (lengths checked by the caller).
            unsafe { super::x512_dense::dense_s8(input, zp, weights, stride, o0, acc) };
            true
        }
        #[cfg(simd_x86)]
        Path::Avx2 if stride >= 8 => {
            // SAFETY: `active_s8` checked AVX2; outputs o0.. of the [IN][OUT] weights.
            // The pairwise `vpmaddwd` kernel needs `x - zp` in i16 (any int8 zero point).
            unsafe {
                if (-128..=127).contains(&zp) {
                    super::x2_dense::dense_s8(input, zp, weights, stride, o0, acc)
                } else {
                    x86::dense_s8(input, zp, weights, stride, o0, acc)
                }
            };
            true
        }
        #[cfg(simd_neon)]
        Path::Neon => {
            neon::dense_s8(input, zp, weights, stride, o0, acc);
            true
        }
        _ => false,
    }
}

/// `out[k] = q.output(o0 + k, acc[k])` of a layer of `outs` outputs (`q` checked for them by
/// the caller, `o0 + acc.len() <= outs`, `out.len() == acc.len()`) on this call's engine,
/// bit for bit; `false`: none takes it (below 8 outputs, as [`dense_f32`]).
#[allow(unused_variables)]
pub(crate) fn requant_s8(
    q: &QuantArgs<'_>,
    outs: usize,
    o0: usize,
    acc: &[i32],
    out: &mut [i8],
) -> bool {
    match active_s8() {
        #[cfg(simd_x86)]
        Path::Avx512 if outs >= 8 => {
            let (pos, neg) = (&q.requant_pos[o0..], &q.requant_neg[o0..]);
            // SAFETY: `active_s8` checked the AVX-512 features; the checked tables cover
            // outputs o0..o0 + acc.len().
            unsafe { super::x512_dense::requant_s8(acc, pos, neg, q.output_zero_point, out) };
            true
        }
        #[cfg(simd_x86)]
        Path::Avx2 if outs >= 8 => {
            let (pos, neg) = (&q.requant_pos[o0..], &q.requant_neg[o0..]);
            // SAFETY: `active_s8` checked AVX2; the checked tables cover outputs
            // o0..o0 + acc.len().
            unsafe { super::x2_dense::requant_s8(acc, pos, neg, q.output_zero_point, out) };
            true
        }
        _ => false,
    }
}

/// The preprocessing kernels of one call's engine, chosen once per call by [`Prep::f32`] or
/// [`Prep::s8`] (`None`: the caller's reference). Only x86-64 has them; elsewhere the type has
/// no value. A value is the proof that the CPU has the engine's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prep {
    /// [`super::x2_prep`].
    #[cfg(simd_x86)]
    Avx2,
    /// [`super::x512_prep`].
    #[cfg(simd_x86)]
    Avx512,
}

impl Prep {
    /// For float preprocessing, on [`active`].
    #[inline]
    pub(crate) fn f32() -> Option<Prep> {
        Self::of(active())
    }

    /// For int8 preprocessing, on [`active_s8`].
    #[inline]
    pub(crate) fn s8() -> Option<Prep> {
        Self::of(active_s8())
    }

    #[inline]
    fn of(path: super::Path) -> Option<Prep> {
        match path {
            #[cfg(simd_x86)]
            Path::Avx2 => Some(Prep::Avx2),
            #[cfg(simd_x86)]
            Path::Avx512 => Some(Prep::Avx512),
            _ => None,
        }
    }

    /// Quantised inputs of one band's counts (`counts.len() == out.len()`), `slow` for those
    /// above the kernel's table.
    #[allow(unused_variables)]
    #[inline]
    pub(crate) fn quantize_s8<N: Lanes>(
        self,
        counts: &[N],
        scale: f32,
        q: QParams,
        out: &mut [i8],
        slow: impl Fn(u16) -> i8,
    ) {
        match self {
            #[cfg(simd_x86)]
            Prep::Avx512 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // kernel keeps to the slices' lengths.
                unsafe { super::x512_prep::quantize_s8(counts, scale, q, out, slow) }
            }
            #[cfg(simd_x86)]
            Prep::Avx2 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // kernel keeps to the slices' lengths.
                unsafe { super::x2_prep::quantize_s8(counts, scale, q, out, slow) }
            }
        }
    }

    /// The float inputs of counts 0..256 (NaN as -inf for max pooling).
    #[allow(unused_variables)]
    #[inline]
    pub(crate) fn f32_table(self, scale: f32, max: bool, table: &mut [f32; 256]) {
        match self {
            #[cfg(simd_x86)]
            Prep::Avx512 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // kernel keeps to the slices' lengths.
                unsafe { super::x512_prep::f32_table(scale, max, table) }
            }
            #[cfg(simd_x86)]
            Prep::Avx2 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // kernel keeps to the slices' lengths.
                unsafe { super::x2_prep::f32_table(scale, max, table) }
            }
        }
    }

    /// The quantised inputs of counts 0..256.
    #[allow(unused_variables)]
    #[inline]
    pub(crate) fn quant_table(self, scale: f32, q: QParams, table: &mut [i8; 256]) {
        match self {
            #[cfg(simd_x86)]
            Prep::Avx512 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // kernel keeps to the slices' lengths.
                unsafe { super::x512_prep::quant_table(scale, q, table) }
            }
            #[cfg(simd_x86)]
            Prep::Avx2 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // kernel keeps to the slices' lengths.
                unsafe { super::x2_prep::quant_table(scale, q, table) }
            }
        }
    }

    /// 2x2 pooling of one band's float inputs through `table` ([`Prep::f32_table`]); `redo`
    /// recomputes the output rows holding a count of 256 or more.
    ///
    /// # Safety
    /// `ow >= 1`, `2 ow <= w`, and `plane` holds every row pair of `out`'s `out.len() / ow`
    /// rows of `ow` outputs (the kernels' preconditions).
    #[allow(unused_variables, clippy::too_many_arguments)]
    #[inline]
    pub(crate) unsafe fn pool2_f32<N: Lanes>(
        self,
        plane: &[N],
        w: usize,
        ow: usize,
        table: &[f32; 256],
        max: bool,
        out: &mut [f32],
        redo: impl FnMut(usize, &mut [f32]),
    ) {
        match self {
            #[cfg(simd_x86)]
            Prep::Avx512 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // lengths as the caller promises.
                unsafe { super::x512_prep::pool2_f32(plane, w, ow, table, max, out, redo) }
            }
            #[cfg(simd_x86)]
            Prep::Avx2 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // lengths as the caller promises.
                unsafe { super::x2_prep::pool2_f32(plane, w, ow, table, max, out, redo) }
            }
        }
    }

    /// 2x2 pooling of one band's quantised inputs; `redo(row, out row, table)` recomputes the
    /// output rows holding a count of 256 or more.
    ///
    /// # Safety
    /// As [`Prep::pool2_f32`].
    #[allow(unused_variables, clippy::too_many_arguments)]
    #[inline]
    pub(crate) unsafe fn pool2_s8<N: Lanes>(
        self,
        plane: &[N],
        w: usize,
        ow: usize,
        scale: f32,
        q: QParams,
        max: bool,
        out: &mut [i8],
        redo: impl FnMut(usize, &mut [i8], &[i8; 256]),
    ) {
        match self {
            #[cfg(simd_x86)]
            Prep::Avx512 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // lengths as the caller promises.
                unsafe { super::x512_prep::pool2_s8(plane, w, ow, scale, q, max, out, redo) }
            }
            #[cfg(simd_x86)]
            Prep::Avx2 => {
                // SAFETY: a `Prep` is made only on a path whose features `active` checked; the
                // lengths as the caller promises.
                unsafe { super::x2_prep::pool2_s8(plane, w, ow, scale, q, max, out, redo) }
            }
        }
    }
}

/// The largest of `counts` (`T::default()`, zero, for none): a max reduction the compiler
/// vectorises, compiled for AVX2 on the x86 paths.
pub(crate) fn largest<T: Copy + Ord + Default>(counts: &[T]) -> T {
    #[inline(always)]
    fn fold<T: Copy + Ord + Default>(counts: &[T]) -> T {
        counts.iter().copied().fold(T::default(), Ord::max)
    }
    #[cfg(simd_x86)]
    #[target_feature(enable = "avx2")]
    fn fold_avx2<T: Copy + Ord + Default>(counts: &[T]) -> T {
        fold(counts)
    }
    match active() {
        #[cfg(simd_x86)]
        // SAFETY: both x86 paths need AVX2, which `active` checked.
        Path::Avx2 | Path::Avx512 => unsafe { fold_avx2(counts) },
        _ => fold(counts),
    }
}
