//! The `whittle` command line.
//!
//! Exit codes are stable (CI depends on them): see [`exit`].

mod commands;
mod exit;
mod input_dims;
mod terminal;

use clap::{Parser, Subcommand};

use crate::exit::{CliError, ExitCode};

#[derive(Parser)]
#[command(name = "whittle", version, about = "Make ONNX models smaller and faster, and prove the result before shipping it")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Summarise a model: opsets, inputs/outputs, op histogram, parameters, MACs per layer.
    Inspect(commands::inspect::Args),
    /// Print the channel dependency groups structured pruning works on, and why any is declined.
    Groups(commands::groups::Args),
    /// Print the canonical text form of a model.
    Dump(commands::dump::Args),
    /// Unified diff of two models' canonical text forms.
    Diff(commands::diff::Args),
    /// Re-save a model through the IR, optionally moving weights into or out of external data.
    Convert(commands::convert::Args),
    /// Run a pipeline: passes, verification with tract, the gate; write the model only if it passes.
    Run(Box<commands::run::Args>),
    /// Run a pipeline at a series of values of one key (a pruning ratio): a table and chart of the
    /// task metric, fidelity, MACs and measured latency against it.
    Sweep(Box<commands::sweep::Args>),
    /// List every pass with its parameters, defaults and a one-line description.
    Passes(commands::passes::Args),
}

fn main() -> std::process::ExitCode {
    remove_temporary_files_on_signal();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { ExitCode::Usage } else { ExitCode::Success };
            let _ = e.print();
            return code.into();
        }
    };
    let result = match cli.command {
        Command::Inspect(args) => commands::inspect::run(&args),
        Command::Groups(args) => commands::groups::run(&args),
        Command::Dump(args) => commands::dump::run(&args),
        Command::Diff(args) => commands::diff::run(&args),
        Command::Convert(args) => commands::convert::run(&args),
        Command::Run(args) => commands::run::run(&args),
        Command::Sweep(args) => commands::sweep::run(&args),
        Command::Passes(args) => commands::passes::run(&args),
    };
    match result {
        Ok(code) => code.into(),
        Err(e) => report(e),
    }
}

/// On SIGINT or SIGTERM: remove every temporary file whittle has open (a partial output would
/// otherwise stay behind as a hidden file) and exit with 128 + the signal number, as shells do.
fn remove_temporary_files_on_signal() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return; // Without the handler the default action (exit) applies; nothing else changes.
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            let removed = whittle_graph::atomic::remove_pending();
            let what = if signal == SIGINT { "interrupted" } else { "terminated" };
            eprintln!("whittle: {what}; {removed} unfinished temporary file(s) removed");
            std::process::exit(128 + signal);
        }
    });
}

fn report(e: CliError) -> std::process::ExitCode {
    eprintln!("error: {}", terminal::safe(&format!("{:#}", e.error)));
    e.code.into()
}
