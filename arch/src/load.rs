//! Reading an export back: the architecture description `codegen export` writes next to the
//! blobs ([`ArchDescription`], `model-arch.json`) and the inverse of codegen's
//! `export::float_tensors` / `export::int8_tensors`, which turns a weight blob into the
//! [`FoldedModel`] or [`QuantModel`] that the reference interpreters ([`crate::interp`])
//! run. Those interpreters are bit-identical to the runtime's kernels and the generated
//! code, so the host computes from a blob exactly what a device computes from the same
//! bytes.
//!
//! A blob holds weights and model constants but not the layer list (the generated code
//! hard-wires it); the description supplies it, and its [`arch_hash`] must equal the blob's.
//! Every blob goes through `runtime::blob::Blob::parse` (magic, version, CRC-32, tensor table
//! against what the architecture needs) and the same value checks as the generated
//! `Model::new`, through the same runtime functions: model constants and the accepted
//! redshift range (`runtime::model::Meta`), finite float weights, requantisation tables,
//! int8 biases and requantisation that cannot overflow the i32 accumulators
//! (`runtime::quant::layer_is_exact`, `head_is_exact`, `leaky_is_exact`), positive scales,
//! zero points in [-128, 127]. (The reference interpreters themselves do not refuse a
//! redshift outside that range, as the runtime does: `trainer predict` flags it.)
//!
//! Not stored in an int8 blob, so not restored: the weight scales `w_scale` (inference uses
//! the requantisation tables and the head's `out_scale` built from them; decoded models
//! leave them empty) and the calibrated ranges (restored as the range each tensor's int8
//! parameters represent).

use crate::interp::FloatPath;
use crate::model::{
    AuxQuantity, ConvGeom, ConvOp, DenseOp, ExtraInput, FoldedModel, Op, PreprocessDesc,
    SigmaCalibration,
};
use crate::quant::{QConv, QDense, QHead, QLeaky, QOp, QuantModel};
use crate::{Layer, Shape, analyze};
use anyhow::{Context, Result, bail, ensure};
use runtime::blob::{Blob, Dtype, Elem, Header, fnv1a64};
use runtime::quant::{QParams, Requant};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// File name of the architecture description in an export directory.
pub const ARCH_FILE: &str = "model-arch.json";
/// Format identifier of [`ArchDescription`].
pub const ARCH_FORMAT: &str = "cluster-mass-arch";
/// Format version of [`ArchDescription`].
pub const ARCH_VERSION: u32 = 1;

/// What the model was trained on, as far as the export knows it (the flags of
/// `trainer predict` compare every cluster with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingRange {
    /// Lowest and highest redshift.
    pub redshift: [f64; 2],
    /// Lowest and highest exposure in seconds, if known.
    pub exposure_s: Option<[f64; 2]>,
    /// Where the numbers come from.
    pub source: String,
    /// How the training data were observed, if the sample's metadata say (simulated data
    /// record their configuration): the conventions a device needs to check its input
    /// and to run the detection check ([`Observation::detection`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observation: Option<Observation>,
}

/// The observation conventions of a model's training data: band edges, pixel scale, the
/// cluster centre on the cutout and the cosmology, as the simulator recorded them. The
/// generated code embeds them (`BAND_EDGES_EV`, `DETECTION`) and `model-arch.json`
/// records them, so host tools and firmware can check a cube against the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Energy band edges, keV, low edge of the first band to the high edge of the last.
    pub band_edges_kev: Vec<f64>,
    /// Pixel side, arcsec.
    pub pixel_arcsec: f64,
    /// Cutout side, pixels (the cluster sits at its centre, `side / 2` in pixel
    /// coordinates where pixel `i` covers `[i, i + 1)`).
    pub side_px: usize,
    /// Hubble constant, km/s/Mpc (flat LCDM).
    pub h0: f64,
    /// Matter density today.
    pub omega_m: f64,
}

impl Observation {
    /// From a dataset's metadata (`meta_json`: the simulator's `config`); `None` if it does
    /// not record the instrument and the bands.
    pub fn of_meta(meta: &serde_json::Value) -> Option<Self> {
        let f = |p: &str| meta.pointer(p).and_then(serde_json::Value::as_f64);
        let band_edges_kev: Vec<f64> =
            serde_json::from_value(meta.pointer("/config/spectral/band_edges_kev")?.clone())
                .ok()?;
        let side_px = meta
            .pointer("/config/instrument/npix")
            .and_then(serde_json::Value::as_u64)? as usize;
        Some(Self {
            band_edges_kev,
            pixel_arcsec: f("/config/instrument/pixel_arcsec")?,
            side_px,
            h0: f("/config/cosmology/h0").unwrap_or(70.0),
            omega_m: f("/config/cosmology/omega_m").unwrap_or(0.3),
        })
    }

    /// The soft bands `[first, end)`: the bands within 0.5-2 keV (the host's count-rate
    /// aperture photometry), if they are contiguous and there is at least one.
    pub fn soft_bands(&self) -> Option<[usize; 2]> {
        let e = &self.band_edges_kev;
        let soft: Vec<usize> = (0..e.len().saturating_sub(1))
            .filter(|&b| {
                let [lo, hi] = runtime::detect::SOFT_BAND_KEV.map(f64::from);
                e[b] >= lo - 1e-9 && e[b + 1] <= hi + 1e-9
            })
            .collect();
        let (&first, &last) = (soft.first()?, soft.last()?);
        (last + 1 - first == soft.len()).then_some([first, last + 1])
    }

    /// The device's detection check for these conventions (`runtime::detect`), for a
    /// `width x height` input; `None` without soft bands, for a cutout that is not the
    /// input's size, or for values the check cannot use.
    pub fn detection(&self, width: usize, height: usize) -> Option<runtime::detect::Detection> {
        let bands = self.soft_bands()?;
        let usable = |x: f64| x.is_finite() && x > 0.0;
        (self.side_px == width
            && self.side_px == height
            && usable(self.pixel_arcsec)
            && usable(self.h0)
            && usable(self.omega_m)
            && self.omega_m <= 1.0)
            .then(|| runtime::detect::Detection {
                h0: self.h0 as f32,
                omega_m: self.omega_m as f32,
                ..runtime::detect::Detection::erosita(
                    width,
                    height,
                    self.pixel_arcsec as f32,
                    bands,
                )
            })
    }
}

impl TrainingRange {
    /// The range of a sample in the dataset layout (a run's `calibration.npz`, which holds
    /// validation clusters and the training dataset's metadata): the simulator configuration's
    /// redshift range and exposure when `meta_json` has them, else the sample's own extremes.
    /// `Ok(None)` if the file has no redshifts.
    pub fn of_sample(path: &Path) -> Result<Option<Self>> {
        let mut npz = npyz::npz::NpzArchive::open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let len = std::fs::metadata(path)
            .with_context(|| format!("{}: cannot open", path.display()))?
            .len();
        let mut floats = |key: &str| -> Result<Option<Vec<f64>>> {
            let Some(arr) = crate::npy::npz_array(&mut npz, key, len)
                .with_context(|| format!("{}: array `{key}` unreadable", path.display()))?
            else {
                return Ok(None);
            };
            let type_str = match arr.dtype() {
                npyz::DType::Plain(t) => t.to_string(),
                _ => return Ok(None),
            };
            let v = match type_str.trim_start_matches(['<', '>', '|', '=']) {
                "f4" => arr.into_vec::<f32>()?.into_iter().map(f64::from).collect(),
                "f8" => arr.into_vec::<f64>()?,
                "u1" => arr.into_vec::<u8>()?.into_iter().map(f64::from).collect(),
                // Not a layout this reads: the range falls back to what is known.
                _ => return Ok(None),
            };
            Ok(Some(v))
        };
        let meta: Option<serde_json::Value> = floats("meta_json")?
            .map(|b| b.into_iter().map(|v| v as u8).collect::<Vec<u8>>())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let z = floats("redshift")?;
        let exposure = floats("exposure_s")?;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |f| f.to_string_lossy().into_owned(),
        );
        let pointer = |p: &str| {
            meta.as_ref()
                .and_then(|m| m.pointer(p))
                .and_then(|v| v.as_f64())
        };
        let extremes = |v: &[f64]| {
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo <= hi).then_some([lo, hi])
        };
        if let (Some(lo), Some(hi)) = (
            pointer("/config/population/z_min"),
            pointer("/config/population/z_max"),
        ) {
            // The exposures clusters can have (a range or a survey's scanning law), as the
            // simulator records them; older files recorded only a log-uniform range; else
            // the one exposure.
            let range = ["/exposure_range_s", "/config/instrument/exposure_range_s"]
                .iter()
                .find_map(|p| meta.as_ref().and_then(|m| m.pointer(p)))
                .and_then(|v| serde_json::from_value::<[f64; 2]>(v.clone()).ok());
            let exposure_s = range
                .or_else(|| pointer("/exposure_s").map(|e| [e, e]))
                .or_else(|| exposure.as_deref().and_then(extremes));
            return Ok(Some(Self {
                redshift: [lo, hi],
                exposure_s,
                source: format!("simulation configuration recorded in {name}"),
                observation: meta.as_ref().and_then(Observation::of_meta),
            }));
        }
        let Some(redshift) = z.as_deref().and_then(extremes) else {
            return Ok(None);
        };
        let n = z.as_ref().map_or(0, Vec::len);
        Ok(Some(Self {
            redshift,
            exposure_s: exposure.as_deref().and_then(extremes),
            source: format!("extremes of the {n} clusters of {name}"),
            observation: meta.as_ref().and_then(Observation::of_meta),
        }))
    }
}

/// `model-arch.json`: what a blob does not say about itself (the layer list, with fused
/// activations), so a host can run the blob; plus where the model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchDescription {
    /// [`ARCH_FORMAT`].
    pub format: String,
    /// [`ARCH_VERSION`].
    pub version: u32,
    /// Model name (as in the generated headers).
    pub name: String,
    /// [`arch_hash`] of the architecture, hexadecimal (`0x...`), as in every blob's header.
    pub arch_hash: String,
    /// Input shape.
    pub input: Shape,
    /// Inference ops as layers ([`FoldedModel::layers`]: batch norm folded, dropout gone).
    pub layers: Vec<Layer>,
    /// Fused leaky-ReLU slope of each convolution and dense op, `null` for the other ops.
    pub slopes: Vec<Option<f32>>,
    /// The model's training range, if the export knew it.
    pub training_range: Option<TrainingRange>,
    /// The command that wrote the export.
    pub command: String,
    /// Free-form provenance (a run's `model.json` provenance).
    #[serde(default)]
    pub provenance: serde_json::Value,
}

/// Fingerprint of an architecture: FNV-1a 64 of its input shape, folded layer list and
/// fused activation slopes (everything the generated code hard-wires), as in every blob's
/// header.
pub fn arch_hash(m: &FoldedModel) -> u64 {
    let slopes: Vec<Option<f32>> = m
        .ops
        .iter()
        .map(|op| match op {
            Op::Conv2d(c) => Some(c.slope),
            Op::Dense(d) => Some(d.slope),
            _ => None,
        })
        .collect();
    let text = serde_json::to_string(&(m.input, m.layers(), slopes)).expect("layers serialise");
    fnv1a64(text.as_bytes())
}

/// Format an architecture hash as descriptions and messages show it.
pub fn hash_hex(h: u64) -> String {
    format!("{h:#018x}")
}

impl ArchDescription {
    /// Describe a folded model.
    pub fn of(
        m: &FoldedModel,
        name: &str,
        command: &str,
        training_range: Option<TrainingRange>,
        provenance: serde_json::Value,
    ) -> Self {
        Self {
            format: ARCH_FORMAT.into(),
            version: ARCH_VERSION,
            name: name.into(),
            arch_hash: hash_hex(arch_hash(m)),
            input: m.input,
            layers: m.layers(),
            slopes: m
                .ops
                .iter()
                .map(|op| match op {
                    Op::Conv2d(c) => Some(c.slope),
                    Op::Dense(d) => Some(d.slope),
                    _ => None,
                })
                .collect(),
            training_range,
            command: command.into(),
            provenance,
        }
    }

    /// Read and check a description (format, version, a consistent layer list whose hash
    /// is the recorded one); errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let d: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not an architecture description", path.display()))?;
        ensure!(
            d.format == ARCH_FORMAT && d.version == ARCH_VERSION,
            "{}: format {:?} version {}, expected {ARCH_FORMAT:?} version {ARCH_VERSION}",
            path.display(),
            d.format,
            d.version
        );
        let skel = d
            .skeleton()
            .with_context(|| format!("{}: inconsistent layer list", path.display()))?;
        let h = hash_hex(arch_hash(&skel));
        ensure!(
            h == d.arch_hash,
            "{}: its layers hash to {h}, but it records {} (edited by hand?)",
            path.display(),
            d.arch_hash
        );
        Ok(d)
    }

    /// The architecture hash as a number.
    pub fn hash(&self) -> Result<u64> {
        u64::from_str_radix(self.arch_hash.trim_start_matches("0x"), 16)
            .with_context(|| format!("architecture hash {:?} is not hexadecimal", self.arch_hash))
    }

    /// The folded model with zero weights and neutral constants: the shape every blob of
    /// this architecture fills.
    pub fn skeleton(&self) -> Result<FoldedModel> {
        ensure!(
            self.slopes.len() == self.layers.len(),
            "{} slopes for {} layers",
            self.slopes.len(),
            self.layers.len()
        );
        let stats = analyze(self.input, &self.layers)?;
        let mut shape = self.input;
        let mut ops = Vec::with_capacity(self.layers.len());
        // Auxiliary inputs: their number from the layer list, their kind and constants from
        // each blob's tensor 0 (exposure is the only kind there is).
        let mut extra = 0;
        for (i, ((layer, slope), st)) in
            self.layers.iter().zip(&self.slopes).zip(&stats).enumerate()
        {
            let fused = || slope.with_context(|| format!("layer {i}: no slope"));
            ops.push(match *layer {
                Layer::Conv2d {
                    filters,
                    kernel,
                    stride,
                    dilation,
                    padding,
                } => Op::Conv2d(ConvOp {
                    geom: ConvGeom {
                        in_c: shape.c,
                        filters,
                        kernel,
                        stride,
                        dilation,
                        padding,
                    },
                    weight: vec![0.0; filters * shape.c * kernel * kernel],
                    bias: vec![0.0; filters],
                    slope: fused()?,
                }),
                Layer::Dense { units } => Op::Dense(DenseOp {
                    n_in: shape.len(),
                    units,
                    weight: vec![0.0; shape.len() * units],
                    bias: vec![0.0; units],
                    slope: fused()?,
                }),
                Layer::Pool2d { kind, size } => Op::Pool2d { kind, size },
                Layer::GlobalAvgPool => Op::GlobalAvgPool,
                Layer::FlattenConcatZ { scalars } => {
                    extra = scalars.saturating_sub(1);
                    Op::FlattenConcatZ
                }
                Layer::LeakyRelu { slope } => Op::LeakyRelu {
                    slope: slope as f32,
                },
                Layer::BatchNorm { .. } | Layer::Dropout { .. } => {
                    bail!("layer {i}: {layer:?} has no place in a folded model")
                }
            });
            ensure!(
                slope.is_none() || matches!(layer, Layer::Conv2d { .. } | Layer::Dense { .. }),
                "layer {i}: a slope on {layer:?}"
            );
            shape = st.out;
        }
        let m = FoldedModel {
            input: self.input,
            preprocess: PreprocessDesc {
                band_scale: vec![1.0; self.input.c],
                z_shift: 0.0,
                z_scale: 1.0,
                extra: vec![
                    ExtraInput {
                        quantity: AuxQuantity::Exposure,
                        shift: 0.0,
                        scale: 1.0,
                    };
                    extra
                ],
            },
            sigma_floor: 0.0,
            sigma_calibration: None,
            z_range: crate::model::FULL_Z_RANGE,
            extra_ranges: vec![AuxQuantity::Exposure.full_range(); extra],
            ops,
        };
        m.shapes()?;
        ensure!(
            matches!(m.ops.last(), Some(Op::Dense(d)) if d.units == 2 && d.slope == 1.0),
            "the last op must be the dense head with 2 units and no activation"
        );
        Ok(m)
    }
}

/// A blob made runnable by the reference interpreters.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// f32 or f16 weights (f16 ones widened to f32; run them with the given path).
    Float(FoldedModel, FloatPath),
    /// int8.
    Int8(QuantModel),
}

impl Decoded {
    /// The dtype name: `f32`, `f16` or `int8`.
    pub fn dtype_name(&self) -> &'static str {
        match self {
            Decoded::Float(_, FloatPath::F32) => "f32",
            Decoded::Float(_, FloatPath::F16) => "f16",
            Decoded::Int8(_) => "int8",
        }
    }

    /// Estimate one cluster from raw counts `[band][y][x]` and its raw scalar inputs
    /// (`[z, extra...]`, [`Decoded::preprocess`]`.scalar_names()`).
    pub fn predict(&self, counts: &[u16], scalars: &[f32]) -> Result<crate::interp::Prediction> {
        match self {
            Decoded::Float(m, path) => m.predict(counts, scalars, *path),
            Decoded::Int8(q) => q.predict(counts, scalars),
        }
    }

    /// The preprocessing (band scales and scalar inputs).
    pub fn preprocess(&self) -> &PreprocessDesc {
        match self {
            Decoded::Float(m, _) => &m.preprocess,
            Decoded::Int8(q) => &q.preprocess,
        }
    }

    /// The training ranges the blob records: redshift, then each auxiliary input's.
    pub fn scalar_ranges(&self) -> Vec<[f32; 2]> {
        let (z, extra) = match self {
            Decoded::Float(m, _) => (m.z_range, &m.extra_ranges),
            Decoded::Int8(q) => (q.z_range, &q.extra_ranges),
        };
        std::iter::once(z).chain(extra.iter().copied()).collect()
    }
}

/// The tensor table a blob of `dtype` for `skel`'s architecture has (element type, length):
/// the layout of codegen's `export::float_tensors` and `export::int8_tensors`.
pub fn expected_tensors(skel: &FoldedModel, dtype: Dtype) -> Vec<(Elem, usize)> {
    let mut out = vec![(
        Elem::F32,
        runtime::model::Meta::<0>::LEN
            + skel.input.c
            + runtime::model::ExtraScalar::LEN * skel.preprocess.extra.len(),
    )];
    let n = skel.ops.len();
    match dtype {
        Dtype::F32 | Dtype::F16 => {
            let w = if dtype == Dtype::F16 {
                Elem::F16
            } else {
                Elem::F32
            };
            for op in &skel.ops {
                match op {
                    Op::Conv2d(c) => out.extend([(w, c.weight.len()), (Elem::F32, c.bias.len())]),
                    Op::Dense(d) => out.extend([(w, d.weight.len()), (Elem::F32, d.bias.len())]),
                    _ => {}
                }
            }
        }
        Dtype::Int8 => {
            for (i, op) in skel.ops.iter().enumerate() {
                match op {
                    Op::Conv2d(ConvOp { weight, bias, .. })
                    | Op::Dense(DenseOp { weight, bias, .. }) => {
                        out.extend([(Elem::I8, weight.len()), (Elem::I32, bias.len())]);
                        if i + 1 == n {
                            out.push((Elem::F32, bias.len()));
                        } else {
                            out.extend([(Elem::I32, 2 * bias.len()), (Elem::I32, 2 * bias.len())]);
                        }
                    }
                    Op::LeakyRelu { .. } => out.push((Elem::I32, 4)),
                    _ => {}
                }
            }
            out.extend([(Elem::F32, n + 1), (Elem::I32, n + 1)]);
        }
    }
    out
}

/// The dtype a blob header declares.
pub fn blob_dtype(h: &Header) -> Result<Dtype> {
    Ok(match h.dtype {
        0 => Dtype::F32,
        1 => Dtype::F16,
        2 => Dtype::Int8,
        d => bail!("unknown dtype byte {d} (known: 0 f32, 1 f16, 2 int8)"),
    })
}

/// `bytes` copied into `buf` at a 16-byte-aligned address, as `Blob::parse` requires.
fn aligned<'a>(buf: &'a mut Vec<u8>, bytes: &[u8]) -> &'a [u8] {
    buf.clear();
    buf.resize(bytes.len() + 15, 0);
    // (`align_offset` may in theory give up; `Blob::parse` then reports a misaligned blob.)
    let off = buf.as_ptr().align_offset(16).min(15);
    buf[off..off + bytes.len()].copy_from_slice(bytes);
    &buf[off..off + bytes.len()]
}

/// Decode a blob for the architecture `skel` (from [`ArchDescription::skeleton`]). The
/// blob's dtype comes from its header; its architecture hash must be `skel`'s.
pub fn decode(skel: &FoldedModel, bytes: &[u8]) -> Result<Decoded> {
    let h = Header::read(bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dtype = blob_dtype(&h)?;
    let want = arch_hash(skel);
    ensure!(
        h.arch_hash == want,
        "the blob is for architecture {}, the description's is {}",
        hash_hex(h.arch_hash),
        hash_hex(want)
    );
    let mut buf = Vec::new();
    let view = aligned(&mut buf, &bytes[..h.len]);
    let b = Blob::parse(view, dtype, want, &expected_tensors(skel, dtype))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut r = Reader { b, next: 0 };
    let (preprocess, sigma_floor, sigma_calibration, z_range, extra_ranges) =
        r.meta(skel.input.c, skel.preprocess.extra.len())?;
    match dtype {
        Dtype::F32 | Dtype::F16 => {
            let mut m = skel.clone();
            for op in &mut m.ops {
                let (w, bias) = match op {
                    Op::Conv2d(c) => (&mut c.weight, &mut c.bias),
                    Op::Dense(d) => (&mut d.weight, &mut d.bias),
                    _ => continue,
                };
                *w = if dtype == Dtype::F16 {
                    r.f16()?
                } else {
                    r.f32()?
                };
                *bias = r.f32()?;
            }
            m.preprocess = preprocess;
            m.sigma_floor = sigma_floor;
            m.sigma_calibration = sigma_calibration;
            m.z_range = z_range;
            m.extra_ranges = extra_ranges;
            let path = if dtype == Dtype::F16 {
                FloatPath::F16
            } else {
                FloatPath::F32
            };
            Ok(Decoded::Float(m, path))
        }
        Dtype::Int8 => {
            let n = skel.ops.len();
            // The activation table comes last; read it first.
            let mut tail = Reader {
                b: r.b,
                next: r.b.len() - 2,
            };
            let scales = tail.scales()?;
            let zps = tail.i32()?;
            let at = tail.next - 1;
            ensure!(
                zps.iter().all(|z| (-128..=127).contains(z)),
                "tensor {at}: zero point outside [-128, 127]"
            );
            let tensor_q: Vec<QParams> = scales
                .iter()
                .zip(&zps)
                .map(|(&scale, &zero_point)| QParams { scale, zero_point })
                .collect();
            let mut ops = Vec::with_capacity(n);
            for (i, op) in skel.ops.iter().enumerate() {
                let (in_q, out_q) = (tensor_q[i], tensor_q[i + 1]);
                ops.push(match op {
                    Op::Conv2d(c) => {
                        let weight = r.i8()?;
                        let taps = c.geom.in_c * c.geom.kernel * c.geom.kernel;
                        let (bias, requant_pos, requant_neg) = r.layer(taps)?;
                        QOp::Conv2d(QConv {
                            geom: c.geom,
                            weight,
                            bias,
                            w_scale: Vec::new(),
                            requant_pos,
                            requant_neg,
                            in_q,
                            out_q,
                        })
                    }
                    Op::Dense(d) if i + 1 == n => {
                        let weight = r.i8()?;
                        let at = r.next;
                        let bias = r.i32()?;
                        ensure!(
                            runtime::quant::head_is_exact(&bias, d.n_in),
                            "tensor {at}: a head bias that can overflow the int8 accumulator"
                        );
                        QOp::Head(QHead {
                            n_in: d.n_in,
                            units: d.units,
                            weight,
                            bias,
                            w_scale: Vec::new(),
                            in_q,
                            out_scale: r.scales()?,
                        })
                    }
                    Op::Dense(d) => {
                        let weight = r.i8()?;
                        let (bias, requant_pos, requant_neg) = r.layer(d.n_in)?;
                        QOp::Dense(QDense {
                            n_in: d.n_in,
                            units: d.units,
                            weight,
                            bias,
                            w_scale: Vec::new(),
                            requant_pos,
                            requant_neg,
                            in_q,
                            out_q,
                        })
                    }
                    Op::LeakyRelu { .. } => {
                        let at = r.next;
                        let t = r.requant()?;
                        ensure!(
                            runtime::quant::leaky_is_exact(t[0], t[1]),
                            "tensor {at}: a leaky ReLU requantisation that can overflow"
                        );
                        QOp::LeakyRelu(QLeaky {
                            in_q,
                            out_q,
                            pos: t[0],
                            neg: t[1],
                        })
                    }
                    Op::Pool2d { kind, size } => QOp::Pool2d {
                        kind: *kind,
                        size: *size,
                    },
                    Op::GlobalAvgPool => QOp::GlobalAvgPool,
                    Op::FlattenConcatZ => QOp::FlattenConcatZ { z_q: out_q },
                });
            }
            ensure!(
                r.next == r.b.len() - 2,
                "tensor table longer than the architecture needs"
            );
            Ok(Decoded::Int8(QuantModel {
                input: skel.input,
                preprocess,
                sigma_floor,
                sigma_calibration,
                z_range,
                extra_ranges,
                shapes: skel.shapes()?,
                ranges: tensor_q
                    .iter()
                    .map(|q| (q.dequantize(-128), q.dequantize(127)))
                    .collect(),
                tensor_q,
                ops,
            }))
        }
    }
}

/// Reads a validated blob's tensors in order; value errors name the tensor index.
struct Reader<'a> {
    b: Blob<'a>,
    next: usize,
}

impl Reader<'_> {
    fn take(&mut self) -> usize {
        self.next += 1;
        self.next - 1
    }
    fn f32(&mut self) -> Result<Vec<f32>> {
        let i = self.take();
        let v = self
            .b
            .f32(i)
            .with_context(|| format!("tensor {i}: not f32"))?;
        ensure!(
            v.iter().all(|x| x.is_finite()),
            "tensor {i}: non-finite value"
        );
        Ok(v.to_vec())
    }
    fn f16(&mut self) -> Result<Vec<f32>> {
        let i = self.take();
        let v = self
            .b
            .f16(i)
            .with_context(|| format!("tensor {i}: not f16"))?;
        ensure!(
            v.iter().all(|x| x.is_finite()),
            "tensor {i}: non-finite value"
        );
        Ok(v.iter().map(|x| x.to_f32()).collect())
    }
    fn i8(&mut self) -> Result<Vec<i8>> {
        let i = self.take();
        Ok(self
            .b
            .i8(i)
            .with_context(|| format!("tensor {i}: not i8"))?
            .to_vec())
    }
    fn i32(&mut self) -> Result<Vec<i32>> {
        let i = self.take();
        Ok(self
            .b
            .i32(i)
            .with_context(|| format!("tensor {i}: not i32"))?
            .to_vec())
    }
    /// Positive finite f32 scales (as the generated code requires).
    fn scales(&mut self) -> Result<Vec<f32>> {
        let i = self.next;
        let v = self.f32()?;
        ensure!(v.iter().all(|s| *s > 0.0), "tensor {i}: scale not positive");
        Ok(v)
    }
    /// An int8 layer's bias and requantisation tables (positive, negative side), refused
    /// unless exact for every input: `taps` multiply-accumulates per output cannot overflow
    /// the i32 accumulator ([`runtime::quant::layer_is_exact`], as the generated code checks).
    fn layer(&mut self, taps: usize) -> Result<(Vec<i32>, Vec<Requant>, Vec<Requant>)> {
        let at = self.next;
        let bias = self.i32()?;
        let (pos, neg) = (self.requant()?, self.requant()?);
        ensure!(
            runtime::quant::layer_is_exact(&bias, taps, &pos, &neg),
            "tensor {at}: a bias (with its requantisation) that can overflow the int8 accumulator"
        );
        Ok((bias, pos, neg))
    }
    fn requant(&mut self) -> Result<Vec<Requant>> {
        let i = self.take();
        let v = self
            .b
            .requant(i)
            .with_context(|| format!("tensor {i}: not requantisation pairs"))?;
        ensure!(
            v.iter().all(|q| q.is_valid()),
            "tensor {i}: invalid requantisation multiplier or shift"
        );
        Ok(v.to_vec())
    }
    /// Tensor 0, checked by the runtime's own `Meta::from_slice` (one band at a time, so any
    /// band count works) and `ExtraScalar::from_slice`: preprocessing, sigma floor and
    /// calibration, training redshifts, `extra` auxiliary inputs and their ranges.
    #[allow(clippy::type_complexity)]
    fn meta(
        &mut self,
        bands: usize,
        extra: usize,
    ) -> Result<(
        PreprocessDesc,
        f64,
        Option<SigmaCalibration>,
        [f32; 2],
        Vec<[f32; 2]>,
    )> {
        let i = self.take();
        let v = self.b.f32(i).context("tensor 0: not f32")?;
        let aux_len = runtime::model::ExtraScalar::LEN * extra;
        ensure!(
            v.len() == bands + runtime::model::Meta::<0>::LEN + aux_len,
            "tensor 0: {} model constants",
            v.len()
        );
        let (v, aux) = v.split_at(v.len() - aux_len);
        let mut inputs = Vec::with_capacity(extra);
        let mut ranges = Vec::with_capacity(extra);
        for (k, c) in aux
            .chunks_exact(runtime::model::ExtraScalar::LEN)
            .enumerate()
        {
            let e = runtime::model::ExtraScalar::from_slice(c).with_context(|| {
                format!(
                    "tensor 0: auxiliary input {}: unusable constants {c:?}",
                    k + 1
                )
            })?;
            inputs.push(ExtraInput {
                quantity: match e.quantity {
                    runtime::model::Quantity::Exposure => AuxQuantity::Exposure,
                },
                shift: e.shift,
                scale: e.scale,
            });
            ranges.push(e.range);
        }
        let tail = &v[bands..];
        let mut meta = None;
        for s in &v[..bands] {
            let one: Vec<f32> = std::iter::once(*s).chain(tail.iter().copied()).collect();
            meta = Some(runtime::model::Meta::<1>::from_slice(&one).context(
                "tensor 0: unusable model constants (band scale, redshift scaling or range, sigma floor or calibration)",
            )?);
        }
        let m = meta.context("tensor 0: no band")?;
        let calibration = match m.calibration {
            runtime::model::SigmaCalibration::None => None,
            runtime::model::SigmaCalibration::Scale(s) => Some(SigmaCalibration::Scale {
                scale: f64::from(s),
            }),
            runtime::model::SigmaCalibration::Constant(s) => Some(SigmaCalibration::Constant {
                sigma: f64::from(s),
            }),
        };
        Ok((
            PreprocessDesc {
                band_scale: v[..bands].to_vec(),
                z_shift: m.preprocess.z_shift,
                z_scale: m.preprocess.z_scale,
                extra: inputs,
            },
            f64::from(m.sigma_floor),
            calibration,
            m.z_range,
            ranges,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::testutil::e30_dir;

    fn e30() -> FoldedModel {
        Model::load(e30_dir()).unwrap().fold_batch_norm().unwrap()
    }

    fn description(m: &FoldedModel) -> ArchDescription {
        let d = ArchDescription::of(m, "e30", "test", None, serde_json::Value::Null);
        let text = serde_json::to_string_pretty(&d).unwrap();
        let back: ArchDescription = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
        back
    }

    /// A description whose recorded hash does not match its layers is refused on load.
    #[test]
    fn edited_descriptions_are_refused() {
        let m = e30();
        let mut d = description(&m);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(ARCH_FILE);
        std::fs::write(&p, serde_json::to_vec(&d).unwrap()).unwrap();
        assert_eq!(ArchDescription::load(&p).unwrap(), d);
        d.slopes[1] = Some(0.3);
        std::fs::write(&p, serde_json::to_vec(&d).unwrap()).unwrap();
        let e = format!("{:#}", ArchDescription::load(&p).unwrap_err());
        assert!(e.contains(ARCH_FILE) && e.contains("hash"), "{e}");
    }

    fn npz(path: &Path, z: &[f32], meta: Option<&str>) {
        use npyz::WriterBuilder;
        let f = std::fs::File::create(path).unwrap();
        let mut w = npyz::npz::NpzWriter::new(std::io::BufWriter::new(f));
        let mut a = w
            .array::<f32>("redshift", Default::default())
            .unwrap()
            .default_dtype()
            .shape(&[z.len() as u64])
            .begin_nd()
            .unwrap();
        a.extend(z.iter().copied()).unwrap();
        a.finish().unwrap();
        if let Some(m) = meta {
            let mut a = w
                .array::<u8>("meta_json", Default::default())
                .unwrap()
                .default_dtype()
                .shape(&[m.len() as u64])
                .begin_nd()
                .unwrap();
            a.extend(m.bytes()).unwrap();
            a.finish().unwrap();
        }
    }

    /// The simulation configuration wins; without one, the sample's own extremes.
    #[test]
    fn training_range_of_a_sample() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.npz");
        let meta =
            r#"{"exposure_s": 600.0, "config": {"population": {"z_min": 0.1, "z_max": 0.9}}}"#;
        npz(&p, &[0.2, 0.5], Some(meta));
        let r = TrainingRange::of_sample(&p).unwrap().unwrap();
        assert_eq!(
            (r.redshift, r.exposure_s),
            ([0.1, 0.9], Some([600.0, 600.0]))
        );
        assert!(
            r.source.contains("simulation configuration"),
            "{}",
            r.source
        );
        npz(&p, &[0.2, 0.5, 0.3], None);
        let r = TrainingRange::of_sample(&p).unwrap().unwrap();
        assert_eq!((r.redshift, r.exposure_s), ([f64::from(0.2f32), 0.5], None));
        assert!(r.source.contains("3 clusters"), "{}", r.source);
    }
}
