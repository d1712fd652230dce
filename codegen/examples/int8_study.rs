//! What int8 quantisation costs the `edge` model, and where (see `docs/quantization.md` for
//! the findings).
//!
//! ```text
//! cargo run --release -p codegen --example int8_study -- [key=value ...]
//!   data=data/mock-erass8-s1-n20000.npz  run=runs/e30
//!   ncal=4000 nscore=6000   calibration / scoring clusters: the first `ncal` of the file's
//!                           first half calibrate, the first `nscore` of its second half
//!                           score (swap=1 exchanges the halves; calstart=I scorestart=J
//!                           take them from clusters I.. and J.. instead)
//!   threads=2               worker threads
//!   methods=minmax,p99.99,mse
//!                           activation-range methods to compare (pP = P-th percentile;
//!                           `mse/minmax@0:1` = mse but min/max for tensors 0 and 1)
//!   deciles=1               per method, the int8 error in deciles of total counts
//!   attrib=mse              per-tensor attribution with that method's parameters: fake
//!                           quantisation of one tensor group at a time (or of all but
//!                           one) in the f32 pass
//!   pipeline=1              the export path: calibrate() (default method, single-threaded)
//!                           + correct_head_bias, with the bias
//! ```
//!
//! Scatter is the standard deviation of predicted minus true log mass and `sd(d mu)` that
//! of int8 minus f32 mu: both are shift-invariant, so the head-bias correction (a constant
//! shift of mu) is left out when comparing methods; it changes only the bias.

use anyhow::{Context, Result};
use codegen::arch::{PoolKind, Shape};
use codegen::export::{Sample, read_calibration};
use codegen::interp::{FloatPath, conv2d_f32, dense_f32, pool_f32, pool_s8, preprocess};
use codegen::model::{FoldedModel, Model, Op};
use codegen::quantize::{
    ActivationStats, Calibration, QOp, QuantModel, RangeMethod, calibrate, correct_head_bias,
    quantize,
};
use runtime::quant::QParams;
use std::collections::HashMap;
use std::time::Instant;

/// [`read_calibration`], cached as raw little-endian arrays in the temporary directory
/// (decompressing the NPZ takes longer than a study run).
fn read_cached(data: &str, len: usize) -> Result<Vec<Sample>> {
    let name = std::path::Path::new(data)
        .file_name()
        .context("data file name")?
        .to_string_lossy()
        .to_string();
    let cache = std::env::temp_dir().join(format!("int8_study-{name}.raw"));
    if let Ok(bytes) = std::fs::read(&cache) {
        let n = u64::from_le_bytes(bytes[..8].try_into()?) as usize;
        let (img, rest) = bytes[8..].split_at(n * len * 2);
        let f = |k: usize| f32::from_le_bytes(rest[4 * k..4 * k + 4].try_into().unwrap());
        return Ok((0..n)
            .map(|i| Sample {
                counts: img[i * len * 2..(i + 1) * len * 2]
                    .chunks_exact(2)
                    .map(|b| u16::from_le_bytes([b[0], b[1]]))
                    .collect(),
                z: f(i),
                exposure_s: None,
                log_mass: Some(f(n + i)),
            })
            .collect());
    }
    let samples = read_calibration(std::path::Path::new(data), len)?;
    let mut out = (samples.len() as u64).to_le_bytes().to_vec();
    for s in &samples {
        out.extend(s.counts.iter().flat_map(|c| c.to_le_bytes()));
    }
    out.extend(samples.iter().flat_map(|s| s.z.to_le_bytes()));
    out.extend(
        samples
            .iter()
            .flat_map(|s| s.log_mass.context("labelled").unwrap().to_le_bytes()),
    );
    std::fs::write(&cache, out)?;
    Ok(samples)
}

/// `f` over `items` on `threads` threads, results in order.
fn par_map<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunk = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        let hs: Vec<_> = items
            .chunks(chunk)
            .map(|c| {
                let f = &f;
                s.spawn(move || c.iter().map(f).collect::<Vec<R>>())
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("worker panicked"))
            .collect()
    })
}

fn sd(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt()
}

/// The scored half with f32 predictions.
struct Scored<'a> {
    samples: &'a [Sample],
    mu32: Vec<f64>,
    truth: Vec<f64>,
    total: Vec<f64>,
}

impl Scored<'_> {
    fn scatter(&self, mu: &[f64]) -> f64 {
        let r: Vec<f64> = mu.iter().zip(&self.truth).map(|(m, t)| m - t).collect();
        sd(&r)
    }
    /// (scatter, scatter - f32, sd(mu - mu32), max |mu - mu32|).
    fn figures(&self, mu: &[f64]) -> (f64, f64, f64, f64) {
        let s = self.scatter(mu);
        let d: Vec<f64> = mu.iter().zip(&self.mu32).map(|(a, b)| a - b).collect();
        let max = d.iter().fold(0f64, |m, v| m.max(v.abs()));
        (s, s - self.scatter(&self.mu32), sd(&d), max)
    }
    fn line(&self, label: &str, mu: &[f64]) {
        let (s, ds, sdd, max) = self.figures(mu);
        println!("{label:<44} scatter {s:.4}  d {ds:+.4}  sd(d mu) {sdd:.4}  max {max:.3}");
    }
}

/// Int8 mu of every scored cluster.
fn int8_mu(q: &QuantModel, sc: &Scored, threads: usize) -> Vec<f64> {
    par_map(sc.samples, threads, |s| {
        q.predict(&s.counts, &[s.z]).unwrap().mu
    })
}

/// f32 forward pass with fake quantisation (`dequantize(quantize(v))`) of the tensors
/// that have parameters in `fq` (`[0]` input, `[i + 1]` op i's output).
fn forward_fq(m: &FoldedModel, x: &[f32], z: &[f32], fq: &[Option<QParams>]) -> f32 {
    let shapes = m.shapes().unwrap();
    let fake = |v: &mut [f32], p: &Option<QParams>| {
        if let Some(p) = p {
            v.iter_mut().for_each(|x| *x = p.dequantize(p.quantize(*x)));
        }
    };
    let mut cur = x.to_vec();
    fake(&mut cur, &fq[0]);
    for (i, op) in m.ops.iter().enumerate() {
        let s = shapes[i];
        cur = match op {
            Op::Conv2d(c) => conv2d_f32(&cur, s, &c.geom, &c.weight, &c.bias, c.slope),
            // Pooling of a quantised tensor works on its int8 values, as in the interpreter
            // (whose average rounds the raw int8 sum half away from zero: with the zero
            // point near -128 ties go down, not up as rounding the real value would).
            Op::Pool2d { kind, size } => pool_fq(&cur, s, *kind, *size, *size, &fq[i]),
            Op::GlobalAvgPool => pool_fq(&cur, s, PoolKind::Avg, s.h, s.w, &fq[i]),
            Op::FlattenConcatZ => cur.iter().chain(z).copied().collect(),
            Op::Dense(d) => dense_f32(&cur, d.units, &d.weight, &d.bias, d.slope),
            Op::LeakyRelu { slope } => cur
                .iter()
                .map(|v| if *v < 0.0 { v * slope } else { *v })
                .collect(),
        };
        fake(&mut cur, &fq[i + 1]);
    }
    cur[0]
}

fn pool_fq(
    x: &[f32],
    s: Shape,
    kind: PoolKind,
    kh: usize,
    kw: usize,
    p: &Option<QParams>,
) -> Vec<f32> {
    match p {
        None => pool_f32(x, s, kind, kh, kw),
        Some(p) => {
            let q: Vec<i8> = x.iter().map(|v| p.quantize(*v)).collect();
            pool_s8(&q, s, kind, kh, kw)
                .iter()
                .map(|v| p.dequantize(*v))
                .collect()
        }
    }
}

/// The folded model with every weight replaced by its int8 value times its scale.
fn with_int8_weights(m: &FoldedModel, q: &QuantModel) -> FoldedModel {
    let mut out = m.clone();
    for (op, qop) in out.ops.iter_mut().zip(&q.ops) {
        match (op, qop) {
            (Op::Conv2d(c), QOp::Conv2d(qc)) => {
                let per = c.weight.len() / c.geom.filters;
                for (k, w) in c.weight.iter_mut().enumerate() {
                    *w = f32::from(qc.weight[k]) * qc.w_scale[k / per];
                }
            }
            (Op::Dense(d), QOp::Dense(qd)) => {
                for (k, w) in d.weight.iter_mut().enumerate() {
                    *w = f32::from(qd.weight[k]) * qd.w_scale[k % d.units];
                }
            }
            (Op::Dense(d), QOp::Head(h)) => {
                for (k, w) in d.weight.iter_mut().enumerate() {
                    *w = f32::from(h.weight[k]) * h.w_scale[k % d.units];
                }
            }
            _ => {}
        }
    }
    out
}

fn fq_mu(m: &FoldedModel, fq: &[Option<QParams>], sc: &Scored, threads: usize) -> Vec<f64> {
    par_map(sc.samples, threads, |s| {
        let (x, zp) = preprocess(&m.preprocess, m.input, &s.counts, &[s.z]).unwrap();
        f64::from(forward_fq(m, &x, &zp, fq))
    })
}

/// Tensor groups sharing parameters (pooling and concatenation pass them through).
fn groups(m: &FoldedModel) -> Vec<Vec<usize>> {
    let mut g: Vec<Vec<usize>> = vec![vec![0]];
    for (i, op) in m.ops.iter().enumerate() {
        if matches!(
            op,
            Op::Pool2d { .. } | Op::GlobalAvgPool | Op::FlattenConcatZ
        ) {
            g.last_mut().unwrap().push(i + 1);
        } else if i + 1 < m.ops.len() {
            g.push(vec![i + 1]);
        }
    }
    g
}

fn names(m: &FoldedModel) -> Vec<String> {
    std::iter::once("input".to_string())
        .chain(m.ops.iter().enumerate().map(|(i, op)| {
            let n = match op {
                Op::Conv2d(_) => "conv",
                Op::Pool2d { .. } => "pool",
                Op::GlobalAvgPool => "gap",
                Op::FlattenConcatZ => "concat",
                Op::Dense(_) => "dense",
                Op::LeakyRelu { .. } => "leaky",
            };
            format!("{i}:{n}")
        }))
        .collect()
}

/// Statistics of the calibration half, gathered on `threads` threads and merged.
fn stats(m: &FoldedModel, cal: &[Sample], threads: usize) -> ActivationStats {
    let chunk = cal.len().div_ceil(threads).max(1);
    let parts: Vec<ActivationStats> = std::thread::scope(|s| {
        let hs: Vec<_> = cal
            .chunks(chunk)
            .map(|c| {
                s.spawn(move || {
                    let mut st = ActivationStats::new(m);
                    for smp in c {
                        let (x, zp) =
                            preprocess(&m.preprocess, m.input, &smp.counts, &[smp.z]).unwrap();
                        st.observe(m, &x, &zp).unwrap();
                    }
                    st
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut it = parts.into_iter();
    let mut st = it.next().expect("calibration clusters");
    for p in it {
        st.merge(&p).unwrap();
    }
    st
}

fn main() -> Result<()> {
    let args: HashMap<String, String> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let get = |k: &str, d: &str| args.get(k).cloned().unwrap_or_else(|| d.to_string());
    let num = |k: &str, d: usize| -> usize { get(k, &d.to_string()).parse().expect(k) };
    let data = get("data", "data/mock-erass8-s1-n20000.npz");
    let run = get("run", "runs/e30");
    let (ncal, nscore, threads) = (num("ncal", 4000), num("nscore", 6000), num("threads", 2));
    let swap = num("swap", 0) == 1;
    let t0 = Instant::now();
    let folded = Model::load(&run)?.fold_batch_norm()?;
    let len = folded.input.len();
    let samples = read_cached(&data, len)?;
    let (a, b) = samples.split_at(samples.len() / 2);
    let (a, b) = if swap { (b, a) } else { (a, b) };
    let (cal, score) = match (args.get("calstart"), args.get("scorestart")) {
        (Some(c), Some(s)) => {
            let (c, s): (usize, usize) = (c.parse()?, s.parse()?);
            (&samples[c..c + ncal], &samples[s..s + nscore])
        }
        _ => (&a[..ncal.min(a.len())], &b[..nscore.min(b.len())]),
    };
    println!(
        "{} clusters read in {:.1} s; calibrating on {}, scoring {} (swap={swap})",
        samples.len(),
        t0.elapsed().as_secs_f64(),
        cal.len(),
        score.len()
    );

    let t = Instant::now();
    let mu32 = par_map(score, threads, |s| {
        folded
            .predict(&s.counts, &[s.z], FloatPath::F32)
            .unwrap()
            .mu
    });
    let sc = Scored {
        samples: score,
        truth: score
            .iter()
            .map(|s| f64::from(s.log_mass.context("labelled").unwrap()))
            .collect(),
        total: score
            .iter()
            .map(|s| s.counts.iter().map(|c| f64::from(*c)).sum())
            .collect(),
        mu32,
    };
    println!(
        "f32 scatter {:.4} ({:.1} s)",
        sc.scatter(&sc.mu32),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let st = stats(&folded, cal, threads);
    println!(
        "calibration statistics in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let nm = names(&folded);
    let gr = groups(&folded);
    let n = folded.ops.len();
    let parse = |m: &str| -> RangeMethod {
        match m {
            "minmax" => RangeMethod::MinMax,
            "mse" => RangeMethod::Mse,
            p => RangeMethod::Percentile(p.trim_start_matches('p').parse().expect("method")),
        }
    };
    let mut by_brightness: Vec<usize> = (0..sc.total.len()).collect();
    by_brightness.sort_by(|i, j| sc.total[*i].total_cmp(&sc.total[*j]));

    println!("\n-- activation-range methods (real int8 interpreter) --");
    let mut quantised = HashMap::new();
    for m in get("methods", "minmax,p99.99,mse").split(',') {
        let t = Instant::now();
        // `base/other@t1:t2`: `base` everywhere but tensors t1, t2 (`other`).
        let c: Calibration = match m.split_once('/') {
            None => st.calibration(&folded, parse(m))?,
            Some((base, rest)) => {
                let (other, ts) = rest.split_once('@').context("base/other@t1:t2")?;
                let mut c = st.calibration(&folded, parse(base))?;
                let o = st.calibration(&folded, parse(other))?;
                for t in ts.split(':') {
                    let t: usize = t.parse()?;
                    c.ranges[t] = o.ranges[t];
                }
                c
            }
        };
        let secs = t.elapsed().as_secs_f64();
        let q = quantize(&folded, &c)?;
        let mu = int8_mu(&q, &sc, threads);
        sc.line(m, &mu);
        let r: Vec<String> = gr
            .iter()
            .map(|g| {
                let (lo, hi) = g
                    .iter()
                    .map(|t| c.ranges[*t])
                    .fold((0f32, 0f32), |a, b| (a.0.min(b.0), a.1.max(b.1)));
                format!("{}:[{lo:.2},{hi:.2}]", nm[g[0]])
            })
            .collect();
        println!("    ranges {} (chosen in {secs:.1} s)", r.join(" "));
        let brightest = &by_brightness[by_brightness.len() * 99 / 100..];
        let d: Vec<f64> = brightest.iter().map(|i| mu[*i] - sc.mu32[*i]).collect();
        println!(
            "    brightest 1 %: mean d {:+.4} sd(d) {:.4} max|d| {:.3}",
            d.iter().sum::<f64>() / d.len() as f64,
            sd(&d),
            d.iter().fold(0f64, |m, v| m.max(v.abs()))
        );
        if num("deciles", 0) == 1 {
            println!("    error against brightness (total counts), deciles:");
            for part in by_brightness.chunks(by_brightness.len().div_ceil(10)) {
                let d: Vec<f64> = part.iter().map(|i| mu[*i] - sc.mu32[*i]).collect();
                let r32: Vec<f64> = part.iter().map(|i| sc.mu32[*i] - sc.truth[*i]).collect();
                let r8: Vec<f64> = part.iter().map(|i| mu[*i] - sc.truth[*i]).collect();
                println!(
                    "    counts {:>7.0}..{:>7.0}: mean d {:+.4} sd(d) {:.4} max|d| {:.3}  scatter f32 {:.4} int8 {:.4}",
                    sc.total[part[0]],
                    sc.total[*part.last().unwrap()],
                    d.iter().sum::<f64>() / d.len() as f64,
                    sd(&d),
                    d.iter().fold(0f64, |m, v| m.max(v.abs())),
                    sd(&r32),
                    sd(&r8)
                );
            }
        }
        quantised.insert(m.to_string(), q);
    }

    if let Some(m) = args.get("attrib") {
        let q = quantised
            .get(m)
            .context("attrib= must name one of methods=")?;
        println!("\n-- attribution ({m} parameters): fake quantisation in the f32 pass --");
        let params: Vec<Option<QParams>> =
            (0..=n).map(|t| (t < n).then_some(q.tensor_q[t])).collect();
        let wq = with_int8_weights(&folded, q);
        let none = vec![None; n + 1];
        sc.line("weights only", &fq_mu(&wq, &none, &sc, threads));
        sc.line(
            "all activations + weights",
            &fq_mu(&wq, &params, &sc, threads),
        );
        for g in &gr {
            let label: Vec<&str> = g.iter().map(|t| nm[*t].as_str()).collect();
            let p = &q.tensor_q[g[0]];
            let only: Vec<Option<QParams>> =
                (0..=n).map(|t| g.contains(&t).then_some(*p)).collect();
            sc.line(
                &format!("only {} (s={:.4})", label.join("+"), p.scale),
                &fq_mu(&folded, &only, &sc, threads),
            );
            let but: Vec<Option<QParams>> = (0..=n)
                .map(|t| if g.contains(&t) { None } else { params[t] })
                .collect();
            sc.line(
                &format!("all but {}", label.join("+")),
                &fq_mu(&wq, &but, &sc, threads),
            );
        }
    }
    if num("pipeline", 1) == 1 {
        let t = Instant::now();
        let inputs: Vec<(&[u16], &[f32])> = cal
            .iter()
            .map(|s| (s.counts.as_slice(), std::slice::from_ref(&s.z)))
            .collect();
        let mut q = quantize(&folded, &calibrate(&folded, &inputs)?)?;
        let shift = correct_head_bias(&mut q, &folded, &inputs)?;
        let mu = int8_mu(&q, &sc, threads);
        let bias =
            |m: &[f64]| m.iter().zip(&sc.truth).map(|(a, b)| a - b).sum::<f64>() / m.len() as f64;
        println!(
            "\nexport path (calibrate + correct_head_bias, {:.1} s; mean shift removed {:+.4}):",
            t.elapsed().as_secs_f64(),
            shift[0]
        );
        sc.line("  int8", &mu);
        println!("  bias: f32 {:+.4}, int8 {:+.4}", bias(&sc.mu32), bias(&mu));
    }
    println!("total {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
