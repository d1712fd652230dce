//! Generated models, committed as the reference output of `codegen export` and as the
//! models the firmware examples flash. Nothing here is written by hand except this file and
//! `tests/` (the generated loaders against forged blobs, runnable without the trainer):
//! `cargo run --release -p tests --example regen-models` regenerates `edge/`,
//! `seed_lab/` and `edge_aware/`, and the test suite fails if the committed files differ from a fresh export.
//!
//! - [`edge`]: the `edge` preset trained for 30 epochs (`codegen/tests/fixtures/edge-e30`),
//!   with its three weight blobs ([`blobs`]) and golden samples ([`edge_samples`]).
//! - [`seed_lab`]: the lab report's network (`seed-lab` preset); code only, as its weights
//!   (0.9 MB in f32) are not committed: any `seed-lab` export's blobs fit it.
//! - [`edge_aware`]: the exposure-aware `edge` preset (`aux_inputs = ["exposure_s"]`: `infer`
//!   takes the redshift and the exposure) trained for 30 epochs on exposures of 100 s-30 ks
//!   (`codegen/tests/fixtures/edge-aware-e30`), with its blobs ([`blobs`]) and golden samples
//!   ([`edge_aware_samples`], with their exposures).
#![no_std]

// Generated, formatted by codegen (prettyplease): not rustfmt's to touch.
#[rustfmt::skip]
#[path = "../edge/model.rs"]
pub mod edge;

// Generated, formatted by codegen (prettyplease): not rustfmt's to touch.
#[rustfmt::skip]
#[path = "../edge/samples.rs"]
pub mod edge_samples;

// Generated, formatted by codegen (prettyplease): not rustfmt's to touch.
#[rustfmt::skip]
#[path = "../seed_lab/model.rs"]
pub mod seed_lab;

// Generated, formatted by codegen (prettyplease): not rustfmt's to touch.
#[rustfmt::skip]
#[path = "../edge_aware/model.rs"]
pub mod edge_aware;

// Generated, formatted by codegen (prettyplease): not rustfmt's to touch.
#[rustfmt::skip]
#[path = "../edge_aware/samples.rs"]
pub mod edge_aware_samples;

/// The `edge` weight blobs, embedded and 16-byte aligned for in-place use.
pub mod blobs {
    use runtime::blob::Aligned;

    const F32_LEN: usize = include_bytes!("../edge/model-f32.bin").len();
    const F16_LEN: usize = include_bytes!("../edge/model-f16.bin").len();
    const INT8_LEN: usize = include_bytes!("../edge/model-int8.bin").len();

    /// `edge`, f32.
    pub static EDGE_F32: Aligned<[u8; F32_LEN]> = Aligned(*include_bytes!("../edge/model-f32.bin"));
    /// `edge`, f16 weights.
    pub static EDGE_F16: Aligned<[u8; F16_LEN]> = Aligned(*include_bytes!("../edge/model-f16.bin"));
    /// `edge`, int8.
    pub static EDGE_INT8: Aligned<[u8; INT8_LEN]> =
        Aligned(*include_bytes!("../edge/model-int8.bin"));

    const AWARE_F32_LEN: usize = include_bytes!("../edge_aware/model-f32.bin").len();
    const AWARE_F16_LEN: usize = include_bytes!("../edge_aware/model-f16.bin").len();
    const AWARE_INT8_LEN: usize = include_bytes!("../edge_aware/model-int8.bin").len();

    /// Exposure-aware `edge`, f32.
    pub static EDGE_AWARE_F32: Aligned<[u8; AWARE_F32_LEN]> =
        Aligned(*include_bytes!("../edge_aware/model-f32.bin"));
    /// Exposure-aware `edge`, f16 weights.
    pub static EDGE_AWARE_F16: Aligned<[u8; AWARE_F16_LEN]> =
        Aligned(*include_bytes!("../edge_aware/model-f16.bin"));
    /// Exposure-aware `edge`, int8.
    pub static EDGE_AWARE_INT8: Aligned<[u8; AWARE_INT8_LEN]> =
        Aligned(*include_bytes!("../edge_aware/model-int8.bin"));
}
