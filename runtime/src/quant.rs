//! The TFLite / CMSIS-NN int8 arithmetic: real multipliers as a Q31 fixed-point
//! multiplier and a power-of-two shift, applied with the same rounding as
//! TFLite's `MultiplyByQuantizedMultiplier` (doubling high multiply with
//! round-half-away-from-zero, then a rounding right shift), so results can be
//! checked against the industry reference bit for bit.

/// A real multiplier `m = multiplier * 2^(shift - 31)`, `multiplier` in [2^30, 2^31).
///
/// `repr(C)`: a weight blob stores tables of these as (multiplier, shift) i32 pairs that
/// are borrowed in place ([`Blob::requant`](crate::blob::Blob::requant)).
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
        (libm::roundf(x / self.scale) as i32 + self.zero_point).clamp(-128, 127) as i8
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

    #[test]
    fn qparams_cover_their_range() {
        let q = QParams::from_range(-1.0, 3.0);
        assert_eq!(q.quantize(-1.0), -128);
        assert_eq!(q.quantize(3.0), 127);
        assert_eq!(q.dequantize(q.quantize(0.0)), 0.0);
        assert_eq!(q.quantize(1e9), 127);
    }
}
