//! Kernels, one op per file. Each file holds the safe scalar reference and the
//! public API; SIMD twins live under [`simd`].

pub mod act;
pub mod args;
pub mod conv2d;
pub mod dense;
mod log1p_table;
pub mod pool;
pub mod preprocess;
pub mod simd;
