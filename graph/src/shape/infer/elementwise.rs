//! Element-wise ops: unary ops, casts, numpy-broadcasting binary and variadic ops, comparisons,
//! `Where`. Known contents of small tensors are carried through the ones shapes are computed with.

use super::dims::broadcast;
use super::values::{self, Vals};
use super::{Ctx, Out, RuleResult};
use crate::dtype::DataType;
use crate::eval::scalar::BinOp;
use crate::shape::Dim;

/// Output 0 has the shape and dtype of input 0 (activations, Softmax, Clip, normalisations, ...).
pub(super) fn unary(ctx: &Ctx) -> RuleResult {
    let vals = ctx.vals(0).and_then(|v| values::unary(ctx.op(), &v, ctx.dtype(0)?));
    Ok(vec![Out::new(ctx.dtype(0), ctx.dims(0).map(<[Dim]>::to_vec)).with_vals(vals)])
}

/// Like [`unary`] with a bool output (`Not`, `IsNaN`, `IsInf`).
pub(super) fn unary_bool(ctx: &Ctx) -> RuleResult {
    let vals = ctx.vals(0).and_then(|v| values::unary(ctx.op(), &v, ctx.dtype(0)?));
    Ok(vec![Out::new(Some(DataType::Bool), ctx.dims(0).map(<[Dim]>::to_vec)).with_vals(vals)])
}

pub(super) fn cast(ctx: &Ctx) -> RuleResult {
    let to = ctx.node.attr_int("to").and_then(|code| i32::try_from(code).ok()).and_then(DataType::from_onnx);
    let vals = to.and_then(|to| ctx.vals(0)?.cast(to));
    Ok(vec![Out::new(to, ctx.dims(0).map(<[Dim]>::to_vec)).with_vals(vals)])
}

pub(super) fn cast_like(ctx: &Ctx) -> RuleResult {
    let to = ctx.dtype(1);
    let vals = to.and_then(|to| ctx.vals(0)?.cast(to));
    Ok(vec![Out::new(to, ctx.dims(0).map(<[Dim]>::to_vec)).with_vals(vals)])
}

/// `Dropout`: the output, and an optional bool mask of the same shape.
pub(super) fn dropout(ctx: &Ctx) -> RuleResult {
    let shape = ctx.dims(0).map(<[Dim]>::to_vec);
    let mask_dtype = if ctx.opset >= 10 { Some(DataType::Bool) } else { ctx.dtype(0) };
    Ok(vec![Out::new(ctx.dtype(0), shape.clone()).with_vals(ctx.vals(0).map(|v| v.into_owned())), Out::new(mask_dtype, shape)])
}

/// Binary and variadic numpy-broadcasting ops with the dtype of the first input.
pub(super) fn broadcast_op(ctx: &Ctx) -> RuleResult {
    let (shape, vals) = broadcast_inputs(ctx)?;
    Ok(vec![Out::new(ctx.dtype(0), shape).with_vals(vals)])
}

/// Comparisons and logical ops: broadcasting, bool output.
pub(super) fn compare(ctx: &Ctx) -> RuleResult {
    let (shape, vals) = broadcast_inputs(ctx)?;
    Ok(vec![Out::new(Some(DataType::Bool), shape).with_vals(vals)])
}

/// `Where(cond, x, y)`: three-way broadcasting, dtype of `x`.
pub(super) fn where_op(ctx: &Ctx) -> RuleResult {
    let shapes: Option<Vec<&[Dim]>> = (0..3).map(|i| ctx.dims(i)).collect();
    let Some(shapes) = shapes else { return Ok(vec![Out::new(ctx.dtype(1).or(ctx.dtype(2)), None)]) };
    let out = broadcast(&shapes)?;
    let vals = (|| {
        let [c, x, y] = [0, 1, 2].map(|i| expanded(ctx, i, &out));
        values::select(&c?, &x?, &y?)
    })();
    Ok(vec![Out::new(ctx.dtype(1).or(ctx.dtype(2)), Some(out)).with_vals(vals)])
}

/// The broadcast shape of all inputs and, for ops with a known-value rule, the output contents.
fn broadcast_inputs(ctx: &Ctx) -> Result<(Option<Vec<Dim>>, Option<Vals>), String> {
    let n = ctx.node.inputs().len();
    // Before opset 7, `broadcast=1` broadcast the second input to the first (legacy form).
    if ctx.opset < 7 && ctx.attr_int("broadcast", 0) == 1 {
        return Ok((ctx.dims(0).map(<[Dim]>::to_vec), None));
    }
    let shapes: Option<Vec<&[Dim]>> = (0..n).map(|i| ctx.dims(i)).collect();
    let Some(shapes) = shapes.filter(|s| !s.is_empty()) else { return Ok((None, None)) };
    let out = broadcast(&shapes)?;
    let fmod = ctx.attr_int("fmod", 0) != 0;
    let vals = BinOp::from_op(ctx.op(), fmod).and_then(|op| {
        let dtype = ctx.dtype(0)?;
        let mut acc = expanded(ctx, 0, &out)?;
        for i in 1..n {
            acc = values::binary(op, &acc, &expanded(ctx, i, &out)?, dtype)?;
        }
        Some(acc)
    });
    Ok((Some(out), vals))
}

/// The contents of input `i` broadcast to the shape `out`.
fn expanded(ctx: &Ctx, i: usize, out: &[Dim]) -> Option<Vals> {
    let out: Vec<i64> = out.iter().map(Dim::known).collect::<Option<_>>()?;
    let input: Vec<i64> = ctx.dims(i)?.iter().map(Dim::known).collect::<Option<_>>()?;
    let vals = ctx.vals(i)?;
    vals.pick(&values::broadcast_index(&out, &input)?)
}
