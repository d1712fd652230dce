//! The generated `edge` model on the Arm MPS2 AN386 (Cortex-M4F) under QEMU: every golden sample in int8 and f32,
//! compared bit for bit with the host, with instructions and peak stack per inference.
//! `cargo run --release` builds and runs it (runner in `.cargo/config.toml`).
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use firmware_common::mps2::Mps2;

#[entry]
fn main() -> ! {
    firmware_common::run(&mut Mps2::new("mps2-an386", "cortex-m4f"))
}
