"""Generates the ~200 MB benchmark model: a chain of MatMul + Add layers with float32 random
initializers from a fixed seed, saved inline in one file.

Usage: make_big_model.py OUT.onnx [--layers N] [--hidden H]
Defaults: 50 layers of 1024x1024 (4 MiB each): 210 MB. Needs `onnx` and `numpy`.
"""

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--layers", type=int, default=50)
parser.add_argument("--hidden", type=int, default=1024)
args = parser.parse_args()

rng = np.random.default_rng(20240601)
h = args.hidden
inits, nodes = [], []
prev = "x"
for i in range(args.layers):
    w = (rng.standard_normal((h, h), dtype=np.float32) / np.sqrt(h)).astype(np.float32)
    b = rng.standard_normal(h, dtype=np.float32) * np.float32(0.01)
    inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
    nodes += [
        helper.make_node("MatMul", [prev, f"w{i}"], [f"mm{i}"], name=f"matmul{i}"),
        helper.make_node("Add", [f"mm{i}", f"b{i}"], [f"h{i}"], name=f"add{i}"),
    ]
    prev = f"h{i}"
nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
graph = helper.make_graph(
    nodes,
    "big_mlp",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", h])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", h])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="whittle-bench")
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save_model(model, args.out)
