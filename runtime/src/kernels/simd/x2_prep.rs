//! x86-64 AVX2 preprocessing of raw counts ([`quant_table`], [`quantize_s8`], [`pool2_s8`],
//! [`f32_table`], [`pool2_f32`]), the AVX2 twins of [`super::x512_prep`] (same signatures,
//! same results).
//!
//! Every kernel needs AVX2, FMA and F16C (level 1 of [`super::cpu::x86_level`]); the public API calls
//! them only on [`super::Path::Avx2`].
//!
//! A count `n < 256` maps to its band's network input through a 256-entry table built with
//! vector arithmetic that repeats the scalar operations one for one (so the table holds the
//! reference's bits; int8 tables 64 entries first, the rest when a larger count turns up).
//! Counts are then looked up 32 at a time with `vpshufb` in 16-byte slices of the table (one
//! for counts below 16, four and three blends below 64, sixteen below 256; int8), 8 at a time
//! with `vpermps` (below 8 or 32) or a gather (f32), and pooled in registers. Counts of 256
//! and more are rare: the rows (or elements) holding one are redone by the caller's scalar
//! code.

// Register tables are indexed by position.
#![allow(clippy::needless_range_loop)]

use core::arch::x86_64::*;

use super::super::log1p_table::LOG1P_BITS;
use super::Lanes;
use super::x2_util::starts;
use crate::quant::QParams;

/// `libm::roundf` lane by lane, with the same operations: `trunc(x + copysign(0.5 - 0.25
/// eps, x))` (round half away from zero; NaN and infinities pass through).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn roundf(x: __m256) -> __m256 {
    let sign = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN)));
    let half = _mm256_or_ps(sign, _mm256_set1_ps(0.5 - 0.25 * f32::EPSILON));
    _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm256_add_ps(x, half))
}

/// Rust's `x as i32` lane by lane: truncation, saturating at the i32 range, NaN to 0
/// (`vcvttps2dq` gives `i32::MIN` for every out-of-range value and NaN).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn as_i32(x: __m256) -> __m256i {
    let i = _mm256_cvttps_epi32(x);
    let big = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(
        x,
        _mm256_set1_ps(2_147_483_648.0),
    ));
    let i = _mm256_blendv_epi8(i, _mm256_set1_epi32(i32::MAX), big);
    let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
    _mm256_andnot_si256(nan, i)
}

/// `ln(1 + n)` of counts `8 k .. 8 k + 8` (the bits of [`LOG1P_BITS`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn log1p8(k: usize) -> __m256 {
    let bits: &[u32; 8] = LOG1P_BITS[8 * k..8 * k + 8].try_into().unwrap_or(&[0; 8]);
    // SAFETY: `bits` holds 8 u32 (32 bytes).
    _mm256_castsi256_ps(unsafe { _mm256_loadu_si256(bits.as_ptr().cast()) })
}

/// The quantised network input of every count below 256 in a band with multiplier `scale`:
/// `table[n] = q.quantize(log1p_count(n) * scale)`, bit for bit (the product, the IEEE
/// division by `q.scale`, `libm::roundf`, the saturating `as i32`, the wrapping
/// `+ zero_point` and the clamp, each done the same way in 8 lanes).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quant_table(scale: f32, q: QParams, table: &mut [i8; 256]) {
    quant_groups(scale, q, 0..8, table);
}

/// Groups `groups` (32 entries each) of [`quant_table`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quant_groups(scale: f32, q: QParams, groups: core::ops::Range<usize>, table: &mut [i8; 256]) {
    let (s, qs) = (_mm256_set1_ps(scale), _mm256_set1_ps(q.scale));
    let zp = _mm256_set1_epi32(q.zero_point);
    let (from, to) = (groups.start, groups.end);
    for (k, chunk) in table.chunks_exact_mut(32).enumerate().take(to).skip(from) {
        let v: [__m256i; 4] = core::array::from_fn(|j| {
            let d = _mm256_div_ps(_mm256_mul_ps(log1p8(4 * k + j), s), qs);
            _mm256_add_epi32(as_i32(roundf(d)), zp)
        });
        // Saturating i32 -> i16 -> i8 (the clamp to [-128, 127]); each pack interleaves its
        // operands by 128-bit lane, which the 64-bit permutes undo.
        let h0 = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(v[0], v[1]));
        let h1 = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(v[2], v[3]));
        let b = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi16(h0, h1));
        // SAFETY: `chunk` holds 32 bytes.
        unsafe { _mm256_storeu_si256(chunk.as_mut_ptr().cast(), b) };
    }
}

/// [`quant_table`] of one band in two steps (each costs a vector division per 8 entries):
/// the 64 entries of counts below 64 at once (all a typical band needs), the rest when a
/// larger count turns up; and the table as 16-byte slices broadcast to both lanes.
struct Table {
    scale: f32,
    q: QParams,
    bytes: [i8; 256],
    /// All 256 entries built.
    full: bool,
    /// Entries `16 k .. 16 k + 16` in both 128-bit lanes (the first 4 valid until `full`).
    regs: [__m256i; 16],
}

impl Table {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn new(scale: f32, q: QParams) -> Self {
        let mut bytes = [0; 256];
        quant_groups(scale, q, 0..2, &mut bytes);
        Self {
            scale,
            q,
            bytes,
            full: false,
            regs: table_regs(&bytes),
        }
    }

    /// Build the entries of counts 64 to 255 (once).
    #[inline(never)]
    #[cold]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn complete(&mut self) {
        if !self.full {
            quant_groups(self.scale, self.q, 2..8, &mut self.bytes);
            self.regs = table_regs(&self.bytes);
            self.full = true;
        }
    }
}

/// A 256-entry byte table as 16 slices of 16 bytes, each in both 128-bit lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn table_regs(table: &[i8; 256]) -> [__m256i; 16] {
    // SAFETY: each load reads 16 of the table's 256 bytes.
    core::array::from_fn(|k| unsafe {
        _mm256_broadcastsi128_si256(_mm_loadu_si128(table[16 * k..].as_ptr().cast()))
    })
}

/// `table[idx]` for 32 byte indices below 64 (`t` from [`table_regs`]): four `vpshufb`
/// (which read bits 3:0 of an index below 128), bits 4 and 5 choose by `vpblendvb` (which
/// reads bit 7 of each byte; the 16-bit shifts move bit 4 or 5 of a byte to its bit 7 and
/// nothing of the neighbour's there).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lookup64(t: &[__m256i; 16], idx: __m256i) -> __m256i {
    let (b4, b5) = (_mm256_slli_epi16::<3>(idx), _mm256_slli_epi16::<2>(idx));
    let lo = _mm256_blendv_epi8(
        _mm256_shuffle_epi8(t[0], idx),
        _mm256_shuffle_epi8(t[1], idx),
        b4,
    );
    let hi = _mm256_blendv_epi8(
        _mm256_shuffle_epi8(t[2], idx),
        _mm256_shuffle_epi8(t[3], idx),
        b4,
    );
    _mm256_blendv_epi8(lo, hi, b5)
}

/// `table[idx]` for any 32 byte indices (all 16 slices valid): sixteen `vpshufb` of the low
/// bits, then a tree of blends on bits 4 to 7.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lookup256(t: &[__m256i; 16], idx: __m256i) -> __m256i {
    let low = _mm256_and_si256(idx, _mm256_set1_epi8(0x0f));
    let mut v: [__m256i; 16] = core::array::from_fn(|k| _mm256_shuffle_epi8(t[k], low));
    let bits = [
        _mm256_slli_epi16::<3>(idx),
        _mm256_slli_epi16::<2>(idx),
        _mm256_slli_epi16::<1>(idx),
        idx,
    ];
    let mut n = 16;
    for b in bits {
        n /= 2;
        for k in 0..n {
            v[k] = _mm256_blendv_epi8(v[2 * k], v[2 * k + 1], b);
        }
    }
    v[0]
}

/// Counts `p[..16]` (the first `n` of them; the rest read as 0) as one vector of 16-bit
/// lanes: u16 as they are, u8 zero-extended.
///
/// # Safety
/// `p..p + n` readable (nothing past it is accessed).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load16<N: Lanes>(p: *const N, n: usize) -> __m256i {
    // SAFETY: 16 counts readable at p when n >= 16, else n < 16 copied into a zeroed buffer
    // of 16 (all branches).
    unsafe {
        if n >= 16 {
            if N::WIDE {
                _mm256_loadu_si256(p.cast())
            } else {
                _mm256_cvtepu8_epi16(_mm_loadu_si128(p.cast()))
            }
        } else {
            let mut t = [N::default(); 16];
            core::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), n);
            if N::WIDE {
                _mm256_loadu_si256(t.as_ptr().cast())
            } else {
                _mm256_cvtepu8_epi16(_mm_loadu_si128(t.as_ptr().cast()))
            }
        }
    }
}

/// Counts `p[..32]` (the first `n` of them; the rest read as 0) as two vectors of 16-bit
/// lanes.
///
/// # Safety
/// `p..p + n` readable (nothing past it is accessed).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load32<N: Lanes>(p: *const N, n: usize) -> (__m256i, __m256i) {
    // SAFETY: the first n counts readable; `load16` reads at most the first n of each half.
    unsafe {
        (
            load16(p, n),
            load16(p.wrapping_add(16), n.saturating_sub(16)),
        )
    }
}

/// 32 counts (two vectors of 16) as 32 bytes in order, saturated to 255.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn narrow(a: __m256i, b: __m256i) -> __m256i {
    _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi16(a, b))
}

/// Lookup tier of counts whose OR is `or`: 0 below 16, 1 below 64, 2 below 256, 3 else.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tier(or: __m256i) -> u8 {
    if _mm256_testz_si256(or, _mm256_set1_epi16(-16)) != 0 {
        0
    } else if _mm256_testz_si256(or, _mm256_set1_epi16(-64)) != 0 {
        1
    } else if _mm256_testz_si256(or, _mm256_set1_epi16(-256)) != 0 {
        2
    } else {
        3
    }
}

/// Look 32 byte indices up at `tier` (see [`tier`]; 3 looks up saturated indices).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn look(table: &mut Table, idx: __m256i, tier: u8) -> __m256i {
    match tier {
        0 => _mm256_shuffle_epi8(table.regs[0], idx),
        1 => lookup64(&table.regs, idx),
        _ => {
            table.complete();
            lookup256(&table.regs, idx)
        }
    }
}

/// `out[i] = table[counts[i]]` for counts below 256, `table` the [`quant_table`] of `scale`
/// and `q`, and `slow(counts[i])` for the others
/// ([`Preprocess::counts_s8`](crate::kernels::preprocess::Preprocess::counts_s8) of one band).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `out.len() == counts.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn quantize_s8<N: Lanes>(
    counts: &[N],
    scale: f32,
    q: QParams,
    out: &mut [i8],
    slow: impl Fn(u16) -> i8,
) {
    let len = counts.len().min(out.len());
    let mut table = Table::new(scale, q);
    for c in starts(len, 32) {
        let n = (len - c).min(32);
        // SAFETY: n counts readable at c (c + n <= len).
        let (a, b) = unsafe { load32(counts.as_ptr().add(c), n) };
        let t = tier(_mm256_or_si256(a, b));
        let v = look(&mut table, narrow(a, b), t);
        if n == 32 {
            // SAFETY: 32 bytes writable at c.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(c).cast(), v) };
        } else {
            let mut tmp = [0i8; 32];
            // SAFETY: tmp holds 32 bytes.
            unsafe { _mm256_storeu_si256(tmp.as_mut_ptr().cast(), v) };
            out[c..c + n].copy_from_slice(&tmp[..n]);
        }
        if t == 3 {
            for (y, &x) in out[c..c + n].iter_mut().zip(&counts[c..c + n]) {
                let x: u16 = x.into();
                if x >= 256 {
                    *y = slow(x);
                }
            }
        }
    }
}

/// 2 x 2 pooling (stride 2) of one band of quantised counts, as
/// [`x512_prep::pool2_s8`](super::x512_prep::pool2_s8) (same arguments and contract): per 32
/// input columns of a row pair, `vpackuswb` narrows the counts to bytes, [`look`] maps them,
/// `vpmaddubsw` by ones adds horizontal pairs (or `vpmaxsb` takes maxima). A row whose
/// windows hold a count of 256 or more is left to `redo(output row, its outputs, table)`.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C; `ow >= 1`, `2 ow <= w` and
/// `plane.len() >= (2 (out.len() / ow) - 1) w + 2 ow`.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pool2_s8<N: Lanes>(
    plane: &[N],
    w: usize,
    ow: usize,
    scale: f32,
    q: QParams,
    max: bool,
    out: &mut [i8],
    mut redo: impl FnMut(usize, &mut [i8], &[i8; 256]),
) {
    let mut table = Table::new(scale, q);
    let ones = _mm256_set1_epi8(1);
    let two = _mm256_set1_epi16(2);
    for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
        let r0 = &plane[2 * oy * w..][..2 * ow];
        let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
        let mut big = false;
        for c in starts(2 * ow, 32) {
            let n = (2 * ow - c).min(32);
            // SAFETY: n counts readable at c of both rows (c + n <= 2 ow).
            let ((a0, b0), (a1, b1)) =
                unsafe { (load32(r0.as_ptr().add(c), n), load32(r1.as_ptr().add(c), n)) };
            let or = _mm256_or_si256(_mm256_or_si256(a0, b0), _mm256_or_si256(a1, b1));
            let t = tier(or);
            big |= t == 3;
            // Counts of 256 and more saturate to 255 here: their rows are redone below.
            let v0 = look(&mut table, narrow(a0, b0), t);
            let v1 = look(&mut table, narrow(a1, b1), t);
            let r = if max {
                let m = _mm256_max_epi8(v0, v1);
                let lo = _mm256_srai_epi16::<8>(_mm256_slli_epi16::<8>(m));
                _mm256_max_epi16(lo, _mm256_srai_epi16::<8>(m))
            } else {
                // Window sums in [-512, 508]; sum / 4 rounded half away from zero is
                // (sum + 2 - [sum < 0]) >> 2, always within int8.
                let s = _mm256_add_epi16(
                    _mm256_maddubs_epi16(ones, v0),
                    _mm256_maddubs_epi16(ones, v1),
                );
                let s = _mm256_add_epi16(_mm256_add_epi16(s, two), _mm256_srai_epi16::<15>(s));
                _mm256_srai_epi16::<2>(s)
            };
            // 16 i16 in [-128, 127] to 16 bytes in order.
            let p = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi16(r, r));
            let p = _mm256_castsi256_si128(p);
            if n == 32 {
                // SAFETY: 16 outputs writable at c / 2 (c / 2 + 16 <= ow).
                unsafe { _mm_storeu_si128(row.as_mut_ptr().add(c / 2).cast(), p) };
            } else {
                let mut tmp = [0i8; 16];
                // SAFETY: tmp holds 16 bytes.
                unsafe { _mm_storeu_si128(tmp.as_mut_ptr().cast(), p) };
                row[c / 2..c / 2 + n / 2].copy_from_slice(&tmp[..n / 2]);
            }
        }
        if big {
            table.complete();
            redo(oy, row, &table.bytes);
        }
    }
}

/// The f32 network input of every count below 256 in a band: `table[n] = log1p_count(n) *
/// scale`. With `max` (for max pooling) NaN entries become `-inf`, which `f32::max` folded
/// from `-inf` treats alike.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f32_table(scale: f32, max: bool, table: &mut [f32; 256]) {
    let s = _mm256_set1_ps(scale);
    for (k, chunk) in table.chunks_exact_mut(8).enumerate() {
        let mut v = _mm256_mul_ps(log1p8(k), s);
        if max {
            let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v);
            v = _mm256_blendv_ps(v, _mm256_set1_ps(f32::NEG_INFINITY), nan);
        }
        // SAFETY: `chunk` holds 8 f32.
        unsafe { _mm256_storeu_ps(chunk.as_mut_ptr(), v) };
    }
}

/// 2 x 2 pooling of one band of f32 inputs, as
/// [`x512_prep::pool2_f32`](super::x512_prep::pool2_f32) (same arguments, contract and
/// sums): 16 counts of a row pair at a time, looked up with one `vpermps` below 8, four and
/// three blends below 32, a gather below 256; rows holding a larger count go to `redo`.
///
/// # Safety
/// As for [`pool2_s8`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn pool2_f32<N: Lanes>(
    plane: &[N],
    w: usize,
    ow: usize,
    table: &[f32; 256],
    max: bool,
    out: &mut [f32],
    mut redo: impl FnMut(usize, &mut [f32]),
) {
    // SAFETY: each load reads 8 of the table's 256 values.
    let t: [__m256; 4] =
        core::array::from_fn(|k| unsafe { _mm256_loadu_ps(table[8 * k..].as_ptr()) });
    let lo16 = _mm256_set1_epi32(0xffff);
    let look = |idx: __m256i, tier: u8| -> __m256 {
        match tier {
            0 => _mm256_permutevar8x32_ps(t[0], idx),
            1 => {
                // vpermps reads bits 2:0; bits 3 and 4 choose (blendvps reads bit 31).
                let (b3, b4) = (
                    _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx)),
                    _mm256_castsi256_ps(_mm256_slli_epi32::<27>(idx)),
                );
                let lo = _mm256_blendv_ps(
                    _mm256_permutevar8x32_ps(t[0], idx),
                    _mm256_permutevar8x32_ps(t[1], idx),
                    b3,
                );
                let hi = _mm256_blendv_ps(
                    _mm256_permutevar8x32_ps(t[2], idx),
                    _mm256_permutevar8x32_ps(t[3], idx),
                    b3,
                );
                _mm256_blendv_ps(lo, hi, b4)
            }
            // SAFETY: every index is below 256 (checked by the caller of `look`).
            _ => unsafe { _mm256_i32gather_ps::<4>(table.as_ptr(), idx) },
        }
    };
    for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
        let r0 = &plane[2 * oy * w..][..2 * ow];
        let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
        let mut big = false;
        for c in starts(2 * ow, 16) {
            let n = (2 * ow - c).min(16);
            // SAFETY: n counts readable at c of both rows (c + n <= 2 ow).
            let (a, b) = unsafe { (load16(r0.as_ptr().add(c), n), load16(r1.as_ptr().add(c), n)) };
            let any = _mm256_or_si256(a, b);
            if _mm256_testz_si256(any, _mm256_set1_epi16(-256)) == 0 {
                big = true;
                break;
            }
            // Counts below 8, below 32, below 256.
            let tier = if _mm256_testz_si256(any, _mm256_set1_epi16(-8)) != 0 {
                0
            } else if _mm256_testz_si256(any, _mm256_set1_epi16(-32)) != 0 {
                1
            } else {
                2
            };
            // 32-bit lane k holds columns 2k (low half) and 2k + 1 (high half).
            let (a0, a1) = (
                look(_mm256_and_si256(a, lo16), tier),
                look(_mm256_srli_epi32::<16>(a), tier),
            );
            let (b0, b1) = (
                look(_mm256_and_si256(b, lo16), tier),
                look(_mm256_srli_epi32::<16>(b), tier),
            );
            let y = if max {
                _mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(b0, b1))
            } else {
                let s = _mm256_add_ps(_mm256_setzero_ps(), a0);
                let s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s, a1), b0), b1);
                _mm256_mul_ps(s, _mm256_set1_ps(0.25))
            };
            if n == 16 {
                // SAFETY: 8 outputs writable at c / 2 (c / 2 + 8 <= ow).
                unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(c / 2), y) };
            } else {
                let mut tmp = [0f32; 8];
                // SAFETY: tmp holds 8 values.
                unsafe { _mm256_storeu_ps(tmp.as_mut_ptr(), y) };
                row[c / 2..c / 2 + n / 2].copy_from_slice(&tmp[..n / 2]);
            }
        }
        if big {
            redo(oy, row);
        }
    }
}
