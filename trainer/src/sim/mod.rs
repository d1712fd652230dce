//! Mock eROSITA-like observations of galaxy clusters.
//!
//! [`Simulator::observe`] turns a cluster index into a photon-count cube of
//! 10 bands x 50 x 50 pixels plus its truth record. Each cluster has its own
//! random stream (ChaCha8 seeded by the dataset seed, stream = index), so a
//! dataset is byte-identical for a seed whatever the number of threads.
//!
//! Photons are drawn, not pixels: per component and band a Poisson number of
//! photons is placed by inverse-CDF sampling of the projected beta model, sheared
//! to its ellipse, and blurred by a King-profile PSF. This equals per-pixel
//! Poisson sampling of the PSF-convolved model exactly, and costs time in
//! proportion to the counts (a few hundred per cluster), not to the 25,000 pixels.

pub mod cosmology;
pub mod instrument;
pub mod massfunction;
pub mod population;
pub mod spectrum;

use cosmology::{Cosmology, CosmologyParams, MPC_CM, RedshiftSampler};
use instrument::{Depth, Instrument, InstrumentParams};
use massfunction::{MassFunction, PowerSpectrumParams};
use population::{Cluster, ComponentKind, MorphologyParams, ScalingParams, State};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Poisson};
use serde::{Deserialize, Serialize};
use spectrum::{NBANDS, Response, SpectralParams};

/// Image side in pixels and u16 values per cluster image (the data contract: `arch` owns
/// them).
pub use arch::{IMAGE_LEN, NPIX};

/// Seed offset of the per-cluster exposure stream (`Simulator::exposure_of`).
const EXPOSURE_STREAM: u64 = 0x4558_504f_5355_5245; // "EXPOSURE"

/// How masses are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MassPrior {
    /// log10 M500 uniform between the limits (training: keeps the regression off the prior).
    #[default]
    Flat,
    /// A Tinker et al. (2008) population (evaluation): (z, M) drawn jointly from
    /// dN/dz dlog10M = dV/dz x dn/dlog10M(M, z) over the limits, so redshifts follow the
    /// mass function integrated over the mass range (fewer massive halos at high z), not
    /// the comoving volume alone.
    Tinker,
}

/// Population limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PopulationParams {
    /// Lowest redshift (eRASS1 catalogue spans 0.003-1.32; Bulbul et al. 2024).
    pub z_min: f64,
    /// Highest redshift.
    pub z_max: f64,
    /// Lowest log10 M500c / Msun.
    pub log_m_min: f64,
    /// Highest log10 M500c / Msun.
    pub log_m_max: f64,
    /// Mass prior.
    pub mass_prior: MassPrior,
}

impl Default for PopulationParams {
    fn default() -> Self {
        Self {
            z_min: 0.05,
            z_max: 1.3,
            log_m_min: 13.5,
            log_m_max: 15.3,
            mass_prior: MassPrior::Flat,
        }
    }
}

/// Everything that defines a mock dataset. Serialised into every dataset it makes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SimConfig {
    /// Random seed.
    pub seed: u64,
    /// Survey depth preset.
    pub depth: Depth,
    /// Population limits and mass prior.
    pub population: PopulationParams,
    /// Cosmology.
    pub cosmology: CosmologyParams,
    /// Linear power spectrum (mass function only).
    pub power_spectrum: PowerSpectrumParams,
    /// Scaling relations.
    pub scaling: ScalingParams,
    /// Morphology.
    pub morphology: MorphologyParams,
    /// Spectral model and response.
    pub spectral: SpectralParams,
    /// Instrument and backgrounds.
    pub instrument: InstrumentParams,
}

/// What the simulator knows about a cluster (the truth columns of a dataset).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Truth {
    /// Redshift.
    pub redshift: f64,
    /// log10 M500c / Msun.
    pub log_mass: f64,
    /// log10 rest-frame 0.5-2 keV luminosity within r500, erg/s.
    pub log_lum: f64,
    /// log10 core-excised (0.15-1 r500) luminosity, erg/s.
    pub log_lum_ce: f64,
    /// Temperature, keV.
    pub temperature_kev: f64,
    /// r500c in Mpc.
    pub r500_mpc: f64,
    /// theta500 in arcmin.
    pub theta500_arcmin: f64,
    /// Has a cool core.
    pub cool_core: bool,
    /// Is disturbed.
    pub disturbed: bool,
    /// Exposure, s.
    pub exposure_s: f64,
    /// Expected cluster counts, all bands (within the truncation radius, before the image edge).
    pub source_counts: f64,
    /// Expected cluster counts in 0.5-2 keV.
    pub source_counts_soft: f64,
    /// Tinker 2008 dn/dlog10M at this (M, z), Mpc^-3 (weights for a realistic population).
    pub mf_weight: f64,
    /// Number of point sources in the field (including a central AGN).
    pub n_agn: u32,
    /// Has a bright central AGN.
    pub central_agn: bool,
    /// Pixels that hit the u16 ceiling (counts clipped at 65535).
    pub saturated: u32,
}

/// Ready-to-run simulator: tables built once, shared read-only by all threads.
#[derive(Debug, Clone)]
pub struct Simulator {
    /// The configuration.
    pub config: SimConfig,
    /// Cosmology tables.
    pub cosmo: Cosmology,
    /// Instrument with derived backgrounds.
    pub instrument: Instrument,
    /// Folded response.
    pub response: Response,
    /// Tinker 2008 mass function.
    pub mass_function: MassFunction,
    z_sampler: RedshiftSampler,
    structure_mean: f64,
}

impl Simulator {
    /// Build tables for a configuration.
    pub fn new(config: SimConfig) -> Self {
        let cosmo = Cosmology::new(config.cosmology);
        let response = Response::new(config.spectral.clone());
        let instrument = Instrument::new(config.instrument.clone(), config.depth, &response);
        let mass_function = MassFunction::new(&cosmo, config.power_spectrum);
        let p = &config.population;
        let z_sampler = match p.mass_prior {
            MassPrior::Flat => RedshiftSampler::new(&cosmo, p.z_min, p.z_max),
            // The marginal of dN/dz dlog10M: dV/dz times the number density of halos in
            // the mass range, n(z) = integral of dn/dlog10M over log10 M (Simpson, 64 steps;
            // dn/dlog10M is smooth in log M).
            MassPrior::Tinker => RedshiftSampler::weighted(&cosmo, p.z_min, p.z_max, |z| {
                mass_function.number_density(p.log_m_min, p.log_m_max, z)
            }),
        };
        let structure_mean = population::mean_structure_term(&config.morphology);
        Self {
            config,
            cosmo,
            instrument,
            response,
            mass_function,
            z_sampler,
            structure_mean,
        }
    }

    /// Validate the configuration's ranges; returns a description of the first problem.
    pub fn check_config(c: &SimConfig) -> Result<(), String> {
        let p = &c.population;
        if !(p.z_min > 0.0 && p.z_min < p.z_max && p.z_max <= cosmology::Z_TABLE_MAX) {
            return Err(format!(
                "redshift range {}..{} must satisfy 0 < z_min < z_max <= {}",
                p.z_min,
                p.z_max,
                cosmology::Z_TABLE_MAX
            ));
        }
        if !(p.log_m_min >= 12.0 && p.log_m_min < p.log_m_max && p.log_m_max <= 16.0) {
            return Err(format!(
                "mass range {}..{} must satisfy 12 <= min < max <= 16 (log10 Msun)",
                p.log_m_min, p.log_m_max
            ));
        }
        if c.instrument.npix != NPIX {
            return Err(format!(
                "npix must be {NPIX} (the data contract), got {}",
                c.instrument.npix
            ));
        }
        if let Some(t) = c.instrument.exposure_s
            && !(t.is_finite() && t > 0.0)
        {
            return Err(format!("exposure must be positive, got {t}"));
        }
        if let Some((lo, hi)) = c.instrument.exposure_range_s
            && !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo < hi)
        {
            return Err(format!(
                "exposure range {lo}..{hi} must satisfy 0 < low < high (seconds)"
            ));
        }
        if let Some(s) = &c.instrument.exposure_survey {
            s.check()?;
            if c.instrument.exposure_range_s.is_some() {
                return Err(
                    "an exposure range and an exposure survey are exclusive: give one".into(),
                );
            }
        }
        if !(c.morphology.beta_clip.0 > 0.5) {
            return Err("beta must stay above 0.5 for a finite projected flux".into());
        }
        Ok(())
    }

    /// The random stream of cluster `index`.
    fn rng(&self, index: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed);
        rng.set_stream(index);
        rng
    }

    /// The exposure of cluster `index`: the instrument's, log-uniform in the configured
    /// range, or from the survey's scanning law, from a stream of its own (the cluster's
    /// other draws do not move).
    pub fn exposure_of(&self, index: u64) -> f64 {
        let p = &self.instrument.params;
        if p.exposure_range_s.is_none() && p.exposure_survey.is_none() {
            return self.instrument.exposure_s;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ EXPOSURE_STREAM);
        rng.set_stream(index);
        let u = rng.random::<f64>();
        match (p.exposure_range_s, p.exposure_survey) {
            (Some((lo, hi)), _) => (lo.ln() + u * (hi.ln() - lo.ln())).exp(),
            (None, Some(s)) => s.exposure(u),
            (None, None) => unreachable!("handled above"),
        }
    }

    /// Lowest and highest exposure any cluster can have, s (equal for one exposure).
    pub fn exposure_bounds(&self) -> (f64, f64) {
        let p = &self.instrument.params;
        match (p.exposure_range_s, p.exposure_survey) {
            (Some(r), _) => r,
            (None, Some(s)) => s.bounds(),
            (None, None) => (self.instrument.exposure_s, self.instrument.exposure_s),
        }
    }

    /// Whether clusters have exposures of their own (a range or a survey).
    pub fn exposure_varies(&self) -> bool {
        let p = &self.instrument.params;
        p.exposure_range_s.is_some() || p.exposure_survey.is_some()
    }

    /// Draw redshift and mass for one cluster.
    fn draw_z_m(&self, rng: &mut ChaCha8Rng) -> (f64, f64) {
        let p = &self.config.population;
        let z = self.z_sampler.sample(rng.random());
        let log_m = match p.mass_prior {
            MassPrior::Flat => rng.random_range(p.log_m_min..p.log_m_max),
            MassPrior::Tinker => {
                // z came from the marginal; log M from the conditional dn/dlog10M(M | z), by
                // rejection from the flat prior (dn/dlogM falls monotonically over cluster masses).
                let w_max = self.mass_function.dn_dlog10m(p.log_m_min, z);
                loop {
                    let lm = rng.random_range(p.log_m_min..p.log_m_max);
                    if rng.random::<f64>() * w_max <= self.mass_function.dn_dlog10m(lm, z) {
                        break lm;
                    }
                }
            }
        };
        (z, log_m)
    }

    /// Draw the intrinsic cluster (no observation) for index; used by tests and diagnostics.
    pub fn intrinsic(&self, index: u64) -> Cluster {
        let mut rng = self.rng(index);
        let (z, log_m) = self.draw_z_m(&mut rng);
        self.draw_cluster(&mut rng, z, log_m)
    }

    fn draw_cluster(&self, rng: &mut ChaCha8Rng, z: f64, log_m: f64) -> Cluster {
        let c = &self.config;
        let site = population::Site {
            log_m,
            z,
            ez: self.cosmo.e(z),
            h: self.cosmo.h(),
        };
        population::draw_cluster(rng, &c.scaling, &c.morphology, self.structure_mean, site)
    }

    /// Expected cluster counts per band (within the truncation radius) for a cluster, at
    /// the instrument's reference exposure.
    pub fn expected_source_counts(&self, cl: &Cluster) -> [f64; NBANDS] {
        let d_l = self.cosmo.luminosity_distance(cl.z) * MPC_CM;
        let t_trunc = self.config.morphology.truncation_r500;
        let mut out = [0.0; NBANDS];
        for comp in &cl.components {
            let rates = self.response.thermal_rates(comp.lum, comp.kt, cl.z, d_l);
            let scale = comp.enclosed(t_trunc) / comp.enclosed(1.0) * self.instrument.exposure_s;
            for (o, r) in out.iter_mut().zip(rates) {
                *o += r * scale;
            }
        }
        out
    }

    /// Simulate the observation of cluster `index`, writing counts into `image`
    /// (band-major, `IMAGE_LEN` long, overwritten) and returning its truth.
    pub fn observe(&self, index: u64, image: &mut [u16]) -> Truth {
        assert_eq!(
            image.len(),
            IMAGE_LEN,
            "image buffer must hold {IMAGE_LEN} values"
        );
        image.fill(0);
        let mut painter = Painter {
            image,
            saturated: 0,
        };
        let mut truth = self.observe_into(index, &mut painter);
        truth.saturated = painter.saturated;
        truth
    }

    /// Simulate the observation of cluster `index`, handing every photon to `sink`
    /// in the image's continuous pixel coordinates (`x`, `y` in `[0, NPIX)` for
    /// photons on the image; pixel `(i, j)` covers `[i, i + 1) x [j, j + 1)`).
    /// [`Simulator::observe`] paints them into the count cube; `trainer simulate
    /// --events` writes them as an event list. The random stream is the same, so both
    /// see the same photons. `Truth::saturated` is left 0 (the sink knows).
    pub fn observe_into<S: PhotonSink>(&self, index: u64, sink: &mut S) -> Truth {
        let mut rng = self.rng(index);
        let (z, log_m) = self.draw_z_m(&mut rng);
        let cl = self.draw_cluster(&mut rng, z, log_m);
        let inst = &self.instrument;
        let pix = inst.params.pixel_arcsec;
        let exposure = self.exposure_of(index);
        // Everything the instrument tabulates at its reference exposure scales with this one.
        let depth = exposure / inst.exposure_s;
        let r500 = self.cosmo.r500_mpc(10f64.powf(log_m), z);
        let theta500 = self.cosmo.angle_arcmin(r500, z);
        let r500_pix = theta500 * 60.0 / pix;
        let centre = NPIX as f64 / 2.0;
        let d_l = self.cosmo.luminosity_distance(z) * MPC_CM;
        let t_trunc = self.config.morphology.truncation_r500;
        let painter = sink;

        // Cluster emission.
        let mut source = [0.0; NBANDS];
        for comp in &cl.components {
            let rates = self.response.thermal_rates(comp.lum, comp.kt, z, d_l);
            let f_t = comp.enclosed(t_trunc);
            let scale = f_t / comp.enclosed(1.0) * exposure;
            let expo = 1.0 / (1.5 - 3.0 * comp.beta);
            let (sq, isq) = (comp.axis_ratio.sqrt(), 1.0 / comp.axis_ratio.sqrt());
            let (sa, ca) = comp.angle.sin_cos();
            let cx = centre + comp.offset_r500.0 * r500_pix;
            let cy = centre + comp.offset_r500.1 * r500_pix;
            let rc_pix = comp.rc_r500 * r500_pix;
            for (b, rate) in rates.iter().enumerate() {
                let mu = rate * scale;
                source[b] += mu;
                for _ in 0..poisson(&mut rng, mu) {
                    let u: f64 = rng.random();
                    let r = rc_pix * ((1.0 - u * f_t).powf(expo) - 1.0).max(0.0).sqrt();
                    let (s, c) = rng.random_range(0.0..std::f64::consts::TAU).sin_cos();
                    let (ex, ey) = (r * c * isq, r * s * sq);
                    let x = cx + ex * ca - ey * sa;
                    let y = cy + ex * sa + ey * ca;
                    let (dx, dy) = self.psf_offset_pix(&mut rng);
                    painter.photon(b, x + dx, y + dy);
                }
            }
        }

        // Point sources: field AGN anywhere, optionally one in the cluster core.
        let mut n_agn = poisson(&mut rng, inst.agn_mean_number) as u32;
        for _ in 0..n_agn {
            let flux = inst.agn_flux(rng.random());
            let (x, y) = (
                rng.random_range(0.0..NPIX as f64),
                rng.random_range(0.0..NPIX as f64),
            );
            self.paint_point(&mut rng, &mut *painter, flux * depth, x, y);
        }
        let central_agn = rng.random::<f64>() < inst.params.central_agn_fraction;
        if central_agn {
            n_agn += 1;
            let (lo, hi) = inst.params.central_agn_log_lum;
            let lum = 10f64.powf(rng.random_range(lo..hi));
            // Observed 0.5-2 keV flux of a power law of photon index Gamma: K-correction (1+z)^(Gamma-2).
            let flux = lum / (4.0 * std::f64::consts::PI * d_l * d_l)
                * (1.0 + z).powf(inst.params.agn_gamma - 2.0);
            let c = &cl.components[0];
            self.paint_point(
                &mut rng,
                &mut *painter,
                flux * depth,
                centre + c.offset_r500.0 * r500_pix,
                centre + c.offset_r500.1 * r500_pix,
            );
        }

        // Sky and particle background: uniform, so a Poisson total placed uniformly.
        for (b, mu_pix) in inst.bkg_per_pixel.iter().enumerate() {
            for _ in 0..poisson(&mut rng, mu_pix * depth * (NPIX * NPIX) as f64) {
                let p = rng.random_range(0..NPIX * NPIX);
                painter.background(b, p);
            }
        }

        Truth {
            redshift: z,
            log_mass: log_m,
            log_lum: cl.lum.log10(),
            log_lum_ce: cl.lum_ce.log10(),
            temperature_kev: cl.kt,
            r500_mpc: r500,
            theta500_arcmin: theta500,
            cool_core: cl.state == State::CoolCore,
            disturbed: cl.state == State::Disturbed,
            exposure_s: exposure,
            source_counts: source.iter().sum(),
            source_counts_soft: source[2..=5].iter().sum(),
            mf_weight: self.mass_function.dn_dlog10m(log_m, z),
            n_agn,
            central_agn,
            saturated: 0,
        }
    }

    fn psf_offset_pix(&self, rng: &mut ChaCha8Rng) -> (f64, f64) {
        let r =
            self.instrument.psf_radius_arcsec(rng.random()) / self.instrument.params.pixel_arcsec;
        let (s, c) = rng.random_range(0.0..std::f64::consts::TAU).sin_cos();
        (r * c, r * s)
    }

    fn paint_point<S: PhotonSink>(
        &self,
        rng: &mut ChaCha8Rng,
        painter: &mut S,
        flux: f64,
        x: f64,
        y: f64,
    ) {
        for (b, rate) in self.instrument.agn_rate_per_flux.iter().enumerate() {
            for _ in 0..poisson(rng, flux * rate * self.instrument.exposure_s) {
                let (dx, dy) = self.psf_offset_pix(rng);
                painter.photon(b, x + dx, y + dy);
            }
        }
    }

    /// Does this cluster index carry a component of the given kind? (diagnostics)
    pub fn has_component(&self, index: u64, kind: ComponentKind) -> bool {
        self.intrinsic(index)
            .components
            .iter()
            .any(|c| c.kind == kind)
    }
}

/// Poisson deviate; zero for a non-positive or non-finite mean.
fn poisson(rng: &mut ChaCha8Rng, mu: f64) -> u64 {
    if !(mu > 0.0) || !mu.is_finite() {
        return 0;
    }
    Poisson::new(mu).map_or(0, |p| p.sample(rng) as u64)
}

/// Receives the photons of one simulated observation ([`Simulator::observe_into`]).
pub trait PhotonSink {
    /// A photon of `band` at continuous pixel position (`x`, `y`); it may fall off the
    /// image (`x` or `y` outside `[0, NPIX)`), in which case the cube does not record it.
    fn photon(&mut self, band: usize, x: f64, y: f64);
    /// A background photon of `band` in pixel `p` (`y * NPIX + x`), placed uniformly
    /// over the image (its position inside the pixel is not drawn).
    fn background(&mut self, band: usize, p: usize);
}

/// The count cube's sink: photons on the image are counted, at most 65535 per pixel.
struct Painter<'a> {
    image: &'a mut [u16],
    saturated: u32,
}

impl PhotonSink for Painter<'_> {
    #[inline]
    fn photon(&mut self, band: usize, x: f64, y: f64) {
        if x >= 0.0 && y >= 0.0 && x < NPIX as f64 && y < NPIX as f64 {
            self.add_index(band * NPIX * NPIX + y as usize * NPIX + x as usize);
        }
    }

    #[inline]
    fn background(&mut self, band: usize, p: usize) {
        self.add_index(band * NPIX * NPIX + p);
    }
}

impl Painter<'_> {
    #[inline]
    fn add_index(&mut self, i: usize) {
        let v = &mut self.image[i];
        if *v == u16::MAX {
            self.saturated += 1;
        } else {
            *v += 1;
        }
    }
}
