//! `quantize_weights`: weight-only INT8. Each weight of Conv, ConvTranspose, Gemm and MatMul
//! becomes int8 (symmetric, `[-127, 127]`, scale `max|w|/127` per output channel or per tensor)
//! read through a `DequantizeLinear`; activations and biases stay float. **Lossy** (weight
//! rounding only): about 4x smaller weights at float speed, the right choice when the runtime is
//! tract, which runs QDQ models in float anyway. Needs no calibration data. Per-channel
//! `DequantizeLinear` needs opset 13: older models are upgraded first (exactly).

use serde::{Deserialize, Serialize};
use whittle_graph::Model;

use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};
use crate::quant::plan::{self, Role};
use crate::quant::{self, Selection};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub per_channel: bool,
    /// Op types whose weights are quantized (empty: Conv, ConvTranspose, Gemm, MatMul).
    pub op_types: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Default for Params {
    fn default() -> Self {
        Params { per_channel: true, op_types: Vec::new(), include: Vec::new(), exclude: Vec::new() }
    }
}

pub struct QuantizeWeights {
    params: Params,
    selection: Selection,
}

/// The weighted layers.
pub const WEIGHT_OP_TYPES: &[&str] = &["Conv", "ConvTranspose", "Gemm", "MatMul"];

impl PassDef for QuantizeWeights {
    const NAME: &'static str = "quantize_weights";
    const SUMMARY: &'static str = "weight-only INT8: int8 weights read through DequantizeLinear, float compute";
    const EXACT: bool = false;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("per_channel", "bool", "one scale per output channel (else per tensor)"),
        ("op_types", "list", "op types whose weights are quantized (empty: Conv, ConvTranspose, Gemm, MatMul)"),
        ("include", "list", "node name patterns to quantize (empty: all)"),
        ("exclude", "list", "node name patterns or op types kept in float"),
    ];
    fn new(params: Params) -> Self {
        let selection = Selection { op_types: params.op_types.clone(), include: params.include.clone(), exclude: params.exclude.clone() };
        QuantizeWeights { params, selection }
    }
}

impl Pass for QuantizeWeights {
    fn run(&self, model: &mut Model, _ctx: &PassContext<'_>) -> Result<PassReport, PassError> {
        self.selection.check().map_err(PassError::unsupported_model)?;
        let mut report = PassReport::default();
        if self.params.per_channel
            && let Some(note) = quant::ensure_opset_13(model)?
        {
            report.notes.push(note);
        }
        let g = &mut model.graph;
        for id in crate::driver::topo_order(g)? {
            if !self.selection.selects(g, id, WEIGHT_OP_TYPES) {
                continue;
            }
            match plan::role(g, id) {
                Ok(Some(Role::Weighted { weight, axis, .. })) => {
                    let axis = if self.params.per_channel { axis } else { None };
                    let patch = quant::quantize_weight(g, id, weight, axis).map(|(p, _)| p);
                    quant::apply_or_decline(g, &mut report, id, patch);
                }
                Ok(_) => {
                    let (label, op) = (g.node_label(id), g.node(id).map(|n| n.op_type().to_string()).unwrap_or_default());
                    report.decline(label, op, "no constant float weight");
                }
                Err(why) => {
                    let (label, op) = (g.node_label(id), g.node(id).map(|n| n.op_type().to_string()).unwrap_or_default());
                    report.decline(label, op, why);
                }
            }
        }
        Ok(report)
    }
}
