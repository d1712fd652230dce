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
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

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

/// A numeric array read from disk, converted to f64 (small arrays only).
#[derive(Default)]
struct RawArray {
    key: String,
    shape: Vec<u64>,
    values: Vec<f64>,
}

/// Receives an array's shape, then its values in C order.
trait Sink {
    fn begin(&mut self, key: &str, shape: &[u64]) -> Result<(), Problem>;
    fn push(&mut self, index: usize, value: f64) -> Result<(), Problem>;
}

impl Sink for RawArray {
    fn begin(&mut self, key: &str, shape: &[u64]) -> Result<(), Problem> {
        self.key = key.into();
        self.shape = shape.to_vec();
        Ok(())
    }
    fn push(&mut self, _index: usize, value: f64) -> Result<(), Problem> {
        self.values.push(value);
        Ok(())
    }
}

trait Source {
    fn names(&self) -> Vec<String>;
    /// Stream array `key` into `sink`; `Ok(false)` if there is no such array.
    fn read(&mut self, key: &str, sink: &mut dyn Sink) -> Result<bool, Problem>;
    /// Read a 1-D string array (`<U` or `|S`); `Ok(None)` if there is no such array.
    fn read_strings(&mut self, key: &str) -> Result<Option<Vec<String>>, Problem>;
}

fn strings_npy<R: Read>(key: &str, npy: NpyFile<R>) -> Result<Vec<String>, Problem> {
    if npy.shape().len() != 1 {
        return Err(Problem::BadShape {
            key: key.into(),
            shape: npy.shape().to_vec(),
            expected: "[N] (one id per cluster)".into(),
        });
    }
    let dtype = npy.dtype().descr();
    let corrupt = |e: std::io::Error| Problem::Corrupt(format!("array `{key}`: {e}"));
    let code = dtype.trim_start_matches(['<', '>', '|', '=']);
    // Integer ids (catalogue row numbers, 64-bit source ids) are kept exactly as text.
    macro_rules! ints {
        ($t:ty) => {
            npy.data::<$t>()
                .map_err(|e| Problem::Corrupt(format!("array `{key}`: {e}")))?
                .map(|v| v.map(|x| x.to_string()).map_err(corrupt))
                .collect()
        };
    }
    match code {
        "i1" => ints!(i8),
        "i2" => ints!(i16),
        "i4" => ints!(i32),
        "i8" => ints!(i64),
        "u1" => ints!(u8),
        "u2" => ints!(u16),
        "u4" => ints!(u32),
        "u8" => ints!(u64),
        _ => {
            let data = npy.data::<String>().map_err(|_| Problem::BadDtype {
                key: key.into(),
                dtype: format!("{dtype} (ids are strings, numpy dtype <U or |S, or integers)"),
            })?;
            data.map(|v| v.map_err(corrupt)).collect()
        }
    }
}

fn read_raw(source: &mut dyn Source, key: &str) -> Result<Option<RawArray>, Problem> {
    let mut raw = RawArray::default();
    Ok(source.read(key, &mut raw)?.then_some(raw))
}

struct NpzSource {
    npz: NpzArchive<BufReader<File>>,
    /// The archive's size: no entry can declare more than this holds.
    len: u64,
}

impl Source for NpzSource {
    fn names(&self) -> Vec<String> {
        self.npz.array_names().map(String::from).collect()
    }
    fn read(&mut self, key: &str, sink: &mut dyn Sink) -> Result<bool, Problem> {
        let corrupt = |e: &dyn std::fmt::Display| Problem::Corrupt(format!("array `{key}`: {e}"));
        let name = npyz::npz::file_name_from_array_name(key);
        let mut entry = match self.npz.zip_archive().by_name(&name) {
            Ok(entry) => entry,
            Err(npyz::zip::result::ZipError::FileNotFound) => return Ok(false),
            Err(e) => return Err(corrupt(&e)),
        };
        let budget = codegen::npy::entry_budget(&entry, self.len);
        let npy = codegen::npy::open(&mut entry, budget).map_err(|e| corrupt(&e))?;
        read_npy(key, npy, sink)?;
        // The zip CRC is only checked when an entry is read to its end; npyz stops at the
        // last value, so drain the rest to catch corrupted bytes.
        io::copy(&mut entry, &mut io::sink()).map_err(|e| corrupt(&e))?;
        Ok(true)
    }
    fn read_strings(&mut self, key: &str) -> Result<Option<Vec<String>>, Problem> {
        let corrupt = |e: &dyn std::fmt::Display| Problem::Corrupt(format!("array `{key}`: {e}"));
        let name = npyz::npz::file_name_from_array_name(key);
        let mut entry = match self.npz.zip_archive().by_name(&name) {
            Ok(entry) => entry,
            Err(npyz::zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(corrupt(&e)),
        };
        let budget = codegen::npy::entry_budget(&entry, self.len);
        let npy = codegen::npy::open(&mut entry, budget).map_err(|e| corrupt(&e))?;
        let v = strings_npy(key, npy)?;
        io::copy(&mut entry, &mut io::sink()).map_err(|e| corrupt(&e))?;
        Ok(Some(v))
    }
}

struct DirSource {
    dir: PathBuf,
}

impl Source for DirSource {
    fn names(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|s| s.strip_suffix(".npy"))
                            .map(String::from)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    fn read(&mut self, key: &str, sink: &mut dyn Sink) -> Result<bool, Problem> {
        let p = self.dir.join(format!("{key}.npy"));
        if !p.exists() {
            return Ok(false);
        }
        let f = File::open(&p).map_err(Problem::Io)?;
        let len = f.metadata().map_err(Problem::Io)?.len();
        let npy = codegen::npy::open(BufReader::new(f), len)
            .map_err(|e| Problem::Corrupt(format!("{}: {e}", p.display())))?;
        read_npy(key, npy, sink).map(|_| true)
    }
    fn read_strings(&mut self, key: &str) -> Result<Option<Vec<String>>, Problem> {
        let p = self.dir.join(format!("{key}.npy"));
        if !p.exists() {
            return Ok(None);
        }
        let f = File::open(&p).map_err(Problem::Io)?;
        let len = f.metadata().map_err(Problem::Io)?.len();
        let npy = codegen::npy::open(BufReader::new(f), len)
            .map_err(|e| Problem::Corrupt(format!("{}: {e}", p.display())))?;
        strings_npy(key, npy).map(Some)
    }
}

fn read_npy<R: Read>(key: &str, npy: NpyFile<R>, sink: &mut dyn Sink) -> Result<(), Problem> {
    let shape = npy.shape().to_vec();
    if npy.order() == Order::Fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(Problem::FortranOrder { key: key.into() });
    }
    let dtype = npy.dtype();
    let type_str = match &dtype {
        npyz::DType::Plain(t) => t.to_string(),
        other => other.descr(),
    };
    let corrupt = |e: io::Error| Problem::Corrupt(format!("array `{key}`: {e}"));
    sink.begin(key, &shape)?;
    let mut count = 0usize;
    macro_rules! read_as {
        ($t:ty, $conv:expr) => {{
            let data = npy.data::<$t>().map_err(|e| Problem::BadDtype {
                key: key.into(),
                dtype: e.to_string(),
            })?;
            for v in data {
                let v: $t = v.map_err(corrupt)?;
                sink.push(count, $conv(v))?;
                count += 1;
            }
        }};
    }
    let code = type_str.trim_start_matches(['<', '>', '|', '=']);
    match code {
        "u1" => read_as!(u8, f64::from),
        "u2" => read_as!(u16, f64::from),
        "u4" => read_as!(u32, f64::from),
        "u8" => read_as!(u64, |v| v as f64),
        "i1" => read_as!(i8, f64::from),
        "i2" => read_as!(i16, f64::from),
        "i4" => read_as!(i32, f64::from),
        "i8" => read_as!(i64, |v| v as f64),
        "f4" => read_as!(f32, f64::from),
        "f8" => read_as!(f64, |v| v),
        "b1" => read_as!(bool, |v| f64::from(u8::from(v))),
        _ => {
            return Err(Problem::BadDtype {
                key: key.into(),
                dtype: type_str,
            });
        }
    }
    let expected = shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    if Some(count as u64) != expected {
        return Err(Problem::Corrupt(format!(
            "array `{key}`: {count} values for shape {shape:?} (truncated?)"
        )));
    }
    Ok(())
}

/// Validates counts and reorders channels-last input to band-major as it streams.
#[derive(Default)]
struct ImageSink {
    key: String,
    n: usize,
    channels_last: bool,
    out: Vec<u16>,
}

impl Sink for ImageSink {
    fn begin(&mut self, key: &str, s: &[u64]) -> Result<(), Problem> {
        self.key = key.into();
        let (n, channels_last) = match s {
            [n, b, y, x] if *b as usize == NBANDS && *y as usize == NPIX && *x as usize == NPIX => {
                (*n as usize, false)
            }
            [n, y, x, b] if *b as usize == NBANDS && *y as usize == NPIX && *x as usize == NPIX => {
                (*n as usize, true)
            }
            _ => {
                return Err(Problem::BadShape {
                    key: key.into(),
                    shape: s.to_vec(),
                    expected: format!(
                        "[N, {NBANDS}, {NPIX}, {NPIX}] (band, y, x) or [N, {NPIX}, {NPIX}, {NBANDS}] (channels-last)"
                    ),
                });
            }
        };
        if n == 0 {
            return Err(Problem::BadShape {
                key: key.into(),
                shape: s.to_vec(),
                expected: "at least one image".into(),
            });
        }
        self.n = n;
        self.channels_last = channels_last;
        // The reader has checked the declared size against the file's; multiply in
        // checked arithmetic all the same (a 32-bit host, a reader without the check).
        let len = n.checked_mul(IMAGE_LEN).ok_or_else(|| Problem::BadShape {
            key: key.into(),
            shape: s.to_vec(),
            expected: "a number of images that fits in memory".into(),
        })?;
        self.out = vec![0u16; len];
        Ok(())
    }

    fn push(&mut self, index: usize, v: f64) -> Result<(), Problem> {
        let bad = |why| Problem::OutOfRange {
            key: self.key.clone(),
            index,
            value: v,
            why,
        };
        if !v.is_finite() {
            return Err(Problem::NotFinite {
                key: self.key.clone(),
                index,
                value: v,
            });
        }
        if v < 0.0 {
            return Err(bad("photon counts cannot be negative"));
        }
        if v.fract() != 0.0 {
            return Err(bad(
                "photon counts must be whole numbers (raw counts, not preprocessed images)",
            ));
        }
        if v > f64::from(u16::MAX) {
            return Err(bad("counts above 65535 do not fit the u16 contract"));
        }
        let dst = if self.channels_last {
            let (i, rest) = (index / IMAGE_LEN, index % IMAGE_LEN);
            let (y, rest) = (rest / (NPIX * NBANDS), rest % (NPIX * NBANDS));
            let (x, b) = (rest / NBANDS, rest % NBANDS);
            i * IMAGE_LEN + b * NPIX * NPIX + y * NPIX + x
        } else {
            index
        };
        // The count check after streaming catches surplus values; never index past the end.
        if let Some(slot) = self.out.get_mut(dst) {
            *slot = v as u16;
        }
        Ok(())
    }
}

fn floats_1d(key: &str, a: RawArray, n: usize) -> Result<Vec<f32>, Problem> {
    if a.shape.len() != 1 {
        return Err(Problem::BadShape {
            key: key.into(),
            shape: a.shape,
            expected: format!("[{n}]"),
        });
    }
    if a.values.len() != n {
        return Err(Problem::LengthMismatch {
            key: key.into(),
            got: a.values.len(),
            n,
        });
    }
    for (index, &v) in a.values.iter().enumerate() {
        if !v.is_finite() {
            return Err(Problem::NotFinite {
                key: key.into(),
                index,
                value: v,
            });
        }
    }
    Ok(a.values.iter().map(|&v| v as f32).collect())
}

fn floats_1d_f64(key: &str, a: RawArray, n: usize) -> Result<Vec<f64>, Problem> {
    if a.shape.len() != 1 {
        return Err(Problem::BadShape {
            key: key.into(),
            shape: a.shape,
            expected: format!("[{n}]"),
        });
    }
    if a.values.len() != n {
        return Err(Problem::LengthMismatch {
            key: key.into(),
            got: a.values.len(),
            n,
        });
    }
    if let Some(index) = a.values.iter().position(|v| !v.is_finite()) {
        return Err(Problem::NotFinite {
            key: key.into(),
            index,
            value: a.values[index],
        });
    }
    Ok(a.values)
}

fn check_range(key: &str, v: &[f32], lo: f32, hi: f32, why: &'static str) -> Result<(), Problem> {
    match v.iter().position(|x| !(*x >= lo && *x <= hi)) {
        Some(index) => Err(Problem::OutOfRange {
            key: key.into(),
            index,
            value: f64::from(v[index]),
            why,
        }),
        None => Ok(()),
    }
}

/// Streaming, atomic NPZ writer for the dataset contract.
pub struct NpzOut {
    target: PathBuf,
    npz: npyz::npz::NpzWriter<io::BufWriter<tempfile::NamedTempFile>>,
}

type ZipOut = npyz::zip::ZipWriter<io::BufWriter<tempfile::NamedTempFile>>;

/// Streaming writer of the `images` array: the NPY header comes from npyz, the
/// counts follow as little-endian bytes in large writes (npyz's element-by-element
/// encoder would cost a zip write and a CRC update per 2-byte value).
pub struct ImagesOut<'a> {
    zip: &'a mut ZipOut,
    remaining: usize,
    bytes: Vec<u8>,
}

impl ImagesOut<'_> {
    /// Append counts (band-major, whole images).
    pub fn write(&mut self, counts: &[u16]) -> io::Result<()> {
        use io::Write;
        if counts.len() > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "more image values than the declared shape",
            ));
        }
        self.remaining -= counts.len();
        self.bytes.clear();
        self.bytes
            .extend(counts.iter().flat_map(|v| v.to_le_bytes()));
        self.zip.write_all(&self.bytes)
    }
    /// Finish the array; fails if fewer values were written than declared.
    pub fn finish(self) -> io::Result<()> {
        if self.remaining != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} image values missing", self.remaining),
            ));
        }
        Ok(())
    }
}

impl NpzOut {
    /// Start writing; nothing appears at `path` until [`NpzOut::commit`].
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let tmp = crate::fsutil::temp_for(path, ".npz.tmp")?;
        Ok(Self {
            target: path.to_path_buf(),
            npz: npyz::npz::NpzWriter::new(io::BufWriter::with_capacity(1 << 20, tmp)),
        })
    }

    fn options() -> npyz::zip::write::FileOptions {
        // A fixed time stamp keeps equal datasets byte-identical.
        npyz::zip::write::FileOptions::default()
            .last_modified_time(npyz::zip::DateTime::default())
            .compression_method(npyz::zip::CompressionMethod::Stored)
            .large_file(true)
    }

    /// Begin the `images` array for `n` clusters; write it fully before any other array.
    pub fn images(&mut self, n: usize) -> io::Result<ImagesOut<'_>> {
        use io::Write;
        use npyz::WriterBuilder;
        let shape = [n as u64, NBANDS as u64, NPIX as u64, NPIX as u64];
        // Let npyz encode the header into a buffer; the unfinished writer is then
        // dropped (its complaint about missing values is ignored by design).
        let mut header = Vec::new();
        drop(
            npyz::WriteOptions::<u16>::new()
                .dtype(npyz::DType::new_scalar(
                    "<u2".parse().expect("valid type string"),
                ))
                .shape(&shape)
                .writer(&mut header)
                .begin_nd()?,
        );
        let zip = self.npz.zip_writer();
        zip.start_file(
            npyz::npz::file_name_from_array_name("images"),
            Self::options(),
        )?;
        zip.write_all(&header)?;
        Ok(ImagesOut {
            zip,
            remaining: n * IMAGE_LEN,
            bytes: Vec::new(),
        })
    }

    /// Write a 1-D f32 array.
    pub fn f32(&mut self, name: &str, v: &[f32]) -> io::Result<()> {
        self.array_1d(name, v)
    }

    fn array_1d<T: npyz::AutoSerialize + Copy>(&mut self, name: &str, v: &[T]) -> io::Result<()> {
        use npyz::WriterBuilder;
        let mut w = self
            .npz
            .array::<T>(name, Self::options())?
            .default_dtype()
            .shape(&[v.len() as u64])
            .begin_nd()?;
        w.extend(v.iter().copied())?;
        w.finish()
    }

    /// Write every truth column.
    pub fn truth(&mut self, t: &TruthColumns) -> io::Result<()> {
        for key in TRUTH_F32 {
            self.array_1d(key, t.f32_column(key).expect("known column"))?;
        }
        self.array_1d("cool_core", &t.cool_core)?;
        self.array_1d("disturbed", &t.disturbed)?;
        self.array_1d("central_agn", &t.central_agn)?;
        self.array_1d("n_agn", &t.n_agn)
    }

    /// Write a 1-D f64 array.
    pub fn f64(&mut self, name: &str, v: &[f64]) -> io::Result<()> {
        self.array_1d(name, v)
    }

    /// Write the sky columns: `id` (NumPy unicode `<U`), `ra`, `dec` (f64) and, when
    /// known, `edge_margin_arcsec` (f32).
    pub fn sky(&mut self, k: &SkyColumns) -> io::Result<()> {
        use npyz::WriterBuilder;
        let width =
            k.id.iter()
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(1)
                .max(1);
        let dtype = npyz::DType::new_scalar(
            format!("<U{width}")
                .parse()
                .map_err(|e| io::Error::other(format!("{e}")))?,
        );
        let mut w = self
            .npz
            .array::<String>("id", Self::options())?
            .dtype(dtype)
            .shape(&[k.id.len() as u64])
            .begin_nd()?;
        w.extend(k.id.iter().cloned())?;
        w.finish()?;
        self.array_1d("ra", &k.ra)?;
        self.array_1d("dec", &k.dec)?;
        if !k.edge_margin_arcsec.is_empty() {
            self.array_1d("edge_margin_arcsec", &k.edge_margin_arcsec)?;
        }
        Ok(())
    }

    /// Write the metadata document as `meta_json` (u8 bytes).
    pub fn meta(&mut self, meta: &serde_json::Value) -> io::Result<()> {
        let bytes = serde_json::to_vec_pretty(meta).map_err(io::Error::other)?;
        self.array_1d("meta_json", &bytes)
    }

    /// Finish the archive, flush it to disk and move it into place.
    pub fn commit(mut self) -> anyhow::Result<()> {
        use anyhow::Context;
        let buf = self
            .npz
            .zip_writer()
            .finish()
            .context("finishing the NPZ archive")?;
        let tmp = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .context("flushing the NPZ archive")?;
        tmp.as_file()
            .sync_all()
            .context("syncing the NPZ archive")?;
        tmp.persist(&self.target)
            .with_context(|| format!("moving the finished dataset to {}", self.target.display()))?;
        Ok(())
    }
}

/// Deterministic train / validation / test split of cluster indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Splits {
    /// Training indices.
    pub train: Vec<usize>,
    /// Validation indices (early stopping, calibration).
    pub val: Vec<usize>,
    /// Held-out test indices (every reported figure).
    pub test: Vec<usize>,
}

impl Splits {
    /// Fractions (train, validation); the rest is test. Default 0.8 / 0.1 / 0.1.
    pub const DEFAULT: (f64, f64) = (0.8, 0.1);

    /// Shuffle 0..n with `seed` and cut by the fractions.
    pub fn new(n: usize, seed: u64, fractions: (f64, f64)) -> Self {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5917));
        let n_train = (n as f64 * fractions.0).round() as usize;
        let n_val = (n as f64 * fractions.1).round() as usize;
        let test = idx.split_off((n_train + n_val).min(n));
        let val = idx.split_off(n_train.min(idx.len()));
        Self {
            train: idx,
            val,
            test,
        }
    }
}
