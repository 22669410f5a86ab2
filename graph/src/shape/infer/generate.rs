//! Ops that make shapes or new tensors: Shape, Size, ConstantOfShape, Range, EyeLike, and the
//! data-dependent NonZero and NonMaxSuppression (an unknown dimension).

use super::dims::show;
use super::values::{MAX_TRACKED, Vals};
use super::{Ctx, Out, RuleResult};
use crate::dtype::DataType;
use crate::eval::index;
use crate::shape::Dim;
use crate::tensor::Tensor;

/// `Shape` (with `start`/`end` from opset 15): the dims of the input as int64 contents.
pub(super) fn shape(ctx: &Ctx) -> RuleResult {
    let dtype = Some(DataType::Int64);
    let Some(xs) = ctx.dims(0) else { return Ok(vec![Out::new(dtype, Some(vec![Dim::Unknown]))]) };
    let rank = xs.len() as i64;
    let (start, end) =
        if ctx.opset >= 15 { index::shape_bounds(xs.len(), ctx.attr_int("start", 0), ctx.attr_int("end", rank)) } else { (0, xs.len()) };
    let dims = xs[start..end].to_vec();
    Ok(vec![Out::new(dtype, Some(vec![Dim::Known(dims.len() as i64)])).with_vals(Some(Vals::Int(dims)))])
}

pub(super) fn size(ctx: &Ctx) -> RuleResult {
    let count = ctx.dims(0).map(super::dims::product).unwrap_or(Dim::Unknown);
    Ok(vec![Out::new(Some(DataType::Int64), Some(Vec::new())).with_vals(Some(Vals::Int(vec![count])))])
}

pub(super) fn constant_of_shape(ctx: &Ctx) -> RuleResult {
    let value = ctx.node.attr_tensor("value").and_then(|t| Tensor::from_proto(t.clone()).ok());
    let dtype = Some(value.as_ref().map_or(DataType::Float, Tensor::dtype));
    let shape = match ctx.int_dims(0) {
        Some(dims) => {
            if dims.iter().any(|d| matches!(d, Dim::Known(v) if *v < 0)) {
                return Err(format!("shape {} has a negative dimension", show(&dims)));
            }
            dims
        }
        None => match super::dims::shape_input_len(ctx.dims(0)) {
            Some(k) => vec![Dim::Unknown; k],
            None => return Ok(vec![Out::new(dtype, None)]),
        },
    };
    let count = shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(usize::try_from(d.known()?).ok()?));
    let one = match &value {
        Some(t) => Vals::from_tensor(t).filter(|v| v.len() == 1),
        None => Some(Vals::Float(vec![0.0])),
    };
    let vals = count.filter(|n| *n <= MAX_TRACKED).zip(one).and_then(|(n, one)| one.pick(&vec![0; n]));
    Ok(vec![Out::new(dtype, Some(shape)).with_vals(vals)])
}

/// `Range(start, limit, delta)`: `max(ceil((limit - start) / delta), 0)` elements.
pub(super) fn range(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let unknown = Ok(vec![Out::new(dtype, Some(vec![Dim::Unknown]))]);
    let scalar = |i: usize| ctx.vals(i).filter(|v| v.len() == 1);
    let (Some(start), Some(limit), Some(delta)) = (scalar(0), scalar(1), scalar(2)) else { return unknown };
    if let (Some(s), Some(l), Some(d)) = (start.ints(), limit.ints(), delta.ints()) {
        let n = index::range_len_int(s[0], l[0], d[0]).ok_or("delta is 0")?;
        let (s, d) = (s[0] as i128, d[0] as i128);
        let vals = (n <= MAX_TRACKED as i128).then(|| Vals::Int((0..n).map(|k| Dim::Known((s + k * d) as i64)).collect()));
        return Ok(vec![Out::new(dtype, Some(vec![super::dims::known(n)?])).with_vals(vals)]);
    }
    let (Some(s), Some(l), Some(d)) = (start.floats(), limit.floats(), delta.floats()) else { return unknown };
    let (s, l, d) = (s[0], l[0], d[0]);
    let n = index::range_len_float(s, l, d).ok_or_else(|| format!("range({s}, {l}, {d}) has no finite length"))? as i64;
    let vals = (n as usize <= MAX_TRACKED).then(|| Vals::Float((0..n).map(|k| s + k as f64 * d).collect()));
    Ok(vec![Out::new(dtype, Some(vec![Dim::Known(n)])).with_vals(vals)])
}

pub(super) fn eye_like(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.node.attr_int("dtype").and_then(|c| i32::try_from(c).ok()).and_then(DataType::from_onnx).or(ctx.dtype(0));
    Ok(vec![Out::new(dtype, ctx.dims(0).map(<[Dim]>::to_vec))])
}

/// `NonZero`: `[rank, number of non-zero elements]`, the count unknown.
pub(super) fn non_zero(ctx: &Ctx) -> RuleResult {
    let shape = ctx.dims(0).map(|xs| vec![Dim::Known(xs.len() as i64), Dim::Unknown]);
    Ok(vec![Out::new(Some(DataType::Int64), shape)])
}

/// `NonMaxSuppression`: `[selected boxes, 3]`, the count unknown.
pub(super) fn non_max_suppression(_ctx: &Ctx) -> RuleResult {
    Ok(vec![Out::new(Some(DataType::Int64), Some(vec![Dim::Unknown, Dim::Known(3)]))])
}
