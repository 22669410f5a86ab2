"""Generates the separable-rewrite benchmark model: a VGG-style stack of 3x3 convolutions with
ReLUs (x[1, 32, 56, 56] -> 64 -> 64 -> 128 -> 128), whose filters, like trained ones to a degree,
have low rank per input channel: each input channel's filters span 3 kernels, plus noise 40 dB
below. Fixed seed, so the file is the same on every machine.

Usage: make_vgg_model.py OUT.onnx
Needs `onnx` and `numpy`.
"""

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

parser = argparse.ArgumentParser()
parser.add_argument("out")
args = parser.parse_args()

rng = np.random.default_rng(0)
widths = [32, 64, 64, 128, 128]
nodes, inits = [], []
prev = "x"
for l, (c_in, c_out) in enumerate(zip(widths, widths[1:])):
    mix = rng.standard_normal((c_out, c_in, 3))
    basis = rng.standard_normal((c_in, 3, 9))
    w = np.einsum("oir,irk->oik", mix, basis)
    w += 0.01 * np.sqrt((w**2).mean()) * rng.standard_normal(w.shape)
    w *= np.sqrt(2.0 / (c_in * 9)) / np.sqrt((w**2).mean())
    inits.append(numpy_helper.from_array(w.reshape(c_out, c_in, 3, 3).astype(np.float32), f"w{l}"))
    inits.append(numpy_helper.from_array((0.1 * rng.standard_normal(c_out)).astype(np.float32), f"b{l}"))
    nodes.append(helper.make_node("Conv", [prev, f"w{l}", f"b{l}"], [f"conv{l}"], name=f"conv{l}", pads=[1, 1, 1, 1]))
    prev = f"conv{l}"
    if l + 1 < len(widths) - 1:
        nodes.append(helper.make_node("Relu", [prev], [f"relu{l}"], name=f"relu{l}"))
        prev = f"relu{l}"
graph = helper.make_graph(
    nodes,
    "vgg",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, widths[0], 56, 56])],
    [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [1, widths[-1], 56, 56])],
    initializer=inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_operatorsetid("", 13)], producer_name="whittle-bench")
onnx.checker.check_model(model)
onnx.save(model, args.out)
