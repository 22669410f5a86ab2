#!/usr/bin/env bash
# Depthwise-separable rewrite benchmark, run on demand (not in CI): `whittle run
# pipelines/separable.yaml` on the VGG-style stack from bench/make_vgg_model.py (x[1,32,56,56],
# four 3x3 convolutions 32 -> 64 -> 64 -> 128 -> 128, filters of rank 3 per input channel plus
# noise), rank keeping 99.9% of the weight energy, in both depthwise layouts and with the
# per-layer latency check; then the PP-OCR det pipeline (pipelines/ppocr_det_separable.yaml) at a
# few rank settings when ../shared is present. Every figure is what the run's report measured:
# MACs, SQNR or text-mask IoU on the evaluation data, tract latency ratio with its 95% interval
# (single thread, candidate and original interleaved, RUNS=50 runs).
#
#   bash bench/separable.sh                      # builds whittle (release)
#   WHITTLE_BIN=path/to/whittle bash bench/separable.sh
#   DET=0 bash bench/separable.sh                # VGG only
#
# Needs the venv .venv-peer (onnx, numpy) for the generator; creates it if missing.
# Writes $OUT/summary.tsv (default OUT=bench/out/separable).
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT=${OUT:-"$ROOT/bench/out/separable"}
mkdir -p "$OUT"
vgg="$ROOT/bench/out/vgg.onnx"
[[ -f "$vgg" ]] || "$PY" "$ROOT/bench/make_vgg_model.py" "$vgg"

printf "model\tsetting\tapplied\tmacs_ratio\tfidelity\tlatency_ratio\tci95_low\tci95_high\n" > "$OUT/summary.tsv"
summarize() { # name setting report
    "$PY" - "$1" "$2" "$3" >> "$OUT/summary.tsv" <<'PY'
import json, sys
name, setting, path = sys.argv[1:]
r = json.load(open(path))
step = next(s for s in r["steps"] if s["pass"] == "separable_conv")
macs = r["candidate"]["macs"] / r["original"]["macs"]
checks = {c["name"]: c["value"] for c in r["gate"]["checks"]}
fidelity = f"IoU {checks['min_mask_iou']:.4f}" if "min_mask_iou" in checks else f"SQNR {checks.get('min_sqnr_db', float('nan')):.1f} dB"
lat = r["verification"]["latency"]["ratio"]
print(f"{name}\t{setting}\t{step['applied']}\t{macs:.3f}\t{fidelity}\t{lat['median_ratio']:.3f}\t{lat['ci95_low']:.3f}\t{lat['ci95_high']:.3f}")
PY
}

step=steps.8.separable_conv
vgg_case() { # name, then --set overrides
    local name=$1 report="$OUT/vgg.$1.report.json"
    shift
    "$WHITTLE" run "$ROOT/pipelines/separable.yaml" --model "$vgg" --input x=1,32,56,56 \
        --calibration random:1 --eval random:2 --set "$step.rank={energy: 0.999}" --set $step.refit=false \
        --set $step.latency_check=false --set verify.latency_runs=$RUNS "$@" \
        --out "$OUT/vgg.$name.onnx" --report "$report" --force > /dev/null || true
    summarize vgg "$name" "$report"
}
RUNS=${RUNS:-50}
vgg_case "energy 0.999 (rank 3)"
vgg_case "energy 0.999, layout multiplier" --set $step.layout=multiplier
vgg_case "energy 0.999, latency_check" --set $step.latency_check=true
vgg_case "fixed 2" --set "$step.rank={fixed: 2}"
vgg_case "fixed 1" --set "$step.rank={fixed: 1}"

if [[ "${DET:-1}" == 1 && -d "$ROOT/../shared/models" ]]; then
    step=steps.7.separable_conv
    det_case() { # name, then --set overrides
        local name=$1 report="$OUT/det.$1.report.json"
        shift
        "$WHITTLE" run "$ROOT/pipelines/ppocr_det_separable.yaml" --set verify.latency_runs=$RUNS "$@" \
            --out "$OUT/det.$name.onnx" --report "$report" --force > /dev/null || true
        summarize det "$name" "$report"
    }
    det_case "shipped: fixed 2, latency_check"
    det_case "fixed 2, all six" --set $step.latency_check=false
    det_case "fixed 3, all six" --set "$step.rank={fixed: 3}" --set $step.latency_check=false
    det_case "fixed 3, latency_check" --set "$step.rank={fixed: 3}"
    det_case "fixed 5, all six" --set "$step.rank={fixed: 5}" --set $step.latency_check=false
fi
column -t -s $'\t' "$OUT/summary.tsv"
