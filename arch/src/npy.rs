//! A guard in front of npyz for NPY headers that come from users.
//!
//! npyz parses the header (a Python dict literal) with a backtracking parser
//! whose time doubles with every level of bracket nesting (22 levels in a
//! 128-byte file took over a minute), and it believes the declared shape: a
//! reader that sizes its buffer from that shape allocates whatever a forged
//! header asks for. [`open`] reads the header itself first and refuses, with
//! an `InvalidData` error, a header longer than [`MAX_HEADER`], nested deeper
//! than [`MAX_NESTING`], or declaring more data (in checked arithmetic) than
//! the bytes the file has; only then does npyz see it.

use npyz::NpyFile;
use std::io::{self, Chain, Cursor, Read};

/// The longest header accepted (numpy writes a few hundred bytes; format 1.0
/// cannot exceed 65,535).
pub const MAX_HEADER: usize = 1 << 16;

/// The deepest bracket nesting accepted in a header (a structured dtype with
/// sub-array fields needs 4: `{ [ ( (`).
pub const MAX_NESTING: usize = 8;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The reader npyz gets after [`open`]: the header bytes already read, then the rest.
pub type Guarded<R> = Chain<Cursor<Vec<u8>>, R>;

/// Open an NPY stream of `available` bytes in all (the file's size, or a zip
/// entry's [`entry_budget`]) after checking its header.
pub fn open<R: Read>(mut r: R, available: u64) -> io::Result<NpyFile<Guarded<R>>> {
    let mut prefix = vec![0u8; 10];
    r.read_exact(&mut prefix[..8])
        .map_err(|e| invalid(format!("NPY header: {e}")))?;
    if &prefix[..6] != MAGIC {
        return Err(invalid("not an NPY array (no \\x93NUMPY magic)".into()));
    }
    let len = match prefix[6] {
        1 => {
            r.read_exact(&mut prefix[8..10])
                .map_err(|e| invalid(format!("NPY header: {e}")))?;
            u16::from_le_bytes([prefix[8], prefix[9]]) as usize
        }
        2 | 3 => {
            prefix.resize(12, 0);
            r.read_exact(&mut prefix[8..12])
                .map_err(|e| invalid(format!("NPY header: {e}")))?;
            u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize
        }
        v => return Err(invalid(format!("NPY format version {v} is not 1, 2 or 3"))),
    };
    if len > MAX_HEADER {
        return Err(invalid(format!(
            "NPY header of {len} bytes (at most {MAX_HEADER} accepted)"
        )));
    }
    let start = prefix.len();
    prefix.resize(start + len, 0);
    r.read_exact(&mut prefix[start..])
        .map_err(|e| invalid(format!("NPY header ({len} bytes declared): {e}")))?;
    let header = String::from_utf8_lossy(&prefix[start..]);
    check_nesting(&header)?;
    if let Some(records) = declared_records(&header)? {
        // The element size comes from npyz below; bound the count by one byte per record here.
        let data = available.saturating_sub(prefix.len() as u64);
        if records > data {
            return Err(invalid(format!(
                "NPY header declares {records} values but only {data} bytes of data follow (forged or truncated)"
            )));
        }
    }
    let header_len = prefix.len() as u64;
    let npy = NpyFile::new(Cursor::new(prefix).chain(r))?;
    let records: u64 = npy
        .shape()
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| invalid(format!("NPY shape {:?} overflows", npy.shape())))?;
    let item = npy.dtype().num_bytes().unwrap_or(1) as u64;
    let need = records
        .checked_mul(item)
        .ok_or_else(|| invalid(format!("NPY shape {:?} overflows", npy.shape())))?;
    let data = available.saturating_sub(header_len);
    if need > data {
        return Err(invalid(format!(
            "NPY header declares shape {:?} of {} ({need} bytes) but only {data} bytes of data follow (forged or truncated)",
            npy.shape(),
            npy.dtype().descr()
        )));
    }
    Ok(npy)
}

/// Refuse brackets nested deeper than [`MAX_NESTING`] (outside quoted strings).
fn check_nesting(header: &str) -> io::Result<()> {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    for c in header.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '(' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | ')' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_NESTING {
        return Err(invalid(format!(
            "NPY header nests brackets {deepest} deep (at most {MAX_NESTING} accepted)"
        )));
    }
    Ok(())
}

/// The product of the header's `'shape': (...)` tuple in checked arithmetic, if the
/// tuple reads as plain integers (anything else is left to npyz's parser).
fn declared_records(header: &str) -> io::Result<Option<u64>> {
    let Some(at) = header.find("'shape'").or_else(|| header.find("\"shape\"")) else {
        return Ok(None);
    };
    let rest = &header[at + 7..];
    let Some(open) = rest.find('(') else {
        return Ok(None);
    };
    let Some(close) = rest[open..].find(')') else {
        return Ok(None);
    };
    let mut n = 1u64;
    for part in rest[open + 1..open + close].split(',') {
        let part = part.trim().trim_end_matches('L');
        if part.is_empty() {
            continue;
        }
        let Ok(d) = part.parse::<u64>() else {
            return Ok(None);
        };
        n = n.checked_mul(d).ok_or_else(|| {
            invalid(format!(
                "NPY shape ({}) overflows 64 bits",
                &rest[open + 1..open + close]
            ))
        })?;
    }
    Ok(Some(n))
}

/// The most bytes a zip entry can hold: its declared size, but never more than its
/// stored bytes could expand to (deflate expands at most 1032-fold), nor stored
/// bytes beyond the archive's `archive_len`.
pub fn entry_budget(entry: &npyz::zip::read::ZipFile<'_>, archive_len: u64) -> u64 {
    let stored = entry.compressed_size().min(archive_len);
    let expand = match entry.compression() {
        npyz::zip::CompressionMethod::Stored => stored,
        _ => stored.saturating_mul(1032),
    };
    entry.size().min(expand)
}

/// Open array `key` of an NPZ archive of `archive_len` bytes through [`open`];
/// `Ok(None)` if there is no such array.
pub fn npz_array<'a, R: Read + io::Seek>(
    npz: &'a mut npyz::npz::NpzArchive<R>,
    key: &str,
    archive_len: u64,
) -> io::Result<Option<NpyFile<Guarded<npyz::zip::read::ZipFile<'a>>>>> {
    let name = npyz::npz::file_name_from_array_name(key);
    let entry = match npz.zip_archive().by_name(&name) {
        Ok(e) => e,
        Err(npyz::zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(npyz::zip::result::ZipError::Io(e)) => return Err(e),
        Err(e) => return Err(invalid(e.to_string())),
    };
    let budget = entry_budget(&entry, archive_len);
    open(entry, budget).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use npyz::WriterBuilder;

    fn npy_bytes(header: &str) -> Vec<u8> {
        let mut h = header.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut b = MAGIC.to_vec();
        b.extend([1, 0]);
        b.extend((h.len() as u16).to_le_bytes());
        b.extend(h.as_bytes());
        b
    }

    #[test]
    fn a_numpy_written_array_passes_and_reads_back() {
        let mut buf = Vec::new();
        let mut w = npyz::WriteOptions::<f32>::new()
            .default_dtype()
            .shape(&[3, 2])
            .writer(&mut buf)
            .begin_nd()
            .unwrap();
        w.extend([1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        w.finish().unwrap();
        let n = buf.len() as u64;
        let npy = open(buf.as_slice(), n).unwrap();
        assert_eq!(npy.shape(), &[3, 2]);
        assert_eq!(
            npy.into_vec::<f32>().unwrap(),
            [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }

    #[test]
    fn deep_nesting_is_refused_at_once() {
        // 22 levels took npyz over a minute; the guard answers before npyz sees it.
        let descr = format!("{}'<f4'{}", "[".repeat(22), "]".repeat(22));
        let b = npy_bytes(&format!(
            "{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}"
        ));
        let e = open(b.as_slice(), b.len() as u64).err().unwrap();
        assert!(e.to_string().contains("nests brackets 23 deep"), "{e}");
    }

    #[test]
    fn a_shape_larger_than_the_file_is_refused_before_allocating() {
        for shape in ["(40000000, 10, 50, 50)", "(18446744073709551615,)"] {
            let b = npy_bytes(&format!(
                "{{'descr': '<u2', 'fortran_order': False, 'shape': {shape}, }}"
            ));
            let e = open(b.as_slice(), b.len() as u64).err().unwrap();
            assert!(
                e.to_string().contains("bytes of data follow"),
                "{shape}: {e}"
            );
        }
        let b = npy_bytes(
            "{'descr': '<u2', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
        );
        let e = open(b.as_slice(), b.len() as u64).err().unwrap();
        assert!(e.to_string().contains("overflows 64 bits"), "{e}");
    }

    #[test]
    fn the_element_size_counts() {
        // 4 values of f8 need 32 bytes; 16 bytes follow.
        let mut b = npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4,), }");
        b.extend([0u8; 16]);
        let e = open(b.as_slice(), b.len() as u64).err().unwrap();
        assert!(e.to_string().contains("32 bytes"), "{e}");
    }

    #[test]
    fn an_oversized_header_or_bad_magic_is_refused() {
        let mut b = MAGIC.to_vec();
        b.extend([2, 0]);
        b.extend((u32::MAX).to_le_bytes());
        let e = open(b.as_slice(), u64::MAX).err().unwrap();
        assert!(e.to_string().contains("at most 65536"), "{e}");
        let e = open(&b"PK\x03\x04 not an npy"[..], 20).err().unwrap();
        assert!(e.to_string().contains("magic"), "{e}");
    }
}
