//! Gate the Cortex-M DSP kernels on the target: stable Rust sets no `target_feature = "dsp"`
//! on thumbv7em, but every thumbv7em core (Cortex-M4/M7) has the DSP extension.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(dsp)");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv7em") {
        println!("cargo::rustc-cfg=dsp");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
