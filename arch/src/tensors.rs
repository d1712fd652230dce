//! The tensor file of a run's export, `model.safetensors`: every tensor as little-endian
//! f32, row-major, under its export name, no metadata. `trainer fit` writes it with
//! [`serialize`]; [`Model::load`](crate::model::Model::load) reads it with [`read_f32`].
//! Its checksum is recorded in `model.json` ([`tensors_checksum`](crate::model::tensors_checksum)).

use crate::model::TensorF32;
use anyhow::{Context, Result, anyhow, ensure};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// The bytes of a tensor file holding `tensors` (name, shape, row-major values).
pub fn serialize(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> Result<Vec<u8>> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            Ok((
                n.clone(),
                safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)?,
            ))
        })
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .context("building the safetensors views")?;
    safetensors::serialize(views, None).context("serialising model.safetensors")
}

/// Every tensor of a tensor file's `bytes`, which must all be f32 (`path` names the file
/// in errors).
pub fn read_f32(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, TensorF32>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        ensure!(
            view.dtype() == Dtype::F32,
            "{}: tensor `{name}` has dtype {:?}, expected F32",
            path.display(),
            view.dtype()
        );
        let data = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(
            name,
            TensorF32 {
                shape: view.shape().to_vec(),
                data,
            },
        );
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is written reads back, shapes and values to the bit.
    #[test]
    fn tensors_round_trip() {
        let t = vec![
            (
                "conv0.weight".to_string(),
                vec![2, 1, 1, 2],
                vec![1.5, -0.0, f32::MIN_POSITIVE, 3.0],
            ),
            ("conv0.bias".to_string(), vec![2], vec![0.25, -7.0]),
        ];
        let bytes = serialize(&t).unwrap();
        let back = read_f32(&bytes, Path::new("t.safetensors")).unwrap();
        assert_eq!(back.len(), 2);
        for (n, s, v) in &t {
            assert_eq!(&back[n].shape, s);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back[n].data), bits(v));
        }
    }

    /// A shape that does not hold the values, and bytes that are no tensor file, are refused.
    #[test]
    fn bad_tensors_and_files_are_refused() {
        assert!(serialize(&[("x".into(), vec![3], vec![1.0])]).is_err());
        let e = read_f32(b"not safetensors", Path::new("t.safetensors")).unwrap_err();
        assert!(e.to_string().contains("t.safetensors"), "{e}");
    }
}
