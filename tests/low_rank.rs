//! `low_rank` on graphs built in code: the MatMul and Gemm rewrites as insta snapshots,
//! exactness at full rank (batched activations, Gemm's transA/transB/alpha/beta/C, an opset-9
//! Gemm), declines, and a layer with low-rank structure (MACs and fidelity).

use whittle_graph::builder::{GraphBuilder, attr_float, attr_int};
use whittle_graph::shape::infer::{InferOptions, infer_shapes};
use whittle_graph::stats::model_stats;
use whittle_graph::text::{TensorDigest, TextOptions, diff_text, model_text};
use whittle_graph::{DataType, Model, Tensor};
use whittle_passes::low_rank::{LowRank, Params};
use whittle_passes::pass::PassDef;
use whittle_passes::rank::RankRule;
use whittle_passes::{Pass, PassContext, PassReport};
use whittle_runner::data::{Distribution, InputSet};

use whittle_tests::numeric::{assert_same_outputs, constant, sqnr_db, weights};

fn text(m: &Model) -> String {
    model_text(m, &TextOptions { tensors: TensorDigest::Stats, ..Default::default() })
}

fn shaped(model: &Model, input: (&str, &[i64])) -> Model {
    let mut m = model.clone();
    infer_shapes(&mut m, &InferOptions { input_shapes: vec![(input.0.to_string(), input.1.to_vec())] }).unwrap();
    m
}

fn factor(model: &Model, params: Params, input: (&str, &[i64])) -> (Model, PassReport) {
    let mut after = shaped(model, input);
    let report = LowRank::new(params).run(&mut after, &PassContext::default()).unwrap();
    let issues = whittle_graph::validate::validate(&after);
    assert!(issues.is_empty(), "invalid after the rewrite: {issues:?}");
    (shaped(&after, input), report)
}

fn full_rank() -> Params {
    Params { rank: RankRule::Energy(1.0), max_macs_ratio: 10.0, ..Params::default() }
}

/// `W[K, N] = L[K, r]·R[r, N]` plus noise `noise` times its scale.
fn low_rank_weight(k: usize, n: usize, r: usize, noise: f32, seed: u64) -> Vec<f32> {
    let (l, rt, e) = (weights(k * r, seed), weights(r * n, seed + 1), weights(k * n, seed + 2));
    (0..k * n).map(|idx| (0..r).map(|q| l[(idx / n) * r + q] * rt[q * n + idx % n]).sum::<f32>() + noise * e[idx]).collect()
}

/// x[4, 16] -> MatMul(W[16, 12]) -> Relu -> Gemm(W2, transB, alpha 0.5, beta 2, C[10]), both
/// weights of rank 2.
fn dense_pair(opset: i64) -> Model {
    let mut b = GraphBuilder::new(opset);
    let x = b.input("x", DataType::Float, &[4, 16]);
    let w = b.constant("w", Tensor::from_f32("w", &[16, 12], &low_rank_weight(16, 12, 2, 0.0, 1)));
    let h = b.node("MatMul", &[x, w], &["h"], vec![])[0];
    let r = b.node("Relu", &[h], &["r"], vec![])[0];
    // transB: the stored weight is [N, K] = [10, 12].
    let w2 = b.constant("w2", Tensor::from_f32("w2", &[10, 12], &low_rank_weight(10, 12, 2, 0.0, 4)));
    let c = constant(&mut b, "c", &[10], 7);
    let attrs = vec![attr_int("transB", 1), attr_float("alpha", 0.5), attr_float("beta", 2.0)];
    let y = b.node("Gemm", &[r, w2, c], &["y"], attrs)[0];
    b.output(y);
    b.finish()
}

#[test]
fn low_rank_rewrite() {
    let model = dense_pair(13);
    let input = ("x", &[4, 16][..]);
    let (after, report) = factor(&model, Params { rank: RankRule::Fixed(2), ..Params::default() }, input);
    assert_eq!(report.applied, 2, "{report:?}");
    assert!(report.changes[0].contains("rank 2 of 12") && report.changes[0].contains("MACs 0.29x"), "{:?}", report.changes);
    insta::assert_snapshot!(diff_text(&text(&shaped(&model, input)), &text(&after), "before", "after"));
    // Both weights have rank 2: the factorization is exact.
    assert_same_outputs(&model, &after, input, 1e-5);
}

#[test]
fn low_rank_is_exact_at_full_rank() {
    // Full-rank random weights, batched activations, transA, an old-opset Gemm whose C is required.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[2, 3, 8]);
    let w = constant(&mut b, "w", &[8, 6], 1);
    let y = b.node("MatMul", &[x, w], &["y"], vec![])[0];
    b.output(y);
    let batched = b.finish();
    let (after, report) = factor(&batched, full_rank(), ("x", &[2, 3, 8]));
    assert_eq!(report.applied, 1, "{report:?}");
    assert_same_outputs(&batched, &after, ("x", &[2, 3, 8]), 1e-5);

    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[7, 5]);
    let w = constant(&mut b, "w", &[7, 9], 2);
    let y = b.node("Gemm", &[x, w], &["y"], vec![attr_int("transA", 1), attr_float("alpha", -1.5)])[0];
    b.output(y);
    let trans_a = b.finish();
    let (after, report) = factor(&trans_a, full_rank(), ("x", &[7, 5]));
    assert_eq!(report.applied, 1, "{report:?}");
    assert_same_outputs(&trans_a, &after, ("x", &[7, 5]), 1e-5);

    let old = dense_pair(9);
    let (after, report) = factor(&old, full_rank(), ("x", &[4, 16]));
    assert_eq!(report.applied, 2, "{report:?}");
    assert!(text(&after).contains("y_lr_zero"), "opset 9: the first Gemm gets a zero C");
    assert_same_outputs(&old, &after, ("x", &[4, 16]), 1e-5);
}

#[test]
fn low_rank_declines_what_it_cannot_factor() {
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[4, 8]);
    let shared = constant(&mut b, "shared", &[8, 8], 1);
    let a = b.node("MatMul", &[x, shared], &["a"], vec![])[0];
    let a2 = b.node("MatMul", &[a, shared], &["a2"], vec![])[0];
    let left = constant(&mut b, "left", &[3, 4], 2);
    let l = b.node("MatMul", &[left, a2], &["l"], vec![])[0];
    let batched = constant(&mut b, "batched", &[3, 8, 8], 3);
    let bm = b.node("MatMul", &[l, batched], &["bm"], vec![])[0];
    // A full-rank square weight costs more factored than dense.
    let square = constant(&mut b, "square", &[8, 8], 4);
    let y = b.node("MatMul", &[bm, square], &["y"], vec![])[0];
    b.output(y);
    let model = b.finish();
    let (after, report) = factor(&model, Params { rank: RankRule::Energy(1.0), ..Params::default() }, ("x", &[4, 8]));
    assert_eq!(report.applied, 0, "{report:?}");
    let reasons: Vec<&str> = report.declined.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(reasons[0].contains("shared") && reasons[1].contains("shared"), "{reasons:?}");
    assert!(reasons[2].contains("left operand is a constant"), "{reasons:?}");
    assert!(reasons[3].contains("rank 3"), "{reasons:?}");
    assert!(reasons[4].contains("rank 8 of 8") && reasons[4].contains("max_macs_ratio"), "{reasons:?}");
    assert_eq!(text(&after), text(&shaped(&model, ("x", &[4, 8]))));
    let bad = LowRank::new(Params { rank: RankRule::MaxError(1.5), ..Params::default() }).run(&mut after.clone(), &PassContext::default());
    assert!(bad.is_err_and(|e| e.unsupported_model && e.message.contains("out of range")));
}

#[test]
fn low_rank_cuts_the_macs_of_a_low_rank_layer_at_30_db() {
    // A 256 -> 512 layer whose weight is rank 16 plus noise 40 dB below.
    let mut b = GraphBuilder::new(13);
    let x = b.input("x", DataType::Float, &[8, 256]);
    let w = b.constant("w", Tensor::from_f32("w", &[256, 512], &low_rank_weight(256, 512, 16, 0.04, 11)));
    let y = b.node("MatMul", &[x, w], &["y"], vec![])[0];
    b.output(y);
    let model = shaped(&b.finish(), ("x", &[8, 256]));
    let (after, report) = factor(&model, Params { rank: RankRule::Energy(0.999), ..Params::default() }, ("x", &[8, 256]));
    assert_eq!(report.applied, 1, "{report:?}");
    let (before_macs, after_macs) = (model_stats(&model).total_macs, model_stats(&after).total_macs);
    assert!(after_macs * 5 <= before_macs, "MACs {before_macs} -> {after_macs}: {:?}", report.changes);
    let data = InputSet::random(&[("x".into(), vec![8, 256])], 4, Distribution::Normal { mean: 0.0, std: 1.0 }, 5).unwrap();
    let sqnr = sqnr_db(&model, &after, ("x", &[8, 256]), &data);
    assert!(sqnr >= 30.0, "SQNR {sqnr:.1} dB: {:?}", report.changes);
    eprintln!("low rank: MACs {before_macs} -> {after_macs}, SQNR {sqnr:.1} dB, {:?}", report.changes);
}
