//! Writing FITS, atomically: binary tables of typed columns with units, header keywords with
//! comments, HISTORY / COMMENT cards, and 2-D f32 primary images. Everything the project
//! writes as FITS (catalogues of `trainer predict`, simulated event lists, exposure maps and
//! catalogues of `trainer simulate --events`) goes through [`FitsOut`] (or [`Table::write`]
//! for a file of one table), so every such file is complete or absent: it is built in a
//! temporary file next to the target, synced and renamed into place by [`FitsOut::commit`].
//!
//! Values longer than a card holds (68 characters) are written with the FITS long-string
//! convention (`CONTINUE` cards, announced by a `LONGSTRN` keyword), which cfitsio, astropy
//! and fitsverify read back whole; a reader that does not know the convention sees the first
//! 68 characters.
//!
//! ```no_run
//! use trainer::fits_table::{Column, Table};
//! let mut t = Table::new("CATALOG");
//! t.push(Column::f64("RA", vec![150.1, 150.2]).unit("deg"));
//! t.push(Column::string("ID", vec!["a".into(), "b".into()]));
//! t.key_str("ORIGIN", "cluster-mass", "who wrote this");
//! t.write(std::path::Path::new("out.fits"))?;
//! # Ok::<(), anyhow::Error>(())
//! ```

use anyhow::{Context, Result, bail, ensure};
use fitsio::FitsFile;
use fitsio::hdu::FitsHdu;
use fitsio::tables::{ColumnDataType, ColumnDescription};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// The values of one column (one scalar per row).
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    /// `D`: 64-bit floats (NaN is FITS's null for floats).
    F64(Vec<f64>),
    /// `E`: 32-bit floats.
    F32(Vec<f32>),
    /// `J`: 32-bit integers.
    I32(Vec<i32>),
    /// `K`: 64-bit integers.
    I64(Vec<i64>),
    /// `I`: 16-bit integers.
    I16(Vec<i16>),
    /// `B`: unsigned bytes.
    U8(Vec<u8>),
    /// `A`: ASCII strings, as wide as the longest (at least 1). Trailing blanks carry no
    /// meaning in FITS (cfitsio reads an empty string back as one blank).
    Str(Vec<String>),
}

impl ColumnData {
    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            ColumnData::F64(v) => v.len(),
            ColumnData::F32(v) => v.len(),
            ColumnData::I32(v) => v.len(),
            ColumnData::I64(v) => v.len(),
            ColumnData::I16(v) => v.len(),
            ColumnData::U8(v) => v.len(),
            ColumnData::Str(v) => v.len(),
        }
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A named column with an optional unit (`TUNITn`) and description (`TTYPEn` comment).
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// `TTYPEn`.
    pub name: String,
    /// `TUNITn` (FITS unit string, e.g. `deg`, `s`, `log(solMass)`).
    pub unit: Option<String>,
    /// Comment of the `TTYPEn` card.
    pub description: Option<String>,
    /// The values.
    pub data: ColumnData,
}

impl Column {
    fn new(name: &str, data: ColumnData) -> Self {
        Self {
            name: name.into(),
            unit: None,
            description: None,
            data,
        }
    }
    /// A 64-bit float column.
    pub fn f64(name: &str, v: Vec<f64>) -> Self {
        Self::new(name, ColumnData::F64(v))
    }
    /// A 32-bit float column.
    pub fn f32(name: &str, v: Vec<f32>) -> Self {
        Self::new(name, ColumnData::F32(v))
    }
    /// A 32-bit integer column.
    pub fn i32(name: &str, v: Vec<i32>) -> Self {
        Self::new(name, ColumnData::I32(v))
    }
    /// A 64-bit integer column.
    pub fn i64(name: &str, v: Vec<i64>) -> Self {
        Self::new(name, ColumnData::I64(v))
    }
    /// A 16-bit integer column.
    pub fn i16(name: &str, v: Vec<i16>) -> Self {
        Self::new(name, ColumnData::I16(v))
    }
    /// An unsigned byte column.
    pub fn u8(name: &str, v: Vec<u8>) -> Self {
        Self::new(name, ColumnData::U8(v))
    }
    /// A string column.
    pub fn string(name: &str, v: Vec<String>) -> Self {
        Self::new(name, ColumnData::Str(v))
    }
    /// With a unit.
    pub fn unit(mut self, unit: &str) -> Self {
        self.unit = Some(unit.into());
        self
    }
    /// With a description (the comment of its `TTYPEn` card).
    pub fn describe(mut self, text: &str) -> Self {
        self.description = Some(text.into());
        self
    }
}

/// A header keyword value.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyValue {
    /// String (any length: long ones use the long-string convention).
    Str(String),
    /// Float.
    F64(f64),
    /// Integer.
    I64(i64),
    /// Logical.
    Bool(bool),
}

/// One header keyword.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Name (at most 8 characters: A-Z, 0-9, `-`, `_`).
    pub name: String,
    /// Value.
    pub value: KeyValue,
    /// Comment.
    pub comment: String,
}

/// A binary table: columns of equal length plus header cards.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// `EXTNAME` of the extension.
    pub extname: String,
    /// Columns in order.
    pub columns: Vec<Column>,
    /// Keywords, in order, after the column definitions.
    pub keys: Vec<Key>,
    /// `HISTORY` cards (long text is wrapped over several cards).
    pub history: Vec<String>,
    /// `COMMENT` cards (long text is wrapped over several cards).
    pub comments: Vec<String>,
}

impl Key {
    /// A keyword without comment.
    pub fn new(name: &str, value: KeyValue) -> Self {
        Self {
            name: name.into(),
            value,
            comment: String::new(),
        }
    }
    /// A string keyword without comment.
    pub fn str(name: &str, value: &str) -> Self {
        Self::new(name, KeyValue::Str(value.into()))
    }
    /// A float keyword without comment.
    pub fn f64(name: &str, value: f64) -> Self {
        Self::new(name, KeyValue::F64(value))
    }
    /// An integer keyword without comment.
    pub fn i64(name: &str, value: i64) -> Self {
        Self::new(name, KeyValue::I64(value))
    }
}

/// Characters of text per HISTORY / COMMENT card.
const CARD_TEXT: usize = 70;

impl Table {
    /// An empty table named `extname`.
    pub fn new(extname: &str) -> Self {
        Self {
            extname: extname.into(),
            ..Default::default()
        }
    }
    /// Append a column.
    pub fn push(&mut self, c: Column) {
        self.columns.push(c);
    }
    /// Append a keyword.
    pub fn key(&mut self, name: &str, value: KeyValue, comment: &str) {
        self.keys.push(Key {
            name: name.into(),
            value,
            comment: comment.into(),
        });
    }
    /// Append a string keyword.
    pub fn key_str(&mut self, name: &str, value: &str, comment: &str) {
        self.key(name, KeyValue::Str(value.into()), comment);
    }

    /// Number of rows (of the first column; [`Table::write`] checks they agree).
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.data.len())
    }

    fn check(&self) -> Result<()> {
        ensure!(!self.columns.is_empty(), "a FITS table needs a column");
        let n = self.rows();
        for c in &self.columns {
            ensure!(
                c.data.len() == n,
                "column {} has {} rows, column {} has {n}",
                c.name,
                c.data.len(),
                self.columns[0].name
            );
            ensure!(
                !c.name.is_empty() && c.name.is_ascii() && c.name.len() <= 68,
                "column name {:?}: 1-68 ASCII characters",
                c.name
            );
            if let ColumnData::Str(v) = &c.data
                && let Some(s) = v.iter().find(|s| !s.is_ascii() || s.contains('\0'))
            {
                bail!("column {}: value {s:?} is not printable ASCII", c.name);
            }
        }
        check_keys(&self.keys)
    }

    /// Write a file of this one table to `path` (after an empty primary HDU; any existing
    /// file is replaced only once the new one is complete; on error nothing appears at
    /// `path`).
    pub fn write(&self, path: &Path) -> Result<()> {
        self.check()
            .with_context(|| format!("FITS table {}", path.display()))?;
        let mut f = FitsOut::create(path, None)?;
        f.table(self)?;
        f.commit()
    }

    fn write_into(&self, f: &mut FitsFile) -> Result<()> {
        let descriptions = self
            .columns
            .iter()
            .map(|c| {
                let mut d = ColumnDescription::new(c.name.clone());
                match &c.data {
                    ColumnData::F64(_) => d.with_type(ColumnDataType::Double),
                    ColumnData::F32(_) => d.with_type(ColumnDataType::Float),
                    ColumnData::I32(_) => d.with_type(ColumnDataType::Int),
                    ColumnData::I64(_) => d.with_type(ColumnDataType::LongLong),
                    ColumnData::I16(_) => d.with_type(ColumnDataType::Short),
                    ColumnData::U8(_) => d.with_type(ColumnDataType::Byte),
                    ColumnData::Str(v) => d
                        .with_type(ColumnDataType::String)
                        .that_repeats(v.iter().map(String::len).max().unwrap_or(0).max(1)),
                };
                d.create().map_err(fe)
            })
            .collect::<Result<Vec<_>>>()?;
        let hdu = f
            .create_table(self.extname.clone(), &descriptions)
            .map_err(fe)?;
        for c in &self.columns {
            let name = c.name.as_str();
            match &c.data {
                ColumnData::F64(v) => hdu.write_col(f, name, v),
                ColumnData::F32(v) => hdu.write_col(f, name, v),
                ColumnData::I32(v) => hdu.write_col(f, name, v),
                ColumnData::I64(v) => hdu.write_col(f, name, v),
                ColumnData::I16(v) => hdu.write_col(f, name, v),
                ColumnData::U8(v) => hdu.write_col(f, name, v),
                ColumnData::Str(v) => hdu.write_col(f, name, v),
            }
            .map_err(|e| anyhow::anyhow!("column {name}: cfitsio: {e}"))?;
        }
        let mut cards = Cards { f: &mut *f };
        for (i, c) in self.columns.iter().enumerate() {
            if let Some(u) = &c.unit {
                cards.key_str(&format!("TUNIT{}", i + 1), u, "")?;
            }
            if let Some(d) = &c.description {
                cards.modify_comment(&format!("TTYPE{}", i + 1), d)?;
            }
        }
        write_keys(f, &hdu, &self.keys)?;
        let mut cards = Cards { f };
        for h in &self.history {
            for line in wrap(h) {
                cards.history(&line)?;
            }
        }
        for c in &self.comments {
            for line in wrap(c) {
                cards.comment(&line)?;
            }
        }
        Ok(())
    }
}

fn fe(e: fitsio::errors::Error) -> anyhow::Error {
    anyhow::anyhow!("cfitsio: {e}")
}

fn check_keys(keys: &[Key]) -> Result<()> {
    for k in keys {
        let ok = !k.name.is_empty()
            && k.name.len() <= 8
            && k.name
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        ensure!(
            ok,
            "FITS keyword {:?}: 1-8 characters of A-Z 0-9 - _",
            k.name
        );
    }
    Ok(())
}

/// Write `keys` into the current HDU `hdu` of `f`.
fn write_keys(f: &mut FitsFile, hdu: &FitsHdu, keys: &[Key]) -> Result<()> {
    for k in keys {
        let c = k.comment.as_str();
        match &k.value {
            KeyValue::Str(s) => Cards { f: &mut *f }.key_str(&k.name, s, c)?,
            KeyValue::F64(v) => hdu
                .write_key(f, &k.name, (*v, c))
                .map_err(|e| anyhow::anyhow!("keyword {}: cfitsio: {e}", k.name))?,
            KeyValue::I64(v) => hdu
                .write_key(f, &k.name, (*v, c))
                .map_err(|e| anyhow::anyhow!("keyword {}: cfitsio: {e}", k.name))?,
            KeyValue::Bool(b) => Cards { f: &mut *f }.key_bool(&k.name, *b, c)?,
        }
    }
    Ok(())
}

/// A FITS file being written: created as a temporary file next to its target and renamed
/// into place by [`FitsOut::commit`], so an interrupted or failed write leaves nothing at
/// the target (the temporary file is removed when a `FitsOut` is dropped uncommitted).
pub struct FitsOut {
    target: PathBuf,
    tmp: tempfile::TempPath,
    file: FitsFile,
}

impl FitsOut {
    /// Start a file with an empty primary HDU, or with a 2-D f32 primary image of
    /// `nx` x `ny` when `image` is given.
    pub fn create(path: &Path, image: Option<(usize, usize)>) -> Result<Self> {
        let tmp = crate::fsutil::temp_for(path, ".fits")?.into_temp_path();
        let mut builder = FitsFile::create(&tmp).overwrite();
        let dims;
        if let Some((nx, ny)) = image {
            dims = [ny, nx];
            builder = builder.with_custom_primary(&fitsio::images::ImageDescription {
                data_type: fitsio::images::ImageType::Float,
                dimensions: &dims,
            });
        }
        let file = builder
            .open()
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", path.display()))?;
        Ok(Self {
            target: path.to_path_buf(),
            tmp,
            file,
        })
    }

    fn context(&self) -> String {
        format!("writing FITS file {}", self.target.display())
    }

    /// Write keywords into the primary header.
    pub fn primary_keys(&mut self, keys: &[Key]) -> Result<()> {
        let ctx = self.context();
        check_keys(keys).context(ctx.clone())?;
        let hdu = self.file.primary_hdu().map_err(fe).context(ctx.clone())?;
        write_keys(&mut self.file, &hdu, keys).context(ctx)
    }

    /// Write the primary image (row-major, `data[j * nx + i]`).
    pub fn primary_image(&mut self, data: &[f32]) -> Result<()> {
        let ctx = self.context();
        let hdu = self.file.primary_hdu().map_err(fe).context(ctx.clone())?;
        hdu.write_image(&mut self.file, data)
            .map_err(fe)
            .context(ctx)
    }

    /// Append a binary table extension.
    pub fn table(&mut self, t: &Table) -> Result<()> {
        let ctx = format!(
            "writing table {} of FITS file {}",
            t.extname,
            self.target.display()
        );
        t.check().context(ctx.clone())?;
        t.write_into(&mut self.file).context(ctx)
    }

    /// Close the file, sync it and move it into place.
    pub fn commit(self) -> Result<()> {
        let Self { target, tmp, file } = self;
        drop(file); // cfitsio flushes and closes
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", target.display()))?;
        tmp.persist(&target)
            .with_context(|| format!("moving into place {}", target.display()))?;
        Ok(())
    }
}

/// Split text into pieces of at most [`CARD_TEXT`] characters (ASCII), at spaces when possible.
fn wrap(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > CARD_TEXT {
        let cut = rest[..CARD_TEXT]
            .rfind(' ')
            .filter(|&i| i > CARD_TEXT / 2)
            .map_or(CARD_TEXT, |i| i + 1);
        out.push(rest[..cut].to_string());
        rest = &rest[cut..];
    }
    out.push(rest.to_string());
    out
}

/// The header cards fitsio has no safe call for (long strings, logicals, HISTORY, COMMENT,
/// comments of existing cards), through cfitsio's own functions on the open file.
struct Cards<'a> {
    f: &'a mut FitsFile,
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(s).with_context(|| format!("{s:?} holds a NUL byte"))
}

fn status(code: i32, what: &str) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        bail!("cfitsio error {code} writing {what}")
    }
}

impl Cards<'_> {
    /// A string keyword; values over 68 characters use the long-string convention.
    fn key_str(&mut self, name: &str, value: &str, comment: &str) -> Result<()> {
        ensure!(
            value.is_ascii(),
            "keyword {name}: value {value:?} is not ASCII"
        );
        let (n, v, c) = (cstr(name)?, cstr(value)?, cstr(comment)?);
        let mut st = 0;
        // SAFETY: `as_raw` is the pointer of the open file `self.f` borrows mutably for the
        // whole call; the strings are NUL-terminated and outlive it; cfitsio only reads them.
        unsafe {
            let fptr = self.f.as_raw();
            if value.len() > 68 {
                fitsio::sys::ffplsw(fptr, &mut st);
            }
            fitsio::sys::ffpkls(fptr, n.as_ptr(), v.as_ptr(), c.as_ptr(), &mut st);
        }
        status(st, name)
    }

    fn key_bool(&mut self, name: &str, value: bool, comment: &str) -> Result<()> {
        let (n, c) = (cstr(name)?, cstr(comment)?);
        let mut st = 0;
        // SAFETY: as in `key_str`.
        unsafe {
            fitsio::sys::ffpkyl(
                self.f.as_raw(),
                n.as_ptr(),
                i32::from(value),
                c.as_ptr(),
                &mut st,
            );
        }
        status(st, name)
    }

    fn modify_comment(&mut self, name: &str, comment: &str) -> Result<()> {
        let (n, c) = (cstr(name)?, cstr(comment)?);
        let mut st = 0;
        // SAFETY: as in `key_str`.
        unsafe {
            fitsio::sys::ffmcom(self.f.as_raw(), n.as_ptr(), c.as_ptr(), &mut st);
        }
        status(st, name)
    }

    fn history(&mut self, text: &str) -> Result<()> {
        let t = cstr(text)?;
        let mut st = 0;
        // SAFETY: as in `key_str`.
        unsafe {
            fitsio::sys::ffphis(self.f.as_raw(), t.as_ptr(), &mut st);
        }
        status(st, "HISTORY")
    }

    fn comment(&mut self, text: &str) -> Result<()> {
        let t = cstr(text)?;
        let mut st = 0;
        // SAFETY: as in `key_str`.
        unsafe {
            fitsio::sys::ffpcom(self.f.as_raw(), t.as_ptr(), &mut st);
        }
        status(st, "COMMENT")
    }
}

/// The header cards of HDU `hdu` (0 = primary) of a FITS file, as 80-character strings
/// (trailing blanks kept), read straight from the bytes: for tests and tools that check
/// what a header says, long-string `CONTINUE` cards included.
pub fn header_cards(path: &Path, hdu: usize) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut pos = 0;
    for k in 0..=hdu {
        let mut cards = Vec::new();
        let mut naxis = Vec::new();
        let (mut pcount, mut bitpix) = (0usize, 8i64);
        loop {
            let card = bytes
                .get(pos..pos + 80)
                .with_context(|| format!("{}: header {k} is truncated", path.display()))?;
            let card = String::from_utf8_lossy(card).into_owned();
            pos += 80;
            let key = card[..8.min(card.len())].trim_end().to_string();
            let value = || {
                card.get(10..)
                    .unwrap_or("")
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .trim()
            };
            match key.as_str() {
                "END" => break,
                "BITPIX" => bitpix = value().parse().unwrap_or(8),
                "PCOUNT" => pcount = value().parse().unwrap_or(0),
                k if k.starts_with("NAXIS") && k.len() > 5 => {
                    naxis.push(value().parse::<usize>().unwrap_or(0))
                }
                _ => {}
            }
            cards.push(card);
        }
        pos = pos.next_multiple_of(2880);
        if k == hdu {
            return Ok(cards);
        }
        let data = if naxis.is_empty() {
            0
        } else {
            naxis.iter().product::<usize>() * (bitpix.unsigned_abs() as usize / 8) + pcount
        };
        pos += data.next_multiple_of(2880);
    }
    unreachable!("the loop returns at k == hdu")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new("TEST");
        t.push(
            Column::f64("X", vec![1.5, f64::NAN, -2.0])
                .unit("deg")
                .describe("a float"),
        );
        t.push(Column::f32("Y", vec![0.25, 1e-3, 7.0]));
        t.push(Column::i32("N", vec![1, -2, i32::MAX]));
        t.push(Column::i64("L", vec![i64::MIN, 0, 5]));
        t.push(Column::string("S", vec!["abc".into(), String::new(), "x y".into()]).unit(""));
        t.key_str("SHORT", "hello", "a short string");
        t.key_str("LONG", &"0123456789".repeat(15), "a long string");
        t.key("PI", KeyValue::F64(3.25), "a float");
        t.key("ANSWER", KeyValue::I64(42), "an integer");
        t.key("YES", KeyValue::Bool(true), "a logical");
        t.history.push("made by a test ".repeat(10));
        t.comments.push("a comment".into());
        t
    }

    #[test]
    fn columns_units_and_keys_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.fits");
        sample().write(&p).unwrap();
        let mut f = FitsFile::open(&p).unwrap();
        let hdu = f.hdu("TEST").unwrap();
        let x: Vec<f64> = hdu.read_col(&mut f, "X").unwrap();
        assert_eq!(x[0], 1.5);
        assert!(x[1].is_nan());
        assert_eq!(
            hdu.read_col::<f32>(&mut f, "Y").unwrap(),
            vec![0.25, 1e-3, 7.0]
        );
        assert_eq!(
            hdu.read_col::<i32>(&mut f, "N").unwrap(),
            vec![1, -2, i32::MAX]
        );
        assert_eq!(
            hdu.read_col::<i64>(&mut f, "L").unwrap(),
            vec![i64::MIN, 0, 5]
        );
        let s: Vec<String> = hdu.read_col(&mut f, "S").unwrap();
        let s: Vec<&str> = s.iter().map(|v| v.trim_end()).collect();
        assert_eq!(s, vec!["abc", "", "x y"]);
        assert_eq!(hdu.read_key::<String>(&mut f, "TUNIT1").unwrap(), "deg");
        assert_eq!(hdu.read_key::<String>(&mut f, "SHORT").unwrap(), "hello");
        assert_eq!(hdu.read_key::<f64>(&mut f, "PI").unwrap(), 3.25);
        assert_eq!(hdu.read_key::<i64>(&mut f, "ANSWER").unwrap(), 42);
        assert!(hdu.read_key::<bool>(&mut f, "YES").unwrap());
        let cards = header_cards(&p, 1).unwrap();
        let text = cards.join("\n");
        assert!(
            cards
                .iter()
                .any(|c| c.starts_with("TTYPE1  = 'X") && c.contains("a float"))
        );
        assert!(text.contains("LONGSTRN"), "{text}");
        // The long string comes back whole when the CONTINUE cards are joined.
        let long: String = cards
            .iter()
            .skip_while(|c| !c.starts_with("LONG    ="))
            .take_while(|c| c.starts_with("LONG    =") || c.starts_with("CONTINUE"))
            .map(|c| {
                let v = &c[10..];
                let (a, b) = (v.find('\'').unwrap(), v.rfind('\'').unwrap());
                v[a + 1..b].trim_end_matches('&').to_string()
            })
            .collect();
        assert_eq!(long, "0123456789".repeat(15));
        let history: Vec<&String> = cards.iter().filter(|c| c.starts_with("HISTORY")).collect();
        assert!(history.len() >= 2, "wrapped: {history:?}");
        assert!(text.contains("COMMENT a comment"));
    }

    #[test]
    fn bad_tables_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.fits");
        let mut t = sample();
        t.columns[1].data = ColumnData::F32(vec![1.0]);
        let e = format!("{:#}", t.write(&p).unwrap_err());
        assert!(e.contains("rows") && e.contains("t.fits"), "{e}");
        let mut t = sample();
        t.key_str("lower", "x", "");
        assert!(t.write(&p).is_err());
        let mut t = sample();
        t.key_str("BAD", "caf\u{e9}", "");
        assert!(t.write(&p).is_err());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no partial file"
        );
        // An existing file stays as it was when a rewrite fails.
        sample().write(&p).unwrap();
        let before = std::fs::read(&p).unwrap();
        let mut t = sample();
        t.key_str("BAD", "caf\u{e9}", "");
        assert!(t.write(&p).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), before);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
