//! Per-layer measurement and on-target kernel checks (cargo feature `layers`).
//!
//! For each int8 convolution of `edge` (the shapes of `models::edge::{Op1, Op3, Op5}`), with
//! synthetic weights, activations and requantisation (the instruction count does not depend
//! on the values: the kernels have no data-dependent branches but the requantisation's sign,
//! which is branch-free on the DSP path), it times
//!
//! - `Conv2d::s8`, the scalar reference, always the portable loop nest;
//! - `Conv2d::s8_rows` over the whole map (`rows`), the path the build selects (`SMLAD` on
//!   Cortex-M4/M7, the reference with the `reference` feature);
//! - `Conv2d::s8_rows` two output rows a call (`pairs`), as `s8_pooled::<2>` calls it: the
//!   convolution of the fused path alone (a trailing odd row, which a 2 x 2 pool drops, is not
//!   computed: `pooled_macs`);
//! - `Conv2d::s8_pooled::<2>` (a max pool here), as the generated model calls it: `pairs`
//!   plus the pooling of the line buffer,
//!
//! and checks that all of them agree bit for bit. Then it checks the fast path against the
//! reference on odd shapes (channels not a multiple of 4, windows not a multiple of 4 or 16,
//! stride, dilation, wide padding, kernels of 1, 2, 5 and 7, row-by-row calls), extreme and
//! out-of-range zero points, requantisation constants outside the fast form, and scratch
//! buffers that are not 4-byte aligned (the columns then go to the engine's own buffer, or,
//! for a window too long for it, the shared engine runs).
//!
//! Output, one line per layer and per check (parsed by `tests/tests/firmware.rs`):
//!
//! ```text
//! layer name=conv1 shape=10x25x25:16 k=3 path=dsp macs=900000 rows_instructions=... rows_per_mac=... reference_instructions=... reference_per_mac=... pooled_macs=864000 pairs_instructions=... pairs_per_mac=... pooled_instructions=... pooled_per_mac=... identical=yes
//! check shape=3x9x7:5 k=3 s=2 d=2 p=3 case=... identical=yes
//! layers checks=... failed=0
//! ```

use core::hint::black_box;

use runtime::kernels::conv2d::{Conv2d, QuantArgs};
use runtime::kernels::pool::PoolKind;
use runtime::quant::Requant;

use crate::Board;

/// xorshift64*: deterministic test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Largest buffers of the shapes below.
const MAX_IN: usize = 6250;
const MAX_W: usize = 9216;
const MAX_OUT: usize = 10000;
const MAX_OC: usize = 32;
const MAX_SCRATCH: usize = 4096;

/// A 4-byte aligned scratch with one spare element, so that `[1..]` is misaligned.
#[repr(C, align(4))]
struct Scratch([i16; MAX_SCRATCH + 2]);

struct Bufs {
    x: [i8; MAX_IN],
    w: [i8; MAX_W],
    want: [i8; MAX_OUT],
    got: [i8; MAX_OUT],
    pooled_want: [i8; MAX_OUT / 4],
    pooled_got: [i8; MAX_OUT / 4],
    line: [i8; MAX_OUT],
    bias: [i32; MAX_OC],
    pos: [Requant; MAX_OC],
    neg: [Requant; MAX_OC],
    scratch: Scratch,
}

/// Requantisation constants of a case.
#[derive(Clone, Copy, PartialEq)]
enum Requants {
    /// What calibration produces: real multipliers 0.002 to 0.012, a tenth for negatives.
    Typical,
    /// Every fourth channel with a multiplier of 2.5, 0.75, 3e-10 or 0 on one side.
    Odd,
    /// One class of multipliers on the positive side (the negative side a tenth of it, as a
    /// leaky ReLU with slope 0.1 gives).
    Class(Class),
    /// Per channel, the positive side's class and the negative side's (independently) cycle
    /// through every class.
    Mixed,
    /// Typical on the positive side, every other class on the negative side.
    LeakyWide,
    /// Per channel and side, any encoding `Requant::from_real` can give: a random mantissa
    /// in [2^30, 2^31) and shift in -31..=30 (or the zero multiplier), with biases anywhere
    /// in i32.
    Random,
    /// Typical, but every third channel with an encoding no quantiser produces on one side
    /// (a mantissa below 2^30, or a negative one): the scalar requantisation of those
    /// channels after each block, from the gathered columns.
    Unnormalised,
}

/// A range of real requantisation multipliers.
#[derive(Clone, Copy, PartialEq)]
enum Class {
    /// 0.002 to 0.012 (a right shift of 7 to 9).
    Typical,
    /// [0.5, 1): no shift.
    Half,
    /// [1, 16): left shifts of 1 to 4.
    Above,
    /// 1e-9 to 5e-8: right shifts of 24 to 29.
    Tiny,
    /// 0.
    Zero,
}

const CLASSES: [Class; 5] = [
    Class::Typical,
    Class::Half,
    Class::Above,
    Class::Tiny,
    Class::Zero,
];

impl Class {
    /// A random multiplier of the class, and a bias that keeps some outputs unsaturated.
    fn draw(self, rng: &mut Rng) -> (f64, i32) {
        let u = (rng.next() % 1000) as f64 / 1000.0;
        match self {
            Class::Typical => (0.002 + u * 0.01, (rng.next() % 20001) as i32 - 10000),
            Class::Half => (0.5 + u * 0.4999, (rng.next() % 401) as i32 - 200),
            Class::Above => (1.0 + u * 15.0, (rng.next() % 41) as i32 - 20),
            // Accumulators anywhere in i32 (the sums wrap like the reference's).
            Class::Tiny => (1e-9 + u * 4.9e-8, rng.next() as i32),
            Class::Zero => (0.0, rng.next() as i32),
        }
    }
}

/// The requantisation variants timed on each `edge` convolution (`requant` lines).
const VARIANTS: [(&str, Requants); 6] = [
    ("half", Requants::Class(Class::Half)),
    ("above-one", Requants::Class(Class::Above)),
    ("tiny", Requants::Class(Class::Tiny)),
    ("zero", Requants::Class(Class::Zero)),
    ("mixed", Requants::Mixed),
    ("leaky-negative-side", Requants::LeakyWide),
];

/// One case.
#[derive(Clone, Copy)]
struct Case {
    seed: u64,
    zp_in: i32,
    zp_out: i32,
    requants: Requants,
    /// Run the fast paths on a scratch that is not 4-byte aligned.
    misaligned: bool,
}

const TYPICAL: Case = Case {
    seed: 1,
    zp_in: -3,
    zp_out: -20,
    requants: Requants::Typical,
    misaligned: false,
};

/// What one shape and case gave.
struct Outcome {
    identical: bool,
    /// Outputs of the whole map strictly inside (-128, 127).
    unsaturated: usize,
    reference: u64,
    rows: u64,
    pairs: u64,
    pooled: u64,
    pooled_macs: usize,
}

/// Run the per-layer measurement and the checks; `true` if every result was identical.
pub fn run<B: Board>(board: &mut B) -> bool {
    let mut b = Bufs {
        x: [0; MAX_IN],
        w: [0; MAX_W],
        want: [0; MAX_OUT],
        got: [0; MAX_OUT],
        pooled_want: [0; MAX_OUT / 4],
        pooled_got: [0; MAX_OUT / 4],
        line: [0; MAX_OUT],
        bias: [0; MAX_OC],
        pos: [Requant::default(); MAX_OC],
        neg: [Requant::default(); MAX_OC],
        scratch: Scratch([0; MAX_SCRATCH + 2]),
    };
    let mut checks = 0;
    let mut failed = 0;
    let mut tally = |ok: bool| {
        checks += 1;
        failed += usize::from(!ok);
    };

    // The three convolutions of `edge`.
    macro_rules! layer {
        ($name:literal, $ic:literal, $ih:literal, $iw:literal, $oc:literal) => {{
            type C = Conv2d<$ic, $ih, $iw, $oc, 3, 1, 1, 1>;
            let o = conv::<B, $ic, $ih, $iw, $oc, 3, 1, 1, 1>(board, &mut b, TYPICAL);
            tally(o.identical);
            let _ = writeln!(
                board,
                "layer name={} shape={}x{}x{}:{} k=3 path={} macs={} rows_instructions={} rows_per_mac={} reference_instructions={} reference_per_mac={} pooled_macs={} pairs_instructions={} pairs_per_mac={} pooled_instructions={} pooled_per_mac={} identical={}",
                $name,
                $ic,
                $ih,
                $iw,
                $oc,
                crate::int8_path(),
                C::MACS,
                o.rows,
                PerMac(o.rows, C::MACS),
                o.reference,
                PerMac(o.reference, C::MACS),
                o.pooled_macs,
                o.pairs,
                PerMac(o.pairs, o.pooled_macs),
                o.pooled,
                PerMac(o.pooled, o.pooled_macs),
                if o.identical { "yes" } else { "NO" },
            );
        }};
    }
    layer!("conv1", 10, 25, 25, 16);
    layer!("conv3", 16, 12, 12, 32);
    layer!("conv5", 32, 6, 6, 32);

    // The same convolutions with requantisation constants over the whole range TFLite's
    // quantiser produces (on the DSP path; the scalar build's cost does not depend on them).
    macro_rules! variant {
        ($name:literal, $ic:literal, $ih:literal, $iw:literal, $oc:literal) => {{
            type C = Conv2d<$ic, $ih, $iw, $oc, 3, 1, 1, 1>;
            for (i, (variant, requants)) in VARIANTS.iter().enumerate() {
                let case = Case {
                    seed: 100 + i as u64,
                    requants: *requants,
                    ..TYPICAL
                };
                let o = conv::<B, $ic, $ih, $iw, $oc, 3, 1, 1, 1>(board, &mut b, case);
                tally(o.identical);
                let _ = writeln!(
                    board,
                    "requant layer={} variant={} path={} macs={} rows_instructions={} rows_per_mac={} pooled_macs={} pairs_instructions={} pairs_per_mac={} unsaturated={} identical={}",
                    $name,
                    variant,
                    crate::int8_path(),
                    C::MACS,
                    o.rows,
                    PerMac(o.rows, C::MACS),
                    o.pooled_macs,
                    o.pairs,
                    PerMac(o.pairs, o.pooled_macs),
                    o.unsaturated,
                    if o.identical { "yes" } else { "NO" },
                );
            }
        }};
    }
    if crate::int8_path() == "dsp" {
        variant!("conv1", 10, 25, 25, 16);
        variant!("conv3", 16, 12, 12, 32);
        variant!("conv5", 32, 6, 6, 32);
    }

    // Correctness of the fast path on shapes and values the model does not have.
    macro_rules! check {
        ($ic:literal, $ih:literal, $iw:literal, $oc:literal, $k:literal, $s:literal, $d:literal, $p:literal, $case:expr, $what:literal) => {{
            let o = conv::<B, $ic, $ih, $iw, $oc, $k, $s, $d, $p>(board, &mut b, $case);
            tally(o.identical);
            let _ = writeln!(
                board,
                "check shape={}x{}x{}:{} k={} s={} d={} p={} case={} identical={}",
                $ic,
                $ih,
                $iw,
                $oc,
                $k,
                $s,
                $d,
                $p,
                $what,
                if o.identical { "yes" } else { "NO" },
            );
        }};
    }
    let case = |seed, zp_in, zp_out, requants, misaligned| Case {
        seed,
        zp_in,
        zp_out,
        requants,
        misaligned,
    };
    use Requants::{Odd, Random, Typical, Unnormalised};
    check!(
        3,
        9,
        7,
        5,
        3,
        2,
        2,
        3,
        case(6, 5, -7, Typical, false),
        "stride-dilation-padding"
    );
    check!(
        1,
        5,
        5,
        1,
        1,
        1,
        1,
        0,
        case(7, -128, 127, Typical, false),
        "k1"
    );
    check!(
        7,
        8,
        9,
        9,
        5,
        1,
        1,
        2,
        case(8, 127, -128, Typical, false),
        "k5"
    );
    check!(
        2,
        3,
        3,
        3,
        3,
        1,
        1,
        0,
        case(9, 0, 0, Typical, false),
        "single-pixel"
    );
    // 7 channels (3 rows past the last 4 channels), stride 2: the word-per-row gather's
    // remainder of one row.
    check!(
        7,
        9,
        9,
        6,
        3,
        2,
        1,
        1,
        case(23, -100, 7, Typical, false),
        "k3-stride2-ic7"
    );
    check!(
        10,
        13,
        13,
        20,
        2,
        1,
        1,
        0,
        case(4, -60, 9, Typical, false),
        "k2"
    );
    check!(
        20,
        11,
        11,
        20,
        2,
        1,
        1,
        0,
        case(5, 17, 3, Odd, false),
        "k2-odd-requant"
    );
    check!(
        3,
        12,
        11,
        4,
        7,
        1,
        1,
        3,
        case(10, -9, 1, Typical, false),
        "k7-generic-gather"
    );
    check!(
        5,
        10,
        10,
        6,
        3,
        1,
        1,
        1,
        case(11, 40000, 0, Typical, false),
        "zero-point-beyond-16-bit"
    );
    check!(
        5,
        10,
        10,
        6,
        3,
        1,
        1,
        1,
        case(12, 2, 100_000, Typical, false),
        "output-zero-point-huge"
    );
    check!(
        10,
        25,
        25,
        16,
        3,
        1,
        1,
        1,
        case(13, -128, 127, Odd, false),
        "conv1-odd-requant"
    );
    check!(
        16,
        12,
        12,
        32,
        3,
        1,
        1,
        1,
        case(14, 127, -128, Typical, true),
        "conv3-misaligned-scratch"
    );
    check!(
        10,
        25,
        25,
        16,
        3,
        1,
        1,
        1,
        case(16, 5, 6, Typical, true),
        "conv1-misaligned-scratch"
    );
    check!(
        64,
        4,
        4,
        4,
        3,
        1,
        1,
        1,
        case(17, -7, 2, Odd, true),
        "misaligned-columns-beyond-work"
    );
    check!(
        5,
        10,
        10,
        6,
        3,
        1,
        1,
        1,
        case(18, 300, -3, Typical, false),
        "zero-point-beyond-8-bit"
    );
    // A strip of 16 x 3 x 102 bytes does not fit the engine's buffer: masked gather.
    check!(
        16,
        3,
        100,
        4,
        3,
        1,
        1,
        1,
        case(19, 9, -4, Odd, false),
        "masked-gather"
    );
    check!(
        16,
        3,
        100,
        4,
        3,
        1,
        1,
        1,
        case(20, -300, 5, Typical, true),
        "masked-gather-zero-point-beyond-8-bit"
    );
    check!(
        32,
        6,
        6,
        32,
        3,
        1,
        1,
        1,
        case(15, -1, 0, Odd, false),
        "conv5-odd-requant"
    );

    // Any requantisation encoding and accumulators anywhere in i32, per channel: a 1 x 1
    // window (the sums stay near the bias) and `edge`'s conv5 shape (its weights too long to
    // widen: the other kernel).
    check!(
        4,
        10,
        10,
        32,
        1,
        1,
        1,
        0,
        case(21, -5, 3, Random, false),
        "random-requant-k1"
    );
    check!(
        32,
        6,
        6,
        32,
        3,
        1,
        1,
        1,
        case(22, 9, -128, Random, false),
        "random-requant-conv5"
    );

    // Encodings no quantiser produces, in both column orders (`edge`'s conv1 shape and the
    // 7-channel one: weights widened, row-paired; conv3: natural).
    check!(
        10,
        25,
        25,
        16,
        3,
        1,
        1,
        1,
        case(24, -3, 5, Unnormalised, false),
        "conv1-unnormalised-requant"
    );
    check!(
        7,
        9,
        9,
        6,
        3,
        2,
        1,
        1,
        case(25, 60, -9, Unnormalised, false),
        "k3-stride2-ic7-unnormalised-requant"
    );
    check!(
        16,
        12,
        12,
        32,
        3,
        1,
        1,
        1,
        case(26, 1, 0, Unnormalised, false),
        "conv3-unnormalised-requant"
    );

    let _ = writeln!(board, "layers checks={checks} failed={failed}");
    failed == 0
}

/// Instructions per MAC with three decimals.
struct PerMac(u64, usize);

impl core::fmt::Display for PerMac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let milli = (self.0 * 1000).checked_div(self.1 as u64).unwrap_or(0);
        write!(f, "{}.{:03}", milli / 1000, milli % 1000)
    }
}

/// Instructions `f` takes.
fn timed<B: Board>(board: &B, f: impl FnOnce()) -> u64 {
    let per_tick = 1_000_000_000 / board.tick_hz() as u64;
    let t0 = board.ticks();
    black_box(f)();
    let t1 = board.ticks();
    (t1 - t0) * per_tick
}

/// One shape and case: the reference, the whole map, row by row and pooled.
fn conv<
    B: Board,
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
>(
    board: &mut B,
    b: &mut Bufs,
    case: Case,
) -> Outcome {
    type C<
        const IC: usize,
        const IH: usize,
        const IW: usize,
        const OC: usize,
        const K: usize,
        const S: usize,
        const D: usize,
        const P: usize,
    > = Conv2d<IC, IH, IW, OC, K, S, D, P>;
    let (n_in, n_w, n_out) = (
        C::<IC, IH, IW, OC, K, S, D, P>::IN_LEN,
        C::<IC, IH, IW, OC, K, S, D, P>::W_LEN,
        C::<IC, IH, IW, OC, K, S, D, P>::OUT_LEN,
    );
    let (oh, ow) = (
        C::<IC, IH, IW, OC, K, S, D, P>::OH,
        C::<IC, IH, IW, OC, K, S, D, P>::OW,
    );
    let need = C::<IC, IH, IW, OC, K, S, D, P>::SCRATCH_S8;
    assert!(
        n_in <= MAX_IN && n_w <= MAX_W && n_out <= MAX_OUT && OC <= MAX_OC && need <= MAX_SCRATCH
    );

    let mut rng = Rng(case.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    // Multipliers of 0.5 and more saturate nearly every output of full-range data: small
    // weights and inputs near the zero point there, so that many outputs are exact values.
    let small = !matches!(
        case.requants,
        Requants::Typical | Requants::Odd | Requants::Random | Requants::Unnormalised
    );
    for v in &mut b.x[..n_in] {
        *v = if small {
            (case.zp_in + (rng.next() % 15) as i32 - 7).clamp(-128, 127) as i8
        } else {
            rng.next() as i8
        };
    }
    for v in &mut b.w[..n_w] {
        *v = if small {
            (rng.next() % 7) as i8 - 3
        } else {
            rng.next() as i8
        };
    }
    for oc in 0..OC {
        b.bias[oc] = (rng.next() % 20001) as i32 - 10000;
        let real = 0.002 + (rng.next() % 1000) as f64 * 1e-5;
        (b.pos[oc], b.neg[oc]) = (Requant::from_real(real), Requant::from_real(real * 0.1));
        let (pos, neg) = match case.requants {
            Requants::Typical => continue,
            Requants::Odd => {
                // Every fourth channel with a multiplier of 0.5 or more, tiny or zero.
                let odd = [2.5, 0.75, 3e-10, 0.0];
                match oc % 4 {
                    1 => b.pos[oc] = Requant::from_real(odd[oc / 4 % 4]),
                    3 => b.neg[oc] = Requant::from_real(odd[(oc / 4 + 1) % 4]),
                    _ => {}
                }
                continue;
            }
            Requants::Class(c) => {
                let (m, bias) = c.draw(&mut rng);
                b.bias[oc] = bias;
                (m, m * 0.1)
            }
            Requants::Mixed => {
                let (p, bias) = CLASSES[oc % 5].draw(&mut rng);
                let (n, _) = CLASSES[(oc / 5 + oc + 2) % 5].draw(&mut rng);
                b.bias[oc] = bias;
                (p, n)
            }
            Requants::LeakyWide => {
                let (n, _) = CLASSES[1 + oc % 4].draw(&mut rng);
                (real, n)
            }
            Requants::Unnormalised => {
                match oc % 3 {
                    0 => {
                        b.pos[oc] = Requant {
                            multiplier: 0x0123_4567,
                            shift: -2,
                        }
                    }
                    1 => {
                        b.neg[oc] = Requant {
                            multiplier: -0x5000_0000,
                            shift: -9,
                        }
                    }
                    _ => {}
                }
                continue;
            }
            Requants::Random => {
                let mut any = || match rng.next() % 64 {
                    0 => Requant::default(),
                    r => Requant {
                        multiplier: (1 << 30) + (rng.next() % (1 << 30)) as i32,
                        shift: (r % 62) as i32 - 31,
                    },
                };
                (b.pos[oc], b.neg[oc]) = (any(), any());
                b.bias[oc] = rng.next() as i32;
                continue;
            }
        };
        (b.pos[oc], b.neg[oc]) = (Requant::from_real(pos), Requant::from_real(neg));
    }
    let q = QuantArgs {
        input_zero_point: case.zp_in,
        requant_pos: &b.pos[..OC],
        requant_neg: &b.neg[..OC],
        output_zero_point: case.zp_out,
    };
    let (x, w, bias) = (&b.x[..n_in], &b.w[..n_w], &b.bias[..OC]);
    let scratch = if case.misaligned {
        &mut b.scratch.0[1..1 + need]
    } else {
        &mut b.scratch.0[..need]
    };

    let mut ok = true;
    let want = &mut b.want[..n_out];
    let reference = timed(board, || {
        ok &= C::<IC, IH, IW, OC, K, S, D, P>::s8(x, w, bias, &q, want).is_ok()
    });
    let got = &mut b.got[..n_out];
    got.fill(0x55);
    let rows = timed(board, || {
        ok &= C::<IC, IH, IW, OC, K, S, D, P>::s8_rows(x, w, bias, &q, 0, got, scratch).is_ok()
    });
    ok &= got == want;
    let unsaturated = want.iter().filter(|&&v| v > -128 && v < 127).count();

    // Two rows per call, as `s8_pooled::<2>` calls it (the pooled path's convolution alone):
    // timed, then checked.
    let pairs = timed(board, || {
        for py in 0..oh / 2 {
            let two = &mut b.line[..OC * 2 * ow];
            ok &= C::<IC, IH, IW, OC, K, S, D, P>::s8_rows(x, w, bias, &q, 2 * py, two, scratch)
                .is_ok();
        }
    });
    for py in 0..oh / 2 {
        let two = &mut b.line[..OC * 2 * ow];
        two.fill(0x55);
        ok &=
            C::<IC, IH, IW, OC, K, S, D, P>::s8_rows(x, w, bias, &q, 2 * py, two, scratch).is_ok();
        for oc in 0..OC {
            ok &= two[oc * 2 * ow..][..2 * ow] == want[(oc * oh + 2 * py) * ow..][..2 * ow];
        }
    }
    // Row by row: rows `oy` of every channel.
    for oy in 0..oh {
        let row = &mut b.line[..OC * ow];
        row.fill(0x55);
        ok &= C::<IC, IH, IW, OC, K, S, D, P>::s8_rows(x, w, bias, &q, oy, row, scratch).is_ok();
        for oc in 0..OC {
            ok &= row[oc * ow..(oc + 1) * ow] == want[(oc * oh + oy) * ow..][..ow];
        }
    }

    // Fused with a 2 x 2 max pool, against the pool of the reference map.
    let (ph, pw) = (oh / 2, ow / 2);
    let mut pooled = 0;
    let mut pooled_macs = 0;
    if ph > 0 && pw > 0 {
        let n = OC * ph * pw;
        for oc in 0..OC {
            for py in 0..ph {
                for px in 0..pw {
                    let at =
                        |dy: usize, dx: usize| want[(oc * oh + 2 * py + dy) * ow + 2 * px + dx];
                    b.pooled_want[(oc * ph + py) * pw + px] =
                        at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1));
                }
            }
        }
        let (out, line) = (&mut b.pooled_got[..n], &mut b.line[..OC * 2 * ow]);
        out.fill(0x55);
        pooled = timed(board, || {
            ok &= C::<IC, IH, IW, OC, K, S, D, P>::s8_pooled::<2>(
                PoolKind::Max,
                x,
                w,
                bias,
                &q,
                out,
                line,
                scratch,
            )
            .is_ok()
        });
        ok &= out == &b.pooled_want[..n];
        pooled_macs = OC * ph * 2 * ow * IC * K * K;
    }
    Outcome {
        identical: ok,
        unsaturated,
        reference,
        rows,
        pairs,
        pooled,
        pooled_macs,
    }
}
