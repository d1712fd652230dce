//! Cortex-M4/M7 DSP extension (every thumbv7em core): int8 convolutions as im2col plus an
//! `SXTB16` + `SMLAD` microkernel, as CMSIS-NN does (`arm_nn_mat_mult_kernel_s8_s16` with
//! `read_and_pad_reordered`). Stable Rust has no DSP intrinsics, so the kernel is inline
//! assembly; this module is compiled only under `cfg(dsp)` (set by `runtime/build.rs` on
//! thumbv7em targets).
//!
//! The engine ([`Conv::run`]) is its own, not the shared [`Geom::blocks`](super::Geom); where it
//! declines (unusual arguments, see there) the reference runs:
//!
//! - **Column layout.** A block holds [`PIX`] = 4 output pixels. Their windows, in
//!   `(ic, ky, kx)` order like the weights, are cut into groups of 4 taps `t0..t3`. Group `g`
//!   is 8 words at word `8 g`: for pixel `q`, word `2 q` is `(t0, t2)` and word `2 q + 1` is
//!   `(t1, t3)` (low half, high half; `x - zero_point` as i16). That is the order `SXTB16`
//!   splits a weight word into: `SXTB16 w` = `(w0, w2)`, `SXTB16 w, ROR #8` = `(w1, w3)`, so
//!   no `PKHBT` is needed on the weights, and one `LDM` fetches two pixels' pairs. The columns
//!   live in the caller's scratch ([`scratch_s8`](super::scratch_s8) i16), or in the engine's
//!   own buffer when the scratch is not 4-byte aligned.
//! - **Microkernel** ([`Conv::block`]: every output channel for one block, the channel loop
//!   in the assembly too). Per group of 4 taps, one output channel and 4 pixels: one `LDR` of
//!   4 weights, 2 `SXTB16`, 2 `LDM` of 4 column words and 8 `SMLAD`: 13 instructions for 16
//!   multiply-accumulates. The group loop is unrolled 8 deep; the count of groups is a
//!   compile-time constant, so the remainder is unrolled by the assembler (`.rept`), and a
//!   partial last group reads its 1 to 3 weights with `LDRB`/`LDRH`, never past the row. The
//!   accumulators start at the bias (one `LDMDB`). For layers whose weights fit the work
//!   buffer once sign-extended (`edge`'s first convolution: 16 channels, so each weight is
//!   otherwise extended again for every 4 pixels), [`Conv::widen`] extends them once per
//!   call and the kernel loads the two pairs with one `LDRD`: 11 instructions per group. A
//!   block of 1 or 2 pixels (the end of a call) runs a 2-pixel variant.
//! - **Requantisation** in the same assembly ([`super::dsp_requant`], where the host tests
//!   it): an `LDM` of the per-channel constants chosen by the accumulator's sign, a 64-bit
//!   multiply-add and `SSAT`. A call whose channels all have right shifts of 1 to 29 (what
//!   calibration gives: multipliers below 0.5) takes the fast form, 7 instructions an output
//!   (`SMLAL`, `ASR`, the zero point folded into the constant); any other call the general
//!   form, 10 instructions an output, exact for every multiplier, shift (left or right),
//!   zero point and accumulator. Only encodings no quantiser produces (a mantissa in
//!   (0, 2^30) or negative) get [`QuantArgs::output`] after the block ([`fix_slow`]).
//! - **im2col** ([`Conv::gather_strip`]): for each output row the input rows it reads are
//!   copied once into a strip padded with the zero point ([`Conv::build_strip`]), so every
//!   window, border or not, is a plain copy with compile-time offsets: 4 channels of `K x K`
//!   taps unrolled, an `LDRSB` per tap, `PKHBT` + `SSUB16` per pair and one `STRD` per group
//!   (9 instructions for 4 taps). Layers whose strip does not fit the work buffer gather from
//!   the input with a validity mask per tap ([`Conv::gather_masked`]); kernels wider than 5
//!   take a generic gather.
//!
//! The sums are exact 32-bit integers (`SMLAD` wraps like `wrapping_add`), so results are
//! bit-identical to the reference. Stack: the work buffer ([`WORK`]) and `72 OC` bytes of
//! per-channel records, in the frame of [`Conv::run`] (never inlined, so one layer's at a
//! time).

use core::arch::asm;
use core::mem::MaybeUninit;

use super::PIX;
use super::dsp_requant::{SLOT, Slot, fast, general, requant_fast, requant_general};
use crate::kernels::conv2d::QuantArgs;

/// Groups of 4 taps per trip of the kernel's loop.
const UNROLL: usize = 8;
/// Bytes of the engine's stack buffer: the zero-point-padded copy of the input rows of one
/// output row (layers whose copy does not fit gather from the input with masks), room for
/// the columns (used when the caller's scratch is not 4-byte aligned) and, where they fit
/// after them, the weights sign-extended once per call (so the kernel loads them with `LDRD`
/// instead of `LDR` + 2 `SXTB16` per group: for layers with few output channels, whose
/// weights would otherwise be extended again for every block of pixels). 4.5 KiB holds all
/// three for `edge`'s first convolution (810 + 736 + 2,944 bytes).
const WORK: usize = 4608;

/// What the kernel reads per output channel: the bias 4 times (one `LDMDB` initialises the 4
/// accumulators), then the requantisation constants ([`dsp_requant`](super::dsp_requant)) for
/// accumulators >= 0 and, [`SLOT`] bytes on, < 0, in the fast or the general form (one form
/// for every channel of a call).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Rec {
    bias: [i32; 4],
    pos: Slot,
    /// Never read.
    gap: MaybeUninit<[u32; 2]>,
    neg: Slot,
}

/// Bytes from one channel's [`Rec`] to the next (the kernel's step): 72.
const REC: usize = core::mem::size_of::<Rec>();
const _: () = assert!(
    core::mem::offset_of!(Rec, neg) - core::mem::offset_of!(Rec, pos) == SLOT
        && REC == 16 + SLOT + core::mem::size_of::<Slot>()
);

/// `dst.copy_from_slice(src)` a word at a time (unaligned word access is allowed on
/// Cortex-M4/M7 for normal memory), without a call to `memcpy` for these short rows.
#[inline(always)]
fn copy_row(dst: &mut [i8], src: &[i8]) {
    let n = dst.len().min(src.len());
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: bytes i..i + 4 of both slices are in bounds; unaligned access.
        unsafe {
            let v = src.as_ptr().add(i).cast::<u32>().read_unaligned();
            dst.as_mut_ptr().add(i).cast::<u32>().write_unaligned(v);
        }
        i += 4;
    }
    while i < n {
        dst[i] = src[i];
        i += 1;
    }
}

/// `SXTB16` of `w` and of `w ROR 8`: `((w0, w2), (w1, w3))` as i16 pairs.
#[inline(always)]
fn extend(w: u32) -> (u32, u32) {
    let (e, o): (u32, u32);
    // SAFETY: register-only DSP arithmetic; no memory, stack or flags.
    unsafe {
        asm!(
            "sxtb16 {e}, {w}",
            "sxtb16 {o}, {w}, ror #8",
            e = out(reg) e,
            o = lateout(reg) o,
            w = in(reg) w,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    (e, o)
}

/// `pkhbt r, lo, hi, lsl #16; ssub16 r, r, zz`: the pair `(lo - zp, hi - zp)` as two i16.
#[inline(always)]
fn pair(lo: i32, hi: i32, zz: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only DSP arithmetic (every thumbv7em core has it); touches no memory
    // and no stack. `r` is an early output, so it shares no register with `zz`.
    unsafe {
        asm!(
            "pkhbt {r}, {lo}, {hi}, lsl #16",
            "ssub16 {r}, {r}, {zz}",
            r = out(reg) r,
            lo = in(reg) lo,
            hi = in(reg) hi,
            zz = in(reg) zz,
            options(pure, nomem, nostack),
        );
    }
    r
}

/// `SXTAB16 r, nzz, w, ROR #ROT`: bytes `ROT / 8` (low half) and `ROT / 8 + 2` (high half,
/// modulo 4) of `w`, sign-extended, plus the halves of `nzz` (`-zp` twice: `x - zp` exactly,
/// as it fits 16 bits).
#[inline(always)]
fn ext<const ROT: u32>(nzz: u32, w: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only DSP arithmetic; no memory, stack or flags.
    unsafe {
        if ROT == 0 {
            asm!(
                "sxtab16 {r}, {n}, {w}",
                r = lateout(reg) r,
                n = in(reg) nzz,
                w = in(reg) w,
                options(pure, nomem, nostack, preserves_flags),
            );
        } else {
            asm!(
                "sxtab16 {r}, {n}, {w}, ror #{rot}",
                r = lateout(reg) r,
                n = in(reg) nzz,
                w = in(reg) w,
                rot = const ROT,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
    }
    r
}

/// `PKHBT r, lo, hi, LSL #16`: the low halves of `lo` and `hi` as one pair.
#[inline(always)]
fn pk(lo: u32, hi: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only DSP arithmetic; no memory, stack or flags.
    unsafe {
        asm!(
            "pkhbt {r}, {lo}, {hi}, lsl #16",
            r = lateout(reg) r,
            lo = in(reg) lo,
            hi = in(reg) hi,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    r
}

/// Split the weight word in `r10` into `r11` = `(w0, w2)` and `r10` = `(w1, w3)`.
macro_rules! extend {
    () => {
        "sxtb16 r11, r10\nsxtb16 r10, r10, ror #8\n"
    };
}

/// One group of 4 taps, one output channel, 4 pixels: weight pairs in `r11` (`(w0, w2)`) and
/// `r10` (`(w1, w3)`), columns at `lr` (post-incremented by 32), accumulators
/// `r4, r5, r8, r9`.
macro_rules! mac4 {
    () => {
        concat!(
            "ldm lr!, {{r0, r1, r2, r3}}\n",
            "smlad r4, r11, r0, r4\n",
            "smlad r4, r10, r1, r4\n",
            "smlad r5, r11, r2, r5\n",
            "smlad r5, r10, r3, r5\n",
            "ldm lr!, {{r0, r1, r2, r3}}\n",
            "smlad r8, r11, r0, r8\n",
            "smlad r8, r10, r1, r8\n",
            "smlad r9, r11, r2, r9\n",
            "smlad r9, r10, r3, r9\n",
        )
    };
}

/// [`mac4`] for the first 2 pixels only (a short block): accumulators `r4, r5`.
macro_rules! mac2 {
    () => {
        concat!(
            "ldm lr, {{r0, r1, r2, r3}}\n",
            "add lr, lr, #32\n",
            "smlad r4, r11, r0, r4\n",
            "smlad r4, r10, r1, r4\n",
            "smlad r5, r11, r2, r5\n",
            "smlad r5, r10, r3, r5\n",
        )
    };
}

/// The DSP engine for one convolution shape (the const parameters of
/// [`Conv2d`](crate::kernels::conv2d::Conv2d)).
pub(crate) struct Conv<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
>;

impl<
    const IC: usize,
    const IH: usize,
    const IW: usize,
    const OC: usize,
    const K: usize,
    const S: usize,
    const D: usize,
    const P: usize,
> Conv<IC, IH, IW, OC, K, S, D, P>
{
    /// Window length `IC K K`.
    const L: usize = IC * K * K;
    /// Taps of one input channel.
    const KK: usize = K * K;
    /// Groups of 4 taps (the last one partial when `L % 4 != 0`).
    const GROUPS: usize = Self::L.div_ceil(4);
    /// Output width.
    const OW: usize = (IW + 2 * P - (D * (K - 1) + 1)) / S + 1;
    /// Taps in the last partial group (0: none).
    const TAIL: usize = Self::L % 4;
    /// Column bytes the kernel walks per output channel (`GROUPS * 32`), split into what
    /// `SUBW` (12 bits) and `SUB` (a shifted 8-bit constant) encode.
    const REWIND_LO: usize = Self::GROUPS * 32 % 4096;
    const REWIND_HI: usize = Self::GROUPS * 32 / 4096 * 4096;

    /// Output rows `oy0..oy0 + rows` into `out` (`[OC][rows][OW]`), like
    /// [`Conv2d::s8_rows`](crate::kernels::conv2d::Conv2d::s8_rows). Returns `false`, having
    /// done nothing, where this engine does not apply: an input zero point outside int8 (the
    /// padding of the strip) or whose `x - zero_point` does not fit 16 bits, a `scratch` that
    /// is not 4-byte aligned (`LDM`/`STRD` need it) or too short when the columns do not fit
    /// the engine's own buffer either, or lengths that do not fit the shape (the caller has
    /// checked them).
    ///
    /// Never inlined: its frame (the work buffer and per-channel records, about 5 to 6 KiB)
    /// then exists only during the call, rather than once per layer in the caller's frame.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        input: &[i8],
        weights: &[i8],
        bias: &[i32],
        q: &QuantArgs<'_>,
        oy0: usize,
        rows: usize,
        out: &mut [i8],
        scratch: &mut [i16],
    ) -> bool {
        let zp = q.input_zero_point;
        let plane = rows * Self::OW;
        // Windows come from a copy of the rows the current output row reads, padded with
        // the zero point (as an i8), or, for layers whose copy does not fit WORK, straight
        // from the input with masks.
        let use_strip = Self::STRIP + Self::SLACK <= WORK && K <= 5;
        if !(-32640..=32639).contains(&zp)
            || (use_strip && !(-128..=127).contains(&zp))
            || input.len() != IC * IH * IW
            || weights.len() != OC * Self::L
            || bias.len() != OC
            || q.requant_pos.len() != OC
            || q.requant_neg.len() != OC
            || out.len() != OC * plane
            || oy0 + rows > (IH + 2 * P - (D * (K - 1) + 1)) / S + 1
        {
            return false;
        }
        let zz = u32::from(zp as u16) * 0x0001_0001;
        let nzz = u32::from(zp.wrapping_neg() as u16) * 0x0001_0001;

        // One stack buffer: the strip, room for the columns, then (where they fit) the
        // sign-extended weights.
        let mut work = MaybeUninit::<[u64; WORK / 8]>::uninit();
        let strip = work.as_mut_ptr().cast::<i8>();
        let mut strip_row = usize::MAX;
        if use_strip {
            // SAFETY: STRIP + SLACK <= WORK bytes from `strip`.
            unsafe {
                strip
                    .add(Self::STRIP)
                    .cast::<[u8; 4]>()
                    .write_unaligned([0; 4])
            };
        }
        // The columns: in `scratch`, or, where it is not 4-byte aligned (a `[i16; N]` on the
        // stack need not be), in `work`, zeroed (the kernel reads the unused pixels of a
        // short block).
        let cols = if scratch.len() >= Self::GROUPS * 16
            && (scratch.as_ptr() as usize).is_multiple_of(4)
        {
            scratch.as_mut_ptr().cast::<u32>()
        } else if Self::COLS_AT + Self::GROUPS * 32 <= WORK {
            let cols = strip.wrapping_add(Self::COLS_AT).cast::<u32>();
            // SAFETY: GROUPS * 8 words from COLS_AT (a multiple of 8) are within `work`.
            unsafe { cols.write_bytes(0, Self::GROUPS * 8) };
            cols
        } else {
            return false;
        };
        let w = if Self::WIDE_AT + Self::WIDE <= WORK {
            let wide = strip.wrapping_add(Self::WIDE_AT).cast::<u32>();
            // SAFETY: `wide` is 8-byte aligned (WIDE_AT is a multiple of 8 in a u64 buffer)
            // with OC GROUPS 8 bytes left in `work`; `weights` is OC L long (checked).
            unsafe { Self::widen(weights, wide) };
            wide.cast::<i8>().cast_const()
        } else {
            weights.as_ptr()
        };

        // Written whole by `prepare` (not zeroed first: 72 B a channel, every call).
        let mut recs = [const { MaybeUninit::<Rec>::uninit() }; OC];
        let mut slow = [false; OC];
        let (gen_form, any_slow) = prepare(&mut recs, &mut slow, bias, q);
        // SAFETY: `prepare` initialised every record; `MaybeUninit<Rec>` has `Rec`'s layout.
        let recs = unsafe { &*(&raw const recs).cast::<[Rec; OC]>() };

        let mut tmp = [[0i8; PIX]; OC];
        let (mut oy, mut ox) = (oy0, 0);
        let mut first = 0;
        while first < plane {
            let npx = PIX.min(plane - first);
            for px in 0..npx {
                // Pixel `px` (< 4) writes words `8 g + 2 px` and `8 g + 2 px + 1` of each
                // group: within `cols` (4-byte aligned, GROUPS * 8 words).
                let dst = cols.wrapping_add(2 * px);
                if K > 5 {
                    // SAFETY: see `dst`.
                    unsafe { Self::gather_any(input, oy, ox, dst, zp) };
                } else if use_strip {
                    if strip_row != oy {
                        // SAFETY: `work` has WORK >= STRIP bytes from `strip`; `input` is
                        // IC IH IW long (checked).
                        unsafe { Self::build_strip(input, oy, strip, zp as i8) };
                        strip_row = oy;
                    }
                    // SAFETY: the window of column `ox` starts `ox S` bytes into the strip
                    // and lies inside it (the strip is as wide as the padded input); see
                    // `dst`. The strip was written whole before.
                    unsafe { Self::gather_strip(strip.wrapping_add(ox * S), dst, zp, zz, nzz) };
                } else {
                    // SAFETY: see `dst`.
                    unsafe { Self::gather_masked(input, oy, ox, dst, zp, zz) };
                }
                ox += 1;
                if ox == Self::OW {
                    ox = 0;
                    oy += 1;
                }
            }
            // The kernel stores 4 (2 for a block of 1 or 2 pixels) outputs per channel: into
            // `out` when they are all the block's, else into `tmp`.
            let (dst, stride) = if npx == PIX || npx == 2 {
                (out[first..].as_mut_ptr(), plane)
            } else {
                (tmp.as_mut_ptr().cast::<i8>(), PIX)
            };
            // The kernel for this layer, block size and form of the records.
            macro_rules! block {
                ($gen:literal) => {
                    match (Self::WIDE_AT + Self::WIDE <= WORK, npx > 2) {
                        (true, true) => Self::block::<true, 4, $gen>(recs, dst, stride, w, cols),
                        (true, false) => Self::block::<true, 2, $gen>(recs, dst, stride, w, cols),
                        (false, true) => Self::block::<false, 4, $gen>(recs, dst, stride, w, cols),
                        (false, false) => Self::block::<false, 2, $gen>(recs, dst, stride, w, cols),
                    }
                };
            }
            // SAFETY: `recs` holds OC > 0 records; `dst + oc stride` has 4 (2 when npx <= 2)
            // writable bytes for every oc < OC: `first + npx <= plane` in `out`, or `tmp`;
            // `w` holds the weights (OC rows of L bytes, checked above, or their widened
            // copy); `cols` holds GROUPS gathered groups of 4 pixels (the unused pixels of a
            // short block hold stale but initialised values, whose sums are dropped).
            unsafe {
                if gen_form {
                    block!(true)
                } else {
                    block!(false)
                }
            };
            if npx == 1 || npx == 3 {
                for (oc, t) in tmp.iter().enumerate() {
                    out[oc * plane + first..][..npx].copy_from_slice(&t[..npx]);
                }
            }
            if any_slow {
                // SAFETY: `cols` holds the block's gathered columns (GROUPS groups, pixels
                // 0..npx written).
                unsafe {
                    fix_slow(
                        weights,
                        Self::L,
                        bias,
                        q,
                        &slow,
                        cols,
                        npx,
                        out,
                        first,
                        plane,
                    )
                };
            }
            first += npx;
        }
        true
    }

    /// Every output channel of one gathered block: sums from the bias (`SMLAD`) for the
    /// block's first `PX` (4 or 2) pixels, requantised with the records' constants (`GEN`:
    /// the general form, [`requant_general!`], else the fast one, [`requant_fast!`]) and
    /// stored at `dst + oc stride + 0..PX`. `WIDE`: `w` holds the weights sign-extended by
    /// [`Conv::widen`] (8 bytes a group), else the int8 rows.
    ///
    /// # Safety
    /// `w` readable for `OC L` bytes (`OC GROUPS 8` when `WIDE`), `cols` 4-byte aligned and
    /// readable for `GROUPS * 32` bytes, `dst + oc stride` writable for `PX` bytes for every
    /// `oc < OC`; `recs` has `OC > 0` records.
    #[inline(never)]
    unsafe fn block<const WIDE: bool, const PX: usize, const GEN: bool>(
        recs: &[Rec; OC],
        dst: *mut i8,
        stride: usize,
        w: *const i8,
        cols: *const u32,
    ) {
        let first = &raw const recs[0].pos;
        let end = first.cast::<u8>().wrapping_add(REC * OC);
        // The asm shared by the four variants: `$group` is one group of 4 taps (weights,
        // columns, SMLAD), `$tail` the partial last group, `$req` the requantisation.
        macro_rules! block_asm {
            ($unroll:expr, $trips:expr, $rem:expr, $group:expr, $tail:expr, [$($req:expr),*]) => {
                // SAFETY: the loop runs once per record (OC > 0), from `first` to `end` in
                // steps of one record (REC bytes). Per channel it reads one row of
                // weights (whole groups post-incremented; the 1 to 3 bytes of a partial last
                // group with LDRB/LDRH, never past the row), `GROUPS * 32` column bytes with
                // LDM (aligned by the caller's contract) and rewinds; reads the record
                // below and at r0 and writes `dst + oc stride + 0..PX`. r6 and r7 (not
                // allocatable) are saved on the stack with the loop's end and stride and
                // restored; the pushes balance. Every other register it changes is an
                // operand or a clobber.
                unsafe {
                    asm!(
                        "push {{r2, r3, r6, r7}}",
                        "2:",
                        "ldmdb r0, {{r4, r5, r8, r9}}",
                        "push {{r0, r1}}",
                        ".if {trips}",
                        "movw r7, #{trips}",
                        "3:",
                        ".rept {unroll}",
                        $group,
                        ".endr",
                        "subs r7, r7, #1",
                        "bne 3b",
                        ".endif",
                        ".rept {rem}",
                        $group,
                        ".endr",
                        $tail,
                        "pop {{r0, r1}}",
                        $($req,)*
                        ".if {rewind_lo}",
                        "subw lr, lr, #{rewind_lo}",
                        ".endif",
                        ".if {rewind_hi}",
                        "sub lr, lr, #{rewind_hi}",
                        ".endif",
                        "add r0, r0, #{rec}",
                        "ldrd r2, r3, [sp]",
                        "add r1, r1, r3",
                        "cmp r0, r2",
                        "bne 2b",
                        "pop {{r2, r3, r6, r7}}",
                        trips = const $trips,
                        unroll = const $unroll,
                        rem = const $rem,
                        tail = const Self::TAIL,
                        rewind_lo = const Self::REWIND_LO,
                        rewind_hi = const Self::REWIND_HI,
                        rec = const REC,
                        inout("r0") first => _,
                        inout("r1") dst => _,
                        inout("r2") end => _,
                        inout("r3") stride => _,
                        out("r4") _,
                        out("r5") _,
                        out("r8") _,
                        out("r9") _,
                        out("r10") _,
                        out("r11") _,
                        inout("r12") w => _,
                        inout("lr") cols => _,
                    );
                }
            };
        }
        // int8 weights: the 1 to 3 bytes of a partial last group.
        macro_rules! narrow_tail {
            ($mac:expr) => {
                concat!(
                    ".if {tail} == 1\n",
                    "ldrb r10, [r12], #1\n",
                    ".endif\n",
                    ".if {tail} == 2\n",
                    "ldrh r10, [r12], #2\n",
                    ".endif\n",
                    ".if {tail} == 3\n",
                    "ldrh r10, [r12], #2\n",
                    "ldrb r11, [r12], #1\n",
                    "orr r10, r10, r11, lsl #16\n",
                    ".endif\n",
                    ".if {tail}\n",
                    $mac,
                    ".endif\n",
                )
            };
        }
        // Widened weights: the partial last group is a whole one (zero weights).
        macro_rules! no_tail {
            () => {
                ".if {tail}\n.endif\n"
            };
        }
        // The four shapes of the kernel, with the requantisation macro `$req`. The 2-pixel
        // variant runs once per call at most: not unrolled.
        macro_rules! variants {
            ($req:ident) => {
                match (WIDE, PX) {
                    (false, 4) => block_asm!(
                        UNROLL,
                        Self::L / 4 / UNROLL,
                        Self::L / 4 % UNROLL,
                        concat!("ldr r10, [r12], #4\n", extend!(), mac4!()),
                        narrow_tail!(concat!(extend!(), mac4!())),
                        [
                            $req!("r4", "0"),
                            $req!("r5", "1"),
                            $req!("r8", "2"),
                            $req!("r9", "3")
                        ]
                    ),
                    (false, _) => block_asm!(
                        1,
                        Self::L / 4,
                        0,
                        concat!("ldr r10, [r12], #4\n", extend!(), mac2!()),
                        narrow_tail!(concat!(extend!(), mac2!())),
                        [$req!("r4", "0"), $req!("r5", "1")]
                    ),
                    (true, 4) => block_asm!(
                        UNROLL,
                        Self::GROUPS / UNROLL,
                        Self::GROUPS % UNROLL,
                        concat!("ldrd r11, r10, [r12], #8\n", mac4!()),
                        no_tail!(),
                        [
                            $req!("r4", "0"),
                            $req!("r5", "1"),
                            $req!("r8", "2"),
                            $req!("r9", "3")
                        ]
                    ),
                    (true, _) => block_asm!(
                        1,
                        Self::GROUPS,
                        0,
                        concat!("ldrd r11, r10, [r12], #8\n", mac2!()),
                        no_tail!(),
                        [$req!("r4", "0"), $req!("r5", "1")]
                    ),
                }
            };
        }
        if GEN {
            variants!(requant_general)
        } else {
            variants!(requant_fast)
        }
    }

    /// Sign-extend every weight row into `wide`: per group of 4 taps `w0..w3`, the words
    /// `(w0, w2)` and `(w1, w3)` (what `SXTB16` makes of the weight word), a partial last
    /// group padded with zero weights.
    ///
    /// # Safety
    /// `wide` 8-byte aligned and writable for `OC GROUPS 8` bytes; `weights` `OC L` long.
    #[inline(never)]
    unsafe fn widen(weights: &[i8], wide: *mut u32) {
        let mut out = wide;
        for row in weights.chunks_exact(Self::L) {
            let (whole, tail) = row.split_at(Self::L / 4 * 4);
            for g in whole.chunks_exact(4) {
                let (e, o) = extend(u32::from_le_bytes([
                    g[0] as u8, g[1] as u8, g[2] as u8, g[3] as u8,
                ]));
                // SAFETY: `out` walks `wide` 2 words a group, OC GROUPS groups in all.
                unsafe {
                    out.write(e);
                    out.add(1).write(o);
                }
                out = out.wrapping_add(2);
            }
            if !tail.is_empty() {
                let mut b = [0u8; 4];
                for (d, &t) in b.iter_mut().zip(tail) {
                    *d = t as u8;
                }
                let (e, o) = extend(u32::from_le_bytes(b));
                // SAFETY: as above, the partial last group.
                unsafe {
                    out.write(e);
                    out.add(1).write(o);
                }
                out = out.wrapping_add(2);
            }
        }
    }

    /// Bytes of the zero-point-padded input rows one output row reads: `IC` channels of
    /// `D (K - 1) + 1` rows of `IW + 2 P`.
    const STRIP_ROWS: usize = D * (K - 1) + 1;
    const STRIP_W: usize = IW + 2 * P;
    const STRIP: usize = IC * Self::STRIP_ROWS * Self::STRIP_W;
    /// Initialised bytes after the strip: [`Conv::rows3`] reads a word per window row, so the
    /// last row's window reads one byte past the strip.
    const SLACK: usize = 4;

    /// Offset of the columns in the work buffer (used where the caller's scratch is not
    /// aligned), and offset and size of the widened weights.
    const COLS_AT: usize = if Self::STRIP + Self::SLACK <= WORK {
        (Self::STRIP + Self::SLACK).div_ceil(8) * 8
    } else {
        0
    };
    const WIDE_AT: usize = Self::COLS_AT + Self::GROUPS * 32;
    const WIDE: usize = OC * Self::GROUPS * 8;

    /// Copy the input rows output row `oy` reads into `strip` (`[IC][STRIP_ROWS][STRIP_W]`),
    /// padded with the zero point (a real zero) on every side, so that every window of the
    /// row is a plain copy with constant offsets.
    ///
    /// # Safety
    /// `strip` writable for [`Conv::STRIP`] bytes; `input` is `IC IH IW` long.
    #[inline(never)]
    unsafe fn build_strip(input: &[i8], oy: usize, strip: *mut i8, zp: i8) {
        let y0 = (oy * S) as isize - P as isize;
        let mut dst = strip;
        for c in 0..IC {
            for r in 0..Self::STRIP_ROWS {
                let iy = y0 + r as isize;
                // SAFETY: `dst` walks the strip row by row, STRIP_W bytes each, IC
                // STRIP_ROWS rows in all: within its STRIP bytes.
                let row = unsafe { core::slice::from_raw_parts_mut(dst, Self::STRIP_W) };
                if iy < 0 || iy >= IH as isize {
                    row.fill(zp);
                } else {
                    let src = &input[(c * IH + iy as usize) * IW..][..IW];
                    row[..P].fill(zp);
                    copy_row(&mut row[P..P + IW], src);
                    row[P + IW..].fill(zp);
                }
                dst = dst.wrapping_add(Self::STRIP_W);
            }
        }
    }

    /// Gather the window at `src` (its top-left input in the strip, see
    /// [`Conv::build_strip`]) into one pixel's slots of the column block (`dst` = the
    /// block's word `2 q`).
    ///
    /// # Safety
    /// `src` and every tap offset from it inside the strip; `dst` 4-byte aligned and writable
    /// at words `8 g` and `8 g + 1` for every group `g`.
    ///
    /// For `K = 3`, `D = 1` (every `edge` layer) the 3 taps of each window row are read with
    /// one word load ([`Conv::rows3`]), so also the byte after each row, up to [`Conv::SLACK`]
    /// bytes past the strip (initialised, never used).
    #[inline(never)]
    unsafe fn gather_strip(src: *const i8, dst: *mut u32, zp: i32, zz: u32, nzz: u32) {
        if Self::ROWS3 {
            let (ch, row) = (Self::STRIP_ROWS * Self::STRIP_W, Self::STRIP_W);
            let (mut s, mut d) = (src, dst);
            for _ in 0..IC / 4 {
                // SAFETY: forwarded contract; 4 channels are 12 rows of 3 taps, 9 groups.
                unsafe { Self::rows3(s, ch, row, d, 12, nzz) };
                s = s.wrapping_add(4 * ch);
                d = d.wrapping_add(72);
            }
            if !IC.is_multiple_of(4) {
                // SAFETY: as above, the last `IC % 4` channels.
                unsafe { Self::rows3(s, ch, row, d, 3 * (IC % 4), nzz) };
            }
            return;
        }
        // SAFETY: forwarded contract; every tap is inside the strip.
        unsafe {
            Self::gather_channels::<false>(
                src,
                Self::STRIP_ROWS * Self::STRIP_W,
                Self::STRIP_W,
                dst,
                zp,
                zz,
                0,
            )
        };
    }

    /// Whether windows are gathered a row of 3 taps per word load ([`Conv::rows3`]).
    const ROWS3: bool = K == 3 && D == 1;

    /// `nrows` (3 to 12, a constant after inlining) rows of 3 taps, row `j` at
    /// `src + (j / 3) ch + (j % 3) row` (the rows of up to 4 channels), into the column slots
    /// of their `ceil(3 nrows / 4)` groups. One unaligned word load per row holds its 3 taps
    /// `k0, k1, k2` in bytes 0 to 2; `SXTAB16` with the rotations 0, 8 and 16 gives
    /// `(k0, k2)`, `(k1, _)` and `(k2, _)` minus the zero point, and `PKHBT` joins halves of
    /// two rows. Every 4 rows (12 taps, 3 groups) take 4 loads, 10 `SXTAB16`, 4 `PKHBT` and 3
    /// `STRD` (27 instructions for the same with `LDRSB` per tap). Taps past the window in a
    /// partial last group get any value (their weights are 0).
    ///
    /// # Safety
    /// `src + (j / 3) ch + (j % 3) row + 0..4` readable and initialised for every row `j`;
    /// `dst` 4-byte aligned and writable at words `8 g` and `8 g + 1` for every group `g`.
    #[inline(always)]
    unsafe fn rows3(src: *const i8, ch: usize, row: usize, dst: *mut u32, nrows: usize, nzz: u32) {
        // SAFETY: the caller's contract (the row's 4 bytes are readable).
        let word = |j: usize| unsafe {
            src.wrapping_add(j / 3 * ch + j % 3 * row)
                .cast::<u32>()
                .read_unaligned()
        };
        let store = |g: usize, e: u32, o: u32| {
            // SAFETY: words 8 g and 8 g + 1 of the pixel's slots (the caller's contract).
            unsafe {
                dst.add(g * 8).write(e);
                dst.add(g * 8 + 1).write(o);
            }
        };
        let (e, o, x) = (ext::<0>, ext::<8>, ext::<16>);
        let mut j = 0;
        while j + 4 <= nrows {
            let (w0, w1, w2, w3) = (word(j), word(j + 1), word(j + 2), word(j + 3));
            let g = j / 4 * 3;
            // Taps (r0k0 r0k1 r0k2 r1k0) (r1k1 r1k2 r2k0 r2k1) (r2k2 r3k0 r3k1 r3k2).
            store(g, e(nzz, w0), pk(o(nzz, w0), e(nzz, w1)));
            store(
                g + 1,
                pk(o(nzz, w1), e(nzz, w2)),
                pk(x(nzz, w1), o(nzz, w2)),
            );
            store(g + 2, pk(x(nzz, w2), o(nzz, w3)), e(nzz, w3));
            j += 4;
        }
        let g = j / 4 * 3;
        match nrows - j {
            1 => {
                let w0 = word(j);
                store(g, e(nzz, w0), o(nzz, w0));
            }
            2 => {
                let (w0, w1) = (word(j), word(j + 1));
                store(g, e(nzz, w0), pk(o(nzz, w0), e(nzz, w1)));
                store(g + 1, o(nzz, w1), x(nzz, w1));
            }
            3 => {
                let (w0, w1, w2) = (word(j), word(j + 1), word(j + 2));
                store(g, e(nzz, w0), pk(o(nzz, w0), e(nzz, w1)));
                store(
                    g + 1,
                    pk(o(nzz, w1), e(nzz, w2)),
                    pk(x(nzz, w1), o(nzz, w2)),
                );
                let x2 = x(nzz, w2);
                store(g + 2, x2, x2);
            }
            _ => {}
        }
    }

    /// Gather the window of output pixel (`oy`, `ox`) straight from the input, masking the
    /// taps in the padding: for layers whose strip does not fit [`WORK`].
    ///
    /// # Safety
    /// `dst` 4-byte aligned and writable at words `8 g` and `8 g + 1` for every group `g`.
    #[inline(never)]
    unsafe fn gather_masked(input: &[i8], oy: usize, ox: usize, dst: *mut u32, zp: i32, zz: u32) {
        let iy0 = (oy * S) as isize - P as isize;
        let ix0 = (ox * S) as isize - P as isize;
        // Bit ky K + kx: tap (ky, kx) of each channel lies inside the input.
        let mut valid = 0u32;
        for ky in 0..K {
            let iy = iy0 + (ky * D) as isize;
            if iy < 0 || iy >= IH as isize {
                continue;
            }
            for kx in 0..K {
                let ix = ix0 + (kx * D) as isize;
                if ix >= 0 && ix < IW as isize {
                    valid |= 1 << (ky * K + kx);
                }
            }
        }
        // The window's top-left input, possibly outside the input: never dereferenced where
        // outside.
        let src = input.as_ptr().wrapping_offset(iy0 * IW as isize + ix0);
        // SAFETY: only taps with their `valid` bit set are read, and those are inside the
        // input; forwarded contract.
        unsafe { Self::gather_channels::<true>(src, IH * IW, IW, dst, zp, zz, valid) };
    }

    /// All input channels, 4 at a time (a period of the group pattern: `4 K K` taps are
    /// `K K` whole groups); channels `ch` bytes apart, rows `row` bytes apart (constants after inlining).
    ///
    /// # Safety
    /// As [`Conv::gather_strip`]; with `BORDER`, only the taps with a `valid` bit need be
    /// readable.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn gather_channels<const BORDER: bool>(
        src: *const i8,
        ch: usize,
        row: usize,
        dst: *mut u32,
        zp: i32,
        zz: u32,
        valid: u32,
    ) {
        let quads = IC / 4;
        let (mut s, mut d) = (src, dst);
        for _ in 0..quads {
            // SAFETY: forwarded; each block of 4 channels starts 4 ch bytes and K K groups
            // (K K 8 words) after the previous one.
            unsafe { Self::gather_quad::<BORDER>(s, ch, row, d, 4 * Self::KK, zp, zz, valid) };
            s = s.wrapping_add(4 * ch);
            d = d.wrapping_add(Self::KK * 8);
        }
        if !IC.is_multiple_of(4) {
            // SAFETY: as above, for the last `IC % 4` channels.
            unsafe { Self::gather_quad::<BORDER>(s, ch, row, d, IC % 4 * Self::KK, zp, zz, valid) };
        }
    }

    /// Up to 4 channels' taps (`nt` of them, a compile-time constant after inlining) into
    /// `ceil(nt / 4)` groups, every offset a constant.
    ///
    /// # Safety
    /// As [`Conv::gather_channels`].
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn gather_quad<const BORDER: bool>(
        src: *const i8,
        ch: usize,
        row: usize,
        dst: *mut u32,
        nt: usize,
        zp: i32,
        zz: u32,
        valid: u32,
    ) {
        // Byte offset of tap u (counted from the first of the 4 channels).
        let offset = |u: usize| (u / (K * K)) * ch + (u % (K * K) / K) * D * row + (u % K) * D;
        // Value of tap u: the input, or zp (a zero after the subtraction) for padding taps
        // and for the taps past the window in a partial last group (their weights are 0).
        let tap = |u: usize| -> i32 {
            if u >= nt || (BORDER && valid & (1 << (u % (K * K))) == 0) {
                zp
            } else {
                // SAFETY: a tap that is read lies inside the input (the caller's contract).
                i32::from(unsafe { *src.wrapping_add(offset(u)) })
            }
        };
        macro_rules! groups {
            ($($j:literal)*) => {$(
                if $j * 4 < nt {
                    let e = pair(tap($j * 4), tap($j * 4 + 2), zz);
                    let o = pair(tap($j * 4 + 1), tap($j * 4 + 3), zz);
                    // SAFETY: group `$j` of this block of channels: words 8 j and 8 j + 1
                    // from `dst`, within the columns (the caller's contract).
                    unsafe {
                        dst.add($j * 8).write(e);
                        dst.add($j * 8 + 1).write(o);
                    }
                }
            )*};
        }
        // K <= 5: at most 25 groups per 4 channels.
        groups!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24);
    }

    /// Any kernel size: tap by tap, from the input.
    ///
    /// # Safety
    /// As [`Conv::gather_masked`].
    unsafe fn gather_any(input: &[i8], oy: usize, ox: usize, dst: *mut u32, zp: i32) {
        let iy0 = (oy * S) as isize - P as isize;
        let ix0 = (ox * S) as isize - P as isize;
        let dst = dst.cast::<i16>();
        let mut t = 0;
        for c in 0..IC {
            for ky in 0..K {
                for kx in 0..K {
                    let (iy, ix) = (iy0 + (ky * D) as isize, ix0 + (kx * D) as isize);
                    let v = if iy < 0 || iy >= IH as isize || ix < 0 || ix >= IW as isize {
                        0
                    } else {
                        (i32::from(input[(c * IH + iy as usize) * IW + ix as usize]) - zp) as i16
                    };
                    // Halfword of tap t: group t / 4 (16 halfwords), then (t0, t2, t1, t3).
                    let h = t / 4 * 16 + [0, 2, 1, 3][t % 4];
                    // SAFETY: within the pixel's slots of group t / 4 (the caller's contract).
                    unsafe { dst.add(h).write(v) };
                    t += 1;
                }
            }
        }
        // The partial last group's missing taps are multiplied by zero weights: any value.
    }
}

/// Write every per-channel record (bias and requantisation constants) of a call: all in the
/// fast form where every channel has one, else all in the general form. Channels whose
/// requantisation has neither (an encoding no quantiser produces) are marked in `slow`
/// (their constants are zero: the kernel stores garbage there, which [`fix_slow`]
/// overwrites). Returns (general form, any slow channel).
#[inline(never)]
fn prepare(
    recs: &mut [MaybeUninit<Rec>],
    slow: &mut [bool],
    bias: &[i32],
    q: &QuantArgs<'_>,
) -> (bool, bool) {
    let zp = q.output_zero_point;
    let (pos, neg) = (q.requant_pos, q.requant_neg);
    let mut all_fast = true;
    for (oc, r) in recs.iter_mut().enumerate() {
        let (Some(p), Some(n)) = (fast(pos[oc], zp, false), fast(neg[oc], zp, true)) else {
            // Every record is rewritten below.
            all_fast = false;
            break;
        };
        r.write(Rec {
            bias: [bias[oc]; 4],
            pos: p,
            gap: MaybeUninit::uninit(),
            neg: n,
        });
    }
    if all_fast {
        return (false, false);
    }
    let mut any = false;
    for (oc, (r, s)) in recs.iter_mut().zip(slow).enumerate() {
        let (p, n) = match (general(pos[oc], zp, false), general(neg[oc], zp, true)) {
            (Some(p), Some(n)) => (p, n),
            _ => {
                (*s, any) = (true, true);
                Default::default()
            }
        };
        r.write(Rec {
            bias: [bias[oc]; 4],
            pos: p,
            gap: MaybeUninit::uninit(),
            neg: n,
        });
    }
    (true, any)
}

/// The outputs of the `slow` channels of one block (pixels `0..npx`, the block's first at
/// `first` in each `plane` of `out`): the sums again, portably, from the gathered columns
/// (window length `l`), then [`QuantArgs::output`].
///
/// # Safety
/// `cols` holds the block's `ceil(l / 4)` gathered groups with pixels `0..npx` written.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn fix_slow(
    weights: &[i8],
    l: usize,
    bias: &[i32],
    q: &QuantArgs<'_>,
    slow: &[bool],
    cols: *const u32,
    npx: usize,
    out: &mut [i8],
    first: usize,
    plane: usize,
) {
    let cols = cols.cast::<i16>();
    for (oc, _) in slow.iter().enumerate().filter(|(_, s)| **s) {
        let w = &weights[oc * l..][..l];
        for p in 0..npx {
            let acc = w.iter().enumerate().fold(bias[oc], |a, (t, &wt)| {
                // SAFETY: tap t of pixel p < npx: halfword 16 (t / 4) + 4 p + (0, 2, 1, 3)[t %
                // 4] of the columns, written by the gather.
                let x = unsafe { cols.add(t / 4 * 16 + 4 * p + [0, 2, 1, 3][t % 4]).read() };
                a.wrapping_add(i32::from(wt) * i32::from(x))
            });
            out[oc * plane + first + p] = q.output(oc, acc);
        }
    }
}
