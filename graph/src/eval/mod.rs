//! The one ONNX-semantics evaluator: computes an operation on constant inputs.
//!
//! Constant folding uses it on whole tensors, and the known-value tracking of shape inference
//! shares its element-wise semantics ([`scalar`]). It covers the shape arithmetic exporters emit
//! (Shape, Gather, Slice, Concat, Unsqueeze, Squeeze, Reshape, Flatten, Cast, Range, element-wise
//! arithmetic, comparisons and logic, Where, Expand, Transpose...) on f32, i64, i32 and bool
//! tensors, following the ONNX operator definitions; every result's element type is the one ONNX
//! gives (checked against tract, tensor by tensor, in `tests/constant_eval.rs`). Anything else is
//! `Unsupported`, and the caller leaves the node alone: whittle has no second evaluator.

pub mod index;
pub mod scalar;

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use crate::dtype::DataType;
use crate::ir::Node;
use crate::tensor::Tensor;
use scalar::BinOp;

/// Why a node was not evaluated.
#[derive(Debug, PartialEq)]
pub enum EvalError {
    /// The evaluator does not implement this op or these element types.
    Unsupported(String),
    /// The inputs are invalid for the op (the model is wrong, or the node is not what it seems).
    Invalid(String),
}

type R<T> = Result<T, EvalError>;

fn unsupported<T>(what: impl Into<String>) -> R<T> {
    Err(EvalError::Unsupported(what.into()))
}

fn invalid<T>(what: impl Into<String>) -> R<T> {
    Err(EvalError::Invalid(what.into()))
}

/// A constant as an n-d array of one of the element types the evaluator computes with.
#[derive(Clone, Debug, PartialEq)]
enum Arr {
    F32(ArrayD<f32>),
    /// Integers (i64 and i32; the element type is carried separately).
    Int(ArrayD<i64>, DataType),
    Bool(ArrayD<bool>),
}

fn shape_of(dims: &[i64]) -> IxDyn {
    IxDyn(&dims.iter().map(|&d| d.max(0) as usize).collect::<Vec<_>>())
}

impl Arr {
    fn from_tensor(t: &Tensor) -> R<Arr> {
        let shape = shape_of(t.dims());
        let bad = |e: String| EvalError::Invalid(e);
        Ok(match t.dtype() {
            DataType::Float => {
                Arr::F32(ArrayD::from_shape_vec(shape, t.to_f32().map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?)
            }
            dt @ (DataType::Int64 | DataType::Int32) => {
                Arr::Int(ArrayD::from_shape_vec(shape, t.to_i64().map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?, dt)
            }
            DataType::Bool => {
                let v = t.to_i64().map_err(|e| bad(e.to_string()))?.into_iter().map(|b| b != 0).collect();
                Arr::Bool(ArrayD::from_shape_vec(shape, v).map_err(|e| bad(e.to_string()))?)
            }
            other => return unsupported(format!("element type {other}")),
        })
    }

    fn to_tensor(&self, name: &str) -> Tensor {
        let dims = |s: &[usize]| s.iter().map(|&d| d as i64).collect::<Vec<_>>();
        match self {
            Arr::F32(a) => Tensor::from_f32(name, &dims(a.shape()), &a.iter().copied().collect::<Vec<_>>()),
            Arr::Int(a, DataType::Int32) => {
                let raw = a.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect();
                Tensor::from_raw(name, DataType::Int32, &dims(a.shape()), raw)
            }
            Arr::Int(a, _) => Tensor::from_i64(name, &dims(a.shape()), &a.iter().copied().collect::<Vec<_>>()),
            Arr::Bool(a) => Tensor::from_raw(name, DataType::Bool, &dims(a.shape()), a.iter().map(|&b| b as u8).collect()),
        }
    }

    fn shape(&self) -> &[usize] {
        match self {
            Arr::F32(a) => a.shape(),
            Arr::Int(a, _) => a.shape(),
            Arr::Bool(a) => a.shape(),
        }
    }

    fn ints(&self) -> R<Vec<i64>> {
        match self {
            Arr::Int(a, _) => Ok(a.iter().copied().collect()),
            _ => invalid("expected an integer tensor"),
        }
    }

    /// Applies the same structural operation to whichever array this is.
    fn map_any(&self, f: &dyn Fn(AnyView) -> R<AnyOwned>) -> R<Arr> {
        Ok(match self {
            Arr::F32(a) => match f(AnyView::F32(a))? {
                AnyOwned::F32(b) => Arr::F32(b),
                _ => unreachable!("structural op keeps the type"),
            },
            Arr::Int(a, dt) => match f(AnyView::Int(a))? {
                AnyOwned::Int(b) => Arr::Int(b, *dt),
                _ => unreachable!("structural op keeps the type"),
            },
            Arr::Bool(a) => match f(AnyView::Bool(a))? {
                AnyOwned::Bool(b) => Arr::Bool(b),
                _ => unreachable!("structural op keeps the type"),
            },
        })
    }
}

enum AnyView<'a> {
    F32(&'a ArrayD<f32>),
    Int(&'a ArrayD<i64>),
    Bool(&'a ArrayD<bool>),
}

enum AnyOwned {
    F32(ArrayD<f32>),
    Int(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

/// Runs a generic structural operation on any element type.
macro_rules! structural {
    ($arr:expr, |$a:ident| $body:expr) => {
        $arr.map_any(&|v| {
            Ok(match v {
                AnyView::F32($a) => AnyOwned::F32($body?),
                AnyView::Int($a) => AnyOwned::Int($body?),
                AnyView::Bool($a) => AnyOwned::Bool($body?),
            })
        })
    };
}

fn norm_axis(axis: i64, rank: usize) -> R<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank {
        return invalid(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(a as usize)
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| {
            let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
            let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
            match (da, db) {
                (x, y) if x == y => Ok(x),
                (1, y) => Ok(y),
                (x, 1) => Ok(x),
                _ => invalid(format!("shapes {a:?} and {b:?} do not broadcast")),
            }
        })
        .collect()
}

fn zip2<A: Clone, B: Clone, C>(a: &ArrayD<A>, b: &ArrayD<B>, f: impl Fn(A, B) -> C) -> R<ArrayD<C>> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let (av, bv) = (a.broadcast(IxDyn(&shape)).expect("checked"), b.broadcast(IxDyn(&shape)).expect("checked"));
    Ok(Zip::from(&av).and(&bv).map_collect(|x, y| f(x.clone(), y.clone())))
}

fn undefined(op: BinOp) -> EvalError {
    EvalError::Unsupported(format!("{op:?} is undefined for some of these elements (division by zero?)"))
}

/// Collects element results, failing on the first undefined one.
fn defined<T>(a: ArrayD<Option<T>>, op: BinOp) -> R<ArrayD<T>> {
    let shape = a.raw_dim();
    let v: Option<Vec<T>> = a.into_iter().collect();
    Ok(ArrayD::from_shape_vec(shape, v.ok_or_else(|| undefined(op))?).expect("same shape"))
}

fn binary(op_type: &str, fmod: bool, a: &Arr, b: &Arr) -> R<Arr> {
    let Some(op) = BinOp::from_op(op_type, fmod) else { return unsupported(op_type) };
    let bool_out = |r: ArrayD<i64>| Arr::Bool(r.mapv(|x| x != 0));
    Ok(match (a, b) {
        (Arr::F32(a), Arr::F32(b)) if !op.is_logical() => {
            let r = defined(zip2(a, b, |x, y| scalar::float_binary(op, x as f64, y as f64))?, op)?;
            if op.gives_bool() { Arr::Bool(r.mapv(|x| x != 0.0)) } else { Arr::F32(r.mapv(|x| x as f32)) }
        }
        (Arr::Int(_, da), Arr::Int(_, db)) if da != db => return invalid(format!("{op_type} of {da} and {db}")),
        (Arr::Int(a, dt), Arr::Int(b, _)) if !op.is_logical() => {
            let r = defined(zip2(a, b, |x, y| scalar::int_binary(op, x, y, *dt))?, op)?;
            if op.gives_bool() { bool_out(r) } else { Arr::Int(r, *dt) }
        }
        (Arr::Bool(a), Arr::Bool(b)) if op.is_logical() || op == BinOp::Equal => {
            bool_out(defined(zip2(a, b, |x, y| scalar::int_binary(op, x as i64, y as i64, DataType::Bool))?, op)?)
        }
        (Arr::F32(_), Arr::F32(_)) | (Arr::Int(..), Arr::Int(..)) | (Arr::Bool(_), Arr::Bool(_)) => {
            return invalid(format!("{op_type} is not defined on these element types"));
        }
        _ => return unsupported(format!("{op_type} on mixed element types")),
    })
}

fn unary(op: &str, a: &Arr) -> R<Arr> {
    let none = || EvalError::Unsupported(format!("{op} on these element types"));
    Ok(match a {
        Arr::F32(a) => {
            let v: Option<Vec<f32>> = a.iter().map(|&x| scalar::float_unary(op, x as f64).map(|r| r as f32)).collect();
            Arr::F32(ArrayD::from_shape_vec(a.raw_dim(), v.ok_or_else(none)?).expect("same shape"))
        }
        Arr::Int(a, dt) => {
            let v: Option<Vec<i64>> = a.iter().map(|&x| scalar::int_unary(op, x, *dt)).collect();
            Arr::Int(ArrayD::from_shape_vec(a.raw_dim(), v.ok_or_else(none)?).expect("same shape"), *dt)
        }
        Arr::Bool(a) => {
            let v: Option<Vec<bool>> = a.iter().map(|&x| scalar::int_unary(op, x as i64, DataType::Bool).map(|r| r != 0)).collect();
            Arr::Bool(ArrayD::from_shape_vec(a.raw_dim(), v.ok_or_else(none)?).expect("same shape"))
        }
    })
}

fn cast(a: &Arr, to: DataType) -> R<Arr> {
    Ok(match (a, to) {
        (Arr::F32(a), DataType::Float) => Arr::F32(a.clone()),
        (Arr::Int(a, _), DataType::Float) => Arr::F32(a.mapv(|x| x as f32)),
        (Arr::Bool(a), DataType::Float) => Arr::F32(a.mapv(|x| x as u8 as f32)),
        (Arr::F32(a), DataType::Int64 | DataType::Int32) => {
            let v: Option<Vec<i64>> = a.iter().map(|&x| scalar::float_to_int(x as f64, to)).collect();
            let v =
                v.ok_or_else(|| EvalError::Unsupported(format!("Cast of NaN, an infinity or a value outside {to} (undefined in ONNX)")))?;
            Arr::Int(ArrayD::from_shape_vec(a.raw_dim(), v).expect("same shape"), to)
        }
        (Arr::Int(a, _), DataType::Int64 | DataType::Int32) => Arr::Int(a.mapv(|x| scalar::wrap_int(x, to).expect("integer type")), to),
        (Arr::Bool(a), DataType::Int64 | DataType::Int32) => Arr::Int(a.mapv(|x| x as i64), to),
        (Arr::F32(a), DataType::Bool) => Arr::Bool(a.mapv(|x| x != 0.0)),
        (Arr::Int(a, _), DataType::Bool) => Arr::Bool(a.mapv(|x| x != 0)),
        (Arr::Bool(a), DataType::Bool) => Arr::Bool(a.clone()),
        (_, other) => return unsupported(format!("Cast to {other}")),
    })
}

/// Axes from the attribute (older opsets) or the input at `slot` (newer).
fn axes(node: &Node, inputs: &[Option<Arr>], slot: usize) -> R<Option<Vec<i64>>> {
    if let Some(a) = node.attr_ints("axes") {
        return Ok(Some(a.to_vec()));
    }
    inputs.get(slot).cloned().flatten().map(|a| a.ints()).transpose()
}

/// Evaluates `node` on known inputs; the results have the element types ONNX defines.
pub fn eval_node(node: &Node, inputs: &[Option<&Tensor>]) -> R<Vec<Tensor>> {
    let arrs: Vec<Option<Arr>> = inputs.iter().map(|t| t.map(Arr::from_tensor).transpose()).collect::<R<_>>()?;
    let input =
        |i: usize| -> R<&Arr> { arrs.get(i).and_then(|a| a.as_ref()).ok_or_else(|| EvalError::Invalid(format!("input {i} missing"))) };
    let op = node.op_type();
    if !node.domain().is_empty() {
        return unsupported(format!("domain {}", node.domain()));
    }
    let out = match op {
        "Add" | "Sub" | "Mul" | "Div" | "Mod" | "Pow" | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
        | "Xor" => binary(op, node.attr_int("fmod").unwrap_or(0) != 0, input(0)?, input(1)?)?,
        "Max" | "Min" | "Sum" => {
            let mut acc = input(0)?.clone();
            for i in 1..arrs.len() {
                acc = binary(op, false, &acc, input(i)?)?;
            }
            acc
        }
        op if scalar::UNARY_OPS.contains(&op) => unary(op, input(0)?)?,
        "Cast" => {
            let to = node
                .attr_int("to")
                .and_then(|t| DataType::from_onnx(t as i32))
                .ok_or(EvalError::Invalid("Cast without a valid `to`".into()))?;
            cast(input(0)?, to)?
        }
        "Shape" | "Size" => {
            let dims: Vec<i64> = input(0)?.shape().iter().map(|&d| d as i64).collect();
            return Ok(vec![shape_or_size(node, &dims)]);
        }
        "Unsqueeze" => {
            let a = input(0)?;
            let ax = axes(node, &arrs, 1)?.ok_or(EvalError::Invalid("Unsqueeze without axes".into()))?;
            let rank = a.shape().len() + ax.len();
            let mut ax: Vec<usize> = ax.iter().map(|&x| norm_axis(x, rank)).collect::<R<_>>()?;
            ax.sort();
            let mut shape: Vec<usize> = a.shape().to_vec();
            for x in ax {
                shape.insert(x, 1);
            }
            reshape(a, &shape)?
        }
        "Squeeze" => {
            let a = input(0)?;
            let rank = a.shape().len();
            let ax: Vec<usize> = match axes(node, &arrs, 1)? {
                Some(ax) => ax.iter().map(|&x| norm_axis(x, rank)).collect::<R<_>>()?,
                None => (0..rank).filter(|&i| a.shape()[i] == 1).collect(),
            };
            if ax.iter().any(|&x| a.shape()[x] != 1) {
                return invalid("Squeeze of a dimension that is not 1");
            }
            let shape: Vec<usize> = a.shape().iter().enumerate().filter(|(i, _)| !ax.contains(i)).map(|(_, &d)| d).collect();
            reshape(a, &shape)?
        }
        "Reshape" => {
            let a = input(0)?;
            let target = input(1)?.ints()?;
            let allow_zero = node.attr_int("allowzero").unwrap_or(0) != 0;
            let shape = reshape_target(a.shape(), &target, allow_zero)?;
            reshape(a, &shape)?
        }
        "Flatten" => {
            let a = input(0)?;
            let rank = a.shape().len();
            let axis = node.attr_int("axis").unwrap_or(1);
            let axis = if axis < 0 { axis + rank as i64 } else { axis } as usize;
            let outer: usize = a.shape()[..axis.min(rank)].iter().product();
            let inner: usize = a.shape()[axis.min(rank)..].iter().product();
            reshape(a, &[outer, inner])?
        }
        "Concat" => {
            let parts: Vec<&Arr> = (0..arrs.len()).map(input).collect::<R<_>>()?;
            let rank = parts.first().map(|p| p.shape().len()).unwrap_or(0);
            let axis = norm_axis(node.attr_int("axis").ok_or(EvalError::Invalid("Concat without axis".into()))?, rank)?;
            concat(&parts, axis)?
        }
        "Gather" => {
            let a = input(0)?;
            let idx = input(1)?;
            let rank = a.shape().len();
            let axis = norm_axis(node.attr_int("axis").unwrap_or(0), rank)?;
            gather(a, idx, axis)?
        }
        "Slice" => slice(node, &arrs)?,
        "Transpose" => {
            let a = input(0)?;
            let rank = a.shape().len();
            let perm: Vec<usize> = match node.attr_ints("perm") {
                Some(p) => p.iter().map(|&x| norm_axis(x, rank)).collect::<R<_>>()?,
                None => (0..rank).rev().collect(),
            };
            structural!(a, |x| Ok::<_, EvalError>(x.clone().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned()))?
        }
        "Expand" => {
            let a = input(0)?;
            let target: Vec<usize> = input(1)?.ints()?.iter().map(|&d| d.max(0) as usize).collect();
            let shape = broadcast_shape(a.shape(), &target)?;
            structural!(a, |x| Ok::<_, EvalError>(x.broadcast(IxDyn(&shape)).expect("checked").to_owned()))?
        }
        "Where" => {
            let Arr::Bool(c) = input(0)? else { return invalid("Where condition is not bool") };
            match (input(1)?, input(2)?) {
                (Arr::F32(x), Arr::F32(y)) => Arr::F32(where3(c, x, y)?),
                (Arr::Int(x, dt), Arr::Int(y, _)) => Arr::Int(where3(c, x, y)?, *dt),
                _ => return unsupported("Where on these element types"),
            }
        }
        "Range" => {
            let scalar = |i: usize| -> R<f64> {
                Ok(match input(i)? {
                    Arr::F32(a) => *a.iter().next().ok_or(EvalError::Invalid("empty".into()))? as f64,
                    Arr::Int(a, _) => *a.iter().next().ok_or(EvalError::Invalid("empty".into()))? as f64,
                    Arr::Bool(_) => return invalid("Range of bool"),
                })
            };
            let (start, limit, delta) = (scalar(0)?, scalar(1)?, scalar(2)?);
            if delta == 0.0 {
                return invalid("Range with delta 0");
            }
            let n = match (input(0)?, input(1)?, input(2)?) {
                (Arr::Int(..), Arr::Int(..), Arr::Int(..)) => {
                    index::range_len_int(start as i64, limit as i64, delta as i64).map(|n| n as u64)
                }
                _ => index::range_len_float(start, limit, delta),
            }
            .ok_or(EvalError::Invalid("Range has no finite length".into()))? as usize;
            if n > 1 << 20 {
                return unsupported("Range longer than 2^20 elements");
            }
            match input(0)? {
                Arr::F32(_) => {
                    Arr::F32(ArrayD::from_shape_vec(IxDyn(&[n]), (0..n).map(|i| (start + i as f64 * delta) as f32).collect()).expect("1-D"))
                }
                Arr::Int(_, dt) => Arr::Int(
                    ArrayD::from_shape_vec(IxDyn(&[n]), (0..n).map(|i| (start + i as f64 * delta) as i64).collect()).expect("1-D"),
                    *dt,
                ),
                Arr::Bool(_) => return invalid("Range of bool"),
            }
        }
        _ => return unsupported(op),
    };
    Ok(vec![out.to_tensor("")])
}

/// The result of a `Shape` (with its `start`/`end`) or `Size` node whose input has these dims.
pub fn shape_or_size(node: &Node, dims: &[i64]) -> Tensor {
    if node.op_type() == "Size" {
        return Tensor::from_i64("", &[], &[dims.iter().product()]);
    }
    let (start, end) =
        index::shape_bounds(dims.len(), node.attr_int("start").unwrap_or(0), node.attr_int("end").unwrap_or(dims.len() as i64));
    let v = dims[start..end].to_vec();
    Tensor::from_i64("", &[v.len() as i64], &v)
}

fn reshape(a: &Arr, shape: &[usize]) -> R<Arr> {
    if shape.iter().product::<usize>() != a.shape().iter().product::<usize>() {
        return invalid(format!("cannot reshape {:?} to {shape:?}", a.shape()));
    }
    structural!(a, |x| x
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .map_err(|e| EvalError::Invalid(e.to_string())))
}

/// Resolves a Reshape target (0 copies the input dim unless `allowzero`, -1 is inferred).
pub fn reshape_target(input: &[usize], target: &[i64], allow_zero: bool) -> R<Vec<usize>> {
    let total: usize = input.iter().product();
    let mut out: Vec<Option<usize>> = Vec::with_capacity(target.len());
    for (i, &d) in target.iter().enumerate() {
        out.push(match d {
            -1 => None,
            0 if !allow_zero => Some(*input.get(i).ok_or(EvalError::Invalid("Reshape 0 past the input rank".into()))?),
            d if d >= 0 => Some(d as usize),
            _ => return invalid(format!("Reshape dimension {d}")),
        });
    }
    let known: usize = out.iter().flatten().product();
    match out.iter().filter(|d| d.is_none()).count() {
        0 => Ok(out.into_iter().flatten().collect()),
        1 if known > 0 && total.is_multiple_of(known) => Ok(out.into_iter().map(|d| d.unwrap_or(total / known)).collect()),
        _ => invalid(format!("cannot infer Reshape {target:?} of {input:?}")),
    }
}

fn concat(parts: &[&Arr], axis: usize) -> R<Arr> {
    macro_rules! cat {
        ($variant:ident $(, $dt:expr)?) => {{
            let views: Vec<_> = parts
                .iter()
                .map(|p| match p {
                    Arr::$variant(a, ..) => Ok(a.view()),
                    _ => invalid("Concat of mixed element types"),
                })
                .collect::<R<_>>()?;
            ndarray::concatenate(Axis(axis), &views).map_err(|e| EvalError::Invalid(e.to_string()))?
        }};
    }
    Ok(match parts.first() {
        Some(Arr::F32(_)) => Arr::F32(cat!(F32)),
        Some(Arr::Int(_, dt)) => Arr::Int(cat!(Int), *dt),
        Some(Arr::Bool(_)) => Arr::Bool(cat!(Bool)),
        None => return invalid("Concat of nothing"),
    })
}

fn gather(a: &Arr, idx: &Arr, axis: usize) -> R<Arr> {
    let dim = a.shape()[axis] as i64;
    let idx_shape = idx.shape().to_vec();
    let indices: Vec<usize> = idx
        .ints()?
        .into_iter()
        .map(|i| index::gather_index(i, dim).ok_or_else(|| EvalError::Invalid(format!("Gather index {i} out of range {dim}"))))
        .collect::<R<_>>()?;
    let mut out_shape: Vec<usize> = a.shape()[..axis].to_vec();
    out_shape.extend(&idx_shape);
    out_shape.extend(&a.shape()[axis + 1..]);
    structural!(a, |x| {
        let picked = x.select(Axis(axis), &indices).as_standard_layout().into_owned();
        picked.into_shape_with_order(IxDyn(&out_shape)).map_err(|e| EvalError::Invalid(e.to_string()))
    })
}

fn slice(node: &Node, arrs: &[Option<Arr>]) -> R<Arr> {
    let a = arrs.first().and_then(|a| a.as_ref()).ok_or(EvalError::Invalid("no data".into()))?;
    let rank = a.shape().len();
    let get = |i: usize, attr: &str| -> R<Option<Vec<i64>>> {
        if let Some(v) = node.attr_ints(attr) {
            return Ok(Some(v.to_vec()));
        }
        arrs.get(i).cloned().flatten().map(|x| x.ints()).transpose()
    };
    let starts = get(1, "starts")?.ok_or(EvalError::Invalid("Slice without starts".into()))?;
    let ends = get(2, "ends")?.ok_or(EvalError::Invalid("Slice without ends".into()))?;
    let axes = get(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = get(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return invalid("Slice starts, ends, axes and steps differ in length");
    }
    let mut out = a.clone();
    for (k, &start) in starts.iter().enumerate() {
        let axis = norm_axis(axes[k], rank)?;
        if steps[k] == 0 {
            return invalid("Slice step 0");
        }
        let picked = index::slice_indices(start, ends[k], steps[k], a.shape()[axis] as i64).ok_or_else(|| {
            EvalError::Unsupported("a negative-step Slice starting before the axis (runtimes disagree on its result)".into())
        })?;
        out = structural!(&out, |x| Ok::<_, EvalError>(x.select(Axis(axis), &picked)))?;
    }
    Ok(out)
}

fn where3<T: Clone>(c: &ArrayD<bool>, x: &ArrayD<T>, y: &ArrayD<T>) -> R<ArrayD<T>> {
    let shape = broadcast_shape(&broadcast_shape(c.shape(), x.shape())?, y.shape())?;
    let sh = IxDyn(&shape);
    let (cv, xv, yv) =
        (c.broadcast(sh.clone()).expect("checked"), x.broadcast(sh.clone()).expect("checked"), y.broadcast(sh).expect("checked"));
    Ok(Zip::from(&cv).and(&xv).and(&yv).map_collect(|c, x, y| if *c { x.clone() } else { y.clone() }))
}
