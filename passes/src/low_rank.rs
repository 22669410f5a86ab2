//! `low_rank`: factors the constant weight of a dense layer (MatMul, Gemm) by truncated SVD, so one
//! `K × N` product becomes two thin ones.
//!
//! For `Y = X·W` with `W[K, N]` (MatMul's second input; Gemm's `op(B)`, i.e. `Bᵀ` when `transB`),
//! the SVD `W = U Σ Vᵀ` truncated to rank `r` gives `A = U_r √Σ_r` (`K × r`) and
//! `B = √Σ_r V_rᵀ` (`r × N`), and `Y ≈ (X·A)·B`:
//!
//! - MatMul(X, W) → MatMul(MatMul(X, A), B) (X of any rank ≥ 1, as MatMul broadcasts);
//! - Gemm(X, W, C; alpha, beta, transA, transB) → Gemm(X, A; alpha, transA) then
//!   Gemm(·, B, C; beta): `alpha·op(X)·A·B + beta·C`, the same sum (below opset 11, where Gemm's
//!   C is required, the first Gemm gets a zero C).
//!
//! MACs per output row go from `K·N` to `r·(K + N)`: a ratio `r·(K + N) / (K·N)`, so only ranks
//! below `K·N / (K + N)` save anything. The rank follows one [`RankRule`] (energy kept, weight
//! error bound, MACs budget, fixed); a layer is rewritten only where the MACs ratio is at most
//! `max_macs_ratio`, else declined with its figures. **Lossy**: the relative weight error is
//! `√(Σ_discarded σ² / Σ σ²)`, reported per layer (exact at full rank, which never pays).
//! Declines non-f32 or shared weights, batched (rank > 2) weights and a constant left operand.

use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use whittle_graph::builder::{attr_float, attr_int};
use whittle_graph::edit::OpSpec;
use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{DataType, Graph, Model, NodeId, Tensor};

use crate::linalg::truncated_svd;
use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};
use crate::quant::Selection;
use crate::rank::{MAX_MACS_RATIO_PARAM, RANK_PARAM, RankRule, cumulative_energy, weight_error};
use crate::rewrite::is_exclusive_constant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub rank: RankRule,
    /// Rewrite a layer only where its MACs ratio (after / before) is at most this.
    pub max_macs_ratio: f64,
    /// Op types to factor (empty: MatMul and Gemm).
    pub op_types: Vec<String>,
    /// Node name patterns to factor (`*`, `?`; empty: all).
    pub include: Vec<String>,
    /// Node name patterns or op types kept as they are.
    pub exclude: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params { rank: RankRule::Energy(0.95), max_macs_ratio: 0.8, op_types: Vec::new(), include: Vec::new(), exclude: Vec::new() }
    }
}

pub struct LowRank {
    params: Params,
    selection: Selection,
}

impl PassDef for LowRank {
    const NAME: &'static str = "low_rank";
    const SUMMARY: &'static str = "Factor MatMul/Gemm weights by truncated SVD into two thin products where that saves MACs";
    const EXACT: bool = false;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[
        RANK_PARAM,
        MAX_MACS_RATIO_PARAM,
        ("op_types", "list", "op types to factor (empty: MatMul, Gemm)"),
        ("include", "list", "node name patterns to factor (empty: all)"),
        ("exclude", "list", "node name patterns or op types kept as they are"),
    ];
    fn new(params: Params) -> Self {
        let selection = Selection { op_types: params.op_types.clone(), include: params.include.clone(), exclude: params.exclude.clone() };
        LowRank { params, selection }
    }
}

const DEFAULT_OPS: [&str; 2] = ["MatMul", "Gemm"];

/// One layer's factors at its chosen rank.
struct Factored {
    node: NodeId,
    /// `K × r` and `r × N`.
    left: DMatrix<f64>,
    right: DMatrix<f64>,
    full_rank: usize,
    weight_error: f64,
    macs_ratio: f64,
}

/// Relative MACs of the two products at rank `r`: `r·(K + N) / (K·N)`.
fn macs_ratio(r: usize, k: usize, n: usize) -> f64 {
    (r * (k + n)) as f64 / (k * n) as f64
}

impl LowRank {
    /// The factorization of one layer, or why it is not rewritten.
    fn factor(&self, g: &Graph, id: NodeId) -> Result<Factored, String> {
        let n = g.node(id).ok_or("removed")?;
        let (Some(x), Some(w)) = (n.input(0), n.input(1)) else { return Err("missing an operand".into()) };
        if g.constant(x).is_some() {
            return Err("its left operand is a constant (only X·W with a constant W is factored)".into());
        }
        let Some(wt) = g.constant(w) else { return Err("its weight is not a constant".into()) };
        if wt.dtype() != DataType::Float {
            return Err(format!("its weight is {}, only f32 is factored", wt.dtype()));
        }
        if wt.dims().len() != 2 {
            return Err(format!("its weight has rank {} (only 2-D weights are factored)", wt.dims().len()));
        }
        if !is_exclusive_constant(g, w, id) {
            return Err("its weight is shared with another node".into());
        }
        let trans_b = n.is("Gemm") && n.attr_int("transB").unwrap_or(0) != 0;
        let (rows, cols) = (wt.dims()[0] as usize, wt.dims()[1] as usize);
        let values = wt.to_f32().map_err(|e| e.to_string())?;
        // W as used: K × N.
        let (k, out) = if trans_b { (cols, rows) } else { (rows, cols) };
        let m = DMatrix::from_fn(k, out, |i, j| if trans_b { values[j * cols + i] } else { values[i * cols + j] } as f64);
        let (u, sigma, vt) = truncated_svd(&m);
        let energy = cumulative_energy(&sigma.iter().map(|s| s * s).collect::<Vec<_>>()).ok_or("its weight is all zeros")?;
        let rank = self.params.rank.choose(&energy, |r| macs_ratio(r, k, out))?;
        let ratio = macs_ratio(rank, k, out);
        let error = weight_error(&energy, rank);
        if ratio > self.params.max_macs_ratio {
            return Err(format!(
                "rank {rank} of {} (weight error {:.1}%) would cost {ratio:.2}x the MACs, above max_macs_ratio {}",
                sigma.len(),
                100.0 * error,
                self.params.max_macs_ratio
            ));
        }
        let root: Vec<f64> = sigma[..rank].iter().map(|s| s.sqrt()).collect();
        let left = DMatrix::from_fn(k, rank, |i, r| u[(i, r)] * root[r]);
        let right = DMatrix::from_fn(rank, out, |r, j| root[r] * vt[(r, j)]);
        Ok(Factored { node: id, left, right, full_rank: sigma.len(), weight_error: error, macs_ratio: ratio })
    }

    /// The patch replacing the layer by its two thin products.
    fn rewrite(&self, model: &Model, f: &Factored) -> Patch {
        let g = &model.graph;
        let n = g.node(f.node).expect("planned on this graph");
        let (label, order) = (g.node_label(f.node), n.order);
        let output = n.output(0).expect("a MatMul/Gemm has an output");
        let rank = f.left.ncols();
        let mut change =
            format!("{label}: rank {rank} of {}, weight error {:.1}%, MACs {:.2}x", f.full_rank, 100.0 * f.weight_error, f.macs_ratio);
        if let Some(before) = whittle_graph::stats::node_macs(g, f.node) {
            change.push_str(&format!(" ({before} -> {})", (before as f64 * f.macs_ratio).round() as u64));
        }
        let mut p = Patch::new(change);
        let name = &g.value(output).name;
        let tensor = |m: &DMatrix<f64>| {
            let values: Vec<f32> =
                (0..m.nrows()).flat_map(|i| (0..m.ncols()).map(move |j| (i, j))).map(|(i, j)| m[(i, j)] as f32).collect();
            Tensor::from_f32("", &[m.nrows() as i64, m.ncols() as i64], &values)
        };
        let a = p.add_constant(&format!("{name}_lr_left"), tensor(&f.left));
        let b = p.add_constant(&format!("{name}_lr_right"), tensor(&f.right));
        let x = Wire::Value(n.input(0).expect("checked"));
        let (first_out, second_out) = (format!("{name}_lr"), format!("{name}_lr_out"));
        let second = if n.is("Gemm") {
            let f32_attr = |a: &str| n.attr_float(a).unwrap_or(1.0);
            let mut first =
                OpSpec::new("Gemm", &[], &first_out).named(&format!("{label}_lr_a")).attr(attr_float("alpha", f32_attr("alpha")));
            if n.attr_int("transA").unwrap_or(0) != 0 {
                first = first.attr(attr_int("transA", 1));
            }
            let second = OpSpec::new("Gemm", &[], &second_out).named(&format!("{label}_lr_b")).attr(attr_float("beta", f32_attr("beta")));
            let mut first_inputs = vec![x, a];
            if model.opset("").unwrap_or(13) < 11 {
                first_inputs.push(p.add_constant(&format!("{name}_lr_zero"), Tensor::from_f32("", &[rank as i64], &vec![0.0; rank])));
            }
            let h = p.add_op(first, first_inputs, order);
            let mut second_inputs = vec![Wire::output(h, 0), b];
            second_inputs.extend(n.input(2).map(Wire::Value));
            p.add_op(second, second_inputs, g.order_after(order))
        } else {
            let h = p.add_op(OpSpec::new("MatMul", &[], &first_out).named(&format!("{label}_lr_a")), vec![x, a], order);
            let second = OpSpec::new("MatMul", &[], &second_out).named(&format!("{label}_lr_b"));
            p.add_op(second, vec![Wire::output(h, 0), b], g.order_after(order))
        };
        p.redirect_all(output, Wire::output(second, 0));
        p.remove_node(f.node);
        p
    }
}

impl Pass for LowRank {
    fn run(&self, model: &mut Model, _ctx: &PassContext<'_>) -> Result<PassReport, PassError> {
        self.selection.check().map_err(PassError::unsupported_model)?;
        self.params.rank.check(Self::NAME).map_err(PassError::unsupported_model)?;
        if !self.params.max_macs_ratio.is_finite() {
            return Err(PassError::unsupported_model("low_rank: max_macs_ratio must be a number"));
        }
        let mut report = PassReport::default();
        let mut layers = Vec::new();
        for id in crate::driver::topo_order(&model.graph)? {
            if !self.selection.selects(&model.graph, id, &DEFAULT_OPS) {
                continue;
            }
            match self.factor(&model.graph, id) {
                Ok(f) => layers.push(f),
                Err(why) => {
                    let op = model.graph.node(id).map(|n| n.op_type().to_string()).unwrap_or_default();
                    report.decline(model.graph.node_label(id), op, why)
                }
            }
        }
        for f in &layers {
            let patch = self.rewrite(model, f);
            match patch.check(&model.graph) {
                Ok(()) => {
                    report.record(patch.description.clone());
                    patch.apply(&mut model.graph);
                }
                Err(e) => report.decline(model.graph.node_label(f.node), "MatMul/Gemm", e.0),
            }
        }
        if report.applied > 0 {
            let worst = layers.iter().map(|f| f.weight_error).fold(0.0, f64::max);
            report.notes.push(format!("{} dense layers factored; largest relative weight error {:.1}%", report.applied, 100.0 * worst));
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_thin_ranks_save_macs() {
        // K = N = 64: rank r costs r·128/4096; break-even at r = 32.
        assert!((macs_ratio(32, 64, 64) - 1.0).abs() < 1e-12);
        assert!((macs_ratio(8, 64, 64) - 0.25).abs() < 1e-12);
    }
}
