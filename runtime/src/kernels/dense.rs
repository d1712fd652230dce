//! Fully connected layer, weights `[IN][OUT]` (input-major, as burn stores them).

use super::args::{FloatWeight, QuantArgs};
use super::simd;
use crate::Error;

/// Dense layer from `IN` to `OUT` units.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dense<const IN: usize, const OUT: usize>;

impl<const IN: usize, const OUT: usize> Dense<IN, OUT> {
    /// Input length.
    pub const IN_LEN: usize = IN;
    /// Output length.
    pub const OUT_LEN: usize = OUT;
    /// Weight length.
    pub const W_LEN: usize = IN * OUT;
    /// Multiply-accumulates per call.
    pub const MACS: usize = IN * OUT;

    fn check(input: usize, w: usize, bias: usize, out: usize) -> Result<(), Error> {
        for (expected, got) in [(IN, input), (Self::W_LEN, w), (OUT, bias), (OUT, out)] {
            if expected != got {
                return Err(Error::BadLength { expected, got });
            }
        }
        Ok(())
    }

    /// f32 reference with an optional leaky ReLU (slope 1 = none), summed in input order.
    ///
    /// ```
    /// use runtime::kernels::dense::Dense;
    /// let mut y = [0.0f32; 2];
    /// // w[i][o]: y0 = 1*1 + 2*3, y1 = 1*2 + 2*4
    /// Dense::<2, 2>::f32(&[1.0, 2.0], &[1.0, 2.0, 3.0, 4.0], &[0.0, -20.0], 0.5, &mut y).unwrap();
    /// assert_eq!(y, [7.0, -5.0]);
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

    /// Half-precision weights widened on use.
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
        for (o, y) in out.iter_mut().enumerate() {
            let mut acc = bias[o];
            for (i, x) in input.iter().enumerate() {
                acc += w(i * OUT + o) * x;
            }
            *y = if acc < 0.0 { acc * slope } else { acc };
        }
        Ok(())
    }

    /// int32 accumulators `bias + sum w (x - zp)`, for an epilogue that dequantises
    /// (the network's head) or requantises ([`Dense::s8`]).
    pub fn acc_s8(
        input: &[i8],
        weights: &[i8],
        bias: &[i32],
        input_zero_point: i32,
        out: &mut [i32],
    ) -> Result<(), Error> {
        Self::check(input.len(), weights.len(), bias.len(), out.len())?;
        for (o, y) in out.iter_mut().enumerate() {
            let mut acc = bias[o];
            for (i, x) in input.iter().enumerate() {
                acc =
                    acc.wrapping_add(weights[i * OUT + o] as i32 * (*x as i32 - input_zero_point));
            }
            *y = acc;
        }
        Ok(())
    }

    /// int8 reference, per-output-channel requantisation with a fused leaky ReLU.
    pub fn s8(
        input: &[i8],
        weights: &[i8],
        bias: &[i32],
        q: &QuantArgs<'_>,
        out: &mut [i8],
    ) -> Result<(), Error> {
        Self::check(input.len(), weights.len(), bias.len(), out.len())?;
        q.check(OUT)?;
        for o in 0..OUT {
            let mut acc = bias[o];
            for (i, x) in input.iter().enumerate() {
                acc = acc
                    .wrapping_add(weights[i * OUT + o] as i32 * (*x as i32 - q.input_zero_point));
            }
            out[o] = q.output(o, acc);
        }
        Ok(())
    }

    /// Fast path of [`Dense::f32`] / [`Dense::f16`]: SIMD when this build and CPU have it
    /// ([`simd::active`]; on AVX2 and NEON each output still sums in input order, with fused
    /// multiply-add; on AVX-512 in several interleaved partial sums), else the reference.
    /// Results differ from the reference only by rounding. Below 8 outputs AVX-512 builds
    /// take the reference.
    ///
    /// ```
    /// use runtime::kernels::dense::Dense;
    /// let mut y = [0.0f32; 2];
    /// Dense::<2, 2>::f32_fast(&[1.0, 2.0], &[1.0f32, 2.0, 3.0, 4.0], &[0.0, -20.0], 0.5, &mut y).unwrap();
    /// assert_eq!(y, [7.0, -5.0]);
    /// ```
    pub fn f32_fast<W: FloatWeight>(
        input: &[f32],
        weights: &[W],
        bias: &[f32],
        slope: f32,
        out: &mut [f32],
    ) -> Result<(), Error> {
        Self::check(input.len(), weights.len(), bias.len(), out.len())?;
        if simd::dense_f32(input, weights, bias, slope, out) {
            return Ok(());
        }
        Self::f32_with(
            input,
            bias,
            slope,
            out,
            |i| weights[i].widen(),
            weights.len(),
        )
    }

    /// Fast path of [`Dense::acc_s8`], bit-identical to it (on AVX-512 with VNNI
    /// `vpdpbusd` from 8 outputs up).
    pub fn acc_s8_fast(
        input: &[i8],
        weights: &[i8],
        bias: &[i32],
        input_zero_point: i32,
        out: &mut [i32],
    ) -> Result<(), Error> {
        Self::check(input.len(), weights.len(), bias.len(), out.len())?;
        Self::acc_block(input, weights, bias, input_zero_point, 0, out);
        Ok(())
    }

    /// Fast path of [`Dense::s8`], bit-identical to it.
    pub fn s8_fast(
        input: &[i8],
        weights: &[i8],
        bias: &[i32],
        q: &QuantArgs<'_>,
        out: &mut [i8],
    ) -> Result<(), Error> {
        Self::check(input.len(), weights.len(), bias.len(), out.len())?;
        q.check(OUT)?;
        // Accumulators 64 outputs at a time, on the stack.
        let mut acc = [0i32; 64];
        for (c, chunk) in out.chunks_mut(64).enumerate() {
            let (o0, acc) = (c * 64, &mut acc[..chunk.len()]);
            Self::acc_block(input, weights, bias, q.input_zero_point, o0, acc);
            Self::requant_block(q, o0, acc, chunk);
        }
        Ok(())
    }

    /// `out[i] = q.output(o0 + i, acc[i])` (lengths checked by the caller).
    fn requant_block(q: &QuantArgs<'_>, o0: usize, acc: &[i32], out: &mut [i8]) {
        if simd::requant_s8(q, OUT, o0, acc, out) {
            return;
        }
        for (i, y) in out.iter_mut().enumerate() {
            *y = q.output(o0 + i, acc[i]);
        }
    }

    /// Accumulators `bias + sum w (x - zp)` of outputs `o0..o0 + acc.len()`.
    fn acc_block(input: &[i8], weights: &[i8], bias: &[i32], zp: i32, o0: usize, acc: &mut [i32]) {
        acc.copy_from_slice(&bias[o0..o0 + acc.len()]);
        if simd::dense_acc_s8(input, zp, weights, OUT, o0, acc) {
            return;
        }
        for (k, a) in acc.iter_mut().enumerate() {
            for (i, x) in input.iter().enumerate() {
                *a = a.wrapping_add(weights[i * OUT + o0 + k] as i32 * (*x as i32 - zp));
            }
        }
    }
}
