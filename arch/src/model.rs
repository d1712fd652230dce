//! A trained run's framework-neutral export (`model.json` + `model.safetensors`,
//! written by `trainer::fit::export`), validated, and folded for inference.
//!
//! [`Model::load`] parses both files and checks that every tensor the layer list
//! needs exists with the right shape; every error names the file and the tensor.
//! [`Model::fold_batch_norm`] turns the layer list into [`FoldedModel`] ops:
//!
//! - each `BatchNorm` is folded into the preceding convolution (or dense layer):
//!   `w' = w g / sqrt(var + eps)` per output channel, `b' = (b - mean) g / sqrt(var + eps) + beta`,
//!   computed in f64 and rounded once to f32;
//! - `Dropout` is dropped (identity at inference);
//! - a `LeakyRelu` directly after a convolution or dense layer (after folding) is
//!   **fused** into it as `slope` (the runtime kernels' convention: `max(x, slope x)`
//!   applied to the accumulator, `slope = 1` meaning no activation, `0` ReLU); any other
//!   `LeakyRelu` stays an explicit [`Op::LeakyRelu`].

use crate::{Layer, Padding, PoolKind, Shape, analyze};
use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Format identifier in `model.json`.
pub const FORMAT: &str = "cluster-mass-model";
/// Export format version this crate reads.
pub const VERSION: u32 = 1;

/// `model.json`: the framework-neutral description a trained run exports (`trainer::fit::export`
/// writes this very type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDescription {
    /// Format name ([`FORMAT`]).
    pub format: String,
    /// Format version ([`VERSION`]).
    pub version: u32,
    /// Input shape (bands, height, width).
    pub input: Shape,
    /// Layers in order.
    pub layers: Vec<Layer>,
    /// Preprocessing of raw counts and redshift.
    pub preprocess: PreprocessDesc,
    /// sigma = softplus(raw) + floor, then calibrated.
    pub sigma_floor: f64,
    /// Calibration of sigma on the validation split.
    pub sigma_calibration: Option<SigmaCalibration>,
    /// Tensor names and shapes in `model.safetensors`.
    pub tensors: Vec<(String, Vec<usize>)>,
    /// [`tensors_checksum`] of `model.safetensors` (exports made before it was recorded
    /// have none): a corrupted or replaced tensor file is refused, not exported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensors_fnv1a64: Option<String>,
    /// Free-form provenance.
    #[serde(default)]
    pub provenance: serde_json::Value,
}

/// The checksum `model.json` records of `model.safetensors`: FNV-1a 64, 16 hex digits.
pub fn tensors_checksum(bytes: &[u8]) -> String {
    format!("{:016x}", runtime::blob::fnv1a64(bytes))
}

/// Refuse tensor-file bytes whose checksum differs from the one `desc` records.
pub fn verify_tensors(desc: &ModelDescription, bytes: &[u8], path: &Path) -> Result<()> {
    if let Some(want) = &desc.tensors_fnv1a64 {
        let got = tensors_checksum(bytes);
        ensure!(
            &got == want,
            "{}: checksum {got} differs from {want} recorded in model.json: the file is corrupted or is not this model's",
            path.display()
        );
    }
    Ok(())
}

/// `x = ln(1 + counts) * band_scale[band]`, `z' = (z - z_shift) * z_scale`, and for each
/// auxiliary input `a' = (feature(a) - shift) * scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessDesc {
    /// Per-band multiplier of ln(1 + counts).
    pub band_scale: Vec<f32>,
    /// Subtracted from the redshift.
    pub z_shift: f32,
    /// Multiplies the shifted redshift.
    pub z_scale: f32,
    /// The scalar inputs after the redshift, in the network's order (none for models that
    /// take the redshift only, and for every export made before auxiliary inputs existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<ExtraInput>,
}

impl PreprocessDesc {
    /// Number of scalar inputs: the redshift and [`PreprocessDesc::extra`].
    pub fn scalars(&self) -> usize {
        1 + self.extra.len()
    }

    /// Names of the scalar inputs in order (`redshift`, then e.g. `exposure_s`).
    pub fn scalar_names(&self) -> Vec<&'static str> {
        std::iter::once("redshift")
            .chain(self.extra.iter().map(|e| e.quantity.runtime().name()))
            .collect()
    }
}

/// What an auxiliary scalar input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuxQuantity {
    /// Exposure time at the cluster, seconds; the network sees `log10` of it.
    #[serde(rename = "exposure_s")]
    Exposure,
}

impl AuxQuantity {
    /// The runtime's code for it.
    pub fn runtime(self) -> runtime::model::Quantity {
        match self {
            AuxQuantity::Exposure => runtime::model::Quantity::Exposure,
        }
    }

    /// The network's feature of a raw value (`log10 t`), in f32 as the runtime computes it.
    pub fn feature(self, raw: f32) -> f32 {
        self.runtime().feature(raw)
    }

    /// The widest raw range a model may record.
    pub fn full_range(self) -> [f32; 2] {
        match self {
            AuxQuantity::Exposure => [f32::MIN_POSITIVE, runtime::model::MAX_EXPOSURE_S],
        }
    }
}

/// One auxiliary scalar input of the network: `(feature(raw) - shift) * scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ExtraInput {
    /// What it is.
    pub quantity: AuxQuantity,
    /// Subtracted from the feature.
    pub shift: f32,
    /// Multiplies the shifted feature.
    pub scale: f32,
}

/// How the predicted sigma is calibrated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SigmaCalibration {
    /// sigma = scale x predicted sigma.
    Scale {
        /// The factor.
        scale: f64,
    },
    /// sigma = constant.
    Constant {
        /// Sigma, dex.
        sigma: f64,
    },
}

impl SigmaCalibration {
    /// Apply to a predicted sigma.
    pub fn apply(&self, sigma: f64) -> f64 {
        match *self {
            SigmaCalibration::Scale { scale } => sigma * scale,
            SigmaCalibration::Constant { sigma } => sigma,
        }
    }
}

/// A dense row-major f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorF32 {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// A validated export: description plus every tensor by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Parsed `model.json`.
    pub desc: ModelDescription,
    /// Tensors of `model.safetensors`.
    pub tensors: BTreeMap<String, TensorF32>,
    /// Where the tensors came from (for error messages).
    pub source: PathBuf,
}

/// Geometry of a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub in_c: usize,
    /// Output channels.
    pub filters: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Dilation.
    pub dilation: usize,
    /// Padding mode.
    pub padding: Padding,
}

impl ConvGeom {
    /// Zero padding on every side: `dilation (kernel - 1) / 2` for "same" (odd kernel, stride 1), else 0.
    pub fn pad(&self) -> usize {
        match self.padding {
            Padding::Same => self.dilation * (self.kernel - 1) / 2,
            Padding::Valid => 0,
        }
    }
    /// Output shape on input `s` (the runtime kernel's formula).
    pub fn out_shape(&self, s: Shape) -> Shape {
        let ext = self.dilation * (self.kernel - 1) + 1;
        let p = self.pad();
        Shape {
            c: self.filters,
            h: (s.h + 2 * p - ext) / self.stride + 1,
            w: (s.w + 2 * p - ext) / self.stride + 1,
        }
    }
}

/// A convolution with BatchNorm folded in and its activation fused.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvOp {
    /// Geometry.
    pub geom: ConvGeom,
    /// Weights `[filters][in_c][kernel][kernel]`.
    pub weight: Vec<f32>,
    /// Biases `[filters]`.
    pub bias: Vec<f32>,
    /// Fused leaky-ReLU slope (1 = none, 0 = ReLU).
    pub slope: f32,
}

/// A dense layer with its activation fused.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseOp {
    /// Inputs.
    pub n_in: usize,
    /// Outputs.
    pub units: usize,
    /// Weights `[n_in][units]`.
    pub weight: Vec<f32>,
    /// Biases `[units]`.
    pub bias: Vec<f32>,
    /// Fused leaky-ReLU slope (1 = none, 0 = ReLU).
    pub slope: f32,
}

/// One inference op of a folded model.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Convolution (+ folded BatchNorm, + fused activation).
    Conv2d(ConvOp),
    /// Pooling, window = stride = `size`; trailing rows/columns dropped.
    Pool2d {
        /// Max or average.
        kind: PoolKind,
        /// Window side.
        size: usize,
    },
    /// Mean per channel.
    GlobalAvgPool,
    /// Flatten channel-major, then append the preprocessed scalar inputs (the redshift,
    /// then [`PreprocessDesc::extra`]).
    FlattenConcatZ,
    /// Dense (+ fused activation). The last op is the head (2 units, no activation).
    Dense(DenseOp),
    /// A leaky ReLU that could not be fused.
    LeakyRelu {
        /// Negative-side slope.
        slope: f32,
    },
}

/// The widest redshift range a model may record: `[0, runtime::model::MAX_REDSHIFT]`.
pub const FULL_Z_RANGE: [f32; 2] = [0.0, runtime::model::MAX_REDSHIFT];

/// The inference graph: no BatchNorm, no Dropout.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedModel {
    /// Input shape.
    pub input: Shape,
    /// Preprocessing.
    pub preprocess: PreprocessDesc,
    /// Smallest sigma added after the softplus.
    pub sigma_floor: f64,
    /// Sigma calibration.
    pub sigma_calibration: Option<SigmaCalibration>,
    /// Redshifts the model accepts, `[min, max]` (stored in tensor 0 of its blobs; the
    /// runtime refuses others): `codegen export` sets the training range, a model read from
    /// a run or ONNX starts with the widest range, `[0, runtime::model::MAX_REDSHIFT]`.
    pub z_range: [f32; 2],
    /// Raw training ranges of the auxiliary inputs ([`PreprocessDesc::extra`], same order;
    /// stored in tensor 0 and flagged by the runtime outside): `codegen export` sets them
    /// from the training data, else each quantity's full range.
    pub extra_ranges: Vec<[f32; 2]>,
    /// Ops in order; the last is the (mu, raw sigma) head.
    pub ops: Vec<Op>,
}

impl FoldedModel {
    /// The auxiliary inputs as the runtime reads them from tensor 0.
    pub fn extra_scalars(&self) -> Vec<runtime::model::ExtraScalar> {
        self.preprocess
            .extra
            .iter()
            .zip(&self.extra_ranges)
            .map(|(e, r)| runtime::model::ExtraScalar {
                quantity: e.quantity.runtime(),
                shift: e.shift,
                scale: e.scale,
                range: *r,
            })
            .collect()
    }

    /// The ops as [`Layer`]s (fused activations are not listed), one per op.
    pub fn layers(&self) -> Vec<Layer> {
        self.ops
            .iter()
            .map(|op| match op {
                Op::Conv2d(c) => Layer::Conv2d {
                    filters: c.geom.filters,
                    kernel: c.geom.kernel,
                    stride: c.geom.stride,
                    dilation: c.geom.dilation,
                    padding: c.geom.padding,
                },
                Op::Pool2d { kind, size } => Layer::Pool2d {
                    kind: *kind,
                    size: *size,
                },
                Op::GlobalAvgPool => Layer::GlobalAvgPool,
                Op::FlattenConcatZ => Layer::FlattenConcatZ {
                    scalars: self.preprocess.scalars(),
                },
                Op::Dense(d) => Layer::Dense { units: d.units },
                Op::LeakyRelu { slope } => Layer::LeakyRelu {
                    slope: f64::from(*slope),
                },
            })
            .collect()
    }

    /// Shapes of every activation tensor: `[0]` the input, `[i + 1]` the output of op `i`.
    /// Also checks that every op's parameters fit the tensor it receives.
    pub fn shapes(&self) -> Result<Vec<Shape>> {
        let stats = analyze(self.input, &self.layers())?;
        let shapes: Vec<Shape> = std::iter::once(self.input)
            .chain(stats.iter().map(|s| s.out))
            .collect();
        for (i, (op, s)) in self.ops.iter().zip(&shapes).enumerate() {
            let ok = match op {
                Op::Conv2d(c) => {
                    let g = c.geom;
                    let same_ok =
                        g.padding == Padding::Valid || (g.kernel % 2 == 1 && g.stride == 1);
                    g.in_c == s.c
                        && same_ok
                        && c.weight.len() == g.filters * g.in_c * g.kernel * g.kernel
                        && c.bias.len() == g.filters
                }
                Op::Dense(d) => {
                    d.n_in == s.len()
                        && d.weight.len() == d.n_in * d.units
                        && d.bias.len() == d.units
                }
                _ => true,
            };
            ensure!(ok, "op {i} ({op:?}) does not fit its input {s:?}");
        }
        Ok(shapes)
    }
}

impl Model {
    /// Read `model.json` and `model.safetensors` from a run directory and validate them.
    pub fn load(run_dir: impl AsRef<Path>) -> Result<Self> {
        let dir = run_dir.as_ref();
        let json_path = dir.join("model.json");
        let text = std::fs::read_to_string(&json_path)
            .with_context(|| format!("reading {}", json_path.display()))?;
        let desc: ModelDescription = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", json_path.display()))?;
        let st_path = dir.join("model.safetensors");
        let bytes =
            std::fs::read(&st_path).with_context(|| format!("reading {}", st_path.display()))?;
        verify_tensors(&desc, &bytes, &st_path)?;
        let tensors = crate::tensors::read_f32(&bytes, &st_path)?;
        Self::from_parts(desc, tensors, st_path)
    }

    /// Validate a description and its tensors (`source` names the tensor file in errors).
    pub fn from_parts(
        desc: ModelDescription,
        tensors: BTreeMap<String, TensorF32>,
        source: PathBuf,
    ) -> Result<Self> {
        let m = Self {
            desc,
            tensors,
            source,
        };
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> Result<()> {
        let d = &self.desc;
        let src = self.source.display();
        ensure!(
            d.format == FORMAT,
            "model.json: format {:?}, expected {FORMAT:?}",
            d.format
        );
        ensure!(
            d.version == VERSION,
            "model.json: version {}, expected {VERSION}",
            d.version
        );
        ensure!(
            d.preprocess.band_scale.len() == d.input.c,
            "model.json: {} band scales for {} input channels",
            d.preprocess.band_scale.len(),
            d.input.c
        );
        // Every tensor model.json lists exists with the listed shape.
        for (name, shape) in &d.tensors {
            let t = self.tensors.get(name).with_context(|| {
                format!("{src}: tensor `{name}` listed in model.json is missing")
            })?;
            ensure!(
                &t.shape == shape,
                "{src}: tensor `{name}` has shape {:?}, model.json says {shape:?}",
                t.shape
            );
        }
        let stats = analyze(d.input, &d.layers).context("model.json: layer list")?;
        let (mut ci, mut ni, mut di, mut concat) = (0, 0, 0, 0);
        let mut shape = d.input;
        for (i, (layer, st)) in d.layers.iter().zip(&stats).enumerate() {
            match *layer {
                Layer::Conv2d {
                    filters,
                    kernel,
                    stride,
                    ..
                } => {
                    if matches!(
                        layer,
                        Layer::Conv2d {
                            padding: Padding::Same,
                            ..
                        }
                    ) {
                        ensure!(
                            kernel % 2 == 1 && stride == 1,
                            "model.json: layer {i}: \"same\" padding needs an odd kernel and stride 1"
                        );
                    }
                    ensure!(
                        concat == 0,
                        "model.json: layer {i}: convolution after the flatten"
                    );
                    self.need(
                        &format!("conv{ci}.weight"),
                        &[filters, shape.c, kernel, kernel],
                        i,
                    )?;
                    self.need_bias(&format!("conv{ci}.bias"), filters, i)?;
                    ci += 1;
                }
                Layer::BatchNorm { epsilon } => {
                    ensure!(
                        epsilon >= 0.0,
                        "model.json: layer {i}: negative BatchNorm epsilon"
                    );
                    for p in ["gamma", "beta", "running_mean", "running_var"] {
                        self.need(&format!("bn{ni}.{p}"), &[shape.c], i)?;
                    }
                    ni += 1;
                }
                Layer::Dense { units } => {
                    ensure!(
                        concat == 1,
                        "model.json: layer {i}: dense layer before the flatten (flatten_concat_z)"
                    );
                    self.need(&format!("dense{di}.weight"), &[shape.len(), units], i)?;
                    self.need_bias(&format!("dense{di}.bias"), units, i)?;
                    di += 1;
                }
                Layer::FlattenConcatZ { scalars } => {
                    ensure!(
                        scalars == d.preprocess.scalars(),
                        "model.json: layer {i}: appends {scalars} scalar inputs, the preprocessing describes {} ({})",
                        d.preprocess.scalars(),
                        d.preprocess.scalar_names().join(", ")
                    );
                    concat += 1
                }
                _ => {}
            }
            shape = st.out;
        }
        ensure!(
            concat == 1,
            "model.json: {concat} flatten_concat_z layers, expected exactly one"
        );
        let head = d
            .layers
            .iter()
            .rposition(|l| !matches!(l, Layer::Dropout { .. }));
        ensure!(
            matches!(head.map(|h| &d.layers[h]), Some(Layer::Dense { units: 2 })),
            "model.json: the last layer must be the dense head with 2 units (mu, raw sigma)"
        );
        Ok(())
    }

    fn need(&self, name: &str, shape: &[usize], layer: usize) -> Result<()> {
        let src = self.source.display();
        let t = self.tensors.get(name).with_context(|| {
            format!("{src}: tensor `{name}` (needed by layer {layer}) is missing")
        })?;
        ensure!(
            t.shape == shape,
            "{src}: tensor `{name}` (layer {layer}) has shape {:?}, expected {shape:?}",
            t.shape
        );
        Ok(())
    }

    /// Biases are required unless absent from both model.json's list and the file (then zero).
    fn need_bias(&self, name: &str, n: usize, layer: usize) -> Result<()> {
        if self.tensors.contains_key(name) || self.desc.tensors.iter().any(|(t, _)| t == name) {
            self.need(name, &[n], layer)?;
        }
        Ok(())
    }

    fn get(&self, name: &str) -> &[f32] {
        &self.tensors[name].data
    }

    fn bias(&self, name: &str, n: usize) -> Vec<f32> {
        self.tensors
            .get(name)
            .map_or_else(|| vec![0.0; n], |t| t.data.clone())
    }

    /// Fold BatchNorm, drop Dropout, fuse activations (see the module docs).
    pub fn fold_batch_norm(&self) -> Result<FoldedModel> {
        let d = &self.desc;
        let stats = analyze(d.input, &d.layers)?;
        let (mut ci, mut ni, mut di) = (0, 0, 0);
        let mut shape = d.input;
        let mut ops: Vec<Op> = Vec::new();
        for (i, (layer, st)) in d.layers.iter().zip(&stats).enumerate() {
            match *layer {
                Layer::Conv2d {
                    filters,
                    kernel,
                    stride,
                    dilation,
                    padding,
                } => {
                    let geom = ConvGeom {
                        in_c: shape.c,
                        filters,
                        kernel,
                        stride,
                        dilation,
                        padding,
                    };
                    let weight = self.get(&format!("conv{ci}.weight")).to_vec();
                    let bias = self.bias(&format!("conv{ci}.bias"), filters);
                    ops.push(Op::Conv2d(ConvOp {
                        geom,
                        weight,
                        bias,
                        slope: 1.0,
                    }));
                    ci += 1;
                }
                Layer::BatchNorm { epsilon } => {
                    let p = |s: &str| self.get(&format!("bn{ni}.{s}"));
                    let (g, beta, mean, var) =
                        (p("gamma"), p("beta"), p("running_mean"), p("running_var"));
                    let factor: Vec<f64> = (0..shape.c)
                        .map(|c| f64::from(g[c]) / (f64::from(var[c]) + epsilon).sqrt())
                        .collect();
                    let (weight, bias, per_c) = match ops.last_mut() {
                        Some(Op::Conv2d(c)) if c.slope == 1.0 => (
                            &mut c.weight,
                            &mut c.bias,
                            Some(c.geom.in_c * c.geom.kernel * c.geom.kernel),
                        ),
                        Some(Op::Dense(dn)) if dn.slope == 1.0 => {
                            (&mut dn.weight, &mut dn.bias, None)
                        }
                        _ => bail!(
                            "model.json: layer {i}: BatchNorm must follow a convolution or dense layer directly to be folded"
                        ),
                    };
                    for (k, w) in weight.iter_mut().enumerate() {
                        // Conv weights are [out][in][k][k], dense weights [in][out].
                        let oc = per_c.map_or(k % shape.c, |p| k / p);
                        *w = (f64::from(*w) * factor[oc]) as f32;
                    }
                    for (c, b) in bias.iter_mut().enumerate() {
                        *b = ((f64::from(*b) - f64::from(mean[c])) * factor[c] + f64::from(beta[c]))
                            as f32;
                    }
                    ni += 1;
                }
                Layer::LeakyRelu { slope } => match ops.last_mut() {
                    Some(
                        Op::Conv2d(ConvOp { slope: s, .. }) | Op::Dense(DenseOp { slope: s, .. }),
                    ) if *s == 1.0 => *s = slope as f32,
                    _ => ops.push(Op::LeakyRelu {
                        slope: slope as f32,
                    }),
                },
                Layer::Dropout { .. } => {}
                Layer::Pool2d { kind, size } => ops.push(Op::Pool2d { kind, size }),
                Layer::GlobalAvgPool => ops.push(Op::GlobalAvgPool),
                Layer::FlattenConcatZ { .. } => ops.push(Op::FlattenConcatZ),
                Layer::Dense { units } => {
                    let weight = self.get(&format!("dense{di}.weight")).to_vec();
                    let bias = self.bias(&format!("dense{di}.bias"), units);
                    ops.push(Op::Dense(DenseOp {
                        n_in: shape.len(),
                        units,
                        weight,
                        bias,
                        slope: 1.0,
                    }));
                    di += 1;
                }
            }
            shape = st.out;
        }
        ensure!(
            matches!(ops.last(), Some(Op::Dense(DenseOp { units: 2, slope, .. })) if *slope == 1.0),
            "model.json: the head (last dense layer) must have 2 units and no activation"
        );
        Ok(FoldedModel {
            input: d.input,
            preprocess: d.preprocess.clone(),
            sigma_floor: d.sigma_floor,
            sigma_calibration: d.sigma_calibration,
            z_range: FULL_Z_RANGE,
            extra_ranges: d
                .preprocess
                .extra
                .iter()
                .map(|e| e.quantity.full_range())
                .collect(),
            ops,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Rng, e30_dir};

    fn desc(
        input: Shape,
        layers: Vec<Layer>,
        tensors: &BTreeMap<String, TensorF32>,
    ) -> ModelDescription {
        ModelDescription {
            format: FORMAT.into(),
            version: VERSION,
            input,
            layers,
            preprocess: PreprocessDesc {
                band_scale: vec![1.0; input.c],
                z_shift: 0.0,
                z_scale: 1.0,
                extra: vec![],
            },
            sigma_floor: 0.005,
            sigma_calibration: None,
            tensors_fnv1a64: None,
            tensors: tensors
                .iter()
                .map(|(n, t)| (n.clone(), t.shape.clone()))
                .collect(),
            provenance: serde_json::Value::Null,
        }
    }

    fn put(
        t: &mut BTreeMap<String, TensorF32>,
        name: &str,
        shape: &[usize],
        rng: &mut Rng,
        lo: f32,
        hi: f32,
    ) {
        let n = shape.iter().product();
        t.insert(
            name.into(),
            TensorF32 {
                shape: shape.to_vec(),
                data: (0..n).map(|_| rng.uniform(lo, hi)).collect(),
            },
        );
    }

    /// Folded conv == conv then BatchNorm, both computed here in f64 from the definitions.
    #[test]
    fn folding_equals_conv_then_batch_norm() {
        let mut rng = Rng::new(7);
        let (ic, oc, k, h, w, eps) = (3, 4, 3, 6, 5, 1e-3);
        let mut t = BTreeMap::new();
        put(&mut t, "conv0.weight", &[oc, ic, k, k], &mut rng, -0.5, 0.5);
        put(&mut t, "conv0.bias", &[oc], &mut rng, -0.5, 0.5);
        put(&mut t, "bn0.gamma", &[oc], &mut rng, 0.5, 2.0);
        put(&mut t, "bn0.beta", &[oc], &mut rng, -1.0, 1.0);
        put(&mut t, "bn0.running_mean", &[oc], &mut rng, -0.5, 0.5);
        put(&mut t, "bn0.running_var", &[oc], &mut rng, 0.1, 3.0);
        put(
            &mut t,
            "dense0.weight",
            &[oc * h * w + 1, 2],
            &mut rng,
            -0.1,
            0.1,
        );
        put(&mut t, "dense0.bias", &[2], &mut rng, -0.1, 0.1);
        let layers = vec![
            Layer::Conv2d {
                filters: oc,
                kernel: k,
                stride: 1,
                dilation: 1,
                padding: Padding::Same,
            },
            Layer::BatchNorm { epsilon: eps },
            Layer::LeakyRelu { slope: 0.2 },
            Layer::Dropout { rate: 0.5 },
            Layer::FlattenConcatZ { scalars: 1 },
            Layer::Dense { units: 2 },
        ];
        let input = Shape { c: ic, h, w };
        let m = Model::from_parts(desc(input, layers, &t), t.clone(), "mem".into()).unwrap();
        let f = m.fold_batch_norm().unwrap();
        assert_eq!(
            f.ops.len(),
            3,
            "conv (bn + lrelu fused), concat, dense: {:?}",
            f.layers()
        );
        let x: Vec<f32> = (0..ic * h * w).map(|_| rng.uniform(-2.0, 2.0)).collect();
        let mut trace = Vec::new();
        f.forward_f32(&x, &[0.3], crate::interp::FloatPath::F32, Some(&mut trace))
            .unwrap();
        let got = &trace[1].data;
        let g = |n: &str, i: usize| f64::from(t[n].data[i]);
        for o in 0..oc {
            for y in 0..h {
                for xx in 0..w {
                    let mut s = g("conv0.bias", o);
                    for c in 0..ic {
                        for a in 0..k {
                            for b in 0..k {
                                let (iy, ix) =
                                    (y as isize + a as isize - 1, xx as isize + b as isize - 1);
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    s += g("conv0.weight", ((o * ic + c) * k + a) * k + b)
                                        * f64::from(x[(c * h + iy as usize) * w + ix as usize]);
                                }
                            }
                        }
                    }
                    let bn = (s - g("bn0.running_mean", o))
                        / (g("bn0.running_var", o) + eps).sqrt()
                        * g("bn0.gamma", o)
                        + g("bn0.beta", o);
                    let want = if bn < 0.0 { 0.2 * bn } else { bn };
                    let v = f64::from(got[(o * h + y) * w + xx]);
                    assert!(
                        (v - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "({o},{y},{xx}): {v} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn e30_loads_and_folds() {
        let m = Model::load(e30_dir()).unwrap();
        assert_eq!(
            m.desc.input,
            Shape {
                c: 10,
                h: 50,
                w: 50
            }
        );
        let f = m.fold_batch_norm().unwrap();
        // avg, conv, avg, conv, avg, conv, avg, concat, dense, head: leaky ReLUs fused.
        assert_eq!(f.ops.len(), 10);
        assert!(
            matches!(&f.ops[1], Op::Conv2d(c) if (c.slope - 0.1).abs() < 1e-7 && c.geom.pad() == 1)
        );
        let s = f.shapes().unwrap();
        assert_eq!(
            s[8],
            Shape {
                c: 32 * 3 * 3 + 1,
                h: 1,
                w: 1
            }
        );
    }

    fn write_run(dir: &Path, json: &ModelDescription, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
        std::fs::write(
            dir.join("model.safetensors"),
            crate::tensors::serialize(tensors).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("model.json"),
            serde_json::to_vec_pretty(json).unwrap(),
        )
        .unwrap();
    }

    /// Damaged copies of the real run: each error names the file and the tensor.
    #[test]
    fn missing_or_misshapen_tensors_are_named() {
        let m = Model::load(e30_dir()).unwrap();
        let all: Vec<(String, Vec<usize>, Vec<f32>)> = m
            .tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.clone()))
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        // Intact copy loads.
        write_run(tmp.path(), &m.desc, &all);
        Model::load(tmp.path()).unwrap();
        // Missing from the file (still listed in model.json).
        let fewer: Vec<_> = all
            .iter()
            .filter(|t| t.0 != "conv1.bias")
            .cloned()
            .collect();
        write_run(tmp.path(), &m.desc, &fewer);
        let e = format!("{:#}", Model::load(tmp.path()).unwrap_err());
        assert!(
            e.contains("conv1.bias") && e.contains("model.safetensors") && e.contains("missing"),
            "{e}"
        );
        // Missing from both: the layer list still needs the weight.
        let mut d = m.desc.clone();
        d.tensors.retain(|t| t.0 != "dense0.weight");
        let fewer: Vec<_> = all
            .iter()
            .filter(|t| t.0 != "dense0.weight")
            .cloned()
            .collect();
        write_run(tmp.path(), &d, &fewer);
        let e = format!("{:#}", Model::load(tmp.path()).unwrap_err());
        assert!(e.contains("dense0.weight") && e.contains("missing"), "{e}");
        // Wrong shape, consistently in both files.
        let mut d = m.desc.clone();
        let mut bad = all.clone();
        for t in d.tensors.iter_mut().filter(|t| t.0 == "conv2.weight") {
            t.1 = vec![32, 32, 1, 9];
        }
        for t in bad.iter_mut().filter(|t| t.0 == "conv2.weight") {
            t.1 = vec![32, 32, 1, 9];
        }
        write_run(tmp.path(), &d, &bad);
        let e = format!("{:#}", Model::load(tmp.path()).unwrap_err());
        assert!(
            e.contains("conv2.weight") && e.contains("[32, 32, 3, 3]"),
            "{e}"
        );
        // File and model.json disagree.
        write_run(tmp.path(), &m.desc, &bad);
        let e = format!("{:#}", Model::load(tmp.path()).unwrap_err());
        assert!(
            e.contains("conv2.weight") && e.contains("model.json says"),
            "{e}"
        );
        // No model.json at all.
        std::fs::remove_file(tmp.path().join("model.json")).unwrap();
        let e = format!("{:#}", Model::load(tmp.path()).unwrap_err());
        assert!(e.contains("model.json"), "{e}");
    }
}
