//! The generated `edge` model (int8) on QEMU's RISC-V `virt` board (rv32imac: no FPU, so the
//! few float operations of the int8 model are soft-float): every golden sample compared bit
//! for bit with the host, with instructions and peak stack per inference.
//! `cargo run --release` builds and runs it (runner in `.cargo/config.toml`).
//!
//! Board support: output on the 16550 UART at 0x1000_0000, exit through the SiFive test
//! device at 0x10_0000 (0x5555 = pass, `(code << 16) | 0x3333` = fail with exit code `code`),
//! and the CLINT's `mtime` as the instruction clock: 10 MHz, so with `-icount shift=0`
//! (1 instruction = 1 ns) one tick is 100 instructions. The hart's own retired-instruction
//! counter (`minstret`) is read as well, as an exact cross-check.
#![no_std]
#![no_main]

use core::arch::asm;
use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::ptr;

use firmware_common::Board;

/// 16550 UART: transmit holding register (offset 0) and line status register (offset 5).
const UART: usize = 0x1000_0000;
const UART_LSR: usize = UART + 5;
/// LSR bit 5: transmit holding register empty.
const LSR_THRE: u8 = 1 << 5;
/// SiFive test device ("finisher").
const TEST: usize = 0x10_0000;
const TEST_PASS: u32 = 0x5555;
const TEST_FAIL: u32 = 0x3333;
/// CLINT `mtime`, 64 bits as two words.
const MTIME_LO: usize = 0x0200_BFF8;
const MTIME_HI: usize = 0x0200_BFFC;
/// `timebase-frequency` of QEMU's virt board.
const MTIME_HZ: u32 = 10_000_000;

struct Virt;

impl Virt {
    fn put(byte: u8) {
        // SAFETY: the UART's registers on QEMU's virt board; byte-wide MMIO.
        unsafe {
            while ptr::read_volatile(UART_LSR as *const u8) & LSR_THRE == 0 {}
            ptr::write_volatile(UART as *mut u8, byte);
        }
    }

    fn finish(code: u32) -> ! {
        let value = if code == 0 {
            TEST_PASS
        } else {
            (code << 16) | TEST_FAIL
        };
        // SAFETY: the SiFive test device of QEMU's virt board; writing it stops QEMU.
        unsafe { ptr::write_volatile(TEST as *mut u32, value) };
        loop {
            // SAFETY: wait for an interrupt; none is enabled, so this parks the hart.
            unsafe { asm!("wfi", options(nomem, nostack)) };
        }
    }
}

impl fmt::Write for Virt {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            Self::put(b);
        }
        Ok(())
    }
}

impl Board for Virt {
    fn name(&self) -> &'static str {
        "riscv-virt"
    }

    fn cpu(&self) -> &'static str {
        "rv32imac"
    }

    fn tick_hz(&self) -> u32 {
        MTIME_HZ
    }

    fn ticks(&self) -> u64 {
        loop {
            // SAFETY: the CLINT's mtime registers on QEMU's virt board; word-wide MMIO reads.
            let (hi, lo, hi2) = unsafe {
                (
                    ptr::read_volatile(MTIME_HI as *const u32),
                    ptr::read_volatile(MTIME_LO as *const u32),
                    ptr::read_volatile(MTIME_HI as *const u32),
                )
            };
            // The low word carried into the high one between the reads: read again.
            if hi == hi2 {
                return ((hi as u64) << 32) | lo as u64;
            }
        }
    }

    fn instret(&self) -> Option<u64> {
        loop {
            let (hi, lo, hi2): (u32, u32, u32);
            // SAFETY: reading the machine-mode instruction counter (M mode, always present on
            // QEMU's harts; exact under -icount).
            unsafe {
                asm!(
                    "csrr {0}, minstreth",
                    "csrr {1}, minstret",
                    "csrr {2}, minstreth",
                    out(reg) hi,
                    out(reg) lo,
                    out(reg) hi2,
                    options(nomem, nostack),
                );
            }
            if hi == hi2 {
                return Some(((hi as u64) << 32) | lo as u64);
            }
        }
    }

    fn spin(&self, iterations: u32) {
        // SAFETY: a register-only countdown loop (2 instructions an iteration); touches no
        // memory and no stack. `iterations >= 1`, so it ends.
        unsafe {
            asm!(
                "2:",
                "addi {n}, {n}, -1",
                "bnez {n}, 2b",
                n = inout(reg) iterations.max(1) => _,
                options(nomem, nostack),
            );
        }
    }

    fn stack_bottom(&self) -> usize {
        unsafe extern "C" {
            // riscv-rt: start of the (fictitious) .stack section, above .bss and the heap.
            static __estack: u8;
        }
        &raw const __estack as usize
    }

    fn stack_top(&self) -> usize {
        unsafe extern "C" {
            // riscv-rt: the initial stack pointer of hart 0.
            static _stack_start: u8;
        }
        &raw const _stack_start as usize
    }

    fn exit(&mut self, success: bool) -> ! {
        Self::finish(if success { 0 } else { 1 })
    }
}

#[riscv_rt::entry]
fn main() -> ! {
    firmware_common::run(&mut Virt)
}

/// Any exception (illegal instruction, access fault, ...): report and fail.
#[unsafe(export_name = "ExceptionHandler")]
fn exception_handler(frame: &riscv_rt::TrapFrame) -> ! {
    let mcause: usize;
    let mepc: usize;
    // SAFETY: reading machine-mode CSRs in the trap handler.
    unsafe {
        asm!("csrr {0}, mcause", "csrr {1}, mepc", out(reg) mcause, out(reg) mepc, options(nomem, nostack));
    }
    let _ = writeln!(
        Virt,
        "exception: mcause={mcause:#x} mepc={mepc:#x} ra={:#x}",
        frame.ra
    );
    let _ = writeln!(Virt, "FIRMWARE FAIL");
    Virt::finish(3)
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    let _ = writeln!(Virt, "panic: {info}");
    let _ = writeln!(Virt, "FIRMWARE FAIL");
    Virt::finish(2)
}
