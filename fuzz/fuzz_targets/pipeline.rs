//! Fuzz target `pipeline`: arbitrary text → a pipeline file with `--set` overrides and an
//! `--eval` argument. The input is split at lines `---sets---` and `---eval---`: the YAML, then one
//! `KEY=VALUE` override per line, then a data argument. Parsing must return a pipeline or
//! diagnostics, never panic, hang or exhaust memory; every diagnostic must render.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use whittle_runner::{Overrides, Pipeline};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (yaml, rest) = text.split_once("\n---sets---\n").unwrap_or((&text, ""));
    let (sets, eval) = rest.split_once("\n---eval---\n").unwrap_or((rest, ""));
    let sets: Vec<String> = sets.lines().map(str::to_string).collect();
    let path = Path::new("/nonexistent/fuzz.yaml");
    match Pipeline::parse_with_sets(yaml, path, Path::new("/nonexistent"), &sets) {
        Ok(mut pipeline) => {
            let eval = eval.lines().next().filter(|l| !l.is_empty()).map(str::to_string);
            let overrides = Overrides { evaluation: eval, ..Overrides::default() };
            if let Err(e) = pipeline.apply(&overrides) {
                let _ = e.to_string();
            }
            let _ = pipeline.find_step("1");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
