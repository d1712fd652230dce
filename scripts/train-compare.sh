#!/usr/bin/env bash
# Training throughput of burn (trainer fit), Keras and PyTorch on the same two networks
# (`edge`, `seed-lab`), CPU, 2 threads, batch 64: each run is one warm-up epoch and two
# timed epochs of 2,048 images; the frameworks run interleaved (burn keras torch burn
# keras torch ...) for ROUNDS rounds so that drift hits them alike; min and median of
# the rounds are printed. Issue 17, item 4; results in BENCHMARKS.md ("CNN training").
#
#   scripts/train-compare.sh                 # 3 rounds, both presets
#   ROUNDS=5 PRESETS=seed-lab scripts/train-compare.sh
#   BURN_BACKENDS="flex ndarray" scripts/train-compare.sh
#
# Before every timed run it waits until no cargo, rustc, cc1, ld or qemu-* process has
# been seen for 30 s (pgrep every 10 s; after QUIET_MAX_S, default 2400 s, it measures
# anyway and says so), then runs under `flock /tmp/bench.lock` so that two benchmarks
# never overlap; a run during which a build started is flagged (results.tsv, column 5). The Python baselines live in a venv (VENV, default target/py-venv)
# made from scripts/train_baselines_requirements.txt (about 6 GB: PyPI's torch wheel
# brings CUDA libraries along, unused here).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
PRESETS=${PRESETS:-edge seed-lab}
BURN_BACKENDS=${BURN_BACKENDS:-flex}
VENV=${VENV:-target/py-venv}
QUIET_MAX_S=${QUIET_MAX_S:-2400}
LOCK=${LOCK:-/tmp/bench.lock}
OUT=${OUT:-target/train-compare}
IMAGES=2048

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q -r scripts/train_baselines_requirements.txt
cargo build --release -p trainer
t=target/release/trainer
mkdir -p "$OUT"
res="$OUT/results.tsv"
log="$OUT/log.txt"
: >"$res"
: >"$log"
# The default dataset (simulated on first use) and the Python imports, outside any timing.
$t fit --preset edge --epochs 1 --max-train 64 --run-dir "$OUT/warm" --quiet >/dev/null
rm -rf "$OUT/warm"

# (a stopped process, state T, is not noise: a build paused with SIGSTOP may wait out a benchmark)
busy() { pgrep -r R,S,D -x 'cargo|rustc|cc1|cc1plus|ld|ld\..*|qemu-.*' >/dev/null 2>&1; }

# A watcher during each timed run: DISTURBED=1 if a build process appeared meanwhile.
watch_start() {
    rm -f "$OUT/disturbed"
    (while :; do busy && touch "$OUT/disturbed"; sleep 2; done) &
    WATCHER=$!
}
watch_stop() {
    kill "$WATCHER" 2>/dev/null || true
    wait "$WATCHER" 2>/dev/null || true
    if [ -e "$OUT/disturbed" ]; then DISTURBED=1; else DISTURBED=0; fi
}

# Wait until nothing has compiled, linked or emulated for 30 s (polled every 10 s).
wait_quiet() {
    local start=$SECONDS quiet_since=-1
    while :; do
        if busy; then
            quiet_since=-1
        elif [ $quiet_since -lt 0 ]; then
            quiet_since=$SECONDS
        fi
        if [ $quiet_since -ge 0 ] && [ $((SECONDS - quiet_since)) -ge 30 ]; then
            echo "quiet after $((SECONDS - start)) s" >>"$log"
            return 0
        fi
        if [ $((SECONDS - start)) -ge "$QUIET_MAX_S" ]; then
            echo "NOT QUIET: measuring anyway after $((SECONDS - start)) s" | tee -a "$log" >&2
            NOISY=1
            return 0
        fi
        sleep 10
    done
}

# One timed run; appends "framework preset images/s noisy disturbed" to $res.
run_one() {
    local fw=$1 preset=$2 rate=
    NOISY=0
    wait_quiet
    watch_start
    case $fw in
    burn-*)
        local b=${fw#burn-} dir="$OUT/run-$fw-$preset"
        rm -rf "$dir"
        # Epoch 1 is the warm-up; the rate is that of epochs 2-3 together.
        flock "$LOCK" $t --threads 2 fit --preset "$preset" --backend "$b" --epochs 3 \
            --max-train $IMAGES --run-dir "$dir" --quiet >"$dir.out" 2>&1
        head -1 "$dir.out" >>"$log"
        rate=$("$VENV/bin/python" -c '
import json, sys
r = [e["images_per_s"] for e in json.load(open(sys.argv[1]))["history"][1:]]
print("%.1f" % (len(r) / sum(1 / x for x in r)))' "$dir/state.json")
        rm -rf "$dir" "$dir.out"
        ;;
    keras | torch)
        local line
        line=$(flock "$LOCK" "$VENV/bin/python" "scripts/${fw}_throughput.py" --preset "$preset" \
            --images $IMAGES --epochs 2 --threads 2 2>>"$log" | tee -a "$log" | grep '^RESULT')
        rate=$(echo "$line" | awk '{print $4}')
        ;;
    esac
    watch_stop
    printf '%s\t%s\t%s\t%s\t%s\n' "$fw" "$preset" "$rate" "$NOISY" "$DISTURBED" | tee -a "$res"
}

for round in $(seq 1 "$ROUNDS"); do
    for preset in $PRESETS; do
        for fw in $(for b in $BURN_BACKENDS; do echo "burn-$b"; done) keras torch; do
            echo "round $round: $fw $preset" >>"$log"
            run_one "$fw" "$preset"
        done
    done
done

"$VENV/bin/python" - "$res" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for fw, preset, rate, noisy, disturbed in rows:
    by.setdefault((preset, fw), []).append((float(rate), "1" in (noisy, disturbed)))
print("| preset | framework | runs | min images/s | median images/s | burn-flex / this (medians) |")
print("|---|---|--:|--:|--:|--:|")
for (preset, fw), v in by.items():
    r = [x for x, _ in v]
    flex = by.get((preset, "burn-flex"))
    ratio = f"{statistics.median(x for x, _ in flex) / statistics.median(r):.2f}" if flex else "-"
    noisy = " (some runs not quiet or disturbed)" if any(n for _, n in v) else ""
    print(f"| `{preset}` | {fw} | {len(r)} | {min(r):.0f} | {statistics.median(r):.0f} | {ratio}{noisy} |")
EOF
