#!/usr/bin/env bash
# Magnitude pruning benchmark, run on demand (not in CI): the three PP-OCR models pruned to 50%
# of the weights of their prunable layers (>= 1024 weights) by `pipelines/prune_magnitude.yaml`
# with the command-line overrides, once per allocation: uniform (every layer 50%), one global
# magnitude threshold, and measured sensitivity (magnitude and Wanda scores, Wanda with the
# least-squares refit), plus 2:4 on every layer without and with the refit. Every figure is what
# the run's report measured on the ../shared evaluation data: output SQNR, the task metric (cls top-1 accuracy, det text-mask IoU at 0.3, rec CTC string accuracy),
# file size and zstd size against the original.
#
#   bash bench/prune.sh                          # builds whittle (release)
#   WHITTLE_BIN=path/to/whittle bash bench/prune.sh
#   MODELS="cls rec" bash bench/prune.sh
#   CASES="uniform 2of4-refit" bash bench/prune.sh   # some settings only
#
# Needs ../shared and the venv .venv-peer (for the summary); creates the venv if missing.
# Writes $OUT/summary.tsv (default OUT=bench/out/prune); sensitivity tables (JSON, CSV, SVG) in $OUT.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT=${OUT:-"$ROOT/bench/out/prune"}
mkdir -p "$OUT"
# Absolute: the sensitivity tables' paths would otherwise resolve against the pipeline's folder.
OUT=$(cd "$OUT" && pwd)
SHARED="$ROOT/../shared"

printf "model\tsetting\tsparsity\tsqnr_db\ttask\tsize_ratio\tzstd_ratio\n" > "$OUT/summary.tsv"
summarize() { # model setting report
    "$PY" - "$1" "$2" "$3" >> "$OUT/summary.tsv" <<'PY'
import json, sys
name, setting, path = sys.argv[1:]
r = json.load(open(path))
checks = {c["name"]: c["value"] for c in r["gate"]["checks"]}
task = next((f"{k} {checks[k]:.4f}" for k in ("min_mask_iou", "max_accuracy_drop", "max_top1_drop") if k in checks), "-")
o, c = r["original"], r["candidate"]
sparsity = 1 - c["nonzero_parameters"] / o["nonzero_parameters"]
print(f"{name}\t{setting}\t{sparsity:.3f}\t{checks.get('min_sqnr_db', float('nan')):.2f}\t{task}"
      f"\t{c['file_bytes'] / o['file_bytes']:.3f}\t{c['compressed_bytes'] / o['compressed_bytes']:.3f}")
PY
}

step=steps.8.prune_magnitude
run_case() { # model setting, then --set overrides
    local model=$1 name=$2 report="$OUT/$1.$2.report.json"
    shift 2
    [[ -z "${CASES:-}" || " $CASES " == *" $name "* ]] || return 0
    local args
    case $model in
        cls) args=(--model "$SHARED/models/ch_ppocr_mobile_v2.0_cls_infer.onnx" --input x=1,3,48,192
                   --calibration "$SHARED/data/ocr_cls_calib.npz" --eval "$SHARED/data/ocr_cls_eval.npz"
                   --set verify.max_top1_drop=1.0) ;;
        det) args=(--model "$SHARED/models/ch_PP-OCRv4_det_infer.onnx" --input x=1,3,640,640
                   --calibration "$SHARED/data/ocr_det640_calib.npz" --eval "$SHARED/data/ocr_det640_eval.npz"
                   --set verify.max_top1_drop=null --set verify.mask_threshold=0.3 --set verify.min_mask_iou=0.0) ;;
        rec) args=(--model "$SHARED/models/ch_PP-OCRv4_rec_infer.onnx" --input x=1,3,48,320
                   --calibration "$SHARED/data/ocr_rec_calib.npz" --eval "$SHARED/data/ocr_rec_eval.npz"
                   --set verify.max_top1_drop=null --set verify.ctc=true --set verify.max_accuracy_drop=1.0) ;;
    esac
    "$WHITTLE" run "$ROOT/pipelines/prune_magnitude.yaml" "${args[@]}" --set verify.min_sqnr_db=-100 \
        --set verify.latency_runs=3 "$@" --out "$OUT/$model.$name.onnx" --report "$report" --force > "$OUT/$model.$name.log" 2>&1 || true
    summarize "$model" "$name" "$report"
}

for model in ${MODELS:-cls det rec}; do
    run_case "$model" uniform --set $step.sparsity=0.5
    run_case "$model" global --set $step.sparsity=0.5 --set $step.scope=global
    run_case "$model" sensitivity --set $step.sparsity=0.5 --set $step.scope=sensitivity \
        --set "$step.sensitivity_file=\"$OUT/$model.sensitivity.json\""
    run_case "$model" sensitivity-wanda --set $step.sparsity=0.5 --set $step.scope=sensitivity --set $step.score=wanda \
        --set "$step.sensitivity_file=\"$OUT/$model.sensitivity-wanda.json\""
    run_case "$model" sensitivity-wanda-refit --set $step.sparsity=0.5 --set $step.scope=sensitivity --set $step.score=wanda \
        --set $step.reconstruct=true --set "$step.sensitivity_file=\"$OUT/$model.sensitivity-wanda.json\""
    run_case "$model" 2of4 --set "$step.pattern=\"2:4\""
    run_case "$model" 2of4-refit --set "$step.pattern=\"2:4\"" --set $step.reconstruct=true
done
column -t -s $'\t' "$OUT/summary.tsv"
