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
