//! Movement ops: Concat, Split, Slice, Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Pad,
//! Expand, Tile. Each respects the opset that moved its parameters from attributes to inputs, and
//! carries known contents through when the data layout allows it.

use super::dims::{self, add, broadcast, merge, mul, product, show};
use super::values::{self, Vals};
use super::{Ctx, Out, RuleResult};
use crate::shape::Dim;

/// The output, unknown except for its dtype (and optionally its rank).
fn unknown(ctx: &Ctx, rank: Option<usize>) -> RuleResult {
    Ok(vec![Out::new(ctx.dtype(0), rank.map(|r| vec![Dim::Unknown; r]))])
}

/// Contents of input 0 passed through unchanged (ops that only change the shape).
fn same_vals(ctx: &Ctx) -> Option<Vals> {
    ctx.vals(0).map(|v| v.into_owned())
}

pub(super) fn concat(ctx: &Ctx) -> RuleResult {
    let n = ctx.node.inputs().len();
    let dtype = (0..n).find_map(|i| ctx.dtype(i));
    let shapes: Vec<Option<&[Dim]>> = (0..n).map(|i| ctx.dims(i)).collect();
    let Some(first) = shapes.iter().flatten().next() else { return Ok(vec![Out::new(dtype, None)]) };
    let rank = first.len();
    let axis = dims::axis(ctx.attr_int("axis", if ctx.opset < 4 { 1 } else { 0 }), rank)?;
    let mut out = first.to_vec();
    let mut total = Dim::Known(0);
    for s in &shapes {
        let Some(s) = s else {
            total = Dim::Unknown;
            continue;
        };
        if s.len() != rank {
            return Err(format!("cannot concatenate {} and {}: ranks differ", show(first), show(s)));
        }
        for i in (0..rank).filter(|i| *i != axis) {
            out[i] = merge(&out[i], &s[i]).map_err(|_| format!("cannot concatenate {} and {} on axis {axis}", show(first), show(s)))?;
        }
        total = add(&total, &s[axis]);
    }
    out[axis] = total;
    let vals = if axis == 0 {
        let parts: Option<Vec<Vals>> = (0..n).map(|i| ctx.vals(i).map(|v| v.into_owned())).collect();
        parts.and_then(|p| Vals::concat(&p))
    } else {
        None
    };
    Ok(vec![Out::new(dtype, Some(out)).with_vals(vals)])
}

pub(super) fn split(ctx: &Ctx) -> RuleResult {
    let n_out = ctx.num_outputs();
    let dtype = ctx.dtype(0);
    let Some(xs) = ctx.dims(0) else { return Ok(vec![Out::new(dtype, None); n_out]) };
    let axis = dims::axis(ctx.attr_int("axis", 0), xs.len())?;
    let d = &xs[axis];
    // Outer None: no sizes given; inner None: given, but not known.
    let given: Option<Option<Vec<i64>>> = if ctx.opset < 13 {
        ctx.attr_ints("split").filter(|s| !s.is_empty()).map(|s| Some(s.to_vec()))
    } else if ctx.has(1) {
        Some(ctx.ints(1))
    } else {
        None
    };
    let sizes: Vec<Dim> = match given {
        Some(Some(sizes)) => {
            if sizes.len() != n_out {
                return Err(format!("split {sizes:?} does not have one size per output ({n_out})"));
            }
            if let Dim::Known(n) = d
                && sizes.iter().map(|&s| i128::from(s)).sum::<i128>() != i128::from(*n)
            {
                return Err(format!("split {sizes:?} does not add up to dimension {n} of {}", show(xs)));
            }
            sizes.into_iter().map(Dim::Known).collect()
        }
        Some(None) => vec![Dim::Unknown; n_out],
        None => equal_split(ctx, d, n_out)?,
    };
    let vals = ctx.vals(0).filter(|_| xs.len() == 1);
    let mut start = 0usize;
    let outs = sizes
        .into_iter()
        .map(|size| {
            let mut shape = xs.to_vec();
            shape[axis] = size.clone();
            let len = size.known().and_then(|s| usize::try_from(s).ok());
            let part = vals.as_ref().zip(len).and_then(|(v, len)| v.pick(&(start..start + len).collect::<Vec<_>>()));
            start += len.unwrap_or(0);
            Out::new(dtype, Some(shape)).with_vals(part)
        })
        .collect();
    Ok(outs)
}

/// Sizes of a split into equal parts: `num_outputs` parts (opset 18, the last one smaller), or one
/// per output (which must divide the dimension).
fn equal_split(ctx: &Ctx, d: &Dim, n_out: usize) -> Result<Vec<Dim>, String> {
    let parts = n_out as i64;
    match n_out {
        0 => return Ok(Vec::new()),
        1 => return Ok(vec![d.clone()]),
        _ => {}
    }
    let Dim::Known(n) = *d else { return Ok(vec![Dim::Unknown; n_out]) };
    if ctx.opset >= 18
        && let Some(num) = ctx.node.attr_int("num_outputs")
    {
        if num != parts {
            return Err(format!("num_outputs {num} does not match the {n_out} outputs"));
        }
        let chunk = n / parts + i64::from(n % parts != 0);
        let last = n - chunk.saturating_mul(parts - 1);
        if last < 0 {
            return Err(format!("dimension {n} cannot be split into {parts} parts of {chunk}"));
        }
        let mut sizes = vec![Dim::Known(chunk); n_out - 1];
        sizes.push(Dim::Known(last));
        return Ok(sizes);
    }
    if n % parts != 0 {
        return Err(format!("dimension {n} cannot be split into {parts} equal parts"));
    }
    Ok(vec![Dim::Known(n / parts); n_out])
}

/// Slice parameters, or `None` when some are not known.
struct SliceParams {
    starts: Vec<i64>,
    ends: Vec<i64>,
    axes: Vec<i64>,
    steps: Vec<i64>,
}

fn slice_params(ctx: &Ctx, rank: usize) -> Option<SliceParams> {
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        (ctx.attr_ints("starts")?.to_vec(), ctx.attr_ints("ends")?.to_vec(), ctx.attr_ints("axes").map(<[i64]>::to_vec), None)
    } else {
        let opt = |i: usize| if ctx.has(i) { ctx.ints(i).map(Some) } else { Some(None) };
        (ctx.ints(1)?, ctx.ints(2)?, opt(3)?, opt(4)?)
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len().min(rank) as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    Some(SliceParams { starts, ends, axes, steps })
}

use crate::eval::index::slice_range;

pub(super) fn slice(ctx: &Ctx) -> RuleResult {
    let Some(xs) = ctx.dims(0) else { return unknown(ctx, None) };
    let rank = xs.len();
    let Some(p) = slice_params(ctx, rank) else {
        // Unknown bounds: the sliced axes change, the others do not.
        let axes = if ctx.opset < 10 { ctx.attr_ints("axes").map(<[i64]>::to_vec) } else { ctx.has(3).then(|| ctx.ints(3)).flatten() };
        let Some(axes) = axes else { return unknown(ctx, Some(rank)) };
        let mut out = xs.to_vec();
        for a in dims::axes(&axes, rank)? {
            out[a] = Dim::Unknown;
        }
        return Ok(vec![Out::new(ctx.dtype(0), Some(out))]);
    };
    let n = p.starts.len();
    if p.ends.len() != n || p.axes.len() != n || p.steps.len() != n {
        return Err(format!("starts {:?}, ends {:?}, axes {:?} and steps {:?} differ in length", p.starts, p.ends, p.axes, p.steps));
    }
    let axes = dims::axes(&p.axes, rank)?;
    let mut out = xs.to_vec();
    // Flat indices of the picked elements of a 1-D input with known contents.
    let data = ctx.vals(0).filter(|_| rank == 1);
    let mut picked: Option<Vec<usize>> = data.as_ref().map(|v| (0..v.len()).collect());
    for (i, &axis) in axes.iter().enumerate() {
        let step = p.steps[i];
        if step == 0 {
            return Err("a slice step is 0".to_string());
        }
        out[axis] = match xs[axis] {
            Dim::Known(d) => match slice_range(p.starts[i], p.ends[i], step, d) {
                Some((first, len)) => {
                    if let Some(picked) = picked.as_mut() {
                        *picked = (0..len).map(|k| (first + k * step) as usize).collect();
                    }
                    Dim::Known(len)
                }
                None => {
                    picked = None;
                    Dim::Unknown
                }
            },
            // The whole axis: `0:INT_MAX:1` keeps even an unknown dimension.
            ref d if p.starts[i] == 0 && step == 1 && p.ends[i] >= i32::MAX as i64 => d.clone(),
            _ => {
                picked = None;
                Dim::Unknown
            }
        };
    }
    let vals = picked.zip(data).and_then(|(idx, data)| data.pick(&idx));
    Ok(vec![Out::new(ctx.dtype(0), Some(out)).with_vals(vals)])
}

pub(super) fn reshape(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let xs = ctx.dims(0);
    // Opset 1-4 took the shape as an attribute.
    let target = if ctx.opset < 5 { ctx.attr_ints("shape").map(|s| s.iter().map(|&v| Dim::Known(v)).collect()) } else { ctx.int_dims(1) };
    let Some(target) = target else {
        let rank = if ctx.opset < 5 { None } else { dims::shape_input_len(ctx.dims(1)) };
        return unknown(ctx, rank);
    };
    let allow_zero = ctx.opset >= 14 && ctx.attr_int("allowzero", 0) != 0;
    let mut out = Vec::with_capacity(target.len());
    let mut rest: Option<usize> = None;
    for (i, t) in target.iter().enumerate() {
        out.push(match t {
            Dim::Known(0) if !allow_zero => match xs {
                Some(xs) => xs.get(i).cloned().ok_or_else(|| format!("shape {} copies dimension {i} of {}", show(&target), show(xs)))?,
                None => Dim::Unknown,
            },
            Dim::Known(-1) => {
                if rest.replace(i).is_some() {
                    return Err(format!("shape {} has more than one -1", show(&target)));
                }
                Dim::Unknown
            }
            Dim::Known(v) if *v < 0 => return Err(format!("shape {} has a negative dimension", show(&target))),
            d => d.clone(),
        });
    }
    if let Some(xs) = xs {
        match rest {
            Some(r) => {
                let others: Vec<Dim> = out.iter().enumerate().filter(|(i, _)| *i != r).map(|(_, d)| d.clone()).collect();
                out[r] = dims::reshape_rest(xs, &others).map_err(|e| format!("cannot reshape {} to {}: {e}", show(xs), show(&target)))?;
            }
            None => {
                if let (Dim::Known(a), Dim::Known(b)) = (product(xs), product(&out))
                    && a != b
                {
                    return Err(format!("cannot reshape {} ({a} elements) to {} ({b} elements)", show(xs), show(&out)));
                }
            }
        }
    }
    Ok(vec![Out::new(dtype, Some(out)).with_vals(same_vals(ctx))])
}

pub(super) fn transpose(ctx: &Ctx) -> RuleResult {
    let Some(xs) = ctx.dims(0) else { return unknown(ctx, None) };
    let rank = xs.len();
    let perm: Vec<i64> = match ctx.attr_ints("perm") {
        Some(p) => p.to_vec(),
        None => (0..rank as i64).rev().collect(),
    };
    let mut seen = vec![false; rank];
    let mut out = Vec::with_capacity(rank);
    for &p in &perm {
        let slot = usize::try_from(p).ok().filter(|p| *p < rank && !seen[*p]);
        let Some(p) = slot.filter(|_| perm.len() == rank) else {
            return Err(format!("perm {perm:?} is not a permutation of the axes of {}", show(xs)));
        };
        seen[p] = true;
        out.push(xs[p].clone());
    }
    let vals = if rank <= 1 { same_vals(ctx) } else { None };
    Ok(vec![Out::new(ctx.dtype(0), Some(out)).with_vals(vals)])
}

pub(super) fn flatten(ctx: &Ctx) -> RuleResult {
    let Some(xs) = ctx.dims(0) else { return unknown(ctx, Some(2)) };
    let rank = xs.len() as i64;
    let axis = ctx.attr_int("axis", 1);
    if axis < -rank || axis > rank {
        return Err(format!("axis {axis} is out of range for {}", show(xs)));
    }
    let axis = if axis < 0 { axis + rank } else { axis } as usize;
    let out = vec![product(&xs[..axis]), product(&xs[axis..])];
    Ok(vec![Out::new(ctx.dtype(0), Some(out)).with_vals(same_vals(ctx))])
}

/// The `axes` of Squeeze/Unsqueeze: an attribute before opset 13, an optional input from 13.
/// `Err(())` when they are given but not known.
fn squeeze_axes(ctx: &Ctx) -> Result<Option<Vec<i64>>, ()> {
    if ctx.opset < 13 {
        Ok(ctx.attr_ints("axes").map(<[i64]>::to_vec))
    } else if ctx.has(1) {
        ctx.ints(1).map(Some).ok_or(())
    } else {
        Ok(None)
    }
}

pub(super) fn squeeze(ctx: &Ctx) -> RuleResult {
    let Some(xs) = ctx.dims(0) else { return unknown(ctx, None) };
    let Ok(axes) = squeeze_axes(ctx) else { return unknown(ctx, None) };
    let out: Vec<Dim> = match axes {
        Some(axes) => {
            let axes = dims::axes(&axes, xs.len())?;
            if let Some(&a) = axes.iter().find(|a| matches!(xs[**a], Dim::Known(d) if d != 1)) {
                return Err(format!("cannot squeeze axis {a} of {}: its size is not 1", show(xs)));
            }
            xs.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect()
        }
        // Every axis of size 1, which needs every size.
        None if xs.iter().all(|d| d.known().is_some()) => xs.iter().filter(|d| **d != Dim::Known(1)).cloned().collect(),
        None => return unknown(ctx, None),
    };
    Ok(vec![Out::new(ctx.dtype(0), Some(out)).with_vals(same_vals(ctx))])
}

pub(super) fn unsqueeze(ctx: &Ctx) -> RuleResult {
    let Some(xs) = ctx.dims(0) else { return unknown(ctx, None) };
    let axes = match squeeze_axes(ctx) {
        Ok(Some(axes)) => axes,
        Ok(None) => return Err("no axes given".to_string()),
        Err(()) => {
            return unknown(ctx, dims::shape_input_len(ctx.dims(1)).map(|k| xs.len() + k));
        }
    };
    let rank = xs.len() + axes.len();
    let axes = dims::axes(&axes, rank)?;
    let mut rest = xs.iter();
    let out: Vec<Dim> =
        (0..rank).map(|i| if axes.contains(&i) { Dim::Known(1) } else { rest.next().cloned().unwrap_or(Dim::Unknown) }).collect();
    Ok(vec![Out::new(ctx.dtype(0), Some(out)).with_vals(same_vals(ctx))])
}

pub(super) fn pad(ctx: &Ctx) -> RuleResult {
    let Some(xs) = ctx.dims(0) else { return unknown(ctx, None) };
    let rank = xs.len();
    let (pads, axes) = if ctx.opset < 11 {
        let pads = ctx.attr_ints("pads").or_else(|| ctx.attr_ints("paddings")).map(<[i64]>::to_vec);
        (pads, Some((0..rank as i64).collect::<Vec<_>>()))
    } else {
        let axes = if ctx.opset >= 18 && ctx.has(3) { ctx.ints(3) } else { Some((0..rank as i64).collect()) };
        (ctx.ints(1), axes)
    };
    let Some(axes) = axes else { return unknown(ctx, Some(rank)) };
    let axes = dims::axes(&axes, rank)?;
    let Some(pads) = pads else {
        let mut out = xs.to_vec();
        for a in axes {
            out[a] = Dim::Unknown;
        }
        return Ok(vec![Out::new(ctx.dtype(0), Some(out))]);
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("pads {pads:?} does not have 2 values per padded axis ({})", axes.len()));
    }
    let mut out = xs.to_vec();
    for (i, &a) in axes.iter().enumerate() {
        let total = pads[i].checked_add(pads[i + axes.len()]).map_or(Dim::Unknown, Dim::Known);
        out[a] = add(&xs[a], &total);
        if let Dim::Known(d) = out[a]
            && d < 0
        {
            return Err(format!("pads {pads:?} remove more than axis {a} of {} holds", show(xs)));
        }
    }
    Ok(vec![Out::new(ctx.dtype(0), Some(out))])
}

pub(super) fn expand(ctx: &Ctx) -> RuleResult {
    let Some(xs) = ctx.dims(0) else { return unknown(ctx, None) };
    let target = match ctx.int_dims(1) {
        Some(t) => t,
        None => match dims::shape_input_len(ctx.dims(1)) {
            Some(k) => vec![Dim::Unknown; k],
            None => return unknown(ctx, None),
        },
    };
    let out = broadcast(&[xs, &target])?;
    let vals = (|| {
        let (o, i): (Vec<i64>, Vec<i64>) =
            (out.iter().map(Dim::known).collect::<Option<_>>()?, xs.iter().map(Dim::known).collect::<Option<_>>()?);
        ctx.vals(0)?.pick(&values::broadcast_index(&o, &i)?)
    })();
    Ok(vec![Out::new(ctx.dtype(0), Some(out)).with_vals(vals)])
}

pub(super) fn tile(ctx: &Ctx) -> RuleResult {
    let Some(xs) = ctx.dims(0) else { return unknown(ctx, None) };
    let Some(repeats) = ctx.int_dims(1) else { return unknown(ctx, Some(xs.len())) };
    if repeats.len() != xs.len() {
        return Err(format!("repeats {} do not have one value per axis of {}", show(&repeats), show(xs)));
    }
    let out = xs.iter().zip(&repeats).map(|(d, r)| mul(d, r)).collect();
    Ok(vec![Out::new(ctx.dtype(0), Some(out))])
}
