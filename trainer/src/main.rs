//! `trainer`: mock eROSITA-like cluster observations, baselines, (soon) CNN training.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Instant;
use trainer::baseline::{self, CountRateParams};
use trainer::data::{Dataset, Splits};
use trainer::generate::{generate_dataset, generate_npz};
use trainer::sim::instrument::Depth;
use trainer::sim::{MassPrior, SimConfig, Simulator};

#[derive(Parser)]
#[command(
    version,
    about = "Galaxy-cluster masses from eROSITA-like X-ray images: mocks, baselines, training"
)]
struct Cli {
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a mock dataset of eROSITA-like cluster observations (NPZ).
    Simulate(SimulateArgs),
    /// Fit and score the count-rate and oracle baselines on a dataset with truth.
    Baseline(BaselineArgs),
}

#[derive(Args)]
struct SimulateArgs {
    /// Number of clusters.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Random seed (same seed, same bytes, whatever --threads).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Survey depth preset.
    #[arg(long, value_enum)]
    depth: Option<Depth>,
    /// Output file (.npz), written atomically [default: data/mock-<depth>-s<seed>-n<n>.npz].
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Full configuration (TOML; any field omitted keeps its default). See --print-config.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Print the complete default configuration as TOML and exit.
    #[arg(long, exclusive = true)]
    print_config: bool,
    /// Lowest redshift.
    #[arg(long)]
    z_min: Option<f64>,
    /// Highest redshift.
    #[arg(long)]
    z_max: Option<f64>,
    /// Lowest log10 M500c / Msun.
    #[arg(long)]
    log_m_min: Option<f64>,
    /// Highest log10 M500c / Msun.
    #[arg(long)]
    log_m_max: Option<f64>,
    /// Mass prior: flat in log M (training) or the Tinker 2008 mass function.
    #[arg(long, value_enum)]
    mass_prior: Option<MassPrior>,
    /// Exposure in seconds (overrides the depth preset's).
    #[arg(long)]
    exposure: Option<f64>,
    /// Also draw a few clusters to this PNG.
    #[arg(long)]
    preview: Option<PathBuf>,
    /// Clusters drawn by --preview.
    #[arg(long, default_value_t = 6)]
    preview_count: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct BaselineArgs {
    /// Dataset (.npz, images.npy or a directory of .npy files) with truth columns.
    dataset: PathBuf,
    /// Seed of the train/validation/test split (the trainer uses the same split).
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Source aperture radius (proper kpc at the cluster's redshift) of the count-rate estimator.
    #[arg(long, default_value_t = CountRateParams::default().aperture_kpc)]
    aperture_kpc: f64,
    /// Net aperture counts that define the "detected" subset.
    #[arg(long, default_value_t = CountRateParams::default().detection_counts)]
    detection_counts: f64,
    /// Write the figures as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn simulate(a: SimulateArgs) -> Result<()> {
    if a.print_config {
        print!("{}", toml::to_string_pretty(&SimConfig::default())?);
        return Ok(());
    }
    let mut cfg = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str::<SimConfig>(&text).with_context(|| format!("config {}", p.display()))?
        }
        None => SimConfig::default(),
    };
    cfg.seed = a.seed;
    if let Some(d) = a.depth {
        cfg.depth = d;
    }
    let pop = &mut cfg.population;
    pop.z_min = a.z_min.unwrap_or(pop.z_min);
    pop.z_max = a.z_max.unwrap_or(pop.z_max);
    pop.log_m_min = a.log_m_min.unwrap_or(pop.log_m_min);
    pop.log_m_max = a.log_m_max.unwrap_or(pop.log_m_max);
    pop.mass_prior = a.mass_prior.unwrap_or(pop.mass_prior);
    if a.exposure.is_some() {
        cfg.instrument.exposure_s = a.exposure;
    }
    if a.n == 0 {
        bail!("--n must be at least 1");
    }
    Simulator::check_config(&cfg).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "data/mock-{}-s{}-n{}.npz",
            cfg.depth.name(),
            cfg.seed,
            a.n
        ))
    });
    if out.extension().is_none_or(|e| e != "npz") {
        bail!(
            "--out {}: the dataset is written as NPZ; use a .npz file name",
            out.display()
        );
    }
    let sim = Simulator::new(cfg);
    let t0 = Instant::now();
    generate_npz(&sim, a.n, &out, !a.quiet)?;
    let dt = t0.elapsed().as_secs_f64();
    eprintln!(
        "wrote {} clusters to {} in {:.1} s ({:.0} clusters/s; depth {}, exposure {:.0} s)",
        a.n,
        out.display(),
        dt,
        a.n as f64 / dt,
        sim.config.depth.name(),
        sim.instrument.exposure_s
    );
    if let Some(p) = a.preview {
        let k = a.preview_count.clamp(1, 12).min(a.n);
        let ds = generate_dataset(&sim, k);
        let idx: Vec<usize> = (0..k).collect();
        trainer::plot::preview(&ds, &idx, &p)?;
        eprintln!("preview of {k} clusters: {}", p.display());
    }
    Ok(())
}

/// Print to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn baseline_cmd(a: BaselineArgs) -> Result<()> {
    let ds = Dataset::load(&a.dataset)?;
    if ds.log_mass.is_none() {
        bail!(
            "dataset {}: baselines need `log_mass` labels",
            a.dataset.display()
        );
    }
    let splits = Splits::new(ds.len(), a.split_seed, Splits::DEFAULT);
    if splits.train.len() < 10 || splits.test.is_empty() {
        bail!(
            "dataset {}: {} clusters are too few for a train/test split",
            a.dataset.display(),
            ds.len()
        );
    }
    let p = CountRateParams {
        aperture_kpc: a.aperture_kpc,
        detection_counts: a.detection_counts,
        ..Default::default()
    };
    let mut estimates = vec![baseline::count_rate(&ds, &splits, &p)?];
    match baseline::oracle(&ds, &splits) {
        Ok(o) => estimates.push(o),
        Err(e) => eprintln!("note: no oracle row: {e}"),
    }
    estimates.push(baseline::constant(&ds, &splits)?);
    let score = |subset: &[usize]| {
        estimates
            .iter()
            .map(|e| baseline::accuracy(&e.name, &ds, &e.predicted, subset))
            .collect::<Result<Vec<_>>>()
    };
    let acc = score(&splits.test)?;
    let net = baseline::aperture_counts(&ds, &p);
    let detected: Vec<usize> = splits
        .test
        .iter()
        .copied()
        .filter(|&i| net[i] >= p.detection_counts)
        .collect();
    let acc_detected = score(&detected)?;
    let depth = ds
        .meta
        .as_ref()
        .and_then(|m| m.pointer("/config/depth"))
        .and_then(|v| v.as_str())
        .unwrap_or("unknown");
    let mut out = String::new();
    use std::fmt::Write as _;
    writeln!(
        out,
        "{}: {} clusters, depth {depth}; fitted on {} training clusters, scored on {} test clusters (dex)",
        a.dataset.display(),
        ds.len(),
        splits.train.len(),
        splits.test.len()
    )?;
    writeln!(out, "{}", baseline::table(&acc))?;
    writeln!(
        out,
        "detected subset: {} of {} test clusters with at least {} net 0.5-2 keV counts in the {} kpc aperture",
        detected.len(),
        splits.test.len(),
        p.detection_counts,
        p.aperture_kpc
    )?;
    writeln!(out, "{}", baseline::table(&acc_detected))?;
    for e in &estimates {
        let terms: Vec<String> = e
            .features
            .iter()
            .zip(&e.coefficients)
            .map(|(f, c)| format!("{c:+.4} x {f}"))
            .collect();
        writeln!(out, "{}: log M = {}", e.name, terms.join(" "))?;
    }
    emit(&out)?;
    if let Some(p) = a.json {
        let doc = serde_json::json!({ "dataset": a.dataset, "split_seed": a.split_seed, "test": acc, "test_detected": acc_detected, "count_rate": p, "fits": estimates });
        std::fs::write(&p, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(t) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t.max(1))
            .build_global()
            .context("configuring the thread pool")?;
    }
    match cli.command {
        Command::Simulate(a) => simulate(a),
        Command::Baseline(a) => baseline_cmd(a),
    }
}
