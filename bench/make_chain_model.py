"""Generates the node-count benchmark models: a chain of N cheap element-wise nodes on a tiny
tensor (Relu, Neg, Abs in turn, so that no cleanup pass removes them and tract cannot fuse the
whole chain away), with one small initializer per 100 nodes added in, so that constants scale
with the graph too.

Usage: make_chain_model.py OUT.onnx --nodes N
Needs `onnx` and `numpy`.
"""

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--nodes", type=int, required=True)
args = parser.parse_args()

ops = ["Relu", "Neg", "Abs"]
nodes, inits = [], []
prev = "x"
for i in range(args.nodes):
    out = f"v{i}"
    if i % 100 == 99:
        c = f"c{i}"
        inits.append(numpy_helper.from_array(np.full((1, 8), 0.001 * (i % 7), dtype=np.float32), c))
        nodes.append(helper.make_node("Add", [prev, c], [out], name=f"n{i}"))
    else:
        nodes.append(helper.make_node(ops[i % 3], [prev], [out], name=f"n{i}"))
    prev = out
graph = helper.make_graph(
    nodes,
    "chain",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
    [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, 8])],
    initializer=inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 13)], producer_name="whittle-bench")
onnx.save(model, args.out)
