//! x86-64 AVX-512 kernels besides the convolutions: preprocessing of raw counts and dense
//! layers.
//!
//! Every kernel needs AVX-512 F, BW, VL, VNNI and VBMI plus AVX2, FMA and F16C
//! ([`super::x512::available`]); the public API calls them only on [`super::Path::Avx512`].
//!
//! - Preprocessing ([`quant_table`], [`quantize_s8`], [`pool2_s8`], [`f32_table`],
//!   [`pool2_f32`]): a count `n < 256` maps to its band's network input through a 256-entry
//!   table built with vector arithmetic that repeats the scalar operations one for one (so
//!   the table holds the reference's bits; int8 tables 64 entries at a time, as a band
//!   needs them). Rows of counts are then looked up 64 at a time with `vpermb` (all counts
//!   below 64) or two `vpermi2b` (int8), 16 at a time with `vpermi2ps` or a gather (f32), and
//!   pooled in registers. Counts of 256 and more are rare: the rows (or elements) holding
//!   one are redone by the caller's scalar code.
//! - Dense layers: int8 by VNNI `vpdpbusd` on quads of inputs ([`dense_s8`], bit-identical to
//!   the reference: exact, wrapping i32 sums) and a vector requantisation ([`requant_s8`],
//!   TFLite's fixed point bit for bit); f32 / f16 weights by FMA with several partial sums
//!   per output ([`dense_f32`], differing from the reference only by rounding).
//!
//! Unit tests at the end check each kernel against the scalar reference, directly whenever
//! the CPU has AVX-512 (also under `RUNTIME_SIMD=avx2`) and through the public API.

use core::arch::x86_64::*;

use super::super::log1p_table::LOG1P_BITS;
use crate::quant::{QParams, Requant};
use half::f16;

// ---------------------------------------------------------------------------------------
// Masks.

/// The first `n` of 64 lanes (all for `n >= 64`).
#[inline]
pub(crate) fn mask64(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// The first `n` of 32 lanes (all for `n >= 32`).
#[inline]
fn mask32(n: usize) -> u32 {
    if n >= 32 { u32::MAX } else { (1u32 << n) - 1 }
}

/// The first `n` of 16 lanes (all for `n >= 16`).
#[inline]
fn mask16(n: usize) -> u16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

/// The first `n` of 8 lanes (all for `n >= 8`).
#[inline]
fn mask8(n: usize) -> u8 {
    if n >= 8 { u8::MAX } else { (1u8 << n) - 1 }
}

// ---------------------------------------------------------------------------------------
// Preprocessing.

/// `libm::roundf` lane by lane, with the same operations: `trunc(x + copysign(0.5 - 0.25
/// eps, x))` (round half away from zero; NaN and infinities pass through).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn roundf(x: __m512) -> __m512 {
    let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
    let half = _mm512_castsi512_ps(_mm512_or_si512(
        sign,
        _mm512_castps_si512(_mm512_set1_ps(0.5 - 0.25 * f32::EPSILON)),
    ));
    _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm512_add_ps(x, half))
}

/// Rust's `x as i32` lane by lane: truncation, saturating at the i32 range, NaN to 0
/// (`vcvttps2dq` gives `i32::MIN` for every out-of-range value and NaN).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn as_i32(x: __m512) -> __m512i {
    let i = _mm512_cvttps_epi32(x);
    let big = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(2_147_483_648.0));
    let i = _mm512_mask_mov_epi32(i, big, _mm512_set1_epi32(i32::MAX));
    _mm512_mask_mov_epi32(
        i,
        _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x),
        _mm512_setzero_si512(),
    )
}

/// `ln(1 + n)` of counts `16 k .. 16 k + 16` (the bits of [`LOG1P_BITS`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn log1p16(k: usize) -> __m512 {
    let bits: &[u32; 16] = LOG1P_BITS[16 * k..16 * k + 16]
        .try_into()
        .unwrap_or(&[0; 16]);
    // SAFETY: `bits` holds 16 u32 (64 bytes).
    _mm512_castsi512_ps(unsafe { _mm512_loadu_si512(bits.as_ptr().cast()) })
}

/// The quantised network input of every count below 256 in a band with multiplier `scale`:
/// `table[n] = q.quantize(log1p_count(n) * scale)`, bit for bit (the product, the IEEE
/// division by `q.scale`, `libm::roundf`, the saturating `as i32`, the wrapping
/// `+ zero_point` of an optimised build and the clamp, each done the same way in 16 lanes).
///
/// # Safety
/// The CPU must have the features of [`super::x512::available`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(crate) unsafe fn quant_table(scale: f32, q: QParams, table: &mut [i8; 256]) {
    quant_groups(scale, q, 0..4, table);
}

/// Groups `groups` (64 entries each) of [`quant_table`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn quant_groups(scale: f32, q: QParams, groups: core::ops::Range<usize>, table: &mut [i8; 256]) {
    let (s, qs) = (_mm512_set1_ps(scale), _mm512_set1_ps(q.scale));
    let zp = _mm512_set1_epi32(q.zero_point);
    // The two saturating packs below leave 128-bit lane L of block j in 32-bit lane 4 L + j.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let (from, to) = (groups.start, groups.end);
    for (k, chunk) in table.chunks_exact_mut(64).enumerate().take(to).skip(from) {
        let v: [__m512i; 4] = core::array::from_fn(|j| {
            let d = _mm512_div_ps(_mm512_mul_ps(log1p16(4 * k + j), s), qs);
            _mm512_add_epi32(as_i32(roundf(d)), zp)
        });
        // Saturating i32 -> i16 -> i8: the clamp to [-128, 127].
        let b = _mm512_packs_epi16(
            _mm512_packs_epi32(v[0], v[1]),
            _mm512_packs_epi32(v[2], v[3]),
        );
        // SAFETY: `chunk` holds 64 bytes.
        unsafe {
            _mm512_storeu_si512(
                chunk.as_mut_ptr().cast(),
                _mm512_permutexvar_epi32(order, b),
            )
        };
    }
}

/// [`quant_table`] of one band in two steps, as each costs a vector division per 16
/// entries: the 64 entries of counts below 64 at once (all a typical band needs), the rest
/// when a larger count turns up.
struct Table {
    scale: f32,
    q: QParams,
    bytes: [i8; 256],
    /// All 256 entries built.
    full: bool,
    /// The table in registers ([`table_regs`]; only the first is valid until `full`).
    regs: [__m512i; 4],
}

impl Table {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
    fn new(scale: f32, q: QParams) -> Self {
        let mut bytes = [0; 256];
        quant_groups(scale, q, 0..1, &mut bytes);
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
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
    fn complete(&mut self) {
        if !self.full {
            quant_groups(self.scale, self.q, 1..4, &mut self.bytes);
            self.regs = table_regs(&self.bytes);
            self.full = true;
        }
    }
}

/// The f32 network input of every count below 256 in a band: `table[n] = log1p_count(n) *
/// scale`. With `max` (for max pooling) NaN entries become `-inf`, which `f32::max` folded
/// from `-inf` treats alike.
///
/// # Safety
/// The CPU must have the features of [`super::x512::available`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(crate) unsafe fn f32_table(scale: f32, max: bool, table: &mut [f32; 256]) {
    let s = _mm512_set1_ps(scale);
    for (k, chunk) in table.chunks_exact_mut(16).enumerate() {
        let mut v = _mm512_mul_ps(log1p16(k), s);
        if max {
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            v = _mm512_mask_mov_ps(v, nan, _mm512_set1_ps(f32::NEG_INFINITY));
        }
        // SAFETY: `chunk` holds 16 f32.
        unsafe { _mm512_storeu_ps(chunk.as_mut_ptr(), v) };
    }
}

/// A 256-entry byte table in four registers, for [`lookup`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn table_regs(table: &[i8; 256]) -> [__m512i; 4] {
    // SAFETY: each load reads 64 of the table's 256 bytes.
    core::array::from_fn(|k| unsafe { _mm512_loadu_si512(table[64 * k..].as_ptr().cast()) })
}

/// `table[idx]` for 64 byte indices: one `vpermi2b` per half of the table, the halves
/// chosen by bit 7 of the index.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn lookup(t: &[__m512i; 4], idx: __m512i) -> __m512i {
    let lo = _mm512_permutex2var_epi8(t[0], idx, t[1]);
    let hi = _mm512_permutex2var_epi8(t[2], idx, t[3]);
    _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), lo, hi)
}

/// Counts `p[..32]` and `p[32..64]` (the first `n` of them; lanes past `n` read as 0) as two
/// vectors of 16-bit lanes.
///
/// # Safety
/// `p..p + n` readable (nothing past it is accessed).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn load64_u16(p: *const u16, n: usize) -> (__m512i, __m512i) {
    // SAFETY: masked-off lanes are not accessed; the caller guarantees the first n values.
    unsafe {
        (
            _mm512_maskz_loadu_epi16(mask32(n), p.cast()),
            _mm512_maskz_loadu_epi16(mask32(n.saturating_sub(32)), p.wrapping_add(32).cast()),
        )
    }
}

/// `out[i] = table[counts[i]]` for counts below 256, `table` the [`quant_table`] of `scale`
/// and `q` (built as far as the counts need, [`Table`]), and `slow(counts[i])` for the others
/// ([`Preprocess::counts_s8`](crate::kernels::preprocess::Preprocess::counts_s8) of one band).
///
/// # Safety
/// The CPU must have the features of [`super::x512::available`]; `out.len() == counts.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(crate) unsafe fn quantize_s8(
    counts: &[u16],
    scale: f32,
    q: QParams,
    out: &mut [i8],
    slow: impl Fn(u16) -> i8,
) {
    debug_assert_eq!(counts.len(), out.len());
    let len = counts.len().min(out.len());
    let mut table = Table::new(scale, q);
    let t0 = table.regs[0];
    // `vpackuswb` interleaves its operands by 128-bit lane: qwords 0,2,4,6 come from the
    // first, 1,3,5,7 from the second.
    let order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
    let v255 = _mm512_set1_epi16(255);
    let (above63, above255) = (_mm512_set1_epi16(-64), _mm512_set1_epi16(-256));
    let mut c = 0;
    while c < len {
        let n = (len - c).min(64);
        // SAFETY: n counts readable at c (c + n <= len).
        let (a, b) = unsafe { load64_u16(counts.as_ptr().add(c), n) };
        let idx = _mm512_permutexvar_epi64(order, _mm512_packus_epi16(a, b));
        let or = _mm512_or_si512(a, b);
        let small = _mm512_test_epi16_mask(or, above63) == 0;
        let v = if small {
            // The common case: every count below 64, the first quarter of the table.
            _mm512_permutexvar_epi8(idx, t0)
        } else {
            table.complete();
            lookup(&table.regs, idx)
        };
        // SAFETY: n bytes writable at c; masked-off lanes are not accessed.
        unsafe { _mm512_mask_storeu_epi8(out.as_mut_ptr().add(c), mask64(n), v) };
        let big = if small || _mm512_test_epi16_mask(or, above255) == 0 {
            0
        } else {
            u64::from(_mm512_cmpgt_epu16_mask(a, v255))
                | u64::from(_mm512_cmpgt_epu16_mask(b, v255)) << 32
        };
        if big != 0 {
            for (k, (y, &x)) in out[c..c + n].iter_mut().zip(&counts[c..c + n]).enumerate() {
                if big >> k & 1 != 0 {
                    *y = slow(x);
                }
            }
        }
        c += n;
    }
}

/// Byte `j < 32` of a pooled row: the low byte of the 16-bit lane that holds output `j`
/// after `vpackuswb` (which interleaves its two operands by 128-bit lane, 8 counts each) and
/// the horizontal pair step.
const POOL2_ORDER: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut j = 0;
    while j < 32 {
        let (lane, word) = if j < 16 {
            (j / 4, j % 4)
        } else {
            ((j - 16) / 4, 4 + (j - 16) % 4)
        };
        t[j] = (16 * lane + 2 * word) as u8;
        j += 1;
    }
    t
};

/// 2 x 2 pooling (stride 2) of one band of quantised counts: `plane` the band's `h x w`
/// counts (`w` given, `h` implied by `out`), `out` its `out.len() / ow` rows of `ow` outputs,
/// each the int8 mean (rounded half away from zero, [`avg_round`]) or, with `max`, the
/// maximum of `table[count]` over its window, `table` the [`quant_table`] of `scale` and `q`
/// (built as far as the counts need, [`Table`]). A row whose windows hold a count of 256 or
/// more is left to `redo(output row, its outputs, table)` (by then all 256 entries built).
///
/// Per 64 input columns of a row pair: `vpackuswb` narrows the counts to bytes, [`lookup`]
/// maps them, `vpmaddubsw` by ones adds horizontal pairs (or `vpmaxsb` takes maxima), and a
/// `vpermb` puts the 32 results in order.
///
/// [`avg_round`]: crate::kernels::pool::avg_round
///
/// # Safety
/// The CPU must have the features of [`super::x512::available`]; `ow >= 1`, `2 ow <= w` and
/// `plane.len() >= (2 (out.len() / ow) - 1) w + 2 ow`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pool2_s8(
    plane: &[u16],
    w: usize,
    ow: usize,
    scale: f32,
    q: QParams,
    max: bool,
    out: &mut [i8],
    mut redo: impl FnMut(usize, &mut [i8], &[i8; 256]),
) {
    let mut table = Table::new(scale, q);
    let t0 = table.regs[0];
    // SAFETY: POOL2_ORDER holds 64 bytes.
    let order = unsafe { _mm512_loadu_si512(POOL2_ORDER.as_ptr().cast()) };
    let ones = _mm512_set1_epi8(1);
    let (two, high) = (_mm512_set1_epi16(2), _mm512_set1_epi16(-256));
    let above63 = _mm512_set1_epi16(-64);
    for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
        let r0 = &plane[2 * oy * w..][..2 * ow];
        let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
        let mut any = _mm512_setzero_si512();
        let mut c = 0;
        while c < 2 * ow {
            let n = (2 * ow - c).min(64);
            // SAFETY: n counts readable at c of both rows (c + n <= 2 ow).
            let ((a0, b0), (a1, b1)) = unsafe {
                (
                    load64_u16(r0.as_ptr().add(c), n),
                    load64_u16(r1.as_ptr().add(c), n),
                )
            };
            let (i0, i1) = (_mm512_packus_epi16(a0, b0), _mm512_packus_epi16(a1, b1));
            let or = _mm512_or_si512(_mm512_ternarylogic_epi32::<0xfe>(a0, b0, a1), b1);
            let (v0, v1) = if _mm512_test_epi16_mask(or, above63) == 0 {
                // The common case: every count below 64, the first quarter of the table.
                (
                    _mm512_permutexvar_epi8(i0, t0),
                    _mm512_permutexvar_epi8(i1, t0),
                )
            } else {
                // Counts of 256 and more saturate to 255 here: their rows are redone below.
                table.complete();
                any = _mm512_or_si512(any, or);
                (lookup(&table.regs, i0), lookup(&table.regs, i1))
            };
            let r = if max {
                let m = _mm512_max_epi8(v0, v1);
                _mm512_max_epi8(m, _mm512_srli_epi16::<8>(m))
            } else {
                // Window sums in [-512, 508]; sum / 4 rounded half away from zero is
                // (sum + 2 - [sum < 0]) >> 2, always within int8.
                let s = _mm512_add_epi16(
                    _mm512_maddubs_epi16(ones, v0),
                    _mm512_maddubs_epi16(ones, v1),
                );
                let s = _mm512_add_epi16(_mm512_add_epi16(s, two), _mm512_srai_epi16::<15>(s));
                _mm512_srai_epi16::<2>(s)
            };
            let r = _mm512_castsi512_si256(_mm512_permutexvar_epi8(order, r));
            // SAFETY: n / 2 outputs writable at c / 2 of the row; masked-off lanes are not
            // accessed.
            unsafe { _mm256_mask_storeu_epi8(row.as_mut_ptr().add(c / 2), mask32(n / 2), r) };
            c += n;
        }
        if _mm512_test_epi16_mask(any, high) != 0 {
            // A count of 256 or more completed the table.
            redo(oy, row, &table.bytes);
        }
    }
}

/// 2 x 2 pooling of one band of f32 inputs, as [`pool2_s8`]: `table` from [`f32_table`] (with
/// `max` as here), each output `((((0 + a) + b) + c) + d) * 0.25` over its window in row
/// order as the reference sums, or the maximum. Counts below 32 are looked up with one
/// `vpermi2ps`, below 64 with two, others below 256 gathered; rows holding a larger count go
/// to `redo`.
///
/// # Safety
/// As for [`pool2_s8`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(crate) unsafe fn pool2_f32(
    plane: &[u16],
    w: usize,
    ow: usize,
    table: &[f32; 256],
    max: bool,
    out: &mut [f32],
    mut redo: impl FnMut(usize, &mut [f32]),
) {
    // SAFETY: each load reads 16 of the table's 256 values.
    let t: [__m512; 4] =
        core::array::from_fn(|k| unsafe { _mm512_loadu_ps(table[16 * k..].as_ptr()) });
    let (lo16, high) = (_mm512_set1_epi32(0xffff), _mm512_set1_epi16(-256));
    let (above31, above63) = (_mm512_set1_epi16(-32), _mm512_set1_epi16(-64));
    let bit5 = _mm512_set1_epi32(32);
    // `vpermi2ps` reads bits 4:0 of each 32-bit index, so the low count of a pair needs no
    // masking on the first two tiers.
    let look = |idx: __m512i, tier: u8| -> __m512 {
        match tier {
            0 => _mm512_permutex2var_ps(t[0], idx, t[1]),
            1 => {
                let lo = _mm512_permutex2var_ps(t[0], idx, t[1]);
                let hi = _mm512_permutex2var_ps(t[2], idx, t[3]);
                _mm512_mask_blend_ps(_mm512_test_epi32_mask(idx, bit5), lo, hi)
            }
            // SAFETY: every index is below 256 (checked by the caller of `look`).
            _ => unsafe { _mm512_i32gather_ps::<4>(_mm512_and_si512(idx, lo16), table.as_ptr()) },
        }
    };
    for (oy, row) in out.chunks_exact_mut(ow).enumerate() {
        let r0 = &plane[2 * oy * w..][..2 * ow];
        let r1 = &plane[(2 * oy + 1) * w..][..2 * ow];
        let mut c = 0;
        let mut big = false;
        while c < 2 * ow {
            let n = (2 * ow - c).min(32);
            // SAFETY: n counts readable at c of both rows; masked-off lanes are not accessed.
            let (a, b) = unsafe {
                (
                    _mm512_maskz_loadu_epi16(mask32(n), r0.as_ptr().add(c).cast()),
                    _mm512_maskz_loadu_epi16(mask32(n), r1.as_ptr().add(c).cast()),
                )
            };
            let any = _mm512_or_si512(a, b);
            if _mm512_test_epi16_mask(any, high) != 0 {
                big = true;
                break;
            }
            // Counts below 32, below 64, below 256.
            let tier = if _mm512_test_epi16_mask(any, above31) == 0 {
                0
            } else if _mm512_test_epi16_mask(any, above63) == 0 {
                1
            } else {
                2
            };
            // 32-bit lane k holds columns 2k (low half) and 2k + 1 (high half).
            let (a0, a1) = (look(a, tier), look(_mm512_srli_epi32::<16>(a), tier));
            let (b0, b1) = (look(b, tier), look(_mm512_srli_epi32::<16>(b), tier));
            let y = if max {
                _mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(b0, b1))
            } else {
                let s = _mm512_add_ps(_mm512_setzero_ps(), a0);
                let s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s, a1), b0), b1);
                _mm512_mul_ps(s, _mm512_set1_ps(0.25))
            };
            // SAFETY: n / 2 outputs writable at c / 2 of the row; masked-off lanes are not
            // accessed.
            unsafe { _mm512_mask_storeu_ps(row.as_mut_ptr().add(c / 2), mask16(n / 2), y) };
            c += n;
        }
        if big {
            redo(oy, row);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Dense layers.

/// Interleave 4 weight rows (16-byte lanes `r[k]` = `w[i + k][o .. o + 16]` per 128-bit lane)
/// into the `vpdpbusd` layout: in vector `j`, 32-bit lane `m` of 128-bit lane `L` holds
/// `w[i .. i + 4][16 L + 4 j + m]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn quads512(r: [__m512i; 4]) -> [__m512i; 4] {
    let (a, b) = (
        _mm512_unpacklo_epi8(r[0], r[1]),
        _mm512_unpackhi_epi8(r[0], r[1]),
    );
    let (c, d) = (
        _mm512_unpacklo_epi8(r[2], r[3]),
        _mm512_unpackhi_epi8(r[2], r[3]),
    );
    [
        _mm512_unpacklo_epi16(a, c),
        _mm512_unpackhi_epi16(a, c),
        _mm512_unpacklo_epi16(b, d),
        _mm512_unpackhi_epi16(b, d),
    ]
}

/// [`quads512`] on 256-bit vectors (two 128-bit lanes).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn quads256(r: [__m256i; 4]) -> [__m256i; 4] {
    let (a, b) = (
        _mm256_unpacklo_epi8(r[0], r[1]),
        _mm256_unpackhi_epi8(r[0], r[1]),
    );
    let (c, d) = (
        _mm256_unpacklo_epi8(r[2], r[3]),
        _mm256_unpackhi_epi8(r[2], r[3]),
    );
    [
        _mm256_unpacklo_epi16(a, c),
        _mm256_unpackhi_epi16(a, c),
        _mm256_unpacklo_epi16(b, d),
        _mm256_unpackhi_epi16(b, d),
    ]
}

/// Undo the output order of [`quads512`]: vector `L` of the result holds outputs
/// `16 L .. 16 L + 16`, i.e. 128-bit lane `L` of every input (a 4 x 4 lane transpose).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn unquad512(d: [__m512i; 4]) -> [__m512i; 4] {
    let t0 = _mm512_shuffle_i32x4::<0x44>(d[0], d[1]);
    let t1 = _mm512_shuffle_i32x4::<0x44>(d[2], d[3]);
    let t2 = _mm512_shuffle_i32x4::<0xee>(d[0], d[1]);
    let t3 = _mm512_shuffle_i32x4::<0xee>(d[2], d[3]);
    [
        _mm512_shuffle_i32x4::<0x88>(t0, t1),
        _mm512_shuffle_i32x4::<0xdd>(t0, t1),
        _mm512_shuffle_i32x4::<0x88>(t2, t3),
        _mm512_shuffle_i32x4::<0xdd>(t2, t3),
    ]
}

/// Undo the output order of [`quads256`]: vector `k` of the result holds outputs
/// `8 k .. 8 k + 8`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn unquad256(d: [__m256i; 4]) -> [__m256i; 4] {
    [
        _mm256_permute2x128_si256::<0x20>(d[0], d[1]),
        _mm256_permute2x128_si256::<0x20>(d[2], d[3]),
        _mm256_permute2x128_si256::<0x31>(d[0], d[1]),
        _mm256_permute2x128_si256::<0x31>(d[2], d[3]),
    ]
}

/// int8 dense, outputs `o0..o0 + acc.len()` of `[IN][stride]` weights:
/// `acc[k] += sum_i (x[i] - zp) w[i stride + o0 + k]` in wrapping i32, bit-identical to the
/// reference.
///
/// `vpdpbusd` multiplies unsigned by signed bytes, so inputs enter as `u = x - b` in
/// `0..=255`: `b = zp` when every input is at least `zp` (no correction), else `b = -128`
/// (`u = x ^ 0x80`) and `(128 + zp) sum_i w[i][o]` is subtracted, the column sums taken by a
/// second `vpdpbusd` with all-ones bytes. Both are exact modulo 2^32, as the reference's
/// wrapping sum. Weight rows are read 4 at a time and interleaved into quads on the fly; 64
/// outputs a block in 512-bit vectors, the rest up to 32 at a time in 256-bit ones with
/// masked loads and stores (nothing outside the slices is accessed).
///
/// # Safety
/// The CPU must have the features of [`super::x512::available`];
/// `w.len() >= x.len() * stride` and `o0 + acc.len() <= stride`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(crate) unsafe fn dense_s8(
    x: &[i8],
    zp: i32,
    w: &[i8],
    stride: usize,
    o0: usize,
    acc: &mut [i32],
) {
    debug_assert!(w.len() >= x.len() * stride && o0 + acc.len() <= stride);
    let direct = (-128..=127).contains(&zp) && x.iter().all(|&v| i32::from(v) >= zp);
    // SAFETY: forwarded from the caller.
    unsafe {
        if direct {
            dense_s8_with::<false>(x, zp, w, stride, o0, acc);
        } else {
            dense_s8_with::<true>(x, zp, w, stride, o0, acc);
        }
    }
}

/// The inputs `x[i..i + 4]` (zero past the end) as `u = x - b` bytes in every 32-bit lane,
/// `b` the byte in every lane of `base`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
fn quad(x: &[i8], i: usize, base: __m512i) -> __m512i {
    let q = match x.get(i..i + 4) {
        // SAFETY: 4 readable bytes.
        Some(q) => unsafe { q.as_ptr().cast::<i32>().read_unaligned() },
        None => i32::from_le_bytes(core::array::from_fn(|k| {
            x.get(i + k).copied().unwrap_or(0) as u8
        })),
    };
    _mm512_sub_epi8(_mm512_set1_epi32(q), base)
}

/// One quad of inputs for 64 outputs: `rows` (<= 4) weight rows from `p` (stride `stride`;
/// the others zero, not read), interleaved by [`quads512`], dotted with `u` into `d` and,
/// with `CORR`, summed into `s`.
///
/// # Safety
/// 64 bytes readable at `p + k stride` for `k < rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn step512<const CORR: bool>(
    d: &mut [__m512i; 4],
    s: &mut [__m512i; 4],
    u: __m512i,
    p: *const i8,
    stride: usize,
    rows: usize,
) {
    let mut r = [_mm512_setzero_si512(); 4];
    for (k, r) in r.iter_mut().enumerate().take(rows) {
        // SAFETY: the caller guarantees row k.
        *r = unsafe { _mm512_loadu_si512(p.add(k * stride).cast()) };
    }
    let v = quads512(r);
    for j in 0..4 {
        d[j] = _mm512_dpbusd_epi32(d[j], u, v[j]);
        if CORR {
            s[j] = _mm512_dpbusd_epi32(s[j], _mm512_set1_epi8(1), v[j]);
        }
    }
}

/// [`step512`] for up to 32 outputs (the lanes of `m`) in 256-bit vectors.
///
/// # Safety
/// The lanes of `m` readable at `p + k stride` for `k < rows`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn step256<const CORR: bool>(
    d: &mut [__m256i; 4],
    s: &mut [__m256i; 4],
    u: __m256i,
    p: *const i8,
    stride: usize,
    rows: usize,
    m: u32,
) {
    let mut r = [_mm256_setzero_si256(); 4];
    for (k, r) in r.iter_mut().enumerate().take(rows) {
        // SAFETY: the caller guarantees the lanes of m of row k; others are not accessed.
        *r = unsafe { _mm256_maskz_loadu_epi8(m, p.add(k * stride)) };
    }
    let v = quads256(r);
    for j in 0..4 {
        d[j] = _mm256_dpbusd_epi32(d[j], u, v[j]);
        if CORR {
            s[j] = _mm256_dpbusd_epi32(s[j], _mm256_set1_epi8(1), v[j]);
        }
    }
}

/// [`dense_s8`] with (`CORR`) or without the column-sum correction.
///
/// # Safety
/// As for [`dense_s8`]; without `CORR`, `zp` in `-128..=127` and every `x[i] >= zp`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn dense_s8_with<const CORR: bool>(
    x: &[i8],
    zp: i32,
    w: &[i8],
    stride: usize,
    o0: usize,
    acc: &mut [i32],
) {
    // Opaque to the optimiser: with `u = x - splat(-128)` visible, LLVM (rustc 1.95) never
    // finishes compiling the `vpdpbusd` loops below.
    let base = core::hint::black_box(_mm512_set1_epi8(if CORR { -128 } else { zp as i8 }));
    let corr = _mm512_set1_epi32(128i32.wrapping_add(zp));
    let (n_in, n_out) = (x.len(), acc.len());
    // Whole quads of inputs, then the last 1..3 inputs (zero rows beyond).
    let (full, rest) = (n_in / 4 * 4, n_in % 4);
    let wp = w.as_ptr();
    let mut o = 0;
    while n_out - o >= 64 {
        let at = o0 + o;
        let (mut d, mut s) = ([_mm512_setzero_si512(); 4], [_mm512_setzero_si512(); 4]);
        for i in (0..full).step_by(4) {
            // SAFETY: rows i..i + 4 (< IN) hold `stride >= at + 64` bytes each.
            unsafe {
                step512::<CORR>(
                    &mut d,
                    &mut s,
                    quad(x, i, base),
                    wp.add(i * stride + at),
                    stride,
                    4,
                )
            };
        }
        if rest > 0 {
            // SAFETY: as above, for the rows that exist.
            unsafe {
                let p = wp.add(full * stride + at);
                step512::<CORR>(&mut d, &mut s, quad(x, full, base), p, stride, rest)
            };
        }
        let (d, s) = (unquad512(d), unquad512(s));
        for l in 0..4 {
            let p = acc[o + 16 * l..o + 16 * l + 16].as_mut_ptr();
            // SAFETY: p holds 16 i32.
            let mut y = _mm512_add_epi32(unsafe { _mm512_loadu_si512(p.cast()) }, d[l]);
            if CORR {
                y = _mm512_sub_epi32(y, _mm512_mullo_epi32(corr, s[l]));
            }
            // SAFETY: as above.
            unsafe { _mm512_storeu_si512(p.cast(), y) };
        }
        o += 64;
    }
    let corr = _mm512_castsi512_si256(corr);
    while o < n_out {
        let (at, n) = (o0 + o, (n_out - o).min(32));
        let m = mask32(n);
        let (mut d, mut s) = ([_mm256_setzero_si256(); 4], [_mm256_setzero_si256(); 4]);
        let u = |i: usize| _mm512_castsi512_si256(quad(x, i, base));
        for i in (0..full).step_by(4) {
            // SAFETY: n bytes readable at rows i..i + 4 (< IN), column at (at + n <= stride).
            unsafe { step256::<CORR>(&mut d, &mut s, u(i), wp.add(i * stride + at), stride, 4, m) };
        }
        if rest > 0 {
            // SAFETY: as above, for the rows that exist.
            unsafe {
                let p = wp.add(full * stride + at);
                step256::<CORR>(&mut d, &mut s, u(full), p, stride, rest, m)
            };
        }
        let (d, s) = (unquad256(d), unquad256(s));
        let p = acc[o..o + n].as_mut_ptr();
        for k in 0..4 {
            let mk = mask8(n.saturating_sub(8 * k));
            let pk = p.wrapping_add(8 * k);
            // SAFETY: the first popcount(mk) of the 8 values at pk are within acc[o..o + n];
            // masked-off lanes are not accessed.
            let mut y = _mm256_add_epi32(unsafe { _mm256_maskz_loadu_epi32(mk, pk) }, d[k]);
            if CORR {
                y = _mm256_sub_epi32(y, _mm256_mullo_epi32(corr, s[k]));
            }
            // SAFETY: as above.
            unsafe { _mm256_mask_storeu_epi32(pk, mk, y) };
        }
        o += n;
    }
}

/// Requantisation of int8 accumulators, [`QuantArgs::output`] bit for bit: `out[k] =
/// (r.apply(acc[k]) + zp).clamp(-128, 127)`, `r = pos[k]` for `acc[k] >= 0`, else `neg[k]`
/// ([`Requant::apply`]: TFLite's doubling high multiply and rounding shift, in wrapping i32
/// as an optimised build computes them, whatever the multiplier and shift), 16 lanes at a
/// time with 64-bit products of the even and odd lanes.
///
/// [`QuantArgs::output`]: crate::kernels::conv2d::QuantArgs::output
///
/// # Safety
/// The CPU must have the features of [`super::x512::available`]; `out.len() == acc.len()`
/// and `pos`, `neg` at least as long.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(crate) unsafe fn requant_s8(
    acc: &[i32],
    pos: &[Requant],
    neg: &[Requant],
    zp: i32,
    out: &mut [i8],
) {
    let n = acc.len().min(out.len()).min(pos.len()).min(neg.len());
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let (zero, one) = (_mm512_setzero_si512(), _mm512_set1_epi32(1));
    let min = _mm512_set1_epi32(i32::MIN);
    let (nudge_pos, nudge_neg) = (_mm512_set1_epi64(1 << 30), _mm512_set1_epi64(1 - (1 << 30)));
    let low31 = _mm512_set1_epi64((1 << 31) - 1);
    // (multipliers, shifts) of `k` channels from `c`, from the `repr(C)` pairs.
    let pairs = |r: &[Requant], c: usize, k: usize| -> (__m512i, __m512i) {
        let p = r[c..c + k].as_ptr().cast::<i32>();
        // SAFETY: 2 k i32 readable at p (k Requants of two i32 each); masked-off lanes are
        // not accessed.
        let (a, b) = unsafe {
            (
                _mm512_maskz_loadu_epi32(mask16(2 * k), p),
                _mm512_maskz_loadu_epi32(mask16((2 * k).saturating_sub(16)), p.wrapping_add(16)),
            )
        };
        (
            _mm512_permutex2var_epi32(a, even, b),
            _mm512_permutex2var_epi32(a, odd, b),
        )
    };
    // (x a + nudge) / 2^31 truncated toward zero, in the 64-bit lanes (of the low halves of
    // x and a).
    let high_mul = |x: __m512i, a: __m512i| -> __m512i {
        let ab = _mm512_mul_epi32(x, a);
        let neg = _mm512_cmplt_epi64_mask(ab, zero);
        let q = _mm512_add_epi64(ab, _mm512_mask_blend_epi64(neg, nudge_pos, nudge_neg));
        let q = _mm512_add_epi64(q, _mm512_and_si512(_mm512_srai_epi64::<63>(q), low31));
        _mm512_srai_epi64::<31>(q)
    };
    let mut c = 0;
    while c < n {
        let k = (n - c).min(16);
        let m = mask16(k);
        // SAFETY: k values readable at c; masked-off lanes are not accessed.
        let v = unsafe { _mm512_maskz_loadu_epi32(m, acc.as_ptr().add(c)) };
        let (mp, sp) = pairs(pos, c, k);
        let (mn, sn) = pairs(neg, c, k);
        let is_neg = _mm512_cmplt_epi32_mask(v, zero);
        let mult = _mm512_mask_blend_epi32(is_neg, mp, mn);
        let shift = _mm512_mask_blend_epi32(is_neg, sp, sn);
        // `wrapping_shl(max(shift, 0))`, then the right shift `min(max(-shift, 0), 31)`.
        let left = _mm512_and_si512(_mm512_max_epi32(shift, zero), _mm512_set1_epi32(31));
        let right = _mm512_min_epi32(
            _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero),
            _mm512_set1_epi32(31),
        );
        let x = _mm512_sllv_epi32(v, left);
        // Saturating rounding doubling high multiply.
        let lo = high_mul(x, mult);
        let hi = high_mul(_mm512_srli_epi64::<32>(x), _mm512_srli_epi64::<32>(mult));
        let h = _mm512_mask_blend_epi32(0xaaaa, lo, _mm512_slli_epi64::<32>(hi));
        let both_min = _mm512_cmpeq_epi32_mask(x, min) & _mm512_cmpeq_epi32_mask(mult, min);
        let h = _mm512_mask_mov_epi32(h, both_min, _mm512_set1_epi32(i32::MAX));
        // Rounding divide by 2^right.
        let mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
        let half = _mm512_srai_epi32::<1>(mask);
        let threshold = _mm512_mask_add_epi32(half, _mm512_cmplt_epi32_mask(h, zero), half, one);
        let above = _mm512_cmpgt_epi32_mask(_mm512_and_si512(h, mask), threshold);
        let r = _mm512_srav_epi32(h, right);
        let r = _mm512_mask_add_epi32(r, above, r, one);
        let y = _mm512_add_epi32(r, _mm512_set1_epi32(zp));
        let y = _mm512_max_epi32(y, _mm512_set1_epi32(-128));
        let y = _mm512_min_epi32(y, _mm512_set1_epi32(127));
        // SAFETY: k bytes writable at c; masked-off lanes are not accessed.
        unsafe { _mm_mask_storeu_epi8(out.as_mut_ptr().add(c).cast(), m, _mm512_cvtepi32_epi8(y)) };
        c += k;
    }
}

/// Loads up to 16 weights widened to f32.
pub(crate) trait Wide16: Copy {
    /// The lanes of `m` from `p`, the others zero.
    ///
    /// # Safety
    /// The lanes of `m` readable at `p`; the features of [`super::x512::available`].
    unsafe fn load16(p: *const Self, m: u16) -> __m512;
}

impl Wide16 for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const Self, m: u16) -> __m512 {
        // SAFETY: masked-off lanes are not accessed; the caller guarantees the others.
        unsafe { _mm512_maskz_loadu_ps(m, p) }
    }
}

impl Wide16 for f16 {
    #[inline(always)]
    unsafe fn load16(p: *const Self, m: u16) -> __m512 {
        // SAFETY: as for f32 (16-bit lanes); F16C/AVX-512F widen.
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p.cast())) }
    }
}

/// Dense layer, weights `[IN][OUT]`: `acc[o] += sum_i x[i] w[i OUT + o]` (`OUT = acc.len()`),
/// each output summed in `P` interleaved partial sums (`i mod P`; the first starts from
/// `acc[o]`) added pairwise at the end, so `V x P = 8` FMA chains run at once: blocks of 64
/// outputs with 2 partial sums, then up to 32 with 4.
///
/// # Safety
/// The CPU must have the features of [`super::x512::available`];
/// `w.len() >= x.len() * acc.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(crate) unsafe fn dense_f32<W: Wide16>(x: &[f32], w: &[W], acc: &mut [f32]) {
    debug_assert!(w.len() >= x.len() * acc.len());
    let out = acc.len();
    let mut o = 0;
    while out - o >= 64 {
        // SAFETY: forwarded; o + 64 <= out.
        unsafe { dense_f32_block::<W, 4, 2>(x, w, acc, o, 64) };
        o += 64;
    }
    while o < out {
        let n = (out - o).min(32);
        // SAFETY: forwarded; o + n <= out.
        unsafe { dense_f32_block::<W, 2, 4>(x, w, acc, o, n) };
        o += n;
    }
}

/// Outputs `o..o + n` (`n <= 16 V`) of [`dense_f32`] in `V` vectors and `P` partial sums.
///
/// # Safety
/// As for [`dense_f32`]; `o + n <= acc.len()`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn dense_f32_block<W: Wide16, const V: usize, const P: usize>(
    x: &[f32],
    w: &[W],
    acc: &mut [f32],
    o: usize,
    n: usize,
) {
    let stride = acc.len();
    let m: [u16; V] = core::array::from_fn(|v| mask16(n.saturating_sub(16 * v)));
    let (wp, ap) = (w.as_ptr(), acc.as_mut_ptr());
    let mut a = [[_mm512_setzero_ps(); V]; P];
    for v in 0..V {
        // SAFETY: the lanes of m[v] are within acc[o..o + n]; others are not accessed.
        a[0][v] = unsafe { _mm512_maskz_loadu_ps(m[v], ap.wrapping_add(o + 16 * v)) };
    }
    let step = |a: &mut [__m512; V], i: usize| {
        let xi = _mm512_set1_ps(x[i]);
        for v in 0..V {
            // SAFETY: lanes of m[v] of row i (< IN) at column o + 16 v are within w;
            // masked-off lanes are not accessed.
            let wv = unsafe { W::load16(wp.wrapping_add(i * stride + o + 16 * v), m[v]) };
            a[v] = _mm512_fmadd_ps(wv, xi, a[v]);
        }
    };
    let full = x.len() / P * P;
    let mut i = 0;
    while i < full {
        for (p, ap) in a.iter_mut().enumerate() {
            step(ap, i + p);
        }
        i += P;
    }
    for i in full..x.len() {
        step(&mut a[0], i);
    }
    let mut width = P;
    while width > 1 {
        width /= 2;
        let (lo, hi) = a.split_at_mut(width);
        for (x, y) in lo.iter_mut().zip(&*hi) {
            for (x, y) in x.iter_mut().zip(y) {
                *x = _mm512_add_ps(*x, *y);
            }
        }
    }
    for v in 0..V {
        // SAFETY: as for the load above.
        unsafe { _mm512_mask_storeu_ps(ap.wrapping_add(o + 16 * v), m[v], a[0][v]) };
    }
}

#[cfg(test)]
mod tests {
    //! The kernels against the scalar references, bit for bit (int8 and the preprocessing)
    //! or to rounding (f32 dense). Each test runs the public API (whatever path it takes on
    //! this machine and `RUNTIME_SIMD`) and, when the CPU has AVX-512, the kernels directly
    //! (so `RUNTIME_SIMD=avx2` still tests them); without AVX-512 it checks that the dispatch
    //! does not pick them.

    use super::super::{Path, active, active_s8, x512};
    use super::*;
    use crate::kernels::conv2d::QuantArgs;
    use crate::kernels::dense::Dense;
    use crate::kernels::pool::{Pool2d, PoolKind};
    use crate::kernels::preprocess::{Preprocess, log1p_count};
    use crate::quant::Requant;
    use std::vec;
    use std::vec::Vec;

    use crate::testutil::Rng;

    /// True when this CPU can run the kernels; otherwise checks that nothing dispatches to
    /// them.
    fn have_avx512() -> bool {
        let yes = x512::available();
        if !yes {
            assert_ne!(active(), Path::Avx512);
            assert_ne!(active_s8(), Path::Avx512);
        }
        yes
    }

    /// The reference quantised input of count `n` (what the scalar preprocessing computes);
    /// `None` where its `+ zero_point` would overflow, which panics in builds with overflow
    /// checks (optimised builds wrap, as the table does: see `quant_table`).
    fn quantized(n: u16, scale: f32, q: QParams) -> Option<i8> {
        let r = libm::roundf(log1p_count(n) * scale / q.scale) as i32;
        if cfg!(debug_assertions) && r.checked_add(q.zero_point).is_none() {
            return None;
        }
        Some(q.quantize(log1p_count(n) * scale))
    }

    /// Values that stress rounding and conversion: ties, neighbours of ties, the int32
    /// limits, infinities, NaN, subnormals, then random bit patterns.
    fn awkward_floats(rng: &mut Rng) -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            -2.5,
            0.499_999_97,
            -0.499_999_97,
            0.500_000_06,
            127.5,
            -128.5,
            8_388_607.5,
            -8_388_607.5,
            8_388_608.0,
            16_777_217.0,
            2_147_483_520.0,
            2_147_483_648.0,
            -2_147_483_648.0,
            -2_147_483_904.0,
            1e-45,
            -1e-45,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
        ];
        for k in 0..300 {
            let t = (k as f32 - 150.0) + 0.5;
            v.extend([
                t,
                f32::from_bits(t.to_bits() + 1),
                f32::from_bits(t.to_bits() - 1),
            ]);
        }
        v.extend((0..20_000).map(|_| f32::from_bits(rng.next() as u32)));
        v.extend((0..20_000).map(|_| (rng.next() >> 40) as f32 / 65_536.0 - 128.0));
        while v.len() % 16 != 0 {
            v.push(0.25);
        }
        v
    }

    #[test]
    fn rounding_and_conversion_match_libm_and_as() {
        if !have_avx512() {
            return;
        }
        let v = awkward_floats(&mut Rng(11));
        for chunk in v.chunks_exact(16) {
            let (mut r, mut i) = ([0f32; 16], [0i32; 16]);
            // SAFETY: AVX-512 checked; 16 values each.
            unsafe {
                let x = _mm512_loadu_ps(chunk.as_ptr());
                _mm512_storeu_ps(r.as_mut_ptr(), roundf(x));
                _mm512_storeu_si512(i.as_mut_ptr().cast(), as_i32(x));
            }
            for k in 0..16 {
                let want = libm::roundf(chunk[k]);
                assert!(
                    r[k].to_bits() == want.to_bits() || (r[k].is_nan() && want.is_nan()),
                    "roundf({:e}): {:e} vs {want:e}",
                    chunk[k],
                    r[k]
                );
                assert_eq!(i[k], chunk[k] as i32, "{:e} as i32", chunk[k]);
            }
        }
    }

    /// Band scales and quantisation parameters, ordinary and extreme.
    fn scales_and_params(rng: &mut Rng) -> (Vec<f32>, Vec<QParams>) {
        let mut scales = vec![
            1.0,
            0.37,
            2.5,
            -1.3,
            0.0,
            -0.0,
            1e-40,
            1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        scales.extend((0..200).map(|_| (rng.next() >> 40) as f32 / (1u64 << 22) as f32 - 1.0));
        let mut params = vec![
            QParams::from_range(0.0, 4.0),
            QParams::from_range(-1.0, 6.0),
        ];
        for zp in [-128, 127, 0, 37, -100] {
            for scale in [0.05, 4.0 / 255.0, 0.02173, 1e-6, 1e6, 0.0, -0.03, f32::NAN] {
                params.push(QParams {
                    scale,
                    zero_point: zp,
                });
            }
        }
        for zp in [1000, -1000, i32::MAX, i32::MIN, i32::MAX - 3] {
            params.push(QParams {
                scale: 0.01,
                zero_point: zp,
            });
        }
        (scales, params)
    }

    #[test]
    fn tables_match_the_scalar_preprocessing() {
        if !have_avx512() {
            return;
        }
        let (scales, params) = scales_and_params(&mut Rng(12));
        let mut checked = 0;
        for &scale in &scales {
            for &q in &params {
                let mut t = [0i8; 256];
                // SAFETY: AVX-512 checked.
                unsafe { quant_table(scale, q, &mut t) };
                for n in 0..256u16 {
                    if let Some(want) = quantized(n, scale, q) {
                        assert_eq!(t[usize::from(n)], want, "n {n} scale {scale:e} {q:?}");
                        checked += 1;
                    }
                }
            }
            for max in [false, true] {
                let mut t = [0f32; 256];
                // SAFETY: AVX-512 checked.
                unsafe { f32_table(scale, max, &mut t) };
                for n in 0..256u16 {
                    let mut want = log1p_count(n) * scale;
                    if max && want.is_nan() {
                        want = f32::NEG_INFINITY;
                    }
                    assert_eq!(t[usize::from(n)].to_bits(), want.to_bits(), "{n} {scale:e}");
                }
            }
        }
        assert!(checked > scales.len() * params.len() * 200);
    }

    /// Count cubes: realistic (mostly 0-5, some up to 40), zeros, any byte, the full u16
    /// range, and realistic with a few counts of 256 and more in some bands.
    fn count_sets(rng: &mut Rng, len: usize) -> Vec<Vec<u16>> {
        let realistic = |rng: &mut Rng| -> u16 {
            if rng.below(20) == 0 {
                rng.below(41) as u16
            } else {
                rng.below(6) as u16
            }
        };
        let mut sets = vec![
            (0..len).map(|_| realistic(rng)).collect::<Vec<u16>>(),
            vec![0; len],
            (0..len).map(|_| rng.below(256) as u16).collect(),
            (0..len).map(|_| rng.below(64) as u16).collect(),
            (0..len).map(|_| rng.below(128) as u16).collect(),
            (0..len).map(|_| rng.next() as u16).collect(),
        ];
        let mut big: Vec<u16> = (0..len).map(|_| realistic(rng)).collect();
        for _ in 0..(len / 97).max(1) {
            let at = rng.below(len as u64 / 2 + 1) as usize;
            big[at.min(len - 1)] = 256 + rng.below(60_000) as u16;
        }
        big[len - 1] = 256;
        sets.push(big);
        sets
    }

    #[test]
    fn counts_s8_matches_the_scalar_preprocessing() {
        let mut rng = Rng(13);
        let have = have_avx512();
        for plane in [1, 2, 31, 32, 33, 63, 64, 65, 130, 2500] {
            for counts in count_sets(&mut rng, 3 * plane) {
                for (scale, q) in [
                    ([1.0, 0.8, -0.6], QParams::from_range(0.0, 4.0)),
                    (
                        [2.0, 1e-3, 0.0],
                        QParams {
                            scale: 0.01,
                            zero_point: 127,
                        },
                    ),
                    (
                        [0.5, 3.0, 1.0],
                        QParams {
                            scale: 1e-4,
                            zero_point: -128,
                        },
                    ),
                ] {
                    let p = Preprocess::<3> {
                        band_scale: scale,
                        ..Preprocess::log1p()
                    };
                    let want: Vec<i8> = counts
                        .iter()
                        .enumerate()
                        .map(|(i, &n)| q.quantize(log1p_count(n) * scale[i / plane]))
                        .collect();
                    let mut got = vec![0i8; counts.len()];
                    p.counts_s8(&counts, q, &mut got).unwrap();
                    assert_eq!(got, want, "plane {plane}");
                    if have {
                        got.fill(0);
                        for (b, &s) in scale.iter().enumerate() {
                            let r = b * plane..(b + 1) * plane;
                            // SAFETY: AVX-512 checked; equal lengths.
                            unsafe {
                                quantize_s8(&counts[r.clone()], s, q, &mut got[r], |n| {
                                    q.quantize(log1p_count(n) * s)
                                });
                            }
                        }
                        assert_eq!(got, want, "kernel, plane {plane}");
                    }
                }
            }
        }
        let p = Preprocess::<3>::log1p();
        let q = QParams::from_range(0.0, 4.0);
        assert!(p.counts_s8(&[0u16; 9], q, &mut [0; 8]).is_err());
        assert!(p.counts_s8(&[0u16; 10], q, &mut [0; 10]).is_err());
        assert_eq!(p.counts_s8::<u16>(&[], q, &mut []), Ok(()));
    }

    /// `pooled_s8` and `pooled_f32` of `B` bands of `H x W` with a `K x K` window against
    /// elementwise preprocessing followed by the scalar pooling, and (for K = 2, when the CPU
    /// has AVX-512) the kernels called directly.
    fn pooled_case<const B: usize, const H: usize, const W: usize, const K: usize>(
        rng: &mut Rng,
        have: bool,
    ) {
        let len = Pool2d::<B, H, W, K>::IN_LEN;
        let out_len = Pool2d::<B, H, W, K>::OUT_LEN;
        let (ow, per_band) = (W / K, Pool2d::<1, H, W, K>::OUT_LEN);
        let mut scale_sets: Vec<[f32; B]> = vec![
            core::array::from_fn(|b| 0.6 + 0.15 * b as f32),
            core::array::from_fn(|b| if b % 2 == 0 { -1.2 } else { 0.0 }),
            core::array::from_fn(|b| [f32::INFINITY, f32::NAN, -0.0, 1e-30][b % 4]),
        ];
        scale_sets.push(core::array::from_fn(|_| (rng.next() >> 40) as f32 / 4e6));
        let params = [
            QParams::from_range(0.0, 4.0),
            QParams {
                scale: 0.03,
                zero_point: -128,
            },
            QParams {
                scale: 0.03,
                zero_point: 127,
            },
            QParams {
                scale: 1e-5,
                zero_point: 5,
            },
            QParams {
                scale: 0.11,
                zero_point: -3,
            },
        ];
        for counts in count_sets(rng, len) {
            for scale in &scale_sets {
                let p = Preprocess::<B> {
                    band_scale: *scale,
                    ..Preprocess::log1p()
                };
                // f32: elementwise preprocessing (scalar), then the scalar pooling.
                let mut x = vec![0f32; len];
                p.counts_f32(&counts, &mut x).unwrap();
                for kind in [PoolKind::Avg, PoolKind::Max] {
                    let (mut want, mut got) = (vec![0f32; out_len], vec![0f32; out_len]);
                    match kind {
                        PoolKind::Avg => Pool2d::<B, H, W, K>::avg_f32(&x, &mut want).unwrap(),
                        PoolKind::Max => Pool2d::<B, H, W, K>::max_f32(&x, &mut want).unwrap(),
                    }
                    p.pooled_f32::<_, H, W, K>(kind, &counts, &mut got).unwrap();
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "f32 {kind:?} {H}x{W}/{K} {scale:?}"
                    );
                    if have && K == 2 {
                        got.fill(1.0);
                        for (b, o) in got.chunks_exact_mut(per_band).enumerate() {
                            let c = &counts[b * H * W..(b + 1) * H * W];
                            let max = kind == PoolKind::Max;
                            let mut t = [0f32; 256];
                            let w = &want[b * per_band..(b + 1) * per_band];
                            // SAFETY: AVX-512 checked; K = 2 shapes as `pooled_f32` passes.
                            unsafe {
                                f32_table(scale[b], max, &mut t);
                                pool2_f32(c, W, ow, &t, max, o, |oy, row| {
                                    row.copy_from_slice(&w[oy * ow..(oy + 1) * ow])
                                });
                            }
                        }
                        assert_eq!(bits(&got), bits(&want), "f32 kernel {kind:?} {H}x{W}");
                    }
                }
                // int8: elementwise quantisation, then the scalar pooling.
                for q in params {
                    let xq: Vec<i8> = counts
                        .iter()
                        .enumerate()
                        .map(|(i, &n)| q.quantize(log1p_count(n) * scale[i / (H * W)]))
                        .collect();
                    for kind in [PoolKind::Avg, PoolKind::Max] {
                        let (mut want, mut got) = (vec![0i8; out_len], vec![0i8; out_len]);
                        match kind {
                            PoolKind::Avg => Pool2d::<B, H, W, K>::avg_s8(&xq, &mut want).unwrap(),
                            PoolKind::Max => Pool2d::<B, H, W, K>::max_s8(&xq, &mut want).unwrap(),
                        }
                        p.pooled_s8::<_, H, W, K>(kind, &counts, q, &mut got)
                            .unwrap();
                        assert_eq!(got, want, "s8 {kind:?} {H}x{W}/{K} {scale:?} {q:?}");
                        if have && K == 2 {
                            got.fill(99);
                            let mut redone = 0;
                            for (b, o) in got.chunks_exact_mut(per_band).enumerate() {
                                let c = &counts[b * H * W..(b + 1) * H * W];
                                let w = &want[b * per_band..(b + 1) * per_band];
                                let (s, max) = (scale[b], kind == PoolKind::Max);
                                // SAFETY: AVX-512 checked; K = 2 shapes as `pooled_s8` passes.
                                unsafe {
                                    pool2_s8(c, W, ow, s, q, max, o, |oy, row, t| {
                                        redone += 1;
                                        // the kernel's table is whole by now
                                        for n in 0..256u16 {
                                            let want = q.quantize(log1p_count(n) * s);
                                            assert_eq!(t[usize::from(n)], want, "{n}");
                                        }
                                        row.copy_from_slice(&w[oy * ow..(oy + 1) * ow])
                                    });
                                }
                            }
                            assert_eq!(got, want, "s8 kernel {kind:?} {H}x{W} {q:?}");
                            // Rows are redone exactly when they hold a count of 256 or more.
                            let big_rows = (0..B * (H / 2))
                                .filter(|r| {
                                    let (b, oy) = (r / (H / 2), r % (H / 2));
                                    (0..2).any(|dy| {
                                        let at = b * H * W + (2 * oy + dy) * W;
                                        counts[at..at + 2 * ow].iter().any(|&n| n >= 256)
                                    })
                                })
                                .count();
                            assert_eq!(redone, big_rows);
                        }
                    }
                }
            }
        }
        let p = Preprocess::<B>::log1p();
        let mut short = vec![0i8; out_len - 1];
        let q = QParams::from_range(0.0, 4.0);
        let counts = vec![0u16; len];
        assert!(
            p.pooled_s8::<_, H, W, K>(PoolKind::Avg, &counts, q, &mut short)
                .is_err()
        );
        assert!(
            p.pooled_s8::<_, H, W, K>(PoolKind::Max, &counts[1..], q, &mut [0; 0])
                .is_err()
        );
        let mut short = vec![0f32; out_len + 1];
        assert!(
            p.pooled_f32::<_, H, W, K>(PoolKind::Avg, &counts, &mut short)
                .is_err()
        );
    }

    #[test]
    fn pooled_preprocessing_matches_the_scalar_path() {
        let mut rng = Rng(14);
        let have = have_avx512();
        pooled_case::<10, 50, 50, 2>(&mut rng, have);
        pooled_case::<2, 5, 6, 2>(&mut rng, have);
        pooled_case::<2, 7, 9, 2>(&mut rng, have);
        pooled_case::<1, 2, 2, 2>(&mut rng, have);
        pooled_case::<2, 3, 130, 2>(&mut rng, have);
        pooled_case::<1, 4, 66, 2>(&mut rng, have);
        pooled_case::<1, 6, 129, 2>(&mut rng, have);
        pooled_case::<2, 9, 10, 3>(&mut rng, have);
        pooled_case::<2, 5, 5, 1>(&mut rng, have);
        pooled_case::<1, 8, 8, 4>(&mut rng, have);
    }

    /// One int8 dense shape: the fast paths against the references for several zero
    /// points (both `dense_s8` modes), and the kernel directly on sub-blocks of outputs.
    fn dense_s8_case<const IN: usize, const OUT: usize>(rng: &mut Rng, have: bool) {
        let w = rng.i8s(IN * OUT);
        let b: Vec<i32> = (0..OUT)
            .map(|_| rng.below(200_001) as i32 - 100_000)
            .collect();
        let pos: Vec<Requant> = (0..OUT)
            .map(|_| Requant::from_real(10f64.powf(-4.0 + rng.below(1000) as f64 * 0.0046)))
            .collect();
        let neg: Vec<Requant> = pos
            .iter()
            .map(|r| Requant::from_real(r.to_real() * 0.1))
            .collect();
        let extremes = [vec![-128i8; IN], vec![127i8; IN]];
        for zp in [-128, 127, 0, -7, 5, -20, 300, -1000] {
            let mut inputs = vec![rng.i8s(IN)];
            // every input >= zp: `dense_s8` takes its uncorrected route
            if (-128..=127).contains(&zp) {
                // and all but one, which is zp - 1: the corrected route
                if zp > -128 {
                    let mut x: Vec<i8> = (0..IN)
                        .map(|_| (zp + rng.below((128 - zp) as u64) as i32) as i8)
                        .collect();
                    x[rng.below(IN as u64) as usize] = (zp - 1) as i8;
                    inputs.push(x);
                }
                inputs.push(
                    (0..IN)
                        .map(|_| (zp + rng.below((128 - zp) as u64) as i32) as i8)
                        .collect(),
                );
            }
            inputs.extend(extremes.iter().cloned());
            for x in &inputs {
                let (mut want, mut got) = (vec![0i32; OUT], vec![0i32; OUT]);
                Dense::<IN, OUT>::acc_s8(x, &w, &b, zp, &mut want).unwrap();
                Dense::<IN, OUT>::acc_s8_fast(x, &w, &b, zp, &mut got).unwrap();
                assert_eq!(got, want, "acc {IN}x{OUT} zp {zp}");
                if (-128..=127).contains(&zp) {
                    let q = QuantArgs {
                        input_zero_point: zp,
                        requant_pos: &pos,
                        requant_neg: &neg,
                        output_zero_point: 3,
                    };
                    let (mut want, mut got) = (vec![0i8; OUT], vec![0i8; OUT]);
                    Dense::<IN, OUT>::s8(x, &w, &b, &q, &mut want).unwrap();
                    Dense::<IN, OUT>::s8_fast(x, &w, &b, &q, &mut got).unwrap();
                    assert_eq!(got, want, "s8 {IN}x{OUT} zp {zp}");
                }
                if have {
                    for (o0, n) in [(0, OUT), (OUT / 3, OUT - OUT / 3), (OUT / 2, OUT / 4)] {
                        let mut got = b[o0..o0 + n].to_vec();
                        // SAFETY: AVX-512 checked; w is [IN][OUT], o0 + n <= OUT.
                        unsafe { dense_s8(x, zp, &w, OUT, o0, &mut got) };
                        assert_eq!(got, want[o0..o0 + n], "kernel {IN}x{OUT} {o0}+{n} zp {zp}");
                    }
                }
            }
        }
        assert!(
            Dense::<IN, OUT>::acc_s8_fast(&w[..IN.min(1)], &w, &b, 0, &mut vec![0; OUT]).is_err()
                || IN == 1
        );
        assert!(
            Dense::<IN, OUT>::acc_s8_fast(&w[..IN], &w[1..], &b, 0, &mut vec![0; OUT]).is_err()
        );
    }

    #[test]
    fn dense_s8_matches_the_reference() {
        let mut rng = Rng(15);
        let have = have_avx512();
        dense_s8_case::<1, 1>(&mut rng, have);
        dense_s8_case::<1, 17>(&mut rng, have);
        dense_s8_case::<5, 2>(&mut rng, have);
        dense_s8_case::<5, 32>(&mut rng, have);
        dense_s8_case::<3, 8>(&mut rng, have);
        dense_s8_case::<4, 9>(&mut rng, have);
        dense_s8_case::<289, 32>(&mut rng, have);
        dense_s8_case::<289, 2>(&mut rng, have);
        dense_s8_case::<289, 17>(&mut rng, have);
        dense_s8_case::<7, 64>(&mut rng, have);
        dense_s8_case::<6, 70>(&mut rng, have);
        dense_s8_case::<33, 100>(&mut rng, have);
        dense_s8_case::<512, 256>(&mut rng, have);
        dense_s8_case::<81, 130>(&mut rng, have);
    }

    #[test]
    fn requantisation_matches_quant_args_output() {
        if !have_avx512() {
            return;
        }
        let mut rng = Rng(17);
        let n = 4099;
        let mut acc: Vec<i32> = (0..n)
            .map(|k| match k % 5 {
                0 => rng.next() as i32,
                1 => (rng.next() as i32) >> 12,
                _ => (rng.below(2_000_001) as i32) - 1_000_000,
            })
            .collect();
        acc[..8].copy_from_slice(&[i32::MIN, i32::MAX, 0, -1, 1, i32::MIN + 1, -2, 2]);
        let requant = |rng: &mut Rng| match rng.below(8) {
            // any bits: multipliers and shifts no loader accepts, shifts outside [-31, 30]
            0 => Requant {
                multiplier: rng.next() as i32,
                shift: [i32::MIN, -40, -32, -31, 0, 30, 31, 32, 45][rng.below(9) as usize],
            },
            1 => Requant {
                multiplier: [i32::MIN, i32::MAX, 0, 1 << 30][rng.below(4) as usize],
                shift: rng.below(63) as i32 - 31,
            },
            _ => Requant::from_real(10f64.powf(-9.0 + rng.below(10_000) as f64 * 0.0011)),
        };
        let pos: Vec<Requant> = (0..n).map(|_| requant(&mut rng)).collect();
        let neg: Vec<Requant> = (0..n).map(|_| requant(&mut rng)).collect();
        for zp in [-128, 0, 5, 127] {
            let q = QuantArgs {
                input_zero_point: 0,
                requant_pos: &pos,
                requant_neg: &neg,
                output_zero_point: zp,
            };
            for len in [n, 1, 15, 16, 17, 33] {
                let mut got = vec![0i8; len];
                // SAFETY: AVX-512 checked; tables as long as acc.
                unsafe { requant_s8(&acc[..len], &pos, &neg, zp, &mut got) };
                for (k, &a) in acc[..len].iter().enumerate() {
                    let r = if a >= 0 { pos[k] } else { neg[k] };
                    // (+ zp overflows, and panics with overflow checks, only for accumulators
                    // that saturate either way)
                    if cfg!(debug_assertions) && r.apply(a).checked_add(zp).is_none() {
                        continue;
                    }
                    assert_eq!(got[k], q.output(k, a), "acc {a} {r:?} zp {zp}");
                }
            }
        }
    }

    /// One float dense shape: the fast path against the reference within rounding, f32 and
    /// f16 weights, and the kernel directly.
    fn dense_f32_case<const IN: usize, const OUT: usize>(rng: &mut Rng, have: bool) -> usize {
        let (x, w, b) = (rng.f32s(IN), rng.f32s(IN * OUT), rng.f32s(OUT));
        let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let tol = 8.0 * f32::EPSILON * (IN + 1) as f32;
        let mut differ = 0;
        let mut check = |got: &[f32], want: &[f32], what: &str| {
            for (g, r) in got.iter().zip(want) {
                assert!((g - r).abs() <= tol, "{what} {IN}x{OUT}: {g} vs {r}");
                differ += usize::from(g.to_bits() != r.to_bits());
            }
        };
        let (mut want, mut got) = (vec![0f32; OUT], vec![0f32; OUT]);
        Dense::<IN, OUT>::f32(&x, &w, &b, 0.3, &mut want).unwrap();
        Dense::<IN, OUT>::f32_fast(&x, &w, &b, 0.3, &mut got).unwrap();
        check(&got, &want, "f32");
        let (mut want_h, mut got_h) = (vec![0f32; OUT], vec![0f32; OUT]);
        Dense::<IN, OUT>::f16(&x, &wh, &b, 0.3, &mut want_h).unwrap();
        Dense::<IN, OUT>::f32_fast(&x, &wh, &b, 0.3, &mut got_h).unwrap();
        check(&got_h, &want_h, "f16");
        if have {
            let (mut want, mut got) = (vec![0f32; OUT], b.clone());
            Dense::<IN, OUT>::f32(&x, &w, &b, 1.0, &mut want).unwrap();
            // SAFETY: AVX-512 checked; w is [IN][OUT].
            unsafe { dense_f32(&x, &w, &mut got) };
            check(&got, &want, "f32 kernel");
            let mut got = b.clone();
            Dense::<IN, OUT>::f16(&x, &wh, &b, 1.0, &mut want).unwrap();
            // SAFETY: as above.
            unsafe { dense_f32(&x, &wh, &mut got) };
            check(&got, &want, "f16 kernel");
        }
        differ
    }

    #[test]
    fn dense_f32_matches_the_reference() {
        let mut rng = Rng(16);
        let have = have_avx512();
        let differ = dense_f32_case::<1, 1>(&mut rng, have)
            + dense_f32_case::<1, 17>(&mut rng, have)
            + dense_f32_case::<5, 2>(&mut rng, have)
            + dense_f32_case::<5, 32>(&mut rng, have)
            + dense_f32_case::<289, 32>(&mut rng, have)
            + dense_f32_case::<289, 2>(&mut rng, have)
            + dense_f32_case::<289, 17>(&mut rng, have)
            + dense_f32_case::<6, 70>(&mut rng, have)
            + dense_f32_case::<512, 256>(&mut rng, have)
            + dense_f32_case::<81, 130>(&mut rng, have);
        if have {
            assert!(
                differ > 100,
                "only {differ} outputs differ: did the kernels run?"
            );
        }
    }
}
