//! Gather, GatherElements, GatherND. `Gather` also picks known contents (`Shape → Gather`).

use super::dims::{self, show};
use super::{Ctx, Out, RuleResult};
use crate::shape::Dim;

pub(super) fn gather(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let (Some(data), Some(idx)) = (ctx.dims(0), ctx.dims(1)) else { return Ok(vec![Out::new(dtype, None)]) };
    if data.is_empty() {
        return Err("cannot gather from a scalar".to_string());
    }
    let axis = dims::axis(ctx.attr_int("axis", 0), data.len())?;
    let mut out: Vec<Dim> = data[..axis].to_vec();
    out.extend_from_slice(idx);
    out.extend_from_slice(&data[axis + 1..]);

    let mut vals = None;
    if let (Some(concrete), Some(indices)) = (data.iter().map(Dim::known).collect::<Option<Vec<i64>>>(), ctx.ints(1)) {
        let n = concrete[axis];
        let mut normalized = Vec::with_capacity(indices.len());
        for i in indices {
            let j = crate::eval::index::gather_index(i, n)
                .ok_or_else(|| format!("index {i} is out of range for axis {axis} of {}", show(data)))?;
            normalized.push(j);
        }
        vals = ctx.vals(0).and_then(|v| {
            let outer: usize = concrete[..axis].iter().map(|&d| d as usize).product();
            let inner: usize = concrete[axis + 1..].iter().map(|&d| d as usize).product();
            let n = n as usize;
            let flat: Vec<usize> =
                (0..outer).flat_map(|o| normalized.iter().flat_map(move |&i| (0..inner).map(move |k| (o * n + i) * inner + k))).collect();
            v.pick(&flat)
        });
    }
    Ok(vec![Out::new(dtype, Some(out)).with_vals(vals)])
}

pub(super) fn gather_elements(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let Some(idx) = ctx.dims(1) else { return Ok(vec![Out::new(dtype, None)]) };
    if let Some(data) = ctx.dims(0)
        && data.len() != idx.len()
    {
        return Err(format!("data {} and indices {} have different ranks", show(data), show(idx)));
    }
    Ok(vec![Out::new(dtype, Some(idx.to_vec()))])
}

/// `indices[..q-1] + data[batch_dims + k..]` where `k` is the last dimension of `indices`.
pub(super) fn gather_nd(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let (Some(data), Some(idx)) = (ctx.dims(0), ctx.dims(1)) else { return Ok(vec![Out::new(dtype, None)]) };
    let Some((last, lead)) = idx.split_last() else { return Err("indices must have rank 1 or more".to_string()) };
    let Some(k) = last.known() else { return Ok(vec![Out::new(dtype, None)]) };
    let batch = usize::try_from(ctx.attr_int("batch_dims", 0)).unwrap_or(usize::MAX);
    let from = usize::try_from(k).ok().and_then(|k| k.checked_add(batch)).filter(|f| *f <= data.len());
    let Some(from) = from else {
        return Err(format!("indices {} with batch_dims {batch} index past the rank of data {}", show(idx), show(data)));
    };
    let mut out = lead.to_vec();
    out.extend_from_slice(&data[from..]);
    Ok(vec![Out::new(dtype, Some(out))])
}
