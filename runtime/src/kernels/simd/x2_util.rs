//! Block starts shared by the x86-64 AVX2 kernels: the flat convolution engine
//! ([`super::x2`]) and the preprocessing of raw counts ([`super::x2_prep`]).

/// Starts of the `step`-wide blocks that cover `0..total` when `total >= step`: every
/// multiple of `step` that fits, then, if something is left, `total - step` (overlapping the
/// block before: its outputs are computed twice, identically), so every block is whole.
/// Below `step`, the one start 0 (a partial block).
#[inline(always)]
pub(crate) fn starts(total: usize, step: usize) -> impl Iterator<Item = usize> {
    let whole = total / step;
    let last = (total >= step && !total.is_multiple_of(step)).then(|| total - step);
    let partial = (total > 0 && total < step).then_some(0);
    (0..whole).map(move |k| k * step).chain(last).chain(partial)
}

/// A count type the x86-64 preprocessing kernels read in place ([`super::x2_prep`],
/// [`super::x512_prep`]): u16 loaded as 16-bit lanes, u8 zero-extended to them on load, so a
/// u8 cube needs no widening buffer.
pub(crate) trait Lanes: Copy + Default + Into<u16> {
    /// True for u16 (16-bit in memory), false for u8.
    const WIDE: bool;
}

impl Lanes for u8 {
    const WIDE: bool = false;
}

impl Lanes for u16 {
    const WIDE: bool = true;
}
