//! x86-64 AVX-512 dense layers, the fast paths of [`Dense`](crate::kernels::dense::Dense):
//! int8 by VNNI `vpdpbusd` on quads of inputs ([`dense_s8`], bit-identical to the reference:
//! exact, wrapping i32 sums) and a vector requantisation ([`requant_s8`], TFLite's fixed
//! point bit for bit); f32 / f16 weights by FMA with several partial sums per output
//! ([`dense_f32`], differing from the reference only by rounding).
//!
//! Every kernel needs AVX-512 F, BW, VL, VNNI and VBMI plus AVX2, FMA and F16C
//! (level 2 of [`super::cpu::x86_level`]); the public API calls them only on [`super::Path::Avx512`].
//!
//! Unit tests at the end check each kernel against the scalar reference, directly whenever
//! the CPU has AVX-512 (also under `RUNTIME_SIMD=avx2`) and through the public API.

use core::arch::x86_64::*;

use super::x512_util::{mask8, mask16, mask32};
use crate::quant::Requant;
use half::f16;

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
/// The CPU must have the features of level 2 of [`super::cpu::x86_level`];
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
/// [`QuantArgs::output`]: crate::kernels::args::QuantArgs::output
///
/// # Safety
/// The CPU must have the features of level 2 of [`super::cpu::x86_level`]; `out.len() == acc.len()`
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
    /// The lanes of `m` readable at `p`; the features of level 2 of [`super::cpu::x86_level`].
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
/// The CPU must have the features of level 2 of [`super::cpu::x86_level`];
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
    //! The dense kernels against the scalar references, bit for bit (int8) or to rounding
    //! (f32 / f16 weights). Each test runs the public API (whatever path it takes on this
    //! machine and `RUNTIME_SIMD`) and, when the CPU has AVX-512, the kernels directly (so
    //! `RUNTIME_SIMD=avx2` still tests them); without AVX-512 it checks that the dispatch
    //! does not pick them.

    use super::super::x512_util::have_avx512;
    use super::*;
    use crate::kernels::args::QuantArgs;
    use crate::kernels::dense::Dense;
    use crate::quant::Requant;
    use std::vec;
    use std::vec::Vec;

    use crate::testutil::Rng;

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
        crate::testutil::on_every_engine(|| {
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
        });
    }

    #[test]
    fn requantisation_matches_quant_args_output() {
        crate::testutil::on_every_engine(|| {
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
        });
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
        crate::testutil::on_every_engine(|| {
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
        });
    }
}
