#!/usr/bin/env bash
# The project's test command (README). On a fresh machine it installs what is
# missing, then runs every test; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Compiler and embedded targets pinned in rust-toolchain.toml (a no-op when present).
rustup toolchain install 2>/dev/null || rustup show active-toolchain

# Formatting and lints first (they take seconds and fail fast): the workspace, the firmware
# examples and the fuzz targets formatted; clippy clean with warnings as errors on the host
# (every target: libraries, binaries, tests, benches, examples) and for the bare-metal
# runtime and generated models (Cortex-M4F, with and without the `defmt` feature; aarch64).
cargo fmt --all --check
(cd firmware-examples && cargo fmt --all --check)
(cd fuzz && cargo fmt --all --check)
cargo clippy --release --workspace --all-targets --locked -- -D warnings
cargo clippy --release --locked -p runtime -p models --target thumbv7em-none-eabihf -- -D warnings
cargo clippy --release --locked -p runtime -p models --target thumbv7em-none-eabihf --features defmt -- -D warnings
cargo clippy --release --locked -p runtime -p models --target aarch64-unknown-none -- -D warnings

# QEMU runs the firmware examples (tests/tests/firmware.rs, system emulation) and the runtime's
# aarch64 NEON kernel tests (tests/tests/aarch64.rs, user mode: qemu-aarch64 from qemu-user).
# This Debian bookworm image carries qemu-utils from bookworm-backports, which conflicts with
# bookworm's own QEMU 7.2, so QEMU comes from backports too (10.0, where qemu-system-riscv32 is
# in qemu-system-riscv). Only missing emulators are installed.
qemu_missing=()
command -v qemu-system-arm >/dev/null || qemu_missing+=(qemu-system-arm)
command -v qemu-system-riscv32 >/dev/null || qemu_missing+=(qemu-system-riscv)
command -v qemu-aarch64 >/dev/null || qemu_missing+=(qemu-user)
if [ "${#qemu_missing[@]}" -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            | $sudo tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
    fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        -t bookworm-backports "${qemu_missing[@]}"
fi

# The defmt example's runner (firmware-examples/minimal-defmt) decodes its log with defmt-print,
# built from crates.io into ~/.cargo/bin once (its own lock file; kept out of the workspace,
# whose serde_json must not take defmt-decoder's `arbitrary_precision`).
command -v defmt-print >/dev/null || cargo install defmt-print --locked --version 1.2.0

# Every test: unit, integration (physics, data contract, determinism, baselines, generated
# models against burn and golden vectors), CLI, doctests, the bare-metal cross-builds of
# the runtime and generated models (tests/tests/cross.rs), and the runtime's suite on aarch64
# under qemu-aarch64, NEON and reference (tests/tests/aarch64.rs).
cargo test --release --workspace --locked --no-fail-fast
# The runtime's kernel suite once more with every SIMD path off (it ran on the SIMD path of
# this machine above; the aarch64 NEON path runs both ways under QEMU in tests/tests/aarch64.rs).
cargo test --release -p runtime --locked --features force-reference
# The runtime's engine-sensitive tests and the generated-model tests (golden vectors, burn
# comparisons, seed-lab, exposure-aware, streamed plans) already ran on every x86 engine the
# CPU has, in one process (runtime::kernels::simd::{engines, with_path}): an AVX-512 machine
# tests AVX2 too without a second run.
# Fuzz smoke: every committed cargo-fuzz target (fuzz/, docs/fuzzing.md) for 20 s from its
# seed corpus with AddressSanitizer (RUSTC_BOOTSTRAP=1 lets the pinned stable compiler use
# it); new inputs go to a scratch directory, never into the committed seeds.
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
scratch=$(mktemp -d)
for t in blob_loader npy_reader npz_calibration onnx_import; do
    mkdir -p "$scratch/$t"
    max_len=65536
    [ "$t" = blob_loader ] && max_len=131072
    [ "$t" = onnx_import ] && max_len=200000
    if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$t" "$scratch/$t" "$PWD/corpus/$t" -- \
        -max_total_time=20 -max_len="$max_len" -timeout=10 -rss_limit_mb=4096) >"$scratch/$t.log" 2>&1; then
        tail -n 60 "$scratch/$t.log"
        echo "fuzz target $t failed (artifacts in fuzz/artifacts/$t)"
        exit 1
    fi
    echo "fuzz $t: $(grep -E '^Done' "$scratch/$t.log")"
done
rm -rf "$scratch"
echo "all tests passed"
