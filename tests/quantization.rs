//! The quantizers on small graphs built in code, driven through the measurement interface with
//! tract (the runner's implementation): the QDQ rewrite as insta snapshots, and the quantized
//! arithmetic checked against a hand-written reference.

use whittle_graph::builder::{GraphBuilder, attr_int, attr_ints};
use whittle_graph::shape::infer::{InferOptions, infer_shapes};
use whittle_graph::text::{TensorDigest, TextOptions, diff_text, model_text};
use whittle_graph::{DataType, Model, Tensor};
use whittle_passes::measure::Measure;
use whittle_passes::pass::PassDef;
use whittle_passes::quant::calibrate::Method;
use whittle_passes::quantize_static::{Params, QuantizeStatic};
use whittle_passes::{Pass, PassContext};
use whittle_runner::data::{Distribution, InputSet};
use whittle_runner::pipeline::VerifySpec;
use whittle_runner::run::measure::TractMeasure;
use whittle_runner::verify::{CompareOptions, load_model};

use whittle_tests::numeric::{constant, weights};

fn text(m: &Model) -> String {
    model_text(m, &TextOptions { tensors: TensorDigest::Stats, ..Default::default() })
}

/// Runs `pass` on `model` with calibration `data` measured by tract; returns
/// the quantized model and the text-form diff.
fn quantize(model: &Model, pass: &dyn Pass, data: &InputSet, input: (&str, &[i64])) -> (Model, String) {
    let shapes = vec![(input.0.to_string(), input.1.iter().map(|&d| d as usize).collect::<Vec<_>>())];
    let mut before = model.clone();
    infer_shapes(&mut before, &InferOptions { input_shapes: vec![(input.0.to_string(), input.1.to_vec())] }).unwrap();
    let spec = VerifySpec::default();
    let measure = TractMeasure::new(data, shapes, &before, &spec, CompareOptions::default(), None);
    let mut after = before.clone();
    pass.run(&mut after, &PassContext::with_measure(&measure as &dyn Measure)).unwrap();
    infer_shapes(&mut after, &InferOptions { input_shapes: vec![(input.0.to_string(), input.1.to_vec())] }).unwrap();
    let diff = diff_text(&text(&before), &text(&after), "float", "quantized");
    (after, diff)
}

fn minmax() -> QuantizeStatic {
    QuantizeStatic::new(Params { method: Method::Minmax, ..Params::default() })
}

fn random(shape: &[usize], samples: usize) -> InputSet {
    InputSet::random(&[("x".to_string(), shape.to_vec())], samples, Distribution::Normal { mean: 0.0, std: 1.0 }, 3).unwrap()
}

/// conv -> relu -> conv, a residual add, a concat and a matmul on the flattened result.
fn blocks() -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 2, 4, 4]);
    let pads = || attr_ints("pads", &[1, 1, 1, 1]);
    let w1 = constant(&mut b, "w1", &[2, 2, 3, 3], 1);
    let b1 = constant(&mut b, "b1", &[2], 2);
    let c1 = b.node("Conv", &[x, w1, b1], &["c1"], vec![pads()])[0];
    let r1 = b.node("Relu", &[c1], &["r1"], vec![])[0];
    let w2 = constant(&mut b, "w2", &[2, 2, 3, 3], 3);
    let c2 = b.node("Conv", &[r1, w2], &["c2"], vec![pads()])[0];
    let res = b.node("Add", &[c2, x], &["res"], vec![])[0];
    let cat = b.node("Concat", &[res, r1], &["cat"], vec![attr_int("axis", 1)])[0];
    let shape = b.constant("shape", Tensor::from_i64("shape", &[2], &[1, 64]));
    let flat = b.node("Reshape", &[cat, shape], &["flat"], vec![])[0];
    let wm = constant(&mut b, "wm", &[64, 3], 4);
    let y = b.node("MatMul", &[flat, wm], &["y"], vec![])[0];
    b.output(y);
    b.finish()
}

#[test]
fn quantize_static_places_qdq_like_the_integer_runtimes() {
    let model = blocks();
    let (q, diff) = quantize(&model, &minmax(), &random(&[1, 2, 4, 4], 8), ("x", &[1, 2, 4, 4]));
    insta::assert_snapshot!(diff);
    // The ReLU before a quantization point is dropped (saturation at zero point 0 does it);
    // the graph output stays float; weights are int8 with per-channel scales.
    let ops: Vec<String> = q.graph.node_ids().iter().map(|&n| q.graph.node(n).unwrap().op_type().to_string()).collect();
    assert!(!ops.iter().any(|o| o == "Relu"), "{ops:?}");
    let y = q.graph.outputs().next().unwrap();
    assert!(q.graph.node(q.graph.value(y).producer().unwrap()).unwrap().is("MatMul"));
}

#[test]
fn quantized_conv_matches_a_hand_written_reference() {
    // x [1,2,2,2] -> Conv 1x1 with 3 filters and a bias -> y (the graph output, kept float).
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 2, 2, 2]);
    let w = constant(&mut b, "w", &[3, 2, 1, 1], 5);
    let bias = constant(&mut b, "b", &[3], 6);
    let y = b.node("Conv", &[x, w, bias], &["y"], vec![])[0];
    b.output(y);
    let model = b.finish();
    let data = random(&[1, 2, 2, 2], 4);
    let (q, _) = quantize(&model, &minmax(), &data, ("x", &[1, 2, 2, 2]));

    // The reference: uint8 asymmetric x over the calibration min/max (widened to 0), int8
    // symmetric weights per filter, int32 bias at scale sx * sw.
    let all: Vec<f32> = (0..data.len())
        .flat_map(|i| data.sample(i).unwrap()[0].1.to_plain_array_view::<f32>().unwrap().iter().copied().collect::<Vec<f32>>())
        .collect();
    let (lo, hi) = (all.iter().cloned().fold(0f32, f32::min), all.iter().cloned().fold(0f32, f32::max));
    let sx = (hi - lo) / 255.0;
    let zx = (-lo / sx).round_ties_even().clamp(0.0, 255.0);
    let (wv, bv) = (weights(6, 5), weights(3, 6));
    let runnable = load_model(&whittle_graph::encode_for_runtime(&q), &[("x".into(), vec![1, 2, 2, 2])]).unwrap();
    for i in 0..data.len() {
        let sample = data.sample(i).unwrap();
        let xs = sample[0].1.to_plain_array_view::<f32>().unwrap().iter().copied().collect::<Vec<f32>>();
        let got = runnable.run(&sample).unwrap().remove(0);
        for f in 0..3 {
            let sw = wv[f * 2].abs().max(wv[f * 2 + 1].abs()) / 127.0;
            let qb = (bv[f] / (sx * sw)).round();
            for p in 0..4 {
                let mut acc = 0f32;
                for c in 0..2 {
                    let qx = ((xs[c * 4 + p] / sx).round_ties_even() + zx).clamp(0.0, 255.0);
                    let qw = (wv[f * 2 + c] / sw).round_ties_even();
                    acc += (qx - zx) * sx * qw * sw;
                }
                let want = acc + qb * sx * sw;
                let have = got.as_slice().unwrap()[f * 4 + p];
                assert!((want - have).abs() <= 1e-5 * want.abs().max(1.0), "filter {f} pixel {p}: {have} vs reference {want}");
            }
        }
    }
}
