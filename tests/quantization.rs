//! The quantizers on small graphs built in code, driven through the measurement interface with
//! tract (the runner's implementation): the QDQ rewrite as insta snapshots, and the quantized
//! arithmetic checked against a hand-written reference.

use whittle_graph::builder::{GraphBuilder, attr_float, attr_int, attr_ints};
use whittle_graph::shape::infer::{InferOptions, infer_shapes};
use whittle_graph::text::{TensorDigest, TextOptions, diff_text, model_text};
use whittle_graph::{DataType, Model, Tensor};
use whittle_passes::measure::Measure;
use whittle_passes::pass::PassDef;
use whittle_passes::quant::calibrate::Method;
use whittle_passes::quantize_static::{Granularity, Params, QuantizeStatic};
use whittle_passes::smooth_quant::{self, SmoothQuant};
use whittle_passes::{Pass, PassContext, PassReport};
use whittle_runner::data::{Distribution, InputSet};
use whittle_runner::pipeline::VerifySpec;
use whittle_runner::run::measure::TractMeasure;
use whittle_runner::verify::{CompareOptions, load_model};

use whittle_tests::numeric::{constant, sqnr_db, weights};

fn text(m: &Model) -> String {
    model_text(m, &TextOptions { tensors: TensorDigest::Stats, ..Default::default() })
}

/// Runs `pass` on `model` with calibration `data` measured by tract; returns the rewritten
/// model (shapes inferred), its text-form diff and the report.
fn run_on_data(model: &Model, pass: &dyn Pass, data: &InputSet, input: (&str, &[i64]), label: &str) -> (Model, String, PassReport) {
    let shapes = vec![(input.0.to_string(), input.1.iter().map(|&d| d as usize).collect::<Vec<_>>())];
    let mut before = model.clone();
    infer_shapes(&mut before, &InferOptions { input_shapes: vec![(input.0.to_string(), input.1.to_vec())] }).unwrap();
    let spec = VerifySpec::default();
    let measure = TractMeasure::new(data, shapes, &before, &spec, CompareOptions::default(), None, data.origin().to_string());
    let mut after = before.clone();
    let report = pass.run(&mut after, &PassContext::with_measure(&measure as &dyn Measure)).unwrap();
    eprintln!("{:?}", report.notes);
    infer_shapes(&mut after, &InferOptions { input_shapes: vec![(input.0.to_string(), input.1.to_vec())] }).unwrap();
    let diff = diff_text(&text(&before), &text(&after), "float", label);
    (after, diff, report)
}

/// [`run_on_data`] for a pass that must decline nothing: the model and the diff.
fn quantize(model: &Model, pass: &dyn Pass, data: &InputSet, input: (&str, &[i64])) -> (Model, String) {
    let (after, diff, report) = run_on_data(model, pass, data, input, "quantized");
    assert!(report.declined.is_empty(), "{:?}", report.declined);
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

/// Conv -> Gemm(transB) -> MatMul: the layers every weight quantizer covers.
fn layers() -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 2, 4, 4]);
    let w = constant(&mut b, "w", &[3, 2, 3, 3], 11);
    let c = b.node("Conv", &[x, w], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    let shape = b.constant("shape", Tensor::from_i64("shape", &[2], &[1, 48]));
    let flat = b.node("Reshape", &[c, shape], &["flat"], vec![])[0];
    let gw = constant(&mut b, "gw", &[5, 48], 12);
    let gb = constant(&mut b, "gb", &[5], 13);
    let g = b.node("Gemm", &[flat, gw, gb], &["g"], vec![attr_int("transB", 1)])[0];
    let mw = constant(&mut b, "mw", &[5, 4], 14);
    let y = b.node("MatMul", &[g, mw], &["y"], vec![])[0];
    b.output(y);
    b.finish()
}

/// The float model with each weight replaced by its int8 rounding (per output channel), i.e.
/// what weight-only quantization computes, written out by hand.
fn rounded_weights(model: &Model, weights: &[(&str, usize)]) -> Model {
    let mut m = model.clone();
    for &(name, axis) in weights {
        let v = m.graph.value_by_name(name).unwrap();
        let t = m.graph.constant(v).unwrap().clone();
        let dims = t.dims().to_vec();
        let data = t.to_f32().unwrap();
        let inner: usize = dims[axis + 1..].iter().product::<i64>() as usize;
        let channels = dims[axis] as usize;
        let mut absmax = vec![0f32; channels];
        for (i, w) in data.iter().enumerate() {
            absmax[(i / inner) % channels] = absmax[(i / inner) % channels].max(w.abs());
        }
        let rounded: Vec<f32> = data
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let s = absmax[(i / inner) % channels] / 127.0;
                (w / s).round_ties_even() * s
            })
            .collect();
        m.graph.set_constant(v, Tensor::from_f32(name, &dims, &rounded));
    }
    m
}

#[test]
fn weight_only_quantization_is_the_float_model_with_rounded_weights() {
    let model = layers();
    let pass = whittle_passes::quantize_weights::QuantizeWeights::new(Default::default());
    let (q, _) = quantize(&model, &pass, &random(&[1, 2, 4, 4], 2), ("x", &[1, 2, 4, 4]));
    let ops: Vec<String> = q.graph.node_ids().iter().map(|&n| q.graph.node(n).unwrap().op_type().to_string()).collect();
    assert_eq!(ops.iter().filter(|o| *o == "DequantizeLinear").count(), 3, "{ops:?}");
    assert!(!ops.iter().any(|o| o == "QuantizeLinear"));
    // Conv weight per filter (axis 0), Gemm's transposed B per row (axis 0), MatMul per column (axis 1).
    let reference = rounded_weights(&model, &[("w", 0), ("gw", 0), ("mw", 1)]);
    whittle_tests::numeric::assert_same_outputs(&reference, &q, ("x", &[1, 2, 4, 4]), 1e-5);
}

#[test]
fn dynamic_quantization_of_gemm_and_matmul_stays_close_to_float() {
    let model = layers();
    let pass = whittle_passes::quantize_dynamic::QuantizeDynamic::new(Default::default());
    let (q, diff) = quantize(&model, &pass, &random(&[1, 2, 4, 4], 2), ("x", &[1, 2, 4, 4]));
    assert!(diff.contains("DynamicQuantizeLinear") && diff.contains("MatMulInteger"), "{diff}");
    let ops: Vec<String> = q.graph.node_ids().iter().map(|&n| q.graph.node(n).unwrap().op_type().to_string()).collect();
    assert!(ops.contains(&"Conv".to_string()) && !ops.contains(&"Gemm".to_string()) && !ops.contains(&"MatMul".to_string()), "{ops:?}");
    for (a, b) in whittle_tests::numeric::outputs(&model, &q, ("x", &[1, 2, 4, 4])) {
        let signal: f32 = a.iter().map(|v| v * v).sum();
        let noise: f32 = a.iter().zip(b.iter()).map(|(p, q)| (p - q) * (p - q)).sum();
        let sqnr = 10.0 * (signal / noise.max(1e-30)).log10();
        assert!(sqnr > 30.0, "dynamic INT8 SQNR {sqnr} dB");
    }
}

#[test]
fn bias_correction_removes_the_mean_shift_of_weight_rounding() {
    // Inputs with a large mean make the weight rounding's output shift visible.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 8, 4, 4]);
    let w = b.constant("w", Tensor::from_f32("w", &[4, 8, 1, 1], &weights(32, 21).iter().map(|v| v * 0.05 + 0.011).collect::<Vec<_>>()));
    let y = b.node("Conv", &[x, w], &["y"], vec![])[0];
    b.output(y);
    let model = b.finish();
    let data = InputSet::random(&[("x".to_string(), vec![1, 8, 4, 4])], 16, Distribution::Normal { mean: 5.0, std: 1.0 }, 4).unwrap();
    let mean_error = |bias_correction: bool| {
        let pass = QuantizeStatic::new(Params { method: Method::Minmax, bias_correction, ..Params::default() });
        let (q, _) = quantize(&model, &pass, &data, ("x", &[1, 8, 4, 4]));
        let (rf, rq) = (
            load_model(&whittle_graph::encode_for_runtime(&model), &[("x".into(), vec![1, 8, 4, 4])]).unwrap(),
            load_model(&whittle_graph::encode_for_runtime(&q), &[("x".into(), vec![1, 8, 4, 4])]).unwrap(),
        );
        let mut total = 0f64;
        for i in 0..data.len() {
            let s = data.sample(i).unwrap();
            let (a, b) = (rf.run(&s).unwrap().remove(0), rq.run(&s).unwrap().remove(0));
            total += a.iter().zip(b.iter()).map(|(p, q)| (q - p) as f64).sum::<f64>();
        }
        (total / (data.len() * 64) as f64).abs()
    };
    let (without, with) = (mean_error(false), mean_error(true));
    assert!(with < without / 2.0, "mean output error {with} with bias correction, {without} without");
}

#[test]
fn excluding_every_node_leaves_the_model_float() {
    let model = blocks();
    let pass = QuantizeStatic::new(Params { exclude: vec!["*".into()], ..Params::default() });
    let (q, _) = quantize(&model, &pass, &random(&[1, 2, 4, 4], 2), ("x", &[1, 2, 4, 4]));
    let ops: Vec<String> = q.graph.node_ids().iter().map(|&n| q.graph.node(n).unwrap().op_type().to_string()).collect();
    assert!(!ops.iter().any(|o| o.contains("Quantize")), "{ops:?}");
    whittle_tests::numeric::assert_same_outputs(&model, &q, ("x", &[1, 2, 4, 4]), 1e-6);
}

/// A measurement interface that refuses to run anything (statistics must come from the file).
struct NoRuns<'a>(&'a TractMeasure<'a>);

impl Measure for NoRuns<'_> {
    fn samples(&self) -> usize {
        self.0.samples()
    }
    fn stream(
        &self,
        _: &Model,
        _: &[String],
        _: &mut whittle_passes::measure::Sink<'_>,
    ) -> Result<(), whittle_passes::measure::MeasureError> {
        Err(whittle_passes::measure::MeasureError("this test allows no model run".into()))
    }
    fn fidelity(&self, candidate: &Model) -> Result<whittle_passes::measure::Fidelity, whittle_passes::measure::MeasureError> {
        self.0.fidelity(candidate)
    }
    fn data_fingerprint(&self) -> String {
        self.0.data_fingerprint()
    }
}

#[test]
fn saved_statistics_are_reused_without_running_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stats.json");
    let mut model = blocks();
    infer_shapes(&mut model, &InferOptions { input_shapes: vec![("x".into(), vec![1, 2, 4, 4])] }).unwrap();
    let data = random(&[1, 2, 4, 4], 4);
    let spec = VerifySpec::default();
    let shapes = vec![("x".to_string(), vec![1, 2, 4, 4])];
    let pass = QuantizeStatic::new(Params { statistics: Some(file.display().to_string()), bias_correction: true, ..Params::default() });
    let quantize_with = |measure: &dyn Measure| {
        let mut m = model.clone();
        let report = pass.run(&mut m, &PassContext::with_measure(measure)).map_err(|e| e.to_string())?;
        Ok::<_, String>((whittle_graph::encode_model(&m), report.notes))
    };
    let tract = TractMeasure::new(&data, shapes.clone(), &model, &spec, CompareOptions::default(), None, "data A".into());
    let (first, notes) = quantize_with(&tract).unwrap();
    assert!(file.is_file() && notes.iter().any(|n| n.contains("written to")), "{notes:?}");
    let (second, notes) = quantize_with(&NoRuns(&tract)).unwrap();
    assert_eq!(first, second, "same statistics, same model");
    assert!(notes.iter().any(|n| n.contains("reused")), "{notes:?}");
    // Other data: the file does not apply, and this measure may not run the model.
    let other = TractMeasure::new(&data, shapes, &model, &spec, CompareOptions::default(), None, "data B".into());
    let err = quantize_with(&NoRuns(&other)).unwrap_err();
    assert!(err.contains("no model run"), "{err}");
}

#[test]
fn quantizing_a_quantized_model_changes_nothing() {
    let model = blocks();
    let data = random(&[1, 2, 4, 4], 2);
    let (once, _) = quantize(&model, &minmax(), &data, ("x", &[1, 2, 4, 4]));
    let shapes = vec![("x".to_string(), vec![1, 2, 4, 4])];
    let spec = VerifySpec::default();
    let measure = TractMeasure::new(&data, shapes, &once, &spec, CompareOptions::default(), None, "d".into());
    let mut twice = once.clone();
    let report = minmax().run(&mut twice, &PassContext::with_measure(&measure)).unwrap();
    assert_eq!(report.applied, 0, "{:?}", report.changes);
    assert!(report.declined.iter().any(|d| d.reason.contains("already quantized")), "{:?}", report.declined);
    assert_eq!(model_text(&once, &TextOptions::default()), model_text(&twice, &TextOptions::default()));
}

#[test]
fn per_channel_auto_keeps_per_channel_scales_only_where_the_channels_differ() {
    // Two 1x1 convolutions: `even`'s filters share one range, `skewed`'s second filter is 100x
    // smaller than its first (as a depthwise filter after BatchNorm folding can be).
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 2, 4, 4]);
    let even = b.constant("even", Tensor::from_f32("even", &[2, 2, 1, 1], &[0.5, -0.4, -0.5, 0.45]));
    let c1 = b.node("Conv", &[x, even], &["c1"], vec![])[0];
    let r = b.node("Relu", &[c1], &["r"], vec![])[0];
    let skewed = b.constant("skewed", Tensor::from_f32("skewed", &[2, 2, 1, 1], &[0.9, -0.7, 0.009, -0.006]));
    let y = b.node("Conv", &[r, skewed], &["y"], vec![])[0];
    b.output(y);
    let model = b.finish();
    let data = random(&[1, 2, 4, 4], 4);
    let scales = |m: &Model, w: &str| m.graph.value_by_name(&format!("{w}_s")).and_then(|s| m.graph.constant(s)).map(|t| t.numel());
    let granular = |g: Granularity| QuantizeStatic::new(Params { method: Method::Minmax, per_channel: g, ..Params::default() });
    let (auto, _) = quantize(&model, &granular(Granularity::Auto), &data, ("x", &[1, 2, 4, 4]));
    assert_eq!(scales(&auto, "even"), Some(1), "equal ranges: one scale");
    assert_eq!(scales(&auto, "skewed"), Some(2), "ranges 100x apart: one scale per filter");
    let (all, _) = quantize(&model, &granular(Granularity::PerChannel), &data, ("x", &[1, 2, 4, 4]));
    assert_eq!((scales(&all, "even"), scales(&all, "skewed")), (Some(2), Some(2)));
    let (none, _) = quantize(&model, &granular(Granularity::PerTensor), &data, ("x", &[1, 2, 4, 4]));
    assert_eq!((scales(&none, "even"), scales(&none, "skewed")), (Some(1), Some(1)));
    // The small filter keeps its precision only with its own scale.
    let out = |m: &Model| {
        let runnable = load_model(&whittle_graph::encode_for_runtime(m), &[("x".into(), vec![1, 2, 4, 4])]).unwrap();
        runnable.run(&data.sample(0).unwrap()).unwrap().remove(0).as_slice().unwrap().to_vec()
    };
    let (float, auto_out, tensor_out) = (out(&model), out(&auto), out(&none));
    let err = |o: &[f32]| (16..32).map(|i| (o[i] - float[i]).abs()).fold(0f32, f32::max);
    assert!(err(&auto_out) * 10.0 < err(&tensor_out), "small filter: {} (auto) vs {} (per tensor)", err(&auto_out), err(&tensor_out));
}

#[test]
fn per_channel_is_written_true_false_or_auto() {
    let parse = |v: serde_json::Value| serde_json::from_value::<Params>(serde_json::json!({ "per_channel": v })).map(|p| p.per_channel);
    assert_eq!(parse(serde_json::json!(true)).unwrap(), Granularity::PerChannel);
    assert_eq!(parse(serde_json::json!(false)).unwrap(), Granularity::PerTensor);
    assert_eq!(parse(serde_json::json!("auto")).unwrap(), Granularity::Auto);
    let e = parse(serde_json::json!("sometimes")).unwrap_err().to_string();
    assert!(e.contains("true, false or auto"), "{e}");
}

#[test]
fn the_weight_only_fallback_keeps_every_weight_int8_and_takes_activations_back() {
    use whittle_passes::quantize_static::FallbackKeep;
    let mut model = layers();
    infer_shapes(&mut model, &InferOptions { input_shapes: vec![("x".into(), vec![1, 2, 4, 4])] }).unwrap();
    let data = random(&[1, 2, 4, 4], 4);
    // A threshold no INT8 model meets: the fallback runs every round and keeps the best.
    let spec = VerifySpec { min_sqnr_db: Some(500.0), ..VerifySpec::default() };
    let measure =
        TractMeasure::new(&data, vec![("x".into(), vec![1, 2, 4, 4])], &model, &spec, CompareOptions::default(), None, "d".into());
    let run = |keep: FallbackKeep| {
        let params = Params { method: Method::Minmax, fallback_rounds: 2, fallback_share: 0.4, fallback_keep: keep, ..Params::default() };
        let mut after = model.clone();
        let report = QuantizeStatic::new(params).run(&mut after, &PassContext::with_measure(&measure as &dyn Measure)).unwrap();
        (after, report)
    };
    let g_of = |m: &Model, layer: &str| {
        let g = &m.graph;
        let n = g.node(g.value(g.value_by_name(layer).unwrap()).producer().unwrap()).unwrap();
        let from_dq = |slot: usize| {
            n.input(slot).and_then(|v| g.value(v).producer()).and_then(|p| g.node(p)).is_some_and(|p| p.is("DequantizeLinear"))
        };
        (from_dq(0), from_dq(1))
    };
    let (weights, report) = run(FallbackKeep::Weights);
    let notes = format!("{:?} {:?}", report.notes, report.declined);
    assert!(notes.contains("activations kept in float (weights int8)"), "{notes}");
    let layers = ["c", "g", "y"];
    assert!(layers.iter().all(|l| g_of(&weights, l).1), "every weight stays int8: {notes}");
    assert!(layers.iter().any(|l| !g_of(&weights, l).0), "some layer reads float activations: {notes}");
    let (float, _) = run(FallbackKeep::Float);
    assert!(layers.iter().any(|l| !g_of(&float, l).1), "the float fallback takes weights back too");
    let size = |m: &Model| whittle_graph::encode_for_runtime(m).len();
    assert!(size(&weights) < size(&float), "{} bytes against {}", size(&weights), size(&float));
    // Computed as written: tract runs it.
    let sqnr = measure.fidelity(&weights).unwrap().min_sqnr_db;
    assert!(sqnr > 25.0, "{sqnr:.1} dB");
}

#[test]
fn the_tensor_fallback_takes_back_the_worst_activation_only() {
    use whittle_passes::quantize_static::FallbackUnit;
    // x -> c1 (1x1, its output channel 0 fifty times the others) -> c2 (reading channel 0 through
    // weights fifty times smaller) -> y: one per-tensor range for c1's output starves channels
    // 1-3, and keeping that one tensor float recovers them.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 2, 4, 4]);
    let mut w1 = weights(8, 71);
    w1[0] *= 50.0;
    w1[1] *= 50.0;
    let w1 = b.constant("w1", Tensor::from_f32("w1", &[4, 2, 1, 1], &w1));
    let y1 = b.node("Conv", &[x, w1], &["y1"], vec![])[0];
    let mut w2 = weights(12, 72);
    for o in 0..3 {
        w2[o * 4] /= 50.0;
    }
    let w2 = b.constant("w2", Tensor::from_f32("w2", &[3, 4, 1, 1], &w2));
    let y = b.node("Conv", &[y1, w2], &["y"], vec![])[0];
    b.output(y);
    let mut model = b.finish();
    infer_shapes(&mut model, &InferOptions { input_shapes: vec![("x".into(), vec![1, 2, 4, 4])] }).unwrap();
    let data = random(&[1, 2, 4, 4], 4);
    let spec = VerifySpec { min_sqnr_db: Some(500.0), ..VerifySpec::default() };
    let measure =
        TractMeasure::new(&data, vec![("x".into(), vec![1, 2, 4, 4])], &model, &spec, CompareOptions::default(), None, "d".into());
    let run = |rounds: usize| {
        let params = Params { method: Method::Minmax, fallback_rounds: rounds, fallback_unit: FallbackUnit::Tensor, ..Params::default() };
        let mut after = model.clone();
        let report = QuantizeStatic::new(params).run(&mut after, &PassContext::with_measure(&measure as &dyn Measure)).unwrap();
        (after, report)
    };
    let (plain, _) = run(0);
    let (fallback, report) = run(1);
    let notes = format!("{:?} {:?}", report.notes, report.declined);
    let kept: Vec<&str> = report.declined.iter().filter(|d| d.reason.contains("QDQ pair taken back")).map(|d| d.node.as_str()).collect();
    assert_eq!(kept, ["y1 (output `y1`)"], "{notes}");
    let g = &fallback.graph;
    let reads_dq = |node: &str, slot: usize| {
        let n = g.node(g.value(g.value_by_name(node).unwrap()).producer().unwrap()).unwrap();
        n.input(slot).and_then(|v| g.value(v).producer()).and_then(|p| g.node(p)).is_some_and(|p| p.is("DequantizeLinear"))
    };
    assert!(reads_dq("y1", 0) && !reads_dq("y", 0), "only c2's input is float: {notes}");
    assert!(reads_dq("y1", 1) && reads_dq("y", 1), "every weight stays int8: {notes}");
    let size = |m: &Model| whittle_graph::encode_for_runtime(m).len();
    assert!(size(&fallback) <= size(&plain), "{} bytes against {}", size(&fallback), size(&plain));
    let (before, after) = (measure.fidelity(&plain).unwrap().min_sqnr_db, measure.fidelity(&fallback).unwrap().min_sqnr_db);
    assert!(after > before + 5.0, "{before:.1} dB -> {after:.1} dB");
}

fn smooth() -> SmoothQuant {
    SmoothQuant::new(smooth_quant::Params::default())
}

/// A transformer block's input side: `x[1, 6, 8]` -> a LayerNorm decomposed as exporters write
/// it (ReduceMean, Sub, Mul by gamma, Add beta) whose gamma has one outlier channel (x30, the
/// projections' weight rows for it 30x smaller, as in trained models) -> two projections reading
/// the normalized value (MatMul + bias Add each). `residual`: the normalized
/// value is also added back to the first projection's output, which smoothing must decline.
fn projections(residual: bool) -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 6, 8]);
    let mean = b.node("ReduceMean", &[x], &["mean"], vec![attr_ints("axes", &[-1])])[0];
    let centered = b.node("Sub", &[x, mean], &["centered"], vec![])[0];
    let mut gamma = weights(8, 31);
    gamma[3] = 30.0;
    let gamma = b.constant("gamma", Tensor::from_f32("gamma", &[8], &gamma));
    let beta = constant(&mut b, "beta", &[8], 32);
    let scaled = b.node("Mul", &[centered, gamma], &["scaled"], vec![])[0];
    let normed = b.node("Add", &[scaled, beta], &["normed"], vec![])[0];
    let width: usize = if residual { 8 } else { 5 };
    for (name, seed) in [("q", 33), ("k", 35)] {
        let mut w = weights(8 * width, seed);
        w[3 * width..4 * width].iter_mut().for_each(|v| *v /= 30.0);
        let w = b.constant(&format!("w{name}"), Tensor::from_f32("", &[8, width as i64], &w));
        let bias = constant(&mut b, &format!("b{name}"), &[width as i64], seed + 1);
        let mm = b.node("MatMul", &[normed, w], &[&format!("{name}_mm")], vec![])[0];
        let mut y = b.node("Add", &[mm, bias], &[name], vec![])[0];
        if residual && name == "q" {
            y = b.node("Add", &[y, normed], &["residual"], vec![])[0];
        }
        b.output(y);
    }
    b.finish()
}

/// `x[6, 8]` -> MatMul -> Add bias -> Relu -> Gemm(transB) with a bias: smoothing folds into the
/// first MatMul's columns and bias through the Relu.
fn dense_pair() -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[6, 8]);
    let mut w1 = weights(8 * 8, 41);
    for row in 0..8 {
        w1[row * 8 + 2] *= 25.0;
    }
    let w1 = b.constant("w1", Tensor::from_f32("w1", &[8, 8], &w1));
    let b1 = constant(&mut b, "b1", &[8], 42);
    let h = b.node("MatMul", &[x, w1], &["h"], vec![])[0];
    let h = b.node("Add", &[h, b1], &["hb"], vec![])[0];
    let h = b.node("Relu", &[h], &["hr"], vec![])[0];
    let w2 = constant(&mut b, "w2", &[4, 8], 43);
    let b2 = constant(&mut b, "b2", &[4], 44);
    let y = b.node("Gemm", &[h, w2, b2], &["y"], vec![attr_int("transB", 1)])[0];
    b.output(y);
    b.finish()
}

/// Opset 17's LayerNormalization with one outlier channel in its scale -> a MatMul.
fn layer_norm_projection() -> Model {
    let mut b = GraphBuilder::new(17);
    let x = b.input("x", DataType::Float, &[1, 6, 8]);
    let mut scale = weights(8, 61);
    scale[5] = 40.0;
    let scale = b.constant("ln_scale", Tensor::from_f32("ln_scale", &[8], &scale));
    let bias = constant(&mut b, "ln_bias", &[8], 62);
    let normed = b.node("LayerNormalization", &[x, scale, bias], &["normed"], vec![attr_int("axis", -1)])[0];
    let mut w = weights(8 * 4, 63);
    w[5 * 4..6 * 4].iter_mut().for_each(|v| *v /= 40.0);
    let w = b.constant("w", Tensor::from_f32("w", &[8, 4], &w));
    let y = b.node("MatMul", &[normed, w], &["y"], vec![])[0];
    b.output(y);
    b.finish()
}

#[test]
fn smooth_quant_is_exact_in_float_and_helps_int8() {
    let cases = [
        (projections(false), ("x", &[1i64, 6, 8][..])),
        (dense_pair(), ("x", &[6i64, 8][..])),
        (layer_norm_projection(), ("x", &[1i64, 6, 8][..])),
    ];
    for (k, (model, input)) in cases.into_iter().enumerate() {
        let dims: Vec<usize> = input.1.iter().map(|&d| d as usize).collect();
        let (calibration, evaluation) = (
            random(&dims, 16),
            InputSet::random(&[("x".to_string(), dims.clone())], 8, Distribution::Normal { mean: 0.0, std: 1.0 }, 11).unwrap(),
        );
        let (smoothed, diff, report) = run_on_data(&model, &smooth(), &calibration, input, "smoothed");
        // dense_pair's first MatMul reads the graph input: nothing to fold its scale into.
        assert!(report.declined.iter().all(|d| d.reason.contains("graph input")), "{:?}", report.declined);
        assert_eq!(report.applied, 1, "{:?}", report.changes);
        assert!(report.changes[0].contains("folded into"), "{:?}", report.changes);
        whittle_tests::numeric::assert_same_outputs(&model, &smoothed, input, 1e-5);
        // A second run finds every channel already balanced.
        let (_, again, second) = run_on_data(&smoothed, &smooth(), &calibration, input, "smoothed");
        assert_eq!(second.applied, 0, "{:?}\n{again}", second.changes);
        // INT8 (per-tensor activations, per-channel weights) of the smoothed model loses far less
        // than of the original.
        let (q_plain, _) = quantize(&model, &minmax(), &calibration, input);
        let (q_smooth, _) = quantize(&smoothed, &minmax(), &calibration, input);
        let (plain, better) = (sqnr_db(&model, &q_plain, input, &evaluation), sqnr_db(&model, &q_smooth, input, &evaluation));
        eprintln!("INT8 SQNR {plain:.1} dB without smoothing, {better:.1} dB with");
        assert!(better > plain + 6.0, "INT8 SQNR {plain:.1} dB without smoothing, {better:.1} dB with\n{diff}");
        if k == 0 {
            insta::assert_snapshot!("smooth_quant_projections", diff);
        }
    }
}

#[test]
fn smooth_quant_chained_sites_are_exact_and_settle() {
    // x -> MatMul -> Div by d -> Sub from c -> LeakyRelu -> X1 -> Gemm(transB, bias) -> Relu -> X2
    // -> Gemm (bias C) -> y. X1's scale folds into d (multiplied) and c (divided) through the
    // LeakyRelu; X2's into the first Gemm's rows of W and its bias, whose input side is X1's
    // site: a second run must find every scale at 1.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[6, 8]);
    let w0 = constant(&mut b, "w0", &[8, 8], 81);
    let p = b.node("MatMul", &[x, w0], &["p"], vec![])[0];
    let d: Vec<f32> = weights(8, 82).iter().map(|v| 0.05 + v.abs()).collect();
    let d = b.constant("d", Tensor::from_f32("d", &[8], &d));
    let q = b.node("Div", &[p, d], &["q"], vec![])[0];
    let c = constant(&mut b, "c", &[1, 8], 83);
    let r = b.node("Sub", &[c, q], &["r"], vec![])[0];
    let x1 = b.node("LeakyRelu", &[r], &["x1"], vec![attr_float("alpha", 0.1)])[0];
    let w1 = constant(&mut b, "w1", &[8, 8], 84);
    let b1 = constant(&mut b, "b1", &[8], 85);
    let g1 = b.node("Gemm", &[x1, w1, b1], &["g1"], vec![attr_int("transB", 1)])[0];
    let x2 = b.node("Relu", &[g1], &["x2"], vec![])[0];
    let w2 = constant(&mut b, "w2", &[8, 4], 86);
    let b2 = constant(&mut b, "b2", &[4], 87);
    let y = b.node("Gemm", &[x2, w2, b2], &["y"], vec![attr_float("beta", 0.5)])[0];
    b.output(y);
    let model = b.finish();
    let input = ("x", &[6i64, 8][..]);
    let data = random(&[6, 8], 8);
    let (smoothed, diff, report) = run_on_data(&model, &smooth(), &data, input, "smoothed");
    assert_eq!(report.applied, 2, "{:?}\n{diff}", report.changes);
    assert!(report.declined.iter().all(|d| d.reason.contains("graph input")), "{:?}", report.declined);
    whittle_tests::numeric::assert_same_outputs(&model, &smoothed, input, 1e-5);
    let (_, again, second) = run_on_data(&smoothed, &smooth(), &data, input, "smoothed");
    assert_eq!(second.applied, 0, "{:?}\n{again}", second.changes);
}

#[test]
fn smooth_quant_declines_what_it_cannot_fold() {
    // The normalized value also feeds a residual Add: both projections declined, model unchanged.
    let model = projections(true);
    let data = random(&[1, 6, 8], 4);
    let (_, diff, report) = run_on_data(&model, &smooth(), &data, ("x", &[1, 6, 8]), "smoothed");
    assert_eq!(report.applied, 0, "{diff}");
    assert_eq!(report.declined.len(), 2, "{:?}", report.declined);
    assert!(report.declined.iter().all(|d| d.reason.contains("also read by Add")), "{:?}", report.declined);
    assert!(diff.is_empty(), "{diff}");
    // A MatMul straight on the graph input: nothing before it to absorb the scale.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[6, 8]);
    let w = constant(&mut b, "w", &[8, 3], 51);
    let y = b.node("MatMul", &[x, w], &["y"], vec![])[0];
    b.output(y);
    let (_, _, report) = run_on_data(&b.finish(), &smooth(), &random(&[6, 8], 2), ("x", &[6, 8]), "smoothed");
    assert_eq!(report.declined.len(), 1, "{:?}", report.declined);
    assert!(report.declined[0].reason.contains("graph input"), "{:?}", report.declined);
}
