//! Host-side code generator for the cluster-mass CNN.
//!
//! It builds on the shared contract in the `arch` crate (the architecture description, a
//! trained run's export loaded and folded for inference, the reference interpreters, an
//! export read back), re-exported here under the names it had in this crate ([`arch`],
//! [`model`], [`interp`], [`load`], [`npy`]). On top of it, codegen calibrates and
//! quantises a folded network ([`quantize`]); sizes it per dtype ([`report`]); plans its
//! memory ([`plan`]); writes the runtime's weight blobs ([`blob`]) and the generated code
//! ([`emit`], [`export`]). Networks trained elsewhere (Keras, PyTorch) come in through ONNX
//! ([`onnx`]) onto the same description.

pub use arch;
pub use arch::{interp, load, model, npy};

pub mod blob;
pub mod emit;
pub mod export;
pub mod onnx;
pub mod plan;
pub mod quantize;
pub mod report;

#[cfg(test)]
mod blob_roundtrip;
#[cfg(test)]
use arch::testutil;
