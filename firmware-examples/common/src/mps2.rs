//! Board support shared by the Arm MPS2 examples (AN386: Cortex-M4F, AN500: Cortex-M7), as
//! QEMU models them: output and exit over semihosting, SysTick as the instruction clock, a
//! panic handler and a HardFault handler that report and exit with failure.
//!
//! SysTick runs from the processor clock (CLKSOURCE = 1), 25 MHz in QEMU's MPS2 model; with
//! `-icount shift=0` one instruction is 1 ns of virtual time, so one tick is 40 instructions.
//! The counter is 24 bits wide (2^24 ticks = 671 M instructions): it reloads from
//! 0xFF_FFFF and the SysTick exception counts the wraps, which extends it to 64 bits.

use core::arch::asm;
use core::fmt;
use core::fmt::Write;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, exception};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use cortex_m_semihosting::hio::{self, HostStream};

use crate::Board;

/// Processor clock of QEMU's MPS2 boards (AN385/386/500/511), which clocks SysTick.
pub const SYSCLK_HZ: u32 = 25_000_000;

const RELOAD: u32 = 0x00FF_FFFF;

/// SysTick wraps since start.
static WRAPS: AtomicU32 = AtomicU32::new(0);

/// An MPS2 board under QEMU.
pub struct Mps2 {
    name: &'static str,
    cpu: &'static str,
    out: Option<HostStream>,
}

impl Mps2 {
    /// Start SysTick and open the semihosting console. Call once.
    pub fn new(name: &'static str, cpu: &'static str) -> Self {
        let Some(mut p) = cortex_m::Peripherals::take() else {
            panic!("Mps2::new called twice");
        };
        p.SYST.set_clock_source(SystClkSource::Core);
        p.SYST.set_reload(RELOAD);
        p.SYST.clear_current();
        p.SYST.enable_interrupt();
        p.SYST.enable_counter();
        // Cleared, the counter reads 0 until the first tick loads RELOAD; as 0 it would count
        // as the end of a period. Wait for the load.
        while SYST::get_current() == 0 {}
        Self {
            name,
            cpu,
            out: hio::hstdout().ok(),
        }
    }
}

impl fmt::Write for Mps2 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match &mut self.out {
            Some(out) => out.write_str(s),
            None => Err(fmt::Error),
        }
    }
}

impl Board for Mps2 {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cpu(&self) -> &'static str {
        self.cpu
    }

    fn tick_hz(&self) -> u32 {
        SYSCLK_HZ
    }

    fn ticks(&self) -> u64 {
        loop {
            let wraps = WRAPS.load(Ordering::SeqCst);
            let current = SYST::get_current();
            // A wrap between the two loads (its exception runs at once) changes the count:
            // read again.
            if WRAPS.load(Ordering::SeqCst) == wraps {
                return ((wraps as u64) << 24) | (RELOAD - current) as u64;
            }
        }
    }

    fn spin(&self, iterations: u32) {
        // SAFETY: a register-only countdown loop (2 instructions an iteration); touches no
        // memory and no stack. `iterations >= 1` by contract, so it ends.
        unsafe {
            asm!(
                "2:",
                "subs {n}, {n}, #1",
                "bne 2b",
                n = inout(reg) iterations.max(1) => _,
                options(nomem, nostack),
            );
        }
    }

    fn stack_bottom(&self) -> usize {
        unsafe extern "C" {
            // cortex-m-rt: the end of the stack (just above .bss/.uninit and the heap).
            static _stack_end: u8;
        }
        &raw const _stack_end as usize
    }

    fn stack_top(&self) -> usize {
        unsafe extern "C" {
            // cortex-m-rt: the initial stack pointer.
            static _stack_start: u8;
        }
        &raw const _stack_start as usize
    }

    fn exit(&mut self, success: bool) -> ! {
        debug::exit(if success { EXIT_SUCCESS } else { EXIT_FAILURE });
        // Without a host to stop us (a real board without a debugger): park.
        loop {
            cortex_m::asm::wfi();
        }
    }
}

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::SeqCst);
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    fail(format_args!("HardFault: {frame:?}"))
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    fail(format_args!("panic: {info}"))
}

/// Report a fault or panic and stop QEMU with failure.
fn fail(what: fmt::Arguments) -> ! {
    if let Ok(mut out) = hio::hstdout() {
        let _ = writeln!(out, "{what}");
        let _ = writeln!(out, "FIRMWARE FAIL");
    }
    debug::exit(EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
