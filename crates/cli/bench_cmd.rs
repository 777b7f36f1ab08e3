//! `evaltap bench …`: each benchmark's settings from the command line, its figures printed.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// A golden run of N items with one judge rubric against the simulated upstream, beside a
    /// bare HTTP client making the same calls at the same concurrency (the replay and judge
    /// pipeline end to end; also `bench pipeline`).
    #[command(alias = "pipeline")]
    Golden {
        /// Dataset items.
        #[arg(long, default_value_t = 2000)]
        items: usize,
        /// Jobs (and bare calls) in flight.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Simulated latency scale (1 = catalog latencies, 0 = none).
        #[arg(long, default_value_t = 1.0)]
        latency_scale: f64,
    },
    /// Mirror-endpoint throughput on SQLite and PostgreSQL side by side: single-exchange POSTs
    /// at a concurrency, then batches.
    Ingest {
        /// Exchanges per measurement.
        #[arg(long, default_value_t = 20_000)]
        exchanges: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Exchanges per batch.
        #[arg(long, default_value_t = 100)]
        batch: usize,
        /// PostgreSQL server to measure on (a database is created and dropped there).
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        postgres_url: String,
        /// Measure SQLite only.
        #[arg(long)]
        sqlite_only: bool,
        /// Single-exchange POSTs per second in the open-loop measurement.
        #[arg(long, default_value_t = 5_000)]
        open_loop_rate: u32,
    },
    /// The tee proxy beside calling the simulated upstream directly: throughput, added
    /// latency, what it mirrored and shed.
    Proxy {
        /// Requests per throughput measurement.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Requests in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Sequential requests for the added latency.
        #[arg(long, default_value_t = 2_000)]
        sequential: usize,
        /// The LiteLLM proxy executable to measure beside the tee proxy (default: `litellm` on
        /// the PATH or under target/python-venv, when installed).
        #[arg(long)]
        litellm: Option<std::path::PathBuf>,
        /// Do not measure the LiteLLM proxy even when it is installed.
        #[arg(long)]
        no_litellm: bool,
    },
    /// Dollars per decided verdict on the demo's setting: every exchange replayed (fixed n),
    /// early stopping, + the result cache, that run asked again, + batch mode — whole runs
    /// against the simulated upstream.
    Cost {
        /// Production exchanges.
        #[arg(long, default_value_t = 1200)]
        exchanges: usize,
        /// Seed of the traffic.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// `stats compare` end to end on N seeded pairs, with and without clusters, beside scipy.
    Stats {
        /// Pairs.
        #[arg(long, default_value_t = 1_000_000)]
        pairs: usize,
    },
    /// Every dashboard page and its JSON endpoint, timed with a finished experiment of N pairs
    /// among M stored exchanges.
    Dashboard {
        /// Exchanges stored in all.
        #[arg(long, default_value_t = 100_000)]
        exchanges: usize,
        /// Pairs of the experiment.
        #[arg(long, default_value_t = 2_000)]
        pairs: usize,
        /// Warm requests per page after the first.
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Items of the golden dataset shown on the datasets and drift pages.
        #[arg(long, default_value_t = 200)]
        dataset_items: usize,
        /// Runs of the drift schedule on that dataset (each a real golden run).
        #[arg(long, default_value_t = 6)]
        drift_runs: usize,
    },
}

/// Runs one benchmark and prints its figures.
pub(crate) async fn run(command: &BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Golden { items, concurrency, latency_scale } => {
            let settings = evaltap_bench::golden::GoldenBench {
                items: *items,
                concurrency: *concurrency,
                latency_scale: *latency_scale,
            };
            let result = evaltap_bench::golden::golden(&settings).await?;
            print!("{}", result.render(&settings));
        }
        BenchCommand::Ingest { exchanges, concurrency, batch, postgres_url, sqlite_only, open_loop_rate } => {
            let settings = evaltap_bench::ingest::IngestBench {
                exchanges: *exchanges,
                concurrency: *concurrency,
                batch: *batch,
                postgres_url: (!sqlite_only).then(|| postgres_url.clone()),
                open_loop_rate: *open_loop_rate,
            };
            let figures = evaltap_bench::ingest::ingest(&settings).await?;
            print!("{}", evaltap_bench::ingest::render(&settings, &figures));
        }
        BenchCommand::Proxy { requests, concurrency, sequential, litellm, no_litellm } => {
            let settings = evaltap_bench::proxy::ProxyBench {
                requests: *requests,
                concurrency: *concurrency,
                sequential: *sequential,
                litellm: match no_litellm {
                    true => None,
                    false => litellm.clone().or_else(evaltap_bench::proxy::find_litellm),
                },
            };
            let figures = evaltap_bench::proxy::proxy(&settings).await?;
            print!("{}", evaltap_bench::proxy::render(&settings, &figures));
        }
        BenchCommand::Dashboard { exchanges, pairs, repeats, dataset_items, drift_runs } => {
            let settings = evaltap_bench::dashboard::DashboardBench {
                exchanges: *exchanges,
                pairs: *pairs,
                repeats: *repeats,
                dataset_items: *dataset_items,
                drift_runs: *drift_runs,
            };
            let figures = evaltap_bench::dashboard::dashboard(&settings).await?;
            print!("{}", evaltap_bench::dashboard::render(&settings, &figures));
        }
        BenchCommand::Cost { exchanges, seed } => {
            let settings = evaltap_bench::cost::CostBench { exchanges: *exchanges, seed: *seed };
            let figures = evaltap_bench::cost::cost(&settings).await?;
            print!("{}", evaltap_bench::cost::render(&settings, &figures));
        }
        BenchCommand::Stats { pairs } => {
            let figures = evaltap_bench::stats::stats(*pairs)?;
            print!("{}", evaltap_bench::stats::render(&figures));
        }
    }
    Ok(())
}
