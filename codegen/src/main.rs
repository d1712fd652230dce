//! `codegen`: plan, export and inspect frozen cluster-mass models.
//!
//! `codegen plan` prints the per-layer shapes, cost and receptive fields of an
//! architecture given in a compact form, so an embedded engineer can size a
//! model before anyone trains it.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use codegen::arch::{Layer, Padding, PoolKind, Shape, analyze};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

#[derive(Parser)]
#[command(
    version,
    about = "Freeze, size and inspect cluster-mass CNNs for embedded targets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Freeze a trained run, or an ONNX network trained elsewhere (`--onnx`): generated Rust
    /// module (model.rs), weight blobs (f32, f16, int8), their architecture description for host
    /// tools (model-arch.json, read by `trainer predict`), golden samples with the host's results,
    /// and a report of cost and accuracy.
    Export {
        /// Run directory written by `trainer fit` (or use --onnx).
        #[arg(required_unless_present = "onnx")]
        run_dir: Option<std::path::PathBuf>,
        /// Import an ONNX network (Keras via tf2onnx, PyTorch via torch.onnx.export) instead of a
        /// run; supported operators and layouts: docs/onnx.md.
        #[arg(long, conflicts_with = "run_dir")]
        onnx: Option<std::path::PathBuf>,
        /// With --onnx: JSON sidecar with the count preprocessing the network was trained with
        /// (band_scale, z_shift, z_scale, sigma_floor, sigma_calibration, image_layout, and
        /// extra: auxiliary inputs such as the exposure; see docs/onnx.md) [default: ln(1 +
        /// counts), raw redshift, sigma floor 0.005].
        #[arg(long, requires = "onnx")]
        preprocess: Option<std::path::PathBuf>,
        /// Output directory [default: <run_dir>/export, or <model>-export/ next to the ONNX file].
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Calibration sample (NPZ: images u16, redshift f32, log_mass f32) [default: <run_dir>/calibration.npz,
        /// or calibration.npz next to the ONNX file].
        #[arg(long)]
        calib: Option<std::path::PathBuf>,
        /// Model name in the generated headers [default: the run directory's or ONNX file's name].
        #[arg(long)]
        name: Option<String>,
        /// Golden sample clusters to embed (samples.rs), 0 for none.
        #[arg(long, default_value_t = 4)]
        samples: usize,
    },
    /// Print a weight blob's header and tensor table; refuse a damaged one.
    Inspect {
        /// Blob file (.bin).
        blob: std::path::PathBuf,
    },
    /// Size report of a trained run's export (run directory with model.json + model.safetensors):
    /// per-layer shapes, MACs, parameters, receptive field, weight bytes per dtype, activation RAM.
    Report {
        /// Run directory written by `trainer fit`.
        run_dir: std::path::PathBuf,
    },
    /// Per-layer output shape, multiply-accumulates, parameters and receptive field.
    ///
    /// Layers are comma separated: `c<k>x<filters>[s<stride>][d<dilation>][v|p]`
    /// (convolution, `v` valid / `p` same padding, default valid), `max<n>` / `avg<n>`
    /// (pooling), `gap` (global average pooling), `z` (flatten and concatenate the
    /// redshift), `d<units>` (dense), `bn` (batch norm), `relu`, `lrelu<slope>`.
    Plan {
        /// E.g. `avg2,c3x16p,avg2,c3x32p,avg2,c3x32p,avg2,z,d32,d2`.
        layers: String,
        /// Input as channels,height,width.
        #[arg(long, default_value = "10,50,50")]
        input: String,
    },
}

fn parse_layer(tok: &str) -> Result<Layer> {
    let num = |s: &str| {
        s.parse::<usize>()
            .with_context(|| format!("layer `{tok}`: `{s}` is not a number"))
    };
    if tok == "gap" {
        return Ok(Layer::GlobalAvgPool);
    }
    if tok == "z" {
        return Ok(Layer::FlattenConcatZ { scalars: 1 });
    }
    if let Some(n) = tok.strip_prefix('z') {
        return Ok(Layer::FlattenConcatZ { scalars: num(n)? });
    }
    if tok == "bn" {
        return Ok(Layer::BatchNorm { epsilon: 1e-5 });
    }
    if tok == "relu" {
        return Ok(Layer::LeakyRelu { slope: 0.0 });
    }
    if let Some(v) = tok.strip_prefix("lrelu") {
        return Ok(Layer::LeakyRelu {
            slope: v
                .parse()
                .with_context(|| format!("layer `{tok}`: bad slope"))?,
        });
    }
    if let Some(n) = tok.strip_prefix("max") {
        return Ok(Layer::Pool2d {
            kind: PoolKind::Max,
            size: num(n)?,
        });
    }
    if let Some(n) = tok.strip_prefix("avg") {
        return Ok(Layer::Pool2d {
            kind: PoolKind::Avg,
            size: num(n)?,
        });
    }
    if let Some(rest) = tok.strip_prefix('c') {
        let (rest, padding) = match rest.strip_suffix('p') {
            Some(r) => (r, Padding::Same),
            None => (rest.strip_suffix('v').unwrap_or(rest), Padding::Valid),
        };
        let (rest, dilation) = match rest.split_once('d') {
            Some((r, d)) => (r, num(d)?),
            None => (rest, 1),
        };
        let (rest, stride) = match rest.split_once('s') {
            Some((r, s)) => (r, num(s)?),
            None => (rest, 1),
        };
        let (k, f) = rest
            .split_once('x')
            .with_context(|| format!("layer `{tok}`: expected c<kernel>x<filters>"))?;
        return Ok(Layer::Conv2d {
            filters: num(f)?,
            kernel: num(k)?,
            stride,
            dilation,
            padding,
        });
    }
    if let Some(n) = tok.strip_prefix('d') {
        return Ok(Layer::Dense { units: num(n)? });
    }
    bail!("unknown layer `{tok}` (see `codegen plan --help`)")
}

/// Decode tensor 0, the model constants every blob starts with (`runtime::model::Meta`).
/// Model constants after the band scales (`runtime::model::Meta`).
const CONSTANTS: usize = runtime::model::Meta::<0>::LEN;

fn print_constants(bytes: &[u8], h: &runtime::blob::Header) {
    let Some((runtime::blob::Elem::F32, n)) = runtime::blob::Header::entry(bytes, 0) else {
        return;
    };
    let off = runtime::blob::HEADER_LEN;
    let start =
        u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]) as usize;
    let Some(raw) = bytes
        .get(start..start + 4 * n)
        .filter(|_| n > CONSTANTS && h.tensors > 0)
    else {
        return;
    };
    let v: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    // Auxiliary inputs sit after the redshift range, 5 values each; the blob does not say
    // how many bands it has, so take the trailing records that read as auxiliary inputs.
    let rec = runtime::model::ExtraScalar::LEN;
    let mut extra = Vec::new();
    while n >= CONSTANTS + 1 + rec * (extra.len() + 1) {
        let end = n - rec * extra.len();
        match runtime::model::ExtraScalar::from_slice(&v[end - rec..end]) {
            Some(e) => extra.insert(0, e),
            None => break,
        }
    }
    let bands = n - CONSTANTS - rec * extra.len();
    let t = &v[bands..];
    let calib = match t[3] as i32 {
        _ if t[3].fract() != 0.0 => "invalid".to_string(),
        0 => "none".to_string(),
        1 => format!("sigma x {}", t[4]),
        2 => format!("constant {} dex", t[4]),
        _ => "invalid".to_string(),
    };
    println!(
        "model constants: {bands} band scales {:?}, z' = (z - {}) x {}, sigma floor {}, sigma calibration {calib}, accepted redshifts [{}, {}]",
        &v[..bands],
        t[0],
        t[1],
        t[2],
        t[5],
        t[6]
    );
    for e in extra {
        println!(
            "auxiliary input {}: (log10 {} - {}) x {}, training range [{}, {}]",
            e.quantity.name(),
            e.quantity.name(),
            e.shift,
            e.scale,
            e.range[0],
            e.range[1]
        );
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Export {
            run_dir,
            onnx,
            preprocess,
            out,
            calib,
            name,
            samples,
        } => {
            let Some(source) = run_dir.clone().or_else(|| onnx.clone()) else {
                bail!("give a run directory or --onnx <model.onnx>")
            };
            let out = out.unwrap_or_else(|| match &onnx {
                Some(f) => codegen::onnx::default_out_dir(f),
                None => source.join("export"),
            });
            let name = name.unwrap_or_else(|| {
                let stem = if onnx.is_some() {
                    source.file_stem().map(|f| f.to_string_lossy().into_owned())
                } else {
                    std::fs::canonicalize(&source)
                        .ok()
                        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                };
                stem.unwrap_or_else(|| "model".into())
            });
            let command = std::iter::once("codegen".to_string())
                .chain(std::env::args().skip(1))
                .collect::<Vec<_>>()
                .join(" ");
            let opts = codegen::export::ExportOptions {
                calib,
                name,
                command,
                samples,
            };
            let s = match &onnx {
                Some(f) => {
                    if preprocess.is_none() {
                        eprintln!(
                            "note: no --preprocess sidecar: assuming the network takes ln(1 + counts) in every band and the raw redshift, sigma floor 0.005 dex (see docs/onnx.md)"
                        );
                    }
                    codegen::onnx::export_onnx(f, preprocess.as_deref(), &out, &opts)?
                }
                None => codegen::export::export(&source, &out, &opts)?,
            };
            print!("{}", std::fs::read_to_string(out.join("report.md"))?);
            eprintln!(
                "wrote {0}/model.rs, {0}/model-{{f32,f16,int8}}.bin, {0}/samples.rs and report.md ({1} calibration, {2} scoring clusters)",
                out.display(),
                s.clusters.0,
                s.clusters.1
            );
        }
        Command::Inspect { blob } => {
            let bytes =
                std::fs::read(&blob).with_context(|| format!("reading {}", blob.display()))?;
            let h = runtime::blob::Header::read(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", blob.display()))?;
            let dtype = match codegen::load::blob_dtype(&h)
                .with_context(|| format!("{}: blob header", blob.display()))?
            {
                runtime::blob::Dtype::F32 => "f32",
                runtime::blob::Dtype::F16 => "f16",
                runtime::blob::Dtype::Int8 => "int8",
            };
            println!(
                "{}: weight blob v{}, dtype {dtype}, architecture {:#018x}, {} tensors, {} bytes, checksum ok",
                blob.display(),
                runtime::blob::VERSION,
                h.arch_hash,
                h.tensors,
                h.len
            );
            for i in 0..h.tensors {
                if let Some((elem, n)) = runtime::blob::Header::entry(&bytes, i) {
                    println!("  tensor {i:>2}: {elem:?} x {n}");
                }
            }
            print_constants(&bytes, &h);
            // The export's report sits next to its blobs.
            let report = blob.with_file_name("report.md");
            match std::fs::read_to_string(&report) {
                Ok(text) => println!("\n{}:\n\n{text}", report.display()),
                Err(_) => println!(
                    "\n(no report.md next to the blob; `codegen export` writes one with each export)"
                ),
            }
        }
        Command::Report { run_dir } => {
            let model = codegen::model::Model::load(&run_dir)?;
            let folded = model.fold_batch_norm()?;
            println!("{}", codegen::report::report(&folded)?);
        }
        Command::Plan { layers, input } => {
            let dims: Vec<usize> = input
                .split(',')
                .map(|s| s.trim().parse::<usize>())
                .collect::<Result<_, _>>()
                .with_context(|| format!("--input `{input}`: expected channels,height,width"))?;
            let [c, h, w] = dims[..] else {
                bail!("--input `{input}`: expected three numbers")
            };
            let layers: Vec<Layer> = layers
                .split(',')
                .map(|t| parse_layer(t.trim()))
                .collect::<Result<_>>()?;
            let stats = analyze(Shape { c, h, w }, &layers)?;
            let mut table = Table::new();
            table.load_preset(UTF8_FULL_CONDENSED).set_header([
                "#",
                "layer",
                "output c x h x w",
                "MACs",
                "params",
                "receptive field px",
            ]);
            for (i, (l, s)) in layers.iter().zip(&stats).enumerate() {
                table.add_row([
                    i.to_string(),
                    format!("{l:?}"),
                    format!("{} x {} x {}", s.out.c, s.out.h, s.out.w),
                    s.macs.to_string(),
                    s.params.to_string(),
                    s.rf.to_string(),
                ]);
            }
            println!("{table}");
            let macs: u64 = stats.iter().map(|s| s.macs).sum();
            let params: u64 = stats.iter().map(|s| s.params).sum();
            let peak = stats
                .windows(2)
                .map(|p| p[0].out.len() + p[1].out.len())
                .max()
                .unwrap_or(0)
                .max(c * h * w + stats.first().map_or(0, |s| s.out.len()));
            println!(
                "total: {macs} MACs, {params} parameters ({params} B as int8), naive ping-pong activation peak {peak} elements"
            );
        }
    }
    Ok(())
}
