//! Host-side input pipeline: the recorded preprocessing (shared with the device
//! runtime), batches with augmentation, and label statistics.

use super::augment;
use crate::data::Dataset;
use crate::sim::{IMAGE_LEN, NPIX, spectrum::NBANDS};
use anyhow::{Result, bail};
use arch::model::{AuxQuantity, ExtraInput};
use serde::{Deserialize, Serialize};

/// Preprocessing recorded in a run and executed identically by the runtime on raw counts:
/// `x = ln(1 + counts) * band_scale[band]`, `z' = (z - z_shift) * z_scale`, and for each
/// auxiliary scalar input `a' = (feature(a) - shift) * scale` (the exposure's feature is
/// `log10 t`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocess {
    /// Per-band multiplier of ln(1 + counts): 1 / RMS over the training images.
    pub band_scale: [f32; NBANDS],
    /// Redshift shift (training mean).
    pub z_shift: f32,
    /// Redshift scale (1 / training standard deviation).
    pub z_scale: f32,
    /// Auxiliary scalar inputs after the redshift, in the network's order (none in runs
    /// made before they existed, which therefore still load).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<ExtraInput>,
}

impl Preprocess {
    /// Fit the scales on (up to 4,000 of) the training clusters, the redshift's and each
    /// auxiliary input's on all of them; an auxiliary input the dataset does not record,
    /// or that has one value only (nothing to learn from), is refused.
    pub fn fit(ds: &Dataset, train: &[usize], aux: &[AuxQuantity]) -> Result<Self> {
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
        let mut extra = Vec::with_capacity(aux.len());
        for &q in aux {
            let mut f = Vec::with_capacity(train.len());
            for &i in train {
                f.push(f64::from(q.feature(aux_value(ds, q, i)?)));
            }
            let (m, sd) = mean_sd(&f);
            let (lo, hi) = f
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &x| {
                    (l.min(x), h.max(x))
                });
            if !(hi - lo > 1e-3) {
                bail!(
                    "the model takes {} as an input, but every training cluster has the same value (feature {lo:.3}): there is nothing to learn from it; simulate a range (trainer simulate --exposure-range LOW,HIGH or --exposure-survey) or drop it from model.aux_inputs",
                    q.runtime().name()
                );
            }
            extra.push(ExtraInput {
                quantity: q,
                shift: m as f32,
                scale: (1.0 / sd) as f32,
            });
        }
        Ok(Self {
            band_scale,
            z_shift: m as f32,
            z_scale: (1.0 / sd.max(1e-3)) as f32,
            extra,
        })
    }

    /// Number of scalar inputs (the redshift and the auxiliary inputs).
    pub fn scalars(&self) -> usize {
        1 + self.extra.len()
    }

    /// The framework-neutral description (what `model.json` records).
    pub fn desc(&self) -> arch::model::PreprocessDesc {
        arch::model::PreprocessDesc {
            band_scale: self.band_scale.to_vec(),
            z_shift: self.z_shift,
            z_scale: self.z_scale,
            extra: self.extra.clone(),
        }
    }

    /// The network's scalar inputs for cluster `i`, appended to `out`: the preprocessed
    /// redshift, then each auxiliary input, in f32 exactly as the runtime computes them
    /// (`runtime::model::Meta::scalars`).
    pub fn scalar_inputs(&self, ds: &Dataset, i: usize, out: &mut Vec<f32>) -> Result<()> {
        out.push(self.kernel().redshift(ds.redshift[i]).unwrap_or(0.0));
        for e in &self.extra {
            let raw = aux_value(ds, e.quantity, i)?;
            out.push((e.quantity.feature(raw) - e.shift) * e.scale);
        }
        Ok(())
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

/// The raw value of auxiliary input `q` for cluster `i` of `ds`, refused when the dataset
/// does not record it or it is not physically valid.
pub fn aux_value(ds: &Dataset, q: AuxQuantity, i: usize) -> Result<f32> {
    match q {
        AuxQuantity::Exposure => {
            let Some(t) = ds.exposure(i) else {
                bail!(
                    "the model takes the exposure as an input, but the dataset records none (no `exposure_s` column or simulation metadata)"
                );
            };
            let t = t as f32;
            if !(t.is_finite() && q.runtime().valid(t)) {
                bail!("cluster {i}: exposure {t} s is not a valid exposure");
            }
            Ok(t)
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
    /// `[B][S]` preprocessed scalar inputs (redshift, then the auxiliary inputs).
    pub s: Vec<f32>,
    /// Scalar inputs per cluster, `S`.
    pub scalars: usize,
    /// `[B]` log mass (0 when the dataset has no labels).
    pub y: Vec<f32>,
}

/// Assemble clusters `idx`, each transformed by the matching entry of `transforms`
/// (empty = no augmentation). Fails only when an auxiliary input is missing or invalid.
pub fn batch(ds: &Dataset, idx: &[usize], pre: &Preprocess, transforms: &[usize]) -> Result<Batch> {
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
    let mut s = Vec::with_capacity(idx.len() * pre.scalars());
    for &i in idx {
        pre.scalar_inputs(ds, i, &mut s)?;
    }
    let y = idx
        .iter()
        .map(|&i| ds.log_mass.as_ref().map_or(0.0, |m| m[i]))
        .collect();
    Ok(Batch {
        x,
        s,
        scalars: pre.scalars(),
        y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{SimConfig, Simulator};

    fn dataset(range: Option<(f64, f64)>) -> Dataset {
        let mut c = SimConfig {
            seed: 5,
            ..Default::default()
        };
        c.instrument.exposure_range_s = range;
        crate::generate::generate_dataset(&Simulator::new(c), 40)
    }

    /// The exposure input is standardised `log10 t` over the training clusters (mean and
    /// standard deviation computed here independently), and each batch row carries the
    /// redshift then that value, as the runtime maps them.
    #[test]
    fn exposure_inputs_are_standardised_log_exposures() {
        let ds = dataset(Some((150.0, 20_000.0)));
        let idx: Vec<usize> = (0..ds.len()).collect();
        let pre = Preprocess::fit(&ds, &idx, &[AuxQuantity::Exposure]).unwrap();
        let logs: Vec<f64> = idx
            .iter()
            .map(|&i| ds.exposure(i).unwrap().log10())
            .collect();
        let m = logs.iter().sum::<f64>() / logs.len() as f64;
        let sd = (logs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / logs.len() as f64).sqrt();
        let e = pre.extra[0];
        assert!((f64::from(e.shift) - m).abs() < 1e-5, "{} vs {m}", e.shift);
        assert!(
            (f64::from(e.scale) - 1.0 / sd).abs() < 1e-4 / sd,
            "{} vs {}",
            e.scale,
            1.0 / sd
        );
        let b = batch(&ds, &idx[..3], &pre, &[]).unwrap();
        assert_eq!((b.scalars, b.s.len()), (2, 6));
        for k in 0..3 {
            let want = ((ds.exposure(k).unwrap().log10() - m) / sd) as f32;
            assert!(
                (b.s[2 * k + 1] - want).abs() < 1e-4,
                "{} vs {want}",
                b.s[2 * k + 1]
            );
            let z = (f64::from(ds.redshift[k]) - f64::from(pre.z_shift)) * f64::from(pre.z_scale);
            assert!((f64::from(b.s[2 * k]) - z).abs() < 1e-5);
        }
        // The runtime maps the same raw values to the same bits.
        let desc = pre.desc();
        let raw = [ds.redshift[1], ds.exposure(1).unwrap() as f32];
        let rt = arch::interp::preprocess_scalars(&desc, &raw).unwrap();
        assert_eq!(rt[0].to_bits(), b.s[2].to_bits());
        assert_eq!(rt[1].to_bits(), b.s[3].to_bits());
    }

    /// A dataset with one exposure gives the network nothing to learn from an exposure
    /// input: refused, naming the input and the way out.
    #[test]
    fn an_exposure_input_on_a_single_exposure_dataset_is_refused() {
        let ds = dataset(None);
        let idx: Vec<usize> = (0..ds.len()).collect();
        let e = Preprocess::fit(&ds, &idx, &[AuxQuantity::Exposure])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exposure_s") && e.contains("--exposure-range"),
            "{e}"
        );
        assert!(Preprocess::fit(&ds, &idx, &[]).unwrap().extra.is_empty());
    }
}
