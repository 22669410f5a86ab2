"""The Python peer of `whittle convert`: onnx.load + onnx.save of one file.

Usage: py_roundtrip.py IN.onnx OUT.onnx
Prints the seconds spent inside load + save (without interpreter start-up and `import onnx`) on
stdout; bench/roundtrip.sh times the whole process as it does for whittle.
"""

import sys
import time

t0 = time.perf_counter()
import onnx  # noqa: E402

t1 = time.perf_counter()
model = onnx.load(sys.argv[1])
onnx.save(model, sys.argv[2])
t2 = time.perf_counter()
print(f"{t2 - t1:.6f} {t1 - t0:.6f}")
