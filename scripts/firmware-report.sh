#!/usr/bin/env bash
# Build and run every firmware example (firmware-examples/) in QEMU and print the markdown
# tables of docs/firmware.md: per board and model variant (int8 with the DSP and with the scalar
# kernels on the Cortex-M4F), flash (weights, samples, model code, board support + formatting),
# static RAM, peak stack, instructions per inference and per MAC; the scalar-vs-DSP summary; and
# each int8 convolution of `edge` alone on the Cortex-M4F (scalar and DSP instructions per MAC);
# and the event binner example's RAM and instructions per count type and path.
#
# The measuring is done by the integration test tests/tests/firmware.rs (which also checks
# every result against the host's bit for bit); this runs it and prints the table it writes.
# Needs QEMU: qemu-system-arm and qemu-system-riscv32 (see docs/firmware.md).
set -euo pipefail
cd "$(dirname "$0")/.."

for qemu in qemu-system-arm qemu-system-riscv32; do
    if ! command -v "$qemu" >/dev/null; then
        echo "error: $qemu not found; install QEMU (docs/firmware.md, 'Reproduce')" >&2
        exit 1
    fi
done

report=firmware-examples/target/firmware-report.md
events=firmware-examples/target/event-binner-report.md
rm -f "$report" "$events"
# Progress and cargo's output go to stderr; the tables to stdout.
cargo test --release --locked -p tests --test firmware -- --nocapture --test-threads 1 >&2
cat "$report"
# The on-board event binner (firmware-examples/event-binner): RAM and instructions per path.
echo
cat "$events"
