//! The runtime's one test random-number generator (xorshift64*): deterministic test data
//! without dependencies, shared by every kernel test module.

use std::vec::Vec;

/// xorshift64* (Vigna 2016).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (from the high bits).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 16) % n
    }
    /// Uniform in [-1, 1).
    pub(crate) fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    /// `n` values uniform in [-1, 1).
    pub(crate) fn f32s(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
    /// `n` uniform int8 values (from the high bits).
    pub(crate) fn i8s(&mut self, n: usize) -> Vec<i8> {
        (0..n).map(|_| (self.next() >> 24) as i8).collect()
    }
}

/// `f` once per engine this machine runs ([`engines`](crate::kernels::simd::engines): on x86-64 the reference, AVX2
/// and AVX-512 as far as the CPU has them), in this one process, each checked to be the path
/// the kernels take.
pub(crate) fn on_every_engine(f: impl Fn()) {
    let engines = crate::kernels::simd::engines();
    assert!(
        engines.contains(&crate::kernels::simd::Path::Reference) || !cfg!(target_arch = "x86_64")
    );
    for &p in &engines {
        crate::kernels::simd::with_path(p, || {
            assert_eq!(crate::kernels::simd::active(), p, "engine {p:?} not taken");
            f()
        });
    }
}
