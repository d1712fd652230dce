//! Kernels, one op per file. Each file holds the safe scalar reference and the
//! public API; SIMD twins live under `arch/` once they exist.

pub mod act;
pub mod conv2d;
pub mod dense;
pub mod pool;
pub mod preprocess;
