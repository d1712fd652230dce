//! The SIMD paths against the scalar references, each test once per engine the CPU has
//! ([`on_every_engine`](crate::testutil::on_every_engine): reference, AVX2, AVX-512 in one process); the suite also runs with
//! `--features force-reference`. The first tests check which path ran, and the float tests
//! prove it by the fused multiply-add's rounding.

use super::{Path, active, active_s8};
use crate::kernels::conv2d::{Conv2d, QuantArgs};
use crate::kernels::dense::Dense;
use crate::kernels::pool::{Pool2d, PoolKind};
use crate::quant::Requant;
use half::f16;
use std::vec;
use std::vec::Vec;

use crate::testutil::{Rng, on_every_engine};

fn requants(rng: &mut Rng, n: usize) -> (Vec<Requant>, Vec<Requant>) {
    let pos: Vec<Requant> = (0..n)
        // log-uniform over 1e-4 .. 4: right shifts and (above 1) left shifts
        .map(|_| Requant::from_real(10f64.powf(-4.0 + (rng.next() % 1000) as f64 * 0.0046)))
        .collect();
    let neg = pos
        .iter()
        .map(|r| Requant::from_real(r.to_real() * 0.1))
        .collect();
    (pos, neg)
}

/// Every engine the CPU has is run by [`on_every_engine`](crate::testutil::on_every_engine), and a cap never raises the path.
#[test]
fn every_engine_the_cpu_has_is_run() {
    let best = active();
    let engines = super::engines();
    assert_eq!(engines.last(), Some(&best), "{engines:?}");
    if cfg!(simd_x86) {
        assert_eq!(engines[0], Path::Reference);
        assert_eq!(super::with_path(Path::Reference, active), Path::Reference);
        assert_eq!(
            super::with_path(Path::Reference, active_s8),
            Path::Reference
        );
        if best == Path::Avx512 {
            assert_eq!(&engines[..], &[Path::Reference, Path::Avx2, Path::Avx512]);
        }
    }
    // The cap is the thread's: restored after the call.
    assert_eq!(active(), best);
}

#[test]
fn the_expected_path_runs() {
    let want = if cfg!(feature = "force-reference") {
        Path::Reference
    } else if cfg!(target_arch = "x86_64") {
        #[cfg(target_arch = "x86_64")]
        let (have, have512) = {
            use std::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma") && has!("f16c");
            let avx512 = has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vl")
                && has!("avx512vnni")
                && has!("avx512vbmi");
            (avx2, avx2 && avx512)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (have, have512) = (false, false);
        let cap = std::env::var("RUNTIME_SIMD").unwrap_or_default();
        if have512 && cap != "avx2" && cap != "reference" {
            Path::Avx512
        } else if have && cap != "reference" {
            Path::Avx2
        } else {
            Path::Reference
        }
    } else if cfg!(all(target_arch = "aarch64", target_feature = "neon")) {
        Path::Neon
    } else {
        Path::Reference
    };
    assert_eq!(active(), want, "float path");
    assert_eq!(active_s8(), want, "int8 path");
    // The compile-time flags follow the build, not the run-time cap.
    if std::env::var("RUNTIME_SIMD").as_deref() != Ok("reference") {
        assert_eq!(super::COMPILED_F32, want != Path::Reference);
        assert_eq!(super::COMPILED_S8, want != Path::Reference);
    }
}

/// One geometry: int8 fast path bit-identical to the reference (whole map and row by row),
/// float fast paths within rounding of the reference; returns how many float outputs
/// differ in bits from the reference.
fn check_conv<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
>(
    seed: u64,
) -> usize {
    type C<
        const IC: usize,
        const IH: usize,
        const IW: usize,
        const OC: usize,
        const K: usize,
        const S: usize,
        const D: usize,
        const P: usize,
    > = Conv2d<IC, IH, IW, OC, K, S, D, P>;
    let mut rng = Rng(seed);
    let (n_in, n_w, n_out) = (
        C::<IC, IH, IW, OC, K, S, D, P>::IN_LEN,
        C::<IC, IH, IW, OC, K, S, D, P>::W_LEN,
        C::<IC, IH, IW, OC, K, S, D, P>::OUT_LEN,
    );
    let mut scratch16 = vec![0x5555i16; C::<IC, IH, IW, OC, K, S, D, P>::SCRATCH_S8];
    let mut scratch32 = vec![f32::NAN; C::<IC, IH, IW, OC, K, S, D, P>::SCRATCH_F32];

    // int8
    let (x, w) = (rng.i8s(n_in), rng.i8s(n_w));
    let b: Vec<i32> = (0..OC)
        .map(|_| (rng.next() % 20001) as i32 - 10000)
        .collect();
    let (pos, neg) = requants(&mut rng, OC);
    let q = QuantArgs {
        input_zero_point: (rng.next() % 256) as i32 - 128,
        requant_pos: &pos,
        requant_neg: &neg,
        output_zero_point: (rng.next() % 41) as i32 - 20,
    };
    let mut want = vec![0i8; n_out];
    C::<IC, IH, IW, OC, K, S, D, P>::s8(&x, &w, &b, &q, &mut want).unwrap();
    let mut got = vec![0i8; n_out];
    C::<IC, IH, IW, OC, K, S, D, P>::s8_rows(&x, &w, &b, &q, 0, &mut got, &mut scratch16).unwrap();
    assert_eq!(got, want, "int8 whole map");
    let oh = C::<IC, IH, IW, OC, K, S, D, P>::OH;
    let ow = C::<IC, IH, IW, OC, K, S, D, P>::OW;
    for oy in 0..oh {
        let mut row = vec![0i8; OC * ow];
        C::<IC, IH, IW, OC, K, S, D, P>::s8_rows(&x, &w, &b, &q, oy, &mut row, &mut scratch16)
            .unwrap();
        for oc in 0..OC {
            assert_eq!(
                row[oc * ow..(oc + 1) * ow],
                want[(oc * oh + oy) * ow..][..ow],
                "int8 row {oy}"
            );
        }
    }

    // f32 and f16 weights
    let (xf, wf, bf) = (rng.f32s(n_in), rng.f32s(n_w), rng.f32s(OC));
    let wh: Vec<f16> = wf.iter().map(|&v| f16::from_f32(v)).collect();
    let mut differ = 0;
    for half in [false, true] {
        let mut want = vec![0f32; n_out];
        let mut got = vec![0f32; n_out];
        if half {
            C::<IC, IH, IW, OC, K, S, D, P>::f16(&xf, &wh, &bf, 0.1, &mut want).unwrap();
            C::<IC, IH, IW, OC, K, S, D, P>::f16_rows(
                &xf,
                &wh,
                &bf,
                0.1,
                0,
                &mut got,
                &mut scratch32,
            )
            .unwrap();
        } else {
            C::<IC, IH, IW, OC, K, S, D, P>::f32(&xf, &wf, &bf, 0.1, &mut want).unwrap();
            C::<IC, IH, IW, OC, K, S, D, P>::f32_rows(
                &xf,
                &wf,
                &bf,
                0.1,
                0,
                &mut got,
                &mut scratch32,
            )
            .unwrap();
        }
        // Bound: a few ulp of the largest partial sum, sum |w x| + |b| <= window + 1.
        let tol = 8.0 * f32::EPSILON * (IC * K * K + 1) as f32;
        for (i, (g, r)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - r).abs() <= tol,
                "f32 (half {half}) output {i}: {g} vs {r}"
            );
            differ += usize::from(g.to_bits() != r.to_bits());
        }
    }
    differ
}

#[test]
fn convolutions_match_the_reference() {
    on_every_engine(|| {
        let mut differ = 0;
        // The edge and seed-lab layers.
        differ += check_conv::<10, 25, 25, 16, 3, 1, 1, 1>(1);
        differ += check_conv::<16, 12, 12, 32, 3, 1, 1, 1>(2);
        differ += check_conv::<32, 6, 6, 32, 3, 1, 1, 1>(3);
        differ += check_conv::<10, 50, 50, 20, 2, 1, 1, 0>(4);
        differ += check_conv::<20, 11, 11, 20, 2, 1, 1, 0>(5);
        // Odd sizes: channels not a multiple of 4, windows not a multiple of 16 or 8,
        // stride, dilation, padding wider than the kernel's reach, a single pixel.
        differ += check_conv::<3, 9, 7, 5, 3, 2, 2, 3>(6);
        differ += check_conv::<1, 5, 5, 1, 1, 1, 1, 0>(7);
        differ += check_conv::<7, 8, 9, 9, 5, 1, 1, 2>(8);
        differ += check_conv::<2, 3, 3, 3, 3, 1, 1, 0>(9);
        // The AVX-512 engine's edges: channels over several register blocks (50 = 7 x 8 - 6
        // int8, 3 x 20 - 10 float), a row wider than 64 bytes, dilation, windows of 1 and 45
        // taps (not multiples of 4).
        differ += check_conv::<5, 9, 70, 50, 3, 1, 2, 2>(10);
        differ += check_conv::<1, 4, 4, 3, 1, 1, 1, 1>(11);
        if cfg!(feature = "force-reference") || active() == Path::Reference {
            assert_eq!(differ, 0, "the reference ran: every float output identical");
        } else {
            assert!(
                differ > 100,
                "only {differ} float outputs differ from the reference: did the SIMD path run?"
            );
        }
    });
}

/// Fused pooling over windows 2..=5 (the AVX-512 engine fuses up to 4 and hands 5 to the
/// AVX2 engine), many channels, input zero points at both ends of int8.
#[test]
fn fused_pooling_of_every_window() {
    on_every_engine(|| {
        fn one<const PK: usize>(zp: i32, seed: u64) {
            type C = Conv2d<3, 21, 23, 26, 3, 1, 1, 1>;
            type Pl<const PK: usize> = Pool2d<26, 21, 23, PK>;
            let mut rng = Rng(seed);
            let (x, w) = (rng.i8s(C::IN_LEN), rng.i8s(C::W_LEN));
            let b: Vec<i32> = (0..26).map(|_| (rng.next() % 2001) as i32 - 1000).collect();
            let (pos, neg) = requants(&mut rng, 26);
            let q = QuantArgs {
                input_zero_point: zp,
                requant_pos: &pos,
                requant_neg: &neg,
                output_zero_point: 7,
            };
            let mut full = vec![0i8; C::OUT_LEN];
            C::s8(&x, &w, &b, &q, &mut full).unwrap();
            let mut scratch = vec![0i16; C::SCRATCH_S8];
            for kind in [PoolKind::Avg, PoolKind::Max] {
                let mut want = vec![0i8; Pl::<PK>::OUT_LEN];
                match kind {
                    PoolKind::Avg => Pl::<PK>::avg_s8(&full, &mut want).unwrap(),
                    PoolKind::Max => Pl::<PK>::max_s8(&full, &mut want).unwrap(),
                }
                let mut got = vec![0i8; Pl::<PK>::OUT_LEN];
                let mut line = vec![0i8; C::line_len::<PK>()];
                C::s8_pooled::<PK>(kind, &x, &w, &b, &q, &mut got, &mut line, &mut scratch)
                    .unwrap();
                assert_eq!(got, want, "{kind:?} {PK} zp {zp}");
            }
        }
        for (i, zp) in [-128, 127, 0].into_iter().enumerate() {
            one::<2>(zp, 20 + i as u64);
            one::<3>(zp, 30 + i as u64);
            one::<4>(zp, 40 + i as u64);
            one::<5>(zp, 50 + i as u64);
        }
    });
}

/// Conv + activation + pooling with a line buffer equals the conv followed by the pool.
#[test]
fn fused_pooling_equals_conv_then_pool() {
    on_every_engine(|| {
        type C = Conv2d<4, 13, 11, 6, 3, 1, 1, 1>;
        type Pl = Pool2d<6, 13, 11, 2>;
        type Pl3 = Pool2d<6, 13, 11, 3>;
        let mut rng = Rng(11);
        let (x, w) = (rng.i8s(C::IN_LEN), rng.i8s(C::W_LEN));
        let b: Vec<i32> = (0..6).map(|_| (rng.next() % 2001) as i32 - 1000).collect();
        let (pos, neg) = requants(&mut rng, 6);
        let q = QuantArgs {
            input_zero_point: 3,
            requant_pos: &pos,
            requant_neg: &neg,
            output_zero_point: -5,
        };
        let mut scratch = vec![0i16; C::SCRATCH_S8];
        let mut full = vec![0i8; C::OUT_LEN];
        C::s8(&x, &w, &b, &q, &mut full).unwrap();
        for kind in [PoolKind::Avg, PoolKind::Max] {
            let mut want = vec![0i8; Pl::OUT_LEN];
            match kind {
                PoolKind::Avg => Pl::avg_s8(&full, &mut want).unwrap(),
                PoolKind::Max => Pl::max_s8(&full, &mut want).unwrap(),
            }
            let mut got = vec![0i8; Pl::OUT_LEN];
            let mut line = vec![0i8; C::line_len::<2>()];
            C::s8_pooled::<2>(kind, &x, &w, &b, &q, &mut got, &mut line, &mut scratch).unwrap();
            assert_eq!(got, want, "{kind:?} 2");
        }
        let mut want = vec![0i8; Pl3::OUT_LEN];
        Pl3::avg_s8(&full, &mut want).unwrap();
        let mut got = vec![0i8; Pl3::OUT_LEN];
        let mut line = vec![0i8; C::line_len::<3>()];
        C::s8_pooled::<3>(
            PoolKind::Avg,
            &x,
            &w,
            &b,
            &q,
            &mut got,
            &mut line,
            &mut scratch,
        )
        .unwrap();
        assert_eq!(got, want, "avg 3 (trailing row and column dropped)");

        // Float: the fused path equals the same fast path followed by the pool, bit for bit.
        let (xf, wf, bf) = (rng.f32s(C::IN_LEN), rng.f32s(C::W_LEN), rng.f32s(6));
        let mut s32 = vec![0f32; C::SCRATCH_F32];
        let mut full = vec![0f32; C::OUT_LEN];
        C::f32_rows(&xf, &wf, &bf, 0.1, 0, &mut full, &mut s32).unwrap();
        for kind in [PoolKind::Avg, PoolKind::Max] {
            let mut want = vec![0f32; Pl::OUT_LEN];
            match kind {
                PoolKind::Avg => Pl::avg_f32(&full, &mut want).unwrap(),
                PoolKind::Max => Pl::max_f32(&full, &mut want).unwrap(),
            }
            let mut got = vec![0f32; Pl::OUT_LEN];
            let mut line = vec![0f32; C::line_len::<2>()];
            C::f32_pooled::<2, f32>(kind, &xf, &wf, &bf, 0.1, &mut got, &mut line, &mut s32)
                .unwrap();
            assert_eq!(got, want, "f32 {kind:?}");
        }
    });
}

#[test]
fn dense_matches_the_reference() {
    on_every_engine(|| {
        fn one<const IN: usize, const OUT: usize>(seed: u64) -> usize {
            let mut rng = Rng(seed);
            let (x, w) = (rng.i8s(IN), rng.i8s(IN * OUT));
            let b: Vec<i32> = (0..OUT)
                .map(|_| (rng.next() % 2001) as i32 - 1000)
                .collect();
            let (pos, neg) = requants(&mut rng, OUT);
            let q = QuantArgs {
                input_zero_point: -7,
                requant_pos: &pos,
                requant_neg: &neg,
                output_zero_point: 2,
            };
            let (mut want, mut got) = (vec![0i8; OUT], vec![0i8; OUT]);
            Dense::<IN, OUT>::s8(&x, &w, &b, &q, &mut want).unwrap();
            Dense::<IN, OUT>::s8_fast(&x, &w, &b, &q, &mut got).unwrap();
            assert_eq!(got, want);
            let (mut want, mut got) = (vec![0i32; OUT], vec![0i32; OUT]);
            Dense::<IN, OUT>::acc_s8(&x, &w, &b, 5, &mut want).unwrap();
            Dense::<IN, OUT>::acc_s8_fast(&x, &w, &b, 5, &mut got).unwrap();
            assert_eq!(got, want);
            let (xf, wf, bf) = (rng.f32s(IN), rng.f32s(IN * OUT), rng.f32s(OUT));
            let (mut want, mut got) = (vec![0f32; OUT], vec![0f32; OUT]);
            Dense::<IN, OUT>::f32(&xf, &wf, &bf, 0.3, &mut want).unwrap();
            Dense::<IN, OUT>::f32_fast(&xf, &wf, &bf, 0.3, &mut got).unwrap();
            let tol = 8.0 * f32::EPSILON * (IN + 1) as f32;
            let mut differ = 0;
            for (g, r) in got.iter().zip(&want) {
                assert!((g - r).abs() <= tol, "{g} vs {r}");
                differ += usize::from(g.to_bits() != r.to_bits());
            }
            differ
        }
        let differ = one::<289, 32>(1)
            + one::<81, 512>(2)
            + one::<512, 256>(3)
            + one::<32, 2>(4)
            + one::<13, 70>(5);
        if active() == Path::Reference {
            assert_eq!(differ, 0);
        } else {
            assert!(
                differ > 50,
                "only {differ} dense outputs differ: did SIMD run?"
            );
        }
    });
}

#[test]
fn bad_buffers_are_errors() {
    on_every_engine(|| {
        type C = Conv2d<2, 5, 5, 3, 3, 1, 1, 1>;
        let (x, w, b) = ([0.0f32; C::IN_LEN], [0.0f32; C::W_LEN], [0.0f32; 3]);
        let mut s = vec![0.0f32; C::SCRATCH_F32];
        let mut y = vec![0.0f32; C::OUT_LEN];
        // rows that run past the map, partial rows, an empty output
        assert!(C::f32_rows(&x, &w, &b, 1.0, 1, &mut y, &mut s).is_err());
        assert!(C::f32_rows(&x, &w, &b, 1.0, 0, &mut y[..7], &mut s).is_err());
        assert!(C::f32_rows(&x, &w, &b, 1.0, 0, &mut [], &mut s).is_err());
        assert!(C::f32_rows(&x[..3], &w, &b, 1.0, 0, &mut y, &mut s).is_err());
        if active() != Path::Reference && !s.is_empty() {
            assert!(C::f32_rows(&x, &w, &b, 1.0, 0, &mut y, &mut s[..5]).is_err());
        }
        let mut line = vec![0.0f32; C::line_len::<2>() - 1];
        let mut out = vec![0.0f32; 3 * 2 * 2];
        assert!(
            C::f32_pooled::<2, f32>(PoolKind::Avg, &x, &w, &b, 1.0, &mut out, &mut line, &mut s)
                .is_err()
        );
    });
}

/// The AVX2 engine's two requantisations, lane by lane against [`Requant::apply`] plus the
/// output zero point, over random valid multipliers (right and left shifts, both signs of
/// accumulator): the general form on any accumulator whose left shift stays in i32, the
/// short form on accumulators inside its bound (`|acc| << left < 2^30`), including the
/// ends of that bound and rounding ties.
#[cfg(simd_x86)]
#[test]
fn avx2_requantisation_forms_equal_the_reference() {
    use super::x2::{requant8, requant8_small};
    use core::arch::x86_64::*;
    assert!(
        super::cpu::x86_level() >= 1,
        "this test runs the AVX2 engine's arithmetic"
    );
    let mut rng = Rng(77);
    let zp = 9;
    for trial in 0..4000 {
        // Log-uniform multipliers 1e-6 .. 100 (shifts -20 .. 7), a separate negative one.
        let r = |rng: &mut Rng| {
            Requant::from_real(10f64.powf(-6.0 + (rng.next() % 8000) as f64 * 0.001))
        };
        let (p, n) = (r(&mut rng), r(&mut rng));
        let left = p.shift.max(0).max(n.shift.max(0));
        let limit = ((1i64 << 30) >> left) - 1;
        let mut acc = [0i32; 8];
        for (lane, a) in acc.iter_mut().enumerate() {
            let m = (rng.next() % (2 * limit as u64 + 1)) as i64 - limit;
            *a = match (trial + lane) % 5 {
                0 => limit as i32,
                1 => -limit as i32,
                // A tie of the right shift: an odd multiple of half its divisor (in
                // the accumulator's units only when there is no left shift).
                2 => ((1i64 << (-p.shift).clamp(0, 20)) / 2 * (2 * (m % 64) + 1)) as i32,
                _ => m as i32,
            };
        }
        let nudge = |e: i32| if e > 0 { 1i32 << (e - 1) } else { 0 };
        let (rp, rn) = ((-p.shift).clamp(0, 31), (-n.shift).clamp(0, 31));
        let c = [
            p.multiplier,
            n.multiplier,
            p.shift.max(0),
            n.shift.max(0),
            rp,
            rn,
            nudge(rp),
            (nudge(rn) - 1).max(0),
        ];
        let want: [i32; 8] =
            core::array::from_fn(|i| if acc[i] >= 0 { p } else { n }.apply(acc[i]) + zp);
        // SAFETY: AVX2 checked above; loads and stores of 8 i32.
        let (general, small) = unsafe {
            let v = _mm256_loadu_si256(acc.as_ptr().cast());
            let cv: [__m256i; 8] = core::array::from_fn(|i| _mm256_set1_epi32(c[i]));
            let c6: [__m256i; 6] = core::array::from_fn(|i| cv[i]);
            let z = _mm256_set1_epi32(zp);
            let (mut g, mut s) = ([0i32; 8], [0i32; 8]);
            _mm256_storeu_si256(g.as_mut_ptr().cast(), requant8::<true>(v, &c6, z));
            _mm256_storeu_si256(s.as_mut_ptr().cast(), requant8_small::<true>(v, &cv, z));
            (g, s)
        };
        assert_eq!(general, want, "general form, {p:?} {n:?}, acc {acc:?}");
        assert_eq!(small, want, "short form, {p:?} {n:?}, acc {acc:?}");
    }
}
