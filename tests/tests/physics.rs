//! Physical sanity of the mock generator, each against a reference that does not
//! come from the code under test: published distances, closed forms, conservation
//! of energy under redshift, Poisson statistics, and literature scaling numbers.

use tests::simulator;
use trainer::generate::generate_dataset;
use trainer::sim::cosmology::{Cosmology, CosmologyParams, MPC_CM};
use trainer::sim::spectrum::{KEV_ERG, NBANDS, Response, SpectralParams, gaunt_born};
use trainer::sim::{IMAGE_LEN, NPIX};

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// Flat LCDM H0 = 70, Om = 0.3 distances from astropy 6 (FlatLambdaCDM, Tcmb0 = 0), which
/// agree with Wright's (2006) calculator: D_A(0.5) = 1259.1 Mpc, D_L(1.0) = 6607.7 Mpc.
#[test]
fn distances_match_published_flat_lcdm_values() {
    let c = Cosmology::new(CosmologyParams {
        h0: 70.0,
        omega_m: 0.3,
    });
    let reference = [
        (0.1, 380.413, 460.300),
        (0.5, 1259.084, 2832.938),
        (1.0, 1651.914, 6607.658),
    ];
    for (z, d_a, d_l) in reference {
        assert!(
            rel(c.angular_diameter_distance(z), d_a) < 1e-3,
            "D_A({z}) = {}",
            c.angular_diameter_distance(z)
        );
        assert!(
            rel(c.luminosity_distance(z), d_l) < 1e-3,
            "D_L({z}) = {}",
            c.luminosity_distance(z)
        );
    }
    // Critical density at z = 0.5 (astropy: 2.3289e11 Msun/Mpc^3).
    assert!(rel(c.rho_crit(0.5), 2.328_879e11) < 1e-3);
}

/// Energy conservation under redshift: the energy flux received in the observed band
/// [0.5, 2] / (1 + z) keV is exactly L(0.5-2 keV, rest) / (4 pi D_L^2), so at fixed
/// luminosity it falls as D_L^-2 with no K-correction.
#[test]
fn flux_at_fixed_luminosity_falls_as_inverse_square_of_luminosity_distance() {
    let c = Cosmology::new(CosmologyParams::default());
    let r = Response::new(SpectralParams::default());
    let lum = 1e44;
    for (z, kt) in [(0.1, 2.0), (0.5, 5.0), (1.2, 8.0)] {
        let d_l = c.luminosity_distance(z) * MPC_CM;
        let n = r.thermal_photon_flux(lum, kt, z, d_l);
        let (lo, hi) = (0.5 / (1.0 + z), 2.0 / (1.0 + z));
        let steps = 20_000;
        let h = (hi - lo) / steps as f64;
        let flux: f64 = (0..steps)
            .map(|i| lo + (i as f64 + 0.5) * h)
            .map(|e| n(e) * e * KEV_ERG * h)
            .sum();
        let expected = lum / (4.0 * std::f64::consts::PI * d_l * d_l);
        assert!(
            rel(flux, expected) < 1e-3,
            "z = {z}: flux {flux:e}, L/4piDL^2 {expected:e}"
        );
    }
}

/// Tolman dimming: surface brightness of a fixed proper patch ~ D_A^2 / D_L^2 = (1+z)^-4.
#[test]
fn surface_brightness_dims_as_one_plus_z_to_the_fourth() {
    let c = Cosmology::new(CosmologyParams::default());
    for z in [0.1, 0.5, 1.0, 1.3] {
        let sb = c.angular_diameter_distance(z).powi(2) / c.luminosity_distance(z).powi(2);
        assert!(rel(sb, (1.0 + z).powi(-4)) < 1e-9);
    }
}

/// The Born Gaunt factor against its closed-form limits:
/// small x: (sqrt3/pi)(ln(4/x) - gamma_E); large x: (sqrt3/pi) sqrt(pi/x).
#[test]
fn gaunt_factor_has_the_born_limits() {
    let c = 3f64.sqrt() / std::f64::consts::PI;
    let x = 1e-4;
    assert!(rel(gaunt_born(x, 1.0), c * ((4.0 / x).ln() - 0.577_215_664_9)) < 1e-4);
    let x = 400.0;
    assert!(rel(gaunt_born(x, 1.0), c * (std::f64::consts::PI / x).sqrt()) < 2e-3);
    // And against K0 by quadrature, K0(y) = int_0^inf exp(-y cosh t) dt, in between.
    for x in [0.3, 1.0, 3.0, 10.0] {
        let y: f64 = x / 2.0;
        let k0: f64 = (0..200_000)
            .map(|i| (i as f64 + 0.5) * 1e-4)
            .map(|t: f64| (-y * t.cosh()).exp() * 1e-4)
            .sum();
        assert!(rel(gaunt_born(x, 1.0), c * y.exp() * k0) < 1e-5, "x = {x}");
    }
}

fn hardness(r: &Response, kt: f64) -> f64 {
    let rates = r.thermal_rates(1e44, kt, 0.3, 1e28);
    rates[6..].iter().sum::<f64>() / rates[2..=5].iter().sum::<f64>()
}

#[test]
fn hardness_ratio_rises_with_temperature() {
    let r = Response::new(SpectralParams::default());
    let h: Vec<f64> = [1.0, 2.0, 4.0, 8.0, 12.0]
        .iter()
        .map(|&t| hardness(&r, t))
        .collect();
    assert!(h.windows(2).all(|w| w[1] > w[0] * 1.05), "{h:?}");
}

fn total_counts(images: &[u16]) -> f64 {
    images.iter().map(|&v| f64::from(v)).sum()
}

/// Every count source (cluster, AGN, sky, particles) scales with exposure, so the mean
/// counts of the same clusters observed 4x longer are 4x larger (Poisson noise aside).
#[test]
fn expected_counts_scale_linearly_with_exposure() {
    let n = 400;
    let short = generate_dataset(&simulator(7, |c| c.instrument.exposure_s = Some(500.0)), n);
    let long = generate_dataset(&simulator(7, |c| c.instrument.exposure_s = Some(2000.0)), n);
    let (a, b) = (total_counts(&short.images), total_counts(&long.images));
    // ~1,500 counts per image at 1.6 ks: the ratio's Poisson error is far below 1 %.
    assert!(rel(b / a, 4.0) < 0.02, "count ratio {}", b / a);
    let ta = short.truth.as_ref().unwrap();
    let tb = long.truth.as_ref().unwrap();
    for i in 0..n {
        assert!(
            rel(
                f64::from(tb.source_counts[i]),
                4.0 * f64::from(ta.source_counts[i])
            ) < 1e-5
        );
    }
}

/// `instrument.exposure_range_s`: each cluster's exposure is log-uniform in the range (its
/// log is uniform: KS distance below 0.03 for 2,000 clusters), the clusters are the same as
/// at the fixed exposure (same redshift and mass), and each one's expected source counts
/// scale linearly with its own exposure; the background and the total counts follow
/// (counts per second of exposure agree with the fixed-exposure set within 3 %).
#[test]
fn per_cluster_exposure_is_log_uniform_and_scales_the_counts() {
    let n = 2000;
    let (lo, hi) = (150.0f64, 20_000.0f64);
    let fixed = generate_dataset(&simulator(8, |c| c.instrument.exposure_s = Some(1000.0)), n);
    let mixed = generate_dataset(
        &simulator(8, |c| {
            c.instrument.exposure_s = Some(1000.0);
            c.instrument.exposure_range_s = Some((lo, hi));
        }),
        n,
    );
    let (tf, tm) = (fixed.truth.as_ref().unwrap(), mixed.truth.as_ref().unwrap());
    let mut u: Vec<f64> = tm
        .exposure_s
        .iter()
        .map(|&e| ((f64::from(e)).ln() - lo.ln()) / (hi.ln() - lo.ln()))
        .collect();
    u.sort_by(f64::total_cmp);
    assert!(u[0] >= 0.0 && u[n - 1] <= 1.0, "exposure outside the range");
    let ks = u
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            ((i + 1) as f64 / n as f64 - v)
                .abs()
                .max((v - i as f64 / n as f64).abs())
        })
        .fold(0.0f64, f64::max);
    assert!(ks < 0.03, "KS distance to log-uniform {ks}");
    let (mut rate_f, mut rate_m) = (0.0, 0.0);
    for i in 0..n {
        assert_eq!(fixed.redshift[i], mixed.redshift[i], "cluster {i} moved");
        assert_eq!(
            fixed.log_mass.as_ref().unwrap()[i],
            mixed.log_mass.as_ref().unwrap()[i]
        );
        let e = f64::from(tm.exposure_s[i]);
        assert!(
            rel(
                f64::from(tm.source_counts[i]),
                f64::from(tf.source_counts[i]) * e / 1000.0
            ) < 1e-5,
            "cluster {i}"
        );
        let c = |img: &[u16]| img.iter().map(|&v| f64::from(v)).sum::<f64>();
        rate_f += c(fixed.image(i)) / 1000.0;
        rate_m += c(mixed.image(i)) / e;
    }
    assert!(
        rel(rate_m, rate_f) < 0.03,
        "counts per second {rate_m} vs {rate_f}"
    );
}

/// At fixed redshift, brighter (more massive) clusters give more counts: each 0.4 dex
/// step in mass raises the mean counts by more than 4 standard errors, and the steps grow,
/// as L ~ M^1.6 on top of a mass-independent background demands.
#[test]
fn mean_counts_rise_with_mass_at_fixed_redshift() {
    let mut stats = Vec::new();
    for (lo, hi) in [(13.6, 13.8), (14.0, 14.2), (14.4, 14.6), (14.8, 15.0)] {
        let sim = simulator(11, |c| {
            c.population.z_min = 0.30;
            c.population.z_max = 0.31;
            c.population.log_m_min = lo;
            c.population.log_m_max = hi;
        });
        let n = 200;
        let ds = generate_dataset(&sim, n);
        let per: Vec<f64> = (0..n).map(|i| total_counts(ds.image(i))).collect();
        let mean = per.iter().sum::<f64>() / n as f64;
        let se = (per.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 / n as f64)
            .sqrt();
        stats.push((mean, se));
    }
    for w in stats.windows(2) {
        let (d, se) = (w[1].0 - w[0].0, (w[0].1.powi(2) + w[1].1.powi(2)).sqrt());
        assert!(d > 4.0 * se, "{stats:?}");
    }
    let steps: Vec<f64> = stats.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(steps.windows(2).all(|s| s[1] > s[0]), "{steps:?}");
}

/// Pixels with background only are Poisson: variance equals mean.
#[test]
fn background_only_pixels_have_variance_equal_to_mean() {
    let sim = simulator(3, |c| {
        c.instrument.agn_n_ref_deg2 = 0.0;
        c.instrument.central_agn_fraction = 0.0;
        c.instrument.exposure_s = Some(20_000.0);
        c.population.log_m_min = 13.5;
        c.population.log_m_max = 13.51;
        c.population.z_min = 1.25;
        c.population.z_max = 1.3;
    });
    let ds = generate_dataset(&sim, 300);
    // Corner pixels (> 22 pixels from the centre) of the hardest band: the faint, distant
    // cluster contributes nothing measurable there.
    let band = NBANDS - 1;
    let mut v = Vec::new();
    for i in 0..ds.len() {
        let img = ds.image(i);
        for y in 0..NPIX {
            for x in 0..NPIX {
                let r = ((x as f64 - 24.5).powi(2) + (y as f64 - 24.5).powi(2)).sqrt();
                if r > 22.0 {
                    v.push(f64::from(img[band * NPIX * NPIX + y * NPIX + x]));
                }
            }
        }
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    assert!(
        mean > 0.5,
        "test needs a measurable background, mean {mean}"
    );
    // Standard error of the variance/mean ratio is about sqrt(2/n) ~ 0.5 % here.
    assert!(
        (var / mean - 1.0).abs() < 0.03,
        "var {var}, mean {mean}, n {n}"
    );
    assert!(
        rel(mean, sim.instrument.bkg_per_pixel[band]) < 0.02,
        "mean {mean} vs declared {}",
        sim.instrument.bkg_per_pixel[band]
    );
}

/// The population reproduces the observed scaling-relation scatter it was built on:
/// total L-M about 0.15-0.17 dex, core-excised about 0.09 dex (Pratt et al. 2009),
/// relaxed 30 % brighter than disturbed (Lovisari et al. 2020), cool cores ~45 %.
#[test]
fn population_reproduces_literature_scatter() {
    let sim = simulator(5, |_| {});
    let n = 20_000;
    let (mut r_tot, mut r_ce, mut rel_l, mut dist_l, mut n_cc) =
        (vec![], vec![], vec![], vec![], 0);
    for i in 0..n {
        let cl = sim.intrinsic(i);
        let (ln_l, _) = trainer::sim::population::mean_ln_l_t(
            &sim.config.scaling,
            cl.log_m,
            sim.cosmo.e(cl.z),
            sim.cosmo.h(),
        );
        let mean_log = ln_l / std::f64::consts::LN_10;
        r_tot.push(cl.lum.log10() - mean_log);
        r_ce.push(cl.lum_ce.log10() - mean_log);
        match cl.state {
            trainer::sim::population::State::Disturbed => dist_l.push(cl.lum.ln() - ln_l),
            s => {
                rel_l.push(cl.lum.ln() - ln_l);
                n_cc += usize::from(s == trainer::sim::population::State::CoolCore);
            }
        }
    }
    let sd = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        (0.15..=0.17).contains(&sd(&r_tot)),
        "total L-M scatter {}",
        sd(&r_tot)
    );
    assert!(
        (0.08..=0.10).contains(&sd(&r_ce)),
        "core-excised scatter {}",
        sd(&r_ce)
    );
    let ratio = (mean(&rel_l) - mean(&dist_l)).exp();
    assert!(
        (1.2..=1.4).contains(&ratio),
        "relaxed / disturbed luminosity {ratio}"
    );
    assert!(
        mean(&r_tot).abs() < 0.01,
        "mean relation shifted by {}",
        mean(&r_tot)
    );
    let f_cc = n_cc as f64 / n as f64;
    assert!((0.43..=0.47).contains(&f_cc), "cool-core fraction {f_cc}");
}

/// PHYSICS.md: median source counts of the population are about 11 at 150 s and about 85
/// at 1.2 ks. Allow a factor 1.5 either way (the anchor itself is approximate).
#[test]
fn median_source_counts_match_the_survey_anchor() {
    for (exposure, anchor) in [(150.0, 11.0), (1200.0, 85.0)] {
        let sim = simulator(9, |c| c.instrument.exposure_s = Some(exposure));
        let mut counts: Vec<f64> = (0..4000)
            .map(|i| {
                let mut img = vec![0u16; IMAGE_LEN];
                sim.observe(i, &mut img).source_counts
            })
            .collect();
        counts.sort_by(f64::total_cmp);
        let median = counts[counts.len() / 2];
        assert!(
            median > anchor / 1.5 && median < anchor * 1.5,
            "{exposure} s: median {median}, anchor {anchor}"
        );
    }
}

/// Redshifts follow dV/dz: compare the sample's fraction below z = 0.5 with the
/// comoving-volume fraction integrated independently from the distance formula.
#[test]
fn redshifts_follow_comoving_volume() {
    let sim = simulator(13, |_| {});
    let n = 20_000;
    let below = (0..n).filter(|&i| sim.intrinsic(i).z < 0.5).count() as f64 / n as f64;
    let c = &sim.cosmo;
    // V(<z) for a flat universe is (4 pi / 3) D_C^3.
    let v = |z: f64| c.comoving_distance(z).powi(3);
    let expected = (v(0.5) - v(0.05)) / (v(1.3) - v(0.05));
    // Binomial standard error ~0.002.
    assert!((below - expected).abs() < 0.01, "{below} vs {expected}");
}

#[test]
fn tinker_mass_function_falls_with_mass_and_with_redshift_for_massive_halos() {
    let sim = simulator(1, |c| {
        c.population.mass_prior = trainer::sim::MassPrior::Tinker
    });
    let mut img = vec![0u16; IMAGE_LEN];
    let weights: Vec<(f64, f64, f64)> = (0..3000)
        .map(|i| {
            let t = sim.observe(i, &mut img);
            (t.log_mass, t.redshift, t.mf_weight)
        })
        .collect();
    // Draws from the mass function are bottom-heavy: far more clusters below 14 than above 14.8.
    let low = weights.iter().filter(|w| w.0 < 14.0).count();
    let high = weights.iter().filter(|w| w.0 > 14.8).count();
    assert!(low > 20 * high.max(1), "low {low}, high {high}");
    // At fixed mass the abundance of massive halos drops with redshift (hierarchical growth).
    let mut sample = |z0: f64| {
        let s = simulator(1, |c| {
            c.population.z_min = z0;
            c.population.z_max = z0 + 0.01;
            c.population.log_m_min = 14.9;
            c.population.log_m_max = 14.91;
        });
        s.observe(0, &mut img).mf_weight
    };
    let (w01, w05, w10) = (sample(0.1), sample(0.5), sample(1.0));
    assert!(w01 > w05 && w05 > w10 * 3.0, "{w01:e} {w05:e} {w10:e}");
}

/// `--mass-prior tinker` draws (z, M) jointly from dN/dz dlog10M = dV/dz dn/dlog10M: the
/// sample's redshift distribution follows the mass function integrated over the mass range,
/// computed here independently (Gauss-Legendre in log M, a separate z grid, the comoving
/// volume from the closed-form D_C^3): its CDF within a KS distance of 0.015 (the 99 %
/// critical value for 20,000 draws is 0.0115 plus quadrature error) and its median near 0.74,
/// where the volume alone (the draw before) gives about 0.95; a mass conditional on z that
/// falls with mass.
#[test]
fn tinker_population_draws_redshift_and_mass_jointly() {
    let sim = simulator(17, |c| {
        c.population.mass_prior = trainer::sim::MassPrior::Tinker
    });
    let p = sim.config.population.clone();
    let n = 20_000u64;
    let mut zs: Vec<f64> = (0..n).map(|i| sim.intrinsic(i).z).collect();
    zs.sort_by(f64::total_cmp);
    // Independent expected dN/dz on a 400-point grid: dV/dz from d(D_C^3)/dz / 3 by
    // central differences, times an 8-point Gauss-Legendre integral over log M on 8 panels.
    let (xg, wg) = (
        [
            -0.960_289_856_497_536_3,
            -0.796_666_477_413_626_7,
            -0.525_532_409_916_329,
            -0.183_434_642_495_649_8,
            0.183_434_642_495_649_8,
            0.525_532_409_916_329,
            0.796_666_477_413_626_7,
            0.960_289_856_497_536_3,
        ],
        [
            0.101_228_536_290_376_3,
            0.222_381_034_453_374_5,
            0.313_706_645_877_887_3,
            0.362_683_783_378_362,
            0.362_683_783_378_362,
            0.313_706_645_877_887_3,
            0.222_381_034_453_374_5,
            0.101_228_536_290_376_3,
        ],
    );
    let mf = &sim.mass_function;
    let n_of_z = |z: f64| {
        let panels = 8;
        let h = (p.log_m_max - p.log_m_min) / panels as f64;
        (0..panels)
            .map(|k| {
                let mid = p.log_m_min + (k as f64 + 0.5) * h;
                xg.iter()
                    .zip(&wg)
                    .map(|(x, w)| w * mf.dn_dlog10m(mid + 0.5 * h * x, z))
                    .sum::<f64>()
                    * 0.5
                    * h
            })
            .sum::<f64>()
    };
    let c = &sim.cosmo;
    let dv = |z: f64| {
        let e = 1e-4;
        (c.comoving_distance(z + e).powi(3) - c.comoving_distance(z - e).powi(3)) / (2.0 * e) / 3.0
    };
    let m = 400;
    let grid: Vec<f64> = (0..=m)
        .map(|i| p.z_min + (p.z_max - p.z_min) * i as f64 / m as f64)
        .collect();
    let dens: Vec<f64> = grid.iter().map(|&z| dv(z) * n_of_z(z)).collect();
    let vol: Vec<f64> = grid.iter().map(|&z| dv(z)).collect();
    let cdf_of = |d: &[f64]| {
        let mut out = vec![0.0; d.len()];
        for i in 1..d.len() {
            out[i] = out[i - 1] + 0.5 * (d[i - 1] + d[i]);
        }
        let t = out[d.len() - 1];
        out.iter().map(|v| v / t).collect::<Vec<f64>>()
    };
    let (cdf, cdf_vol) = (cdf_of(&dens), cdf_of(&vol));
    let ks = |cdf: &[f64]| {
        grid.iter()
            .zip(cdf)
            .map(|(&z, &f)| (zs.partition_point(|&s| s <= z) as f64 / n as f64 - f).abs())
            .fold(0.0f64, f64::max)
    };
    let median = |cdf: &[f64]| {
        let i = cdf.partition_point(|&f| f < 0.5);
        grid[i]
    };
    let sample_median = zs[zs.len() / 2];
    let (d, d_vol) = (ks(&cdf), ks(&cdf_vol));
    println!(
        "Tinker draw: KS {d:.4} against dN/dz, {d_vol:.4} against dV/dz; median z {sample_median:.3} (expected {:.3}, volume {:.3})",
        median(&cdf),
        median(&cdf_vol)
    );
    assert!(d < 0.015, "KS distance {d} to the mass-function dN/dz");
    assert!(
        d_vol > 0.1,
        "the draw also matches the volume alone ({d_vol})"
    );
    assert!(
        (sample_median - median(&cdf)).abs() < 0.02,
        "median {sample_median}"
    );
    assert!(
        (0.68..0.80).contains(&sample_median),
        "median {sample_median}"
    );
    // The conditional mass at fixed z still falls with mass (bottom-heavy).
    let masses: Vec<f64> = (0..5000).map(|i| sim.intrinsic(i).log_m).collect();
    let low = masses.iter().filter(|&&m| m < 14.0).count();
    let high = masses.iter().filter(|&&m| m > 14.8).count();
    assert!(low > 20 * high.max(1), "low {low}, high {high}");
}

/// `instrument.exposure_survey`: the exposures drawn follow the scanning law's closed form,
/// written here from the geometry (`sin beta` uniform on the sky, `t = N t_eq / cos beta`,
/// capped within the 0.515 deg field-of-view radius of the poles): KS distance below 0.02
/// for 20,000 clusters at eRASS1 and eRASS:4, the bounds exact, the clusters unmoved.
#[test]
fn survey_exposures_follow_the_scanning_law() {
    use trainer::sim::instrument::ScanningSurvey;
    let n = 20_000u64;
    for passes in [1u32, 4] {
        let t0 = 150.0 * f64::from(passes);
        let cap = t0 / 0.515f64.to_radians().sin();
        let cdf = |t: f64| {
            if t < t0 {
                0.0
            } else if t >= cap {
                1.0
            } else {
                (1.0 - (t0 / t).powi(2)).sqrt()
            }
        };
        let sim = simulator(3, |c| {
            c.instrument.exposure_survey = Some(ScanningSurvey::erass(passes));
        });
        let mut t: Vec<f64> = (0..n).map(|i| sim.exposure_of(i)).collect();
        t.sort_by(f64::total_cmp);
        assert!(t[0] >= t0 * (1.0 - 1e-12) && t[n as usize - 1] <= cap * (1.0 + 1e-12));
        let ks = t
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let f = cdf(v);
                ((i + 1) as f64 / n as f64 - f)
                    .abs()
                    .max((f - i as f64 / n as f64).abs())
            })
            .fold(0.0f64, f64::max);
        assert!(
            ks < 0.02,
            "eRASS:{passes}: KS distance to the scanning law {ks}"
        );
        // Median at beta = 30 deg: t0 / cos 30.
        let median = t[n as usize / 2];
        assert!(
            rel(median, t0 / 30f64.to_radians().cos()) < 0.02,
            "median {median}"
        );
        let (lo, hi) = sim.exposure_bounds();
        assert!(
            rel(lo, t0) < 1e-12 && rel(hi, cap) < 1e-12,
            "bounds {lo} {hi}"
        );
    }
}
