//! One pipeline step: a registered pass built from its parameters.
//!
//! In YAML a step is either the pass name (`- dead_code`, every parameter at its default) or a
//! map with one key, the pass name, whose value holds the parameters
//! (`- fold_batchnorm: {param: value}`; an empty value means the defaults). The parameters are
//! deserialized by the pass itself ([`PassInfo::build`](whittle_passes::registry::PassInfo)) straight from
//! the YAML deserializer, through `erased_serde`, so a misspelt parameter or a wrong type is
//! reported at its own line and column.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use whittle_passes::pass::Pass;
use whittle_passes::registry::{self, PASSES, PassInfo};

/// A configured pass, ready to run.
pub struct Step {
    /// The registry name.
    pub name: &'static str,
    /// Exact passes keep outputs unchanged up to float rounding.
    pub exact: bool,
    pub pass: Box<dyn Pass>,
    /// The parameters as written in the pipeline (`null` when none were given), for reports.
    pub params: serde_json::Value,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Step").field("name", &self.name).field("exact", &self.exact).field("params", &self.params).finish()
    }
}

impl Step {
    /// The step for a registered pass with its default parameters.
    pub fn with_defaults(info: &'static PassInfo) -> Step {
        Step { name: info.name, exact: info.exact, pass: info.build_default(), params: serde_json::Value::Null }
    }
}

/// The error for a name that is not a registered pass.
fn unknown_pass<E: de::Error>(name: &str) -> E {
    let close = registry::closest(name, PASSES.iter().map(|p| p.name));
    let hint = match close.as_slice() {
        [] => String::new(),
        [one] => format!("; did you mean `{one}`?"),
        many => format!("; did you mean {}?", many.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(" or ")),
    };
    E::custom(format!("unknown pass `{name}`{hint} (`whittle passes` lists them all)"))
}

fn lookup<E: de::Error>(name: &str) -> Result<&'static PassInfo, E> {
    registry::lookup(name).ok_or_else(|| unknown_pass(name))
}

impl<'de> de::Deserialize<'de> for Step {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Step, D::Error> {
        d.deserialize_any(StepVisitor)
    }
}

struct StepVisitor;

impl<'de> Visitor<'de> for StepVisitor {
    type Value = Step;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a pass name (`- dead_code`) or a map from one pass name to its parameters (`- fold_batchnorm: {...}`)")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Step, E> {
        Ok(Step::with_defaults(lookup(name)?))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Step, A::Error> {
        let Some(name) = map.next_key::<String>()? else {
            return Err(de::Error::custom("an empty map is not a step: write the pass name"));
        };
        let info = lookup::<A::Error>(&name)?;
        let pass = map.next_value_seed(ParamsSeed(info))?;
        if let Some(second) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a step holds one pass, found `{name}` and `{second}` in the same item (start each pass with its own `- `)"
            )));
        }
        Ok(Step { name: info.name, exact: info.exact, pass, params: serde_json::Value::Null })
    }
}

/// Deserializes a pass's parameters with the pass's own `build` function.
struct ParamsSeed(&'static PassInfo);

impl<'de> DeserializeSeed<'de> for ParamsSeed {
    type Value = Box<dyn Pass>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Box<dyn Pass>, D::Error> {
        let mut erased = <dyn erased_serde::Deserializer>::erase(d);
        (self.0.build)(&mut erased).map_err(de::Error::custom)
    }
}
