//! The optional catalogue arrays of a dataset that `predict` copies or uses but the
//! training contract does not need: `id` (strings or integers), `ra`, `dec` (degrees),
//! and the tile-edge markers `near_edge` (0/1) or `edge_margin_arcsec` (distance of the
//! cutout centre to the nearest tile edge). Read from the same NPZ (or directory of
//! `.npy` files) as the dataset, validated, every problem naming the file and array.

use anyhow::{Context, Result, bail, ensure};
use npyz::NpyFile;
use std::io::Read;
use std::path::Path;

/// What a dataset says about its clusters besides the images and redshifts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogueColumns {
    /// Identifiers.
    pub id: Option<Vec<String>>,
    /// Right ascension, degrees.
    pub ra: Option<Vec<f64>>,
    /// Declination, degrees.
    pub dec: Option<Vec<f64>>,
    /// 1 if the cutout lies near a tile edge.
    pub near_edge: Option<Vec<bool>>,
    /// Distance of the cutout centre to the nearest tile edge, arcsec.
    pub edge_margin_arcsec: Option<Vec<f64>>,
}

/// One optional array as read.
enum Values {
    Floats(Vec<f64>),
    /// Integers, exactly (64-bit identifiers do not survive a trip through f64).
    Ints(Vec<i128>),
    Strings(Vec<String>),
}

fn read_npy<R: Read>(npy: NpyFile<R>) -> Result<(Vec<u64>, Values)> {
    let shape = npy.shape().to_vec();
    let descr = match npy.dtype() {
        npyz::DType::Plain(t) => t.to_string(),
        other => other.descr(),
    };
    let code = descr.trim_start_matches(['<', '>', '|', '=']);
    macro_rules! int {
        ($t:ty) => {
            Values::Ints(npy.into_vec::<$t>()?.into_iter().map(i128::from).collect())
        };
    }
    let v = match code {
        "u1" => int!(u8),
        "u2" => int!(u16),
        "u4" => int!(u32),
        "u8" => int!(u64),
        "i1" => int!(i8),
        "i2" => int!(i16),
        "i4" => int!(i32),
        "i8" => int!(i64),
        "b1" => int!(bool),
        "f4" => Values::Floats(npy.into_vec::<f32>()?.into_iter().map(f64::from).collect()),
        "f8" => Values::Floats(npy.into_vec::<f64>()?),
        c if c.starts_with('U') || c.starts_with('S') => Values::Strings(npy.into_vec::<String>()?),
        _ => bail!("dtype {descr} is not read (numbers or strings)"),
    };
    Ok((shape, v))
}

/// Read array `key` if present (`Ok(None)` if absent).
fn read(path: &Path, key: &str) -> Result<Option<(Vec<u64>, Values)>> {
    if path.is_dir() || path.extension().is_some_and(|e| e == "npy") {
        let dir = if path.is_dir() {
            path
        } else {
            path.parent().unwrap_or(Path::new("."))
        };
        let p = dir.join(format!("{key}.npy"));
        if !p.exists() {
            return Ok(None);
        }
        let f = std::fs::File::open(&p).with_context(|| format!("reading {}", p.display()))?;
        let npy = NpyFile::new(std::io::BufReader::new(f))?;
        return read_npy(npy).map(Some);
    }
    let mut npz = npyz::npz::NpzArchive::open(path)?;
    let name = npyz::npz::file_name_from_array_name(key);
    let mut entry = match npz.zip_archive().by_name(&name) {
        Ok(e) => e,
        Err(npyz::zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Read the whole entry so that the zip CRC is checked.
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes)?;
    read_npy(NpyFile::new(&bytes[..])?).map(Some)
}

impl CatalogueColumns {
    /// Read the optional arrays of the dataset at `path` holding `n` clusters.
    pub fn read(path: &Path, n: usize) -> Result<Self> {
        let named = |key: &str| format!("dataset {}: array `{key}`", path.display());
        let get = |key: &str| -> Result<Option<Values>> {
            let Some((shape, v)) = read(path, key).with_context(|| named(key))? else {
                return Ok(None);
            };
            ensure!(
                shape.len() == 1 && shape[0] as usize == n,
                "{} has shape {shape:?}; expected [{n}] (one per image)",
                named(key)
            );
            Ok(Some(v))
        };
        let numbers = |key: &str, lo: f64, hi: f64| -> Result<Option<Vec<f64>>> {
            let v = match get(key)? {
                None => return Ok(None),
                Some(Values::Strings(_)) => {
                    bail!("{} holds strings; expected numbers", named(key))
                }
                Some(Values::Ints(v)) => v.into_iter().map(|x| x as f64).collect(),
                Some(Values::Floats(v)) => v,
            };
            if let Some((i, x)) = v
                .iter()
                .enumerate()
                .find(|(_, x)| !(**x >= lo && **x <= hi))
            {
                bail!(
                    "{} has value {x} at index {i}; expected a number in [{lo}, {hi}]",
                    named(key)
                );
            }
            Ok(Some(v))
        };
        let id = match get("id")? {
            None => None,
            Some(Values::Strings(v)) => Some(v),
            Some(Values::Ints(v)) => Some(v.iter().map(i128::to_string).collect()),
            Some(Values::Floats(_)) => {
                bail!("{} holds floats; expected integers or strings", named("id"))
            }
        };
        Ok(Self {
            id,
            ra: numbers("ra", 0.0, 360.0)?,
            dec: numbers("dec", -90.0, 90.0)?,
            near_edge: numbers("near_edge", 0.0, 1.0)?
                .map(|v| v.into_iter().map(|x| x != 0.0).collect()),
            edge_margin_arcsec: numbers("edge_margin_arcsec", f64::NEG_INFINITY, f64::INFINITY)?,
        })
    }
}
