//! On-board event binning on the Arm MPS2 AN386 (Cortex-M4F) under QEMU: each golden sample
//! (`models::edge_samples`) becomes a shuffled stream of photon events (`stream`), which
//! `runtime::events::Binner` bins into a u8 cube and into a u16 cube on the device; the
//! cube must equal the golden cube count for count, and the generated `edge` model (int8
//! and f32) must give the host's estimate on it bit for bit. Refused events (NaN,
//! infinities) and saturation (u8 at 255, u16 at 65535) are checked on the device too.
//! `cargo run --release` builds and runs it (runner in `.cargo/config.toml`).
//!
//! The cube lives on the stack, in the frame of `bin_and_infer` together with the binner
//! and the model's arena, so the peak stack of a run is all the RAM the path needs besides
//! the statics: input cube, binner, activations and kernel frames. Output (parsed by
//! `tests/tests/firmware.rs`):
//!
//! ```text
//! event-binner board=mps2-an386 cpu=cortex-m4f model=edge samples=4 variants=int8,f32 counts=u8,u16 int8_path=dsp
//! calibration ...
//! sizes ...
//! check name=bad-events cases=8 refused=8 ok
//! check name=saturation-u8 ... ok
//! binned cluster=0 count=u8 dtype=int8 events=1314 ... cube=identical bits=... host=... result=identical bin_instructions=... infer_instructions=... stack=...
//! events-summary count=u8 dtype=int8 samples=4 identical=4 cube_bytes=25000 stack_peak=... ...
//! FIRMWARE PASS
//! ```
#![no_std]
#![no_main]

mod stream;

use core::fmt::Write;
use core::hint::black_box;

use cortex_m_rt::entry;
use firmware_common::mps2::Mps2;
use firmware_common::variants::{self, Timing, Variant};
use firmware_common::{Board, Fixed2, stack};
use models::edge_samples as samples;
use runtime::events::{Binner, EventField, Outcome, Stats};
use runtime::model::Flags;
use runtime::{CUBE_LEN, Count, Error, Estimate};

use stream::{Event, Stream};

#[entry]
fn main() -> ! {
    let mut board = Mps2::new("mps2-an386", "cortex-m4f");
    let start = board.ticks();
    let ok = run_all(&mut board);
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
        "event-binner board={} cpu={} model=edge samples={} variants={} counts=u8,u16 int8_path={}",
        board.name(),
        board.cpu(),
        samples::N,
        variants::NAMES,
        firmware_common::int8_path(),
    );
    firmware_common::calibrate(board);
    firmware_common::print_sizes(board);
    let mut ok = bad_events(board);
    #[cfg(feature = "int8")]
    type First = variants::Int8;
    #[cfg(not(feature = "int8"))]
    type First = variants::F32;
    ok &= saturation::<B, First, u8>(board);
    ok &= saturation::<B, First, u16>(board);
    #[cfg(feature = "int8")]
    {
        ok &= run_variant::<B, variants::Int8, u8>(board);
        ok &= run_variant::<B, variants::Int8, u16>(board);
        ok &= run_variant::<B, InPlace, u8>(board);
        ok &= run_variant::<B, InPlace, u16>(board);
    }
    #[cfg(feature = "f32")]
    {
        ok &= run_variant::<B, variants::F32, u8>(board);
        ok &= run_variant::<B, variants::F32, u16>(board);
    }
    ok
}

/// The stream seed of sample `i`.
fn seed(i: usize) -> u32 {
    0x9E37_79B9 ^ (i as u32 + 1).wrapping_mul(0x85EB_CA6B)
}

/// NaN and infinite coordinates and energies are refused with the field named, the cube
/// untouched. Not inlined: its cube stays out of the callers' frames.
#[inline(never)]
fn bad_events<B: Board>(board: &mut B) -> bool {
    let mut cube = [0u8; CUBE_LEN];
    let Ok(mut b) = Binner::new(&mut cube) else {
        let _ = writeln!(
            board,
            "check name=bad-events FAIL (binner refused the cube)"
        );
        return false;
    };
    let first = b.push(10.5, 20.5, 1500.0);
    let nan = black_box(f32::NAN);
    let inf = black_box(f32::INFINITY);
    let cases = [
        (nan, 1.0, 500.0, EventField::X),
        (1.0, nan, 500.0, EventField::Y),
        (1.0, 1.0, nan, EventField::Energy),
        (inf, 1.0, 500.0, EventField::X),
        (1.0, -inf, 500.0, EventField::Y),
        (1.0, 1.0, inf, EventField::Energy),
        (nan, nan, nan, EventField::X),
        (-inf, 1.0, -inf, EventField::X),
    ];
    let mut refused = 0;
    for (x, y, pi, field) in cases {
        match b.push(x, y, pi) {
            Err(Error::BadEvent { field: f }) if f == field => refused += 1,
            other => {
                let _ = writeln!(
                    board,
                    "bad event bits ({:08x}, {:08x}, {:08x}): {other:?}",
                    x.to_bits(),
                    y.to_bits(),
                    pi.to_bits()
                );
            }
        }
    }
    let s = b.stats();
    let (cube, _) = b.finish();
    let sum: u32 = cube.iter().map(|&c| u32::from(c)).sum();
    let ok = first == Ok(Outcome::Binned)
        && refused == cases.len()
        && s.invalid as usize == cases.len()
        && s.binned == 1
        && sum == 1;
    let _ = writeln!(
        board,
        "check name=bad-events cases={} refused={refused} invalid={} binned={} cube_sum={sum} {}",
        cases.len(),
        s.invalid,
        s.binned,
        if ok { "ok" } else { "FAIL" }
    );
    ok
}

/// A pixel fed more events than the type holds stops at the maximum, the excess counted as
/// saturated, and the estimate on that cube carries `Flags::SATURATED`.
#[inline(never)]
fn saturation<B: Board, V: Variant, N: Count>(board: &mut B) -> bool {
    let Ok(model) = V::load() else {
        let _ = writeln!(board, "check name=saturation-{} FAIL (blob)", N::NAME);
        return false;
    };
    let mut cube = [N::default(); CUBE_LEN];
    let Ok(mut b) = Binner::new(&mut cube) else {
        return false;
    };
    let max: u32 = N::MAX.into();
    let extra = 45;
    for _ in 0..max + extra {
        let _ = b.push(30.25, 20.75, 800.0); // band 3, y 20, x 30
    }
    let _ = b.push(5.5, 5.5, 4000.0);
    let (s, flags) = (b.stats(), b.flags());
    let (cube, _) = b.finish();
    let top: u32 = cube[(3 * 50 + 20) * 50 + 30].into();
    let (result, _) = model.infer_measured(board, cube, samples::REDSHIFT[0]);
    let estimate_flagged = result.is_ok_and(|e| e.flags.contains(Flags::SATURATED));
    let ok = top == max
        && s.binned == max + 1
        && s.saturated == extra
        && flags == Flags::SATURATED
        && estimate_flagged;
    let _ = writeln!(
        board,
        "check name=saturation-{} dtype={} pixel={top} binned={} saturated={} binner_flags={} estimate_flagged={} {}",
        N::NAME,
        V::NAME,
        s.binned,
        s.saturated,
        flags.0,
        if estimate_flagged { "yes" } else { "no" },
        if ok { "ok" } else { "FAIL" }
    );
    ok
}

/// How a cube of `N` is run through the model: a variant's `infer` (arena on its own
/// frame), or int8's `infer_in_place` (the arena inside the cube).
trait Runner<N: Count>: Sized {
    /// Name as printed (`int8`, `f32`, `int8-in-place`).
    const NAME: &'static str;
    /// The host's results.
    const HOST: [[u32; 2]; samples::N];
    /// Validate the blob.
    fn load() -> Result<Self, runtime::BlobError>;
    /// One timed inference of `cube`.
    fn run<B: Board>(
        &self,
        board: &B,
        cube: &mut [N; CUBE_LEN],
        z: f32,
    ) -> (Result<Estimate, Error>, Timing);
}

impl<V: Variant, N: Count> Runner<N> for V {
    const NAME: &'static str = V::NAME;
    const HOST: [[u32; 2]; samples::N] = V::HOST;
    fn load() -> Result<Self, runtime::BlobError> {
        V::load()
    }
    fn run<B: Board>(
        &self,
        board: &B,
        cube: &mut [N; CUBE_LEN],
        z: f32,
    ) -> (Result<Estimate, Error>, Timing) {
        self.infer_measured(board, &cube[..], z)
    }
}

/// `edge` int8 on a u8 or u16 cube it consumes (`infer_in_place`): no arena of its own,
/// only the convolution scratch.
#[cfg(feature = "int8")]
struct InPlace(models::edge::int8::Model<'static>);

#[cfg(feature = "int8")]
impl<N: Count> Runner<N> for InPlace {
    const NAME: &'static str = "int8-in-place";
    const HOST: [[u32; 2]; samples::N] = samples::INT8;
    fn load() -> Result<Self, runtime::BlobError> {
        models::edge::int8::Model::new(&models::blobs::EDGE_INT8.0).map(Self)
    }
    #[inline(never)]
    fn run<B: Board>(
        &self,
        board: &B,
        cube: &mut [N; CUBE_LEN],
        z: f32,
    ) -> (Result<Estimate, Error>, Timing) {
        let mut scratch = models::edge::int8::Scratch::new();
        variants::timed(board, || self.0.infer_in_place(cube, &[z], &mut scratch))
    }
}

/// What one sample gave.
struct Binned {
    stats: Stats,
    golden: u32,
    injected_stamp: u32,
    injected_bands: u32,
    /// Cells that differ from the golden cube.
    diffs: usize,
    result: Result<Estimate, Error>,
    /// The stream alone (generated, not binned).
    stream_ticks: u64,
    /// The stream generated and binned, the cube cleared first.
    bin_ticks: u64,
    infer: Timing,
}

/// Bin sample `i`'s event stream into a fresh cube of `N` on this frame and run `model` on
/// it. Not inlined: the cube, the binner and the model's arena are all below the caller's
/// stack pointer, so the peak stack covers them.
#[inline(never)]
fn bin_and_infer<B: Board, V: Runner<N>, N: Count>(board: &B, model: &V, i: usize) -> Binned {
    let golden = samples::counts(i).unwrap_or(&[]);
    let mut cube = [N::default(); CUBE_LEN];
    // What generating the stream costs, to tell the binner's own share.
    let t0 = board.ticks();
    for e in black_box(Stream::new(golden, seed(i))) {
        black_box(e);
    }
    let stream_ticks = board.ticks() - t0;
    let t0 = board.ticks();
    let mut stream = black_box(Stream::new(golden, seed(i)));
    let mut stats = Stats::default();
    let mut diffs = usize::MAX;
    if let Ok(mut b) = Binner::new(&mut cube) {
        for e in &mut stream {
            // An error is counted in the statistics (`invalid`) and reported below.
            let _ = b.push(e.x, e.y, e.pi_ev);
        }
        stats = b.stats();
    }
    let bin_ticks = board.ticks() - t0;
    if golden.len() == CUBE_LEN {
        diffs = cube
            .iter()
            .zip(golden)
            .filter(|(a, b)| a.get() != **b)
            .count();
    }
    let (result, infer) = model.run(board, &mut cube, samples::REDSHIFT[i]);
    Binned {
        stats,
        golden: stream.golden,
        injected_stamp: stream.injected_stamp,
        injected_bands: stream.injected_bands,
        diffs,
        result,
        stream_ticks,
        bin_ticks,
        infer,
    }
}

/// Events [`time_push`] holds at most (the golden samples have up to 2,525).
const MAX_EVENTS: usize = 3072;

/// The binner alone: sample `i`'s stream generated into a buffer first, then only the pushes
/// timed. Returns the ticks and the events pushed. (A measurement only: the buffer, 36 KiB,
/// is not part of the binning path, whose RAM `bin_and_infer` measures.)
#[inline(never)]
fn time_push<B: Board, N: Count>(board: &B, i: usize) -> (u64, usize) {
    let golden = samples::counts(i).unwrap_or(&[]);
    let blank = Event {
        x: 0.0,
        y: 0.0,
        pi_ev: 0.0,
    };
    let mut events = [blank; MAX_EVENTS];
    let mut n = 0;
    for (slot, e) in events.iter_mut().zip(Stream::new(golden, seed(i))) {
        *slot = e;
        n += 1;
    }
    let mut cube = [N::default(); CUBE_LEN];
    let Ok(mut b) = Binner::new(&mut cube) else {
        return (0, 0);
    };
    let events = black_box(&events[..n]);
    let t0 = board.ticks();
    for e in events {
        let _ = b.push(e.x, e.y, e.pi_ev);
    }
    let ticks = board.ticks() - t0;
    black_box(b.stats());
    (ticks, n)
}

/// Every sample through the binner into `N` and through variant `V`: true if every cube is
/// the golden one, every event's outcome as injected, every estimate the host's.
fn run_variant<B: Board, V: Runner<N>, N: Count>(board: &mut B) -> bool {
    let model = match V::load() {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(board, "error: {} blob rejected: {e}", V::NAME);
            return false;
        }
    };
    let per_tick = 1_000_000_000 / board.tick_hz() as u64;
    let top = board.stack_top();
    let (mut identical, mut peak, mut at_call) = (0, 0, 0);
    let (mut bin_sum, mut stream_sum, mut infer_sum, mut events_sum) = (0u64, 0u64, 0u64, 0u64);
    let (mut push_sum, mut pushed) = (0u64, 0u64);
    for i in 0..samples::N {
        let (push_ticks, n) = time_push::<B, N>(board, i);
        let push = push_ticks * per_tick;
        push_sum += push;
        pushed += n as u64;
        let painted = stack::paint(board.stack_bottom(), stack::PAINT_DEPTH);
        let r = bin_and_infer::<B, V, N>(board, &model, i);
        let Some(lowest) = stack::lowest_used(&painted) else {
            let _ = writeln!(board, "error: the run used all the painted stack");
            return false;
        };
        let stack = top - lowest;
        peak = peak.max(stack);
        at_call = at_call.max(top - painted.above());
        let s = r.stats;
        let outcomes_ok = r.diffs == 0
            && s.binned == r.golden
            && s.outside_stamp == r.injected_stamp
            && s.outside_bands == r.injected_bands
            && s.saturated == 0
            && s.invalid == 0;
        let host = V::HOST[i];
        let bits = r
            .result
            .map(|e| [e.log_mass.to_bits(), e.sigma.to_bits()])
            .ok();
        let same = bits == Some(host) && outcomes_ok;
        identical += usize::from(same);
        let (bin, inf) = (r.bin_ticks * per_tick, r.infer.ticks * per_tick);
        let gen_only = r.stream_ticks * per_tick;
        bin_sum += bin;
        stream_sum += gen_only;
        infer_sum += inf;
        events_sum += s.total();
        let _ = write!(
            board,
            "binned cluster={i} count={} dtype={} events={} injected_stamp={} injected_bands={} binned={} saturated={} outside_stamp={} outside_bands={} invalid={} cube={} ",
            N::NAME,
            V::NAME,
            s.total(),
            r.injected_stamp,
            r.injected_bands,
            s.binned,
            s.saturated,
            s.outside_stamp,
            s.outside_bands,
            s.invalid,
            if r.diffs == 0 {
                "identical"
            } else {
                "DIFFERENT"
            },
        );
        let _ = match r.result {
            Ok(e) => write!(
                board,
                "log10_M500={} sigma={} bits={:08x},{:08x}",
                Fixed2(e.log_mass),
                Fixed2(e.sigma),
                e.log_mass.to_bits(),
                e.sigma.to_bits()
            ),
            Err(e) => write!(board, "error={e:?}"),
        };
        let _ = writeln!(
            board,
            " host={:08x},{:08x} result={} stream_instructions={gen_only} bin_instructions={bin} push_instructions={push} pushed={n} infer_instructions={inf} stack={stack}",
            host[0],
            host[1],
            if same { "identical" } else { "DIFFERENT" },
        );
    }
    let n = samples::N as u64;
    let _ = writeln!(
        board,
        "events-summary count={} dtype={} samples={} identical={identical} cube_bytes={} events_mean={} stream_instructions_mean={} bin_instructions_mean={} push_instructions_per_event={}.{:02} infer_instructions_mean={} stack_peak={peak} stack_at_call={at_call} resolution={per_tick}",
        N::NAME,
        V::NAME,
        samples::N,
        core::mem::size_of::<[N; CUBE_LEN]>(),
        events_sum / n,
        stream_sum / n,
        bin_sum / n,
        push_sum / pushed.max(1),
        push_sum * 100 / pushed.max(1) % 100,
        infer_sum / n,
    );
    identical == samples::N
}
