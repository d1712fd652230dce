//! x86-64 AVX2 int8 dense layers, the AVX2 twins of the int8 kernels of
//! [`super::x512_dense`] (same signatures, same results): int8 by `vpmaddwd` on pairs of
//! inputs ([`dense_s8`], exact wrapping i32 sums as the reference) and a vector
//! requantisation ([`requant_s8`], TFLite's fixed point bit for bit). Float dense layers on
//! this path run [`super::x86::dense_f32`].
//!
//! Every kernel needs AVX2, FMA and F16C (level 1 of [`super::cpu::x86_level`]); the public API calls
//! them only on [`super::Path::Avx2`].

use core::arch::x86_64::*;

use crate::quant::Requant;

/// int8 dense, outputs `o0..o0 + acc.len()` of `[IN][stride]` weights:
/// `acc[k] += sum_i (x[i] - zp) w[i stride + o0 + k]`, exact (wrapping) in i32 as the
/// reference. Pairs of inputs: the two weight rows' 16 outputs widened to i16 and
/// interleaved (`vpunpck{l,h}wd`), times the pair `(x[i] - zp, x[i + 1] - zp)` broadcast,
/// `vpmaddwd`; an odd last input pairs with 0.
///
/// # Safety
/// AVX2 available; `w.len() >= x.len() * stride`, `o0 + acc.len() <= stride`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dense_s8(
    x: &[i8],
    zp: i32,
    w: &[i8],
    stride: usize,
    o0: usize,
    acc: &mut [i32],
) {
    let n_in = x.len();
    let out = acc.len();
    let zero16 = [0i8; 16];
    let mut o = 0;
    while o < out {
        let n = (out - o).min(16);
        // Accumulators of outputs (0-3, 8-11) and (4-7, 12-15): the unpack's order.
        let (mut lo, mut hi) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        // 16 weights of row i from output o0 + o (the first n; zeros past them).
        let row = |i: usize, buf: &mut [i8; 16]| -> __m128i {
            let at = i * stride + o0 + o;
            if i >= n_in {
                // SAFETY: 16 readable bytes.
                unsafe { _mm_loadu_si128(zero16.as_ptr().cast()) }
            } else if n == 16 {
                // SAFETY: 16 weights readable at `at` (o0 + o + 16 <= stride).
                unsafe { _mm_loadu_si128(w[at..at + 16].as_ptr().cast()) }
            } else {
                buf[..n].copy_from_slice(&w[at..at + n]);
                // SAFETY: buf holds 16 bytes.
                unsafe { _mm_loadu_si128(buf.as_ptr().cast()) }
            }
        };
        let mut buf = [[0i8; 16]; 2];
        let mut i = 0;
        while i < n_in {
            let a = _mm256_cvtepi8_epi16(row(i, &mut buf[0]));
            let b = _mm256_cvtepi8_epi16(row(i + 1, &mut buf[1]));
            let xa = i32::from(x[i]) - zp;
            let xb = x.get(i + 1).map_or(0, |v| i32::from(*v) - zp);
            // The pair as two i16 (|x - zp| <= 255 for the int8 zero points of the callers;
            // any other zero point wraps the same way in every lane).
            let pair = _mm256_set1_epi32((xa & 0xffff) | (xb << 16));
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), pair));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), pair));
            i += 2;
        }
        // Back to outputs 0-7 and 8-15.
        let first = _mm256_permute2x128_si256::<0x20>(lo, hi);
        let second = _mm256_permute2x128_si256::<0x31>(lo, hi);
        let mut t = [0i32; 16];
        // SAFETY: t holds 16 values.
        unsafe {
            _mm256_storeu_si256(t.as_mut_ptr().cast(), first);
            _mm256_storeu_si256(t.as_mut_ptr().add(8).cast(), second);
        }
        for (a, s) in acc[o..o + n].iter_mut().zip(&t) {
            *a = a.wrapping_add(*s);
        }
        o += 16;
    }
}

/// `out[i] = requantised acc[i]` with the per-output `pos` / `neg` tables and the output zero
/// point: [`QuantArgs::output`](crate::kernels::args::QuantArgs::output) bit for bit, 8
/// outputs at a time.
///
/// # Safety
/// AVX2 available; `pos` and `neg` hold at least `acc.len()` entries, `out.len() ==
/// acc.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn requant_s8(
    acc: &[i32],
    pos: &[Requant],
    neg: &[Requant],
    zp: i32,
    out: &mut [i8],
) {
    let zpv = _mm256_set1_epi32(zp);
    let n = acc.len().min(out.len()).min(pos.len()).min(neg.len());
    let mut o = 0;
    while o < n {
        let m = (n - o).min(8);
        let mut c = [[0i32; 8]; 7];
        for k in 0..m {
            let (p, q) = (pos[o + k], neg[o + k]);
            c[0][k] = p.multiplier;
            c[1][k] = q.multiplier;
            c[2][k] = p.shift.max(0);
            c[3][k] = q.shift.max(0);
            c[4][k] = (-p.shift).clamp(0, 31);
            c[5][k] = (-q.shift).clamp(0, 31);
            c[6][k] = acc[o + k];
        }
        // SAFETY: each row of c holds 8 i32.
        let v: [__m256i; 7] =
            core::array::from_fn(|k| unsafe { _mm256_loadu_si256(c[k].as_ptr().cast()) });
        let r = super::x2::requant8::<true>(v[6], &[v[0], v[1], v[2], v[3], v[4], v[5]], zpv);
        let r = _mm256_max_epi32(
            _mm256_min_epi32(r, _mm256_set1_epi32(127)),
            _mm256_set1_epi32(-128),
        );
        let mut t = [0i32; 8];
        // SAFETY: t holds 8 values.
        unsafe { _mm256_storeu_si256(t.as_mut_ptr().cast(), r) };
        for (y, v) in out[o..o + m].iter_mut().zip(&t) {
            *y = *v as i8;
        }
        o += m;
    }
}
