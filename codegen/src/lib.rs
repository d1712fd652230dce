//! Host-side code generator for the cluster-mass CNN.
//!
//! It owns the framework-neutral architecture description ([`arch`]) and the
//! arithmetic every later stage needs (output shapes, multiply-accumulate counts,
//! parameter counts, receptive fields); loads a trained run's export and folds it
//! for inference ([`model`]); interprets the folded network in f32, f16 and int8
//! with the runtime kernels' exact semantics ([`interp`]); calibrates and
//! quantises it ([`quantize`]); sizes it per dtype ([`report`]); and writes the
//! runtime's weight blobs ([`blob`]) and reads them back for the host ([`load`]). Networks trained elsewhere (Keras, PyTorch) come in
//! through ONNX ([`onnx`]) onto the same description.

pub mod arch;
pub mod blob;
pub mod emit;
pub mod export;
pub mod interp;
pub mod load;
pub mod model;
pub mod npy;
pub mod onnx;
pub mod plan;
pub mod quantize;
pub mod report;

#[cfg(test)]
mod testutil;
