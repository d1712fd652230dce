//! Any bytes as a weight blob for the generated `edge` loaders (f32, f16, int8), and,
//! when a loader accepts them, one inference: a typed error or a finite estimate,
//! never a panic, never an out-of-bounds read. Each input is tried as it is and with
//! its CRC recomputed, so that mutations reach the checks behind the checksum (tensor
//! table, layout, constants, weight values, accumulator bounds) and the kernels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use models::edge;
use runtime::blob::{Aligned, HEADER_LEN, blob_crc};

fn counts() -> Vec<u16> {
    (0..edge::INPUT_LEN).map(|i| (i % 7) as u16).collect()
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 1 << 17 {
        return;
    }
    let mut a = Box::new(Aligned([0u8; 1 << 17]));
    a.0[..data.len()].copy_from_slice(data);
    try_all(&a.0[..data.len()]);
    if data.len() >= HEADER_LEN {
        let crc = blob_crc(&a.0[..data.len()]);
        a.0[24..28].copy_from_slice(&crc.to_le_bytes());
        try_all(&a.0[..data.len()]);
    }
});

fn try_all(b: &[u8]) {
    let c = counts();
    if let Ok(m) = edge::f32::Model::new(b) {
        let mut arena = Box::new([0.0f32; edge::ARENA_LEN]);
        let mut scratch = Box::new(edge::f32::Scratch::new());
        if let Ok(e) = m.infer(&c, &[0.3], &mut arena, &mut scratch) {
            assert!(e.log_mass.is_finite() && e.sigma.is_finite());
        }
    }
    if let Ok(m) = edge::f16::Model::new(b) {
        let mut arena = Box::new([0.0f32; edge::ARENA_LEN]);
        let mut scratch = Box::new(edge::f16::Scratch::new());
        if let Ok(e) = m.infer(&c, &[0.3], &mut arena, &mut scratch) {
            assert!(e.log_mass.is_finite() && e.sigma.is_finite());
        }
    }
    if let Ok(m) = edge::int8::Model::new(b) {
        let mut arena = Box::new([0i8; edge::ARENA_LEN]);
        let mut scratch = Box::new(edge::int8::Scratch::new());
        if let Ok(e) = m.infer(&c, &[0.3], &mut arena, &mut scratch) {
            assert!(e.log_mass.is_finite() && e.sigma.is_finite());
        }
    }
}
