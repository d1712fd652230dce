//! X-ray spectra folded through an eROSITA-like response into 10 energy bands.
//!
//! Cluster emission is thermal bremsstrahlung with the non-relativistic Born
//! Gaunt factor, g = (sqrt 3 / pi) e^{x/2} K0(x/2), x = E/kT (Rybicki & Lightman
//! 1979, eq. 5.17 regime), plus a documented line-emission correction (the Fe-L
//! complex around 1 keV, which dominates below 2 keV at 0.3 solar abundance).
//! Spectra are redshifted, absorbed by the Galaxy (Morrison & McCammon 1983)
//! and multiplied by a band-averaged effective area.

use serde::{Deserialize, Serialize};

/// Number of energy bands in an observation (the data contract: `arch` owns it).
pub use arch::NBANDS;
/// keV in erg.
pub const KEV_ERG: f64 = 1.602_176_634e-9;

/// Parameters of the spectral model and the instrument response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpectralParams {
    /// Band edges in observed keV: 10 bands from 0.2 to 10 keV; bands 2-5 are
    /// the standard 0.5-2 keV band, bands 1-5 the 0.3-2 keV band.
    pub band_edges_kev: [f64; NBANDS + 1],
    /// Galactic hydrogen column in cm^-2 (typical high-latitude value; docs/mocks.md).
    pub nh_cm2: f64,
    /// Fraction of the rest-frame 0.5-2 keV luminosity in lines at kT = 1 keV
    /// (estimate for 0.3 solar abundance from APEC; lines make about half the soft flux of 1 keV gas).
    pub line_fraction_1kev: f64,
    /// Power-law slope of the line fraction with temperature, f = f1 (kT / 1 keV)^-slope (estimate).
    pub line_fraction_slope: f64,
    /// Centre of the Fe-L line complex in rest-frame keV.
    pub line_energy_kev: f64,
    /// Gaussian width of the Fe-L complex in keV (blend of many lines).
    pub line_width_kev: f64,
    /// Effective area, piecewise constant: (lower keV, upper keV, cm^2). Band-averaged
    /// on-axis values of all 7 eROSITA telescopes derived from published energy
    /// conversion factors (PHYSICS.md); the 8.2-10 keV value is an estimate.
    pub effective_area: Vec<(f64, f64, f64)>,
}

impl Default for SpectralParams {
    fn default() -> Self {
        Self {
            band_edges_kev: [0.2, 0.3, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0, 5.0, 7.0, 10.0],
            nh_cm2: 3e20,
            line_fraction_1kev: 0.5,
            line_fraction_slope: 1.2,
            line_energy_kev: 0.95,
            line_width_kev: 0.15,
            effective_area: vec![
                (0.2, 0.5, 380.0),
                (0.5, 1.0, 1500.0),
                (1.0, 2.0, 2300.0),
                (2.0, 5.0, 790.0),
                (5.0, 7.2, 300.0),
                (7.2, 8.2, 150.0),
                (8.2, 10.0, 60.0),
            ],
        }
    }
}

/// Morrison & McCammon (1983, ApJ 270, 119) Table 2: upper edge (keV), c0, c1, c2,
/// sigma(E) = (c0 + c1 E + c2 E^2) E^-3 x 1e-24 cm^2 per H atom.
const MM83: [(f64, f64, f64, f64); 14] = [
    (0.100, 17.3, 608.1, -2150.0),
    (0.284, 34.6, 267.9, -476.1),
    (0.400, 78.1, 18.8, 4.3),
    (0.532, 71.4, 66.8, -51.4),
    (0.707, 95.5, 145.8, -61.1),
    (0.867, 308.9, -380.6, 294.0),
    (1.303, 120.6, 169.3, -47.7),
    (1.840, 141.3, 146.8, -31.5),
    (2.471, 202.7, 104.7, -17.0),
    (3.210, 342.7, 18.7, 0.0),
    (4.038, 352.2, 18.7, 0.0),
    (7.111, 433.9, -2.4, 0.75),
    (8.331, 629.0, 30.9, 0.0),
    (10.00, 701.2, 25.2, 0.0),
];

/// Photoelectric absorption cross-section per hydrogen atom (cm^2) at E keV.
pub fn mm83_cross_section(e_kev: f64) -> f64 {
    let row = MM83
        .iter()
        .find(|r| e_kev < r.0)
        .unwrap_or(&MM83[MM83.len() - 1]);
    (row.1 + row.2 * e_kev + row.3 * e_kev * e_kev) / e_kev.powi(3) * 1e-24
}

/// e^y K0(y) for y > 0 (Abramowitz & Stegun 9.8.1, 9.8.5, 9.8.6; |error| < 2e-7 relative).
fn exp_k0(y: f64) -> f64 {
    if y <= 2.0 {
        let t = (y / 3.75).powi(2);
        let i0 = 1.0
            + t * (3.5156229
                + t * (3.0899424
                    + t * (1.2067492 + t * (0.2659732 + t * (0.0360768 + t * 0.0045813)))));
        let u = (y / 2.0).powi(2);
        let k0 = -(y / 2.0).ln() * i0 - 0.57721566
            + u * (0.42278420
                + u * (0.23069756
                    + u * (0.03488590 + u * (0.00262698 + u * (0.00010750 + u * 0.00000740)))));
        k0 * y.exp()
    } else {
        let v = 2.0 / y;
        (1.25331414
            + v * (-0.07832358
                + v * (0.02189568
                    + v * (-0.01062446 + v * (0.00587872 + v * (-0.00251540 + v * 0.00053208))))))
            / y.sqrt()
    }
}

/// Born-approximation free-free Gaunt factor at photon energy E for temperature kT.
pub fn gaunt_born(e_kev: f64, kt_kev: f64) -> f64 {
    let y = 0.5 * e_kev / kt_kev;
    3f64.sqrt() / std::f64::consts::PI * exp_k0(y)
}

/// Continuum energy spectrum shape dL/dE' (arbitrary units) of bremsstrahlung:
/// g(E', T) exp(-E'/kT); the T^-1/2 factor is absorbed in the normalisation.
fn brems_shape(e_kev: f64, kt_kev: f64) -> f64 {
    // g e^{-x} = (sqrt3/pi) e^{y} K0(y) e^{-2y}, y = x/2, stable for any x.
    let y = 0.5 * e_kev / kt_kev;
    3f64.sqrt() / std::f64::consts::PI * exp_k0(y) * (-2.0 * y).exp()
}

/// Pre-folded instrument response: a fine grid of observed energies, each with its
/// band and the weight A_eff(E) exp(-N_H sigma(E)) dE.
#[derive(Debug, Clone)]
pub struct Response {
    /// The spectral parameters this response was built from.
    pub params: SpectralParams,
    energy: Vec<f64>,
    band: Vec<usize>,
    weight: Vec<f64>,
}

/// Points per band of the folding grid (log-spaced midpoints).
const POINTS_PER_BAND: usize = 24;

impl Response {
    /// Build the folding grid.
    pub fn new(params: SpectralParams) -> Self {
        let mut energy = Vec::new();
        let mut band = Vec::new();
        let mut weight = Vec::new();
        for b in 0..NBANDS {
            let (lo, hi) = (params.band_edges_kev[b], params.band_edges_kev[b + 1]);
            let r = (hi / lo).ln() / POINTS_PER_BAND as f64;
            for k in 0..POINTS_PER_BAND {
                let e0 = lo * (r * k as f64).exp();
                let e1 = lo * (r * (k + 1) as f64).exp();
                let e = (e0 * e1).sqrt();
                let area = params
                    .effective_area
                    .iter()
                    .find(|a| e >= a.0 && e < a.1)
                    .map_or(0.0, |a| a.2);
                let transmission = (-params.nh_cm2 * mm83_cross_section(e)).exp();
                energy.push(e);
                band.push(b);
                weight.push(area * transmission * (e1 - e0));
            }
        }
        Self {
            params,
            energy,
            band,
            weight,
        }
    }

    /// Fold a photon flux density n(E) (photons / cm^2 / s / keV, observed E) into
    /// count rates per band (counts / s).
    pub fn fold(&self, n_of_e: impl Fn(f64) -> f64) -> [f64; NBANDS] {
        let mut out = [0.0; NBANDS];
        for ((e, b), w) in self.energy.iter().zip(&self.band).zip(&self.weight) {
            out[*b] += n_of_e(*e) * w;
        }
        out
    }

    /// Fraction of a thermal plasma's rest-frame 0.5-2 keV luminosity emitted in lines.
    pub fn line_fraction(&self, kt_kev: f64) -> f64 {
        (self.params.line_fraction_1kev * kt_kev.powf(-self.params.line_fraction_slope))
            .clamp(0.0, 0.8)
    }

    /// Observed photon flux density n(E) (photons / cm^2 / s / keV, unabsorbed) of a
    /// thermal plasma at redshift z whose rest-frame 0.5-2 keV luminosity is `lum_erg_s`,
    /// at luminosity distance `d_l_cm`.
    ///
    /// Observed energy flux density F_E(E) = (1+z) L_E'((1+z)E) / (4 pi D_L^2); the
    /// photon flux density is F_E / E. Surface-brightness dimming (1+z)^-4 follows
    /// from this flux and the angular size set by D_A.
    pub fn thermal_photon_flux(
        &self,
        lum_erg_s: f64,
        kt_kev: f64,
        z: f64,
        d_l_cm: f64,
    ) -> impl Fn(f64) -> f64 + use<> {
        let p = &self.params;
        // Rest-frame 0.5-2 keV integral of the continuum shape (Simpson, 64 intervals).
        let n = 64;
        let h = 1.5 / n as f64;
        let mut cont = 0.0;
        for i in 0..=n {
            let w = if i == 0 || i == n {
                1.0
            } else if i % 2 == 1 {
                4.0
            } else {
                2.0
            };
            cont += w * brems_shape(0.5 + i as f64 * h, kt_kev);
        }
        cont *= h / 3.0;
        let f_line = self.line_fraction(kt_kev);
        // Line amplitude (energy per unit shape) so lines carry f_line of the 0.5-2 keV total.
        let a_line = f_line / (1.0 - f_line) * cont;
        let k_norm = lum_erg_s / (cont + a_line); // erg/s per unit of the shape integral
        let inv_sig = 1.0 / p.line_width_kev;
        let gauss_norm = inv_sig / (2.0 * std::f64::consts::PI).sqrt();
        let geom = 1.0 / (4.0 * std::f64::consts::PI * d_l_cm * d_l_cm);
        let line_e = p.line_energy_kev;
        move |e: f64| {
            let er = e * (1.0 + z);
            let d = (er - line_e) * inv_sig;
            let shape = brems_shape(er, kt_kev) + a_line * gauss_norm * (-0.5 * d * d).exp();
            (1.0 + z) * k_norm * shape * geom / (e * KEV_ERG)
        }
    }

    /// Count rates per band (counts / s) of [`Response::thermal_photon_flux`].
    pub fn thermal_rates(&self, lum_erg_s: f64, kt_kev: f64, z: f64, d_l_cm: f64) -> [f64; NBANDS] {
        self.fold(self.thermal_photon_flux(lum_erg_s, kt_kev, z, d_l_cm))
    }

    /// Count rates per band from an absorbed power law of photon index `gamma`
    /// whose observed 0.5-2 keV energy flux (before absorption) is `flux_cgs`.
    pub fn power_law_rates(&self, flux_cgs: f64, gamma: f64) -> [f64; NBANDS] {
        // Energy flux of K E^-gamma in 0.5-2 keV: K * int E^(1-gamma) dE (keV units).
        let int = if (gamma - 2.0).abs() < 1e-9 {
            (2.0f64 / 0.5).ln()
        } else {
            (2f64.powf(2.0 - gamma) - 0.5f64.powf(2.0 - gamma)) / (2.0 - gamma)
        };
        let k = flux_cgs / (int * KEV_ERG);
        self.fold(|e| k * e.powf(-gamma))
    }

    /// Count rates per band of an unabsorbed-at-source thermal shape normalised to unit
    /// photon density at 1 keV (used for the soft Galactic foreground).
    pub fn thermal_shape_rates(&self, kt_kev: f64) -> [f64; NBANDS] {
        let n1 = brems_shape(1.0, kt_kev);
        self.fold(|e| brems_shape(e, kt_kev) / n1 / e)
    }
}
