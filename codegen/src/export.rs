//! `codegen export`: from a trained run to weight blobs for every dtype and a
//! report of what each costs (bytes, RAM, MACs) and what quantisation costs in
//! accuracy, measured on the run's own validation sample (`calibration.npz`):
//! its first half calibrates the int8 activation ranges (and the head's bias correction),
//! the second half scores.
//!
//! Blob tensor order (the generated model code reads them in this order):
//! - every dtype: tensor 0, the model constants ([`meta_tensor`]);
//! - f32 / f16: per convolution and dense layer (head included) `weight`
//!   (f32 or f16), `bias` (f32).
//! - int8: per convolution and hidden dense layer `weight` (i8), `bias` (i32),
//!   `requant_pos`, `requant_neg` (i32 pairs: multiplier, shift); per stand-alone
//!   leaky ReLU one i32 tensor (pos mult, pos shift, neg mult, neg shift); the head
//!   `weight` (i8), `bias` (i32), `out_scale` (f32); last, the activation
//!   quantisation table: scales (f32) and zero points (i32) of every tensor.

use crate::blob::{self, Tensor};
use crate::interp::FloatPath;
pub use crate::load::arch_hash;
use crate::load::{ARCH_FILE, ArchDescription, TrainingRange};
use crate::model::{FoldedModel, Model, Op, SigmaCalibration};
use crate::quantize::{QOp, QuantModel, calibrate, quantize};
use anyhow::{Context, Result, bail};
use runtime::blob::Dtype;
use runtime::quant::Requant;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Tensor 0 of every blob: the model constants as `runtime::model::Meta` reads them
/// (band scales, z shift, z scale, sigma floor, calibration kind and value, the training
/// redshift range, then per auxiliary input its code, shift, scale and training range).
pub fn meta_tensor(m: &FoldedModel) -> Tensor {
    let p = &m.preprocess;
    let (kind, value) = match m.sigma_calibration {
        None => (0.0, 0.0),
        Some(SigmaCalibration::Scale { scale }) => (1.0, scale as f32),
        Some(SigmaCalibration::Constant { sigma }) => (2.0, sigma as f32),
    };
    let mut v = p.band_scale.clone();
    v.extend([p.z_shift, p.z_scale, m.sigma_floor as f32, kind, value]);
    v.extend(m.z_range);
    for e in m.extra_scalars() {
        v.extend(e.to_array());
    }
    Tensor::F32(v)
}

/// Blob tensors of the float paths.
pub fn float_tensors(m: &FoldedModel, half: bool) -> Vec<Tensor> {
    let w = |v: &[f32]| {
        if half {
            Tensor::F16(v.iter().map(|x| half::f16::from_f32(*x)).collect())
        } else {
            Tensor::F32(v.to_vec())
        }
    };
    let mut out = vec![meta_tensor(m)];
    for op in &m.ops {
        match op {
            Op::Conv2d(c) => out.extend([w(&c.weight), Tensor::F32(c.bias.clone())]),
            Op::Dense(d) => out.extend([w(&d.weight), Tensor::F32(d.bias.clone())]),
            _ => {}
        }
    }
    out
}

fn requant_pairs(r: &[Requant]) -> Tensor {
    Tensor::I32(r.iter().flat_map(|q| [q.multiplier, q.shift]).collect())
}

/// Blob tensors of the int8 path (`m` is the model `q` quantises: its constants come first).
pub fn int8_tensors(m: &FoldedModel, q: &QuantModel) -> Vec<Tensor> {
    let mut out = vec![meta_tensor(m)];
    for op in &q.ops {
        match op {
            QOp::Conv2d(c) => out.extend([
                Tensor::I8(c.weight.clone()),
                Tensor::I32(c.bias.clone()),
                requant_pairs(&c.requant_pos),
                requant_pairs(&c.requant_neg),
            ]),
            QOp::Dense(d) => out.extend([
                Tensor::I8(d.weight.clone()),
                Tensor::I32(d.bias.clone()),
                requant_pairs(&d.requant_pos),
                requant_pairs(&d.requant_neg),
            ]),
            QOp::LeakyRelu(l) => out.push(Tensor::I32(vec![
                l.pos.multiplier,
                l.pos.shift,
                l.neg.multiplier,
                l.neg.shift,
            ])),
            QOp::Head(h) => out.extend([
                Tensor::I8(h.weight.clone()),
                Tensor::I32(h.bias.clone()),
                Tensor::F32(h.out_scale.clone()),
            ]),
            QOp::Pool2d { .. } | QOp::GlobalAvgPool | QOp::FlattenConcatZ { .. } => {}
        }
    }
    out.push(Tensor::F32(q.tensor_q.iter().map(|t| t.scale).collect()));
    out.push(Tensor::I32(
        q.tensor_q.iter().map(|t| t.zero_point).collect(),
    ));
    out
}

/// One calibration cluster: counts, redshift, and the true log mass if known.
pub struct Sample {
    /// Raw counts `[10][50][50]`.
    pub counts: Vec<u16>,
    /// Redshift.
    pub z: f32,
    /// Exposure at the cluster, seconds, if the file has an `exposure_s` array.
    pub exposure_s: Option<f32>,
    /// log10 M500c / Msun, if labelled.
    pub log_mass: Option<f32>,
}

impl Sample {
    /// The raw scalar inputs a model with preprocessing `p` takes (`[z, extra...]`); an
    /// error if the sample lacks one.
    pub fn scalars(&self, p: &crate::model::PreprocessDesc) -> Result<Vec<f32>> {
        let mut v = vec![self.z];
        for e in &p.extra {
            v.push(match e.quantity {
                crate::model::AuxQuantity::Exposure => self.exposure_s.context(
                    "the model takes the exposure as an input, but the sample has no `exposure_s` array",
                )?,
            });
        }
        Ok(v)
    }
}

/// Read `calibration.npz` as `trainer fit` writes it (`images` u16 `[N, 10, 50, 50]`,
/// `redshift` f32, optional `log_mass` f32).
pub fn read_calibration(path: &Path, input_len: usize) -> Result<Vec<Sample>> {
    let mut npz = npyz::npz::NpzArchive::open(path)
        .with_context(|| format!("{}: cannot open the calibration sample", path.display()))?;
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot open the calibration sample", path.display()))?
        .len();
    let images = {
        let f = crate::npy::npz_array(&mut npz, "images", len)
            .with_context(|| format!("{}: unreadable", path.display()))?
            .with_context(|| format!("{}: no `images` array", path.display()))?;
        let shape = f.shape().to_vec();
        if shape.len() != 4 || (shape[1] * shape[2] * shape[3]) as usize != input_len {
            bail!(
                "{}: `images` has shape {shape:?}, expected [N, 10, 50, 50]",
                path.display()
            );
        }
        f.into_vec::<u16>()
            .with_context(|| format!("{}: `images` must be u16 counts", path.display()))?
    };
    let f32s = |npz: &mut npyz::npz::NpzArchive<_>, key: &str| -> Result<Option<Vec<f32>>> {
        match crate::npy::npz_array(npz, key, len)
            .with_context(|| format!("{}: `{key}` unreadable", path.display()))?
        {
            Some(f) => {
                let v = f
                    .into_vec::<f32>()
                    .with_context(|| format!("{}: `{key}` must be f32", path.display()))?;
                if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                    bail!(
                        "{}: `{key}` has a non-finite value ({}) at cluster {i}",
                        path.display(),
                        v[i]
                    );
                }
                Ok(Some(v))
            }
            None => Ok(None),
        }
    };
    let z = f32s(&mut npz, "redshift")?
        .with_context(|| format!("{}: no `redshift` array", path.display()))?;
    let m = f32s(&mut npz, "log_mass")?;
    let t = f32s(&mut npz, "exposure_s")?;
    let n = images.len() / input_len;
    if z.len() != n
        || m.as_ref().is_some_and(|m| m.len() != n)
        || t.as_ref().is_some_and(|t| t.len() != n)
    {
        bail!(
            "{}: arrays disagree on the number of clusters",
            path.display()
        );
    }
    if let Some(i) = z.iter().position(|&z| z < 0.0) {
        bail!(
            "{}: `redshift` is negative ({}) at cluster {i}",
            path.display(),
            z[i]
        );
    }
    if let Some(t) = &t
        && let Some(i) = t.iter().position(|&t| !(t > 0.0))
    {
        bail!(
            "{}: `exposure_s` is not positive ({}) at cluster {i}",
            path.display(),
            t[i]
        );
    }
    Ok((0..n)
        .map(|i| Sample {
            counts: images[i * input_len..(i + 1) * input_len].to_vec(),
            z: z[i],
            exposure_s: t.as_ref().map(|t| t[i]),
            log_mass: m.as_ref().map(|m| m[i]),
        })
        .collect())
}

/// Scatter of one dtype on the scoring half.
#[derive(Debug, Clone, Serialize)]
pub struct Accuracy {
    /// Dtype name.
    pub dtype: String,
    /// Standard deviation of predicted minus true log mass, dex.
    pub scatter: f64,
    /// Mean of predicted minus true, dex.
    pub bias: f64,
    /// Largest |mu - mu_f32| over the scoring half, dex.
    pub max_abs_diff_vs_f32: f64,
}

/// What `export` wrote and measured.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    /// Architecture hash in the blobs.
    pub arch_hash: u64,
    /// Blob sizes in bytes (f32, f16, int8).
    pub blob_bytes: [usize; 3],
    /// Accuracy per dtype on the scoring half of the calibration sample (if labelled).
    pub accuracy: Vec<Accuracy>,
    /// Calibration / scoring cluster counts.
    pub clusters: (usize, usize),
    /// Activation arena of the generated code, elements.
    pub arena_len: usize,
}

/// How to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Calibration sample [default: `<run_dir>/calibration.npz`].
    pub calib: Option<PathBuf>,
    /// Model name in the generated headers.
    pub name: String,
    /// The command recorded in the generated headers (how to regenerate).
    pub command: String,
    /// Golden sample clusters to embed with their host results (0: none).
    pub samples: usize,
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename,
/// so a crash never leaves a half-written file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Named as the trainer names its temporaries (`.partial-<pid>-`), so that its
    // sweep of stale files finds what a killed export left.
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".partial-{}-", std::process::id()))
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    // Temporary files are private (0600); the outputs are ordinary files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("setting permissions of {}", path.display()))?;
    }
    tmp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Export the run in `run_dir` into `out_dir`: `model.rs` (generated code), the three
/// blobs, their architecture description (`model-arch.json`, see [`crate::load`]), golden
/// samples (`samples.rs` + `samples-counts.bin`) and `report.{md,json}`.
pub fn export(run_dir: &Path, out_dir: &Path, opts: &ExportOptions) -> Result<ExportSummary> {
    let model = Model::load(run_dir)?;
    let folded = model.fold_batch_norm()?;
    let calib_path = opts
        .calib
        .clone()
        .unwrap_or_else(|| run_dir.join("calibration.npz"));
    let samples = load_samples(&calib_path, folded.input.len())?;
    export_described(
        &folded,
        &samples,
        &calib_path,
        out_dir,
        opts,
        &[],
        model.desc.provenance,
    )
}

/// Read a calibration sample ([`read_calibration`]) that can be halved (calibrate, score).
pub fn load_samples(calib_path: &Path, input_len: usize) -> Result<Vec<Sample>> {
    let samples = read_calibration(calib_path, input_len)?;
    if samples.len() < 2 {
        bail!(
            "{}: at least 2 clusters are needed (half calibrate, half score)",
            calib_path.display()
        );
    }
    Ok(samples)
}

/// Export an already folded model (a trained run's or an ONNX import's) into `out_dir`:
/// int8 calibrated on the first half of `samples` (read from `calib_path`), scored on the
/// second; `notes` (where the model came from) are listed at the top of `report.md`.
pub fn export_folded(
    folded: &FoldedModel,
    samples: &[Sample],
    calib_path: &Path,
    out_dir: &Path,
    opts: &ExportOptions,
    notes: &[String],
) -> Result<ExportSummary> {
    let provenance = serde_json::json!({ "notes": notes });
    export_described(
        folded, samples, calib_path, out_dir, opts, notes, provenance,
    )
}

/// [`export_folded`] with the provenance recorded in the architecture description.
fn export_described(
    folded: &FoldedModel,
    samples: &[Sample],
    calib_path: &Path,
    out_dir: &Path,
    opts: &ExportOptions,
    notes: &[String],
    provenance: serde_json::Value,
) -> Result<ExportSummary> {
    let input_len = folded.input.len();
    // The training range: recorded in the architecture description (for `trainer predict`'s
    // flags) and, as the redshifts the model accepts, in every blob (the runtime refuses
    // others).
    let range = TrainingRange::of_sample(calib_path)
        .with_context(|| format!("{}: reading the training range", calib_path.display()))?;
    let mut folded = folded.clone();
    if let Some(r) = &range {
        folded.z_range = accepted_z_range(r.redshift)
            .with_context(|| format!("{}: training redshift range", calib_path.display()))?;
        for (e, range) in folded
            .preprocess
            .extra
            .clone()
            .iter()
            .zip(&mut folded.extra_ranges)
        {
            match e.quantity {
                crate::model::AuxQuantity::Exposure => {
                    if let Some(t) = r.exposure_s {
                        *range = accepted_exposure_range(t).with_context(|| {
                            format!("{}: training exposure range", calib_path.display())
                        })?;
                    }
                }
            }
        }
    }
    let folded = &folded;
    if samples.len() < 2 {
        bail!(
            "{}: at least 2 clusters are needed (half calibrate, half score)",
            calib_path.display()
        );
    }
    let (cal, score) = samples.split_at(samples.len() / 2);
    let scalars = |set: &[Sample]| -> Result<Vec<Vec<f32>>> {
        set.iter()
            .map(|s| s.scalars(&folded.preprocess))
            .collect::<Result<_>>()
            .with_context(|| calib_path.display().to_string())
    };
    let (cal_scalars, score_scalars) = (scalars(cal)?, scalars(score)?);
    let inputs: Vec<(&[u16], &[f32])> = cal
        .iter()
        .zip(&cal_scalars)
        .map(|(s, z)| (s.counts.as_slice(), z.as_slice()))
        .collect();
    let mut q = quantize(folded, &calibrate(folded, &inputs)?)?;
    crate::quantize::correct_head_bias(&mut q, folded, &inputs)?;
    let hash = arch_hash(folded);
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let blobs = [
        (
            "f32",
            blob::write(Dtype::F32, hash, &float_tensors(folded, false)),
        ),
        (
            "f16",
            blob::write(Dtype::F16, hash, &float_tensors(folded, true)),
        ),
        (
            "int8",
            blob::write(Dtype::Int8, hash, &int8_tensors(folded, &q)),
        ),
    ];
    for (name, bytes) in &blobs {
        write_atomic(&out_dir.join(format!("model-{name}.bin")), bytes)?;
    }
    let observation = range.as_ref().and_then(|r| r.observation.as_ref());
    let module = crate::emit::module(folded, hash, &opts.name, &opts.command, observation)?;
    write_atomic(&out_dir.join("model.rs"), module.as_bytes())?;
    // What a host needs to run the blobs (`trainer predict`): the layer list they lack and
    // the training range of the model.
    let arch = ArchDescription::of(folded, &opts.name, &opts.command, range.clone(), provenance);
    write_atomic(&out_dir.join(ARCH_FILE), &serde_json::to_vec_pretty(&arch)?)?;
    if opts.samples > 0 {
        let (rs, counts) = golden(folded, &q, score, opts, calib_path, hash)?;
        write_atomic(&out_dir.join("samples.rs"), rs.as_bytes())?;
        write_atomic(&out_dir.join("samples-counts.bin"), &counts)?;
    }
    let mut accuracy = Vec::new();
    if score.iter().all(|s| s.log_mass.is_some()) {
        let mut mus: Vec<Vec<f64>> = vec![Vec::new(); 3];
        for (s, z) in score.iter().zip(&score_scalars) {
            mus[0].push(folded.predict(&s.counts, z, FloatPath::F32)?.mu);
            mus[1].push(folded.predict(&s.counts, z, FloatPath::F16)?.mu);
            mus[2].push(q.predict(&s.counts, z)?.mu);
        }
        for (k, name) in ["f32", "f16", "int8"].iter().enumerate() {
            let r: Vec<f64> = mus[k]
                .iter()
                .zip(score)
                .map(|(m, s)| m - f64::from(s.log_mass.expect("labelled")))
                .collect();
            let n = r.len() as f64;
            let bias = r.iter().sum::<f64>() / n;
            let scatter = (r.iter().map(|v| (v - bias).powi(2)).sum::<f64>() / n).sqrt();
            let max_abs_diff_vs_f32 = mus[k]
                .iter()
                .zip(&mus[0])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            accuracy.push(Accuracy {
                dtype: name.to_string(),
                scatter,
                bias,
                max_abs_diff_vs_f32,
            });
        }
    }
    let arena_len = crate::plan::arena_len(&crate::plan::steps(folded)?);
    let summary = ExportSummary {
        arch_hash: hash,
        blob_bytes: [blobs[0].1.len(), blobs[1].1.len(), blobs[2].1.len()],
        accuracy,
        clusters: (cal.len(), score.len()),
        arena_len,
    };
    let size = crate::report::report(folded)?;
    let mut md = format!(
        "# Export of `{}`\n\ngenerated by `{}` (codegen {})\n\n```\n{size}\n```\n\n",
        opts.name,
        opts.command,
        env!("CARGO_PKG_VERSION")
    );
    for n in notes {
        md.push_str(&format!("- {n}\n"));
    }
    if !notes.is_empty() {
        md.push('\n');
    }
    md.push_str(&format!(
        "blobs: f32 {} B, f16 {} B, int8 {} B; architecture hash {:#018x}\n\n",
        summary.blob_bytes[0], summary.blob_bytes[1], summary.blob_bytes[2], hash
    ));
    md.push_str(&format!(
        "memory plan of the generated code: one arena of {arena_len} elements = {} B as int8, {} B as f32 (f32 and f16 models), plus the caller's {} B of u16 counts\n\n",
        arena_len,
        4 * arena_len,
        2 * input_len
    ));
    md.push_str(&observation_md(range.as_ref()));
    if !summary.accuracy.is_empty() {
        md.push_str(&format!("accuracy on {} validation clusters (int8 calibrated on {} others):\n\n| dtype | scatter (dex) | bias | max |mu - mu_f32| |\n|---|---|---|---|\n", score.len(), cal.len()));
        for a in &summary.accuracy {
            md.push_str(&format!(
                "| {} | {:.4} | {:+.4} | {:.4} |\n",
                a.dtype, a.scatter, a.bias, a.max_abs_diff_vs_f32
            ));
        }
    }
    write_atomic(&out_dir.join("report.md"), md.as_bytes())?;
    write_atomic(
        &out_dir.join("report.json"),
        &serde_json::to_vec_pretty(&summary)?,
    )?;
    Ok(summary)
}

/// The report's paragraph on what the model was trained on: ranges and observation
/// conventions (the device checks its inputs against them).
fn observation_md(range: Option<&TrainingRange>) -> String {
    let Some(r) = range else {
        return "training range and observation conventions: unknown (no simulation configuration in the calibration sample); the generated `DETECTION` is `None`\n\n".into();
    };
    let mut md = format!(
        "training range ({}): redshift {}-{}",
        r.source, r.redshift[0], r.redshift[1]
    );
    if let Some([lo, hi]) = r.exposure_s {
        md.push_str(&format!(", exposure {lo}-{hi} s"));
    }
    md.push('\n');
    match &r.observation {
        Some(o) => md.push_str(&format!(
            "observation conventions: band edges {:?} keV, {}x{} pixels of {} arcsec, cluster at the centre pixel corner ({}, {}), flat LCDM H0 = {}, Omega_m = {}; detection check (`DETECTION`, `Flags::FEW_COUNTS`): {}\n\n",
            o.band_edges_kev,
            o.side_px,
            o.side_px,
            o.pixel_arcsec,
            o.side_px as f64 / 2.0,
            o.side_px as f64 / 2.0,
            o.h0,
            o.omega_m,
            match o.soft_bands() {
                Some([a, b]) => format!(
                    "at least {} net counts in bands {a}-{} within {} kpc",
                    runtime::detect::MIN_NET_COUNTS,
                    b - 1,
                    runtime::detect::APERTURE_KPC
                ),
                None => "none (no contiguous 0.5-2 keV bands)".into(),
            }
        )),
        None => md.push_str("observation conventions: unknown; the generated `DETECTION` is `None`\n\n"),
    }
    md
}

/// A training redshift range as the f32 range a blob records: within
/// `[0, runtime::model::MAX_REDSHIFT]` (the runtime refuses other ranges) and ordered.
pub fn accepted_z_range(r: [f64; 2]) -> Result<[f32; 2]> {
    let max = f64::from(runtime::model::MAX_REDSHIFT);
    if !(0.0 <= r[0] && r[0] <= r[1] && r[1] <= max) {
        bail!(
            "redshift range [{}, {}] is not an ordered range within [0, {max}]",
            r[0],
            r[1]
        );
    }
    Ok([r[0] as f32, r[1] as f32])
}

/// A training exposure range (seconds) as the f32 range a blob records, widened by the f32
/// rounding so both ends stay inside: within `(0, runtime::model::MAX_EXPOSURE_S]`.
pub fn accepted_exposure_range(r: [f64; 2]) -> Result<[f32; 2]> {
    let max = f64::from(runtime::model::MAX_EXPOSURE_S);
    if !(0.0 < r[0] && r[0] <= r[1] && r[1] <= max) {
        bail!(
            "exposure range [{}, {}] s is not an ordered range within (0, {max}]",
            r[0],
            r[1]
        );
    }
    let (lo, hi) = (r[0] as f32, r[1] as f32);
    let lo = if f64::from(lo) > r[0] {
        lo.next_down()
    } else {
        lo
    };
    let hi = if f64::from(hi) < r[1] {
        hi.next_up()
    } else {
        hi
    };
    Ok([
        lo.max(f32::MIN_POSITIVE),
        hi.min(runtime::model::MAX_EXPOSURE_S),
    ])
}

/// Pick `opts.samples` clusters of the scoring half (at evenly spaced quantiles of the true
/// mass when labelled, else the first ones) and write them with the reference
/// interpreters' results as `samples.rs` text and the little-endian u16 counts.
fn golden(
    folded: &FoldedModel,
    q: &QuantModel,
    score: &[Sample],
    opts: &ExportOptions,
    calib_path: &Path,
    hash: u64,
) -> Result<(String, Vec<u8>)> {
    let k = opts.samples.min(score.len());
    let mut order: Vec<usize> = (0..score.len()).collect();
    let labelled = score.iter().all(|s| s.log_mass.is_some());
    let picks: Vec<usize> = if labelled {
        order.sort_by(|a, b| {
            score[*a]
                .log_mass
                .partial_cmp(&score[*b].log_mass)
                .expect("finite masses")
                .then(a.cmp(b))
        });
        (0..k)
            .map(|j| order[((2 * j + 1) * score.len()) / (2 * k)])
            .collect()
    } else {
        (0..k).collect()
    };
    let bits = |v: f64| (v as f32).to_bits();
    let fmt_f32 = |v: f32| format!("f32::from_bits({:#010x})", v.to_bits());
    let mut results: [Vec<String>; 3] = Default::default();
    let mut counts = Vec::new();
    let mut scalars = Vec::new();
    for &i in &picks {
        let s = &score[i];
        let z = s.scalars(&folded.preprocess)?;
        let preds = [
            folded.predict(&s.counts, &z, FloatPath::F32)?,
            folded.predict(&s.counts, &z, FloatPath::F16)?,
            q.predict(&s.counts, &z)?,
        ];
        scalars.push(format!(
            "[{}]",
            z.iter().map(|v| fmt_f32(*v)).collect::<Vec<_>>().join(", ")
        ));
        for (r, p) in results.iter_mut().zip(preds) {
            r.push(format!("[{:#010x}, {:#010x}]", bits(p.mu), bits(p.sigma)));
        }
        counts.extend(s.counts.iter().flat_map(|c| c.to_le_bytes()));
    }
    let file_name = calib_path.file_name().map_or_else(
        || calib_path.display().to_string(),
        |f| f.to_string_lossy().into_owned(),
    );
    let mut w = String::new();
    writeln!(
        w,
        "//! Golden vectors of model `{}` (architecture {hash:#018x}): {k} clusters with the host's results.",
        opts.name
    )?;
    writeln!(w, "//!")?;
    writeln!(
        w,
        "//! Generated by `{}` (codegen {}). Do not edit.",
        opts.command,
        env!("CARGO_PKG_VERSION")
    )?;
    writeln!(w, "//!")?;
    writeln!(
        w,
        "//! Provenance: clusters {picks:?} of the scoring half (the second half) of `{file_name}`, chosen at evenly spaced quantiles of the true mass; results from codegen's reference interpreters (`FoldedModel::predict` for f32 and f16, `QuantModel::predict` for int8), which the generated code must reproduce: int8 bit for bit everywhere, f32 and f16 bit for bit on targets without fused multiply-add contraction."
    )?;
    writeln!(w)?;
    writeln!(w, "/// Number of clusters.")?;
    writeln!(w, "pub const N: usize = {k};")?;
    writeln!(w, "/// u16 counts per cluster.")?;
    writeln!(w, "pub const INPUT_LEN: usize = {};", folded.input.len())?;
    writeln!(
        w,
        "static COUNTS: runtime::blob::Aligned<[u8; N * INPUT_LEN * 2]> = runtime::blob::Aligned(*include_bytes!(\"samples-counts.bin\"));"
    )?;
    writeln!(
        w,
        "/// The raw counts of cluster `i` (`[band][y][x]`), borrowed in place."
    )?;
    writeln!(
        w,
        "pub fn counts(i: usize) -> Option<&'static [u16]> {{ runtime::blob::as_u16(COUNTS.0.get(i * INPUT_LEN * 2..(i + 1) * INPUT_LEN * 2)?) }}"
    )?;
    writeln!(w, "/// Redshifts.")?;
    writeln!(
        w,
        "pub const REDSHIFT: [f32; N] = [{}];",
        picks
            .iter()
            .map(|&i| fmt_f32(score[i].z))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        w,
        "/// Every scalar input of each cluster, as `infer` takes them: {}.",
        folded
            .preprocess
            .scalar_names()
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        w,
        "pub const SCALARS: [[f32; {}]; N] = [{}];",
        folded.preprocess.scalars(),
        scalars.join(", ")
    )?;
    writeln!(
        w,
        "/// True log10 M500c / Msun (NaN when the sample is unlabelled)."
    )?;
    writeln!(
        w,
        "pub const TRUE_LOG_MASS: [f32; N] = [{}];",
        picks
            .iter()
            .map(|&i| fmt_f32(score[i].log_mass.unwrap_or(f32::NAN)))
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    for (name, r) in ["F32", "F16", "INT8"].iter().zip(&results) {
        writeln!(
            w,
            "/// Host results of the {} model: `[log_mass, sigma]` as f32 bit patterns.",
            name.to_lowercase()
        )?;
        writeln!(w, "pub const {name}: [[u32; 2]; N] = [{}];", r.join(", "))?;
    }
    let file = syn::parse_file(&w).context("codegen produced invalid Rust (a codegen bug)")?;
    Ok((prettyplease::unparse(&file), counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::WriterBuilder;

    fn calibration(path: &Path, n: u64, z: &[f32]) {
        let f = std::fs::File::create(path).unwrap();
        let mut w = npyz::npz::NpzWriter::new(std::io::BufWriter::new(f));
        let mut a = w
            .array::<u16>("images", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[n, 2, 2, 2])
            .begin_nd()
            .unwrap();
        a.extend((0..n * 8).map(|i| i as u16)).unwrap();
        a.finish().unwrap();
        let mut a = w
            .array::<f32>("redshift", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[z.len() as u64])
            .begin_nd()
            .unwrap();
        a.extend(z.iter().copied()).unwrap();
        a.finish().unwrap();
    }

    #[test]
    fn calibration_samples_read_and_bad_values_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("calibration.npz");
        calibration(&p, 2, &[0.1, 0.4]);
        let s = read_calibration(&p, 8).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[1].z, s[1].counts[0]), (0.4, 8));
        for (z, want) in [
            ([0.1, f32::NAN], "non-finite value (NaN) at cluster 1"),
            ([-0.5, 0.2], "negative (-0.5) at cluster 0"),
        ] {
            calibration(&p, 2, &z);
            let e = format!("{:#}", read_calibration(&p, 8).err().unwrap());
            assert!(e.contains("calibration.npz") && e.contains(want), "{e}");
        }
    }
}
