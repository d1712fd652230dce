//! The two yardsticks every accuracy figure stands next to (docs/baselines.md):
//!
//! 1. **Count rate**: background-subtracted 0.5-2 keV counts in an aperture of
//!    fixed physical radius (400 kpc at the known redshift) around the image
//!    centre, divided by the exposure, plus the redshift, regressed onto log mass
//!    on the training split (a cubic in log rate, so non-detections fall back to
//!    the prior instead of being extrapolated along a line). Background comes from
//!    the image's own outskirts, as an observer would measure it.
//! 2. **Oracle floor**: the same regression on the simulator's true, noise-free
//!    luminosity, temperature and E(z). An image-based estimator that beats it
//!    has leaked truth; one that does not beat the count rate learned nothing.

use crate::data::{Dataset, Splits};
use crate::sim::cosmology::{Cosmology, CosmologyParams};
use crate::sim::{NPIX, spectrum::NBANDS};
use crate::stats::{Binned, Summary, least_squares, predict};
use anyhow::{Context, Result, bail};
use serde::Serialize;

/// Aperture photometry settings of the count-rate estimator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CountRateParams {
    /// Source aperture radius in proper kpc at the cluster's redshift (400 kpc was the best
    /// of 250/400/600 on eRASS:8 mocks: larger apertures add background, smaller lose flux).
    pub aperture_kpc: f64,
    /// Aperture limits in arcmin (keeps it on the detector and inside the background annulus).
    pub aperture_limits_arcmin: (f64, f64),
    /// Background from pixels farther than this from the centre, arcmin.
    pub background_inner_arcmin: f64,
    /// Counts added before the logarithm so non-detections (net <= 0) stay finite.
    pub count_offset: f64,
    /// Net aperture counts that define the "detected" subset of the tables.
    pub detection_counts: f64,
}

impl Default for CountRateParams {
    fn default() -> Self {
        Self {
            aperture_kpc: 400.0,
            aperture_limits_arcmin: (0.5, 3.0),
            background_inner_arcmin: 3.3,
            count_offset: 3.0,
            detection_counts: 50.0,
        }
    }
}

/// Net aperture counts in `bands` of one image within `aperture_arcmin` of the centre
/// (may be negative), background-subtracted from pixels beyond `background_inner_arcmin`.
pub fn net_aperture_counts(
    image: &[u16],
    pixel_arcsec: f64,
    bands: &[usize],
    aperture_arcmin: f64,
    background_inner_arcmin: f64,
) -> f64 {
    let c = NPIX as f64 / 2.0;
    let (mut src, mut n_src, mut bkg, mut n_bkg) = (0.0, 0usize, 0.0, 0usize);
    for y in 0..NPIX {
        for x in 0..NPIX {
            let r = ((x as f64 + 0.5 - c).hypot(y as f64 + 0.5 - c)) * pixel_arcsec / 60.0;
            if r >= aperture_arcmin && r < background_inner_arcmin {
                continue;
            }
            let counts: f64 = bands
                .iter()
                .map(|b| f64::from(image[b * NPIX * NPIX + y * NPIX + x]))
                .sum();
            if r < aperture_arcmin {
                src += counts;
                n_src += 1;
            } else {
                bkg += counts;
                n_bkg += 1;
            }
        }
    }
    src - bkg * n_src as f64 / n_bkg.max(1) as f64
}

/// Predictions of one estimator on every cluster, and its fit.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Name.
    pub name: String,
    /// Linear coefficients on its features.
    pub coefficients: Vec<f64>,
    /// Feature names, in coefficient order.
    pub features: Vec<&'static str>,
    /// Predicted log mass for every cluster in the dataset.
    #[serde(skip)]
    pub predicted: Vec<f64>,
}

fn fit(
    name: &str,
    features: Vec<&'static str>,
    rows: Vec<Vec<f64>>,
    y: &[f64],
    train: &[usize],
) -> Result<Estimate> {
    let tr_rows: Vec<Vec<f64>> = train.iter().map(|&i| rows[i].clone()).collect();
    let tr_y: Vec<f64> = train.iter().map(|&i| y[i]).collect();
    let coefficients = least_squares(&tr_rows, &tr_y)
        .with_context(|| format!("{name}: the training features are degenerate"))?;
    let predicted = rows.iter().map(|r| predict(&coefficients, r)).collect();
    Ok(Estimate {
        name: name.into(),
        coefficients,
        features,
        predicted,
    })
}

/// Band indices lying within 0.5-2 keV, from the dataset's metadata (default edges otherwise).
pub fn soft_bands(ds: &Dataset) -> Vec<usize> {
    let edges = ds.band_edges_kev();
    (0..NBANDS)
        .filter(|&b| {
            // The device's detection check sums the same bands (runtime::detect).
            let [lo, hi] = runtime::detect::SOFT_BAND_KEV.map(f64::from);
            edges[b] >= lo - 1e-9 && edges[b + 1] <= hi + 1e-9
        })
        .collect()
}

fn cosmology_of(ds: &Dataset) -> Cosmology {
    let p: CosmologyParams = ds
        .meta
        .as_ref()
        .and_then(|m| m.pointer("/config/cosmology"))
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    Cosmology::new(p)
}

/// Net 0.5-2 keV counts of every cluster in the count-rate aperture.
pub fn aperture_counts(ds: &Dataset, p: &CountRateParams) -> Vec<f64> {
    let cosmo = cosmology_of(ds);
    let bands = soft_bands(ds);
    let pix = ds.pixel_arcsec();
    (0..ds.len())
        .map(|i| {
            let z = f64::from(ds.redshift[i]);
            let ap = cosmo
                .angle_arcmin(p.aperture_kpc / 1000.0, z)
                .clamp(p.aperture_limits_arcmin.0, p.aperture_limits_arcmin.1);
            net_aperture_counts(ds.image(i), pix, &bands, ap, p.background_inner_arcmin)
        })
        .collect()
}

/// Fit and apply the count-rate estimator.
pub fn count_rate(ds: &Dataset, splits: &Splits, p: &CountRateParams) -> Result<Estimate> {
    let y = labels(ds)?;
    let cosmo = cosmology_of(ds);
    let net = aperture_counts(ds, p);
    let rows = (0..ds.len())
        .map(|i| {
            let z = f64::from(ds.redshift[i]);
            let t = ds.exposure(i).unwrap_or(1.0);
            let x = ((net[i].max(0.0) + p.count_offset) / t).log10();
            vec![
                1.0,
                x,
                x * x,
                x * x * x,
                cosmo.luminosity_distance(z).log10(),
                cosmo.e(z).log10(),
                z,
                z * z,
                x * z,
            ]
        })
        .collect();
    fit(
        "count rate",
        vec![
            "1",
            "x = log10 rate",
            "x^2",
            "x^3",
            "log10 D_L",
            "log10 E(z)",
            "z",
            "z^2",
            "x z",
        ],
        rows,
        &y,
        &splits.train,
    )
}

/// Fit a linear oracle on true columns (log10 of each, plus log10 E(z)).
fn truth_oracle(
    ds: &Dataset,
    splits: &Splits,
    name: &str,
    columns: &[(&'static str, &str)],
) -> Result<Estimate> {
    let y = labels(ds)?;
    let names: Vec<&str> = columns.iter().map(|c| c.1).collect();
    let Some(t) = &ds.truth else {
        bail!(
            "{name} needs the simulator's truth columns {}",
            names.join(", ")
        )
    };
    let cols = columns
        .iter()
        .map(|(_, c)| t.f32_column(c).filter(|v| !v.is_empty()))
        .collect::<Option<Vec<_>>>()
        .with_context(|| format!("{name} needs the truth columns {}", names.join(", ")))?;
    let cosmo = cosmology_of(ds);
    let rows = (0..ds.len())
        .map(|i| {
            let mut r = vec![1.0];
            // Luminosities are stored as log10 already; temperatures in keV.
            r.extend(columns.iter().zip(&cols).map(|((_, c), v)| {
                let x = f64::from(v[i]);
                if c.starts_with("log_") { x } else { x.log10() }
            }));
            r.push(cosmo.e(f64::from(ds.redshift[i])).log10());
            r
        })
        .collect();
    let mut features = vec!["1"];
    features.extend(columns.iter().map(|c| c.0));
    features.push("log10 E(z)");
    fit(name, features, rows, &y, &splits.train)
}

/// Fit and apply the oracle (true L, T, z).
pub fn oracle(ds: &Dataset, splits: &Splits) -> Result<Estimate> {
    truth_oracle(
        ds,
        splits,
        "oracle (true L, T, z)",
        &[("log10 L", "log_lum"), ("log10 T", "temperature_kev")],
    )
}

/// The oracle given also the true core-excised luminosity: the floor for an estimator
/// that can read structure from the image (the core-excised luminosity is the tighter
/// mass proxy, Pratt et al. 2009), so an image-based CNN may approach it at high counts.
pub fn oracle_core_excised(ds: &Dataset, splits: &Splits) -> Result<Estimate> {
    truth_oracle(
        ds,
        splits,
        "oracle + L_ce",
        &[
            ("log10 L", "log_lum"),
            ("log10 L_ce", "log_lum_ce"),
            ("log10 T", "temperature_kev"),
        ],
    )
}

/// Predict the training mean for everyone.
pub fn constant(ds: &Dataset, splits: &Splits) -> Result<Estimate> {
    let y = labels(ds)?;
    let mean = splits.train.iter().map(|&i| y[i]).sum::<f64>() / splits.train.len().max(1) as f64;
    Ok(Estimate {
        name: "constant (training mean)".into(),
        coefficients: vec![mean],
        features: vec!["1"],
        predicted: vec![mean; ds.len()],
    })
}

fn labels(ds: &Dataset) -> Result<Vec<f64>> {
    let m = ds
        .log_mass
        .as_ref()
        .context("the dataset has no `log_mass` labels")?;
    Ok(m.iter().map(|&v| f64::from(v)).collect())
}

/// Every yardstick fitted once on the training split: count rate, oracle and oracle +
/// L_ce (when the dataset has the truth columns), constant; and the aperture counts
/// that define the "detected" subset.
pub struct Baselines {
    /// The estimators, in table order.
    pub estimates: Vec<Estimate>,
    /// Net 0.5-2 keV aperture counts of every cluster.
    pub net_counts: Vec<f64>,
    /// Photometry settings used.
    pub params: CountRateParams,
}

impl Baselines {
    /// Fit them all.
    pub fn fit(ds: &Dataset, splits: &Splits, p: &CountRateParams) -> Result<Self> {
        let mut estimates = vec![count_rate(ds, splits, p)?];
        estimates.extend(oracle(ds, splits).ok());
        estimates.extend(oracle_core_excised(ds, splits).ok());
        estimates.push(constant(ds, splits)?);
        Ok(Self {
            estimates,
            net_counts: aperture_counts(ds, p),
            params: *p,
        })
    }

    /// Positions (into `subset`) of the clusters with at least `detection_counts` net counts.
    pub fn detected(&self, subset: &[usize]) -> Vec<usize> {
        (0..subset.len())
            .filter(|&k| self.net_counts[subset[k]] >= self.params.detection_counts)
            .collect()
    }

    /// Accuracy of every estimator on `subset`.
    pub fn accuracy(&self, ds: &Dataset, subset: &[usize]) -> Result<Vec<Accuracy>> {
        self.estimates
            .iter()
            .map(|e| accuracy(&e.name, ds, &e.predicted, subset))
            .collect()
    }
}

/// Accuracy of one estimator on a subset: overall and per mass and redshift bin.
#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    /// Estimator name.
    pub name: String,
    /// Overall.
    pub overall: Summary,
    /// Per log-mass bin.
    pub by_mass: Binned,
    /// Per redshift bin.
    pub by_redshift: Binned,
}

/// Log-mass bin edges of every accuracy table.
pub const MASS_EDGES: [f64; 7] = [13.5, 13.8, 14.1, 14.4, 14.7, 15.0, 15.3];
/// Redshift bin edges of every accuracy table.
pub const Z_EDGES: [f64; 7] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.4];

/// Score predictions on the clusters `subset`.
pub fn accuracy(name: &str, ds: &Dataset, predicted: &[f64], subset: &[usize]) -> Result<Accuracy> {
    let y = labels(ds)?;
    let res: Vec<f64> = subset.iter().map(|&i| predicted[i] - y[i]).collect();
    let m: Vec<f64> = subset.iter().map(|&i| y[i]).collect();
    let z: Vec<f64> = subset.iter().map(|&i| f64::from(ds.redshift[i])).collect();
    Ok(Accuracy {
        name: name.into(),
        overall: Summary::of(&res),
        by_mass: Binned::new(&MASS_EDGES, &m, &res),
        by_redshift: Binned::new(&Z_EDGES, &z, &res),
    })
}

/// Render accuracies side by side: one row per bin, scatter and bias per estimator.
pub fn table(rows: &[Accuracy]) -> String {
    use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    let mut header = vec!["subset".to_string(), "N".to_string()];
    for a in rows {
        header.push(format!("{}\nscatter", a.name));
        header.push("bias".into());
    }
    t.set_header(header);
    let fmt = |s: &Summary| {
        if s.n == 0 {
            ("-".to_string(), "-".to_string())
        } else {
            (format!("{:.3}", s.scatter), format!("{:+.3}", s.bias))
        }
    };
    let mut add = |label: String, pick: &dyn Fn(&Accuracy) -> Summary| {
        let n = pick(&rows[0]).n;
        let mut r = vec![label, n.to_string()];
        for a in rows {
            let (s, b) = fmt(&pick(a));
            r.push(s);
            r.push(b);
        }
        t.add_row(r);
    };
    add("all".into(), &|a| a.overall);
    for (k, w) in MASS_EDGES.windows(2).enumerate() {
        add(
            format!("log M {:.1}-{:.1}", w[0], w[1]),
            &move |a: &Accuracy| a.by_mass.bins[k],
        );
    }
    for (k, w) in Z_EDGES.windows(2).enumerate() {
        add(
            format!("z {:.1}-{:.1}", w[0], w[1]),
            &move |a: &Accuracy| a.by_redshift.bins[k],
        );
    }
    t.to_string()
}
