//! The exposure-aware `edge` model (`models::edge_aware`: the redshift and the exposure join
//! the dense head, trained on 100 s-30 ks) on a Cortex-M4F in QEMU (MPS2 AN386). Each
//! golden sample (`models::edge_aware_samples`) runs with its redshift and its exposure, in
//! int8 and f32, and must give the host's estimate bit for bit (its flags, printed, are
//! compared with the host's by the test: the training ranges and the detection check). On the
//! device it then checks what a flight unit relies on: an exposure that is not physically
//! valid (NaN, infinite, zero, negative) is `Error::BadScalar { index: 1 }`, never a panic
//! nor an estimate; one outside the training range gives an estimate flagged
//! `exposure_outside_training`; and the exposure moves the estimate (the same counts read
//! as a 10x deeper observation give a lower mass).
//!
//! `cargo run --release` builds and runs it (runner in `.cargo/config.toml`). Output
//! (parsed by `tests/tests/firmware.rs`):
//!
//! ```text
//! exposure-aware board=mps2-an386 cpu=cortex-m4f model=edge-aware samples=4 scalars=redshift,exposure_s
//! sample index=0 dtype=int8 z_bits=... exposure_bits=... bits=... host=... flags=... result=identical
//! check name=bad-exposure cases=5 refused=5 ok
//! check name=outside-training ... ok
//! check name=exposure-moves-mass ... ok
//! FIRMWARE PASS
//! ```
#![no_std]
#![no_main]

use core::hint::black_box;

use cortex_m_rt::entry;
use cortex_m_semihosting::{debug, hprintln};
use models::blobs::{EDGE_AWARE_F32, EDGE_AWARE_INT8};
use models::edge_aware as model;
use models::edge_aware_samples as samples;
use runtime::model::Flags;
use runtime::{Error, Estimate};

/// One of the two variants run here.
#[derive(Clone, Copy)]
enum Dtype {
    Int8,
    F32,
}

impl Dtype {
    fn name(self) -> &'static str {
        match self {
            Dtype::Int8 => "int8",
            Dtype::F32 => "f32",
        }
    }
}

/// Why a run gave no estimate.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Blob(runtime::BlobError),
    Input(Error),
}

/// Infer one cube with `scalars` (`[z, exposure_s]`). Not inlined, so each arena lives in
/// this frame only while it runs.
#[inline(never)]
fn infer(dtype: Dtype, counts: &[u16], scalars: &[f32; 2]) -> Result<Estimate, Failure> {
    match dtype {
        Dtype::Int8 => {
            let m = model::int8::Model::new(&EDGE_AWARE_INT8.0).map_err(Failure::Blob)?;
            let mut arena = [0i8; model::ARENA_LEN];
            let mut scratch = model::int8::Scratch::new();
            m.infer(counts, scalars, &mut arena, &mut scratch)
                .map_err(Failure::Input)
        }
        Dtype::F32 => {
            let m = model::f32::Model::new(&EDGE_AWARE_F32.0).map_err(Failure::Blob)?;
            let mut arena = [0f32; model::ARENA_LEN];
            let mut scratch = model::f32::Scratch::new();
            m.infer(counts, scalars, &mut arena, &mut scratch)
                .map_err(Failure::Input)
        }
    }
}

/// Every golden sample in `dtype` against the host's bits and flags.
fn golden(dtype: Dtype) -> bool {
    let mut ok = true;
    for i in 0..samples::N {
        let (Some(counts), s) = (samples::counts(i), samples::SCALARS[i]) else {
            hprintln!("sample index={} missing", i);
            return false;
        };
        let host = match dtype {
            Dtype::Int8 => samples::INT8[i],
            Dtype::F32 => samples::F32[i],
        };
        match infer(dtype, counts, &s) {
            Ok(e) => {
                let bits = [e.log_mass.to_bits(), e.sigma.to_bits()];
                let same = bits == host;
                ok &= same;
                hprintln!(
                    "sample index={} dtype={} z_bits={:#010x} exposure_bits={:#010x} bits={:#010x},{:#010x} host={:#010x},{:#010x} flags={} result={}",
                    i,
                    dtype.name(),
                    s[0].to_bits(),
                    s[1].to_bits(),
                    bits[0],
                    bits[1],
                    host[0],
                    host[1],
                    e.flags.0,
                    if same { "identical" } else { "DIFFERENT" }
                );
            }
            Err(Failure::Blob(e)) => {
                hprintln!(
                    "sample index={} dtype={} blob error: {}",
                    i,
                    dtype.name(),
                    e
                );
                ok = false;
            }
            Err(Failure::Input(e)) => {
                hprintln!("sample index={} dtype={} error: {}", i, dtype.name(), e);
                ok = false;
            }
        }
    }
    ok
}

/// Exposures that are not physically valid are typed errors naming input 1.
fn bad_exposures(counts: &[u16], z: f32) -> bool {
    let cases = [f32::NAN, f32::INFINITY, 0.0, -600.0, f32::NEG_INFINITY];
    let mut refused = 0;
    for dtype in [Dtype::Int8, Dtype::F32] {
        for &t in &cases {
            match infer(dtype, counts, &[z, black_box(t)]) {
                Err(Failure::Input(Error::BadScalar { index: 1 })) => refused += 1,
                other => hprintln!(
                    "bad exposure {:#010x} in {}: {:?}",
                    t.to_bits(),
                    dtype.name(),
                    other.map(|e| e.log_mass)
                ),
            }
        }
    }
    let ok = refused == 2 * cases.len();
    hprintln!(
        "check name=bad-exposure cases={} refused={} {}",
        2 * cases.len(),
        refused,
        if ok { "ok" } else { "FAIL" }
    );
    ok
}

/// Exposures outside the training range (below 100 s, above 30 ks) are estimated and
/// flagged; one inside is not flagged for it.
fn outside_training(counts: &[u16], z: f32) -> bool {
    let [lo, hi] = model::int8::Model::new(&EDGE_AWARE_INT8.0)
        .map(|m| m.meta().extra[0].range)
        .unwrap_or([f32::NAN; 2]);
    let flagged = |t: f32| {
        matches!(infer(Dtype::Int8, counts, &[z, t]),
            Ok(e) if e.flags.contains(Flags::EXPOSURE_OUTSIDE_TRAINING))
    };
    let (below, above, inside) = (flagged(lo * 0.5), flagged(hi * 2.0), flagged(lo * 4.0));
    let ok = below && above && !inside;
    hprintln!(
        "check name=outside-training range_bits={:#010x},{:#010x} below={} above={} inside={} {}",
        lo.to_bits(),
        hi.to_bits(),
        below,
        above,
        inside,
        if ok { "ok" } else { "FAIL" }
    );
    ok
}

/// The same counts read as a 10x longer observation mean a fainter, less massive cluster.
fn exposure_moves_mass(counts: &[u16], z: f32, t: f32) -> bool {
    let mass = |t: f32| infer(Dtype::Int8, counts, &[z, t]).map(|e| e.log_mass);
    let (short, long) = (mass(t), mass(10.0 * t));
    let ok = matches!((short, long), (Ok(a), Ok(b)) if b < a);
    hprintln!(
        "check name=exposure-moves-mass exposure_bits={:#010x} short_milli={} long_milli={} {}",
        t.to_bits(),
        short.map_or(i32::MIN, |m| (m * 1000.0) as i32),
        long.map_or(i32::MIN, |m| (m * 1000.0) as i32),
        if ok { "ok" } else { "FAIL" }
    );
    ok
}

#[entry]
fn main() -> ! {
    hprintln!(
        "exposure-aware board=mps2-an386 cpu=cortex-m4f model=edge-aware samples={} scalars={}",
        samples::N,
        "redshift,exposure_s"
    );
    let mut ok = model::SCALAR_NAMES == ["redshift", "exposure_s"];
    ok &= golden(Dtype::Int8);
    ok &= golden(Dtype::F32);
    // The checks on the brightest golden sample (the last: the highest true mass), at an
    // exposure inside the training range.
    let last = samples::N - 1;
    let [z, _] = samples::SCALARS[last];
    let counts = samples::counts(last).unwrap_or(&[]);
    ok &= bad_exposures(counts, z);
    ok &= outside_training(counts, z);
    ok &= exposure_moves_mass(counts, z, 300.0);
    hprintln!("FIRMWARE {}", if ok { "PASS" } else { "FAIL" });
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
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
