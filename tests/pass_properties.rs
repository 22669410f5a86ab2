//! Properties every registered pass must have: its documented parameters are exactly the fields
//! of its parameters, and running it a second time changes nothing (on built fixtures and on the
//! default model), through the real pass manager.

use std::collections::BTreeSet;

use whittle_graph::Model;
use whittle_graph::builder::{GraphBuilder, attr_float, attr_int, attr_ints};
use whittle_graph::text::{TextOptions, model_text};
use whittle_graph::{DataType, Tensor};
use whittle_passes::PASSES;
use whittle_tests::numeric::constant;

#[test]
fn documented_parameters_are_the_parameters() {
    for pass in PASSES {
        let documented: BTreeSet<&str> = pass.params().iter().map(|p| p.name).collect();
        let defaults = pass.default_params();
        let fields: BTreeSet<&str> = defaults.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
        assert_eq!(documented, fields, "{}: documented parameters vs fields of its Params", pass.name);
        assert_eq!(documented.len(), pass.params().len(), "{}: a parameter is documented twice", pass.name);
    }
}

/// Input shapes by name.
type InputShapes = Vec<(String, Vec<i64>)>;

/// Fixtures with something for every cleanup pass to do: an old opset, Identity and Dropout,
/// foldable shape arithmetic, Conv + BatchNormalization, a channel-wise Mul, a MatMul, a dead branch,
/// two convolutions through a Relu, a low-rank 3x3 convolution, a convolution large enough to prune,
/// a mostly-zero weight to store sparse.
fn fixtures() -> Vec<(Model, InputShapes)> {
    let mut b = GraphBuilder::new(11);
    let x = b.input("x", DataType::Float, &[1, 3, 8, 8]);
    let w = constant(&mut b, "w", &[4, 3, 3, 3], 1);
    let conv = b.node("Conv", &[x, w], &["conv"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    let [s, bias, mean] = [2, 3, 4].map(|seed| constant(&mut b, &format!("bn{seed}"), &[4], seed));
    let var = b.constant("var", Tensor::from_f32("var", &[4], &[0.5, 1.0, 2.0, 0.25]));
    // An initializer also listed as a graph input (IR < 4 style).
    let info = whittle_graph::builder::value_info("var", DataType::Float, Some(&whittle_graph::Shape::from_dims(&[4])));
    b.graph_mut().input_infos_mut().push((var, info));
    let bn = b.node("BatchNormalization", &[conv, s, bias, mean, var], &["bn"], vec![attr_float("epsilon", 1e-3)])[0];
    let id = b.node("Identity", &[bn], &["id"], vec![])[0];
    let scale = constant(&mut b, "scale", &[1, 4, 1, 1], 5);
    let mul = b.node("Mul", &[id, scale], &["mul"], vec![])[0];
    let drop = b.node("Dropout", &[mul], &["drop"], vec![])[0];
    let shape = b.node("Shape", &[drop], &["shape"], vec![])[0];
    let flat = b.node("Reshape", &[drop, shape], &["same"], vec![])[0];
    let relu = b.node("Relu", &[flat], &["relu"], vec![])[0];
    // Opset 11 forms that opset 13 rewrites (axes attribute -> input).
    let un = b.node("Unsqueeze", &[relu], &["un"], vec![attr_ints("axes", &[0])])[0];
    let sq = b.node("Squeeze", &[un], &["sq"], vec![attr_ints("axes", &[0])])[0];
    // A MatMul with a constant weight, for the weight and dynamic quantizers.
    // Of rank 1, for the low-rank factorization.
    let rank_one: Vec<f32> = (0..24).map(|e| ((e / 3) as f32 - 3.5) * ((e % 3) as f32 + 1.0) / 8.0).collect();
    let wm = b.constant("wm", Tensor::from_f32("wm", &[8, 3], &rank_one));
    let y = b.node("MatMul", &[sq, wm], &["y"], vec![])[0];
    let _dead = b.node("Sigmoid", &[x], &["dead"], vec![])[0];
    b.output(y);
    // Two convolutions through a Relu, for cross-layer equalization.
    let wa = constant(&mut b, "wa", &[4, 3, 1, 1], 7);
    let ca = b.node("Conv", &[x, wa], &["ca"], vec![])[0];
    let ra = b.node("Relu", &[ca], &["ra"], vec![])[0];
    let wb = constant(&mut b, "wb", &[2, 4, 1, 1], 8);
    let cb = b.node("Conv", &[ra, wb], &["cb"], vec![])[0];
    // A 3x3 convolution of rank 1 per input channel, for the separable rewrite.
    let taps: Vec<f32> =
        (0..8 * 2 * 9).map(|e| ((e / 18 + 1) as f32) * (1.0 + (e / 9 % 2) as f32) * ((e % 9) as f32 - 4.0) / 4.0).collect();
    let wc = b.constant("wc", Tensor::from_f32("wc", &[8, 2, 3, 3], &taps));
    let cc = b.node("Conv", &[cb, wc], &["cc"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    // A layer large enough to prune (1152 weights).
    let wd = constant(&mut b, "wd", &[16, 8, 3, 3], 9);
    let cd = b.node("Conv", &[cc, wd], &["cd"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    // A mostly-zero 1x1 weight (90%, as after pruning), for sparse storage.
    let mostly_zero: Vec<f32> =
        whittle_tests::numeric::weights(128 * 16, 10).iter().enumerate().map(|(i, w)| if i % 10 == 0 { *w } else { 0.0 }).collect();
    let we = b.constant("we", Tensor::from_f32("we", &[128, 16, 1, 1], &mostly_zero));
    let ce = b.node("Conv", &[cd, we], &["ce"], vec![])[0];
    b.output(ce);
    let mut conv_model = b.finish();
    // An old file: its initializers listed as inputs are not overridable defaults.
    conv_model.meta.ir_version = Some(3);

    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 6]);
    let two = b.constant("two", Tensor::from_i64("two", &[1], &[2]));
    let minus = b.constant("minus", Tensor::from_i64("minus", &[1], &[-1]));
    let dims = b.node("Concat", &[two, minus], &["dims"], vec![attr_int("axis", 0)])[0];
    let r = b.node("Reshape", &[x, dims], &["r"], vec![])[0];
    let t = b.node("Transpose", &[r], &["t"], vec![attr_ints("perm", &[0, 1])])[0];
    let c = b.node("Cast", &[t], &["c"], vec![attr_int("to", 1)])[0];
    b.output(c);
    let shape_model = b.finish();

    let default_model = whittle_graph::load_model(&whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx")).unwrap();
    vec![
        (conv_model, vec![("x".into(), vec![1, 3, 8, 8])]),
        (shape_model, vec![("x".into(), vec![1, 6])]),
        (default_model, vec![("x".into(), vec![1, 3, 48, 192])]),
    ]
}

/// Passes that remove a share of what is there (`prune_channels: ratio 0.3` takes 30% of the
/// channels left each time): a second run prunes again by design. They must still give a model
/// the manager validates, and do something on fixture 0.
const SHARE_OF_WHAT_IS_LEFT: &[&str] = &["prune_channels"];

/// Runs `pass` twice on `m`; the second run must apply nothing and leave the text unchanged.
fn twice(m: &mut Model, pass: &str, shapes: &[(String, Vec<i64>)], what: &str) -> usize {
    let first = whittle_tests::run_pass(m, pass, shapes);
    if SHARE_OF_WHAT_IS_LEFT.contains(&pass) {
        return first.applied;
    }
    let text = model_text(m, &TextOptions::default());
    let second = whittle_tests::run_pass(m, pass, shapes);
    assert_eq!(second.applied, 0, "{what}, {pass}: the second run applied {:?}", second.changes);
    assert_eq!(model_text(m, &TextOptions::default()), text, "{what}, {pass}: the second run changed the model");
    first.applied
}

#[test]
fn every_pass_run_twice_changes_nothing_the_second_time() {
    for (k, (model, shapes)) in fixtures().into_iter().enumerate() {
        // Each pass alone on the fixture.
        // quantize_static and smooth_quant need calibration data: tests/quantization.rs runs
        // them twice.
        let passes = || PASSES.iter().filter(|p| !["quantize_static", "smooth_quant"].contains(&p.name));
        for pass in passes() {
            twice(&mut model.clone(), pass.name, &shapes, &format!("fixture {k}"));
        }
        // Each pass on what the passes before it left (the cleanup order), where each has work.
        let mut m = model.clone();
        for pass in passes() {
            let applied = twice(&mut m, pass.name, &shapes, &format!("fixture {k} in sequence"));
            if k == 0 {
                assert!(applied > 0, "fixture 0 gives {} something to do", pass.name);
            }
        }
    }
}
