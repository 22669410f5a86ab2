//! `prune_channels` and its dependency groups on blocks built in code: insta snapshots of the
//! groups (residual Add, Concat, depthwise Conv, squeeze-excitation, Flatten into Gemm, grouped
//! Conv, ConvTranspose, Split, a channel shuffle declined), and the numeric check that removing
//! channels whose weights are exactly zero leaves every output unchanged (tract).

use whittle_graph::builder::{GraphBuilder, attr_int, attr_ints};
use whittle_graph::shape::infer::{InferOptions, infer_shapes};
use whittle_graph::{DataType, Model, Tensor, ValueId};
use whittle_passes::channel_groups::analyze;
use whittle_passes::pass::PassDef;
use whittle_passes::prune_channels::{Params, PruneChannels};
use whittle_passes::{Pass, PassContext, PassReport};

use whittle_tests::numeric::{assert_same_outputs, weights};

/// A weight of `dims` with pseudo-random values, and zeros at index `zero_out` along axis 0
/// (filters) and `zero_in` along axis 1 (input channels).
fn weight(b: &mut GraphBuilder, name: &str, dims: &[i64], seed: u64, zero_out: &[usize], zero_in: &[usize]) -> ValueId {
    let n = dims.iter().product::<i64>() as usize;
    let mut w = weights(n, seed);
    let inner: usize = dims[2..].iter().product::<i64>() as usize;
    let c_in = dims.get(1).copied().unwrap_or(1) as usize;
    for (e, v) in w.iter_mut().enumerate() {
        let (o, i) = (e / (c_in * inner), (e / inner) % c_in);
        if zero_out.contains(&o) || zero_in.contains(&i) {
            *v = 0.0;
        }
    }
    b.constant(name, Tensor::from_f32(name, dims, &w))
}

/// A bias of `n` values, zero at `zero`.
fn bias(b: &mut GraphBuilder, name: &str, n: usize, seed: u64, zero: &[usize]) -> ValueId {
    let v: Vec<f32> = weights(n, seed).iter().enumerate().map(|(i, x)| if zero.contains(&i) { 0.0 } else { *x }).collect();
    b.constant(name, Tensor::from_f32(name, &[n as i64], &v))
}

fn conv(b: &mut GraphBuilder, x: ValueId, w: ValueId, bias: ValueId, name: &str, group: i64, pads: i64) -> ValueId {
    b.node("Conv", &[x, w, bias], &[name], vec![attr_int("group", group), attr_ints("pads", &[pads; 4])])[0]
}

/// x[1,4,8,8] -> conv_a (8, 3x3) -> Relu -> depthwise 3x3 -> Relu -> squeeze-excitation (GAP,
/// 1x1 8->4, Relu, 1x1 4->8, Sigmoid, Mul) -> Add with the conv_a branch (residual) -> Concat with
/// conv_b (6) -> conv_c 1x1 (14->4) -> GAP -> Flatten -> Gemm (4->3) -> y.
///
/// Zeros planted so the least important channels of each group are exactly zero where they
/// are read: conv_a's {1, 6} (and the depthwise filters and SE outputs of those channels), conv_b's
/// {0, 3}, the SE squeeze's {2}, conv_c's {3}.
fn blocks() -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4, 8, 8]);
    let (wa, ba) = (weight(&mut b, "wa", &[8, 4, 3, 3], 1, &[1, 6], &[]), bias(&mut b, "ba", 8, 2, &[1, 6]));
    let a = conv(&mut b, x, wa, ba, "conv_a", 1, 1);
    let ra = b.node("Relu", &[a], &["relu_a"], vec![])[0];
    let (wd, bd) = (weight(&mut b, "wd", &[8, 1, 3, 3], 3, &[1, 6], &[]), bias(&mut b, "bd", 8, 4, &[1, 6]));
    let d = conv(&mut b, ra, wd, bd, "dw", 8, 1);
    let rd = b.node("Relu", &[d], &["relu_d"], vec![])[0];
    let pool = b.node("GlobalAveragePool", &[rd], &["se_pool"], vec![])[0];
    let (w1, b1) = (weight(&mut b, "ws1", &[4, 8, 1, 1], 5, &[2], &[1, 6]), bias(&mut b, "bs1", 4, 6, &[2]));
    let s1 = conv(&mut b, pool, w1, b1, "se_squeeze", 1, 0);
    let rs = b.node("Relu", &[s1], &["se_relu"], vec![])[0];
    let (w2, b2) = (weight(&mut b, "ws2", &[8, 4, 1, 1], 7, &[1, 6], &[2]), bias(&mut b, "bs2", 8, 8, &[1, 6]));
    let s2 = conv(&mut b, rs, w2, b2, "se_excite", 1, 0);
    let sig = b.node("Sigmoid", &[s2], &["se_gate"], vec![])[0];
    let m = b.node("Mul", &[rd, sig], &["se_mul"], vec![])[0];
    let add = b.node("Add", &[m, ra], &["residual"], vec![])[0];
    let (wb, bb) = (weight(&mut b, "wb", &[6, 8, 3, 3], 9, &[0, 3], &[1, 6]), bias(&mut b, "bb", 6, 10, &[0, 3]));
    let cb = conv(&mut b, add, wb, bb, "conv_b", 1, 1);
    let cat = b.node("Concat", &[add, cb], &["cat"], vec![attr_int("axis", 1)])[0];
    let (wc, bc) = (weight(&mut b, "wc", &[4, 14, 1, 1], 11, &[3], &[1, 6, 8, 11]), bias(&mut b, "bc", 4, 12, &[3]));
    let cc = conv(&mut b, cat, wc, bc, "conv_c", 1, 0);
    let gap = b.node("GlobalAveragePool", &[cc], &["gap"], vec![])[0];
    let flat = b.node("Flatten", &[gap], &["flat"], vec![])[0];
    let mut wg = weights(12, 13);
    wg[3 * 3..].iter_mut().for_each(|v| *v = 0.0); // row 3 of B[4, 3]: what conv_c's channel 3 feeds
    let wg = b.constant("wg", Tensor::from_f32("wg", &[4, 3], &wg));
    let bg = bias(&mut b, "bg", 3, 14, &[]);
    let y = b.node("Gemm", &[flat, wg, bg], &["y"], vec![])[0];
    b.output(y);
    shaped(b.finish(), &[1, 4, 8, 8])
}

/// x[1,4,6,6] -> grouped conv (group 2, 4 -> 8) -> channel shuffle (Reshape [1,2,4,6,6],
/// Transpose, Reshape back) -> conv 1x1 -> Split (3, 5) -> ConvTranspose of the first part (3 -> 2,
/// stride 2) and a 1x1 conv of the second, outputs y1, y2.
fn more_blocks() -> Model {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[1, 4, 6, 6]);
    let (wg, bg) = (weight(&mut b, "wg", &[8, 2, 3, 3], 1, &[], &[]), bias(&mut b, "bg", 8, 2, &[]));
    let g = conv(&mut b, x, wg, bg, "grouped", 2, 1);
    let s1 = b.constant("s1", Tensor::from_i64("s1", &[5], &[1, 2, 4, 6, 6]));
    let r1 = b.node("Reshape", &[g, s1], &["shuffle_split"], vec![])[0];
    let t = b.node("Transpose", &[r1], &["shuffle_t"], vec![attr_ints("perm", &[0, 2, 1, 3, 4])])[0];
    let s2 = b.constant("s2", Tensor::from_i64("s2", &[4], &[1, 8, 6, 6]));
    let r2 = b.node("Reshape", &[t, s2], &["shuffle_merge"], vec![])[0];
    let (w1, b1) = (weight(&mut b, "w1", &[8, 8, 1, 1], 3, &[], &[]), bias(&mut b, "b1", 8, 4, &[]));
    let c1 = conv(&mut b, r2, w1, b1, "pointwise", 1, 0);
    let split = b.constant("split", Tensor::from_i64("split", &[2], &[3, 5]));
    let parts = b.node("Split", &[c1, split], &["part_a", "part_b"], vec![attr_int("axis", 1)]);
    let (wt, bt) = (weight(&mut b, "wt", &[3, 2, 2, 2], 5, &[], &[]), bias(&mut b, "bt", 2, 6, &[]));
    let y1 = b.node("ConvTranspose", &[parts[0], wt, bt], &["y1"], vec![attr_ints("strides", &[2, 2])])[0];
    let (wp, bp) = (weight(&mut b, "wp", &[2, 5, 1, 1], 7, &[], &[]), bias(&mut b, "bp", 2, 8, &[]));
    let y2 = conv(&mut b, parts[1], wp, bp, "y2", 1, 0);
    b.output(y1);
    b.output(y2);
    shaped(b.finish(), &[1, 4, 6, 6])
}

fn shaped(mut m: Model, input: &[i64]) -> Model {
    infer_shapes(&mut m, &InferOptions { input_shapes: vec![("x".into(), input.to_vec())] }).unwrap();
    m
}

fn prune(model: &Model, params: Params, input: &[i64]) -> (Model, PassReport) {
    let mut after = model.clone();
    let report = PruneChannels::new(params).run(&mut after, &PassContext::default()).unwrap();
    let issues = whittle_graph::validate::validate(&after);
    assert!(issues.is_empty(), "invalid after pruning: {issues:?}");
    (shaped(after, input), report)
}

#[test]
fn groups_of_residual_concat_depthwise_se_and_flatten_blocks() {
    let m = blocks();
    let analysis = analyze(&m.graph, 13).unwrap();
    insta::assert_snapshot!(analysis.describe_all(&m.graph));
}

#[test]
fn groups_of_grouped_shuffle_split_and_transposed_blocks() {
    let m = more_blocks();
    let analysis = analyze(&m.graph, 13).unwrap();
    insta::assert_snapshot!(analysis.describe_all(&m.graph));
}

#[test]
fn removing_channels_of_zero_weights_leaves_the_outputs_unchanged() {
    let model = blocks();
    let (after, report) = prune(&model, Params { ratio: 0.25, ..Params::default() }, &[1, 4, 8, 8]);
    insta::assert_snapshot!(report.changes.join("\n"));
    let stats = |m: &Model| whittle_graph::stats::model_stats(m);
    let (before, now) = (stats(&model), stats(&after));
    assert!(now.parameters < before.parameters && now.total_macs < before.total_macs, "{} -> {} params", before.parameters, now.parameters);
    // Every planted channel went, and only those: the outputs are the same.
    assert_same_outputs(&model, &after, ("x", &[1, 4, 8, 8]), 1e-5);
    let dims = |name: &str| after.graph.constant(after.graph.value_by_name(name).unwrap()).unwrap().dims().to_vec();
    assert_eq!(dims("wa"), [6, 4, 3, 3]);
    assert_eq!(dims("wd"), [6, 1, 3, 3], "the depthwise conv lost the same channels");
    assert_eq!(dims("wc"), [3, 10, 1, 1], "conv_c reads 6 + 4 concatenated channels");
    assert_eq!(dims("wg"), [3, 3], "the Gemm lost conv_c's channel 3");
    // A grouped conv loses whole groups; the shuffle blocks its group; Split sizes follow.
    let more = more_blocks();
    let (after, report) = prune(&more, Params { ratio: 0.4, ..Params::default() }, &[1, 4, 6, 6]);
    assert!(report.declined.iter().any(|d| d.reason.contains("splits the channel axis")), "{report:?}");
    let (outputs_before, outputs_after) = (whittle_graph::stats::model_stats(&more), whittle_graph::stats::model_stats(&after));
    assert!(outputs_after.parameters < outputs_before.parameters);
    // Lossy here (no zeros planted): it still runs, with the outputs' shapes.
    let outs = whittle_tests::numeric::outputs(&more, &after, ("x", &[1, 4, 6, 6]));
    assert!(outs.iter().all(|(a, b)| a.shape() == b.shape()));
}

/// x[1,4,8,8] -> conv_a (8; filters 0 and 4 zero) -> Relu -> Slice of channels 2..7 -> conv_b
/// (5 -> 4; its input 2, conv_a's channel 4, zero) -> y. Slice bounds as inputs (opset 13) or
/// attributes (opset 9).
fn sliced(opset: i64) -> Model {
    let mut b = GraphBuilder::new(opset);
    let x = b.input("x", DataType::Float, &[1, 4, 8, 8]);
    let (wa, ba) = (weight(&mut b, "wa", &[8, 4, 3, 3], 51, &[0, 4], &[]), bias(&mut b, "ba", 8, 52, &[0, 4]));
    let a = conv(&mut b, x, wa, ba, "conv_a", 1, 1);
    let ra = b.node("Relu", &[a], &["relu_a"], vec![])[0];
    let sl = if opset >= 10 {
        let starts = b.constant("starts", Tensor::from_i64("starts", &[1], &[2]));
        let ends = b.constant("ends", Tensor::from_i64("ends", &[1], &[7]));
        let axes = b.constant("axes", Tensor::from_i64("axes", &[1], &[1]));
        b.node("Slice", &[ra, starts, ends, axes], &["slice"], vec![])[0]
    } else {
        b.node("Slice", &[ra], &["slice"], vec![attr_ints("starts", &[2]), attr_ints("ends", &[7]), attr_ints("axes", &[1])])[0]
    };
    let (wb, bb) = (weight(&mut b, "wb", &[4, 5, 3, 3], 53, &[], &[2]), bias(&mut b, "bb", 4, 54, &[]));
    let y = conv(&mut b, sl, wb, bb, "y", 1, 1);
    b.output(y);
    shaped(b.finish(), &[1, 4, 8, 8])
}

#[test]
fn a_slice_along_the_channels_is_followed_and_its_bounds_rewritten() {
    let m = sliced(13);
    insta::assert_snapshot!(analyze(&m.graph, 13).unwrap().describe_all(&m.graph));
    for opset in [13, 9] {
        let model = sliced(opset);
        let (after, report) = prune(&model, Params { ratio: 0.25, ..Params::default() }, &[1, 4, 8, 8]);
        assert!(report.declined.is_empty(), "opset {opset}: {report:?}");
        // Channel 0 (outside the range) and channel 4 (inside) went: the outputs are the same.
        assert_same_outputs(&model, &after, ("x", &[1, 4, 8, 8]), 1e-5);
        let g = &after.graph;
        let dims = |name: &str| g.constant(g.value_by_name(name).unwrap()).unwrap().dims().to_vec();
        assert_eq!((dims("wa"), dims("wb")), (vec![6, 4, 3, 3], vec![4, 4, 3, 3]), "opset {opset}");
        let slice = g.node(g.value(g.value_by_name("slice").unwrap()).producer().unwrap()).unwrap();
        let bounds = if opset >= 10 {
            let c = |k: usize| g.constant(slice.input(k).unwrap()).unwrap().to_i64().unwrap()[0];
            (c(1), c(2))
        } else {
            (slice.attr_ints("starts").unwrap()[0], slice.attr_ints("ends").unwrap()[0])
        };
        assert_eq!(bounds, (1, 5), "opset {opset}: kept 1,2,3,5,6,7 of which 2,3,5,6 in the range");
    }
}

mod reconstructed {
    //! `reconstruct: true`: the layers reading pruned channels refit on the pruned model's inputs,
    //! chosen on calibration samples, judged on other samples.

    use super::*;
    use whittle_passes::measure::Measure;
    use whittle_runner::data::{Distribution, InputSet};
    use whittle_runner::pipeline::VerifySpec;
    use whittle_runner::run::measure::TractMeasure;
    use whittle_runner::verify::CompareOptions;

    const X: &[i64] = &[1, 8, 12, 12];

    fn data(samples: usize, seed: u64) -> InputSet {
        InputSet::random(&[("x".into(), vec![1, 8, 12, 12])], samples, Distribution::Normal { mean: 0.0, std: 1.0 }, seed).unwrap()
    }

    fn measure<'a>(data: &'a InputSet, model: &Model, spec: &'a VerifySpec) -> TractMeasure<'a> {
        TractMeasure::new(
            data,
            vec![("x".into(), vec![1, 8, 12, 12])],
            model,
            spec,
            CompareOptions::default(),
            None,
            data.origin().to_string(),
        )
    }

    fn run(model: &Model, params: Params, calibration: &InputSet) -> (Model, PassReport) {
        let spec = VerifySpec::default();
        let m = measure(calibration, model, &spec);
        let mut after = model.clone();
        let report = PruneChannels::new(params).run(&mut after, &PassContext::with_measure(&m as &dyn Measure)).unwrap();
        assert!(whittle_graph::validate::validate(&after).is_empty());
        (shaped(after, X), report)
    }

    /// x[1,8,12,12] -> conv_a (8 -> 24; half its filters 1000x weaker) -> Relu -> conv_b
    /// (24 -> 24) -> Relu -> conv_c (24 -> 8) -> y: conv_a's group loses half its channels for
    /// almost nothing, conv_b's loses signal with every channel.
    fn robust_then_fragile() -> Model {
        let mut b = GraphBuilder::new(13);
        let x = b.input("x", DataType::Float, &[1, 8, 12, 12]);
        let mut wa = weights(24 * 8 * 9, 21);
        wa[..12 * 8 * 9].iter_mut().for_each(|v| *v *= 1e-3);
        let wa = b.constant("wa", Tensor::from_f32("wa", &[24, 8, 3, 3], &wa));
        let ba = bias(&mut b, "ba", 24, 22, &(0..12).collect::<Vec<_>>());
        let a = conv(&mut b, x, wa, ba, "conv_a", 1, 1);
        let ra = b.node("Relu", &[a], &["relu_a"], vec![])[0];
        let (wb, bb) = (weight(&mut b, "wb", &[24, 24, 3, 3], 23, &[], &[]), bias(&mut b, "bb", 24, 24, &[]));
        let c = conv(&mut b, ra, wb, bb, "conv_b", 1, 1);
        let rb = b.node("Relu", &[c], &["relu_b"], vec![])[0];
        let (wc, bc) = (weight(&mut b, "wc", &[8, 24, 3, 3], 25, &[], &[]), bias(&mut b, "bc", 8, 26, &[]));
        let y = conv(&mut b, rb, wc, bc, "y", 1, 1);
        b.output(y);
        shaped(b.finish(), X)
    }

    #[test]
    fn sensitivity_allocation_prunes_the_robust_group_first() {
        let model = robust_then_fragile();
        let (calibration, evaluation) = (data(8, 3), data(8, 4));
        let (uniform, _) = run(&model, Params { ratio: 0.25, ..Params::default() }, &calibration);
        let params = Params { ratio: 0.25, scope: whittle_passes::prune_channels::Scope::Sensitivity, ..Params::default() };
        let (allocated, report) = run(&model, params, &calibration);
        let count = |m: &Model| whittle_graph::stats::model_stats(m).parameters;
        assert!(count(&allocated).abs_diff(count(&uniform)) * 10 < count(&model), "about the same number of channels go");
        let spec = VerifySpec::default();
        let judge = measure(&evaluation, &model, &spec);
        let (u, a) = (judge.fidelity(&uniform).unwrap().min_sqnr_db, judge.fidelity(&allocated).unwrap().min_sqnr_db);
        assert!(a > u + 6.0, "sensitivity {a:.1} dB against uniform {u:.1} dB: {:?}", report.notes);
        let dims = |m: &Model, n: &str| m.graph.constant(m.graph.value_by_name(n).unwrap()).unwrap().dims().to_vec();
        assert!(
            dims(&allocated, "wa")[0] <= 14 && dims(&allocated, "wb")[0] >= 22,
            "{:?} {:?}",
            dims(&allocated, "wa"),
            dims(&allocated, "wb")
        );
    }

    #[test]
    fn a_global_ranking_takes_the_weakest_channels_wherever_they_are() {
        let model = robust_then_fragile();
        let params = Params { ratio: 0.25, scope: whittle_passes::prune_channels::Scope::Global, ..Params::default() };
        let (pruned, report) = run(&model, params, &data(2, 3));
        let dims = |n: &str| pruned.graph.constant(pruned.graph.value_by_name(n).unwrap()).unwrap().dims().to_vec();
        // 12 of the 48 prunable channels: conv_a's 12 filters 1000x weaker, none of conv_b's.
        assert_eq!((dims("wa")[0], dims("wb")[0]), (12, 24), "{:?}", report.changes);
        assert_eq!(dims("wb")[1], 12, "conv_b reads what conv_a keeps");
    }

    #[test]
    fn the_refit_lowers_the_error_of_a_pruned_conv_stack() {
        // Three 3x3 convolutions (8 -> 24 -> 24 -> 8) with low-rank filters, Relus between them.
        let model = shaped(whittle_tests::numeric::vgg_stack(&[8, 24, 24, 8], 12, true, None), X);
        let (calibration, evaluation) = (data(16, 1), data(8, 2));
        let params = Params { ratio: 0.4, ..Params::default() };
        let (plain, _) = run(&model, params.clone(), &calibration);
        let (refit, report) = run(&model, Params { reconstruct: true, ..params }, &calibration);
        let spec = VerifySpec::default();
        let judge = measure(&evaluation, &model, &spec);
        let (before, after) = (judge.fidelity(&plain).unwrap().min_sqnr_db, judge.fidelity(&refit).unwrap().min_sqnr_db);
        assert!(after > before + 3.0, "SQNR {before:.1} dB without the refit, {after:.1} dB with it: {:?}", report.notes);
        assert!(report.notes.iter().any(|n| n.contains("refit, output SNR")), "{:?}", report.notes);
        // The same shapes either way: the refit changes values, not the pruning.
        let dims = |m: &Model, n: &str| m.graph.constant(m.graph.value_by_name(n).unwrap()).unwrap().dims().to_vec();
        assert_eq!(dims(&plain, "w1"), dims(&refit, "w1"));
    }

    /// x[1,8,12,12] -> conv_a (8 -> 16) -> Relu -> conv_b (16 -> 8) -> y, where conv_a's
    /// channels 0..8 have the largest weights but a bias of -1000: Relu kills them on any input.
    /// They are what data-driven importance must remove first; weight norms keep them.
    fn dead_channels() -> Model {
        let mut b = GraphBuilder::new(13);
        let x = b.input("x", DataType::Float, &[1, 8, 12, 12]);
        let mut wa = weights(16 * 8 * 9, 31);
        wa[..8 * 8 * 9].iter_mut().for_each(|v| *v *= 3.0);
        let wa = b.constant("wa", Tensor::from_f32("wa", &[16, 8, 3, 3], &wa));
        let ba: Vec<f32> = (0..16).map(|i| if i < 8 { -1000.0 } else { 0.1 }).collect();
        let ba = b.constant("ba", Tensor::from_f32("ba", &[16], &ba));
        let a = conv(&mut b, x, wa, ba, "conv_a", 1, 1);
        let ra = b.node("Relu", &[a], &["relu_a"], vec![])[0];
        let (wb, bb) = (weight(&mut b, "wb", &[8, 16, 3, 3], 32, &[], &[]), bias(&mut b, "bb", 8, 33, &[]));
        let y = conv(&mut b, ra, wb, bb, "y", 1, 1);
        b.output(y);
        shaped(b.finish(), X)
    }

    #[test]
    fn data_driven_importance_removes_the_dead_channels_that_weight_norms_keep() {
        use whittle_passes::prune_channels::Importance;
        let model = dead_channels();
        let (calibration, evaluation) = (data(4, 5), data(4, 6));
        let spec = VerifySpec::default();
        let judge = measure(&evaluation, &model, &spec);
        let sqnr = |importance: Importance| {
            let (pruned, report) = run(&model, Params { ratio: 0.5, importance, ..Params::default() }, &calibration);
            let dims = pruned.graph.constant(pruned.graph.value_by_name("wa").unwrap()).unwrap().dims().to_vec();
            assert_eq!(dims[0], 8, "{importance:?}: {:?}", report.changes);
            judge.fidelity(&pruned).unwrap().min_sqnr_db
        };
        let l2 = sqnr(Importance::L2);
        assert!(l2 < 10.0, "the L2 norm removes the live channels: {l2:.1} dB");
        for importance in [Importance::Activation, Importance::OutputError] {
            let s = sqnr(importance);
            assert!(s > 80.0, "{importance:?} removes the dead channels, exactly: {s:.1} dB");
        }
    }

    #[test]
    fn the_measured_output_error_of_removing_a_channel_is_what_removing_it_does() {
        // A strided, padded 3x3 Conv with a bias: the output energy each input channel accounts
        // for, as measured, against zeroing that channel's weights and running the model.
        let mut b = GraphBuilder::new(13);
        let x = b.input("x", DataType::Float, &[1, 8, 12, 12]);
        let (w, bias_v) = (weight(&mut b, "w", &[6, 8, 3, 3], 41, &[], &[]), bias(&mut b, "b", 6, 42, &[]));
        let y = b.node("Conv", &[x, w, bias_v], &["y"], vec![attr_ints("strides", &[2, 2]), attr_ints("pads", &[1, 1, 1, 1])])[0];
        b.output(y);
        let model = shaped(b.finish(), X);
        let calibration = data(3, 7);
        let spec = VerifySpec::default();
        let m = measure(&calibration, &model, &spec);
        let g = &model.graph;
        let node = g.value(g.value_by_name("y").unwrap()).producer().unwrap();
        let t = g.constant(g.value_by_name("w").unwrap()).unwrap();
        let (dims, values) = (t.dims().to_vec(), t.to_f32().unwrap());
        let energy = whittle_passes::reconstruct::input_channel_output_energy(&model, &[(node, &dims, &values)], &m, 1 << 20).unwrap();
        let energy = energy.into_iter().next().unwrap().unwrap();
        assert_eq!(energy.len(), 8);
        let outputs = |model: &Model| {
            let mut all = Vec::new();
            m.stream(model, &["y".to_string()], &mut |_, v| {
                all.push(v[0].clone());
                Ok(())
            })
            .unwrap();
            all
        };
        let reference = outputs(&model);
        let rows = (reference.len() * 6 * 6) as f64; // output pixels of every sample
        for (c, e) in energy.iter().enumerate() {
            let mut without = model.clone();
            let mut zeroed = values.clone();
            zeroed.iter_mut().enumerate().filter(|(i, _)| (i / 9) % 8 == c).for_each(|(_, v)| *v = 0.0);
            let wid = without.graph.value_by_name("w").unwrap();
            let mut patch = whittle_graph::patch::Patch::new("zero one input channel");
            patch.replace_constant(wid, Tensor::from_f32("w", &dims, &zeroed), node);
            patch.apply(&mut without.graph);
            let brute: f64 = reference
                .iter()
                .zip(outputs(&without))
                .map(|(a, b)| a.iter().zip(b.iter()).map(|(p, q)| ((p - q) as f64).powi(2)).sum::<f64>())
                .sum::<f64>()
                / rows;
            assert!((e - brute).abs() <= 1e-3 * brute, "channel {c}: measured {e}, by removal {brute}");
        }
    }
}
