//! Scoring a trained network next to the baselines on the same clusters, and the
//! run's figures: loss curves, predicted vs true mass, residuals against mass and
//! redshift, and the distribution of standardised residuals.

use super::run::EpochRecord;
use crate::baseline::{self, Accuracy};
use crate::data::Dataset;
use crate::plot::init_fonts;
use crate::stats::Calibration;
use anyhow::{Result, anyhow};
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

/// The CNN's scores and the baselines' on one subset.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Number of clusters scored.
    pub n: usize,
    /// CNN first, then count rate, oracle and oracle + L_ce (if truth), constant.
    pub accuracy: Vec<Accuracy>,
    /// The CNN's uncertainty calibration.
    pub calibration: Calibration,
    /// Calibration per mass bin.
    pub calibration_by_mass: Vec<Calibration>,
}

/// Score `mu`, `sigma` (indexed like `subset`) next to the fitted baselines.
pub fn score(
    name: &str,
    ds: &Dataset,
    baselines: &baseline::Baselines,
    subset: &[usize],
    mu: &[f64],
    sigma: &[f64],
) -> Result<Report> {
    let mut full = vec![f64::NAN; ds.len()];
    for (&i, &m) in subset.iter().zip(mu) {
        full[i] = m;
    }
    let mut accuracy = vec![baseline::accuracy(name, ds, &full, subset)?];
    for e in &baselines.estimates {
        accuracy.push(baseline::accuracy(&e.name, ds, &e.predicted, subset)?);
    }
    let y = ds
        .log_mass
        .as_ref()
        .ok_or_else(|| anyhow!("scoring needs labels"))?;
    let res: Vec<f64> = subset
        .iter()
        .zip(mu)
        .map(|(&i, m)| m - f64::from(y[i]))
        .collect();
    let calibration = Calibration::of(&res, sigma);
    let calibration_by_mass = baseline::MASS_EDGES
        .windows(2)
        .map(|w| {
            let (r, s): (Vec<f64>, Vec<f64>) = subset
                .iter()
                .zip(res.iter().zip(sigma))
                .filter(|(i, _)| (w[0]..w[1]).contains(&f64::from(y[**i])))
                .map(|(_, (r, s))| (*r, *s))
                .unzip();
            Calibration::of(&r, &s)
        })
        .collect();
    Ok(Report {
        n: subset.len(),
        accuracy,
        calibration,
        calibration_by_mass,
    })
}

/// Text summary: the side-by-side table and the calibration line.
pub fn render(r: &Report) -> String {
    let c = &r.calibration;
    let cnn = &r.accuracy[0].overall;
    format!(
        "{}\n{}: scatter {:.4} dex, bias {:+.4}, NMAD {:.4}, outliers (>{} dex) {:.2} %\nuncertainty: NLL {:.3}, 1-sigma coverage {:.1} % (68.3 ideal), 2-sigma {:.1} % (95.4), std of standardised residuals {:.3}\n",
        baseline::table(&r.accuracy),
        r.accuracy[0].name,
        cnn.scatter,
        cnn.bias,
        cnn.nmad,
        crate::stats::OUTLIER_DEX,
        100.0 * cnn.outlier_frac,
        c.nll,
        100.0 * c.coverage_1sigma,
        100.0 * c.coverage_2sigma,
        c.std_standardized
    )
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e}")
}

/// Training and validation loss per epoch.
pub fn plot_history(history: &[EpochRecord], out: &Path) -> Result<()> {
    crate::fsutil::atomically(out, |tmp| draw_history(history, tmp))
}

fn draw_history(history: &[EpochRecord], out: &Path) -> Result<()> {
    init_fonts();
    let root = BitMapBackend::new(out, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (lo, hi) = history
        .iter()
        .flat_map(|h| [h.train_loss, h.val_loss])
        .fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    let pad = 0.05 * (hi - lo).max(1e-6);
    let mut c = ChartBuilder::on(&root)
        .caption("loss per epoch", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..history.len() as f64 + 0.5, (lo - pad)..(hi + pad))
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .draw()
        .map_err(err)?;
    for (label, color, f) in [
        (
            "training",
            BLUE,
            (|h: &EpochRecord| h.train_loss) as fn(&EpochRecord) -> f64,
        ),
        ("validation", RED, |h| h.val_loss),
    ] {
        c.draw_series(LineSeries::new(
            history
                .iter()
                .enumerate()
                .map(|(i, h)| (i as f64 + 1.0, f(h))),
            color.stroke_width(2),
        ))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Four panels: predicted vs true, residual vs mass, residual vs redshift, standardised residuals.
pub fn plot_predictions(y: &[f64], z: &[f64], mu: &[f64], sigma: &[f64], out: &Path) -> Result<()> {
    crate::fsutil::atomically(out, |tmp| draw_predictions(y, z, mu, sigma, tmp))
}

fn draw_predictions(y: &[f64], z: &[f64], mu: &[f64], sigma: &[f64], out: &Path) -> Result<()> {
    init_fonts();
    let root = BitMapBackend::new(out, (1400, 1100)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((2, 2));
    let point = |x: f64, y: f64| Circle::new((x, y), 2, RGBColor(40, 80, 160).mix(0.35).filled());
    // Predicted vs true.
    let (lo, hi) = (13.3, 15.5);
    let mut c = ChartBuilder::on(&panels[0])
        .caption("predicted vs true log10 M500", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi, lo..hi)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("true")
        .y_desc("predicted")
        .draw()
        .map_err(err)?;
    c.draw_series(y.iter().zip(mu).map(|(a, b)| point(*a, *b)))
        .map_err(err)?;
    c.draw_series(LineSeries::new([(lo, lo), (hi, hi)], RED.stroke_width(2)))
        .map_err(err)?;
    // Residuals vs mass and vs redshift.
    let res: Vec<f64> = mu.iter().zip(y).map(|(m, t)| m - t).collect();
    for (panel, xs, label, range) in [
        (&panels[1], y, "true log10 M500", (13.4, 15.4)),
        (&panels[2], z, "redshift", (0.0, 1.35)),
    ] {
        let mut c = ChartBuilder::on(panel)
            .caption(format!("residual vs {label}"), ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(range.0..range.1, -0.8..0.8)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc(label)
            .y_desc("predicted - true (dex)")
            .draw()
            .map_err(err)?;
        c.draw_series(xs.iter().zip(&res).map(|(a, b)| point(*a, *b)))
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            [(range.0, 0.0), (range.1, 0.0)],
            RED.stroke_width(2),
        ))
        .map_err(err)?;
    }
    // Standardised residuals against N(0, 1).
    let zs: Vec<f64> = res.iter().zip(sigma).map(|(r, s)| r / s).collect();
    let (bins, w) = (40usize, 0.2);
    let mut counts = vec![0usize; bins];
    for v in &zs {
        let k = ((v + 4.0) / w).floor();
        if (0.0..bins as f64).contains(&k) {
            counts[k as usize] += 1;
        }
    }
    let n = zs.len().max(1) as f64;
    let density: Vec<f64> = counts.iter().map(|&c| c as f64 / (n * w)).collect();
    let top = density.iter().cloned().fold(0.45, f64::max) * 1.1;
    let mut c = ChartBuilder::on(&panels[3])
        .caption(
            "standardised residuals (predicted - true) / sigma",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-4.0..4.0, 0.0..top)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("standardised residual")
        .y_desc("density")
        .draw()
        .map_err(err)?;
    c.draw_series(density.iter().enumerate().map(|(k, d)| {
        let x0 = -4.0 + k as f64 * w;
        Rectangle::new(
            [(x0, 0.0), (x0 + w, *d)],
            RGBColor(40, 80, 160).mix(0.5).filled(),
        )
    }))
    .map_err(err)?;
    let gauss = (0..=200).map(|i| {
        let x = -4.0 + 8.0 * i as f64 / 200.0;
        (
            x,
            (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt(),
        )
    });
    c.draw_series(LineSeries::new(gauss, RED.stroke_width(2)))
        .map_err(err)?;
    root.present().map_err(err)
}
