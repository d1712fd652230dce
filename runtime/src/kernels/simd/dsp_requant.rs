//! The requantisation of the Cortex-M DSP int8 convolutions ([`super::dsp`]): the constants
//! the kernel loads per output channel and accumulator sign, and the instruction sequences
//! that apply them. Plain Rust apart from the assembly text, so that the host can check both
//! against the reference ([`QuantArgs::output`](crate::kernels::args::QuantArgs::output))
//! over every multiplier, shift, zero point and accumulator: the tests below run the very
//! assembly strings the kernel is built from on a small interpreter of the few instructions
//! they use.
//!
//! The reference is TFLite's `MultiplyByQuantizedMultiplier` ([`Requant::apply`]) plus the
//! output zero point, clamped to int8:
//! `clamp(RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x, m), e) + zp)` with
//! `x = acc << left` (wrapping), `left = max(shift, 0)`, `e = min(max(-shift, 0), 31)`; the
//! record is chosen by the sign of the accumulator (`requant_pos` / `requant_neg`).
//!
//! Four forms, all one `LDM` of the record the accumulator's sign selects (`LSR #31`, then
//! `ADD ... LSL #5`: records are [`SLOT`] bytes apart), a 64-bit multiply-add and `SSAT`;
//! the kernel picks one per output channel (the cheapest whose constants exist for both
//! signs):
//!
//! - **Fast** ([`fast`], [`requant_fast!`], 7 instructions an output): a right shift
//!   `e` in 1..=29 with a small output zero point. The doubling high multiply, the rounding
//!   shift and the zero point fold into `(acc m + k) >> (31 + e)` with one 64-bit constant
//!   `k`: `SMLAL`, `ASR`, `SSAT`, `STRB`. What calibration produces (multipliers below 0.5);
//!   also the zero multiplier.
//! - **Unified** ([`unified`], [`requant_unified!`], 8 instructions an output): the fast
//!   form's constants, the zero multiplier, no shift, and left shifts where the channel's
//!   accumulators cannot wrap when shifted (`|bias| + taps 128 (128 + |input zp|)` bounds
//!   them), every output zero point: `hi = ((acc s + k) >> 32) + acc q`, then `ASR`, with the
//!   multiplier `m 2^(left + 1) = q 2^32 + s` split so that `s` fits a signed operand
//!   (`SMLAL`, `MLA`, `ASR`). Right shifts that the bounded accumulators cannot reach give
//!   the zero point itself. What a leaky ReLU with multipliers of 0.5 and more or above 1 on
//!   either side gives.
//! - **Right shift** ([`right`], [`requant_right!`], 8 instructions an output): every right
//!   shift (tiny multipliers included) with every output zero point and accumulator: the
//!   fast form with the zero point added after the shift (`SMLAL`, `ASR`, `ADD`).
//! - **General** ([`general`], [`requant_general!`], 10 instructions an output): every
//!   multiplier `m` in [2^30, 2^31) or 0, every shift (left or right) and zero point, every
//!   accumulator. `x = acc << left` (`LSL`, wrapping like the reference), then
//!   `hi = ((x s + 2^31 + c 2^32) >> 32) + x` with `s = 2 m - 2^32` (`SMLAL`, `ADD`): that is
//!   `SaturatingRoundingDoublingHighMul(x, m) + c` computed modulo 2^32, where `2 m` does not
//!   fit a signed operand but `s` does. With the rounding constant `c` chosen per sign so
//!   that the sum never leaves i32, `ASR e` is the rounding divide, and an `ADD` of the zero
//!   point (modulo 2^32, as the reference's `+` in a release build) precedes `SSAT`.
//!
//! Only encodings [`Requant::from_real`] never produces (a multiplier in (0, 2^30) or
//! negative) fall back to the scalar requantisation.

use crate::quant::Requant;

/// Bytes from the constants for accumulators >= 0 to those for accumulators < 0 (the
/// `LSL #5` of the sign select).
pub(crate) const SLOT: usize = 32;

/// One accumulator sign's constants as the kernel loads them (`LDM`): 6 words, of which the
/// fast form uses 4.
pub(crate) type Slot = [u32; 6];

/// The requantisation forms, in order of cost (the kernel's `TBB` index; bit `1 << form` of
/// [`forms`]): [`requant_fast!`], [`requant_unified!`], [`requant_right!`],
/// [`requant_general!`].
pub(crate) const FAST: u32 = 0;
pub(crate) const UNIFIED: u32 = 1;
pub(crate) const RIGHT: u32 = 2;
pub(crate) const GENERAL: u32 = 3;

/// The forms whose constants exist for `r` (either sign; `bound`: the largest `|acc|`), a
/// bit `1 << form` each: see [`fast`], [`unified`], [`right`] and [`general`]. 0 for
/// encodings no quantiser produces (a multiplier in (0, 2^30) or negative). The kernel's
/// set-up uses the same predicates, `is_*`.
#[cfg(test)]
pub(crate) fn forms(r: Requant, output_zero_point: i32, bound: u32) -> u32 {
    let max_shift = fast_max_shift(output_zero_point);
    (u32::from(is_fast(r, max_shift)) << FAST)
        | (u32::from(is_unified(r, max_shift, bound)) << UNIFIED)
        | (u32::from(is_right(r)) << RIGHT)
        | (u32::from(is_general(r)) << GENERAL)
}

/// Whether `r` has the general form: a multiplier in [2^30, 2^31) or 0.
#[inline(always)]
pub(crate) fn is_general(r: Requant) -> bool {
    r.multiplier == 0 || r.multiplier >= 1 << 30
}

/// Whether `r` has the right-shift form: a right shift (not `i32::MIN`, which the reference
/// does not shift at all: its negation wraps) or the zero multiplier.
#[inline(always)]
pub(crate) fn is_right(r: Requant) -> bool {
    r.multiplier == 0 || (r.multiplier >= 1 << 30 && r.shift < 0 && r.shift != i32::MIN)
}

/// Whether `r` has the fast form, given `max_shift = fast_max_shift(zp)`: a right shift of
/// 1 to `max_shift` (at most 29), or the zero multiplier.
#[inline(always)]
pub(crate) fn is_fast(r: Requant, max_shift: u32) -> bool {
    r.multiplier == 0
        || (r.multiplier >= 1 << 30 && (r.shift.wrapping_neg() as u32).wrapping_sub(1) < max_shift)
}

/// Whether `r` has the unified form for accumulators of at most `bound` in magnitude, given
/// `max_shift = fast_max_shift(zp)`: the fast form, no shift, a left shift `l` (`shift & 31`)
/// with `bound < 2^(31 - l)`, or a right shift `e` (capped at 31) with `bound < 2^(e - 1)`.
#[inline(always)]
pub(crate) fn is_unified(r: Requant, max_shift: u32, bound: u32) -> bool {
    let (m, shift) = (r.multiplier, r.shift);
    if m == 0 {
        return true;
    }
    if m < 1 << 30 {
        return false;
    }
    if shift >= 0 {
        let l = shift as u32 & 31;
        return l == 0 || bound < 1 << (31 - l);
    }
    is_fast(r, max_shift)
        || (shift != i32::MIN && bound < 1 << ((shift.wrapping_neg() as u32).min(31) - 1))
}

/// The largest right shift of the fast form for output zero point `zp` (`|zp| <= 2^(29-e)`),
/// 0 if none.
#[inline(always)]
pub(crate) fn fast_max_shift(zp: i32) -> u32 {
    let a = zp.unsigned_abs();
    if a <= 1 {
        29
    } else {
        29u32.saturating_sub(32 - (a - 1).leading_zeros())
    }
}

/// `(2^(e-1) - [negative] + zp 2^e) 2^31 + 2^30` as the low and high word of a 64-bit
/// constant (the sum in front of `2^31` within i32).
#[inline(always)]
fn rounding(e: u32, negative: bool, zp_e: i32) -> (u32, u32) {
    let a = (1i32 << (e - 1)) - i32::from(negative) + zp_e;
    (((a as u32 & 1) << 31) | 1 << 30, (a >> 1) as u32)
}

/// The fast form's constants for `r` applied to accumulators of one sign (`negative`: < 0),
/// or `None` where it is not exact.
///
/// For a multiplier `m` in [2^30, 2^31) and a right shift `e = -shift` in 1..=29 (left shift
/// 0), TFLite's `RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc, m), e) + zp` is
/// `(acc m + k) >> (31 + e)` with one 64-bit constant
/// `k = 2^30 + (2^(e-1) - [acc < 0]) 2^31 + zp 2^(31+e)`:
/// the doubling high multiply is `floor((acc m + 2^30) / 2^31)` for either sign (its nudge
/// `1 - 2^30` for negative products, then truncation toward zero, is the same floor), the
/// rounding shift is `floor((y + 2^(e-1) - [y < 0]) / 2^e)`, and nested floors of integer
/// divisions merge. `y < 0` exactly when `acc < 0` (`m >= 2^30`; at `acc m = -2^30`, the one
/// product where the two differ, both give 0 for `e >= 1`). With `|zp| <= 2^(29-e)`,
/// `|acc m + k| < 2^63`: no overflow.
///
/// Words: `m`, `e - 1` (the `ASR` of the high word), then `k` low and high. The zero
/// multiplier takes this form too, for every zero point (`m = 0`, `k = zp 2^32`).
#[cfg(test)]
pub(crate) fn fast(r: Requant, zp: i32, negative: bool) -> Option<Slot> {
    (forms(r, zp, 0) & 1 << FAST != 0).then(|| fast_slot(r, zp, negative))
}

#[inline(always)]
pub(crate) fn fast_slot(r: Requant, zp: i32, negative: bool) -> Slot {
    if r.multiplier == 0 {
        return [0, 0, 0, zp as u32, 0, 0];
    }
    let e = r.shift.wrapping_neg() as u32;
    let (lo, hi) = rounding(e, negative, zp << e);
    [r.multiplier as u32, e - 1, lo, hi, 0, 0]
}

/// The right-shift form's constants for `r` applied to accumulators of one sign
/// (`negative`: < 0): a multiplier in [2^30, 2^31) with a right shift `e` (capped at 31),
/// every output zero point and accumulator; or the zero multiplier. `None` otherwise.
///
/// Words: `m`, `e - 1`, `zp`, then the 64-bit constant `k` low and high; the kernel computes
/// `ssat8((((acc m + k) >> 32) >> (e - 1)) + zp)`, the zero point added modulo 2^32 as the
/// reference's `+`. That is [`fast`]'s `(acc m + k) >> (31 + e)` with the zero point left
/// out of `k` (`k = 2^30 + (2^(e-1) - [negative]) 2^31`, so `|acc m + k| < 2^62 + 2^61 + 2^30`
/// never overflows) and added after the shift.
#[cfg(test)]
pub(crate) fn right(r: Requant, zp: i32, negative: bool) -> Option<Slot> {
    (forms(r, zp, u32::MAX) & 1 << RIGHT != 0).then(|| right_slot(r, zp, negative))
}

#[inline(always)]
pub(crate) fn right_slot(r: Requant, zp: i32, negative: bool) -> Slot {
    if r.multiplier == 0 {
        return [0, 0, zp as u32, 0, 0, 0];
    }
    let e = (r.shift.wrapping_neg() as u32).min(31);
    let (lo, hi) = rounding(e, negative, 0);
    [r.multiplier as u32, e - 1, zp as u32, lo, hi, 0]
}

/// The unified form's constants for `r` applied to accumulators of one sign (`negative`:
/// < 0) whose magnitude is at most `bound`, or `None` where it is not exact.
///
/// Words: `s`, `q`, the `ASR` of the high word `sh`, then the 64-bit constant `k` low and
/// high; the kernel computes `ssat8((((acc s + k) >> 32) + acc q) >> sh)`, the high word
/// and `acc q` modulo 2^32.
///
/// - The fast form's constants ([`fast`]) with `q = 0`: `(acc m + k) >> (32 + sh)`.
/// - Zero multiplier: `s = q = 0`, `k = zp 2^32`: the zero point, as `Requant::apply` gives 0.
/// - Left shift `l` (`shift & 31`, as the reference's `wrapping_shl`) or none, where
///   `bound 2^l < 2^31` (so `x = acc 2^l` does not wrap; always for `l = 0`): with
///   `M = m 2^(l + 1) = q 2^32 + s`, `s` in [-2^31, 2^31), the high word of `acc s + k` with
///   `k = 2^31 + zp 2^32`, plus `acc q`, is `floor((2 x m + 2^31) / 2^32) + zp`, TFLite's
///   doubling high multiply plus the zero point, modulo 2^32 as the reference's `+`; `sh = 0`.
/// - Right shift `e` (capped at 31) without the fast form, where `bound < 2^(e-1)`: the
///   doubling high multiply is at most `|acc|` in magnitude, so the rounding divide gives 0
///   and the result is the zero point (the zero multiplier's constants).
#[cfg(test)]
pub(crate) fn unified(r: Requant, zp: i32, negative: bool, bound: u32) -> Option<Slot> {
    (forms(r, zp, bound) & 1 << UNIFIED != 0).then(|| unified_slot(r, zp, negative))
}

#[inline(always)]
pub(crate) fn unified_slot(r: Requant, zp: i32, negative: bool) -> Slot {
    let (m, shift) = (r.multiplier, r.shift);
    if shift < 0 && m != 0 && is_fast(r, fast_max_shift(zp)) {
        let f = fast_slot(r, zp, negative);
        return [f[0], 0, f[1], f[2], f[3], 0];
    }
    if shift < 0 || m == 0 {
        return [0, 0, 0, 0, zp as u32, 0];
    }
    // M = m 2^(l + 1): s is M modulo 2^32 (as i32), q = round(M / 2^32) (m < 2^31, so the
    // rounding sum fits).
    let (m, l) = (m as u32, shift as u32 & 31);
    let (s, q) = if l == 31 {
        (0, m)
    } else {
        (m << (l + 1), (m + (1 << (30 - l))) >> (31 - l))
    };
    [s, q, 0, 1 << 31, zp as u32, 0]
}

/// The general form's constants for `r` applied to accumulators of one sign (`negative`:
/// < 0), or `None` for a multiplier outside {0} and [2^30, 2^31) (no quantiser produces one;
/// the caller then requantises with [`QuantArgs::output`](crate::kernels::args::QuantArgs::output)).
/// Exact for every shift, output zero point and accumulator.
///
/// Words: `s`, the left shift `a`, the right shift `b`, the zero point `z`, then the 64-bit
/// constant `k` low and high; the kernel computes
/// `ssat8(((((acc << a) s + k) >> 32) + (acc << a)) >> b) + z)`, every step modulo 2^32 but
/// the 64-bit multiply-add.
///
/// With `x = acc << left` (modulo 2^32, as [`Requant::apply`]'s `wrapping_shl`) and
/// `s = 2 m - 2^32` (in [-2^31, 0): fits where `2 m` does not), `x s + x 2^32 = 2 x m`, so the
/// high word plus `x` is, modulo 2^32, `floor((2 x m + 2^31 + c 2^32) / 2^32)` =
/// `y + c` with `y = floor((x m + 2^30) / 2^31)`, TFLite's doubling high multiply (for either
/// sign of the product, see [`fast`]), in [-2^31 + 1, 2^31 - 2].
///
/// - Left shift or none (`e = 0`): `c = 0`, `b = 0`, `z = zp`: `y + zp`, wrapping like the
///   reference's addition.
/// - Right shift `e` in 1..=31 (`left = 0`, `x = acc`): the rounding divide is
///   `floor((y + 2^(e-1) - [y < 0]) / 2^e)`, and `y < 0` only if `acc < 0`, where `y <= 0`
///   (at `y = 0` both roundings give 0). For accumulators < 0, `c = 2^(e-1) - 1` and
///   `z = zp`: `y + c` lies in [-2^31 + 2^(e-1), 2^30 - 1]. For accumulators >= 0 (`y >= 0`),
///   `c = 2^(e-1) - 2^e = -2^(e-1)`, which keeps `y + c` in [-2^30, 2^31 - 2], and the
///   missing `2^e`, one unit after the shift, goes into `z = zp + 1`. So `y + c` never wraps
///   and `ASR e` is the exact floor; the zero point is added modulo 2^32, as in the reference.
/// - Zero multiplier: `a = 32` makes `x = 0` (`LSL` by 32 or more gives 0), and with no
///   right shift (`b = 0`, `c = 0`) the result is `zp`, as `Requant::apply` gives 0 for any
///   shift.
#[cfg(test)]
pub(crate) fn general(r: Requant, zp: i32, negative: bool) -> Option<Slot> {
    (forms(r, zp, u32::MAX) & 1 << GENERAL != 0).then(|| general_slot(r, zp, negative))
}

#[inline(always)]
pub(crate) fn general_slot(r: Requant, output_zero_point: i32, negative: bool) -> Slot {
    let m = r.multiplier;
    let zero = m == 0;
    // As `Requant::apply`: a left shift of `shift & 31` (`wrapping_shl`), or a right shift
    // by `-shift` capped at 31 (`rounding_divide_by_pot`; none for `i32::MIN`, whose
    // negation wraps).
    let shift = r.shift;
    let left = if zero {
        32
    } else if shift > 0 {
        shift as u32 & 31
    } else {
        0
    };
    let right = if zero || shift > 0 {
        0
    } else {
        shift.wrapping_neg().clamp(0, 31) as u32
    };
    // 2^(e-1) (0 without a right shift), and whether there is one.
    let half = ((1u32 << right) >> 1) as i32;
    let some = i32::from(right > 0);
    let (c, z) = if negative {
        (half - some, output_zero_point)
    } else {
        (half.wrapping_neg(), output_zero_point.wrapping_add(some))
    };
    // s = 2 m - 2^32 modulo 2^32.
    [(m as u32) << 1, left, right, z as u32, 1 << 31, c as u32]
}

/// The fast requantisation of accumulator register `$acc` (see [`fast`]): the records at
/// `r0` (accumulators >= 0) and `r0 + SLOT` (< 0), the int8 result stored at byte `$q` of
/// `r1`. Clobbers `r2`, `r3`, `r7`, `r10`, `r11`.
macro_rules! requant_fast {
    ($acc:literal, $q:literal) => {
        concat!(
            "lsr r7, ",
            $acc,
            ", #31\n",
            "add r7, r0, r7, lsl #5\n",
            "ldm r7, {{r2, r3, r10, r11}}\n",
            "smlal r10, r11, ",
            $acc,
            ", r2\n",
            "asr r11, r11, r3\n",
            "ssat r11, #8, r11\n",
            "strb r11, [r1, #",
            $q,
            "]\n",
        )
    };
}

/// The unified requantisation of accumulator register `$acc` (see [`unified`]), as
/// [`requant_fast!`]. Clobbers `r2`, `r3`, `r6`, `r7`, `r10`, `r11`.
macro_rules! requant_unified {
    ($acc:literal, $q:literal) => {
        concat!(
            "lsr r7, ",
            $acc,
            ", #31\n",
            "add r7, r0, r7, lsl #5\n",
            "ldm r7, {{r2, r3, r6, r10, r11}}\n",
            "smlal r10, r11, ",
            $acc,
            ", r2\n",
            "mla r11, ",
            $acc,
            ", r3, r11\n",
            "asr r11, r11, r6\n",
            "ssat r11, #8, r11\n",
            "strb r11, [r1, #",
            $q,
            "]\n",
        )
    };
}

/// The right-shift requantisation of accumulator register `$acc` (see [`right`]), as
/// [`requant_fast!`]. Clobbers `r2`, `r3`, `r6`, `r7`, `r10`, `r11`.
macro_rules! requant_right {
    ($acc:literal, $q:literal) => {
        concat!(
            "lsr r7, ",
            $acc,
            ", #31\n",
            "add r7, r0, r7, lsl #5\n",
            "ldm r7, {{r2, r3, r6, r10, r11}}\n",
            "smlal r10, r11, ",
            $acc,
            ", r2\n",
            "asr r11, r11, r3\n",
            "add r11, r11, r6\n",
            "ssat r11, #8, r11\n",
            "strb r11, [r1, #",
            $q,
            "]\n",
        )
    };
}

/// The general requantisation of accumulator register `$acc` (see [`general`]), as
/// [`requant_fast!`]. Clobbers `$acc`, `r2`, `r3`, `r6`, `r7`, `r10`, `r11`.
macro_rules! requant_general {
    ($acc:literal, $q:literal) => {
        concat!(
            "lsr r7, ",
            $acc,
            ", #31\n",
            "add r7, r0, r7, lsl #5\n",
            "ldm r7, {{r2, r3, r6, r7, r10, r11}}\n",
            "lsl ",
            $acc,
            ", ",
            $acc,
            ", r3\n",
            "smlal r10, r11, ",
            $acc,
            ", r2\n",
            "add r11, r11, ",
            $acc,
            "\n",
            "asr r11, r11, r6\n",
            "add r11, r11, r7\n",
            "ssat r11, #8, r11\n",
            "strb r11, [r1, #",
            $q,
            "]\n",
        )
    };
}

#[cfg(simd_dsp)]
pub(crate) use {requant_fast, requant_general, requant_right, requant_unified};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::args::QuantArgs;
    use crate::testutil::Rng;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    /// One instruction of the requantisation sequences, decoded from the assembly text.
    #[derive(Debug, Clone, Copy)]
    enum Insn {
        /// `lsr rd, rn, #imm`
        LsrImm(usize, usize, u32),
        /// `add rd, rn, rm, lsl #imm` (`imm` 0 without a shift)
        Add(usize, usize, usize, u32),
        /// `ldm rn, {list}` (a bit per register)
        Ldm(usize, u16),
        /// `lsl rd, rn, rm`
        LslReg(usize, usize, usize),
        /// `asr rd, rn, rm`
        AsrReg(usize, usize, usize),
        /// `smlal rlo, rhi, rn, rm`
        Smlal(usize, usize, usize, usize),
        /// `mla rd, rn, rm, ra`
        Mla(usize, usize, usize, usize),
        /// `ssat rd, #8, rn`
        Ssat8(usize, usize),
        /// `strb rd, [rn, #imm]`
        Strb(usize, usize, u32),
    }

    fn reg(t: &str) -> usize {
        let t = t.trim();
        t.strip_prefix('r')
            .and_then(|n| n.parse().ok())
            .filter(|&n: &usize| n < 13)
            .unwrap_or_else(|| panic!("register {t:?}"))
    }

    fn imm(t: &str) -> u32 {
        let t = t.trim();
        t.strip_prefix('#')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("immediate {t:?}"))
    }

    /// Decode the text a requantisation macro expands to (`{{`/`}}` are `asm!`'s escapes).
    /// Panics on anything else, so a changed sequence cannot pass unnoticed.
    fn decode(text: &str) -> Vec<Insn> {
        let text = text.replace("{{", "{").replace("}}", "}");
        let mut out = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (op, rest) = line.split_once(' ').expect("operands");
            let ops: Vec<&str> = rest.split(',').map(str::trim).collect();
            out.push(match (op, ops.as_slice()) {
                ("lsr", [d, n, i]) => Insn::LsrImm(reg(d), reg(n), imm(i)),
                ("add", [d, n, m]) => Insn::Add(reg(d), reg(n), reg(m), 0),
                ("add", [d, n, m, sh]) => {
                    let i = sh.strip_prefix("lsl ").expect("lsl");
                    Insn::Add(reg(d), reg(n), reg(m), imm(i))
                }
                ("ldm", [n, ..]) => {
                    let (_, list) = rest.split_once('{').expect("list");
                    let list = list.strip_suffix('}').expect("list end");
                    let bits = list.split(',').fold(0u16, |b, r| b | 1 << reg(r));
                    Insn::Ldm(reg(n), bits)
                }
                ("lsl", [d, n, m]) => Insn::LslReg(reg(d), reg(n), reg(m)),
                ("asr", [d, n, m]) => Insn::AsrReg(reg(d), reg(n), reg(m)),
                ("smlal", [lo, hi, n, m]) => Insn::Smlal(reg(lo), reg(hi), reg(n), reg(m)),
                ("mla", [d, n, m, a]) => Insn::Mla(reg(d), reg(n), reg(m), reg(a)),
                ("ssat", [d, "#8", n]) => Insn::Ssat8(reg(d), reg(n)),
                ("strb", [d, n, i]) => {
                    let n = n.strip_prefix('[').expect("[");
                    let i = i.strip_suffix(']').expect("]");
                    Insn::Strb(reg(d), reg(n), imm(i))
                }
                _ => panic!("unexpected instruction {line:?}"),
            });
        }
        out
    }

    /// Where the interpreter puts the records (`r0`) and the output (`r1`).
    const RECORDS: u32 = 0x1000;
    const OUT: u32 = 0x2000;

    /// Run `code` as the core would (ARMv7-M semantics of each instruction) for accumulator
    /// `acc` in `r4`, the records for accumulators >= 0 and < 0 at `r0` and `r0 + SLOT`;
    /// returns the byte stored at `r1 + 0`.
    fn run(code: &[Insn], pos: &Slot, neg: &Slot, acc: i32) -> i8 {
        let mut r = [0u32; 13];
        r[0] = RECORDS;
        r[1] = OUT;
        r[4] = acc as u32;
        let word = |addr: u32| -> u32 {
            let i = (addr - RECORDS) as usize;
            // A load past a slot's 6 words (in the kernel: the gap or the next record)
            // panics on the index.
            assert!(i.is_multiple_of(4) && i < 2 * SLOT, "load at {addr:#x}");
            if i < SLOT {
                pos[i / 4]
            } else {
                neg[(i - SLOT) / 4]
            }
        };
        let mut stored = None;
        for &insn in code {
            match insn {
                Insn::LsrImm(d, n, i) => r[d] = r[n] >> i,
                Insn::Add(d, n, m, i) => r[d] = r[n].wrapping_add(r[m] << i),
                Insn::Ldm(n, list) => {
                    // Ascending registers from ascending addresses; the base is read first.
                    let base = r[n];
                    let mut addr = base;
                    for (k, v) in r.iter_mut().enumerate() {
                        if list & 1 << k != 0 {
                            *v = word(addr);
                            addr += 4;
                        }
                    }
                }
                // Register-specified shifts use the bottom byte: 32 or more shifts out
                // everything (LSL) or fills with the sign (ASR).
                Insn::LslReg(d, n, m) => {
                    let s = r[m] & 0xff;
                    r[d] = if s >= 32 { 0 } else { r[n] << s };
                }
                Insn::AsrReg(d, n, m) => {
                    let s = (r[m] & 0xff).min(31);
                    r[d] = ((r[n] as i32) >> s) as u32;
                }
                Insn::Smlal(lo, hi, n, m) => {
                    let acc64 = (u64::from(r[hi]) << 32) | u64::from(r[lo]);
                    let p = i64::from(r[n] as i32) * i64::from(r[m] as i32);
                    let v = acc64.wrapping_add(p as u64);
                    (r[lo], r[hi]) = (v as u32, (v >> 32) as u32);
                }
                Insn::Mla(d, n, m, a) => r[d] = r[n].wrapping_mul(r[m]).wrapping_add(r[a]),
                Insn::Ssat8(d, n) => r[d] = (r[n] as i32).clamp(-128, 127) as u32,
                Insn::Strb(d, n, i) => {
                    assert_eq!(r[n] + i, OUT, "store address");
                    stored = Some(r[d] as u8 as i8);
                }
            }
        }
        stored.expect("the sequence stores its result")
    }

    /// The reference: [`QuantArgs::output`], the scalar kernels' requantisation. Where its
    /// `apply(acc) + zp` overflows (only an extreme accumulator or zero point can: then a
    /// debug build would panic) the same expression with the wrapping a release build does.
    fn reference(pos: Requant, neg: Requant, zp: i32, acc: i32) -> i8 {
        let r = if acc >= 0 { pos } else { neg };
        match r.apply(acc).checked_add(zp) {
            Some(_) => QuantArgs {
                input_zero_point: 0,
                requant_pos: &[pos],
                requant_neg: &[neg],
                output_zero_point: zp,
            }
            .output(0, acc),
            None => r.apply(acc).wrapping_add(zp).clamp(-128, 127) as i8,
        }
    }

    /// Accumulators: the extremes and their neighbourhoods, small values, powers of two and
    /// their neighbours, and random ones (full range, and up to the 2^21 of an `edge` layer).
    fn accumulators(rng: &mut Rng) -> Vec<i32> {
        let mut v = Vec::new();
        for d in 0..4 {
            v.extend([i32::MIN + d, i32::MAX - d, d, -d - 1]);
        }
        for k in 1..31 {
            let p = 1i32 << k;
            v.extend([p - 1, p, p + 1, -p - 1, -p, -p + 1]);
        }
        for _ in 0..40 {
            v.push(rng.next() as i32);
            v.push((rng.next() as i32) >> (rng.below(31) as u32));
        }
        v
    }

    /// Requantisation constants: every shift TFLite's `QuantizeMultiplier` gives (-31..=30)
    /// and a few beyond, with the extreme mantissas and random ones; the zero multiplier.
    fn requants(rng: &mut Rng) -> Vec<Requant> {
        let mut v = Vec::new();
        for shift in -34..=33 {
            for multiplier in [1 << 30, (1 << 30) + 1, i32::MAX - 1, i32::MAX] {
                v.push(Requant { multiplier, shift });
            }
            for _ in 0..3 {
                let multiplier = (1 << 30) + rng.below(1 << 30) as i32;
                v.push(Requant { multiplier, shift });
            }
        }
        v.push(Requant::default());
        v
    }

    /// Output zero points: int8's, and extreme ones the kernels accept too.
    const ZERO_POINTS: [i32; 11] = [
        -128,
        -77,
        -1,
        0,
        1,
        127,
        5000,
        -(1 << 29),
        1 << 30,
        i32::MIN,
        i32::MAX,
    ];

    /// Mismatches of one form over every (pos, neg) pairing drawn from `rs` (the negative
    /// side's constants differ from the positive side's, as a leaky ReLU's), zero point and
    /// accumulator; `None` records where the form declined.
    fn sweep(
        code: &[Insn],
        form: &dyn Fn(Requant, i32, bool) -> Option<Slot>,
        rs: &[Requant],
        accs: &[i32],
        rng: &mut Rng,
    ) -> (u64, u64, u64, Option<String>) {
        let (mut checked, mut declined, mut wrong, mut first) = (0, 0, 0, None);
        for (i, &pos) in rs.iter().enumerate() {
            // Each encoding on the positive side, paired with itself and with two others.
            for neg in [
                pos,
                rs[(i * 7 + 3) % rs.len()],
                rs[rng.below(rs.len() as u64) as usize],
            ] {
                for zp in ZERO_POINTS {
                    let (Some(p), Some(n)) = (form(pos, zp, false), form(neg, zp, true)) else {
                        declined += 1;
                        continue;
                    };
                    for &acc in accs {
                        let (got, want) = (run(code, &p, &n, acc), reference(pos, neg, zp, acc));
                        checked += 1;
                        if got != want {
                            wrong += 1;
                            first.get_or_insert_with(|| {
                                format!(
                                    "pos {pos:?} neg {neg:?} zp {zp} acc {acc}: {got} != {want}"
                                )
                            });
                        }
                    }
                }
            }
        }
        (checked, declined, wrong, first)
    }

    #[test]
    fn the_general_form_is_exact_for_every_multiplier_shift_zero_point_and_accumulator() {
        let mut rng = Rng(0x5eed_0017);
        let code = decode(requant_general!("r4", "0"));
        let (rs, accs) = (requants(&mut rng), accumulators(&mut rng));
        let (checked, declined, wrong, first) = sweep(&code, &general, &rs, &accs, &mut rng);
        assert_eq!(wrong, 0, "{wrong} of {checked} differ, first {first:?}");
        // It declines no valid encoding: no channel takes the scalar requantisation.
        assert_eq!(declined, 0);
        assert!(checked > 1_000_000, "{checked}");
    }

    #[test]
    fn the_fast_form_is_exact_where_it_applies_and_covers_calibrated_layers() {
        let mut rng = Rng(0x5eed_0018);
        let code = decode(requant_fast!("r4", "0"));
        let (rs, accs) = (requants(&mut rng), accumulators(&mut rng));
        let (checked, _, wrong, first) = sweep(&code, &fast, &rs, &accs, &mut rng);
        assert_eq!(wrong, 0, "{wrong} of {checked} differ, first {first:?}");
        assert!(checked > 100_000, "{checked}");
        // What calibration gives (multipliers 1e-6 to 0.49, a leaky slope's tenth for the
        // negative side, int8 zero points) keeps the 7-instruction form.
        for k in 0..200 {
            let m = libm::exp(-0.7 - 0.065 * f64::from(k));
            for zp in [-128, 0, 127] {
                assert!(fast(Requant::from_real(m), zp, false).is_some(), "{m}");
                assert!(fast(Requant::from_real(m * 0.1), zp, true).is_some(), "{m}");
            }
        }
        // The forms it hands to the general one: multipliers of 0.5 and above, tiny ones.
        for m in [0.5, 0.75, 1.0, 2.5, 300.0, 3e-10] {
            assert!(fast(Requant::from_real(m), 0, false).is_none(), "{m}");
        }
        assert!(fast(Requant::from_real(0.0), i32::MIN, false).is_some());
    }

    #[test]
    fn the_right_shift_form_is_exact_for_every_right_shift_zero_point_and_accumulator() {
        let mut rng = Rng(0x5eed_001b);
        let code = decode(requant_right!("r4", "0"));
        let (rs, accs) = (requants(&mut rng), accumulators(&mut rng));
        let (checked, _, wrong, first) = sweep(&code, &right, &rs, &accs, &mut rng);
        assert_eq!(wrong, 0, "{wrong} of {checked} differ, first {first:?}");
        assert!(checked > 500_000, "{checked}");
        for r in &rs {
            if r.multiplier == 0 || (r.shift < 0 && r.shift != i32::MIN) {
                assert!(right(*r, -77, true).is_some(), "{r:?}");
            }
        }
    }

    #[test]
    fn the_unified_form_is_exact_within_its_accumulator_bound() {
        let mut rng = Rng(0x5eed_001a);
        let code = decode(requant_unified!("r4", "0"));
        let (rs, all) = (requants(&mut rng), accumulators(&mut rng));
        let mut total = 0;
        for bound in [
            0,
            1,
            100,
            3_000_000,
            (1 << 24) - 1,
            1 << 24,
            (1 << 30) - 1,
            1 << 30,
            i32::MAX as u32,
            u32::MAX,
        ] {
            let accs: Vec<i32> = all
                .iter()
                .copied()
                .filter(|a| a.unsigned_abs() <= bound)
                .collect();
            let form = |r, zp, neg| unified(r, zp, neg, bound);
            let (checked, _, wrong, first) = sweep(&code, &form, &rs, &accs, &mut rng);
            assert_eq!(
                wrong, 0,
                "bound {bound}: {wrong} of {checked} differ, first {first:?}"
            );
            total += checked;
        }
        assert!(total > 1_000_000, "{total}");
        // What a leaky ReLU gives (multipliers of 0.5 to 16 and tiny or zero ones, a tenth of
        // it on the negative side) with `edge`-sized accumulators and int8 zero points keeps
        // this form; calibrated multipliers keep the fast one.
        let bound = 3_000_000;
        for m in [
            0.5, 0.75, 0.999, 1.0, 2.5, 15.9, 3e-10, 1e-9, 5e-8, 0.0, 0.3, 0.01,
        ] {
            for zp in [-128, -20, 0, 127] {
                for side in [m, m * 0.1] {
                    let r = Requant::from_real(side);
                    assert!(unified(r, zp, false, bound).is_some(), "{side} {zp}");
                    assert!(unified(r, zp, true, bound).is_some(), "{side} {zp}");
                }
            }
        }
        // Unbounded accumulators: left shifts and unreachable right shifts decline.
        assert!(unified(Requant::from_real(2.5), 0, false, u32::MAX).is_none());
        assert!(unified(Requant::from_real(3e-10), -20, false, u32::MAX).is_none());
        assert!(unified(Requant::from_real(0.75), 0, false, u32::MAX).is_some());
    }

    /// The sweep is able to fail: constants off by one rounding unit, or the two signs'
    /// records swapped, are caught.
    #[test]
    fn the_sweep_catches_wrong_constants() {
        let mut rng = Rng(0x5eed_0019);
        let code = decode(requant_general!("r4", "0"));
        let (rs, accs) = (requants(&mut rng), accumulators(&mut rng));
        fn off_by_one(r: Requant, zp: i32, negative: bool) -> Option<Slot> {
            let mut s = general(r, zp, negative)?;
            // The positive side's rounding constant without its correction.
            if !negative && s[2] != 0 {
                s[3] = s[3].wrapping_sub(1);
            }
            Some(s)
        }
        fn swapped(r: Requant, zp: i32, negative: bool) -> Option<Slot> {
            general(r, zp, !negative)
        }
        for form in [off_by_one as fn(_, _, _) -> _, swapped] {
            let (checked, _, wrong, _) = sweep(&code, &form, &rs, &accs, &mut rng);
            assert!(wrong > 1000, "{wrong} of {checked}");
        }
        // The unified form's constants trusted beyond their accumulator bound, or with the
        // multiplier split off by one, are caught.
        let unified_code = decode(requant_unified!("r4", "0"));
        let unbounded = |r, zp, neg| unified(r, zp, neg, 0);
        let split_wrong = |r, zp, neg| {
            let mut s = unified(r, zp, neg, u32::MAX)?;
            if s[1] != 0 {
                s[1] -= 1;
            }
            Some(s)
        };
        for form in [&unbounded as &dyn Fn(_, _, _) -> _, &split_wrong] {
            let (checked, _, wrong, _) = sweep(&unified_code, form, &rs, &accs, &mut rng);
            assert!(wrong > 1000, "{wrong} of {checked}");
        }
        // And the interpreter sees the instructions: without the `ADD` of `x` the doubling
        // high multiply is wrong.
        let mut broken = code.clone();
        broken.retain(|i| !matches!(i, Insn::Add(11, 11, 4, 0)));
        assert_eq!(broken.len() + 1, code.len());
        let (checked, _, wrong, _) = sweep(&broken, &general, &rs, &accs, &mut rng);
        assert!(wrong > 1000, "{wrong} of {checked}");
    }
}
