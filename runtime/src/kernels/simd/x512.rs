//! x86-64 AVX-512 (F, BW, VL, VNNI, VBMI): the convolution engine of Zen 4, Ice Lake and
//! later cores.

#[cfg(target_arch = "x86_64")]
#[allow(unused_imports)]
use core::arch::x86_64::*;

/// True when the CPU running this code has AVX-512 F, BW, VL, VNNI and VBMI (and the AVX2,
/// FMA and F16C of [`super::x86`]).
#[inline]
pub(crate) fn available() -> bool {
    #[cfg(all(
        target_feature = "avx512f",
        target_feature = "avx512bw",
        target_feature = "avx512vl",
        target_feature = "avx512vnni",
        target_feature = "avx512vbmi",
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    return true;
    #[cfg(any(feature = "std", test))]
    return detected();
    #[allow(unreachable_code)]
    false
}

#[cfg(any(feature = "std", test))]
#[allow(dead_code)]
fn detected() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    // 0 unknown, 1 absent, 2 present.
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        2 => true,
        1 => false,
        _ => {
            extern crate std;
            use std::is_x86_feature_detected as has;
            let yes = has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vl")
                && has!("avx512vnni")
                && has!("avx512vbmi")
                && has!("avx2")
                && has!("fma")
                && has!("f16c");
            STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}
