//! x86-64: AVX2 + FMA (+ F16C for half-precision weights).
//!
//! Selected at compile time when the target enables the three features (e.g.
//! `-C target-cpu=native`), otherwise, with the `std` feature, at run time by CPU feature
//! detection; without either, the reference runs.

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::*;

use super::super::args::QuantArgs;
use half::f16;

/// Lane mask with the first `n` (< 8) lanes set.
#[inline]
#[target_feature(enable = "avx2")]
fn tail_mask(n: usize) -> __m256i {
    let idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), idx)
}

/// Loads 8 f32 weights (`Self`) widened to f32.
pub(crate) trait Wide: Copy {
    /// 8 values at `p`.
    ///
    /// # Safety
    /// `p..p + 8` readable; AVX2/FMA/F16C available.
    unsafe fn load8(p: *const Self) -> __m256;
    /// The first `n < 8` values at `p`, the rest zero.
    ///
    /// # Safety
    /// `p..p + n` readable; AVX2/FMA/F16C available.
    unsafe fn load_tail(p: *const Self, n: usize) -> __m256;
}

impl Wide for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: the caller guarantees 8 readable values.
        unsafe { _mm256_loadu_ps(p) }
    }
    #[inline(always)]
    unsafe fn load_tail(p: *const Self, n: usize) -> __m256 {
        // SAFETY: masked-off lanes are not accessed; the first n are readable.
        unsafe { _mm256_maskload_ps(p, tail_mask(n)) }
    }
}

impl Wide for f16 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: 8 readable f16 = 16 bytes; F16C available per the caller.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
    #[inline(always)]
    unsafe fn load_tail(p: *const Self, n: usize) -> __m256 {
        let mut tmp = [f16::ZERO; 8];
        // SAFETY: the caller guarantees n readable values; tmp holds 8.
        unsafe {
            core::ptr::copy_nonoverlapping(p, tmp.as_mut_ptr(), n);
            _mm256_cvtph_ps(_mm_loadu_si128(tmp.as_ptr().cast()))
        }
    }
}

/// Dense layer, weights `[IN][OUT]`: `acc[o] += sum_i x[i] w[i OUT + o]`, each lane summing in
/// input order (as the reference, with fused multiply-add). Up to 64 outputs (8 vectors, 8
/// independent FMA chains: enough to hide the FMA latency) per pass over the inputs.
///
/// # Safety
/// AVX2, FMA and F16C must be available; `w.len() == x.len() * acc.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dense_f32<W: Wide>(x: &[f32], w: &[W], acc: &mut [f32]) {
    let out = acc.len();
    let mut o = 0;
    while o < out {
        let n = (out - o).min(64);
        let nv = n.div_ceil(8);
        let mut tmp = [0.0f32; 64];
        tmp[..n].copy_from_slice(&acc[o..o + n]);
        // SAFETY: tmp holds 64 values.
        let mut a: [__m256; 8] =
            core::array::from_fn(|v| unsafe { _mm256_loadu_ps(tmp.as_ptr().add(8 * v)) });
        if n == 64 {
            for (i, &xi) in x.iter().enumerate() {
                let row = w[i * out + o..i * out + o + 64].as_ptr();
                let xv = _mm256_set1_ps(xi);
                for (v, s) in a.iter_mut().enumerate() {
                    // SAFETY: 64 values readable at row.
                    *s = _mm256_fmadd_ps(unsafe { W::load8(row.add(8 * v)) }, xv, *s);
                }
            }
        } else {
            for (i, &xi) in x.iter().enumerate() {
                let row = &w[i * out + o..i * out + o + n];
                let xv = _mm256_set1_ps(xi);
                for (v, s) in a.iter_mut().enumerate().take(nv) {
                    let m = (n - 8 * v).min(8);
                    // SAFETY: m values readable at 8 v of row (m == 8 for the full load).
                    let wv = unsafe {
                        if m == 8 {
                            W::load8(row.as_ptr().add(8 * v))
                        } else {
                            W::load_tail(row.as_ptr().add(8 * v), m)
                        }
                    };
                    *s = _mm256_fmadd_ps(wv, xv, *s);
                }
            }
        }
        for (v, s) in a.iter().enumerate() {
            // SAFETY: tmp holds 64 values.
            unsafe { _mm256_storeu_ps(tmp.as_mut_ptr().add(8 * v), *s) };
        }
        acc[o..o + n].copy_from_slice(&tmp[..n]);
        o += 64;
    }
}

/// int8 dense, outputs `o0..o0 + acc.len()` of `[IN][stride]` weights:
/// `acc[k] += sum_i (x[i] - zp) w[i stride + o0 + k]`, exact in i32.
///
/// # Safety
/// AVX2 must be available; `w.len() == x.len() * stride`, `o0 + acc.len() <= stride`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dense_s8(
    x: &[i8],
    zp: i32,
    w: &[i8],
    stride: usize,
    o0: usize,
    acc: &mut [i32],
) {
    let out = acc.len();
    let mut o = 0;
    while o < out {
        let n = (out - o).min(8);
        let mut tmp = [0i32; 8];
        tmp[..n].copy_from_slice(&acc[o..o + n]);
        // SAFETY: tmp holds 8 values.
        let mut a = unsafe { _mm256_loadu_si256(tmp.as_ptr().cast()) };
        for (i, &xi) in x.iter().enumerate() {
            let at = i * stride + o0 + o;
            let row = &w[at..at + n];
            let mut wb = [0i8; 8];
            let wv = if n == 8 {
                // SAFETY: 8 readable bytes.
                unsafe { _mm_loadl_epi64(row.as_ptr().cast()) }
            } else {
                wb[..n].copy_from_slice(row);
                // SAFETY: wb holds 8 bytes.
                unsafe { _mm_loadl_epi64(wb.as_ptr().cast()) }
            };
            let prod = _mm256_mullo_epi32(
                _mm256_cvtepi8_epi32(wv),
                _mm256_set1_epi32(i32::from(xi) - zp),
            );
            a = _mm256_add_epi32(a, prod);
        }
        // SAFETY: tmp holds 8 values.
        unsafe { _mm256_storeu_si256(tmp.as_mut_ptr().cast(), a) };
        acc[o..o + n].copy_from_slice(&tmp[..n]);
        o += 8;
    }
}

// ---------------------------------------------------------------------------------------
// Direct convolution engine: no im2col. Each call packs the weights channel-innermost
// (`[ky][kx][ic][OC rounded to 8]`, so 8 output channels are one vector) and copies a
// zero-padded band of input rows; a register tile of up to 6 pixels x 16 channels then
// broadcasts one input value (f32) or one pair of input channels (int8, `vpmaddwd`) per
// tap and accumulates in vector registers. f32 tiles start from the bias and add the taps
// in the reference's (ic, ky, kx) order, so each output differs from the reference only by
// fused multiply-add rounding; int8 sums are exact.

use super::{BAND_ROWS, Geom};

/// Pixels per register tile.
const TP: usize = 6;

/// Shape facts the engine needs.
#[derive(Clone, Copy)]
struct Band {
    /// Padded input width.
    pw: usize,
    /// Output channels rounded up to 8.
    ocp: usize,
    /// Band rows for `rb` output rows.
    br: usize,
}

impl Geom {
    fn ext(&self) -> usize {
        self.d * (self.k - 1) + 1
    }
    fn band(&self, oc: usize, rb: usize) -> Band {
        Band {
            pw: self.iw + 2 * self.p,
            ocp: oc.div_ceil(8) * 8,
            br: (rb - 1) * self.s + self.ext(),
        }
    }
    /// Fill `band` (`[c][br][pw]`, or `[br][pw][c]` when `hwc`) with input rows starting
    /// at output row `oy`, `zero` outside the input.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn fill_band<I: Copy, C: Copy>(
        &self,
        input: &[I],
        oy: usize,
        b: Band,
        channels: usize,
        hwc: bool,
        band: &mut [C],
        zero: C,
        conv: impl Fn(I) -> C,
    ) {
        let (ih, iw, p) = (self.ih, self.iw, self.p);
        for r in 0..b.br {
            let iy = (oy * self.s + r) as isize - p as isize;
            for c in 0..channels {
                let inside = c < self.ic && iy >= 0 && (iy as usize) < ih;
                let src = if inside {
                    Some(&input[(c * ih + iy as usize) * iw..][..iw])
                } else {
                    None
                };
                for x in 0..b.pw {
                    let at = if hwc {
                        (r * b.pw + x) * channels + c
                    } else {
                        (c * b.br + r) * b.pw + x
                    };
                    band[at] = match src {
                        Some(row) if x >= p && x - p < iw => conv(row[x - p]),
                        _ => zero,
                    };
                }
            }
        }
    }
}

/// f32 tile: `P` pixels x `NV` vectors of 8 output channels starting at `oc0`.
///
/// # Safety
/// AVX2 + FMA; `band`, `wp` laid out as [`conv_f32`] builds them, the tile inside them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_f32<
    const NV: usize,
    const P: usize,
    const K: usize,
    const S: usize,
    const D: usize,
>(
    g: &Geom,
    b: Band,
    band: *const f32,
    wp: *const f32,
    bias: &[__m256; 2],
    row: usize,
    ox0: usize,
) -> [[__m256; NV]; P] {
    // SAFETY: the caller guarantees AVX.
    let mut acc = unsafe { [[_mm256_setzero_ps(); NV]; P] };
    for a in acc.iter_mut() {
        for (v, x) in a.iter_mut().enumerate() {
            *x = bias[v];
        }
    }
    let k = K;
    for c in 0..g.ic {
        for ky in 0..k {
            // SAFETY: rows of the band and taps of the packed weights, in bounds by layout.
            unsafe {
                let line = band.add((c * b.br + row * S + ky * D) * b.pw + ox0 * S);
                let wrow = wp.add(((c * k + ky) * k) * b.ocp);
                for kx in 0..k {
                    let mut wv = [_mm256_setzero_ps(); NV];
                    for (v, w) in wv.iter_mut().enumerate() {
                        *w = _mm256_loadu_ps(wrow.add(kx * b.ocp + v * 8));
                    }
                    for (q, a) in acc.iter_mut().enumerate() {
                        let x = _mm256_broadcast_ss(&*line.add(q * S + kx * D));
                        for v in 0..NV {
                            a[v] = _mm256_fmadd_ps(wv[v], x, a[v]);
                        }
                    }
                }
            }
        }
    }
    acc
}

/// int8 tile (see [`tile_f32`]): pairs of input channels times pairs of weights, `vpmaddwd`.
///
/// # Safety
/// AVX2; `band`, `wp` laid out as [`conv_s8`] builds them.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_s8<
    const NV: usize,
    const P: usize,
    const K: usize,
    const S: usize,
    const D: usize,
>(
    _g: &Geom,
    b: Band,
    icp: usize,
    band: *const i16,
    wp: *const i16,
    bias: &[__m256i; 2],
    row: usize,
    ox0: usize,
) -> [[__m256i; NV]; P] {
    // SAFETY: the caller guarantees AVX.
    let mut acc = unsafe { [[_mm256_setzero_si256(); NV]; P] };
    for a in acc.iter_mut() {
        for (v, x) in a.iter_mut().enumerate() {
            *x = bias[v];
        }
    }
    let (k, pairs) = (K, icp / 2);
    for ky in 0..k {
        for kx in 0..k {
            // SAFETY: band pixels and packed weight taps, in bounds by layout.
            unsafe {
                let px = band.add(((row * S + ky * D) * b.pw + ox0 * S + kx * D) * icp);
                let wt = wp.add((ky * k + kx) * pairs * b.ocp * 2);
                for c2 in 0..pairs {
                    let mut wv = [_mm256_setzero_si256(); NV];
                    for (v, w) in wv.iter_mut().enumerate() {
                        *w = _mm256_loadu_si256(wt.add((c2 * b.ocp + v * 8) * 2).cast());
                    }
                    for (q, a) in acc.iter_mut().enumerate() {
                        let pair =
                            core::ptr::read_unaligned(px.add(q * S * icp + 2 * c2).cast::<i32>());
                        let x = _mm256_set1_epi32(pair);
                        for v in 0..NV {
                            a[v] = _mm256_add_epi32(a[v], _mm256_madd_epi16(x, wv[v]));
                        }
                    }
                }
            }
        }
    }
    acc
}

/// Run `$run!(vectors, pixels)` for the tile shape: 2 or 1 vectors of 8 channels (`$two`) and
/// `$np` (1..=TP) pixels, each a separate monomorphised tile.
macro_rules! each_tile {
    ($run:ident, $two:expr, $np:expr) => {
        match ($two, $np) {
            (true, 6) => $run!(2, 6),
            (true, 5) => $run!(2, 5),
            (true, 4) => $run!(2, 4),
            (true, 3) => $run!(2, 3),
            (true, 2) => $run!(2, 2),
            (true, _) => $run!(2, 1),
            (false, 6) => $run!(1, 6),
            (false, 5) => $run!(1, 5),
            (false, 4) => $run!(1, 4),
            (false, 3) => $run!(1, 3),
            (false, 2) => $run!(1, 2),
            (false, _) => $run!(1, 1),
        }
    };
}

/// Up to 16 biases from `oc0` as two vectors (zero past `bias.len()`).
fn bias_f32(bias: &[f32], oc0: usize) -> [[f32; 8]; 2] {
    let mut t = [[0.0; 8]; 2];
    for (i, b) in bias.iter().skip(oc0).take(16).enumerate() {
        t[i / 8][i % 8] = *b;
    }
    t
}

/// Fast float convolution over output rows `oy0..oy0 + rows` into `out` (`[OC][rows][OW]`),
/// through `act` on each accumulator.
///
/// # Safety
/// AVX2, FMA and F16C available; `scratch` holds `scratch_f32` values for this shape;
/// `w` holds `oc` rows of `ic k k`; lengths of `input`, `bias`, `out` checked by the caller;
/// with `pack` false, `scratch` holds the packed weights of a previous call with the same `w`.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn conv_f32<
    W: super::super::args::FloatWeight,
    const K: usize,
    const S: usize,
    const D: usize,
>(
    g: &Geom,
    oc: usize,
    input: &[f32],
    w: &[W],
    bias: &[f32],
    oy0: usize,
    rows: usize,
    out: &mut [f32],
    scratch: &mut [f32],
    act: impl Fn(f32) -> f32,
    pack: bool,
) {
    let rb = rows.min(BAND_ROWS);
    let b = g.band(oc, rb);
    let l = g.ic * g.k * g.k;
    let (wp, band) = scratch.split_at_mut(l * b.ocp);
    for (j, dst) in wp.chunks_exact_mut(b.ocp).enumerate().filter(|_| pack) {
        for (o, v) in dst.iter_mut().enumerate() {
            *v = if o < oc { w[o * l + j].widen() } else { 0.0 };
        }
    }
    let plane = rows * g.ow;
    let mut r0 = 0;
    while r0 < rows {
        let n = (rows - r0).min(rb);
        let bb = Band {
            br: (n - 1) * g.s + g.ext(),
            ..b
        };
        g.fill_band(input, oy0 + r0, bb, g.ic, false, band, 0.0, |v| v);
        for row in 0..n {
            let mut oc0 = 0;
            while oc0 < oc {
                let bt = bias_f32(bias, oc0);
                // SAFETY: t holds 8 values each.
                let bv = unsafe {
                    [
                        _mm256_loadu_ps(bt[0].as_ptr()),
                        _mm256_loadu_ps(bt[1].as_ptr()),
                    ]
                };
                let two = oc - oc0 > 8;
                let mut ox = 0;
                while ox < g.ow {
                    let np = (g.ow - ox).min(TP);
                    let (bp, wq) = (band.as_ptr(), wp[oc0..].as_ptr());
                    let mut store = |q: usize, v: usize, acc: __m256| {
                        let mut t = [0.0f32; 8];
                        // SAFETY: t holds 8 values.
                        unsafe { _mm256_storeu_ps(t.as_mut_ptr(), acc) };
                        for (lane, a) in t.iter().enumerate() {
                            let o = oc0 + v * 8 + lane;
                            if o < oc {
                                out[o * plane + (r0 + row) * g.ow + ox + q] = act(*a);
                            }
                        }
                    };
                    macro_rules! run {
                        ($nv:literal, $p:literal) => {{
                            // SAFETY: the tile lies inside the band and the packed weights.
                            let acc = unsafe {
                                tile_f32::<$nv, $p, K, S, D>(g, bb, bp, wq, &bv, row, ox)
                            };
                            for (q, a) in acc.iter().enumerate() {
                                for (v, x) in a.iter().enumerate() {
                                    store(q, v, *x);
                                }
                            }
                        }};
                    }
                    each_tile!(run, two, np);
                    ox += np;
                }
                oc0 += 16;
            }
        }
        r0 += n;
    }
}

/// Per-lane requantisation of 8 output channels (TFLite's `MultiplyByQuantizedMultiplier`
/// with the fused leaky ReLU's two multipliers), bit-identical to
/// [`Requant::apply`](crate::quant::Requant::apply) + output zero point + clamp.
#[derive(Clone, Copy)]
struct Rq8 {
    mult: [__m256i; 2],
    left: [__m256i; 2],
    right: [__m256i; 2],
}

impl Rq8 {
    /// Channels `oc0..oc0 + 8` of `q` (lanes past `oc` get the zero multiplier).
    #[inline(always)]
    fn new(q: &QuantArgs<'_>, oc0: usize, oc: usize) -> Self {
        let mut t = [[[0i32; 8]; 3]; 2];
        for (k, table) in [q.requant_pos, q.requant_neg].into_iter().enumerate() {
            #[allow(clippy::needless_range_loop)]
            for lane in 0..8 {
                if let Some(r) = table.get(oc0 + lane).filter(|_| oc0 + lane < oc) {
                    t[k][0][lane] = r.multiplier;
                    t[k][1][lane] = r.shift.max(0);
                    t[k][2][lane] = (-r.shift).clamp(0, 31);
                }
            }
        }
        // SAFETY: each array holds 8 i32.
        let ld = |a: &[i32; 8]| unsafe { _mm256_loadu_si256(a.as_ptr().cast()) };
        Self {
            mult: [ld(&t[0][0]), ld(&t[1][0])],
            left: [ld(&t[0][1]), ld(&t[1][1])],
            right: [ld(&t[0][2]), ld(&t[1][2])],
        }
    }

    /// Requantised, zero-point shifted and clamped outputs of accumulators `acc`.
    #[inline(always)]
    fn apply(&self, acc: __m256i, zp: __m256i) -> __m256i {
        // SAFETY: only called from AVX2 code (the conv engine).
        unsafe {
            let neg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), acc);
            let m = _mm256_blendv_epi8(self.mult[0], self.mult[1], neg);
            let left = _mm256_blendv_epi8(self.left[0], self.left[1], neg);
            let right = _mm256_blendv_epi8(self.right[0], self.right[1], neg);
            let x = _mm256_sllv_epi32(acc, left);
            // Doubling high multiply: (x m + 2^30) >> 31, whose low 32 bits are the
            // same for the arithmetic and the logical shift; equals TFLite's nudged,
            // truncating division for both signs (m is never i32::MIN).
            let half = _mm256_set1_epi64x(1 << 30);
            let even = _mm256_srli_epi64::<31>(_mm256_add_epi64(_mm256_mul_epi32(x, m), half));
            let odd = _mm256_add_epi64(
                _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), _mm256_srli_epi64::<32>(m)),
                half,
            );
            let odd = _mm256_slli_epi64::<1>(odd);
            let high = _mm256_blend_epi32::<0b1010_1010>(even, odd);
            // Rounding divide by 2^right, half away from zero.
            let one = _mm256_set1_epi32(1);
            let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
            let rem = _mm256_and_si256(high, mask);
            let hneg = _mm256_cmpgt_epi32(_mm256_setzero_si256(), high);
            let thr = _mm256_sub_epi32(_mm256_srai_epi32::<1>(mask), hneg);
            let up = _mm256_cmpgt_epi32(rem, thr);
            let r = _mm256_sub_epi32(_mm256_srav_epi32(high, right), up);
            let r = _mm256_add_epi32(r, zp);
            _mm256_max_epi32(
                _mm256_min_epi32(r, _mm256_set1_epi32(127)),
                _mm256_set1_epi32(-128),
            )
        }
    }
}

/// Fast int8 convolution (see [`conv_f32`]): `emit(oc, index in out, exact accumulator)`.
///
/// # Safety
/// AVX2 available; `scratch` holds `scratch_s8` values for this shape; `w` holds `oc` rows
/// of `ic k k`; lengths checked by the caller; `pack` as in [`conv_f32`].
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn conv_s8<const K: usize, const S: usize, const D: usize>(
    g: &Geom,
    oc: usize,
    input: &[i8],
    zp: i32,
    w: &[i8],
    bias: &[i32],
    oy0: usize,
    rows: usize,
    scratch: &mut [i16],
    q: &QuantArgs<'_>,
    out: &mut [i8],
    pack: bool,
) {
    let rb = rows.min(BAND_ROWS);
    let zp_out = _mm256_set1_epi32(q.output_zero_point);
    let b = g.band(oc, rb);
    let icp = g.ic.div_ceil(2) * 2;
    let (k, l) = (g.k, g.ic * g.k * g.k);
    let taps = k * k;
    let (wp, band) = scratch.split_at_mut(taps * icp * b.ocp);
    // wp[((tap * icp / 2 + c2) * ocp + o) * 2 + e] = w[o][2 c2 + e][tap]
    for tap in (0..taps).filter(|_| pack) {
        for c2 in 0..icp / 2 {
            for o in 0..b.ocp {
                for e in 0..2 {
                    let c = 2 * c2 + e;
                    wp[((tap * icp / 2 + c2) * b.ocp + o) * 2 + e] = if o < oc && c < g.ic {
                        i16::from(w[o * l + c * taps + tap])
                    } else {
                        0
                    };
                }
            }
        }
    }
    let plane = rows * g.ow;
    let mut r0 = 0;
    while r0 < rows {
        let n = (rows - r0).min(rb);
        let bb = Band {
            br: (n - 1) * g.s + g.ext(),
            ..b
        };
        g.fill_band(input, oy0 + r0, bb, icp, true, band, 0i16, |v: i8| {
            (i32::from(v) - zp) as i16
        });
        for row in 0..n {
            let mut oc0 = 0;
            while oc0 < oc {
                let mut bt = [[0i32; 8]; 2];
                for (i, x) in bias.iter().skip(oc0).take(16).enumerate() {
                    bt[i / 8][i % 8] = *x;
                }
                // SAFETY: bt holds 8 values each.
                let bv = unsafe {
                    [
                        _mm256_loadu_si256(bt[0].as_ptr().cast()),
                        _mm256_loadu_si256(bt[1].as_ptr().cast()),
                    ]
                };
                let two = oc - oc0 > 8;
                let rq = [Rq8::new(q, oc0, oc), Rq8::new(q, oc0 + 8, oc)];
                let mut ox = 0;
                while ox < g.ow {
                    let np = (g.ow - ox).min(TP);
                    let (bp, wq) = (band.as_ptr(), wp[oc0 * 2..].as_ptr());
                    let mut store = |px: usize, v: usize, acc: __m256i| {
                        let mut t = [0i32; 8];
                        let r = rq[v].apply(acc, zp_out);
                        // SAFETY: t holds 8 values.
                        unsafe { _mm256_storeu_si256(t.as_mut_ptr().cast(), r) };
                        for (lane, a) in t.iter().enumerate() {
                            let o = oc0 + v * 8 + lane;
                            if o < oc {
                                out[o * plane + (r0 + row) * g.ow + ox + px] = *a as i8;
                            }
                        }
                    };
                    macro_rules! run {
                        ($nv:literal, $p:literal) => {{
                            let acc =
                                // SAFETY: the tile lies inside the band and the packed weights.
                                unsafe { tile_s8::<$nv, $p, K, S, D>(g, bb, icp, bp, wq, &bv, row, ox) };
                            for (q, a) in acc.iter().enumerate() {
                                for (v, x) in a.iter().enumerate() {
                                    store(q, v, *x);
                                }
                            }
                        }};
                    }
                    each_tile!(run, two, np);
                    ox += np;
                }
                oc0 += 16;
            }
        }
        r0 += n;
    }
}
