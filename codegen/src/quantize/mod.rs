//! Post-training int8 quantisation (TFLite / CMSIS-NN scheme) of a
//! [`FoldedModel`](crate::model::FoldedModel), in three parts:
//!
//! - calibration (`calibration.rs`): [`calibrate`] runs the f32 interpreter over calibration
//!   inputs, histograms every activation tensor and chooses each one's range
//!   ([`RangeMethod`]; default: minimum squared error), [`ActivationStats`] gathers the
//!   histograms in parallel;
//! - the int8 graph (`arch::quant`, re-exported here): [`QuantModel`] and its ops ([`QOp`],
//!   [`QConv`], [`QDense`], [`QHead`], [`QLeaky`]), what the int8 interpreter and code
//!   generation read and what `arch::load` decodes from a blob;
//! - quantisation (`scheme.rs`): [`quantize`] derives the int8 parameters of activations,
//!   weights, biases and requantisation from a [`Calibration`], and [`correct_head_bias`]
//!   removes the mean int8 - f32 offset of the head's outputs.
//!
//! Why the ranges are chosen by minimum squared error, and what int8 costs the `edge` model
//! and where (measured with `codegen/examples/int8_study.rs`): `docs/quantization.md`.

mod calibration;
#[cfg(test)]
mod s8_kernels;
mod scheme;

pub use arch::quant::{HeadOutput, QConv, QDense, QHead, QLeaky, QOp, QuantModel};
pub use calibration::{
    ActivationStats, Calibration, RangeMethod, calibrate, calibrate_preprocessed, calibrate_with,
};
pub use scheme::{correct_head_bias, quantize};
