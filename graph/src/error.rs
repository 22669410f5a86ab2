//! Errors of the graph crate. Every variant names the file, node or tensor it is about.

use std::path::PathBuf;

use crate::dtype::DataType;

/// A problem with one tensor's contents.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TensorError {
    #[error("unknown data type code {0}")]
    UnknownDtype(i32),
    #[error("negative dimension in {0:?}")]
    NegativeDim(Vec<i64>),
    #[error("element count of dims {0:?} overflows")]
    Overflow(Vec<i64>),
    #[error("data holds {found} elements/bytes where the dims need {expected}")]
    DataLength { found: u64, expected: u64 },
    #[error("{what} is not supported for {dtype}")]
    Unsupported { dtype: DataType, what: &'static str },
    #[error("external data was not loaded")]
    ExternalNotLoaded,
    #[error("axis {axis} is out of range for dims {dims:?}")]
    Axis { axis: i64, dims: Vec<i64> },
    #[error("index {index} is out of range for axis {axis} of size {size}")]
    Index { index: i64, axis: usize, size: i64 },
}

/// One structural problem found while importing a graph.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GraphIssue {
    #[error("tensor '{tensor}': {error}")]
    BadTensor { tensor: String, error: TensorError },
    #[error("node '{node}' ({op_type}) reads tensor '{tensor}' that nobody produces")]
    Dangling { node: String, op_type: String, tensor: String },
    #[error("graph output '{0}' is not produced by any node, input or initializer")]
    MissingOutput(String),
    #[error("tensor name '{name}' is defined more than once ({first} and {second})")]
    DuplicateName { name: String, first: String, second: String },
    #[error("value '{value}' has an unknown element type code {code}")]
    UnknownValueDtype { value: String, code: i32 },
    #[error("the graph has a cycle through nodes {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("node '{node}' ({op_type}): {message}")]
    BadNode { node: String, op_type: String, message: String },
    #[error("{0}")]
    Other(String),
}

/// Why a model file could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: cannot read: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a valid ONNX protobuf (truncated or corrupt file?): {message}")]
    Decode { path: PathBuf, message: String },
    #[error("{path}: a valid protobuf but not an ONNX model: {reason}")]
    NotAModel { path: PathBuf, reason: String },
    #[error("{path}: {}", format_issues(.issues))]
    Invalid { path: PathBuf, issues: Vec<GraphIssue> },
    #[error("{path}: tensor '{tensor}': external data file '{location}': {message}")]
    ExternalData { path: PathBuf, tensor: String, location: String, message: String },
    #[error("{path}: cannot write: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Export { path: PathBuf, message: String },
}

/// Formats a list of issues: the first ones in full, then a count of the rest.
pub fn format_issues(issues: &[GraphIssue]) -> String {
    const SHOWN: usize = 10;
    let mut s: Vec<String> = issues.iter().take(SHOWN).map(|i| i.to_string()).collect();
    if issues.len() > SHOWN {
        s.push(format!("... and {} more", issues.len() - SHOWN));
    }
    if issues.len() == 1 { s.remove(0) } else { format!("{} problems:\n  {}", issues.len(), s.join("\n  ")) }
}
