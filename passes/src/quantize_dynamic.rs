//! `quantize_dynamic`: dynamic INT8 for MatMul and Gemm with constant weights. **Lossy.**
//!
//! `y = MatMul(x, W)` becomes
//! `(xq, sx, zx) = DynamicQuantizeLinear(x)` (uint8, range of each run's own `x`),
//! `y = Cast<float>(MatMulInteger(xq, Wq, zx)) · (sx · sW)` with `Wq` int8 symmetric per output
//! column (`sW = max|W[:, n]|/127`). Gemm (`alpha = 1`, `transA = 0`) is the same on `Bᵀ` when
//! `transB = 1`, plus `beta·C` added in float. Activations need no calibration data. Conv is not
//! quantized dynamically: on the PP-OCR recognizer that destroys every string (see the models'
//! README); use `quantize_static` for convolutions.

use serde::{Deserialize, Serialize};
use whittle_graph::builder::attr_int;
use whittle_graph::edit::OpSpec;
use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{DataType, Graph, Model, NodeId, Tensor};

use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};
use crate::quant::{self, Selection};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Op types (empty: MatMul and Gemm; nothing else is supported).
    pub op_types: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

pub struct QuantizeDynamic {
    selection: Selection,
}

impl PassDef for QuantizeDynamic {
    const NAME: &'static str = "quantize_dynamic";
    const SUMMARY: &'static str = "dynamic INT8 of MatMul/Gemm: int8 weights, activations quantized at run time (no calibration)";
    const EXACT: bool = false;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("op_types", "list", "op types (empty: MatMul, Gemm)"),
        ("include", "list", "node name patterns to quantize (empty: all)"),
        ("exclude", "list", "node name patterns or op types kept in float"),
    ];
    fn new(params: Params) -> Self {
        QuantizeDynamic { selection: Selection { op_types: params.op_types, include: params.include, exclude: params.exclude } }
    }
}

/// The rewrite of one MatMul/Gemm, or why not.
fn rewrite(g: &Graph, id: NodeId) -> Result<Patch, String> {
    let n = g.node(id).expect("live");
    let (x, w) = (n.input(0).ok_or("no input")?, n.input(1).ok_or("no weight")?);
    let wt = g.constant(w).filter(|t| t.dtype() == DataType::Float).ok_or("its weight is not a float constant")?;
    if !crate::rewrite::is_exclusive_constant(g, w, id) {
        return Err("its weight is shared with another node".into());
    }
    if g.value(x).dtype.is_some_and(|d| d != DataType::Float) {
        return Err("its input is not float".into());
    }
    let dims = wt.dims().to_vec();
    if dims.len() != 2 {
        return Err(format!("its weight has rank {} (only 2-D weights)", dims.len()));
    }
    let mut data = wt.to_f32().map_err(|e| e.to_string())?;
    let (mut k, mut cols) = (dims[0], dims[1]);
    let mut c_input = None;
    if n.is("Gemm") {
        if n.attr_int("transA").unwrap_or(0) != 0 || n.attr_float("alpha").unwrap_or(1.0) != 1.0 {
            return Err("Gemm with transA or alpha != 1".into());
        }
        if n.attr_int("transB").unwrap_or(0) != 0 {
            // W is [N, K]: store Wᵀ.
            (k, cols) = (dims[1], dims[0]);
            data = (0..(k * cols) as usize).map(|i| data[(i % cols as usize) * k as usize + i / cols as usize]).collect();
        }
        if let Some(c) = n.input(2) {
            if n.attr_float("beta").unwrap_or(1.0) != 1.0 {
                return Err("Gemm with a bias and beta != 1".into());
            }
            c_input = Some(c);
        }
    }
    let (q, scales) = quant::params::quantize_weights(&data, &[k, cols], Some(1));
    let name = g.value(w).name.clone();
    let out = n.output(0).ok_or("no output")?;
    let base = g.value(out).name.clone();
    let order = n.order;
    let mut p = Patch::new(format!("{}: dynamic INT8 ({} int8 weights, {} columns)", g.node_label(id), k * cols, cols));
    let wq = p.add_constant(&format!("{name}_q"), Tensor::from_i8(&format!("{name}_q"), &[k, cols], &q));
    let wz = p.add_constant(&format!("{name}_z"), Tensor::from_i8(&format!("{name}_z"), &[cols], &vec![0; cols as usize]));
    let ws = p.add_constant(&format!("{name}_s"), Tensor::from_f32(&format!("{name}_s"), &[cols], &scales));
    let mut dql = OpSpec::new("DynamicQuantizeLinear", &[], &format!("{base}_xq"));
    dql.outputs = vec![format!("{base}_xq"), format!("{base}_xs"), format!("{base}_xz")];
    let dq = p.add_op(dql, vec![Wire::Value(x)], order);
    let mm =
        p.add_op(OpSpec::new("MatMulInteger", &[], &format!("{base}_int")), vec![Wire::output(dq, 0), wq, Wire::output(dq, 2), wz], order);
    let cast = p.add_op(
        OpSpec::new("Cast", &[], &format!("{base}_f")).attr(attr_int("to", DataType::Float as i64)),
        vec![Wire::output(mm, 0)],
        order,
    );
    let scale = p.add_op(OpSpec::new("Mul", &[], &format!("{base}_scale")), vec![Wire::output(dq, 1), ws], order);
    let mut y = Wire::output(
        p.add_op(OpSpec::new("Mul", &[], &format!("{base}_dyn")), vec![Wire::output(cast, 0), Wire::output(scale, 0)], order),
        0,
    );
    if let Some(c) = c_input {
        y = Wire::output(p.add_op(OpSpec::new("Add", &[], &format!("{base}_bias")), vec![y, Wire::Value(c)], order), 0);
    }
    p.redirect_all(out, y);
    p.remove_node(id);
    Ok(p)
}

impl Pass for QuantizeDynamic {
    fn run(&self, model: &mut Model, _ctx: &PassContext<'_>) -> Result<PassReport, PassError> {
        self.selection.check().map_err(PassError::unsupported_model)?;
        let mut report = PassReport::default();
        if model.opset("").unwrap_or(1) < 11
            && let Some(note) = quant::ensure_opset_13(model)?
        {
            report.notes.push(note);
        }
        let g = &mut model.graph;
        for id in crate::driver::topo_order(g)? {
            if !self.selection.selects(g, id, &["MatMul", "Gemm"]) {
                continue;
            }
            let is_matmul = g.node(id).is_some_and(|n| n.is("MatMul") || n.is("Gemm"));
            let patch = if is_matmul { rewrite(g, id) } else { Err("dynamic quantization covers MatMul and Gemm only".into()) };
            quant::apply_or_decline(g, &mut report, id, patch);
        }
        Ok(report)
    }
}
