//! Host-side input pipeline: the recorded preprocessing (shared with the device
//! runtime), batches with augmentation, and label statistics.

use super::augment;
use crate::data::Dataset;
use crate::sim::{IMAGE_LEN, NPIX, spectrum::NBANDS};
use serde::{Deserialize, Serialize};

/// Preprocessing recorded in a run and executed identically by the runtime on raw counts:
/// `x = ln(1 + counts) * band_scale[band]`, `z' = (z - z_shift) * z_scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Per-band multiplier of ln(1 + counts): 1 / RMS over the training images.
    pub band_scale: [f32; NBANDS],
    /// Redshift shift (training mean).
    pub z_shift: f32,
    /// Redshift scale (1 / training standard deviation).
    pub z_scale: f32,
}

impl Preprocess {
    /// Fit the scales on (up to 4,000 of) the training clusters.
    pub fn fit(ds: &Dataset, train: &[usize]) -> Self {
        let take = &train[..train.len().min(4000)];
        let mut sum2 = [0f64; NBANDS];
        for &i in take {
            let img = ds.image(i);
            for (b, s) in sum2.iter_mut().enumerate() {
                *s += img[b * NPIX * NPIX..(b + 1) * NPIX * NPIX]
                    .iter()
                    .map(|&c| f64::from(c).ln_1p().powi(2))
                    .sum::<f64>();
            }
        }
        let n = (take.len() * NPIX * NPIX).max(1) as f64;
        let band_scale = sum2.map(|s| (1.0 / (s / n).sqrt().max(1e-3)) as f32);
        let zs: Vec<f64> = train.iter().map(|&i| f64::from(ds.redshift[i])).collect();
        let (m, sd) = mean_sd(&zs);
        Self {
            band_scale,
            z_shift: m as f32,
            z_scale: (1.0 / sd.max(1e-3)) as f32,
        }
    }

    /// The runtime's kernel with these parameters (one definition for host and device).
    pub fn kernel(&self) -> runtime::kernels::preprocess::Preprocess<NBANDS> {
        runtime::kernels::preprocess::Preprocess {
            band_scale: self.band_scale,
            z_shift: self.z_shift,
            z_scale: self.z_scale,
        }
    }
}

/// Mean and (population) standard deviation.
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

/// A batch on the host, ready to become tensors.
pub struct Batch {
    /// `[B][band][y][x]` preprocessed.
    pub x: Vec<f32>,
    /// `[B]` preprocessed redshift.
    pub z: Vec<f32>,
    /// `[B]` log mass (0 when the dataset has no labels).
    pub y: Vec<f32>,
}

/// Assemble clusters `idx`, each transformed by the matching entry of `transforms`
/// (empty = no augmentation).
pub fn batch(ds: &Dataset, idx: &[usize], pre: &Preprocess, transforms: &[usize]) -> Batch {
    let kernel = pre.kernel();
    let mut x = vec![0f32; idx.len() * IMAGE_LEN];
    let mut tmp = vec![0f32; IMAGE_LEN];
    for (k, &i) in idx.iter().enumerate() {
        let out = &mut x[k * IMAGE_LEN..(k + 1) * IMAGE_LEN];
        match transforms.get(k) {
            Some(&t) if t != 0 => {
                kernel
                    .counts_f32(ds.image(i), &mut tmp)
                    .expect("image buffers have the contract's size");
                augment::apply(t, NPIX, &tmp, out);
            }
            _ => kernel
                .counts_f32(ds.image(i), out)
                .expect("image buffers have the contract's size"),
        }
    }
    let z = idx
        .iter()
        .map(|&i| kernel.redshift(ds.redshift[i]).unwrap_or(0.0))
        .collect();
    let y = idx
        .iter()
        .map(|&i| ds.log_mass.as_ref().map_or(0.0, |m| m[i]))
        .collect();
    Batch { x, z, y }
}
