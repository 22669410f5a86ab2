//! whittle's runner: everything on top of the graph and the passes.
//!
//! - [`pipeline`]: pipeline files (YAML), command-line overrides, loading and checking the model
//!   and data before anything runs;
//! - [`data`]: input samples from `.npz`/`.npy`/image folders/seeded random;
//! - [`manager`]: the pass manager (shape inference, pass, validation, figures per step);
//! - [`verify`]: running models with tract and comparing them;
//! - [`gate`]: thresholds, pass or fail;
//! - [`report`]: the JSON report (schema in `docs/report-schema.md`) and the terminal summary;
//! - [`fingerprint`]: what an output depends on, for up-to-date checks;
//! - [`memory`]: the memory a run will need, and the limit it is held to;
//! - [`run_pipeline`]: all of the above as one call, usable without the CLI;
//! - [`sweep`]: one pipeline at a series of values of a key (a pruning ratio), one table.
//!
//! ```no_run
//! use whittle_runner::{Overrides, Pipeline, RunOptions, run_pipeline};
//! let mut pipeline = Pipeline::load("pipelines/cleanup.yaml")?;
//! pipeline.apply(&Overrides { output: Some("out/model.onnx".into()), ..Overrides::default() })?;
//! let outcome = run_pipeline(&pipeline, &RunOptions::default())?;
//! println!("{}", whittle_runner::report::render_text(&outcome.report));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod data;
pub mod fingerprint;
pub mod gate;
pub mod manager;
pub mod memory;
pub mod pipeline;
pub mod report;
pub mod run;
pub mod sweep;
pub mod verify;

pub use pipeline::{Overrides, Pipeline, PipelineError};
pub use report::{Report, RunStatus};
pub use run::{RunError, RunOptions, RunOutcome, run_pipeline};
