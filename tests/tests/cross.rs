//! The runtime and the generated models build for every bare-metal target the project
//! claims: Cortex-M0+ (no FPU, no DSP), Cortex-M4F/M7 (FPU + DSP), RISC-V rv32imac (no
//! FPU) and AArch64 bare metal. The targets come with the pinned toolchain
//! (`rust-toolchain.toml`); a missing one is a failure, not a skip.

use std::process::Command;

const TARGETS: [&str; 4] = [
    "thumbv6m-none-eabi",
    "thumbv7em-none-eabihf",
    "riscv32imac-unknown-none-elf",
    "aarch64-unknown-none",
];

#[test]
fn runtime_and_generated_models_build_for_every_bare_metal_target() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = tests::models::workspace();
    // A separate target directory: the outer `cargo test` holds the lock on `target/`.
    let target_dir = root.join("target/cross");
    for target in TARGETS {
        let out = Command::new(&cargo)
            .current_dir(root)
            .args([
                "build",
                "--release",
                "--locked",
                "-p",
                "models",
                "--target",
                target,
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .output()
            .expect("running cargo");
        assert!(
            out.status.success(),
            "`cargo build -p models --target {target}` failed (is the target installed? \
             `rustup toolchain install` reads rust-toolchain.toml):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = target_dir.join(target).join("release/libmodels.rlib");
        assert!(lib.exists(), "{} missing", lib.display());
    }
}
