//! The IR operations of quantization, written once for every quantizing pass: a
//! `QuantizeLinear → DequantizeLinear` pair on an edge, and a constant replaced by its integer
//! form read through `DequantizeLinear`.

use whittle_graph::builder::attr_int;
use whittle_graph::edit::{OpSpec, Use};
use whittle_graph::patch::{Patch, Wire};
use whittle_graph::{Graph, OrderKey, Tensor, ValueId};

use crate::quant::params::{QParams, QType};

fn zero_point_tensor(name: &str, qtype: QType, dims: &[i64], values: &[i32]) -> Tensor {
    match qtype {
        QType::Uint8 => Tensor::from_u8(name, dims, &values.iter().map(|&v| v as u8).collect::<Vec<_>>()),
        QType::Int8 => Tensor::from_i8(name, dims, &values.iter().map(|&v| v as i8).collect::<Vec<_>>()),
    }
}

/// Adds `QuantizeLinear(source) → DequantizeLinear` with per-tensor parameters `q` to the patch
/// (both read the same scale and zero point constants) and returns the dequantized wire.
pub fn add_qdq(p: &mut Patch, source: Wire, name: &str, q: QParams, order: OrderKey) -> Wire {
    let scale = p.add_constant(&format!("{name}_s"), Tensor::from_f32(&format!("{name}_s"), &[], &[q.scale]));
    let zp_name = format!("{name}_z");
    let zp = p.add_constant(&zp_name, zero_point_tensor(&zp_name, q.qtype, &[], &[q.zero_point]));
    let quant = p.add_op(OpSpec::new("QuantizeLinear", &[], &format!("{name}_q")), vec![source, scale, zp], order);
    let dequant = p.add_op(OpSpec::new("DequantizeLinear", &[], &format!("{name}_dq")), vec![Wire::output(quant, 0), scale, zp], order);
    Wire::output(dequant, 0)
}

/// Every reader of `v` that is a node input (graph outputs keep reading the float value).
pub fn node_readers(g: &Graph, v: ValueId) -> Vec<Use> {
    g.uses_of(v).into_iter().filter(|u| matches!(u, Use::Input { .. })).collect()
}

/// An integer constant with its per-axis (or, without `axis`, per-tensor) scales, read through a
/// `DequantizeLinear`; returns the dequantized (float) wire. `zero_point`: none for int32 biases.
pub fn add_dequantized_constant(
    p: &mut Patch,
    name: &str,
    data: Tensor,
    scales: &[f32],
    axis: Option<usize>,
    zero_point: Option<QType>,
    order: OrderKey,
) -> Wire {
    let scale_dims: Vec<i64> = if axis.is_some() { vec![scales.len() as i64] } else { vec![] };
    let q = p.add_constant(&format!("{name}_q"), data.renamed(&format!("{name}_q")));
    let s = p.add_constant(&format!("{name}_s"), Tensor::from_f32(&format!("{name}_s"), &scale_dims, scales));
    let mut inputs = vec![q, s];
    if let Some(qtype) = zero_point {
        let zp_name = format!("{name}_z");
        inputs.push(p.add_constant(&zp_name, zero_point_tensor(&zp_name, qtype, &scale_dims, &vec![0; scales.len()])));
    }
    let mut spec = OpSpec::new("DequantizeLinear", &[], &format!("{name}_dq"));
    if let Some(a) = axis {
        spec = spec.attr(attr_int("axis", a as i64));
    }
    Wire::output(p.add_op(spec, inputs, order), 0)
}
