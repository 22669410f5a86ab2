#!/usr/bin/env bash
# Import + export benchmark, run on demand (not in CI): `whittle convert IN OUT` versus Python
# `onnx.load` + `onnx.save` of the same files, measured side by side in the same run.
#
#   bash bench/roundtrip.sh                 # builds whittle (release), 5 repetitions per tool and file
#   REPS=3 bash bench/roundtrip.sh          # fewer repetitions
#   WHITTLE_BIN=path/to/whittle bash bench/roundtrip.sh   # use that binary, skip the build
#   BENCH_FILES="a.onnx b.onnx" bash bench/roundtrip.sh    # other models instead of the default two
#
# Files: (a) /work/shared/models/ch_PP-OCRv4_rec_infer.onnx (10.9 MB), (b) a generated ~210 MB
# MatMul+Add chain of 50 layers of 4 MiB weights, (c) the same generator with one 207 MB weight
# (peak memory that grows with the largest tensor shows there). (b) and (c) are made by
# bench/make_big_model.py (fixed seed) and cached in bench/out/ (git-ignored).
#
# Time is the wall clock of the whole process (start-up included, for both tools), taken with bash's
# EPOCHREALTIME around the command; peak memory is "Maximum resident set size" from
# `/usr/bin/time -v`. Each tool runs once untimed per file (warm page cache), then REPS times,
# alternating; the table shows the median time and the maximum RSS. "py in-proc" is the median time
# Python spent inside load + save alone (without interpreter start-up and `import onnx`).
#
# Installs what it needs if missing: the Debian package `time` (for /usr/bin/time, via apt-get) and
# the Python venv /work/main/.venv-peer (git-ignored) with onnx, onnxruntime and numpy.
set -euo pipefail

if [[ ! -x /usr/bin/time ]]; then
    echo "== /usr/bin/time missing: installing the Debian package 'time' (apt-get)" >&2
    apt-get update -qq && apt-get install -y -qq time >&2
fi
# shellcheck source=bench/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
OUT="$ROOT/bench/out"
REPS=${REPS:-5}
mkdir -p "$OUT/rt"

BIG="$OUT/big_mlp_200mb.onnx"
ONE="$OUT/one_tensor_200mb.onnx"
if [[ -z "${BENCH_FILES:-}" ]]; then
    if [[ ! -f "$BIG" ]]; then
        echo "== generating $BIG" >&2
        "$PY" "$ROOT/bench/make_big_model.py" "$BIG"
    fi
    if [[ ! -f "$ONE" ]]; then
        echo "== generating $ONE" >&2
        "$PY" "$ROOT/bench/make_big_model.py" "$ONE" --layers 1 --hidden 7200
    fi
    BENCH_FILES="/work/shared/models/ch_PP-OCRv4_rec_infer.onnx $BIG $ONE"
fi

RESULTS="$OUT/results.tsv"
printf 'file\tbytes\ttool\trep\tseconds\trss_kb\tpy_inner\n' >"$RESULTS"
TIMELOG="$OUT/rt/time.log"

# run_one TOOL IN OUT REP: runs one conversion under /usr/bin/time -v and appends a result row
# (REP 0 is the untimed warm-up).
run_one() {
    local tool=$1 in=$2 out=$3 rep=$4 inner="" t0 t1
    rm -f "$out" "$out.data"
    t0=$EPOCHREALTIME
    if [[ $tool == whittle ]]; then
        /usr/bin/time -v -o "$TIMELOG" "$WHITTLE" convert "$in" "$out" >/dev/null 2>"$OUT/rt/stderr" \
            || { cat "$OUT/rt/stderr" >&2; echo "whittle convert failed on $in" >&2; exit 1; }
    else
        inner=$(/usr/bin/time -v -o "$TIMELOG" "$PY" "$ROOT/bench/py_roundtrip.py" "$in" "$out" 2>"$OUT/rt/stderr" | cut -d' ' -f1) \
            || { cat "$OUT/rt/stderr" >&2; echo "python onnx.load/save failed on $in" >&2; exit 1; }
    fi
    t1=$EPOCHREALTIME
    local rss secs
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TIMELOG")
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}')
    if ((rep > 0)); then
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(basename "$in")" "$(stat -c %s "$in")" "$tool" "$rep" "$secs" "$rss" "$inner" >>"$RESULTS"
    fi
}

SAME="$OUT/rt/same.tsv"
: >"$SAME"
for f in $BENCH_FILES; do
    name=$(basename "$f" .onnx)
    echo "== $name ($(stat -c %s "$f") bytes): warm-up + $REPS runs per tool" >&2
    for rep in $(seq 0 "$REPS"); do
        run_one whittle "$f" "$OUT/rt/$name.whittle.onnx" "$rep"
        run_one python "$f" "$OUT/rt/$name.python.onnx" "$rep"
    done
    # Both outputs must hold the same model (same bytes, or at least the same decoded message).
    if cmp -s "$OUT/rt/$name.whittle.onnx" "$OUT/rt/$name.python.onnx"; then
        same="same bytes"
    else
        same=$("$PY" - "$OUT/rt/$name.whittle.onnx" "$OUT/rt/$name.python.onnx" <<'PY'
import sys, onnx
a, b = (onnx.load(p, load_external_data=False) for p in sys.argv[1:3])
print("same message" if a == b else "DIFFERENT")
PY
)
    fi
    printf '%s\t%s\n' "$(basename "$f")" "$same" >>"$SAME"
    rm -f "$OUT/rt/$name".*.onnx "$OUT/rt/$name".*.onnx.data
done

"$PY" - "$RESULTS" "$SAME" "$REPS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
same = dict(line.rstrip("\n").split("\t") for line in open(sys.argv[2]))
reps = sys.argv[3]
files = list(dict.fromkeys(r["file"] for r in rows))
mb = lambda b: b / 1e6
head = ["file", "size MB", "whittle s", "python s", "w/py time", "py in-proc s", "whittle RSS MB", "python RSS MB",
        "w RSS/size", "py RSS/size", "outputs", "targets"]
table = []
for f in files:
    def of(tool):
        return [r for r in rows if r["file"] == f and r["tool"] == tool]
    w, p = of("whittle"), of("python")
    size = int(w[0]["bytes"])
    wt = statistics.median(float(r["seconds"]) for r in w)
    pt = statistics.median(float(r["seconds"]) for r in p)
    pin = statistics.median(float(r["py_inner"]) for r in p)
    wr = max(int(r["rss_kb"]) for r in w) * 1024
    pr = max(int(r["rss_kb"]) for r in p) * 1024
    ok = []
    ok.append("faster" if wt < pt else "SLOWER")
    ok.append("RSS<2x" if wr < 2 * size else "RSS>=2x")
    table.append([f, f"{mb(size):.1f}", f"{wt:.3f}", f"{pt:.3f}", f"{wt / pt:.2f}", f"{pin:.3f}", f"{mb(wr):.1f}",
                  f"{mb(pr):.1f}", f"{wr / size:.2f}", f"{pr / size:.2f}", same.get(f, "?"), " ".join(ok)])
widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
line = lambda cells: "| " + " | ".join(str(c).ljust(n) for c, n in zip(cells, widths)) + " |"
print(f"\nmedian wall time of {reps} runs (whole process), max RSS over the runs; targets: faster than python, whittle RSS < 2x file size")
print(line(head))
print("|" + "|".join("-" * (n + 2) for n in widths) + "|")
for t in table:
    print(line(t))
PY
echo "raw measurements: $RESULTS" >&2
