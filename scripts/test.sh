#!/usr/bin/env bash
# The project's test command (README). On a fresh machine it installs what is
# missing, then runs every test; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Compiler and embedded targets pinned in rust-toolchain.toml (a no-op when present).
rustup toolchain install 2>/dev/null || rustup show active-toolchain

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

# Every test: unit, integration (physics, data contract, determinism, baselines, generated
# models against burn and golden vectors), CLI, doctests, the bare-metal cross-builds of
# the runtime and generated models (tests/tests/cross.rs), and the runtime's suite on aarch64
# under qemu-aarch64, NEON and reference (tests/tests/aarch64.rs).
cargo test --release --workspace --locked --no-fail-fast
# The runtime's kernel suite once more with every SIMD path off (it ran on the SIMD path of
# this machine above; the aarch64 NEON path runs both ways under QEMU in tests/tests/aarch64.rs).
cargo test --release -p runtime --locked --features force-reference
# On an AVX-512 machine the suite above ran the AVX-512 engine; once more capped at AVX2, and
# the generated models with it, so both x86 engines are tested against the reference.
RUNTIME_SIMD=avx2 cargo test --release -p runtime --locked
RUNTIME_SIMD=avx2 cargo test --release -p tests --locked --test generated
echo "all tests passed"
