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

/// The model constants: tensor 0 of every blob, `BANDS + 5` f32 values:
/// `band_scale[BANDS], z_shift, z_scale, sigma_floor, calibration kind (0 none,
/// 1 scale, 2 constant), calibration value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta<const BANDS: usize> {
    /// Preprocessing of the counts and the redshift.
    pub preprocess: Preprocess<BANDS>,
    /// Smallest sigma, added after the softplus (dex).
    pub sigma_floor: f32,
    /// Calibration of sigma.
    pub calibration: SigmaCalibration,
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
    pub const LEN: usize = BANDS + 5;

    /// Read the stored form; `None` if the length is wrong or a value is not usable
    /// (non-finite, a non-positive band scale or floor, an unknown calibration kind).
    pub fn from_slice(v: &[f32]) -> Option<Self> {
        if v.len() != Self::LEN || v.iter().any(|x| !x.is_finite()) {
            return None;
        }
        let mut band_scale = [0.0f32; BANDS];
        for (dst, src) in band_scale.iter_mut().zip(v) {
            if *src <= 0.0 {
                return None;
            }
            *dst = *src;
        }
        let tail = &v[BANDS..];
        let (kind, value) = (tail[3], tail[4]);
        let calibration = if kind == 0.0 {
            SigmaCalibration::None
        } else if kind == 1.0 && value > 0.0 {
            SigmaCalibration::Scale(value)
        } else if kind == 2.0 && value > 0.0 {
            SigmaCalibration::Constant(value)
        } else {
            return None;
        };
        if tail[2] < 0.0 {
            return None;
        }
        Some(Self {
            preprocess: Preprocess {
                band_scale,
                z_shift: tail[0],
                z_scale: tail[1],
            },
            sigma_floor: tail[2],
            calibration,
        })
    }

    /// Head outputs (mu, pre-softplus sigma) to an [`Estimate`]:
    /// `sigma = softplus(raw[1]) + floor`, then calibrated.
    ///
    /// ```
    /// use runtime::model::{Meta, SigmaCalibration};
    /// use runtime::kernels::preprocess::Preprocess;
    /// let m = Meta::<1> { preprocess: Preprocess::log1p(), sigma_floor: 0.01,
    ///                     calibration: SigmaCalibration::Scale(2.0) };
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
        let ok = [2.0f32, 3.0, 0.5, 4.0, 0.005, 1.0, 0.9];
        let m = Meta::<2>::from_slice(&ok).unwrap();
        assert_eq!(m.preprocess.band_scale, [2.0, 3.0]);
        assert_eq!((m.preprocess.z_shift, m.preprocess.z_scale), (0.5, 4.0));
        assert_eq!(m.calibration, SigmaCalibration::Scale(0.9));
        for (i, bad) in [f32::NAN, -1.0, 7.0].into_iter().enumerate() {
            let mut v = ok;
            v[[0, 4, 5][i]] = bad;
            assert!(Meta::<2>::from_slice(&v).is_none(), "{v:?}");
        }
        assert!(Meta::<2>::from_slice(&ok[..6]).is_none());
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
