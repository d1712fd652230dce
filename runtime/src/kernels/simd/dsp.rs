//! Cortex-M4/M7 DSP extension (every thumbv7em core): int8 convolutions as im2col plus an
//! `SXTB16` + `SMLAD` microkernel, as CMSIS-NN does (`arm_nn_mat_mult_kernel_s8_s16` with
//! `read_and_pad_reordered`). Stable Rust has no DSP intrinsics, so the kernel is inline
//! assembly; this module is compiled only under `cfg(simd_dsp)` (set by `runtime/build.rs` on
//! thumbv7em targets).
//!
//! The engine ([`Conv::run`]) is its own, not the shared [`Geom::blocks`](super::Geom); where it
//! declines (unusual arguments, see there) the reference runs:
//!
//! - **Column layout.** A block holds [`PIX`] = 4 output pixels. Their windows are cut into
//!   pairs of taps (`x - zero_point` as i16, low half and high half); pairs `2 g` and
//!   `2 g + 1` form group `g`, 8 words at word `8 g`: for pixel `q`, words `2 q` and
//!   `2 q + 1`, so one `LDM` fetches two pixels' pairs. In the natural order, group `g` holds
//!   taps `t0..t3` (in `(ic, ky, kx)` order like the weights) as `(t0, t2)` and `(t1, t3)`:
//!   the order `SXTB16` splits a weight word into (`SXTB16 w` = `(w0, w2)`,
//!   `SXTB16 w, ROR #8` = `(w1, w3)`), so the int8 weights need no re-ordering. Layers whose
//!   weights are widened (below) with 3-tap window rows use the row-paired order instead
//!   ([`Conv::rows3_paired`]): per 2 rows `a`, `b`, the pairs `(a0, a2)`, `(b0, b2)`,
//!   `(a1, b1)`, which are cheaper to gather. The columns live with the rest of the
//!   engine's buffers in the caller's scratch ([`Conv::SCRATCH`]).
//! - **Microkernel** ([`Conv::block`]: every output channel for one block, the channel loop
//!   in the assembly too). Per group of 4 taps, one output channel and 4 pixels: one `LDR` of
//!   4 weights, 2 `SXTB16`, 2 `LDM` of 4 column words and 8 `SMLAD`: 13 instructions for 16
//!   multiply-accumulates. The group loop is unrolled 8 deep; the count of groups is a
//!   compile-time constant, so the remainder is unrolled by the assembler (`.rept`), and a
//!   partial last group reads its 1 to 3 weights with `LDRB`/`LDRH`, never past the row. The
//!   accumulators start at the bias (one `LDMDB` of the channel's record, which also loads
//!   its requantisation form and the loop's trip count). For layers whose weights fit the
//!   work buffer once sign-extended (`edge`'s first convolution: 16 channels, so each weight
//!   is otherwise extended again for every 4 pixels), [`Conv::widen`] extends them once per
//!   call and the kernel loads the two pairs with one `LDRD`: 11 instructions per group. A
//!   block of 1 or 2 pixels (the end of a call) runs a 2-pixel variant (none is compiled
//!   where the output width is a multiple of 4).
//! - **Requantisation** in the same assembly ([`super::dsp_requant`], where the host tests
//!   it): a `TBB` on the channel's form, then per output an `LDM` of the constants chosen by
//!   the accumulator's sign, a 64-bit multiply-add and `SSAT`. Each channel takes the
//!   cheapest of four forms whose constants exist for both signs ([`prepare`]): fast, 7
//!   instructions an output (right shifts of 1 to 29: what calibration gives; the zero
//!   multiplier); right shift, 8 (any right shift and zero point); unified, 8 (no shift, or
//!   left shifts where the channel's accumulators, bounded by its bias and window, cannot
//!   wrap); general, 10 (every multiplier, shift, zero point and accumulator). Only encodings
//!   no quantiser produces (a mantissa in (0, 2^30) or negative) get [`QuantArgs::output`]
//!   after the block ([`fix_slow`]).
//! - **im2col** ([`Conv::gather_strip`]): for each output row the input rows it reads are
//!   copied once into a strip padded with the zero point ([`Conv::build_strip`]), so every
//!   window, border or not, is a plain copy with compile-time offsets. For 3 x 3 kernels
//!   (dilation 1) each window row is one unaligned word load, split by `SXTAB16` (which
//!   also subtracts the zero point) and joined by `PKHBT` ([`Conv::rows3`]: 21 instructions
//!   per 12 taps; 17 in the row-paired order); other kernels up to 5 x 5 take an `LDRSB` per
//!   tap, `PKHBT` + `SSUB16` per pair and one `STRD` per group (27 per 12 taps). Layers whose
//!   strip does not fit the work buffer gather from the input with a validity mask per tap
//!   ([`Conv::gather_masked`]); kernels wider than 5 take a generic gather.
//!
//! The sums are exact 32-bit integers (`SMLAD` wraps like `wrapping_add`), so results are
//! bit-identical to the reference. Memory: every buffer is in the caller's scratch
//! ([`Conv::SCRATCH`] i16 for the layer, which the generated model's `SCRATCH_S8` covers): the
//! work area (what the layer uses of [`WORK`]), the columns and `80 OC` bytes of per-channel
//! records. The engine's own frame is a few hundred bytes.

use core::arch::asm;
use core::mem::MaybeUninit;

use super::PIX;
use super::dsp_requant::{
    FAST, GENERAL, RIGHT, SLOT, Slot, UNIFIED, fast_max_shift, fast_slot, general_slot, is_fast,
    is_general, is_right, is_unified, requant_fast, requant_general, requant_right,
    requant_unified, right_slot, unified_slot,
};
use crate::kernels::args::QuantArgs;
use crate::quant::Requant;

/// Groups of 4 taps per trip of the kernel's loop.
const UNROLL: usize = 8;
/// Most bytes of the engine's work area (in the caller's scratch): the zero-point-padded copy
/// of the input rows of one output row (layers whose copy does not fit gather from the input
/// with masks), the columns and, where they fit after them, the weights sign-extended once
/// per call (so the kernel loads them with `LDRD`
/// instead of `LDR` + 2 `SXTB16` per group: for layers with few output channels, whose
/// weights would otherwise be extended again for every block of pixels). 4.5 KiB holds all
/// three for `edge`'s first convolution (816 + 736 + 2,944 bytes); each layer uses only what
/// it needs ([`Conv::NEED`]).
const WORK: usize = 4608;

/// What the kernel reads per output channel: a head (one `LDMDB` loads it into `r4` to `r9`:
/// the bias into the 4 accumulators, the channel's requantisation form and the trip count of
/// the sums' loop), then the requantisation constants ([`dsp_requant`](super::dsp_requant))
/// for accumulators >= 0 and, [`SLOT`] bytes on, < 0, in the channel's form.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct Rec {
    /// `[bias, bias, form, trips, bias, bias]` (form: `FAST` to [`GENERAL`] of
    /// [`dsp_requant`](super::dsp_requant)).
    head: [u32; 6],
    pos: Slot,
    /// Never read.
    gap: MaybeUninit<[u32; 2]>,
    neg: Slot,
}

/// Bytes from one channel's [`Rec`] to the next (the kernel's step): 80.
const REC: usize = core::mem::size_of::<Rec>();
const _: () = assert!(
    core::mem::offset_of!(Rec, neg) - core::mem::offset_of!(Rec, pos) == SLOT
        && REC == 24 + SLOT + core::mem::size_of::<Slot>()
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

/// The DSP engine for one convolution shape (`[IC, IH, IW, OC, K, S, D, P]` as const
/// parameters, as the dispatch ([`super::engine`]) passes them on).
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

    /// Output rows `oy0..oy0 + rows` into `out` (`[OC][rows][OW]`), like the
    /// reference's int8 convolution (bit for bit). Returns `false`, having
    /// done nothing, where this engine does not apply: an input zero point outside int8 (the
    /// padding of the strip) or whose `x - zero_point` does not fit 16 bits, a `scratch`
    /// shorter than [`Conv::SCRATCH`], or lengths that do not fit the shape (the caller has
    /// checked them).
    ///
    /// Every buffer the engine uses is in `scratch` (at its first 8-byte aligned byte): the
    /// strip, the columns, the widened weights ([`Conv::NEED`] bytes, at most [`WORK`]) and
    /// the per-channel records ([`Conv::RECS_AT`]). Never inlined, so that its small frame
    /// exists only during the call.
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
        let bytes = scratch.as_mut_ptr().cast::<u8>();
        let skip = bytes.align_offset(8);
        if skip > 6 || skip + Self::TOTAL > 2 * scratch.len() {
            return false;
        }
        // The engine's buffers, 8-byte aligned, TOTAL bytes of `scratch`.
        let base = bytes.wrapping_add(skip);
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

        // The work area: the strip, the columns, then (where they fit WORK) the sign-extended
        // weights; the columns of a layer whose window does not fit WORK after it; then the
        // records. Every region ends within TOTAL bytes from `base`.
        let strip = base.cast::<i8>();
        let mut strip_row = usize::MAX;
        if use_strip {
            // SAFETY: STRIP + SLACK <= NEED <= TOTAL bytes from `strip`.
            unsafe {
                strip
                    .add(Self::STRIP)
                    .cast::<[u8; 4]>()
                    .write_unaligned([0; 4])
            };
        }
        // 4-byte aligned (COLS_AT and NEED8 are multiples of 8), GROUPS * 8 words within
        // TOTAL. Stale but initialised (the scratch is an i16 slice): the kernel reads the
        // unused pixels of a short block and drops their sums.
        let cols = strip.wrapping_add(Self::COLS).cast::<u32>();
        let w = if Self::WIDE_AT + Self::WIDE <= WORK {
            let wide = strip.wrapping_add(Self::WIDE_AT).cast::<u32>();
            // SAFETY: `wide` is 8-byte aligned (WIDE_AT is a multiple of 8 from the aligned
            // `base`) with OC GROUPS 8 bytes left within NEED; `weights` is OC L long
            // (checked).
            unsafe { Self::widen(weights, wide) };
            wide.cast::<i8>().cast_const()
        } else {
            weights.as_ptr()
        };

        // Written whole by `prepare` (not zeroed first: 80 B a channel, every call).
        // SAFETY: OC records from RECS_AT (a multiple of 8, so aligned for `Rec`) end at
        // TOTAL; nothing else points into them while `recs` lives.
        let recs = unsafe {
            core::slice::from_raw_parts_mut(
                base.wrapping_add(Self::RECS_AT).cast::<MaybeUninit<Rec>>(),
                OC,
            )
        };
        let mut slow = [false; OC];
        let any_slow = prepare(recs, &mut slow, bias, q, Self::L, Self::TRIPS as u32);
        // SAFETY: `prepare` initialised every record; `MaybeUninit<Rec>` has `Rec`'s layout.
        let recs = unsafe { &*recs.as_ptr().cast::<[Rec; OC]>() };

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
                        // SAFETY: `work` has NEED >= STRIP bytes from `strip`; `input` is
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
            // The kernel for this layer and block size (every block has 4 pixels where the
            // output width is a multiple of 4: no code for short blocks).
            let wide = Self::WIDE_AT + Self::WIDE <= WORK;
            let short = npx <= 2 && !Self::OW.is_multiple_of(PIX);
            // SAFETY: `recs` holds OC > 0 records; `dst + oc stride` has 4 (2 when npx <= 2)
            // writable bytes for every oc < OC: `first + npx <= plane` in `out`, or `tmp`;
            // `w` holds the weights (OC rows of L bytes, checked above, or their widened
            // copy); `cols` holds GROUPS gathered groups of 4 pixels (the unused pixels of a
            // short block hold stale but initialised values, whose sums are dropped).
            unsafe {
                match (wide, short) {
                    (true, false) => Self::block::<true, 4>(recs, dst, stride, w, cols),
                    (true, true) => Self::block::<true, 2>(recs, dst, stride, w, cols),
                    (false, false) => Self::block::<false, 4>(recs, dst, stride, w, cols),
                    (false, true) => Self::block::<false, 2>(recs, dst, stride, w, cols),
                }
            };
            if npx == 1 || npx == 3 {
                for (oc, t) in tmp.iter().enumerate() {
                    out[oc * plane + first..][..npx].copy_from_slice(&t[..npx]);
                }
            }
            if any_slow {
                // SAFETY: `cols` holds the block's gathered columns (GROUPS groups, pixels
                // 0..npx written; tap t of pixel p at halfword `col_halfword(t, p, L,
                // PAIRED)`).
                unsafe {
                    fix_slow(
                        weights,
                        Self::L,
                        bias,
                        q,
                        &slow,
                        cols,
                        Self::PAIRED,
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

    /// Trips of the kernel's loop over groups of taps (unrolled [`UNROLL`] deep; the records
    /// carry it, [`Rec::head`]), and the groups after them.
    const TRIPS: usize = Self::WHOLE / UNROLL;
    const REM: usize = Self::WHOLE % UNROLL;
    /// Whole groups the loop walks: every group for widened weights (the partial last group is
    /// padded with zero weights), else those before the partial last group.
    const WHOLE: usize = if Self::WIDE_AT + Self::WIDE <= WORK {
        Self::GROUPS
    } else {
        Self::L / 4
    };

    /// Every output channel of one gathered block: sums from the bias (`SMLAD`) for the
    /// block's first `PX` (4 or 2) pixels, requantised in each channel's form (the record's,
    /// through a `TBB`: [`requant_fast!`] to [`requant_general!`]) and
    /// stored at `dst + oc stride + 0..PX`. `WIDE`: `w` holds the weights sign-extended by
    /// [`Conv::widen`] (8 bytes a group), else the int8 rows.
    ///
    /// # Safety
    /// `w` readable for `OC L` bytes (`OC GROUPS 8` when `WIDE`), `cols` 4-byte aligned and
    /// readable for `GROUPS * 32` bytes, `dst + oc stride` writable for `PX` bytes for every
    /// `oc < OC`; `recs` has `OC > 0` records written by [`prepare`] (forms 0 to 3, trips
    /// [`Conv::TRIPS`]).
    #[inline(never)]
    unsafe fn block<const WIDE: bool, const PX: usize>(
        recs: &[Rec; OC],
        dst: *mut i8,
        stride: usize,
        w: *const i8,
        cols: *const u32,
    ) {
        let first = &raw const recs[0].pos;
        let end = first.cast::<u8>().wrapping_add(REC * OC);
        // The end of one channel: rewind the columns, step to the next record and output
        // row, loop back while records remain.
        macro_rules! next {
            () => {
                concat!(
                    ".if {rewind_lo}\n",
                    "subw lr, lr, #{rewind_lo}\n",
                    ".endif\n",
                    ".if {rewind_hi}\n",
                    "sub lr, lr, #{rewind_hi}\n",
                    ".endif\n",
                    "add r0, r0, #{rec}\n",
                    "ldrd r2, r3, [sp]\n",
                    "add r1, r1, r3\n",
                    "cmp r0, r2\n",
                    "bne 2b\n",
                )
            };
        }
        // The asm shared by the four variants: `$group` is one group of 4 taps (weights,
        // columns, SMLAD), `$tail` the partial last group, then the accumulators and their
        // output bytes.
        macro_rules! block_asm {
            ($group:expr, $tail:expr, [$($acc:literal, $q:literal);*]) => {
                // SAFETY: the loop runs once per record (OC > 0), from `first` to `end` in
                // steps of one record (REC bytes). Per channel it loads the record's head
                // below r0 (the bias, the form, 0 to 3, in r6 and the trip count in r7),
                // reads one row of weights (whole groups post-incremented; the 1 to 3 bytes of
                // a partial last group with LDRB/LDRH, never past the row), `GROUPS * 32`
                // column bytes with LDM (aligned by the caller's contract) and rewinds; the
                // TBB picks one of the four requantisations (its table's entries are the
                // assembler's offsets of labels 5, 6, 7 and 9, all forward and within reach),
                // which read the record at r0 and write `dst + oc stride + 0..PX`. r6 and r7
                // (not allocatable) are saved on the stack with the loop's end and stride and
                // restored; the pushes balance. Every other register it changes is an
                // operand or a clobber.
                unsafe {
                    asm!(
                        "push {{r2, r3, r6, r7}}",
                        "2:",
                        "ldmdb r0, {{r4, r5, r6, r7, r8, r9}}",
                        "push {{r0, r1}}",
                        ".if {trips}",
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
                        "tbb [pc, r6]",
                        "4:",
                        ".byte (5f - 4b) / 2",
                        ".byte (6f - 4b) / 2",
                        ".byte (7f - 4b) / 2",
                        ".byte (9f - 4b) / 2",
                        ".p2align 1",
                        "5:",
                        $(requant_fast!($acc, $q),)*
                        next!(),
                        "b 8f",
                        "6:",
                        $(requant_unified!($acc, $q),)*
                        next!(),
                        "b 8f",
                        "7:",
                        $(requant_right!($acc, $q),)*
                        next!(),
                        "b 8f",
                        "9:",
                        $(requant_general!($acc, $q),)*
                        next!(),
                        "8:",
                        "pop {{r2, r3, r6, r7}}",
                        trips = const Self::TRIPS,
                        unroll = const UNROLL,
                        rem = const Self::REM,
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
        match (WIDE, PX) {
            (false, 4) => block_asm!(
                concat!("ldr r10, [r12], #4\n", extend!(), mac4!()),
                narrow_tail!(concat!(extend!(), mac4!())),
                ["r4", "0"; "r5", "1"; "r8", "2"; "r9", "3"]
            ),
            (false, _) => block_asm!(
                concat!("ldr r10, [r12], #4\n", extend!(), mac2!()),
                narrow_tail!(concat!(extend!(), mac2!())),
                ["r4", "0"; "r5", "1"]
            ),
            (true, 4) => block_asm!(
                concat!("ldrd r11, r10, [r12], #8\n", mac4!()),
                no_tail!(),
                ["r4", "0"; "r5", "1"; "r8", "2"; "r9", "3"]
            ),
            (true, _) => block_asm!(
                concat!("ldrd r11, r10, [r12], #8\n", mac2!()),
                no_tail!(),
                ["r4", "0"; "r5", "1"]
            ),
        }
    }

    /// Sign-extend every weight row into `wide` in the order of the columns: per group of 4
    /// taps `w0..w3`, the words `(w0, w2)` and `(w1, w3)` (what `SXTB16` makes of the weight
    /// word), or the row-paired order ([`Conv::PAIRED`]: per 2 rows of 3 taps `a`, `b`, the
    /// words `(a0, a2)`, `(b0, b2)`, `(a1, b1)`); a partial last group padded with zero
    /// weights.
    ///
    /// # Safety
    /// `wide` 8-byte aligned and writable for `OC GROUPS 8` bytes; `weights` `OC L` long.
    #[inline(never)]
    unsafe fn widen(weights: &[i8], wide: *mut u32) {
        let mut out = wide;
        macro_rules! put {
            ($v:expr) => {{
                // SAFETY: `out` walks `wide` a word at a time, OC GROUPS 2 words in all (each
                // row's words are padded to GROUPS 2 below).
                unsafe { out.write($v) };
                out = out.wrapping_add(1);
            }};
        }
        if Self::PAIRED && Self::L.is_multiple_of(6) {
            // SAFETY: OC rows of L / 6 pairs of rows, contiguous in `weights` (OC L long);
            // OC GROUPS 2 words from `wide` (3 L / 6 per row plus the padding word).
            unsafe { Self::widen_pairs(weights.as_ptr(), wide, OC) };
            return;
        }
        // Not unrolled over the channels (the code per row is long).
        let rows = core::hint::black_box(weights.chunks_exact(Self::L));
        for row in rows {
            if Self::PAIRED {
                // SAFETY: the row's L / 6 pairs of rows (6 bytes each) are within it, their
                // 3 L / 6 words within `wide` (see `put!`).
                out = unsafe { Self::widen_pairs(row.as_ptr(), out, 1) };
                if Self::L % 6 != 0 {
                    // A lone last row: (a0, a2), (a1, 0).
                    let i = Self::L / 6 * 6;
                    let w =
                        u32::from_le_bytes([row[i] as u8, row[i + 1] as u8, row[i + 2] as u8, 0]);
                    put!(ext::<0>(0, w));
                    put!(ext::<8>(0, w));
                }
                if Self::PAIRS % 2 == 1 {
                    put!(0);
                }
            } else {
                let (whole, tail) = row.split_at(Self::L / 4 * 4);
                for g in whole.chunks_exact(4) {
                    let (e, o) = extend(u32::from_le_bytes([
                        g[0] as u8, g[1] as u8, g[2] as u8, g[3] as u8,
                    ]));
                    put!(e);
                    put!(o);
                }
                if !tail.is_empty() {
                    let mut b = [0u8; 4];
                    for (d, &t) in b.iter_mut().zip(tail) {
                        *d = t as u8;
                    }
                    let (e, o) = extend(u32::from_le_bytes(b));
                    put!(e);
                    put!(o);
                }
            }
        }
    }

    /// Pairs of the row-paired order per weight row.
    const PAIRS: usize = Self::L / 6 * 3 + Self::L % 6 / 3 * 2;

    /// `rows` weight rows' `L / 6` pairs of rows of 3 taps `a`, `b` (bytes
    /// `a0 a1 a2 b0 b1 b2`) from `src` as the words `(a0, a2)`, `(b0, b2)`, `(a1, b1)` from
    /// `dst`, each row's words followed by a zero word where `L % 6 == 0` and their count is
    /// odd; returns `dst` past them. The words at `6 i` and `6 i + 2`, `SXTB16` with the
    /// rotations 0, 8 and 16, one `PKHBT` and one `STM`: 26 instructions per 3 pairs.
    ///
    /// # Safety
    /// `rows > 0`; `src` readable for `rows` rows of `L` bytes, the next row `L` bytes on
    /// (only the first row's pairs where `L % 6 != 0`); `dst` 4-byte aligned and writable
    /// for `rows (3 L / 6 + 1)` words.
    #[inline(always)]
    unsafe fn widen_pairs(src: *const i8, dst: *mut u32, rows: usize) -> *mut u32 {
        macro_rules! pair {
            () => {
                concat!(
                    "ldr r12, [{s}, #2]\n",
                    "ldr r5, [{s}], #6\n",
                    "sxtb16 r2, r5\n",
                    "sxtb16 r3, r12, ror #8\n",
                    "sxtb16 r5, r5, ror #8\n",
                    "sxtb16 r12, r12, ror #16\n",
                    "pkhbt r4, r5, r12, lsl #16\n",
                    "stm {d}!, {{r2, r3, r4}}\n",
                )
            };
        }
        let (mut s, mut d) = (src, dst);
        // SAFETY: per row, reads L / 6 * 6 bytes (unaligned word loads, each within a pair
        // of rows; the rows are contiguous where more than one) and writes 3 L / 6 words
        // (and the padding word) from `dst` (aligned), by the caller's contract; touches only
        // its operands and clobbers, no stack; the loops run `trips` and `rows` times.
        unsafe {
            asm!(
                "3:",
                ".if {trips}",
                "movw {n}, #{trips}",
                "2:",
                ".rept 3",
                pair!(),
                ".endr",
                "subs {n}, {n}, #1",
                "bne 2b",
                ".endif",
                ".rept {rem}",
                pair!(),
                ".endr",
                ".if {pad}",
                "movs {n}, #0",
                "str {n}, [{d}], #4",
                ".endif",
                "subs {rows}, {rows}, #1",
                "bne 3b",
                trips = const Self::L / 18,
                rem = const Self::L / 6 % 3,
                pad = const (Self::L.is_multiple_of(6) && Self::PAIRS % 2 == 1) as u32,
                s = inout(reg) s,
                d = inout(reg) d,
                rows = inout(reg) rows => _,
                n = out(reg) _,
                out("r2") _,
                out("r3") _,
                out("r4") _,
                out("r5") _,
                out("r12") _,
                options(nostack),
            );
        }
        let _ = s;
        d
    }

    /// Bytes of the zero-point-padded input rows one output row reads: `IC` channels of
    /// `D (K - 1) + 1` rows of `IW + 2 P`.
    const STRIP_ROWS: usize = D * (K - 1) + 1;
    const STRIP_W: usize = IW + 2 * P;
    const STRIP: usize = IC * Self::STRIP_ROWS * Self::STRIP_W;
    /// Initialised bytes after the strip: [`Conv::rows3`] reads a word per window row, so the
    /// last row's window reads one byte past the strip.
    const SLACK: usize = 4;

    /// Bytes of the work area the layer uses within [`WORK`]: the strip (and its slack), the
    /// room for the columns, the widened weights, each where it fits (as [`Conv::run`] lays
    /// them out).
    const NEED: usize = {
        let mut n = 0;
        if Self::STRIP + Self::SLACK <= WORK && K <= 5 {
            n = Self::STRIP + Self::SLACK;
        }
        if Self::COLS_AT + Self::GROUPS * 32 <= WORK && Self::COLS_AT + Self::GROUPS * 32 > n {
            n = Self::COLS_AT + Self::GROUPS * 32;
        }
        if Self::WIDE_AT + Self::WIDE <= WORK && Self::WIDE_AT + Self::WIDE > n {
            n = Self::WIDE_AT + Self::WIDE;
        }
        n.div_ceil(8) * 8
    };
    /// Offset of the columns: in the work area, or after it for a window too long for it.
    const COLS: usize = if Self::COLS_AT + Self::GROUPS * 32 <= WORK {
        Self::COLS_AT
    } else {
        Self::NEED
    };
    /// Offset of the per-channel records ([`Rec`], `OC` of them), after the columns.
    const RECS_AT: usize = {
        let cols_end = Self::COLS + Self::GROUPS * 32;
        if cols_end > Self::NEED {
            cols_end
        } else {
            Self::NEED
        }
    };
    /// Bytes of the engine's buffers in the scratch.
    const TOTAL: usize = Self::RECS_AT + OC * REC;
    /// i16 values of scratch this layer needs: [`Conv::TOTAL`] bytes and up to 6 to align
    /// them to 8 (an `[i16]` is only 2-byte aligned).
    pub(crate) const SCRATCH: usize = (Self::TOTAL + 6).div_ceil(2);

    /// Offset of the columns in the work area when they fit it, and offset and size of the
    /// widened weights.
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
                unsafe {
                    if Self::PAIRED {
                        Self::rows3_paired(s, ch, row, d, 12, nzz)
                    } else {
                        Self::rows3(s, ch, row, d, 12, nzz)
                    }
                };
                s = s.wrapping_add(4 * ch);
                d = d.wrapping_add(72);
            }
            if !IC.is_multiple_of(4) {
                // SAFETY: as above, the last `IC % 4` channels.
                unsafe {
                    if Self::PAIRED {
                        Self::rows3_paired(s, ch, row, d, 3 * (IC % 4), nzz)
                    } else {
                        Self::rows3(s, ch, row, d, 3 * (IC % 4), nzz)
                    }
                };
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

    /// Whether the taps are in the row-paired order ([`Conv::rows3_paired`]): for `K = 3`,
    /// `D = 1` layers gathered from the strip whose weights [`Conv::widen`] re-orders anyway.
    const PAIRED: bool =
        Self::ROWS3 && Self::STRIP + Self::SLACK <= WORK && Self::WIDE_AT + Self::WIDE <= WORK;

    /// [`Conv::rows3`] in the row-paired order: rows `a`, `b` (2 j, 2 j + 1) give the pairs
    /// `(a0, a2)`, `(b0, b2)`, `(a1, b1)` (a lone last row `(a0, a2)`, `(a1, _)`), pair `i`
    /// in word `i % 2` of group `i / 2`. Every 4 rows take 4 loads, 8 `SXTAB16`, 2 `PKHBT` and
    /// 3 `STRD` (17 instructions for 12 taps, 21 in the natural order). The weights are
    /// re-ordered to match by [`Conv::widen`].
    ///
    /// # Safety
    /// As [`Conv::rows3`].
    #[inline(always)]
    unsafe fn rows3_paired(
        src: *const i8,
        ch: usize,
        row: usize,
        dst: *mut u32,
        nrows: usize,
        nzz: u32,
    ) {
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
        let (e, o) = (ext::<0>, ext::<8>);
        let (mut j, mut g) = (0, 0);
        while j + 4 <= nrows {
            let (wa, wb, wc, wd) = (word(j), word(j + 1), word(j + 2), word(j + 3));
            store(g, e(nzz, wa), e(nzz, wb));
            store(g + 1, pk(o(nzz, wa), o(nzz, wb)), e(nzz, wc));
            store(g + 2, e(nzz, wd), pk(o(nzz, wc), o(nzz, wd)));
            j += 4;
            g += 3;
        }
        match nrows - j {
            1 => {
                let wa = word(j);
                store(g, e(nzz, wa), o(nzz, wa));
            }
            2 => {
                let (wa, wb) = (word(j), word(j + 1));
                store(g, e(nzz, wa), e(nzz, wb));
                let ab = pk(o(nzz, wa), o(nzz, wb));
                store(g + 1, ab, ab);
            }
            3 => {
                let (wa, wb, wc) = (word(j), word(j + 1), word(j + 2));
                store(g, e(nzz, wa), e(nzz, wb));
                store(g + 1, pk(o(nzz, wa), o(nzz, wb)), e(nzz, wc));
                let oc = o(nzz, wc);
                store(g + 2, oc, oc);
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

/// Write every per-channel record of a call (bias, form, `trips`, requantisation constants):
/// each channel in the cheapest form whose constants exist for both signs
/// ([`dsp_requant`](super::dsp_requant)): fast; right shift; unified (with the channel's
/// accumulators bounded by `|bias| + taps 128 (128 + |input zp|)`); general. Channels whose
/// requantisation has none (an encoding no quantiser produces) are marked in `slow` (general
/// form, zero constants: the kernel stores garbage there, which [`fix_slow`] overwrites).
/// Returns whether any channel is slow.
///
/// Runs once per call (for `edge`'s fused layers, once per 2 output rows): channels in the
/// general form (or none) take [`prepare_other`], out of line.
#[inline(never)]
fn prepare(
    recs: &mut [MaybeUninit<Rec>],
    slow: &mut [bool],
    bias: &[i32],
    q: &QuantArgs<'_>,
    taps: usize,
    trips: u32,
) -> bool {
    let zp = q.output_zero_point;
    let max_shift = fast_max_shift(zp);
    // The largest |sum of taps| of a window: |w| <= 128, |x - zp| <= 128 + |zp|.
    let sums = (taps as u64 * 128 * (128 + u64::from(q.input_zero_point.unsigned_abs())))
        .min(u64::from(u32::MAX)) as u32;
    let mut any = false;
    let rows = recs
        .iter_mut()
        .zip(bias)
        .zip(q.requant_pos.iter().zip(q.requant_neg));
    for (((r, &b), (&p, &n)), s) in rows.zip(slow) {
        let (form, p, n) = if is_fast(p, max_shift) && is_fast(n, max_shift) {
            (FAST, fast_slot(p, zp, false), fast_slot(n, zp, true))
        } else if is_right(p) && is_right(n) {
            (RIGHT, right_slot(p, zp, false), right_slot(n, zp, true))
        } else {
            let bound = b.unsigned_abs().saturating_add(sums);
            if is_unified(p, max_shift, bound) && is_unified(n, max_shift, bound) {
                (
                    UNIFIED,
                    unified_slot(p, zp, false),
                    unified_slot(n, zp, true),
                )
            } else {
                *s = prepare_other(r, b, p, n, zp, trips);
                any |= *s;
                continue;
            }
        };
        let b = b as u32;
        r.write(Rec {
            head: [b, b, form, trips, b, b],
            pos: p,
            gap: MaybeUninit::uninit(),
            neg: n,
        });
    }
    any
}

/// [`prepare`] for one channel in the general form (or none: then it is slow, and this
/// returns `true`).
#[inline(never)]
fn prepare_other(
    r: &mut MaybeUninit<Rec>,
    b: i32,
    p: Requant,
    n: Requant,
    zp: i32,
    trips: u32,
) -> bool {
    let (p, n, slow) = if is_general(p) && is_general(n) {
        (general_slot(p, zp, false), general_slot(n, zp, true), false)
    } else {
        (Slot::default(), Slot::default(), true)
    };
    let b = b as u32;
    r.write(Rec {
        head: [b, b, GENERAL, trips, b, b],
        pos: p,
        gap: MaybeUninit::uninit(),
        neg: n,
    });
    slow
}

/// The halfword of tap `t` of pixel `p` in a block's columns (window length `l`): group `g`,
/// word `w` and half `h` at `16 g + 4 p + 2 w + h`, in the natural order (taps `t0..t3` of
/// group `t / 4` as `(t0, t2)`, `(t1, t3)`) or, with `paired`, the row-paired one
/// ([`Conv::rows3_paired`]: rows of 3 taps, pairs `(a0, a2)`, `(b0, b2)`, `(a1, b1)` per 2
/// rows, `(a0, a2)`, `(a1, _)` for a lone last row).
#[inline(never)]
fn col_halfword(t: usize, p: usize, l: usize, paired: bool) -> usize {
    let (pair, hi) = if paired {
        let (r, kx) = (t / 3, t % 3);
        let j = r / 2;
        let lone = r % 2 == 0 && r + 1 == l / 3;
        match (r % 2, kx) {
            (0, 0) => (3 * j, 0),
            (0, 2) => (3 * j, 1),
            (0, _) if lone => (3 * j + 1, 0),
            (0, _) => (3 * j + 2, 0),
            (_, 0) => (3 * j + 1, 0),
            (_, 2) => (3 * j + 1, 1),
            _ => (3 * j + 2, 1),
        }
    } else {
        (t / 4 * 2 + t % 2, t % 4 / 2)
    };
    pair / 2 * 16 + 4 * p + 2 * (pair % 2) + hi
}

/// The outputs of the `slow` channels of one block (pixels `0..npx`, the block's first at
/// `first` in each `plane` of `out`): the sums again, portably, from the gathered columns
/// (window length `l`, in the row-paired order with `paired`: [`col_halfword`]), then
/// [`QuantArgs::output`].
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
    paired: bool,
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
                // SAFETY: tap t of pixel p < npx: halfword `col_halfword(t, p, l, paired)` of
                // the columns, written by the gather.
                let x = unsafe { cols.add(col_halfword(t, p, l, paired)).read() };
                a.wrapping_add(i32::from(wt) * i32::from(x))
            });
            out[oc * plane + first + p] = q.output(oc, acc);
        }
    }
}
