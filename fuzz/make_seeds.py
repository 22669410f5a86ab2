"""Writes small ONNX seed inputs for the `import` fuzz target into the folder given as argv[1].

Each seed exercises one import path: Constant-node forms, ConstantOfShape folding, typed tensor
fields, sparse initializers, external data, subgraphs that capture outer names, and a stripped
copy of the test model (same graph, one-element weights). Needs the `onnx` and `numpy` packages.
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
here = os.path.dirname(os.path.abspath(__file__))


def save(name, graph, opset=13, **kw):
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], **kw)
    with open(os.path.join(out, name), "wb") as f:
        f.write(m.SerializeToString())


F = TensorProto.FLOAT
x = helper.make_tensor_value_info("x", F, ["N", 4])
y = helper.make_tensor_value_info("y", F, None)

# 1. Constant node forms.
consts = [
    helper.make_node("Constant", [], ["c_t"], value=numpy_helper.from_array(np.arange(4, dtype=np.float32))),
    helper.make_node("Constant", [], ["c_f"], value_float=1.5),
    helper.make_node("Constant", [], ["c_fs"], value_floats=[1.0, 2.0]),
    helper.make_node("Constant", [], ["c_i"], value_int=3),
    helper.make_node("Constant", [], ["c_is"], value_ints=[1, 4]),
    helper.make_node("Constant", [], ["c_s"], value_string="hi"),
    helper.make_node("Constant", [], ["c_ss"], value_strings=["a", "b"]),
    helper.make_node(
        "Constant",
        [],
        ["c_sp"],
        sparse_value=helper.make_sparse_tensor(
            helper.make_tensor("v", F, [2], [1.0, 2.0]), helper.make_tensor("i", TensorProto.INT64, [2], [0, 3]), [4]
        ),
    ),
    helper.make_node("Add", ["x", "c_t"], ["a"]),
    helper.make_node("Reshape", ["a", "c_is"], ["y"]),
]
save("constants.onnx", helper.make_graph(consts, "constants", [x], [y], value_info=[helper.make_tensor_value_info("a", F, ["N", 4])]))

# 2. ConstantOfShape of a constant shape (folded), with and without `value`.
shape = numpy_helper.from_array(np.array([2, 4], dtype=np.int64), "shape")
nodes = [
    helper.make_node("ConstantOfShape", ["shape"], ["z"], value=helper.make_tensor("v", TensorProto.INT32, [1], [7])),
    helper.make_node("ConstantOfShape", ["shape"], ["z2"]),
    helper.make_node("Cast", ["z"], ["zf"], to=F),
    helper.make_node("Add", ["zf", "z2"], ["s"]),
    helper.make_node("Add", ["x", "s"], ["y"]),
]
save("constant_of_shape.onnx", helper.make_graph(nodes, "cos", [x], [y], [shape]))

# 3. Typed data fields and unusual dtypes as initializers.
inits = [
    helper.make_tensor("f_typed", F, [2], [1.0, 2.0]),
    helper.make_tensor("d_typed", TensorProto.DOUBLE, [2], [1.0, 2.0]),
    helper.make_tensor("i64", TensorProto.INT64, [3], [1, -2, 3]),
    helper.make_tensor("u64", TensorProto.UINT64, [1], [5]),
    helper.make_tensor("u32", TensorProto.UINT32, [1], [5]),
    helper.make_tensor("h", TensorProto.FLOAT16, [2], np.array([1.0, 2.0], dtype=np.float16)),
    helper.make_tensor("bf", TensorProto.BFLOAT16, [1], [1.0]),
    helper.make_tensor("b", TensorProto.BOOL, [2], [True, False]),
    helper.make_tensor("i4", TensorProto.INT4, [3], [1, -2, 3]),
    helper.make_tensor("s", TensorProto.STRING, [2], [b"ab", b"c"]),
    helper.make_tensor("empty", F, [0, 3], []),
    helper.make_tensor("raw", F, [2], np.array([1, 2], dtype=np.float32).tobytes(), raw=True),
    helper.make_tensor("c64", TensorProto.COMPLEX64, [1], [1 + 2j]),
]
nodes = [helper.make_node("Identity", ["x"], ["y"])]
g = helper.make_graph(nodes, "typed", [x], [y], inits)
g.sparse_initializer.append(
    helper.make_sparse_tensor(helper.make_tensor("sp", F, [1], [1.0]), helper.make_tensor("spi", TensorProto.INT64, [1], [2]), [4])
)
save("typed.onnx", g)

# 4. External data (decode_model with base_dir None must report, not panic).
t = TensorProto(name="w", data_type=F, dims=[4])
t.data_location = TensorProto.EXTERNAL
for k, v in [("location", "w.bin"), ("offset", "0"), ("length", "16")]:
    e = t.external_data.add()
    e.key, e.value = k, v
save("external.onnx", helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "ext", [x], [y], [t]))

# 5. If and Loop with subgraphs reading outer names.
cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
one = numpy_helper.from_array(np.ones(4, dtype=np.float32), "one")
then_g = helper.make_graph([helper.make_node("Add", ["x", "one"], ["t"])], "then", [], [helper.make_tensor_value_info("t", F, None)])
else_g = helper.make_graph([helper.make_node("Sub", ["x", "one"], ["e"])], "else", [], [helper.make_tensor_value_info("e", F, None)])
body = helper.make_graph(
    [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Add", ["acc", "one"], ["acc_out"])],
    "body",
    [
        helper.make_tensor_value_info("i", TensorProto.INT64, []),
        helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
        helper.make_tensor_value_info("acc", F, None),
    ],
    [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), helper.make_tensor_value_info("acc_out", F, None)],
)
trip = numpy_helper.from_array(np.array(3, dtype=np.int64), "trip")
nodes = [
    helper.make_node("If", ["cond"], ["r"], then_branch=then_g, else_branch=else_g),
    helper.make_node("Loop", ["trip", "cond", "r"], ["y"], body=body),
]
save("subgraphs.onnx", helper.make_graph(nodes, "sub", [x, cond], [y], [one, trip]))

# 6. Metadata, several opsets, a local function, doc strings.
fn = helper.make_function("local", "MyRelu", ["a"], ["b"], [helper.make_node("Relu", ["a"], ["b"])], [helper.make_opsetid("", 13)])
g = helper.make_graph([helper.make_node("MyRelu", ["x"], ["y"], domain="local", name="f")], "meta", [x], [y], doc_string="doc")
m = helper.make_model(
    g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("local", 1)], functions=[fn], producer_name="seed"
)
helper.set_model_props(m, {"k": "v"})
with open(os.path.join(out, "meta.onnx"), "wb") as f:
    f.write(m.SerializeToString())

# 7. Unsorted nodes, empty optional inputs, unused outputs.
nodes = [
    helper.make_node("Relu", ["a"], ["y"]),
    helper.make_node("Clip", ["x", "", "mx"], ["a"]),
    helper.make_node("Split", ["x"], ["p", ""], axis=1, num_outputs=2),
]
mx = numpy_helper.from_array(np.array(6, dtype=np.float32), "mx")
save("unsorted.onnx", helper.make_graph(nodes, "unsorted", [x], [y], [mx]), opset=18)

# 8. The test model with every weight (initializer or Constant node) over 16 elements shrunk to one
#    element: the same graph in a few tens of KB.
src = os.path.join(here, "..", "testdata", "ch_ppocr_mobile_v2.0_cls_infer.onnx")
if os.path.exists(src):
    m = onnx.load(src)
    tensors = list(m.graph.initializer)
    tensors += [a.t for n in m.graph.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"]
    for t in tensors:
        arr = numpy_helper.to_array(t)
        if arr.size > 16:
            t.CopyFrom(numpy_helper.from_array(np.zeros([1] * arr.ndim, dtype=arr.dtype), t.name))
    with open(os.path.join(out, "cls_stripped.onnx"), "wb") as f:
        f.write(m.SerializeToString())

# 9. Tiny hand-made protos: empty, just ir_version, a graph with nothing.
with open(os.path.join(out, "empty.bin"), "wb") as f:
    f.write(b"")
m = onnx.ModelProto(ir_version=8)
m.opset_import.add().version = 13
m.graph.name = "g"
with open(os.path.join(out, "bare.onnx"), "wb") as f:
    f.write(m.SerializeToString())
