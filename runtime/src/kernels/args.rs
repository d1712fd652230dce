//! The plain data the kernel front-ends ([`conv2d`](super::conv2d), [`dense`](super::dense))
//! and their SIMD engines ([`simd`](super::simd)) share: an int8 layer's quantisation
//! ([`QuantArgs`]) and the float weight types ([`FloatWeight`]). They depend on no kernel, so
//! the engines do not depend on the front-ends that call them. [`conv2d`](super::conv2d)
//! re-exports them.

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

/// Weight element types of the float paths: f32 and f16 (sealed).
pub trait FloatWeight: Copy + sealed::Sealed {
    /// The weight as f32.
    fn widen(self) -> f32;
    /// The slice as a concrete type, for the platform kernels.
    #[doc(hidden)]
    fn typed(w: &[Self]) -> TypedWeights<'_>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
}

/// A weight slice of either float type.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum TypedWeights<'a> {
    /// f32 weights.
    F32(&'a [f32]),
    /// f16 weights.
    F16(&'a [half::f16]),
}

impl FloatWeight for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    fn typed(w: &[Self]) -> TypedWeights<'_> {
        TypedWeights::F32(w)
    }
}

impl FloatWeight for half::f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    fn typed(w: &[Self]) -> TypedWeights<'_> {
        TypedWeights::F16(w)
    }
}
