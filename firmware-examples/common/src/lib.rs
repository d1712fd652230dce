//! The board-independent part of the firmware examples.
//!
//! [`run`] loads the generated `edge` model (`models::edge`) from the weight blobs in flash,
//! runs it on every golden sample (`models::edge_samples`), prints one line per cluster,
//! compares each result with the host's bit for bit, measures executed instructions and peak
//! stack per inference, prints a machine-readable `summary` line per model variant and ends
//! through [`Board::exit`] with failure if anything differed.
//!
//! A board supplies output, a timer clocked from the instruction count, a calibration loop,
//! its stack bounds and a way to stop the emulator ([`Board`]). The MPS2 Cortex-M boards share
//! [`mps2`] (feature `cortex-m`); the RISC-V example brings its own.
//!
//! Output (all on one line each; the integration test `tests/tests/firmware.rs` parses it):
//!
//! ```text
//! firmware board=mps2-an386 cpu=cortex-m4f model=edge macs=1904640 samples=4 variants=int8,f32 int8_path=dsp
//! calibration instructions=2000000 ticks=50000 instructions_per_tick=40.000 nominal=40 ok
//! sizes text=... rodata=... data=... bss=... weights_int8=27392 weights_f32=99040 samples=200000
//! cluster 0: log10 M500 = 13.66 +/- 0.16 (true 13.76) [int8] bits=415a9f96,3e22bd77 host=415a9f96,3e22bd77 identical instructions=... stack=...
//! summary board=mps2-an386 dtype=int8 samples=4 identical=4 macs=... instructions_mean=... instructions_max=... instructions_per_mac=... stack_peak=... stack_at_call=... resolution=40
//! elapsed ticks=... instructions=...
//! FIRMWARE PASS
//! ```
#![no_std]

#[cfg(not(any(feature = "int8", feature = "f32")))]
compile_error!("enable at least one model variant: feature `int8` or `f32`");

#[cfg(feature = "layers")]
pub mod layers;
#[cfg(feature = "cortex-m")]
pub mod mps2;
pub mod stack;
pub mod variants;

use core::fmt::Write;

use models::edge;
use models::edge_samples as samples;

/// What the harness needs from a board.
pub trait Board: Write {
    /// Board name as printed (`mps2-an386`).
    fn name(&self) -> &'static str;
    /// CPU as printed (`cortex-m4f`).
    fn cpu(&self) -> &'static str;
    /// Timer frequency in Hz. Under QEMU's `-icount shift=0` one guest instruction takes 1 ns
    /// of virtual time, so one tick is `1e9 / tick_hz` instructions.
    fn tick_hz(&self) -> u32;
    /// Free-running tick count (64-bit, never wraps in practice).
    fn ticks(&self) -> u64;
    /// A loop that executes exactly `2 * iterations` instructions (`iterations >= 1`), plus a
    /// constant entry/exit overhead.
    fn spin(&self, iterations: u32);
    /// The core's retired-instruction counter, if it has one readable here (RISC-V
    /// `minstret`): a second count to check the timer's against.
    fn instret(&self) -> Option<u64> {
        None
    }
    /// Lowest address the stack may grow to.
    fn stack_bottom(&self) -> usize;
    /// Initial stack pointer (the stack grows down from here).
    fn stack_top(&self) -> usize;
    /// Stop the emulator (or the board) with success or failure.
    fn exit(&mut self, success: bool) -> !;
}

/// The outcome of one model variant on all samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Samples run.
    pub samples: usize,
    /// Samples whose `[log_mass, sigma]` bits equal the host's.
    pub identical: usize,
    /// Sum of instructions over the samples.
    pub instructions_sum: u64,
    /// Largest instruction count of one inference.
    pub instructions_max: u64,
    /// Sum of retired instructions over the samples, where the core counts them.
    pub instret_sum: u64,
    /// Deepest stack (bytes below the initial stack pointer) seen during an inference.
    pub stack_peak: usize,
    /// Stack depth at the call of the inference (bytes below the initial stack pointer).
    pub stack_at_call: usize,
}

/// Run everything, print the report and stop the board: success only if every compiled-in
/// variant loaded and reproduced the host's results bit for bit.
pub fn run<B: Board>(board: &mut B) -> ! {
    let start = board.ticks();
    let ok = run_all(board);
    // With both variants the run outlasts one period of the 24-bit SysTick (671 M
    // instructions): the total then shows the wrap handling at work.
    let ticks = board.ticks() - start;
    let _ = writeln!(
        board,
        "elapsed ticks={ticks} instructions={}",
        ticks * (1_000_000_000 / board.tick_hz() as u64)
    );
    let _ = writeln!(board, "FIRMWARE {}", if ok { "PASS" } else { "FAIL" });
    board.exit(ok)
}

fn run_all<B: Board>(board: &mut B) -> bool {
    let _ = writeln!(
        board,
        "firmware board={} cpu={} model=edge macs={} samples={} variants={} int8_path={}",
        board.name(),
        board.cpu(),
        edge::MACS,
        samples::N,
        variants::NAMES,
        int8_path(),
    );
    calibrate(board);
    print_sizes(board);
    let mut ok = true;
    #[cfg(feature = "int8")]
    {
        ok &= run_variant::<B, variants::Int8>(board);
    }
    #[cfg(feature = "f32")]
    {
        ok &= run_variant::<B, variants::F32>(board);
    }
    #[cfg(feature = "layers")]
    {
        ok &= layers::run(board);
    }
    ok
}

/// The path of the int8 convolutions in this build, as printed: `dsp` (`SMLAD`, Cortex-M4/M7)
/// or `reference` (the scalar loops: other cores, or the `reference` feature).
pub fn int8_path() -> &'static str {
    use runtime::kernels::simd::{self, Path};
    match simd::active_s8() {
        Path::Dsp => "dsp",
        Path::Reference => "reference",
        Path::Avx2 => "avx2",
        Path::Avx512 => "avx512",
        Path::Neon => "neon",
    }
}

/// Check the timer scale: the difference between spinning `5n` and `n` iterations is exactly
/// `8n` instructions (the overheads cancel), which must take `8n / instructions_per_tick`
/// ticks under `-icount shift=0`. Prints the measured ratio; a mismatch is reported (the
/// instruction counts are then timer ticks times the nominal ratio, e.g. on real hardware)
/// but does not fail the run: the model check does not depend on it.
pub fn calibrate<B: Board>(board: &mut B) {
    const N: u32 = 250_000;
    let nominal = 1_000_000_000 / board.tick_hz() as u64;
    let t0 = board.ticks();
    board.spin(N);
    let t1 = board.ticks();
    board.spin(5 * N);
    let t2 = board.ticks();
    let ticks = (t2 - t1).saturating_sub(t1 - t0);
    let instructions = 8 * N as u64;
    // instructions per tick, in thousandths
    let milli = (instructions * 1000).checked_div(ticks).unwrap_or(0);
    let ok = (ticks * nominal).abs_diff(instructions) <= 2 * nominal;
    let _ = writeln!(
        board,
        "calibration instructions={instructions} ticks={ticks} instructions_per_tick={}.{:03} nominal={nominal} {}",
        milli / 1000,
        milli % 1000,
        if ok {
            "ok"
        } else {
            "MISMATCH (not QEMU with -icount shift=0? instruction counts below are ticks x nominal)"
        },
    );
}

/// Print the `sizes` line: the ELF's sections as the linker laid them out, the weight blobs
/// and the embedded samples.
pub fn print_sizes<B: Board>(board: &mut B) {
    unsafe extern "C" {
        // Section bounds defined by the linker scripts of cortex-m-rt and riscv-rt.
        static __stext: u8;
        static __etext: u8;
        static __srodata: u8;
        static __erodata: u8;
        static __sdata: u8;
        static __edata: u8;
        static __sbss: u8;
        static __ebss: u8;
    }
    let span = |a: *const u8, b: *const u8| (b as usize).wrapping_sub(a as usize);
    let (text, rodata, data, bss) = (
        span(&raw const __stext, &raw const __etext),
        span(&raw const __srodata, &raw const __erodata),
        span(&raw const __sdata, &raw const __edata),
        span(&raw const __sbss, &raw const __ebss),
    );
    let _ = write!(
        board,
        "sizes text={text} rodata={rodata} data={data} bss={bss}"
    );
    #[cfg(feature = "int8")]
    let _ = write!(board, " weights_int8={}", models::blobs::EDGE_INT8.0.len());
    #[cfg(feature = "f32")]
    let _ = write!(board, " weights_f32={}", models::blobs::EDGE_F32.0.len());
    let _ = writeln!(board, " samples={}", samples::N * samples::INPUT_LEN * 2);
}

/// Load one variant and run it on every sample; `true` if all results are the host's.
fn run_variant<B: Board, V: variants::Variant>(board: &mut B) -> bool {
    let model = match V::load() {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(board, "error: {} blob rejected: {e}", V::NAME);
            return false;
        }
    };
    let per_tick = 1_000_000_000 / board.tick_hz() as u64;
    let top = board.stack_top();
    let mut s = Summary::default();
    let mut ok = true;
    for i in 0..samples::N {
        let Some(counts) = samples::counts(i) else {
            let _ = writeln!(board, "error: sample {i} missing");
            return false;
        };
        let painted = stack::paint(board.stack_bottom(), stack::PAINT_DEPTH);
        let (result, timing) = model.infer_measured(board, counts, samples::REDSHIFT[i]);
        let Some(lowest) = stack::lowest_used(&painted) else {
            let _ = writeln!(
                board,
                "error: the inference used all {} painted bytes of stack; raise stack::PAINT_DEPTH",
                painted.len()
            );
            return false;
        };
        let instructions = timing.ticks * per_tick;
        if let Some(n) = timing.instret {
            s.instret_sum += n;
        }
        let stack = top - lowest;
        s.samples += 1;
        s.instructions_sum += instructions;
        s.instructions_max = s.instructions_max.max(instructions);
        s.stack_peak = s.stack_peak.max(stack);
        s.stack_at_call = s.stack_at_call.max(top - painted.above());
        let estimate = match result {
            Ok(e) => e,
            Err(e) => {
                let _ = writeln!(board, "cluster {i}: [{}] error: {e:?}", V::NAME);
                ok = false;
                continue;
            }
        };
        let bits = [estimate.log_mass.to_bits(), estimate.sigma.to_bits()];
        let host = V::HOST[i];
        let identical = bits == host;
        if identical {
            s.identical += 1;
        } else {
            ok = false;
        }
        let _ = write!(
            board,
            "cluster {i}: log10 M500 = {} +/- {} (true {}) [{}] bits={:08x},{:08x} host={:08x},{:08x} {} instructions={instructions} stack={stack}",
            Fixed2(estimate.log_mass),
            Fixed2(estimate.sigma),
            Fixed2(samples::TRUE_LOG_MASS[i]),
            V::NAME,
            bits[0],
            bits[1],
            host[0],
            host[1],
            if identical { "identical" } else { "DIFFERENT" },
        );
        let _ = match timing.instret {
            Some(n) => writeln!(board, " instret={n}"),
            None => writeln!(board),
        };
    }
    let mean = s.instructions_sum / s.samples.max(1) as u64;
    // instructions per MAC, in thousandths
    let per_mac = mean * 1000 / edge::MACS as u64;
    let _ = write!(
        board,
        "summary board={} dtype={} samples={} identical={} macs={} instructions_mean={mean} instructions_max={} instructions_per_mac={}.{:03} stack_peak={} stack_at_call={} resolution={per_tick}",
        board.name(),
        V::NAME,
        s.samples,
        s.identical,
        edge::MACS,
        s.instructions_max,
        per_mac / 1000,
        per_mac % 1000,
        s.stack_peak,
        s.stack_at_call,
    );
    if board.instret().is_some() {
        let _ = write!(
            board,
            " instret_mean={}",
            s.instret_sum / s.samples.max(1) as u64
        );
    }
    let _ = writeln!(board);
    ok && s.identical == samples::N
}

/// An f32 printed with two decimals (`14.52`), rounded half up, without core's float
/// formatting (which costs about 18 KB of flash: both of its algorithms and their tables).
/// For display only: the exact values are printed as bit patterns.
pub struct Fixed2(pub f32);

impl core::fmt::Display for Fixed2 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let x = self.0;
        if x.is_nan() {
            return f.write_str("NaN");
        }
        let sign = if x.is_sign_negative() { "-" } else { "" };
        if x.is_infinite() {
            return write!(f, "{sign}inf");
        }
        // f32 arithmetic (no soft double on single-precision FPUs); the cast saturates, so
        // beyond 4e7 the digits are wrong, not the program.
        let hundredths = (x.abs() * 100.0 + 0.5) as u32;
        write!(f, "{sign}{}.{:02}", hundredths / 100, hundredths % 100)
    }
}
