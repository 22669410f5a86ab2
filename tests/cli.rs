//! End-to-end tests of the `whittle` executable (declared by the `cli` crate so that they can run
//! it), one module per subject, linked into one test binary.

mod cli_any_model;
mod cli_commands;
mod cli_errors;
mod cli_guards;
mod cli_limits;
mod cli_pipelines_bad;
mod cli_prune;
mod cli_prune_channels;
mod cli_quantize;
mod cli_run;
mod cli_separable;
