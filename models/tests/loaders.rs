//! The committed generated loaders (`models/edge`) against forged blobs and hostile inputs
//! (issue 18, items 5 and 6): a blob whose CRC matches but whose values the kernels cannot
//! use is refused with a typed error, a redshift outside the model's training range is
//! refused, and no `Ok` estimate is ever NaN or infinite.
//!
//! Forged blobs are the committed ones with bytes changed and the CRC sealed again, so only
//! the check under test stands between them and the kernels. These tests need neither the
//! trainer nor codegen: `cargo test --release -p models`.

use models::blobs::{EDGE_F16, EDGE_F32, EDGE_INT8};
use models::edge;
use runtime::blob::{Aligned, BlobError, ENTRY_LEN, HEADER_LEN, blob_crc};
use runtime::model::Flags;
use runtime::{Error, Estimate};

/// A copy of `bytes` at a 16-byte-aligned address, as firmware stores a blob.
fn aligned(bytes: &[u8]) -> Box<Aligned<[u8; 1 << 17]>> {
    let mut a = Box::new(Aligned([0u8; 1 << 17]));
    a.0[..bytes.len()].copy_from_slice(bytes);
    a
}

/// Recompute the CRC after tampering, so the forged blob passes the checksum.
fn seal(b: &mut [u8]) {
    let crc = blob_crc(b);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
}

fn u32_at(b: &[u8], o: usize) -> usize {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize
}

/// Byte offset of element `j` of tensor `t` (element size `size`).
fn at(b: &[u8], t: usize, j: usize, size: usize) -> usize {
    let e = HEADER_LEN + t * ENTRY_LEN;
    assert!(j < u32_at(b, e + 4), "tensor {t} has no element {j}");
    u32_at(b, e) + j * size
}

/// `blob` with element `j` of tensor `t` replaced by `value` (little-endian bytes), sealed.
fn forge(blob: &[u8], t: usize, j: usize, value: &[u8]) -> Vec<u8> {
    let mut b = blob.to_vec();
    let o = at(&b, t, j, value.len());
    b[o..o + value.len()].copy_from_slice(value);
    seal(&mut b);
    b
}

fn f32_model(b: &[u8]) -> Result<(), BlobError> {
    edge::f32::Model::new(&aligned(b).0[..b.len()]).map(|_| ())
}
fn f16_model(b: &[u8]) -> Result<(), BlobError> {
    edge::f16::Model::new(&aligned(b).0[..b.len()]).map(|_| ())
}
fn int8_model(b: &[u8]) -> Result<(), BlobError> {
    edge::int8::Model::new(&aligned(b).0[..b.len()]).map(|_| ())
}

/// A plausible cluster: a few counts everywhere, a bright centre.
fn counts() -> Vec<u16> {
    (0..edge::INPUT_LEN)
        .map(|i| {
            let (y, x) = ((i / edge::WIDTH) % edge::HEIGHT, i % edge::WIDTH);
            let r2 = (y as i32 - 25).pow(2) + (x as i32 - 25).pow(2);
            (1 + 40 / (1 + r2)) as u16
        })
        .collect()
}

fn finite(e: Estimate) -> bool {
    e.log_mass.is_finite() && e.sigma.is_finite()
}

#[test]
fn committed_blobs_load() {
    assert_eq!(f32_model(&EDGE_F32.0), Ok(()));
    assert_eq!(f16_model(&EDGE_F16.0), Ok(()));
    assert_eq!(int8_model(&EDGE_INT8.0), Ok(()));
}

/// A NaN or infinite f32/f16 weight or bias made every estimate NaN: refused at load.
#[test]
fn non_finite_float_weights_are_refused() {
    // f32 tensors: 1 conv weight, 2 conv bias, ..., 9 head weight, 10 head bias.
    for (t, v) in [
        (1, f32::NAN),
        (2, f32::INFINITY),
        (7, f32::NEG_INFINITY),
        (10, f32::NAN),
    ] {
        let b = forge(&EDGE_F32.0, t, 0, &v.to_le_bytes());
        assert_eq!(f32_model(&b), Err(BlobError::BadValue { index: t }), "{t}");
    }
    // f16 weights (odd tensors), f32 biases (even ones).
    for (t, bits) in [(1, 0x7e00u16), (5, 0x7c00), (9, 0xfc00)] {
        let b = forge(&EDGE_F16.0, t, 3, &bits.to_le_bytes());
        assert_eq!(f16_model(&b), Err(BlobError::BadValue { index: t }), "{t}");
    }
    let b = forge(&EDGE_F16.0, 4, 0, &f32::NAN.to_le_bytes());
    assert_eq!(f16_model(&b), Err(BlobError::BadValue { index: 4 }));
}

/// An int8 bias of i32::MAX wrapped the accumulator (log mass 67,472): refused, in the
/// head and in hidden layers, as is a requantisation whose left shift overflows.
#[test]
fn int8_accumulators_that_could_wrap_are_refused() {
    // int8 tensors: per layer weight, bias, requant +, requant -; head 17 weight, 18 bias.
    // Each value leaves less than taps x 128 x 255 (the largest sum of products) of room
    // before i32 wraps.
    for t in [2, 6, 10, 14, 18] {
        for v in [i32::MAX, i32::MIN, i32::MAX - 1000, i32::MIN + 1000] {
            let b = forge(&EDGE_INT8.0, t, 0, &v.to_le_bytes());
            assert_eq!(
                int8_model(&b),
                Err(BlobError::BadValue { index: t }),
                "{t}: {v}"
            );
        }
    }
    // A valid-looking encoding (mantissa in [2^30, 2^31)) with a left shift of 30: any
    // accumulator above 1 overflows when shifted. Reported at the layer's bias.
    let mut b = EDGE_INT8.0.to_vec();
    let o = at(&b, 3, 0, 4);
    b[o..o + 4].copy_from_slice(&(1i32 << 30).to_le_bytes());
    b[o + 4..o + 8].copy_from_slice(&30i32.to_le_bytes());
    seal(&mut b);
    assert_eq!(int8_model(&b), Err(BlobError::BadValue { index: 2 }));
}

/// Constants that are finite but absurd (a band scale of 1e30, a redshift range beyond
/// z = 20 or inverted) are refused.
#[test]
fn absurd_constants_are_refused() {
    let bands = edge::BANDS;
    // Tensor 0: band scales, z shift, z scale, sigma floor, kind, value, z min, z max.
    for (j, v) in [
        (0, 1e30f32),
        (bands, 1e30),
        (bands + 1, -1e30),
        (bands + 2, 1e6),
        (bands + 5, -1.0),
        (bands + 5, 2.0),
        (bands + 6, 1e30),
        (bands + 6, f32::NAN),
    ] {
        for blob in [&EDGE_F32.0[..], &EDGE_INT8.0[..]] {
            let b = forge(blob, 0, j, &v.to_le_bytes());
            let got = if blob.len() == EDGE_F32.0.len() {
                f32_model(&b)
            } else {
                int8_model(&b)
            };
            assert_eq!(got, Err(BlobError::BadValue { index: 0 }), "{j}: {v}");
        }
    }
}

/// Overlapping tensors, non-zero reserved or padding bytes and trailing bytes passed when
/// the CRC matched: each is refused.
#[test]
fn malformed_layouts_are_refused() {
    let good = EDGE_F32.0.to_vec();
    // Tensor 2 pointing into tensor 1 (same offset): overlap.
    let mut b = good.clone();
    let e1 = HEADER_LEN + ENTRY_LEN;
    let off1 = b[e1..e1 + 4].to_vec();
    b[e1 + ENTRY_LEN..e1 + ENTRY_LEN + 4].copy_from_slice(&off1);
    seal(&mut b);
    assert_eq!(f32_model(&b), Err(BlobError::BadOffset { index: 2 }));
    // Tensor 1 moved 16 bytes later (a gap, overlapping tensor 2's start).
    let mut b = good.clone();
    let moved = (u32_at(&b, e1) + 16) as u32;
    b[e1..e1 + 4].copy_from_slice(&moved.to_le_bytes());
    seal(&mut b);
    assert_eq!(f32_model(&b), Err(BlobError::BadOffset { index: 1 }));
    // Reserved bytes: header byte 7, bytes 28..32, a table entry's 7 reserved bytes.
    for pos in [7, 28, 31, HEADER_LEN + 9, HEADER_LEN + 3 * ENTRY_LEN + 15] {
        let mut b = good.clone();
        b[pos] = 1;
        seal(&mut b);
        assert_eq!(f32_model(&b), Err(BlobError::Reserved), "byte {pos}");
    }
    // Padding after tensor 0 (its f32 values end 4 bytes past a 16-byte boundary).
    let mut b = good.clone();
    let e0_end = u32_at(&b, HEADER_LEN) + 4 * u32_at(&b, HEADER_LEN + 4);
    assert!(
        !e0_end.is_multiple_of(16),
        "tensor 0 ends on a boundary: no padding to test"
    );
    b[e0_end] = 0xff;
    seal(&mut b);
    assert_eq!(f32_model(&b), Err(BlobError::Reserved));
    // Trailing bytes: after the declared end, or inside it after the last tensor.
    let mut b = good.clone();
    b.extend([0u8; 16]);
    assert_eq!(f32_model(&b), Err(BlobError::TrailingBytes));
    let mut b = good.clone();
    b.extend([0u8; 16]);
    let len = b.len() as u32;
    b[20..24].copy_from_slice(&len.to_le_bytes());
    seal(&mut b);
    assert_eq!(f32_model(&b), Err(BlobError::TrailingBytes));
}

/// The redshift range recorded by the export: the simulation's (0.05-1.3, the trainer's
/// default population, see README).
#[test]
fn the_training_redshift_range_is_recorded() {
    let m = edge::int8::Model::new(&EDGE_INT8.0).unwrap();
    assert_eq!(m.meta().z_range, [0.05, 1.3]);
    let m = edge::f32::Model::new(&EDGE_F32.0).unwrap();
    assert_eq!(m.meta().z_range, [0.05, 1.3]);
}

/// z = 100 gave log mass -10.6 (f32), 1e30 gave -2.5e29, f32::MAX NaN, and int8 13.69 for
/// every z >= 20; z = 5 a confident 15.09 +/- 0.03 with no warning (issue 14). Now a
/// redshift beyond MAX_REDSHIFT (20) or negative or not finite is refused in every dtype,
/// and one inside [0, 20] but outside the training range gives an estimate flagged
/// `REDSHIFT_OUTSIDE_TRAINING`.
#[test]
fn redshifts_outside_the_training_range_are_flagged_and_invalid_ones_refused() {
    let c = counts();
    let f32m = edge::f32::Model::new(&EDGE_F32.0).unwrap();
    let f16m = edge::f16::Model::new(&EDGE_F16.0).unwrap();
    let int8m = edge::int8::Model::new(&EDGE_INT8.0).unwrap();
    let mut af = Box::new([0.0f32; edge::ARENA_LEN]);
    let mut sf = Box::new(edge::f32::Scratch::new());
    let mut ai = Box::new([0i8; edge::ARENA_LEN]);
    let mut si = Box::new(edge::int8::Scratch::new());
    let bad = Err(Error::BadScalar { index: 0 });
    for z in [
        100.0,
        1e30,
        f32::MAX,
        25.0,
        -0.1,
        -1e30,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ] {
        assert_eq!(f32m.infer(&c, &[z], &mut af, &mut sf), bad, "f32, z = {z}");
        assert_eq!(f16m.infer(&c, &[z], &mut af, &mut sf), bad, "f16, z = {z}");
        assert_eq!(
            int8m.infer(&c, &[z], &mut ai, &mut si),
            bad,
            "int8, z = {z}"
        );
    }
    for z in [20.0, 5.0, 1.31, 0.049, 0.0] {
        for e in [
            f32m.infer(&c, &[z], &mut af, &mut sf).unwrap(),
            f16m.infer(&c, &[z], &mut af, &mut sf).unwrap(),
            int8m.infer(&c, &[z], &mut ai, &mut si).unwrap(),
        ] {
            assert_eq!(e.flags, Flags::REDSHIFT_OUTSIDE_TRAINING, "z = {z}: {e:?}");
        }
    }
    // Inside, both ends included: a finite, plausible cluster mass and no flag.
    for z in [0.05, 0.3, 1.3] {
        for e in [
            f32m.infer(&c, &[z], &mut af, &mut sf).unwrap(),
            f16m.infer(&c, &[z], &mut af, &mut sf).unwrap(),
            int8m.infer(&c, &[z], &mut ai, &mut si).unwrap(),
        ] {
            assert!(
                finite(e) && (12.0..16.5).contains(&e.log_mass) && e.flags.is_empty(),
                "z = {z}: {e:?}"
            );
        }
    }
}

/// An all-zero cube and a saturated one (a pixel at 65535) give flagged estimates in every
/// dtype (the empty one also too few counts for a detection), with the same numbers as
/// without the flag check (flags never change the value).
#[test]
fn empty_and_saturated_cubes_are_flagged() {
    let f32m = edge::f32::Model::new(&EDGE_F32.0).unwrap();
    let int8m = edge::int8::Model::new(&EDGE_INT8.0).unwrap();
    let mut af = Box::new([0.0f32; edge::ARENA_LEN]);
    let mut sf = Box::new(edge::f32::Scratch::new());
    let mut ai = Box::new([0i8; edge::ARENA_LEN]);
    let mut si = Box::new(edge::int8::Scratch::new());
    let empty = vec![0u16; edge::INPUT_LEN];
    let mut sat = counts();
    sat[1234] = u16::MAX;
    // An empty cube has no detection either (`few_counts`); the saturated pixel is in band
    // 0, outside the detection's soft bands, and the sample is bright.
    let none = Flags::EMPTY_CUBE | Flags::FEW_COUNTS;
    for (c, want) in [(&empty, none), (&sat, Flags::SATURATED)] {
        assert_eq!(f32m.infer(c, &[0.3], &mut af, &mut sf).unwrap().flags, want);
        assert_eq!(
            int8m.infer(c, &[0.3], &mut ai, &mut si).unwrap().flags,
            want
        );
        assert_eq!(
            int8m.infer(c, &[5.0], &mut ai, &mut si).unwrap().flags,
            want | Flags::REDSHIFT_OUTSIDE_TRAINING
        );
    }
    let mut near = counts();
    near[1234] = u16::MAX - 1;
    assert!(
        f32m.infer(&near, &[0.3], &mut af, &mut sf)
            .unwrap()
            .flags
            .is_empty()
    );
}

/// Finite weights can still overflow f32: the result is an error, never `Ok(inf)` or
/// `Ok(NaN)`.
#[test]
fn no_ok_estimate_is_non_finite() {
    let c = counts();
    let mut af = Box::new([0.0f32; edge::ARENA_LEN]);
    let mut sf = Box::new(edge::f32::Scratch::new());
    // f32: every weight of the hidden dense layer (tensor 7) at 3e38.
    let mut b = EDGE_F32.0.to_vec();
    let n = u32_at(&b, HEADER_LEN + 7 * ENTRY_LEN + 4);
    for j in 0..n {
        let o = at(&b, 7, j, 4);
        b[o..o + 4].copy_from_slice(&3e38f32.to_le_bytes());
    }
    seal(&mut b);
    let a = aligned(&b);
    let m = edge::f32::Model::new(&a.0[..b.len()]).unwrap();
    assert_eq!(m.infer(&c, &[0.3], &mut af, &mut sf), Err(Error::NonFinite));
    // int8: the head's output scale (tensor 19) at f32::MAX.
    let mut ai = Box::new([0i8; edge::ARENA_LEN]);
    let mut si = Box::new(edge::int8::Scratch::new());
    let b = forge(&EDGE_INT8.0, 19, 0, &f32::MAX.to_le_bytes());
    let a = aligned(&b);
    let m = edge::int8::Model::new(&a.0[..b.len()]).unwrap();
    assert_eq!(m.infer(&c, &[0.3], &mut ai, &mut si), Err(Error::NonFinite));
}

/// The committed golden vectors still hold with the range check in place (their clusters
/// lie inside the training range): int8 bit for bit, f32 and f16 within 1e-4 dex.
#[test]
fn golden_vectors_are_reproduced() {
    use models::edge_samples as s;
    let f32m = edge::f32::Model::new(&EDGE_F32.0).unwrap();
    let f16m = edge::f16::Model::new(&EDGE_F16.0).unwrap();
    let int8m = edge::int8::Model::new(&EDGE_INT8.0).unwrap();
    let mut af = Box::new([0.0f32; edge::ARENA_LEN]);
    let mut sf = Box::new(edge::f32::Scratch::new());
    let mut ai = Box::new([0i8; edge::ARENA_LEN]);
    let mut si = Box::new(edge::int8::Scratch::new());
    let bits = |e: Estimate| [e.log_mass.to_bits(), e.sigma.to_bits()];
    for i in 0..s::N {
        let c = s::counts(i).unwrap();
        let z = s::SCALARS[i];
        assert_eq!(
            bits(int8m.infer(c, &z, &mut ai, &mut si).unwrap()),
            s::INT8[i],
            "int8 {i}"
        );
        for (e, want) in [
            (f32m.infer(c, &z, &mut af, &mut sf).unwrap(), s::F32[i]),
            (f16m.infer(c, &z, &mut af, &mut sf).unwrap(), s::F16[i]),
        ] {
            let d = (e.log_mass - f32::from_bits(want[0])).abs();
            assert!(d < 1e-4, "cluster {i}: {e:?} vs {want:?}");
        }
    }
}
