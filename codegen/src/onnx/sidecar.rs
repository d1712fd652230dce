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
//!   "image_layout": "NHWC"
//! }
//! ```
//!
//! - `x = ln(1 + counts) * band_scale[band]` (one number applies to every band; a network trained
//!   on `log10(1 + counts)` has `band_scale` 0.4342945 = 1 / ln 10), `z' = (z - z_shift) * z_scale`;
//! - `sigma = softplus(raw sigma) + sigma_floor`, then `sigma_calibration` (`scale`: multiplied,
//!   `constant`: replaced; a mass-only network always gets a constant, measured on the calibration
//!   sample unless given here);
//! - `image_layout` (`NCHW` or `NHWC`) is needed only when the image input's shape does not say
//!   which axis holds the bands.
//!
//! Every field is optional. The defaults ([`Sidecar::default`]) are the plain transform:
//! band scale 1, z unchanged, sigma floor 0.005 dex (the trainer's), no sigma calibration.
//! Unknown fields are refused, so a misspelt one is never silently ignored.

use crate::model::SigmaCalibration;
use anyhow::{Context, Result, bail, ensure};
use serde::Deserialize;
use std::path::Path;

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
}

fn one_scale() -> BandScale {
    BandScale::All(1.0)
}
fn one() -> f32 {
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
        }
    }
}

impl Sidecar {
    /// Read and validate a sidecar file; errors name the file and the field.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the preprocessing sidecar {}", path.display()))?;
        let s: Sidecar = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a valid preprocessing sidecar (fields: band_scale, z_shift, z_scale, sigma_floor, sigma_calibration, image_layout; see docs/onnx.md)",
                path.display()
            )
        })?;
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
        Ok(())
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
        format!(
            "x = ln(1 + counts) * {scale}, z' = (z - {}) * {}, sigma floor {} dex, sigma calibration {cal}",
            self.z_shift, self.z_scale, self.sigma_floor
        )
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
        ] {
            let e = format!("{:#}", parse(json).unwrap_err());
            assert!(e.contains(word), "{json}: {e}");
        }
    }
}
