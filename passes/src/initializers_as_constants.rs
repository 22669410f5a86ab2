//! `initializers_as_constants`: treats initializers that are also listed as graph inputs as the
//! constants they are, and removes them from the inputs.
//!
//! Before IR version 4 every initializer had to be listed as a graph input too, and older
//! converters (and some exporters since) still write them that way. ONNX reads such an input as
//! an overridable default, so nothing folds into a layer whose weight "is a graph input". This
//! pass makes them plain constants: the inputs a caller must feed do not change and the model
//! computes the same for them (**exact**). The IR version is raised to 4 (IR 3 requires
//! initializers to be listed). The report says how many inputs went.
//!
//! From IR 4 on, listing an initializer as an input is a deliberate choice: an overridable
//! default that a caller may feed. Those are left alone (and reported) unless
//! `include_ir4_and_later` is set, since after the pass they can no longer be fed.

use serde::{Deserialize, Serialize};
use whittle_graph::Model;

use crate::pass::{Pass, PassContext, PassDef, PassError, PassReport};

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Also in IR >= 4 files, where such inputs are overridable defaults.
    pub include_ir4_and_later: bool,
}

pub struct InitializersAsConstants(Params);

impl PassDef for InitializersAsConstants {
    const NAME: &'static str = "initializers_as_constants";
    const SUMMARY: &'static str = "Treat initializers listed as graph inputs (IR < 4 files) as constants and drop them from the inputs";
    const EXACT: bool = true;
    type Params = Params;
    const PARAMS: &'static [(&'static str, &'static str, &'static str)] =
        &[("include_ir4_and_later", "bool", "also in IR >= 4 files, where such inputs are overridable defaults a caller may feed")];
    fn new(params: Params) -> Self {
        InitializersAsConstants(params)
    }
}

impl Pass for InitializersAsConstants {
    fn run(&self, model: &mut Model, _ctx: &PassContext) -> Result<PassReport, PassError> {
        let mut report = PassReport::default();
        let g = &model.graph;
        let constants: Vec<_> = g.inputs().filter(|v| g.value(*v).constant().is_some()).collect();
        let names: Vec<String> = constants.iter().map(|v| g.value(*v).name.clone()).collect();
        if !constants.is_empty() && model.ir_version() >= 4 && !self.0.include_ir4_and_later {
            report.notes.push(format!(
                "{} initializers are also graph inputs, overridable defaults in this IR {} file: left as inputs \
                 (include_ir4_and_later: true makes them constants; callers can then no longer feed them)",
                constants.len(),
                model.ir_version()
            ));
            return Ok(report);
        }
        model.graph.input_infos_mut().retain(|(v, _)| !constants.contains(v));
        let removed = constants.len();
        if removed > 0 {
            report.applied = removed;
            let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
            let more = if names.len() > 5 { format!(", ... ({} in all)", names.len()) } else { String::new() };
            report.notes.push(format!("{removed} initializers were also graph inputs; now constants: {}{more}", shown.join(", ")));
            if model.ir_version() < 4 {
                report.notes.push(format!("IR version {} -> 4 (initializers no longer listed as inputs)", model.ir_version()));
                model.meta.ir_version = Some(4);
            }
        }
        Ok(report)
    }
}
