//! 2-D convolution, channels-first (`[c][y][x]`), square kernel, symmetric zero
//! padding, stride and dilation fixed at compile time.
//!
//! The shape is a type: [`Conv2d`] carries every dimension as a const generic,
//! derives the output size and buffer lengths as associated constants, and
//! rejects impossible shapes at compile time, so a generated model cannot call a
//! kernel with dimensions that do not fit. Buffers are caller-provided slices
//! whose lengths are checked (an error, never a panic).

use crate::Error;
use crate::kernels::pool::{PoolKind, avg_round};
use crate::kernels::simd::{self, Sink};

pub use super::args::{FloatWeight, QuantArgs, TypedWeights};

mod stream;
pub use stream::Rows;

/// Convolution of `IC x IH x IW` into `OC` channels with a `K x K` kernel,
/// stride `S`, dilation `D` and `P` pixels of zero padding on every side.
/// Weights are `[OC][IC][K][K]`, biases `[OC]`.
///
/// A shape the kernel cannot compute is refused when the program is compiled, not when it
/// runs: a layer with no output channel does not build,
///
/// ```compile_fail
/// use runtime::kernels::conv2d::Conv2d;
/// let _ = Conv2d::<1, 5, 5, 0, 3, 1, 1, 0>::check(25, 0, 0, 0);
/// ```
///
/// nor does a dilated kernel wider than its input (a 3x3 kernel at dilation 3 spans 7
/// pixels; the input is 6, unpadded),
///
/// ```compile_fail
/// use runtime::kernels::conv2d::Conv2d;
/// let _ = Conv2d::<1, 6, 6, 1, 3, 1, 3, 0>::check(36, 9, 1, 1);
/// ```
///
/// while the same calls with shapes that fit compile and check the buffer lengths:
///
/// ```
/// use runtime::kernels::conv2d::Conv2d;
/// assert!(Conv2d::<1, 5, 5, 1, 3, 1, 1, 0>::check(25, 9, 1, 9).is_ok());
/// assert!(Conv2d::<1, 5, 5, 1, 3, 1, 2, 1>::check(25, 9, 1, 9).is_ok());
/// assert!(Conv2d::<1, 5, 5, 1, 3, 1, 1, 0>::check(24, 9, 1, 9).is_err());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Conv2d<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
>;

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
    /// Effective kernel extent, `D (K - 1) + 1`.
    pub const EXTENT: usize = D * (K - 1) + 1;
    /// Output height.
    pub const OH: usize = (IH + 2 * P - Self::EXTENT) / S + 1;
    /// Output width.
    pub const OW: usize = (IW + 2 * P - Self::EXTENT) / S + 1;
    /// Input length.
    pub const IN_LEN: usize = IC * IH * IW;
    /// Output length.
    pub const OUT_LEN: usize = OC * Self::OH * Self::OW;
    /// Weight length.
    pub const W_LEN: usize = OC * IC * K * K;
    /// Multiply-accumulates per call.
    pub const MACS: usize = Self::OUT_LEN * IC * K * K;
    /// Values in one output pixel's input window, `IC K K`.
    pub const WINDOW: usize = IC * K * K;
    /// Scratch f32 values [`Conv2d::f32_rows`] and [`Conv2d::f16_rows`] need; 0 when this
    /// build has no float SIMD path.
    pub const SCRATCH_F32: usize = simd::scratch_f32([IC, IH, IW, OC, K, S, D, P]);
    /// Scratch i16 values [`Conv2d::s8_rows`] needs; 0 when this build has no int8 SIMD path.
    /// On the Cortex-M DSP path it holds every buffer of the engine (columns, row strip,
    /// widened weights, per-channel records), none of which is on the stack.
    pub const SCRATCH_S8: usize = simd::conv_scratch_s8::<IC, IH, IW, OC, K, S, D, P>();

    const CHECK: () = {
        assert!(
            IC > 0 && OC > 0 && K > 0 && S > 0 && D > 0,
            "sizes, stride and dilation must be positive"
        );
        assert!(
            IH + 2 * P > D * (K - 1) && IW + 2 * P > D * (K - 1),
            "the kernel does not fit the padded input"
        );
    };

    /// Check buffer lengths (and, at compile time, the shape).
    #[inline]
    pub fn check(input: usize, weights: usize, bias: usize, out: usize) -> Result<(), Error> {
        let () = Self::CHECK;
        for (expected, got) in [
            (Self::IN_LEN, input),
            (Self::W_LEN, weights),
            (OC, bias),
            (Self::OUT_LEN, out),
        ] {
            if expected != got {
                return Err(Error::BadLength { expected, got });
            }
        }
        Ok(())
    }

    /// f32 reference: `out = act(bias + sum w * x)`, with `act` max(x, slope x)
    /// (slope 1 disables it, 0 is ReLU). Accumulates in a fixed order without
    /// fused multiply-add, so results are identical on every target.
    ///
    /// ```
    /// use runtime::kernels::conv2d::Conv2d;
    /// // One 3x3 channel, a 2x2 kernel of ones, no padding: sums of 2x2 windows.
    /// type C = Conv2d<1, 3, 3, 1, 2, 1, 1, 0>;
    /// let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    /// let mut y = [0.0; C::OUT_LEN];
    /// C::f32(&x, &[1.0; 4], &[0.5], 1.0, &mut y).unwrap();
    /// assert_eq!(y, [12.5, 16.5, 24.5, 28.5]);
    /// ```
    pub fn f32(
        input: &[f32],
        weights: &[f32],
        bias: &[f32],
        slope: f32,
        out: &mut [f32],
    ) -> Result<(), Error> {
        Self::f32_with(input, bias, slope, out, |i| weights[i], weights.len())
    }

    /// Like [`Conv2d::f32`] with half-precision weights widened to f32 on use.
    pub fn f16(
        input: &[f32],
        weights: &[half::f16],
        bias: &[f32],
        slope: f32,
        out: &mut [f32],
    ) -> Result<(), Error> {
        Self::f32_with(
            input,
            bias,
            slope,
            out,
            |i| weights[i].to_f32(),
            weights.len(),
        )
    }

    /// int8 reference (TFLite/CMSIS-NN scheme): symmetric per-channel int8 weights,
    /// int32 bias, asymmetric int8 activations; padding contributes the input zero
    /// point, i.e. a real zero.
    ///
    /// ```
    /// use runtime::kernels::conv2d::{Conv2d, QuantArgs};
    /// use runtime::quant::Requant;
    /// type C = Conv2d<1, 2, 2, 1, 2, 1, 1, 0>;
    /// let half = [Requant::from_real(0.5)];
    /// let q = QuantArgs { input_zero_point: -1, requant_pos: &half, requant_neg: &half, output_zero_point: 3 };
    /// let mut y = [0i8; 1];
    /// C::s8(&[1, 2, 3, 4], &[1, 1, 1, 1], &[2], &q, &mut y).unwrap();
    /// // acc = 2 + (2 + 3 + 4 + 5) = 16; 16 * 0.5 + 3 = 11
    /// assert_eq!(y, [11]);
    /// ```
    pub fn s8(
        input: &[i8],
        weights: &[i8],
        bias: &[i32],
        q: &QuantArgs<'_>,
        out: &mut [i8],
    ) -> Result<(), Error> {
        Self::check(input.len(), weights.len(), bias.len(), out.len())?;
        q.check(OC)?;
        Self::each_output(
            |oc| bias[oc],
            |acc, wi, xi| {
                acc.wrapping_add(weights[wi] as i32 * (input[xi] as i32 - q.input_zero_point))
            },
            |oc, o, acc| out[o] = q.output(oc, acc),
        );
        Ok(())
    }

    /// The convolution's loop nest, shared by every numeric path: for each output
    /// (channel, y, x) start from `init(oc)`, fold `tap(acc, weight index, input index)`
    /// over the in-bounds taps in (ic, ky, kx) order (padding taps are skipped: they add a
    /// real zero), then `store(oc, output index, acc)`. One order for all paths keeps
    /// floats reproducible and integers bit-exact.
    #[inline(always)]
    fn each_output<A: Copy>(
        init: impl Fn(usize) -> A,
        tap: impl Fn(A, usize, usize) -> A,
        store: impl FnMut(usize, usize, A),
    ) {
        Self::each_output_rows(0, Self::OH, init, tap, store);
    }

    /// [`Conv2d::each_output`] over output rows `oy0..oy0 + rows`, stored as
    /// `[OC][rows][OW]`.
    #[inline(always)]
    fn each_output_rows<A: Copy>(
        oy0: usize,
        rows: usize,
        init: impl Fn(usize) -> A,
        tap: impl Fn(A, usize, usize) -> A,
        mut store: impl FnMut(usize, usize, A),
    ) {
        let ow = Self::OW;
        for oc in 0..OC {
            for oy in oy0..oy0 + rows {
                for ox in 0..ow {
                    let mut acc = init(oc);
                    for ic in 0..IC {
                        for ky in 0..K {
                            let iy = (oy * S + ky * D) as isize - P as isize;
                            if iy < 0 || iy >= IH as isize {
                                continue;
                            }
                            for kx in 0..K {
                                let ix = (ox * S + kx * D) as isize - P as isize;
                                if ix < 0 || ix >= IW as isize {
                                    continue;
                                }
                                acc = tap(
                                    acc,
                                    ((oc * IC + ic) * K + ky) * K + kx,
                                    (ic * IH + iy as usize) * IW + ix as usize,
                                );
                            }
                        }
                    }
                    store(oc, (oc * rows + oy - oy0) * ow + ox, acc);
                }
            }
        }
    }

    #[inline(always)]
    fn f32_with(
        input: &[f32],
        bias: &[f32],
        slope: f32,
        out: &mut [f32],
        w: impl Fn(usize) -> f32,
        w_len: usize,
    ) -> Result<(), Error> {
        Self::check(input.len(), w_len, bias.len(), out.len())?;
        Self::each_output(
            |oc| bias[oc],
            |acc, wi, xi| acc + w(wi) * input[xi],
            |_, o, acc| out[o] = if acc < 0.0 { acc * slope } else { acc },
        );
        Ok(())
    }
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
    /// Output rows `out.len() / (OC OW)` starting at `oy0`, stored `[OC][rows][OW]`.
    fn rows_of(oy0: usize, out: usize) -> Result<usize, Error> {
        let per_row = OC * Self::OW;
        let rows = out / per_row;
        if rows == 0 || rows * per_row != out || oy0 + rows > Self::OH {
            return Err(Error::BadLength {
                expected: per_row * (Self::OH - oy0.min(Self::OH)),
                got: out,
            });
        }
        Ok(rows)
    }

    /// Fast path of [`Conv2d::f32`] / [`Conv2d::f16`]: output rows `oy0..` into `out`
    /// (`[OC][rows][OW]`, `rows = out.len() / (OC OW)`), SIMD when this build and CPU have it
    /// ([`simd::active`]), else the reference. `scratch` needs [`Conv2d::SCRATCH_F32`] values.
    ///
    /// ```
    /// use runtime::kernels::conv2d::Conv2d;
    /// type C = Conv2d<1, 3, 3, 1, 2, 1, 1, 0>;
    /// let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    /// let mut y = [0.0; C::OUT_LEN];
    /// let mut scratch = [0.0; C::SCRATCH_F32];
    /// C::f32_rows(&x, &[1.0f32; 4], &[0.5], 1.0, 0, &mut y, &mut scratch).unwrap();
    /// assert_eq!(y, [12.5, 16.5, 24.5, 28.5]);
    /// ```
    pub fn f32_rows<W: FloatWeight>(
        input: &[f32],
        weights: &[W],
        bias: &[f32],
        slope: f32,
        oy0: usize,
        out: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        Self::f32_rows_inner(input, weights, bias, slope, oy0, out, scratch, true)
    }

    /// [`Conv2d::f32_rows`]; `pack: false` reuses the weights a previous call with the same
    /// weights and scratch packed (the fused pooling calls it row band by row band).
    #[allow(clippy::too_many_arguments)]
    fn f32_rows_inner<W: FloatWeight>(
        input: &[f32],
        weights: &[W],
        bias: &[f32],
        slope: f32,
        oy0: usize,
        out: &mut [f32],
        scratch: &mut [f32],
        pack: bool,
    ) -> Result<(), Error> {
        let rows = Self::rows_of(oy0, out.len())?;
        Self::check(input.len(), weights.len(), bias.len(), Self::OUT_LEN)?;
        let c = simd::ConvF32 {
            input,
            weights,
            bias,
            slope,
            oy0,
            rows,
            pack,
        };
        if simd::conv_f32::<W, IC, IH, IW, OC, K, S, D, P>(&c, Sink::Rows(&mut *out), scratch)? {
            return Ok(());
        }
        let act = |acc: f32| if acc < 0.0 { acc * slope } else { acc };
        Self::each_output_rows(
            oy0,
            rows,
            |oc| bias[oc],
            |acc, wi, xi| acc + weights[wi].widen() * input[xi],
            |_, o, acc| out[o] = act(acc),
        );
        Ok(())
    }

    /// Alias of [`Conv2d::f32_rows`] for half-precision weights.
    pub fn f16_rows(
        input: &[f32],
        weights: &[half::f16],
        bias: &[f32],
        slope: f32,
        oy0: usize,
        out: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        Self::f32_rows(input, weights, bias, slope, oy0, out, scratch)
    }

    /// Fast path of [`Conv2d::s8`] over output rows `oy0..` (see [`Conv2d::f32_rows`]);
    /// bit-identical to the reference on every path. `scratch` needs [`Conv2d::SCRATCH_S8`] i16.
    pub fn s8_rows(
        input: &[i8],
        weights: &[i8],
        bias: &[i32],
        q: &QuantArgs<'_>,
        oy0: usize,
        out: &mut [i8],
        scratch: &mut [i16],
    ) -> Result<(), Error> {
        Self::s8_rows_inner(input, weights, bias, q, oy0, out, scratch, true)
    }

    /// [`Conv2d::s8_rows`]; `pack: false` as in [`Conv2d::f32_rows_inner`].
    #[allow(clippy::too_many_arguments)]
    fn s8_rows_inner(
        input: &[i8],
        weights: &[i8],
        bias: &[i32],
        q: &QuantArgs<'_>,
        oy0: usize,
        out: &mut [i8],
        scratch: &mut [i16],
        pack: bool,
    ) -> Result<(), Error> {
        let rows = Self::rows_of(oy0, out.len())?;
        Self::check(input.len(), weights.len(), bias.len(), Self::OUT_LEN)?;
        q.check(OC)?;
        let c = simd::ConvS8 {
            input,
            weights,
            bias,
            q,
            oy0,
            rows,
            pack,
        };
        if simd::conv_s8::<IC, IH, IW, OC, K, S, D, P>(&c, Sink::Rows(&mut *out), scratch)? {
            return Ok(());
        }
        let zp = q.input_zero_point;
        Self::each_output_rows(
            oy0,
            rows,
            |oc| bias[oc],
            |acc, wi, xi| acc.wrapping_add(weights[wi] as i32 * (input[xi] as i32 - zp)),
            |oc, o, acc| out[o] = q.output(oc, acc),
        );
        Ok(())
    }

    /// Pooled outputs `[OC][OH / PK][OW / PK]` of a `PK x PK` window (stride `PK`).
    const fn pooled_len<const PK: usize>() -> usize {
        OC * (Self::OH / PK) * (Self::OW / PK)
    }

    /// Line buffer a fused convolution + `PK` pooling needs: `PK` output rows, `[OC][PK][OW]`.
    pub const fn line_len<const PK: usize>() -> usize {
        OC * PK * Self::OW
    }

    fn check_pooled<const PK: usize>(out: usize, line: usize) -> Result<(), Error> {
        let () = Self::CHECK;
        if PK == 0 || Self::OH < PK || Self::OW < PK {
            return Err(Error::BadLength {
                expected: PK,
                got: Self::OH.min(Self::OW),
            });
        }
        for (expected, got) in [
            (Self::pooled_len::<PK>(), out),
            (Self::line_len::<PK>(), line),
        ] {
            if expected != got {
                return Err(Error::BadLength { expected, got });
            }
        }
        Ok(())
    }

    /// Pool `line` (`[OC][PK][OW]`, pooled row `py`) into `out` with `f(window values in
    /// row order)`, as [`Pool2d`](crate::kernels::pool::Pool2d) does.
    #[inline(always)]
    fn pool_line<const PK: usize, T: Copy, A>(
        line: &[T],
        py: usize,
        out: &mut [A],
        f: impl Fn(&mut dyn Iterator<Item = T>) -> A,
    ) {
        let (pw, ph, ow) = (Self::OW / PK, Self::OH / PK, Self::OW);
        for oc in 0..OC {
            for px in 0..pw {
                let mut it = (0..PK)
                    .flat_map(|ky| (0..PK).map(move |kx| (ky, kx)))
                    .map(|(ky, kx)| line[(oc * PK + ky) * ow + px * PK + kx]);
                out[(oc * ph + py) * pw + px] = f(&mut it);
            }
        }
    }

    /// Convolution + activation + `PK x PK` pooling fused with a line buffer: the
    /// pre-pooling map is computed `PK` rows at a time into `line`
    /// ([`Conv2d::line_len`]) and pooled at once, so it is never stored whole (rows the
    /// pooling drops are never computed). Results equal [`Conv2d::f32_rows`] followed by
    /// [`Pool2d`](crate::kernels::pool::Pool2d) pooling.
    #[allow(clippy::too_many_arguments)]
    pub fn f32_pooled<const PK: usize, W: FloatWeight>(
        kind: PoolKind,
        input: &[f32],
        weights: &[W],
        bias: &[f32],
        slope: f32,
        out: &mut [f32],
        line: &mut [f32],
        scratch: &mut [f32],
    ) -> Result<(), Error> {
        Self::check_pooled::<PK>(out.len(), line.len())?;
        Self::check(input.len(), weights.len(), bias.len(), Self::OUT_LEN)?;
        let c = simd::ConvF32 {
            input,
            weights,
            bias,
            slope,
            oy0: 0,
            rows: Self::OH,
            pack: true,
        };
        let sink = Sink::Pool {
            kind,
            pk: PK,
            out: &mut *out,
        };
        // The engines that pool (the flat x86 ones); the others run row band by row band.
        if simd::conv_f32::<W, IC, IH, IW, OC, K, S, D, P>(&c, sink, scratch)? {
            return Ok(());
        }
        let inv = 1.0 / (PK * PK) as f32;
        for py in 0..Self::OH / PK {
            Self::f32_rows_inner(input, weights, bias, slope, py * PK, line, scratch, py == 0)?;
            match kind {
                PoolKind::Max => Self::pool_line::<PK, _, _>(line, py, out, |it| {
                    it.fold(f32::NEG_INFINITY, f32::max)
                }),
                PoolKind::Avg => Self::pool_line::<PK, _, _>(line, py, out, |it| {
                    it.fold(0.0f32, |a, v| a + v) * inv
                }),
            }
        }
        Ok(())
    }

    /// int8 twin of [`Conv2d::f32_pooled`]; bit-identical to [`Conv2d::s8`] followed by
    /// int8 pooling.
    #[allow(clippy::too_many_arguments)]
    pub fn s8_pooled<const PK: usize>(
        kind: PoolKind,
        input: &[i8],
        weights: &[i8],
        bias: &[i32],
        q: &QuantArgs<'_>,
        out: &mut [i8],
        line: &mut [i8],
        scratch: &mut [i16],
    ) -> Result<(), Error> {
        Self::check_pooled::<PK>(out.len(), line.len())?;
        Self::check(input.len(), weights.len(), bias.len(), Self::OUT_LEN)?;
        q.check(OC)?;
        let c = simd::ConvS8 {
            input,
            weights,
            bias,
            q,
            oy0: 0,
            rows: Self::OH,
            pack: true,
        };
        let sink = Sink::Pool {
            kind,
            pk: PK,
            out: &mut *out,
        };
        // As in `f32_pooled`.
        if simd::conv_s8::<IC, IH, IW, OC, K, S, D, P>(&c, sink, scratch)? {
            return Ok(());
        }
        let n = (PK * PK) as i32;
        for py in 0..Self::OH / PK {
            Self::s8_rows_inner(input, weights, bias, q, py * PK, line, scratch, py == 0)?;
            match kind {
                PoolKind::Max => {
                    Self::pool_line::<PK, _, _>(line, py, out, |it| it.fold(i8::MIN, i8::max))
                }
                PoolKind::Avg => Self::pool_line::<PK, _, _>(line, py, out, |it| {
                    avg_round(it.map(i32::from).sum(), n)
                }),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a direct transcription of the convolution sum with explicit zero padding.
    #[test]
    fn matches_padded_definition_with_stride_and_dilation() {
        crate::testutil::on_every_engine(|| {
            type C = Conv2d<2, 7, 6, 3, 3, 2, 2, 2>;
            let x: std::vec::Vec<f32> = (0..C::IN_LEN)
                .map(|i| ((i * 37 % 17) as f32 - 8.0) / 4.0)
                .collect();
            let w: std::vec::Vec<f32> = (0..C::W_LEN)
                .map(|i| ((i * 11 % 13) as f32 - 6.0) / 8.0)
                .collect();
            let b = [0.25f32, -0.5, 1.0];
            let mut y = std::vec![0.0; C::OUT_LEN];
            C::f32(&x, &w, &b, 1.0, &mut y).unwrap();
            // Pad explicitly, then convolve without bounds checks.
            let (ph, pw) = (7 + 4, 6 + 4);
            let mut xp = std::vec![0.0f32; 2 * ph * pw];
            for c in 0..2 {
                for yy in 0..7 {
                    for xx in 0..6 {
                        xp[(c * ph + yy + 2) * pw + xx + 2] = x[(c * 7 + yy) * 6 + xx];
                    }
                }
            }
            let (oh, ow) = ((ph - 5) / 2 + 1, (pw - 5) / 2 + 1);
            assert_eq!((oh, ow), (C::OH, C::OW));
            for o in 0..3 {
                for i in 0..oh {
                    for j in 0..ow {
                        let mut s = b[o] as f64;
                        for c in 0..2 {
                            for a in 0..3 {
                                for e in 0..3 {
                                    s += w[((o * 2 + c) * 3 + a) * 3 + e] as f64
                                        * xp[(c * ph + i * 2 + a * 2) * pw + j * 2 + e * 2] as f64;
                                }
                            }
                        }
                        let got = y[(o * oh + i) * ow + j] as f64;
                        assert!((got - s).abs() < 1e-5, "({o},{i},{j}): {got} vs {s}");
                    }
                }
            }
        });
    }

    #[test]
    fn leaky_slope_and_length_errors() {
        type C = Conv2d<1, 1, 1, 1, 1, 1, 1, 0>;
        let mut y = [0.0];
        C::f32(&[-2.0], &[1.0], &[0.0], 0.1, &mut y).unwrap();
        assert!((y[0] + 0.2).abs() < 1e-7);
        assert_eq!(
            C::f32(&[1.0, 2.0], &[1.0], &[0.0], 0.1, &mut y),
            Err(Error::BadLength {
                expected: 1,
                got: 2
            })
        );
    }
}
