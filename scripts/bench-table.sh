#!/usr/bin/env bash
# Turn criterion's estimates of `cargo bench -p benches --bench inference` (both builds: the
# default SIMD one and `--features reference`) into the markdown tables of BENCHMARKS.md,
# "Inference on the host (issue 6)".
#
#   scripts/bench-table.sh [criterion dir ...]   (default ${CARGO_TARGET_DIR:-target}/criterion)
#   SIMD_LABEL=AVX2 scripts/bench-table.sh      (the best path of the machine that ran the bench,
#                                                 printed by the bench as "kernel path"; default AVX-512)
#
# Latency is criterion's point estimate (the slope of the linear fit, or the mean for flat
# sampling); the benches set throughput to FLOPs (2 x MACs) per iteration, which this reads
# back from benchmark.json. Given several criterion directories (copies of complete runs),
# each figure is the median over them.
set -euo pipefail
[ $# -gt 0 ] || set -- "${CARGO_TARGET_DIR:-target}/criterion"
for d in "$@"; do
    [ -d "$d" ] || { echo "no criterion results in $d: run cargo bench -p benches --bench inference" >&2; exit 1; }
done
SIMD_LABEL=${SIMD_LABEL:-AVX-512} python3 - "$@" <<'PY'
import json, os, statistics, sys

SIMD = os.environ["SIMD_LABEL"]


runs = {}
for root in sys.argv[1:]:
    for group in ("peak", "model", "layer", "burn"):
        gdir = os.path.join(root, group)
        if not os.path.isdir(gdir):
            continue
        for d in os.listdir(gdir):
            new = os.path.join(gdir, d, "new")
            try:
                meta = json.load(open(os.path.join(new, "benchmark.json")))
                est = json.load(open(os.path.join(new, "estimates.json")))
            except FileNotFoundError:
                continue
            slope = est.get("slope")
            ns = (slope or est["mean"])["point_estimate"]
            flops = (meta.get("throughput") or {}).get("Elements", 0)
            runs.setdefault(meta["full_id"], (flops, []))[1].append(ns)
res = {k: (statistics.median(v), flops) for k, (flops, v) in runs.items()}
if len(sys.argv) > 2:
    print(f"Median of {len(sys.argv) - 1} runs.")
    print()

def get(key):
    return res.get(key)

def rate(key):
    r = get(key)
    return r[1] / r[0] if r else None

# The f32 FMA peak the percentages use: the mean of the readings at the start and the end of
# the run (both are printed; on a shared VM the clock moves with the neighbours' load).
peaks = [p for p in (rate("peak/fma_f32"), rate("peak/fma_f32_end")) if p]
madds = [p for p in (rate("peak/madd_i16"), rate("peak/madd_i16_end")) if p]
fma512 = rate("peak/fma512_f32")
dpbusd = rate("peak/dpbusd_i8")
peak_gf = sum(peaks) / len(peaks) if peaks else None

def lat(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:,.2f} ms"
    if ns < 1e3:
        return f"{ns:,.0f} ns"
    return f"{ns / 1e3:,.1f} µs"

def pct(gf):
    return f"{100 * gf / peak_gf:.0f} %" if peak_gf else "n/a"

if peak_gf:
    print("Measured single-core peak (start / end of the run): f32 FMA "
          + " / ".join(f"{p:.1f}" for p in peaks)
          + f" GFLOP/s (mean {peak_gf:.1f}, i.e. {peak_gf / 32:.2f} GHz x 32 FLOP/cycle)"
          + ("; i16 multiply-add (`vpmaddwd`) " + " / ".join(f"{p:.1f}" for p in madds) + " GOP/s" if madds else "")
          + (f"; 512-bit FMA {fma512:.1f} GFLOP/s" if fma512 else "")
          + (f"; 512-bit `vpdpbusd` {dpbusd:.1f} GOP/s ({dpbusd / 2:.1f} G int8 MAC/s)" if dpbusd else "")
          + ".")
    print()

print("| model | dtype | path | latency / image | images/s | GFLOP/s | % of f32 FMA peak | vs burn-flex batch 1 |")
print("|---|---|---|--:|--:|--:|--:|--:|")
for model in ("edge", "seed-lab"):
    base = get(f"burn/{model}/flex/forward/b1")
    rows = []
    for dtype in ("f32", "f16", "int8"):
        for path, what in (("simd", f"SIMD ({SIMD})"), ("avx2", "AVX2 (`RUNTIME_SIMD=avx2`)"),
                           ("reference", "scalar reference")):
            r = get(f"model/{model}/{dtype}/{path}")
            if r:
                rows.append((dtype, "generated, " + what, r[0], r[1]))
    for backend in ("flex", "ndarray"):
        for kind, b, what in (("forward", "b1", "forward, batch 1"), ("forward", "b64", "forward, batch 64"),
                              ("predict", "b1", "predict (+ preprocessing), batch 1")):
            r = get(f"burn/{model}/{backend}/{kind}/{b}")
            if r:
                n = int(b[1:])
                rows.append(("f32", f"burn {backend} {what}", r[0] / n, r[1] / n))
    for dtype, path, ns, flops in rows:
        gf = flops / ns
        speed = f"{base[0] / ns:.1f}x" if base else "n/a"
        print(f"| `{model}` | {dtype} | {path} | {lat(ns)} | {1e9 / ns:,.0f} | {gf:.1f} | {pct(gf)} | {speed} |")

print()
print(f"| layer | MACs | dtype | reference | AVX2 | SIMD ({SIMD}) | SIMD speed-up | reference GFLOP/s | SIMD GFLOP/s | SIMD % of f32 FMA peak |")
print("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|")
layers = sorted({k.split("/")[1] + "/" + k.split("/")[2] for k in res if k.startswith("layer/")},
                key=lambda s: (not s.startswith("edge"), s))
for layer in layers:
    for dtype in ("f32", "f16", "int8"):
        ref = get(f"layer/{layer}/{dtype}/reference")
        fast = get(f"layer/{layer}/{dtype}/simd")
        if not fast:
            continue
        a2 = get(f"layer/{layer}/{dtype}/avx2")
        a2 = lat(a2[0]) if a2 else "—"
        macs = fast[1] // 2
        if macs == 0:
            print(f"| `{layer}` | — | {dtype} | — | {a2} | {lat(fast[0])} | — | — | — | — |")
            continue
        # Fused conv + pool rows have no separate reference (the fused kernel dispatches).
        r_lat, r_gf, speed = (lat(ref[0]), f"{ref[1] / ref[0]:.1f}", f"{ref[0] / fast[0]:.1f}x") if ref else ("—", "—", "—")
        print(f"| `{layer}` | {macs:,} | {dtype} | {r_lat} | {a2} | {lat(fast[0])} | {speed} "
              f"| {r_gf} | {fast[1] / fast[0]:.1f} | {pct(fast[1] / fast[0])} |")
PY
