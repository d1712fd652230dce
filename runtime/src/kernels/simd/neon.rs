//! aarch64 Advanced SIMD (NEON).
//!
//! NEON is part of the aarch64 baseline (every aarch64 target this crate builds for enables
//! it), so there is no run-time detection: the kernels are chosen at compile time. They are
//! safe functions that check their layout contract once and then run `#[target_feature]`
//! bodies; a violated contract (a caller bug: the kernels' callers check every length)
//! computes nothing rather than reading out of bounds.
//!
//! - float: 4-lane fused multiply-add (`fmla`), blocks of 2 pixels x 4 output channels as on
//!   x86-64; f16 weights are widened by `fcvtl`/`fcvtl2` (base ARMv8.0 instructions, issued
//!   through `asm!` because the f16 vector types are not stable Rust). They read IEEE half
//!   precision while FPCR.AHP is 0, as Linux and bare-metal start-up code leave it.
//! - int8: weights widened i8 -> i16 (`sxtl`), multiplied with the i16 columns into i32
//!   lanes (`smlal`/`smlal2`): exact products, wrapping sums, bit-identical to the reference.

use core::arch::aarch64::*;
use core::arch::asm;

use half::f16;

use super::super::args::{FloatWeight, TypedWeights};

// The module is compiled for every aarch64 target (see `simd/mod.rs`); the soft-float
// aarch64 targets have no NEON, and would otherwise run NEON code unannounced.
const _: () = assert!(
    cfg!(target_feature = "neon"),
    "the NEON kernels need the `neon` target feature (build with --features force-reference)"
);

/// Weight element types the NEON kernels widen to f32 lanes (f32 and f16).
pub(crate) trait Wide: Copy {
    /// Zero, for padding tails.
    const ZERO: Self;
    /// 8 values at `p` as two f32x4 (lanes 0..4, 4..8).
    ///
    /// # Safety
    /// `p..p + 8` readable; NEON available.
    unsafe fn load8(p: *const Self) -> [float32x4_t; 2];
}

impl Wide for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> [float32x4_t; 2] {
        // SAFETY: the caller guarantees 8 readable values and NEON.
        unsafe { [vld1q_f32(p), vld1q_f32(p.add(4))] }
    }
}

impl Wide for f16 {
    const ZERO: Self = f16::ZERO;
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> [float32x4_t; 2] {
        // SAFETY: the caller guarantees 8 readable f16 (16 bytes, `f16` is a `u16` bit
        // pattern with its alignment) and NEON.
        let h = unsafe { vld1q_u16(p.cast::<u16>()) };
        let (lo, hi): (float32x4_t, float32x4_t);
        // SAFETY: register-only conversions (FCVTL/FCVTL2 are base ARMv8.0 Advanced SIMD and
        // exact: every f16 is an f32), no memory, stack or flags touched.
        unsafe {
            asm!(
                "fcvtl {lo:v}.4s, {h:v}.4h",
                "fcvtl2 {hi:v}.4s, {h:v}.8h",
                h = in(vreg) h,
                lo = out(vreg) lo,
                hi = out(vreg) hi,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        [lo, hi]
    }
}

/// `n` rounded up to a multiple of `m` (no overflow: `None` when it would).
fn round_up(n: usize, m: usize) -> Option<usize> {
    n.checked_next_multiple_of(m)
}

/// The layout contract of the conv microkernels: `l > 0`, `lp >= l` rounded up to 16,
/// `npx` columns of `lp` values, whole weight rows.
fn gemm_layout_ok(cols: usize, lp: usize, npx: usize, w: usize, l: usize) -> bool {
    let ok = l > 0
        && round_up(l, 16).is_some_and(|p| lp >= p)
        && npx.checked_mul(lp).is_some_and(|n| n <= cols)
        && w.is_multiple_of(l);
    debug_assert!(ok, "NEON gemm layout contract violated");
    ok
}

/// `emit(oc, q, sum_j w[oc l + j] cols[q lp + j])` for every output channel and the first
/// `npx` columns (the contract of the x86-64 kernel, `x86.rs`). Columns are padded to `lp`
/// (a multiple of 16, at least `l`) with zeros; weight rows hold `l` values and are not read
/// past.
pub(crate) fn gemm_f32<W: FloatWeight>(
    cols: &[f32],
    lp: usize,
    npx: usize,
    w: &[W],
    l: usize,
    emit: &mut impl FnMut(usize, usize, f32),
) {
    if !gemm_layout_ok(cols.len(), lp, npx, w.len(), l) {
        return;
    }
    // SAFETY: NEON is baseline on aarch64 (asserted above); the layout was checked.
    unsafe {
        match W::typed(w) {
            TypedWeights::F32(w) => gemm_f32_neon(cols, lp, npx, w, l, emit),
            TypedWeights::F16(w) => gemm_f32_neon(cols, lp, npx, w, l, emit),
        }
    }
}

/// Body of [`gemm_f32`]: blocks of 2 pixels x 4 channels keep 8 accumulators in registers,
/// 8 window values per step.
///
/// # Safety
/// NEON available; the layout of [`gemm_layout_ok`].
#[target_feature(enable = "neon")]
unsafe fn gemm_f32_neon<W: Wide>(
    cols: &[f32],
    lp: usize,
    npx: usize,
    w: &[W],
    l: usize,
    emit: &mut impl FnMut(usize, usize, f32),
) {
    let n_oc = w.len() / l;
    let (full, rem) = (l / 8, l % 8);
    let mut q = 0;
    while q < npx {
        let q1 = if q + 1 < npx { q + 1 } else { q };
        let c0 = cols[q * lp..q * lp + lp].as_ptr();
        let c1 = cols[q1 * lp..q1 * lp + lp].as_ptr();
        let mut oc = 0;
        while oc < n_oc {
            let r = |i: usize| &w[(oc + i).min(n_oc - 1) * l..][..l];
            let rows = [r(0), r(1), r(2), r(3)];
            let mut acc = [[vdupq_n_f32(0.0); 2]; 4];
            let mut step = |j: usize, wv: [[float32x4_t; 2]; 4]| {
                // SAFETY: j + 8 <= lp (lp is l rounded up to 16 or more): within the columns.
                let x = unsafe {
                    [
                        [vld1q_f32(c0.add(j)), vld1q_f32(c0.add(j + 4))],
                        [vld1q_f32(c1.add(j)), vld1q_f32(c1.add(j + 4))],
                    ]
                };
                for (a, wr) in acc.iter_mut().zip(wv) {
                    for (ap, xp) in a.iter_mut().zip(x) {
                        *ap = vfmaq_f32(*ap, wr[0], xp[0]);
                        *ap = vfmaq_f32(*ap, wr[1], xp[1]);
                    }
                }
            };
            for c in 0..full {
                let j = c * 8;
                // SAFETY: j + 8 <= l: within each weight row; NEON available.
                let wv = rows.map(|row| unsafe { W::load8(row.as_ptr().add(j)) });
                step(j, wv);
            }
            if rem > 0 {
                let j = full * 8;
                let wv = rows.map(|row| {
                    let mut tmp = [W::ZERO; 8];
                    tmp[..rem].copy_from_slice(&row[j..]);
                    // SAFETY: tmp holds 8 values; NEON available.
                    unsafe { W::load8(tmp.as_ptr()) }
                });
                step(j, wv);
            }
            for (i, a) in acc.iter().enumerate().take(n_oc - oc) {
                emit(oc + i, q, vaddvq_f32(a[0]));
                if q1 != q {
                    emit(oc + i, q1, vaddvq_f32(a[1]));
                }
            }
            oc += 4;
        }
        q += 2;
    }
}

/// int8 twin of [`gemm_f32`]: `cols` hold `x - zero_point` as i16, weights are widened to
/// i16 and multiplied into i32 lanes (`smlal`, exact; sums wrap like the reference's).
pub(crate) fn gemm_s8(
    cols: &[i16],
    lp: usize,
    npx: usize,
    w: &[i8],
    l: usize,
    emit: &mut impl FnMut(usize, usize, i32),
) {
    if !gemm_layout_ok(cols.len(), lp, npx, w.len(), l) {
        return;
    }
    // SAFETY: NEON is baseline on aarch64 (asserted above); the layout was checked.
    unsafe { gemm_s8_neon(cols, lp, npx, w, l, emit) }
}

/// Body of [`gemm_s8`]: 2 pixels x 4 channels, 16 window values per step.
///
/// # Safety
/// NEON available; the layout of [`gemm_layout_ok`].
#[target_feature(enable = "neon")]
unsafe fn gemm_s8_neon(
    cols: &[i16],
    lp: usize,
    npx: usize,
    w: &[i8],
    l: usize,
    emit: &mut impl FnMut(usize, usize, i32),
) {
    let n_oc = w.len() / l;
    let (full, rem) = (l / 16, l % 16);
    let mut q = 0;
    while q < npx {
        let q1 = if q + 1 < npx { q + 1 } else { q };
        let c0 = cols[q * lp..q * lp + lp].as_ptr();
        let c1 = cols[q1 * lp..q1 * lp + lp].as_ptr();
        let mut oc = 0;
        while oc < n_oc {
            let r = |i: usize| &w[(oc + i).min(n_oc - 1) * l..][..l];
            let rows = [r(0), r(1), r(2), r(3)];
            let mut acc = [[vdupq_n_s32(0); 2]; 4];
            let mut step = |j: usize, wv: [int8x16_t; 4]| {
                // SAFETY: j + 16 <= lp: within the padded columns.
                let x = unsafe {
                    [
                        [vld1q_s16(c0.add(j)), vld1q_s16(c0.add(j + 8))],
                        [vld1q_s16(c1.add(j)), vld1q_s16(c1.add(j + 8))],
                    ]
                };
                for (a, wb) in acc.iter_mut().zip(wv) {
                    let (wl, wh) = (vmovl_s8(vget_low_s8(wb)), vmovl_high_s8(wb));
                    for (ap, xp) in a.iter_mut().zip(x) {
                        *ap = vmlal_s16(*ap, vget_low_s16(wl), vget_low_s16(xp[0]));
                        *ap = vmlal_high_s16(*ap, wl, xp[0]);
                        *ap = vmlal_s16(*ap, vget_low_s16(wh), vget_low_s16(xp[1]));
                        *ap = vmlal_high_s16(*ap, wh, xp[1]);
                    }
                }
            };
            for c in 0..full {
                let j = c * 16;
                // SAFETY: j + 16 <= l: within each weight row.
                let wv = rows.map(|row| unsafe { vld1q_s8(row.as_ptr().add(j)) });
                step(j, wv);
            }
            if rem > 0 {
                let j = full * 16;
                let wv = rows.map(|row| {
                    let mut tmp = [0i8; 16];
                    tmp[..rem].copy_from_slice(&row[j..]);
                    // SAFETY: tmp holds 16 bytes.
                    unsafe { vld1q_s8(tmp.as_ptr()) }
                });
                step(j, wv);
            }
            for (i, a) in acc.iter().enumerate().take(n_oc - oc) {
                emit(oc + i, q, vaddvq_s32(a[0]));
                if q1 != q {
                    emit(oc + i, q1, vaddvq_s32(a[1]));
                }
            }
            oc += 4;
        }
        q += 2;
    }
}

/// Dense layer, weights `[IN][OUT]`: `acc[o] += sum_i x[i] w[i OUT + o]`, each lane summing in
/// input order (as the reference, with fused multiply-add). Computes nothing unless
/// `w.len() == x.len() * acc.len()`.
pub(crate) fn dense_f32<W: Wide>(x: &[f32], w: &[W], acc: &mut [f32]) {
    let ok = x.len().checked_mul(acc.len()) == Some(w.len());
    debug_assert!(ok, "NEON dense_f32: weights are not [IN][OUT]");
    if ok {
        // SAFETY: NEON is baseline on aarch64 (asserted above); lengths checked.
        unsafe { dense_f32_neon(x, w, acc) }
    }
}

/// Body of [`dense_f32`]: 16 outputs (4 accumulators) at a time, then 8 through a
/// zero-padded copy.
///
/// # Safety
/// NEON available; `w.len() == x.len() * acc.len()`.
#[target_feature(enable = "neon")]
unsafe fn dense_f32_neon<W: Wide>(x: &[f32], w: &[W], acc: &mut [f32]) {
    let out = acc.len();
    let mut o = 0;
    while o + 16 <= out {
        let dst = &mut acc[o..o + 16];
        // SAFETY: dst holds 16 values.
        let mut a = unsafe { [0, 4, 8, 12].map(|k| vld1q_f32(dst.as_ptr().add(k))) };
        for (i, &xi) in x.iter().enumerate() {
            let row = w[i * out + o..i * out + o + 16].as_ptr();
            // SAFETY: 16 readable values at row; NEON available.
            let (lo, hi) = unsafe { (W::load8(row), W::load8(row.add(8))) };
            a[0] = vfmaq_n_f32(a[0], lo[0], xi);
            a[1] = vfmaq_n_f32(a[1], lo[1], xi);
            a[2] = vfmaq_n_f32(a[2], hi[0], xi);
            a[3] = vfmaq_n_f32(a[3], hi[1], xi);
        }
        for (k, v) in a.into_iter().enumerate() {
            // SAFETY: dst holds 16 values; 4 k + 4 <= 16.
            unsafe { vst1q_f32(dst.as_mut_ptr().add(4 * k), v) };
        }
        o += 16;
    }
    while o < out {
        let n = (out - o).min(8);
        let mut tmp = [0.0f32; 8];
        tmp[..n].copy_from_slice(&acc[o..o + n]);
        // SAFETY: tmp holds 8 values.
        let mut a = unsafe { [vld1q_f32(tmp.as_ptr()), vld1q_f32(tmp.as_ptr().add(4))] };
        for (i, &xi) in x.iter().enumerate() {
            let row = &w[i * out + o..i * out + o + n];
            let mut wt = [W::ZERO; 8];
            // SAFETY: 8 readable values (the row itself when n == 8, else the padded copy).
            let wv = unsafe {
                if n == 8 {
                    W::load8(row.as_ptr())
                } else {
                    wt[..n].copy_from_slice(row);
                    W::load8(wt.as_ptr())
                }
            };
            a[0] = vfmaq_n_f32(a[0], wv[0], xi);
            a[1] = vfmaq_n_f32(a[1], wv[1], xi);
        }
        // SAFETY: tmp holds 8 values.
        unsafe {
            vst1q_f32(tmp.as_mut_ptr(), a[0]);
            vst1q_f32(tmp.as_mut_ptr().add(4), a[1]);
        }
        acc[o..o + n].copy_from_slice(&tmp[..n]);
        o += 8;
    }
}

/// int8 dense, outputs `o0..o0 + acc.len()` of `[IN][stride]` weights:
/// `acc[k] += sum_i (x[i] - zp) w[i stride + o0 + k]`, exact in i32 (wrapping like the
/// reference). Computes nothing unless `w.len() == x.len() * stride` and
/// `o0 + acc.len() <= stride`.
pub(crate) fn dense_s8(x: &[i8], zp: i32, w: &[i8], stride: usize, o0: usize, acc: &mut [i32]) {
    let ok = x.len().checked_mul(stride) == Some(w.len())
        && o0.checked_add(acc.len()).is_some_and(|e| e <= stride);
    debug_assert!(ok, "NEON dense_s8: weights are not [IN][stride]");
    if !ok {
        return;
    }
    // `x - zp` fits i16 for every int8 x exactly when zp does this (always, for an int8
    // zero point); otherwise the exact scalar sum, as the reference computes it.
    if (-32640..=32640).contains(&zp) {
        // SAFETY: NEON is baseline on aarch64 (asserted above); lengths and zp checked.
        unsafe { dense_s8_neon(x, zp, w, stride, o0, acc) }
    } else {
        for (k, a) in acc.iter_mut().enumerate() {
            for (i, &xi) in x.iter().enumerate() {
                let wv = i32::from(w[i * stride + o0 + k]);
                *a = a.wrapping_add(wv.wrapping_mul(i32::from(xi).wrapping_sub(zp)));
            }
        }
    }
}

/// Body of [`dense_s8`]: 16 outputs (4 i32x4 accumulators) at a time, weights widened to
/// i16 and multiplied by the i16 scalar `x - zp` (`smlal`/`smlal2`, exact).
///
/// # Safety
/// NEON available; the lengths of [`dense_s8`]; `-32640 <= zp <= 32640`.
#[target_feature(enable = "neon")]
unsafe fn dense_s8_neon(x: &[i8], zp: i32, w: &[i8], stride: usize, o0: usize, acc: &mut [i32]) {
    let out = acc.len();
    let mut o = 0;
    while o < out {
        let n = (out - o).min(16);
        let mut tmp = [0i32; 16];
        tmp[..n].copy_from_slice(&acc[o..o + n]);
        // SAFETY: tmp holds 16 values.
        let mut a = unsafe { [0, 4, 8, 12].map(|k| vld1q_s32(tmp.as_ptr().add(k))) };
        for (i, &xi) in x.iter().enumerate() {
            let at = i * stride + o0 + o;
            let row = &w[at..at + n];
            let mut wt = [0i8; 16];
            // SAFETY: 16 readable bytes (the row itself when n == 16, else the padded copy).
            let wb = unsafe {
                if n == 16 {
                    vld1q_s8(row.as_ptr())
                } else {
                    wt[..n].copy_from_slice(row);
                    vld1q_s8(wt.as_ptr())
                }
            };
            // In range by the zp precondition: -128 - 32640 ..= 127 + 32640.
            let xv = (i32::from(xi) - zp) as i16;
            let (wl, wh) = (vmovl_s8(vget_low_s8(wb)), vmovl_high_s8(wb));
            a[0] = vmlal_n_s16(a[0], vget_low_s16(wl), xv);
            a[1] = vmlal_high_n_s16(a[1], wl, xv);
            a[2] = vmlal_n_s16(a[2], vget_low_s16(wh), xv);
            a[3] = vmlal_high_n_s16(a[3], wh, xv);
        }
        for (k, v) in a.into_iter().enumerate() {
            // SAFETY: tmp holds 16 values; 4 k + 4 <= 16.
            unsafe { vst1q_s32(tmp.as_mut_ptr().add(4 * k), v) };
        }
        acc[o..o + n].copy_from_slice(&tmp[..n]);
        o += 16;
    }
}

#[cfg(test)]
mod tests {
    //! Edge cases the shared suite (`simd/tests.rs`) does not reach: every window length and
    //! channel count around the block sizes, f16 dense weights, wrapping int8 sums, zero
    //! points outside the int8 range.
    use super::*;
    use std::vec;
    use std::vec::Vec;

    use crate::testutil::Rng;

    #[test]
    fn gemm_every_small_shape() {
        let mut rng = Rng(42);
        for l in 1..=40 {
            let lp = super::super::padded(l);
            for n_oc in 1..=9 {
                for npx in 1..=4 {
                    // f32 and f16 weights against a scalar sum
                    let mut cols = vec![0.0f32; npx * lp];
                    for q in 0..npx {
                        for v in &mut cols[q * lp..q * lp + l] {
                            *v = rng.f32();
                        }
                    }
                    let wf: Vec<f32> = (0..n_oc * l).map(|_| rng.f32()).collect();
                    let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
                    for half in [false, true] {
                        let mut got = vec![f32::NAN; n_oc * npx];
                        let mut emit = |oc: usize, q: usize, s: f32| got[oc * npx + q] = s;
                        if half {
                            gemm_f32(&cols, lp, npx, &wh, l, &mut emit);
                        } else {
                            gemm_f32(&cols, lp, npx, &wf, l, &mut emit);
                        }
                        for oc in 0..n_oc {
                            for q in 0..npx {
                                let want: f32 = (0..l)
                                    .map(|j| {
                                        let w = if half {
                                            wh[oc * l + j].to_f32()
                                        } else {
                                            wf[oc * l + j]
                                        };
                                        w * cols[q * lp + j]
                                    })
                                    .sum();
                                let g = got[oc * npx + q];
                                assert!(
                                    (g - want).abs() <= 1e-5,
                                    "l {l} oc {oc} q {q}: {g} vs {want}"
                                );
                            }
                        }
                    }
                    // int8: extreme values, long sums wrap exactly as the reference's do
                    let mut cols = vec![0i16; npx * lp];
                    for q in 0..npx {
                        for v in &mut cols[q * lp..q * lp + l] {
                            *v = if rng.next().is_multiple_of(4) {
                                i16::MIN
                            } else {
                                rng.next() as i16
                            };
                        }
                    }
                    let w: Vec<i8> = (0..n_oc * l)
                        .map(|_| {
                            if rng.next().is_multiple_of(4) {
                                i8::MIN
                            } else {
                                rng.next() as i8
                            }
                        })
                        .collect();
                    let mut got = vec![0i32; n_oc * npx];
                    gemm_s8(&cols, lp, npx, &w, l, &mut |oc, q, s| got[oc * npx + q] = s);
                    for oc in 0..n_oc {
                        for q in 0..npx {
                            let want = (0..l).fold(0i32, |a, j| {
                                a.wrapping_add(
                                    i32::from(w[oc * l + j]) * i32::from(cols[q * lp + j]),
                                )
                            });
                            assert_eq!(got[oc * npx + q], want, "l {l} oc {oc} q {q}");
                        }
                    }
                }
            }
        }
        // Long enough that the sums wrap.
        let (l, npx) = (20_000, 2);
        let lp = super::super::padded(l);
        let cols = vec![i16::MIN; npx * lp];
        let w = vec![i8::MIN; 3 * l];
        let mut got = vec![0i32; 3 * npx];
        gemm_s8(&cols, lp, npx, &w, l, &mut |oc, q, s| got[oc * npx + q] = s);
        let want = (0..l).fold(0i32, |a, _| a.wrapping_add(-128 * -32768));
        assert_eq!(got, vec![want; 3 * npx]);
    }

    #[test]
    fn dense_every_width() {
        let mut rng = Rng(7);
        for out in [1, 3, 4, 7, 8, 9, 15, 16, 17, 24, 31, 33, 40] {
            for inp in [1, 5, 64] {
                let x: Vec<f32> = (0..inp).map(|_| rng.f32()).collect();
                let wf: Vec<f32> = (0..inp * out).map(|_| rng.f32()).collect();
                let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
                let bias: Vec<f32> = (0..out).map(|_| rng.f32()).collect();
                for half in [false, true] {
                    let mut got = bias.clone();
                    if half {
                        dense_f32(&x, &wh, &mut got);
                    } else {
                        dense_f32(&x, &wf, &mut got);
                    }
                    // Each lane is a chain of fused multiply-adds in input order.
                    for (o, g) in got.iter().enumerate() {
                        let want = x.iter().enumerate().fold(bias[o], |a, (i, xi)| {
                            let w = if half {
                                wh[i * out + o].to_f32()
                            } else {
                                wf[i * out + o]
                            };
                            w.mul_add(*xi, a)
                        });
                        assert_eq!(g.to_bits(), want.to_bits(), "out {out} in {inp} o {o}");
                    }
                }
                let xs: Vec<i8> = (0..inp).map(|_| rng.next() as i8).collect();
                let stride = out + 5;
                let ws: Vec<i8> = (0..inp * stride).map(|_| rng.next() as i8).collect();
                for zp in [
                    0,
                    -128,
                    127,
                    32640,
                    -32640,
                    32641,
                    -40000,
                    i32::MAX,
                    i32::MIN,
                ] {
                    let o0 = 3;
                    let mut got: Vec<i32> = (0..out as i32).collect();
                    dense_s8(&xs, zp, &ws, stride, o0, &mut got);
                    for (k, g) in got.iter().enumerate() {
                        let want = xs.iter().enumerate().fold(k as i32, |a, (i, &xi)| {
                            let d = i32::from(xi).wrapping_sub(zp);
                            a.wrapping_add(i32::from(ws[i * stride + o0 + k]).wrapping_mul(d))
                        });
                        assert_eq!(*g, want, "out {out} in {inp} zp {zp} k {k}");
                    }
                }
            }
        }
    }
}
