//! `codegen export`: from a trained run to weight blobs for every dtype and a
//! report of what each costs (bytes, RAM, MACs) and what quantisation costs in
//! accuracy, measured on the run's own validation sample (`calibration.npz`):
//! its first half calibrates the int8 activation ranges (and the head's bias correction),
//! the second half scores.
//!
//! Blob tensor order (the generated model code reads them in this order):
//! - f32 / f16: per convolution and dense layer (head included) `weight`
//!   (f32 or f16), `bias` (f32).
//! - int8: per convolution and hidden dense layer `weight` (i8), `bias` (i32),
//!   `requant_pos`, `requant_neg` (i32 pairs: multiplier, shift); per stand-alone
//!   leaky ReLU one i32 tensor (pos mult, pos shift, neg mult, neg shift); the head
//!   `weight` (i8), `bias` (i32), `out_scale` (f32); last, the activation
//!   quantisation table: scales (f32) and zero points (i32) of every tensor.

use crate::blob::{self, Tensor};
use crate::interp::FloatPath;
use crate::model::{FoldedModel, Model, Op};
use crate::quantize::{QOp, QuantModel, calibrate, quantize};
use anyhow::{Context, Result, bail};
use runtime::blob::{Dtype, fnv1a64};
use runtime::quant::Requant;
use serde::Serialize;
use std::path::Path;

/// Fingerprint of an architecture: FNV-1a 64 of its folded layer list and input shape.
pub fn arch_hash(m: &FoldedModel) -> u64 {
    let text = serde_json::to_string(&(m.input, m.layers())).expect("layers serialise");
    fnv1a64(text.as_bytes())
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
    let mut out = Vec::new();
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

/// Blob tensors of the int8 path.
pub fn int8_tensors(q: &QuantModel) -> Vec<Tensor> {
    let mut out = Vec::new();
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
    /// log10 M500c / Msun, if labelled.
    pub log_mass: Option<f32>,
}

/// Read `calibration.npz` as `trainer fit` writes it (`images` u16 `[N, 10, 50, 50]`,
/// `redshift` f32, optional `log_mass` f32).
pub fn read_calibration(path: &Path, input_len: usize) -> Result<Vec<Sample>> {
    let mut npz = npyz::npz::NpzArchive::open(path)
        .with_context(|| format!("{}: cannot open the calibration sample", path.display()))?;
    let images = {
        let f = npz
            .by_name("images")
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
        match npz
            .by_name(key)
            .with_context(|| format!("{}: unreadable", path.display()))?
        {
            Some(f) => Ok(Some(f.into_vec::<f32>().with_context(|| {
                format!("{}: `{key}` must be f32", path.display())
            })?)),
            None => Ok(None),
        }
    };
    let z = f32s(&mut npz, "redshift")?
        .with_context(|| format!("{}: no `redshift` array", path.display()))?;
    let m = f32s(&mut npz, "log_mass")?;
    let n = images.len() / input_len;
    if z.len() != n || m.as_ref().is_some_and(|m| m.len() != n) {
        bail!(
            "{}: arrays disagree on the number of clusters",
            path.display()
        );
    }
    Ok((0..n)
        .map(|i| Sample {
            counts: images[i * input_len..(i + 1) * input_len].to_vec(),
            z: z[i],
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
}

/// Export the run in `run_dir` into `out_dir`.
pub fn export(run_dir: &Path, out_dir: &Path, calib: Option<&Path>) -> Result<ExportSummary> {
    let folded = Model::load(run_dir)?.fold_batch_norm()?;
    let calib_path = calib
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run_dir.join("calibration.npz"));
    let input_len = folded.input.c * folded.input.h * folded.input.w;
    let samples = read_calibration(&calib_path, input_len)?;
    if samples.len() < 2 {
        bail!(
            "{}: at least 2 clusters are needed (half calibrate, half score)",
            calib_path.display()
        );
    }
    let (cal, score) = samples.split_at(samples.len() / 2);
    let inputs: Vec<(&[u16], f32)> = cal.iter().map(|s| (s.counts.as_slice(), s.z)).collect();
    let mut q = quantize(&folded, &calibrate(&folded, &inputs)?)?;
    crate::quantize::correct_head_bias(&mut q, &folded, &inputs)?;
    let hash = arch_hash(&folded);
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let blobs = [
        (
            Dtype::F32,
            "f32",
            blob::write(Dtype::F32, hash, &float_tensors(&folded, false)),
        ),
        (
            Dtype::F16,
            "f16",
            blob::write(Dtype::F16, hash, &float_tensors(&folded, true)),
        ),
        (
            Dtype::Int8,
            "int8",
            blob::write(Dtype::Int8, hash, &int8_tensors(&q)),
        ),
    ];
    for (_, name, bytes) in &blobs {
        let p = out_dir.join(format!("model-{name}.bin"));
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    let mut accuracy = Vec::new();
    if score.iter().all(|s| s.log_mass.is_some()) {
        let mut mus: Vec<Vec<f64>> = vec![Vec::new(); 3];
        for s in score {
            mus[0].push(folded.predict(&s.counts, s.z, FloatPath::F32)?.mu);
            mus[1].push(folded.predict(&s.counts, s.z, FloatPath::F16)?.mu);
            mus[2].push(q.predict(&s.counts, s.z)?.mu);
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
    let summary = ExportSummary {
        arch_hash: hash,
        blob_bytes: [blobs[0].2.len(), blobs[1].2.len(), blobs[2].2.len()],
        accuracy,
        clusters: (cal.len(), score.len()),
    };
    let size = crate::report::report(&folded)?;
    let mut md = format!(
        "# Export of {}\n\ngenerated by `codegen export {}`\n\n```\n{size}\n```\n\n",
        run_dir.display(),
        run_dir.display()
    );
    md.push_str(&format!(
        "blobs: f32 {} B, f16 {} B, int8 {} B; architecture hash {:#018x}\n\n",
        summary.blob_bytes[0], summary.blob_bytes[1], summary.blob_bytes[2], hash
    ));
    if !summary.accuracy.is_empty() {
        md.push_str(&format!("accuracy on {} validation clusters (int8 calibrated on {} others):\n\n| dtype | scatter (dex) | bias | max |mu - mu_f32| |\n|---|---|---|---|\n", score.len(), cal.len()));
        for a in &summary.accuracy {
            md.push_str(&format!(
                "| {} | {:.4} | {:+.4} | {:.4} |\n",
                a.dtype, a.scatter, a.bias, a.max_abs_diff_vs_f32
            ));
        }
    }
    std::fs::write(out_dir.join("report.md"), md)?;
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    Ok(summary)
}
