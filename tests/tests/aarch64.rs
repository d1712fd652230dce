//! The runtime's aarch64 NEON kernels, run for real: the runtime's own test suite (its unit
//! tests, among them the SIMD-against-reference suite `kernels::simd::tests`, and its
//! doctests) is built for `aarch64-unknown-linux-musl` and run under QEMU user mode, once as
//! is (the NEON path: the suite asserts it ran, that int8 is bit-identical to the reference
//! and that the float results show fused multiply-add rounding) and once with
//! `--features force-reference`.
//!
//! The target comes with the pinned toolchain (`rust-toolchain.toml`); the root
//! `.cargo/config.toml` links it with the toolchain's `rust-lld` and bundled musl and sets
//! `qemu-aarch64` (Debian package `qemu-user`) as the runner. A missing target or emulator
//! is a failure, not a skip.

use std::process::{Command, Stdio};

const TARGET: &str = "aarch64-unknown-linux-musl";
const QEMU: &str = "qemu-aarch64";

/// Fail (never skip) when the emulator is missing.
fn require_qemu() {
    let found = Command::new(QEMU)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{QEMU}` not found: the aarch64 kernel tests run in QEMU user mode. Install it with \
         `apt-get install -t bookworm-backports qemu-user` (scripts/test.sh does)"
    );
}

/// `cargo test --release -p runtime --target aarch64-unknown-linux-musl` plus `features`;
/// returns its stdout (the test harness output) after checking it passed.
fn runtime_tests_on_aarch64(features: &[&str]) -> String {
    require_qemu();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = tests::models::workspace();
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "test",
            "--release",
            "--locked",
            "-p",
            "runtime",
            "--target",
            TARGET,
        ])
        .args(features)
        // A separate target directory: the outer `cargo test` holds the lock on `target/`.
        .arg("--target-dir")
        .arg(root.join("target/aarch64"));
    // Linker, rustflags and runner come from the root `.cargo/config.toml`; flags meant for
    // the outer (host) build must not override them.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let what = format!(
        "`cargo test --release -p runtime --target {TARGET}{}`",
        features.iter().map(|f| format!(" {f}")).collect::<String>()
    );
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: running cargo: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{what} failed (is the target installed? `rustup toolchain install` reads \
         rust-toolchain.toml):\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    // The aarch64 test binary ran (through the runner), and the kernel suite was in it.
    assert!(
        stderr.contains(&format!("{TARGET}/release/deps/runtime-")),
        "{what}: the {TARGET} unit tests did not run:\n{stderr}"
    );
    for test in [
        "kernels::simd::tests::the_expected_path_runs",
        "kernels::simd::tests::convolutions_match_the_reference",
        "kernels::simd::tests::dense_matches_the_reference",
    ] {
        assert!(
            stdout.contains(&format!("test {test} ... ok")),
            "{what}: `{test}` did not pass:\n{stdout}"
        );
    }
    stdout
}

#[test]
fn runtime_kernels_on_aarch64_neon() {
    let stdout = runtime_tests_on_aarch64(&[]);
    // The NEON kernels' own edge cases (runtime/src/kernels/simd/neon.rs).
    for test in [
        "kernels::simd::neon::tests::gemm_every_small_shape",
        "kernels::simd::neon::tests::dense_every_width",
    ] {
        assert!(
            stdout.contains(&format!("test {test} ... ok")),
            "`{test}` did not pass:\n{stdout}"
        );
    }
}

#[test]
fn runtime_kernels_on_aarch64_forced_reference() {
    let stdout = runtime_tests_on_aarch64(&["--features", "force-reference"]);
    assert!(
        !stdout.contains("simd::neon::tests"),
        "force-reference still compiled the NEON kernels:\n{stdout}"
    );
}
