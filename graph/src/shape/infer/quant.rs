//! Quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear and the integer
//! Conv/MatMul forms (QLinearConv, ConvInteger, QLinearMatMul, MatMulInteger).

use super::linalg::matmul_like;
use super::nn::conv_like;
use super::{Ctx, Out, RuleResult};
use crate::dtype::DataType;
use crate::shape::Dim;

/// `y` like `x`; dtype of the zero point, else `output_dtype` (opset 21), else uint8.
pub(super) fn quantize_linear(ctx: &Ctx) -> RuleResult {
    let attr = ctx.node.attr_int("output_dtype").and_then(|c| i32::try_from(c).ok()).and_then(DataType::from_onnx);
    let dtype = ctx.dtype(2).or(attr).unwrap_or(DataType::Uint8);
    Ok(vec![Out::new(Some(dtype), ctx.dims(0).map(<[Dim]>::to_vec))])
}

/// `y` like `x`, of the scale's float type (f32 before opset 19).
pub(super) fn dequantize_linear(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(1).filter(|d| d.is_float()).unwrap_or(DataType::Float);
    Ok(vec![Out::new(Some(dtype), ctx.dims(0).map(<[Dim]>::to_vec))])
}

/// `y` (uint8) like `x`, and scalar `y_scale` (f32) and `y_zero_point` (uint8).
pub(super) fn dynamic_quantize_linear(ctx: &Ctx) -> RuleResult {
    Ok(vec![
        Out::new(Some(DataType::Uint8), ctx.dims(0).map(<[Dim]>::to_vec)),
        Out::new(Some(DataType::Float), Some(Vec::new())),
        Out::new(Some(DataType::Uint8), Some(Vec::new())),
    ])
}

/// Inputs: x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point, B.
pub(super) fn qlinear_conv(ctx: &Ctx) -> RuleResult {
    conv_like(ctx, 0, 3, ctx.dtype(7).or(ctx.dtype(0)))
}

pub(super) fn conv_integer(ctx: &Ctx) -> RuleResult {
    conv_like(ctx, 0, 1, Some(DataType::Int32))
}

pub(super) fn matmul_integer(ctx: &Ctx) -> RuleResult {
    matmul_like(ctx, 0, 1, Some(DataType::Int32))
}

/// Inputs: a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point.
pub(super) fn qlinear_matmul(ctx: &Ctx) -> RuleResult {
    matmul_like(ctx, 0, 3, ctx.dtype(7).or(ctx.dtype(0)))
}
