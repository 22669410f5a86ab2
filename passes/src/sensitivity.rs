//! Per-layer sensitivity: how far a model's outputs move when only one layer is compressed, over
//! a grid of strengths, and the per-layer strengths that reach a global target with the least
//! predicted loss.
//!
//! **Measuring** ([`measure_curves`]): for every layer and every grid point, the pass builds a
//! candidate with only that layer compressed, and [`Measure::fidelity_on`] answers with its
//! output SQNR on the first calibration samples. Layers are measured in parallel (each answer
//! also runs its samples in parallel); the table is saved as JSON ([`Table::save`]) and reused by
//! a later run on the same model, data and settings ([`Table::load`]), with a CSV and an SVG
//! heat map beside it for people.
//!
//! **Allocating** ([`allocate`]): each layer's curve is turned into output noise power relative
//! to the signal, `10^(-SQNR/10)` (0 at no compression), as a function of the weights it
//! removes. Noise from independent layers adds, so the best allocation of a removal budget
//! minimizes the summed noise: take the lower convex hull of every curve (a convex curve's
//! marginal cost rises), and spend the budget on hull segments in order of noise per removed
//! weight, across all layers (the greedy solution of this separable convex problem is exact).
//! The last segment is taken in part (its strength interpolated) unless choices are all or
//! nothing (N:M patterns), where the last layer taken may overshoot the target by its size.

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use whittle_graph::Model;

use crate::measure::{Measure, MeasureError};
use crate::pass::PassError;

const VERSION: u32 = 1;

/// One measured point: the layer alone compressed at `sparsity`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub sparsity: f64,
    /// Lowest output SQNR over the model's outputs, dB (`null` in JSON when identical).
    #[serde(with = "infinite_as_null")]
    pub sqnr_db: f64,
    /// Whether the pipeline's accuracy thresholds still hold on the samples.
    pub thresholds_pass: Option<bool>,
}

/// One layer's measured curve.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The node label.
    pub layer: String,
    /// Number of weights the sparsity is a share of.
    pub weights: usize,
    /// In increasing sparsity.
    pub points: Vec<Point>,
}

/// What a table was measured on: a table is reused only when all of it matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableKey {
    /// SHA-256 of the model as run.
    pub model: String,
    /// The measurement interface's fingerprint of the calibration data.
    pub data: String,
    /// Calibration samples each point was measured on.
    pub samples: usize,
    /// How the layers were compressed (the pass's score and pattern, e.g. "magnitude unstructured").
    pub method: String,
    pub grid: Vec<f64>,
}

impl TableKey {
    /// The key of a table measured on `model` by `measure` on the first `samples` calibration
    /// samples (0 or more than there are: all of them).
    pub fn new(model: &Model, measure: &dyn Measure, samples: usize, method: String, grid: Vec<f64>) -> TableKey {
        use sha2::Digest;
        TableKey {
            model: hex::encode(sha2::Sha256::digest(whittle_graph::encode_for_runtime(model))),
            data: measure.data_fingerprint(),
            samples: if samples == 0 { measure.samples() } else { samples.min(measure.samples()) },
            method,
            grid,
        }
    }
}

/// A saved sensitivity table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub version: u32,
    #[serde(flatten)]
    pub key: TableKey,
    pub curves: Vec<Curve>,
}

/// One layer to measure: its label and weight count.
pub struct Candidate {
    pub layer: String,
    pub weights: usize,
}

/// Measures every layer at every grid point: `compress(layer index, sparsity)` builds the model
/// with only that layer compressed.
pub fn measure_curves(
    layers: &[Candidate],
    grid: &[f64],
    samples: usize,
    measure: &dyn Measure,
    compress: &(dyn Fn(usize, f64) -> Result<Model, String> + Sync),
) -> Result<Vec<Curve>, MeasureError> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    layers
        .par_iter()
        .enumerate()
        .map(|(i, layer)| {
            let points = grid
                .iter()
                .map(|&s| {
                    let candidate = compress(i, s).map_err(|e| MeasureError(format!("{}: {e}", layer.layer)))?;
                    let f = measure.fidelity_on(&candidate, samples)?;
                    Ok(Point { sparsity: s, sqnr_db: f.min_sqnr_db, thresholds_pass: f.thresholds_pass })
                })
                .collect::<Result<Vec<_>, MeasureError>>()?;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_multiple_of(10) || n == layers.len() {
                measure.log(&format!("sensitivity: {n} of {} layers measured", layers.len()));
            }
            Ok(Curve { layer: layer.layer.clone(), weights: layer.weights, points })
        })
        .collect()
}

/// The table saved at `path` when it was measured with `key` on exactly `layers` (reused: no
/// model runs), else measured with [`measure_curves`]. Returns the table and whether it was
/// reused; a saved table that does not match goes to `notes` with the reason. The caller saves
/// the table once it has chosen ([`Table::save`]).
pub fn load_or_measure(
    path: Option<&Path>,
    key: TableKey,
    layers: &[Candidate],
    measure: &dyn Measure,
    compress: &(dyn Fn(usize, f64) -> Result<Model, String> + Sync),
    notes: &mut Vec<String>,
) -> Result<(Table, bool), PassError> {
    if let Some(path) = path {
        // An unreadable or foreign file is the user's to fix (invalid input, not a failed run).
        match Table::load(path, &key, layers).map_err(PassError::unsupported_model)? {
            Ok(table) => return Ok((table, true)),
            Err(why) => notes.push(why),
        }
    }
    measure.log(&format!("sensitivity: {} layers x {} points on {} calibration samples", layers.len(), key.grid.len(), key.samples));
    let curves =
        measure_curves(layers, &key.grid, key.samples, measure, compress).map_err(|e| PassError::new(format!("sensitivity: {e}")))?;
    Ok((Table::new(key, curves), false))
}

impl Table {
    pub fn new(key: TableKey, curves: Vec<Curve>) -> Table {
        Table { version: VERSION, key, curves }
    }

    /// The table in `path` when it was measured with `key` on exactly these layers; `Ok(Err(why
    /// not))` when the file does not exist or does not match; `Err` when it cannot be read.
    pub fn load(path: &Path, key: &TableKey, layers: &[Candidate]) -> Result<Result<Table, String>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err(format!("{} does not exist yet", path.display()))),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let table: Table = serde_json::from_str(&text).map_err(|e| format!("{}: not a whittle sensitivity table: {e}", path.display()))?;
        let same_layers = table.curves.len() == layers.len()
            && table.curves.iter().zip(layers).all(|(c, l)| c.layer == l.layer && c.weights == l.weights);
        let why = if table.version != VERSION {
            Some(format!("version {} (this whittle writes {VERSION})", table.version))
        } else if table.key.model != key.model {
            Some("measured on another model".into())
        } else if table.key.data != key.data || table.key.samples != key.samples {
            Some("measured on other calibration data".into())
        } else if table.key.method != key.method || table.key.grid != key.grid {
            Some(format!("measured for `{}` on grid {:?}", table.key.method, table.key.grid))
        } else if !same_layers {
            Some("measured on other layers".into())
        } else {
            None
        };
        Ok(match why {
            Some(w) => Err(format!("{} not reused: {w}", path.display())),
            None => Ok(table),
        })
    }

    /// Writes the table as JSON to `path` (atomically), and beside it (same stem) the CSV and the
    /// SVG heat map with the `chosen` sparsity of each layer.
    pub fn save(&self, path: &Path, chosen: &[f64]) -> Result<(), String> {
        let write =
            |p: &Path, bytes: &[u8]| whittle_graph::atomic::write(p, bytes).map_err(|e| format!("cannot write {}: {e}", p.display()));
        write(path, serde_json::to_string_pretty(self).map_err(|e| e.to_string())?.as_bytes())?;
        write(&path.with_extension("csv"), self.csv(chosen).as_bytes())?;
        write(&path.with_extension("svg"), self.svg(chosen).as_bytes())
    }

    /// One row per layer: label, weights, SQNR (dB) at each grid point, chosen sparsity.
    pub fn csv(&self, chosen: &[f64]) -> String {
        let mut out = String::from("layer,weights");
        for s in &self.key.grid {
            out.push_str(&format!(",sqnr_db@{s}"));
        }
        out.push_str(",chosen_sparsity\n");
        for (i, c) in self.curves.iter().enumerate() {
            out.push_str(&format!("\"{}\",{}", c.layer.replace('"', "\"\""), c.weights));
            for p in &c.points {
                out.push_str(&format!(",{}", if p.sqnr_db.is_finite() { format!("{:.2}", p.sqnr_db) } else { "inf".into() }));
            }
            out.push_str(&format!(",{}\n", chosen.get(i).map_or(String::new(), |s| format!("{s:.4}"))));
        }
        out
    }

    /// A heat map: one row per layer, one cell per grid point coloured by SQNR (red at 0 dB,
    /// green at 40 dB and above), and the chosen sparsity in the last column.
    pub fn svg(&self, chosen: &[f64]) -> String {
        let (label_w, cell_w, row_h, top) = (260.0, 64.0, 16.0, 40.0);
        let cols = self.key.grid.len() + 1;
        let width = label_w + cell_w * cols as f64 + 10.0;
        let height = top + row_h * self.curves.len() as f64 + 10.0;
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut out = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">\n\
             <text x=\"4\" y=\"14\">output SQNR (dB) with one layer pruned: {}</text>\n",
            esc(&self.key.method)
        );
        for (j, s) in self.key.grid.iter().enumerate() {
            out.push_str(&format!("<text x=\"{}\" y=\"{}\">{s}</text>\n", label_w + cell_w * j as f64 + 4.0, top - 6.0));
        }
        out.push_str(&format!("<text x=\"{}\" y=\"{}\">chosen</text>\n", label_w + cell_w * (cols - 1) as f64 + 4.0, top - 6.0));
        for (i, c) in self.curves.iter().enumerate() {
            let y = top + row_h * i as f64;
            out.push_str(&format!("<text x=\"4\" y=\"{}\">{}</text>\n", y + 12.0, esc(&c.layer)));
            for (j, p) in c.points.iter().enumerate() {
                let hue = if p.sqnr_db.is_finite() { 120.0 * (p.sqnr_db / 40.0).clamp(0.0, 1.0) } else { 120.0 };
                let x = label_w + cell_w * j as f64;
                let value = if p.sqnr_db.is_finite() { format!("{:.1}", p.sqnr_db) } else { "inf".into() };
                out.push_str(&format!(
                    "<rect x=\"{x}\" y=\"{y}\" width=\"{cell_w}\" height=\"{row_h}\" fill=\"hsl({hue:.0},70%,60%)\"/>\
                     <text x=\"{}\" y=\"{}\">{value}</text>\n",
                    x + 4.0,
                    y + 12.0
                ));
            }
            if let Some(s) = chosen.get(i) {
                out.push_str(&format!("<text x=\"{}\" y=\"{}\">{s:.2}</text>\n", label_w + cell_w * (cols - 1) as f64 + 4.0, y + 12.0));
            }
        }
        out.push_str("</svg>\n");
        out
    }
}

/// Output noise power relative to the signal at an SQNR (0 when identical).
fn noise(sqnr_db: f64) -> f64 {
    if sqnr_db.is_nan() { 1e30 } else { 10f64.powf(-sqnr_db / 10.0) }
}

/// One step of a layer's convex curve: from sparsity `from` to `to`, `removed` more weights for
/// `cost` more noise.
struct Segment {
    layer: usize,
    from: f64,
    to: f64,
    removed: f64,
    cost: f64,
}

/// The lower convex hull of a curve (with the origin), as segments in increasing sparsity.
fn hull(layer: usize, c: &Curve) -> Vec<Segment> {
    let n = c.weights as f64;
    // Noise cannot fall as more is removed: a lower point past a higher one is measurement noise.
    let mut pts = vec![(0.0, 0.0)];
    for p in &c.points {
        let y = noise(p.sqnr_db).max(pts.last().map_or(0.0, |q: &(f64, f64)| q.1));
        pts.push((p.sparsity, y));
    }
    let mut h: Vec<(f64, f64)> = Vec::new();
    for p in pts {
        while h.len() >= 2 {
            let (a, b) = (h[h.len() - 2], h[h.len() - 1]);
            // Drop `b` when it lies on or above the line from `a` to `p`.
            if (b.1 - a.1) * (p.0 - a.0) >= (p.1 - a.1) * (b.0 - a.0) {
                h.pop();
            } else {
                break;
            }
        }
        h.push(p);
    }
    h.windows(2).map(|w| Segment { layer, from: w[0].0, to: w[1].0, removed: (w[1].0 - w[0].0) * n, cost: w[1].1 - w[0].1 }).collect()
}

/// Per-layer sparsities removing `target` of all the curves' weights with the least summed noise
/// (module documentation), and the predicted summed noise as an SQNR in dB. With `whole`, a layer
/// takes a grid point entirely or not at all.
pub fn allocate(curves: &[Curve], target: f64, whole: bool) -> Result<(Vec<f64>, f64), String> {
    let total: f64 = curves.iter().map(|c| c.weights as f64).sum();
    let reachable: f64 = curves.iter().map(|c| c.weights as f64 * c.points.last().map_or(0.0, |p| p.sparsity)).sum();
    let need = target * total;
    if need > reachable + 0.5 {
        return Err(format!(
            "a sparsity of {target} is out of reach: the sensitivity grid goes to {:.3} of these weights (raise the grid's last point)",
            reachable / total.max(1.0)
        ));
    }
    let mut segments: Vec<Segment> = curves.iter().enumerate().flat_map(|(i, c)| hull(i, c)).collect();
    // Cheapest noise per removed weight first; a layer's hull segments rise in slope, so they are
    // taken in order. Ties by layer and position, for the same answer every run.
    segments
        .sort_by(|a, b| (a.cost / a.removed).total_cmp(&(b.cost / b.removed)).then(a.layer.cmp(&b.layer)).then(a.from.total_cmp(&b.from)));
    let mut chosen = vec![0.0; curves.len()];
    let (mut removed, mut cost) = (0.0, 0.0);
    for s in &segments {
        if removed >= need - 0.5 {
            break;
        }
        if whole || removed + s.removed <= need {
            chosen[s.layer] = s.to;
            removed += s.removed;
            cost += s.cost;
        } else {
            let share = (need - removed) / s.removed;
            chosen[s.layer] = s.from + (s.to - s.from) * share;
            cost += s.cost * share;
            removed = need;
        }
    }
    let predicted = if cost <= 0.0 { f64::INFINITY } else { -10.0 * cost.log10() };
    Ok((chosen, predicted))
}

/// The summed output noise of the layers at `sparsities` (each curve's noise interpolated
/// linearly between its points, the last point held beyond it), as an SQNR in dB: the
/// prediction for an allocation not chosen by [`allocate`] (every layer at the same sparsity).
pub fn predicted_sqnr(curves: &[Curve], sparsities: &[f64]) -> f64 {
    let mut cost = 0.0;
    for (c, &s) in curves.iter().zip(sparsities) {
        let mut prev = (0.0, 0.0);
        let mut at = None;
        for p in &c.points {
            let y = noise(p.sqnr_db).max(prev.1);
            if s <= p.sparsity {
                let t = if p.sparsity > prev.0 { (s - prev.0) / (p.sparsity - prev.0) } else { 1.0 };
                at = Some(prev.1 + t * (y - prev.1));
                break;
            }
            prev = (p.sparsity, y);
        }
        cost += at.unwrap_or(prev.1);
    }
    if cost <= 0.0 { f64::INFINITY } else { -10.0 * cost.log10() }
}

/// `inf` SQNR (an unchanged output) as JSON `null`, which has no infinity.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(layer: &str, weights: usize, sqnr: &[(f64, f64)]) -> Curve {
        Curve {
            layer: layer.into(),
            weights,
            points: sqnr.iter().map(|&(s, q)| Point { sparsity: s, sqnr_db: q, thresholds_pass: None }).collect(),
        }
    }

    #[test]
    fn the_budget_goes_to_the_least_sensitive_layer_first() {
        // `robust` loses little at any sparsity, `fragile` a lot: at a 50% target over both (same
        // size), robust is pruned to 0.9 and fragile takes only the rest.
        let curves = [
            curve("fragile", 1000, &[(0.3, 20.0), (0.6, 10.0), (0.9, 3.0)]),
            curve("robust", 1000, &[(0.3, 50.0), (0.6, 45.0), (0.9, 40.0)]),
        ];
        let (chosen, predicted) = allocate(&curves, 0.5, false).unwrap();
        assert!((chosen[1] - 0.9).abs() < 1e-9, "{chosen:?}");
        assert!((chosen[0] - 0.1).abs() < 1e-9, "{chosen:?}");
        // Better than 0.5 each: fragile alone at 0.5 is below 20 dB.
        assert!(predicted > 20.0, "{predicted}");
        let removed: f64 = chosen.iter().zip(&curves).map(|(s, c)| s * c.weights as f64).sum();
        assert!((removed - 1000.0).abs() < 1e-6);
        // The prediction for the chosen sparsities matches allocate's own; uniform is worse.
        assert!((predicted_sqnr(&curves, &chosen) - predicted).abs() < 1e-9);
        assert!(predicted_sqnr(&curves, &[0.5, 0.5]) < predicted - 3.0);
        assert_eq!(predicted_sqnr(&curves, &[0.0, 0.0]), f64::INFINITY);
    }

    #[test]
    fn whole_choices_overshoot_by_at_most_one_layer_and_unreachable_targets_are_refused() {
        let curves = [curve("a", 100, &[(0.5, 30.0)]), curve("b", 100, &[(0.5, 10.0)]), curve("c", 100, &[(0.5, 40.0)])];
        let (chosen, _) = allocate(&curves, 0.2, true).unwrap();
        assert_eq!(chosen, vec![0.5, 0.0, 0.5]);
        assert!(allocate(&curves, 0.6, true).unwrap_err().contains("out of reach"));
        let (none, predicted) = allocate(&curves, 0.0, true).unwrap();
        assert_eq!((none, predicted), (vec![0.0; 3], f64::INFINITY));
    }

    #[test]
    fn a_non_convex_curve_is_taken_along_its_hull() {
        // A cheap point past an expensive one: the hull skips the expensive point.
        let c = curve("l", 100, &[(0.25, 20.0), (0.5, 19.5)]);
        let h = hull(0, &c);
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].from, h[0].to), (0.0, 0.5));
    }

    #[test]
    fn tables_round_trip_with_infinite_sqnr_and_render() {
        let key = TableKey { model: "m".into(), data: "d".into(), samples: 2, method: "magnitude unstructured".into(), grid: vec![0.5] };
        let t = Table::new(key.clone(), vec![curve("a<b>", 10, &[(0.5, f64::INFINITY)])]);
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("null"), "{json}");
        assert_eq!(serde_json::from_str::<Table>(&json).unwrap(), t);
        assert_eq!(t.csv(&[0.5]), "layer,weights,sqnr_db@0.5,chosen_sparsity\n\"a<b>\",10,inf,0.5000\n");
        assert!(t.svg(&[0.5]).contains("a&lt;b&gt;"));
        let dir = std::env::temp_dir().join(format!("whittle-sens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.json");
        t.save(&path, &[0.5]).unwrap();
        let layers = [Candidate { layer: "a<b>".into(), weights: 10 }];
        assert_eq!(Table::load(&path, &key, &layers).unwrap().unwrap(), t);
        let other = TableKey { model: "other".into(), ..key };
        assert!(Table::load(&path, &other, &layers).unwrap().unwrap_err().contains("another model"));
        assert!(path.with_extension("svg").exists() && path.with_extension("csv").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
