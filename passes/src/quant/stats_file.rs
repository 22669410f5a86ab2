//! Calibration statistics saved to a file and reused: a later run with the same model, the same
//! calibration data and the same values to calibrate reads them instead of running the model
//! (same statistics, so the same quantized model). The file is JSON, written atomically.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::quant::calibrate::Stats;

const VERSION: u32 = 1;

/// What a statistics file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedStats {
    pub version: u32,
    /// SHA-256 of the float model the statistics were measured on (as run).
    pub model: String,
    /// The measurement interface's fingerprint of the calibration data.
    pub data: String,
    pub samples: usize,
    /// Histograms by value name.
    pub values: BTreeMap<String, Stats>,
    /// Per-channel means by value name (bias correction).
    pub means: BTreeMap<String, Vec<f64>>,
}

impl SavedStats {
    /// The statistics in `path` when they were measured on this model and data and hold every
    /// value asked for; `Ok(None)` when the file does not exist or does not match (why, for the
    /// report); `Err` when it cannot be read or parsed.
    pub fn load(path: &Path, model: &str, data: &str, values: &[String], means: &[String]) -> Result<Result<SavedStats, String>, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Err("no statistics file yet".into())),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let saved: SavedStats =
            serde_json::from_str(&text).map_err(|e| format!("{}: not a whittle statistics file: {e}", path.display()))?;
        let missing =
            values.iter().find(|v| !saved.values.contains_key(*v)).or_else(|| means.iter().find(|v| !saved.means.contains_key(*v)));
        let why = if saved.version != VERSION {
            Some(format!("version {} (this whittle writes {VERSION})", saved.version))
        } else if saved.model != model {
            Some("measured on another model".to_string())
        } else if saved.data != data {
            Some("measured on other calibration data".to_string())
        } else {
            missing.map(|v| format!("it lacks `{v}`"))
        };
        Ok(match why {
            Some(w) => Err(format!("{} not reused: {w}", path.display())),
            None => Ok(saved),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string(self).map_err(|e| e.to_string())?;
        whittle_graph::atomic::write(path, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    pub fn new(model: String, data: String, samples: usize) -> SavedStats {
        SavedStats { version: VERSION, model, data, samples, values: BTreeMap::new(), means: BTreeMap::new() }
    }
}
