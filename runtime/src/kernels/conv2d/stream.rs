//! A fused convolution + pooling whose input arrives row by row: the first convolution of a
//! model streams its input from the preprocessing instead of reading it whole from the arena.
//!
//! The step keeps a window of [`Conv2d::window_rows`] input rows of every channel
//! (`[IC][rows][IW]`, [`Conv2d::window_len`] values): exactly the rows one line buffer of `PK`
//! output rows reads. For each pooled output row it slides the window down by `PK S` rows
//! (the rows it still needs move up), asks the producer for the new ones ([`Rows`]), pads
//! rows above and below the image with the input's zero (the int8 input zero point, `0.0` in
//! float), and runs the convolution on the window as a `window_rows`-high image whose output
//! rows `P / S ..` are the layer's rows. An int8 window is exact: a padded value contributes
//! `zp - zp = 0`, as the kernel's own padding does, so the outputs are the bits of
//! [`Conv2d::s8_pooled`] on every engine. The preprocessed input (`IC IH IW` values) is never
//! stored; the window costs `IC rows IW`.

use super::{Conv2d, FloatWeight, QuantArgs};
use crate::Error;
use crate::kernels::pool::{PoolKind, avg_round};

/// Rows a streamed convolution asks its producer for: input rows `y0..y0 + n` of every
/// channel, written to rows `at..at + n` of each channel's `rows x width` plane of the window
/// (`[channels][rows][width]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    /// First input row.
    pub y0: usize,
    /// Number of rows.
    pub n: usize,
    /// Window row the first one goes to.
    pub at: usize,
    /// Rows of each channel's plane in the window.
    pub rows: usize,
}

impl<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
> Conv2d<IC, IH, IW, OC, K, S, D, P>
{
    /// Input rows a streamed step with `PK x PK` pooling keeps: the `EXTENT + (PK - 1) S`
    /// rows its `PK` output rows read.
    pub const fn window_rows<const PK: usize>() -> usize {
        Self::EXTENT + (PK - 1) * S
    }

    /// Values of that window, `[IC][window_rows][IW]`.
    pub const fn window_len<const PK: usize>() -> usize {
        IC * Self::window_rows::<PK>() * IW
    }

    /// Slide the window over the input: per pooled row `py`, the window filled (by `fill`
    /// and with `pad`), then `step(window, py)`.
    fn stream<T: Copy, const PK: usize, const WH: usize>(
        pad: T,
        window: &mut [T],
        mut fill: impl FnMut(Rows, &mut [T]) -> Result<(), Error>,
        mut step: impl FnMut(&[T], usize) -> Result<(), Error>,
    ) -> Result<(), Error> {
        const {
            assert!(
                WH == Self::window_rows::<PK>() && PK > 0,
                "WH must be Conv2d::window_rows::<PK>()"
            );
            assert!(
                P.is_multiple_of(S),
                "a streamed convolution needs its padding to be a multiple of its stride"
            );
        }
        let plane = WH * IW;
        if window.len() != IC * plane {
            return Err(Error::BadLength {
                expected: IC * plane,
                got: window.len(),
            });
        }
        let keep = WH.saturating_sub(PK * S);
        for py in 0..Self::OH / PK {
            // Window row r holds input row top + r.
            let top = (py * PK * S) as isize - P as isize;
            let kept = if py == 0 { 0 } else { keep };
            if kept > 0 {
                for c in window.chunks_exact_mut(plane) {
                    c.copy_within((WH - kept) * IW.., 0);
                }
            }
            for r in kept..WH {
                let y = top + r as isize;
                if y < 0 || y >= IH as isize {
                    for c in window.chunks_exact_mut(plane) {
                        c[r * IW..][..IW].fill(pad);
                    }
                }
            }
            let y0 = (top + kept as isize).max(0) as usize;
            let y1 = (top + WH as isize).clamp(0, IH as isize) as usize;
            if y0 < y1 {
                let at = (y0 as isize - top) as usize;
                fill(
                    Rows {
                        y0,
                        n: y1 - y0,
                        at,
                        rows: WH,
                    },
                    window,
                )?;
            }
            step(window, py)?;
        }
        Ok(())
    }

    /// [`Conv2d::s8_pooled`] with the input streamed: `fill` writes the input rows it is
    /// asked for into `window` ([`Conv2d::window_len`] values; `WH` is
    /// [`Conv2d::window_rows`], checked at compile time, as is `P % S == 0`). The same bits
    /// as `s8_pooled` on the whole input, on every engine. `scratch` needs the
    /// [`Conv2d::SCRATCH_S8`] of the window's convolution, `Conv2d<IC, WH, IW, OC, K, S, D, P>`.
    #[allow(clippy::too_many_arguments)]
    pub fn s8_pooled_streamed<const PK: usize, const WH: usize>(
        kind: PoolKind,
        fill: impl FnMut(Rows, &mut [i8]) -> Result<(), Error>,
        weights: &[i8],
        bias: &[i32],
        q: &QuantArgs<'_>,
        out: &mut [i8],
        line: &mut [i8],
        window: &mut [i8],
        scratch: &mut [i16],
    ) -> Result<(), Error> {
        Self::check_pooled::<PK>(out.len(), line.len())?;
        let zp = q.input_zero_point;
        let pad = i8::try_from(zp).map_err(|_| Error::BadZeroPoint { got: zp })?;
        let n = (PK * PK) as i32;
        Self::stream::<i8, PK, WH>(pad, window, fill, |x, py| {
            Conv2d::<IC, WH, IW, OC, K, S, D, P>::s8_rows(
                x,
                weights,
                bias,
                q,
                P / S,
                line,
                scratch,
            )?;
            match kind {
                PoolKind::Max => {
                    Self::pool_line::<PK, _, _>(line, py, out, |it| it.fold(i8::MIN, i8::max))
                }
                PoolKind::Avg => Self::pool_line::<PK, _, _>(line, py, out, |it| {
                    avg_round(it.map(i32::from).sum(), n)
                }),
            }
            Ok(())
        })
    }

    /// Float twin of [`Conv2d::s8_pooled_streamed`] ([`Conv2d::f32_pooled`] with the input
    /// streamed, padded with `0.0`); `scratch` needs the window convolution's
    /// [`Conv2d::SCRATCH_F32`]. Equal to `f32_pooled` up to the engine's summation order
    /// (bit for bit where the window's convolution sums in the same order, as the
    /// reference does).
    #[allow(clippy::too_many_arguments)]
    pub fn f32_pooled_streamed<const PK: usize, const WH: usize, W: FloatWeight>(
        kind: PoolKind,
        fill: impl FnMut(Rows, &mut [f32]) -> Result<(), Error>,
        weights: &[W],
        bias: &[f32],
        slope: f32,
        out: &mut [f32],
        line: &mut [f32],
        window: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        Self::check_pooled::<PK>(out.len(), line.len())?;
        let inv = 1.0 / (PK * PK) as f32;
        Self::stream::<f32, PK, WH>(0.0, window, fill, |x, py| {
            Conv2d::<IC, WH, IW, OC, K, S, D, P>::f32_rows(
                x,
                weights,
                bias,
                slope,
                P / S,
                line,
                scratch,
            )?;
            match kind {
                PoolKind::Max => Self::pool_line::<PK, _, _>(line, py, out, |it| {
                    it.fold(f32::NEG_INFINITY, f32::max)
                }),
                PoolKind::Avg => Self::pool_line::<PK, _, _>(line, py, out, |it| {
                    it.fold(0.0f32, |a, v| a + v) * inv
                }),
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Requant;
    use crate::testutil::Rng;
    use std::vec;
    use std::vec::Vec;

    /// The producer of a stored input: rows copied from `x` (`[IC][IH][IW]`), every request
    /// recorded.
    fn from<T: Copy>(
        x: &[T],
        ic: usize,
        ih: usize,
        iw: usize,
        asked: &mut Vec<Rows>,
    ) -> impl FnMut(Rows, &mut [T]) -> Result<(), Error> {
        move |r: Rows, w: &mut [T]| {
            asked.push(r);
            for c in 0..ic {
                for k in 0..r.n {
                    let src = &x[(c * ih + r.y0 + k) * iw..][..iw];
                    w[(c * r.rows + r.at + k) * iw..][..iw].copy_from_slice(src);
                }
            }
            Ok(())
        }
    }

    /// Every input row asked for exactly once, in order (no row preprocessed twice).
    fn each_row_once(asked: &[Rows], ih: usize) {
        let rows: Vec<usize> = asked.iter().flat_map(|r| r.y0..r.y0 + r.n).collect();
        let last = rows.last().copied().unwrap_or(0);
        assert_eq!(rows, (0..=last).collect::<Vec<_>>(), "{asked:?}");
        assert!(last < ih);
    }

    /// int8, against `s8_pooled` on the whole input (itself tested against the definition):
    /// the same bits, on every engine, for shapes with padding 0, 1 and 2, dilation, a
    /// pooled height that drops rows, max and average pooling, and every input zero point
    /// sign.
    #[test]
    fn s8_streamed_equals_whole_input() {
        fn check<
            const IC: usize,
            const IH: usize,
            const IW: usize,
            const OC: usize,
            const K: usize,
            const D: usize,
            const P: usize,
            const PK: usize,
            const WH: usize,
        >(
            seed: u64,
        ) {
            type C<
                const IC: usize,
                const IH: usize,
                const IW: usize,
                const OC: usize,
                const K: usize,
                const D: usize,
                const P: usize,
            > = Conv2d<IC, IH, IW, OC, K, 1, D, P>;
            let mut rng = Rng(seed);
            let x = rng.i8s(C::<IC, IH, IW, OC, K, D, P>::IN_LEN);
            let w = rng.i8s(C::<IC, IH, IW, OC, K, D, P>::W_LEN);
            let b: Vec<i32> = (0..OC).map(|_| rng.below(2001) as i32 - 1000).collect();
            let rp: Vec<Requant> = (0..OC)
                .map(|_| Requant::from_real(10f64.powf(-4.0 + rng.below(1000) as f64 * 0.0046)))
                .collect();
            let rn: Vec<Requant> = rp
                .iter()
                .map(|r| Requant::from_real(r.to_real() * 0.1))
                .collect();
            let out_len = OC
                * (C::<IC, IH, IW, OC, K, D, P>::OH / PK)
                * (C::<IC, IH, IW, OC, K, D, P>::OW / PK);
            let line_len = C::<IC, IH, IW, OC, K, D, P>::line_len::<PK>();
            let scratch_len = C::<IC, IH, IW, OC, K, D, P>::SCRATCH_S8
                .max(C::<IC, WH, IW, OC, K, D, P>::SCRATCH_S8);
            for zp in [-128, -3, 0, 17, 127] {
                let q = QuantArgs {
                    input_zero_point: zp,
                    requant_pos: &rp,
                    requant_neg: &rn,
                    output_zero_point: -5,
                };
                for kind in [PoolKind::Avg, PoolKind::Max] {
                    let mut want = vec![0i8; out_len];
                    let mut line = vec![0i8; line_len];
                    let mut scratch = vec![0i16; scratch_len];
                    C::<IC, IH, IW, OC, K, D, P>::s8_pooled::<PK>(
                        kind,
                        &x,
                        &w,
                        &b,
                        &q,
                        &mut want,
                        &mut line,
                        &mut scratch,
                    )
                    .unwrap();
                    let mut got = vec![0i8; out_len];
                    let mut window = vec![99i8; C::<IC, IH, IW, OC, K, D, P>::window_len::<PK>()];
                    let mut asked = Vec::new();
                    C::<IC, IH, IW, OC, K, D, P>::s8_pooled_streamed::<PK, WH>(
                        kind,
                        from(&x, IC, IH, IW, &mut asked),
                        &w,
                        &b,
                        &q,
                        &mut got,
                        &mut line,
                        &mut window,
                        &mut scratch,
                    )
                    .unwrap();
                    assert_eq!(got, want, "zp {zp}, {kind:?}");
                    each_row_once(&asked, IH);
                }
            }
        }
        crate::testutil::on_every_engine(|| {
            // edge's first convolution: 10 x 25 x 25, 3x3, same, pooled 2.
            check::<10, 25, 25, 16, 3, 1, 1, 2, 4>(1);
            check::<3, 9, 11, 8, 3, 1, 0, 2, 4>(2);
            check::<2, 12, 7, 4, 3, 2, 2, 2, 6>(3);
            check::<4, 10, 10, 8, 5, 1, 2, 3, 7>(4);
            check::<1, 6, 6, 4, 1, 1, 0, 2, 2>(5);
        });
    }

    /// Float: equal to `f32_pooled` on the whole input (to the engines' rounding; the
    /// reference sums in the same order, so there the bits).
    #[test]
    fn f32_streamed_equals_whole_input() {
        crate::testutil::on_every_engine(|| {
            type C = Conv2d<10, 25, 25, 16, 3, 1, 1, 1>;
            let mut rng = Rng(7);
            let x = rng.f32s(C::IN_LEN);
            let w = rng.f32s(C::W_LEN);
            let b = rng.f32s(16);
            let scratch_len = crate::kernels::simd::max_len([
                C::SCRATCH_F32,
                Conv2d::<10, 4, 25, 16, 3, 1, 1, 1>::SCRATCH_F32,
            ]);
            for kind in [PoolKind::Avg, PoolKind::Max] {
                let mut want = vec![0f32; 16 * 12 * 12];
                let mut line = vec![0f32; C::line_len::<2>()];
                let mut scratch = vec![0f32; scratch_len];
                C::f32_pooled::<2, f32>(kind, &x, &w, &b, 0.1, &mut want, &mut line, &mut scratch)
                    .unwrap();
                let mut got = vec![0f32; want.len()];
                let mut window = vec![f32::NAN; C::window_len::<2>()];
                let mut asked = Vec::new();
                C::f32_pooled_streamed::<2, 4, f32>(
                    kind,
                    from(&x, 10, 25, 25, &mut asked),
                    &w,
                    &b,
                    0.1,
                    &mut got,
                    &mut line,
                    &mut window,
                    &mut scratch,
                )
                .unwrap();
                each_row_once(&asked, 25);
                let reference =
                    crate::kernels::simd::active() == crate::kernels::simd::Path::Reference;
                for (g, e) in got.iter().zip(&want) {
                    if reference {
                        assert_eq!(g.to_bits(), e.to_bits());
                    } else {
                        assert!((g - e).abs() <= 1e-5 * e.abs().max(1.0), "{g} vs {e}");
                    }
                }
            }
        });
    }

    /// Wrong buffers and a zero point int8 cannot hold are errors, not panics.
    #[test]
    fn bad_buffers_and_zero_point_are_errors() {
        type C = Conv2d<1, 4, 4, 1, 3, 1, 1, 1>;
        let (w, b) = ([1i8; 9], [0i32]);
        let r = [Requant::from_real(0.01)];
        let fill = |_: Rows, _: &mut [i8]| Ok(());
        let mut out = [0i8; 4];
        let mut line = [0i8; C::line_len::<2>()];
        let mut scratch = [0i16; 4096];
        for (zp, window_len, want) in [
            (300, 16, Error::BadZeroPoint { got: 300 }),
            (
                0,
                15,
                Error::BadLength {
                    expected: 16,
                    got: 15,
                },
            ),
        ] {
            let q = QuantArgs {
                input_zero_point: zp,
                requant_pos: &r,
                requant_neg: &r,
                output_zero_point: 0,
            };
            let mut window = vec![0i8; window_len];
            let got = C::s8_pooled_streamed::<2, 4>(
                PoolKind::Avg,
                fill,
                &w,
                &b,
                &q,
                &mut out,
                &mut line,
                &mut window,
                &mut scratch,
            );
            assert_eq!(got, Err(want));
        }
    }
}
