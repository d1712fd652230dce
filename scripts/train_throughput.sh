#!/usr/bin/env bash
# Training throughput (images/s) of both presets on both backends: one epoch over
# 2,048 training clusters of the default dataset, batch 64, 2 threads.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p trainer
t=target/release/trainer
out=$(mktemp -d)
for preset in edge seed-lab; do
    for backend in flex ndarray; do
        n=2048; [ "$backend" = ndarray ] && n=512   # ndarray is slow; fewer images give the same rate
        line=$($t fit --preset $preset --backend $backend --epochs 1 --max-train $n --run-dir "$out/$preset-$backend" --quiet | head -1)
        echo "$preset $backend: $line"
    done
done
rm -rf "$out"
