//! Errors in a pipeline, each pointing at `FILE:LINE:COLUMN` (or at the command-line flag that
//! set the value) with the closest valid names when a name is misspelt.

use std::fmt;
use std::path::PathBuf;

/// Where a diagnostic points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A place in the pipeline file (1-based line and column).
    File { line: usize, column: usize },
    /// A command-line flag, e.g. `--input x=1,3,48,192`.
    Flag(String),
    /// The pipeline file as a whole.
    Unknown,
}

/// One problem found while loading or checking a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The pipeline file.
    pub file: PathBuf,
    pub position: Position,
    pub message: String,
    /// Closest valid names, best first (empty when the problem is not a misspelling).
    pub did_you_mean: Vec<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.position {
            Position::File { line, column } => write!(f, "{}:{line}:{column}: {}", self.file.display(), self.message)?,
            Position::Flag(flag) => write!(f, "{} (from {flag}): {}", self.file.display(), self.message)?,
            Position::Unknown => write!(f, "{}: {}", self.file.display(), self.message)?,
        }
        match self.did_you_mean.as_slice() {
            [] => Ok(()),
            [one] => write!(f, " (did you mean `{one}`?)"),
            many => write!(f, " (did you mean {}?)", many.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(" or ")),
        }
    }
}

/// A pipeline that cannot run: every problem found, in file order where possible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PipelineError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.diagnostics.iter().map(|d| d.to_string()).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl From<Diagnostic> for PipelineError {
    fn from(d: Diagnostic) -> Self {
        PipelineError { diagnostics: vec![d] }
    }
}

/// Turns a `serde_norway` error into a diagnostic. A step's parameters are deserialized by the
/// pass through `erased_serde`, so their errors arrive as a message that already ends in the
/// inner position (" at line L column C") and then gets the outer one appended; the first
/// position in the text is the precise one. "unknown field/variant" messages get the closest
/// expected names.
pub fn from_yaml_error(file: PathBuf, error: &serde_norway::Error) -> Diagnostic {
    let text = error.to_string();
    let (message, inner) = split_positions(&text);
    let message = last_path_prefix(&message);
    let position = match (inner, error.location()) {
        (Some((line, column)), _) => Position::File { line, column },
        (None, Some(loc)) => Position::File { line: loc.line(), column: loc.column() },
        (None, None) => Position::Unknown,
    };
    let did_you_mean = suggestions(&message);
    Diagnostic { file, position, message, did_you_mean }
}

/// Removes every " at line L column C" from `text`; returns the cleaned text and the first
/// position found.
pub fn split_positions(text: &str) -> (String, Option<(usize, usize)>) {
    const MARK: &str = " at line ";
    let mut out = String::with_capacity(text.len());
    let mut first = None;
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let after = &rest[at + MARK.len()..];
        match parse_line_column(after) {
            Some((line, column, used)) => {
                out.push_str(&rest[..at]);
                first.get_or_insert((line, column));
                rest = &after[used..];
            }
            None => {
                out.push_str(&rest[..at + MARK.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (out, first)
}

/// Nested errors repeat the YAML path ("steps[1]: steps[1].x: steps[1].x.y: message"); keeps
/// the innermost one.
fn last_path_prefix(message: &str) -> String {
    let is_path = |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(c));
    let mut rest = message;
    let mut last = None;
    while let Some((head, tail)) = rest.split_once(": ") {
        if !is_path(head) {
            break;
        }
        last = Some(head);
        rest = tail;
    }
    match last {
        Some(path) => format!("{path}: {rest}"),
        None => rest.to_string(),
    }
}

/// Parses "L column C" at the start of `s`; returns (L, C, bytes used).
fn parse_line_column(s: &str) -> Option<(usize, usize, usize)> {
    let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
    let n1 = digits(s);
    let line = s[..n1].parse().ok()?;
    let rest = s[n1..].strip_prefix(" column ")?;
    let n2 = digits(rest);
    let column = rest[..n2].parse().ok()?;
    Some((line, column, n1 + " column ".len() + n2))
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (and "unknown variant"), the
/// expected names closest to `x`.
fn suggestions(message: &str) -> Vec<String> {
    let Some(start) = ["unknown field `", "unknown variant `"].iter().find_map(|p| message.find(p).map(|i| i + p.len())) else {
        return Vec::new();
    };
    let Some(len) = message[start..].find('`') else { return Vec::new() };
    let name = &message[start..start + len];
    let Some(expected_at) = message[start + len..].find("expected") else { return Vec::new() };
    let expected: Vec<&str> = message[start + len + expected_at..].split('`').skip(1).step_by(2).collect();
    whittle_passes::registry::closest(name, expected).into_iter().map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_split_out() {
        let (m, p) = split_positions("steps[1]: unknown field `x` at line 5 column 7 at line 4 column 3");
        assert_eq!(m, "steps[1]: unknown field `x`");
        assert_eq!(p, Some((5, 7)));
        let (m, p) = split_positions("look at line of sight");
        assert_eq!((m.as_str(), p), ("look at line of sight", None));
    }

    #[test]
    fn innermost_path_is_kept() {
        assert_eq!(last_path_prefix("steps[1]: steps[1].c: steps[1].c.m: invalid type: x"), "steps[1].c.m: invalid type: x");
        assert_eq!(last_path_prefix("missing field `steps`"), "missing field `steps`");
    }

    #[test]
    fn closest_expected_names() {
        let s = suggestions("unknown field `verfiy`, expected one of `model`, `inputs`, `verify`, `export`");
        assert_eq!(s, vec!["verify".to_string()]);
        assert_eq!(suggestions("unknown variant `nchww`, expected `nchw` or `nhwc`")[0], "nchw");
        assert!(suggestions("invalid type: string").is_empty());
    }

    #[test]
    fn display_names_file_line_column() {
        let d = Diagnostic {
            file: "p.yaml".into(),
            position: Position::File { line: 3, column: 5 },
            message: "unknown pass `dead_cod`".into(),
            did_you_mean: vec!["dead_code".into()],
        };
        assert_eq!(d.to_string(), "p.yaml:3:5: unknown pass `dead_cod` (did you mean `dead_code`?)");
    }
}
