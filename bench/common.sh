# Sourced by the benchmark scripts: ROOT, the peer venv and the whittle binary.
#   ROOT       the repository
#   PY         .venv-peer's python, created with onnx, onnxruntime and numpy if missing
#   WHITTLE    $WHITTLE_BIN if set, else a release build (made here; minutes from scratch)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$ROOT/.venv-peer"
PY="$VENV/bin/python"

if [[ ! -x "$PY" ]] || ! "$PY" -c 'import onnx, numpy' 2>/dev/null; then
    echo "== creating the Python venv $VENV (onnx, onnxruntime, numpy)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q onnx onnxruntime numpy >&2
fi

if [[ -n "${WHITTLE_BIN:-}" ]]; then
    WHITTLE="$WHITTLE_BIN"
else
    echo "== cargo build --release -p whittle (takes several minutes from scratch)" >&2
    (cd "$ROOT" && cargo build --release -q -p whittle >&2)
    WHITTLE="$ROOT/target/release/whittle"
fi
