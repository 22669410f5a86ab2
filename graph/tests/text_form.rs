//! The canonical text form: snapshots of small built models, determinism, subgraphs, diffs, and
//! the real models (text unchanged by an export → import round trip; the cls model pinned).

use std::path::{Path, PathBuf};
use std::time::Instant;

use prost::Message;
use whittle_graph::builder::{GraphBuilder, attr_float, attr_floats, attr_int, attr_ints, attr_string, attr_tensor};
use whittle_graph::onnx::attribute_proto::AttributeType;
use whittle_graph::onnx::{AttributeProto, ModelProto, OperatorSetIdProto, StringStringEntryProto};
use whittle_graph::text::{TensorDigest, TextOptions, diff_text, graph_text, model_text};
use whittle_graph::{Attribute, DataType, Dim, Graph, Model, Shape, Tensor, ValueId};

fn stats() -> TextOptions {
    TextOptions { tensors: TensorDigest::Stats, ..TextOptions::default() }
}

/// Deterministic pseudo-random floats in [-1, 1).
fn noise(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) * 2.0 - 1.0
        })
        .collect()
}

fn set_type(b: &mut GraphBuilder, v: ValueId, dtype: DataType, dims: &[Dim]) {
    let value = b.graph_mut().value_mut(v);
    value.dtype = Some(dtype);
    value.shape = Some(Shape(dims.to_vec()));
}

/// Conv → Relu → LeakyRelu → an unnamed Mul → a custom-domain op with every kind of attribute.
/// `reversed` adds the two independent constants and the two branches in the other order.
fn small_model(reversed: bool) -> Model {
    let mut b = GraphBuilder::new(13);
    let dims = || vec![Dim::Sym("N".into()), Dim::Known(3), Dim::Sym("height".into()), Dim::Unknown];
    let x = b.input_shape("x", DataType::Float, Shape(dims()));
    let (w, bias) = if reversed {
        let bias = b.constant("conv.b", Tensor::from_f32("conv.b", &[4], &[0.1, -0.0, 1e-7, 3.5]));
        (b.constant("conv.w", Tensor::from_f32("conv.w", &[4, 3, 3, 3], &noise(108, 1))), bias)
    } else {
        let w = b.constant("conv.w", Tensor::from_f32("conv.w", &[4, 3, 3, 3], &noise(108, 1)));
        (w, b.constant("conv.b", Tensor::from_f32("conv.b", &[4], &[0.1, -0.0, 1e-7, 3.5])))
    };
    let scale = b.constant("scale", Tensor::from_f32("scale", &[], &[0.5]));
    let conv_attrs =
        vec![attr_ints("strides", &[1, 1]), attr_ints("pads", &[1, 1, 1, 1]), attr_int("group", 1), attr_ints("dilations", &[1, 1])];
    let c = b.node("Conv", &[x, w, bias], &["c"], conv_attrs)[0];
    let sym = vec![Dim::Sym("N".into()), Dim::Known(4), Dim::Sym("height".into()), Dim::Unknown];
    set_type(&mut b, c, DataType::Float, &sym);
    let relu = |b: &mut GraphBuilder| b.node("Relu", &[c], &["r"], vec![])[0];
    let leaky = |b: &mut GraphBuilder| b.node("LeakyRelu", &[c], &["l"], vec![attr_float("alpha", 0.1)])[0];
    let (r, l) = if reversed {
        let l = leaky(&mut b);
        (relu(&mut b), l)
    } else {
        let r = relu(&mut b);
        (r, leaky(&mut b))
    };
    let sum = b.node("Add", &[r, l], &["sum"], vec![])[0];
    // An unnamed node: identified by its output.
    let mul = b.node_id("Mul", &[Some(sum), Some(scale)], &["scaled"], vec![]);
    b.graph_mut().node_mut(mul).expect("node").residual.name = None;
    let scaled = b.graph_mut().node(mul).expect("node").output(0).expect("output");
    let custom_attrs = vec![
        attr_floats("floats", &[0.1, -0.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e-30, 1.0]),
        attr_string("mode", "say \"hi\"\n"),
        attr_tensor("table", Tensor::from_i64("table", &[2, 3], &[1, 2, 3, 4, 5, -6]).proto().clone()),
        attr_tensor("big", Tensor::from_f32("big", &[32], &noise(32, 2)).proto().clone()),
        attr_float("eps", 1e-5),
    ];
    let custom = b.node_id("Fancy", &[Some(scaled), None, Some(x), None], &["y", "", "aux", ""], custom_attrs);
    b.graph_mut().node_mut(custom).expect("node").residual.domain = Some("com.example".into());
    let y = b.graph_mut().node(custom).expect("node").output(0).expect("output");
    set_type(&mut b, y, DataType::Float, &sym);
    b.output(y);
    let mut model = b.finish();
    model.meta.opset_import.push(OperatorSetIdProto { domain: Some("com.example".into()), version: Some(1) });
    let prop = |k: &str, v: String| StringStringEntryProto { key: Some(k.into()), value: Some(v) };
    model.meta.metadata_props = vec![prop("z_long", "line\n".repeat(40)), prop("author", "whittle tests".into())];
    model
}

#[test]
fn small_model_text() {
    insta::assert_snapshot!("small_model", model_text(&small_model(false), &TextOptions::default()));
}

#[test]
fn small_model_stats() {
    insta::assert_snapshot!("small_model_stats", model_text(&small_model(false), &stats()));
}

#[test]
fn insertion_order_does_not_matter() {
    let opts = TextOptions::default();
    assert_eq!(model_text(&small_model(false), &opts), model_text(&small_model(true), &opts));
}

#[test]
fn attribute_float_round_trips() {
    let text = model_text(&small_model(false), &TextOptions::default());
    assert!(text.contains("{alpha=0.1}"), "{text}");
    assert!(text.contains("floats=[0.1,-0.0,nan,inf,-inf,1e-30,1.0]"), "{text}");
}

/// A pass seen as a diff: the Relu branch replaced by reading `c` directly.
#[test]
fn pass_as_diff() {
    let opts = TextOptions::default();
    let before = small_model(false);
    let mut after = before.clone();
    let g = &mut after.graph;
    let relu = g.node_ids().into_iter().find(|id| g.node(*id).is_some_and(|n| n.is("Relu"))).expect("relu");
    let r = g.node(relu).and_then(|n| n.output(0)).expect("relu output");
    let c = g.value_by_name("c").expect("c");
    g.replace_all_uses(r, c);
    g.remove_node(relu);
    let diff = diff_text(&model_text(&before, &opts), &model_text(&after, &opts), "before", "after");
    insta::assert_snapshot!("pass_as_diff", diff);
}

#[test]
fn diff_of_small_texts() {
    let a = "a\nb\nc\nd\ne\nf\ng\nh\n";
    let b = "a\nb\nc\nD\ne\nf\ng\nh\ni\n";
    assert_eq!(diff_text(a, a, "x", "y"), "");
    insta::assert_snapshot!("diff_small", diff_text(a, b, "old.txt", "new.txt"));
}

/// A branch graph: a constant through one node to the output.
fn branch(name: &str, op: &str, value: f32) -> Graph {
    let mut b = GraphBuilder::new(13);
    let k = b.constant(&format!("{name}_k"), Tensor::from_f32("", &[2], &[value, -value]));
    let out = b.node(op, &[k], &[&format!("{name}_out")], vec![])[0];
    set_type(&mut b, out, DataType::Float, &[Dim::Known(2)]);
    b.output(out);
    let mut g = b.finish().graph;
    g.residual.name = Some(name.into());
    g
}

fn graph_attr(name: &str, g: Graph) -> Attribute {
    let proto = AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Graph as i32), ..Default::default() };
    Attribute { proto, subgraphs: vec![g], in_g: true }
}

fn if_model() -> Model {
    let mut b = GraphBuilder::new(13);
    let cond = b.input("cond", DataType::Bool, &[]);
    let x = b.input("x", DataType::Float, &[2]);
    let id = b.node_id("If", &[Some(cond)], &["picked"], vec![]);
    let node = b.graph_mut().node_mut(id).expect("node");
    // Attributes in non-sorted order: the text sorts them.
    node.attributes.push(graph_attr("then_branch", branch("then_body", "Identity", 1.5)));
    node.attributes.push(graph_attr("else_branch", branch("else_body", "Neg", 0.25)));
    let picked = b.graph_mut().node(id).and_then(|n| n.output(0)).expect("output");
    let y = b.node("Add", &[picked, x], &["y"], vec![])[0];
    // Typed before declaring it an output: `GraphBuilder::output` declares f32 in the file without
    // typing the value, which a re-import would then pick up.
    set_type(&mut b, y, DataType::Float, &[Dim::Known(2)]);
    b.output(y);
    b.finish()
}

#[test]
fn if_subgraphs() {
    let model = if_model();
    let text = model_text(&model, &TextOptions::default());
    insta::assert_snapshot!("if_model", text);
    // The graph text is the model text's graph block.
    assert!(text.contains(&graph_text(&model.graph, &TextOptions::default())));
    // Subgraphs survive an export → import round trip.
    let bytes = whittle_graph::encode_model(&model);
    let back = whittle_graph::decode_model(bytes::Bytes::from(bytes), Path::new("if.onnx"), None).expect("re-import");
    assert_eq!(text, model_text(&back, &TextOptions::default()));
}

/// A branch reading a value of the enclosing graph lists it under `captures`, and the If node
/// comes after the node producing it.
#[test]
fn if_subgraph_capture() {
    let mut b = GraphBuilder::new(13);
    let cond = b.input("cond", DataType::Bool, &[]);
    let x = b.input("x", DataType::Float, &[2]);
    let doubled = b.node("Add", &[x, x], &["z_doubled"], vec![])[0];
    let id = b.node_id("If", &[Some(cond)], &["picked"], vec![]);
    let node = b.graph_mut().node_mut(id).expect("node");
    node.attributes.push(graph_attr("then_branch", branch("then_body", "Identity", 1.5)));
    node.attributes.push(graph_attr("else_branch", branch("else_body", "Neg", 0.25)));
    let picked = b.graph_mut().node(id).and_then(|n| n.output(0)).expect("output");
    b.output(picked);
    b.output(doubled);
    let mut proto = whittle_graph::model_to_proto(&b.finish());
    let graph = proto.graph.as_mut().expect("graph");
    let if_node = graph.node.iter_mut().find(|n| n.op_type.as_deref() == Some("If")).expect("If");
    let then_branch = if_node.attribute.iter_mut().find(|a| a.name.as_deref() == Some("then_branch")).and_then(|a| a.g.as_mut());
    then_branch.expect("then_branch").node[0].input = vec!["z_doubled".into()];
    // The If node first in the file and by name: the text still orders it after the Add it reads.
    graph.node.reverse();
    let model = whittle_graph::import_model(proto, Path::new("capture.onnx"), None).expect("import");
    insta::assert_snapshot!("if_capture", model_text(&model, &TextOptions::default()));
}

fn real_model(file: &str) -> Option<(Model, PathBuf)> {
    let path = whittle_testenv::shared_model(file)?;
    Some((whittle_graph::load_model(&path).expect("load real model"), path))
}

/// Export → import keeps the text; reversing the file's node order keeps it too.
fn check_real_model(file: &str) {
    let Some((model, path)) = real_model(file) else { return };
    let opts = TextOptions::default();
    let start = Instant::now();
    let text = model_text(&model, &opts);
    eprintln!("{file}: {} lines in {:?}", text.lines().count(), start.elapsed());
    assert!(start.elapsed().as_secs() < 10, "formatting took {:?}", start.elapsed());
    assert_eq!(text, model_text(&model, &opts), "not deterministic");

    let bytes = whittle_graph::encode_model(&model);
    let back = whittle_graph::decode_model(bytes::Bytes::from(bytes.clone()), &path, None).expect("re-import");
    let back_text = model_text(&back, &opts);
    assert!(back_text == text, "{}", diff_text(&text, &back_text, "loaded", "re-imported"));

    let mut proto = ModelProto::decode(bytes.as_slice()).expect("decode");
    proto.graph.as_mut().expect("graph").node.reverse();
    let reversed = whittle_graph::import_model(proto, Path::new(file), None).expect("import reversed");
    let reversed_text = model_text(&reversed, &opts);
    assert!(reversed_text == text, "{}", diff_text(&text, &reversed_text, "file order", "reversed"));

    let stats_text = model_text(&model, &stats());
    assert_eq!(stats_text, model_text(&back, &stats()));
}

#[test]
fn real_cls_round_trip() {
    check_real_model("ch_ppocr_mobile_v2.0_cls_infer.onnx");
}

#[test]
fn real_det_round_trip() {
    check_real_model("ch_PP-OCRv4_det_infer.onnx");
}

#[test]
fn real_rec_round_trip() {
    check_real_model("ch_PP-OCRv4_rec_infer.onnx");
}

#[test]
fn real_cls_snapshot() {
    let Some((model, _)) = real_model("ch_ppocr_mobile_v2.0_cls_infer.onnx") else { return };
    insta::assert_snapshot!("cls_model", model_text(&model, &TextOptions::default()));
}
