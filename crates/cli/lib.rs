//! The `evaltap` command line: parsing and printing around the use cases of `evaltap-app`.
//! Commands live in their own modules; [`evaltap_app::App`] opens what they all need.

mod bench_cmd;
mod cli;
pub mod demo;
pub mod exchanges_cmd;
mod experiment_cmd;
pub mod gate_comment;
pub mod golden_cmd;
pub mod judge_cmd;
pub mod recommend_cmd;
mod schedule_cmd;
pub mod sources_cmd;
pub mod stats_cmd;

use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;

/// Exit code of a usage error on every command: bad arguments, a name that does not exist, no
/// configuration (BSD's `EX_USAGE`; clap's own 2 would read as the gate's "undecided").
pub const EXIT_USAGE: u8 = 64;

/// Exit code of `evaltap gate` when it could not decide for another reason (the database cannot
/// be read, a file cannot be written): distinct from 1, a regression (BSD's `EX_SOFTWARE`).
pub const EXIT_GATE_ERROR: u8 = 70;

/// The user asked for something that cannot be: exits [`EXIT_USAGE`].
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Whether `err` is the user's to fix: a [`UsageError`], or a name the store or the rubrics do
/// not know.
fn is_usage_error(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<evaltap_demo::DatabaseInUse>()
            || matches!(
                cause.downcast_ref::<evaltap_store::StoreError>(),
                Some(evaltap_store::StoreError::NotFound(_))
            )
            || matches!(
                cause.downcast_ref::<evaltap_app::AppError>(),
                Some(evaltap_app::AppError::NotFound(_))
            )
            || matches!(
                cause.downcast_ref::<evaltap_golden::GoldenError>(),
                Some(evaltap_golden::GoldenError::Missing(_))
            )
            || matches!(
                cause.downcast_ref::<evaltap_judge::JudgeError>(),
                Some(evaltap_judge::JudgeError::Unknown { .. })
            )
    })
}

/// Runs the command line and maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS };
        }
    };
    init_tracing();
    let is_gate = cli.is_gate();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            if is_usage_error(&err) {
                ExitCode::from(EXIT_USAGE)
            } else if is_gate {
                ExitCode::from(EXIT_GATE_ERROR)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVALTAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
