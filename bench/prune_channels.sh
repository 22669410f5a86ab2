#!/usr/bin/env bash
# Channel pruning benchmark, run on demand (not in CI): the three PP-OCR models pruned by
# `pipelines/prune_channels.yaml` with per-group ratios from measured sensitivity (30% of the
# MACs of det's prunable layers, 30% of the channels of cls and rec), without and with the
# least-squares refit. Prints, per run, what the report measured (parameters, MACs, tract latency
# with its interval) and ../shared/peer/compare.py's verdict on the evaluation data (output SQNR,
# det text-mask IoU at 0.3, cls argmax agreement, rec CTC string agreement).
#
#   bash bench/prune_channels.sh                 # builds whittle (release)
#   WHITTLE_BIN=path/to/whittle MODELS="det" IMPORTANCE=output_error bash bench/prune_channels.sh
#   bash bench/prune_channels.sh sweep           # det swept over 10..50% of its MACs
#
# IMPORTANCE: l2 (default), l1, activation or output_error (both measured on calibration data).
#
# Needs ../shared and the venv .venv-peer; writes the models and logs to $OUT
# (default bench/out/prune_channels).
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT=${OUT:-"$ROOT/bench/out/prune_channels"}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SHARED="$ROOT/../shared"
MODELS=${MODELS:-"det cls rec"}
IMPORTANCE=${IMPORTANCE:-l2}

if [ "${1:-}" = sweep ]; then
    # pipelines/ppocr_det_prune.yaml at 10..50% of the MACs; the sensitivity table is measured by
    # the first run and reused by the others. Table and chart in $OUT/det_sweep.
    "$WHITTLE" sweep "$ROOT/pipelines/ppocr_det_prune.yaml" --values 0.1,0.2,0.3,0.4,0.5 \
        --set "steps.8.prune_channels.importance=$IMPORTANCE" \
        --set "steps.8.prune_channels.sensitivity_file=$OUT/det_sweep/det.$IMPORTANCE.sensitivity.json" \
        --set verify.latency_runs=20 --out-dir "$OUT/det_sweep" | tee "$OUT/det_sweep.log"
    exit 0
fi

run() { # key model input calibration evaluation compare-flags target refit
    local key=$1 model=$2 input=$3 calib=$4 eval=$5 flags=$6 target=$7 refit=$8
    local out="$OUT/$key.$target.$IMPORTANCE.refit-$refit.onnx"
    "$WHITTLE" run "$ROOT/pipelines/prune_channels.yaml" --force --model "$SHARED/models/$model" --input "$input" \
        --calibration "$SHARED/data/$calib" --eval "$SHARED/data/$eval" \
        --set steps.8.prune_channels.ratio=0.3 --set steps.8.prune_channels.scope=sensitivity \
        --set "steps.8.prune_channels.target=$target" --set "steps.8.prune_channels.reconstruct=$refit" \
        --set "steps.8.prune_channels.importance=$IMPORTANCE" \
        --set verify.latency_runs=10 --set verify.min_sqnr_db=null --set verify.max_accuracy_drop=null \
        --out "$out" > "$out.log" 2>&1
    echo "== $key: 30% of the $target by sensitivity, importance $IMPORTANCE, reconstruct: $refit"
    grep -E "parameters  |MACs  |latency median|reconstruction in" "$out.log" | cut -c1-200
    # shellcheck disable=SC2086
    "$PY" "$SHARED/peer/compare.py" "$SHARED/models/$model" "$out" --inputs "$SHARED/data/$eval" --runs 0 $flags | grep -E "^compare:"
}

for refit in false true; do
    for key in $MODELS; do
        case $key in
            det) run det ch_PP-OCRv4_det_infer.onnx x=1,3,640,640 ocr_det640_calib.npz ocr_det640_eval.npz "--mask-threshold 0.3" macs $refit ;;
            cls) run cls ch_ppocr_mobile_v2.0_cls_infer.onnx x=1,3,48,192 ocr_cls_calib.npz ocr_cls_eval.npz "--argmax-axis 1" channels $refit ;;
            rec) run rec ch_PP-OCRv4_rec_infer.onnx x=1,3,48,320 ocr_rec_calib.npz ocr_rec_eval.npz "--ctc" channels $refit ;;
        esac
    done
done
