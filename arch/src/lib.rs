//! The contract between the cluster-mass CNN's crates: what `trainer` writes and `codegen`,
//! `trainer predict` and the tests read, with no training framework, ONNX importer or code
//! emitter behind it.
//!
//! - The architecture description ([`Layer`], [`Shape`]) and the arithmetic every later
//!   stage needs ([`analyze`]: output shapes, multiply-accumulate counts, parameter counts,
//!   receptive fields), and the input every model reads ([`INPUT`]).
//! - A trained run's framework-neutral export ([`model`]: `model.json` and
//!   `model.safetensors`, whose tensors [`tensors`] writes and reads), validated and folded
//!   for inference.
//! - The reference interpreters of the folded network in f32 and f16 ([`interp`]) and of its
//!   int8 form ([`quant`]), with the runtime kernels' exact semantics.
//! - An export read back ([`load`]: the architecture description `model-arch.json`, the
//!   architecture hash, weight blobs decoded for the interpreters, the training range).
//! - NPY headers from users, guarded before npyz parses them ([`npy`]).
//!
//! `codegen` builds on it (calibration and quantisation, blobs, generated code, ONNX
//! import, reports) and re-exports these modules under the names they had there.

mod input;
mod layers;

pub mod interp;
pub mod load;
pub mod model;
pub mod npy;
pub mod quant;
pub mod tensors;

#[cfg(any(test, feature = "testutil"))]
#[doc(hidden)]
pub mod testutil;

pub use input::{IMAGE_LEN, INPUT, NBANDS, NPIX};
pub use layers::{
    ArchError, Layer, LayerStats, MAX_ACTIVATION, MAX_CHANNELS, MAX_PARAMS, MAX_SCALARS,
    MAX_WINDOW, Padding, PoolKind, Shape, analyze,
};
