//! `separable_conv` on graphs built in code: the rewrite as an insta snapshot, exactness at full
//! rank (strides, pads, dilations, 1-D), declines, a VGG-style stack of 3×3 convolutions (MACs
//! and fidelity), and the least-squares refit judged on data it was not fitted on.

use whittle_graph::builder::{GraphBuilder, attr_int, attr_ints};
use whittle_graph::shape::infer::{InferOptions, infer_shapes};
use whittle_graph::stats::model_stats;
use whittle_graph::text::{TensorDigest, TextOptions, diff_text, model_text};
use whittle_graph::{DataType, Model};
use whittle_passes::measure::{Fidelity, LatencyComparison, Measure, MeasureError, Sink};
use whittle_passes::pass::PassDef;
use whittle_passes::separable_conv::{Layout, Params, RankRule, SeparableConv};
use whittle_passes::{Pass, PassContext, PassReport};
use whittle_runner::data::{Distribution, InputSet};
use whittle_runner::pipeline::VerifySpec;
use whittle_runner::run::measure::TractMeasure;
use whittle_runner::verify::CompareOptions;

use whittle_tests::numeric::{assert_same_outputs, constant, sqnr_db};

fn text(m: &Model) -> String {
    model_text(m, &TextOptions { tensors: TensorDigest::Stats, ..Default::default() })
}

fn shaped(model: &Model, input: (&str, &[i64])) -> Model {
    let mut m = model.clone();
    infer_shapes(&mut m, &InferOptions { input_shapes: vec![(input.0.to_string(), input.1.to_vec())] }).unwrap();
    m
}

fn random(input: (&str, &[i64]), samples: usize, seed: u64) -> InputSet {
    let shape: Vec<usize> = input.1.iter().map(|&d| d as usize).collect();
    InputSet::random(&[(input.0.to_string(), shape)], samples, Distribution::Normal { mean: 0.0, std: 1.0 }, seed).unwrap()
}

/// Runs the pass with `params` (calibration `data` measured by tract when given).
fn separate(model: &Model, params: Params, input: (&str, &[i64]), data: Option<&InputSet>) -> (Model, PassReport) {
    let before = shaped(model, input);
    let mut after = before.clone();
    let pass = SeparableConv::new(params);
    let spec = VerifySpec::default();
    let report = match data {
        Some(data) => {
            let shapes = vec![(input.0.to_string(), input.1.iter().map(|&d| d as usize).collect())];
            let measure = TractMeasure::new(data, shapes, &before, &spec, CompareOptions::default(), None, data.origin().to_string());
            pass.run(&mut after, &PassContext::with_measure(&measure as &dyn Measure)).unwrap()
        }
        None => pass.run(&mut after, &PassContext::default()).unwrap(),
    };
    let issues = whittle_graph::validate::validate(&after);
    assert!(issues.is_empty(), "invalid after the rewrite: {issues:?}");
    (shaped(&after, input), report)
}

fn fixed(rank: usize) -> Params {
    Params { rank: RankRule::Fixed(rank), max_macs_ratio: 10.0, ..Params::default() }
}

/// x -> Conv 3x3 (4 -> 6, bias, pads 1) -> Relu -> y.
fn one_conv() -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4, 6, 6]);
    let w = constant(&mut b, "w", &[6, 4, 3, 3], 1);
    let bias = constant(&mut b, "b", &[6], 2);
    let c = b.node("Conv", &[x, w, bias], &["c"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    let y = b.node("Relu", &[c], &["y"], vec![])[0];
    b.output(y);
    b.finish()
}

#[test]
fn separable_conv_rewrite() {
    let model = one_conv();
    let input = ("x", &[1, 4, 6, 6][..]);
    let (after, report) = separate(&model, Params { rank: RankRule::Fixed(1), ..Params::default() }, input, None);
    assert_eq!(report.applied, 1, "{report:?}");
    assert!(report.changes[0].contains("rank 1 of 6") && report.changes[0].contains("MACs 0.28x"), "{:?}", report.changes);
    insta::assert_snapshot!(diff_text(&text(&shaped(&model, input)), &text(&after), "before", "after"));
}

#[test]
fn separable_conv_rewrite_at_rank_2_repeats_the_input_channels() {
    // Rank 2: the input's 4 channels concatenated twice feed a depthwise Conv with 8 groups
    // (channel r·4 + i is component r of input channel i), then the pointwise Conv.
    let model = one_conv();
    let input = ("x", &[1, 4, 6, 6][..]);
    let (after, report) = separate(&model, fixed(2), input, None);
    assert_eq!(report.applied, 1, "{report:?}");
    insta::assert_snapshot!(diff_text(&text(&shaped(&model, input)), &text(&after), "before", "after"));
    let (multiplier, _) = separate(&model, Params { layout: Layout::Multiplier, ..fixed(2) }, input, None);
    let data = random(input, 2, 3);
    let (a, b) = (sqnr_db(&model, &after, input, &data), sqnr_db(&model, &multiplier, input, &data));
    assert!((a - b).abs() < 1e-3, "both layouts compute the same rank-2 approximation: {a} vs {b} dB");
}

#[test]
fn separable_conv_is_exact_at_full_rank() {
    // Strides, asymmetric pads, dilations, no bias; then a 1-D convolution; then the graph output
    // produced by the rewritten Conv keeps its name.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2, 5, 11, 9]);
    let w1 = constant(&mut b, "w1", &[7, 5, 3, 3], 1);
    let attrs = vec![attr_ints("strides", &[2, 1]), attr_ints("pads", &[1, 0, 2, 1]), attr_ints("dilations", &[1, 2])];
    let c1 = b.node("Conv", &[x, w1], &["c1"], attrs)[0];
    let w2 = constant(&mut b, "w2", &[3, 7, 2, 2], 2);
    let bias2 = constant(&mut b, "b2", &[3], 3);
    let y = b.node("Conv", &[c1, w2, bias2], &["y"], vec![attr_ints("kernel_shape", &[2, 2])])[0];
    b.output(y);
    let model = b.finish();
    let input = ("x", &[2, 5, 11, 9][..]);
    for layout in [Layout::Replicated, Layout::Multiplier] {
        let (after, report) = separate(&model, Params { layout, ..fixed(99) }, input, None);
        assert_eq!(report.applied, 2, "{report:?}");
        assert!(report.changes[0].contains("rank 7 of 7") && report.changes[0].contains("weight error 0.0%"), "{:?}", report.changes);
        assert!(report.changes[1].contains("rank 3 of 3"), "{:?}", report.changes);
        assert_same_outputs(&model, &after, input, 1e-5);
        assert!(after.graph.value_by_name("y").is_some_and(|v| after.graph.is_graph_output(v)));
        // Replicated: the input repeated 7 times feeds a Conv with one group per channel.
        let concats = after.graph.node_ids().iter().filter(|&&n| after.graph.node(n).unwrap().op_type() == "Concat").count();
        assert_eq!(concats, if layout == Layout::Replicated { 2 } else { 0 }, "{layout:?}");
    }

    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 20]);
    let w = constant(&mut b, "w", &[8, 3, 5], 4);
    let y = b.node("Conv", &[x, w], &["y"], vec![attr_ints("pads", &[2, 2])])[0];
    b.output(y);
    let conv1d = b.finish();
    let (after, report) = separate(&conv1d, fixed(5), ("x", &[1, 3, 20]), None);
    assert_eq!(report.applied, 1, "{report:?}");
    assert_same_outputs(&conv1d, &after, ("x", &[1, 3, 20]), 1e-5);
}

#[test]
fn separable_conv_declines_what_it_cannot_rewrite_and_skips_what_is_already_separable() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4, 8, 8]);
    let pads = || attr_ints("pads", &[1, 1, 1, 1]);
    let grouped_w = constant(&mut b, "gw", &[4, 2, 3, 3], 1);
    let grouped = b.node("Conv", &[x, grouped_w], &["grouped"], vec![pads(), attr_int("group", 2)])[0];
    let dw_w = constant(&mut b, "dw", &[4, 1, 3, 3], 2);
    let dw = b.node("Conv", &[grouped, dw_w], &["dw"], vec![pads(), attr_int("group", 4)])[0];
    let pw_w = constant(&mut b, "pw", &[4, 4, 1, 1], 3);
    let pw = b.node("Conv", &[dw, pw_w], &["pw"], vec![])[0];
    let shared = constant(&mut b, "shared", &[4, 4, 3, 3], 4);
    let s1 = b.node("Conv", &[pw, shared], &["s1"], vec![pads()])[0];
    let s2 = b.node("Conv", &[s1, shared], &["s2"], vec![pads()])[0];
    // Full rank (9 components for 4 outputs: rank 4) costs more MACs than the Conv: declined.
    let costly_w = constant(&mut b, "cw", &[4, 4, 3, 3], 5);
    let y = b.node("Conv", &[s2, costly_w], &["y"], vec![pads()])[0];
    b.output(y);
    let model = b.finish();
    let (after, report) = separate(&model, Params { rank: RankRule::Energy(1.0), ..Params::default() }, ("x", &[1, 4, 8, 8]), None);
    assert_eq!(report.applied, 0, "{report:?}");
    let reasons: Vec<(&str, &str)> = report.declined.iter().map(|d| (d.node.as_str(), d.reason.as_str())).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].1.contains("grouped convolution (group 2)"), "{reasons:?}");
    assert!(reasons[1].1.contains("shared") && reasons[2].1.contains("shared"), "{reasons:?}");
    assert!(reasons[3].1.contains("rank 4 of 4") && reasons[3].1.contains("max_macs_ratio"), "{reasons:?}");
    assert_eq!(text(&after), text(&shaped(&model, ("x", &[1, 4, 8, 8]))));
}

#[test]
fn separable_conv_rejects_out_of_range_rank_rules() {
    let mut m = shaped(&one_conv(), ("x", &[1, 4, 6, 6]));
    let err = SeparableConv::new(Params { rank: RankRule::Energy(1.5), ..Params::default() }).run(&mut m, &PassContext::default());
    assert!(err.is_err_and(|e| e.unsupported_model && e.message.contains("out of range")));
    let err = SeparableConv::new(Params { refit: true, ..Params::default() }).run(&mut m, &PassContext::default());
    assert!(err.is_err_and(|e| e.message.contains("calibration data")));
}

/// The VGG-style stack of the tests: `x[1, 3, 32, 32]` -> four 3×3 Convs (3 -> 16 -> 32 -> 32 -> 64).
fn vgg_stack(structured: bool) -> Model {
    whittle_tests::numeric::vgg_stack(&[3, 16, 32, 32, 64], 32, structured, None)
}

#[test]
fn separable_conv_halves_the_macs_of_a_vgg_stack_at_30_db() {
    let input = ("x", &[1, 3, 32, 32][..]);
    let model = shaped(&vgg_stack(true), input);
    let (after, report) = separate(&model, Params { rank: RankRule::Energy(0.999), ..Params::default() }, input, None);
    assert_eq!(report.applied, 4, "{report:?}");
    let (before_macs, after_macs) = (model_stats(&model).total_macs, model_stats(&after).total_macs);
    assert!(after_macs * 2 <= before_macs, "MACs {before_macs} -> {after_macs}: {:?}", report.changes);
    let sqnr = sqnr_db(&model, &after, input, &random(input, 4, 9));
    assert!(sqnr >= 30.0, "SQNR {sqnr:.1} dB: {:?}", report.changes);
    eprintln!("VGG stack: MACs {before_macs} -> {after_macs}, SQNR {sqnr:.1} dB");
}

#[test]
fn separable_conv_refit_lowers_the_output_error_on_unseen_data() {
    // Random filters have no low-rank structure: rank 2 of 9 loses much, and the refit recovers
    // part of it, judged on evaluation inputs the refit never saw.
    let input = ("x", &[1, 3, 32, 32][..]);
    let model = shaped(&vgg_stack(false), input);
    let (calibration, evaluation) = (random(input, 8, 1), random(input, 4, 2));
    let params = Params { rank: RankRule::Fixed(2), ..Params::default() };
    let (plain, _) = separate(&model, params.clone(), input, None);
    let (refit, report) = separate(&model, Params { refit: true, ..params }, input, Some(&calibration));
    assert_eq!(report.applied, 4, "{report:?}");
    // Each layer's own output error drops on the calibration data (the first layer's input, the
    // image, is white noise, where the SVD is already optimal: no worse there).
    for change in &report.changes {
        let snr: Vec<f64> =
            change.rsplit("SNR ").next().unwrap().trim_end_matches(" dB").split(" -> ").map(|s| s.parse().unwrap()).collect();
        assert!(snr[1] >= snr[0] - 0.01, "{change}");
    }
    let (plain_db, refit_db) = (sqnr_db(&model, &plain, input, &evaluation), sqnr_db(&model, &refit, input, &evaluation));
    assert!(refit_db > plain_db + 1.0, "evaluation SQNR {plain_db:.1} dB without the refit, {refit_db:.1} dB with it");
    eprintln!("refit: evaluation SQNR {plain_db:.1} -> {refit_db:.1} dB; {:?}", report.changes);
}

/// Times layers by a rule instead of a clock: a rewrite is "faster" unless its layer reads the
/// 3-channel image (the decision logic, without the machine's noise; the real timing is in bench/).
struct RuleTimer;

impl Measure for RuleTimer {
    fn samples(&self) -> usize {
        0
    }
    fn stream(&self, _: &Model, _: &[String], _: &mut Sink<'_>) -> Result<(), MeasureError> {
        Err(MeasureError("no data".into()))
    }
    fn fidelity(&self, _: &Model) -> Result<Fidelity, MeasureError> {
        Err(MeasureError("no data".into()))
    }
    fn data_fingerprint(&self) -> String {
        String::new()
    }
    fn latency(&self, baseline: &Model, candidate: &Model, runs: usize) -> Result<LatencyComparison, MeasureError> {
        let g = &baseline.graph;
        let input = g.inputs().next().unwrap();
        let channels = g.value(input).shape.as_ref().and_then(|s| s.concrete()).unwrap()[1];
        assert!(candidate.graph.node_ids().len() >= 2, "the candidate is the rewrite");
        let ratio = if channels == 3 { 1.3 } else { 0.5 };
        Ok(LatencyComparison { runs, baseline_ms: 1.0, candidate_ms: ratio, ratio, ci95: (ratio - 0.1, ratio + 0.1) })
    }
}

#[test]
fn separable_conv_latency_check_keeps_only_rewrites_measured_faster() {
    let input = ("x", &[1, 3, 32, 32][..]);
    let model = shaped(&vgg_stack(true), input);
    let mut after = model.clone();
    let params = Params { rank: RankRule::Energy(0.999), latency_check: true, ..Params::default() };
    let report = SeparableConv::new(params.clone()).run(&mut after, &PassContext::with_measure(&RuleTimer)).unwrap();
    assert_eq!(report.applied, 3, "{report:?}");
    assert!(report.changes.iter().all(|c| c.contains("latency 1.000 -> 0.500 ms")), "{:?}", report.changes);
    assert_eq!(report.declined.len(), 1, "{report:?}");
    let why = format!("{:?}", report.declined[0]);
    assert!(why.contains("conv0") && why.contains("not measured faster in tract") && why.contains("1.30x"), "{why}");
    // Without a runner to time layers, the check is an error, not a silent no-op.
    let err = SeparableConv::new(params).run(&mut model.clone(), &PassContext::default());
    assert!(err.is_err_and(|e| e.message.contains("latency_check")));
}

#[test]
fn separable_conv_latency_check_times_layers_with_tract() {
    // The real timer: each of the four layers is rewritten with its measured figures, or declined
    // with them (which depends on the machine; the figures are in the README's benchmark).
    let input = ("x", &[1, 3, 32, 32][..]);
    let model = shaped(&vgg_stack(true), input);
    let params = Params { rank: RankRule::Energy(0.999), latency_check: true, latency_runs: 4, ..Params::default() };
    let (_, report) = separate(&model, params, input, Some(&random(input, 1, 1)));
    assert_eq!(report.applied + report.declined.len(), 4, "{report:?}");
    for change in &report.changes {
        assert!(change.contains(" ms (") && change.contains("4 runs"), "{change}");
    }
    for declined in &report.declined {
        assert!(format!("{declined:?}").contains("not measured faster in tract: latency"), "{declined:?}");
    }
}
