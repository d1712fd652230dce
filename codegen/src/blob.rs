//! Writes the runtime's weight blob (format and validation live in
//! `runtime::blob`; this side only lays tensors out and seals the checksum).

use runtime::blob::{ALIGN, Dtype, ENTRY_LEN, Elem, HEADER_LEN, MAGIC, VERSION, blob_crc};

/// One tensor to store.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    /// f32 values.
    F32(Vec<f32>),
    /// f16 values.
    F16(Vec<half::f16>),
    /// i8 values.
    I8(Vec<i8>),
    /// i32 values.
    I32(Vec<i32>),
}

impl Tensor {
    /// Element type.
    pub fn elem(&self) -> Elem {
        match self {
            Tensor::F32(_) => Elem::F32,
            Tensor::F16(_) => Elem::F16,
            Tensor::I8(_) => Elem::I8,
            Tensor::I32(_) => Elem::I32,
        }
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Tensor::F32(v) => v.len(),
            Tensor::F16(v) => v.len(),
            Tensor::I8(v) => v.len(),
            Tensor::I32(v) => v.len(),
        }
    }
    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn bytes(&self) -> Vec<u8> {
        match self {
            Tensor::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Tensor::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Tensor::I8(v) => v.iter().map(|x| *x as u8).collect(),
            Tensor::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

/// Serialise tensors into a blob for `dtype` and architecture `arch_hash`.
pub fn write(dtype: Dtype, arch_hash: u64, tensors: &[Tensor]) -> Vec<u8> {
    let table_end = HEADER_LEN + tensors.len() * ENTRY_LEN;
    let mut out = vec![0u8; table_end.next_multiple_of(ALIGN)];
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6] = dtype as u8;
    out[8..16].copy_from_slice(&arch_hash.to_le_bytes());
    out[16..20].copy_from_slice(&(tensors.len() as u32).to_le_bytes());
    for (i, t) in tensors.iter().enumerate() {
        let off = out.len();
        let e = HEADER_LEN + i * ENTRY_LEN;
        out[e..e + 4].copy_from_slice(&(off as u32).to_le_bytes());
        out[e + 4..e + 8].copy_from_slice(&(t.len() as u32).to_le_bytes());
        out[e + 8] = t.elem() as u8;
        out.extend(t.bytes());
        out.resize(out.len().next_multiple_of(ALIGN), 0);
    }
    let total = out.len() as u32;
    out[20..24].copy_from_slice(&total.to_le_bytes());
    let crc = blob_crc(&out);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::blob::{Blob, BlobError};

    /// Bytes at a 16-byte-aligned address, as the generated code stores a blob.
    #[repr(C, align(16))]
    struct Aligned([u8; 4096]);

    fn aligned(bytes: &[u8]) -> Box<Aligned> {
        let mut a = Box::new(Aligned([0; 4096]));
        a.0[..bytes.len()].copy_from_slice(bytes);
        a
    }

    fn sample() -> (Vec<Tensor>, Vec<(Elem, usize)>) {
        let t = vec![
            Tensor::I8((0..37).map(|i| (i * 7 % 256) as u8 as i8).collect()),
            Tensor::I32(vec![-5, 7, i32::MAX]),
            Tensor::F32(vec![0.5, -1.25]),
            Tensor::F16(vec![half::f16::from_f32(3.5); 5]),
        ];
        let e = t.iter().map(|t| (t.elem(), t.len())).collect();
        (t, e)
    }

    #[test]
    fn round_trip() {
        let (t, e) = sample();
        let bytes = write(Dtype::Int8, 42, &t);
        let a = aligned(&bytes);
        let b = Blob::parse(&a.0[..bytes.len()], Dtype::Int8, 42, &e).unwrap();
        assert_eq!(Tensor::I8(b.i8(0).unwrap().to_vec()), t[0]);
        assert_eq!(Tensor::I32(b.i32(1).unwrap().to_vec()), t[1]);
        assert_eq!(Tensor::F32(b.f32(2).unwrap().to_vec()), t[2]);
        assert_eq!(Tensor::F16(b.f16(3).unwrap().to_vec()), t[3]);
        assert!(b.f32(0).is_none() && b.i8(9).is_none());
    }

    #[test]
    fn every_kind_of_damage_is_a_typed_error() {
        let (t, e) = sample();
        let bytes = write(Dtype::Int8, 42, &t);
        let parse = |b: &[u8]| {
            let a = aligned(b);
            Blob::parse(&a.0[..b.len()], Dtype::Int8, 42, &e).map(|_| ())
        };
        assert_eq!(parse(&bytes[..10]), Err(BlobError::Truncated));
        assert_eq!(parse(&bytes[..bytes.len() - 1]), Err(BlobError::Truncated));
        let mut m = bytes.clone();
        m[0] = b'X';
        assert_eq!(parse(&m), Err(BlobError::BadMagic));
        let mut m = bytes.clone();
        m[4] = 9;
        assert_eq!(parse(&m), Err(BlobError::UnsupportedVersion(9)));
        let a = aligned(&bytes);
        assert_eq!(
            Blob::parse(&a.0[..bytes.len()], Dtype::F32, 42, &e).err(),
            Some(BlobError::WrongDtype)
        );
        assert_eq!(
            Blob::parse(&a.0[..bytes.len()], Dtype::Int8, 43, &e).err(),
            Some(BlobError::WrongArchitecture)
        );
        assert_eq!(
            Blob::parse(&a.0[..bytes.len()], Dtype::Int8, 42, &e[..3]).err(),
            Some(BlobError::WrongTensor { index: 3 })
        );
        let mut e2 = e.clone();
        e2[1].1 = 4;
        assert_eq!(
            Blob::parse(&a.0[..bytes.len()], Dtype::Int8, 42, &e2).err(),
            Some(BlobError::WrongTensor { index: 1 })
        );
        // Misaligned in memory.
        let mut shifted = vec![0u8; bytes.len() + 1];
        shifted[1..].copy_from_slice(&bytes);
        let s = aligned(&shifted);
        assert_eq!(
            Blob::parse(&s.0[1..1 + bytes.len()], Dtype::Int8, 42, &e).err(),
            Some(BlobError::Misaligned)
        );
        // Every single flipped byte is caught (checksum or a header check), never a panic.
        // (After the canonical-layout tests below, which forge with a valid checksum.)
        for i in 0..bytes.len() {
            let mut m = bytes.clone();
            m[i] ^= 0x5a;
            assert!(parse(&m).is_err(), "flip at {i} accepted");
        }
    }

    /// Seal a tampered blob with a valid checksum, so only the layout checks can refuse it.
    fn sealed(mut b: Vec<u8>) -> Vec<u8> {
        let crc = blob_crc(&b);
        b[24..28].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// With a matching CRC, reserved bytes, padding, trailing bytes and overlapping or
    /// misplaced tensors are still refused: the layout is the one `write` produces, only.
    #[test]
    fn non_canonical_layouts_are_refused_despite_a_valid_checksum() {
        let (t, e) = sample();
        let bytes = write(Dtype::Int8, 42, &t);
        let parse = |b: &[u8]| {
            let a = aligned(b);
            Blob::parse(&a.0[..b.len()], Dtype::Int8, 42, &e).map(|_| ())
        };
        assert_eq!(parse(&sealed(bytes.clone())), Ok(()));
        let entry = |i: usize| HEADER_LEN + i * ENTRY_LEN;
        // Reserved header bytes, reserved table bytes, padding after tensor 0 (37 bytes).
        let pad0 =
            u32::from_le_bytes(bytes[entry(0)..entry(0) + 4].try_into().unwrap()) as usize + 37;
        for pos in [
            7,
            28,
            31,
            entry(0) + 9,
            entry(3) + 15,
            pad0,
            bytes.len() - 1,
        ] {
            let mut b = bytes.clone();
            b[pos] = 0x80;
            assert_eq!(parse(&sealed(b)), Err(BlobError::Reserved), "byte {pos}");
        }
        // Tensor 2 at tensor 1's offset (overlap); tensor 1 moved past its boundary (gap).
        let mut b = bytes.clone();
        let off1: [u8; 4] = b[entry(1)..entry(1) + 4].try_into().unwrap();
        b[entry(2)..entry(2) + 4].copy_from_slice(&off1);
        assert_eq!(parse(&sealed(b)), Err(BlobError::BadOffset { index: 2 }));
        let mut b = bytes.clone();
        let moved = u32::from_le_bytes(off1) + 16;
        b[entry(1)..entry(1) + 4].copy_from_slice(&moved.to_le_bytes());
        assert_eq!(parse(&sealed(b)), Err(BlobError::BadOffset { index: 1 }));
        // Tensors in another order than the table's.
        let mut b = bytes.clone();
        let (o2, o3) = (
            b[entry(2)..entry(2) + 4].to_vec(),
            b[entry(3)..entry(3) + 4].to_vec(),
        );
        b[entry(2)..entry(2) + 4].copy_from_slice(&o3);
        b[entry(3)..entry(3) + 4].copy_from_slice(&o2);
        assert_eq!(parse(&sealed(b)), Err(BlobError::BadOffset { index: 2 }));
        // Bytes after the declared end; a declared end past the last tensor's padding.
        let mut b = bytes.clone();
        b.extend([0u8; 16]);
        assert_eq!(parse(&b), Err(BlobError::TrailingBytes));
        let len = b.len() as u32;
        b[20..24].copy_from_slice(&len.to_le_bytes());
        assert_eq!(parse(&sealed(b)), Err(BlobError::TrailingBytes));
    }
}
