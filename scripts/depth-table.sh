#!/usr/bin/env bash
# The depth table of issue 14 (README "One model for every survey depth"): trains the
# exposure-aware `edge` model on a log-uniform mix of exposures and one `edge` model per
# depth on the same 20,000 clusters, then scores them all at every depth on fresh mocks
# (seed 2) next to the baselines. About 40 minutes on 2 cores (five trainings of ~7 min).
# Usage: scripts/depth-table.sh [RANGE_LOW,RANGE_HIGH]   (default 100,30000 s)
set -euo pipefail
cd "$(dirname "$0")/.."
range=${1:-100,30000}
cargo build --release -p trainer
t=target/release/trainer
mix=data/mock-exp${range/,/-}-s1-n20000.npz
[ -f "$mix" ] || $t simulate --n 20000 --seed 1 --exposure-range "$range" --out "$mix" --quiet
[ -d runs/aware ] || $t fit --dataset "$mix" --aux-inputs exposure_s --run-dir runs/aware --quiet
specific=()
for d in erass1 erass4 erass8 pointed; do
  ds=data/mock-$d-s1-n20000.npz
  [ -f "$ds" ] || $t simulate --n 20000 --seed 1 --depth $d --out "$ds" --quiet
  [ -d runs/depth-$d ] || $t fit --dataset "$ds" --run-dir runs/depth-$d --quiet
  specific+=(--specific "$d=runs/depth-$d")
done
$t eval runs/aware --depths "${specific[@]}" --quiet
