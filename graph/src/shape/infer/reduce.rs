//! Reductions (`Reduce*`), ArgMax/ArgMin and TopK.
//!
//! `axes` is an attribute before opset 13 for ReduceSum and before opset 18 for the other
//! reductions, and an optional input from then on; `noop_with_empty_axes` (same opsets) makes
//! "no axes" mean identity instead of "every axis".

use super::dims::{self, show};
use super::values::Vals;
use super::{Ctx, Out, RuleResult};
use crate::dtype::DataType;
use crate::shape::Dim;

pub(super) fn reduce(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let Some(xs) = ctx.dims(0) else { return Ok(vec![Out::new(dtype, None)]) };
    let rank = xs.len();
    let keep = ctx.attr_int("keepdims", 1) != 0;
    let axes_as_input = ctx.opset >= if ctx.op() == "ReduceSum" { 13 } else { 18 };
    let axes: Option<Vec<i64>> = if !axes_as_input {
        ctx.attr_ints("axes").map(<[i64]>::to_vec)
    } else if ctx.has(1) {
        match ctx.ints(1) {
            Some(a) => Some(a),
            None => {
                // Axes computed at run time: the rank is known with keepdims or a known count.
                let count = dims::shape_input_len(ctx.dims(1));
                let out_rank = if keep { Some(rank) } else { count.and_then(|k| rank.checked_sub(k)) };
                return Ok(vec![Out::new(dtype, out_rank.map(|r| vec![Dim::Unknown; r]))]);
            }
        }
    } else {
        None
    };
    let axes = match axes.filter(|a| !a.is_empty()) {
        Some(a) => dims::axes(&a, rank)?,
        None if axes_as_input && ctx.attr_int("noop_with_empty_axes", 0) != 0 => {
            return Ok(vec![Out::new(dtype, Some(xs.to_vec())).with_vals(ctx.vals(0).map(|v| v.into_owned()))]);
        }
        None => (0..rank).collect(),
    };
    let out = reduced(xs, &axes, keep);
    // Sums and products of a whole shape vector (the element count of a computed shape).
    let vals = match ctx.op() {
        "ReduceProd" | "ReduceSum" if axes.len() == rank => ctx.ints(0).and_then(|v| {
            let r = if ctx.op() == "ReduceProd" {
                v.iter().try_fold(1i64, |a, b| a.checked_mul(*b))
            } else {
                v.iter().try_fold(0i64, |a, b| a.checked_add(*b))
            };
            r.map(|r| Vals::Int(vec![Dim::Known(r)]))
        }),
        _ => None,
    };
    Ok(vec![Out::new(dtype, Some(out)).with_vals(vals)])
}

/// `xs` with `axes` set to 1 (keepdims) or removed.
fn reduced(xs: &[Dim], axes: &[usize], keep: bool) -> Vec<Dim> {
    xs.iter()
        .enumerate()
        .filter_map(|(i, d)| match (axes.contains(&i), keep) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Known(1)),
            (true, false) => None,
        })
        .collect()
}

pub(super) fn arg_reduce(ctx: &Ctx) -> RuleResult {
    let dtype = Some(DataType::Int64);
    let Some(xs) = ctx.dims(0) else { return Ok(vec![Out::new(dtype, None)]) };
    let axis = dims::axis(ctx.attr_int("axis", 0), xs.len())?;
    Ok(vec![Out::new(dtype, Some(reduced(xs, &[axis], ctx.attr_int("keepdims", 1) != 0)))])
}

/// TopK: values and int64 indices, `K` along `axis`. `K` is an attribute before opset 10.
pub(super) fn top_k(ctx: &Ctx) -> RuleResult {
    let (dtype, idx) = (ctx.dtype(0), Some(DataType::Int64));
    let Some(xs) = ctx.dims(0) else { return Ok(vec![Out::new(dtype, None), Out::new(idx, None)]) };
    let axis = dims::axis(ctx.attr_int("axis", -1), xs.len())?;
    let k = if ctx.opset < 10 { ctx.node.attr_int("k") } else { ctx.ints(1).and_then(|k| k.first().copied()) };
    let mut out = xs.to_vec();
    out[axis] = match (k, &xs[axis]) {
        (Some(k), Dim::Known(n)) if k < 0 || k > *n => return Err(format!("K = {k} is out of range for axis {axis} of {}", show(xs))),
        (Some(k), _) => Dim::Known(k),
        (None, _) => Dim::Unknown,
    };
    Ok(vec![Out::new(dtype, Some(out.clone())), Out::new(idx, Some(out))])
}
