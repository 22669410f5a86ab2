//! Each cleanup pass on small fixtures: the rewrite as an insta snapshot of the text-form diff,
//! what it declines and why, and a numeric check of the result against the original with tract.

use whittle_graph::builder::{GraphBuilder, attr_float, attr_int, attr_ints};
use whittle_graph::shape::infer::{InferOptions, infer_shapes};
use whittle_graph::text::{TensorDigest, TextOptions, diff_text, model_text};
use whittle_graph::{DataType, Model, Tensor, ValueId};
use whittle_passes::{PassContext, lookup};
use whittle_runner::manager::StepRecord;

use whittle_tests::numeric::{assert_same_outputs, constant};

fn text(m: &Model) -> String {
    model_text(m, &TextOptions { tensors: TensorDigest::Stats, ..Default::default() })
}

/// Runs one pass through the real pass manager (shape inference before, validation and type
/// checks after) and returns (candidate, text-form diff, the step's record).
fn apply(model: &Model, pass: &str, input: (&str, &[i64])) -> (Model, String, StepRecord) {
    let shapes = vec![(input.0.to_string(), input.1.to_vec())];
    let mut before = model.clone();
    infer_shapes(&mut before, &InferOptions { input_shapes: shapes.clone() }).unwrap();
    let mut candidate = before.clone();
    let record = whittle_tests::run_pass(&mut candidate, pass, &shapes);
    let diff = diff_text(&text(&before), &text(&candidate), "before", "after");
    (candidate, diff, record)
}

fn conv_bn_model(shared_weight: bool, training: bool) -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 8, 8]);
    let w = constant(&mut b, "w", &[4, 3, 3, 3], 1);
    let conv = b.node("Conv", &[x, w], &["conv"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    let [s, bias, mean] = [2, 3, 4].map(|seed| constant(&mut b, &format!("bn_p{seed}"), &[4], seed));
    let var = b.constant("bn_var", Tensor::from_f32("bn_var", &[4], &[0.5, 1.0, 2.0, 0.25]));
    let mut attrs = vec![attr_float("epsilon", 1e-3)];
    if training {
        attrs.push(attr_int("training_mode", 1));
    }
    let bn = b.node("BatchNormalization", &[conv, s, bias, mean, var], &["bn"], attrs)[0];
    let y = b.node("Relu", &[bn], &["y"], vec![])[0];
    b.output(y);
    if shared_weight {
        let other = b.node("Conv", &[x, w], &["other"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
        b.output(other);
    }
    b.finish()
}

#[test]
fn fold_batchnorm() {
    let model = conv_bn_model(false, false);
    let (candidate, diff, report) = apply(&model, "fold_batchnorm", ("x", &[1, 3, 8, 8]));
    assert_eq!(report.applied, 1);
    insta::assert_snapshot!(diff);
    assert_same_outputs(&model, &candidate, ("x", &[1, 3, 8, 8]), 1e-5);
}

#[test]
fn fold_batchnorm_declines_shared_weights_and_training_mode() {
    let (_, _, report) = apply(&conv_bn_model(true, false), "fold_batchnorm", ("x", &[1, 3, 8, 8]));
    assert_eq!(report.applied, 0);
    assert!(report.declined[0].reason.contains("shared"), "{:?}", report.declined);
    let (_, _, report) = apply(&conv_bn_model(false, true), "fold_batchnorm", ("x", &[1, 3, 8, 8]));
    assert_eq!(report.applied, 0);
    assert!(report.declined[0].reason.contains("training_mode"), "{:?}", report.declined);
}

#[test]
fn fold_channelwise() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 8, 8]);
    let w = constant(&mut b, "w", &[4, 3, 3, 3], 1);
    let bias = constant(&mut b, "b", &[4], 2);
    let conv = b.node("Conv", &[x, w, bias], &["conv"], vec![])[0];
    let scale = constant(&mut b, "scale", &[1, 4, 1, 1], 3);
    let shift = constant(&mut b, "shift", &[4, 1, 1], 4);
    let m = b.node("Mul", &[scale, conv], &["scaled"], vec![])[0];
    let a = b.node("Add", &[m, shift], &["shifted"], vec![])[0];
    // Not channel-wise: varies along the width, must be declined.
    let w2 = constant(&mut b, "w2", &[4, 4, 1, 1], 5);
    let conv2 = b.node("Conv", &[a, w2], &["conv2"], vec![])[0];
    let row = constant(&mut b, "row", &[6], 6);
    let y = b.node("Mul", &[conv2, row], &["y"], vec![])[0];
    b.output(y);
    let model = b.finish();
    let (candidate, diff, report) = apply(&model, "fold_channelwise", ("x", &[1, 3, 8, 8]));
    assert_eq!(report.applied, 2);
    assert_eq!(report.declined.len(), 1);
    assert!(report.declined[0].reason.contains("channel axis"), "{:?}", report.declined);
    insta::assert_snapshot!(diff);
    assert_same_outputs(&model, &candidate, ("x", &[1, 3, 8, 8]), 1e-5);
}

#[test]
fn remove_noops() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4, 2, 2]);
    let i = b.node("Identity", &[x], &["id"], vec![])[0];
    let d = b.node("Dropout", &[i], &["drop"], vec![])[0];
    let shape = b.constant("shape", Tensor::from_i64("shape", &[4], &[1, 4, 2, 2]));
    let r = b.node("Reshape", &[d, shape], &["same_shape"], vec![])[0];
    let c = b.node("Cast", &[r], &["same_type"], vec![attr_int("to", 1)])[0];
    let t = b.node("Transpose", &[c], &["same_order"], vec![attr_ints("perm", &[0, 1, 2, 3])])[0];
    let y = b.node("Relu", &[t], &["y"], vec![])[0];
    let real = b.node("Transpose", &[y], &["moved"], vec![attr_ints("perm", &[0, 2, 3, 1])])[0];
    b.output(real);
    let model = b.finish();
    let (candidate, diff, report) = apply(&model, "remove_noops", ("x", &[1, 4, 2, 2]));
    assert_eq!(report.applied, 5);
    insta::assert_snapshot!(diff);
    assert_same_outputs(&model, &candidate, ("x", &[1, 4, 2, 2]), 0.0);
}

#[test]
fn remove_noops_keeps_the_interface() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2]);
    let y = b.node("Identity", &[x], &["y"], vec![])[0];
    b.output(y);
    let (candidate, _, report) = apply(&b.finish(), "remove_noops", ("x", &[2]));
    assert_eq!(report.applied, 0);
    assert!(report.declined[0].reason.contains("interface"));
    assert_eq!(candidate.graph.node_count(), 1);
}

#[test]
fn constant_folding_of_shape_arithmetic() {
    let mut b = GraphBuilder::new(13);
    let x =
        b.input_shape("x", DataType::Float, whittle_graph::Shape(vec![whittle_graph::Dim::Sym("n".into()), whittle_graph::Dim::Known(6)]));
    let s = b.node("Shape", &[x], &["s"], vec![])[0];
    let zero = b.constant("zero", Tensor::from_i64("zero", &[], &[0]));
    let n = b.node("Gather", &[s, zero], &["n"], vec![attr_int("axis", 0)])[0];
    let axes = b.constant("axes", Tensor::from_i64("axes", &[1], &[0]));
    let n1 = b.node("Unsqueeze", &[n, axes], &["n1"], vec![])[0];
    let rest = b.constant("rest", Tensor::from_i64("rest", &[2], &[2, 3]));
    let target = b.node("Concat", &[n1, rest], &["target"], vec![attr_int("axis", 0)])[0];
    let y = b.node("Reshape", &[x, target], &["y"], vec![])[0];
    b.output(y);
    let model = b.finish();
    let (candidate, diff, report) = apply(&model, "constant_folding", ("x", &[1, 6]));
    assert_eq!(report.applied, 4, "{report:?}");
    assert!(report.notes.iter().any(|n| n.contains("pinned")), "{:?}", report.notes);
    insta::assert_snapshot!(diff);
    assert_eq!(candidate.graph.node_count(), 1);
    assert_same_outputs(&model, &candidate, ("x", &[1, 6]), 0.0);
}

#[test]
fn constant_folding_caps_growth() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[256, 256]);
    let one = b.constant("one", Tensor::from_f32("one", &[1], &[1.0]));
    let shape = b.constant("shape", Tensor::from_i64("shape", &[2], &[256, 256]));
    let big = b.node("Expand", &[one, shape], &["big"], vec![])[0];
    let y = b.node("Add", &[x, big], &["y"], vec![])[0];
    b.output(y);
    let (candidate, _, report) = apply(&b.finish(), "constant_folding", ("x", &[256, 256]));
    assert_eq!(candidate.graph.node_count(), 2, "the Expand stays");
    assert!(report.declined[0].reason.contains("max_growth_bytes"), "{:?}", report.declined);
}

#[test]
fn dead_code() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 2]);
    let unused_w = b.constant("unused_w", Tensor::from_f32("unused_w", &[2], &[1.0, 2.0]));
    let dead = b.node("Mul", &[x, unused_w], &["dead"], vec![])[0];
    b.node("Relu", &[dead], &["dead2"], vec![]);
    let y = b.node("Relu", &[x], &["y"], vec![])[0];
    b.output(y);
    let model = b.finish();
    let (candidate, diff, report) = apply(&model, "dead_code", ("x", &[1, 2]));
    assert_eq!(report.applied, 2, "two dead nodes");
    assert!(candidate.graph.value_by_name("unused_w").is_none(), "and the weight only they read");
    insta::assert_snapshot!(diff);
    assert_same_outputs(&model, &candidate, ("x", &[1, 2]), 0.0);
}

fn old_opset_model(softmax_axis: Option<i64>, rank4_softmax: bool) -> Model {
    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[1, 3, 1, 4]);
    let sq = b.node("Squeeze", &[x], &["sq"], vec![attr_ints("axes", &[2])])[0];
    let mean = b.node("ReduceMean", &[sq], &["mean"], vec![attr_ints("axes", &[2]), attr_int("keepdims", 1)])[0];
    let sub = b.node("Sub", &[sq, mean], &["centered"], vec![])[0];
    let un = b.node("Unsqueeze", &[sub], &["un"], vec![attr_ints("axes", &[2])])[0];
    let flat = if rank4_softmax { un } else { b.node("Flatten", &[un], &["flat"], vec![attr_int("axis", 1)])[0] };
    let attrs = softmax_axis.map(|a| vec![attr_int("axis", a)]).unwrap_or_default();
    let y = b.node("Softmax", &[flat], &["y"], attrs)[0];
    b.output(y);
    b.finish()
}

#[test]
fn opset_conversion() {
    let model = old_opset_model(None, false);
    let mut candidate = model.clone();
    let pass = whittle_passes::opset_conversion::OpsetConversion::new(whittle_passes::opset_conversion::Params { target: 18 });
    use whittle_passes::pass::PassDef;
    infer_shapes(&mut candidate, &InferOptions { input_shapes: vec![("x".into(), vec![1, 3, 1, 4])] }).unwrap();
    let before = candidate.clone();
    use whittle_passes::Pass;
    let report = pass.run(&mut candidate, &PassContext::default()).unwrap();
    assert_eq!(candidate.opset(""), Some(18));
    assert!(report.applied >= 4, "{report:?}");
    insta::assert_snapshot!(diff_text(&text(&before), &text(&candidate), "opset 11", "opset 18"));
    assert_same_outputs(&model, &candidate, ("x", &[1, 3, 1, 4]), 1e-6);
}

#[test]
fn opset_conversion_refuses_a_softmax_whose_meaning_changes() {
    let mut model = old_opset_model(Some(1), true);
    infer_shapes(&mut model, &InferOptions { input_shapes: vec![("x".into(), vec![1, 3, 1, 4])] }).unwrap();
    let err = lookup("opset_conversion").unwrap().build_default().run(&mut model, &PassContext::default()).unwrap_err();
    assert!(err.to_string().contains("axis 1 is not the last axis"), "{err}");
    assert_eq!(model.opset(""), Some(11), "nothing changed");
}

/// BN after a grouped ConvTranspose and after a Gemm (transB, with a bias C and beta != 1):
/// the weight layouts differ from Conv's, so each is checked numerically.
#[test]
fn fold_batchnorm_into_conv_transpose_and_gemm() {
    let bn = |b: &mut GraphBuilder, x: ValueId, c: i64, tag: &str| -> ValueId {
        let [s, bias, mean] = [11, 12, 13].map(|seed| constant(b, &format!("{tag}_p{seed}"), &[c], seed));
        let var = b.constant(&format!("{tag}_var"), Tensor::from_f32("", &[c], &(0..c).map(|i| 0.5 + i as f32 * 0.25).collect::<Vec<_>>()));
        b.node("BatchNormalization", &[x, s, bias, mean, var], &[&format!("{tag}_bn")], vec![])[0]
    };
    // ConvTranspose: 4 input channels, group 2, 3 output channels per group -> 6 channels.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4, 5, 5]);
    let w = constant(&mut b, "w", &[4, 3, 3, 3], 21);
    let y = b.node("ConvTranspose", &[x, w], &["deconv"], vec![attr_int("group", 2), attr_ints("strides", &[2, 2])])[0];
    let y = bn(&mut b, y, 6, "ct");
    b.output(y);
    let model = b.finish();
    let (candidate, _, report) = apply(&model, "fold_batchnorm", ("x", &[1, 4, 5, 5]));
    assert_eq!(report.applied, 1, "{report:?}");
    assert_same_outputs(&model, &candidate, ("x", &[1, 4, 5, 5]), 1e-5);

    // Gemm: A [1, 8] x B^T with B [5, 8], C [5], alpha 0.5, beta 2.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 8]);
    let w = constant(&mut b, "w", &[5, 8], 31);
    let c = constant(&mut b, "c", &[5], 32);
    let y = b.node(
        "Gemm",
        &[x, w, c],
        &["fc"],
        vec![attr_int("transB", 1), whittle_graph::builder::attr_float("alpha", 0.5), whittle_graph::builder::attr_float("beta", 2.0)],
    )[0];
    let y = bn(&mut b, y, 5, "fc");
    b.output(y);
    let model = b.finish();
    let (candidate, _, report) = apply(&model, "fold_batchnorm", ("x", &[1, 8]));
    assert_eq!(report.applied, 1, "{report:?}");
    assert_same_outputs(&model, &candidate, ("x", &[1, 8]), 1e-5);
}

#[test]
fn strip_names() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("image", DataType::Float, &[1, 2, 4, 4]);
    let w = constant(&mut b, "backbone.stage1.conv.weight", &[3, 2, 1, 1], 1);
    let conv = b.node("Conv", &[x, w], &["backbone.stage1.conv.output"], vec![])[0];
    let act = b.node("Relu", &[conv], &["backbone.stage1.relu.output"], vec![])[0];
    // An internal value that already has a short name: it is renamed like the others, and the
    // names handed out skip the kept ones (a graph output is called `1` here).
    let short = b.node("Sigmoid", &[act], &["0"], vec![])[0];
    let y = b.node("Neg", &[short], &["1"], vec![])[0];
    b.output(y);
    b.output(act);
    let model = b.finish();
    let (candidate, diff, report) = apply(&model, "strip_names", ("image", &[1, 2, 4, 4]));
    insta::assert_snapshot!(diff);
    let g = &candidate.graph;
    let names: Vec<&str> = g.value_ids().map(|v| g.value(v).name.as_str()).collect();
    for kept in ["image", "1", "backbone.stage1.relu.output"] {
        assert!(names.contains(&kept), "{kept} is part of the interface: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains("conv")), "internal names are short: {names:?}");
    assert!(g.node_ids().iter().all(|id| g.node(*id).is_some_and(|n| n.name().is_empty())), "node names dropped");
    assert_eq!(report.applied, 2, "{report:?}");
    assert_same_outputs(&model, &candidate, ("image", &[1, 2, 4, 4]), 0.0);
    // The file is smaller, and a second run changes nothing.
    let bytes = |m: &Model| whittle_graph::encode_model(m).len();
    assert!(bytes(&candidate) < bytes(&model));
    let (again, _, report) = apply(&candidate, "strip_names", ("image", &[1, 2, 4, 4]));
    assert_eq!(report.applied, 0, "{report:?}");
    assert_eq!(text(&again), text(&candidate));
}

#[test]
fn cross_layer_equalization() {
    // conv1 (filters of ranges 100x apart) -> Relu -> depthwise conv2 -> LeakyRelu -> conv3 ->
    // HardSigmoid -> conv4: two pairs to equalize, one declined.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 6, 6]);
    let pads = || attr_ints("pads", &[1, 1, 1, 1]);
    let spread = [1.0f32, 10.0, 0.1, 3.0];
    let w1: Vec<f32> = whittle_tests::numeric::weights(4 * 27, 1).iter().enumerate().map(|(i, v)| v * spread[i / 27]).collect();
    let w1 = b.constant("w1", Tensor::from_f32("w1", &[4, 3, 3, 3], &w1));
    let b1 = constant(&mut b, "b1", &[4], 2);
    let c1 = b.node("Conv", &[x, w1, b1], &["c1"], vec![pads()])[0];
    let r1 = b.node("Relu", &[c1], &["r1"], vec![])[0];
    let w2 = constant(&mut b, "w2", &[4, 1, 3, 3], 3);
    let c2 = b.node("Conv", &[r1, w2], &["c2"], vec![pads(), attr_int("group", 4)])[0];
    let l2 = b.node("LeakyRelu", &[c2], &["l2"], vec![attr_float("alpha", 0.1)])[0];
    let w3 = constant(&mut b, "w3", &[2, 4, 1, 1], 4);
    let c3 = b.node("Conv", &[l2, w3], &["c3"], vec![])[0];
    let h3 = b.node("HardSigmoid", &[c3], &["h3"], vec![])[0];
    let w4 = constant(&mut b, "w4", &[2, 2, 1, 1], 5);
    let y = b.node("Conv", &[h3, w4], &["y"], vec![])[0];
    b.output(y);
    let model = b.finish();
    let (candidate, diff, report) = apply(&model, "cross_layer_equalization", ("x", &[1, 3, 6, 6]));
    insta::assert_snapshot!(diff);
    assert_eq!(report.applied, 2, "{report:?}");
    assert!(
        report.declined[0].reason.contains("HardSigmoid") && report.declined[0].reason.contains("homogeneous"),
        "{:?}",
        report.declined
    );
    assert_same_outputs(&model, &candidate, ("x", &[1, 3, 6, 6]), 1e-5);
    // Each pair's channel ranges now agree: conv1's filters and conv2's inputs, conv2's and conv3's.
    let g = &candidate.graph;
    let layer = |v: &str| g.value(g.value_by_name(v).unwrap()).producer().unwrap();
    for (first, second) in [("c1", "c2"), ("c2", "c3")] {
        let out = whittle_passes::affine::channel_ranges(g, layer(first), true).unwrap();
        let inp = whittle_passes::affine::channel_ranges(g, layer(second), false).unwrap();
        for (a, b) in out.iter().zip(&inp) {
            assert!((a / b - 1.0).abs() < 1e-2, "{first} -> {second}: ranges {out:?} vs {inp:?}");
        }
    }
    let before = whittle_passes::affine::channel_ranges(&model.graph, layer("c1"), true).unwrap();
    let after = whittle_passes::affine::channel_ranges(g, layer("c1"), true).unwrap();
    let ratio = |r: &[f64]| r.iter().cloned().fold(0.0, f64::max) / r.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(ratio(&after) < ratio(&before) / 4.0, "conv1's filter ranges {before:?} -> {after:?}");
}
