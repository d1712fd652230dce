//! `trainer`: mock eROSITA-like cluster observations, baselines, (soon) CNN training.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::Instant;
use trainer::baseline::{self, CountRateParams};
use trainer::data::{Dataset, Splits};
use trainer::fit::commands::{self, DEFAULT_DATASET, fresh_run_dir};
use trainer::fit::config::{Preset, RunConfig};
use trainer::fit::{params, report};
use trainer::generate::{generate_dataset, generate_npz_with};
use trainer::sim::instrument::Depth;
use trainer::sim::{MassPrior, SimConfig, Simulator};
use trainer::survey::tile::TileParams;

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
    /// Train a CNN (no arguments: the main job, `edge` on the default eRASS:8 mocks).
    Fit(FitArgs),
    /// Score a trained run on a dataset's test split, next to the baselines.
    Eval(EvalArgs),
    /// Hyperparameter study: train over a list or range of one or two parameters.
    Scan(ScanArgs),
    /// Cut the model's count cubes out of survey event lists for a cluster catalogue.
    Cutout(CutoutArgs),
    /// Catalogue of log10 M500, sigma and quality flags for every cluster of a dataset.
    #[command(long_about = PREDICT_ABOUT)]
    Predict(PredictArgs),
    /// What the network looks at: occlusion, saliency, integrated gradients, filters, feature maps, radial profile.
    #[command(long_about = EXPLAIN_ABOUT)]
    Explain(ExplainArgs),
}

const EXPLAIN_ABOUT: &str = "\
What a trained run's network looks at, through burn's autodiff on its f32 weights.

For each chosen cluster, cluster-<id>.png: the band-summed counts; the occlusion-sensitivity maps
(change in predicted log mass, and in sigma, when a --patch-sized window centred on each pixel is
replaced by the expected background, not by zeros); the gradient saliency |d log M / d x| (x the
preprocessed input); the integrated gradients from the background-only image (they sum to the
prediction minus the prediction on that image); and the integrated gradients per band.
Also filters-conv0.png (the first convolution's filters) and features-<id>-conv<k>.png (every
convolution block's feature maps for the first chosen cluster), radial.png and a table: the share of
|integrated gradients| against radius in r500 (pixels without truth columns) for --population
test-split clusters, split by cool core / disturbed / relaxed, central AGN and mass, next to the share of
net counts; explain.json holds every number.

The expected background is the simulator's level recorded in the dataset (scaled to each cluster's
exposure), else the mean counts of the dataset's outskirts.";

#[derive(Args)]
struct ExplainArgs {
    /// Run directory (a finished `trainer fit`).
    run_dir: PathBuf,
    /// Dataset whose clusters to explain (NPZ or .npy directory).
    data: PathBuf,
    /// Comma-separated cluster ids (the dataset's `id`, else row numbers).
    #[arg(long, value_delimiter = ',', conflicts_with = "n")]
    clusters: Option<Vec<String>>,
    /// Explain this many test-split clusters, spread evenly in true mass.
    #[arg(long, default_value_t = 6)]
    n: usize,
    /// Test-split clusters in the radial profile (integrated gradients only; 0: none).
    #[arg(long, default_value_t = 200)]
    population: usize,
    /// Side of the occluding window, pixels (odd).
    #[arg(long, default_value_t = 5)]
    patch: usize,
    /// Steps of the integrated-gradients path.
    #[arg(long, default_value_t = 64)]
    steps: usize,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

const PREDICT_ABOUT: &str = "\
Catalogue of log10 M500c / Msun, sigma and quality flags for every cluster of a dataset (no truth needed).

MODEL is a run directory (burn, f32: the best epoch's weights, recorded preprocessing and sigma
calibration, through `eval`'s own code, so the same clusters give eval's numbers) or a weight blob
written by `codegen export` (model-f32.bin, model-f16.bin, model-int8.bin), run on the host by codegen's
reference interpreters: the bits the runtime computes on a device from the same blob. A blob's layer
list is read from model-arch.json next to it (written by `codegen export`), else from the run two
directories up (runs/x/export/model-int8.bin -> runs/x/model.json); its architecture hash must match.

Columns: id (the dataset's `id` array, else the row index), ra, dec (deg; the dataset's `ra`, `dec`
arrays, else empty/NaN), z, exposure_s (s; empty/NaN if unknown), log_mass (log10 M500c/Msun), sigma
(dex), flags, flag_names. Flags (bit field):
  1 z_outside_training         redshift outside the training range
  2 exposure_outside_training  exposure outside the training range (0.1 % tolerance)
  4 saturated                  a pixel holds 65535 counts
  8 undetected                 < 50 net 0.5-2 keV counts in the 400 kpc aperture (the baselines' detection)
 16 near_edge                  the dataset's `near_edge` is 1, or `edge_margin_arcsec` < half the cutout
The training range comes from the run's calibration.npz (the training dataset's simulation
configuration), as recorded in model-arch.json for a blob; unknown, flags 1 and 2 stay clear.

The header (CSV `#` lines, FITS keywords) names the model, its kind and dtype, architecture hash,
FNV-1a 64 hash of the weights file, the dataset, the command and the date. The file is written only
when every cluster is computed, through a temporary file and a rename: never half-written.

Examples:
  trainer predict runs/edge data/survey.npz --out cat.fits
  trainer predict runs/edge/export/model-int8.bin data/survey.npz --out cat.csv
  trainer predict runs/edge data/survey.npz --model-dtype int8 --out cat.csv";

#[derive(Args)]
struct PredictArgs {
    /// Run directory (burn) or weight blob (model-{f32,f16,int8}.bin).
    model: PathBuf,
    /// Dataset: NPZ, images.npy or a directory of .npy files (images, redshift; optional id, ra, dec,
    /// near_edge, edge_margin_arcsec).
    data: PathBuf,
    /// Output catalogue: .csv, or .fits (.fit, .fts) for a FITS binary table.
    #[arg(long, short)]
    out: PathBuf,
    /// With a run directory: burn (default), or the run's exported f32, f16 or int8 blob
    /// (<run>/export/model-<dtype>.bin). With a blob: the dtype it must have.
    #[arg(long, value_enum)]
    model_dtype: Option<trainer::predict::model::ModelDtype>,
    /// Clusters per forward pass (burn; 256, eval's, reproduces eval's numbers) or per work item (blob).
    #[arg(long, default_value_t = trainer::fit::commands::EVAL_BATCH)]
    batch: usize,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct CutoutArgs {
    /// Calibrated event lists (FITS with an EVENTS table: RA, DEC, PI in eV), one per sky tile.
    #[arg(long, required = true, num_args = 1..)]
    events: Vec<PathBuf>,
    /// Exposure maps (FITS images with a celestial WCS, seconds), one per event list, same order.
    #[arg(long, required = true, num_args = 1..)]
    expmap: Vec<PathBuf>,
    /// Cluster catalogue: FITS binary table or CSV with an id, RA, Dec (J2000 deg) and redshift.
    #[arg(long)]
    catalog: PathBuf,
    /// Output dataset (.npz), written atomically.
    #[arg(long, short)]
    out: PathBuf,
    /// Skipped clusters with the reason (CSV) [default: <out>.skipped.csv].
    #[arg(long)]
    skipped: Option<PathBuf>,
    /// Catalogue column of the cluster id.
    #[arg(long, default_value = "NAME")]
    id_col: String,
    /// Catalogue column of the RA (deg).
    #[arg(long, default_value = "RA")]
    ra_col: String,
    /// Catalogue column of the Dec (deg).
    #[arg(long, default_value = "DEC")]
    dec_col: String,
    /// Catalogue column of the redshift.
    #[arg(long, default_value = "BEST_Z")]
    z_col: String,
    /// FITS catalogue: EXTNAME of the table [default: the first table].
    #[arg(long)]
    catalog_hdu: Option<String>,
    /// Simulator configuration (TOML) whose pixel size, bands and cosmology the cubes
    /// follow [default: the built-in one, which the default models are trained on].
    #[arg(long)]
    config: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

/// Settings that change a run's configuration; each maps to the parameter of the same name.
#[derive(Args, Clone, Default)]
struct Overrides {
    /// Maximum epochs.
    #[arg(long)]
    epochs: Option<String>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<String>,
    /// Batch size.
    #[arg(long)]
    batch_size: Option<String>,
    /// Loss: nll (Gaussian log-likelihood) or mse.
    #[arg(long)]
    loss: Option<String>,
    /// Optimiser: adam or sgd (with momentum).
    #[arg(long)]
    optimizer: Option<String>,
    /// Learning-rate schedule: constant, exponential or cosine.
    #[arg(long)]
    schedule: Option<String>,
    /// Filters: one value for every block, or one per block (e.g. 16,32,32).
    #[arg(long)]
    filters: Option<String>,
    /// Kernel size of every convolution.
    #[arg(long)]
    kernel: Option<String>,
    /// Stride of every convolution.
    #[arg(long)]
    stride: Option<String>,
    /// Dilation of every convolution.
    #[arg(long)]
    dilation: Option<String>,
    /// Padding: same or valid.
    #[arg(long)]
    padding: Option<String>,
    /// Pooling after each block: max, avg or none.
    #[arg(long)]
    pool: Option<String>,
    /// Batch normalisation after each convolution: true or false.
    #[arg(long)]
    batch_norm: Option<String>,
    /// Dropout after each hidden dense layer.
    #[arg(long)]
    dropout: Option<String>,
    /// Hidden dense layers, e.g. 512,256,128,64 (or none).
    #[arg(long)]
    dense: Option<String>,
    /// Auxiliary scalar inputs next to the redshift: exposure_s (the exposure at each
    /// cluster; the dataset must record a range of them) or none.
    #[arg(long)]
    aux_inputs: Option<String>,
    /// L1 weight penalty.
    #[arg(long)]
    l1: Option<String>,
    /// L2 weight penalty.
    #[arg(long)]
    l2: Option<String>,
    /// Flip/rotate augmentation: true or false.
    #[arg(long)]
    augment: Option<String>,
    /// Early-stopping patience in epochs (0 = off).
    #[arg(long)]
    patience: Option<String>,
    /// Seed of initialisation, shuffling, augmentation and dropout.
    #[arg(long)]
    seed: Option<String>,
    /// Backend: flex (default) or ndarray.
    #[arg(long)]
    backend: Option<String>,
    /// Use at most this many training clusters per epoch (quick runs).
    #[arg(long)]
    max_train: Option<String>,
    /// Any other parameter, name=value (repeatable); see `trainer fit --help`.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

impl Overrides {
    fn apply(&self, cfg: &mut trainer::fit::config::RunConfig) -> Result<()> {
        let named = [
            ("epochs", &self.epochs),
            ("lr", &self.lr),
            ("batch_size", &self.batch_size),
            ("loss", &self.loss),
            ("optimizer", &self.optimizer),
            ("schedule", &self.schedule),
            ("filters", &self.filters),
            ("kernel", &self.kernel),
            ("stride", &self.stride),
            ("dilation", &self.dilation),
            ("padding", &self.padding),
            ("pool", &self.pool),
            ("batch_norm", &self.batch_norm),
            ("dropout", &self.dropout),
            ("dense", &self.dense),
            ("aux_inputs", &self.aux_inputs),
            ("l1", &self.l1),
            ("l2", &self.l2),
            ("augment", &self.augment),
            ("patience", &self.patience),
            ("seed", &self.seed),
            ("backend", &self.backend),
            ("max_train", &self.max_train),
        ];
        for (name, v) in named {
            if let Some(v) = v {
                params::set(cfg, name, v)?;
            }
        }
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--set {kv:?}: expected name=value"))?;
            params::set(cfg, &k.trim().replace('-', "_"), v)?;
        }
        Ok(())
    }
}

#[derive(Args)]
struct FitArgs {
    /// Starting configuration.
    #[arg(long, value_enum, default_value = "edge")]
    preset: Preset,
    /// A run configuration (TOML, as written to every run's config.toml); replaces --preset.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Dataset [default: data/mock-erass8-s1-n20000.npz, simulated on first use].
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Run directory [default: runs/<preset>, or runs/<preset>-2, ... if taken].
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Continue the run in --run-dir from its last checkpoint (overrides such as --epochs still apply).
    #[arg(long, requires = "run_dir")]
    resume: bool,
    #[command(flatten)]
    overrides: Overrides,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Run directory.
    run_dir: PathBuf,
    /// Dataset [default: the one the run was trained on]; scored on its test split.
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Write the scores as JSON too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The depth table instead: the run scored at eRASS1, eRASS:4, eRASS:8, pointed depth
    /// and on eRASS1's scanning-law mix of exposures, each on fresh mocks of the run's
    /// population (simulated into data/depths/ on first use), next to the baselines fitted
    /// at that depth. Written to <run_dir>/depths.md and depths.json too.
    #[arg(long, conflicts_with = "dataset")]
    depths: bool,
    /// With --depths: a model trained at one depth alone, compared at that depth,
    /// DEPTH=RUN_DIR (DEPTH: erass1, erass4, erass8, pointed, survey-erass1); repeatable.
    #[arg(long, value_name = "DEPTH=RUN_DIR", requires = "depths")]
    specific: Vec<String>,
    /// With --depths: clusters per depth dataset.
    #[arg(long, default_value_t = 10_000, requires = "depths")]
    depth_clusters: usize,
    /// With --depths: seed of the depth datasets (not the training seed, so every
    /// cluster is new to the model).
    #[arg(long, default_value_t = 2, requires = "depths")]
    depth_seed: u64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct ScanArgs {
    /// Parameter to scan: name=v1,v2,... or name=start:stop:steps (log:start:stop:steps for log spacing).
    #[arg(long, required = true)]
    param: String,
    /// Optional second parameter (one curve per value).
    #[arg(long)]
    param2: Option<String>,
    /// Starting configuration.
    #[arg(long, value_enum, default_value = "edge")]
    preset: Preset,
    /// Dataset [default: data/mock-erass8-s1-n20000.npz].
    #[arg(long)]
    dataset: Option<PathBuf>,
    /// Directory of the scan's runs, table and plot [default: runs/scan-<param>].
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Args)]
struct SimulateArgs {
    /// Number of clusters [default: 20000; with --events: 200].
    #[arg(long)]
    n: Option<usize>,
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
    /// Per-cluster exposure, log-uniform between LOW,HIGH seconds (a mix of survey depths;
    /// the same clusters as at a fixed exposure). Example: 150,20000 (eRASS1 to pointed).
    #[arg(long, value_name = "LOW,HIGH", conflicts_with = "exposure_survey")]
    exposure_range: Option<String>,
    /// Per-cluster exposure from eROSITA's all-sky scanning law after PASSES passes
    /// (eRASS:PASSES; 1 = eRASS1: 150 s at the ecliptic equator, median 173 s, rising to
    /// 16.7 ks at the poles; see docs/mocks.md). The same clusters as at a fixed exposure.
    #[arg(long, value_name = "PASSES")]
    exposure_survey: Option<u32>,
    /// Also draw a few clusters to this PNG.
    #[arg(long)]
    preview: Option<PathBuf>,
    /// Clusters drawn by --preview.
    #[arg(long, default_value_t = 6)]
    preview_count: usize,
    /// Also write the clusters as a sky tile in the eROSITA DR1 layout: this event list
    /// (FITS), NAME.expmap.fits, NAME.catalog.fits and NAME.catalog.csv (see docs/survey.md).
    #[arg(long)]
    events: Option<PathBuf>,
    /// Tile centre RA, deg (with --events).
    #[arg(long, default_value_t = TileParams::default().ra_deg)]
    tile_ra: f64,
    /// Tile centre Dec, deg (with --events).
    #[arg(long, default_value_t = TileParams::default().dec_deg)]
    tile_dec: f64,
    /// Tile side, deg (with --events).
    #[arg(long, default_value_t = TileParams::default().size_deg)]
    tile_size: f64,
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
    if let Some(r) = &a.exposure_range {
        let v: Vec<f64> = r
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                anyhow::anyhow!("--exposure-range {r}: expected two numbers, LOW,HIGH (s)")
            })?;
        let [lo, hi] = v[..] else {
            bail!("--exposure-range {r}: expected two numbers, LOW,HIGH (s)");
        };
        cfg.instrument.exposure_range_s = Some((lo, hi));
    }
    if let Some(passes) = a.exposure_survey {
        cfg.instrument.exposure_survey =
            Some(trainer::sim::instrument::ScanningSurvey::erass(passes));
    }
    let n = a.n.unwrap_or(if a.events.is_some() { 200 } else { 20_000 });
    if n == 0 {
        bail!("--n must be at least 1");
    }
    Simulator::check_config(&cfg).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let out = a.out.clone().unwrap_or_else(|| {
        // Datasets with per-cluster exposures are named by them, not by the depth.
        let depth = match (
            &cfg.instrument.exposure_range_s,
            &cfg.instrument.exposure_survey,
        ) {
            (Some((lo, hi)), _) => format!("exp{lo:.0}-{hi:.0}"),
            (None, Some(s)) => format!("survey-erass{}", s.passes),
            (None, None) => cfg.depth.name().to_string(),
        };
        PathBuf::from(format!("data/mock-{depth}-s{}-n{n}.npz", cfg.seed))
    });
    if out.extension().is_none_or(|e| e != "npz") {
        bail!(
            "--out {}: the dataset is written as NPZ; use a .npz file name",
            out.display()
        );
    }
    let sim = Simulator::new(cfg);
    let t0 = Instant::now();
    let sky = match &a.events {
        Some(ev) => {
            if ev.extension().is_none_or(|e| e != "fits") {
                bail!("--events {}: use a .fits file name", ev.display());
            }
            let tp = TileParams {
                ra_deg: a.tile_ra,
                dec_deg: a.tile_dec,
                size_deg: a.tile_size,
                ..TileParams::default()
            };
            let pb = if a.quiet {
                indicatif::ProgressBar::hidden()
            } else {
                trainer::progress::bar(n, true, "simulating the tile", "clusters")
            };
            let (sky, _, s) = trainer::survey::tile::simulate_tile(&sim, n, &tp, ev, &pb)?;
            pb.finish_and_clear();
            eprintln!(
                "tile: {} events ({} in {} cluster stamps, {} of the field with {} field AGN) in {}; exposure map {}; catalogue {} and {}",
                s.stamp_events + s.field_events,
                s.stamp_events,
                n,
                s.field_events,
                s.field_agn,
                s.events.display(),
                s.expmap.display(),
                s.catalog_fits.display(),
                s.catalog_csv.display()
            );
            Some(sky)
        }
        None => None,
    };
    generate_npz_with(&sim, n, &out, !a.quiet, sky.as_ref())?;
    let dt = t0.elapsed().as_secs_f64();
    let p = &sim.instrument.params;
    let exposure = match (p.exposure_range_s, p.exposure_survey) {
        (Some((lo, hi)), _) => format!("exposure log-uniform {lo:.0}-{hi:.0} s per cluster"),
        (None, Some(s)) => {
            let (lo, hi) = s.bounds();
            format!(
                "exposure from the eRASS:{} scanning law, {lo:.0}-{hi:.0} s per cluster",
                s.passes
            )
        }
        (None, None) => format!(
            "depth {}, exposure {:.0} s",
            sim.config.depth.name(),
            sim.instrument.exposure_s
        ),
    };
    eprintln!(
        "wrote {} clusters to {} in {:.1} s ({:.0} clusters/s; {exposure})",
        n,
        out.display(),
        dt,
        n as f64 / dt,
    );
    if let Some(p) = a.preview {
        let k = a.preview_count.clamp(1, 12).min(n);
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
    let b = baseline::Baselines::fit(&ds, &splits, &p)?;
    let estimates = &b.estimates;
    let acc = b.accuracy(&ds, &splits.test)?;
    let detected: Vec<usize> = b
        .detected(&splits.test)
        .into_iter()
        .map(|k| splits.test[k])
        .collect();
    let acc_detected = b.accuracy(&ds, &detected)?;
    let range = ["/exposure_range_s", "/config/instrument/exposure_range_s"]
        .iter()
        .find_map(|p| ds.meta.as_ref().and_then(|m| m.pointer(p)))
        .and_then(|v| serde_json::from_value::<[f64; 2]>(v.clone()).ok());
    let depth = match range {
        Some([lo, hi]) => format!("exposure {lo:.0}-{hi:.0} s per cluster"),
        None => format!(
            "depth {}",
            ds.meta
                .as_ref()
                .and_then(|m| m.pointer("/config/depth"))
                .and_then(|v| v.as_str())
                .unwrap_or("unknown")
        ),
    };
    let mut out = String::new();
    use std::fmt::Write as _;
    writeln!(
        out,
        "{}: {} clusters, {depth}; fitted on {} training clusters, scored on {} test clusters (dex)",
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
    for e in estimates {
        let terms: Vec<String> = e
            .features
            .iter()
            .zip(&e.coefficients)
            .map(|(f, c)| format!("{c:+.4} x {f}"))
            .collect();
        writeln!(out, "{}: log M = {}", e.name, terms.join(" "))?;
    }
    emit(&out)?;
    if let Some(path) = a.json {
        let doc = serde_json::json!({ "dataset": a.dataset, "split_seed": a.split_seed, "test": acc, "test_detected": acc_detected, "count_rate": p, "fits": estimates });
        trainer::fsutil::write_atomic(&path, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    Ok(())
}

fn fit_cmd(a: FitArgs) -> Result<()> {
    // A resumed run keeps its dataset unless told otherwise.
    let recorded = a
        .run_dir
        .as_ref()
        .filter(|_| a.resume)
        .and_then(|d| std::fs::read(d.join("run.json")).ok())
        .and_then(|b| serde_json::from_slice::<commands::RunInfo>(&b).ok())
        .map(|i| i.dataset);
    let dataset = a
        .dataset
        .clone()
        .or(recorded)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATASET));
    let (mut cfg, run_dir) = if a.resume {
        let dir = a
            .run_dir
            .clone()
            .expect("clap requires --run-dir with --resume");
        let text = std::fs::read_to_string(dir.join("config.toml"))
            .with_context(|| format!("{}: nothing to resume (no config.toml)", dir.display()))?;
        let cfg: RunConfig =
            toml::from_str(&text).with_context(|| format!("{}/config.toml", dir.display()))?;
        (cfg, dir)
    } else {
        let cfg = match &a.config {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading {}", p.display()))?;
                toml::from_str::<RunConfig>(&text).with_context(|| format!("{}", p.display()))?
            }
            None => a.preset.config(),
        };
        let dir = match &a.run_dir {
            Some(d) => d.clone(),
            None => fresh_run_dir(&PathBuf::from(format!("runs/{}", cfg.preset))),
        };
        (cfg, dir)
    };
    a.overrides.apply(&mut cfg)?;
    let s = commands::fit(&cfg, &dataset, &run_dir, a.resume, !a.quiet)?;
    let mut out = String::new();
    use std::fmt::Write as _;
    writeln!(
        out,
        "run {}: {} MACs, {} parameters, {:.0} training images/s, {:.0} s",
        s.run_dir.display(),
        s.macs,
        s.params,
        s.train_images_per_s,
        s.seconds
    )?;
    writeln!(
        out,
        "held-out test split ({} clusters of {}), dex:",
        s.test.n,
        dataset.display()
    )?;
    out.push_str(&report::render(&s.test));
    writeln!(
        out,
        "detected test clusters (>= 50 net 0.5-2 keV counts in the 400 kpc aperture, {} of {}), dex:",
        s.test_detected.n, s.test.n
    )?;
    out.push_str(&report::render(&s.test_detected));
    writeln!(
        out,
        "figures: {}/loss.png, {}/predictions.png; export: {}/model.json + model.safetensors",
        s.run_dir.display(),
        s.run_dir.display(),
        s.run_dir.display()
    )?;
    emit(&out)
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    if a.depths {
        let specific = a
            .specific
            .iter()
            .map(|s| {
                s.split_once('=')
                    .map(|(d, r)| (d.trim().to_string(), PathBuf::from(r.trim())))
                    .with_context(|| format!("--specific {s:?}: expected DEPTH=RUN_DIR"))
            })
            .collect::<Result<Vec<_>>>()?;
        let rows = trainer::fit::depths::table(
            &a.run_dir,
            &specific,
            a.depth_clusters,
            a.depth_seed,
            Path::new("data/depths"),
            !a.quiet,
        )?;
        let text = trainer::fit::depths::render(&a.run_dir, &rows);
        trainer::fsutil::write_atomic(&a.run_dir.join("depths.md"), text.as_bytes())?;
        let json = serde_json::to_string_pretty(&rows)?;
        trainer::fsutil::write_atomic(&a.run_dir.join("depths.json"), json.as_bytes())?;
        trainer::fit::depths::plot(&a.run_dir.join("depths.png"), &rows)?;
        if let Some(p) = &a.json {
            trainer::fsutil::write_atomic(p, json.as_bytes())?;
        }
        return emit(&text);
    }
    let (all, detected) = commands::eval(&a.run_dir, a.dataset.as_deref())?;
    if let Some(p) = &a.json {
        let doc = serde_json::json!({ "test": &all, "test_detected": &detected });
        trainer::fsutil::write_atomic(p, serde_json::to_string_pretty(&doc)?.as_bytes())?;
    }
    emit(&format!(
        "{} on the test split ({} clusters), dex:\n{}detected test clusters (>= 50 net 0.5-2 keV counts, {} of {}), dex:\n{}",
        a.run_dir.display(),
        all.n,
        report::render(&all),
        detected.n,
        all.n,
        report::render(&detected)
    ))
}

fn scan_cmd(a: ScanArgs) -> Result<()> {
    let (p1, v1) = params::scan_values(&a.param)?;
    let second = a.param2.as_deref().map(params::scan_values).transpose()?;
    let dataset = a
        .dataset
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATASET));
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| fresh_run_dir(&PathBuf::from(format!("runs/scan-{p1}"))));
    let mut base = a.preset.config();
    a.overrides.apply(&mut base)?;
    let combos: Vec<(String, Option<String>)> = match &second {
        Some((_, v2)) => v2
            .iter()
            .flat_map(|b| v1.iter().map(move |x| (x.clone(), Some(b.clone()))))
            .collect(),
        None => v1.iter().map(|x| (x.clone(), None)).collect(),
    };
    let mut rows = Vec::new();
    for (x, y) in &combos {
        let mut cfg = base.clone();
        params::set(&mut cfg, &p1, x)?;
        let mut name = format!("{p1}={}", x.replace(',', "-"));
        if let (Some((p2, _)), Some(y)) = (&second, y) {
            params::set(&mut cfg, p2, y)?;
            name.push_str(&format!("_{p2}={}", y.replace(',', "-")));
        }
        eprintln!("scan: {name}");
        let s = commands::fit(&cfg, &dataset, &out.join(&name), false, true)?;
        let acc = &s.test.accuracy[0].overall;
        rows.push(trainer::fit::scan::Row {
            x: x.clone(),
            y: y.clone(),
            scatter: acc.scatter,
            bias: acc.bias,
            nll: s.test.calibration.nll,
            macs: s.macs,
        });
    }
    let text = trainer::fit::scan::finish(&out, &p1, second.as_ref().map(|s| s.0.as_str()), &rows)?;
    emit(&text)
}

fn cutout_cmd(a: CutoutArgs) -> Result<()> {
    use trainer::survey::{catalog::Columns, command};
    let config = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading config {}", p.display()))?;
            toml::from_str::<SimConfig>(&text).with_context(|| format!("config {}", p.display()))?
        }
        None => SimConfig::default(),
    };
    let o = command::CutoutOptions {
        events: a.events,
        expmaps: a.expmap,
        catalog: a.catalog,
        columns: Columns {
            id: a.id_col,
            ra: a.ra_col,
            dec: a.dec_col,
            z: a.z_col,
            hdu: a.catalog_hdu,
        },
        skipped: a
            .skipped
            .unwrap_or_else(|| command::default_skipped(&a.out)),
        out: a.out,
        config,
    };
    let s = command::run(&o, !a.quiet)?;
    eprintln!(
        "cut out {} of {} catalogue clusters into {} ({} skipped, listed in {}); {} of {} events selected; tiles read in {:.2} s, cutouts in {:.2} s ({:.0} clusters/s)",
        s.written,
        s.catalog_rows,
        o.out.display(),
        s.skipped,
        o.skipped.display(),
        s.events_kept,
        s.events_read,
        s.read_s,
        s.cutout_s,
        s.written as f64 / s.cutout_s.max(1e-9)
    );
    Ok(())
}

fn explain_cmd(a: ExplainArgs) -> Result<()> {
    use trainer::explain::{Selection, Settings};
    let sel = match a.clusters {
        Some(ids) => Selection::Ids(ids),
        None => Selection::Spread(a.n),
    };
    let s = Settings {
        patch: a.patch,
        steps: a.steps,
        ..Settings::default()
    };
    let r = trainer::explain::run(
        &a.run_dir,
        &a.data,
        &sel,
        a.population,
        &s,
        &a.out,
        !a.quiet,
    )?;
    let mut out = String::new();
    use std::fmt::Write as _;
    writeln!(
        out,
        "{} clusters explained in {:.2} s each ({}x{} occlusion, {} integrated-gradient steps); background: {}",
        r.clusters.len(),
        r.seconds_per_cluster,
        r.patch,
        r.patch,
        r.steps,
        r.background
    )?;
    for c in &r.clusters {
        writeln!(
            out,
            "  {}: z {:.3}, true {}, predicted {:.3} +/- {:.3}; integrated gradients sum to {:+.4} dex of {:+.4} (completeness error {:.1e}); largest occlusion change {:.3} dex",
            c.id,
            c.z,
            c.truth.map_or("-".into(), |t| format!("{t:.3}")),
            c.mu,
            c.sigma,
            c.band_importance.iter().sum::<f64>(),
            c.mu - c.mu_baseline,
            c.completeness_error,
            c.max_occlusion_dex
        )?;
    }
    if let Some(p) = &r.profile {
        writeln!(
            out,
            "radial profile of |integrated gradients| ({} test clusters, {:.2} s each), share per annulus:",
            p.groups.first().map_or(0, |g| g.n),
            r.seconds_per_population_cluster
        )?;
        writeln!(out, "{}", p.table())?;
    }
    writeln!(out, "figures and explain.json in {}", a.out.display())?;
    emit(&out)
}

fn predict_cmd(a: PredictArgs) -> Result<()> {
    let s = trainer::predict::predict(&trainer::predict::PredictOptions {
        model: a.model,
        data: a.data,
        out: a.out.clone(),
        model_dtype: a.model_dtype,
        batch: a.batch,
        progress: !a.quiet,
        command: command_line(),
    })?;
    let flagged: Vec<String> = trainer::predict::flags::FLAGS
        .iter()
        .zip(&s.flag_counts)
        .map(|((_, name, _), k)| format!("{name} {k}"))
        .collect();
    eprintln!(
        "wrote {} clusters to {} ({}: {:.0} clusters/s); flagged: {}",
        s.n,
        a.out.display(),
        s.model,
        s.clusters_per_s,
        flagged.join(", ")
    );
    Ok(())
}

/// The command line as a shell would take it back (arguments quoted where needed).
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            let plain = !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
        Command::Fit(a) => fit_cmd(a),
        Command::Eval(a) => eval_cmd(a),
        Command::Scan(a) => scan_cmd(a),
        Command::Cutout(a) => cutout_cmd(a),
        Command::Predict(a) => predict_cmd(a),
        Command::Explain(a) => explain_cmd(a),
    }
}
