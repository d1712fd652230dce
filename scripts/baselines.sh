#!/usr/bin/env bash
# Regenerates the baseline tables of docs/baselines.md and the README (about 30 s and 3 GB of disk).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p trainer
t=target/release/trainer
$t simulate --n 20000 --seed 1 --depth erass8 --quiet
$t simulate --n 20000 --seed 3 --depth erass4 --quiet
$t simulate --n 20000 --seed 2 --depth erass1 --quiet
$t baseline data/mock-erass8-s1-n20000.npz
$t baseline data/mock-erass4-s3-n20000.npz
$t baseline data/mock-erass1-s2-n20000.npz --detection-counts 20
