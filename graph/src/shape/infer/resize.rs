//! Resize, Upsample, DepthToSpace, SpaceToDepth.
//!
//! Where Resize finds its parameters depends on the opset: 10 reads `scales` from input 1; 11 and
//! later read `roi`, `scales`, `sizes` from inputs 1-3 (an empty tensor stands for "not given"),
//! and 18 adds the `axes` and `keep_aspect_ratio_policy` attributes. Upsample reads `scales` from
//! an attribute before opset 9 and from input 1 after. An output size from a scale is
//! `floor(in * scale)`, computed in f32 as onnxruntime does.

use super::dims::{self, div_exact, mul, show};
use super::{Ctx, Out, RuleResult};
use crate::shape::Dim;

/// One optional parameter input.
enum Param<T> {
    Absent,
    /// Given but not known (or not known to be empty).
    Unknown,
    Known(T),
}

/// Input `i`, treating an omitted input and an empty tensor as absent.
fn param<T>(ctx: &Ctx, i: Option<usize>, read: impl Fn(usize) -> Option<T>) -> Param<T> {
    let Some(i) = i.filter(|i| ctx.has(*i)) else { return Param::Absent };
    match ctx.dims(i) {
        Some(s) if s.contains(&Dim::Known(0)) => Param::Absent,
        Some(_) => read(i).map_or(Param::Unknown, Param::Known),
        None => Param::Unknown,
    }
}

pub(super) fn resize(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let Some(xs) = ctx.dims(0) else { return Ok(vec![Out::new(dtype, None)]) };
    let rank = xs.len();
    let (scales, sizes, roi) = match (ctx.op(), ctx.opset) {
        ("Upsample", o) if o < 9 => (Param::Known(upsample_attr_scales(ctx, rank)), Param::Absent, Param::Absent),
        ("Upsample", _) | ("Resize", ..=10) => (param(ctx, Some(1), |i| ctx.floats(i)), Param::Absent, Param::Absent),
        _ => (param(ctx, Some(2), |i| ctx.floats(i)), param(ctx, Some(3), |i| ctx.int_dims(i)), param(ctx, Some(1), |i| ctx.floats(i))),
    };
    let axes = match ctx.attr_ints("axes").filter(|_| ctx.opset >= 18) {
        Some(a) => dims::axes(a, rank)?,
        None => (0..rank).collect(),
    };
    let mut out = xs.to_vec();
    match (sizes, scales) {
        (Param::Known(sizes), _) => {
            if sizes.len() != axes.len() {
                return Err(format!("sizes {} do not have one value per resized axis of {}", show(&sizes), show(xs)));
            }
            resize_to_sizes(ctx, xs, &axes, &sizes, &mut out)?;
        }
        (Param::Absent, Param::Known(scales)) => {
            if scales.len() != axes.len() {
                return Err(format!("scales {scales:?} do not have one value per resized axis of {}", show(xs)));
            }
            let crop = ctx.attr_string("coordinate_transformation_mode").as_deref() == Some("tf_crop_and_resize");
            let roi = match roi {
                Param::Known(r) if crop && r.len() == 2 * axes.len() => Some(r),
                _ if crop => return Ok(vec![Out::new(dtype, Some(vec![Dim::Unknown; rank]))]),
                _ => None,
            };
            for (j, &a) in axes.iter().enumerate() {
                let extent = roi.as_ref().map_or(1.0, |r| r[j + axes.len()] - r[j]);
                out[a] = scaled(&xs[a], scales[j] * extent)?;
            }
        }
        (Param::Absent, Param::Absent) => return Ok(vec![Out::new(dtype, None)]),
        _ => {
            for &a in &axes {
                out[a] = Dim::Unknown;
            }
        }
    }
    Ok(vec![Out::new(dtype, Some(out))])
}

/// `floor(in * scale)` (a scale of 1 keeps even an unknown dimension).
fn scaled(d: &Dim, scale: f64) -> Result<Dim, String> {
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(format!("scale {scale} is not a positive number"));
    }
    Ok(match d {
        Dim::Known(n) => Dim::Known((*n as f32 * scale as f32).floor() as i64),
        d if scale == 1.0 => d.clone(),
        _ => Dim::Unknown,
    })
}

/// Output sizes given as `sizes`, with the opset 18 aspect-ratio policies.
fn resize_to_sizes(ctx: &Ctx, xs: &[Dim], axes: &[usize], sizes: &[Dim], out: &mut [Dim]) -> Result<(), String> {
    let policy = ctx.attr_string("keep_aspect_ratio_policy").filter(|_| ctx.opset >= 18).unwrap_or_else(|| "stretch".into());
    if policy == "stretch" {
        for (j, &a) in axes.iter().enumerate() {
            out[a] = sizes[j].clone();
        }
        return Ok(());
    }
    let ratios: Option<Vec<f32>> = axes.iter().zip(sizes).map(|(&a, s)| Some(s.known()? as f32 / xs[a].known()? as f32)).collect();
    let scale = match (ratios, policy.as_str()) {
        (Some(r), "not_larger") => r.into_iter().fold(f32::INFINITY, f32::min),
        (Some(r), "not_smaller") => r.into_iter().fold(0.0, f32::max),
        (None, "not_larger" | "not_smaller") => {
            for &a in axes {
                out[a] = Dim::Unknown;
            }
            return Ok(());
        }
        (_, other) => return Err(format!("unknown keep_aspect_ratio_policy '{other}'")),
    };
    for &a in axes {
        out[a] = xs[a].known().map_or(Dim::Unknown, |n| Dim::Known((n as f32 * scale).round() as i64));
    }
    Ok(())
}

/// Upsample before opset 9: `scales`, or (opset 1) `height_scale`/`width_scale` of a 4-D input.
fn upsample_attr_scales(ctx: &Ctx, rank: usize) -> Vec<f64> {
    if let Some(s) = ctx.node.attr_floats("scales") {
        return s.iter().map(|&v| f64::from(v)).collect();
    }
    let h = ctx.node.attr_float("height_scale").unwrap_or(1.0);
    let w = ctx.node.attr_float("width_scale").unwrap_or(1.0);
    let mut scales = vec![1.0; rank];
    if rank >= 2 {
        scales[rank - 2] = f64::from(h);
        scales[rank - 1] = f64::from(w);
    }
    scales
}

/// DepthToSpace `[N, C/b², H·b, W·b]` and SpaceToDepth `[N, C·b², H/b, W/b]`.
pub(super) fn depth_space(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let (Some(xs), Some(b)) = (ctx.dims(0), ctx.node.attr_int("blocksize")) else { return Ok(vec![Out::new(dtype, None)]) };
    let [n, c, h, w] = xs else { return Err(format!("expects a 4-D input, got {}", show(xs))) };
    let Some(bb) = b.checked_mul(b).filter(|_| b > 0) else { return Err(format!("blocksize {b} is not a valid block size")) };
    let (b, bb) = (Dim::Known(b), Dim::Known(bb));
    let out = if ctx.op() == "DepthToSpace" {
        vec![n.clone(), div_exact(c, &bb).map_err(|e| format!("channels of {}: {e}", show(xs)))?, mul(h, &b), mul(w, &b)]
    } else {
        let div = |d: &Dim| div_exact(d, &b).map_err(|e| format!("input {}: {e}", show(xs)));
        vec![n.clone(), mul(c, &bb), div(h)?, div(w)?]
    };
    Ok(vec![Out::new(dtype, Some(out))])
}
