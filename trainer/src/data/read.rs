//! Reading datasets: NPZ archives and directories of `.npy` files, streamed into typed,
//! validated arrays (the images straight into u16, both layouts).

use super::*;

/// A numeric array read from disk, converted to f64 (small arrays only).
#[derive(Default)]
pub(super) struct RawArray {
    pub(super) key: String,
    pub(super) shape: Vec<u64>,
    pub(super) values: Vec<f64>,
}

/// Receives an array's shape, then its values in C order.
pub(super) trait Sink {
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

pub(super) trait Source {
    fn names(&self) -> Vec<String>;
    /// Stream array `key` into `sink`; `Ok(false)` if there is no such array.
    fn read(&mut self, key: &str, sink: &mut dyn Sink) -> Result<bool, Problem>;
    /// Read a 1-D string array (`<U` or `|S`); `Ok(None)` if there is no such array.
    fn read_strings(&mut self, key: &str) -> Result<Option<Vec<String>>, Problem>;
}

pub(super) fn strings_npy<R: Read>(key: &str, npy: NpyFile<R>) -> Result<Vec<String>, Problem> {
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

pub(super) fn read_raw(source: &mut dyn Source, key: &str) -> Result<Option<RawArray>, Problem> {
    let mut raw = RawArray::default();
    Ok(source.read(key, &mut raw)?.then_some(raw))
}

pub(super) struct NpzSource {
    pub(super) npz: NpzArchive<BufReader<File>>,
    /// The archive's size: no entry can declare more than this holds.
    pub(super) len: u64,
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
        let budget = arch::npy::entry_budget(&entry, self.len);
        let npy = arch::npy::open(&mut entry, budget).map_err(|e| corrupt(&e))?;
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
        let budget = arch::npy::entry_budget(&entry, self.len);
        let npy = arch::npy::open(&mut entry, budget).map_err(|e| corrupt(&e))?;
        let v = strings_npy(key, npy)?;
        io::copy(&mut entry, &mut io::sink()).map_err(|e| corrupt(&e))?;
        Ok(Some(v))
    }
}

pub(super) struct DirSource {
    pub(super) dir: PathBuf,
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
        let npy = arch::npy::open(BufReader::new(f), len)
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
        let npy = arch::npy::open(BufReader::new(f), len)
            .map_err(|e| Problem::Corrupt(format!("{}: {e}", p.display())))?;
        strings_npy(key, npy).map(Some)
    }
}

pub(super) fn read_npy<R: Read>(
    key: &str,
    npy: NpyFile<R>,
    sink: &mut dyn Sink,
) -> Result<(), Problem> {
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
pub(super) struct ImageSink {
    pub(super) key: String,
    pub(super) n: usize,
    pub(super) channels_last: bool,
    pub(super) out: Vec<u16>,
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

pub(super) fn floats_1d(key: &str, a: RawArray, n: usize) -> Result<Vec<f32>, Problem> {
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

pub(super) fn floats_1d_f64(key: &str, a: RawArray, n: usize) -> Result<Vec<f64>, Problem> {
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

pub(super) fn check_range(
    key: &str,
    v: &[f32],
    lo: f32,
    hi: f32,
    why: &'static str,
) -> Result<(), Problem> {
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
