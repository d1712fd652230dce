//! `trainer explain`: what a trained network looks at.
//!
//! Four views of one prediction, all through burn's autodiff on the run's f32 network
//! (batch norm on its running statistics, no dropout: the network `eval` scores):
//!
//! - **Occlusion sensitivity** (lecture notes `seeds/002`, Zeiler & Fergus 2014): a
//!   `patch x patch` window slides over the image; inside it every band's counts are
//!   replaced by the *expected background* of that band (not by zeros: zero counts are
//!   themselves a signal in Poisson images), and the change in predicted log mass, and
//!   in sigma, is recorded at the window's centre.
//! - **Gradient saliency** (Simonyan et al. 2014): |d mu / d x| summed over bands, `x`
//!   the preprocessed input `ln(1 + counts) * band_scale`.
//! - **Integrated gradients** (Sundararajan et al. 2017): `(x - x0) * mean over the
//!   straight path from x0 to x of d mu / d x`, with the background-only image as the
//!   baseline `x0`; the attributions of all pixels and bands sum to `mu(x) - mu(x0)`
//!   (completeness), which [`Explanation::completeness_error`] reports.
//! - **Per-band importance**: the integrated gradients summed over each band.
//!
//! [`radial_profile`] turns many clusters' integrated gradients into the population view
//! (mean |attribution| per pixel against radius in units of r500), which answers Ho et
//! al. (2023)'s question of whether the network down-weights the cluster core.

pub mod plot;
pub mod population;

pub use population::{RadialProfile, radial_profile};

use crate::data::Dataset;
use crate::fit::commands::TrainedRun;
use crate::fit::net::{self, Net};
use crate::fit::run::SigmaCalibration;
use crate::sim::{IMAGE_LEN, NPIX, spectrum::NBANDS};
use anyhow::{Context, Result, bail};
use arch::Layer;
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

/// Pixels of one band.
pub const PLANE: usize = NPIX * NPIX;

/// How the maps are made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Side of the occluding window, pixels (odd: it has a centre).
    pub patch: usize,
    /// Steps of the integrated-gradients path (midpoint rule).
    pub steps: usize,
    /// Images per forward/backward pass.
    pub batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            patch: 5,
            steps: 64,
            batch: 128,
        }
    }
}

impl Settings {
    /// Refuse settings that cannot make maps.
    pub fn check(&self) -> Result<()> {
        if self.patch == 0 || self.patch.is_multiple_of(2) || self.patch > NPIX {
            bail!(
                "--patch {}: the occluding window must be an odd number of pixels from 1 to {NPIX}",
                self.patch
            );
        }
        if self.steps == 0 || self.steps > 4096 {
            bail!("--steps {}: must be 1 to 4096", self.steps);
        }
        if self.batch == 0 {
            bail!("the batch size must be at least 1");
        }
        Ok(())
    }
}

/// A trained network, ready for gradients with respect to its input.
pub struct Explainer {
    net: Net,
    layers: Vec<Layer>,
    scale: [f32; NBANDS],
    pre: crate::fit::prep::Preprocess,
    calib: SigmaCalibration,
    dev: Device,
}

/// Everything `explain` shows of one cluster.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// Row in the dataset.
    pub index: usize,
    /// The cluster's id (the dataset's, else the row).
    pub id: String,
    /// True log mass, when the dataset has labels.
    pub truth: Option<f64>,
    /// Redshift.
    pub z: f64,
    /// Predicted log mass.
    pub mu: f64,
    /// Calibrated sigma.
    pub sigma: f64,
    /// Prediction on the background-only image (the integrated-gradients baseline).
    pub mu_baseline: f64,
    /// Band-summed raw counts `[y][x]`.
    pub counts: Vec<f64>,
    /// Change in predicted log mass with the window centred on each pixel occluded.
    pub occlusion_mu: Vec<f64>,
    /// Change in (calibrated) sigma, likewise.
    pub occlusion_sigma: Vec<f64>,
    /// Gradient saliency, summed over bands.
    pub saliency: Vec<f64>,
    /// Integrated gradients `[band][y][x]`.
    pub ig: Vec<f64>,
}

impl Explanation {
    /// Integrated gradients summed over bands, `[y][x]`.
    pub fn ig_map(&self) -> Vec<f64> {
        (0..PLANE)
            .map(|p| (0..NBANDS).map(|b| self.ig[b * PLANE + p]).sum())
            .collect()
    }
    /// Integrated gradients summed over each band's pixels.
    pub fn band_importance(&self) -> [f64; NBANDS] {
        let mut out = [0.0; NBANDS];
        for (b, o) in out.iter_mut().enumerate() {
            *o = self.ig[b * PLANE..(b + 1) * PLANE].iter().sum();
        }
        out
    }
    /// `sum(ig) - (mu - mu_baseline)`, dex: how far the attributions miss completeness.
    pub fn completeness_error(&self) -> f64 {
        self.ig.iter().sum::<f64>() - (self.mu - self.mu_baseline)
    }
}

impl Explainer {
    /// The run's best network on its backend's autodiff device, frozen (no parameter
    /// gradients, batch norm on running statistics).
    pub fn new(run: &TrainedRun) -> Result<Self> {
        let dev = run.device.clone().autodiff();
        let net = crate::fit::run::load_best(&run.dir, &run.layers, &dev)?.freeze();
        Ok(Self::from_parts(
            net,
            run.layers.clone(),
            &run.state.preprocess,
            run.calib,
            dev,
        ))
    }

    /// An explainer for any network on an autodiff device `dev` (tests use synthetic ones).
    pub fn from_parts(
        net: Net,
        layers: Vec<Layer>,
        pre: &crate::fit::prep::Preprocess,
        calib: SigmaCalibration,
        dev: Device,
    ) -> Self {
        Self {
            net: net.freeze(),
            layers,
            scale: pre.band_scale,
            pre: pre.clone(),
            calib,
            dev,
        }
    }

    /// The network input for raw counts (which may be fractional, as expected
    /// backgrounds are): `ln(1 + counts) * band_scale`, with libm's `log1pf`, the
    /// runtime's own function, so whole counts give the runtime's bits.
    pub fn preprocess(&self, counts: &[f32]) -> Vec<f32> {
        counts
            .iter()
            .enumerate()
            .map(|(i, &c)| libm::log1pf(c) * self.scale[i / PLANE])
            .collect()
    }

    /// The network's scalar inputs for raw ones (the redshift, then each auxiliary input),
    /// checked and mapped as the runtime does.
    fn scalar_input(&self, scalars: &[f32]) -> Result<Vec<f32>> {
        arch::interp::preprocess_scalars(&self.pre.desc(), scalars)
    }

    /// The raw scalar inputs of cluster `i` of `ds` (its redshift, then the auxiliary
    /// inputs the network takes).
    pub fn raw_scalars(&self, ds: &Dataset, i: usize) -> Result<Vec<f32>> {
        let mut v = vec![ds.redshift[i]];
        for e in &self.pre.extra {
            v.push(crate::fit::prep::aux_value(ds, e.quantity, i)?);
        }
        Ok(v)
    }

    fn tensors(&self, xs: &[f32], z: &[f32]) -> (Tensor<4>, Tensor<2>, usize) {
        let n = xs.len() / IMAGE_LEN;
        let x = Tensor::<4>::from_data(
            TensorData::new(xs.to_vec(), [n, NBANDS, NPIX, NPIX]),
            &self.dev,
        );
        let zt = Tensor::<2>::from_data(TensorData::new(z.repeat(n), [n, z.len()]), &self.dev);
        (x, zt, n)
    }

    /// Predicted log mass and calibrated sigma of preprocessed images `xs` (`[n][IMAGE_LEN]`)
    /// at preprocessed redshift `z`.
    fn predict(&self, xs: &[f32], z: &[f32], batch: usize) -> (Vec<f64>, Vec<f64>) {
        let (mut mu, mut sigma) = (Vec::new(), Vec::new());
        for chunk in xs.chunks(IMAGE_LEN * batch.max(1)) {
            let (x, zt, _) = self.tensors(chunk, z);
            let (m, s) = net::mean_sigma(self.net.forward(&self.layers, x, zt, None));
            mu.extend(crate::fit::train::to_vec(m).into_iter().map(f64::from));
            sigma.extend(
                crate::fit::train::to_vec(s)
                    .into_iter()
                    .map(|s| self.calib.apply(f64::from(s))),
            );
        }
        (mu, sigma)
    }

    /// d mu / d x for each of the preprocessed images `xs`, `[n][IMAGE_LEN]`.
    fn gradients(&self, xs: &[f32], z: &[f32], batch: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(xs.len());
        for chunk in xs.chunks(IMAGE_LEN * batch.max(1)) {
            let (x, zt, _) = self.tensors(chunk, z);
            let x = x.require_grad();
            let (m, _) = net::mean_sigma(self.net.forward(&self.layers, x.clone(), zt, None));
            // Images are independent (no batch statistics): the gradient of the sum is
            // each image's own gradient.
            let grads = m.sum().backward();
            let g = x
                .grad(&grads)
                .context("burn returned no gradient for the input")?;
            out.extend(
                g.into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("gradient data: {e:?}"))?,
            );
        }
        Ok(out)
    }

    /// Predicted log mass and calibrated sigma of raw counts with raw scalar inputs
    /// `scalars` (the redshift, then the auxiliary inputs).
    pub fn predict_counts(&self, counts: &[f32], scalars: &[f32]) -> Result<(f64, f64)> {
        let (m, s) = self.predict(&self.preprocess(counts), &self.scalar_input(scalars)?, 1);
        Ok((m[0], s[0]))
    }

    /// The occlusion maps of raw `counts` with raw scalar inputs `scalars`, with `background[band]` as the
    /// occluder: (change in log mass, change in sigma) with the window centred on each
    /// pixel (clipped at the image edge).
    pub fn occlusion(
        &self,
        counts: &[f32],
        scalars: &[f32],
        background: &[f32; NBANDS],
        s: &Settings,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let zi = self.scalar_input(scalars)?;
        let x = self.preprocess(counts);
        let fill: Vec<f32> = background
            .iter()
            .zip(&self.scale)
            .map(|(&b, &k)| libm::log1pf(b) * k)
            .collect();
        let (mu0, s0) = self.predict(&x, &zi, 1);
        let h = s.patch / 2;
        let (mut dmu, mut dsig) = (Vec::with_capacity(PLANE), Vec::with_capacity(PLANE));
        // Rows of windows at a time: `batch` occluded copies per forward pass.
        let centres: Vec<usize> = (0..PLANE).collect();
        for group in centres.chunks(s.batch.max(1)) {
            let mut xs = Vec::with_capacity(group.len() * IMAGE_LEN);
            for &p in group {
                let (cy, cx) = (p / NPIX, p % NPIX);
                let mut o = x.clone();
                for y in cy.saturating_sub(h)..(cy + h + 1).min(NPIX) {
                    for xx in cx.saturating_sub(h)..(cx + h + 1).min(NPIX) {
                        for (b, &f) in fill.iter().enumerate() {
                            o[b * PLANE + y * NPIX + xx] = f;
                        }
                    }
                }
                xs.extend(o);
            }
            let (m, sg) = self.predict(&xs, &zi, s.batch);
            dmu.extend(m.iter().map(|v| v - mu0[0]));
            dsig.extend(sg.iter().map(|v| v - s0[0]));
        }
        Ok((dmu, dsig))
    }

    /// Gradient saliency `|d mu / d x|` summed over bands, `[y][x]`.
    pub fn saliency(&self, counts: &[f32], scalars: &[f32]) -> Result<Vec<f64>> {
        let g = self.gradients(&self.preprocess(counts), &self.scalar_input(scalars)?, 1)?;
        Ok((0..PLANE)
            .map(|p| (0..NBANDS).map(|b| f64::from(g[b * PLANE + p].abs())).sum())
            .collect())
    }

    /// Integrated gradients of raw `counts` against the baseline `baseline` (raw counts,
    /// usually the expected background), `[band][y][x]`, with the prediction on the
    /// baseline. Midpoint rule over `s.steps` points of the straight path in input space.
    pub fn integrated_gradients(
        &self,
        counts: &[f32],
        baseline: &[f32],
        scalars: &[f32],
        s: &Settings,
    ) -> Result<(Vec<f64>, f64)> {
        let zi = self.scalar_input(scalars)?;
        let x = self.preprocess(counts);
        let x0 = self.preprocess(baseline);
        let mut sum = vec![0f64; IMAGE_LEN];
        let alphas: Vec<f32> = (0..s.steps)
            .map(|k| (k as f32 + 0.5) / s.steps as f32)
            .collect();
        for group in alphas.chunks(s.batch.max(1)) {
            let mut xs = Vec::with_capacity(group.len() * IMAGE_LEN);
            for &a in group {
                xs.extend(x.iter().zip(&x0).map(|(&v, &v0)| v0 + a * (v - v0)));
            }
            let g = self.gradients(&xs, &zi, s.batch)?;
            for img in g.chunks(IMAGE_LEN) {
                for (acc, &v) in sum.iter_mut().zip(img) {
                    *acc += f64::from(v);
                }
            }
        }
        let ig = sum
            .iter()
            .zip(x.iter().zip(&x0))
            .map(|(g, (&v, &v0))| f64::from(v - v0) * g / s.steps as f64)
            .collect();
        let (m0, _) = self.predict(&x0, &zi, 1);
        Ok((ig, m0[0]))
    }

    /// Every map of cluster `i` of `ds`.
    pub fn explain(
        &self,
        ds: &Dataset,
        i: usize,
        background: &[f32; NBANDS],
        s: &Settings,
    ) -> Result<Explanation> {
        let counts: Vec<f32> = ds.image(i).iter().map(|&c| f32::from(c)).collect();
        let z = ds.redshift[i];
        let sc = self.raw_scalars(ds, i)?;
        let base = background_image(background);
        let (mu, sigma) = self.predict_counts(&counts, &sc)?;
        let (occlusion_mu, occlusion_sigma) = self.occlusion(&counts, &sc, background, s)?;
        let saliency = self.saliency(&counts, &sc)?;
        let (ig, mu_baseline) = self.integrated_gradients(&counts, &base, &sc, s)?;
        Ok(Explanation {
            index: i,
            id: cluster_id(ds, i),
            truth: ds.log_mass.as_ref().map(|m| f64::from(m[i])),
            z: f64::from(z),
            mu,
            sigma,
            mu_baseline,
            counts: (0..PLANE)
                .map(|p| (0..NBANDS).map(|b| counts[b * PLANE + p] as f64).sum())
                .collect(),
            occlusion_mu,
            occlusion_sigma,
            saliency,
            ig,
        })
    }

    /// The first convolution's filters `[filter][in band][k][k]` with their shape.
    pub fn first_filters(&self) -> Option<(Vec<f32>, [usize; 4])> {
        let w = self.net.convs.first()?.weight.val();
        let dims = w.dims();
        let v = w.into_data().convert::<f32>().try_to_vec::<f32>().ok()?;
        Some((v, dims))
    }

    /// The feature maps of every convolution block for raw `counts` with raw scalar inputs
    /// `scalars`: values `[channel][y][x]` with their (channels, height, width).
    pub fn feature_maps(
        &self,
        counts: &[f32],
        scalars: &[f32],
    ) -> Result<Vec<(Vec<f32>, [usize; 3])>> {
        let (x, zt, _) = self.tensors(&self.preprocess(counts), &self.scalar_input(scalars)?);
        self.net
            .feature_maps(&self.layers, x, zt)
            .into_iter()
            .map(|t| {
                let [_, c, h, w] = t.dims();
                let v = t
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .map_err(|e| anyhow::anyhow!("feature map data: {e:?}"))?;
                Ok((v, [c, h, w]))
            })
            .collect()
    }
}

/// The background-only image: every pixel of band `b` at `background[b]` counts.
pub fn background_image(background: &[f32; NBANDS]) -> Vec<f32> {
    (0..IMAGE_LEN).map(|i| background[i / PLANE]).collect()
}

/// A cluster's id: the dataset's, else its row.
pub fn cluster_id(ds: &Dataset, i: usize) -> String {
    ds.sky
        .as_ref()
        .and_then(|s| s.id.get(i).cloned())
        .unwrap_or_else(|| i.to_string())
}

/// Where the occluder and the baseline come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Background {
    /// Expected counts per pixel in each band.
    pub per_pixel: [f32; NBANDS],
    /// How they were obtained.
    pub source: String,
}

/// The expected background per pixel and band of cluster `i`: the simulator's level
/// recorded in the dataset's metadata (scaled to the cluster's own exposure when it
/// has one), else the mean counts of the dataset's outskirts (pixels more than 20
/// from the centre, over up to 500 clusters), which is what an observer would use.
pub fn background(ds: &Dataset, i: usize) -> Background {
    let meta = ds.meta.as_ref();
    let recorded: Option<Vec<f64>> = meta
        .and_then(|m| m.get("background_per_pixel"))
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    if let Some(b) = recorded.filter(|b| b.len() == NBANDS) {
        let meta_exp = meta
            .and_then(|m| m.get("exposure_s"))
            .and_then(|v| v.as_f64());
        let ratio = match (ds.exposure(i), meta_exp) {
            (Some(e), Some(m)) if m > 0.0 => e / m,
            _ => 1.0,
        };
        let mut per_pixel = [0f32; NBANDS];
        for (o, v) in per_pixel.iter_mut().zip(&b) {
            *o = (v * ratio) as f32;
        }
        return Background {
            per_pixel,
            source: "the simulator's expected background (dataset metadata)".into(),
        };
    }
    let mut sum = [0f64; NBANDS];
    let mut n = 0usize;
    let c = NPIX as f64 / 2.0;
    for k in 0..ds.len().min(500) {
        let img = ds.image(k);
        for p in 0..PLANE {
            let (y, x) = ((p / NPIX) as f64 + 0.5, (p % NPIX) as f64 + 0.5);
            if (y - c).hypot(x - c) > 20.0 {
                for (b, s) in sum.iter_mut().enumerate() {
                    *s += f64::from(img[b * PLANE + p]);
                }
                if k == 0 {
                    n += 1;
                }
            }
        }
    }
    let clusters = ds.len().clamp(1, 500);
    let mut per_pixel = [0f32; NBANDS];
    for (o, s) in per_pixel.iter_mut().zip(&sum) {
        *o = (s / (n.max(1) * clusters) as f64) as f32;
    }
    Background {
        per_pixel,
        source: format!(
            "mean counts more than 20 pixels from the centre of {clusters} clusters (no simulator metadata)"
        ),
    }
}

/// Which clusters `explain` draws.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// These ids (the dataset's, else row numbers).
    Ids(Vec<String>),
    /// `n` clusters of the test split, spread evenly in true mass when labelled.
    Spread(usize),
}

/// What `explain` wrote and measured.
#[derive(Debug, Clone, Serialize)]
pub struct ExplainSummary {
    /// Per explained cluster: id, prediction, completeness, band importance.
    pub clusters: Vec<ClusterSummary>,
    /// The population profile (absent with `--population 0`).
    pub profile: Option<RadialProfile>,
    /// Where the background came from.
    pub background: String,
    /// Seconds per fully explained cluster (occlusion, saliency, integrated gradients).
    pub seconds_per_cluster: f64,
    /// Seconds per population cluster (integrated gradients only).
    pub seconds_per_population_cluster: f64,
    /// Occluding window side, pixels.
    pub patch: usize,
    /// Integrated-gradients steps.
    pub steps: usize,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// One explained cluster in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSummary {
    /// Id.
    pub id: String,
    /// True log mass.
    pub truth: Option<f64>,
    /// Redshift.
    pub z: f64,
    /// Predicted log mass.
    pub mu: f64,
    /// Calibrated sigma.
    pub sigma: f64,
    /// Prediction on the background-only baseline.
    pub mu_baseline: f64,
    /// sum(IG) - (mu - mu_baseline), dex.
    pub completeness_error: f64,
    /// Integrated gradients per band, dex.
    pub band_importance: Vec<f64>,
    /// Largest |change in log mass| from occluding one window, dex.
    pub max_occlusion_dex: f64,
}

use serde::Serialize;
use std::path::{Path, PathBuf};

fn pick(ds: &Dataset, test: &[usize], sel: &Selection) -> Result<Vec<usize>> {
    match sel {
        Selection::Ids(ids) => ids
            .iter()
            .map(|id| {
                (0..ds.len())
                    .find(|&i| cluster_id(ds, i) == *id)
                    .with_context(|| format!("no cluster with id {id:?} in the dataset"))
            })
            .collect(),
        Selection::Spread(n) => {
            let mut order = test.to_vec();
            if let Some(m) = &ds.log_mass {
                order.sort_by(|&a, &b| m[a].total_cmp(&m[b]));
            }
            let n = (*n).min(order.len());
            Ok((0..n)
                .map(|k| order[((2 * k + 1) * order.len()) / (2 * n)])
                .collect())
        }
    }
}

/// `trainer explain`: panels for the selected clusters, the first layer's filters, the
/// feature maps of the first selected cluster, and the radial profile of `population`
/// test-split clusters, all into `out`.
#[allow(clippy::too_many_arguments)]
pub fn run(
    run_dir: &Path,
    data: &Path,
    sel: &Selection,
    population: usize,
    s: &Settings,
    out: &Path,
    progress: bool,
) -> Result<ExplainSummary> {
    s.check()?;
    let run = crate::fit::commands::load_run(run_dir)?;
    let ds = Dataset::load(data)?;
    let ex = Explainer::new(&run)?;
    let splits = crate::data::Splits::new(
        ds.len(),
        run.cfg.train.split_seed,
        crate::data::Splits::DEFAULT,
    );
    let test = if splits.test.is_empty() {
        (0..ds.len()).collect()
    } else {
        splits.test.clone()
    };
    let chosen = pick(&ds, &test, sel)?;
    if chosen.is_empty() {
        bail!("{}: no cluster to explain", data.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let edges = ds.band_edges_kev();
    let mut files = Vec::new();
    let bkg0 = background(&ds, chosen[0]);

    let pb = crate::progress::bar(chosen.len(), progress, "explaining", "clusters");
    let t0 = std::time::Instant::now();
    let mut explained = Vec::new();
    for &i in &chosen {
        let b = background(&ds, i);
        let x = ex.explain(&ds, i, &b.per_pixel, s)?;
        let f = out.join(format!("cluster-{}.png", sanitize(&x.id)));
        plot::cluster_panel(&x, &edges, s.patch, &f)?;
        files.push(f);
        explained.push(x);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let seconds_per_cluster = t0.elapsed().as_secs_f64() / chosen.len() as f64;

    if let Some((w, dims)) = ex.first_filters() {
        let f = out.join("filters-conv0.png");
        plot::filters(&f, &w, dims, &edges)?;
        files.push(f);
    }
    let first = &explained[0];
    let counts: Vec<f32> = ds
        .image(first.index)
        .iter()
        .map(|&c| f32::from(c))
        .collect();
    for (k, (v, dims)) in ex
        .feature_maps(&counts, &ex.raw_scalars(&ds, first.index)?)?
        .iter()
        .enumerate()
    {
        let f = out.join(format!("features-{}-conv{k}.png", sanitize(&first.id)));
        plot::feature_maps(&f, k, v, *dims, &first.id)?;
        files.push(f);
    }

    let (profile, seconds_per_population_cluster) = if population > 0 {
        let members: Vec<usize> = test.iter().copied().take(population).collect();
        let pb = crate::progress::bar(members.len(), progress, "population", "clusters");
        let t1 = std::time::Instant::now();
        let mut ig_only = Vec::with_capacity(members.len());
        let mut bkgs = Vec::with_capacity(members.len());
        for &i in &members {
            let b = background(&ds, i).per_pixel;
            let counts: Vec<f32> = ds.image(i).iter().map(|&c| f32::from(c)).collect();
            let (ig, mu_baseline) = ex.integrated_gradients(
                &counts,
                &background_image(&b),
                &ex.raw_scalars(&ds, i)?,
                s,
            )?;
            ig_only.push(Explanation {
                index: i,
                id: cluster_id(&ds, i),
                truth: ds.log_mass.as_ref().map(|m| f64::from(m[i])),
                z: f64::from(ds.redshift[i]),
                mu: f64::NAN,
                sigma: f64::NAN,
                mu_baseline,
                counts: Vec::new(),
                occlusion_mu: Vec::new(),
                occlusion_sigma: Vec::new(),
                saliency: Vec::new(),
                ig,
            });
            bkgs.push(b);
            pb.inc(1);
        }
        pb.finish_and_clear();
        let secs = t1.elapsed().as_secs_f64() / members.len().max(1) as f64;
        let p = radial_profile(&ds, &ig_only, &bkgs);
        let f = out.join("radial.png");
        plot::radial(&f, &p)?;
        files.push(f);
        (Some(p), secs)
    } else {
        (None, 0.0)
    };

    let summary = ExplainSummary {
        clusters: explained
            .iter()
            .map(|x| ClusterSummary {
                id: x.id.clone(),
                truth: x.truth,
                z: x.z,
                mu: x.mu,
                sigma: x.sigma,
                mu_baseline: x.mu_baseline,
                completeness_error: x.completeness_error(),
                band_importance: x.band_importance().to_vec(),
                max_occlusion_dex: x.occlusion_mu.iter().fold(0.0, |a, v| a.max(v.abs())),
            })
            .collect(),
        profile,
        background: bkg0.source,
        seconds_per_cluster,
        seconds_per_population_cluster,
        patch: s.patch,
        steps: s.steps,
        files,
    };
    let json = out.join("explain.json");
    crate::fsutil::write_atomic(&json, &serde_json::to_vec_pretty(&summary)?)?;
    Ok(summary)
}

/// An id safe in a file name.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
