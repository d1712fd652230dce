//! The TFLite / CMSIS-NN int8 arithmetic: real multipliers as a Q31 fixed-point
//! multiplier and a power-of-two shift, applied with the same rounding as
//! TFLite's `MultiplyByQuantizedMultiplier` (doubling high multiply with
//! round-half-away-from-zero, then a rounding right shift), so results can be
//! checked against the industry reference bit for bit.

/// A real multiplier `m = multiplier * 2^(shift - 31)`, `multiplier` in [2^30, 2^31).
///
/// `repr(C)`: a weight blob stores tables of these as (multiplier, shift) i32 pairs that
/// are borrowed in place ([`Blob::requant`](crate::blob::Blob::requant)).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct Requant {
    /// Q31 mantissa.
    pub multiplier: i32,
    /// Power-of-two exponent (positive = left shift).
    pub shift: i32,
}

impl Requant {
    /// Encode a positive real multiplier (TFLite `QuantizeMultiplier`). Zero and
    /// negative or non-finite inputs give the zero multiplier.
    pub fn from_real(m: f64) -> Self {
        if !(m > 0.0) || !m.is_finite() {
            return Self {
                multiplier: 0,
                shift: 0,
            };
        }
        // frexp: m = frac * 2^exp with frac in [0.5, 1).
        let mut exp = libm::ilogb(m) + 1;
        let mut frac = m / libm::ldexp(1.0, exp);
        if frac >= 1.0 {
            frac /= 2.0;
            exp += 1;
        }
        let mut q = libm::round(frac * (1u64 << 31) as f64) as i64;
        if q == 1i64 << 31 {
            q /= 2;
            exp += 1;
        }
        if exp < -31 {
            return Self {
                multiplier: 0,
                shift: 0,
            };
        }
        Self {
            multiplier: q as i32,
            shift: exp.min(30),
        }
    }

    /// True for what [`Requant::from_real`] can produce: the zero multiplier, or a
    /// mantissa in [2^30, 2^31) with a shift in [-31, 30] (a loader's sanity check).
    pub fn is_valid(self) -> bool {
        (self.multiplier == 0 && self.shift == 0)
            || (self.multiplier >= 1 << 30 && (-31..=30).contains(&self.shift))
    }

    /// True if the encoding is valid ([`Requant::is_valid`]) and [`Requant::apply`] is exact
    /// for every `|x| <= bound`: the left shift of a multiplier above one keeps
    /// `bound << shift` below [`ACC_LIMIT`], so neither the shift nor the output zero point
    /// added afterwards can overflow.
    pub fn exact_up_to(self, bound: i64) -> bool {
        // `bound << left < ACC_LIMIT`, without overflowing for a huge bound.
        let left = self.shift.clamp(0, 31);
        self.is_valid() && (0..=(ACC_LIMIT - 1) >> left).contains(&bound)
    }

    /// The real value this encodes.
    pub fn to_real(self) -> f64 {
        self.multiplier as f64 * libm::ldexp(1.0, self.shift - 31)
    }

    /// `round(x * m)` in TFLite's fixed-point arithmetic.
    ///
    /// ```
    /// use runtime::quant::Requant;
    /// let r = Requant::from_real(0.25);
    /// assert_eq!(r.apply(1000), 250);
    /// assert_eq!(r.apply(-1002), -251); // -250.5 rounds away from zero
    /// ```
    #[inline]
    pub fn apply(self, x: i32) -> i32 {
        let left = if self.shift > 0 { self.shift } else { 0 };
        let right = if self.shift > 0 { 0 } else { -self.shift };
        rounding_divide_by_pot(
            saturating_rounding_doubling_high_mul(x.wrapping_shl(left as u32), self.multiplier),
            right,
        )
    }
}

/// Bound the accumulators (shifted left by the requantisation) of a loaded int8 layer
/// must stay below: then requantisation and the output zero point are exact in i32.
pub const ACC_LIMIT: i64 = 1 << 30;

/// Largest `|w (x - zp)|` of one int8 multiply-accumulate: `|w| <= 128`, `|x - zp| <= 255`.
pub const MAX_PRODUCT: i64 = 128 * 255;

/// Largest `|acc|` of an int8 accumulator `bias + sum of taps products` (i64, exact).
fn acc_bound(bias: i32, taps: usize) -> Option<i64> {
    (taps as i64)
        .checked_mul(MAX_PRODUCT)?
        .checked_add(i64::from(bias).abs())
}

/// Whether an int8 layer loaded from a blob is exact for every input: for each output
/// channel, `|bias| + taps * 128 * 255` (the largest accumulator any int8 input can give,
/// `taps` multiply-accumulates per output) shifted by that channel's requantisation stays
/// below [`ACC_LIMIT`], so the i32 accumulation never wraps on any path and requantisation
/// never overflows. `bias`, `pos` and `neg` must have the same length.
///
/// ```
/// use runtime::quant::{Requant, layer_is_exact};
/// let r = [Requant::from_real(0.01)];
/// assert!(layer_is_exact(&[1000], 288, &r, &r));
/// assert!(!layer_is_exact(&[i32::MAX], 288, &r, &r)); // would wrap
/// assert!(!layer_is_exact(&[1000], 288, &r, &[Requant::from_real(1e6)])); // shift overflows
/// ```
pub fn layer_is_exact(bias: &[i32], taps: usize, pos: &[Requant], neg: &[Requant]) -> bool {
    bias.len() == pos.len()
        && bias.len() == neg.len()
        && bias.iter().zip(pos.iter().zip(neg)).all(|(&b, (p, n))| {
            acc_bound(b, taps).is_some_and(|a| p.exact_up_to(a) && n.exact_up_to(a))
        })
}

/// Whether the int8 head (accumulators dequantised in f32, no requantisation) is exact for
/// every input: `|bias| + taps * 128 * 255` fits in an i32 for every output.
///
/// ```
/// use runtime::quant::head_is_exact;
/// assert!(head_is_exact(&[-300_000, 5], 32));
/// assert!(!head_is_exact(&[i32::MAX], 32));
/// ```
pub fn head_is_exact(bias: &[i32], taps: usize) -> bool {
    bias.iter()
        .all(|&b| acc_bound(b, taps).is_some_and(|a| a <= i64::from(i32::MAX)))
}

/// Whether a stand-alone int8 leaky ReLU (`x - zp` requantised, `|x - zp| <= 255`) is exact
/// for every input.
pub fn leaky_is_exact(pos: Requant, neg: Requant) -> bool {
    pos.exact_up_to(255) && neg.exact_up_to(255)
}

/// TFLite's `SaturatingRoundingDoublingHighMul`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    // Division truncating toward zero, as in C.
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// TFLite's `RoundingDivideByPOT`: x / 2^exponent rounded half away from zero.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    if exponent <= 0 {
        return x;
    }
    let exponent = exponent.min(31);
    let mask: i32 = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// Per-tensor affine int8 quantisation: real = scale * (q - zero_point).
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QParams {
    /// Scale.
    pub scale: f32,
    /// Zero point in [-128, 127].
    pub zero_point: i32,
}

impl QParams {
    /// Parameters covering [min, max] (widened to include 0) with int8, as TFLite chooses them.
    pub fn from_range(min: f32, max: f32) -> Self {
        let (min, max) = (min.min(0.0), max.max(0.0));
        let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
        let zp = libm::roundf(-128.0 - min / scale) as i32;
        Self {
            scale,
            zero_point: zp.clamp(-128, 127),
        }
    }

    /// Quantise a real value (round half away from zero, saturate).
    #[inline]
    pub fn quantize(&self, x: f32) -> i8 {
        // `wrapping_add`: what an optimised build does anyway (and the SIMD paths reproduce),
        // spelled out so that a debug build cannot panic on an absurd scale.
        (libm::roundf(x / self.scale) as i32)
            .wrapping_add(self.zero_point)
            .clamp(-128, 127) as i8
    }

    /// Dequantise.
    #[inline]
    pub fn dequantize(&self, q: i8) -> f32 {
        self.scale * (q as i32 - self.zero_point) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipliers_round_trip_and_apply_like_real_arithmetic() {
        for &m in &[1e-6, 3.1e-4, 0.0071, 0.25, 0.4999, 0.75, 1.0, 1.7, 123.4] {
            let r = Requant::from_real(m);
            assert!((r.to_real() - m).abs() <= m * 1e-9, "{m}: {r:?}");
            for x in [-100_000i32, -12_345, -1, 0, 1, 777, 99_999] {
                let exact = x as f64 * m;
                let got = r.apply(x);
                // Fixed point agrees with round(x m) to within one unit (double rounding).
                assert!(
                    (got as f64 - exact).abs() <= 1.0,
                    "{m} x {x}: {got} vs {exact}"
                );
            }
        }
    }

    /// Hand-checked TFLite values: the reference implementation's rounding on ties.
    #[test]
    fn rounding_matches_tflite_on_ties() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-7, 2), -2);
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
    }

    /// The accumulator bound is the true worst case: at the limit an all-extreme input
    /// reaches it exactly, and one unit of bias more is refused.
    #[test]
    fn layer_bounds_are_the_wrap_limit() {
        let r = [Requant::from_real(1e-3)];
        let taps = 288;
        // Worst accumulator of a channel: bias + taps * (-128) * (-128 - 127).
        let worst = |b: i32| i64::from(b) + taps as i64 * 128 * 255;
        let b_max = (ACC_LIMIT - 1 - taps as i64 * MAX_PRODUCT) as i32;
        assert!(worst(b_max) < ACC_LIMIT);
        assert!(layer_is_exact(&[b_max], taps, &r, &r));
        assert!(layer_is_exact(&[-b_max], taps, &r, &r));
        assert!(!layer_is_exact(&[b_max + 1], taps, &r, &r));
        assert!(!layer_is_exact(&[i32::MIN], taps, &r, &r));
        // The bias that wrapped to log mass 67,472 in issue 18.
        assert!(!head_is_exact(&[i32::MAX], 32));
        assert!(head_is_exact(&[i32::MAX - 32 * 128 * 255], 32));
        assert!(!head_is_exact(&[i32::MAX - 32 * 128 * 255 + 1], 32));
        // A left shift that would overflow the accumulator; mismatched lengths.
        let big = [Requant {
            multiplier: 1 << 30,
            shift: 20,
        }];
        assert!(!layer_is_exact(&[0], taps, &big, &r));
        assert!(!layer_is_exact(&[0, 0], taps, &r, &r));
        // An invalid encoding is never exact.
        assert!(
            !Requant {
                multiplier: 5,
                shift: 0
            }
            .exact_up_to(1)
        );
    }

    #[test]
    fn qparams_cover_their_range() {
        let q = QParams::from_range(-1.0, 3.0);
        assert_eq!(q.quantize(-1.0), -128);
        assert_eq!(q.quantize(3.0), 127);
        assert_eq!(q.dequantize(q.quantize(0.0)), 0.0);
        assert_eq!(q.quantize(1e9), 127);
    }
}
