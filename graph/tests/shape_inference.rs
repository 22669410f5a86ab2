//! Shape and dtype inference: one small graph per op family with hand-computed shapes, the
//! opset-dependent forms, the run-time shape arithmetic of real exports, errors, unknown ops, and
//! the three PP-OCR models of `shared/models` (every value must get a full shape and dtype).

use whittle_graph::builder::{GraphBuilder, attr_float, attr_int, attr_ints, attr_string, attr_tensor};
use whittle_graph::shape::infer::{InferError, InferOptions, InferReport, infer_shapes};
use whittle_graph::{DataType, Dim, Model, Shape, Tensor, ValueId, load_model, model_to_proto};

// ----- helpers -----

fn infer(m: &mut Model) -> InferReport {
    infer_shapes(m, &InferOptions::default()).unwrap_or_else(|e| panic!("inference failed: {e}"))
}

fn infer_err(m: &mut Model) -> InferError {
    match infer_shapes(m, &InferOptions::default()) {
        Ok(r) => panic!("inference should fail, got {r:?}"),
        Err(e) => e,
    }
}

/// The fully known shape of a value.
fn shape(m: &Model, v: ValueId) -> Vec<i64> {
    let value = m.graph.value(v);
    value.shape.as_ref().and_then(Shape::concrete).unwrap_or_else(|| panic!("'{}' has no known shape: {:?}", value.name, value.shape))
}

/// The shape as text (`[N,12]`, `[2,?]`), "none" when even the rank is unknown.
fn shown(m: &Model, v: ValueId) -> String {
    m.graph.value(v).shape.as_ref().map_or_else(|| "none".to_string(), Shape::to_string)
}

fn dtype(m: &Model, v: ValueId) -> Option<DataType> {
    m.graph.value(v).dtype
}

fn ints(b: &mut GraphBuilder, name: &str, v: &[i64]) -> ValueId {
    b.constant(name, Tensor::from_i64(name, &[v.len() as i64], v))
}

fn scalar(b: &mut GraphBuilder, name: &str, v: i64) -> ValueId {
    b.constant(name, Tensor::from_i64(name, &[], &[v]))
}

fn floats(b: &mut GraphBuilder, name: &str, v: &[f32]) -> ValueId {
    b.constant(name, Tensor::from_f32(name, &[v.len() as i64], v))
}

/// A float constant of this shape (zeros): weights.
fn weight(b: &mut GraphBuilder, name: &str, dims: &[i64]) -> ValueId {
    let n: i64 = dims.iter().product();
    b.constant(name, Tensor::from_f32(name, dims, &vec![0.0; n as usize]))
}

fn sym(dims: &[&str]) -> Shape {
    Shape(dims.iter().map(|d| d.parse::<i64>().map_or_else(|_| Dim::Sym(d.to_string()), Dim::Known)).collect())
}

// ----- convolution and pooling -----

#[test]
fn conv_pads_strides_dilations_groups() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 32, 32]);
    let w = weight(&mut b, "w", &[8, 3, 3, 3]);
    let strided = b.node("Conv", &[x, w], &["strided"], vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])])[0];
    let dilated = b.node("Conv", &[x, w], &["dilated"], vec![attr_ints("dilations", &[2, 2])])[0];
    let dw_w = weight(&mut b, "dw_w", &[8, 1, 3, 3]);
    let depthwise = b.node("Conv", &[strided, dw_w], &["depthwise"], vec![attr_int("group", 8), attr_ints("pads", &[1, 1, 1, 1])])[0];
    let asym = b.node("Conv", &[x, w], &["asym"], vec![attr_ints("pads", &[0, 1, 2, 0]), attr_ints("kernel_shape", &[3, 3])])[0];
    let mut m = b.finish();
    let report = infer(&mut m);
    assert_eq!(report, InferReport { unknown_ops: vec![], unresolved: 0 });
    assert_eq!(shape(&m, strided), [1, 8, 16, 16]); // (32 + 2 - 3) / 2 + 1
    assert_eq!(shape(&m, dilated), [1, 8, 28, 28]); // 32 - (2 * 2 + 1) + 1
    assert_eq!(shape(&m, depthwise), [1, 8, 16, 16]);
    assert_eq!(shape(&m, asym), [1, 8, 32, 31]); // H: 32 + 0 + 2 - 3 + 1, W: 32 + 1 + 0 - 3 + 1
    assert_eq!(dtype(&m, strided), Some(DataType::Float));
}

#[test]
fn conv_auto_pad() {
    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[1, 3, 15, 15]);
    let w = weight(&mut b, "w", &[4, 3, 4, 4]);
    let mut outs = Vec::new();
    for pad in ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"] {
        outs.push(b.node("Conv", &[x, w], &[pad], vec![attr_string("auto_pad", pad), attr_ints("strides", &[2, 2])])[0]);
    }
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, outs[0]), [1, 4, 8, 8]); // ceil(15 / 2)
    assert_eq!(shape(&m, outs[1]), [1, 4, 8, 8]);
    assert_eq!(shape(&m, outs[2]), [1, 4, 6, 6]); // (15 - 4) / 2 + 1
    assert_eq!(shape(&m, outs[3]), [1, 4, 6, 6]);
}

#[test]
fn conv_channel_mismatch_names_the_node() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 8, 8]);
    let w = weight(&mut b, "w", &[4, 5, 3, 3]);
    let y = b.node("Conv", &[x, w], &["bad_conv"], vec![])[0];
    b.output(y);
    let mut m = b.finish();
    let err = infer_err(&mut m);
    let InferError::Inconsistent { node, op_type, message } = &err else { panic!("unexpected error {err}") };
    assert_eq!((node.as_str(), op_type.as_str()), ("bad_conv", "Conv"));
    assert!(message.contains("[1,3,8,8]") && message.contains("[4,5,3,3]"), "{message}");
    assert!(err.to_string().starts_with("node 'bad_conv' (Conv):"), "{err}");
}

#[test]
fn conv_transpose_output_padding_shape_group_auto_pad() {
    let mut b = GraphBuilder::new(12);
    let x = b.input("x", DataType::Float, &[1, 8, 10, 10]);
    let w = weight(&mut b, "w", &[8, 4, 3, 3]);
    let w_g = weight(&mut b, "w_g", &[8, 2, 2, 2]);
    let s2 = || attr_ints("strides", &[2, 2]);
    let padded =
        b.node("ConvTranspose", &[x, w], &["padded"], vec![s2(), attr_ints("pads", &[1, 1, 1, 1]), attr_ints("output_padding", &[1, 1])])
            [0];
    let grouped = b.node("ConvTranspose", &[x, w_g], &["grouped"], vec![s2(), attr_int("group", 2)])[0];
    let explicit = b.node("ConvTranspose", &[x, w], &["explicit"], vec![s2(), attr_ints("output_shape", &[15, 17])])[0];
    let same = b.node("ConvTranspose", &[x, w], &["same"], vec![s2(), attr_string("auto_pad", "SAME_UPPER")])[0];
    let dilated = b.node("ConvTranspose", &[x, w], &["dilated"], vec![attr_ints("dilations", &[2, 2])])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, padded), [1, 4, 20, 20]); // 2 * 9 + 1 + 3 - 2
    assert_eq!(shape(&m, grouped), [1, 4, 20, 20]); // channels 2 * group, 2 * 9 + 2
    assert_eq!(shape(&m, explicit), [1, 4, 15, 17]);
    assert_eq!(shape(&m, same), [1, 4, 20, 20]); // 10 * 2
    assert_eq!(shape(&m, dilated), [1, 4, 14, 14]); // 9 + (2 * 2 + 1)
}

#[test]
fn pooling_ceil_mode_auto_pad_and_global() {
    let mut b = GraphBuilder::new(12);
    let x = b.input("x", DataType::Float, &[1, 4, 7, 7]);
    let k2s2 = || vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])];
    let floor = b.node("MaxPool", &[x], &["floor", "indices"], k2s2());
    let mut ceil_attrs = k2s2();
    ceil_attrs.push(attr_int("ceil_mode", 1));
    let ceil = b.node("MaxPool", &[x], &["ceil"], ceil_attrs)[0];
    let k3s2 = |pad: &str| vec![attr_ints("kernel_shape", &[3, 3]), attr_ints("strides", &[2, 2]), attr_string("auto_pad", pad)];
    let same = b.node("AveragePool", &[x], &["same"], k3s2("SAME_UPPER"))[0];
    let valid = b.node("AveragePool", &[x], &["valid"], k3s2("VALID"))[0];
    let lp = b.node("LpPool", &[x], &["lp"], vec![attr_ints("kernel_shape", &[7, 1])])[0];
    let global = b.node("GlobalAveragePool", &[x], &["global"], vec![])[0];
    let global_max = b.node("GlobalMaxPool", &[x], &["global_max"], vec![])[0];
    // A last window that would start in the end padding is dropped: 5 + 2 pads, k2 s2 -> 3, not 4.
    let x5 = b.input("x5", DataType::Float, &[1, 1, 5, 5]);
    let mut drop_attrs = k2s2();
    drop_attrs.extend([attr_int("ceil_mode", 1), attr_ints("pads", &[1, 1, 1, 1])]);
    let dropped = b.node("MaxPool", &[x5], &["dropped"], drop_attrs)[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, floor[0]), [1, 4, 3, 3]); // floor(5 / 2) + 1
    assert_eq!(shape(&m, floor[1]), [1, 4, 3, 3]);
    assert_eq!(dtype(&m, floor[1]), Some(DataType::Int64));
    assert_eq!(shape(&m, ceil), [1, 4, 4, 4]); // ceil(5 / 2) + 1
    assert_eq!(shape(&m, same), [1, 4, 4, 4]); // ceil(7 / 2)
    assert_eq!(shape(&m, valid), [1, 4, 3, 3]); // (7 - 3) / 2 + 1
    assert_eq!(shape(&m, lp), [1, 4, 1, 7]);
    assert_eq!(shape(&m, global), [1, 4, 1, 1]);
    assert_eq!(shape(&m, global_max), [1, 4, 1, 1]);
    assert_eq!(shape(&m, dropped), [1, 1, 3, 3]);
}

#[test]
fn normalizations() {
    let mut b = GraphBuilder::new(17);
    let x = b.input("x", DataType::Float, &[2, 3, 4]);
    let p = weight(&mut b, "p", &[3]);
    let bn = b.node("BatchNormalization", &[x, p, p, p, p], &["bn"], vec![])[0];
    let inst = b.node("InstanceNormalization", &[x, p, p], &["inst"], vec![])[0];
    let g = weight(&mut b, "g", &[4]);
    let ln = b.node("LayerNormalization", &[x, g, g], &["ln", "mean", "inv_std"], vec![attr_int("axis", -1)]);
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, bn), [2, 3, 4]);
    assert_eq!(shape(&m, inst), [2, 3, 4]);
    assert_eq!(shape(&m, ln[0]), [2, 3, 4]);
    assert_eq!(shape(&m, ln[1]), [2, 3, 1]);
    assert_eq!(shape(&m, ln[2]), [2, 3, 1]);

    let mut b = GraphBuilder::new(17);
    let x = b.input("x", DataType::Float, &[2, 3, 4]);
    let p = weight(&mut b, "p", &[5]);
    b.node("BatchNormalization", &[x, p, p, p, p], &["bad_bn"], vec![]);
    let err = infer_err(&mut b.finish());
    assert!(err.to_string().contains("bad_bn"), "{err}");
}

// ----- linear algebra -----

#[test]
fn gemm_and_matmul() {
    let mut b = GraphBuilder::new(13);
    let a = b.input("a", DataType::Float, &[4, 3]);
    let bt = weight(&mut b, "bt", &[6, 4]);
    let gemm_t = b.node("Gemm", &[a, bt], &["gemm_t"], vec![attr_int("transA", 1), attr_int("transB", 1)])[0];
    let b2 = weight(&mut b, "b2", &[3, 5]);
    let c = weight(&mut b, "c", &[5]);
    let gemm = b.node("Gemm", &[a, b2, c], &["gemm"], vec![])[0];
    let x4 = b.input("x4", DataType::Float, &[2, 1, 3, 4]);
    let y3 = weight(&mut b, "y3", &[5, 4, 6]);
    let batched = b.node("MatMul", &[x4, y3], &["batched"], vec![])[0];
    let v = weight(&mut b, "v", &[4]);
    let m46 = weight(&mut b, "m46", &[4, 6]);
    let vec_mat = b.node("MatMul", &[v, m46], &["vec_mat"], vec![])[0];
    let x3 = b.input("x3", DataType::Float, &[2, 3, 4]);
    let mat_vec = b.node("MatMul", &[x3, v], &["mat_vec"], vec![])[0];
    let dot = b.node("MatMul", &[v, v], &["dot"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, gemm_t), [3, 6]);
    assert_eq!(shape(&m, gemm), [4, 5]);
    assert_eq!(shape(&m, batched), [2, 5, 3, 6]);
    assert_eq!(shape(&m, vec_mat), [6]);
    assert_eq!(shape(&m, mat_vec), [2, 3]);
    assert_eq!(shape(&m, dot), Vec::<i64>::new());

    let mut b = GraphBuilder::new(13);
    let a = b.input("a", DataType::Float, &[2, 3]);
    let w = weight(&mut b, "w", &[4, 5]);
    b.node("MatMul", &[a, w], &["bad_matmul"], vec![]);
    let err = infer_err(&mut b.finish());
    assert!(err.to_string().contains("bad_matmul") && err.to_string().contains("[2,3]"), "{err}");
}

// ----- element-wise -----

#[test]
fn broadcasting_and_dtypes() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2, 1, 4]);
    let y = b.input("y", DataType::Float, &[3, 1]);
    let add = b.node("Add", &[x, y], &["add"], vec![])[0];
    let sum = b.node("Sum", &[x, y, add], &["sum"], vec![])[0];
    let eq = b.node("Equal", &[x, y], &["eq"], vec![])[0];
    let cond = b.constant("cond", Tensor::from_raw("cond", DataType::Bool, &[1, 4], vec![1, 0, 1, 0]));
    let s = b.constant("s", Tensor::from_f32("s", &[], &[0.0]));
    let sel = b.node("Where", &[cond, y, s], &["sel"], vec![])[0];
    let both = b.node("And", &[eq, cond], &["both"], vec![])[0];
    let not = b.node("Not", &[both], &["not"], vec![])[0];
    let relu = b.node("Relu", &[add], &["relu"], vec![])[0];
    let hs = b.node("HardSigmoid", &[relu], &["hs"], vec![attr_float("alpha", 0.2)])[0];
    let cast = b.node("Cast", &[hs], &["cast"], vec![attr_int("to", DataType::Float16.to_onnx() as i64)])[0];
    let drop = b.node("Dropout", &[x], &["drop", "mask"], vec![]);
    let sm = b.node("Softmax", &[add], &["sm"], vec![attr_int("axis", -1)])[0];
    let clip = b.node("Clip", &[add, s, s], &["clip"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    for v in [add, sum, eq, both, not, relu, hs, cast, sm, clip] {
        assert_eq!(shape(&m, v), [2, 3, 4], "{}", m.graph.value(v).name);
    }
    assert_eq!(shape(&m, sel), [3, 4]);
    assert_eq!(dtype(&m, sel), Some(DataType::Float));
    assert_eq!(dtype(&m, eq), Some(DataType::Bool));
    assert_eq!(dtype(&m, not), Some(DataType::Bool));
    assert_eq!(dtype(&m, cast), Some(DataType::Float16));
    assert_eq!((shape(&m, drop[1]), dtype(&m, drop[1])), (vec![2, 1, 4], Some(DataType::Bool)));

    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2, 3]);
    let y = b.input("y", DataType::Float, &[4, 3]);
    b.node("Mul", &[x, y], &["bad_mul"], vec![]);
    let err = infer_err(&mut b.finish());
    assert!(err.to_string().contains("bad_mul") && err.to_string().contains("[2,3] and [4,3]"), "{err}");
}

#[test]
fn clip_min_max_attributes_and_inputs() {
    let mut b = GraphBuilder::new(6);
    let x = b.input("x", DataType::Float, &[2, 3]);
    let y = b.node("Clip", &[x], &["y"], vec![attr_float("min", 0.0), attr_float("max", 6.0)])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, y), [2, 3]);

    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[2, 3]);
    let max = b.constant("max", Tensor::from_f32("max", &[], &[6.0]));
    let id = b.node_id("Clip", &[Some(x), None, Some(max)], &["y"], vec![]);
    let mut m = b.finish();
    infer(&mut m);
    let y = m.graph.node(id).and_then(|n| n.output(0)).expect("output");
    assert_eq!(shape(&m, y), [2, 3]);
}

#[test]
fn symbolic_dims_propagate() {
    let mut b = GraphBuilder::new(13);
    let x = b.input_shape("x", DataType::Float, sym(&["N", "3", "4"]));
    let y = b.input_shape("y", DataType::Float, sym(&["1", "3", "1"]));
    let z = b.input_shape("z", DataType::Float, sym(&["M", "3", "4"]));
    let add = b.node("Add", &[x, y], &["add"], vec![])[0];
    let mixed = b.node("Add", &[x, z], &["mixed"], vec![])[0];
    let target = ints(&mut b, "target", &[0, -1]);
    let flat = b.node("Reshape", &[add, target], &["flat"], vec![])[0];
    let w = weight(&mut b, "w", &[12, 5]);
    let mm = b.node("MatMul", &[flat, w], &["mm"], vec![])[0];
    let mut m = b.finish();
    let report = infer(&mut m);
    assert_eq!(shown(&m, add), "[N,3,4]");
    assert_eq!(shown(&m, mixed), "[?,3,4]");
    assert_eq!(shown(&m, flat), "[N,12]");
    assert_eq!(shown(&m, mm), "[N,5]");
    // x, y, z and four outputs are not fully known (y is: [1,3,1]).
    assert_eq!(report.unresolved, 6);
}

// ----- layout -----

#[test]
fn reshape_zero_minus_one_allowzero() {
    let mut b = GraphBuilder::new(14);
    let x = b.input("x", DataType::Float, &[2, 3, 4]);
    let mut outs = Vec::new();
    for (name, target) in [("copy_rest", vec![0, -1]), ("rest_first", vec![-1, 4]), ("copy_two", vec![0, 0, 2, 2])] {
        let t = ints(&mut b, &format!("{name}_shape"), &target);
        outs.push(b.node("Reshape", &[x, t], &[name], vec![])[0]);
    }
    let e = b.input("e", DataType::Float, &[3, 0]);
    let t = ints(&mut b, "zero_shape", &[0, 3]);
    let allow = b.node("Reshape", &[e, t], &["allow"], vec![attr_int("allowzero", 1)])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, outs[0]), [2, 12]);
    assert_eq!(shape(&m, outs[1]), [6, 4]);
    assert_eq!(shape(&m, outs[2]), [2, 3, 2, 2]);
    assert_eq!(shape(&m, allow), [0, 3]);

    // Without allowzero the 0 copies dimension 0 (3): 9 elements from 0.
    let mut b = GraphBuilder::new(14);
    let e = b.input("e", DataType::Float, &[3, 0]);
    let t = ints(&mut b, "zero_shape", &[0, 3]);
    b.node("Reshape", &[e, t], &["copying"], vec![]);
    assert!(infer_err(&mut b.finish()).to_string().contains("copying"));

    let mut b = GraphBuilder::new(14);
    let x = b.input("x", DataType::Float, &[2, 3, 4]);
    let t = ints(&mut b, "t", &[5, -1]);
    b.node("Reshape", &[x, t], &["bad_reshape"], vec![]);
    let err = infer_err(&mut b.finish());
    assert!(err.to_string().contains("bad_reshape") && err.to_string().contains("[2,3,4]"), "{err}");
}

#[test]
fn shape_gather_unsqueeze_concat_reshape_chain() {
    for opset in [11, 13] {
        for input in [sym(&["2", "3", "4", "5"]), sym(&["N", "3", "4", "5"])] {
            let mut b = GraphBuilder::new(opset);
            let x = b.input_shape("x", DataType::Float, input.clone());
            let s = b.node("Shape", &[x], &["s"], vec![])[0];
            let zero = scalar(&mut b, "zero", 0);
            let batch = b.node("Gather", &[s, zero], &["batch"], vec![attr_int("axis", 0)])[0];
            let batch1 = if opset < 13 {
                b.node("Unsqueeze", &[batch], &["batch1"], vec![attr_ints("axes", &[0])])[0]
            } else {
                let axes = ints(&mut b, "axes", &[0]);
                b.node("Unsqueeze", &[batch, axes], &["batch1"], vec![])[0]
            };
            let minus_one = ints(&mut b, "minus_one", &[-1]);
            let target = b.node("Concat", &[batch1, minus_one], &["target"], vec![attr_int("axis", 0)])[0];
            let y = b.node("Reshape", &[x, target], &["y"], vec![])[0];
            let mut m = b.finish();
            infer(&mut m);
            let batch_dim = input.0[0].to_string();
            assert_eq!(shown(&m, s), "[4]");
            assert_eq!(shown(&m, batch), "[]");
            assert_eq!(shown(&m, target), "[2]");
            assert_eq!(shown(&m, y), format!("[{batch_dim},60]"), "opset {opset}, input {input}");
            assert_eq!(dtype(&m, target), Some(DataType::Int64));
        }
    }
}

#[test]
fn shape_arithmetic_slice_mul_cast_constant_of_shape_range_expand() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2, 3, 4, 5]);
    let s = b.node("Shape", &[x], &["s"], vec![])[0];
    let (start, end, two, three) =
        (ints(&mut b, "start", &[0]), ints(&mut b, "end", &[2]), scalar(&mut b, "two", 2), scalar(&mut b, "three", 3));
    let lead = b.node("Slice", &[s, start, end], &["lead"], vec![])[0];
    let h = b.node("Gather", &[s, two], &["h"], vec![])[0];
    let w = b.node("Gather", &[s, three], &["w"], vec![])[0];
    let hw = b.node("Mul", &[h, w], &["hw"], vec![])[0];
    let hw32 = b.node("Cast", &[hw], &["hw32"], vec![attr_int("to", DataType::Int32.to_onnx() as i64)])[0];
    let hw64 = b.node("Cast", &[hw32], &["hw64"], vec![attr_int("to", DataType::Int64.to_onnx() as i64)])[0];
    let axes = ints(&mut b, "axes", &[0]);
    let hw1 = b.node("Unsqueeze", &[hw64, axes], &["hw1"], vec![])[0];
    let target = b.node("Concat", &[lead, hw1], &["target"], vec![attr_int("axis", 0)])[0];
    let y = b.node("Reshape", &[x, target], &["y"], vec![])[0];
    let one = scalar(&mut b, "one", 1);
    let value = Tensor::from_i64("value", &[1], &[7]).proto().clone();
    let filled = b.node("ConstantOfShape", &[lead], &["filled"], vec![attr_tensor("value", value)])[0];
    let zero = scalar(&mut b, "zero", 0);
    let c = b.node("Gather", &[s, one], &["c"], vec![])[0];
    let range = b.node("Range", &[zero, c, one], &["range"], vec![])[0];
    let small = weight(&mut b, "small", &[4, 1]);
    let expanded = b.node("Expand", &[small, s], &["expanded"], vec![])[0];
    let frange = {
        let f = |b: &mut GraphBuilder, n: &str, v: f32| b.constant(n, Tensor::from_f32(n, &[], &[v]));
        let (a, l, d) = (f(&mut b, "fa", 0.0), f(&mut b, "fl", 1.0), f(&mut b, "fd", 0.25));
        b.node("Range", &[a, l, d], &["frange"], vec![])[0]
    };
    let mut m = b.finish();
    let report = infer(&mut m);
    assert_eq!(report.unresolved, 0);
    assert_eq!(shape(&m, lead), [2]);
    assert_eq!(shape(&m, hw), Vec::<i64>::new());
    assert_eq!(dtype(&m, hw32), Some(DataType::Int32));
    assert_eq!(shape(&m, y), [2, 3, 20]);
    assert_eq!(shape(&m, filled), [2, 3]);
    assert_eq!(dtype(&m, filled), Some(DataType::Int64));
    assert_eq!(shape(&m, range), [3]);
    assert_eq!(shape(&m, expanded), [2, 3, 4, 5]);
    assert_eq!(shape(&m, frange), [4]);
}

#[test]
fn shape_start_end_from_opset_15() {
    let mut b = GraphBuilder::new(15);
    let x = b.input("x", DataType::Float, &[2, 3, 4, 5]);
    let mid = b.node("Shape", &[x], &["mid"], vec![attr_int("start", 1), attr_int("end", -1)])[0];
    let flat = weight(&mut b, "flat", &[12]);
    let y = b.node("Reshape", &[flat, mid], &["y"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, mid), [2]);
    assert_eq!(shape(&m, y), [3, 4]);
}

#[test]
fn declared_minus_one_and_question_mark_read_as_unknown() {
    let mut b = GraphBuilder::new(13);
    let x = b.input_shape("x", DataType::Float, Shape(vec![Dim::Known(-1), Dim::Sym("?".into()), Dim::Known(3)]));
    let y = b.node("Relu", &[x], &["y"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shown(&m, y), "[?,?,3]");
}

#[test]
fn squeeze_unsqueeze_attribute_and_input_forms() {
    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[2, 1, 3]);
    let sq = b.node("Squeeze", &[x], &["sq"], vec![attr_ints("axes", &[1])])[0];
    let all = b.node("Squeeze", &[x], &["all"], vec![])[0];
    let unsq = b.node("Unsqueeze", &[sq], &["unsq"], vec![attr_ints("axes", &[0, 3])])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, sq), [2, 3]);
    assert_eq!(shape(&m, all), [2, 3]);
    assert_eq!(shape(&m, unsq), [1, 2, 3, 1]);

    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2, 1, 3]);
    let axes = ints(&mut b, "axes", &[-2]);
    let sq = b.node("Squeeze", &[x, axes], &["sq"], vec![])[0];
    let last = ints(&mut b, "last", &[-1]);
    let unsq = b.node("Unsqueeze", &[sq, last], &["unsq"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, sq), [2, 3]);
    assert_eq!(shape(&m, unsq), [2, 3, 1]);

    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[2, 1, 3]);
    b.node("Squeeze", &[x], &["bad_squeeze"], vec![attr_ints("axes", &[0])]);
    assert!(infer_err(&mut b.finish()).to_string().contains("bad_squeeze"));
}

#[test]
fn reductions_across_opsets() {
    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[2, 3, 4]);
    let sum = b.node("ReduceSum", &[x], &["sum"], vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)])[0];
    let mean = b.node("ReduceMean", &[x], &["mean"], vec![attr_ints("axes", &[-1])])[0];
    let all = b.node("ReduceMax", &[x], &["all"], vec![])[0];
    let arg = b.node("ArgMax", &[x], &["arg"], vec![attr_int("axis", 1), attr_int("keepdims", 0)])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, sum), [2, 4]);
    assert_eq!(shape(&m, mean), [2, 3, 1]);
    assert_eq!(shape(&m, all), [1, 1, 1]);
    assert_eq!((shape(&m, arg), dtype(&m, arg)), (vec![2, 4], Some(DataType::Int64)));

    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2, 3, 4]);
    let axes = ints(&mut b, "axes", &[1]);
    let sum = b.node("ReduceSum", &[x, axes], &["sum"], vec![])[0];
    let mean = b.node("ReduceMean", &[x], &["mean"], vec![attr_ints("axes", &[-1])])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, sum), [2, 1, 4]);
    assert_eq!(shape(&m, mean), [2, 3, 1]);

    let mut b = GraphBuilder::new(18);
    let x = b.input("x", DataType::Float, &[2, 3, 4]);
    let axes = ints(&mut b, "axes", &[0, 2]);
    let mean = b.node("ReduceMean", &[x, axes], &["mean"], vec![attr_int("keepdims", 0)])[0];
    let noop = b.node("ReduceMax", &[x], &["noop"], vec![attr_int("noop_with_empty_axes", 1)])[0];
    let l2 = b.node("ReduceL2", &[x], &["l2"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, mean), [3]);
    assert_eq!(shape(&m, noop), [2, 3, 4]);
    assert_eq!(shape(&m, l2), [1, 1, 1]);
}

#[test]
fn split_attribute_input_and_num_outputs() {
    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[2, 3]);
    let parts = b.node("Split", &[x], &["a", "b"], vec![attr_int("axis", 1), attr_ints("split", &[1, 2])]);
    let y = b.input("y", DataType::Float, &[6, 2]);
    let equal = b.node("Split", &[y], &["e0", "e1", "e2"], vec![]);
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!((shape(&m, parts[0]), shape(&m, parts[1])), (vec![2, 1], vec![2, 2]));
    assert!(equal.iter().all(|v| shape(&m, *v) == [2, 2]));

    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2, 3]);
    let split = ints(&mut b, "split", &[2, 1]);
    let parts = b.node("Split", &[x, split], &["a", "b"], vec![attr_int("axis", -1)]);
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!((shape(&m, parts[0]), shape(&m, parts[1])), (vec![2, 2], vec![2, 1]));

    let mut b = GraphBuilder::new(18);
    let x = b.input("x", DataType::Float, &[7]);
    let parts = b.node("Split", &[x], &["a", "b", "c"], vec![attr_int("num_outputs", 3)]);
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(parts.iter().map(|v| shape(&m, *v)).collect::<Vec<_>>(), [vec![3], vec![3], vec![1]]);

    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2, 3]);
    let split = ints(&mut b, "split", &[2, 2]);
    b.node("Split", &[x, split], &["bad_split", "b"], vec![attr_int("axis", 1)]);
    assert!(infer_err(&mut b.finish()).to_string().contains("bad_split"));
}

#[test]
fn slice_attribute_and_input_forms() {
    let mut b = GraphBuilder::new(9);
    let x = b.input("x", DataType::Float, &[4, 10]);
    let y = b.node("Slice", &[x], &["y"], vec![attr_ints("starts", &[1]), attr_ints("ends", &[1000]), attr_ints("axes", &[1])])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, y), [4, 9]);

    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[4, 10]);
    let (starts, ends) = (ints(&mut b, "starts", &[0, -3]), ints(&mut b, "ends", &[2, i64::MAX]));
    let (axes, steps) = (ints(&mut b, "axes", &[0, 1]), ints(&mut b, "steps", &[1, 2]));
    let stepped = b.node("Slice", &[x, starts, ends, axes, steps], &["stepped"], vec![])[0];
    let (rs, re, ra) = (ints(&mut b, "rs", &[-1]), ints(&mut b, "re", &[i64::MIN]), ints(&mut b, "ra", &[1]));
    let rstep = ints(&mut b, "rstep", &[-2]);
    let reversed = b.node("Slice", &[x, rs, re, ra, rstep], &["reversed"], vec![])[0];
    let (es, ee) = (ints(&mut b, "es", &[5]), ints(&mut b, "ee", &[2]));
    let empty = b.node("Slice", &[x, es, ee, ra], &["empty"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, stepped), [2, 2]); // rows 0..2, columns 7 and 9
    assert_eq!(shape(&m, reversed), [4, 5]); // columns 9, 7, 5, 3, 1
    assert_eq!(shape(&m, empty), [4, 0]);
}

#[test]
fn pad_attribute_input_and_axes() {
    let mut b = GraphBuilder::new(2);
    let x = b.input("x", DataType::Float, &[1, 3, 5, 5]);
    let y = b.node("Pad", &[x], &["y"], vec![attr_ints("pads", &[0, 0, 1, 2, 0, 0, 3, 4])])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, y), [1, 3, 9, 11]);

    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[1, 3, 5, 5]);
    let pads = ints(&mut b, "pads", &[0, 0, 1, 2, 0, 0, 3, 4]);
    let y = b.node("Pad", &[x, pads], &["y"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, y), [1, 3, 9, 11]);

    let mut b = GraphBuilder::new(18);
    let x = b.input("x", DataType::Float, &[1, 3, 5, 5]);
    let pads = ints(&mut b, "pads", &[1, 2, 3, -4]);
    let axes = ints(&mut b, "axes", &[2, 3]);
    let y = b.node_id("Pad", &[Some(x), Some(pads), None, Some(axes)], &["y"], vec![]);
    let mut m = b.finish();
    infer(&mut m);
    let y = m.graph.node(y).and_then(|n| n.output(0)).expect("output");
    assert_eq!(shape(&m, y), [1, 3, 9, 3]);
}

#[test]
fn resize_and_upsample_across_opsets() {
    let mut b = GraphBuilder::new(10);
    let x = b.input("x", DataType::Float, &[1, 3, 4, 5]);
    let scales = floats(&mut b, "scales", &[1.0, 1.0, 2.0, 2.0]);
    let y = b.node("Resize", &[x, scales], &["y"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, y), [1, 3, 8, 10]);

    // Opset 11: roi and scales given as empty tensors, sizes used; or scales used.
    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[1, 3, 5, 5]);
    let empty = b.constant("empty", Tensor::from_f32("empty", &[0], &[]));
    let sizes = ints(&mut b, "sizes", &[1, 3, 7, 9]);
    let by_size = b.node("Resize", &[x, empty, empty, sizes], &["by_size"], vec![])[0];
    let half = floats(&mut b, "half", &[1.0, 1.0, 0.5, 0.5]);
    let by_scale = b.node("Resize", &[x, empty, half], &["by_scale"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, by_size), [1, 3, 7, 9]);
    assert_eq!(shape(&m, by_scale), [1, 3, 2, 2]); // floor(2.5)

    // Opset 13: omitted roi and scales; sizes computed from the input's shape.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 4, 5]);
    let s = b.node("Shape", &[x], &["s"], vec![])[0];
    let two = ints(&mut b, "two", &[1, 1, 2, 2]);
    let sizes = b.node("Mul", &[s, two], &["sizes"], vec![])[0];
    let id = b.node_id("Resize", &[Some(x), None, None, Some(sizes)], &["y"], vec![attr_string("mode", "nearest")]);
    let mut m = b.finish();
    infer(&mut m);
    let y = m.graph.node(id).and_then(|n| n.output(0)).expect("output");
    assert_eq!(shape(&m, y), [1, 3, 8, 10]);

    // Opset 18: sizes on selected axes, keeping the aspect ratio.
    let mut b = GraphBuilder::new(18);
    let x = b.input("x", DataType::Float, &[1, 3, 40, 60]);
    let sizes = ints(&mut b, "sizes", &[20, 20]);
    let attrs = vec![attr_ints("axes", &[2, 3]), attr_string("keep_aspect_ratio_policy", "not_larger")];
    let id = b.node_id("Resize", &[Some(x), None, None, Some(sizes)], &["y"], attrs);
    let mut m = b.finish();
    infer(&mut m);
    let y = m.graph.node(id).and_then(|n| n.output(0)).expect("output");
    assert_eq!(shape(&m, y), [1, 3, 13, 20]); // scale min(20/40, 20/60) = 1/3: round(40/3), 20

    let mut b = GraphBuilder::new(9);
    let x = b.input("x", DataType::Float, &[1, 3, 4, 5]);
    let scales = floats(&mut b, "scales", &[1.0, 1.0, 2.0, 3.0]);
    let y9 = b.node("Upsample", &[x, scales], &["y9"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, y9), [1, 3, 8, 15]);

    let mut b = GraphBuilder::new(7);
    let x = b.input("x", DataType::Float, &[1, 3, 4, 5]);
    let y7 = b.node("Upsample", &[x], &["y7"], vec![whittle_graph::builder::attr_floats("scales", &[1.0, 1.0, 2.0, 2.0])])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!(shape(&m, y7), [1, 3, 8, 10]);
}

#[test]
fn other_layout_ops() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 4, 5]);
    let nhwc = b.node("Transpose", &[x], &["nhwc"], vec![attr_ints("perm", &[0, 2, 3, 1])])[0];
    let rev = b.node("Transpose", &[x], &["rev"], vec![])[0];
    let flat2 = b.node("Flatten", &[x], &["flat2"], vec![attr_int("axis", 2)])[0];
    let flat0 = b.node("Flatten", &[x], &["flat0"], vec![attr_int("axis", 0)])[0];
    let a = b.input("a", DataType::Float, &[2, 3]);
    let c = b.input("c", DataType::Float, &[2, 5]);
    let cat = b.node("Concat", &[a, c, a], &["cat"], vec![attr_int("axis", -1)])[0];
    let reps = ints(&mut b, "reps", &[2, 2]);
    let tiled = b.node("Tile", &[a, reps], &["tiled"], vec![])[0];
    let g = b.input("g", DataType::Float, &[5, 6, 7]);
    let idx = b.constant("idx", Tensor::from_i64("idx", &[2, 3], &[0, 1, 2, 3, 4, -1]));
    let gathered = b.node("Gather", &[g, idx], &["gathered"], vec![attr_int("axis", 1)])[0];
    let d2s = b.input("d2s_in", DataType::Float, &[1, 8, 3, 3]);
    let d2s = b.node("DepthToSpace", &[d2s], &["d2s"], vec![attr_int("blocksize", 2)])[0];
    let s2d = b.node("SpaceToDepth", &[d2s], &["s2d"], vec![attr_int("blocksize", 2)])[0];
    let k = ints(&mut b, "k", &[3]);
    let topk = b.node("TopK", &[g, k], &["values", "indices"], vec![])[0..2].to_vec();
    let nz = b.node("NonZero", &[a], &["nz"], vec![])[0];
    let mut m = b.finish();
    let report = infer(&mut m);
    assert_eq!(shape(&m, nhwc), [1, 4, 5, 3]);
    assert_eq!(shape(&m, rev), [5, 4, 3, 1]);
    assert_eq!(shape(&m, flat2), [3, 20]);
    assert_eq!(shape(&m, flat0), [1, 60]);
    assert_eq!(shape(&m, cat), [2, 11]);
    assert_eq!(shape(&m, tiled), [4, 6]);
    assert_eq!(shape(&m, gathered), [5, 2, 3, 7]);
    assert_eq!(shape(&m, d2s), [1, 2, 6, 6]);
    assert_eq!(shape(&m, s2d), [1, 8, 3, 3]);
    assert_eq!(shape(&m, topk[0]), [5, 6, 3]);
    assert_eq!(dtype(&m, topk[1]), Some(DataType::Int64));
    assert_eq!((shown(&m, nz), dtype(&m, nz)), ("[2,?]".to_string(), Some(DataType::Int64)));
    assert_eq!(report, InferReport { unknown_ops: vec![], unresolved: 1 });

    let mut b = GraphBuilder::new(13);
    let a = b.input("a", DataType::Float, &[2, 3]);
    let c = b.input("c", DataType::Float, &[4, 5]);
    b.node("Concat", &[a, c], &["bad_concat"], vec![attr_int("axis", 1)]);
    assert!(infer_err(&mut b.finish()).to_string().contains("bad_concat"));
}

#[test]
fn quantization_ops() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 8, 8]);
    let scale = b.constant("scale", Tensor::from_f32("scale", &[], &[0.1]));
    let zp = b.constant("zp", Tensor::from_raw("zp", DataType::Int8, &[], vec![0]));
    let q = b.node("QuantizeLinear", &[x, scale, zp], &["q"], vec![])[0];
    let dq = b.node("DequantizeLinear", &[q, scale, zp], &["dq"], vec![])[0];
    let dyn_q = b.node("DynamicQuantizeLinear", &[x], &["dyn_q", "dyn_scale", "dyn_zp"], vec![]);
    let wq = b.constant("wq", Tensor::from_raw("wq", DataType::Int8, &[4, 3, 3, 3], vec![0; 108]));
    let qconv = b.node("QLinearConv", &[q, scale, zp, wq, scale, zp, scale, zp], &["qconv"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    let iconv = b.node("ConvInteger", &[q, wq], &["iconv"], vec![])[0];
    let mut m = b.finish();
    infer(&mut m);
    assert_eq!((shape(&m, q), dtype(&m, q)), (vec![1, 3, 8, 8], Some(DataType::Int8)));
    assert_eq!((shape(&m, dq), dtype(&m, dq)), (vec![1, 3, 8, 8], Some(DataType::Float)));
    assert_eq!((shape(&m, dyn_q[1]), dtype(&m, dyn_q[2])), (vec![], Some(DataType::Uint8)));
    assert_eq!((shape(&m, qconv), dtype(&m, qconv)), (vec![1, 4, 8, 8], Some(DataType::Int8)));
    assert_eq!((shape(&m, iconv), dtype(&m, iconv)), (vec![1, 4, 6, 6], Some(DataType::Int32)));
}

// ----- unknown ops, options, re-runs -----

#[test]
fn unknown_op_leaves_shapes_unknown_without_failing() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 8, 8]);
    let custom = b.node("MyCustomOp", &[x], &["custom"], vec![])[0];
    let after = b.node("Relu", &[custom], &["after"], vec![])[0];
    let after_add = b.node("Add", &[after, x], &["after_add"], vec![])[0];
    let fine = b.node("Relu", &[x], &["fine"], vec![])[0];
    b.output(after_add);
    let mut m = b.finish();
    let report = infer(&mut m);
    assert_eq!(report.unknown_ops, ["MyCustomOp"]);
    assert_eq!(shown(&m, custom), "none");
    assert_eq!(shown(&m, after), "none");
    assert_eq!(shown(&m, after_add), "none");
    assert_eq!(shape(&m, fine), [1, 3, 8, 8]);
    assert_eq!(report.unresolved, 3);
}

#[test]
fn input_options_are_checked() {
    let mut b = GraphBuilder::new(13);
    let x = b.input_shape("x", DataType::Float, sym(&["N", "3", "H", "W"]));
    b.input("mask", DataType::Float, &[1]);
    let y = b.node("Relu", &[x], &["y"], vec![])[0];
    b.output(y);
    let mut m = b.finish();

    let opts = |name: &str, dims: &[i64]| InferOptions { input_shapes: vec![(name.to_string(), dims.to_vec())] };
    let err = infer_shapes(&mut m, &opts("images", &[1, 3, 8, 8])).expect_err("unknown input");
    assert!(matches!(&err, InferError::UnknownInput { name, .. } if name == "images"));
    assert!(err.to_string().contains("x, mask"), "{err}");
    let err = infer_shapes(&mut m, &opts("x", &[1, 3, 8])).expect_err("wrong rank");
    assert!(matches!(&err, InferError::RankMismatch { name, .. } if name == "x"), "{err}");
    assert!(err.to_string().contains("rank 4"), "{err}");
    assert!(infer_shapes(&mut m, &opts("x", &[1, -3, 8, 8])).is_err());
}

#[test]
fn rerun_with_other_shapes_overwrites_and_keeps_declarations() {
    let mut b = GraphBuilder::new(13);
    let x = b.input_shape("x", DataType::Float, sym(&["N", "3", "H", "W"]));
    let w = weight(&mut b, "w", &[4, 3, 3, 3]);
    let y = b.node("Conv", &[x, w], &["y"], vec![attr_ints("strides", &[2, 2])])[0];
    b.output(y);
    let mut m = b.finish();
    let before = model_to_proto(&m);

    let opts = |dims: &[i64]| InferOptions { input_shapes: vec![("x".to_string(), dims.to_vec())] };
    infer_shapes(&mut m, &opts(&[1, 3, 9, 9])).expect("first run");
    assert_eq!(shape(&m, y), [1, 4, 4, 4]);
    infer_shapes(&mut m, &opts(&[2, 3, 21, 11])).expect("second run");
    assert_eq!(shape(&m, y), [2, 4, 10, 5]);
    infer_shapes(&mut m, &InferOptions::default()).expect("symbolic run");
    assert_eq!(shown(&m, y), "[N,4,?,?]");
    assert_eq!(model_to_proto(&m), before, "declarations must stay as written");
}

// ----- the real models -----

fn models_dir() -> Option<std::path::PathBuf> {
    Some(whittle_testenv::shared_dir()?.join("models"))
}

/// Loads a model, infers with `x` of shape `input`, checks that every value is fully known and
/// that the output has the expected shape. `None` when the models folder is missing.
fn check_real_model(file: &str, input: &[i64], expected: &[i64]) -> Option<Model> {
    let path = models_dir()?.join(file);
    let mut m = load_model(&path).unwrap_or_else(|e| panic!("{e}"));
    let opts = InferOptions { input_shapes: vec![("x".to_string(), input.to_vec())] };
    let report = infer_shapes(&mut m, &opts).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(report, InferReport { unknown_ops: vec![], unresolved: 0 }, "{file}");
    let g = &m.graph;
    let unresolved: Vec<String> = g
        .value_ids()
        .filter(|v| g.value(*v).dtype.is_none() || g.value(*v).shape.as_ref().and_then(Shape::concrete).is_none())
        .map(|v| g.value(v).name.clone())
        .collect();
    assert!(unresolved.is_empty(), "{file}: values without a full shape and dtype: {unresolved:?}");
    let out = g.outputs().next().expect("an output");
    assert_eq!(shape(&m, out), expected, "{file}");
    assert_eq!(dtype(&m, out), Some(DataType::Float));
    Some(m)
}

fn value_shape(m: &Model, name: &str) -> Vec<i64> {
    shape(m, m.graph.value_by_name(name).unwrap_or_else(|| panic!("no value '{name}'")))
}

#[test]
fn real_model_cls() {
    let Some(m) = check_real_model("ch_ppocr_mobile_v2.0_cls_infer.onnx", &[1, 3, 48, 192], &[1, 2]) else { return };
    // The head flattens [1, 200, 1, 1] pooled features with a Shape -> Cast -> Slice -> Concat ->
    // Reshape chain whose batch dimension is computed at run time.
    assert_eq!(value_shape(&m, "pool2d_9.tmp_0"), [1, 200, 1, 48]); // MaxPool 2x2, stride 2
    assert_eq!(value_shape(&m, "reshape2_0.tmp_0"), [1, 200]);
    check_real_model("ch_ppocr_mobile_v2.0_cls_infer.onnx", &[2, 3, 48, 192], &[2, 2]);
}

#[test]
fn real_model_det() {
    if check_real_model("ch_PP-OCRv4_det_infer.onnx", &[1, 3, 640, 640], &[1, 1, 640, 640]).is_none() {
        return;
    }
    check_real_model("ch_PP-OCRv4_det_infer.onnx", &[1, 3, 320, 480], &[1, 1, 320, 480]);
}

/// T = W / 8: the backbone takes 48x320 to 3x80 (H / 16, W / 4), then an AveragePool of kernel and
/// stride [3, 2] gives 1x40. Checked against onnxruntime 1.32 (also [1, 80, 6625] for W = 640).
#[test]
fn real_model_rec() {
    let Some(m) = check_real_model("ch_PP-OCRv4_rec_infer.onnx", &[1, 3, 48, 320], &[1, 40, 6625]) else { return };
    // The attention block's Reshape to [B, T, 3, heads, head_dim] is computed at run time.
    assert_eq!(value_shape(&m, "reshape2_25.tmp_0"), [1, 40, 3, 8, 15]);
    assert_eq!(value_shape(&m, "p2o.AveragePool.1"), [1, 480, 1, 40]);
    check_real_model("ch_PP-OCRv4_rec_infer.onnx", &[1, 3, 48, 640], &[1, 80, 6625]);
}
