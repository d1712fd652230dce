//! Host inference, one image, one core: the generated models (`edge`, `seed-lab`; f32, f16,
//! int8), each convolution and dense layer on its own (scalar reference vs the dispatched
//! SIMD kernel), burn's forward pass of the same weights (flex and ndarray, batch 1 and 64),
//! and the core's measured f32 FMA and i16 multiply-add peaks.
//!
//! ```text
//! cargo bench -p benches --bench inference                        # SIMD build: peaks, models, layers, burn
//! cargo bench -p benches --bench inference --features reference   # whole models on the scalar reference
//! scripts/bench-table.sh                                          # criterion estimates -> markdown
//! ```
//!
//! Every figure is single-threaded: `RAYON_NUM_THREADS` and `MATMUL_NUM_THREADS` (ndarray's
//! matrixmultiply) are set to 1 before anything starts, the rayon global pool (burn-flex,
//! gemm, ndarray) is built with one thread, and the whole run executes on the worker of a
//! one-thread pool (`ThreadPool::install`), so burn's parallel loops run inline.
//!
//! Criterion throughput is set to FLOPs (2 x multiply-accumulates) per iteration, so its
//! `thrpt` column reads directly as FLOP/s (for burn batch 64, for the whole batch).
//!
//! The `seed-lab` weights are a seeded, untrained network of that preset exported at start
//! (as the test suite does, `tests::models::seed_lab_run`): latency does not depend on the
//! weights' values. `edge` uses the committed blobs and the trained run they come from.

use criterion::{
    BatchSize, BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime,
};
use runtime::blob::Aligned;
use runtime::kernels::conv2d::{Conv2d, QuantArgs};
use runtime::kernels::dense::Dense;
use runtime::kernels::pool::PoolKind;
use runtime::kernels::simd::{self, Path as SimdPath};
use runtime::quant::Requant;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;
use trainer::data::Dataset;

/// Clusters in the `seed-lab` run's calibration sample and in burn's batch.
const BATCH: usize = 64;

/// What the dispatched kernels run in this build on this CPU: `"simd"` (the best path the
/// CPU has: AVX-512 on the reference box), `"avx2"` (the AVX2 kernels, chosen with
/// `RUNTIME_SIMD=avx2` on an AVX-512 machine) or `"reference"`.
fn path_label() -> &'static str {
    match simd::active() {
        SimdPath::Reference => "reference",
        SimdPath::Avx2 if std::env::var("RUNTIME_SIMD").as_deref() == Ok("avx2") => "avx2",
        _ => "simd",
    }
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1200))
        .sample_size(20);
    g
}

// ---------------------------------------------------------------- peak

/// Independent accumulator chains: enough to cover FMA latency (4) x 2 pipes on Zen 4.
const CHAINS: usize = 12;
/// Loop trips per call of the peak kernels.
const TRIPS: usize = 20_000;

/// `TRIPS x CHAINS` 8-lane FMAs: `2 * 8 * CHAINS * TRIPS` FLOP.
///
/// # Safety
/// AVX2 and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_peak(x: f32, y: f32) -> f32 {
    use std::arch::x86_64::*;
    let (xv, yv) = (_mm256_set1_ps(x), _mm256_set1_ps(y));
    let mut acc = [_mm256_setzero_ps(); CHAINS];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = _mm256_set1_ps(i as f32);
    }
    for _ in 0..TRIPS {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, xv, yv);
        }
    }
    let mut s = _mm256_setzero_ps();
    for a in acc {
        s = _mm256_add_ps(s, a);
    }
    let mut out = [0.0f32; 8];
    // SAFETY: `out` holds 8 f32.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum()
}

/// `TRIPS x CHAINS` `vpmaddwd` (16 i16 multiply-accumulates each), chained through their own
/// results: `2 * 16 * CHAINS * TRIPS` integer ops.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn madd_peak(y: i16) -> i32 {
    use std::arch::x86_64::*;
    let yv = _mm256_set1_epi16(y);
    let mut acc = [_mm256_setzero_si256(); CHAINS];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = _mm256_set1_epi16(i as i16 + 1);
    }
    for _ in 0..TRIPS {
        for a in acc.iter_mut() {
            *a = _mm256_madd_epi16(*a, yv);
        }
    }
    let mut s = _mm256_setzero_si256();
    for a in acc {
        s = _mm256_add_epi32(s, a);
    }
    _mm256_extract_epi32::<0>(s)
}

/// `TRIPS x CHAINS` 512-bit `vpdpbusd` (64 u8 x i8 multiply-accumulates each), chained
/// through their own results: `2 * 64 * CHAINS * TRIPS` integer ops.
///
/// # Safety
/// AVX-512 F and VNNI must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dpbusd_peak(y: i8) -> i32 {
    use std::arch::x86_64::*;
    let yv = _mm512_set1_epi8(y);
    let mut acc = [_mm512_setzero_si512(); CHAINS];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = _mm512_set1_epi32(i as i32 + 1);
    }
    for _ in 0..TRIPS {
        for a in acc.iter_mut() {
            *a = _mm512_dpbusd_epi32(*a, yv, yv);
        }
    }
    let mut s = _mm512_setzero_si512();
    for a in acc {
        s = _mm512_add_epi32(s, a);
    }
    _mm512_reduce_add_epi32(s)
}

/// `TRIPS x CHAINS` 16-lane FMAs (512-bit): `2 * 16 * CHAINS * TRIPS` FLOP.
///
/// # Safety
/// AVX-512 F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma512_peak(x: f32, y: f32) -> f32 {
    use std::arch::x86_64::*;
    let (xv, yv) = (_mm512_set1_ps(x), _mm512_set1_ps(y));
    let mut acc = [_mm512_setzero_ps(); CHAINS];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = _mm512_set1_ps(i as f32);
    }
    for _ in 0..TRIPS {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, xv, yv);
        }
    }
    let mut s = _mm512_setzero_ps();
    for a in acc {
        s = _mm512_add_ps(s, a);
    }
    _mm512_reduce_add_ps(s)
}

/// The peaks, measured at the start (`suffix` "") and again at the end ("_end") of a run:
/// on a shared VM the clock (boost) moves with the neighbours' load, and the two readings
/// show by how much during the run.
fn peak(c: &mut Criterion, suffix: &str) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        let mut g = group(c, "peak");
        g.throughput(Throughput::Elements((2 * 8 * CHAINS * TRIPS) as u64));
        g.bench_function(format!("fma_f32{suffix}"), |b| {
            // SAFETY: AVX2 and FMA detected above.
            b.iter(|| unsafe { fma_peak(black_box(0.999_9), black_box(1e-7)) })
        });
        g.throughput(Throughput::Elements((2 * 16 * CHAINS * TRIPS) as u64));
        g.bench_function(format!("madd_i16{suffix}"), |b| {
            // SAFETY: AVX2 detected above.
            b.iter(|| unsafe { madd_peak(black_box(3)) })
        });
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni") {
            g.throughput(Throughput::Elements((2 * 16 * CHAINS * TRIPS) as u64));
            g.bench_function(format!("fma512_f32{suffix}"), |b| {
                // SAFETY: AVX-512 F detected above.
                b.iter(|| unsafe { fma512_peak(black_box(0.999_9), black_box(1e-7)) })
            });
            g.throughput(Throughput::Elements((2 * 64 * CHAINS * TRIPS) as u64));
            g.bench_function(format!("dpbusd_i8{suffix}"), |b| {
                // SAFETY: AVX-512 F and VNNI detected above.
                b.iter(|| unsafe { dpbusd_peak(black_box(3)) })
            });
        }
        g.finish();
    }
}

// ---------------------------------------------------------------- layers

/// Deterministic values in [-1, 1).
fn wave(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919 + seed * 104_729) % 2003) as f32 / 1001.5 - 1.0)
        .collect()
}

fn wave_i8(n: usize, seed: usize) -> Vec<i8> {
    wave(n, seed).iter().map(|v| (v * 127.0) as i8).collect()
}

fn f16s(v: &[f32]) -> Vec<half::f16> {
    v.iter().map(|&x| half::f16::from_f32(x)).collect()
}

/// Reference vs dispatched kernel of one convolution, in f32, f16 and int8.
fn conv<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
>(
    c: &mut Criterion,
    name: &str,
) {
    type C<
        const IC: usize,
        const IH: usize,
        const IW: usize,
        const OC: usize,
        const K: usize,
        const S: usize,
        const D: usize,
        const P: usize,
    > = Conv2d<IC, IH, IW, OC, K, S, D, P>;
    let x = wave(C::<IC, IH, IW, OC, K, S, D, P>::IN_LEN, 1);
    let w = wave(C::<IC, IH, IW, OC, K, S, D, P>::W_LEN, 2);
    let w16 = f16s(&w);
    let bias = wave(OC, 3);
    let xq = wave_i8(x.len(), 4);
    let wq = wave_i8(w.len(), 5);
    let bq: Vec<i32> = (0..OC as i32).map(|i| i * 37 - 300).collect();
    let (rp, rn) = (
        vec![Requant::from_real(0.004); OC],
        vec![Requant::from_real(0.0004); OC],
    );
    let q = QuantArgs {
        input_zero_point: -3,
        requant_pos: &rp,
        requant_neg: &rn,
        output_zero_point: 5,
    };
    let out_len = C::<IC, IH, IW, OC, K, S, D, P>::OUT_LEN;
    let (mut y, mut yq) = (vec![0.0f32; out_len], vec![0i8; out_len]);
    let mut sf = vec![0.0f32; C::<IC, IH, IW, OC, K, S, D, P>::SCRATCH_F32];
    let mut sq = vec![0i16; C::<IC, IH, IW, OC, K, S, D, P>::SCRATCH_S8];
    let macs = C::<IC, IH, IW, OC, K, S, D, P>::MACS;
    let mut g = group(c, "layer");
    if macs > 2_000_000 {
        // The scalar reference of the big seed-lab convolutions takes milliseconds.
        g.sampling_mode(SamplingMode::Flat).sample_size(10);
    }
    g.throughput(Throughput::Elements(2 * macs as u64));
    let simd = path_label();
    g.bench_function(format!("{name}/f32/reference"), |b| {
        b.iter(|| C::<IC, IH, IW, OC, K, S, D, P>::f32(black_box(&x), &w, &bias, 0.1, &mut y))
    });
    g.bench_function(format!("{name}/f32/{simd}"), |b| {
        b.iter(|| {
            C::<IC, IH, IW, OC, K, S, D, P>::f32_rows(
                black_box(&x),
                &w,
                &bias,
                0.1,
                0,
                &mut y,
                &mut sf,
            )
        })
    });
    g.bench_function(format!("{name}/f16/reference"), |b| {
        b.iter(|| C::<IC, IH, IW, OC, K, S, D, P>::f16(black_box(&x), &w16, &bias, 0.1, &mut y))
    });
    g.bench_function(format!("{name}/f16/{simd}"), |b| {
        b.iter(|| {
            C::<IC, IH, IW, OC, K, S, D, P>::f16_rows(
                black_box(&x),
                &w16,
                &bias,
                0.1,
                0,
                &mut y,
                &mut sf,
            )
        })
    });
    g.bench_function(format!("{name}/int8/reference"), |b| {
        b.iter(|| C::<IC, IH, IW, OC, K, S, D, P>::s8(black_box(&xq), &wq, &bq, &q, &mut yq))
    });
    g.bench_function(format!("{name}/int8/{simd}"), |b| {
        b.iter(|| {
            C::<IC, IH, IW, OC, K, S, D, P>::s8_rows(
                black_box(&xq),
                &wq,
                &bq,
                &q,
                0,
                &mut yq,
                &mut sq,
            )
        })
    });
    g.finish();
}

/// The fused convolution + activation + `PK x PK` pooling (line buffer) the generated code
/// calls, SIMD path only, in f32, f16 and int8. FLOPs count the rows actually computed
/// (those the pooling keeps).
fn conv_pooled<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
    const PK: usize,
>(
    c: &mut Criterion,
    name: &str,
    kind: PoolKind,
) {
    type C<
        const IC: usize,
        const IH: usize,
        const IW: usize,
        const OC: usize,
        const K: usize,
        const S: usize,
        const D: usize,
        const P: usize,
    > = Conv2d<IC, IH, IW, OC, K, S, D, P>;
    let (oh, ow) = (
        C::<IC, IH, IW, OC, K, S, D, P>::OH,
        C::<IC, IH, IW, OC, K, S, D, P>::OW,
    );
    let x = wave(C::<IC, IH, IW, OC, K, S, D, P>::IN_LEN, 1);
    let w = wave(C::<IC, IH, IW, OC, K, S, D, P>::W_LEN, 2);
    let w16 = f16s(&w);
    let bias = wave(OC, 3);
    let xq = wave_i8(x.len(), 4);
    let wq = wave_i8(w.len(), 5);
    let bq: Vec<i32> = (0..OC as i32).map(|i| i * 37 - 300).collect();
    let (rp, rn) = (
        vec![Requant::from_real(0.004); OC],
        vec![Requant::from_real(0.0004); OC],
    );
    let q = QuantArgs {
        input_zero_point: -3,
        requant_pos: &rp,
        requant_neg: &rn,
        output_zero_point: 5,
    };
    let pooled = OC * (oh / PK) * (ow / PK);
    let line_len = C::<IC, IH, IW, OC, K, S, D, P>::line_len::<PK>();
    let (mut y, mut yq) = (vec![0.0f32; pooled], vec![0i8; pooled]);
    let (mut line, mut lineq) = (vec![0.0f32; line_len], vec![0i8; line_len]);
    let mut sf = vec![0.0f32; C::<IC, IH, IW, OC, K, S, D, P>::SCRATCH_F32];
    let mut sq = vec![0i16; C::<IC, IH, IW, OC, K, S, D, P>::SCRATCH_S8];
    let macs = OC * (oh / PK * PK) * ow * IC * K * K;
    let mut g = group(c, "layer");
    g.throughput(Throughput::Elements(2 * macs as u64));
    let simd = path_label();
    g.bench_function(format!("{name}+pool/f32/{simd}"), |b| {
        b.iter(|| {
            C::<IC, IH, IW, OC, K, S, D, P>::f32_pooled::<PK, f32>(
                kind,
                black_box(&x),
                &w,
                &bias,
                0.1,
                &mut y,
                &mut line,
                &mut sf,
            )
        })
    });
    g.bench_function(format!("{name}+pool/f16/{simd}"), |b| {
        b.iter(|| {
            C::<IC, IH, IW, OC, K, S, D, P>::f32_pooled::<PK, half::f16>(
                kind,
                black_box(&x),
                &w16,
                &bias,
                0.1,
                &mut y,
                &mut line,
                &mut sf,
            )
        })
    });
    g.bench_function(format!("{name}+pool/int8/{simd}"), |b| {
        b.iter(|| {
            C::<IC, IH, IW, OC, K, S, D, P>::s8_pooled::<PK>(
                kind,
                black_box(&xq),
                &wq,
                &bq,
                &q,
                &mut yq,
                &mut lineq,
                &mut sq,
            )
        })
    });
    g.finish();
}

/// Reference vs dispatched kernel of one dense layer, in f32, f16 and int8.
fn dense<const IN: usize, const OUT: usize>(c: &mut Criterion, name: &str) {
    let x = wave(IN, 11);
    let w = wave(IN * OUT, 12);
    let w16 = f16s(&w);
    let bias = wave(OUT, 13);
    let xq = wave_i8(IN, 14);
    let wq = wave_i8(IN * OUT, 15);
    let bq: Vec<i32> = (0..OUT as i32).map(|i| i * 13 - 100).collect();
    let (rp, rn) = (
        vec![Requant::from_real(0.004); OUT],
        vec![Requant::from_real(0.0004); OUT],
    );
    let q = QuantArgs {
        input_zero_point: -3,
        requant_pos: &rp,
        requant_neg: &rn,
        output_zero_point: 5,
    };
    let (mut y, mut yq) = (vec![0.0f32; OUT], vec![0i8; OUT]);
    let mut g = group(c, "layer");
    g.throughput(Throughput::Elements(2 * Dense::<IN, OUT>::MACS as u64));
    let simd = path_label();
    g.bench_function(format!("{name}/f32/reference"), |b| {
        b.iter(|| Dense::<IN, OUT>::f32(black_box(&x), &w, &bias, 0.1, &mut y))
    });
    g.bench_function(format!("{name}/f32/{simd}"), |b| {
        b.iter(|| Dense::<IN, OUT>::f32_fast(black_box(&x), &w, &bias, 0.1, &mut y))
    });
    g.bench_function(format!("{name}/f16/reference"), |b| {
        b.iter(|| Dense::<IN, OUT>::f16(black_box(&x), &w16, &bias, 0.1, &mut y))
    });
    g.bench_function(format!("{name}/f16/{simd}"), |b| {
        b.iter(|| Dense::<IN, OUT>::f32_fast(black_box(&x), &w16, &bias, 0.1, &mut y))
    });
    g.bench_function(format!("{name}/int8/reference"), |b| {
        b.iter(|| Dense::<IN, OUT>::s8(black_box(&xq), &wq, &bq, &q, &mut yq))
    });
    g.bench_function(format!("{name}/int8/{simd}"), |b| {
        b.iter(|| Dense::<IN, OUT>::s8_fast(black_box(&xq), &wq, &bq, &q, &mut yq))
    });
    g.finish();
}

/// Every convolution and dense layer of `edge`, and the big `seed-lab` layers (shapes as in
/// `models/edge/model.rs` and `models/seed_lab/model.rs`), alone and fused with the pooling
/// that follows them.
fn layers(c: &mut Criterion) {
    conv::<10, 25, 25, 16, 3, 1, 1, 1>(c, "edge/conv1");
    conv::<16, 12, 12, 32, 3, 1, 1, 1>(c, "edge/conv3");
    conv::<32, 6, 6, 32, 3, 1, 1, 1>(c, "edge/conv5");
    conv_pooled::<10, 25, 25, 16, 3, 1, 1, 1, 2>(c, "edge/conv1", PoolKind::Avg);
    conv_pooled::<16, 12, 12, 32, 3, 1, 1, 1, 2>(c, "edge/conv3", PoolKind::Avg);
    conv_pooled::<32, 6, 6, 32, 3, 1, 1, 1, 2>(c, "edge/conv5", PoolKind::Avg);
    dense::<289, 32>(c, "edge/dense8");
    dense::<32, 2>(c, "edge/dense9");
    conv::<10, 50, 50, 20, 2, 1, 1, 0>(c, "seed-lab/conv0");
    conv::<20, 49, 49, 20, 2, 1, 1, 0>(c, "seed-lab/conv1");
    conv::<20, 48, 48, 20, 2, 1, 1, 0>(c, "seed-lab/conv2");
    conv_pooled::<20, 48, 48, 20, 2, 1, 1, 0, 4>(c, "seed-lab/conv2", PoolKind::Max);
    dense::<512, 256>(c, "seed-lab/dense9");
}

// ---------------------------------------------------------------- whole models

/// Largest blob the fixture holds (`seed-lab` f32 is 0.9 MB).
const BLOB_MAX: usize = 1 << 21;

/// The blob at the start of `buf`, cut at its declared length (header bytes 20..24): the
/// loaders refuse bytes after a blob's end.
fn declared(buf: &[u8]) -> &[u8] {
    &buf[..u32::from_le_bytes(buf[20..24].try_into().expect("4 bytes")) as usize]
}

/// A blob copied into 16-byte-aligned heap memory.
fn aligned(bytes: &[u8]) -> Box<Aligned<[u8; BLOB_MAX]>> {
    assert!(bytes.len() <= BLOB_MAX, "blob of {} bytes", bytes.len());
    // SAFETY: all-zero bytes are a valid `[u8; N]`.
    let mut a = unsafe { Box::<Aligned<[u8; BLOB_MAX]>>::new_zeroed().assume_init() };
    a.0[..bytes.len()].copy_from_slice(bytes);
    a
}

/// A zeroed convolution scratch on the heap, what the caller of a generated `infer` owns.
fn scratch<T, const N: usize>() -> Box<runtime::model::Scratch<T, N>>
where
    runtime::model::Scratch<T, N>: Default,
{
    // SAFETY: `Scratch` is implemented (Default) only for i16 and f32 values, for which
    // all-zero bytes are valid.
    unsafe { Box::new_zeroed().assume_init() }
}

fn arena<T: Copy + Default + std::fmt::Debug, const N: usize>() -> Box<[T; N]> {
    vec![T::default(); N].into_boxed_slice().try_into().unwrap()
}

/// Everything the timed loops need, built once.
struct Fixture {
    /// `seed-lab` run directory (model.json, model.safetensors, calibration.npz).
    _tmp: tempfile::TempDir,
    seed_run: PathBuf,
    /// `seed-lab` blobs exported from it: f32, f16, int8.
    seed_blobs: [Box<Aligned<[u8; BLOB_MAX]>>; 3],
    /// The run's calibration sample: [`BATCH`] eRASS:8 clusters.
    ds: Dataset,
}

fn fixture() -> anyhow::Result<Fixture> {
    let tmp = tempfile::tempdir()?;
    let seed_run = tmp.path().join("seed-lab");
    std::fs::create_dir_all(&seed_run)?;
    tests::models::seed_lab_run(&seed_run, BATCH)?;
    let out = tmp.path().join("export");
    codegen::export::export(
        &seed_run,
        &out,
        &codegen::export::ExportOptions {
            calib: None,
            name: "seed-lab".into(),
            command: "cargo bench -p benches --bench inference".into(),
            samples: 0,
        },
    )?;
    let read = |d: &str| -> anyhow::Result<_> {
        Ok(aligned(&std::fs::read(out.join(format!("model-{d}.bin")))?))
    };
    let seed_blobs = [read("f32")?, read("f16")?, read("int8")?];
    let ds = Dataset::load(&seed_run.join("calibration.npz"))?;
    Ok(Fixture {
        _tmp: tmp,
        seed_run,
        seed_blobs,
        ds,
    })
}

/// The generated code of one model in its three dtypes, one image per iteration.
macro_rules! whole_model {
    ($c:expr, $name:literal, $m:path, $blobs:expr, $counts:expr, $z:expr) => {{
        use $m as m;
        let (counts, z): (&[u16], f32) = ($counts, $z);
        let [b32, b16, b8]: [&[u8]; 3] = $blobs;
        let f32m = m::f32::Model::new(b32).expect("f32 blob");
        let f16m = m::f16::Model::new(b16).expect("f16 blob");
        let i8m = m::int8::Model::new(b8).expect("int8 blob");
        let (mut af, mut ai) = (
            arena::<f32, { m::ARENA_LEN }>(),
            arena::<i8, { m::ARENA_LEN }>(),
        );
        let (mut sf, mut si) = (
            scratch::<f32, { m::SCRATCH_F32 }>(),
            scratch::<i16, { m::SCRATCH_S8 }>(),
        );
        let mut g = group($c, "model");
        g.throughput(Throughput::Elements(2 * m::MACS as u64));
        if path_label() == "reference" && m::MACS > 5_000_000 {
            g.sampling_mode(SamplingMode::Flat).sample_size(10);
        }
        let p = path_label();
        g.bench_function(format!("{}/f32/{p}", $name), |b| {
            b.iter(|| {
                f32m.infer(black_box(counts), &[z], &mut af, &mut sf)
                    .expect("f32")
            })
        });
        g.bench_function(format!("{}/f16/{p}", $name), |b| {
            b.iter(|| {
                f16m.infer(black_box(counts), &[z], &mut af, &mut sf)
                    .expect("f16")
            })
        });
        g.bench_function(format!("{}/int8/{p}", $name), |b| {
            b.iter(|| {
                i8m.infer(black_box(counts), &[z], &mut ai, &mut si)
                    .expect("int8")
            })
        });
        g.finish();
    }};
}

fn models(c: &mut Criterion, fx: &Fixture) {
    let (counts, z) = (fx.ds.image(0), fx.ds.redshift[0]);
    whole_model!(
        c,
        "edge",
        models::edge,
        [
            &models::blobs::EDGE_F32.0[..],
            &models::blobs::EDGE_F16.0[..],
            &models::blobs::EDGE_INT8.0[..]
        ],
        counts,
        z
    );
    whole_model!(
        c,
        "seed-lab",
        models::seed_lab,
        [
            declared(&fx.seed_blobs[0].0),
            declared(&fx.seed_blobs[1].0),
            declared(&fx.seed_blobs[2].0)
        ],
        counts,
        z
    );
}

// ---------------------------------------------------------------- burn

/// burn on the plain (inference) device of flex and ndarray:
///
/// - `forward/b{1,64}`: the network's forward pass of already preprocessed inputs (tensors
///   built from host vectors, `Net::forward`, mean and sigma read back to the host) — the
///   baseline of the issue's targets;
/// - `predict/b1`: `trainer::fit::train::predict` end to end, raw counts in (the host
///   preprocessing, `ln(1 + counts)` per pixel, included, as in the generated `infer`).
fn burn(c: &mut Criterion, name: &str, run: &Path, macs: usize, ds: &Dataset) {
    use burn::tensor::{Tensor, TensorData};
    use trainer::fit::config::Backend;
    use trainer::fit::train::{device, predict, to_vec};
    use trainer::sim::{NPIX, spectrum::NBANDS};
    let model = arch::model::Model::load(run).expect("run");
    let layers = model.desc.layers.clone();
    let pre: trainer::fit::prep::Preprocess =
        serde_json::from_value(serde_json::to_value(&model.desc.preprocess).unwrap()).unwrap();
    for (backend, label) in [(Backend::Flex, "flex"), (Backend::Ndarray, "ndarray")] {
        let dev = device(backend);
        let net =
            trainer::fit::export::load_safetensors(&run.join("model.safetensors"), &layers, &dev)
                .expect("weights");
        for n in [1, BATCH] {
            let idx: Vec<usize> = (0..n).collect();
            let batch = trainer::fit::prep::batch(ds, &idx, &pre, &[]).expect("batch");
            let scalars = batch.scalars;
            let mut g = group(c, "burn");
            if n > 1 || label == "ndarray" {
                g.sampling_mode(SamplingMode::Flat)
                    .sample_size(10)
                    .measurement_time(Duration::from_secs(3));
            }
            g.throughput(Throughput::Elements((2 * macs * n) as u64));
            g.bench_function(format!("{name}/{label}/forward/b{n}"), |b| {
                b.iter_batched(
                    || (batch.x.clone(), batch.s.clone()),
                    |(x, z)| {
                        let x = Tensor::<4>::from_data(
                            TensorData::new(x, [n, NBANDS, NPIX, NPIX]),
                            &dev,
                        );
                        let z = Tensor::<2>::from_data(TensorData::new(z, [n, scalars]), &dev);
                        let (m, s) =
                            trainer::fit::net::mean_sigma(net.forward(&layers, x, z, None));
                        (to_vec(m), to_vec(s))
                    },
                    BatchSize::LargeInput,
                )
            });
            if n == 1 {
                g.bench_function(format!("{name}/{label}/predict/b{n}"), |b| {
                    b.iter(|| predict(&net, &layers, &pre, ds, black_box(&idx), &dev))
                });
            }
            g.finish();
        }
    }
}

/// The generated models' first step on its own: `ln(1 + counts)` preprocessing of the raw
/// cube fused with `edge`'s first 2 x 2 average pooling (int8 also quantises every value).
fn preprocess(c: &mut Criterion, fx: &Fixture) {
    use runtime::kernels::pool::Pool2d;
    type Op0 = Pool2d<10, 50, 50, 2>;
    let m = models::edge::f32::Model::new(&models::blobs::EDGE_F32.0).expect("f32 blob");
    let p = m.meta().preprocess;
    let counts = fx.ds.image(0);
    let (mut y, mut yq) = (vec![0.0f32; Op0::OUT_LEN], vec![0i8; Op0::OUT_LEN]);
    let q = runtime::quant::QParams {
        scale: 0.02,
        zero_point: -128,
    };
    let mut g = group(c, "layer");
    let l = path_label();
    g.bench_function(format!("edge/counts+pool0/f32/{l}"), |b| {
        b.iter(|| Op0::avg_counts_f32(&p, black_box(counts), &mut y))
    });
    g.bench_function(format!("edge/counts+pool0/int8/{l}"), |b| {
        b.iter(|| Op0::avg_counts_s8(&p, black_box(counts), q, &mut yq))
    });
    g.finish();
}

fn main() {
    // One core for everything. Set before any pool exists.
    // SAFETY: single-threaded here, nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", "1");
        std::env::set_var("MATMUL_NUM_THREADS", "1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()
        .expect("rayon global pool");
    // Everything runs on the single worker of a one-thread pool, so that burn's (and gemm's)
    // parallel loops execute inline instead of handing each op to another thread and
    // sleeping until it is done: burn's best single-core case.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .stack_size(64 << 20)
        .build()
        .expect("rayon pool");
    pool.install(run);
}

fn run() {
    eprintln!(
        "kernel path: float {}, int8 {}",
        simd::active().name(),
        simd::active_s8().name()
    );
    eprintln!(
        "kernel scratch (stack of infer): edge {} B int8, {} B float; seed-lab {} B int8, {} B float",
        2 * models::edge::SCRATCH_S8,
        4 * models::edge::SCRATCH_F32,
        2 * models::seed_lab::SCRATCH_S8,
        4 * models::seed_lab::SCRATCH_F32
    );
    let mut c = Criterion::default().configure_from_args();
    let fx = fixture().expect("seed-lab fixture");
    if path_label() == "simd" {
        peak(&mut c, "");
    }
    models(&mut c, &fx);
    if path_label() == "avx2" {
        preprocess(&mut c, &fx);
        layers(&mut c);
    } else if path_label() != "reference" {
        preprocess(&mut c, &fx);
        layers(&mut c);
        let edge_run = tests::models::workspace().join("codegen/tests/fixtures/edge-e30");
        burn(&mut c, "edge", &edge_run, models::edge::MACS, &fx.ds);
        burn(
            &mut c,
            "seed-lab",
            &fx.seed_run,
            models::seed_lab::MACS,
            &fx.ds,
        );
        peak(&mut c, "_end");
    }
    c.final_summary();
}
