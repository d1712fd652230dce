//! Score a `trainer predict` catalogue of a rehearsal tile against the tile's truth, side by
//! side with the count-rate and oracle baselines on the same clusters.
//!
//! The baselines are fitted on a separate training set of the same physics (`TRAIN`, e.g.
//! `trainer simulate --n 4000 --seed 9`) and applied to every rehearsal cluster, so all
//! three estimators are scored on exactly the catalogue's clusters.
//!
//! ```sh
//! cargo run --release -p trainer --example rehearsal_score -- TRUTH.npz CATALOGUE.csv TRAIN.npz
//! ```

use anyhow::{Context, Result, ensure};
use trainer::baseline::{Baselines, CountRateParams};
use trainer::data::{Dataset, Splits, TRUTH_F32};
use trainer::stats::{Calibration, Summary};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    ensure!(
        args.len() == 3,
        "usage: rehearsal_score TRUTH.npz CATALOGUE.csv TRAIN.npz"
    );
    let truth = Dataset::load(args[0].as_ref())?;
    let mut all = Dataset::load(args[2].as_ref())?;
    let n_train = all.len();
    let n = truth.len();

    // The catalogue's log_mass and sigma, in row order (the rows are the dataset's).
    let text = std::fs::read_to_string(&args[1]).with_context(|| args[1].clone())?;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut rd = csv::Reader::from_reader(body.as_bytes());
    let head = rd.headers()?.clone();
    let col = |name: &str| {
        head.iter()
            .position(|h| h == name)
            .context(name.to_string())
    };
    let (im, is) = (col("log_mass")?, col("sigma")?);
    let mut mu = Vec::new();
    let mut sigma = Vec::new();
    for r in rd.records() {
        let r = r?;
        mu.push(r[im].parse::<f64>()?);
        sigma.push(r[is].parse::<f64>()?);
    }
    ensure!(mu.len() == n, "{} rows for {n} clusters", mu.len());

    // Training set + rehearsal clusters in one dataset: fit on the first, score the rest.
    all.images.extend_from_slice(&truth.images);
    all.redshift.extend_from_slice(&truth.redshift);
    let y = truth.log_mass.as_ref().context("truth has no log_mass")?;
    all.log_mass
        .as_mut()
        .context("TRAIN has no log_mass")?
        .extend(y);
    let (ta, tt) = (
        all.truth.as_mut().context("TRAIN has no truth")?,
        truth.truth.as_ref().context("TRUTH has no truth")?,
    );
    for k in TRUTH_F32 {
        let add = tt.f32_column(k).unwrap().clone();
        ta.f32_column_mut(k).unwrap().extend(add);
    }
    let test: Vec<usize> = (n_train..n_train + n).collect();
    let splits = Splits {
        train: (0..n_train).collect(),
        val: Vec::new(),
        test: test.clone(),
    };
    let b = Baselines::fit(&all, &splits, &CountRateParams::default())?;
    let detected = b.detected(&test);
    let res = |pred: &[f64], k: &[usize]| -> Vec<f64> {
        k.iter()
            .map(|&j| pred[j] - f64::from(y[j]))
            .collect::<Vec<_>>()
    };
    println!(
        "| estimator | clusters | scatter (dex) | bias (dex) | NMAD | > 0.3 dex | detected: N | scatter | bias |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let row = |name: &str, r_all: Vec<f64>, r_det: Vec<f64>| {
        let (a, d) = (Summary::of(&r_all), Summary::of(&r_det));
        println!(
            "| {name} | {} | {:.3} | {:+.3} | {:.3} | {:.1} % | {} | {:.3} | {:+.3} |",
            a.n,
            a.scatter,
            a.bias,
            a.nmad,
            100.0 * a.outlier_frac,
            d.n,
            d.scatter,
            d.bias
        );
    };
    let all_k: Vec<usize> = (0..n).collect();
    let det_k: Vec<usize> = detected.clone();
    row("CNN (catalogue)", res(&mu, &all_k), res(&mu, &det_k));
    for e in &b.estimates {
        let pred: Vec<f64> = e.predicted[n_train..].to_vec();
        row(&e.name, res(&pred, &all_k), res(&pred, &det_k));
    }
    let c = Calibration::of(&res(&mu, &all_k), &sigma);
    println!(
        "\nCNN sigma: {:.1} % within 1 sigma, {:.1} % within 2 sigma, std of residual/sigma {:.2}",
        100.0 * c.coverage_1sigma,
        100.0 * c.coverage_2sigma,
        c.std_standardized
    );
    Ok(())
}
