//! The preprocessing sidecar (`--preprocess file.json`): what an ONNX file does not hold.
//!
//! An ONNX network takes the preprocessed image and redshift, while the device receives raw u16
//! counts. The sidecar states the transform the network was trained with, so the runtime can apply
//! it to the detector's counts:
//!
//! ```json
//! {
//!   "band_scale": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
//!   "z_shift": 0.0,
//!   "z_scale": 1.0,
//!   "sigma_floor": 0.005,
//!   "sigma_calibration": { "kind": "scale", "scale": 1.0 },
//!   "image_layout": "NHWC",
//!   "extra": [{"input": "exposure", "quantity": "exposure_s", "shift": 3.5, "scale": 2.0}]
//! }
//! ```
//!
//! - `x = ln(1 + counts) * band_scale[band]` (one number applies to every band; a network trained
//!   on `log10(1 + counts)` has `band_scale` 0.4342945 = 1 / ln 10), `z' = (z - z_shift) * z_scale`;
//! - `sigma = softplus(raw sigma) + sigma_floor`, then `sigma_calibration` (`scale`: multiplied,
//!   `constant`: replaced; a mass-only network always gets a constant, measured on the calibration
//!   sample unless given here);
//! - `image_layout` (`NCHW` or `NHWC`) is needed only when the image input's shape does not say
//!   which axis holds the bands;
//! - `extra` lists the graph's auxiliary scalar inputs besides the image and the redshift, by
//!   ONNX input name: `quantity` says what it is (`exposure_s`: the exposure in seconds, of
//!   which the network sees `a' = (log10 t - shift) * scale`). The runtime appends them to the
//!   flattened features after the redshift, in this order (the first dense layer's rows are
//!   permuted to it, whatever order the graph's `Concat` uses). A graph input that is neither
//!   the image, the redshift nor listed here is refused, and so is an entry naming no input.
//!
//! Every field is optional. The defaults ([`Sidecar::default`]) are the plain transform:
//! band scale 1, z unchanged, sigma floor 0.005 dex (the trainer's), no sigma calibration.
//! Unknown fields are refused, so a misspelt one is never silently ignored.

use crate::arch::MAX_SCALARS;
use crate::model::{AuxQuantity, ExtraInput, SigmaCalibration};
use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Memory order of the ONNX image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ImageLayout {
    /// `[N, bands, height, width]` (PyTorch).
    #[serde(rename = "NCHW")]
    Nchw,
    /// `[N, height, width, bands]` (Keras / TensorFlow).
    #[serde(rename = "NHWC")]
    Nhwc,
}

/// One number for every band, or one per band.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum BandScale {
    /// The same factor in every band.
    All(f32),
    /// One factor per band.
    PerBand(Vec<f32>),
}

/// The parsed sidecar (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    /// Multiplier of `ln(1 + counts)`, per band or for all.
    #[serde(default = "one_scale")]
    pub band_scale: BandScale,
    /// Subtracted from the redshift.
    #[serde(default)]
    pub z_shift: f32,
    /// Multiplies the shifted redshift.
    #[serde(default = "one")]
    pub z_scale: f32,
    /// Added to `softplus(raw sigma)`, dex.
    #[serde(default = "default_floor")]
    pub sigma_floor: f64,
    /// Calibration of sigma.
    #[serde(default)]
    pub sigma_calibration: Option<SigmaCalibration>,
    /// Layout of the image input, when its shape is ambiguous.
    #[serde(default)]
    pub image_layout: Option<ImageLayout>,
    /// The auxiliary scalar inputs after the redshift, in the runtime's order.
    #[serde(default)]
    pub extra: Vec<SidecarExtra>,
    /// The file it was read from ([`Sidecar::load`]), for error messages.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// One auxiliary scalar input of the graph (see the module docs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarExtra {
    /// The ONNX graph input's name.
    pub input: String,
    /// What it is (`exposure_s`); checked by [`Sidecar::validate`] so that the error names
    /// the input.
    pub quantity: String,
    /// Subtracted from the feature (`log10 t` for the exposure); read as f64 so that a value
    /// beyond f32 is refused by [`Sidecar::validate`] with the input named.
    #[serde(default)]
    pub shift: f64,
    /// Multiplies the shifted feature.
    #[serde(default = "one_f64")]
    pub scale: f64,
}

/// The quantities an auxiliary input may be, as the sidecar spells them.
pub const QUANTITIES: &str =
    "exposure_s (exposure in seconds; the network sees (log10 t - shift) * scale)";

impl SidecarExtra {
    /// The quantity, or an error naming the input and what is supported.
    pub fn quantity(&self) -> Result<AuxQuantity> {
        serde_json::from_value(serde_json::Value::String(self.quantity.clone())).map_err(|_| {
            anyhow::anyhow!(
                "unknown quantity \"{}\"; supported: {QUANTITIES}",
                self.quantity
            )
        })
    }

    /// As the model describes it.
    pub fn input(&self) -> Result<ExtraInput> {
        Ok(ExtraInput {
            quantity: self.quantity()?,
            shift: self.shift as f32,
            scale: self.scale as f32,
        })
    }
}

fn one_scale() -> BandScale {
    BandScale::All(1.0)
}
fn one() -> f32 {
    1.0
}
fn one_f64() -> f64 {
    1.0
}
fn default_floor() -> f64 {
    0.005
}

impl Default for Sidecar {
    fn default() -> Self {
        Self {
            band_scale: one_scale(),
            z_shift: 0.0,
            z_scale: 1.0,
            sigma_floor: default_floor(),
            sigma_calibration: None,
            image_layout: None,
            extra: Vec::new(),
            source: None,
        }
    }
}

impl Sidecar {
    /// Read and validate a sidecar file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the preprocessing sidecar {}", path.display()))?;
        let mut s: Sidecar = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a valid preprocessing sidecar (fields: band_scale, z_shift, z_scale, sigma_floor, sigma_calibration, image_layout, extra (entries: input, quantity, shift, scale); see docs/onnx.md)",
                path.display()
            )
        })?;
        s.source = Some(path.to_path_buf());
        s.validate()
            .with_context(|| format!("{}: invalid preprocessing sidecar", path.display()))?;
        Ok(s)
    }

    /// Check every value is usable by the runtime.
    pub fn validate(&self) -> Result<()> {
        let scales: &[f32] = match &self.band_scale {
            BandScale::All(s) => std::slice::from_ref(s),
            BandScale::PerBand(v) => v,
        };
        ensure!(!scales.is_empty(), "band_scale: empty list");
        for (b, s) in scales.iter().enumerate() {
            ensure!(
                s.is_finite() && *s > 0.0,
                "band_scale[{b}] = {s}: must be a finite positive number"
            );
        }
        ensure!(
            self.z_shift.is_finite(),
            "z_shift = {}: must be finite",
            self.z_shift
        );
        ensure!(
            self.z_scale.is_finite() && self.z_scale != 0.0,
            "z_scale = {}: must be finite and non-zero",
            self.z_scale
        );
        ensure!(
            self.sigma_floor.is_finite() && self.sigma_floor >= 0.0,
            "sigma_floor = {}: must be finite and >= 0",
            self.sigma_floor
        );
        match self.sigma_calibration {
            Some(SigmaCalibration::Scale { scale }) if !(scale.is_finite() && scale > 0.0) => {
                bail!("sigma_calibration.scale = {scale}: must be finite and > 0")
            }
            Some(SigmaCalibration::Constant { sigma }) if !(sigma.is_finite() && sigma > 0.0) => {
                bail!("sigma_calibration.sigma = {sigma}: must be finite and > 0")
            }
            _ => {}
        }
        let max = MAX_SCALARS - 1;
        ensure!(
            self.extra.len() <= max,
            "extra: {} auxiliary inputs; at most {max} (the runtime takes at most {MAX_SCALARS} scalar inputs, the redshift included)",
            self.extra.len()
        );
        let limit = f64::from(runtime::model::MAX_CONSTANT);
        for (k, e) in self.extra.iter().enumerate() {
            let at = format!("extra[{k}] (input `{}`)", e.input);
            ensure!(!e.input.is_empty(), "extra[{k}]: empty input name");
            ensure!(
                self.extra[..k].iter().all(|o| o.input != e.input),
                "{at}: the input is listed twice"
            );
            e.quantity().with_context(|| at.clone())?;
            ensure!(
                e.shift.is_finite() && e.shift.abs() <= limit,
                "{at}: shift = {:?}: must be finite and at most {limit:e} in magnitude",
                e.shift
            );
            ensure!(
                e.scale.is_finite() && e.scale != 0.0 && e.scale.abs() <= limit,
                "{at}: scale = {:?}: must be finite, non-zero and at most {limit:e} in magnitude",
                e.scale
            );
        }
        Ok(())
    }

    /// The auxiliary inputs as the model describes them (sidecar order).
    pub fn extra_inputs(&self) -> Result<Vec<ExtraInput>> {
        self.extra
            .iter()
            .enumerate()
            .map(|(k, e)| {
                e.input()
                    .with_context(|| format!("extra[{k}] (input `{}`)", e.input))
            })
            .collect()
    }

    /// `the preprocessing sidecar <path>` (or without the path when it was not read from a
    /// file), for error messages.
    pub fn named(&self) -> String {
        match &self.source {
            Some(p) => format!("the preprocessing sidecar {}", p.display()),
            None => "the preprocessing sidecar".into(),
        }
    }

    /// The band scales for `bands` bands.
    pub fn band_scales(&self, bands: usize) -> Result<Vec<f32>> {
        match &self.band_scale {
            BandScale::All(s) => Ok(vec![*s; bands]),
            BandScale::PerBand(v) => {
                ensure!(
                    v.len() == bands,
                    "band_scale has {} values but the network's image has {bands} bands",
                    v.len()
                );
                Ok(v.clone())
            }
        }
    }

    /// One line describing the transform, for reports and notes.
    pub fn describe(&self) -> String {
        let scale = match &self.band_scale {
            BandScale::All(s) => format!("{s}"),
            BandScale::PerBand(v) => format!("{v:?}"),
        };
        let cal = match self.sigma_calibration {
            None => "none given".to_string(),
            Some(SigmaCalibration::Scale { scale }) => format!("x {scale}"),
            Some(SigmaCalibration::Constant { sigma }) => format!("constant {sigma} dex"),
        };
        let mut d = format!(
            "x = ln(1 + counts) * {scale}, z' = (z - {}) * {}, sigma floor {} dex, sigma calibration {cal}",
            self.z_shift, self.z_scale, self.sigma_floor
        );
        for e in &self.extra {
            let feature = match e.quantity() {
                Ok(AuxQuantity::Exposure) => "log10 exposure_s".to_string(),
                Err(_) => e.quantity.clone(),
            };
            d.push_str(&format!(
                ", input `{}` = ({feature} - {}) * {}",
                e.input, e.shift, e.scale
            ));
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Sidecar> {
        let v: Sidecar = serde_json::from_str(s)?;
        v.validate()?;
        Ok(v)
    }

    #[test]
    fn defaults_and_forms() {
        assert_eq!(parse("{}").unwrap(), Sidecar::default());
        let s = parse(r#"{"band_scale": 0.5, "image_layout": "NHWC", "sigma_calibration": {"kind": "constant", "sigma": 0.1}}"#).unwrap();
        assert_eq!(s.band_scales(3).unwrap(), vec![0.5; 3]);
        assert_eq!(s.image_layout, Some(ImageLayout::Nhwc));
        let s = parse(r#"{"band_scale": [1, 2]}"#).unwrap();
        assert!(
            s.band_scales(3)
                .unwrap_err()
                .to_string()
                .contains("2 values")
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (json, word) in [
            (r#"{"band_scal": 1}"#, "band_scal"),
            (r#"{"band_scale": [1, -1]}"#, "band_scale[1]"),
            (r#"{"z_scale": 0}"#, "z_scale"),
            (r#"{"sigma_floor": -1}"#, "sigma_floor"),
            (
                r#"{"sigma_calibration": {"kind": "scale", "scale": 0}}"#,
                "sigma_calibration",
            ),
            (r#"{"image_layout": "CHW"}"#, "CHW"),
            (
                r#"{"extra": [{"input": "t", "quantity": "exposure"}]}"#,
                "extra[0] (input `t`): unknown quantity \"exposure\"; supported: exposure_s",
            ),
            (
                r#"{"extra": [{"input": "t", "quantity": "exposure_s", "shift": 1e39}]}"#,
                "extra[0] (input `t`): shift = 1e39: must be finite and at most 1e6 in magnitude",
            ),
            (
                r#"{"extra": [{"input": "t", "quantity": "exposure_s", "scale": -1e39}]}"#,
                "extra[0] (input `t`): scale = -1e39: must be finite",
            ),
            (
                r#"{"extra": [{"input": "t", "quantity": "exposure_s", "scale": 0}]}"#,
                "extra[0] (input `t`): scale = 0.0: must be finite, non-zero",
            ),
            (
                r#"{"extra": [{"input": "t", "quantity": "exposure_s"}, {"input": "t", "quantity": "exposure_s"}]}"#,
                "extra[1] (input `t`): the input is listed twice",
            ),
            (
                r#"{"extra": [{"input": "t", "quantity": "exposure_s", "offset": 1}]}"#,
                "offset",
            ),
            (r#"{"extra": [{"quantity": "exposure_s"}]}"#, "input"),
        ] {
            let e = format!("{:#}", parse(json).unwrap_err());
            assert!(e.contains(word), "{json}: {e}");
        }
    }

    #[test]
    fn extra_inputs() {
        let s = parse(
            r#"{"extra": [{"input": "exposure", "quantity": "exposure_s", "shift": 3.5, "scale": 2}, {"input": "t2", "quantity": "exposure_s"}]}"#,
        )
        .unwrap();
        let e = s.extra_inputs().unwrap();
        assert_eq!(
            e,
            vec![
                ExtraInput {
                    quantity: AuxQuantity::Exposure,
                    shift: 3.5,
                    scale: 2.0
                },
                ExtraInput {
                    quantity: AuxQuantity::Exposure,
                    shift: 0.0,
                    scale: 1.0
                }
            ]
        );
        assert!(
            s.describe()
                .ends_with(", input `exposure` = (log10 exposure_s - 3.5) * 2, input `t2` = (log10 exposure_s - 0) * 1"),
            "{}",
            s.describe()
        );
        // Non-finite values (JSON has none, but a sidecar built in code may).
        let mut bad = s.clone();
        bad.extra[1].scale = f64::NAN;
        let e = format!("{:#}", bad.validate().unwrap_err());
        assert!(e.contains("extra[1] (input `t2`): scale = NaN"), "{e}");
        bad.extra[1].scale = 1.0;
        bad.extra[0].shift = f64::INFINITY;
        let e = format!("{:#}", bad.validate().unwrap_err());
        assert!(
            e.contains("extra[0] (input `exposure`): shift = inf"),
            "{e}"
        );
        // Old sidecars describe themselves as before.
        assert!(!parse("{}").unwrap().describe().contains("input"));
        // At most MAX_SCALARS - 1 auxiliary inputs.
        let many = |n: usize| {
            let list: Vec<String> = (0..n)
                .map(|k| format!(r#"{{"input": "t{k}", "quantity": "exposure_s"}}"#))
                .collect();
            parse(&format!(r#"{{"extra": [{}]}}"#, list.join(", ")))
        };
        assert!(many(MAX_SCALARS - 1).is_ok());
        let e = format!("{:#}", many(MAX_SCALARS).unwrap_err());
        assert!(e.contains("8 auxiliary inputs; at most 7"), "{e}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("net.preprocess.json");
        std::fs::write(
            &p,
            r#"{"extra": [{"input": "exposure", "quantity": "seconds"}]}"#,
        )
        .unwrap();
        let e = format!("{:#}", Sidecar::load(&p).unwrap_err());
        assert!(
            e.contains("net.preprocess.json")
                && e.contains("input `exposure`")
                && e.contains("seconds"),
            "{e}"
        );
        std::fs::write(
            &p,
            r#"{"extra": [{"input": "exposure", "quantity": "exposure_s"}]}"#,
        )
        .unwrap();
        let s = Sidecar::load(&p).unwrap();
        assert_eq!(s.source.as_deref(), Some(p.as_path()));
        assert!(s.named().contains("net.preprocess.json"));
    }
}
