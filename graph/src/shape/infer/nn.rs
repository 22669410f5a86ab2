//! Convolution, pooling and normalisation.
//!
//! Convolution and pooling follow the ONNX formulas for `auto_pad` (`NOTSET` with explicit `pads`,
//! `SAME_UPPER`/`SAME_LOWER`: `ceil(in / stride)`, `VALID`: no padding), `strides`, `dilations` and
//! (pooling) `ceil_mode`. A Conv whose weight does not match the input's channels and group is an
//! error.

use super::dims::{AutoPad, Window, known, merge, show};
use super::{Ctx, Out, RuleResult};
use crate::channels::WeightAxes;
use crate::dtype::DataType;
use crate::shape::Dim;

/// Window attributes of a node with `spatial` spatial axes.
struct WindowAttrs {
    auto_pad: AutoPad,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    pads: Vec<i64>,
}

impl WindowAttrs {
    fn read(ctx: &Ctx, spatial: usize) -> Result<WindowAttrs, String> {
        let list = |name: &str, len: usize, default: i64| -> Result<Vec<i64>, String> {
            match ctx.attr_ints(name) {
                None => Ok(vec![default; len]),
                Some(v) if v.len() == len => Ok(v.to_vec()),
                Some(v) => Err(format!("'{name}' has {} values {v:?}, expected {len}", v.len())),
            }
        };
        Ok(WindowAttrs {
            auto_pad: AutoPad::parse(ctx.attr_string("auto_pad"))?,
            strides: list("strides", spatial, 1)?,
            dilations: list("dilations", spatial, 1)?,
            pads: list("pads", 2 * spatial, 0)?,
        })
    }

    fn window(&self, i: usize, kernel: i64) -> Window {
        let spatial = self.strides.len();
        Window { kernel, stride: self.strides[i], dilation: self.dilations[i], pads: (self.pads[i], self.pads[i + spatial]) }
    }
}

/// The kernel's spatial size: the `kernel_shape` attribute, else the weight's spatial dims.
fn kernel_shape(ctx: &Ctx, w: Option<&[Dim]>, spatial: usize) -> Result<Option<Vec<i64>>, String> {
    if let Some(k) = ctx.attr_ints("kernel_shape") {
        if k.len() != spatial {
            return Err(format!("kernel_shape {k:?} does not have {spatial} values"));
        }
        return Ok(Some(k.to_vec()));
    }
    Ok(w.and_then(|w| w.get(2..)).and_then(|k| k.iter().map(Dim::known).collect()))
}

/// An error message about the input of shape `xs`.
fn on_input(xs: Option<&[Dim]>, message: String) -> String {
    match xs {
        Some(xs) => format!("input {}: {message}", show(xs)),
        None => message,
    }
}

pub(super) fn conv(ctx: &Ctx) -> RuleResult {
    conv_like(ctx, 0, 1, ctx.dtype(0))
}

/// A convolution reading its data from input `x` and its weight from input `w`
/// (Conv, ConvInteger, QLinearConv).
pub(super) fn conv_like(ctx: &Ctx, x: usize, w: usize, dtype: Option<DataType>) -> RuleResult {
    let (xs, ws) = (ctx.dims(x), ctx.dims(w));
    let Some(rank) = xs.or(ws).map(<[Dim]>::len) else { return Ok(vec![Out::new(dtype, None)]) };
    if rank < 3 {
        return Err(format!("expects an input of rank 3 or more, got {}", show(xs.or(ws).unwrap_or_default())));
    }
    if let (Some(xs), Some(ws)) = (xs, ws)
        && xs.len() != ws.len()
    {
        return Err(format!("input {} and weight {} have different ranks", show(xs), show(ws)));
    }
    let spatial = rank - 2;
    let group = ctx.attr_int("group", 1);
    let attrs = WindowAttrs::read(ctx, spatial)?;
    let kernel = kernel_shape(ctx, ws, spatial)?;

    let axes = WeightAxes::of("Conv", false, rank).expect("rank checked");
    let batch = xs.map_or(Dim::Unknown, |x| x[0].clone());
    let out_channels = ws.map_or(Dim::Unknown, |w| w[axes.output].clone());
    if let (Some(xs), Some(ws)) = (xs, ws) {
        let (c, wc, m) = (xs[1].known(), ws[axes.input].known(), ws[axes.output].known());
        if let (Some(c), Some(wc)) = (c, wc)
            && i128::from(c) != i128::from(wc) * i128::from(group)
        {
            let expected = i128::from(wc) * i128::from(group);
            return Err(format!("input {} has {c} channels but weight {} with group {group} expects {expected}", show(xs), show(ws)));
        }
        if let Some(m) = m
            && (group <= 0 || m % group != 0)
        {
            return Err(format!("weight {} has {m} output channels, not a multiple of group {group}", show(ws)));
        }
    }
    let mut out = vec![batch, out_channels];
    for i in 0..spatial {
        let input = xs.map_or(Dim::Unknown, |x| x[i + 2].clone());
        out.push(match &kernel {
            Some(k) => attrs.window(i, k[i]).output(&input, attrs.auto_pad, false).map_err(|e| on_input(xs, e))?,
            None => Dim::Unknown,
        });
    }
    Ok(vec![Out::new(dtype, Some(out))])
}

pub(super) fn conv_transpose(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let (xs, ws) = (ctx.dims(0), ctx.dims(1));
    let Some(rank) = xs.or(ws).map(<[Dim]>::len) else { return Ok(vec![Out::new(dtype, None)]) };
    if rank < 3 {
        return Err(format!("expects an input of rank 3 or more, got {}", show(xs.or(ws).unwrap_or_default())));
    }
    let spatial = rank - 2;
    let group = ctx.attr_int("group", 1);
    let axes = WeightAxes::of("ConvTranspose", false, rank).expect("rank checked");
    let attrs = WindowAttrs::read(ctx, spatial)?;
    let kernel = kernel_shape(ctx, ws, spatial)?;
    let output_padding = match ctx.attr_ints("output_padding") {
        None => vec![0; spatial],
        Some(p) if p.len() == spatial => p.to_vec(),
        Some(p) => return Err(format!("output_padding {p:?} does not have {spatial} values")),
    };
    if let (Some(xs), Some(ws)) = (xs, ws) {
        if xs.len() != ws.len() {
            return Err(format!("input {} and weight {} have different ranks", show(xs), show(ws)));
        }
        merge(&xs[1], &ws[axes.input]).map_err(|_| format!("input {} does not have the channels of weight {}", show(xs), show(ws)))?;
    }

    let batch = xs.map_or(Dim::Unknown, |x| x[0].clone());
    let out_channels = ws.map_or(Dim::Unknown, |w| super::dims::mul(&w[axes.output], &Dim::Known(group)));
    let mut out = vec![batch, out_channels];
    // An explicit output_shape gives the spatial dims (written with or without N and C).
    if let Some(shape) = ctx.attr_ints("output_shape") {
        let spatial_dims = match shape.len() {
            n if n == spatial => shape,
            n if n == rank => &shape[2..],
            _ => return Err(format!("output_shape {shape:?} has neither {spatial} nor {rank} values")),
        };
        out.extend(spatial_dims.iter().map(|&d| Dim::Known(d)));
        return Ok(vec![Out::new(dtype, Some(out))]);
    }
    for i in 0..spatial {
        let input = xs.map_or(Dim::Unknown, |x| x[i + 2].clone());
        let (Dim::Known(n), Some(k)) = (input, &kernel) else {
            out.push(Dim::Unknown);
            continue;
        };
        let w = attrs.window(i, k[i]);
        // Wide integers: attributes are user data and must not overflow.
        let (n, stride) = (i128::from(n), i128::from(w.stride));
        let d = if attrs.auto_pad.is_same() {
            n * stride
        } else {
            let (begin, end) = if attrs.auto_pad == AutoPad::Valid { (0, 0) } else { w.pads };
            let extent = (i128::from(w.kernel) - 1) * i128::from(w.dilation) + 1;
            stride * (n - 1) + i128::from(output_padding[i]) + extent - i128::from(begin) - i128::from(end)
        };
        if d <= 0 {
            return Err(format!("spatial axis {i} of input {} gives an output of size {d}", show(xs.unwrap_or_default())));
        }
        out.push(known(d)?);
    }
    Ok(vec![Out::new(dtype, Some(out))])
}

/// MaxPool, AveragePool, LpPool (MaxPool's optional second output holds int64 indices).
pub(super) fn pool(ctx: &Ctx) -> RuleResult {
    let dtype = ctx.dtype(0);
    let Some(xs) = ctx.dims(0) else { return Ok(vec![Out::new(dtype, None), Out::new(Some(DataType::Int64), None)]) };
    if xs.len() < 3 {
        return Err(format!("expects an input of rank 3 or more, got {}", show(xs)));
    }
    let spatial = xs.len() - 2;
    let attrs = WindowAttrs::read(ctx, spatial)?;
    let ceil_mode = ctx.attr_int("ceil_mode", 0) != 0;
    let kernel = kernel_shape(ctx, None, spatial)?;
    let mut out = vec![xs[0].clone(), xs[1].clone()];
    for i in 0..spatial {
        out.push(match &kernel {
            Some(k) => attrs.window(i, k[i]).output(&xs[i + 2], attrs.auto_pad, ceil_mode).map_err(|e| on_input(Some(xs), e))?,
            None => Dim::Unknown,
        });
    }
    Ok(vec![Out::new(dtype, Some(out.clone())), Out::new(Some(DataType::Int64), Some(out))])
}

/// GlobalAveragePool, GlobalMaxPool, GlobalLpPool: spatial dims become 1.
pub(super) fn global_pool(ctx: &Ctx) -> RuleResult {
    let shape = ctx.dims(0).map(|x| x.iter().enumerate().map(|(i, d)| if i < 2 { d.clone() } else { Dim::Known(1) }).collect());
    Ok(vec![Out::new(ctx.dtype(0), shape)])
}

/// BatchNormalization: `Y` like `X`; the optional statistics outputs are `[C]`.
pub(super) fn batch_norm(ctx: &Ctx) -> RuleResult {
    let xs = ctx.dims(0);
    let mut channels = xs.and_then(|x| x.get(1)).cloned().unwrap_or(Dim::Unknown);
    for i in 1..5 {
        if let Some(p) = ctx.dims(i) {
            let [c] = p else { return Err(format!("parameter {i} has shape {}, expected one dimension", show(p))) };
            channels = merge(&channels, c)
                .map_err(|_| format!("input {} does not match parameter {i} of shape {}", show(xs.unwrap_or_default()), show(p)))?;
        }
    }
    let stats = Out::new(ctx.dtype(1).or(ctx.dtype(0)), Some(vec![channels]));
    let mut outs = vec![Out::new(ctx.dtype(0), xs.map(<[Dim]>::to_vec))];
    outs.extend(std::iter::repeat_n(stats, ctx.num_outputs().saturating_sub(1)));
    Ok(outs)
}

/// LayerNormalization: `Y` like `X`; `Mean` and `InvStdDev` keep the axes before `axis`, with 1s after.
pub(super) fn layer_norm(ctx: &Ctx) -> RuleResult {
    let Some(xs) = ctx.dims(0) else { return Ok(vec![Out::new(ctx.dtype(0), None)]) };
    let axis = super::dims::axis(ctx.attr_int("axis", -1), xs.len())?;
    let stats: Vec<Dim> = xs.iter().enumerate().map(|(i, d)| if i < axis { d.clone() } else { Dim::Known(1) }).collect();
    let stash = ctx.node.attr_int("stash_type").and_then(|c| i32::try_from(c).ok()).and_then(DataType::from_onnx);
    let stash = Some(stash.unwrap_or(DataType::Float));
    Ok(vec![Out::new(ctx.dtype(0), Some(xs.to_vec())), Out::new(stash, Some(stats.clone())), Out::new(stash, Some(stats))])
}
