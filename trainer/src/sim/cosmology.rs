//! Flat Lambda-CDM background: expansion rate, distances, critical density and
//! comoving volume, plus sampling redshifts in proportion to comoving volume.
//!
//! Distances are integrated once onto a fine table (trapezoid on sub-steps of
//! 1e-4 in z, far below the 0.1 % accuracy the tests demand) and interpolated.

use serde::{Deserialize, Serialize};

/// Speed of light in km/s.
pub const C_KM_S: f64 = 299_792.458;
/// Critical density today for h = 1, in Msun / Mpc^3 (3 H^2 / 8 pi G with
/// H = 100 km/s/Mpc; PDG 2024 astrophysical constants).
pub const RHO_CRIT_H2_MSUN_MPC3: f64 = 2.775_366e11;
/// Mpc in cm (IAU 2015 parsec).
pub const MPC_CM: f64 = 3.085_677_581e24;

/// Parameters of the flat LCDM cosmology (defaults: H0 = 70, Om = 0.3, the project design; docs/mocks.md).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CosmologyParams {
    /// Hubble constant in km/s/Mpc.
    pub h0: f64,
    /// Matter density today in units of the critical density.
    pub omega_m: f64,
}

impl Default for CosmologyParams {
    fn default() -> Self {
        Self {
            h0: 70.0,
            omega_m: 0.3,
        }
    }
}

/// Tabulated flat LCDM background.
#[derive(Debug, Clone)]
pub struct Cosmology {
    /// The parameters.
    pub params: CosmologyParams,
    dz: f64,
    /// Comoving distance in Mpc at z = i * dz.
    dc: Vec<f64>,
}

/// Largest redshift the distance table covers.
pub const Z_TABLE_MAX: f64 = 4.0;

impl Cosmology {
    /// Integrate the distance table for these parameters.
    pub fn new(params: CosmologyParams) -> Self {
        let dz = 1e-3;
        let n = (Z_TABLE_MAX / dz).round() as usize + 1;
        let sub = 10;
        let h = dz / sub as f64;
        let mut dc = Vec::with_capacity(n);
        let mut acc = 0.0;
        dc.push(0.0);
        let inv_e = |z: f64| 1.0 / Self::e_of(params.omega_m, z);
        for i in 1..n {
            let z0 = (i - 1) as f64 * dz;
            // Simpson's rule on each sub-interval.
            for k in 0..sub {
                let a = z0 + k as f64 * h;
                acc += h / 6.0 * (inv_e(a) + 4.0 * inv_e(a + 0.5 * h) + inv_e(a + h));
            }
            dc.push(acc * C_KM_S / params.h0);
        }
        Self { params, dz, dc }
    }

    fn e_of(om: f64, z: f64) -> f64 {
        (om * (1.0 + z).powi(3) + 1.0 - om).sqrt()
    }

    /// Dimensionless Hubble parameter h = H0 / 100.
    pub fn h(&self) -> f64 {
        self.params.h0 / 100.0
    }

    /// E(z) = H(z) / H0.
    pub fn e(&self, z: f64) -> f64 {
        Self::e_of(self.params.omega_m, z)
    }

    /// Matter density parameter at redshift z.
    pub fn omega_m_z(&self, z: f64) -> f64 {
        self.params.omega_m * (1.0 + z).powi(3) / self.e(z).powi(2)
    }

    /// Hubble distance c / H0 in Mpc.
    pub fn hubble_distance(&self) -> f64 {
        C_KM_S / self.params.h0
    }

    /// Line-of-sight comoving distance in Mpc (0 <= z <= [`Z_TABLE_MAX`]).
    pub fn comoving_distance(&self, z: f64) -> f64 {
        let x = (z.clamp(0.0, Z_TABLE_MAX)) / self.dz;
        let i = (x.floor() as usize).min(self.dc.len() - 2);
        let f = x - i as f64;
        self.dc[i] * (1.0 - f) + self.dc[i + 1] * f
    }

    /// Angular-diameter distance in Mpc.
    pub fn angular_diameter_distance(&self, z: f64) -> f64 {
        self.comoving_distance(z) / (1.0 + z)
    }

    /// Luminosity distance in Mpc.
    pub fn luminosity_distance(&self, z: f64) -> f64 {
        self.comoving_distance(z) * (1.0 + z)
    }

    /// Comoving volume per unit redshift per steradian, Mpc^3 / sr.
    pub fn dvdz(&self, z: f64) -> f64 {
        let dc = self.comoving_distance(z);
        self.hubble_distance() * dc * dc / self.e(z)
    }

    /// Critical density at z in Msun / Mpc^3.
    pub fn rho_crit(&self, z: f64) -> f64 {
        RHO_CRIT_H2_MSUN_MPC3 * self.h().powi(2) * self.e(z).powi(2)
    }

    /// r500c in Mpc for a mass M500c in Msun.
    pub fn r500_mpc(&self, m500: f64, z: f64) -> f64 {
        (3.0 * m500 / (4.0 * std::f64::consts::PI * 500.0 * self.rho_crit(z))).cbrt()
    }

    /// Angle subtended by a proper length (Mpc) at redshift z, in arcmin.
    pub fn angle_arcmin(&self, length_mpc: f64, z: f64) -> f64 {
        (length_mpc / self.angular_diameter_distance(z)).to_degrees() * 60.0
    }
}

/// Inverse-CDF sampler of redshifts distributed as dV/dz (optionally times a number
/// density) on [z_min, z_max].
#[derive(Debug, Clone)]
pub struct RedshiftSampler {
    z: Vec<f64>,
    cdf: Vec<f64>,
}

impl RedshiftSampler {
    /// Tabulate the cumulative comoving volume between the limits.
    pub fn new(cosmo: &Cosmology, z_min: f64, z_max: f64) -> Self {
        Self::weighted(cosmo, z_min, z_max, |_| 1.0)
    }

    /// Redshifts distributed as `dV/dz * weight(z)` on [z_min, z_max] (a population whose
    /// number density per comoving volume is `weight(z)`, such as the mass function
    /// integrated over the mass range).
    pub fn weighted(
        cosmo: &Cosmology,
        z_min: f64,
        z_max: f64,
        weight: impl Fn(f64) -> f64,
    ) -> Self {
        let n = 2048;
        let z: Vec<f64> = (0..=n)
            .map(|i| z_min + (z_max - z_min) * i as f64 / n as f64)
            .collect();
        let density: Vec<f64> = z.iter().map(|&z| cosmo.dvdz(z) * weight(z)).collect();
        let mut cdf = vec![0.0; z.len()];
        for i in 1..z.len() {
            cdf[i] = cdf[i - 1] + 0.5 * (density[i - 1] + density[i]) * (z[i] - z[i - 1]);
        }
        let total = cdf[n];
        cdf.iter_mut().for_each(|c| *c /= total);
        Self { z, cdf }
    }

    /// Map a uniform deviate in [0, 1) to a redshift.
    pub fn sample(&self, u: f64) -> f64 {
        let i = self
            .cdf
            .partition_point(|&c| c <= u)
            .clamp(1, self.cdf.len() - 1);
        let (c0, c1) = (self.cdf[i - 1], self.cdf[i]);
        let f = if c1 > c0 { (u - c0) / (c1 - c0) } else { 0.0 };
        self.z[i - 1] + f * (self.z[i] - self.z[i - 1])
    }
}
