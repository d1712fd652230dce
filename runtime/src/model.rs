//! What every generated model shares: the model constants stored at the front of each
//! weight blob ([`Meta`]), the head's conversion of raw outputs into an [`Estimate`]
//! (log mass and calibrated sigma), and the two-ended activation arena ([`ping_pong`]).
//!
//! Generated code (`codegen export`) wires these with the kernels for one architecture;
//! the numbers that depend on training (preprocessing scales, sigma floor and
//! calibration) live in the blob, so a retrained model of the same architecture is a
//! new blob, not new code.

use crate::Error;
use crate::kernels::preprocess::Preprocess;

/// How the predicted sigma is calibrated (stored as a kind code and a value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SigmaCalibration {
    /// The network's sigma as is.
    None,
    /// sigma = factor x predicted sigma.
    Scale(f32),
    /// sigma = this constant (dex).
    Constant(f32),
}

/// The highest redshift any model may accept ([`Meta::z_range`] must lie inside
/// `[0, MAX_REDSHIFT]`); the trainer refuses data beyond it too.
pub const MAX_REDSHIFT: f32 = 20.0;

/// Largest magnitude accepted for the scale-like model constants (band scales, redshift
/// shift and scale, sigma calibration factor): far above anything a trained model holds,
/// low enough that the preprocessing of any u16 count and accepted redshift stays finite.
pub const MAX_CONSTANT: f32 = 1.0e6;

/// Largest sigma floor or constant sigma accepted, dex.
pub const MAX_SIGMA: f32 = 10.0;

/// The model constants: tensor 0 of every blob, `BANDS + 7` f32 values:
/// `band_scale[BANDS], z_shift, z_scale, sigma_floor, calibration kind (0 none,
/// 1 scale, 2 constant), calibration value, z_min, z_max`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta<const BANDS: usize> {
    /// Preprocessing of the counts and the redshift.
    pub preprocess: Preprocess<BANDS>,
    /// Smallest sigma, added after the softplus (dex).
    pub sigma_floor: f32,
    /// Calibration of sigma.
    pub calibration: SigmaCalibration,
    /// The redshifts the model accepts, `[min, max]` inclusive: the range it was trained on
    /// (`codegen export` records it); [`Meta::redshift`] refuses anything else.
    pub z_range: [f32; 2],
}

/// One cluster's answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// log10 M500c / Msun.
    pub log_mass: f32,
    /// Calibrated 1-sigma uncertainty of `log_mass`, dex.
    pub sigma: f32,
}

/// `ln(1 + e^x)` without overflow: `max(x, 0) + ln(1 + e^-|x|)`.
///
/// ```
/// use runtime::model::softplus;
/// assert!((softplus(0.0) - core::f32::consts::LN_2).abs() < 1e-7);
/// assert_eq!(softplus(200.0), 200.0);
/// ```
pub fn softplus(x: f32) -> f32 {
    let a = if x > 0.0 { x } else { 0.0 };
    let neg_abs = if x < 0.0 { x } else { -x };
    a + libm::log1pf(libm::expf(neg_abs))
}

impl<const BANDS: usize> Meta<BANDS> {
    /// Number of f32 values in the stored form.
    pub const LEN: usize = BANDS + 7;

    /// Read the stored form; `None` if the length is wrong or a value is not usable: a
    /// non-finite value, a band scale outside `(0, MAX_CONSTANT]`, a redshift shift or scale
    /// larger than [`MAX_CONSTANT`] in magnitude, a sigma floor outside `[0, MAX_SIGMA]`, an
    /// unknown calibration kind or a calibration value outside `(0, MAX_CONSTANT]` (factor)
    /// or `(0, MAX_SIGMA]` (constant), a redshift range not within `[0, MAX_REDSHIFT]` or
    /// with `min > max`.
    pub fn from_slice(v: &[f32]) -> Option<Self> {
        if v.len() != Self::LEN || v.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let within = |x: f32, lo: f32, hi: f32| lo <= x && x <= hi;
        let mut band_scale = [0.0f32; BANDS];
        for (dst, src) in band_scale.iter_mut().zip(v) {
            if !(*src > 0.0 && *src <= MAX_CONSTANT) {
                return None;
            }
            *dst = *src;
        }
        let tail = &v[BANDS..];
        let (z_shift, z_scale, floor) = (tail[0], tail[1], tail[2]);
        let (kind, value) = (tail[3], tail[4]);
        let (z_min, z_max) = (tail[5], tail[6]);
        let calibration = if kind == 0.0 {
            SigmaCalibration::None
        } else if kind == 1.0 && value > 0.0 && value <= MAX_CONSTANT {
            SigmaCalibration::Scale(value)
        } else if kind == 2.0 && value > 0.0 && value <= MAX_SIGMA {
            SigmaCalibration::Constant(value)
        } else {
            return None;
        };
        if !(within(z_shift, -MAX_CONSTANT, MAX_CONSTANT)
            && within(z_scale, -MAX_CONSTANT, MAX_CONSTANT)
            && within(floor, 0.0, MAX_SIGMA)
            && within(z_min, 0.0, MAX_REDSHIFT)
            && within(z_max, z_min, MAX_REDSHIFT))
        {
            return None;
        }
        Some(Self {
            preprocess: Preprocess {
                band_scale,
                z_shift,
                z_scale,
            },
            sigma_floor: floor,
            calibration,
            z_range: [z_min, z_max],
        })
    }

    /// The network's redshift input for a cluster at `z`: [`Error::BadScalar`] if `z` is
    /// not finite, [`Error::RedshiftOutOfRange`] outside [`Meta::z_range`], else the
    /// preprocessed value.
    ///
    /// ```
    /// use runtime::model::{Meta, SigmaCalibration};
    /// use runtime::kernels::preprocess::Preprocess;
    /// use runtime::Error;
    /// let m = Meta::<1> { preprocess: Preprocess::log1p(), sigma_floor: 0.01,
    ///                     calibration: SigmaCalibration::None, z_range: [0.05, 1.3] };
    /// assert_eq!(m.redshift(0.5), Ok(0.5));
    /// assert_eq!(m.redshift(1.31), Err(Error::RedshiftOutOfRange));
    /// assert_eq!(m.redshift(f32::NAN), Err(Error::BadScalar));
    /// ```
    pub fn redshift(&self, z: f32) -> Result<f32, Error> {
        if !z.is_finite() {
            return Err(Error::BadScalar);
        }
        if !(self.z_range[0] <= z && z <= self.z_range[1]) {
            return Err(Error::RedshiftOutOfRange);
        }
        self.preprocess.redshift(z)
    }

    /// [`Meta::estimate`], refusing a non-finite result ([`Error::NonFinite`]): what the
    /// generated `infer` returns, so no `Ok` ever holds NaN or infinity.
    ///
    /// ```
    /// use runtime::model::{Meta, SigmaCalibration};
    /// use runtime::kernels::preprocess::Preprocess;
    /// let m = Meta::<1> { preprocess: Preprocess::log1p(), sigma_floor: 0.01,
    ///                     calibration: SigmaCalibration::None, z_range: [0.0, 2.0] };
    /// assert!(m.output([14.5, 0.0]).is_ok());
    /// assert!(m.output([f32::NAN, 0.0]).is_err());
    /// assert!(m.output([14.5, f32::INFINITY]).is_err());
    /// ```
    pub fn output(&self, raw: [f32; 2]) -> Result<Estimate, Error> {
        let e = self.estimate(raw);
        if e.log_mass.is_finite() && e.sigma.is_finite() {
            Ok(e)
        } else {
            Err(Error::NonFinite)
        }
    }

    /// Head outputs (mu, pre-softplus sigma) to an [`Estimate`]:
    /// `sigma = softplus(raw[1]) + floor`, then calibrated.
    ///
    /// ```
    /// use runtime::model::{Meta, SigmaCalibration};
    /// use runtime::kernels::preprocess::Preprocess;
    /// let m = Meta::<1> { preprocess: Preprocess::log1p(), sigma_floor: 0.01,
    ///                     calibration: SigmaCalibration::Scale(2.0), z_range: [0.0, 2.0] };
    /// let e = m.estimate([14.5, 0.0]);
    /// assert_eq!(e.log_mass, 14.5);
    /// assert!((e.sigma - 2.0 * (core::f32::consts::LN_2 + 0.01)).abs() < 1e-6);
    /// ```
    pub fn estimate(&self, raw: [f32; 2]) -> Estimate {
        estimate(raw, self.sigma_floor, self.calibration)
    }
}

/// Head outputs (mu, pre-softplus sigma) to an [`Estimate`] (see [`Meta::estimate`]).
pub fn estimate(raw: [f32; 2], sigma_floor: f32, calibration: SigmaCalibration) -> Estimate {
    let s = softplus(raw[1]) + sigma_floor;
    Estimate {
        log_mass: raw[0],
        sigma: match calibration {
            SigmaCalibration::None => s,
            SigmaCalibration::Scale(k) => s * k,
            SigmaCalibration::Constant(c) => c,
        },
    }
}

/// Split a two-ended activation arena for one layer: the input occupies one end
/// (`arena[..in_len]` when `input_at_front`, else `arena[len - in_len..]`) and the
/// output the other, so consecutive layers alternate ends and the arena needs only the
/// largest `in_len + out_len` of the network. An arena too small is an error.
///
/// ```
/// use runtime::model::ping_pong;
/// let mut arena = [1, 2, 3, 0, 0];
/// let (x, y) = ping_pong(&mut arena, 3, 2, true).unwrap();
/// y.copy_from_slice(&[x[0] + x[1], x[2]]);
/// assert_eq!(arena, [1, 2, 3, 3, 3]);
/// assert!(ping_pong(&mut arena, 4, 2, false).is_err());
/// ```
pub fn ping_pong<T>(
    arena: &mut [T],
    in_len: usize,
    out_len: usize,
    input_at_front: bool,
) -> Result<(&[T], &mut [T]), Error> {
    let n = arena.len();
    if in_len.checked_add(out_len).is_none_or(|need| need > n) {
        return Err(Error::BadLength {
            expected: in_len.saturating_add(out_len),
            got: n,
        });
    }
    if input_at_front {
        let (a, b) = arena.split_at_mut(n - out_len);
        Ok((&a[..in_len], b))
    } else {
        let (a, b) = arena.split_at_mut(out_len);
        Ok((&b[b.len() - in_len..], a))
    }
}

/// [`ping_pong`] with a third region for a fused layer's line buffer: the input at one
/// end, the output at the other, and `line_len` elements just before the output (after it
/// when the output is at the front). Needs `in_len + line_len + out_len` elements.
///
/// ```
/// use runtime::model::ping_pong_line;
/// let mut arena = [1, 2, 0, 0, 0, 0];
/// let (x, y, line) = ping_pong_line(&mut arena, 2, 1, 2, true).unwrap();
/// line.copy_from_slice(&[x[0] * 10, x[1] * 10]);
/// y[0] = line[0] + line[1];
/// assert_eq!(arena, [1, 2, 0, 10, 20, 30]);
/// assert!(ping_pong_line(&mut arena, 2, 2, 3, false).is_err());
/// ```
#[allow(clippy::type_complexity)]
pub fn ping_pong_line<T>(
    arena: &mut [T],
    in_len: usize,
    out_len: usize,
    line_len: usize,
    input_at_front: bool,
) -> Result<(&[T], &mut [T], &mut [T]), Error> {
    let n = arena.len();
    let need = in_len
        .checked_add(out_len)
        .and_then(|v| v.checked_add(line_len));
    if need.is_none_or(|need| need > n) {
        return Err(Error::BadLength {
            expected: in_len.saturating_add(out_len).saturating_add(line_len),
            got: n,
        });
    }
    if input_at_front {
        let (a, y) = arena.split_at_mut(n - out_len);
        let (a, line) = a.split_at_mut(n - out_len - line_len);
        Ok((&a[..in_len], y, line))
    } else {
        let (y, b) = arena.split_at_mut(out_len);
        let (line, b) = b.split_at_mut(line_len);
        Ok((&b[b.len() - in_len..], y, line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip_and_rejections() {
        let ok = [2.0f32, 3.0, 0.5, 4.0, 0.005, 1.0, 0.9, 0.05, 1.3];
        let m = Meta::<2>::from_slice(&ok).unwrap();
        assert_eq!(m.preprocess.band_scale, [2.0, 3.0]);
        assert_eq!((m.preprocess.z_shift, m.preprocess.z_scale), (0.5, 4.0));
        assert_eq!(m.calibration, SigmaCalibration::Scale(0.9));
        assert_eq!(m.z_range, [0.05, 1.3]);
        // (index, value): NaN, negative band scale, unknown kind, absurd band scale, absurd z
        // scale, negative or absurd floor, infinite calibration, negative or inverted or
        // too-wide redshift range.
        for (i, bad) in [
            (0, f32::NAN),
            (0, -1.0),
            (5, 7.0),
            (1, 1e30),
            (3, -1e30),
            (4, -0.1),
            (4, 1e9),
            (6, f32::INFINITY),
            (7, -0.01),
            (7, 2.0),
            (8, 100.0),
            (8, f32::MAX),
        ] {
            let mut v = ok;
            v[i] = bad;
            assert!(Meta::<2>::from_slice(&v).is_none(), "{v:?}");
        }
        assert!(Meta::<2>::from_slice(&ok[..7]).is_none());
    }

    /// Redshifts outside the recorded range are refused, whatever their size; inside, the
    /// preprocessed value. The issue-18 cases: 100, 1e30, f32::MAX, 20 (int8 saturated there).
    #[test]
    fn redshifts_outside_the_recorded_range_are_refused() {
        let v = [1.0f32, 0.6, 2.0, 0.005, 0.0, 0.0, 0.05, 1.3];
        let m = Meta::<1>::from_slice(&v).unwrap();
        for z in [100.0, 1e30, f32::MAX, 20.0, 1.3001, 0.0499, 0.0] {
            assert_eq!(m.redshift(z), Err(Error::RedshiftOutOfRange), "{z}");
        }
        for z in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert_eq!(m.redshift(z), Err(Error::BadScalar), "{z}");
        }
        assert_eq!(m.redshift(0.05), Ok((0.05 - 0.6) * 2.0));
        assert_eq!(m.redshift(1.3), Ok((1.3 - 0.6) * 2.0));
    }

    /// No Ok output holds NaN or infinity.
    #[test]
    fn non_finite_outputs_are_errors() {
        let v = [1.0f32, 0.6, 2.0, 0.005, 1.0, 2.0, 0.05, 1.3];
        let m = Meta::<1>::from_slice(&v).unwrap();
        assert!(m.output([14.0, -3.0]).is_ok());
        for raw in [[f32::NAN, 0.0], [f32::INFINITY, 0.0], [14.0, f32::NAN]] {
            assert_eq!(m.output(raw), Err(Error::NonFinite), "{raw:?}");
        }
        // Finite raw outputs whose calibrated sigma overflows.
        assert_eq!(m.output([14.0, f32::MAX]), Err(Error::NonFinite));
    }

    /// softplus against the f64 closed form over a wide range.
    #[test]
    fn softplus_matches_f64() {
        for i in -400..=400 {
            let x = i as f32 * 0.1;
            let r = (x as f64).exp().ln_1p();
            let r = if x > 30.0 { x as f64 } else { r };
            assert!(
                ((softplus(x) as f64) - r).abs() <= 1e-6 * r.max(1e-30) + 1e-7,
                "{x}"
            );
        }
    }
}
