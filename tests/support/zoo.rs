//! Models of the kinds users bring that are not in ../shared, built in code: an old-converter
//! "zoo" CNN (IR 3, every initializer also a graph input, a large weight as ConstantOfShape,
//! opset 9 with Upsample, Dropout, BatchNormalization) and a voice-activity detector (an If
//! choosing by sample rate, a scalar `sr`, a recurrent `state` of shape [2, 1, 128]).

use whittle_graph::onnx::attribute_proto::AttributeType;
use whittle_graph::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, ValueInfoProto};

use crate::fixtures::{f32_info, f32_tensor, i64_tensor, node};
use crate::numeric::weights;

fn attr_i(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
}

fn attr_is(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Ints as i32), ints: v.to_vec(), ..Default::default() }
}

fn attr_f(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Float as i32), f: Some(v), ..Default::default() }
}

fn attr_s(name: &str, v: &str) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::String as i32),
        s: Some(v.as_bytes().to_vec().into()),
        ..Default::default()
    }
}

fn attr_t(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Tensor as i32), t: Some(t), ..Default::default() }
}

fn attr_g(name: &str, g: GraphProto) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Graph as i32), g: Some(g), ..Default::default() }
}

fn with(mut n: NodeProto, attrs: Vec<AttributeProto>) -> NodeProto {
    n.attribute = attrs;
    n
}

fn info(name: &str, elem: i32, dims: &[i64]) -> ValueInfoProto {
    let mut i = f32_info(name, dims);
    if let Some(whittle_graph::onnx::type_proto::Value::TensorType(t)) = i.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.elem_type = Some(elem);
    }
    i
}

fn random(name: &str, dims: &[i64], seed: u64, scale: f32) -> TensorProto {
    let n = dims.iter().product::<i64>() as usize;
    f32_tensor(name, dims, &weights(n, seed).iter().map(|v| v * scale).collect::<Vec<_>>())
}

/// The zoo-style CNN at `opset` (7, 8 or 9): input `data` [1, 3, 16, 16], output `prob` [1, 4].
/// Opset 7/8 write Upsample's scales as an attribute (and BatchNormalization's `spatial`), opset
/// 9 as an input; the 8x8x3x3 second weight is a ConstantOfShape from opset 9 (an initializer
/// before).
pub fn zoo_model(opset: i64) -> ModelProto {
    zoo_model_with(opset, "nearest")
}

/// [`zoo_model`] with Upsample in `mode` (`nearest` or `linear`).
pub fn zoo_model_with(opset: i64, mode: &str) -> ModelProto {
    let mut inits = vec![
        random("conv1_w", &[8, 3, 3, 3], 1, 0.5),
        random("conv1_b", &[8], 2, 0.1),
        f32_tensor("bn_scale", &[8], &weights(8, 3).iter().map(|v| 1.0 + 0.2 * v).collect::<Vec<_>>()),
        random("bn_bias", &[8], 4, 0.1),
        random("bn_mean", &[8], 5, 0.1),
        f32_tensor("bn_var", &[8], &weights(8, 6).iter().map(|v| 1.0 + 0.5 * v.abs()).collect::<Vec<_>>()),
        random("fc_w", &[8, 4], 7, 0.5),
        random("fc_b", &[4], 8, 0.1),
    ];
    let mut nodes = vec![
        with(
            node("Conv", "conv1", &["data", "conv1_w", "conv1_b"], &["c1"]),
            vec![attr_is("pads", &[1, 1, 1, 1]), attr_is("kernel_shape", &[3, 3])],
        ),
        with(
            node("BatchNormalization", "bn1", &["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"], &["b1"]),
            if opset < 9 { vec![attr_f("epsilon", 1e-5), attr_i("spatial", 1)] } else { vec![attr_f("epsilon", 1e-5)] },
        ),
        node("Relu", "relu1", &["b1"], &["r1"]),
        with(node("Dropout", "drop1", &["r1"], &["d1"]), vec![attr_f("ratio", 0.5)]),
    ];
    if opset >= 9 {
        nodes.push(with(
            node("ConstantOfShape", "conv2_w_fill", &["conv2_w_shape"], &["conv2_w"]),
            vec![attr_t("value", f32_tensor("", &[1], &[0.01]))],
        ));
        inits.push(i64_tensor("conv2_w_shape", &[4], &[8, 8, 3, 3]));
    } else {
        inits.push(f32_tensor("conv2_w", &[8, 8, 3, 3], &[0.01; 576]));
    }
    nodes.push(with(node("Conv", "conv2", &["d1", "conv2_w"], &["c2"]), vec![attr_is("pads", &[1, 1, 1, 1])]));
    if opset >= 9 {
        inits.push(f32_tensor("up_scales", &[4], &[1.0, 1.0, 2.0, 2.0]));
        nodes.push(with(node("Upsample", "up", &["c2", "up_scales"], &["u"]), vec![attr_s("mode", mode)]));
    } else {
        let scales = AttributeProto {
            name: Some("scales".into()),
            r#type: Some(AttributeType::Floats as i32),
            floats: vec![1.0, 1.0, 2.0, 2.0],
            ..Default::default()
        };
        nodes.push(with(node("Upsample", "up", &["c2"], &["u"]), vec![attr_s("mode", mode), scales]));
    }
    nodes.extend([
        with(node("MaxPool", "pool", &["u"], &["p"]), vec![attr_is("kernel_shape", &[2, 2]), attr_is("strides", &[2, 2])]),
        node("GlobalAveragePool", "gap", &["p"], &["g"]),
        with(node("Flatten", "flat", &["g"], &["f"]), vec![attr_i("axis", 1)]),
        node("Gemm", "fc", &["f", "fc_w", "fc_b"], &["logits"]),
        with(node("Softmax", "softmax", &["logits"], &["prob"]), vec![attr_i("axis", 1)]),
    ]);
    // IR 3: every initializer is listed as a graph input too.
    let mut inputs = vec![f32_info("data", &[1, 3, 16, 16])];
    inputs.extend(inits.iter().map(|t| info(t.name.as_deref().unwrap_or(""), t.data_type.unwrap_or(1), &t.dims)));
    ModelProto {
        ir_version: Some(3),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        producer_name: Some("old-converter".into()),
        graph: Some(GraphProto {
            name: Some("zoo".into()),
            node: nodes,
            initializer: inits,
            input: inputs,
            output: vec![f32_info("prob", &[1, 4])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A voice-activity detector of the common kind: inputs `input` [1, 512] f32, `state`
/// [2, 1, 128] f32 and `sr` (scalar int64); an If on `sr == 16000` picks one of two branches,
/// each with its own weights; outputs `output` [1, 1] and `stateN` [2, 1, 128].
pub fn vad_model() -> ModelProto {
    let branch = |name: &str, seed: u64| GraphProto {
        name: Some(name.into()),
        node: vec![
            node("Identity", &format!("{name}_id"), &["input"], &[&format!("{name}_x")]),
            node("MatMul", &format!("{name}_mm"), &[&format!("{name}_x"), &format!("{name}_w")], &[&format!("{name}_y")]),
        ],
        initializer: vec![random(&format!("{name}_w"), &[512, 128], seed, 0.05)],
        output: vec![f32_info(&format!("{name}_y"), &[1, 128])],
        ..Default::default()
    };
    let nodes = vec![
        node("Equal", "is16k", &["sr", "sr16k"], &["cond"]),
        with(
            node("If", "pick_rate", &["cond"], &["features"]),
            vec![attr_g("then_branch", branch("then16k", 11)), attr_g("else_branch", branch("else8k", 12))],
        ),
        node("Add", "mix_state", &["state", "features"], &["mixed"]),
        node("Tanh", "state_act", &["mixed"], &["stateN"]),
        with(node("ReduceMean", "pool", &["mixed"], &["pooled"]), vec![attr_is("axes", &[0, 2]), attr_i("keepdims", 0)]),
        with(node("Constant", "half", &[], &["half"]), vec![attr_t("value", f32_tensor("", &[], &[0.5]))]),
        node("Mul", "scale", &["pooled", "half"], &["scaled"]),
        with(node("Unsqueeze", "unsq", &["scaled", "unsq_axes"], &["logit"]), vec![]),
        node("Sigmoid", "prob", &["logit"], &["output"]),
    ];
    ModelProto {
        ir_version: Some(8),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(16) }],
        producer_name: Some("vad-export".into()),
        graph: Some(GraphProto {
            name: Some("vad".into()),
            node: nodes,
            initializer: vec![i64_tensor("sr16k", &[], &[16000]), i64_tensor("unsq_axes", &[1], &[1])],
            input: vec![f32_info("input", &[1, 512]), f32_info("state", &[2, 1, 128]), info("sr", 7, &[])],
            output: vec![f32_info("output", &[1, 1]), f32_info("stateN", &[2, 1, 128])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Ops whose attributes became inputs, at `opset` (9 or 10): input `x` [1, 4, 6, 6];
/// Slice (attributes before 10), Pad and Clip (attributes before 11, Clip with `min` only),
/// TopK (`k` attribute before 10), and at opset 10 a Resize in `resize_mode` (its opset-10
/// meaning is asymmetric). Outputs `y` and `top`.
pub fn old_ops_model(opset: i64, resize_mode: &str) -> ModelProto {
    let mut inits = vec![];
    let slice = if opset < 10 {
        with(node("Slice", "slice", &["x"], &["s"]), vec![attr_is("starts", &[1, 0]), attr_is("ends", &[5, 100]), attr_is("axes", &[2, 3])])
    } else {
        inits.extend([i64_tensor("s_starts", &[2], &[1, 0]), i64_tensor("s_ends", &[2], &[5, 100]), i64_tensor("s_axes", &[2], &[2, 3])]);
        node("Slice", "slice", &["x", "s_starts", "s_ends", "s_axes"], &["s"])
    };
    let mut nodes = vec![
        slice,
        with(
            node("Pad", "pad", &["s"], &["p"]),
            vec![attr_is("pads", &[0, 0, 1, 1, 0, 0, 1, 1]), attr_f("value", 0.5), attr_s("mode", "constant")],
        ),
        with(node("Clip", "clip", &["p"], &["c"]), vec![attr_f("min", -0.25)]),
    ];
    let top_in = if opset >= 10 {
        inits.push(f32_tensor("r_scales", &[4], &[1.0, 1.0, 1.5, 2.0]));
        nodes.push(with(node("Resize", "resize", &["c", "r_scales"], &["r"]), vec![attr_s("mode", resize_mode)]));
        "r"
    } else {
        "c"
    };
    nodes.push(node("Relu", "relu", &[top_in], &["y"]));
    if opset < 10 {
        nodes.push(with(node("TopK", "topk", &["y"], &["top", "top_i"]), vec![attr_i("k", 2), attr_i("axis", -1)]));
    } else {
        inits.push(i64_tensor("k", &[1], &[2]));
        nodes.push(with(node("TopK", "topk", &["y", "k"], &["top", "top_i"]), vec![attr_i("axis", -1)]));
    }
    ModelProto {
        ir_version: Some(5),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
        producer_name: Some("old-converter".into()),
        graph: Some(GraphProto {
            name: Some("old_ops".into()),
            node: nodes,
            initializer: inits,
            input: vec![f32_info("x", &[1, 4, 6, 6])],
            output: if opset >= 10 {
                vec![f32_info("y", &[1, 4, 9, 16]), f32_info("top", &[1, 4, 9, 2])]
            } else {
                vec![f32_info("y", &[1, 4, 6, 8]), f32_info("top", &[1, 4, 6, 2])]
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}
