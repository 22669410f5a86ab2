//! Matrix products: MatMul (numpy semantics: batched, 1-D operands) and Gemm.

use super::dims::{broadcast, merge, show};
use super::{Ctx, Out, RuleResult};
use crate::dtype::DataType;
use crate::shape::Dim;

pub(super) fn matmul(ctx: &Ctx) -> RuleResult {
    matmul_like(ctx, 0, 1, ctx.dtype(0))
}

/// A matrix product of inputs `a` and `b` (MatMul, MatMulInteger, QLinearMatMul).
pub(super) fn matmul_like(ctx: &Ctx, a: usize, b: usize, dtype: Option<DataType>) -> RuleResult {
    let (Some(a), Some(b)) = (ctx.dims(a), ctx.dims(b)) else { return Ok(vec![Out::new(dtype, None)]) };
    Ok(vec![Out::new(dtype, Some(matmul_shape(a, b)?))])
}

/// `[..., M, K] x [..., K, N] -> [..., M, N]`; a 1-D operand gains a dimension that is dropped again.
fn matmul_shape(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, String> {
    if a.is_empty() || b.is_empty() {
        return Err(format!("cannot multiply {} by {}: scalar operand", show(a), show(b)));
    }
    let a2: Vec<Dim> = if a.len() == 1 { vec![Dim::Known(1), a[0].clone()] } else { a.to_vec() };
    let b2: Vec<Dim> = if b.len() == 1 { vec![b[0].clone(), Dim::Known(1)] } else { b.to_vec() };
    let (ra, rb) = (a2.len(), b2.len());
    merge(&a2[ra - 1], &b2[rb - 2]).map_err(|_| format!("cannot multiply {} by {}: inner dimensions differ", show(a), show(b)))?;
    let mut out = broadcast(&[&a2[..ra - 2], &b2[..rb - 2]])?;
    if a.len() > 1 {
        out.push(a2[ra - 2].clone());
    }
    if b.len() > 1 {
        out.push(b2[rb - 1].clone());
    }
    Ok(out)
}

/// `Y = alpha * A' * B' + beta * C` with `A'`, `B'` optionally transposed: `[M, N]`.
pub(super) fn gemm(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let (Some(a), Some(b)) = (ctx.dims(0), ctx.dims(1)) else { return Ok(vec![Out::new(dtype, None)]) };
    let ([a0, a1], [b0, b1]) = (a, b) else {
        return Err(format!("expects two matrices, got {} and {}", show(a), show(b)));
    };
    let (m, ka) = if ctx.attr_int("transA", 0) != 0 { (a1, a0) } else { (a0, a1) };
    let (kb, n) = if ctx.attr_int("transB", 0) != 0 { (b1, b0) } else { (b0, b1) };
    merge(ka, kb).map_err(|_| format!("cannot multiply {} by {} (transA/transB applied): inner dimensions differ", show(a), show(b)))?;
    let out = vec![m.clone(), n.clone()];
    if let Some(c) = ctx.dims(2) {
        let both = broadcast(&[&out, c]).map_err(|_| format!("C of shape {} does not broadcast to {}", show(c), show(&out)))?;
        if both.len() > 2 {
            return Err(format!("C of shape {} does not broadcast to {}", show(c), show(&out)));
        }
    }
    Ok(vec![Out::new(dtype, Some(out))])
}
