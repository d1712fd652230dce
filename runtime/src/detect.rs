//! Is there a cluster in the cube at all? The detection check behind
//! [`Flags::FEW_COUNTS`]: the net soft-band counts inside a fixed proper aperture around the
//! cluster centre, background-subtracted from the cutout's outskirts, against a threshold.
//! It is the host's definition of a "detected" cluster (`trainer`'s count-rate baseline:
//! at least 50 net 0.5-2 keV counts within 400 proper kpc, the aperture clamped to
//! 0.5-3 arcmin, background from pixels beyond 3.3 arcmin), computed here on the device
//! from the raw cube and the redshift, so a flight unit can tell an estimate from a
//! non-detection without the host. The generated `infer` applies it when the export knew
//! the observation conventions (the generated `DETECTION` constant); below the threshold
//! the mass is an extrapolation from noise and the estimate carries
//! [`Flags::FEW_COUNTS`].
//!
//! All f32 and integers (no f64, so no soft-float double routines in a firmware): the
//! angular-diameter distance by Simpson's rule on [`DISTANCE_STEPS`] intervals (flat LCDM,
//! within 2e-6 of the host's tabulated f64 cosmology), pixel membership by comparing squared
//! distances in half-pixel units as integers with a threshold computed once per call, the
//! counts summed as integers, and the threshold test exact in integers. The same code gives
//! the same flag on the host and on a device; against the host's own f64 photometry
//! (`trainer::baseline::net_aperture_counts`) a cluster can differ only when a pixel centre
//! lies within the f32 rounding of the aperture's edge.
//!
//! ```
//! use runtime::detect::Detection;
//! let d = Detection::erosita(50, 50, 10.0, [2, 6]);
//! let mut cube = [0u16; 10 * 50 * 50];
//! cube[3 * 2500 + 25 * 50 + 25] = 80; // 80 counts at the centre, band 3 (0.7-1 keV)
//! assert_eq!(d.net_counts(&cube, 0.3), Ok(80.0));
//! assert!(d.flags(&cube, 0.3).unwrap().is_empty());
//! cube[3 * 2500 + 25 * 50 + 25] = 20;
//! assert_eq!(d.flags(&cube, 0.3), Ok(runtime::model::Flags::FEW_COUNTS));
//! ```

use crate::model::Flags;
use crate::{Count, Error};

/// Speed of light, km/s.
pub const C_KM_S: f32 = 299_792.47;
/// Simpson intervals of the comoving-distance integral (even).
pub const DISTANCE_STEPS: usize = 32;
/// Source aperture radius, proper kpc at the cluster's redshift (the host's count-rate
/// baseline, `CountRateParams::aperture_kpc`).
pub const APERTURE_KPC: f32 = 400.0;
/// The aperture's limits, arcmin (on the detector, inside the background annulus).
pub const APERTURE_LIMITS_ARCMIN: [f32; 2] = [0.5, 3.0];
/// The background is measured on pixels at least this far from the centre, arcmin.
pub const BACKGROUND_INNER_ARCMIN: f32 = 3.3;
/// The soft band, keV: the bands lying within it are summed (bands 2 to 5 of the model's ten).
pub const SOFT_BAND_KEV: [f32; 2] = [0.5, 2.0];
/// Net counts at or above which a cluster counts as detected (the host's "detected" subset).
pub const MIN_NET_COUNTS: f32 = 50.0;

/// The observation conventions and the detection criterion: the cube's geometry (as the
/// model's input, `[band][y][x]`), the pixel scale, which bands are the soft band, the
/// cosmology that turns the proper aperture into an angle, and the criterion itself.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Pixels per row.
    pub width: usize,
    /// Rows per band.
    pub height: usize,
    /// Twice the cluster centre in pixel coordinates, `[2 cx, 2 cy]` (pixel `i` covers
    /// `[i, i + 1)`): `[width, height]` for the centre of the cutout, as the host's cutouts
    /// put it.
    pub centre2: [usize; 2],
    /// Pixel side, arcsec.
    pub pixel_arcsec: f32,
    /// The soft bands, `[first, end)`: 0.5-2 keV for the model's ten bands (bands 2 to 5).
    pub bands: [usize; 2],
    /// Hubble constant, km/s/Mpc (flat LCDM).
    pub h0: f32,
    /// Matter density today.
    pub omega_m: f32,
    /// Source aperture radius, proper kpc.
    pub aperture_kpc: f32,
    /// The aperture's limits, arcmin.
    pub aperture_limits_arcmin: [f32; 2],
    /// Background from pixels at least this far from the centre, arcmin.
    pub background_inner_arcmin: f32,
    /// Net counts at or above which the cluster is detected.
    pub min_net_counts: f32,
}

impl Detection {
    /// The host's criterion ([`APERTURE_KPC`], [`APERTURE_LIMITS_ARCMIN`],
    /// [`BACKGROUND_INNER_ARCMIN`], [`MIN_NET_COUNTS`]) in the project's cosmology
    /// (H0 = 70, Omega_m = 0.3), the centre at the middle of a `width x height` cutout.
    pub const fn erosita(
        width: usize,
        height: usize,
        pixel_arcsec: f32,
        bands: [usize; 2],
    ) -> Self {
        Self {
            width,
            height,
            centre2: [width, height],
            pixel_arcsec,
            bands,
            h0: 70.0,
            omega_m: 0.3,
            aperture_kpc: APERTURE_KPC,
            aperture_limits_arcmin: APERTURE_LIMITS_ARCMIN,
            background_inner_arcmin: BACKGROUND_INNER_ARCMIN,
            min_net_counts: MIN_NET_COUNTS,
        }
    }

    /// Angular-diameter distance to redshift `z`, Mpc (flat LCDM).
    ///
    /// ```
    /// let d = runtime::detect::Detection::erosita(50, 50, 10.0, [2, 6]);
    /// // astropy's FlatLambdaCDM(H0=70, Om0=0.3): 1259.1 Mpc at z = 0.5, 1651.9 Mpc at z = 1.
    /// assert!((d.angular_diameter_distance_mpc(0.5) - 1259.1).abs() < 0.2);
    /// assert!((d.angular_diameter_distance_mpc(1.0) - 1651.9).abs() < 0.2);
    /// ```
    pub fn angular_diameter_distance_mpc(&self, z: f32) -> f32 {
        let inv_e = |z: f32| {
            let a = 1.0 + z;
            1.0 / libm::sqrtf(self.omega_m * a * a * a + (1.0 - self.omega_m))
        };
        let n = DISTANCE_STEPS;
        let h = z / n as f32;
        let mut s = inv_e(0.0) + inv_e(z);
        for i in 1..n {
            s += if i % 2 == 1 { 4.0 } else { 2.0 } * inv_e(i as f32 * h);
        }
        let comoving = s * h / 3.0 * C_KM_S / self.h0;
        comoving / (1.0 + z)
    }

    /// The source aperture's radius at redshift `z`, arcmin (clamped to the limits).
    pub fn aperture_arcmin(&self, z: f32) -> f32 {
        let [lo, hi] = self.aperture_limits_arcmin;
        if z <= 0.0 {
            return hi;
        }
        let rad = self.aperture_kpc / 1000.0 / self.angular_diameter_distance_mpc(z);
        (rad.to_degrees() * 60.0).clamp(lo, hi)
    }

    /// The integer threshold `t` such that a pixel whose centre lies `u / 2, v / 2` pixels
    /// from the cluster centre is within `arcmin` exactly when `u^2 + v^2 < t`.
    fn threshold(&self, arcmin: f32) -> u32 {
        let r2 = 2.0 * arcmin * 60.0 / self.pixel_arcsec;
        let r2 = r2 * r2;
        if !(r2 < 1.0e9) {
            return 1_000_000_000;
        }
        libm::ceilf(r2) as u32
    }

    /// Net soft-band counts in the aperture at redshift `z` (negative when the aperture
    /// holds fewer counts than its share of the background): the aperture's counts minus
    /// the background pixels' counts scaled by the ratio of pixel numbers, as the host's
    /// `net_aperture_counts`. [`Error::BadLength`] if `cube` is shorter than the soft bands'
    /// planes; [`Error::BadScalar`] for a redshift that is not finite or negative.
    pub fn net_counts<N: Count>(&self, cube: &[N], z: f32) -> Result<f32, Error> {
        let c = self.counts(cube, z)?;
        Ok(c.src as f32 - c.bkg as f32 * c.n_src as f32 / c.n_bkg.max(1) as f32)
    }

    /// [`Flags::FEW_COUNTS`] if the net counts ([`Detection::net_counts`]) are below
    /// [`Detection::min_net_counts`], else no flag. For a whole-number threshold the
    /// comparison is exact, in integers: `src n_bkg - bkg n_src < min n_bkg`.
    pub fn flags<N: Count>(&self, cube: &[N], z: f32) -> Result<Flags, Error> {
        let c = self.counts(cube, z)?;
        let n_bkg = c.n_bkg.max(1) as i64;
        let lhs = c.src as i64 * n_bkg - c.bkg as i64 * c.n_src as i64;
        let min = self.min_net_counts;
        let few = if libm::truncf(min) == min && min.abs() < 1.0e6 {
            lhs < min as i64 * n_bkg
        } else {
            (lhs as f32) < min * n_bkg as f32
        };
        Ok(if few { Flags::FEW_COUNTS } else { Flags::NONE })
    }

    /// The aperture's and the background's counts and pixel numbers (errors as
    /// [`Detection::net_counts`]).
    fn counts<N: Count>(&self, cube: &[N], z: f32) -> Result<Photometry, Error> {
        let (w, h) = (self.width, self.height);
        let need = self.bands[1] * w * h;
        if cube.len() < need || self.bands[0] > self.bands[1] {
            return Err(Error::BadLength {
                expected: need,
                got: cube.len(),
            });
        }
        if !(z.is_finite() && z >= 0.0) {
            return Err(Error::BadScalar { index: 0 });
        }
        let t = [
            self.threshold(self.aperture_arcmin(z)),
            self.threshold(self.background_inner_arcmin),
        ];
        // One row's counts in its aperture run and outside its background run, over the soft
        // bands ([`row_sums`]).
        let (plane, bands) = (w * h, self.bands);
        Ok(photometry(
            &|row, runs| row_sums(cube, [plane, w], bands, row, runs),
            [w, h],
            self.centre2,
            t,
        ))
    }
}

/// The counts of the soft bands `bands` in one row (`row`: its offset in a band's plane):
/// in its aperture run `s0..s1` and outside its background run (`..i0`, `i1..`), summed
/// in the count type's own loops (u32 per run: at most one row).
#[inline(always)]
fn row_sums<N: Count>(
    cube: &[N],
    [plane, w]: [usize; 2],
    [b0, b1]: [usize; 2],
    row: usize,
    [s0, s1, i0, i1]: [usize; 4],
) -> [u64; 2] {
    let sum = |from: usize, to: usize| -> u64 {
        u64::from(
            cube[from..to]
                .iter()
                .map(|&c| u32::from(c.get()))
                .sum::<u32>(),
        )
    };
    let (mut src, mut bkg) = (0, 0);
    for b in b0..b1 {
        let at = b * plane + row;
        src += sum(at + s0, at + s1);
        // The whole row less the inner run: two long runs the compiler vectorises, where
        // the runs outside the inner radius are a few pixels each.
        bkg += sum(at, at + w) - sum(at + i0, at + i1);
    }
    [src, bkg]
}

/// Counts and pixel numbers of the aperture and of the background.
struct Photometry {
    src: u64,
    n_src: u64,
    bkg: u64,
    n_bkg: u64,
}

/// The photometry loop: per row the run of aperture pixels and the two runs outside the
/// background's inner radius, whose counts over the soft bands `row(y w, [s0, s1, i0, i1])`
/// sums (aperture `s0..s1`, background `..i0` and `i1..`; in bounds by the caller's length
/// check). Not inlined and not generic, so a firmware holds one copy whatever its count
/// types and model variants; one call per row, so the bands' short runs are summed in the
/// caller's monomorphic loops (edge: 50 calls, not 600).
#[inline(never)]
fn photometry(
    row: &dyn Fn(usize, [usize; 4]) -> [u64; 2],
    [w, h]: [usize; 2],
    centre2: [usize; 2],
    [t_src, t_bkg]: [u32; 2],
) -> Photometry {
    let (cx2, cy2) = (centre2[0] as i64, centre2[1] as i64);
    // The pixels x of a row with u(x)^2 < m, u(x) = 2x + 1 - cx2: one run [x0, x1) (a
    // disk), from the largest s with s^2 < m: |2x + 1 - cx2| <= s.
    let run = |m: u32| -> (usize, usize) {
        if m == 0 {
            return (0, 0);
        }
        let s = i64::from(isqrt(m - 1));
        // 2x + 1 >= cx2 - s  <=>  x >= ceil((cx2 - s - 1) / 2) = floor((cx2 - s) / 2).
        let lo = (cx2 - s).div_euclid(2).max(0);
        let hi = ((cx2 + s - 1).div_euclid(2) + 1).clamp(0, w as i64);
        if lo >= hi {
            (0, 0)
        } else {
            (lo as usize, hi as usize)
        }
    };
    let mut p = Photometry {
        src: 0,
        n_src: 0,
        bkg: 0,
        n_bkg: 0,
    };
    for y in 0..h {
        let v = 2 * y as i64 + 1 - cy2;
        let v2 = (v * v).min(i64::from(u32::MAX)) as u32;
        let (s0, s1) = run(t_src.saturating_sub(v2));
        // The background: the row outside the run of pixels closer than its inner radius.
        let (i0, i1) = run(t_bkg.saturating_sub(v2));
        p.n_src += (s1 - s0) as u64;
        p.n_bkg += (w - (i1 - i0)) as u64;
        let [src, bkg] = row(y * w, [s0, s1, i0, i1]);
        p.src += src;
        p.bkg += bkg;
    }
    p
}

/// The largest `s` with `s * s <= n`.
fn isqrt(n: u32) -> u32 {
    let mut s = libm::sqrtf(n as f32) as u64;
    let n = u64::from(n);
    while s * s > n {
        s -= 1;
    }
    while (s + 1) * (s + 1) <= n {
        s += 1;
    }
    s as u32
}

/// What the generated `infer` calls: [`Detection::flags`] when the model knows its
/// observation conventions, no flag when it does not.
pub fn flags<N: Count>(d: Option<&Detection>, cube: &[N], z: f32) -> Result<Flags, Error> {
    match d {
        Some(d) => d.flags(cube, z),
        None => Ok(Flags::NONE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    const D: Detection = Detection::erosita(50, 50, 10.0, [2, 6]);

    /// A flat background gives zero net counts whatever its level; counts outside the soft
    /// bands do not count.
    #[test]
    fn flat_background_nets_to_zero() {
        let mut cube = vec![0u16; 10 * 2500];
        for b in 0..10 {
            for p in 0..2500 {
                cube[b * 2500 + p] = (3 + b) as u16;
            }
        }
        for z in [0.05f32, 0.3, 1.0, 2.0] {
            assert_eq!(D.net_counts(&cube, z), Ok(0.0), "z = {z}");
        }
    }

    /// The aperture's pixels, counted by brute force over the cutout with the host's
    /// formula (hypot of the pixel centre's offset, in arcmin, below the radius).
    #[test]
    fn aperture_holds_the_pixels_within_its_radius() {
        for z in [0.05f32, 0.2, 0.5, 1.3] {
            let ap = f64::from(D.aperture_arcmin(z));
            let mut cube = vec![0u8; 10 * 2500];
            let mut inside = 0.0f32;
            for y in 0..50 {
                for x in 0..50 {
                    let r = (x as f64 + 0.5 - 25.0).hypot(y as f64 + 0.5 - 25.0) * 10.0 / 60.0;
                    if r < ap {
                        cube[2 * 2500 + y * 50 + x] = 1;
                        inside += 1.0;
                    }
                }
            }
            // Every aperture pixel holds one count and no background pixel does.
            assert_eq!(D.net_counts(&cube, z), Ok(inside), "z = {z}, {ap} arcmin");
        }
    }

    /// The aperture is 400 kpc where that lies between the limits, and clamped outside.
    #[test]
    fn aperture_follows_the_angular_diameter_distance() {
        // 400 kpc at z = 0.5 (D_A = 1259.1 Mpc): 0.3182 mrad = 1.0921 arcmin.
        assert!((D.aperture_arcmin(0.5) - 1.0921).abs() < 2e-4);
        assert_eq!(D.aperture_arcmin(0.01), 3.0);
        assert_eq!(D.aperture_arcmin(1.0e-4), 3.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let cube = vec![0u16; 5 * 2500];
        assert_eq!(
            D.net_counts(&cube, 0.5),
            Err(Error::BadLength {
                expected: 6 * 2500,
                got: 5 * 2500
            })
        );
        let cube = vec![0u16; 10 * 2500];
        for z in [f32::NAN, f32::INFINITY, -0.1] {
            assert_eq!(D.net_counts(&cube, z), Err(Error::BadScalar { index: 0 }));
        }
        assert_eq!(flags(None, &cube, f32::NAN), Ok(Flags::NONE));
        // An empty cube has no detection.
        assert_eq!(flags(Some(&D), &cube, 0.5), Ok(Flags::FEW_COUNTS));
    }
}
