#!/usr/bin/env bash
# The project's test command (README). On a fresh machine it installs what is
# missing, then runs every test; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# Compiler and embedded targets pinned in rust-toolchain.toml (a no-op when present).
rustup toolchain install 2>/dev/null || rustup show active-toolchain

# Host tests: unit, integration (physics, data contract, determinism, baselines), CLI, doctests.
cargo test --release --workspace --locked --no-fail-fast

# The runtime is no_std and allocation-free: it must build for every bare-metal target.
for target in thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imac-unknown-none-elf aarch64-unknown-none; do
    cargo build --release --locked -p runtime --target "$target"
done
echo "all tests passed"
