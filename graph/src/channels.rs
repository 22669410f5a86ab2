//! The one table of channel layouts: where each op keeps its channels.
//!
//! Shape inference (Conv output channels, the group check), model statistics (MACs), the folding
//! of per-channel affine maps into layers, and structured pruning all need the same facts; they
//! read them here instead of each keeping a copy.
//!
//! **Weighted layers** ([`WeightAxes`]):
//!
//! | op | weight | output-channel axis | input-channel axis | groups |
//! |---|---|---|---|---|
//! | Conv | `W[C_out, C_in/g, k...]` | 0 | 1 (per group) | output channel `o` reads input group `o / (C_out/g)` |
//! | ConvTranspose | `W[C_in, C_out/g, k...]` | 1 (per group) | 0 | row `i` of group `i / (C_in/g)` feeds outputs `gi·(C_out/g) + j` |
//! | Gemm | `B[K, N]` (`B[N, K]` with `transB`) | 1 (0) | 0 (1) | - |
//! | MatMul | `B[..., K, N]` | last | second to last | - |
//!
//! **Channel flow through other ops** ([`channel_flow`]): how an index along one axis of an op's
//! data input maps to its output. Structured pruning follows a channel through the graph with these
//! kinds; the axis arithmetic of each kind (broadcast alignment, Concat offsets, the reshape rule)
//! is in `whittle_passes::channel_groups`.
//!
//! | kind | ops | what an index on an axis becomes |
//! |---|---|---|
//! | `Layer` | Conv, ConvTranspose, Gemm, MatMul | consumed (input channels) or produced (output channels): [`WeightAxes`] |
//! | `Keep` | unary element-wise (Relu, Clip, HardSwish, Sigmoid, Cast...) | the same index on the same axis |
//! | `KeepWithParams` | BatchNormalization, InstanceNormalization, PRelu | the same, and the listed inputs hold one parameter per channel (axis 1) |
//! | `Broadcast` | Add, Sub, Mul, Div, Max, Min, Sum, Where, Pow | the same, on every operand that is not broadcast along the axis |
//! | `Window` | pooling (global too), Resize, Upsample, Pad | the same on axes the op leaves whole (batch and channels for pooling) |
//! | `Concat`, `Split` | | offset by the sizes before it along the op's axis; other axes unchanged |
//! | `Reshape` | Reshape, Flatten, Squeeze, Unsqueeze | followed by the dims: kept, or expanded into a block when merged with the axes after it |
//! | `Transpose` | | moved to its new position |
//! | `Reduce` | ReduceMean, ReduceSum, ReduceMax... | blocked on a reduced axis, else kept (moved when dims are dropped) |
//! | `Normalize` | Softmax, LogSoftmax, LayerNormalization | blocked on the normalized axes, else kept |
//! | `Slice` | Slice | an axis it does not slice passes through; along a sliced axis (constant bounds, step 1) index `start + j` is output index `j`, indices outside the range are dropped |
//! | `Blocked` | Shape, Size, Gather, and any op without a rule | cannot be followed, with the reason |

use crate::ir::Node;

/// Where a layer's weight keeps its output and input channels (see the module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightAxes {
    /// Weight axis of the output channels.
    pub output: usize,
    /// Weight axis of the input channels (the reduction dimension).
    pub input: usize,
    /// The output axis holds `C_out / group` (ConvTranspose): multiply by the group.
    pub output_per_group: bool,
    /// The input axis holds `C_in / group` (Conv): multiply by the group.
    pub input_per_group: bool,
}

/// The weighted layers: ops with a weight input holding output and input channels.
pub const LAYER_OPS: [&str; 8] =
    ["Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul"];

/// The input slot of a layer's weight: 1, or 3 for `QLinearConv`/`QLinearMatMul` (whose inputs
/// are `x, x_scale, x_zero_point, w, ...`).
pub fn weight_input(op: &str) -> Option<usize> {
    match op {
        "QLinearConv" | "QLinearMatMul" => Some(3),
        op if LAYER_OPS.contains(&op) => Some(1),
        _ => None,
    }
}

impl WeightAxes {
    /// The axes of `op`'s weight of rank `rank` (`trans_b`: Gemm's attribute). `None` for ops
    /// that are not weighted layers, or a rank the op does not accept.
    pub fn of(op: &str, trans_b: bool, rank: usize) -> Option<WeightAxes> {
        let axes = |output, input, output_per_group, input_per_group| WeightAxes { output, input, output_per_group, input_per_group };
        match op {
            "Conv" | "ConvInteger" | "QLinearConv" if rank >= 3 => Some(axes(0, 1, false, true)),
            "ConvTranspose" if rank >= 3 => Some(axes(1, 0, true, false)),
            "Gemm" if rank == 2 => Some(if trans_b { axes(0, 1, false, false) } else { axes(1, 0, false, false) }),
            "MatMul" | "MatMulInteger" | "QLinearMatMul" if rank >= 2 => Some(axes(rank - 1, rank - 2, false, false)),
            _ => None,
        }
    }

    /// The axes of a node's weight (input [`weight_input`]) of rank `rank`.
    pub fn of_node(node: &Node, rank: usize) -> Option<WeightAxes> {
        if !node.domain().is_empty() {
            return None;
        }
        WeightAxes::of(node.op_type(), node.attr_int("transB").unwrap_or(0) != 0, rank)
    }

    /// Output channels of a weight with these dims and `group`.
    pub fn output_channels(&self, dims: &[i64], group: i64) -> Option<i64> {
        let d = *dims.get(self.output)?;
        if self.output_per_group { d.checked_mul(group) } else { Some(d) }
    }

    /// Input channels a weight with these dims and `group` reads.
    pub fn input_channels(&self, dims: &[i64], group: i64) -> Option<i64> {
        let d = *dims.get(self.input)?;
        if self.input_per_group { d.checked_mul(group) } else { Some(d) }
    }

    /// For every element of the weight (row-major), the output channel it feeds.
    pub fn output_channel_of_elements(&self, dims: &[i64], group: i64) -> Vec<usize> {
        // ConvTranspose: the input row's group picks the block of outputs.
        channel_of_elements(dims, self.output, self.output_per_group.then_some(self.input), group)
    }

    /// For every element of the weight (row-major), the input channel it reads.
    pub fn input_channel_of_elements(&self, dims: &[i64], group: i64) -> Vec<usize> {
        // Conv: the output row's group picks the block of inputs.
        channel_of_elements(dims, self.input, self.input_per_group.then_some(self.output), group)
    }

    /// Multiply-accumulates one element of the layer's driving tensor costs: per output element
    /// for Conv (`C_in/g · k`), Gemm and MatMul (`K`); per *input* element for ConvTranspose
    /// (`C_out/g · k`), which scatters each input into a window.
    pub fn macs_per_element(&self, dims: &[i64]) -> Option<u64> {
        let dims: Vec<u64> = dims.iter().map(|&d| u64::try_from(d).ok()).collect::<Option<_>>()?;
        if !self.is_convolution() {
            return dims.get(self.input).copied();
        }
        // Every weight axis but the one the driving tensor already counts.
        let skip = if self.output_per_group { self.input } else { self.output };
        dims.iter().enumerate().filter(|(i, _)| *i != skip).try_fold(1u64, |a, (_, &d)| a.checked_mul(d))
    }

    /// Conv or ConvTranspose (weights with spatial kernel axes), as opposed to Gemm and MatMul.
    pub fn is_convolution(&self) -> bool {
        self.output_per_group || self.input_per_group
    }
}

/// For every element of a weight (row-major), its channel along `axis`. When `axis` holds one
/// group's channels (`grouped_by`: the other channel axis, whose index picks the group), the
/// element's group offsets it.
fn channel_of_elements(dims: &[i64], axis: usize, grouped_by: Option<usize>, group: i64) -> Vec<usize> {
    let dims: Vec<usize> = dims.iter().map(|&d| d.max(0) as usize).collect();
    let stride = |axis: usize| dims[axis + 1..].iter().product::<usize>();
    let numel: usize = dims.iter().product();
    let (size, step) = (dims[axis], stride(axis));
    let group = group.max(1) as usize;
    (0..numel)
        .map(|flat| {
            let within = (flat / step) % size;
            match grouped_by {
                Some(other) => {
                    let per_group = (dims[other] / group).max(1);
                    let gi = (flat / stride(other)) % dims[other] / per_group;
                    gi * size + within
                }
                None => within,
            }
        })
        .collect()
}

/// How a channel index on an op's data input maps to its output (module table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelFlow {
    /// A weighted layer: output channels are its own, input channels are consumed (see [`WeightAxes`]).
    Layer,
    /// Every axis passes through unchanged (unary element-wise).
    Keep,
    /// Passes through; the inputs at these positions hold one parameter per channel of axis 1
    /// (BatchNormalization's scale, bias, mean, variance; InstanceNormalization's scale and bias).
    KeepWithParams(&'static [usize]),
    /// Element-wise with broadcasting: an axis passes through where the other operands are
    /// per-channel or broadcast (residual Add, squeeze-excitation Mul).
    Broadcast,
    /// Pooling, Resize, Pad: an axis the op leaves whole passes through.
    Window,
    /// Concatenation: along its axis, index `c` of input `i` is output index `offset_i + c`.
    Concat,
    /// The inverse of Concat.
    Split,
    /// Slice: an offset along a sliced axis, the rest dropped.
    Slice,
    /// Reshape, Flatten, Squeeze, Unsqueeze: followed by the input and output dims.
    Reshape,
    /// Transpose: the axis moves.
    Transpose,
    /// Reductions: a reduced axis blocks.
    Reduce,
    /// Softmax, LogSoftmax, LayerNormalization: a normalized axis blocks.
    Normalize,
    /// The channel cannot be followed through this op.
    Blocked(&'static str),
}

/// How channels flow through `node` (the module table).
pub fn channel_flow(node: &Node) -> ChannelFlow {
    if !node.domain().is_empty() {
        return ChannelFlow::Blocked("an op of a custom domain");
    }
    match node.op_type() {
        op if LAYER_OPS.contains(&op) => ChannelFlow::Layer,
        "PRelu" => ChannelFlow::KeepWithParams(&[1]),
        "Relu" | "LeakyRelu" | "Clip" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Elu" | "Selu" | "Gelu" | "Softplus"
        | "Mish" | "Identity" | "Dropout" | "Abs" | "Neg" | "Exp" | "Sqrt" | "Cast" | "Erf" | "Reciprocal" | "Floor" | "Ceil" | "Round"
        | "Sign" | "Log" | "Sin" | "Cos" => ChannelFlow::Keep,
        "MaxPool" | "AveragePool" | "LpPool" | "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" | "Resize" | "Upsample" | "Pad" => {
            ChannelFlow::Window
        }
        "BatchNormalization" => ChannelFlow::KeepWithParams(&[1, 2, 3, 4]),
        "InstanceNormalization" => ChannelFlow::KeepWithParams(&[1, 2]),
        "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Sum" | "Where" | "Pow" => ChannelFlow::Broadcast,
        "Concat" => ChannelFlow::Concat,
        "Split" => ChannelFlow::Split,
        "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze" => ChannelFlow::Reshape,
        "Transpose" => ChannelFlow::Transpose,
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1" | "ReduceL2" | "ReduceSumSquare"
        | "ReduceLogSum" | "ReduceLogSumExp" => ChannelFlow::Reduce,
        "Softmax" | "LogSoftmax" | "LayerNormalization" => ChannelFlow::Normalize,
        "Shape" | "Size" => ChannelFlow::Blocked("it computes a shape"),
        "Slice" => ChannelFlow::Slice,
        "Gather" => ChannelFlow::Blocked("it selects along an axis (not followed yet)"),
        _ => ChannelFlow::Blocked("no channel rule for this op"),
    }
}
