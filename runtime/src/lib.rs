//! `no_std`, allocation-free inference runtime for the galaxy-cluster mass CNN.
//!
//! This crate is what runs on the satellite or the edge box. It owns the
//! binning of detector events into count cubes ([`events`]), the preprocessing of
//! raw counts (u16 or u8 cubes, [`Count`]) and the fixed-size kernels that a
//! generated model wires together. Everything writes
//! into caller-provided buffers whose sizes are compile-time constants, and
//! nothing in the inference path panics on any input: failures are [`Error`]s.
//!
//! Dependencies are limited to `libm`, `half` and `heapless` by design; the opt-in feature
//! `defmt` adds `defmt::Format` to every public type a firmware logs (errors, estimates,
//! flags, model constants, binner statistics), with the same messages as `Display`.
#![cfg_attr(not(test), no_std)]

pub mod blob;
pub mod detect;
pub mod error;
pub mod events;
pub mod kernels;
pub mod model;
pub mod quant;

#[cfg(test)]
mod testutil;

pub use blob::BlobError;
pub use error::Error;
pub use events::Binner;
/// Re-exported so generated f16 models need no extra dependency.
pub use half;
pub use kernels::preprocess::Count;
pub use model::Estimate;

/// Image side in pixels of the detector cutout the models are trained on.
pub const IMAGE_SIDE: usize = 50;
/// Number of energy bands in the photon-count cube.
pub const BANDS: usize = 10;
/// Number of count values in one observation (bands x side x side), u16 or u8.
pub const CUBE_LEN: usize = BANDS * IMAGE_SIDE * IMAGE_SIDE;
