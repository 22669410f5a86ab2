//! `--set KEY=VALUE`: overriding any key of a pipeline file before it is parsed and validated.
//!
//! `KEY` is a dotted path through the file (`verify.min_sqnr_db`, `evaluation.samples`,
//! `steps.3.constant_folding.max_growth_bytes`); a number selects an item of a list, counted from
//! 1 as `--stop-after` counts steps. `VALUE` is parsed as YAML (`70`, `true`, `[1, 3, 8, 8]`,
//! `{npz: data.npz}`). A step written as a bare name (`- constant_folding`) takes parameters
//! through its name (`steps.3.constant_folding.max_growth_bytes=4096`). Overrides are applied to
//! the file's YAML in order, then the result is parsed and validated as the file would be: an
//! error caused by an override names that flag (with the closest valid key), not a line.

use serde_norway::{Mapping, Value};

/// One parsed `--set KEY=VALUE`.
#[derive(Debug, Clone, PartialEq)]
pub struct SetOverride {
    /// The flag as the user wrote it, for messages (`--set verify.min_sqnr_db=70`).
    pub flag: String,
    pub path: Vec<String>,
    pub value: Value,
}

impl SetOverride {
    /// Parses `KEY=VALUE`.
    pub fn parse(arg: &str) -> Result<SetOverride, String> {
        let flag = format!("--set {arg}");
        let (key, value) = arg.split_once('=').ok_or_else(|| format!("{flag}: expected KEY=VALUE, e.g. --set verify.min_sqnr_db=70"))?;
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        if path.iter().any(|s| s.is_empty()) {
            return Err(format!("{flag}: the key `{key}` has an empty part"));
        }
        let value: Value = serde_norway::from_str(value).map_err(|e| format!("{flag}: the value is not YAML: {e}"))?;
        Ok(SetOverride { flag, path, value })
    }

    /// The path as serde reports it in messages (`steps[2].constant_folding`): list items
    /// 0-based in brackets.
    pub fn message_path(&self, doc: &Value) -> String {
        let mut out = String::new();
        let mut node = Some(doc);
        for seg in &self.path {
            match node {
                Some(Value::Sequence(items)) => {
                    let i = seg.parse::<usize>().ok().and_then(|i| i.checked_sub(1));
                    out.push_str(&format!("[{}]", i.map_or(seg.clone(), |i| i.to_string())));
                    node = i.and_then(|i| items.get(i));
                }
                _ => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(seg);
                    node = node.and_then(|n| n.get(seg.as_str()));
                }
            }
        }
        out
    }

    /// Whether a parse error message (`steps[1].constant_folding: unknown field `x`...`, or at
    /// the top level `unknown field `verfiy`...`) is about this override's key.
    pub fn is_about(&self, message: &str, doc: &Value) -> bool {
        let p = self.message_path(doc);
        let subject = message.split(": ").next().unwrap_or("");
        let under = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}.")) || a.starts_with(&format!("{b}["));
        let is_path = !subject.is_empty() && subject.chars().all(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(c));
        if is_path {
            return under(subject, &p) || under(&p, subject);
        }
        // An error at the top level names the unknown key itself.
        message.contains(&format!("unknown field `{}`", self.path[0]))
    }

    /// Applies the override to `doc` (the file's YAML).
    pub fn apply(&self, doc: &mut Value) -> Result<(), String> {
        let mut node = doc;
        for (k, seg) in self.path.iter().enumerate() {
            let last = k + 1 == self.path.len();
            let here = self.path[..k].join(".");
            let at = if here.is_empty() { "the file".to_string() } else { format!("`{here}`") };
            node = match node {
                Value::Sequence(items) => {
                    let n = items.len();
                    let index =
                        seg.parse::<usize>().ok().filter(|i| (1..=n).contains(i)).ok_or_else(|| {
                            format!("{}: {at} is a list of {n} items: `{seg}` is not a position from 1 to {n}", self.flag)
                        })?;
                    let item = &mut items[index - 1];
                    if last {
                        *item = self.value.clone();
                        return Ok(());
                    }
                    // A step written as a bare pass name takes parameters through that name.
                    if let Value::String(name) = item {
                        *item = Value::Mapping(Mapping::from_iter([(Value::String(name.clone()), Value::Null)]));
                    }
                    item
                }
                Value::Mapping(map) => {
                    let key = Value::String(seg.clone());
                    if last {
                        map.insert(key, self.value.clone());
                        return Ok(());
                    }
                    let entry = map.entry(key).or_insert(Value::Null);
                    if entry.is_null() {
                        *entry = Value::Mapping(Mapping::new());
                    }
                    entry
                }
                Value::Null => {
                    *node = Value::Mapping(Mapping::new());
                    let Value::Mapping(map) = node else { unreachable!("just set") };
                    let entry = map.entry(Value::String(seg.clone())).or_insert(Value::Null);
                    if last {
                        *entry = self.value.clone();
                        return Ok(());
                    }
                    entry
                }
                _ => return Err(format!("{}: {at} is a single value, it has no key `{seg}`", self.flag)),
            };
        }
        Err(format!("{}: empty key", self.flag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        serde_norway::from_str("verify: {min_sqnr_db: 60}\nsteps:\n  - remove_noops\n  - constant_folding: {max_growth_bytes: 1}\n")
            .unwrap()
    }

    #[test]
    fn sets_nested_keys_and_step_parameters() {
        let mut d = doc();
        SetOverride::parse("verify.min_sqnr_db=70").unwrap().apply(&mut d).unwrap();
        SetOverride::parse("steps.2.constant_folding.max_growth_bytes=4096").unwrap().apply(&mut d).unwrap();
        SetOverride::parse("steps.1.remove_noops.x=true").unwrap().apply(&mut d).unwrap();
        SetOverride::parse("evaluation.random.seed=3").unwrap().apply(&mut d).unwrap();
        let expected: Value = serde_norway::from_str(
            "verify: {min_sqnr_db: 70}\nsteps:\n  - remove_noops: {x: true}\n  - constant_folding: {max_growth_bytes: 4096}\nevaluation: {random: {seed: 3}}\n",
        )
        .unwrap();
        assert_eq!(d, expected);
    }

    #[test]
    fn refuses_what_cannot_be_reached() {
        let mut d = doc();
        assert!(SetOverride::parse("steps.3.dead_code=1").unwrap().apply(&mut d).unwrap_err().contains("list of 2 items"));
        assert!(SetOverride::parse("verify.min_sqnr_db.x=1").unwrap().apply(&mut d).unwrap_err().contains("single value"));
        assert!(SetOverride::parse("verify").is_err());
        assert!(SetOverride::parse("a..b=1").is_err());
        assert_eq!(SetOverride::parse("steps.2.constant_folding.x=1").unwrap().message_path(&doc()), "steps[1].constant_folding.x");
    }
}
