//! The build's SIMD paths as three cfgs, each off with the `force-reference` feature, so the
//! sources test one name instead of repeating the target and the feature:
//!
//! * `simd_x86`: x86-64 (the AVX2 and AVX-512 engines, chosen at run time, see
//!   `kernels/simd/mod.rs`);
//! * `simd_neon`: aarch64 with the `neon` target feature;
//! * `simd_dsp`: Cortex-M4/M7 (thumbv7em). Stable Rust sets no `target_feature = "dsp"` on
//!   thumbv7em, but every thumbv7em core has the DSP extension.
fn main() {
    for cfg in ["simd_x86", "simd_neon", "simd_dsp"] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let reference = std::env::var_os("CARGO_FEATURE_FORCE_REFERENCE").is_some();
    let arch = var("CARGO_CFG_TARGET_ARCH");
    let neon = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|f| f == "neon");
    let on = [
        ("simd_x86", arch == "x86_64"),
        ("simd_neon", arch == "aarch64" && neon),
        ("simd_dsp", var("TARGET").starts_with("thumbv7em")),
    ];
    for (cfg, target) in on {
        if target && !reference {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
    println!("cargo::rerun-if-changed=build.rs");
}
