//! The IR operations passes share (graph/src/edit.rs, graph/src/patch.rs, Tensor::select, the
//! channel-layout table), each on small built graphs.

use whittle_graph::builder::{GraphBuilder, attr_int};
use whittle_graph::channels::{ChannelFlow, WeightAxes, channel_flow};
use whittle_graph::edit::{OpSpec, Use};
use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{DataType, Model, Shape, Tensor, ValueId};

/// x -> Relu -> r; r is read by Sigmoid (s) and Tanh (t), and is a graph output too.
fn two_readers() -> (Model, ValueId, ValueId, ValueId) {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4]);
    let r = b.node("Relu", &[x], &["r"], vec![])[0];
    let s = b.node("Sigmoid", &[r], &["s"], vec![])[0];
    let t = b.node("Tanh", &[r], &["t"], vec![])[0];
    b.output(s);
    b.output(t);
    b.output(r);
    (b.finish(), r, s, t)
}

#[test]
fn uses_of_lists_inputs_and_graph_outputs() {
    let (m, r, s, _) = two_readers();
    let g = &m.graph;
    let uses = g.uses_of(r);
    assert_eq!(uses.len(), 3, "{uses:?}");
    assert!(uses.contains(&Use::GraphOutput(2)));
    let sig = g.value(s).producer().unwrap();
    assert!(uses.contains(&Use::Input { node: sig, slot: 0 }));
}

#[test]
fn redirect_moves_only_the_listed_readers() {
    let (mut m, r, s, t) = two_readers();
    let g = &mut m.graph;
    let sig = g.value(s).producer().unwrap();
    let tanh = g.value(t).producer().unwrap();
    let order = g.node(sig).unwrap().order;
    // Insert a Neg on the edge r -> Sigmoid only: the Neg reads r, the Sigmoid reads the Neg.
    let neg = g.add_op(OpSpec::new("Neg", &[r], "r_neg"), order);
    let neg_out = g.node(neg).unwrap().output(0).unwrap();
    g.redirect_uses(r, neg_out, &[Use::Input { node: sig, slot: 0 }]);
    assert_eq!(g.node(sig).unwrap().input(0), Some(neg_out));
    assert_eq!(g.node(tanh).unwrap().input(0), Some(r), "the other reader keeps r");
    assert_eq!(g.node(neg).unwrap().input(0), Some(r), "no cycle: the new node still reads r");
    assert!(g.is_graph_output(r));
    assert!(g.topo_order().is_ok());
}

#[test]
fn add_op_makes_node_and_value_names_unique() {
    let (mut m, r, _, _) = two_readers();
    let g = &mut m.graph;
    let a = g.add_op(OpSpec::new("Neg", &[r], "r"), Default::default());
    let b = g.add_op(OpSpec::new("Neg", &[r], "r"), Default::default());
    let (na, nb) = (g.node(a).unwrap(), g.node(b).unwrap());
    assert_ne!(na.name(), nb.name());
    assert_ne!(na.name(), "r", "the Relu node is named r already");
    let (va, vb) = (na.output(0).unwrap(), nb.output(0).unwrap());
    assert_ne!(g.value(va).name, g.value(vb).name);
    assert_ne!(g.value(va).name, "r");
    // A name is free again once its node is gone.
    let freed = g.node(a).unwrap().name().to_string();
    g.remove_node(a);
    assert_eq!(g.fresh_node_name(&freed), freed);
}

#[test]
fn add_output_taps_an_intermediate_value() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4]);
    let r = b.node("Relu", &[x], &["r"], vec![])[0];
    let y = b.node("Neg", &[r], &["y"], vec![])[0];
    b.output(y);
    let mut m = b.finish();
    whittle_graph::shape::infer::infer_shapes(&mut m, &Default::default()).unwrap();
    assert!(m.graph.add_output(r));
    assert!(!m.graph.add_output(r), "already an output");
    let proto = whittle_graph::model_to_proto(&m);
    let outs: Vec<_> = proto.graph.unwrap().output.into_iter().map(|o| o.name.unwrap()).collect();
    assert_eq!(outs, ["y", "r"]);
}

#[test]
fn set_input_shape_edits_the_declaration() {
    let mut b = GraphBuilder::new(13);
    let x = b.input_shape("x", DataType::Float, Shape::from_dims(&[-1, 4]));
    let y = b.node("Relu", &[x], &["y"], vec![])[0];
    b.output(y);
    let mut m = b.finish();
    assert!(m.graph.set_input_shape(x, &Shape::from_dims(&[2, 4]), DataType::Float));
    assert!(!m.graph.set_input_shape(x, &Shape::from_dims(&[2, 4]), DataType::Float), "unchanged the second time");
    let proto = whittle_graph::model_to_proto(&m);
    let input = &proto.graph.unwrap().input[0];
    let (dtype, shape) = whittle_graph::shape::tensor_type_parts(input.r#type.as_ref());
    assert_eq!(dtype, Some(DataType::Float.to_onnx()));
    assert_eq!(shape, Some(Shape::from_dims(&[2, 4])));
}

#[test]
fn tensor_select_picks_slices_along_an_axis() {
    let t = Tensor::from_f32("w", &[3, 2, 2], &(0..12).map(|v| v as f32).collect::<Vec<_>>());
    let rows = t.select(0, &[2, 0]).unwrap();
    assert_eq!(rows.dims(), [2, 2, 2]);
    assert_eq!(rows.to_f32().unwrap(), [8.0, 9.0, 10.0, 11.0, 0.0, 1.0, 2.0, 3.0]);
    let cols = t.select(-1, &[1]).unwrap();
    assert_eq!(cols.dims(), [3, 2, 1]);
    assert_eq!(cols.to_f32().unwrap(), [1.0, 3.0, 5.0, 7.0, 9.0, 11.0]);
    assert_eq!(t.select(1, &[-1, -1]).unwrap().to_f32().unwrap(), [2.0, 3.0, 2.0, 3.0, 6.0, 7.0, 6.0, 7.0, 10.0, 11.0, 10.0, 11.0]);
    assert!(t.select(3, &[0]).is_err());
    assert!(t.select(0, &[3]).is_err());
    // Exact bits for other element types.
    let q = Tensor::from_i8("q", &[2, 2], &[-128, 127, 1, -1]);
    assert_eq!(q.select(1, &[1]).unwrap().to_i64().unwrap(), [127, -1]);
    assert_eq!(q.select(1, &[1]).unwrap().dtype(), DataType::Int8);
}

#[test]
fn integer_constructors_store_their_types() {
    let a = Tensor::from_i8("a", &[2], &[-3, 4]);
    let b = Tensor::from_u8("b", &[2], &[0, 255]);
    let c = Tensor::from_i32("c", &[2], &[-70000, 5]);
    assert_eq!((a.dtype(), a.to_i64().unwrap()), (DataType::Int8, vec![-3, 4]));
    assert_eq!((b.dtype(), b.to_i64().unwrap()), (DataType::Uint8, vec![0, 255]));
    assert_eq!((c.dtype(), c.to_i64().unwrap()), (DataType::Int32, vec![-70000, 5]));
    assert_eq!(c.byte_size(), 8);
}

#[test]
fn patch_checks_before_it_changes_anything() {
    // r is read by s; replacing s's input by a value computed from s's own output is a cycle.
    let (m, r, s, _) = two_readers();
    let g = &m.graph;
    let sig = g.value(s).producer().unwrap();
    let mut p = Patch::new("a loop");
    let neg = p.add_op(OpSpec::new("Neg", &[], "loop"), vec![Wire::Value(s)], Default::default());
    p.redirect(r, Wire::output(neg, 0), vec![Use::Input { node: sig, slot: 0 }]);
    let err = p.check(g).unwrap_err();
    assert!(err.0.contains("cycle"), "{err}");

    // Removing a node whose output is still read.
    let mut p = Patch::new("remove the Relu");
    p.remove_node(g.value(r).producer().unwrap());
    assert!(p.check(g).unwrap_err().0.contains("still read"));

    // A weight shared by two convolutions cannot be replaced for one of them.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 1, 2, 2]);
    let w = b.constant("w", Tensor::from_f32("w", &[1, 1, 1, 1], &[2.0]));
    let c1 = b.node("Conv", &[x, w], &["c1"], vec![])[0];
    let c2 = b.node("Conv", &[x, w], &["c2"], vec![])[0];
    b.output(c1);
    b.output(c2);
    let m = b.finish();
    let conv1 = m.graph.value(c1).producer().unwrap();
    let mut p = Patch::new("rescale conv1");
    p.replace_constant(w, Tensor::from_f32("w", &[1, 1, 1, 1], &[3.0]), conv1);
    assert!(p.check(&m.graph).unwrap_err().0.contains("shared"));
}

#[test]
fn a_patch_that_bypasses_a_graph_output_keeps_its_name() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4]);
    let r = b.node("Relu", &[x], &["r"], vec![])[0];
    let y = b.node("Identity", &[r], &["y"], vec![])[0];
    b.output(y);
    let mut m = b.finish();
    let g = &mut m.graph;
    let id = g.value(y).producer().unwrap();
    let mut p = Patch::new("drop the Identity");
    p.redirect_all(y, Wire::Value(r));
    p.remove_node(id);
    p.check(g).unwrap();
    p.apply(g);
    let out = g.outputs().next().unwrap();
    assert_eq!(out, r);
    assert_eq!(g.value(out).name, "y", "the model's interface keeps its output name");
    assert_eq!(g.node_count(), 1);
}

#[test]
fn channel_table_gives_weight_axes() {
    let conv = WeightAxes::of("Conv", false, 4).unwrap();
    assert_eq!((conv.output, conv.input), (0, 1));
    assert_eq!(conv.output_channels(&[8, 2, 3, 3], 4), Some(8));
    assert_eq!(conv.input_channels(&[8, 2, 3, 3], 4), Some(8));
    assert_eq!(conv.macs_per_element(&[8, 2, 3, 3]), Some(18));
    let deconv = WeightAxes::of("ConvTranspose", false, 4).unwrap();
    assert_eq!(deconv.output_channels(&[4, 3, 3, 3], 2), Some(6));
    assert_eq!(deconv.input_channels(&[4, 3, 3, 3], 2), Some(4));
    // Group 2: input rows 0-1 feed outputs 0-2, rows 2-3 feed outputs 3-5.
    let of = deconv.output_channel_of_elements(&[4, 3, 1, 1], 2);
    assert_eq!(of, [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]);
    let gemm = WeightAxes::of("Gemm", true, 2).unwrap();
    assert_eq!(gemm.output_channels(&[5, 8], 1), Some(5));
    assert_eq!(gemm.macs_per_element(&[5, 8]), Some(8));
    assert_eq!(WeightAxes::of("Gemm", false, 2).unwrap().output_channels(&[8, 5], 1), Some(5));
    assert_eq!(WeightAxes::of("MatMul", false, 3).unwrap().output, 2);
    assert_eq!(WeightAxes::of("Relu", false, 4), None);
}

#[test]
fn channel_table_says_how_channels_flow() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4, 2, 2]);
    let ids: Vec<_> = ["Relu", "BatchNormalization", "Concat", "Flatten", "Shape", "Softmax"]
        .iter()
        .map(|op| b.node_id(op, &[Some(x)], &[&format!("o_{op}")], vec![attr_int("axis", 1)]))
        .collect();
    let m = b.finish();
    let flows: Vec<ChannelFlow> = ids.iter().map(|id| channel_flow(m.graph.node(*id).unwrap())).collect();
    assert_eq!(flows[0], ChannelFlow::Keep);
    assert_eq!(flows[1], ChannelFlow::KeepWithParams(&[1, 2, 3, 4]));
    assert_eq!(flows[2], ChannelFlow::Concat);
    assert_eq!(flows[3], ChannelFlow::Reshape);
    assert!(matches!(flows[4], ChannelFlow::Blocked(_)));
    assert_eq!(flows[5], ChannelFlow::Normalize);
}

#[test]
fn patch_check_finds_loops_two_edges_make_together() {
    // x -> a -> b -> y1 and x -> c -> d -> y2; a reads d and c reads b: a loop through both.
    let mut bld = GraphBuilder::new(13);
    let x = bld.input("x", DataType::Float, &[1, 4]);
    let a = bld.node("Relu", &[x], &["a"], vec![])[0];
    let b = bld.node("Neg", &[a], &["b"], vec![])[0];
    let c = bld.node("Relu", &[x], &["c"], vec![])[0];
    let d = bld.node("Neg", &[c], &["d"], vec![])[0];
    bld.output(b);
    bld.output(d);
    let m = bld.finish();
    let g = &m.graph;
    let (na, nc) = (g.value(a).producer().unwrap(), g.value(c).producer().unwrap());
    let mut p = Patch::new("cross");
    p.set_input(na, 0, Some(Wire::Value(d)));
    p.set_input(nc, 0, Some(Wire::Value(b)));
    assert!(p.check(g).unwrap_err().0.contains("cycle"));
    // Either edge alone is fine.
    let mut p = Patch::new("one");
    p.set_input(na, 0, Some(Wire::Value(d)));
    p.check(g).unwrap();
}

#[test]
fn patch_check_refuses_stale_and_dangling_wiring() {
    let (m, r, s, t) = two_readers();
    let g = &m.graph;
    let (sig, tanh) = (g.value(s).producer().unwrap(), g.value(t).producer().unwrap());
    // Pointing an input at the output of a node the patch removes.
    let mut p = Patch::new("dangling");
    p.set_input(tanh, 0, Some(Wire::Value(s)));
    p.remove_node(sig);
    assert!(p.check(g).is_err());
    // Redirecting a reader that does not read the value.
    let mut p = Patch::new("stale");
    p.redirect(s, Wire::Value(r), vec![Use::Input { node: tanh, slot: 0 }]);
    assert!(p.check(g).unwrap_err().0.contains("does not read it"));

    // A value that is both a graph input and a graph output keeps its place in the interface.
    let mut bld = GraphBuilder::new(13);
    let x = bld.input("x", DataType::Float, &[1, 4]);
    let y = bld.node("Relu", &[x], &["y"], vec![])[0];
    bld.output(y);
    bld.output(x);
    let m = bld.finish();
    let mut p = Patch::new("move the output");
    p.redirect(x, Wire::Value(y), vec![Use::GraphOutput(1)]);
    assert!(p.check(&m.graph).unwrap_err().0.contains("interface"));
}

#[test]
fn applying_a_patch_drops_the_values_it_disconnects() {
    let mut bld = GraphBuilder::new(13);
    let x = bld.input("x", DataType::Float, &[1, 1, 2, 2]);
    let w = bld.constant("w", Tensor::from_f32("w", &[1, 1, 1, 1], &[2.0]));
    let y = bld.node("Conv", &[x, w], &["y"], vec![])[0];
    bld.output(y);
    let mut m = bld.finish();
    let g = &mut m.graph;
    let conv = g.value(y).producer().unwrap();
    let mut p = Patch::new("swap the weight");
    let w2 = p.add_constant("w_new", Tensor::from_f32("", &[1, 1, 1, 1], &[3.0]));
    p.set_input(conv, 1, Some(w2));
    p.check(g).unwrap();
    p.apply(g);
    assert!(!g.is_alive(w), "the old weight is gone");
    assert_eq!(g.constant(g.node(conv).unwrap().input(1).unwrap()).unwrap().to_f32().unwrap(), [3.0]);
}
