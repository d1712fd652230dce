//! x86-64 AVX-512 preprocessing of raw counts ([`quant_table`], [`quantize_s8`],
//! [`pool2_s8`], [`f32_table`], [`pool2_f32`]), the fast paths of
//! [`Preprocess`](crate::kernels::preprocess::Preprocess).
//!
//! Every kernel needs AVX-512 F, BW, VL, VNNI and VBMI plus AVX2, FMA and F16C
//! (level 2 of [`super::cpu::x86_level`]); the public API calls them only on [`super::Path::Avx512`].
//!
//! A count `n < 256` maps to its band's network input through a 256-entry table built with
//! vector arithmetic that repeats the scalar operations one for one (so the table holds the
//! reference's bits; int8 tables 64 entries at a time, as a band needs them). Rows of counts
//! are then looked up 64 at a time with `vpermb` (all counts below 64) or two `vpermi2b`
//! (int8), 16 at a time with `vpermi2ps` or a gather (f32), and pooled in registers. Counts
//! of 256 and more are rare: the rows (or elements) holding one are redone by the caller's
//! scalar code.
//!
//! Unit tests at the end check each kernel against the scalar reference, directly whenever
//! the CPU has AVX-512 (also under `RUNTIME_SIMD=avx2`) and through the public API.

use core::arch::x86_64::*;

use super::super::log1p_table::LOG1P_BITS;
use super::Lanes;
use super::x512_util::{mask16, mask32, mask64};
use crate::quant::QParams;

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
/// The CPU must have the features of level 2 of [`super::cpu::x86_level`].
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
/// The CPU must have the features of level 2 of [`super::cpu::x86_level`].
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
unsafe fn load64<N: Lanes>(p: *const N, n: usize) -> (__m512i, __m512i) {
    // SAFETY: the first n counts readable; `load32` reads at most the first n of each half.
    unsafe {
        (
            load32(p, n),
            load32(p.wrapping_add(32), n.saturating_sub(32)),
        )
    }
}

/// Counts `p[..32]` (the first `n` of them; the rest read as 0) as one vector of 16-bit
/// lanes: u16 as they are, u8 zero-extended.
///
/// # Safety
/// `p..p + n` readable (nothing past it is accessed).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
unsafe fn load32<N: Lanes>(p: *const N, n: usize) -> __m512i {
    // SAFETY: masked-off lanes are not accessed; the caller guarantees the first n values.
    unsafe {
        if N::WIDE {
            _mm512_maskz_loadu_epi16(mask32(n), p.cast())
        } else {
            _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(mask32(n), p.cast()))
        }
    }
}

/// `out[i] = table[counts[i]]` for counts below 256, `table` the [`quant_table`] of `scale`
/// and `q` (built as far as the counts need, [`Table`]), and `slow(counts[i])` for the others
/// ([`Preprocess::counts_s8`](crate::kernels::preprocess::Preprocess::counts_s8) of one band).
///
/// # Safety
/// The CPU must have the features of level 2 of [`super::cpu::x86_level`]; `out.len() == counts.len()`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
pub(crate) unsafe fn quantize_s8<N: Lanes>(
    counts: &[N],
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
        let (a, b) = unsafe { load64(counts.as_ptr().add(c), n) };
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
                    *y = slow(x.into());
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
/// The CPU must have the features of level 2 of [`super::cpu::x86_level`]; `ow >= 1`, `2 ow <= w` and
/// `plane.len() >= (2 (out.len() / ow) - 1) w + 2 ow`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")]
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
            let ((a0, b0), (a1, b1)) =
                unsafe { (load64(r0.as_ptr().add(c), n), load64(r1.as_ptr().add(c), n)) };
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
pub(crate) unsafe fn pool2_f32<N: Lanes>(
    plane: &[N],
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
            let (a, b) = unsafe { (load32(r0.as_ptr().add(c), n), load32(r1.as_ptr().add(c), n)) };
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

#[cfg(test)]
mod tests {
    //! The preprocessing kernels against the scalar references, bit for bit. Each test runs
    //! the public API (whatever path it takes on this machine and `RUNTIME_SIMD`) and, when
    //! the CPU has AVX-512, the kernels directly (so `RUNTIME_SIMD=avx2` still tests them);
    //! without AVX-512 it checks that the dispatch does not pick them.

    use super::super::x512_util::have_avx512;
    use super::*;
    use crate::kernels::pool::{Pool2d, PoolKind};
    use crate::kernels::preprocess::{Preprocess, log1p_count};
    use std::vec;
    use std::vec::Vec;

    use crate::testutil::Rng;

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
        crate::testutil::on_every_engine(|| {
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
        });
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
        crate::testutil::on_every_engine(|| {
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
        });
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
        crate::testutil::on_every_engine(|| {
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
        });
    }
}
