//! Which path the kernels take, decided in one place: the CPU detection ([`x86_level`], the
//! only one of the crate), the caps (`RUNTIME_SIMD` and [`with_path`], hosted builds) and the
//! build's paths (the `simd_*` cfgs of `runtime/build.rs`).

use super::Path;

/// The path the kernels take for float layers in this build on this machine.
///
/// On x86-64 the best of [`Path::Avx512`], [`Path::Avx2`] the CPU has ([`x86_level`]); in
/// hosted builds (the `std` feature) the environment variable `RUNTIME_SIMD` caps it (`avx2`
/// or `reference`), e.g. to benchmark or test the AVX2 kernels on an AVX-512 machine, and so
/// does this thread's [`with_path`].
pub fn active() -> Path {
    #[cfg(simd_x86)]
    return match x86_level().min(cap()) {
        2 => Path::Avx512,
        1 => Path::Avx2,
        _ => Path::Reference,
    };
    #[cfg(simd_neon)]
    return Path::Neon;
    #[allow(unreachable_code)]
    Path::Reference
}

/// The best x86 level this CPU has, whatever the caps: 2 AVX-512 F, BW, VL, VNNI and VBMI
/// (with the AVX2, FMA and F16C below), 1 AVX2, FMA and F16C, 0 neither. The features the
/// target enables at compile time (e.g. `-C target-cpu=native`) count without a look; hosted
/// builds (the `std` feature) detect the others once and keep the answer; other builds go
/// without them. The one CPU detection of the crate: every engine's `unsafe` call rests on it.
#[cfg(simd_x86)]
#[inline]
pub(crate) fn x86_level() -> u8 {
    const AVX2: bool = cfg!(all(
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ));
    const AVX512: bool = AVX2
        && cfg!(all(
            target_feature = "avx512f",
            target_feature = "avx512bw",
            target_feature = "avx512vl",
            target_feature = "avx512vnni",
            target_feature = "avx512vbmi"
        ));
    const BUILT: u8 = if AVX512 {
        2
    } else if AVX2 {
        1
    } else {
        0
    };
    #[cfg(any(feature = "std", test))]
    if BUILT < 2 {
        use core::sync::atomic::{AtomicU8, Ordering};
        // 0xff: not detected yet.
        static LEVEL: AtomicU8 = AtomicU8::new(0xff);
        let mut level = LEVEL.load(Ordering::Relaxed);
        if level == 0xff {
            use std::is_x86_feature_detected as has;
            let avx2 = has!("avx2") && has!("fma") && has!("f16c");
            let avx512 = avx2
                && has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vl")
                && has!("avx512vnni")
                && has!("avx512vbmi");
            level = if avx512 {
                2
            } else if avx2 || AVX2 {
                1
            } else {
                0
            };
            LEVEL.store(level, Ordering::Relaxed);
        }
        return level;
    }
    BUILT
}

/// The highest x86 level allowed: 2 AVX-512, 1 AVX2, 0 reference; the lower of
/// `RUNTIME_SIMD` (unset: 2) and this thread's [`with_path`] cap.
#[cfg(simd_x86)]
fn cap() -> u8 {
    #[cfg(any(feature = "std", test))]
    {
        use core::sync::atomic::{AtomicU8, Ordering};
        // 0xff: not read yet.
        static CAP: AtomicU8 = AtomicU8::new(0xff);
        let mut c = CAP.load(Ordering::Relaxed);
        if c == 0xff {
            c = match std::env::var("RUNTIME_SIMD").as_deref() {
                Ok("avx2") => 1,
                Ok("reference") => 0,
                _ => 2,
            };
            CAP.store(c, Ordering::Relaxed);
        }
        c.min(THREAD_CAP.with(core::cell::Cell::get))
    }
    #[cfg(not(any(feature = "std", test)))]
    2
}

#[cfg(all(simd_x86, any(feature = "std", test)))]
extern crate std;

#[cfg(all(simd_x86, any(feature = "std", test)))]
std::thread_local! {
    /// This thread's cap ([`with_path`]); 2: none.
    static THREAD_CAP: core::cell::Cell<u8> = const { core::cell::Cell::new(2) };
}

/// Run `f` with this thread's kernels taking `path` at most (hosted builds, the `std`
/// feature): how the tests run every engine the CPU has in one process ([`engines`]).
/// `RUNTIME_SIMD` still caps it. Only the x86 paths can be chosen: elsewhere (and with
/// `force-reference`) `f` runs on the build's one path.
///
/// ```
/// use runtime::kernels::simd::{Path, active, engines, with_path};
/// for p in engines() {
///     with_path(p, || assert_eq!(active(), p));
/// }
/// assert_eq!(with_path(Path::Reference, active), Path::Reference);
/// ```
#[cfg(any(feature = "std", test))]
pub fn with_path<R>(path: Path, f: impl FnOnce() -> R) -> R {
    #[cfg(simd_x86)]
    {
        let level = match path {
            Path::Reference => 0,
            Path::Avx2 => 1,
            _ => 2,
        };
        /// Puts the previous cap back, also when `f` panics.
        struct Restore(u8);
        impl Drop for Restore {
            fn drop(&mut self) {
                THREAD_CAP.with(|c| c.set(self.0));
            }
        }
        let _restore = Restore(THREAD_CAP.with(|c| c.replace(level)));
        f()
    }
    #[cfg(not(simd_x86))]
    {
        let _ = path;
        f()
    }
}

/// The engines [`with_path`] can run on this machine in this build, the reference first:
/// on x86-64 the reference, AVX2 and AVX-512 as far as the CPU (and `RUNTIME_SIMD`) allows;
/// elsewhere the build's one path.
#[cfg(any(feature = "std", test))]
pub fn engines() -> heapless::Vec<Path, 3> {
    let mut v = heapless::Vec::new();
    #[cfg(simd_x86)]
    {
        let n = match with_path(Path::Avx512, active) {
            Path::Avx512 => 3,
            Path::Avx2 => 2,
            _ => 1,
        };
        for p in &[Path::Reference, Path::Avx2, Path::Avx512][..n] {
            let _ = v.push(*p);
        }
    }
    #[cfg(not(simd_x86))]
    {
        let _ = v.push(active());
    }
    v
}

/// The path the kernels take for int8 layers in this build on this machine.
pub fn active_s8() -> Path {
    #[cfg(simd_dsp)]
    return Path::Dsp;
    #[allow(unreachable_code)]
    active()
}
