//! The IR toolkit doing what the compression passes will do, checked numerically with tract:
//! a QuantizeLinear/DequantizeLinear pair inserted on one edge of a value that has two readers,
//! and a Conv replaced by two Convs (a depthwise one and a pointwise one), both as patches.

use whittle_graph::builder::{GraphBuilder, attr_int, attr_ints};
use whittle_graph::edit::{OpSpec, Use};
use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{DataType, Model, Tensor};
use whittle_tests::numeric::{constant, outputs, weights};

/// x -> Conv(a) -> Relu -> r; r feeds Conv(b) and a Sigmoid; both are outputs.
fn branching_model() -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 6, 6]);
    let wa = constant(&mut b, "wa", &[4, 3, 3, 3], 1);
    let a = b.node("Conv", &[x, wa], &["a"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    let r = b.node("Relu", &[a], &["r"], vec![])[0];
    let wb = constant(&mut b, "wb", &[2, 4, 1, 1], 2);
    let y = b.node("Conv", &[r, wb], &["y"], vec![])[0];
    let s = b.node("Sigmoid", &[r], &["s"], vec![])[0];
    b.output(y);
    b.output(s);
    let mut m = b.finish();
    // Tap r, to bound the quantization error below.
    whittle_graph::shape::infer::infer_shapes(&mut m, &Default::default()).unwrap();
    assert!(m.graph.add_output(r));
    m
}

#[test]
fn qdq_pair_on_one_edge_of_a_value_with_two_readers() {
    let model = branching_model();
    let mut candidate = model.clone();
    let g = &mut candidate.graph;
    let r = g.value_by_name("r").unwrap();
    let conv_b = g.value(g.value_by_name("y").unwrap()).producer().unwrap();
    let order = g.order_after(g.node(conv_b).unwrap().order);
    let scale = 0.2f32;

    let mut p = Patch::new("r -> conv y: QDQ uint8");
    let s = p.add_constant("r_scale", Tensor::from_f32("", &[], &[scale]));
    let z = p.add_constant("r_zero_point", Tensor::from_u8("", &[], &[0]));
    let q = p.add_op(OpSpec::new("QuantizeLinear", &[], "r_quantized"), vec![Wire::Value(r), s, z], order);
    let dq = p.add_op(OpSpec::new("DequantizeLinear", &[], "r_dequantized"), vec![Wire::output(q, 0), s, z], order);
    // Only the Conv's read of r goes through the pair; the Sigmoid keeps the float value.
    p.redirect(r, Wire::output(dq, 0), vec![Use::Input { node: conv_b, slot: 0 }]);
    p.check(g).unwrap();
    let added = p.apply(g);
    assert_eq!(added.len(), 2);
    assert!(whittle_graph::validate::validate(&candidate).is_empty());
    let q_node = candidate.graph.node(added[0]).unwrap();
    assert_eq!(q_node.input(0), Some(r), "the QuantizeLinear reads r itself, no cycle");

    // Sigmoid output: bit-identical. Conv output: off by at most Σ_i |wb[o,i]| · scale/2, the
    // rounding of r (which the tap shows stays inside the uint8 range, so nothing saturates).
    let wb = weights(8, 2);
    let bound = (0..2).map(|o| (0..4).map(|i| wb[o * 4 + i].abs()).sum::<f32>()).fold(0f32, f32::max) * scale / 2.0;
    let results = outputs(&model, &candidate, ("x", &[1, 3, 6, 6]));
    let mut changed = false;
    for chunk in results.chunks(3) {
        let [(y, y2), (s, s2), (r, r2)] = chunk else { panic!("three outputs per sample") };
        assert_eq!(r, r2, "the tap on r must not change");
        assert_eq!(s, s2, "the Sigmoid output must not change");
        let r_max = r.iter().fold(0f32, |m, v| m.max(*v));
        assert!(r_max < 255.0 * scale, "r reaches {r_max}: pick a larger scale");
        let err = y.iter().zip(y2.iter()).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(err <= bound + 1e-5, "conv output error {err} above {bound}");
        changed |= err > 0.0;
    }
    assert!(changed, "the quantized branch must actually be quantized");
}

/// Network decoupling at full rank, without an SVD: a k×k Conv equals a depthwise Conv with one
/// one-hot k×k kernel per input channel and kernel position (C_in·k² outputs), followed by a 1×1
/// Conv whose weight is the original weight reshaped to [C_out, C_in·k², 1, 1]. Exact.
#[test]
fn conv_replaced_by_depthwise_and_pointwise_convs() {
    let (cin, cout, k) = (3i64, 5i64, 3i64);
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, cin, 7, 7]);
    let w = constant(&mut b, "w", &[cout, cin, k, k], 11);
    let bias = constant(&mut b, "bias", &[cout], 12);
    let attrs = vec![attr_ints("pads", &[1, 1, 1, 1]), attr_ints("strides", &[2, 2])];
    let y = b.node("Conv", &[x, w, bias], &["conv"], attrs)[0];
    let out = b.node("Relu", &[y], &["out"], vec![])[0];
    b.output(out);
    let model = b.finish();

    let mut candidate = model.clone();
    let g = &mut candidate.graph;
    let conv = g.value(y).producer().unwrap();
    let node = g.node(conv).unwrap();
    let order = node.order;
    let taps = (k * k) as usize;
    let mut dw = vec![0f32; (cin as usize) * taps * taps];
    for i in 0..cin as usize {
        for r in 0..taps {
            dw[(i * taps + r) * taps + r] = 1.0;
        }
    }
    let pw = g.constant(w).unwrap().to_f32().unwrap();
    let mut p = Patch::new("conv: depthwise 3x3 (27 one-hot kernels) + pointwise 1x1");
    let dw_w = p.add_constant("conv_dw_w", Tensor::from_f32("", &[cin * k * k, 1, k, k], &dw));
    let pw_w = p.add_constant("conv_pw_w", Tensor::from_f32("", &[cout, cin * k * k, 1, 1], &pw));
    let mut dw_spec = OpSpec::new("Conv", &[], "conv_dw").attr(attr_int("group", cin));
    dw_spec.attributes.extend(node.attributes.iter().map(|a| a.proto.clone()));
    let dw_op = p.add_op(dw_spec, vec![Wire::Value(x), dw_w], order);
    let pw_op = p.add_op(OpSpec::new("Conv", &[], "conv_pw"), vec![Wire::output(dw_op, 0), pw_w, Wire::Value(bias)], g.order_after(order));
    p.redirect_all(y, Wire::output(pw_op, 0));
    p.remove_node(conv);
    p.check(g).unwrap();
    p.apply(g);

    assert!(whittle_graph::validate::validate(&candidate).is_empty());
    let convs: Vec<_> = candidate.graph.node_ids().into_iter().filter(|n| candidate.graph.node(*n).unwrap().is("Conv")).collect();
    assert_eq!(convs.len(), 2);
    assert!(candidate.graph.constant(w).is_none() && !candidate.graph.is_alive(w), "the old weight went with the Conv");
    for (a, b) in outputs(&model, &candidate, ("x", &[1, cin, 7, 7])) {
        assert_eq!(a.shape(), b.shape());
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let err = a.iter().zip(b.iter()).fold(0f32, |m, (p, q)| m.max((p - q).abs()));
        assert!(err <= 1e-5 * scale.max(1.0), "max abs error {err} (output magnitude {scale})");
    }
}
