//! x86-64 AVX2 + FMA (+ F16C): the flat padded-row convolution engine of CPUs without
//! AVX-512 (Zen 2/3, Haswell to Alder Lake), on the ideas of [`super::x512`].
//!
//! Stride-1 convolutions run as one flat run over the zero-padded input width `PW`: output
//! (y, x) sits at flat position `y PW + x`, and tap (ic, ky, kx) reads padded plane `ic` at
//! that position plus `D (ky PW + kx)`. So 8 consecutive outputs read 8 consecutive inputs
//! for every tap (no im2col, no gathers); the `PW - OW` columns past each row's end are
//! computed and dropped. Rows share their padding: `PW = IW + P` (the `P` zeros that start
//! a row are the right padding of the row before), so a "same" convolution computes `P`
//! junk columns per row, not `2 P`. Every function is monomorphised on the layer's shape (the const
//! generics the dispatch ([`super::engine`]) passes on), so the tap offsets and weight
//! strides are immediates.
//!
//! * f32 / f16: a register tile of `V` vectors of 8 consecutive pixels x `N` output channels
//!   (3 x 4 = 12 accumulators, 3 input vectors and a broadcast: the 16 ymm registers, no
//!   spills). Each tap is `V` loads of the padded plane and `N` weights broadcast straight
//!   from the `[OC][IC][K][K]` weights (`vbroadcastss`); each accumulator starts from the bias
//!   and adds the taps in the reference's (ic, ky, kx) order, so outputs differ from the
//!   reference only by fused multiply-add rounding (and equal the AVX-512 engine's). f16
//!   weights are widened once per call (`vcvtph2ps`).
//! * int8: `vpmaddwd` multiplies pairs of consecutive (ic, ky, kx) taps of 8 pixels by the
//!   pair of weights of one output channel, broadcast as one 32-bit word. The padded planes
//!   hold `x - zp` as i16 (padding 0, a real zero); the activation pairs of a block of 16
//!   pixels are interleaved once (`vpunpck{l,h}wd` of the two taps' rows, shared by every
//!   output channel), the weights widened once per call to i16 rows, whose 32-bit words are
//!   the pairs. Products fit in i32 (|x - zp| <= 255, |w| <= 128) and the i32 sums wrap
//!   exactly as the reference's, so they are equal to them; TFLite's requantisation runs 8
//!   lanes at a time, bit-identical, and `vpackssdw` / `vpacksswb` saturate to int8 (the
//!   clamp) while undoing the interleave's pixel order.
//!
//! Outputs go to a chunk buffer of a few output rows (about [`CHUNK`] positions) and from
//! there, rows compacted or pooled (2 x 2 in vector code, other windows up to
//! [`MAX_POOL`] in scalar code), into the caller's channel-first map.
//!
//! Every function here needs AVX2, FMA and F16C (level 1 of [`super::cpu::x86_level`]); the kernels call
//! them only on [`super::Path::Avx2`].

// Register tiles are indexed by lane and channel together.
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use super::super::args::{FloatWeight, QuantArgs, TypedWeights};
use super::super::pool::{PoolKind, avg_round};
pub(crate) use super::Sink;
use super::x2_util::starts;
pub(crate) use super::x512::MAX_POOL;
use crate::quant::MAX_PRODUCT;

/// Output positions (flat) per chunk, about: sets the rows per chunk.
const CHUNK: usize = 256;
/// Float tiles: at most this many output channels per block (`Dims::ocp` covers any
/// rounding up to them) and pixels per block.
const NF_MAX: usize = 8;
const GF: usize = 24;
/// int8 tiles: at most this many output channels per block (`Dims::ocp8` rounds to it).
const NS_MAX: usize = 4;
/// Slack (elements) past the planes and the chunk buffer, for the last block's reads.
const SLACK: usize = 64;

/// Shape-derived sizes of the engine for `[IC, IH, IW, OC, K, S, D, P]` (stride 1).
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    ic: usize,
    ih: usize,
    iw: usize,
    oc: usize,
    k: usize,
    d: usize,
    p: usize,
    /// Padded input width.
    pw: usize,
    /// Kernel extent.
    ext: usize,
    /// Output width.
    ow: usize,
    /// Window length `IC K K`.
    l: usize,
    /// Pairs of taps (int8): `l` rounded up to even, halved.
    groups: usize,
    /// Output channels rounded up to whole float / int8 blocks.
    ocp: usize,
    ocp8: usize,
    /// Chunk buffer stride per channel.
    ostr: usize,
}

impl Dims {
    #[inline(always)]
    pub(crate) const fn new(sh: super::Shape) -> Self {
        let [ic, ih, iw, oc, k, _s, d, p] = sh;
        let ext = d * (k - 1) + 1;
        let ow = (iw + 2 * p + 1).saturating_sub(ext);
        // One run of `p` zeros between rows serves as the right padding of a row and the
        // left padding of the next (a read past the row's end wraps into them), so a row
        // is `iw + p` wide, not `iw + 2 p`: half the junk columns of a `2 p` pad. At least
        // `ow`, so that no output position lands in the next row.
        let pw = if iw + p > ow { iw + p } else { ow };
        let most = if CHUNK > MAX_POOL * pw {
            CHUNK
        } else {
            MAX_POOL * pw
        };
        let map = (ih + 2 * p + 1).saturating_sub(ext) * pw;
        let most = if map < most { map } else { most };
        let l = ic * k * k;
        Self {
            ic,
            ih,
            iw,
            oc,
            k,
            d,
            p,
            pw,
            ext,
            ow,
            l,
            groups: l.div_ceil(2),
            ocp: oc.div_ceil(NF_MAX) * NF_MAX + NF_MAX,
            ocp8: oc.div_ceil(NS_MAX) * NS_MAX,
            ostr: most.div_ceil(GF) * GF + 2 * GF,
        }
    }
    /// Output rows per chunk when pooling `pk x pk` (1: no pooling; at most [`MAX_POOL`]).
    #[inline(always)]
    const fn chunk_rows(&self, pk: usize) -> usize {
        let r = CHUNK / self.pw / pk * pk;
        if r < pk { pk } else { r }
    }
    /// Padded plane of `rows` output rows, and all planes with read slack.
    #[inline(always)]
    const fn plane(&self, rows: usize) -> usize {
        (rows + self.ext - 1) * self.pw
    }
    #[inline(always)]
    const fn planes(&self, rows: usize) -> usize {
        self.ic * self.plane(rows) + SLACK + self.ext
    }
    const fn max_rows(&self) -> usize {
        (self.ih + 2 * self.p + 1).saturating_sub(self.ext)
    }
    /// Bytes of int8 scratch: i16 planes, i16 weights, per-channel constants, tap offsets,
    /// the activation band and the chunk buffer (each 32-byte aligned, plus 32 for the
    /// first alignment).
    pub(crate) const fn bytes_s8(&self) -> usize {
        32 + align(2 * self.planes(self.max_rows()))
            + align(2 * self.ocp8 * 2 * self.groups)
            + align(4 * CONSTS * self.ocp8)
            + align(4 * 2 * self.groups)
            + align(128 * self.groups)
            + align(self.ocp8 * self.ostr)
    }
    /// f32 values of float scratch: planes, weight copy, chunk buffer.
    pub(crate) const fn len_f32(&self) -> usize {
        8 + align(self.planes(self.max_rows()))
            + align(self.ocp * self.l)
            + align(self.ocp * self.ostr)
    }
}

const fn align(n: usize) -> usize {
    n.div_ceil(32) * 32
}

/// Carve `n` values of `T`, 32-byte aligned, off the front of `buf` (fewer if it is short;
/// the callers size it by [`Dims`]).
#[inline(always)]
fn take<'a, T>(buf: &mut &'a mut [T], n: usize) -> &'a mut [T] {
    let b = core::mem::take(buf);
    let skip = b.as_ptr().align_offset(32).min(b.len());
    let (_, b) = b.split_at_mut(skip);
    let (head, tail) = b.split_at_mut(n.min(b.len()));
    *buf = tail;
    head
}

/// Carve `n` values of a plain integer type `T` (no invalid bit patterns, alignment at most
/// 4) out of a byte buffer, 32-byte aligned.
#[inline(always)]
fn take_as<'a, T: Copy>(buf: &mut &'a mut [u8], n: usize) -> &'a mut [T] {
    let bytes = take(buf, n * core::mem::size_of::<T>());
    let n = bytes.len() / core::mem::size_of::<T>();
    // SAFETY: `take` aligned the bytes to 32 (>= align_of T); the callers use only i8, i16
    // and i32, for which every bit pattern is valid; `n` values fit in the bytes.
    unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast(), n) }
}

// ---------------------------------------------------------------------------------------
// Padded planes.

/// Runs of 16 pixels per int8 block for shape `sh`: 2 (blocks of 32 pixels x 2 channels:
/// fewer loads and broadcasts per `vpmaddwd`) when a chunk's positions round up to whole
/// blocks of 32 as tightly as to blocks of 16, else 1 (16 pixels x 4 channels).
pub(crate) const fn runs_s8(sh: super::Shape) -> usize {
    let dm = Dims::new(sh);
    let rows = dm.chunk_rows(1);
    let rows = if rows < dm.max_rows() {
        rows
    } else {
        dm.max_rows()
    };
    let pos = rows * dm.pw;
    if pos.div_ceil(32) * 32 <= pos.div_ceil(16) * 16 {
        2
    } else {
        1
    }
}

/// Fill padded f32 planes `[ic][rows + ext - 1][pw]` for output rows `oy0..oy0 + rows`
/// from the `[IC][IH][IW]` input, zero outside it and in the slack.
#[inline(always)]
fn fill_planes_f32(dm: &Dims, input: &[f32], oy0: usize, rows: usize, planes: &mut [f32]) {
    let nr = rows + dm.ext - 1;
    let (pw, p, iw, ih) = (dm.pw, dm.p, dm.iw, dm.ih);
    let (body, slack) = planes.split_at_mut((dm.ic * nr * pw).min(planes.len()));
    slack.fill(0.0);
    for (c, plane) in body.chunks_exact_mut(nr * pw).enumerate() {
        for (r, row) in plane.chunks_exact_mut(pw).enumerate() {
            let y = oy0 + r;
            if y < p || y >= p + ih {
                row.fill(0.0);
                continue;
            }
            let src = &input[(c * ih + y - p) * iw..][..iw];
            row[..p].fill(0.0);
            row[p + iw..].fill(0.0);
            let dst = &mut row[p..p + iw];
            let mut i = 0;
            while i + 8 <= iw {
                // SAFETY: AVX (engine); 8 values at i of both `src` and `dst` (i + 8 <= iw).
                unsafe {
                    _mm256_storeu_ps(
                        dst.as_mut_ptr().add(i),
                        _mm256_loadu_ps(src.as_ptr().add(i)),
                    )
                };
                i += 8;
            }
            dst[i..].copy_from_slice(&src[i..]);
        }
    }
}

/// Fill padded i16 planes (see [`fill_planes_f32`]) with `x - zp`, 0 outside the input.
#[inline(always)]
fn fill_planes_s16(dm: &Dims, input: &[i8], zp: i32, oy0: usize, rows: usize, planes: &mut [i16]) {
    let nr = rows + dm.ext - 1;
    let (pw, p, iw, ih) = (dm.pw, dm.p, dm.iw, dm.ih);
    let (body, slack) = planes.split_at_mut((dm.ic * nr * pw).min(planes.len()));
    slack.fill(0);
    // SAFETY: AVX2 (engine).
    let zpv = unsafe { _mm256_set1_epi16(zp as i16) };
    for (c, plane) in body.chunks_exact_mut(nr * pw).enumerate() {
        for (r, row) in plane.chunks_exact_mut(pw).enumerate() {
            let y = oy0 + r;
            if y < p || y >= p + ih {
                row.fill(0);
                continue;
            }
            let src = &input[(c * ih + y - p) * iw..][..iw];
            row[..p].fill(0);
            row[p + iw..].fill(0);
            let dst = &mut row[p..p + iw];
            let mut i = 0;
            while i + 16 <= iw {
                // SAFETY: AVX2 (engine); 16 values at i of both `src` and `dst`.
                unsafe {
                    let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(src.as_ptr().add(i).cast()));
                    _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), _mm256_sub_epi16(v, zpv));
                }
                i += 16;
            }
            for (d, s) in dst[i..].iter_mut().zip(&src[i..]) {
                // |x - zp| <= 255 for zp in -128..=127 (checked by the caller).
                *d = (i32::from(*s) - zp) as i16;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Draining the chunk buffer.

/// Write chunk rows `r0..r0 + nr` (of `rows` computed from the first) from the chunk
/// buffer `o` (`[ocp][ostr]`, row `r` of the chunk at `r pw`) to the sink.
#[inline(always)]
fn drain<T: Copy + Pool2>(
    dm: &Dims,
    o: &[T],
    r0: usize,
    nr: usize,
    rows: usize,
    sink: &mut Sink<'_, T>,
) {
    let (pw, ow) = (dm.pw, dm.ow);
    match sink {
        Sink::Rows(out) => {
            for oc in 0..dm.oc {
                for r in 0..nr {
                    let src = &o[oc * dm.ostr + r * pw..][..ow];
                    out[(oc * rows + r0 + r) * ow..][..ow].copy_from_slice(src);
                }
            }
        }
        Sink::Pool { kind, pk, out } => {
            let (pk, kind) = (*pk, *kind);
            let (ph, pwo) = (rows / pk, ow / pk);
            for oc in 0..dm.oc {
                for pr in 0..nr / pk {
                    let base = oc * dm.ostr + pr * pk * pw;
                    let dst = &mut out[(oc * ph + r0 / pk + pr) * pwo..][..pwo];
                    if pk == 2 {
                        // At least 16 columns of the second row (past `ow`: junk columns and
                        // the next rows, inside the channel's stride), for the short rows'
                        // vector path.
                        let end = (base + pw + ow.max(16)).min(o.len());
                        T::pool2(&o[base..end], pw, kind, dst);
                    } else {
                        T::pool_any(&o[base..], pw, pk, kind, dst);
                    }
                }
            }
        }
    }
}

/// Pooling of chunk rows, as [`Pool2d`](super::super::pool::Pool2d) folds each window.
trait Pool2: Sized {
    /// 2 x 2 pooling of rows `src[..]` and `src[pw..]` into `dst` (`dst.len()` outputs).
    fn pool2(src: &[Self], pw: usize, kind: PoolKind, dst: &mut [Self]);
    /// `pk x pk` pooling of rows `src[ky pw..]` into `dst`, scalar.
    fn pool_any(src: &[Self], pw: usize, pk: usize, kind: PoolKind, dst: &mut [Self]);
}

impl Pool2 for f32 {
    #[inline(always)]
    fn pool2(src: &[f32], pw: usize, kind: PoolKind, dst: &mut [f32]) {
        let n = dst.len();
        if n < 8 {
            return Self::pool_any(src, pw, 2, kind, dst);
        }
        for x in starts(n, 8) {
            // SAFETY: AVX (engine); 16 values of each row from 2x: 2x + 16 <= 2n <= ow, and
            // `src` holds pw + ow values.
            unsafe {
                let ld = |p: *const f32| {
                    let (a, b) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)));
                    // Even and odd columns, in order.
                    let ev = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
                    let od = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
                    (
                        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
                            ev,
                        ))),
                        _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(
                            od,
                        ))),
                    )
                };
                let (a, b) = ld(src.as_ptr().add(2 * x));
                let (c, d) = ld(src.as_ptr().add(pw + 2 * x));
                let r = match kind {
                    PoolKind::Max => {
                        // f32::max(acc, v) keeps acc when v is NaN: maxps returns its second
                        // operand then.
                        let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
                        for v in [a, b, c, d] {
                            acc = _mm256_max_ps(v, acc);
                        }
                        acc
                    }
                    PoolKind::Avg => {
                        let mut acc = _mm256_setzero_ps();
                        for v in [a, b, c, d] {
                            acc = _mm256_add_ps(acc, v);
                        }
                        _mm256_mul_ps(acc, _mm256_set1_ps(0.25))
                    }
                };
                _mm256_storeu_ps(dst.as_mut_ptr().add(x), r);
            }
        }
    }
    #[inline(always)]
    fn pool_any(src: &[f32], pw: usize, pk: usize, kind: PoolKind, dst: &mut [f32]) {
        if kind == PoolKind::Max && pk > 2 {
            // Maxima of the window's columns (vectorised), then of those: the maximum of the
            // window's non-NaN values, as `f32::max` folds them (in another order, which
            // only a tie of +0 and -0 could tell).
            return pool_columns(src, pw, pk, dst, f32::NEG_INFINITY, f32::max, |v| {
                v.iter().fold(f32::NEG_INFINITY, |a, b| a.max(*b))
            });
        }
        let inv = 1.0 / (pk * pk) as f32;
        for (px, y) in dst.iter_mut().enumerate() {
            let at = |ky: usize, kx: usize| src[ky * pw + px * pk + kx];
            let mut a = match kind {
                PoolKind::Max => f32::NEG_INFINITY,
                PoolKind::Avg => 0.0,
            };
            for ky in 0..pk {
                for kx in 0..pk {
                    a = match kind {
                        PoolKind::Max => a.max(at(ky, kx)),
                        PoolKind::Avg => a + at(ky, kx),
                    };
                }
            }
            *y = match kind {
                PoolKind::Max => a,
                PoolKind::Avg => a * inv,
            };
        }
    }
}

impl Pool2 for i8 {
    #[inline(always)]
    fn pool2(src: &[i8], pw: usize, kind: PoolKind, dst: &mut [i8]) {
        let n = dst.len();
        if n < 16 {
            if n < 8 && src.len() < pw + 16 {
                return Self::pool_any(src, pw, 2, kind, dst);
            }
            // Short rows (n < 8: `edge`'s conv3 and conv5) pool 8 windows, of which the
            // first n are kept.
            let mut short = [0i8; 8];
            let (out, xs): (&mut [i8], _) = if n < 8 {
                (&mut short, starts(8, 8))
            } else {
                (&mut *dst, starts(n, 8))
            };
            for x in xs {
                // SAFETY: SSE4.1 / SSSE3 (engine); 16 bytes of each row from 2x: for n >= 8,
                // 2x + 16 <= 2n <= ow and `src` holds pw + ow bytes; for n < 8, x = 0 and
                // `src` holds at least pw + 16 (checked above).
                unsafe {
                    let a = _mm_loadu_si128(src.as_ptr().add(2 * x).cast());
                    let b = _mm_loadu_si128(src.as_ptr().add(pw + 2 * x).cast());
                    let lo = |v: __m128i| _mm_srai_epi16::<8>(_mm_slli_epi16::<8>(v));
                    let hi = |v: __m128i| _mm_srai_epi16::<8>(v);
                    let r = match kind {
                        PoolKind::Max => {
                            let v = _mm_max_epi8(a, b);
                            _mm_max_epi16(lo(v), hi(v))
                        }
                        PoolKind::Avg => {
                            let s = _mm_add_epi16(
                                _mm_add_epi16(lo(a), hi(a)),
                                _mm_add_epi16(lo(b), hi(b)),
                            );
                            let mag = _mm_srli_epi16::<2>(_mm_add_epi16(
                                _mm_abs_epi16(s),
                                _mm_set1_epi16(2),
                            ));
                            _mm_sign_epi16(mag, s)
                        }
                    };
                    _mm_storel_epi64(out.as_mut_ptr().add(x).cast(), _mm_packs_epi16(r, r));
                }
            }
            if n < 8 {
                // Byte, pair and quad moves by the bits of n: no call to memcpy for 3 bytes.
                let mut at = 0;
                for piece in [4, 2, 1] {
                    if n & piece != 0 {
                        dst[at..at + piece].copy_from_slice(&short[at..at + piece]);
                        at += piece;
                    }
                }
            }
            return;
        }
        for x in starts(n, 16) {
            // SAFETY: AVX2 (engine); 32 bytes of each row from 2x: 2x + 32 <= 2n <= ow, and
            // `src` holds pw + ow bytes.
            unsafe {
                let a = _mm256_loadu_si256(src.as_ptr().add(2 * x).cast());
                let b = _mm256_loadu_si256(src.as_ptr().add(pw + 2 * x).cast());
                let lo = |v: __m256i| _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(v));
                let hi = |v: __m256i| _mm256_srai_epi16::<8>(v);
                let r = match kind {
                    PoolKind::Max => {
                        let v = _mm256_max_epi8(a, b);
                        _mm256_max_epi16(lo(v), hi(v))
                    }
                    PoolKind::Avg => {
                        // Sum of each pair of columns of both rows (i16), then avg_round(s, 4):
                        // (|s| + 2) / 4 with the sign of s.
                        let s = _mm256_add_epi16(
                            _mm256_add_epi16(lo(a), hi(a)),
                            _mm256_add_epi16(lo(b), hi(b)),
                        );
                        let mag = _mm256_srli_epi16::<2>(_mm256_add_epi16(
                            _mm256_abs_epi16(s),
                            _mm256_set1_epi16(2),
                        ));
                        _mm256_sign_epi16(mag, s)
                    }
                };
                // 16 i16 in [-128, 127] to bytes, in order.
                let p = _mm256_packs_epi16(r, r);
                let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(p);
                _mm_storeu_si128(dst.as_mut_ptr().add(x).cast(), _mm256_castsi256_si128(p));
            }
        }
    }
    #[inline(always)]
    fn pool_any(src: &[i8], pw: usize, pk: usize, kind: PoolKind, dst: &mut [i8]) {
        if pk > 2 {
            // Columns first (vectorised), then each window: exact in any order.
            let n = (pk * pk) as i32;
            return match kind {
                PoolKind::Max => pool_columns(src, pw, pk, dst, i8::MIN, i8::max, |v| {
                    v.iter().fold(i8::MIN, |a, b| a.max(*b))
                }),
                PoolKind::Avg => {
                    let mut sums = [0i16; COLS];
                    let mut px0 = 0;
                    while px0 < dst.len() {
                        let m = (dst.len() - px0).min(COLS / pk);
                        let cols = &mut sums[..m * pk];
                        cols.fill(0);
                        for ky in 0..pk {
                            let row = &src[ky * pw + px0 * pk..][..m * pk];
                            for (a, b) in cols.iter_mut().zip(row) {
                                *a += i16::from(*b);
                            }
                        }
                        for (j, y) in dst[px0..px0 + m].iter_mut().enumerate() {
                            let s: i32 = cols[j * pk..(j + 1) * pk]
                                .iter()
                                .map(|v| i32::from(*v))
                                .sum();
                            *y = avg_round(s, n);
                        }
                        px0 += m;
                    }
                }
            };
        }
        for (px, y) in dst.iter_mut().enumerate() {
            let at = |ky: usize, kx: usize| src[ky * pw + px * pk + kx];
            *y = match kind {
                PoolKind::Max => {
                    let mut m = i8::MIN;
                    for ky in 0..pk {
                        for kx in 0..pk {
                            m = m.max(at(ky, kx));
                        }
                    }
                    m
                }
                PoolKind::Avg => {
                    let mut s = 0i32;
                    for ky in 0..pk {
                        for kx in 0..pk {
                            s += i32::from(at(ky, kx));
                        }
                    }
                    // A constant divisor for the 2 x 2 windows of the short rows that reach
                    // here (`edge`'s 3-wide pooled conv5): shifts, not an integer division.
                    if pk == 2 {
                        avg_round(s, 4)
                    } else {
                        avg_round(s, (pk * pk) as i32)
                    }
                }
            };
        }
    }
}

/// Columns of a pooled row [`pool_columns`] reduces at a time (a multiple of 3 and 4).
const COLS: usize = 240;

/// `pk x pk` pooling of rows `src[ky pw..]` into `dst`: each column of the windows reduced
/// over the `pk` rows with `op` from `init` (a loop the compiler vectorises), then each
/// window's `pk` column results with `fold`.
#[inline(always)]
fn pool_columns<T: Copy>(
    src: &[T],
    pw: usize,
    pk: usize,
    dst: &mut [T],
    init: T,
    op: impl Fn(T, T) -> T,
    fold: impl Fn(&[T]) -> T,
) {
    let mut buf = [init; COLS];
    let mut px0 = 0;
    while px0 < dst.len() {
        let m = (dst.len() - px0).min(COLS / pk);
        let cols = &mut buf[..m * pk];
        cols.fill(init);
        for ky in 0..pk {
            let row = &src[ky * pw + px0 * pk..][..m * pk];
            for (a, b) in cols.iter_mut().zip(row) {
                *a = op(*a, *b);
            }
        }
        for (j, y) in dst[px0..px0 + m].iter_mut().enumerate() {
            *y = fold(&cols[j * pk..(j + 1) * pk]);
        }
        px0 += m;
    }
}

// ---------------------------------------------------------------------------------------
// Float engine.

/// One float block: `NF` channels (weight rows of `l` at `w`) x `VF` vectors of 8 pixels
/// from `x`; accumulators from `init` plus every tap (ic, ky, kx) in order.
///
/// # Safety
/// AVX2 + FMA; the planes from `x` (taps up to `(ic - 1) plane + D ((K - 1) pw + K - 1) +
/// GF`) and `NF` weight rows readable.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_f32<const NF: usize, const VF: usize>(
    x: *const f32,
    ic: usize,
    plane: usize,
    k: usize,
    d: usize,
    pw: usize,
    w: *const f32,
    l: usize,
    init: &[__m256; NF],
) -> [[__m256; NF]; VF] {
    let mut acc = [*init; VF];
    for c in 0..ic {
        for ky in 0..k {
            for kx in 0..k {
                let t = (c * k + ky) * k + kx;
                // SAFETY: per the caller.
                unsafe {
                    let xp = x.add(c * plane + d * (ky * pw + kx));
                    let xv: [__m256; VF] = core::array::from_fn(|v| _mm256_loadu_ps(xp.add(8 * v)));
                    for n in 0..NF {
                        let b = _mm256_broadcast_ss(&*w.add(n * l + t));
                        for v in 0..VF {
                            acc[v][n] = _mm256_fmadd_ps(xv[v], b, acc[v][n]);
                        }
                    }
                }
            }
        }
    }
    acc
}

/// Float convolution (stride 1) of output rows `oy0..oy0 + rows` into `sink`, weights
/// widened to f32, leaky ReLU `slope`.
///
/// # Safety
/// AVX2, FMA and F16C available; lengths of `input` (`IC IH IW`), `w` (`OC IC K K`), `bias`
/// (`OC`) and the sink checked by the caller; `scratch` holds `Dims::len_f32` values for
/// this shape.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn conv_f32<
    W: FloatWeight,
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const D: usize,
    const P: usize,
    const NF: usize,
    const VF: usize,
>(
    input: &[f32],
    w: &[W],
    bias: &[f32],
    slope: f32,
    oy0: usize,
    rows: usize,
    scratch: &mut [f32],
    mut sink: Sink<'_, f32>,
) {
    let dm = Dims::new([IC, IH, IW, OC, K, 1, D, P]);
    let (l, pw) = (dm.l, dm.pw);
    let gf = 8 * VF;
    let ocp = OC.div_ceil(NF) * NF;
    let mut buf = scratch;
    let planes = take(&mut buf, dm.planes(rows));
    fill_planes_f32(&dm, input, oy0, rows, planes);
    // Weights as f32 `[ocp][l]` (a copy unless they already are, with whole blocks).
    let wcopy = take(&mut buf, ocp * l);
    let wsrc: &[f32] = match W::typed(w) {
        TypedWeights::F32(f) if ocp == dm.oc => f,
        typed => {
            wcopy.fill(0.0);
            match typed {
                TypedWeights::F16(h) => {
                    let mut i = 0;
                    while i + 8 <= h.len() {
                        // SAFETY: 8 f16 readable at i, 8 f32 writable at i (wcopy >= w).
                        unsafe {
                            let v = _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().add(i).cast()));
                            _mm256_storeu_ps(wcopy.as_mut_ptr().add(i), v);
                        }
                        i += 8;
                    }
                    for (d, s) in wcopy[i..].iter_mut().zip(&h[i..]) {
                        *d = s.to_f32();
                    }
                }
                TypedWeights::F32(f) => wcopy[..f.len()].copy_from_slice(f),
            }
            wcopy
        }
    };
    let chunk = take(&mut buf, ocp * dm.ostr);
    let plane = dm.plane(rows);
    let (rows_out, rc) = match sink {
        Sink::Rows(_) => (rows, dm.chunk_rows(1)),
        Sink::Pool { pk, .. } => (rows / pk * pk, dm.chunk_rows(pk)),
    };
    let (slope_v, zero) = (_mm256_set1_ps(slope), _mm256_setzero_ps());
    let mut r0 = 0;
    while r0 < rows_out {
        let nr = rc.min(rows_out - r0);
        let nblk = (nr * pw).div_ceil(gf);
        for blk in 0..nblk {
            let pos = r0 * pw + gf * blk;
            let mut oc0 = 0;
            while oc0 < ocp {
                let init: [__m256; NF] = core::array::from_fn(|n| {
                    _mm256_set1_ps(bias.get(oc0 + n).copied().unwrap_or(0.0))
                });
                // SAFETY: planes (with slack, `Dims::planes`) and padded weights, in
                // bounds by construction.
                let acc = unsafe {
                    dot_f32::<NF, VF>(
                        planes.as_ptr().add(pos),
                        dm.ic,
                        plane,
                        dm.k,
                        dm.d,
                        pw,
                        wsrc.as_ptr().add(oc0 * l),
                        l,
                        &init,
                    )
                };
                for (v, a) in acc.iter().enumerate() {
                    for (n, a) in a.iter().enumerate() {
                        let o = oc0 + n;
                        let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(*a, zero);
                        let y = _mm256_blendv_ps(*a, _mm256_mul_ps(*a, slope_v), neg);
                        // SAFETY: gf (blk + 1) <= ostr in channel o < ocp's row.
                        unsafe {
                            _mm256_storeu_ps(
                                chunk.as_mut_ptr().add(o * dm.ostr + gf * blk + 8 * v),
                                y,
                            )
                        };
                    }
                }
                oc0 += NF;
            }
        }
        drain(&dm, chunk, r0, nr, rows, &mut sink);
        r0 += nr;
    }
}

// ---------------------------------------------------------------------------------------
// int8 engine.

/// One int8 block: `NS` channels x `V` vectors of 8 pixel pairs (`V / 2` runs of 16 pixels,
/// each two vectors as the band interleaves them), accumulators from `init` plus every pair
/// of taps.
///
/// # Safety
/// AVX2; `band` holds `groups` x `16 V` i16 (32-byte aligned), `w` `NS` rows of `groups` i32
/// (stride `groups`).
#[inline(always)]
unsafe fn dot_s8<const NS: usize, const V: usize>(
    band: *const i16,
    groups: usize,
    w: *const i32,
    init: &[__m256i; NS],
) -> [[__m256i; NS]; V] {
    let mut acc = [*init; V];
    // A macro, not a closure: a closure would not inherit the caller's target features.
    macro_rules! step {
        ($g:expr) => {{
            let g = $g;
            // SAFETY: per the caller.
            unsafe {
                let x: [__m256i; V] = core::array::from_fn(|v| {
                    _mm256_load_si256(band.add(16 * V * g + 16 * v).cast())
                });
                for n in 0..NS {
                    let wv = _mm256_set1_epi32(*w.add(n * groups + g));
                    for v in 0..V {
                        acc[v][n] = _mm256_add_epi32(acc[v][n], _mm256_madd_epi16(x[v], wv));
                    }
                }
            }
        }};
    }
    // Two pairs of taps per trip: the loop's own instructions (about 3 of 25 per pair) kept
    // off the issue width that the multiply-adds need (22.5 -> 25 MACs per cycle, Zen 3).
    let mut g = 0;
    while g + 2 <= groups {
        step!(g);
        step!(g + 1);
        g += 2;
    }
    if g < groups {
        step!(g);
    }
    acc
}

/// TFLite requantisation of 8 accumulators of one channel plus the output zero point (i32
/// lanes, to be saturated to int8): bit-identical to [`QuantArgs::output`] before its clamp.
/// `c` holds the channel's multipliers, left shifts and right shifts, positive then negative.
/// TFLite's doubling high multiply `(x m + 2^30) >> 31` of 8 lanes, on the even and odd
/// lanes separately (see x86::Rq8): what [`requant8`] and [`requant8_small`] share.
#[inline(always)]
fn doubling_high(x: __m256i, m: __m256i) -> __m256i {
    // SAFETY: only inlined into the engine's AVX2 functions (through the requantisations).
    unsafe {
        let half = _mm256_set1_epi64x(1 << 30);
        let even = _mm256_srli_epi64::<31>(_mm256_add_epi64(_mm256_mul_epi32(x, m), half));
        let odd = _mm256_add_epi64(
            _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(m)),
            half,
        );
        let odd = _mm256_slli_epi64::<1>(odd);
        _mm256_blend_epi32::<0b1010_1010>(even, odd)
    }
}

/// `LEFT` false skips the left shifts (all zero: every multiplier below 1).
#[inline(always)]
pub(crate) fn requant8<const LEFT: bool>(acc: __m256i, c: &[__m256i; 6], zp: __m256i) -> __m256i {
    // SAFETY: only inlined into the engine's AVX2 functions.
    unsafe {
        let neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), acc);
        let m = _mm256_blendv_epi8(c[0], c[1], neg);
        let right = _mm256_blendv_epi8(c[4], c[5], neg);
        let x = if LEFT {
            _mm256_sllv_epi32(acc, _mm256_blendv_epi8(c[2], c[3], neg))
        } else {
            acc
        };
        let high = doubling_high(x, m);
        // Rounding divide by 2^right, half away from zero.
        let one = _mm256_set1_epi32(1);
        let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
        let rem = _mm256_and_si256(high, mask);
        let hneg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), high);
        let thr = _mm256_sub_epi32(_mm256_srai_epi32::<1>(mask), hneg);
        let up = _mm256_cmpgt_epi32(rem, thr);
        let r = _mm256_sub_epi32(_mm256_srav_epi32(high, right), up);
        _mm256_add_epi32(r, zp)
    }
}

/// [`requant8`] for accumulators known to stay small: every multiplier non-negative and
/// `|acc| << left < 2^30` in every lane (checked per call from the weights, the biases and
/// the shifts). Then the doubling high multiply `h` keeps the accumulator's sign (or is 0)
/// and `|h| < 2^30`, and TFLite's rounding divide by `2^e` (half away from zero) is one
/// add and shift: `(h + 2^(e-1)) >> e` for `h >= 0`, `(h + 2^(e-1) - 1) >> e` for `h < 0`
/// (`e = 0`: no nudge), the nudge chosen by the accumulator's sign. `c` holds, positive
/// then negative: multipliers, left shifts, right shifts, nudges. Six instructions fewer per
/// 8 outputs than [`requant8`], bit-identical to it under its condition.
#[inline(always)]
pub(crate) fn requant8_small<const LEFT: bool>(
    acc: __m256i,
    c: &[__m256i; 8],
    zp: __m256i,
) -> __m256i {
    // SAFETY: only inlined into the engine's AVX2 functions.
    unsafe {
        let neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), acc);
        let m = _mm256_blendv_epi8(c[0], c[1], neg);
        let right = _mm256_blendv_epi8(c[4], c[5], neg);
        let nudge = _mm256_blendv_epi8(c[6], c[7], neg);
        let x = if LEFT {
            _mm256_sllv_epi32(acc, _mm256_blendv_epi8(c[2], c[3], neg))
        } else {
            acc
        };
        let high = doubling_high(x, m);
        let r = _mm256_srav_epi32(_mm256_add_epi32(high, nudge), right);
        _mm256_add_epi32(r, zp)
    }
}

/// Per output channel, the int8 engine's constants: multipliers, left shifts, right
/// shifts (positive then negative), bias, nudges of [`requant8_small`] (positive then
/// negative), padding to a 32-byte row.
pub(crate) const CONSTS: usize = 16;

/// int8 convolution (stride 1) of output rows `oy0..oy0 + rows` into `sink`.
///
/// # Safety
/// AVX2 available; the input zero point in -128..=127; lengths of `input` (`IC IH IW`), `w`
/// (`OC IC K K`), `bias` (`OC`), `q` (`OC` channels) and the sink checked by the caller;
/// `scratch` holds `Dims::bytes_s8` bytes for this shape.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn conv_s8<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const D: usize,
    const P: usize,
    const NS: usize,
    const SB: usize,
>(
    input: &[i8],
    w: &[i8],
    bias: &[i32],
    q: &QuantArgs<'_>,
    oy0: usize,
    rows: usize,
    scratch: &mut [u8],
    mut sink: Sink<'_, i8>,
) {
    let dm = Dims::new([IC, IH, IW, OC, K, 1, D, P]);
    let zp = q.input_zero_point;
    let (l, groups, pw) = (dm.l, dm.groups, dm.pw);
    let mut buf = scratch;
    let planes: &mut [i16] = take_as(&mut buf, dm.planes(rows));
    fill_planes_s16(&dm, input, zp, oy0, rows, planes);
    // Weights widened to i16 rows of 2 groups (zeros past l and past oc): the 32-bit words
    // are the pairs of taps.
    let wq: &mut [i16] = take_as(&mut buf, dm.ocp8 * 2 * groups);
    wq.fill(0);
    for (row, src) in wq.chunks_exact_mut(2 * groups).zip(w.chunks_exact(l)) {
        let mut i = 0;
        while i + 16 <= l {
            // SAFETY: 16 bytes readable at i of `src`, 16 i16 writable at i of `row`.
            unsafe {
                let v = _mm256_cvtepi8_epi16(_mm_loadu_si128(src.as_ptr().add(i).cast()));
                _mm256_storeu_si256(row.as_mut_ptr().add(i).cast(), v);
            }
            i += 16;
        }
        for (d, s) in row[i..l].iter_mut().zip(&src[i..]) {
            *d = i16::from(*s);
        }
    }
    // SAFETY: 32-aligned i16 pairs viewed as i32 (same size, alignment 4 <= 32).
    let wpairs: &[i32] = unsafe { core::slice::from_raw_parts(wq.as_ptr().cast(), wq.len() / 2) };
    // Per channel: multipliers, left shifts, right shifts (positive, negative), bias, and
    // the nudges of `requant8_small`, which every channel must allow for it to be used.
    let consts: &mut [i32] = take_as(&mut buf, CONSTS * dm.ocp8);
    consts.fill(0);
    let mut small = true;
    for o in 0..dm.oc {
        let (p, n) = (q.requant_pos[o], q.requant_neg[o]);
        let c = &mut consts[CONSTS * o..][..CONSTS];
        c[0] = p.multiplier;
        c[1] = n.multiplier;
        c[2] = p.shift.max(0);
        c[3] = n.shift.max(0);
        c[4] = (-p.shift).clamp(0, 31);
        c[5] = (-n.shift).clamp(0, 31);
        c[6] = bias[o];
        let nudge = |e: i32| if e > 0 { 1i32 << (e - 1) } else { 0 };
        c[8] = nudge(c[4]);
        c[9] = (nudge(c[5]) - 1).max(0);
        // |acc| <= |bias| + 128 * 255 per tap (|w| <= 128, |x - zp| <= 255), shifted left
        // by either shift: the bound a loaded layer meets (`quant::layer_is_exact`).
        let bound = i64::from(bias[o]).abs() + MAX_PRODUCT * l as i64;
        let left = c[2].max(c[3]);
        small &= p.multiplier >= 0 && n.multiplier >= 0 && left <= 30 && bound << left < 1 << 30;
    }
    // Plane offset of each tap (k >= l: any valid offset, its weights are 0).
    let offs: &mut [i32] = take_as(&mut buf, 2 * groups);
    let plane = dm.plane(rows);
    offs.fill(0);
    let mut t = 0;
    for c in 0..dm.ic {
        for ky in 0..dm.k {
            for kx in 0..dm.k {
                offs[t] = (c * plane + dm.d * (ky * pw + kx)) as i32;
                t += 1;
            }
        }
    }
    let band: &mut [i16] = take_as(&mut buf, 32 * SB * groups);
    let left = consts
        .chunks_exact(CONSTS)
        .take(dm.oc)
        .any(|c| c[2] != 0 || c[3] != 0);
    let chunk: &mut [i8] = take_as(&mut buf, dm.ocp8 * dm.ostr);
    let zpo = _mm256_set1_epi32(q.output_zero_point);
    let (rows_out, rc) = match sink {
        Sink::Rows(_) => (rows, dm.chunk_rows(1)),
        Sink::Pool { pk, .. } => (rows / pk * pk, dm.chunk_rows(pk)),
    };
    let mut r0 = 0;
    while r0 < rows_out {
        let nr = rc.min(rows_out - r0);
        let nblk = (nr * pw).div_ceil(16 * SB);
        for blk in 0..nblk {
            let pos = r0 * pw + 16 * SB * blk;
            // Activation band: per pair of taps, each run of 16 pixels' pairs as two vectors
            // (pixels 0-3 and 8-11, then 4-7 and 12-15: the in-lane unpack).
            for g in 0..groups {
                for j in 0..SB {
                    // SAFETY: tap offsets + positions stay inside the planes and their slack
                    // (`Dims::planes`); the band holds groups x 32 SB i16, 32-byte aligned.
                    unsafe {
                        let at = |t: usize| planes.as_ptr().add(offs[t] as usize + pos + 16 * j);
                        let a = _mm256_loadu_si256(at(2 * g).cast());
                        let b = _mm256_loadu_si256(at(2 * g + 1).cast());
                        let dst = band.as_mut_ptr().add(32 * (SB * g + j));
                        _mm256_store_si256(dst.cast(), _mm256_unpacklo_epi16(a, b));
                        _mm256_store_si256(dst.add(16).cast(), _mm256_unpackhi_epi16(a, b));
                    }
                }
            }
            let mut oc0 = 0;
            while oc0 < dm.ocp8 {
                let init: [__m256i; NS] =
                    core::array::from_fn(|n| _mm256_set1_epi32(consts[CONSTS * (oc0 + n) + 6]));
                macro_rules! block {
                    ($v:literal) => {{
                        // SAFETY: the band and the padded weights, in bounds by construction.
                        let acc = unsafe {
                            dot_s8::<NS, $v>(
                                band.as_ptr(),
                                groups,
                                wpairs.as_ptr().add(oc0 * groups),
                                &init,
                            )
                        };
                        for n in 0..NS {
                            let o = oc0 + n;
                            let c = &consts[CONSTS * o..][..CONSTS];
                            let rq: [__m256i; 8] = core::array::from_fn(|i| {
                                _mm256_set1_epi32(c[if i < 6 { i } else { i + 2 }])
                            });
                            let rq6: [__m256i; 6] = core::array::from_fn(|i| rq[i]);
                            for j in 0..$v / 2 {
                                let (a, b) = (acc[2 * j][n], acc[2 * j + 1][n]);
                                let (ra, rb) = match (small, left) {
                                    (true, false) => (
                                        requant8_small::<false>(a, &rq, zpo),
                                        requant8_small::<false>(b, &rq, zpo),
                                    ),
                                    (true, true) => (
                                        requant8_small::<true>(a, &rq, zpo),
                                        requant8_small::<true>(b, &rq, zpo),
                                    ),
                                    (false, false) => (
                                        requant8::<false>(a, &rq6, zpo),
                                        requant8::<false>(b, &rq6, zpo),
                                    ),
                                    (false, true) => (
                                        requant8::<true>(a, &rq6, zpo),
                                        requant8::<true>(b, &rq6, zpo),
                                    ),
                                };
                                // (pixels 0-3, 8-11) and (4-7, 12-15) pack, lane by lane,
                                // to 0..16.
                                let h = _mm256_packs_epi32(ra, rb);
                                let b = _mm256_packs_epi16(h, h);
                                let b = _mm256_permute4x64_epi64::<0b11_01_10_00>(b);
                                // SAFETY: 16 bytes at 16 (SB blk + j) < ostr in channel
                                // o < ocp8's row.
                                unsafe {
                                    _mm_storeu_si128(
                                        chunk
                                            .as_mut_ptr()
                                            .add(o * dm.ostr + 16 * (SB * blk + j))
                                            .cast(),
                                        _mm256_castsi256_si128(b),
                                    )
                                };
                            }
                        }
                    }};
                }
                if SB == 1 {
                    block!(2)
                } else {
                    block!(4)
                }
                oc0 += NS;
            }
        }
        drain(&dm, chunk, r0, nr, rows, &mut sink);
        r0 += nr;
    }
}
