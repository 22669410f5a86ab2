//! The integration and snapshot tests across the whittle crates, one module per subject, linked
//! into one test binary. The end-to-end tests of the `whittle` executable are in `cli.rs`.

mod cleanup_passes;
mod constant_eval;
mod ir_and_validation;
mod ir_toolkit_numeric;
mod low_rank;
mod pass_properties;
mod pass_snapshots;
mod prune;
mod prune_channels;
mod quantization;
mod roundtrip;
mod run_library;
mod separable;
mod sparse_storage;
