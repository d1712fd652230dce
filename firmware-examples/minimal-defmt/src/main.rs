//! The `minimal` example (the README's "into your own firmware") logging with defmt: the
//! estimate and the runtime's errors go out as defmt frames, a few bytes each, and are
//! decoded on the host against the ELF, which keeps the message text out of flash. The
//! runtime's feature `defmt` gives its public types (`Estimate`, `Flags`, `Error`,
//! `BlobError`, the model constants, ...) `defmt::Format`, with the same messages as their
//! `Display`.
//!
//! `cargo run --release | defmt-print -e ../target/thumbv7em-none-eabihf/release/minimal-defmt`
//! builds it for a Cortex-M4F, runs it in QEMU and prints
//!
//! ```text
//! INFO estimate Estimate { log_mass: 14.2..., sigma: 0.1..., flags: none }
//! WARN refused: Input(scalar input 0 (the redshift) is not finite or not in [0, 20])
//! WARN refused: Blob(weight blob is truncated)
//! ```
//!
//! The transport is semihosting (QEMU, or a board under a debugger); on a real board use
//! `defmt-rtt` and `probe-rs run`, which flashes, runs and decodes (`.cargo/config.toml`).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use cortex_m_semihosting::debug;
// The global logger: defmt frames on the semihosting stdout (on a real board, `defmt_rtt`).
use defmt_semihosting as _;
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

/// Why there is no estimate; logged with the runtime's own message.
#[derive(defmt::Format)]
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

/// One observation: raw counts `[band][y][x]` and the redshift, with the weight blob `blob`.
fn estimate(blob: &[u8], counts: &[u16], redshift: f32) -> Result<Estimate, Failure> {
    let model = edge::int8::Model::new(blob)?; // validates the whole blob once
    let mut arena = [0i8; edge::ARENA_LEN]; // all the activation memory it needs
    let mut scratch = edge::int8::Scratch::new(); // and the convolutions' buffers
    Ok(model.infer(counts, &[redshift], &mut arena, &mut scratch)?)
}

#[entry]
fn main() -> ! {
    let counts = models::edge_samples::counts(0).unwrap_or(&[]);
    let z = models::edge_samples::REDSHIFT[0];
    let mut ok = match estimate(&BLOB.0, counts, z) {
        Ok(e) => {
            defmt::info!("estimate {}", e);
            true
        }
        Err(f) => {
            defmt::error!("no estimate: {}", f);
            false
        }
    };
    // How refusals read in the log: an input the model cannot take, a damaged blob.
    let refused = [
        estimate(&BLOB.0, counts, f32::NAN),
        estimate(&BLOB.0[..BLOB_LEN - 16], counts, z),
    ];
    for r in refused {
        match r {
            Err(f) => defmt::warn!("refused: {}", f),
            Ok(e) => {
                defmt::error!("accepted what it must refuse: {}", e);
                ok = false;
            }
        }
    }
    debug::exit(if ok {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    defmt::error!("panicked");
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
