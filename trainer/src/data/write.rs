//! Writing datasets: a streaming NPZ writer that fills a temporary file and renames it into
//! place when complete, so an existing dataset is never half-overwritten.

use super::*;

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
