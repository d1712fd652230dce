//! Datasets: the NPZ contract (README, "The dataset contract"), read with validation and written
//! atomically.
//!
//! Contract: `images` u16 counts `[N, 10, 50, 50]` (band, y, x) — channels-last
//! `[N, 50, 50, 10]` is accepted on input, as Keras users store it — `redshift`
//! f32 `[N]`, `log_mass` f32 `[N]` (log10 M500c / Msun), optional truth columns
//! from the simulator, and `meta_json` (u8 bytes of a JSON document with the
//! generator's configuration). Users may also give a directory, or the path of
//! an `images.npy`, holding `images.npy`, `redshift.npy` and `log_mass.npy`.

use crate::sim::spectrum::NBANDS;
use crate::sim::{IMAGE_LEN, NPIX};
use npyz::npz::NpzArchive;
use npyz::{NpyFile, Order};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

mod read;
mod split;
mod write;

use read::*;
pub use split::Splits;
pub use write::{ImagesOut, NpzOut};

/// A problem with a dataset file, always naming the file.
#[derive(Debug, Error)]
#[error("dataset {}: {problem}", path.display())]
pub struct DataError {
    /// The file (or directory) at fault.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: Problem,
}

/// What can be wrong with a dataset.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Problem {
    /// The file could not be opened or read.
    #[error("cannot read: {0}")]
    Io(#[source] io::Error),
    /// Not a readable NPZ/NPY (truncated, corrupted, not NumPy).
    #[error("not a readable NumPy file (truncated or corrupted?): {0}")]
    Corrupt(String),
    /// A required array is absent.
    #[error("missing array `{key}` (arrays present: {present})")]
    MissingKey {
        /// The array.
        key: String,
        /// What the file has.
        present: String,
    },
    /// An array has the wrong shape.
    #[error("array `{key}` has shape {shape:?}; expected {expected}")]
    BadShape {
        /// The array.
        key: String,
        /// Its shape.
        shape: Vec<u64>,
        /// What the contract wants.
        expected: String,
    },
    /// An array has a dtype we do not read.
    #[error("array `{key}` has dtype {dtype}; expected integer or float numbers")]
    BadDtype {
        /// The array.
        key: String,
        /// Its dtype.
        dtype: String,
    },
    /// Fortran-ordered arrays are not read.
    #[error("array `{key}` is Fortran-ordered; save it with numpy.ascontiguousarray")]
    FortranOrder {
        /// The array.
        key: String,
    },
    /// A value is NaN or infinite.
    #[error("array `{key}` has a non-finite value ({value}) at flat index {index}")]
    NotFinite {
        /// The array.
        key: String,
        /// Flat index.
        index: usize,
        /// The value.
        value: f64,
    },
    /// A value lies outside its allowed range.
    #[error("array `{key}` has value {value} at flat index {index}: {why}")]
    OutOfRange {
        /// The array.
        key: String,
        /// Flat index.
        index: usize,
        /// The value.
        value: f64,
        /// The rule it breaks.
        why: &'static str,
    },
    /// Arrays disagree on the number of clusters.
    #[error("array `{key}` has {got} entries but `images` has {n}")]
    LengthMismatch {
        /// The array.
        key: String,
        /// Its length.
        got: usize,
        /// The number of images.
        n: usize,
    },
    /// The metadata is not valid JSON.
    #[error("array `meta_json` is not valid UTF-8 JSON: {0}")]
    BadMeta(String),
}

/// Simulator truth, one value per cluster (absent from user data).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TruthColumns {
    /// log10 L(0.5-2 keV, rest, < r500), erg/s.
    pub log_lum: Vec<f32>,
    /// log10 core-excised luminosity, erg/s.
    pub log_lum_ce: Vec<f32>,
    /// Temperature, keV.
    pub temperature_kev: Vec<f32>,
    /// r500c, Mpc.
    pub r500_mpc: Vec<f32>,
    /// theta500, arcmin.
    pub theta500_arcmin: Vec<f32>,
    /// 1 if cool core.
    pub cool_core: Vec<u8>,
    /// 1 if disturbed.
    pub disturbed: Vec<u8>,
    /// Exposure, s.
    pub exposure_s: Vec<f32>,
    /// Expected cluster counts, all bands.
    pub source_counts: Vec<f32>,
    /// Expected cluster counts, 0.5-2 keV.
    pub source_counts_soft: Vec<f32>,
    /// Tinker 2008 dn/dlog10M, Mpc^-3.
    pub mf_weight: Vec<f32>,
    /// Point sources in the field.
    pub n_agn: Vec<u16>,
    /// 1 if a central AGN was added.
    pub central_agn: Vec<u8>,
}

/// Names of the f32 truth columns, in [`TruthColumns`] order.
pub const TRUTH_F32: [&str; 9] = [
    "log_lum",
    "log_lum_ce",
    "temperature_kev",
    "r500_mpc",
    "theta500_arcmin",
    "exposure_s",
    "source_counts",
    "source_counts_soft",
    "mf_weight",
];

impl TruthColumns {
    /// Mutable access to an f32 column by name.
    pub fn f32_column_mut(&mut self, name: &str) -> Option<&mut Vec<f32>> {
        Some(match name {
            "log_lum" => &mut self.log_lum,
            "log_lum_ce" => &mut self.log_lum_ce,
            "temperature_kev" => &mut self.temperature_kev,
            "r500_mpc" => &mut self.r500_mpc,
            "theta500_arcmin" => &mut self.theta500_arcmin,
            "exposure_s" => &mut self.exposure_s,
            "source_counts" => &mut self.source_counts,
            "source_counts_soft" => &mut self.source_counts_soft,
            "mf_weight" => &mut self.mf_weight,
            _ => return None,
        })
    }

    /// An f32 column by name.
    pub fn f32_column(&self, name: &str) -> Option<&Vec<f32>> {
        Some(match name {
            "log_lum" => &self.log_lum,
            "log_lum_ce" => &self.log_lum_ce,
            "temperature_kev" => &self.temperature_kev,
            "r500_mpc" => &self.r500_mpc,
            "theta500_arcmin" => &self.theta500_arcmin,
            "exposure_s" => &self.exposure_s,
            "source_counts" => &self.source_counts,
            "source_counts_soft" => &self.source_counts_soft,
            "mf_weight" => &self.mf_weight,
            _ => return None,
        })
    }

    /// Append one cluster's truth.
    pub fn push(&mut self, t: &crate::sim::Truth) {
        self.log_lum.push(t.log_lum as f32);
        self.log_lum_ce.push(t.log_lum_ce as f32);
        self.temperature_kev.push(t.temperature_kev as f32);
        self.r500_mpc.push(t.r500_mpc as f32);
        self.theta500_arcmin.push(t.theta500_arcmin as f32);
        self.cool_core.push(t.cool_core.into());
        self.disturbed.push(t.disturbed.into());
        self.exposure_s.push(t.exposure_s as f32);
        self.source_counts.push(t.source_counts as f32);
        self.source_counts_soft.push(t.source_counts_soft as f32);
        self.mf_weight.push(t.mf_weight as f32);
        self.n_agn.push(t.n_agn.min(u16::MAX.into()) as u16);
        self.central_agn.push(t.central_agn.into());
    }
}

/// A dataset in memory, images band-major.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// Where it came from.
    pub path: Option<PathBuf>,
    /// Counts, `[n][band][y][x]`.
    pub images: Vec<u16>,
    /// Redshifts.
    pub redshift: Vec<f32>,
    /// log10 M500c / Msun (absent if the user only wants predictions).
    pub log_mass: Option<Vec<f32>>,
    /// Simulator truth (absent in user data).
    pub truth: Option<TruthColumns>,
    /// Generator metadata (JSON), if any.
    pub meta: Option<serde_json::Value>,
    /// Sky positions and ids (survey cutouts and simulated tiles), if any.
    pub sky: Option<SkyColumns>,
}

/// Where each cluster is on the sky: the `id`, `ra`, `dec` arrays (and, from `trainer
/// cutout`, `edge_margin_arcsec`) of a dataset made from survey data or a simulated tile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SkyColumns {
    /// Catalogue ids (`id`, a NumPy unicode array).
    pub id: Vec<String>,
    /// RA, J2000 degrees (`ra`, f64).
    pub ra: Vec<f64>,
    /// Dec, J2000 degrees (`dec`, f64).
    pub dec: Vec<f64>,
    /// Distance from the cluster to the edge of its tile's exposure map, arcsec
    /// (`edge_margin_arcsec`, f32; empty when not known).
    pub edge_margin_arcsec: Vec<f32>,
}

impl Dataset {
    /// FNV-1a 64 of what training reads: the counts, redshifts and labels, in that
    /// order (the same on every machine and for every file layout of the same data).
    pub fn fingerprint(&self) -> u64 {
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ u64::from(b)).wrapping_mul(PRIME);
            }
        };
        for c in self.images.chunks(4096) {
            let bytes: Vec<u8> = c.iter().flat_map(|v| v.to_le_bytes()).collect();
            eat(&bytes);
        }
        for z in &self.redshift {
            eat(&z.to_le_bytes());
        }
        if let Some(m) = &self.log_mass {
            for v in m {
                eat(&v.to_le_bytes());
            }
        }
        h
    }

    /// The energy band edges in keV (`NBANDS + 1`): the simulator's, from the metadata,
    /// else the default configuration's.
    pub fn band_edges_kev(&self) -> Vec<f64> {
        self.meta
            .as_ref()
            .and_then(|m| m.pointer("/config/spectral/band_edges_kev"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_else(|| {
                crate::sim::spectrum::SpectralParams::default()
                    .band_edges_kev
                    .to_vec()
            })
    }

    /// Number of clusters.
    pub fn len(&self) -> usize {
        self.redshift.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.redshift.is_empty()
    }

    /// Counts of cluster `i`, band-major.
    pub fn image(&self, i: usize) -> &[u16] {
        &self.images[i * IMAGE_LEN..(i + 1) * IMAGE_LEN]
    }

    /// The exposure of cluster i: truth column, else the metadata's, else `None`.
    pub fn exposure(&self, i: usize) -> Option<f64> {
        if let Some(t) = &self.truth
            && !t.exposure_s.is_empty()
        {
            return Some(f64::from(t.exposure_s[i]));
        }
        self.meta
            .as_ref()
            .and_then(|m| m.get("exposure_s"))
            .and_then(|v| v.as_f64())
    }

    /// Pixel size in arcsec from the metadata (default 10).
    pub fn pixel_arcsec(&self) -> f64 {
        self.meta
            .as_ref()
            .and_then(|m| m.pointer("/config/instrument/pixel_arcsec"))
            .and_then(|v| v.as_f64())
            .unwrap_or(10.0)
    }

    /// Load and validate an NPZ file, an `images.npy` (siblings `redshift.npy`,
    /// `log_mass.npy`), or a directory holding those.
    pub fn load(path: &Path) -> Result<Self, DataError> {
        Self::load_unnamed(path).map_err(|problem| DataError {
            path: path.to_path_buf(),
            problem,
        })
    }

    fn load_unnamed(path: &Path) -> Result<Self, Problem> {
        let mut source: Box<dyn Source> = if path.is_dir() {
            Box::new(DirSource {
                dir: path.to_path_buf(),
            })
        } else if path.extension().is_some_and(|e| e == "npy") {
            Box::new(DirSource {
                dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            })
        } else {
            let npz = NpzArchive::open(path).map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => Problem::Io(e),
                _ => Problem::Corrupt(e.to_string()),
            })?;
            let len = std::fs::metadata(path).map_err(Problem::Io)?.len();
            Box::new(NpzSource { npz, len })
        };
        let present = source.names().join(", ");
        let missing = |key: &str| Problem::MissingKey {
            key: key.into(),
            present: present.clone(),
        };

        let mut sink = ImageSink::default();
        if !source.read("images", &mut sink)? {
            return Err(missing("images"));
        }
        let (n, images) = (sink.n, sink.out);

        let redshift = read_raw(source.as_mut(), "redshift")?.ok_or_else(|| missing("redshift"))?;
        let redshift = floats_1d("redshift", redshift, n)?;
        check_range(
            "redshift",
            &redshift,
            0.0,
            runtime::model::MAX_REDSHIFT,
            "redshift must be between 0 and 20",
        )?;

        let log_mass = match read_raw(source.as_mut(), "log_mass")? {
            Some(a) => {
                let v = floats_1d("log_mass", a, n)?;
                check_range(
                    "log_mass",
                    &v,
                    10.0,
                    17.0,
                    "log10 M500/Msun must be between 10 and 17",
                )?;
                Some(v)
            }
            None => None,
        };

        let mut truth = TruthColumns::default();
        let mut any_truth = false;
        for key in TRUTH_F32 {
            if let Some(a) = read_raw(source.as_mut(), key)? {
                *truth.f32_column_mut(key).expect("known column") = floats_1d(key, a, n)?;
                any_truth = true;
            }
        }
        for (key, col) in [
            ("cool_core", &mut truth.cool_core),
            ("disturbed", &mut truth.disturbed),
            ("central_agn", &mut truth.central_agn),
        ] {
            if let Some(a) = read_raw(source.as_mut(), key)? {
                *col = floats_1d(key, a, n)?
                    .iter()
                    .map(|&v| u8::from(v != 0.0))
                    .collect();
            }
        }
        if let Some(a) = read_raw(source.as_mut(), "n_agn")? {
            truth.n_agn = floats_1d("n_agn", a, n)?
                .iter()
                .map(|&v| v as u16)
                .collect();
        }
        let meta = match read_raw(source.as_mut(), "meta_json")? {
            Some(a) => {
                let bytes: Vec<u8> = a.values.iter().map(|&v| v as u8).collect();
                Some(serde_json::from_slice(&bytes).map_err(|e| Problem::BadMeta(e.to_string()))?)
            }
            None => None,
        };
        // Positions without ids still count (ids are then the row numbers).
        let names = source.names();
        let has = |k: &str| names.iter().any(|n| n == k);
        let id = match source.read_strings("id")? {
            Some(id) => Some(id),
            None if has("ra") || has("dec") => Some((0..n).map(|i| i.to_string()).collect()),
            None => None,
        };
        let sky = match id {
            Some(id) => {
                if id.len() != n {
                    return Err(Problem::BadShape {
                        key: "id".into(),
                        shape: vec![id.len() as u64],
                        expected: format!("[{n}] (one id per image)"),
                    });
                }
                let mut coord = |key: &str, lo: f64, hi: f64, why| -> Result<Vec<f64>, Problem> {
                    // Positions are optional next to ids: NaN when absent.
                    let Some(a) = read_raw(source.as_mut(), key)? else {
                        return Ok(vec![f64::NAN; n]);
                    };
                    let v = floats_1d_f64(key, a, n)?;
                    match v.iter().position(|x| !(*x >= lo && *x <= hi)) {
                        Some(index) => Err(Problem::OutOfRange {
                            key: key.into(),
                            index,
                            value: v[index],
                            why,
                        }),
                        None => Ok(v),
                    }
                };
                let ra = coord("ra", 0.0, 360.0, "RA must be in [0, 360] degrees")?;
                let dec = coord("dec", -90.0, 90.0, "Dec must be in [-90, 90] degrees")?;
                let edge_margin_arcsec = match read_raw(source.as_mut(), "edge_margin_arcsec")? {
                    Some(a) => floats_1d("edge_margin_arcsec", a, n)?,
                    None => Vec::new(),
                };
                Some(SkyColumns {
                    id,
                    ra,
                    dec,
                    edge_margin_arcsec,
                })
            }
            None => None,
        };
        Ok(Self {
            path: Some(path.to_path_buf()),
            images,
            redshift,
            log_mass,
            truth: any_truth.then_some(truth),
            meta,
            sky,
        })
    }

    /// The clusters `idx`, in that order (truth and metadata kept).
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let pick_f32 = |v: &Vec<f32>| {
            if v.is_empty() {
                Vec::new()
            } else {
                idx.iter().map(|&i| v[i]).collect()
            }
        };
        let truth = self.truth.as_ref().map(|t| {
            let mut out = TruthColumns::default();
            for key in TRUTH_F32 {
                *out.f32_column_mut(key).expect("known column") =
                    pick_f32(t.f32_column(key).expect("known column"));
            }
            let pick_u8 = |v: &Vec<u8>| {
                if v.is_empty() {
                    Vec::new()
                } else {
                    idx.iter().map(|&i| v[i]).collect()
                }
            };
            out.cool_core = pick_u8(&t.cool_core);
            out.disturbed = pick_u8(&t.disturbed);
            out.central_agn = pick_u8(&t.central_agn);
            out.n_agn = if t.n_agn.is_empty() {
                Vec::new()
            } else {
                idx.iter().map(|&i| t.n_agn[i]).collect()
            };
            out
        });
        Dataset {
            path: None,
            images: idx
                .iter()
                .flat_map(|&i| self.image(i).iter().copied())
                .collect(),
            redshift: idx.iter().map(|&i| self.redshift[i]).collect(),
            log_mass: self
                .log_mass
                .as_ref()
                .map(|m| idx.iter().map(|&i| m[i]).collect()),
            truth,
            meta: self.meta.clone(),
            sky: self.sky.as_ref().map(|k| SkyColumns {
                id: idx.iter().map(|&i| k.id[i].clone()).collect(),
                ra: idx.iter().map(|&i| k.ra[i]).collect(),
                dec: idx.iter().map(|&i| k.dec[i]).collect(),
                edge_margin_arcsec: if k.edge_margin_arcsec.is_empty() {
                    Vec::new()
                } else {
                    idx.iter().map(|&i| k.edge_margin_arcsec[i]).collect()
                },
            }),
        }
    }

    /// Write to `path` atomically (temporary file in the same directory, then rename).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut w = NpzOut::create(path)?;
        w.images(self.len())?.write(&self.images)?;
        w.f32("redshift", &self.redshift)?;
        if let Some(m) = &self.log_mass {
            w.f32("log_mass", m)?;
        }
        if let Some(t) = &self.truth {
            w.truth(t)?;
        }
        if let Some(k) = &self.sky {
            w.sky(k)?;
        }
        if let Some(m) = &self.meta {
            w.meta(m)?;
        }
        w.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small simulated dataset: every column the simulator writes.
    fn mocks(n: usize) -> Dataset {
        let sim = crate::sim::Simulator::new(crate::sim::SimConfig {
            seed: 5,
            ..Default::default()
        });
        crate::generate::generate_dataset(&sim, n)
    }

    /// What is written is what is read: counts, redshifts, masses, truth and metadata.
    #[test]
    fn save_then_load_round_trips() {
        let ds = mocks(3);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mocks.npz");
        ds.save(&path).unwrap();
        let back = Dataset::load(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back.images, ds.images);
        assert_eq!(back.redshift, ds.redshift);
        assert_eq!(back.log_mass, ds.log_mass);
        assert_eq!(back.meta, ds.meta);
        assert_eq!(back.path.as_deref(), Some(path.as_path()));
        for i in 0..3 {
            assert_eq!(back.exposure(i), ds.exposure(i));
        }
    }

    /// A truncated or corrupted archive is an error that names the file, never a panic or a
    /// partial dataset; so is a missing file.
    #[test]
    fn damaged_files_are_errors_naming_the_file() {
        let ds = mocks(2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("good.npz");
        ds.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for (name, damaged) in [
            ("truncated.npz", bytes[..bytes.len() / 2].to_vec()),
            ("empty.npz", Vec::new()),
            ("flipped.npz", {
                let mut b = bytes.clone();
                let k = b.len() / 3;
                b[k..k + 64].iter_mut().for_each(|x| *x ^= 0x5a);
                b
            }),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, damaged).unwrap();
            let e = Dataset::load(&p).expect_err(name);
            assert!(e.to_string().contains(name), "{name}: {e}");
        }
        let missing = dir.path().join("missing.npz");
        let e = Dataset::load(&missing).unwrap_err();
        assert!(matches!(e.problem, Problem::Io(_)), "{e}");
        assert!(e.to_string().contains("missing.npz"), "{e}");
    }

    /// Saving over an existing dataset replaces it whole (temporary file, then rename).
    #[test]
    fn saving_replaces_an_existing_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.npz");
        mocks(3).save(&path).unwrap();
        let small = mocks(1);
        small.save(&path).unwrap();
        assert_eq!(Dataset::load(&path).unwrap().images, small.images);
        // No temporary file is left next to it.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
