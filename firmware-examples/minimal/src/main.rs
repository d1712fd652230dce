//! The smallest firmware that runs the generated `edge` model (the README's "into your own
//! firmware"): load the int8 blob from flash, infer one observation, report, exit.
//! `cargo run --release` builds it for a Cortex-M4F and runs it in QEMU (runner in
//! `.cargo/config.toml`, memory map in `memory.x`, linker script from cortex-m-rt).
//!
//! In your own project, point the `#[path]` below at the `model.rs` that `codegen export`
//! writes and the blob path at its `model-int8.bin`; the rest stays. (The golden sample
//! comes from the `models` crate; yours comes from the detector.)
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
// The generated model, included as a user includes `codegen export`'s model.rs.
#[rustfmt::skip]
#[path = "../../../models/edge/model.rs"]
mod edge;
use runtime::blob::{Aligned, BlobError};
use runtime::{Error, Estimate};

/// The weight blob, read in place from flash (16-byte aligned); its length comes from the
/// file, so a re-export with other weights needs no edit here.
const BLOB_LEN: usize = include_bytes!("../../../models/edge/model-int8.bin").len();
static BLOB: Aligned<[u8; BLOB_LEN]> =
    Aligned(*include_bytes!("../../../models/edge/model-int8.bin"));

/// Why there is no estimate.
enum Failure {
    /// The blob is damaged or belongs to another architecture.
    Blob(BlobError),
    /// The input was refused (wrong length, redshift outside the training range, ...).
    Input(Error),
}

impl From<BlobError> for Failure {
    fn from(e: BlobError) -> Self {
        Failure::Blob(e)
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Input(e)
    }
}

/// One observation: raw counts `[band][y][x]` and the redshift. Here the first golden
/// sample; on a satellite, the event binner's cube.
fn estimate(counts: &[u16], redshift: f32) -> Result<Estimate, Failure> {
    let model = edge::int8::Model::new(&BLOB.0)?; // validates the whole blob once
    let mut arena = [0i8; edge::ARENA_LEN]; // all the activation memory it needs
    let mut scratch = edge::int8::Scratch::new(); // and the convolutions' buffers
    Ok(model.infer(counts, &[redshift], &mut arena, &mut scratch)?)
}

#[entry]
fn main() -> ! {
    let counts = models::edge_samples::counts(0).unwrap_or(&[]);
    let z = models::edge_samples::REDSHIFT[0];
    // `main` never returns (`-> !`), so errors are handled here rather than with `?`.
    let code = match estimate(counts, z) {
        Ok(e) => {
            hprintln!(
                "estimate log_mass_bits={:#010x} sigma_bits={:#010x} log_mass_milli={} sigma_milli={}",
                e.log_mass.to_bits(),
                e.sigma.to_bits(),
                (e.log_mass * 1000.0) as i32,
                (e.sigma * 1000.0) as i32
            );
            debug::EXIT_SUCCESS
        }
        Err(Failure::Blob(e)) => {
            hprintln!("error: {}", e);
            debug::EXIT_FAILURE
        }
        Err(Failure::Input(e)) => {
            hprintln!("error: {}", e);
            debug::EXIT_FAILURE
        }
    };
    debug::exit(code);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
