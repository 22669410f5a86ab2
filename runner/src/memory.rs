//! How much memory a run will need, estimated from the shapes before anything large is
//! allocated, and the limit it is held to: a run whose estimate is above the limit is refused
//! (exit 2) with the estimate, instead of aborting half-way when an allocation fails.
//!
//! The estimate adds up what a run holds at its peak:
//! - **weights**: every constant at its full size (a compact `ConstantOfShape` counted expanded,
//!   as tract materializes it), three times: whittle's graph, and tract's copies of the original
//!   and of the candidate;
//! - **activations**: the largest set of values alive at once while one sample runs (values in
//!   topological order, each freed after its last reader), times the samples running in
//!   parallel;
//! - **data**: the samples held in memory (a data file's arrays; random samples are drawn one at
//!   a time and held only while they run);
//! - **outputs**: every output of every evaluation sample, kept twice (original and candidate)
//!   for the comparison.
//!
//! It is an estimate, not a bound: tract's scratch buffers and the passes' temporaries come on
//! top, and values whose shape is unknown (or inside If/Loop bodies) are not counted. The limit
//! defaults to three quarters of the memory this process may use (the cgroup limit when there is
//! one, else the machine's), and can be set (`--max-memory`, [`MemoryLimit::bytes`]).

use whittle_graph::{Model, ValueId};

/// The largest run allowed, and where the figure comes from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    pub origin: String,
}

impl MemoryLimit {
    /// Three quarters of the memory available to this process (see the module doc); unlimited
    /// when neither the cgroup nor the machine's total can be read.
    pub fn machine_default() -> MemoryLimit {
        match available_memory() {
            Some((bytes, what)) => MemoryLimit { bytes: bytes / 4 * 3, origin: format!("3/4 of {what} ({})", human(bytes)) },
            None => MemoryLimit { bytes: u64::MAX, origin: "no limit (the machine's memory could not be read)".into() },
        }
    }

    /// A limit set by the user (`origin` e.g. `--max-memory 8G`).
    pub fn set(bytes: u64, origin: impl Into<String>) -> MemoryLimit {
        MemoryLimit { bytes, origin: origin.into() }
    }

    /// Unlimited (library use without a limit).
    pub fn unlimited() -> MemoryLimit {
        MemoryLimit { bytes: u64::MAX, origin: "no limit".into() }
    }

    /// `Err` with a one-line message when `bytes` of `what` exceed the limit.
    pub fn check(&self, what: &str, bytes: u64) -> Result<(), String> {
        if bytes <= self.bytes {
            return Ok(());
        }
        Err(format!(
            "{what} needs about {}, above the memory limit of {} ({}; --max-memory SIZE sets it)",
            human(bytes),
            human(self.bytes),
            self.origin
        ))
    }
}

impl Default for MemoryLimit {
    fn default() -> Self {
        MemoryLimit::machine_default()
    }
}

/// The memory the process may use: the cgroup v2 limit if set, else `MemTotal`.
fn available_memory() -> Option<(u64, &'static str)> {
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    });
    match (cgroup, total) {
        (Some(c), Some(t)) if c < t => Some((c, "this cgroup's memory limit")),
        (_, Some(t)) => Some((t, "this machine's memory")),
        (Some(c), None) => Some((c, "this cgroup's memory limit")),
        (None, None) => None,
    }
}

/// Parses a size: bytes, or a number with K, M, G or T (powers of 1024; `KiB`, `MB`... accepted).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: u64 = match unit.trim().to_ascii_uppercase().trim_end_matches("IB").trim_end_matches('B') {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("`{text}`: unknown unit (use bytes or K, M, G, T)")),
    };
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a size (e.g. 512M, 8G)"))?;
    let bytes = value * factor as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("`{text}` is not a size of at least one byte"));
    }
    Ok(bytes as u64)
}

/// Bytes as `12.3 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

/// The estimate, part by part (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    pub weights: u64,
    pub activations: u64,
    pub data: u64,
    pub outputs: u64,
}

impl Estimate {
    pub fn total(&self) -> u64 {
        self.weights.saturating_add(self.activations).saturating_add(self.data).saturating_add(self.outputs)
    }

    /// `weights 3 x 1.2 MiB, activations ...` for messages.
    pub fn describe(&self) -> String {
        format!(
            "weights (three copies) {}, activations {}, data held {}, outputs kept {}",
            human(self.weights),
            human(self.activations),
            human(self.data),
            human(self.outputs)
        )
    }
}

/// What a run will hold besides the model (see [`estimate`]).
#[derive(Debug, Clone, Copy)]
pub struct RunShape {
    /// Evaluation samples (all outputs are kept).
    pub samples: usize,
    /// Samples run at the same time.
    pub parallel: usize,
    /// Bytes of samples held in memory.
    pub held_data: u64,
}

/// Estimates a run of `model` (its shapes inferred at the run's input shapes).
pub fn estimate(model: &Model, run: RunShape) -> Estimate {
    let g = &model.graph;
    let weights: u64 = g.value_ids().filter_map(|v| g.value(v).constant().map(|c| c.tensor.byte_size())).fold(0, u64::saturating_add);
    let per_sample_outputs: u64 = g.outputs().filter_map(|v| value_bytes(model, v)).fold(0, u64::saturating_add);
    let activations = peak_live_bytes(model).saturating_mul(run.parallel.max(1) as u64);
    Estimate {
        weights: weights.saturating_mul(3),
        activations,
        data: run.held_data,
        outputs: per_sample_outputs.saturating_mul(run.samples as u64).saturating_mul(2),
    }
}

/// Bytes of a value with a known shape and element type (not constants).
fn value_bytes(model: &Model, v: ValueId) -> Option<u64> {
    let value = model.graph.value(v);
    if value.constant().is_some() {
        return None;
    }
    let dims = value.shape.as_ref()?.concrete()?;
    let count = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))?;
    // Outputs are compared as f32 whatever their type: at least 4 bytes per element.
    let width = value.dtype.and_then(|dt| dt.storage_bytes(count)).unwrap_or(count.saturating_mul(4));
    Some(width.max(count.saturating_mul(4)).min(u64::MAX / 4))
}

/// The most bytes of non-constant values alive at once when the graph runs in topological order
/// (graph inputs alive from the start, each value freed after its last reader, graph outputs
/// kept).
fn peak_live_bytes(model: &Model) -> u64 {
    let g = &model.graph;
    let Ok(order) = g.topo_order() else { return 0 };
    let position: std::collections::HashMap<_, _> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    // The step after which each value can go (`usize::MAX`: never, a graph output).
    let last_use = |v: ValueId| -> usize {
        if g.is_graph_output(v) {
            return usize::MAX;
        }
        g.value(v).uses().iter().filter_map(|(n, _)| position.get(n).copied()).max().unwrap_or(0)
    };
    let mut frees: Vec<Vec<u64>> = vec![Vec::new(); order.len() + 1];
    let mut live: u64 = 0;
    let track = |v: ValueId, live: &mut u64, frees: &mut Vec<Vec<u64>>, at_least: usize| {
        let Some(bytes) = value_bytes(model, v) else { return };
        *live = live.saturating_add(bytes);
        let at = last_use(v).max(at_least);
        if at != usize::MAX {
            frees[at.min(order.len())].push(bytes);
        }
    };
    for v in g.runtime_inputs() {
        track(v, &mut live, &mut frees, 0);
    }
    let mut peak = live;
    for (i, &n) in order.iter().enumerate() {
        let node = g.node(n).expect("ordered node");
        for v in node.outputs().iter().flatten() {
            track(*v, &mut live, &mut frees, i);
        }
        peak = peak.max(live);
        for bytes in std::mem::take(&mut frees[i]) {
            live = live.saturating_sub(bytes);
        }
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;
    use whittle_graph::DataType;
    use whittle_graph::builder::GraphBuilder;
    use whittle_graph::shape::infer::{InferOptions, infer_shapes};

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1K").unwrap(), 1024);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_size("2 MB").unwrap(), 2 << 20);
        for bad in ["", "G", "-1", "1X", "0", "nan"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 29), "1.5 GiB");
        let limit = MemoryLimit::set(1 << 20, "--max-memory 1M");
        assert!(limit.check("x", 1 << 20).is_ok());
        let e = limit.check("this run", 3 << 20).unwrap_err();
        assert!(e.contains("3.0 MiB") && e.contains("1.0 MiB") && e.contains("--max-memory 1M"), "{e}");
        assert!(MemoryLimit::machine_default().bytes > 1 << 20);
    }

    /// x [1, 1000] -> Relu a -> Relu b -> Add(a, b) -> y: a lives until the Add, so three
    /// 4000-byte values are alive at its peak (a, b, y; x is freed after the first Relu).
    #[test]
    fn peak_follows_liveness() {
        let mut b = GraphBuilder::new(13);
        let x = b.input("x", DataType::Float, &[1, 1000]);
        let a = b.node("Relu", &[x], &["a"], vec![])[0];
        let r = b.node("Relu", &[a], &["b"], vec![])[0];
        let y = b.node("Add", &[a, r], &["y"], vec![])[0];
        b.output(y);
        let mut model = b.finish();
        infer_shapes(&mut model, &InferOptions { input_shapes: vec![("x".into(), vec![1, 1000])] }).unwrap();
        assert_eq!(peak_live_bytes(&model), 12_000);
        let e = estimate(&model, RunShape { samples: 10, parallel: 2, held_data: 7 });
        assert_eq!(e, Estimate { weights: 0, activations: 24_000, data: 7, outputs: 80_000 });
        assert_eq!(e.total(), 104_007);
    }
}
