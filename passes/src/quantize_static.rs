//! `quantize_static`: static INT8 quantization in standard QDQ form, calibrated on the
//! pipeline's calibration data. **Lossy**: judged by the gate.
//!
//! 1. Quantization points are decided on the float graph ([`crate::quant::plan`]): weighted ops
//!    (Conv, ConvTranspose, Gemm, MatMul), compute ops (Add, Mul, Concat, pooling, Resize,
//!    Softmax, ...) and data movement (Reshape, Transpose, Slice, ...), as onnxruntime and
//!    TensorRT fuse `DQ → op → Q` into integer kernels.
//! 2. Calibration streams the points' values through the measurement interface into one
//!    histogram each ([`crate::quant::calibrate`]): memory is the same for any number of samples.
//!    Ranges by `method`: minmax, percentile, mse or entropy.
//! 3. Activations: `QuantizeLinear → DequantizeLinear` per tensor (`q = sat(round(x/s) + z)`),
//!    uint8 or int8, asymmetric or symmetric. Weights: int8 symmetric in `[-127, 127]`, per
//!    output channel (scale `max|w|/127`) or per tensor, or chosen per weight (`per_channel:
//!    auto`: per tensor where that loses at most `per_tensor_tolerance_db` of the weight's
//!    quantization SQNR, which saves the per-channel scales of weight and bias). Biases: int32
//!    with scale `input scale × weight scale`, zero point 0.
//! 4. Per-channel `DequantizeLinear` needs opset 13: older models are upgraded first (exactly, by
//!    `opset_conversion`).
//! 5. Bias correction (`bias_correction`, [`crate::quant::bias_correction`]): each quantized
//!    Conv's bias absorbs the expected output shift of its weight rounding, from per-channel input
//!    means collected in the same calibration stream.
//! 6. Accuracy-aware fallback (`fallback_rounds` > 0): while the pipeline's accuracy thresholds
//!    fail on the calibration data, the units that gain most when kept in float (measured one by
//!    one on the calibration data, per kB of float weights; or the nodes with the lowest
//!    predicted SQNR) are kept in float, a growing share per round, and the best round is kept;
//!    the report lists them and the fidelity after each round. A unit is a node (its weights and
//!    activation points) or, with `fallback_unit: tensor`, one activation tensor (its QDQ pair:
//!    no size cost). Choices use calibration data only.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use whittle_graph::{Graph, Model, NodeId, ValueId};

use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};
use crate::quant::calibrate::{Method, Stats};
use crate::quant::params::{QParams, QType};
use crate::quant::plan::{self, Plan, Role};
use crate::quant::{self, ActivationScheme, Selection};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub activation_type: QType,
    pub symmetric_activations: bool,
    pub per_channel: Granularity,
    /// With `per_channel: auto`: a weight goes per tensor when that loses at most this much of its
    /// quantization SQNR against per channel.
    pub per_tensor_tolerance_db: f64,
    pub method: Method,
    /// For `method: percentile`: the percentile kept on each side (99.999 keeps all but 0.001%).
    pub percentile: f64,
    /// Drop a Relu/Clip(0, ..) in front of a QuantizeLinear where saturation does its job (exact).
    pub fuse_activations: bool,
    /// Op types to quantize (empty: every one the pass knows).
    pub op_types: Vec<String>,
    /// Node name patterns to quantize (`*`, `?`; empty: all).
    pub include: Vec<String>,
    /// Node name patterns or op types kept in float.
    pub exclude: Vec<String>,
    /// Quantize MatMuls of two activations (attention scores and values) too.
    pub activation_matmul: bool,
    /// Correct Conv biases for the expected shift their weight rounding causes (Nagel et al. 2019).
    pub bias_correction: bool,
    /// A file for the calibration statistics: reused when it holds them for this model and data
    /// (no calibration run), else written after calibrating. Relative to the pipeline's folder.
    pub statistics: Option<String>,
    /// Rounds of the accuracy-aware fallback (0: off).
    pub fallback_rounds: usize,
    /// Share of the ranked units kept in float in the first fallback round; doubles each round.
    pub fallback_share: f64,
    /// What a node the fallback takes back keeps: `float` (all of it), or `weights` (its weights
    /// stay int8 behind a DequantizeLinear and it adds no QDQ pair of its own: no size cost; a
    /// tensor it shares with a quantized neighbour stays quantized, so the measured ranking only
    /// picks nodes where this gains something).
    pub fallback_keep: FallbackKeep,
    /// How the fallback ranks nodes: `measured` (each node kept float alone, fidelity measured on
    /// the calibration data, gain per kB of float weights) or `predicted` (histogram SQNR, no run).
    pub fallback_ranking: Ranking,
    /// What the fallback takes back: whole `node`s, or single activation `tensor`s (their QDQ
    /// pair only: no size cost, every weight stays int8; onnxruntime runs the ops next to a float
    /// tensor in float).
    pub fallback_unit: FallbackUnit,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            activation_type: QType::Uint8,
            symmetric_activations: false,
            per_channel: Granularity::PerChannel,
            per_tensor_tolerance_db: 3.0,
            method: Method::Percentile,
            percentile: 99.999,
            fuse_activations: true,
            op_types: Vec::new(),
            include: Vec::new(),
            exclude: Vec::new(),
            activation_matmul: true,
            bias_correction: false,
            statistics: None,
            fallback_rounds: 0,
            fallback_share: 0.05,
            fallback_keep: FallbackKeep::Float,
            fallback_ranking: Ranking::Measured,
            fallback_unit: FallbackUnit::Node,
        }
    }
}

/// Scales of the weights: one per output channel, one per tensor, or chosen per weight (`auto`):
/// per tensor where that loses little weight SQNR (one scale instead of two per channel, the
/// weight's and the bias's: smaller files), per channel where the channels' ranges differ
/// (depthwise convolutions after BatchNorm folding, typically). Written `true`, `false`, `auto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Granularity {
    #[default]
    PerChannel,
    PerTensor,
    Auto,
}

impl Serialize for Granularity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Granularity::PerChannel => s.serialize_bool(true),
            Granularity::PerTensor => s.serialize_bool(false),
            Granularity::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Granularity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bool(bool),
            Name(String),
        }
        match Written::deserialize(d)? {
            Written::Bool(true) => Ok(Granularity::PerChannel),
            Written::Bool(false) => Ok(Granularity::PerTensor),
            Written::Name(n) if n == "auto" => Ok(Granularity::Auto),
            Written::Name(n) => Err(serde::de::Error::custom(format!("per_channel: expected true, false or auto, found `{n}`"))),
        }
    }
}

/// What a node taken back by the accuracy fallback keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackKeep {
    /// The whole node in float.
    Float,
    /// Int8 weights (weight-only), float activations and compute.
    Weights,
}

/// How the accuracy fallback ranks quantized nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    #[default]
    Measured,
    Predicted,
}

/// What the accuracy fallback takes back from INT8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackUnit {
    #[default]
    Node,
    Tensor,
}

/// One thing the fallback can keep in float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Unit {
    Node(NodeId),
    /// An activation tensor: its QDQ pair.
    Tensor(ValueId),
}

/// What a fallback round keeps in float.
#[derive(Default)]
struct Float {
    nodes: BTreeSet<NodeId>,
    tensors: BTreeSet<ValueId>,
}

impl Float {
    fn of(units: impl IntoIterator<Item = Unit>) -> Float {
        let mut f = Float::default();
        for u in units {
            match u {
                Unit::Node(n) => f.nodes.insert(n),
                Unit::Tensor(v) => f.tensors.insert(v),
            };
        }
        f
    }
}

pub struct QuantizeStatic {
    params: Params,
    selection: Selection,
}

impl PassDef for QuantizeStatic {
    const NAME: &'static str = "quantize_static";
    const SUMMARY: &'static str =
        "static INT8 in QDQ form, calibrated on the calibration data (per-channel weights, int32 biases, fallback)";
    const EXACT: bool = false;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] = &[
        ("activation_type", "uint8|int8", "integer type of activations"),
        ("symmetric_activations", "bool", "zero point in the middle of the type"),
        ("per_channel", "bool|auto", "weights per output channel, per tensor (false), or auto: per tensor where that costs little"),
        ("per_tensor_tolerance_db", "float", "auto: per tensor where it loses at most this weight SQNR against per channel"),
        ("method", "minmax|percentile|mse|entropy", "how ranges are chosen from the histograms"),
        ("percentile", "float", "percentile kept on each side (method percentile)"),
        ("fuse_activations", "bool", "drop Relu/Clip(0,..) before a QuantizeLinear (exact)"),
        ("op_types", "list", "op types to quantize (empty: all the pass knows)"),
        ("include", "list", "node name patterns to quantize (empty: all)"),
        ("exclude", "list", "node name patterns or op types kept in float"),
        ("activation_matmul", "bool", "also quantize MatMuls of two activations (attention)"),
        ("bias_correction", "bool", "correct Conv biases for the weight rounding's expected shift"),
        ("statistics", "path", "calibration statistics file: reused for the same model and data, else written"),
        ("fallback_rounds", "int", "rounds of accuracy-aware float fallback (0: off)"),
        ("fallback_share", "float", "share of the ranked nodes or tensors kept float in round 1 (doubles)"),
        (
            "fallback_keep",
            "float|weights",
            "what a node taken back keeps: all float, or its int8 weights (weight-only: no size cost; fallback_unit node)",
        ),
        ("fallback_ranking", "measured|predicted", "rank by measured fidelity gain per kB, or by predicted SQNR"),
        ("fallback_unit", "node|tensor", "what the fallback takes back: whole nodes, or single activation tensors (no size cost)"),
    ];
    fn new(params: Params) -> Self {
        let selection = Selection { op_types: params.op_types.clone(), include: params.include.clone(), exclude: params.exclude.clone() };
        QuantizeStatic { params, selection }
    }
}

impl QuantizeStatic {
    fn scheme(&self) -> ActivationScheme {
        ActivationScheme {
            qtype: self.params.activation_type,
            symmetric: self.params.symmetric_activations,
            method: self.params.method,
            percentile: self.params.percentile,
        }
    }

    /// How the report calls what the fallback does to a unit.
    fn kept_what(&self) -> &'static str {
        match (self.params.fallback_unit, self.params.fallback_keep) {
            (FallbackUnit::Tensor, _) => "kept in float (its QDQ pair taken back)",
            (_, FallbackKeep::Float) => "kept in float",
            (_, FallbackKeep::Weights) => "activations kept in float (weights int8)",
        }
    }

    /// Where a unit is reported: the node, or the node producing the tensor (the tensor's name
    /// for a graph input), with its op type.
    fn unit_label(g: &Graph, unit: Unit) -> (String, String) {
        let node = match unit {
            Unit::Node(n) => Some(n),
            Unit::Tensor(v) => g.value(v).producer(),
        };
        let op = node.and_then(|n| g.node(n)).map(|n| n.op_type().to_string()).unwrap_or_default();
        let label = match (unit, node) {
            (Unit::Node(n), _) => g.node_label(n),
            (Unit::Tensor(v), Some(p)) => format!("{} (output `{}`)", g.node_label(p), g.value(v).name),
            (Unit::Tensor(v), None) => format!("input `{}`", g.value(v).name),
        };
        (label, op)
    }

    /// The quantization plan with `float` kept float and `per_tensor` weights per tensor.
    fn plan(&self, g: &Graph, order: &[NodeId], float: &Float, per_tensor: &BTreeSet<NodeId>) -> Plan {
        let float_nodes = &float.nodes;
        let fuse = self.params.fuse_activations && !self.params.symmetric_activations;
        let activation_matmul = |id: NodeId| g.node(id).is_some_and(|n| n.is("MatMul")) && plan::role(g, id) == Ok(Some(Role::Compute));
        let selected = |id: NodeId| {
            !float_nodes.contains(&id)
                && self.selection.selects(g, id, plan::STATIC_OP_TYPES)
                && (self.params.activation_matmul || !activation_matmul(id))
        };
        let mut plan = plan::plan(g, order, &selected, fuse);
        // Weight-only fallback: the node keeps its weights in int8 (apply_plan quantizes them,
        // and its bias to int32 when its input still reads a DequantizeLinear) and adds no
        // activation point of its own.
        if self.params.fallback_keep == FallbackKeep::Weights {
            for &id in float_nodes {
                if let Ok(Some(role @ Role::Weighted { .. })) = plan::role(g, id) {
                    plan.nodes.insert(id, role);
                }
            }
        }
        for (id, role) in plan.nodes.iter_mut() {
            if let Role::Weighted { axis, .. } = role
                && per_tensor.contains(id)
            {
                *axis = None;
            }
        }
        plan.keep_float(&float.tensors);
        plan
    }

    /// Weighted nodes of `plan` whose weights go per tensor (see [`Granularity`]), and for `auto`
    /// a note on the choice.
    fn per_tensor_nodes(&self, g: &Graph, plan: &Plan) -> (BTreeSet<NodeId>, Option<String>) {
        let weighted = plan.nodes.iter().filter_map(|(&id, role)| match *role {
            Role::Weighted { weight, axis: Some(axis), .. } => Some((id, weight, axis)),
            _ => None,
        });
        match self.params.per_channel {
            Granularity::PerChannel => (BTreeSet::new(), None),
            Granularity::PerTensor => (weighted.map(|(id, ..)| id).collect(), None),
            Granularity::Auto => {
                let (mut per_tensor, mut per_channel) = (BTreeSet::new(), Vec::new());
                for (id, weight, axis) in weighted {
                    let Some(t) = g.node(id).and_then(|n| n.input(weight)).and_then(|w| g.constant(w)) else { continue };
                    let Ok(w) = t.to_f32() else { continue };
                    let (channel_db, tensor_db) = (weight_sqnr_db(&w, t.dims(), Some(axis)), weight_sqnr_db(&w, t.dims(), None));
                    if channel_db - tensor_db <= self.params.per_tensor_tolerance_db {
                        per_tensor.insert(id);
                    } else {
                        per_channel.push(format!("{} ({tensor_db:.1} dB per tensor, {channel_db:.1} per channel)", g.node_label(id)));
                    }
                }
                let note = format!(
                    "per_channel auto: {} weights per tensor (within {} dB of per channel), {} per channel: {}",
                    per_tensor.len(),
                    self.params.per_tensor_tolerance_db,
                    per_channel.len(),
                    if per_channel.is_empty() { "none".to_string() } else { per_channel.join(", ") }
                );
                (per_tensor, Some(note))
            }
        }
    }

    /// The float model quantized by `plan` with the calibrated `stats`.
    fn build(
        &self,
        float: &Model,
        plan: &Plan,
        stats: &BTreeMap<ValueId, Stats>,
        means: &BTreeMap<ValueId, Vec<f64>>,
    ) -> (Model, PassReport) {
        let scheme = self.scheme();
        let params: BTreeMap<ValueId, QParams> = stats.iter().map(|(&v, s)| (v, scheme.params(s))).collect();
        let mut model = float.clone();
        let mut report = PassReport::default();
        let mut corrected = 0;
        for (&id, role) in &plan.nodes {
            let Role::Weighted { axis, .. } = *role else { continue };
            let Some(m) = model.graph.node(id).and_then(|n| n.input(0)).and_then(|x| means.get(&x)) else { continue };
            match crate::quant::bias_correction::correct_conv_bias(&mut model.graph, id, axis, m) {
                Ok(_) => corrected += 1,
                Err(why) => {
                    let op = model.graph.node(id).map(|n| n.op_type().to_string()).unwrap_or_default();
                    report.decline(model.graph.node_label(id), op, format!("no bias correction: {why}"));
                }
            }
        }
        if corrected > 0 {
            report.notes.push(format!("bias correction: {corrected} Conv biases corrected for their weights' rounding"));
        }
        quant::apply_plan(&mut model.graph, plan, &params, &mut report);
        (model, report)
    }
}

impl Pass for QuantizeStatic {
    fn run(&self, model: &mut Model, ctx: &PassContext<'_>) -> Result<PassReport, PassError> {
        self.selection.check().map_err(PassError::unsupported_model)?;
        if self.params.fallback_keep == FallbackKeep::Weights && self.params.fallback_ranking == Ranking::Predicted {
            return Err(PassError::unsupported_model(
                "quantize_static: fallback_keep: weights needs fallback_ranking: measured (the predicted ranking is by weight SQNR, which this fallback keeps)",
            ));
        }
        if self.params.fallback_unit == FallbackUnit::Tensor && self.params.fallback_ranking == Ranking::Predicted {
            return Err(PassError::unsupported_model(
                "quantize_static: fallback_unit: tensor needs fallback_ranking: measured (the predicted ranking ranks nodes)",
            ));
        }
        let measure = ctx.require_measure(Self::NAME)?;
        let mut notes = Vec::new();
        if let Some(note) = quant::ensure_opset_13(model)? {
            notes.push(note);
        }
        let float = model.clone();
        let g = &float.graph;
        let order = crate::driver::topo_order(g)?;
        let (per_tensor, granularity_note) = self.per_tensor_nodes(g, &self.plan(g, &order, &Float::default(), &BTreeSet::new()));
        notes.extend(granularity_note);
        let full = self.plan(g, &order, &Float::default(), &per_tensor);
        let values: Vec<ValueId> = full.calibrated().into_iter().collect();
        // Bias correction needs the per-channel means of every quantized Conv's input.
        let mean_values: Vec<ValueId> = if self.params.bias_correction {
            let conv_inputs =
                full.nodes.iter().filter(|(id, r)| matches!(r, Role::Weighted { .. }) && g.node(**id).is_some_and(|n| n.is("Conv")));
            conv_inputs.filter_map(|(id, _)| g.node(*id).and_then(|n| n.input(0))).collect::<BTreeSet<_>>().into_iter().collect()
        } else {
            Vec::new()
        };
        let start = std::time::Instant::now();
        let stats_path = self.params.statistics.as_deref().map(|p| ctx.resolve(p));
        let (stats, means, reused) = self.statistics(measure, &float, &values, &mean_values, stats_path.as_deref(), &mut notes)?;
        notes.push(if reused {
            format!(
                "calibration statistics of {} tensors reused from {} (no calibration run)",
                stats.len(),
                stats_path.as_deref().map(|p| p.display().to_string()).unwrap_or_default()
            )
        } else {
            format!(
                "calibrated {} tensors on {} samples in {:.1} s (histograms of {} bins: memory independent of the sample count); ranges by {:?}",
                stats.len(),
                measure.samples(),
                start.elapsed().as_secs_f64(),
                quant::calibrate::BINS,
                self.params.method
            )
        });

        let (mut best, mut report) = self.build(&float, &full, &stats, &means);
        let mut declined_plan: Vec<(Unit, String)> = full.declined.iter().map(|(n, why)| (Unit::Node(*n), why.clone())).collect();
        if self.params.fallback_rounds > 0 {
            let mut fidelity = measure.fidelity(&best).map_err(|e| PassError::new(format!("fallback: {e}")))?;
            let candidates: Vec<Unit> = match self.params.fallback_unit {
                FallbackUnit::Node => full.nodes.iter().filter(|(_, r)| **r != Role::DataMovement).map(|(n, _)| Unit::Node(*n)).collect(),
                FallbackUnit::Tensor => full.calibrated().into_iter().map(Unit::Tensor).collect(),
            };
            let what = match self.params.fallback_unit {
                FallbackUnit::Node => "quantizable nodes",
                FallbackUnit::Tensor => "activation tensors",
            };
            notes.push(format!("fallback round 0 (all {} {what} quantized): {}", candidates.len(), fidelity.summary));
            // Rankings are computed only when the thresholds fail.
            let ranking: Vec<(Unit, String)> = if fidelity.thresholds_pass != Some(false) {
                Vec::new()
            } else if self.params.fallback_ranking == Ranking::Predicted {
                let predicted = self.sensitivity(&float, &full, &stats);
                predicted.iter().map(|(n, db)| (Unit::Node(*n), format!("predicted SQNR {db:.1} dB"))).collect()
            } else {
                self.measured_ranking(measure, &float, &order, &per_tensor, &candidates, &stats, &means, fidelity.min_sqnr_db)?
            };
            let quantized = ranking.len().max(1);
            let mut share = self.params.fallback_share;
            let mut round = 0;
            // The best round on the calibration data is kept (not the last: rounds interact).
            let mut best_fidelity = fidelity.clone();
            let mut best_round = 0;
            while fidelity.thresholds_pass == Some(false) && round < self.params.fallback_rounds && !ranking.is_empty() {
                round += 1;
                let keep = ((quantized as f64 * share).ceil() as usize).clamp(1, quantized);
                let plan = self.plan(g, &order, &Float::of(ranking.iter().take(keep).map(|(u, _)| *u)), &per_tensor);
                let (candidate, r) = self.build(&float, &plan, &stats, &means);
                fidelity = measure.fidelity(&candidate).map_err(|e| PassError::new(format!("fallback: {e}")))?;
                let keep = keep.min(ranking.len());
                let kept: Vec<String> =
                    ranking.iter().take(keep).map(|(u, why)| format!("{} ({why})", Self::unit_label(g, *u).0)).collect();
                notes.push(format!(
                    "fallback round {round}: {keep} {} {}: {}; on calibration data: {}",
                    if self.params.fallback_unit == FallbackUnit::Tensor { "tensors" } else { "nodes" },
                    self.kept_what(),
                    kept.join(", "),
                    fidelity.summary
                ));
                measure.log(&format!("quantize_static fallback round {round}: {}", fidelity.summary));
                let better = match (fidelity.thresholds_pass, best_fidelity.thresholds_pass) {
                    (Some(true), Some(false)) => true,
                    (Some(false), Some(true)) => false,
                    _ => fidelity.min_sqnr_db > best_fidelity.min_sqnr_db,
                };
                if better {
                    declined_plan = plan.declined.iter().map(|(n, why)| (Unit::Node(*n), why.clone())).collect();
                    declined_plan.extend(
                        ranking
                            .iter()
                            .take(keep)
                            .map(|(u, why)| (*u, format!("{} by the accuracy fallback (round {round}; {why})", self.kept_what()))),
                    );
                    (best, report) = (candidate, r);
                    (best_fidelity, best_round) = (fidelity.clone(), round);
                }
                share *= 2.0;
            }
            if round > 0 {
                notes.push(format!("fallback: kept round {best_round}, the best on the calibration data ({})", best_fidelity.summary));
            }
            let fidelity = best_fidelity;
            match fidelity.thresholds_pass {
                None => notes.push("fallback: the pipeline sets no accuracy threshold to aim for; nothing kept in float".into()),
                Some(false) => notes.push(format!("fallback: thresholds still fail on calibration data after {round} rounds")),
                Some(true) => {}
            }
        }
        for (unit, why) in declined_plan {
            let (label, op) = Self::unit_label(g, unit);
            report.decline(label, op, why);
        }
        report.notes.splice(0..0, notes);
        *model = best;
        Ok(report)
    }
}

type Measured = (BTreeMap<ValueId, Stats>, BTreeMap<ValueId, Vec<f64>>, bool);

impl QuantizeStatic {
    /// Histograms of `values` and per-channel means of `mean_values`: from the statistics file
    /// when it holds them for this model and data (`true`), else by calibrating (and then saved
    /// to the file when one is set).
    fn statistics(
        &self,
        measure: &dyn crate::measure::Measure,
        float: &Model,
        values: &[ValueId],
        mean_values: &[ValueId],
        path: Option<&std::path::Path>,
        notes: &mut Vec<String>,
    ) -> Result<Measured, PassError> {
        use crate::quant::stats_file::SavedStats;
        use sha2::Digest;
        let g = &float.graph;
        let names: Vec<String> = values.iter().map(|&v| g.value(v).name.clone()).collect();
        let mean_names: Vec<String> = mean_values.iter().map(|&v| g.value(v).name.clone()).collect();
        let model_hash = hex::encode(sha2::Sha256::digest(whittle_graph::encode_for_runtime(float)));
        if let Some(path) = path {
            match SavedStats::load(path, &model_hash, &measure.data_fingerprint(), &names, &mean_names)
                .map_err(PassError::unsupported_model)?
            {
                Ok(saved) => {
                    let stats = values.iter().zip(&names).map(|(&v, n)| (v, saved.values[n].clone())).collect();
                    let means = mean_values.iter().zip(&mean_names).map(|(&v, n)| (v, saved.means[n].clone())).collect();
                    return Ok((stats, means, true));
                }
                Err(why) => notes.push(why),
            }
        }
        let axes: Vec<(String, usize)> = mean_names.iter().map(|n| (n.clone(), 1)).collect();
        let (calibrated, channel_means) =
            quant::calibrate_with_means(measure, float, &names, &axes).map_err(|e| PassError::new(format!("calibration failed: {e}")))?;
        if let Some(path) = path {
            let mut saved = SavedStats::new(model_hash, measure.data_fingerprint(), measure.samples());
            saved.values = names.iter().cloned().zip(calibrated.iter().cloned()).collect();
            saved.means = mean_names.iter().cloned().zip(channel_means.iter().map(|m| m.means())).collect();
            saved.save(path).map_err(PassError::new)?;
            notes.push(format!("calibration statistics written to {}", path.display()));
        }
        let stats = values.iter().copied().zip(calibrated).collect();
        let means = mean_values.iter().copied().zip(channel_means.iter().map(|m| m.means())).collect();
        Ok((stats, means, false))
    }

    /// Units ranked by what keeping each one alone in float gains, measured on the calibration
    /// data: SQNR gain in dB per kB of weights kept float (plus 4 kB, so that nodes without
    /// weights do not win by dividing by nothing; tensors cost none). Units that gain nothing are
    /// left out.
    #[allow(clippy::too_many_arguments)]
    fn measured_ranking(
        &self,
        measure: &dyn crate::measure::Measure,
        float: &Model,
        order: &[NodeId],
        per_tensor: &BTreeSet<NodeId>,
        units: &[Unit],
        stats: &BTreeMap<ValueId, Stats>,
        means: &BTreeMap<ValueId, Vec<f64>>,
        base_db: f64,
    ) -> Result<Vec<(Unit, String)>, PassError> {
        let g = &float.graph;
        let mut scored = Vec::new();
        for &unit in units {
            let plan = self.plan(g, order, &Float::of([unit]), per_tensor);
            let (candidate, _) = self.build(float, &plan, stats, means);
            let f = measure.fidelity(&candidate).map_err(|e| PassError::new(format!("fallback sensitivity: {e}")))?;
            let gain = f.min_sqnr_db - base_db;
            let (kb, how) = match unit {
                Unit::Tensor(_) => (0.0, "when float, no size cost".to_string()),
                Unit::Node(_) if self.params.fallback_keep == FallbackKeep::Weights => {
                    (0.0, "with float activations (int8 weights), 0.0 kB more".to_string())
                }
                Unit::Node(id) => {
                    let kb = g.node(id).map_or(0.0, |n| {
                        n.inputs()
                            .iter()
                            .flatten()
                            .filter_map(|v| g.constant(*v))
                            .filter(|t| t.dims().len() > 1)
                            .map(|t| t.numel() as f64 * 3.0 / 1024.0)
                            .sum()
                    });
                    (kb, format!("when float, {kb:.1} kB more"))
                }
            };
            if gain > 0.0 {
                scored.push((unit, gain / (kb + 4.0), format!("+{gain:.2} dB SQNR on calibration data {how}")));
            }
        }
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        Ok(scored.into_iter().map(|(n, _, why)| (n, why)).collect())
    }

    /// Quantized nodes, most sensitive first: the lowest predicted SQNR of the node's own
    /// quantization (its activation points from the histograms, its weight from the data).
    fn sensitivity(&self, float: &Model, plan: &Plan, stats: &BTreeMap<ValueId, Stats>) -> Vec<(NodeId, f64)> {
        let g = &float.graph;
        let scheme = self.scheme();
        let point_db = |v: ValueId| plan.root(v).and_then(|r| stats.get(&r)).map(|s| s.predicted_sqnr_db(scheme.params(s)));
        let mut ranked: Vec<(NodeId, f64)> = plan
            .nodes
            .iter()
            .filter(|(_, role)| **role != Role::DataMovement)
            .map(|(&id, role)| {
                let n = g.node(id).expect("live");
                let mut db = f64::INFINITY;
                for v in n.inputs().iter().chain(n.outputs()).flatten() {
                    let v = plan.points.values().find(|p| p.source == *v).map_or(*v, |p| p.replaces);
                    if let Some(d) = point_db(v) {
                        db = db.min(d);
                    }
                }
                if let Role::Weighted { weight, axis, .. } = role
                    && let Some(t) = n.input(*weight).and_then(|w| g.constant(w))
                    && let Ok(w) = t.to_f32()
                {
                    db = db.min(weight_sqnr_db(&w, t.dims(), *axis));
                }
                (id, db)
            })
            .collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        ranked
    }
}

/// SQNR of a weight's int8 quantization, dB.
fn weight_sqnr_db(w: &[f32], dims: &[i64], axis: Option<usize>) -> f64 {
    let (q, scales) = crate::quant::params::quantize_weights(w, dims, axis);
    let inner = axis.map_or(w.len(), |a| dims[a + 1..].iter().product::<i64>().max(1) as usize);
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (i, (&x, &qi)) in w.iter().zip(&q).enumerate() {
        let s = scales[if axis.is_some() { (i / inner) % scales.len() } else { 0 }];
        signal += (x as f64).powi(2);
        noise += (x as f64 - qi as f64 * s as f64).powi(2);
    }
    10.0 * (signal / noise.max(1e-30)).log10()
}
