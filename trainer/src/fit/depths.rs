//! The depth table of `trainer eval --depths`: one run scored at every survey depth
//! (eRASS1, eRASS:4, eRASS:8, a pointed observation and eRASS1's scanning-law mix of
//! exposures), each on fresh mocks of the run's own population, side by side with the
//! count-rate and oracle baselines fitted at that depth and, where given, with a model
//! trained at that depth alone.

use super::commands::{eval_predictions, score_both};
use super::report::Report;
use crate::data::Dataset;
use crate::sim::instrument::{Depth, ScanningSurvey};
use crate::sim::{SimConfig, Simulator};
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// One depth of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DepthCase {
    /// One exposure for every cluster (a depth preset).
    Fixed(Depth),
    /// Exposures from the all-sky scanning law after this many passes.
    Survey(u32),
}

impl DepthCase {
    /// The depths of the table, shallow to deep, then eRASS1's mix.
    pub const ALL: [DepthCase; 5] = [
        DepthCase::Fixed(Depth::Erass1),
        DepthCase::Fixed(Depth::Erass4),
        DepthCase::Fixed(Depth::Erass8),
        DepthCase::Fixed(Depth::Pointed),
        DepthCase::Survey(1),
    ];

    /// Short label (`erass1`, ..., `survey-erass1`), as `--specific` takes it.
    pub fn label(self) -> String {
        match self {
            DepthCase::Fixed(d) => d.name().into(),
            DepthCase::Survey(p) => format!("survey-erass{p}"),
        }
    }

    /// What the exposure is, for the table.
    pub fn exposure(self) -> String {
        match self {
            DepthCase::Fixed(d) => format!("{:.0} s", d.exposure_s()),
            DepthCase::Survey(p) => {
                let (lo, hi) = ScanningSurvey::erass(p).bounds();
                format!("{lo:.0}-{hi:.0} s (scanning law)")
            }
        }
    }

    /// `base` with this depth's exposure and `seed`.
    pub fn config(self, base: &SimConfig, seed: u64) -> SimConfig {
        let mut c = base.clone();
        c.seed = seed;
        c.instrument.exposure_s = None;
        c.instrument.exposure_range_s = None;
        c.instrument.exposure_survey = None;
        match self {
            DepthCase::Fixed(d) => c.depth = d,
            DepthCase::Survey(p) => {
                c.depth = Depth::Erass1;
                c.instrument.exposure_survey = Some(ScanningSurvey::erass(p));
            }
        }
        c
    }
}

/// The simulation configuration recorded in a dataset (the defaults for keys it lacks).
pub fn recorded_config(ds: &Dataset, path: &Path) -> Result<SimConfig> {
    let Some(c) = ds.meta.as_ref().and_then(|m| m.get("config")) else {
        bail!(
            "{}: records no simulation configuration, so the depth table cannot mock its population at other depths",
            path.display()
        );
    };
    serde_json::from_value(c.clone())
        .with_context(|| format!("{}: reading its simulation configuration", path.display()))
}

/// The dataset of `case` (simulated into `dir` on first use; the same seed gives the
/// same file).
pub fn dataset(
    case: DepthCase,
    base: &SimConfig,
    seed: u64,
    n: usize,
    dir: &Path,
    progress: bool,
) -> Result<PathBuf> {
    let path = dir.join(format!("mock-{}-s{seed}-n{n}.npz", case.label()));
    if !path.exists() {
        let cfg = case.config(base, seed);
        Simulator::check_config(&cfg).map_err(|e| anyhow::anyhow!("{}: {e}", case.label()))?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!(
            "simulating {} ({n} clusters) into {}",
            case.label(),
            path.display()
        );
        crate::generate::generate_npz_with(&Simulator::new(cfg), n, &path, progress, None)?;
    }
    Ok(path)
}

/// One model's scores at one depth.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scores {
    /// Scatter of the residuals, dex.
    pub scatter: f64,
    /// Mean residual, dex.
    pub bias: f64,
    /// Largest |mean residual| over the mass bins above 10^14.4, dex.
    pub worst_bias_above_14_4: f64,
    /// 1-sigma coverage, fraction.
    pub coverage: f64,
}

impl Scores {
    fn of(r: &Report) -> Self {
        let acc = &r.accuracy[0];
        let worst = acc
            .by_mass
            .edges
            .windows(2)
            .zip(&acc.by_mass.bins)
            .filter(|(w, b)| w[0] >= 14.4 - 1e-9 && b.n > 0)
            .map(|(_, b)| b.bias.abs())
            .fold(0.0f64, f64::max);
        Self {
            scatter: acc.overall.scatter,
            bias: acc.overall.bias,
            worst_bias_above_14_4: worst,
            coverage: r.calibration.coverage_1sigma,
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Depth label.
    pub depth: String,
    /// Exposure.
    pub exposure: String,
    /// The dataset scored (its test split).
    pub dataset: PathBuf,
    /// Test clusters.
    pub n_test: usize,
    /// The run scored.
    pub model: Scores,
    /// The model trained at this depth alone, if given.
    pub specific: Option<Scores>,
    /// Count-rate baseline scatter, dex.
    pub count_rate: f64,
    /// Oracle (true L and T) scatter, dex.
    pub oracle: f64,
}

/// Score `run_dir` (and each depth's entry of `specific`) at every depth.
pub fn table(
    run_dir: &Path,
    specific: &[(String, PathBuf)],
    n: usize,
    seed: u64,
    data_dir: &Path,
    progress: bool,
) -> Result<Vec<Row>> {
    let labels: Vec<String> = DepthCase::ALL.iter().map(|c| c.label()).collect();
    for (l, _) in specific {
        if !labels.contains(l) {
            bail!(
                "--specific {l}=...: unknown depth; known: {}",
                labels.join(", ")
            );
        }
    }
    let (_, _, info) = super::commands::open_run(run_dir)?;
    let own = Dataset::load(&info.dataset).with_context(|| {
        format!(
            "the dataset {} of run {}",
            info.dataset.display(),
            run_dir.display()
        )
    })?;
    let base = recorded_config(&own, &info.dataset)?;
    let mut rows = Vec::new();
    for case in DepthCase::ALL {
        let path = dataset(case, &base, seed, n, data_dir, progress)?;
        let p = eval_predictions(run_dir, Some(&path))?;
        let (all, _) = score_both(&p.name, &p.dataset, &p.splits, &p.mu, &p.sigma)?;
        let spec = match specific.iter().find(|(l, _)| *l == case.label()) {
            Some((_, r)) => {
                let q = eval_predictions(r, Some(&path))?;
                if q.splits.test != p.splits.test {
                    bail!(
                        "{}: split with another seed than {}: the two would be scored on different clusters",
                        r.display(),
                        run_dir.display()
                    );
                }
                let (a, _) = score_both(&q.name, &q.dataset, &q.splits, &q.mu, &q.sigma)?;
                Some(Scores::of(&a))
            }
            None => None,
        };
        let scatter_of = |prefix: &str| {
            all.accuracy
                .iter()
                .find(|a| a.name.starts_with(prefix))
                .map_or(f64::NAN, |a| a.overall.scatter)
        };
        rows.push(Row {
            depth: case.label(),
            exposure: case.exposure(),
            dataset: path,
            n_test: all.n,
            model: Scores::of(&all),
            specific: spec,
            count_rate: scatter_of("count rate"),
            oracle: scatter_of("oracle (true"),
        });
    }
    Ok(rows)
}

/// The table as Markdown, with the targets of issue 14 checked per row.
pub fn render(run: &Path, rows: &[Row]) -> String {
    let mut s = format!(
        "{} at every depth (test splits of fresh mocks; dex):\n\n| depth | exposure | test clusters | scatter | bias | worst bin bias (M > 10^14.4) | 1-sigma coverage | depth-specific scatter | vs depth-specific | count rate | oracle |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        run.display()
    );
    for r in rows {
        let m = &r.model;
        let (spec, ratio) = match &r.specific {
            Some(sp) => (
                format!(
                    "{:.4} (bias {:+.4}, cov. {:.1} %)",
                    sp.scatter,
                    sp.bias,
                    100.0 * sp.coverage
                ),
                format!("{:+.1} %", 100.0 * (m.scatter / sp.scatter - 1.0)),
            ),
            None => ("-".into(), "-".into()),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:+.4} | {:.4} | {:.1} % | {} | {} | {:.4} | {:.4} |\n",
            r.depth,
            r.exposure,
            r.n_test,
            m.scatter,
            m.bias,
            m.worst_bias_above_14_4,
            100.0 * m.coverage,
            spec,
            ratio,
            r.count_rate,
            r.oracle
        ));
    }
    let mut missed = Vec::new();
    for r in rows {
        let m = &r.model;
        if m.bias.abs() > 0.01 {
            missed.push(format!("{}: |bias| {:.4} > 0.01", r.depth, m.bias.abs()));
        }
        if m.worst_bias_above_14_4 > 0.02 {
            missed.push(format!(
                "{}: a mass bin above 10^14.4 has |bias| {:.4} > 0.02",
                r.depth, m.worst_bias_above_14_4
            ));
        }
        if !(0.63..=0.73).contains(&m.coverage) {
            missed.push(format!(
                "{}: 1-sigma coverage {:.1} % outside 63-73 %",
                r.depth,
                100.0 * m.coverage
            ));
        }
        if let Some(sp) = &r.specific
            && m.scatter > 1.03 * sp.scatter
        {
            missed.push(format!(
                "{}: scatter {:.4} is {:.1} % above the depth-specific model's {:.4} (target: within 3 %)",
                r.depth,
                m.scatter,
                100.0 * (m.scatter / sp.scatter - 1.0),
                sp.scatter
            ));
        }
    }
    if missed.is_empty() {
        s.push_str("\nEvery target holds (|bias| <= 0.01, <= 0.02 per mass bin above 10^14.4, coverage 63-73 %, scatter within 3 % of the depth-specific models given).\n");
    } else {
        s.push_str("\nTargets missed:\n");
        for m in missed {
            s.push_str(&format!("- {m}\n"));
        }
    }
    s
}

/// `depths.png`: scatter at each depth of the run, the depth-specific models (where
/// given) and the two baselines, one line each.
pub fn plot(path: &Path, rows: &[Row]) -> Result<()> {
    crate::fsutil::atomically(path, |p| draw(p, rows))
}

fn draw(path: &Path, rows: &[Row]) -> Result<()> {
    use plotters::prelude::*;
    crate::plot::init_fonts();
    let e = |e: &dyn std::fmt::Display| anyhow::anyhow!("plotting the depth table: {e}");
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let series: Vec<(&str, RGBColor, Vec<Option<f64>>)> = vec![
        (
            "this model",
            RGBColor(31, 119, 180),
            rows.iter().map(|r| Some(r.model.scatter)).collect(),
        ),
        (
            "trained at that depth alone",
            RGBColor(255, 127, 14),
            rows.iter()
                .map(|r| r.specific.as_ref().map(|s| s.scatter))
                .collect(),
        ),
        (
            "count rate",
            RGBColor(127, 127, 127),
            rows.iter().map(|r| Some(r.count_rate)).collect(),
        ),
        (
            "oracle (true L, T, z)",
            RGBColor(44, 160, 44),
            rows.iter().map(|r| Some(r.oracle)).collect(),
        ),
    ];
    let hi = series
        .iter()
        .flat_map(|s| s.2.iter().flatten())
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let labels: Vec<String> = rows.iter().map(|r| r.depth.clone()).collect();
    let mut c = ChartBuilder::on(&root)
        .caption("test scatter at each survey depth", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..(rows.len() as f64 - 0.5), 0.0..(1.1 * hi).max(0.01))
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .x_labels(rows.len())
        .x_label_formatter(&|v| {
            let k = v.round();
            if (v - k).abs() < 1e-6 && k >= 0.0 {
                labels.get(k as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("test scatter (dex)")
        .draw()
        .map_err(|x| e(&x))?;
    for (name, color, v) in series {
        let pts: Vec<(f64, f64)> = v
            .iter()
            .enumerate()
            .filter_map(|(k, s)| s.filter(|s| s.is_finite()).map(|s| (k as f64, s)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(|x| e(&x))?;
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}
