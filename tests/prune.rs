//! `prune_magnitude` on graphs built in code and on the embedded model: the rewrite as an insta
//! snapshot, exact sparsity per layer and globally (with overrides), the N:M pattern on every
//! group of Conv, Gemm (transB) and MatMul weights, declines, and the model still running in tract.

use std::collections::BTreeMap;

use whittle_graph::builder::{GraphBuilder, attr_int, attr_ints};
use whittle_graph::shape::infer::{InferOptions, infer_shapes};
use whittle_graph::text::{TensorDigest, TextOptions, diff_text, model_text};
use whittle_graph::{DataType, Model};
use whittle_passes::pass::PassDef;
use whittle_passes::prune_magnitude::{Params, Pattern, PruneMagnitude, Scope, Score};
use whittle_passes::{Pass, PassContext, PassReport};

use whittle_tests::numeric::constant;

fn shaped(model: &Model, input: (&str, &[i64])) -> Model {
    let mut m = model.clone();
    infer_shapes(&mut m, &InferOptions { input_shapes: vec![(input.0.to_string(), input.1.to_vec())] }).unwrap();
    m
}

fn prune(model: &Model, params: Params, input: (&str, &[i64])) -> (Model, PassReport) {
    let mut after = shaped(model, input);
    let report = PruneMagnitude::new(params).run(&mut after, &PassContext::default()).unwrap();
    let issues = whittle_graph::validate::validate(&after);
    assert!(issues.is_empty(), "invalid after pruning: {issues:?}");
    (after, report)
}

/// The weight of the node named `name`, with its dims.
fn weight(m: &Model, name: &str) -> (Vec<i64>, Vec<f32>) {
    let g = &m.graph;
    let id = g.node_ids().into_iter().find(|&n| g.node(n).unwrap().name() == name).unwrap_or_else(|| panic!("no node {name}"));
    let t = g.constant(g.node(id).unwrap().input(1).unwrap()).unwrap();
    (t.dims().to_vec(), t.to_f32().unwrap())
}

fn zeros(v: &[f32]) -> usize {
    v.iter().filter(|x| **x == 0.0).count()
}

/// x[1, 4, 8, 8] -> Conv 3x3 (4 -> 8) -> Relu -> Flatten -> Gemm (512 -> 16, transB) -> MatMul (16 -> 8).
fn small_net() -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4, 8, 8]);
    let w = constant(&mut b, "w", &[8, 4, 3, 3], 1);
    let c = b.node("Conv", &[x, w], &["conv"], vec![attr_ints("pads", &[1, 1, 1, 1])])[0];
    let r = b.node("Relu", &[c], &["relu"], vec![])[0];
    let f = b.node("Flatten", &[r], &["flat"], vec![])[0];
    let wg = constant(&mut b, "wg", &[16, 512], 2);
    let bg = constant(&mut b, "bg", &[16], 3);
    let gm = b.node("Gemm", &[f, wg, bg], &["gemm"], vec![attr_int("transB", 1)])[0];
    let wm = constant(&mut b, "wm", &[16, 8], 4);
    let y = b.node("MatMul", &[gm, wm], &["mm"], vec![])[0];
    b.output(y);
    b.finish()
}

const INPUT: (&str, &[i64]) = ("x", &[1, 4, 8, 8]);

fn all_sizes() -> Params {
    Params { min_size: 0, ..Params::default() }
}

#[test]
fn prune_magnitude_rewrite() {
    let model = small_net();
    let (after, report) = prune(&model, all_sizes(), INPUT);
    assert_eq!(report.applied, 3, "{report:?}");
    let text = |m: &Model| model_text(m, &TextOptions { tensors: TensorDigest::Stats, ..Default::default() });
    let diff = diff_text(&text(&shaped(&model, INPUT)), &text(&after), "before", "after");
    insta::assert_snapshot!(format!("{diff}\n{}", report.changes.join("\n")));
    assert!(report.notes[0].contains("not the dense compute"), "{:?}", report.notes);
}

#[test]
fn prune_magnitude_reaches_the_sparsity_exactly_per_layer_and_globally() {
    let model = small_net();
    for s in [0.3, 0.5, 0.9] {
        let (after, report) = prune(&model, Params { sparsity: s, ..all_sizes() }, INPUT);
        assert_eq!(report.applied, 3);
        for name in ["conv", "gemm", "mm"] {
            let (_, w) = weight(&after, name);
            assert_eq!(zeros(&w), (s * w.len() as f64).round() as usize, "{name} at {s}");
            // The zeros are the smallest magnitudes: every kept weight is at least every pruned one.
            let (_, orig) = weight(&shaped(&model, INPUT), name);
            let pruned_max = orig.iter().zip(&w).filter(|(_, p)| **p == 0.0).map(|(o, _)| o.abs()).fold(0.0, f32::max);
            let kept_min = w.iter().filter(|p| **p != 0.0).map(|p| p.abs()).fold(f32::INFINITY, f32::min);
            assert!(pruned_max <= kept_min, "{name} at {s}: pruned {pruned_max} > kept {kept_min}");
        }
    }
    // Global: one threshold over the conv and the Gemm, the count exact over that pool; the
    // MatMul's override keeps it out of the pool at its own sparsity.
    let overrides = BTreeMap::from([("mm".to_string(), 0.25)]);
    let (after, _) = prune(&model, Params { sparsity: 0.6, scope: Scope::Global, overrides, ..all_sizes() }, INPUT);
    let (conv, gemm, mm) = (weight(&after, "conv").1, weight(&after, "gemm").1, weight(&after, "mm").1);
    assert_eq!(zeros(&conv) + zeros(&gemm), (0.6 * (conv.len() + gemm.len()) as f64).round() as usize);
    assert_eq!(zeros(&mm), 32, "the override keeps its own sparsity");
    // min_size leaves small layers dense; exclude by op type.
    let (after, report) = prune(&model, Params { min_size: 300, exclude: vec!["Gemm".into()], ..Params::default() }, INPUT);
    assert_eq!(report.applied, 0, "conv has 288 weights, mm 128, the Gemm is excluded: {report:?}");
    assert_eq!(zeros(&weight(&after, "gemm").1), 0);
}

#[test]
fn n_of_m_holds_on_every_group_along_the_reduction_axis() {
    let model = small_net();
    let (after, report) = prune(&model, Params { pattern: Pattern::NOfM { n: 2, m: 4 }, ..all_sizes() }, INPUT);
    assert_eq!(report.applied, 3, "{report:?}");
    // Conv [8, 4, 3, 3]: along input channels (axis 1); Gemm [16, 512] with transB: along axis 1;
    // MatMul [16, 8]: along K, axis 0.
    for (name, axis) in [("conv", 1usize), ("gemm", 1), ("mm", 0)] {
        let (dims, w) = weight(&after, name);
        let stride: usize = dims[axis + 1..].iter().map(|&d| d as usize).product();
        let len = dims[axis] as usize;
        let mut groups = 0;
        for base in (0..w.len()).filter(|e| ((e / stride) % len).is_multiple_of(4)) {
            let nonzero = (0..4).filter(|j| w[base + j * stride] != 0.0).count();
            assert_eq!(nonzero, 2, "{name}: group at {base}");
            groups += 1;
        }
        assert_eq!(groups * 4, w.len(), "{name}: every weight is in one group");
    }
    // 3 input channels are not a multiple of 4: declined with the reason.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 3, 8, 8]);
    let w = constant(&mut b, "w", &[8, 3, 3, 3], 1);
    let y = b.node("Conv", &[x, w], &["y"], vec![])[0];
    b.output(y);
    let (_, report) = prune(&b.finish(), Params { pattern: Pattern::NOfM { n: 2, m: 4 }, ..all_sizes() }, ("x", &[1, 3, 8, 8]));
    assert_eq!(report.applied, 0);
    assert!(report.declined[0].reason.contains("not a multiple of 4"), "{report:?}");
    // An N:M pattern fixes the sparsity: a global scope is refused.
    let bad = PruneMagnitude::new(Params { pattern: Pattern::NOfM { n: 2, m: 4 }, scope: Scope::Global, ..Params::default() })
        .run(&mut shaped(&model, INPUT), &PassContext::default());
    assert!(bad.is_err_and(|e| e.unsupported_model && e.message.contains("N:M")));
}

#[test]
fn the_pruned_default_model_runs_in_tract() {
    let model = whittle_graph::load_model(&whittle_tests::testdata("ch_ppocr_mobile_v2.0_cls_infer.onnx")).unwrap();
    let input = ("x", &[1, 3, 48, 192][..]);
    for pattern in [Pattern::Unstructured, Pattern::NOfM { n: 2, m: 4 }] {
        let (after, report) = prune(&model, Params { pattern, ..Params::default() }, input);
        assert!(report.applied >= 10, "{pattern:?}: {report:?}");
        // Every output still computes (tract runs it) and differs: the pass is lossy, not broken.
        let outputs = whittle_tests::numeric::outputs(&shaped(&model, input), &after, input);
        assert!(outputs.iter().all(|(a, b)| a.shape() == b.shape() && b.iter().all(|v| v.is_finite())));
    }
}

mod measured {
    //! Sensitivity allocation and Wanda scores, measured by tract on data (the runner's
    //! measurement interface): chosen on calibration samples, judged on other samples.

    use super::*;
    use whittle_graph::Tensor;
    use whittle_passes::measure::Measure;
    use whittle_runner::data::{Distribution, InputSet};
    use whittle_runner::pipeline::VerifySpec;
    use whittle_runner::run::measure::TractMeasure;
    use whittle_runner::verify::CompareOptions;

    fn random(input: (&str, &[i64]), samples: usize, seed: u64) -> InputSet {
        let shape: Vec<usize> = input.1.iter().map(|&d| d as usize).collect();
        InputSet::random(&[(input.0.to_string(), shape)], samples, Distribution::Normal { mean: 0.0, std: 1.0 }, seed).unwrap()
    }

    fn tract<'a>(data: &'a InputSet, model: &Model, input: (&str, &[i64]), spec: &'a VerifySpec) -> TractMeasure<'a> {
        let shapes = vec![(input.0.to_string(), input.1.iter().map(|&d| d as usize).collect())];
        TractMeasure::new(data, shapes, model, spec, CompareOptions::default(), None, data.origin().to_string())
    }

    fn prune_on(model: &Model, params: Params, input: (&str, &[i64]), data: &InputSet) -> (Model, PassReport) {
        let spec = VerifySpec::default();
        let before = shaped(model, input);
        let measure = tract(data, &before, input, &spec);
        let mut after = before.clone();
        let report = PruneMagnitude::new(params).run(&mut after, &PassContext::with_measure(&measure as &dyn Measure)).unwrap();
        assert!(whittle_graph::validate::validate(&after).is_empty());
        (after, report)
    }

    /// Output SQNR of `candidate` against `original` on `data` (tract).
    fn sqnr_on(original: &Model, candidate: &Model, input: (&str, &[i64]), data: &InputSet) -> f64 {
        let spec = VerifySpec::default();
        let measure = tract(data, &shaped(original, input), input, &spec);
        measure.fidelity(candidate).unwrap().min_sqnr_db
    }

    /// x[1,8,8,8] -> Conv 3x3 8->16 (uniform weights: every weight matters) -> Relu -> Conv 3x3
    /// 16->16 (heavy-tailed weights u^5: most carry almost nothing).
    fn fragile_then_robust() -> Model {
        let mut b = GraphBuilder::new(13);
        let x = b.input("x", DataType::Float, &[1, 8, 8, 8]);
        let wa = constant(&mut b, "wa", &[16, 8, 3, 3], 11);
        let pads = || vec![attr_ints("pads", &[1, 1, 1, 1])];
        let a = b.node("Conv", &[x, wa], &["a"], pads())[0];
        let r = b.node("Relu", &[a], &["relu"], vec![])[0];
        let heavy: Vec<f32> = whittle_tests::numeric::weights(16 * 16 * 9, 12).iter().map(|u| u.powi(5)).collect();
        let wb = b.constant("wb", Tensor::from_f32("wb", &[16, 16, 3, 3], &heavy));
        let y = b.node("Conv", &[r, wb], &["b"], pads())[0];
        b.output(y);
        b.finish()
    }

    const X: (&str, &[i64]) = ("x", &[1, 8, 8, 8]);

    #[test]
    fn sensitivity_allocation_beats_uniform_at_the_same_sparsity() {
        let model = fragile_then_robust();
        let (calibration, evaluation) = (random(X, 4, 1), random(X, 4, 2));
        let sensitivity = Params { min_size: 0, sparsity: 0.5, scope: Scope::Sensitivity, ..Params::default() };
        let (allocated, report) = prune_on(&model, sensitivity, X, &calibration);
        let (uniform, _) = prune(&model, Params { min_size: 0, sparsity: 0.5, ..Params::default() }, X);
        // The same number of zeros over both layers (up to one per layer of rounding).
        let total_zeros = |m: &Model| zeros(&weight(m, "a").1) + zeros(&weight(m, "b").1);
        let target = (0.5 * (1152.0 + 2304.0)) as usize;
        assert!(total_zeros(&allocated).abs_diff(target) <= 2, "{} zeros, target {target}", total_zeros(&allocated));
        assert_eq!(total_zeros(&uniform), target);
        // The robust layer takes more of the budget, and the outputs are clearly closer, judged
        // on samples the allocation did not see.
        let (za, zb) = (zeros(&weight(&allocated, "a").1), zeros(&weight(&allocated, "b").1));
        assert!(zb > 1152 + 200 && za < 576 - 200, "{report:?}");
        let (s_alloc, s_uniform) = (sqnr_on(&model, &allocated, X, &evaluation), sqnr_on(&model, &uniform, X, &evaluation));
        assert!(s_alloc > s_uniform + 3.0, "sensitivity {s_alloc:.1} dB, uniform {s_uniform:.1} dB");
        let note = report.notes.iter().find(|n| n.starts_with("sensitivity:")).expect("a sensitivity note");
        assert!(note.contains("2 layers x 5 sparsities measured on 4 calibration samples"), "{note}");
    }

    #[test]
    fn the_sensitivity_table_is_saved_and_reused() {
        let model = fragile_then_robust();
        let calibration = random(X, 4, 1);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sens.json");
        let params = Params {
            min_size: 0,
            scope: Scope::Sensitivity,
            sensitivity_samples: 2,
            sensitivity_file: Some(file.display().to_string()),
            ..Params::default()
        };
        let (first, r1) = prune_on(&model, params.clone(), X, &calibration);
        assert!(r1.notes.iter().any(|n| n.contains("measured on 2 calibration samples")), "{:?}", r1.notes);
        let table: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(table["curves"].as_array().unwrap().len(), 2);
        assert_eq!(table["grid"], serde_json::json!([0.25, 0.5, 0.7, 0.85, 0.95]));
        let csv = std::fs::read_to_string(file.with_extension("csv")).unwrap();
        assert!(csv.starts_with("layer,weights,sqnr_db@0.25") && csv.lines().count() == 3, "{csv}");
        assert!(std::fs::read_to_string(file.with_extension("svg")).unwrap().starts_with("<svg"));
        let (second, r2) = prune_on(&model, params.clone(), X, &calibration);
        assert!(r2.notes.iter().any(|n| n.contains("reused from the saved table")), "{:?}", r2.notes);
        assert_eq!(whittle_graph::encode_for_runtime(&first), whittle_graph::encode_for_runtime(&second));
        // Another grid is another measurement: not reused, said why.
        let (_, r3) = prune_on(&model, Params { sensitivity_grid: vec![0.5, 0.9], ..params }, X, &calibration);
        assert!(r3.notes.iter().any(|n| n.contains("not reused: measured for `magnitude unstructured` on grid")), "{:?}", r3.notes);
    }

    #[test]
    fn two_of_four_by_sensitivity_takes_the_cheapest_layers_whole() {
        let model = fragile_then_robust();
        let calibration = random(X, 2, 1);
        let params =
            Params { min_size: 0, sparsity: 0.3, scope: Scope::Sensitivity, pattern: Pattern::NOfM { n: 2, m: 4 }, ..Params::default() };
        let (after, report) = prune_on(&model, params, X, &calibration);
        // b at 2:4 removes 1152 of the 3456 weights (33%): the robust layer alone reaches 30%, so
        // the fragile one stays dense.
        assert_eq!(zeros(&weight(&after, "a").1), 0, "{report:?}");
        assert_eq!(zeros(&weight(&after, "b").1), 1152);
    }

    #[test]
    fn wanda_keeps_small_weights_on_loud_inputs() {
        // x[4, 8] -> MatMul [8, 8]: input channel 0 is 10^4 times louder than the others, and its
        // row of weights 100 times smaller. Magnitude pruning drops that whole row; Wanda keeps it.
        let mut b = GraphBuilder::new(13);
        let x = b.input("x", DataType::Float, &[4, 8]);
        let mut w = whittle_tests::numeric::weights(64, 21);
        w[..8].iter_mut().for_each(|v| *v *= 0.01);
        let wv = b.constant("w", Tensor::from_f32("w", &[8, 8], &w));
        let y = b.node("MatMul", &[x, wv], &["mm"], vec![])[0];
        b.output(y);
        let model = b.finish();
        let input = ("x", &[4, 8][..]);
        let loud = |seed: u64| {
            let values = whittle_tests::numeric::weights(8 * 4 * 8, seed);
            let mut a = ndarray::ArrayD::from_shape_vec(vec![8, 4, 8], values).unwrap();
            a.index_axis_mut(ndarray::Axis(2), 0).mapv_inplace(|v| v * 1.0e4);
            InputSet::new(format!("loud({seed})"), vec![("x".into(), whittle_runner::data::Tensor::from(a))], None).unwrap()
        };
        let (calibration, evaluation) = (loud(1), loud(2));
        let params = |score| Params { min_size: 0, sparsity: 0.5, score, ..Params::default() };
        let (by_magnitude, _) = prune_on(&model, params(Score::Magnitude), input, &calibration);
        let (by_wanda, report) = prune_on(&model, params(Score::Wanda), input, &calibration);
        let row0 = |m: &Model| zeros(&weight(m, "mm").1[..8]);
        assert_eq!(row0(&by_magnitude), 8);
        assert_eq!(row0(&by_wanda), 0, "{report:?}");
        assert_eq!(zeros(&weight(&by_wanda, "mm").1), 32);
        assert!(report.notes.iter().any(|n| n.contains("Wanda")), "{:?}", report.notes);
        let (m, wa) = (sqnr_on(&model, &by_magnitude, input, &evaluation), sqnr_on(&model, &by_wanda, input, &evaluation));
        assert!(wa > m + 10.0, "wanda {wa:.1} dB, magnitude {m:.1} dB");
    }

    #[test]
    fn data_driven_settings_without_calibration_data_are_refused() {
        for params in [Params { scope: Scope::Sensitivity, ..Params::default() }, Params { score: Score::Wanda, ..Params::default() }] {
            let mut m = shaped(&fragile_then_robust(), X);
            let e = PruneMagnitude::new(Params { min_size: 0, ..params }).run(&mut m, &PassContext::default()).unwrap_err();
            assert!(e.unsupported_model && e.message.contains("needs calibration data"), "{}", e.message);
        }
    }
}

mod reconstructed {
    //! `reconstruct: true`: the kept weights refit by least squares on calibration inputs, with
    //! the mask fixed, judged on other samples.

    use super::*;
    use whittle_graph::Tensor;
    use whittle_passes::measure::Measure;
    use whittle_runner::data::InputSet;
    use whittle_runner::pipeline::VerifySpec;
    use whittle_runner::run::measure::TractMeasure;
    use whittle_runner::verify::CompareOptions;

    /// Samples of x[64, 16] whose features share a strong common component (correlated inputs:
    /// where a refit has something to gain over the pruned weights).
    fn correlated(samples: usize, seed: u64) -> InputSet {
        let u = whittle_tests::numeric::weights(samples * 64 * 16, seed);
        let x: Vec<f32> = (0..u.len()).map(|i| u[i] + 2.0 * u[i - i % 16]).collect();
        let a = ndarray::ArrayD::from_shape_vec(vec![samples, 64, 16], x).unwrap();
        InputSet::new(format!("correlated({seed})"), vec![("x".into(), whittle_runner::data::Tensor::from(a))], None).unwrap()
    }

    const X: (&str, &[i64]) = ("x", &[64, 16]);

    /// x[64, 16] -> MatMul [16, 16] -> Gemm (transB, [8, 16]).
    fn dense_net() -> Model {
        let mut b = GraphBuilder::new(13);
        let x = b.input("x", DataType::Float, &[64, 16]);
        let w1 = constant(&mut b, "w1", &[16, 16], 31);
        let h = b.node("MatMul", &[x, w1], &["mm"], vec![])[0];
        let w2 = constant(&mut b, "w2", &[8, 16], 32);
        let y = b.node("Gemm", &[h, w2], &["gemm"], vec![attr_int("transB", 1)])[0];
        b.output(y);
        b.finish()
    }

    fn run(model: &Model, params: Params, data: &InputSet) -> (Model, PassReport) {
        let spec = VerifySpec::default();
        let before = shaped(model, X);
        let shapes = vec![("x".to_string(), vec![64, 16])];
        let measure = TractMeasure::new(data, shapes, &before, &spec, CompareOptions::default(), None, data.origin().to_string());
        let mut after = before.clone();
        let report = PruneMagnitude::new(params).run(&mut after, &PassContext::with_measure(&measure as &dyn Measure)).unwrap();
        assert!(whittle_graph::validate::validate(&after).is_empty());
        (after, report)
    }

    fn sqnr(original: &Model, candidate: &Model, data: &InputSet) -> f64 {
        let spec = VerifySpec::default();
        let shapes = vec![("x".to_string(), vec![64, 16])];
        TractMeasure::new(data, shapes, &shaped(original, X), &spec, CompareOptions::default(), None, "eval".into())
            .fidelity(candidate)
            .unwrap()
            .min_sqnr_db
    }

    #[test]
    fn the_refit_keeps_the_mask_and_brings_the_outputs_closer() {
        let model = dense_net();
        let (calibration, evaluation) = (correlated(8, 1), correlated(8, 2));
        for pattern in [Pattern::Unstructured, Pattern::NOfM { n: 2, m: 4 }] {
            let params = Params { min_size: 0, pattern, ..Params::default() };
            let (plain, _) = run(&model, params.clone(), &calibration);
            let (refit, report) = run(&model, Params { reconstruct: true, ..params }, &calibration);
            for layer in ["mm", "gemm"] {
                let (a, b) = (weight(&plain, layer).1, weight(&refit, layer).1);
                let mask = |v: &[f32]| v.iter().map(|x| *x == 0.0).collect::<Vec<_>>();
                assert_eq!(mask(&a), mask(&b), "{pattern:?} {layer}: the refit moved the zeros");
                assert_ne!(a, b, "{pattern:?} {layer}: nothing refit");
            }
            for change in &report.changes {
                let snr: Vec<f64> = change
                    .split("refit output SNR ")
                    .nth(1)
                    .unwrap_or_else(|| panic!("no refit figures in `{change}`"))
                    .trim_end_matches(" dB")
                    .split(" -> ")
                    .map(|v| v.parse().unwrap())
                    .collect();
                assert!(snr[1] > snr[0] + 1.0, "{change}");
            }
            let (p, r) = (sqnr(&model, &plain, &evaluation), sqnr(&model, &refit, &evaluation));
            assert!(r > p + 1.0, "{pattern:?}: refit {r:.1} dB, pruned {p:.1} dB on held-out samples");
        }
    }

    #[test]
    fn convolutions_grouped_or_not_are_refit_through_the_unfolding_tap() {
        // x[1,8,8,8] -> Conv 3x3 8->16 (pads 1, dilation 2) -> Relu -> depthwise Conv 3x3 (group 16).
        // 32 samples x 64 pixels: far more rows than the 72 inputs of a patch (a refit on too
        // few rows fits the calibration samples, not the layer).
        let mut b = GraphBuilder::new(13);
        let x = b.input("x", DataType::Float, &[1, 8, 8, 8]);
        let wa = constant(&mut b, "wa", &[16, 8, 3, 3], 41);
        let a = b.node("Conv", &[x, wa], &["a"], vec![attr_ints("pads", &[2, 2, 2, 2]), attr_ints("dilations", &[2, 2])])[0];
        let r = b.node("Relu", &[a], &["relu"], vec![])[0];
        let wd = b.constant("wd", Tensor::from_f32("wd", &[16, 1, 3, 3], &whittle_tests::numeric::weights(144, 42)));
        let y = b.node("Conv", &[r, wd], &["dw"], vec![attr_ints("pads", &[1, 1, 1, 1]), attr_int("group", 16)])[0];
        b.output(y);
        let model = b.finish();
        let input = ("x", &[1, 8, 8, 8][..]);
        let shapes = vec![("x".to_string(), vec![1, 8, 8, 8])];
        // Channels sharing a common component (correlated inputs; white ones leave a refit
        // nothing to gain).
        let images = |samples: usize, seed: u64| {
            let u = whittle_tests::numeric::weights(samples * 512, seed);
            let x: Vec<f32> = (0..u.len()).map(|i| u[i] + 2.0 * u[i / 512 * 512 + i % 64]).collect();
            let a = ndarray::ArrayD::from_shape_vec(vec![samples, 1, 8, 8, 8], x).unwrap();
            InputSet::new(format!("images({seed})"), vec![("x".into(), whittle_runner::data::Tensor::from(a))], None).unwrap()
        };
        let data = images(32, 3);
        let spec = VerifySpec::default();
        let before = shaped(&model, input);
        let measure = TractMeasure::new(&data, shapes, &before, &spec, CompareOptions::default(), None, "random".into());
        let mut after = before.clone();
        let params = Params { min_size: 0, reconstruct: true, ..Params::default() };
        let report = PruneMagnitude::new(params).run(&mut after, &PassContext::with_measure(&measure as &dyn Measure)).unwrap();
        assert_eq!(report.applied, 2, "{report:?}");
        for change in &report.changes {
            let figures = change.split("refit output SNR ").nth(1).unwrap_or_else(|| panic!("no refit in `{change}`"));
            let snr: Vec<f64> = figures.trim_end_matches(" dB").split(" -> ").map(|v| v.parse().unwrap()).collect();
            assert!(snr[1] > snr[0], "{change}");
        }
        // Judged on other samples, the refit model is closer to the original than the pruned one.
        let mut plain = before.clone();
        PruneMagnitude::new(Params { min_size: 0, ..Params::default() }).run(&mut plain, &PassContext::default()).unwrap();
        let shapes = vec![("x".to_string(), vec![1, 8, 8, 8])];
        let held_out = images(16, 4);
        let judge = TractMeasure::new(&held_out, shapes, &before, &spec, CompareOptions::default(), None, "held out".into());
        let (p, r) = (judge.fidelity(&plain).unwrap().min_sqnr_db, judge.fidelity(&after).unwrap().min_sqnr_db);
        assert!(r > p + 0.5, "refit {r:.2} dB, pruned {p:.2} dB: {:?}", report.changes);
    }
}
