#!/usr/bin/env bash
# INT8 static quantization, side by side in one run: whittle's shipped pipelines
# (pipelines/ppocr_{cls,det,rec}_int8.yaml) against onnxruntime's quantize_static (QDQ,
# per-channel, MinMax and Percentile; ../shared/peer/ort_quant_baseline.py) on the same models and
# calibration data. Every quantized model is judged by ../shared/peer/compare.py against the FP32
# original on the evaluation set (onnx.checker, fidelity, task metric, size, onnxruntime latency
# against FP32, interleaved, one thread). Needs ../shared and .venv-peer (see ../shared/peer).
#
#   bash bench/int8_vs_ort.sh            # figures in $OUT/summary.md (default /tmp/whittle-int8-bench)
#
# Timing: whittle's "quantization" is the quantize_static step with calibration and without the
# accuracy fallback (a run with fallback_rounds=0); onnxruntime's is quantize_static's wall time
# (the baseline's quant_wall_s). Peak memory is each whole process's maximum RSS (/usr/bin/time):
# an upper bound on both sides. Memory against the number of calibration samples: the rec model
# calibrated on its 32 samples and on the same samples repeated 4x (128).
set -euo pipefail
cd "$(dirname "$0")/.."
S=../shared
PY=.venv-peer/bin/python
W=target/release/whittle
OUT=${OUT:-/tmp/whittle-int8-bench}
RUNS=${RUNS:-50}
mkdir -p "$OUT"
cargo build --release -q -p whittle

for m in cls det rec; do
  case $m in
    # step: the quantize_static step's number in the pipeline (rec smooths its MatMuls first).
    cls) model=ch_ppocr_mobile_v2.0_cls_infer; calib=ocr_cls_calib; ev=ocr_cls_eval; task=(); step=8 ;;
    det) model=ch_PP-OCRv4_det_infer; calib=ocr_det640_calib; ev=ocr_det640_eval; task=(--mask-threshold 0.3); step=8 ;;
    rec) model=ch_PP-OCRv4_rec_infer; calib=ocr_rec_calib; ev=ocr_rec_eval; task=(--ctc); step=9 ;;
  esac
  echo "== $m: whittle (timing run, no fallback)"
  /usr/bin/time -f "%e %M" -o "$OUT/$m.whittle_nofb.time" "$W" run "pipelines/ppocr_${m}_int8.yaml" \
    --set "steps.$step.quantize_static.fallback_rounds=0" --set verify.latency_runs=0 \
    --out "$OUT/${m}_whittle_nofb.onnx" --report "$OUT/${m}_whittle_nofb.json" --force > "$OUT/$m.whittle_nofb.log" 2>&1 || true
  echo "== $m: whittle (the shipped pipeline)"
  "$W" run "pipelines/ppocr_${m}_int8.yaml" --out "$OUT/${m}_whittle.onnx" --report "$OUT/${m}_whittle.json" --force \
    > "$OUT/$m.whittle.log" 2>&1 || true
  echo "== $m: onnxruntime quantize_static"
  /usr/bin/time -f "%e %M" -o "$OUT/$m.ort.time" "$PY" "$S/peer/ort_quant_baseline.py" "$S/models/$model.onnx" \
    --calib "$S/data/$calib.npz" --eval "$S/data/$ev.npz" --out "$OUT/ort_$m" --methods minmax,percentile --no-dynamic \
    "${task[@]}" --runs 0 > "$OUT/$m.ort.log" 2>&1 || true
  for cand in "$OUT/${m}_whittle.onnx" "$OUT/ort_$m/${model}_qdq_minmax.onnx" "$OUT/ort_$m/${model}_qdq_percentile.onnx"; do
    [ -f "$cand" ] || { echo "missing $cand"; continue; }
    "$PY" "$S/peer/compare.py" "$S/models/$model.onnx" "$cand" --inputs "$S/data/$ev.npz" "${task[@]}" \
      --runs "$RUNS" --threads 1 --json "$cand.compare.json" | tail -1
  done
done

echo "== memory against calibration samples (rec, 32 and 128 samples)"
"$PY" -c "
import numpy as np, sys
d = np.load('$S/data/ocr_rec_calib.npz')
np.savez('$OUT/rec_calib_x4.npz', x=np.concatenate([d['x']] * 4))
"
for n in 32 128; do
  data="$S/data/ocr_rec_calib.npz"; [ $n = 128 ] && data="$OUT/rec_calib_x4.npz"
  /usr/bin/time -f "%e %M" -o "$OUT/rec.samples$n.time" "$W" run pipelines/ppocr_rec_int8.yaml --calibration "$data" \
    --set steps.9.quantize_static.fallback_rounds=0 --set verify.latency_runs=0 \
    --out "$OUT/rec_$n.onnx" --report "$OUT/rec_$n.json" --force > /dev/null 2>&1 || true
done

"$PY" bench/int8_summary.py "$OUT" | tee "$OUT/summary.md"
