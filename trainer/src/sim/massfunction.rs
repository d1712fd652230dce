//! Halo mass function of Tinker et al. (2008, ApJ 688, 709) for M500c, used to
//! weight (or draw) clusters like the real Universe does at evaluation time.
//!
//! The linear power spectrum uses the BBKS transfer function (Bardeen et al.
//! 1986) with Sugiyama's (1995) baryon-corrected shape parameter, normalised to
//! sigma_8; growth follows Carroll, Press & Turner (1992). Overdensity 500 with
//! respect to the critical density is 500 / Omega_m(z) with respect to the mean,
//! and Tinker's parameters are interpolated in Delta with their eqs. B1-B4 and
//! evolved with z with their eqs. 5-8.

use super::cosmology::{Cosmology, RHO_CRIT_H2_MSUN_MPC3};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Parameters of the linear matter power spectrum (Planck-like defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PowerSpectrumParams {
    /// rms linear fluctuation in spheres of 8 Mpc/h today (Planck 2018: 0.81; 0.8 used here).
    pub sigma8: f64,
    /// Primordial spectral index (Planck 2018: 0.965).
    pub n_s: f64,
    /// Baryon density parameter (Planck 2018: 0.049; 0.045 used here).
    pub omega_b: f64,
}

impl Default for PowerSpectrumParams {
    fn default() -> Self {
        Self {
            sigma8: 0.8,
            n_s: 0.96,
            omega_b: 0.045,
        }
    }
}

/// Tabulated sigma(M) and the Tinker 2008 mass function.
#[derive(Debug, Clone)]
pub struct MassFunction {
    cosmo: Cosmology,
    log10_m: Vec<f64>,
    /// sigma(M) at z = 0 on the `log10_m` grid.
    sigma0: Vec<f64>,
}

fn top_hat(x: f64) -> f64 {
    if x < 1e-3 {
        1.0 - x * x / 10.0
    } else {
        3.0 * (x.sin() - x * x.cos()) / (x * x * x)
    }
}

impl MassFunction {
    /// Build the sigma(M) table (masses 1e12 to 10^16.5 Msun).
    pub fn new(cosmo: &Cosmology, ps: PowerSpectrumParams) -> Self {
        let h = cosmo.h();
        let om = cosmo.params.omega_m;
        // Sugiyama (1995) shape parameter, k in h/Mpc.
        let gamma = om * h * (-ps.omega_b - (2.0 * h).sqrt() * ps.omega_b / om).exp();
        let transfer = |k: f64| {
            let q = k / gamma;
            (1.0 + 2.34 * q).ln() / (2.34 * q)
                * (1.0 + 3.89 * q + (16.1 * q).powi(2) + (5.46 * q).powi(3) + (6.71 * q).powi(4))
                    .powf(-0.25)
        };
        let ln_k: Vec<f64> = (0..1200)
            .map(|i| (1e-4f64).ln() + (1e4f64 / 1e-4).ln() * i as f64 / 1199.0)
            .collect();
        let dlnk = ln_k[1] - ln_k[0];
        // Unnormalised sigma^2 for a top-hat of radius r (Mpc/h).
        let sigma2 = |r: f64| -> f64 {
            ln_k.iter()
                .map(|&lk| {
                    let k = lk.exp();
                    let t = transfer(k);
                    k.powi(3) * k.powf(ps.n_s) * t * t * top_hat(k * r).powi(2)
                })
                .sum::<f64>()
                * dlnk
                / (2.0 * PI * PI)
        };
        let norm = ps.sigma8 * ps.sigma8 / sigma2(8.0);
        let rho_m = RHO_CRIT_H2_MSUN_MPC3 * om; // Msun h^2 / Mpc^3, comoving
        let log10_m: Vec<f64> = (0..=90).map(|i| 12.0 + 4.5 * i as f64 / 90.0).collect();
        let sigma0 = log10_m
            .iter()
            .map(|&lm| {
                let m_h = 10f64.powf(lm) * h; // Msun/h
                let r = (3.0 * m_h / (4.0 * PI * rho_m)).cbrt(); // Mpc/h
                (norm * sigma2(r)).sqrt()
            })
            .collect();
        Self {
            cosmo: cosmo.clone(),
            log10_m,
            sigma0,
        }
    }

    /// Linear growth factor normalised to 1 today (Carroll, Press & Turner 1992).
    pub fn growth(&self, z: f64) -> f64 {
        let g = |z: f64| {
            let om = self.cosmo.omega_m_z(z);
            let ol = 1.0 - om;
            2.5 * om / (om.powf(4.0 / 7.0) - ol + (1.0 + om / 2.0) * (1.0 + ol / 70.0))
        };
        g(z) / (g(0.0) * (1.0 + z))
    }

    /// sigma(M, z) for a mass in Msun.
    pub fn sigma(&self, log10_m: f64, z: f64) -> f64 {
        let x = ((log10_m - self.log10_m[0]) / (self.log10_m[1] - self.log10_m[0]))
            .clamp(0.0, (self.log10_m.len() - 1) as f64 - 1e-9);
        let i = x.floor() as usize;
        let f = x - i as f64;
        // Interpolate ln sigma linearly in log M (sigma is close to a power law).
        (self.sigma0[i].ln() * (1.0 - f) + self.sigma0[i + 1].ln() * f).exp() * self.growth(z)
    }

    /// Tinker's multiplicity function f(sigma) for M500c at redshift z.
    pub fn f_sigma(&self, sigma: f64, z: f64) -> f64 {
        let delta = 500.0 / self.cosmo.omega_m_z(z);
        let ld = delta.log10();
        let a0 = if delta < 1600.0 {
            0.1 * ld - 0.05
        } else {
            0.26
        };
        let a_small0 = 1.43 + (ld - 2.3).max(0.0).powf(1.5);
        let b0 = 1.0 + (ld - 1.6).powf(-1.5);
        let c = 1.2 + (ld - 2.35).max(0.0).powf(1.6);
        let alpha = 10f64.powf(-(0.75 / (delta / 75.0).log10()).powf(1.2));
        let big_a = a0 * (1.0 + z).powf(-0.14);
        let a = a_small0 * (1.0 + z).powf(-0.06);
        let b = b0 * (1.0 + z).powf(-alpha);
        big_a * ((sigma / b).powf(-a) + 1.0) * (-c / (sigma * sigma)).exp()
    }

    /// Comoving number density per unit log10 mass, dn / dlog10 M500c, in Mpc^-3.
    pub fn dn_dlog10m(&self, log10_m: f64, z: f64) -> f64 {
        let eps = 0.01;
        let s = self.sigma(log10_m, z);
        let dln_inv_sigma_dlog10m =
            -(self.sigma(log10_m + eps, z).ln() - self.sigma(log10_m - eps, z).ln()) / (2.0 * eps);
        let rho_m = RHO_CRIT_H2_MSUN_MPC3 * self.cosmo.h().powi(2) * self.cosmo.params.omega_m; // Msun/Mpc^3
        self.f_sigma(s, z) * rho_m / 10f64.powf(log10_m) * dln_inv_sigma_dlog10m
    }

    /// Comoving number density of halos with log10 M500c in [lo, hi] at z, Mpc^-3:
    /// the integral of [`Self::dn_dlog10m`] (Simpson's rule, 64 intervals).
    pub fn number_density(&self, lo: f64, hi: f64, z: f64) -> f64 {
        let n = 64;
        let h = (hi - lo) / n as f64;
        let sum: f64 = (0..=n)
            .map(|k| {
                let w = if k == 0 || k == n {
                    1.0
                } else if k % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                w * self.dn_dlog10m(lo + k as f64 * h, z)
            })
            .sum();
        sum * h / 3.0
    }
}
