//! Arithmetic on dimensions: broadcasting, merging, products, axes and sliding windows.
//!
//! A [`Dim`] is `Known`, a named symbol, or unknown. Every function here errs only when two known
//! values contradict each other; otherwise it degrades to an unknown dimension.

use crate::shape::{Dim, Shape};

/// Formats dims for messages (`[1,3,?,N]`).
pub(super) fn show(dims: &[Dim]) -> String {
    Shape(dims.to_vec()).to_string()
}

/// Multidirectional (numpy) broadcasting of several shapes.
pub(super) fn broadcast(shapes: &[&[Dim]]) -> Result<Vec<Dim>, String> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let mut acc = Dim::Known(1);
        for s in shapes {
            let Some(d) = (i + s.len()).checked_sub(rank).map(|j| &s[j]) else { continue };
            acc = broadcast_dim(&acc, d).ok_or_else(|| {
                let all: Vec<String> = shapes.iter().map(|s| show(s)).collect();
                format!("shapes {} do not broadcast", all.join(" and "))
            })?;
        }
        out.push(acc);
    }
    Ok(out)
}

/// Two dims broadcast together; `None` for two different known values, neither 1.
fn broadcast_dim(a: &Dim, b: &Dim) -> Option<Dim> {
    Some(match (a, b) {
        (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
        (Dim::Known(x), Dim::Known(y)) if x == y => Dim::Known(*x),
        (Dim::Known(_), Dim::Known(_)) => return None,
        // The other side is 1 or equal to this known value.
        (Dim::Known(x), _) | (_, Dim::Known(x)) => Dim::Known(*x),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => Dim::Sym(x.clone()),
        _ => Dim::Unknown,
    })
}

/// Two dims that must be equal: the most precise of both, or an error when known and different.
pub(super) fn merge(a: &Dim, b: &Dim) -> Result<Dim, String> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if x != y => Err(format!("dimension {x} does not match {y}")),
        (Dim::Known(x), _) | (_, Dim::Known(x)) => Ok(Dim::Known(*x)),
        (Dim::Sym(s), _) | (_, Dim::Sym(s)) => Ok(Dim::Sym(s.clone())),
        _ => Ok(Dim::Unknown),
    }
}

pub(super) fn add(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x.checked_add(*y).map_or(Dim::Unknown, Dim::Known),
        (Dim::Known(0), d) | (d, Dim::Known(0)) => d.clone(),
        _ => Dim::Unknown,
    }
}

pub(super) fn mul(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => x.checked_mul(*y).map_or(Dim::Unknown, Dim::Known),
        (Dim::Known(1), d) | (d, Dim::Known(1)) => d.clone(),
        (Dim::Known(0), _) | (_, Dim::Known(0)) => Dim::Known(0),
        _ => Dim::Unknown,
    }
}

/// Exact division; `Err` when both are known and `b` does not divide `a`.
pub(super) fn div_exact(a: &Dim, b: &Dim) -> Result<Dim, String> {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) if *y > 0 && x.checked_rem(*y) == Some(0) => Ok(Dim::Known(x / y)),
        (Dim::Known(x), Dim::Known(y)) => Err(format!("dimension {x} is not a multiple of {y}")),
        (d, Dim::Known(1)) => Ok(d.clone()),
        _ => Ok(Dim::Unknown),
    }
}

pub(super) fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::Known(1), |acc, d| mul(&acc, d))
}

/// The dimension `-1` stands for in a reshape of `input` to `others` (the target without the
/// `-1`). Symbols present on both sides cancel out. `Err` when everything is known and the element
/// count does not divide.
pub(super) fn reshape_rest(input: &[Dim], others: &[Dim]) -> Result<Dim, String> {
    let split = |dims: &[Dim]| -> Option<(i64, Vec<String>)> {
        let mut known = 1i64;
        let mut syms = Vec::new();
        for d in dims {
            match d {
                Dim::Known(v) => known = known.checked_mul(*v)?,
                Dim::Sym(s) => syms.push(s.clone()),
                Dim::Unknown => return None,
            }
        }
        Some((known, syms))
    };
    let (Some((known_in, mut syms_in)), Some((known_out, syms_out))) = (split(input), split(others)) else {
        return Ok(Dim::Unknown);
    };
    for s in syms_out {
        match syms_in.iter().position(|x| *x == s) {
            Some(p) => {
                syms_in.swap_remove(p);
            }
            None => return Ok(Dim::Unknown),
        }
    }
    if known_out == 0 {
        return Ok(Dim::Unknown);
    }
    match syms_in.as_slice() {
        [] if known_in.checked_rem(known_out) == Some(0) => Ok(Dim::Known(known_in / known_out)),
        [] => Err(format!("cannot reshape {} elements into a shape with a multiple of {known_out} elements", known_in)),
        [s] if known_in == known_out => Ok(Dim::Sym(s.clone())),
        _ => Ok(Dim::Unknown),
    }
}

/// An axis in `[-rank, rank)` made non-negative.
pub(super) fn axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { (axis + r) as usize } else { axis as usize })
}

/// Largest rank accepted for a tensor whose rank is read from the length of a shape input.
pub(super) const MAX_RANK: usize = 1024;

/// The length of a 1-D shape tensor: the rank of the shape it holds (`None` if unknown or absurd).
pub(super) fn shape_input_len(shape: Option<&[Dim]>) -> Option<usize> {
    match shape? {
        [Dim::Known(k)] => usize::try_from(*k).ok().filter(|k| *k <= MAX_RANK),
        _ => None,
    }
}

/// Several axes made non-negative; repeated axes are an error.
pub(super) fn axes(list: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(list.len());
    for &a in list {
        let a = axis(a, rank)?;
        if out.contains(&a) {
            return Err(format!("axis {a} is repeated in {list:?}"));
        }
        out.push(a);
    }
    Ok(out)
}

/// How a convolution or pooling window pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

impl AutoPad {
    pub(super) fn parse(s: Option<String>) -> Result<AutoPad, String> {
        match s.as_deref() {
            None | Some("NOTSET") | Some("") => Ok(AutoPad::NotSet),
            Some("SAME_UPPER") => Ok(AutoPad::SameUpper),
            Some("SAME_LOWER") => Ok(AutoPad::SameLower),
            Some("VALID") => Ok(AutoPad::Valid),
            Some(other) => Err(format!("unknown auto_pad '{other}'")),
        }
    }

    pub(super) fn is_same(self) -> bool {
        matches!(self, AutoPad::SameUpper | AutoPad::SameLower)
    }
}

/// One spatial axis of a sliding window.
#[derive(Clone, Copy, Debug)]
pub(super) struct Window {
    pub kernel: i64,
    pub stride: i64,
    pub dilation: i64,
    /// Explicit padding at the start and the end (used when `auto_pad` is `NOTSET`).
    pub pads: (i64, i64),
}

impl Window {
    /// Output length of the window sliding over `input` (ONNX Conv and pooling formulas; with
    /// `ceil_mode` a last window starting in the end padding is dropped, as onnxruntime does).
    pub(super) fn output(&self, input: &Dim, auto_pad: AutoPad, ceil_mode: bool) -> Result<Dim, String> {
        let Dim::Known(n) = *input else { return Ok(Dim::Unknown) };
        if self.stride <= 0 || self.kernel <= 0 || self.dilation <= 0 {
            return Err(format!("kernel {}, stride {} and dilation {} must be positive", self.kernel, self.stride, self.dilation));
        }
        // Wide integers: attributes are user data and must not overflow.
        let (n, stride) = (i128::from(n), i128::from(self.stride));
        let extent = (i128::from(self.kernel) - 1) * i128::from(self.dilation) + 1;
        let out = match auto_pad {
            AutoPad::SameUpper | AutoPad::SameLower => (n + stride - 1) / stride,
            AutoPad::Valid | AutoPad::NotSet => {
                let (begin, end) = if auto_pad == AutoPad::Valid { (0, 0) } else { (i128::from(self.pads.0), i128::from(self.pads.1)) };
                let span = n + begin + end - extent;
                if span < 0 {
                    return Err(format!("the window of extent {extent} is larger than the padded input {}", n + begin + end));
                }
                let mut out = if ceil_mode { (span + stride - 1) / stride + 1 } else { span / stride + 1 };
                if ceil_mode && (out - 1) * stride >= n + begin {
                    out -= 1;
                }
                out
            }
        };
        known(out)
    }
}

/// A computed dimension, which must fit an `i64`.
pub(super) fn known(v: i128) -> Result<Dim, String> {
    i64::try_from(v).map(Dim::Known).map_err(|_| format!("a dimension of {v} does not fit in 64 bits"))
}
