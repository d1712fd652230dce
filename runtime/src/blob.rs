//! The weight blob: one contiguous, 16-byte-aligned byte string that can live in
//! flash and be used in place. The loader validates everything before handing
//! out a single slice: magic, version, dtype, the architecture hash, the tensor
//! table (count, element types, sizes, alignment, bounds) and a CRC-32 of the
//! whole blob, so a truncated, corrupted or foreign blob is a typed error.
//!
//! Layout (little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `CMW1` |
//! | 4 | 2 | format version (1) |
//! | 6 | 1 | dtype of the model ([`Dtype`]) |
//! | 7 | 1 | reserved, 0 |
//! | 8 | 8 | architecture hash (FNV-1a 64 of the layer description) |
//! | 16 | 4 | number of tensors `n` |
//! | 20 | 4 | total blob length in bytes |
//! | 24 | 4 | CRC-32 (IEEE) of the blob with this field zeroed |
//! | 28 | 4 | reserved, 0 |
//! | 32 | 16 n | table: offset u32, length in elements u32, element type u8, 7 reserved bytes |
//! | ... | | tensors, each at a 16-byte-aligned offset |
//!
//! The layout is canonical, and nothing else is accepted: tensors follow the table in table
//! order, each at the first 16-byte boundary after the previous one ends (so none overlaps
//! another or the table), the blob ends at the first 16-byte boundary after the last one
//! (and the byte string handed to the loader ends there too: no trailing bytes), and every
//! reserved and padding byte is zero. A blob is then fully determined by its tensors, which
//! is what `codegen`'s writer produces.

use core::fmt;

/// Magic bytes.
pub const MAGIC: [u8; 4] = *b"CMW1";
/// Format version.
pub const VERSION: u16 = 1;
/// Header size before the table.
pub const HEADER_LEN: usize = 32;
/// Size of one table entry.
pub const ENTRY_LEN: usize = 16;
/// Alignment of every tensor (and of the blob itself).
pub const ALIGN: usize = 16;

/// Numeric format of a model.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Dtype {
    /// f32 weights.
    F32 = 0,
    /// f16 weights, f32 arithmetic.
    F16 = 1,
    /// int8 weights and activations.
    Int8 = 2,
}

/// Element type of one tensor.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Elem {
    /// f32.
    F32 = 0,
    /// f16.
    F16 = 1,
    /// i8.
    I8 = 2,
    /// i32 (biases, requantisation multipliers and shifts).
    I32 = 3,
}

impl Elem {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Elem::F32 | Elem::I32 => 4,
            Elem::F16 => 2,
            Elem::I8 => 1,
        }
    }
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => Elem::F32,
            1 => Elem::F16,
            2 => Elem::I8,
            3 => Elem::I32,
            _ => return None,
        })
    }
}

/// Why a blob was refused.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobError {
    /// Shorter than its header, table or declared length.
    Truncated,
    /// Not a weight blob.
    BadMagic,
    /// A format version this runtime does not read.
    UnsupportedVersion(u16),
    /// The blob holds another dtype than the model expects.
    WrongDtype,
    /// The blob belongs to another architecture.
    WrongArchitecture,
    /// The CRC does not match: corrupted bytes.
    Checksum,
    /// The tensor table disagrees with the model (count, type or size of tensor `index`).
    WrongTensor {
        /// Tensor index.
        index: usize,
    },
    /// A tensor lies outside the blob or is not aligned.
    BadOffset {
        /// Tensor index.
        index: usize,
    },
    /// The blob does not start on a 16-byte boundary in memory.
    Misaligned,
    /// Tensor `index` holds a value the model cannot use (NaN, a negative scale, a bias
    /// that could overflow the int8 accumulator, ...).
    BadValue {
        /// Tensor index.
        index: usize,
    },
    /// A reserved or padding byte is not zero.
    Reserved,
    /// Bytes follow the blob's declared end (or precede it inside the blob after the last
    /// tensor's padding).
    TrailingBytes,
}

/// A byte string aligned for [`Blob::parse`], for blobs embedded in firmware, e.g.
/// `static MODEL: Aligned<[u8; N]> = Aligned(*include_bytes!("model-int8.bin"));`
///
/// ```
/// use runtime::blob::Aligned;
/// static BYTES: Aligned<[u8; 5]> = Aligned(*b"bytes");
/// assert_eq!(BYTES.0.as_ptr() as usize % 16, 0);
/// ```
#[derive(Debug)]
#[repr(C, align(16))]
pub struct Aligned<T: ?Sized>(pub T);

/// A `core::error::Error` (no_std), for `?` into host error types.
impl core::error::Error for BlobError {}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobError::Truncated => f.write_str("weight blob is truncated"),
            BlobError::BadMagic => f.write_str("not a weight blob (bad magic)"),
            BlobError::UnsupportedVersion(v) => write!(
                f,
                "weight blob version {v} is not supported (expected {VERSION})"
            ),
            BlobError::WrongDtype => f.write_str("weight blob has another dtype than the model"),
            BlobError::WrongArchitecture => {
                f.write_str("weight blob belongs to another architecture")
            }
            BlobError::Checksum => f.write_str("weight blob checksum mismatch (corrupted)"),
            BlobError::WrongTensor { index } => {
                write!(f, "weight blob tensor {index} does not match the model")
            }
            BlobError::BadOffset { index } => write!(
                f,
                "weight blob tensor {index} is out of bounds or misaligned"
            ),
            BlobError::Misaligned => f.write_str("weight blob is not 16-byte aligned in memory"),
            BlobError::BadValue { index } => {
                write!(f, "weight blob tensor {index} holds an unusable value")
            }
            BlobError::Reserved => {
                f.write_str("weight blob has a non-zero reserved or padding byte")
            }
            BlobError::TrailingBytes => f.write_str("weight blob has bytes after its last tensor"),
        }
    }
}

/// The same messages as [`Display`](fmt::Display), for a firmware's defmt log.
#[cfg(feature = "defmt")]
impl defmt::Format for BlobError {
    fn format(&self, f: defmt::Formatter<'_>) {
        match self {
            BlobError::Truncated => defmt::write!(f, "weight blob is truncated"),
            BlobError::BadMagic => defmt::write!(f, "not a weight blob (bad magic)"),
            BlobError::UnsupportedVersion(v) => defmt::write!(
                f,
                "weight blob version {=u16} is not supported (expected {=u16})",
                v,
                VERSION
            ),
            BlobError::WrongDtype => {
                defmt::write!(f, "weight blob has another dtype than the model")
            }
            BlobError::WrongArchitecture => {
                defmt::write!(f, "weight blob belongs to another architecture")
            }
            BlobError::Checksum => defmt::write!(f, "weight blob checksum mismatch (corrupted)"),
            BlobError::WrongTensor { index } => defmt::write!(
                f,
                "weight blob tensor {=usize} does not match the model",
                index
            ),
            BlobError::BadOffset { index } => defmt::write!(
                f,
                "weight blob tensor {=usize} is out of bounds or misaligned",
                index
            ),
            BlobError::Misaligned => {
                defmt::write!(f, "weight blob is not 16-byte aligned in memory")
            }
            BlobError::BadValue { index } => defmt::write!(
                f,
                "weight blob tensor {=usize} holds an unusable value",
                index
            ),
            BlobError::Reserved => {
                defmt::write!(f, "weight blob has a non-zero reserved or padding byte")
            }
            BlobError::TrailingBytes => {
                defmt::write!(f, "weight blob has bytes after its last tensor")
            }
        }
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib), table built at compile time.
pub const fn crc32_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc32_table();

/// CRC-32 of `bytes`, treating bytes 24..28 (the checksum field) as zero.
pub fn blob_crc(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for (i, &b) in bytes.iter().enumerate() {
        let b = if (24..28).contains(&i) { 0 } else { b };
        c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// FNV-1a 64 of a byte string (architecture fingerprints).
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

/// What a blob says about itself, checked for integrity (magic, version, length,
/// CRC, table bounds and alignment) but not against any particular model.
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Dtype byte ([`Dtype`] as u8).
    pub dtype: u8,
    /// Architecture hash.
    pub arch_hash: u64,
    /// Number of tensors.
    pub tensors: usize,
    /// Total length in bytes.
    pub len: usize,
}

impl Header {
    /// Check a blob's integrity without knowing the model (tools, `codegen inspect`):
    /// magic, version, length (exactly `bytes.len()`), CRC, reserved bytes, and a canonical
    /// tensor table (see the module documentation).
    pub fn read(bytes: &[u8]) -> Result<Self, BlobError> {
        if bytes.len() < HEADER_LEN {
            return Err(BlobError::Truncated);
        }
        if bytes[0..4] != MAGIC {
            return Err(BlobError::BadMagic);
        }
        let version = u16_at(bytes, 4);
        if version != VERSION {
            return Err(BlobError::UnsupportedVersion(version));
        }
        let len = u32_at(bytes, 20) as usize;
        if bytes.len() < len || len < HEADER_LEN {
            return Err(BlobError::Truncated);
        }
        if bytes.len() > len {
            return Err(BlobError::TrailingBytes);
        }
        if blob_crc(bytes) != u32_at(bytes, 24) {
            return Err(BlobError::Checksum);
        }
        if bytes[7] != 0 || u32_at(bytes, 28) != 0 {
            return Err(BlobError::Reserved);
        }
        let tensors = u32_at(bytes, 16) as usize;
        let table_end = tensors
            .checked_mul(ENTRY_LEN)
            .and_then(|t| t.checked_add(HEADER_LEN))
            .ok_or(BlobError::Truncated)?;
        if table_end > len {
            return Err(BlobError::Truncated);
        }
        // Where the next tensor must start: the first aligned byte after the previous
        // region (the table, then each tensor); everything in between is zero padding.
        let mut cursor = table_end;
        let zeros = |from: usize, to: usize| bytes[from..to].iter().all(|b| *b == 0);
        for index in 0..tensors {
            let e = HEADER_LEN + index * ENTRY_LEN;
            let (off, count) = (u32_at(bytes, e) as usize, u32_at(bytes, e + 4) as usize);
            let elem = Elem::from_u8(bytes[e + 8]).ok_or(BlobError::WrongTensor { index })?;
            if !zeros(e + 9, e + ENTRY_LEN) {
                return Err(BlobError::Reserved);
            }
            let start = cursor.next_multiple_of(ALIGN);
            let end = count
                .checked_mul(elem.size())
                .and_then(|b| off.checked_add(b));
            let Some(end) = end.filter(|end| off == start && *end <= len) else {
                return Err(BlobError::BadOffset { index });
            };
            if !zeros(cursor, start) {
                return Err(BlobError::Reserved);
            }
            cursor = end;
        }
        let last = cursor.next_multiple_of(ALIGN);
        if last > len {
            return Err(BlobError::Truncated);
        }
        if !zeros(cursor, last) {
            return Err(BlobError::Reserved);
        }
        if last != len {
            return Err(BlobError::TrailingBytes);
        }
        let arch_hash = u64::from_le_bytes([
            bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
        ]);
        Ok(Self {
            dtype: bytes[6],
            arch_hash,
            tensors,
            len,
        })
    }

    /// Element type and length of tensor `index` of a blob this header was read from.
    pub fn entry(bytes: &[u8], index: usize) -> Option<(Elem, usize)> {
        let e = HEADER_LEN + index * ENTRY_LEN;
        if e + ENTRY_LEN > bytes.len() {
            return None;
        }
        Some((Elem::from_u8(bytes[e + 8])?, u32_at(bytes, e + 4) as usize))
    }
}

/// A validated blob: tensor `i` can be borrowed as its element type.
#[derive(Debug, Clone, Copy)]
pub struct Blob<'a> {
    bytes: &'a [u8],
    n: usize,
}

impl<'a> Blob<'a> {
    /// Validate `bytes` against the model's dtype, architecture hash and expected
    /// tensors `(element type, length in elements)`.
    pub fn parse(
        bytes: &'a [u8],
        dtype: Dtype,
        arch_hash: u64,
        expected: &[(Elem, usize)],
    ) -> Result<Self, BlobError> {
        // Integrity first (magic, version, length, CRC, reserved bytes, canonical table) ...
        let h = Header::read(bytes)?;
        // ... then whether it is this model's blob.
        if h.dtype != dtype as u8 {
            return Err(BlobError::WrongDtype);
        }
        if h.arch_hash != arch_hash {
            return Err(BlobError::WrongArchitecture);
        }
        if h.tensors != expected.len() {
            return Err(BlobError::WrongTensor {
                index: h.tensors.min(expected.len()),
            });
        }
        if !(bytes.as_ptr() as usize).is_multiple_of(ALIGN) {
            return Err(BlobError::Misaligned);
        }
        for (index, &want) in expected.iter().enumerate() {
            if Header::entry(bytes, index) != Some(want) {
                return Err(BlobError::WrongTensor { index });
            }
        }
        Ok(Self {
            bytes,
            n: h.tensors,
        })
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.n
    }

    /// True when the blob holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn raw(&self, index: usize, elem: Elem) -> Option<&'a [u8]> {
        if index >= self.n {
            return None;
        }
        let e = HEADER_LEN + index * ENTRY_LEN;
        if Elem::from_u8(self.bytes[e + 8]) != Some(elem) {
            return None;
        }
        let (off, count) = (
            u32_at(self.bytes, e) as usize,
            u32_at(self.bytes, e + 4) as usize,
        );
        self.bytes.get(off..off + count * elem.size())
    }

    /// Tensor `index` as i8 (None if the index or type is wrong; `parse` rules that out).
    pub fn i8(&self, index: usize) -> Option<&'a [i8]> {
        let raw = self.raw(index, Elem::I8)?;
        // SAFETY: i8 and u8 have the same size, alignment and validity (every bit pattern).
        Some(unsafe { core::slice::from_raw_parts(raw.as_ptr().cast::<i8>(), raw.len()) })
    }

    /// Tensor `index` as i32.
    pub fn i32(&self, index: usize) -> Option<&'a [i32]> {
        let raw = self.raw(index, Elem::I32)?;
        // SAFETY: `parse` checked the blob start and every tensor offset are 16-byte aligned, so
        // the pointer is 4-byte aligned; the length is a whole number of elements; every bit
        // pattern is a valid i32; the data is little-endian as on every supported target
        // (checked at compile time below).
        Some(unsafe { core::slice::from_raw_parts(raw.as_ptr().cast::<i32>(), raw.len() / 4) })
    }

    /// Tensor `index` as f32.
    pub fn f32(&self, index: usize) -> Option<&'a [f32]> {
        let raw = self.raw(index, Elem::F32)?;
        // SAFETY: as for `i32`: aligned, whole elements, any bit pattern is a valid f32.
        Some(unsafe { core::slice::from_raw_parts(raw.as_ptr().cast::<f32>(), raw.len() / 4) })
    }

    /// Tensor `index` as f32 if every value is finite (weights and biases of a float model:
    /// one NaN or infinity would make every estimate NaN).
    pub fn finite_f32(&self, index: usize) -> Option<&'a [f32]> {
        self.f32(index).filter(|v| v.iter().all(|x| x.is_finite()))
    }

    /// Tensor `index` as f16 if every value is finite.
    pub fn finite_f16(&self, index: usize) -> Option<&'a [half::f16]> {
        self.f16(index).filter(|v| v.iter().all(|x| x.is_finite()))
    }

    /// Tensor `index` (i32 pairs: multiplier, shift) as requantisation parameters.
    pub fn requant(&self, index: usize) -> Option<&'a [crate::quant::Requant]> {
        let raw = self.i32(index)?;
        if !raw.len().is_multiple_of(2) {
            return None;
        }
        // SAFETY: `Requant` is `repr(C)` with two i32 fields (size 8, alignment 4, no padding,
        // every bit pattern valid); `raw` is an aligned i32 slice of even length.
        Some(unsafe {
            core::slice::from_raw_parts(raw.as_ptr().cast::<crate::quant::Requant>(), raw.len() / 2)
        })
    }

    /// Tensor `index` as f16.
    pub fn f16(&self, index: usize) -> Option<&'a [half::f16]> {
        let raw = self.raw(index, Elem::F16)?;
        // SAFETY: aligned (16-byte offsets), whole elements, `half::f16` is a transparent u16
        // and every bit pattern is a valid f16.
        Some(unsafe {
            core::slice::from_raw_parts(raw.as_ptr().cast::<half::f16>(), raw.len() / 2)
        })
    }
}

/// Borrow little-endian u16 values stored in a byte string in place (e.g. sample count
/// cubes embedded in firmware); `None` unless `bytes` is 2-byte aligned with an even length.
pub fn as_u16(bytes: &[u8]) -> Option<&[u16]> {
    if !bytes.len().is_multiple_of(2) || !(bytes.as_ptr() as usize).is_multiple_of(2) {
        return None;
    }
    // SAFETY: aligned for u16 (checked), whole elements (checked), every bit pattern is a valid
    // u16, and the target is little-endian (checked at compile time below).
    Some(unsafe { core::slice::from_raw_parts(bytes.as_ptr().cast::<u16>(), bytes.len() / 2) })
}

const _: () = assert!(
    cfg!(target_endian = "little"),
    "weight blobs are little-endian"
);

#[cfg(test)]
mod tests {
    use super::*;

    /// zlib's CRC-32 of "123456789" is 0xCBF43926 (the standard check value).
    #[test]
    fn crc_check_value() {
        let mut c = !0u32;
        for &b in b"123456789" {
            c = CRC_TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
        }
        assert_eq!(!c, 0xCBF4_3926);
    }

    /// FNV-1a 64 test vectors (Fowler/Noll/Vo reference): "" and "a".
    #[test]
    fn fnv_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
