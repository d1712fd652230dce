//! SIMD twins of the scalar reference kernels, chosen at compile time (and on x86-64 with the
//! `std` feature, at run time by CPU feature detection). The `force-reference` feature turns
//! every one of them off.
//!
//! | target | path | f32 / f16 | int8 |
//! |---|---|---|---|
//! | x86-64 with AVX-512 F, BW, VL, VNNI, VBMI | [`Path::Avx512`] | 16-lane FMA over flat padded rows (`x512.rs`), 8-lane FMA im2col where it declines | `vpdpbusd` (VNNI) on flat padded int8 rows |
//! | x86-64 with AVX2 + FMA + F16C | [`Path::Avx2`] | 8-lane FMA over flat padded rows (`x2.rs`), im2col where it declines (F16C widens f16 weights) | `vpmaddwd` on 16-bit operands over flat padded rows |
//! | aarch64 | [`Path::Neon`] | 4-lane FMA | `smlal` on 16-bit operands |
//! | Cortex-M4/M7 (thumbv7em) | [`Path::Dsp`] | reference | `SXTB16` + `SMLAD` (`dsp.rs`; every buffer in the caller's scratch) |
//! | anything else | [`Path::Reference`] | reference | reference |
//!
//! The portable engine runs convolutions as im2col plus small matrix products, as CMSIS-NN does: the input windows
//! of [`PIX`] consecutive output pixels are gathered into columns (`[PIX][lp]`, `lp` the window
//! length rounded up to [`LANES`] and zero-filled; int8 columns hold `x - zero_point` widened to
//! 16 bits, padding taps 0), then a platform microkernel dots every output channel's weight row,
//! which is contiguous in the `[OC][IC][K][K]` layout, with them. The caller provides the column
//! scratch ([`scratch_f32`] / [`scratch_s8`] elements; 0 when the build has no SIMD path).
//!
//! `engine.rs` is the dispatch table: one function per kernel, each one `match` on the path of
//! the call ([`active`], [`active_s8`], which hold the crate's one CPU detection), an arm per
//! engine and the scalar reference of the caller as the fallback. Only this module and the
//! engines carry the `simd_*` cfgs (`runtime/build.rs`); the kernel front-ends carry none.
//!
//! int8 results are bit-identical to the reference on every path: the sums are exact in 32-bit
//! integers, whatever their order. f32 and f16 results differ from the reference only by
//! summation order and fused multiply-add rounding (a few ulp of the accumulator).

#[cfg(simd_x86)]
pub(crate) mod x86;

#[cfg(simd_x86)]
pub(crate) mod x2;

#[cfg(simd_x86)]
pub(crate) mod x2_dense;

#[cfg(simd_x86)]
pub(crate) mod x2_prep;

#[cfg(simd_x86)]
pub(crate) mod x2_util;

#[cfg(simd_x86)]
pub(crate) mod x512;

#[cfg(simd_x86)]
pub(crate) mod x512_dense;

#[cfg(simd_x86)]
pub(crate) mod x512_prep;

#[cfg(simd_x86)]
pub(crate) mod x512_util;

#[cfg(simd_neon)]
pub(crate) mod neon;

#[cfg(simd_dsp)]
pub(crate) mod dsp;

/// The DSP kernels' requantisation, also built for the host's tests.
#[cfg(any(test, simd_dsp))]
pub(crate) mod dsp_requant;

use super::pool::PoolKind;

mod cpu;
mod engine;
pub use cpu::{active, active_s8};
#[cfg(any(feature = "std", test))]
pub use cpu::{engines, with_path};
pub(crate) use engine::{
    ConvF32, ConvS8, Prep, conv_f32, conv_s8, conv_scratch_s8, dense_acc_s8, dense_f32, largest,
    requant_s8,
};

/// True when this build's convolution engines run a whole layer per call (the flat x86-64
/// ones, pooling fused), false where they run a line buffer of rows a call (NEON, the
/// Cortex-M DSP engine, the reference).
pub(crate) const WHOLE_LAYER: bool = cfg!(simd_x86);

/// Output pixels gathered per im2col block.
pub const PIX: usize = 4;
/// im2col columns are padded to a multiple of this many elements.
pub const LANES: usize = 16;

/// Which implementation the kernels use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The safe scalar reference.
    Reference,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 (F, BW, VL, VNNI, VBMI) on top of [`Path::Avx2`]: Zen 4, Ice Lake and later.
    Avx512,
    /// aarch64 Advanced SIMD.
    Neon,
    /// Arm Cortex-M DSP extension (int8 only; float stays on the reference).
    Dsp,
}

impl Path {
    /// Short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Path::Reference => "reference",
            Path::Avx2 => "avx2+fma",
            Path::Avx512 => "avx512+vnni",
            Path::Neon => "neon",
            Path::Dsp => "dsp (smlad)",
        }
    }
}

/// True when this build contains a SIMD path for float convolutions (x86-64 or aarch64),
/// i.e. when they need im2col scratch.
pub const COMPILED_F32: bool = cfg!(any(
    all(
        simd_x86,
        any(
            feature = "std",
            test,
            all(
                target_feature = "avx2",
                target_feature = "fma",
                target_feature = "f16c"
            )
        )
    ),
    simd_neon
));

/// True when this build contains a SIMD path for int8 convolutions (the float targets plus
/// the Cortex-M DSP extension).
pub const COMPILED_S8: bool = COMPILED_F32 || cfg!(simd_dsp);

/// Output rows the x86 direct engine processes per input band.
pub const BAND_ROWS: usize = 8;

/// Convolution shape, for sizing scratch (`[IC, IH, IW, OC, K, S, D, P]`).
pub type Shape = [usize; 8];

/// The x86 engine's scratch: packed weights `[taps][channels][OC rounded to 8]` plus a
/// zero-padded input band of up to [`BAND_ROWS`] output rows, `channels` the input channels
/// (rounded to pairs for int8).
const fn direct_len(sh: Shape, pairs: bool) -> usize {
    let [ic, ih, iw, oc, k, s, d, p] = sh;
    let ic = if pairs { ic.div_ceil(2) * 2 } else { ic };
    let ext = d * (k - 1) + 1;
    let oh = (ih + 2 * p - ext) / s + 1;
    let rb = if oh < BAND_ROWS { oh } else { BAND_ROWS };
    k * k * ic * oc.div_ceil(8) * 8 + ic * ((rb - 1) * s + ext) * (iw + 2 * p)
}

/// Scratch f32 values a float convolution of shape `sh` needs on this build's SIMD path,
/// 0 without one.
pub const fn scratch_f32(sh: Shape) -> usize {
    if !COMPILED_F32 {
        0
    } else if cfg!(simd_x86) {
        max_len([
            direct_len(sh, false),
            x512_len(sh, false),
            x2_len(sh, false),
        ])
    } else {
        PIX * padded(sh[0] * sh[4] * sh[4])
    }
}

/// Scratch i16 values an int8 convolution of shape `sh` needs (see [`scratch_f32`]).
pub const fn scratch_s8(sh: Shape) -> usize {
    if !COMPILED_S8 {
        0
    } else if cfg!(simd_x86) {
        max_len([direct_len(sh, true), x512_len(sh, true), x2_len(sh, true)])
    } else {
        PIX * padded(sh[0] * sh[4] * sh[4])
    }
}

/// Scratch of the AVX-512 engine (stride-1 convolutions only): f32 values, or i16 values
/// holding its bytes for int8.
#[allow(unused_variables)]
const fn x512_len(sh: Shape, int8: bool) -> usize {
    #[cfg(simd_x86)]
    if sh[5] == 1 {
        let d = x512::Dims::new(sh);
        return if int8 {
            d.bytes_s8().div_ceil(2)
        } else {
            d.len_f32()
        };
    }
    0
}

/// Scratch of the AVX2 flat engine (stride-1 convolutions only): f32 values, or i16 values
/// holding its bytes for int8.
#[allow(unused_variables)]
const fn x2_len(sh: Shape, int8: bool) -> usize {
    #[cfg(simd_x86)]
    if sh[5] == 1 {
        let d = x2::Dims::new(sh);
        return if int8 {
            d.bytes_s8().div_ceil(2)
        } else {
            d.len_f32()
        };
    }
    0
}

/// `n` rounded up to a multiple of [`LANES`].
pub const fn padded(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// The largest of `lens` (for sizing one scratch buffer shared by several layers).
pub const fn max_len<const N: usize>(lens: [usize; N]) -> usize {
    let mut m = 0;
    let mut i = 0;
    while i < N {
        if lens[i] > m {
            m = lens[i];
        }
        i += 1;
    }
    m
}

/// Where a convolution engine puts its outputs: whole rows (`[OC][rows][OW]`), or pooled with a
/// `pk x pk` window (`[OC][rows / pk][OW / pk]`, trailing rows/columns dropped).
#[cfg_attr(not(simd_x86), allow(dead_code))] // only the flat x86 engines pool
pub(crate) enum Sink<'a, T> {
    /// Output rows as computed.
    Rows(&'a mut [T]),
    /// Pooled output.
    Pool {
        /// Max or average.
        kind: PoolKind,
        /// Window and stride.
        pk: usize,
        /// `[OC][rows / pk][OW / pk]`.
        out: &'a mut [T],
    },
}

#[cfg_attr(not(simd_x86), allow(dead_code))]
impl<T> Sink<'_, T> {
    /// The pooling window (1: rows).
    #[inline]
    pub(crate) fn pk(&self) -> usize {
        match self {
            Sink::Rows(_) => 1,
            Sink::Pool { pk, .. } => *pk,
        }
    }
}

/// A count type the x86-64 preprocessing kernels read in place (`x2_prep.rs`,
/// `x512_prep.rs`): u16 loaded as 16-bit lanes, u8 zero-extended to them on load, so a
/// u8 cube needs no widening buffer.
#[cfg_attr(not(simd_x86), allow(dead_code))] // only the x86 kernels read `WIDE`
pub(crate) trait Lanes: Copy + Default + Into<u16> {
    /// True for u16 (16-bit in memory), false for u8.
    const WIDE: bool;
}

impl Lanes for u8 {
    const WIDE: bool = false;
}

impl Lanes for u16 {
    const WIDE: bool = true;
}

/// Geometry of a convolution, for the im2col engine.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub(crate) struct Geom {
    pub ic: usize,
    pub ih: usize,
    pub iw: usize,
    pub k: usize,
    pub s: usize,
    pub d: usize,
    pub p: usize,
    pub ow: usize,
}

// The im2col engine serves the NEON and DSP paths; x86 has its own direct engine, and the
// reference-only targets need neither.
#[allow(dead_code)]
impl Geom {
    /// The geometry of shape `[IC, IH, IW, OC, K, S, D, P]`.
    pub const fn new(sh: Shape) -> Self {
        let [ic, ih, iw, _, k, s, d, p] = sh;
        let ow = (iw + 2 * p - (d * (k - 1) + 1)) / s + 1;
        Geom {
            ic,
            ih,
            iw,
            k,
            s,
            d,
            p,
            ow,
        }
    }

    /// Window length `IC K K`.
    pub fn window(&self) -> usize {
        self.ic * self.k * self.k
    }

    /// Gather the window of output pixel (`oy`, `ox`) into `col` (`window()` values in
    /// (ic, ky, kx) order, `zero` for padding taps).
    #[inline(always)]
    pub fn im2col<I: Copy, C: Copy>(
        &self,
        input: &[I],
        oy: usize,
        ox: usize,
        col: &mut [C],
        zero: C,
        conv: impl Fn(I) -> C,
    ) {
        let Geom {
            ic,
            ih,
            iw,
            k,
            s,
            d,
            p,
            ..
        } = *self;
        let x0 = (ox * s) as isize - p as isize;
        let inside_x = x0 >= 0 && x0 as usize + d * (k - 1) < iw;
        let mut j = 0;
        for c in 0..ic {
            for ky in 0..k {
                let iy = (oy * s + ky * d) as isize - p as isize;
                let dst = &mut col[j..j + k];
                j += k;
                if iy < 0 || iy as usize >= ih {
                    dst.fill(zero);
                    continue;
                }
                let row = &input[(c * ih + iy as usize) * iw..][..iw];
                if inside_x {
                    let x0 = x0 as usize;
                    for (kx, v) in dst.iter_mut().enumerate() {
                        *v = conv(row[x0 + kx * d]);
                    }
                } else {
                    for (kx, v) in dst.iter_mut().enumerate() {
                        let ix = x0 + (kx * d) as isize;
                        *v = if ix < 0 || ix as usize >= iw {
                            zero
                        } else {
                            conv(row[ix as usize])
                        };
                    }
                }
            }
        }
    }

    /// Walk output rows `oy0..oy0 + rows` in blocks of up to [`PIX`] pixels: fill their
    /// columns in `cols` (`[PIX][padded(window)]`, tails zeroed) and call
    /// `block(cols, pixels in block, index of the block's first pixel within the rows)`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn blocks<I: Copy, C: Copy>(
        &self,
        input: &[I],
        oy0: usize,
        rows: usize,
        cols: &mut [C],
        zero: C,
        conv: impl Fn(I) -> C,
        mut block: impl FnMut(&[C], usize, usize),
    ) {
        let (l, lp) = (self.window(), padded(self.window()));
        for col in cols.chunks_exact_mut(lp).take(PIX) {
            col[l..].fill(zero);
        }
        let total = rows * self.ow;
        let mut first = 0;
        while first < total {
            let n = PIX.min(total - first);
            for q in 0..n {
                let flat = first + q;
                let (oy, ox) = (oy0 + flat / self.ow, flat % self.ow);
                self.im2col(input, oy, ox, &mut cols[q * lp..q * lp + l], zero, &conv);
            }
            block(cols, n, first);
            first += n;
        }
    }
}

#[cfg(test)]
mod tests;
