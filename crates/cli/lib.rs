//! The `evaltap` command line: glue between the pipeline crates. Commands live in their own
//! modules; [`app::App`] wires store, queue, rubrics, server and workers for all of them.

pub mod app;
pub mod bench;
pub mod bench_dashboard;
pub mod bench_ingest;
pub mod bench_proxy;
pub mod bench_stats;
mod cli;
pub mod demo;
pub mod gate;
pub mod golden_cmd;
pub mod judge_cmd;
pub mod sources_cmd;
pub mod stats_cmd;

use std::process::ExitCode;

use clap::Parser;

pub use cli::Cli;

/// Runs the command line and maps errors to exit codes.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
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
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("EVALTAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
