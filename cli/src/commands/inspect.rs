//! `whittle inspect MODEL`: what a model is made of.

use serde::Serialize;
use std::fmt::Write as _;
use whittle_graph::stats::{LayerMacs, ModelStats, model_stats};
use whittle_graph::{Graph, Model, ValueId};

use crate::exit::{CliError, CliResult, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::ModelArgs,
    /// Print a JSON document instead of text.
    #[arg(long)]
    json: bool,
}

/// The JSON document of `whittle inspect --json` (stable field names).
#[derive(Serialize)]
pub struct Inspection {
    pub file: String,
    pub file_bytes: u64,
    pub ir_version: i64,
    pub opsets: Vec<(String, i64)>,
    pub producer: String,
    pub inputs: Vec<Port>,
    pub outputs: Vec<Port>,
    pub unknown_ops: Vec<String>,
    pub stats: ModelStats,
    pub heaviest_layers: Vec<LayerMacs>,
}

/// A graph input or output: declared shape as written, shape used (after --input).
#[derive(Serialize)]
pub struct Port {
    pub name: String,
    pub dtype: Option<String>,
    pub shape: Option<String>,
}

fn port(g: &Graph, v: ValueId) -> Port {
    let value = g.value(v);
    Port { name: value.name.clone(), dtype: value.dtype.map(|d| d.to_string()), shape: value.shape.as_ref().map(|s| s.to_string()) }
}

pub fn run(args: &Args) -> CliResult {
    let mut model = super::load_checked(&args.target.model)?;
    let report = super::infer(&mut model, &args.target.model, &args.target.inputs)?;
    let file_bytes = std::fs::metadata(&args.target.model).map(|m| m.len()).map_err(CliError::invalid)?;
    let inspection = inspect(&model, args.target.model.display().to_string(), file_bytes, report.unknown_ops);
    if args.json {
        let json = serde_json::to_string_pretty(&inspection).map_err(CliError::internal)?;
        println!("{json}");
    } else {
        print!("{}", crate::terminal::safe(&render(&inspection)));
    }
    Ok(ExitCode::Success)
}

pub fn inspect(model: &Model, file: String, file_bytes: u64, unknown_ops: Vec<String>) -> Inspection {
    let g = &model.graph;
    let stats = model_stats(model);
    let heaviest_layers = stats.heaviest(10).into_iter().cloned().collect();
    let mut opsets: Vec<(String, i64)> = model
        .meta
        .opset_import
        .iter()
        .map(|o| (o.domain.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| "ai.onnx".into()), o.version.unwrap_or(0)))
        .collect();
    opsets.sort();
    let producer =
        format!("{} {}", model.meta.producer_name.as_deref().unwrap_or(""), model.meta.producer_version.as_deref().unwrap_or(""))
            .trim()
            .to_string();
    Inspection {
        file,
        file_bytes,
        ir_version: model.ir_version(),
        opsets,
        producer,
        inputs: g.runtime_inputs().map(|v| port(g, v)).collect(),
        outputs: g.outputs().map(|v| port(g, v)).collect(),
        unknown_ops,
        stats,
        heaviest_layers,
    }
}

/// Thousands separators for readability.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn render(i: &Inspection) -> String {
    let mut s = String::new();
    let opsets: Vec<String> = i.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
    let _ = writeln!(s, "model:      {} ({} bytes)", i.file, grouped(i.file_bytes));
    let _ = writeln!(s, "ir_version: {}   opsets: {}   producer: {}", i.ir_version, opsets.join(", "), i.producer);
    for (label, ports) in [("input ", &i.inputs), ("output", &i.outputs)] {
        for p in ports {
            let _ = writeln!(s, "{label}:     {} {} {}", p.name, p.dtype.as_deref().unwrap_or("?"), p.shape.as_deref().unwrap_or("[?]"));
        }
    }
    let st = &i.stats;
    let hist: Vec<String> = {
        let mut h: Vec<(&String, &usize)> = st.op_histogram.iter().collect();
        h.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        h.iter().map(|(op, n)| format!("{op} {n}")).collect()
    };
    let _ = writeln!(s, "nodes:      {} ({})", st.nodes, hist.join(", "));
    let _ = writeln!(s, "parameters: {} elements, {} bytes", grouped(st.parameters), grouped(st.parameter_bytes));
    for (dtype, t) in &st.by_dtype {
        let _ = writeln!(s, "  {dtype:<8} {:>14} elements {:>14} bytes", grouped(t.elements), grouped(t.bytes));
    }
    let unknown = if st.layers_with_unknown_macs > 0 {
        format!(" ({} layers with unknown shapes: pass --input NAME=DIMS)", st.layers_with_unknown_macs)
    } else {
        String::new()
    };
    let _ = writeln!(s, "MACs:       {} in {} Conv/ConvTranspose/Gemm/MatMul layers{unknown}", grouped(st.total_macs), st.layers.len());
    if !i.heaviest_layers.is_empty() {
        let _ = writeln!(s, "heaviest layers:");
        for l in &i.heaviest_layers {
            let macs = l.macs.unwrap_or(0);
            let share = if st.total_macs > 0 { 100.0 * macs as f64 / st.total_macs as f64 } else { 0.0 };
            let _ = writeln!(s, "  {:>16} MACs {share:5.1}%  {} ({})", grouped(macs), l.node, l.op_type);
        }
    }
    if !i.unknown_ops.is_empty() {
        let _ = writeln!(s, "ops without shape rules: {}", i.unknown_ops.join(", "));
    }
    s
}
