//! The graph crate's integration and snapshot tests, one module per subject, linked into one test
//! binary.

mod ir_toolkit;
mod shape_inference;
mod text_form;
