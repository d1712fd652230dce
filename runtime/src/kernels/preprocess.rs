//! Preprocessing of raw u16 detector counts into the network's input.
//!
//! The device receives what the detector gives (photon counts per band and
//! pixel); the transform the network was trained with is applied here, so the
//! host trainer and the device share one definition: `x = ln(1 + counts) *
//! scale[band]`, and the redshift is mapped as `(z - z_shift) * z_scale`.

use crate::Error;

/// Parameters of the count preprocessing, recorded by the trainer in each run
/// and exported by codegen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess<const BANDS: usize> {
    /// Multiplier applied to `ln(1 + counts)` in each band.
    pub band_scale: [f32; BANDS],
    /// Subtracted from the redshift before scaling.
    pub z_shift: f32,
    /// Multiplier applied to the shifted redshift.
    pub z_scale: f32,
}

impl<const BANDS: usize> Preprocess<BANDS> {
    /// The identity-scaled transform: `ln(1 + counts)` in every band, raw z.
    pub const fn log1p() -> Self {
        Self {
            band_scale: [1.0; BANDS],
            z_shift: 0.0,
            z_scale: 1.0,
        }
    }

    /// Transform a band-major cube (`[band][y][x]`) of raw counts into `out`.
    ///
    /// ```
    /// use runtime::kernels::preprocess::Preprocess;
    /// let p = Preprocess::<2> { band_scale: [1.0, 0.5], z_shift: 0.0, z_scale: 1.0 };
    /// let counts = [0u16, 1, 3, 7];          // two bands of two pixels
    /// let mut out = [0.0f32; 4];
    /// p.counts_f32(&counts, &mut out).unwrap();
    /// assert_eq!(out[0], 0.0);
    /// assert!((out[1] - core::f32::consts::LN_2).abs() < 1e-6);
    /// assert!((out[3] - 0.5 * 8f32.ln()).abs() < 1e-6);
    /// ```
    pub fn counts_f32(&self, counts: &[u16], out: &mut [f32]) -> Result<(), Error> {
        if out.len() != counts.len() {
            return Err(Error::BadLength {
                expected: counts.len(),
                got: out.len(),
            });
        }
        if BANDS == 0 || !counts.len().is_multiple_of(BANDS) {
            return Err(Error::BadLength {
                expected: BANDS,
                got: counts.len(),
            });
        }
        let plane = counts.len() / BANDS;
        for ((c_band, o_band), scale) in counts
            .chunks_exact(plane)
            .zip(out.chunks_exact_mut(plane))
            .zip(self.band_scale)
        {
            for (c, o) in c_band.iter().zip(o_band.iter_mut()) {
                *o = libm::log1pf(f32::from(*c)) * scale;
            }
        }
        Ok(())
    }

    /// Map a redshift to the network's scalar input; rejects NaN, infinities and z < 0.
    ///
    /// ```
    /// use runtime::kernels::preprocess::Preprocess;
    /// let p = Preprocess::<10> { z_shift: 0.5, z_scale: 2.0, ..Preprocess::log1p() };
    /// assert_eq!(p.redshift(1.0), Ok(1.0));
    /// assert!(p.redshift(f32::NAN).is_err());
    /// ```
    pub fn redshift(&self, z: f32) -> Result<f32, Error> {
        if !z.is_finite() || z < 0.0 {
            return Err(Error::BadScalar);
        }
        Ok((z - self.z_shift) * self.z_scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_std_ln_1p_on_every_count_value() {
        let p = Preprocess::<1>::log1p();
        let counts: std::vec::Vec<u16> = (0..=u16::MAX).collect();
        let mut out = std::vec![0.0f32; counts.len()];
        p.counts_f32(&counts, &mut out).unwrap();
        for (c, o) in counts.iter().zip(&out) {
            let reference = (f64::from(*c)).ln_1p() as f32;
            assert!(
                (o - reference).abs() <= 1e-6 * reference.max(1.0),
                "count {c}"
            );
        }
    }

    #[test]
    fn rejects_mismatched_buffers_without_panicking() {
        let p = Preprocess::<10>::log1p();
        let mut out = [0.0f32; 19];
        assert_eq!(
            p.counts_f32(&[0u16; 20], &mut out),
            Err(Error::BadLength {
                expected: 20,
                got: 19
            })
        );
        let mut out = [0.0f32; 15];
        assert!(p.counts_f32(&[0u16; 15], &mut out).is_err());
    }
}
