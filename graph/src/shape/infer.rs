//! Shape and dtype inference for the main graph, given concrete (or symbolic) input shapes.
//!
//! # Approach
//!
//! [`infer_shapes`] first sets the shape of every runtime input: from [`InferOptions`] when given,
//! else from the input's declaration (negative or `?` dimensions read as unknown). The declared
//! `ValueInfoProto`s are never touched, so export stays lossless. It then forgets the shapes of every
//! operation output (a declared `value_info` shape may be stale: re-running with other input shapes
//! must give the new shapes) and walks the nodes in [`Graph::topo_order`], applying one rule per op
//! type. A rule reads its inputs' shapes, dtypes and attributes through a `Ctx` and returns the
//! dtype, shape and (for small integer tensors) the contents of each output.
//!
//! **Shape arithmetic.** Real exports compute shapes at run time (`Shape → Gather → Unsqueeze →
//! Concat → Reshape`, `Shape → Slice → Cast`, `ConstantOfShape`, `Range`). Beside the shapes, a side
//! map keeps the known contents of small tensors (at most 64 elements): seeded
//! from constants and from `Shape` of a known shape, carried through `Gather`, `Slice`, `Concat`,
//! `Unsqueeze`, `Squeeze`, `Reshape`, `Cast`, integer arithmetic, `Equal`, `Where`, ..., and read by
//! `Reshape`, `Expand`, `Tile`, `Slice`, `ConstantOfShape`, `Resize`, `Range` and others. Integer
//! contents are held as [`Dim`]s, so a symbolic dimension read by `Shape` travels as a symbol
//! through the arithmetic and back into a shape. The graph itself is never modified (folding these
//! values into constants is a later pass's job).
//!
//! **Symbolic dimensions** are propagated where the rule is exact: element-wise ops and
//! broadcasting (`N` with `N` or with `1`), copies by `Reshape` (`0`, or a symbol read by `Shape`),
//! untouched axes of every layout op. Arithmetic on symbols gives an unknown dimension.
//!
//! **Failure policy.** An op without a rule (or of a non-default domain) is reported in
//! [`InferReport::unknown_ops`] and leaves its outputs without a shape (a declared dtype is kept).
//! A rule missing information (unknown rank, unknown `Reshape` target, ...) leaves the outputs
//! unknown or partially unknown. Neither fails. A rule returns an [`InferError`] only for a real
//! contradiction between fully known dimensions (a Conv whose weight does not match the input's
//! channels, shapes that do not broadcast, a Reshape that changes the element count), naming the
//! node and the shapes.
//!
//! **Subgraphs** (`If`, `Loop`, `Scan`) are not entered: these ops have no rule, so they are listed
//! in `unknown_ops` and their outputs stay unknown.
//!
//! Op rules live in one submodule per family: `elementwise`, `nn` (convolution, pooling,
//! normalisation), `linalg`, `layout` (movement ops), `gather`, `resize`, `reduce`, `generate`
//! (Shape, Range, ConstantOfShape, ...) and `quant`; `dims` holds the arithmetic on dimensions
//! and `values` the known contents of small tensors.

mod dims;
mod elementwise;
mod gather;
mod generate;
mod layout;
mod linalg;
mod nn;
mod quant;
mod reduce;
mod resize;
mod values;

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use crate::dtype::DataType;
use crate::ir::{Graph, Node, ValueId};
use crate::model::Model;
use crate::shape::{Dim, Shape, tensor_type_parts};

use values::Vals;

/// What [`infer_shapes`] needs besides the model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InferOptions {
    /// Shapes of runtime inputs, overriding their declared shapes. Inputs not listed keep their
    /// declared shape (symbolic dimensions stay symbolic).
    pub input_shapes: Vec<(String, Vec<i64>)>,
}

/// What [`infer_shapes`] could not do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InferReport {
    /// Op types without a rule (`domain:op` outside the default domain), sorted, deduplicated.
    pub unknown_ops: Vec<String>,
    /// Runtime inputs and operation outputs left without a fully known shape or dtype.
    pub unresolved: usize,
}

/// Why shape inference failed: bad options, or a contradiction in the model.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum InferError {
    #[error("no runtime input named '{name}'; the model's runtime inputs are: {}", .valid.join(", "))]
    UnknownInput { name: String, valid: Vec<String> },
    #[error("input '{name}' is given more than once")]
    DuplicateInput { name: String },
    #[error("input '{name}' is declared with rank {} ({declared}) but was given the shape {given:?} of rank {}", .declared.rank(), .given.len())]
    RankMismatch { name: String, declared: Shape, given: Vec<i64> },
    #[error("input '{name}': the shape {given:?} has a negative dimension")]
    NegativeDim { name: String, given: Vec<i64> },
    #[error("node '{node}' ({op_type}): {message}")]
    Inconsistent { node: String, op_type: String, message: String },
    #[error("the graph has a cycle through nodes {}", .0.join(" -> "))]
    Cycle(Vec<String>),
}

/// Infers the dtype and shape of every operation output of the main graph (see the module docs).
pub fn infer_shapes(model: &mut Model, opts: &InferOptions) -> Result<InferReport, InferError> {
    // A model without a default-domain import uses no default-domain op; any version will do.
    let opset = model.opset("").unwrap_or(i64::MAX);
    let graph = &mut model.graph;
    let order = graph.topo_order().map_err(|cycle| InferError::Cycle(cycle.iter().map(|n| graph.node_label(*n)).collect()))?;
    for (v, shape) in input_shapes(graph, opts)? {
        graph.value_mut(v).shape = shape;
    }
    // Forget shapes declared or inferred earlier: they may be stale.
    for &id in &order {
        let outputs: Vec<ValueId> = graph.node(id).map(|n| n.outputs().iter().flatten().copied().collect()).unwrap_or_default();
        for v in outputs {
            graph.value_mut(v).shape = None;
        }
    }

    let mut known: HashMap<ValueId, Vals> = HashMap::new();
    let mut unknown_ops: BTreeSet<String> = BTreeSet::new();
    for &id in &order {
        let Some(node) = graph.node(id) else { continue };
        let Some(rule) = rule_for(node) else {
            let op = if node.domain().is_empty() { node.op_type().to_string() } else { format!("{}:{}", node.domain(), node.op_type()) };
            unknown_ops.insert(op);
            continue;
        };
        let outputs: Vec<Option<ValueId>> = node.outputs().to_vec();
        let inconsistent =
            |message: String| InferError::Inconsistent { node: graph.node_label(id), op_type: node.op_type().to_string(), message };
        let outs = rule(&Ctx { graph, node, opset, known: &known }).map_err(inconsistent)?;
        if let Some((slot, dims)) = outs.iter().enumerate().find_map(|(i, o)| o.shape.as_ref().filter(|d| has_negative(d)).map(|d| (i, d)))
        {
            return Err(inconsistent(format!("output {slot} would have the negative shape {}", Shape(dims.clone()))));
        }
        for (out, v) in outs.into_iter().zip(outputs) {
            let Some(v) = v else { continue };
            if let Some(vals) = out.vals.filter(|vals| out.shape.as_deref().and_then(numel) == Some(vals.len())) {
                known.insert(v, vals);
            }
            let value = graph.value_mut(v);
            // A dtype the rule cannot tell stays as declared (dtypes do not depend on input shapes).
            value.dtype = out.dtype.or(value.dtype);
            value.shape = out.shape.map(Shape);
        }
    }

    let unresolved = count_unresolved(graph, &order);
    Ok(InferReport { unknown_ops: unknown_ops.into_iter().collect(), unresolved })
}

fn has_negative(dims: &[Dim]) -> bool {
    dims.iter().any(|d| matches!(d, Dim::Known(x) if *x < 0))
}

/// The shape of every runtime input: the given one, else the declared one. Checks the options
/// before anything is changed.
fn input_shapes(graph: &Graph, opts: &InferOptions) -> Result<Vec<(ValueId, Option<Shape>)>, InferError> {
    let runtime: Vec<ValueId> = graph.runtime_inputs().collect();
    let names: Vec<String> = runtime.iter().map(|v| graph.value(*v).name.clone()).collect();
    for (i, (name, _)) in opts.input_shapes.iter().enumerate() {
        if !names.contains(name) {
            return Err(InferError::UnknownInput { name: name.clone(), valid: names });
        }
        if opts.input_shapes[..i].iter().any(|(n, _)| n == name) {
            return Err(InferError::DuplicateInput { name: name.clone() });
        }
    }
    let mut shapes = Vec::with_capacity(runtime.len());
    for (v, name) in runtime.into_iter().zip(names) {
        let declared = graph
            .input_infos()
            .iter()
            .find(|(id, _)| *id == v)
            .and_then(|(_, info)| tensor_type_parts(info.r#type.as_ref()).1)
            .map(|s| Shape(s.0.into_iter().map(sanitize_declared).collect()));
        let shape = match opts.input_shapes.iter().find(|(n, _)| *n == name) {
            Some((_, given)) => {
                if given.iter().any(|&d| d < 0) {
                    return Err(InferError::NegativeDim { name, given: given.clone() });
                }
                if let Some(declared) = declared.filter(|d| d.rank() != given.len()) {
                    return Err(InferError::RankMismatch { name, declared, given: given.clone() });
                }
                Some(Shape::from_dims(given))
            }
            None => declared,
        };
        shapes.push((v, shape));
    }
    Ok(shapes)
}

/// A declared dimension as inference reads it: exporters write `-1` or `?` for "unknown".
fn sanitize_declared(d: Dim) -> Dim {
    match d {
        Dim::Known(v) if v < 0 => Dim::Unknown,
        Dim::Sym(s) if s == "?" => Dim::Unknown,
        d => d,
    }
}

fn count_unresolved(graph: &Graph, order: &[crate::ir::NodeId]) -> usize {
    let mut values: Vec<ValueId> = graph.runtime_inputs().collect();
    for &id in order {
        if let Some(n) = graph.node(id) {
            values.extend(n.outputs().iter().flatten().copied());
        }
    }
    values
        .iter()
        .filter(|v| {
            let value = graph.value(**v);
            value.dtype.is_none() || value.shape.as_ref().and_then(Shape::concrete).is_none()
        })
        .count()
}

/// Element count of a fully known shape that is small enough to track.
fn numel(dims: &[Dim]) -> Option<usize> {
    dims.iter().try_fold(1usize, |acc, d| acc.checked_mul(usize::try_from(d.known()?).ok()?))
}

/// A rule's verdict on one output. `None` parts are unknown.
#[derive(Clone, Debug, Default)]
struct Out {
    dtype: Option<DataType>,
    shape: Option<Vec<Dim>>,
    vals: Option<Vals>,
}

impl Out {
    fn new(dtype: Option<DataType>, shape: Option<Vec<Dim>>) -> Out {
        Out { dtype, shape, vals: None }
    }

    fn with_vals(mut self, vals: Option<Vals>) -> Out {
        self.vals = vals;
        self
    }
}

/// Outputs in slot order (missing trailing outputs are unknown), or a contradiction.
type RuleResult = Result<Vec<Out>, String>;
type Rule = fn(&Ctx) -> RuleResult;

/// What a rule sees: the node, its inputs' shapes, dtypes and known contents, and the opset.
struct Ctx<'a> {
    graph: &'a Graph,
    node: &'a Node,
    opset: i64,
    known: &'a HashMap<ValueId, Vals>,
}

impl<'a> Ctx<'a> {
    /// Whether input `i` is given (not omitted).
    fn has(&self, i: usize) -> bool {
        self.node.input(i).is_some()
    }

    fn dims(&self, i: usize) -> Option<&'a [Dim]> {
        let v = self.node.input(i)?;
        self.graph.value(v).shape.as_ref().map(|s| s.0.as_slice())
    }

    fn dtype(&self, i: usize) -> Option<DataType> {
        self.graph.value(self.node.input(i)?).dtype
    }

    /// The known contents of input `i`: tracked, or read from a small constant.
    fn vals(&self, i: usize) -> Option<Cow<'a, Vals>> {
        let v = self.node.input(i)?;
        if let Some(vals) = self.known.get(&v) {
            return Some(Cow::Borrowed(vals));
        }
        self.graph.constant(v).and_then(Vals::from_tensor).map(Cow::Owned)
    }

    /// Input `i` as integers, when every element is known.
    fn ints(&self, i: usize) -> Option<Vec<i64>> {
        self.vals(i)?.ints()
    }

    /// Input `i` as integers that may be symbolic or unknown (a shape being computed).
    fn int_dims(&self, i: usize) -> Option<Vec<Dim>> {
        match self.vals(i)?.into_owned() {
            Vals::Int(d) => Some(d),
            Vals::Float(_) => None,
        }
    }

    fn floats(&self, i: usize) -> Option<Vec<f64>> {
        self.vals(i)?.floats()
    }

    fn attr_int(&self, name: &str, default: i64) -> i64 {
        self.node.attr_int(name).unwrap_or(default)
    }

    fn attr_ints(&self, name: &str) -> Option<&'a [i64]> {
        self.node.attr_ints(name)
    }

    fn attr_string(&self, name: &str) -> Option<String> {
        self.node.attr_string(name)
    }

    fn op(&self) -> &'a str {
        self.node.op_type()
    }

    fn num_outputs(&self) -> usize {
        self.node.outputs().len()
    }
}

/// The rule for a node: by op type, for the default domain only.
fn rule_for(node: &Node) -> Option<Rule> {
    use elementwise as ew;
    if !node.domain().is_empty() {
        return None;
    }
    Some(match node.op_type() {
        // Element-wise, shape and dtype of the first input.
        "Relu"
        | "Sigmoid"
        | "HardSigmoid"
        | "HardSwish"
        | "Tanh"
        | "Exp"
        | "Log"
        | "Sqrt"
        | "Erf"
        | "Neg"
        | "Abs"
        | "Reciprocal"
        | "LeakyRelu"
        | "Elu"
        | "Selu"
        | "Celu"
        | "Gelu"
        | "Softplus"
        | "Softsign"
        | "Mish"
        | "ThresholdedRelu"
        | "Shrink"
        | "Identity"
        | "Floor"
        | "Ceil"
        | "Round"
        | "Sign"
        | "Sin"
        | "Cos"
        | "Tan"
        | "Asin"
        | "Acos"
        | "Atan"
        | "Sinh"
        | "Cosh"
        | "Asinh"
        | "Acosh"
        | "Atanh"
        | "Softmax"
        | "LogSoftmax"
        | "Hardmax"
        | "Clip"
        | "LRN"
        | "MeanVarianceNormalization"
        | "CumSum"
        | "Trilu"
        | "ReverseSequence"
        | "BitwiseNot"
        | "Swish"
        | "ScatterElements"
        | "ScatterND"
        | "Scatter" => ew::unary,
        "Not" | "IsNaN" | "IsInf" => ew::unary_bool,
        "Cast" => ew::cast,
        "CastLike" => ew::cast_like,
        "Dropout" => ew::dropout,
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "BitShift" | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" | "PRelu" | "Max"
        | "Min" | "Sum" | "Mean" => ew::broadcast_op,
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" => ew::compare,
        "Where" => ew::where_op,
        // Convolution, pooling, normalisation.
        "Conv" => nn::conv,
        "ConvTranspose" => nn::conv_transpose,
        "MaxPool" | "AveragePool" | "LpPool" => nn::pool,
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => nn::global_pool,
        "BatchNormalization" => nn::batch_norm,
        "InstanceNormalization" | "GroupNormalization" => ew::unary,
        "LayerNormalization" => nn::layer_norm,
        // Linear algebra.
        "MatMul" => linalg::matmul,
        "Gemm" => linalg::gemm,
        // Layout.
        "Concat" => layout::concat,
        "Split" => layout::split,
        "Slice" => layout::slice,
        "Reshape" => layout::reshape,
        "Transpose" => layout::transpose,
        "Flatten" => layout::flatten,
        "Squeeze" => layout::squeeze,
        "Unsqueeze" => layout::unsqueeze,
        "Pad" => layout::pad,
        "Expand" => layout::expand,
        "Tile" => layout::tile,
        "Gather" => gather::gather,
        "GatherElements" => gather::gather_elements,
        "GatherND" => gather::gather_nd,
        "Resize" | "Upsample" => resize::resize,
        "DepthToSpace" | "SpaceToDepth" => resize::depth_space,
        // Reductions.
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceLogSum"
        | "ReduceLogSumExp" | "ReduceSumSquare" => reduce::reduce,
        "ArgMax" | "ArgMin" => reduce::arg_reduce,
        "TopK" => reduce::top_k,
        // Shapes and generators.
        "Shape" => generate::shape,
        "Size" => generate::size,
        "ConstantOfShape" => generate::constant_of_shape,
        "Range" => generate::range,
        "EyeLike" => generate::eye_like,
        "NonZero" => generate::non_zero,
        "NonMaxSuppression" => generate::non_max_suppression,
        // Quantization.
        "QuantizeLinear" => quant::quantize_linear,
        "DequantizeLinear" => quant::dequantize_linear,
        "DynamicQuantizeLinear" => quant::dynamic_quantize_linear,
        "QLinearConv" => quant::qlinear_conv,
        "ConvInteger" => quant::conv_integer,
        "MatMulInteger" => quant::matmul_integer,
        "QLinearMatMul" => quant::qlinear_matmul,
        _ => return None,
    })
}
