//! Lane masks shared by the x86-64 AVX-512 kernels: the convolution engine ([`super::x512`]),
//! the preprocessing of raw counts ([`super::x512_prep`]) and the dense layers
//! ([`super::x512_dense`]); and, for their unit tests, `have_avx512`.

/// The first `n` of 64 lanes (all for `n >= 64`).
#[inline]
pub(crate) fn mask64(n: usize) -> u64 {
    if n >= 64 { u64::MAX } else { (1u64 << n) - 1 }
}

/// The first `n` of 32 lanes (all for `n >= 32`).
#[inline]
pub(crate) fn mask32(n: usize) -> u32 {
    if n >= 32 { u32::MAX } else { (1u32 << n) - 1 }
}

/// The first `n` of 16 lanes (all for `n >= 16`).
#[inline]
pub(crate) fn mask16(n: usize) -> u16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

/// The first `n` of 8 lanes (all for `n >= 8`).
#[inline]
pub(crate) fn mask8(n: usize) -> u8 {
    if n >= 8 { u8::MAX } else { (1u8 << n) - 1 }
}

/// For the kernels' unit tests: true when this CPU can run them; otherwise checks that
/// nothing dispatches to them.
#[cfg(test)]
pub(crate) fn have_avx512() -> bool {
    use super::{Path, active, active_s8, cpu};
    let yes = cpu::x86_level() >= 2;
    if !yes {
        assert_ne!(active(), Path::Avx512);
        assert_ne!(active_s8(), Path::Avx512);
    }
    yes
}
