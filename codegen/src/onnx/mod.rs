//! ONNX import: a network trained in Keras or PyTorch, exported to ONNX, frozen like a trained
//! run (`codegen export --onnx model.onnx [--preprocess sidecar.json] [--calib data.npz]`).
//!
//! The file is parsed by `onnx-ir` (the parser inside burn-onnx; no burn backend), mapped onto
//! the same [`ModelDescription`] + tensors a trained run exports ([`map`]), validated by
//! [`Model::from_parts`], folded ([`Model::fold_batch_norm`]), then quantised and emitted by the
//! same code as a trained run ([`export_folded`]). What the ONNX file does not hold (the count
//! preprocessing, the sigma floor and calibration) comes from a JSON sidecar ([`sidecar`]).
//!
//! Supported operators, layouts and outputs, and the rules for channels-last (Keras) graphs, are
//! listed in `docs/onnx.md`; anything else is refused with an error naming the file, the node as
//! the exporter named it, its operator, and what is supported. No graph is approximated.

mod affine;
mod attrs;
pub mod fold;
pub mod graph;
pub mod head;
mod map;
pub mod sidecar;
mod spatial;
mod vector;

use crate::export::{ExportOptions, ExportSummary, Sample, export_folded, load_samples};
use crate::interp::FloatPath;
use crate::model::{
    FORMAT, FoldedModel, Model, ModelDescription, PreprocessDesc, SigmaCalibration, VERSION,
};
use anyhow::{Context, Result, bail};
pub use head::Outputs;
pub use map::SUPPORTED;
use sidecar::{ImageLayout, Sidecar};
use std::path::{Path, PathBuf};

/// An imported ONNX network.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The network as a trained run would describe it (validated).
    pub model: Model,
    /// What the ONNX graph outputs.
    pub outputs: Outputs,
    /// How the graph's image input is laid out.
    pub layout: ImageLayout,
    /// `producer version` recorded in the file.
    pub producer: String,
    /// Default-domain opset.
    pub opset: i64,
    /// `Reshape` targets computed by shape sub-graphs in the file, folded to constants.
    pub folded_shapes: Vec<fold::FoldedShape>,
}

impl Imported {
    /// The folded inference graph.
    pub fn folded(&self) -> Result<FoldedModel> {
        self.model
            .fold_batch_norm()
            .with_context(|| format!("{}: folding", self.model.source.display()))
    }
}

/// Parse and map `path` with the preprocessing of `sidecar`.
pub fn import(path: &Path, sidecar: &Sidecar) -> Result<Imported> {
    sidecar.validate().with_context(|| {
        format!(
            "{}: invalid preprocessing sidecar ({})",
            path.display(),
            sidecar.named()
        )
    })?;
    let extra = sidecar
        .extra_inputs()
        .with_context(|| format!("{}: {}", path.display(), sidecar.named()))?;
    let parsed = graph::parse(path)?;
    let bands_hint = match &sidecar.band_scale {
        sidecar::BandScale::PerBand(v) => Some(v.len()),
        sidecar::BandScale::All(_) => None,
    };
    let aux = map::AuxInputs {
        names: sidecar.extra.iter().map(|e| e.input.as_str()).collect(),
        quantities: sidecar.extra.iter().map(|e| e.quantity.as_str()).collect(),
        sidecar: sidecar.named(),
    };
    let m = map::map(&parsed, sidecar.image_layout, bands_hint, &aux)?;
    let outputs = m.head.outputs.with_context(|| {
        format!(
            "{}: internal error: the head has no outputs",
            path.display()
        )
    })?;
    let layout = m.layout;
    let folded_shapes = m.folded.clone();
    let sigma_calibration = match (outputs, sidecar.sigma_calibration) {
        (Outputs::MassOnly, Some(SigmaCalibration::Scale { .. })) => bail!(
            "{}: a mass-only network has no sigma to scale; give \"sigma_calibration\": {{\"kind\": \"constant\", \"sigma\": ...}} or none (then it is measured on the calibration sample)",
            path.display()
        ),
        (_, c) => c,
    };
    let desc = ModelDescription {
        format: FORMAT.into(),
        version: VERSION,
        input: m.input,
        layers: m.layers,
        preprocess: PreprocessDesc {
            band_scale: sidecar
                .band_scales(m.input.c)
                .with_context(|| format!("{}: preprocessing sidecar", path.display()))?,
            z_shift: sidecar.z_shift,
            z_scale: sidecar.z_scale,
            extra,
        },
        sigma_floor: sidecar.sigma_floor,
        sigma_calibration,
        tensors_fnv1a64: None,
        tensors: m
            .tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.shape.clone()))
            .collect(),
        provenance: serde_json::json!({
            "source": "onnx",
            "file": path.display().to_string(),
            "producer": parsed.producer,
            "opset": parsed.opset,
            "outputs": format!("{outputs:?}"),
            "preprocess": sidecar.describe(),
            "folded_shapes": folded_shapes
                .iter()
                .map(|f| serde_json::json!({"node": f.node, "target": f.target, "ops": f.ops}))
                .collect::<Vec<_>>(),
        }),
    };
    let model = Model::from_parts(desc, m.tensors, path.to_path_buf())
        .with_context(|| format!("{}: the mapped network is inconsistent", path.display()))?;
    Ok(Imported {
        model,
        outputs,
        layout,
        producer: parsed.producer,
        opset: parsed.opset,
        folded_shapes,
    })
}

/// Root mean square of (f32 mu - true log mass) over `samples`, dex: the constant sigma of a
/// mass-only network.
pub fn mass_only_sigma(folded: &FoldedModel, samples: &[Sample]) -> Result<Option<f64>> {
    let mut sum = 0.0;
    for s in samples {
        let Some(m) = s.log_mass else {
            return Ok(None);
        };
        let z = s.scalars(&folded.preprocess)?;
        let r = folded.predict(&s.counts, &z, FloatPath::F32)?.mu - f64::from(m);
        sum += r * r;
    }
    Ok((!samples.is_empty()).then(|| (sum / samples.len() as f64).sqrt()))
}

/// `codegen export --onnx`: import `onnx`, then write exactly what a trained run's export writes
/// (model.rs, blobs, golden samples, report) into `out_dir`. The calibration sample is
/// `opts.calib` or `calibration.npz` next to the ONNX file; `sidecar` is the preprocessing
/// sidecar (defaults when `None`, said in the report).
pub fn export_onnx(
    onnx: &Path,
    sidecar: Option<&Path>,
    out_dir: &Path,
    opts: &ExportOptions,
) -> Result<ExportSummary> {
    let (side, side_note) = match sidecar {
        Some(p) => (
            Sidecar::load(p)?,
            format!("preprocessing from `{}`", p.display()),
        ),
        None => (
            Sidecar::default(),
            "preprocessing: no sidecar given (--preprocess), defaults used: the network is assumed to take ln(1 + counts) and the raw redshift, sigma floor 0.005 dex".to_string(),
        ),
    };
    let imported = import(onnx, &side)?;
    let mut folded = imported.folded()?;
    let calib_path = opts.calib.clone().unwrap_or_else(|| {
        onnx.parent()
            .unwrap_or(Path::new("."))
            .join("calibration.npz")
    });
    if opts.calib.is_none() && !calib_path.exists() {
        bail!(
            "{}: no calibration sample: pass --calib <file.npz> (clusters in the dataset layout: `images` u16 [N, {}, {}, {}] raw counts, `redshift` f32 [N], {}and `log_mass` f32 [N] to score; e.g. written by `trainer simulate`); int8 ranges are calibrated on its first half",
            calib_path.display(),
            folded.input.c,
            folded.input.h,
            folded.input.w,
            if folded.preprocess.extra.is_empty() {
                ""
            } else {
                "`exposure_s` f32 [N] (seconds: the network takes the exposure), "
            }
        );
    }
    let samples = load_samples(&calib_path, folded.input.len())?;
    let mut notes = vec![
        format!(
            "imported from ONNX `{}` (producer {}, opset {}), image input {}, {}",
            onnx.display(),
            if imported.producer.is_empty() {
                "unknown"
            } else {
                &imported.producer
            },
            imported.opset,
            match imported.layout {
                ImageLayout::Nchw => "NCHW (channels first)",
                ImageLayout::Nhwc =>
                    "NHWC (channels last: Transposes tracked, first dense layer's rows permuted)",
            },
            imported.outputs.describe()
        ),
        format!("{side_note}: {}", side.describe()),
    ];
    for f in &imported.folded_shapes {
        notes.push(format!(
            "node \"{}\" (Reshape): its target shape, computed in the file ({}), folded to the constant {:?} (the input shape is fixed; -1 is the batch)",
            f.node,
            f.ops[..f.ops.len() - 1].join(", "),
            f.target
        ));
    }
    if imported.outputs == Outputs::MassOnly && folded.sigma_calibration.is_none() {
        let cal = &samples[..samples.len() / 2];
        let sigma = mass_only_sigma(&folded, cal)?.with_context(|| {
            format!(
                "{}: the network outputs only the mass, and the calibration sample {} has no `log_mass` to measure its scatter; give \"sigma_calibration\": {{\"kind\": \"constant\", \"sigma\": ...}} in the preprocessing sidecar",
                onnx.display(),
                calib_path.display()
            )
        })?;
        folded.sigma_calibration = Some(SigmaCalibration::Constant { sigma });
        notes.push(format!(
            "mass-only network: sigma is the constant {sigma:.4} dex, the root mean square of (f32 prediction - true log mass) on the {} calibration clusters (the head's second unit has zero weights)",
            cal.len()
        ));
    }
    export_folded(&folded, &samples, &calib_path, out_dir, opts, &notes)
}

/// Default output directory of `codegen export --onnx model.onnx`: `model-export/` next to it.
pub fn default_out_dir(onnx: &Path) -> PathBuf {
    let stem = onnx
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    onnx.with_file_name(format!("{stem}-export"))
}
