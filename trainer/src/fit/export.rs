//! Framework-neutral export of a trained run for `codegen` (which links no burn), in the
//! formats of the shared contract (`arch`): `model.safetensors` (every tensor, f32,
//! row-major, written by `arch::tensors`) and `model.json` (the layer list, preprocessing,
//! head and sigma calibration, tensor names and provenance).
//!
//! Tensor names: `conv{i}.weight` `[out, in, k, k]`, `conv{i}.bias` `[out]`;
//! `bn{i}.gamma|beta|running_mean|running_var` `[c]`; `dense{i}.weight` `[in, out]`,
//! `dense{i}.bias` `[out]`, with `i` counting layers of that kind in order.

use super::net::INPUT;
use super::net::{Net, SIGMA_FLOOR};
use super::prep::Preprocess;
use super::run::{SigmaCalibration, write_atomic};
use anyhow::{Context, Result};
use arch::Layer;
use burn::tensor::Tensor;
use std::path::Path;

/// The description written to `model.json` is the contract's type (`arch`, which codegen reads
/// it with): the reader defines the format.
pub use arch::model::{FORMAT, ModelDescription, PreprocessDesc, VERSION};

fn host<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let data = t.into_data().convert::<f32>();
    let shape = data.shape().to_vec();
    (shape, data.try_to_vec::<f32>().expect("f32 data"))
}

/// Every tensor of the network under its export name.
pub fn named_tensors(net: &Net) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    for (i, c) in net.convs.iter().enumerate() {
        let (s, v) = host(c.weight.val());
        out.push((format!("conv{i}.weight"), s, v));
        if let Some(b) = &c.bias {
            let (s, v) = host(b.val());
            out.push((format!("conv{i}.bias"), s, v));
        }
    }
    for (i, n) in net.norms.iter().enumerate() {
        for (name, t) in [
            ("gamma", n.gamma.val()),
            ("beta", n.beta.val()),
            ("running_mean", n.running_mean.value()),
            ("running_var", n.running_var.value()),
        ] {
            let (s, v) = host(t);
            out.push((format!("bn{i}.{name}"), s, v));
        }
    }
    for (i, d) in net.dense.iter().enumerate() {
        let (s, v) = host(d.weight.val());
        out.push((format!("dense{i}.weight"), s, v));
        if let Some(b) = &d.bias {
            let (s, v) = host(b.val());
            out.push((format!("dense{i}.bias"), s, v));
        }
    }
    out
}

/// Write `model.safetensors` and `model.json` into `dir`.
pub fn export(
    dir: &Path,
    net: &Net,
    layers: &[Layer],
    pre: &Preprocess,
    calib: Option<SigmaCalibration>,
    provenance: serde_json::Value,
) -> Result<()> {
    let tensors = named_tensors(net);
    let blob = arch::tensors::serialize(&tensors)?;
    write_atomic(&dir.join("model.safetensors"), &blob)?;
    let desc = ModelDescription {
        format: FORMAT.into(),
        version: VERSION,
        input: INPUT,
        layers: layers.to_vec(),
        preprocess: pre.desc(),
        sigma_floor: SIGMA_FLOOR,
        sigma_calibration: calib,
        tensors_fnv1a64: Some(arch::model::tensors_checksum(&blob)),
        tensors: tensors
            .iter()
            .map(|(n, s, _)| (n.clone(), s.clone()))
            .collect(),
        provenance,
    };
    write_atomic(&dir.join("model.json"), &serde_json::to_vec_pretty(&desc)?)
}

/// Rebuild a burn network for `layers` from a `model.safetensors` export (the inverse of
/// [`named_tensors`]), so any export can be checked against burn's own forward pass.
pub fn load_safetensors(
    path: &Path,
    layers: &[Layer],
    device: &burn::tensor::Device,
) -> Result<Net> {
    use burn::module::{Param, RunningState};
    use burn::tensor::TensorData;
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    // The checksum of the description beside it, when there is one.
    let json = path.with_file_name("model.json");
    if let Ok(text) = std::fs::read(&json) {
        let desc: ModelDescription =
            serde_json::from_slice(&text).with_context(|| format!("parsing {}", json.display()))?;
        arch::model::verify_tensors(&desc, &bytes, path)?;
    }
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    let get = |name: &str| -> Result<TensorData> {
        let t = st
            .tensor(name)
            .with_context(|| format!("{}: no tensor {name}", path.display()))?;
        let v: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(TensorData::new(v, t.shape().to_vec()))
    };
    let mut net = super::net::init(layers, INPUT, device)?;
    for (i, c) in net.convs.iter_mut().enumerate() {
        c.weight = Param::from_tensor(Tensor::from_data(get(&format!("conv{i}.weight"))?, device));
        if c.bias.is_some() {
            c.bias = Some(Param::from_tensor(Tensor::from_data(
                get(&format!("conv{i}.bias"))?,
                device,
            )));
        }
    }
    for (i, n) in net.norms.iter_mut().enumerate() {
        n.gamma = Param::from_tensor(Tensor::from_data(get(&format!("bn{i}.gamma"))?, device));
        n.beta = Param::from_tensor(Tensor::from_data(get(&format!("bn{i}.beta"))?, device));
        n.running_mean = RunningState::new(Tensor::from_data(
            get(&format!("bn{i}.running_mean"))?,
            device,
        ));
        n.running_var = RunningState::new(Tensor::from_data(
            get(&format!("bn{i}.running_var"))?,
            device,
        ));
    }
    for (i, d) in net.dense.iter_mut().enumerate() {
        d.weight = Param::from_tensor(Tensor::from_data(get(&format!("dense{i}.weight"))?, device));
        if d.bias.is_some() {
            d.bias = Some(Param::from_tensor(Tensor::from_data(
                get(&format!("dense{i}.bias"))?,
                device,
            )));
        }
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::config::Preset;

    /// One flipped byte in `model.safetensors` is refused by every reader, naming the
    /// file, where it used to be exported silently.
    #[test]
    fn a_corrupted_tensor_file_is_refused() {
        let layers = Preset::Edge.config().model.layers().unwrap();
        let dev = burn::tensor::Device::flex();
        let net = super::super::net::init_seeded(&layers, INPUT, &dev, 3).unwrap();
        let pre = Preprocess {
            band_scale: [1.0; crate::sim::spectrum::NBANDS],
            z_shift: 0.5,
            z_scale: 2.0,
            extra: vec![],
        };
        let dir = tempfile::tempdir().unwrap();
        export(
            dir.path(),
            &net,
            &layers,
            &pre,
            None,
            serde_json::Value::Null,
        )
        .unwrap();
        let st = dir.path().join("model.safetensors");
        arch::model::Model::load(dir.path()).unwrap();
        load_safetensors(&st, &layers, &dev).unwrap();
        let mut bytes = std::fs::read(&st).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40; // a weight's sign/exponent bit: still a valid file
        std::fs::write(&st, &bytes).unwrap();
        for e in [
            arch::model::Model::load(dir.path()).err().unwrap(),
            load_safetensors(&st, &layers, &dev).err().unwrap(),
        ] {
            let msg = format!("{e:#}");
            assert!(
                msg.contains("model.safetensors") && msg.contains("checksum"),
                "{msg}"
            );
        }
    }
}
