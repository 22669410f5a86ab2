//! `whittle groups MODEL`: the channel dependency groups structured pruning works on: what is
//! coupled to what, and why a group cannot be pruned.

use std::collections::BTreeMap;

use whittle_passes::channel_groups::analyze;

use crate::exit::{CliError, CliResult, ExitCode};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::ModelArgs,
    /// Print only the summary (counts of groups pruned and declined, by reason).
    #[arg(long)]
    summary: bool,
}

pub fn run(args: &Args) -> CliResult {
    let mut model = super::load_checked(&args.target.model)?;
    super::infer(&mut model, &args.target.model, &args.target.inputs)?;
    let opset = model.opset("").unwrap_or(1);
    let analysis = analyze(&model.graph, opset).map_err(|e| CliError::invalid(anyhow::anyhow!("{}: {e}", args.target.model.display())))?;
    let mut out = summary(&analysis, &model.graph);
    if !args.summary {
        out.push('\n');
        out.push_str(&analysis.describe_all(&model.graph));
    }
    print!("{}", crate::terminal::safe(&out));
    Ok(ExitCode::Success)
}

/// `N groups: P prunable (C channels), D declined, F fixed` and the declined ones by reason.
pub fn summary(analysis: &whittle_passes::channel_groups::Analysis, graph: &whittle_graph::Graph) -> String {
    let groups = &analysis.groups;
    let prunable: Vec<_> = groups.iter().filter(|g| g.removable() > 0).collect();
    let declined: Vec<_> = groups.iter().filter(|g| !g.declined.is_empty()).collect();
    let fixed = groups.len() - prunable.len() - declined.len();
    let mut s = format!(
        "{} groups: {} prunable ({} channels), {} declined, {} fixed by the model's inputs and outputs\n",
        groups.len(),
        prunable.len(),
        prunable.iter().map(|g| g.removable()).sum::<usize>(),
        declined.len(),
        fixed
    );
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for g in &declined {
        // The reason without the node: "Shape@3 (Shape): it computes a shape" -> "Shape: it computes a shape".
        let first = &g.declined[0];
        let reason = match (first.find(" ("), first.find("): ")) {
            (Some(a), Some(b)) if a < b => format!("{}: {}", &first[a + 2..b], &first[b + 3..]),
            _ => first.clone(),
        };
        *reasons.entry(reason).or_insert(0) += 1;
    }
    for (reason, n) in reasons {
        s.push_str(&format!("  declined x{n}: {reason}\n"));
    }
    let prunable_indices: Vec<usize> = (0..groups.len()).filter(|&i| groups[i].removable() > 0).collect();
    let kinds = analysis.block_summary(graph, &prunable_indices);
    if !kinds.is_empty() {
        s.push_str(&format!("  prunable groups through: {kinds}\n"));
    }
    s
}
