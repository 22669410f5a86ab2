#!/usr/bin/env bash
# Node-count benchmark, run on demand (not in CI): `whittle run pipelines/cleanup.yaml` on chains
# of 1k, 10k and 100k cheap nodes (bench/make_chain_model.py: Relu/Neg/Abs on a [1, 8] tensor,
# one small constant Add per 100 nodes), release build. The report's `timings` split the run
# into whittle's own work (prepare: load, validate, infer shapes, data; steps: the passes and the
# manager's checks between them; write) and tract's (load: parse, analyse, optimize, plan; run on
# the samples). Differential checks and latency runs are off (`--set`), as they only repeat
# tract's load and run; `DIFFERENTIAL=1` turns the checks on (7 more tract loads per run).
#
#   bash bench/node_count.sh                 # builds whittle (release)
#   SIZES="1000 10000" bash bench/node_count.sh
#   WHITTLE_BIN=path/to/whittle bash bench/node_count.sh
#
# Needs the venv .venv-peer (onnx, numpy) for the generator; creates it if missing.
set -euo pipefail

# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT="$ROOT/bench/out"
SIZES=${SIZES:-"1000 10000 100000"}
mkdir -p "$OUT/nodes"
differential=false
[[ "${DIFFERENTIAL:-0}" == 1 ]] && differential=true

printf "nodes\twall_s\twhittle_s\tprepare_s\tsteps_s\twrite_s\ttract_load_s\ttract_run_s\tdifferential_s\n" > "$OUT/nodes/results.tsv"
for n in $SIZES; do
    model="$OUT/chain$n.onnx"
    [[ -f "$model" ]] || "$PY" "$ROOT/bench/make_chain_model.py" "$model" --nodes "$n"
    report="$OUT/nodes/chain$n.report.json"
    start=$EPOCHREALTIME
    "$WHITTLE" run "$ROOT/pipelines/cleanup.yaml" --model "$model" --input x=1,8 --eval random \
        --set verify.latency_runs=0 --set verify.differential=$differential \
        --out "$OUT/nodes/chain$n.clean.onnx" --report "$report" --force > /dev/null
    end=$EPOCHREALTIME
    "$PY" - "$n" "$start" "$end" "$report" >> "$OUT/nodes/results.tsv" <<'PY'
import json, sys
n, start, end, report = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
t = {p["phase"]: p["seconds"] for p in json.load(open(report))["timings"]}
own = t.get("prepare", 0) + t.get("steps", 0) + t.get("write", 0)
load = t.get("tract_load_original", 0) + t.get("tract_load_candidate", 0)
run = t.get("run_original", 0) + t.get("run_candidate", 0)
print(f"{n}\t{end - start:.3f}\t{own:.3f}\t{t.get('prepare', 0):.3f}\t{t.get('steps', 0):.3f}\t{t.get('write', 0):.3f}\t{load:.3f}\t{run:.3f}\t{t.get('differential', 0):.3f}")
PY
done
column -t "$OUT/nodes/results.tsv"
