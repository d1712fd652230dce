//! The eROSITA-like instrument: survey depth, pixel and field, PSF, backgrounds
//! and the AGN point-source population.

use super::spectrum::{NBANDS, Response};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Survey depth presets (effective exposure per cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Depth {
    /// First all-sky pass: about 150 s at the ecliptic equator (Bulbul et al. 2024; PHYSICS.md).
    #[value(name = "erass1")]
    Erass1,
    /// Four passes: about 600 s.
    #[value(name = "erass4")]
    Erass4,
    /// The planned eight-pass survey: about 1.6 ks (comparable to eFEDS, 1.2 ks). The default.
    #[default]
    #[value(name = "erass8")]
    Erass8,
    /// A pointed observation: 20 ks (estimate of a typical eROSITA calibration/PV pointing).
    #[value(name = "pointed")]
    Pointed,
}

impl Depth {
    /// Effective (vignetting-averaged) exposure in seconds.
    pub fn exposure_s(self) -> f64 {
        match self {
            Depth::Erass1 => 150.0,
            Depth::Erass4 => 600.0,
            Depth::Erass8 => 1600.0,
            Depth::Pointed => 20_000.0,
        }
    }

    /// Short name as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Depth::Erass1 => "erass1",
            Depth::Erass4 => "erass4",
            Depth::Erass8 => "erass8",
            Depth::Pointed => "pointed",
        }
    }
}

/// The exposure distribution of eROSITA's all-sky survey over the sky (the scanning law).
///
/// SRG scans great circles through the ecliptic poles, one every four hours, the circle
/// advancing about 1 degree per day with the Earth's orbit, so a pass covers the sky in six
/// months (Predehl et al. 2021; Merloni et al. 2024, whose eRASS1 exposure map shows the
/// exposure rising from the ecliptic equator to the poles). Every circle crosses the
/// ecliptic poles, and the scans per unit area grow as `1 / cos(beta)` with ecliptic
/// latitude `beta`; within the field-of-view radius of a pole every scan sees the point,
/// which caps the law there. For a cluster at a random position on the sky (`sin beta`
/// uniform in [-1, 1]):
///
/// `t = passes * equator_s / max(cos beta, sin(fov_radius))`, so
/// `P(t <= T) = sqrt(1 - (passes * equator_s / T)^2)` from `passes * equator_s` up to the
/// cap `passes * equator_s / sin(fov_radius)`, which holds the rest of the probability.
///
/// Numbers: `equator_s` = 150 s, the vignetted eRASS1 exposure at the ecliptic equator
/// (PHYSICS.md: about 150-200 s; the `erass1` depth preset); the field-of-view radius
/// 0.515 deg (1.03 deg diameter, Predehl et al. 2021). The median is `equator_s / cos 30°`
/// = 173 s per pass and the mean about `pi / 2` times `equator_s` = 232 s; 13 % of the sky
/// has more than twice and 0.6 % more than ten times the equatorial exposure. The cap, 16.7
/// ks per pass, is a geometric estimate (the measured exposure at the south ecliptic pole is
/// of this order). Stacked surveys (eRASS:N) add `passes` equal passes; the real stacks lose
/// some passes to the end of survey operations, which this does not model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanningSurvey {
    /// Completed all-sky passes (eRASS:N has N).
    pub passes: u32,
    /// Exposure of one pass at the ecliptic equator, s (vignetted).
    pub equator_s: f64,
    /// Field-of-view radius, deg: the law saturates this close to the ecliptic poles.
    pub fov_radius_deg: f64,
}

impl ScanningSurvey {
    /// eRASS:`passes` with the documented numbers.
    pub fn erass(passes: u32) -> Self {
        Self {
            passes,
            equator_s: Depth::Erass1.exposure_s(),
            fov_radius_deg: 0.515,
        }
    }

    /// Lowest and highest exposure, s (the ecliptic equator and the pole cap).
    pub fn bounds(&self) -> (f64, f64) {
        let lo = f64::from(self.passes) * self.equator_s;
        (lo, lo / self.fov_radius_deg.to_radians().sin())
    }

    /// The exposure at `|sin beta| = u` (`u` uniform in [0, 1) gives the sky distribution).
    pub fn exposure(&self, u: f64) -> f64 {
        let cos_beta = (1.0 - u * u).max(0.0).sqrt();
        let floor = self.fov_radius_deg.to_radians().sin();
        f64::from(self.passes) * self.equator_s / cos_beta.max(floor)
    }

    /// `P(t <= x)` over the sky (closed form of [`ScanningSurvey::exposure`]).
    pub fn cdf(&self, x: f64) -> f64 {
        let (lo, hi) = self.bounds();
        if x < lo {
            0.0
        } else if x >= hi {
            1.0
        } else {
            (1.0 - (lo / x).powi(2)).sqrt()
        }
    }

    /// Refuse parameters that give no distribution.
    pub fn check(&self) -> Result<(), String> {
        if self.passes == 0
            || !(self.equator_s.is_finite() && self.equator_s > 0.0)
            || !(self.fov_radius_deg > 0.0 && self.fov_radius_deg < 90.0)
        {
            return Err(format!(
                "exposure survey {self:?}: needs passes >= 1, equator_s > 0 and 0 < fov_radius_deg < 90"
            ));
        }
        Ok(())
    }
}

/// Instrument and background parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstrumentParams {
    /// Image side in pixels (the data contract fixes 50).
    pub npix: usize,
    /// Pixel size in arcsec: 8-12 arcsec makes a 50-pixel cutout cover theta500 at z ~ 0.3 (PHYSICS.md, estimate).
    pub pixel_arcsec: f64,
    /// Exposure in seconds; `None` takes the depth preset's.
    pub exposure_s: Option<f64>,
    /// Per-cluster exposure, log-uniform between these two (s), instead of one exposure for
    /// every cluster: a mix of survey depths (eRASS1 near the ecliptic equator to the deep
    /// poles and stacked passes). Drawn from a random stream of its own, so the clusters
    /// are the same as at a fixed exposure; source, point-source and background counts
    /// scale with it. `exposure_s` (or the depth) remains the reference level recorded
    /// with the background.
    pub exposure_range_s: Option<(f64, f64)>,
    /// Per-cluster exposure from the all-sky scanning law instead ([`ScanningSurvey`]: the
    /// eRASS exposure distribution over the sky); exclusive with `exposure_range_s`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure_survey: Option<ScanningSurvey>,
    /// PSF half-energy width in arcsec (survey-averaged 25-30 arcsec; PHYSICS.md).
    pub psf_hew_arcsec: f64,
    /// Slope of the King-profile PSF, (1 + (r/rc)^2)^-beta; 1.5 gives eROSITA-like wings.
    pub psf_king_beta: f64,
    /// Diffuse sky background in 0.3-2 keV, counts / s / arcmin^2 (Ponti et al. 2023: about 4e-3).
    pub sky_rate_0p3_2: f64,
    /// Fraction of the diffuse sky counts from the soft thermal foreground (rest from an absorbed
    /// Gamma = 1.45 power law of unresolved AGN); estimate.
    pub sky_soft_fraction: f64,
    /// Temperature of the soft Galactic foreground in keV (local bubble and halo, about 0.1-0.25).
    pub sky_soft_kt_kev: f64,
    /// Particle background per telescope in 0.5-10 keV, counts / min over the field of view
    /// (Freyberg et al. 2020: 90-170).
    pub particle_rate_per_tm_cts_min: f64,
    /// Number of telescopes.
    pub telescopes: f64,
    /// Field-of-view area in arcmin^2 (1.03 deg diameter).
    pub fov_arcmin2: f64,
    /// Point sources: cumulative density N(>S0) per deg^2 at S0 (eFEDS: about 200 deg^-2 above
    /// 6.5e-15 erg/cm^2/s in 0.5-2 keV; Brunner et al. 2022).
    pub agn_n_ref_deg2: f64,
    /// Reference flux S0 in erg/cm^2/s (0.5-2 keV).
    pub agn_s_ref: f64,
    /// Break flux of the logN-logS; above it the Euclidean slope applies (Lehmer et al. 2012 soft band: ~6-10e-15).
    pub agn_s_break: f64,
    /// Cumulative slope above the break (Euclidean 1.5).
    pub agn_slope_bright: f64,
    /// Cumulative slope below the break (Lehmer et al. 2012: differential 1.5 -> cumulative ~0.5-0.6).
    pub agn_slope_faint: f64,
    /// Faintest simulated point source; fainter ones are part of the diffuse sky.
    pub agn_s_min: f64,
    /// AGN photon index.
    pub agn_gamma: f64,
    /// Fraction of clusters hosting a bright central AGN (3-20 %, PHYSICS.md).
    pub central_agn_fraction: f64,
    /// Range of log10 rest-frame 0.5-2 keV luminosity of a central AGN (estimate).
    pub central_agn_log_lum: (f64, f64),
}

impl Default for InstrumentParams {
    fn default() -> Self {
        Self {
            npix: 50,
            pixel_arcsec: 10.0,
            exposure_s: None,
            exposure_range_s: None,
            exposure_survey: None,
            psf_hew_arcsec: 28.0,
            psf_king_beta: 1.5,
            sky_rate_0p3_2: 4e-3,
            sky_soft_fraction: 0.6,
            sky_soft_kt_kev: 0.2,
            particle_rate_per_tm_cts_min: 130.0,
            telescopes: 7.0,
            fov_arcmin2: std::f64::consts::PI * (0.515f64 * 60.0).powi(2),
            agn_n_ref_deg2: 200.0,
            agn_s_ref: 6.5e-15,
            agn_s_break: 1e-14,
            agn_slope_bright: 1.5,
            agn_slope_faint: 0.6,
            agn_s_min: 1e-15,
            agn_gamma: 1.9,
            central_agn_fraction: 0.05,
            central_agn_log_lum: (42.0, 44.0),
        }
    }
}

/// Derived, per-dataset instrument quantities.
#[derive(Debug, Clone)]
pub struct Instrument {
    /// Parameters.
    pub params: InstrumentParams,
    /// Exposure in seconds.
    pub exposure_s: f64,
    /// King core radius of the PSF in arcsec.
    pub psf_rc_arcsec: f64,
    /// Expected background counts per pixel per band (sky + particles).
    pub bkg_per_pixel: [f64; NBANDS],
    /// Count rate per band of an AGN with unit 0.5-2 keV flux (cm^2 s / erg).
    pub agn_rate_per_flux: [f64; NBANDS],
    /// Expected number of point sources above `agn_s_min` in the image.
    pub agn_mean_number: f64,
}

impl Instrument {
    /// Derive background levels and PSF shape for a depth.
    pub fn new(params: InstrumentParams, depth: Depth, response: &Response) -> Self {
        let exposure_s = params.exposure_s.unwrap_or(depth.exposure_s());
        // King profile enclosed fraction 1 - (1 + r^2/rc^2)^(1-beta) = 1/2 at r = HEW/2.
        let half = params.psf_hew_arcsec / 2.0;
        let psf_rc_arcsec = half / (0.5f64.powf(1.0 / (1.0 - params.psf_king_beta)) - 1.0).sqrt();
        let pix_arcmin2 = (params.pixel_arcsec / 60.0).powi(2);
        // Sky: soft thermal + absorbed power law, normalised to the 0.3-2 keV rate.
        let soft = response.thermal_shape_rates(params.sky_soft_kt_kev);
        let hard = response.power_law_rates(1.0, 1.45);
        let in_03_2 = |r: &[f64; NBANDS]| r[1..=5].iter().sum::<f64>();
        let (fs, fh) = (
            params.sky_soft_fraction / in_03_2(&soft),
            (1.0 - params.sky_soft_fraction) / in_03_2(&hard),
        );
        let e = &response.params.band_edges_kev;
        let particle_per_kev_arcmin2 = params.particle_rate_per_tm_cts_min * params.telescopes
            / 60.0
            / (9.5 * params.fov_arcmin2);
        let mut bkg_per_pixel = [0.0; NBANDS];
        for b in 0..NBANDS {
            let sky = params.sky_rate_0p3_2 * (soft[b] * fs + hard[b] * fh);
            let particle = particle_per_kev_arcmin2 * (e[b + 1] - e[b]);
            bkg_per_pixel[b] = (sky + particle) * pix_arcmin2 * exposure_s;
        }
        let agn_rate_per_flux = response.power_law_rates(1.0, params.agn_gamma);
        let area_deg2 = (params.npix as f64 * params.pixel_arcsec / 3600.0).powi(2);
        let agn_mean_number = Self::agn_cumulative(&params, params.agn_s_min) * area_deg2;
        Self {
            params,
            exposure_s,
            psf_rc_arcsec,
            bkg_per_pixel,
            agn_rate_per_flux,
            agn_mean_number,
        }
    }

    /// Cumulative point-source density N(>S) per deg^2 of the broken power law.
    pub fn agn_cumulative(p: &InstrumentParams, s: f64) -> f64 {
        // Normalise at S0 on whichever side of the break it sits.
        let n_break = if p.agn_s_ref <= p.agn_s_break {
            p.agn_n_ref_deg2 * (p.agn_s_break / p.agn_s_ref).powf(-p.agn_slope_faint)
        } else {
            p.agn_n_ref_deg2 * (p.agn_s_break / p.agn_s_ref).powf(-p.agn_slope_bright)
        };
        if s >= p.agn_s_break {
            n_break * (s / p.agn_s_break).powf(-p.agn_slope_bright)
        } else {
            n_break * (s / p.agn_s_break).powf(-p.agn_slope_faint)
        }
    }

    /// Draw a point-source flux above `agn_s_min` from the logN-logS given a uniform deviate.
    pub fn agn_flux(&self, u: f64) -> f64 {
        let p = &self.params;
        let n_min = Self::agn_cumulative(p, p.agn_s_min);
        let n_b = Self::agn_cumulative(p, p.agn_s_break);
        let target = n_min * (1.0 - u).max(1e-300); // N(>S) uniform in (0, n_min]
        if target <= n_b {
            p.agn_s_break * (target / n_b).powf(-1.0 / p.agn_slope_bright)
        } else {
            p.agn_s_break * (target / n_b).powf(-1.0 / p.agn_slope_faint)
        }
    }

    /// Radial PSF offset in arcsec for a uniform deviate (inverse of the King profile's
    /// enclosed fraction).
    pub fn psf_radius_arcsec(&self, u: f64) -> f64 {
        let b = self.params.psf_king_beta;
        self.psf_rc_arcsec
            * ((1.0 - u).max(1e-12).powf(1.0 / (1.0 - b)) - 1.0)
                .max(0.0)
                .sqrt()
    }
}
