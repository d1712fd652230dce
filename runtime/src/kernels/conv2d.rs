//! 2-D convolution, channels-first (`[c][y][x]`), square kernel, symmetric zero
//! padding, stride and dilation fixed at compile time.
//!
//! The shape is a type: [`Conv2d`] carries every dimension as a const generic,
//! derives the output size and buffer lengths as associated constants, and
//! rejects impossible shapes at compile time, so a generated model cannot call a
//! kernel with dimensions that do not fit. Buffers are caller-provided slices
//! whose lengths are checked (an error, never a panic).

use crate::Error;
use crate::quant::Requant;

/// Everything an int8 layer needs besides its weights: the input zero point, the
/// per-output-channel requantisation for non-negative and negative accumulators
/// (a fused leaky ReLU: the negative one is `slope` times the positive one), the
/// output zero point and clamp.
#[derive(Debug, Clone, Copy)]
pub struct QuantArgs<'a> {
    /// Input zero point.
    pub input_zero_point: i32,
    /// Per output channel, applied to accumulators >= 0.
    pub requant_pos: &'a [Requant],
    /// Per output channel, applied to accumulators < 0.
    pub requant_neg: &'a [Requant],
    /// Output zero point.
    pub output_zero_point: i32,
}

impl QuantArgs<'_> {
    /// Requantise accumulator `acc` of output channel `oc` to int8.
    #[inline(always)]
    pub fn output(&self, oc: usize, acc: i32) -> i8 {
        let r = if acc >= 0 {
            self.requant_pos[oc]
        } else {
            self.requant_neg[oc]
        };
        (r.apply(acc) + self.output_zero_point).clamp(-128, 127) as i8
    }

    /// Check the per-channel tables.
    pub fn check(&self, channels: usize) -> Result<(), Error> {
        for got in [self.requant_pos.len(), self.requant_neg.len()] {
            if got != channels {
                return Err(Error::BadLength {
                    expected: channels,
                    got,
                });
            }
        }
        Ok(())
    }
}

/// Convolution of `IC x IH x IW` into `OC` channels with a `K x K` kernel,
/// stride `S`, dilation `D` and `P` pixels of zero padding on every side.
/// Weights are `[OC][IC][K][K]`, biases `[OC]`.
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
        mut store: impl FnMut(usize, usize, A),
    ) {
        let (oh, ow) = (Self::OH, Self::OW);
        for oc in 0..OC {
            for oy in 0..oh {
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
                    store(oc, (oc * oh + oy) * ow + ox, acc);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Against a direct transcription of the convolution sum with explicit zero padding.
    #[test]
    fn matches_padded_definition_with_stride_and_dilation() {
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
