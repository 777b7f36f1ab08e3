//! Command-line arguments (clap) and dispatch.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use evaltap_store::Filter;

use crate::demo;
use crate::judge_cmd::{JudgeCommand, RubricCommand};
use crate::sources_cmd::{SourcesCommand, TokensCommand};
use crate::stats_cmd::StatsCommand;
use evaltap_app::{App, load_config};
use evaltap_demo::DemoOptions;

/// Continuous evaluation of LLMs on production traffic.
#[derive(Debug, Parser)]
#[command(name = "evaltap", version, about)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "EVALTAP_CONFIG", default_value = "evaltap.toml")]
    config: PathBuf,
    /// Database URL, overriding the configuration file.
    #[arg(long, global = true, env = "EVALTAP_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// Whether this is `evaltap gate`, whose exit codes 1 and 2 carry a verdict.
    pub fn is_gate(&self) -> bool {
        matches!(self.command, Command::Gate { .. })
    }

    /// The drift scheduler's context: it reads the configuration file again before each pass.
    fn drift_context(&self, app: &App) -> anyhow::Result<evaltap_drift::DriftContext> {
        let mut context = app.drift_context()?;
        context.config_path = self.config.exists().then(|| self.config.clone());
        Ok(context)
    }

    /// Whether a configuration file was named (`--config`, `EVALTAP_CONFIG`): then it must exist.
    fn config_is_explicit(&self) -> bool {
        std::env::var_os("EVALTAP_CONFIG").is_some()
            || self.config.as_path() != std::path::Path::new("evaltap.toml")
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole loop on a fresh SQLite file against the simulated upstream, print the
    /// report, then keep serving the dashboard until Ctrl-C.
    Demo(DemoArgs),
    /// Serve the mirror endpoint, the API and the dashboard, with workers in the same process.
    Serve(ServeArgs),
    /// Run workers only.
    Worker(WorkerArgs),
    /// Run the simulated upstream (an OpenAI-compatible server with simulated models).
    Sim(SimArgs),
    /// Define and run experiments.
    #[command(subcommand)]
    Experiment(crate::experiment_cmd::ExperimentCommand),
    /// Sources: what each has sent (`evaltap sources`), or set one up (`evaltap sources add`).
    Sources {
        /// Print JSON (the listing).
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        command: Option<SourcesCommand>,
    },
    /// Find stored exchanges (newest first), e.g. an id for `rubric render --exchange`.
    Exchanges {
        /// Only this source.
        #[arg(long)]
        source: Option<String>,
        /// Only this production model.
        #[arg(long)]
        model: Option<String>,
        /// Only exchanges with this tag key=value; repeat for several.
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A CI step: exit 0 when every rubric is non-inferior or better, 1 on a significant
    /// regression, 2 when undecided (inconclusive, still running, or no data); 64 on a usage
    /// error (unknown experiment or candidate, bad arguments), 70 when it could not decide for
    /// another reason (database, files).
    Gate {
        /// Experiment name.
        name: String,
        /// Gate only this candidate.
        #[arg(long)]
        candidate: Option<String>,
        /// Kept for existing CI scripts: requiring non-inferiority is now what exit 0 means.
        #[arg(long, hide = true)]
        require_non_inferior: bool,
        /// Write JUnit XML here (one testcase per candidate × rubric).
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Write a Markdown pull-request comment here (also appended to $GITHUB_STEP_SUMMARY
        /// when that is set).
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
    /// Per route, the cheapest candidate shown non-inferior on every rubric (or keep production,
    /// with the reason), and the gateway configuration that applies it.
    Recommend {
        /// Experiment name.
        name: String,
        /// Write the gateway's configuration: json, litellm, portkey, kong or openrouter
        /// (without it, a table).
        #[arg(long)]
        format: Option<String>,
        /// Send this percentage of each switched route to the new model, the rest to production
        /// (where the gateway can weight targets).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=99))]
        canary: Option<u8>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also add a guard on every switched route (`evaltap guard add` with its defaults).
        #[arg(long)]
        watch: bool,
    },
    /// Guards: after a switch, watch the route's new model against the former production one.
    #[command(subcommand)]
    Guard(crate::recommend_cmd::GuardCommand),
    /// API and dashboard tokens.
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Statistics on your own data.
    #[command(subcommand)]
    Stats(StatsCommand),
    /// Golden datasets: define them, import them, promote production traffic into them, run
    /// them against models.
    #[command(subcommand)]
    Golden(crate::golden_cmd::GoldenCommand),
    /// Rubrics: check every template, or print the exact judge prompt for an exchange.
    #[command(subcommand)]
    Rubric(RubricCommand),
    /// The judge: calibrate it against human labels.
    #[command(subcommand)]
    Judge(JudgeCommand),
    /// Benchmarks that print figures beside a baseline measured in the same run.
    #[command(subcommand)]
    Bench(crate::bench_cmd::BenchCommand),
    /// Print an experiment's report.
    Report {
        /// Experiment name.
        name: String,
        /// Print the report JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Print only the report JSON on stdout and exit once it is done.
    #[arg(long)]
    json: bool,
    /// Production exchanges to generate.
    #[arg(long, default_value_t = 1200)]
    exchanges: usize,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Dashboard port (0 picks a free one).
    #[arg(long, default_value_t = 7077)]
    port: u16,
    /// Send the candidates' and the judge's calls through the simulator's batch interface
    /// (half price, answered when each batch ends).
    #[arg(long)]
    batch: bool,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Listen address, overriding the configuration file.
    #[arg(long)]
    bind: Option<String>,
    /// Jobs in flight in the embedded worker (0 runs no worker).
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Run no worker in this process (ingest, proxy and dashboard only; run `evaltap worker`
    /// elsewhere on the same database).
    #[arg(long, conflicts_with = "workers")]
    no_workers: bool,
}

#[derive(Debug, Args)]
struct WorkerArgs {
    /// Jobs in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

#[derive(Debug, Args)]
struct SimArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 7078)]
    port: u16,
    /// Multiplies each model's simulated latency.
    #[arg(long, default_value_t = 1.0)]
    latency_scale: f64,
    /// Probability that the judge gives a random score, drawn afresh for every call (from the
    /// request's `seed` when it has one).
    #[arg(long, default_value_t = 0.05)]
    judge_noise: f64,
    /// Probability that the judge prefers position A whatever the answers.
    #[arg(long, default_value_t = 0.1)]
    judge_position_bias: f64,
    /// Probability that the judge answers in unreadable prose when the graded answer is long.
    #[arg(long, default_value_t = 0.0)]
    judge_unreadable_long: f64,
}

async fn open_app(cli: &Cli) -> anyhow::Result<App> {
    let explicit = cli.config_is_explicit();
    if !explicit && !cli.config.exists() && cli.database_url.is_none() {
        // Never a silent empty database in whatever folder the command ran from.
        let here =
            std::env::current_dir().map(|dir| dir.display().to_string()).unwrap_or_else(|_| ".".into());
        return Err(crate::UsageError(format!(
            "no configuration found: looked for evaltap.toml in {here} (--config and EVALTAP_CONFIG are unset). \
             Copy evaltap.example.toml to evaltap.toml, pass --config FILE, or name a database with --database-url"
        ))
        .into());
    }
    let mut config = load_config(&cli.config, explicit)?;
    if let Some(url) = &cli.database_url {
        config.database_url = url.clone();
    }
    Ok(App::open(config).await?)
}

/// How often `serve` and `worker` look for due schedules and finished scheduled runs.
const SCHEDULER_PERIOD: std::time::Duration = std::time::Duration::from_secs(30);

/// Completes on Ctrl-C (SIGINT) or SIGTERM — what docker, systemd and Kubernetes send.
async fn ctrl_c() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

pub(crate) async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Demo(args) => {
            let options = DemoOptions {
                json: args.json,
                exchanges: args.exchanges,
                seed: args.seed,
                port: args.port,
                early_stop: true,
                early_stop_on: evaltap_store::StopOn::Segments,
                cache: true,
                batch: args.batch,
                datasets_dir: None,
            };
            demo::run(options, cli.database_url.clone()).await?;
        }
        Command::Sim(args) => {
            let config = evaltap_sim::SimConfig {
                latency_scale: args.latency_scale,
                judge: evaltap_sim::JudgeBehavior {
                    noise: args.judge_noise,
                    position_bias: args.judge_position_bias,
                    unreadable_long: args.judge_unreadable_long,
                },
            };
            let server = evaltap_sim::spawn(SocketAddr::from(([127, 0, 0, 1], args.port)), config)
                .await
                .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
            eprintln!("simulated upstream on {} (Ctrl-C to stop)", server.base_url());
            ctrl_c().await;
        }
        Command::Serve(args) => {
            let app = open_app(&cli).await?;
            let bind = args.bind.clone().unwrap_or_else(|| app.config.bind.clone());
            let listener =
                tokio::net::TcpListener::bind(&bind).await.with_context(|| format!("binding {bind}"))?;
            eprintln!("evaltap listening on http://{}", listener.local_addr()?);
            let mut worker = None;
            if args.workers > 0 && !args.no_workers {
                let resumed = app.resume_unfinished().await?;
                if resumed > 0 {
                    eprintln!("re-enqueued {resumed} jobs of unfinished experiments");
                }
                let worker_app = app.clone();
                let workers = args.workers;
                worker = Some(tokio::spawn(async move {
                    if let Err(err) = worker_app.run_worker(workers, ctrl_c()).await {
                        tracing::error!("worker stopped: {err:#}");
                    }
                }));
                tokio::spawn(evaltap_drift::run_scheduler(
                    cli.drift_context(&app)?,
                    SCHEDULER_PERIOD,
                    ctrl_c(),
                ));
            }
            evaltap_server::serve(listener, evaltap_server::AppState::for_app(&app), ctrl_c()).await?;
            // The worker saw the same signal: let its jobs in flight finish and store.
            if let Some(worker) = worker {
                let _ = worker.await;
            }
        }
        Command::Worker(args) => {
            let app = open_app(&cli).await?;
            let resumed = app.resume_unfinished().await?;
            eprintln!("worker running ({resumed} jobs re-enqueued); Ctrl-C to stop");
            tokio::spawn(evaltap_drift::run_scheduler(cli.drift_context(&app)?, SCHEDULER_PERIOD, ctrl_c()));
            app.run_worker(args.concurrency, ctrl_c()).await?;
        }
        Command::Experiment(command) => {
            return crate::experiment_cmd::dispatch(&open_app(&cli).await?, command).await;
        }
        Command::Gate { name, candidate, require_non_inferior: _, junit, markdown } => {
            let app = open_app(&cli).await?;
            return crate::experiment_cmd::gate(
                &app,
                name,
                candidate.as_deref(),
                junit.as_deref(),
                markdown.as_deref(),
            )
            .await;
        }
        Command::Recommend { name, format, canary, out, watch } => {
            let app = open_app(&cli).await?;
            crate::recommend_cmd::recommend(&app, name, format.as_deref(), *canary, out.as_deref()).await?;
            if *watch {
                crate::recommend_cmd::watch(&app, name).await?;
            }
        }
        Command::Guard(command) => crate::recommend_cmd::guard(&open_app(&cli).await?, command).await?,
        Command::Report { name, json } => {
            crate::experiment_cmd::report(&open_app(&cli).await?, name, *json).await?
        }
        Command::Sources { command: None, json } => {
            let app = open_app(&cli).await?;
            let rows = crate::sources_cmd::rows(&app).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", crate::sources_cmd::render(&rows));
            }
        }
        Command::Exchanges { source, model, tags, limit, json } => {
            let app = open_app(&cli).await?;
            let filter = Filter { source: source.clone(), model: model.clone(), ..Filter::default() };
            let found = crate::exchanges_cmd::find(&app, &filter, tags, *limit).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&found)?);
            } else {
                print!("{}", crate::exchanges_cmd::render(&found));
            }
        }
        Command::Tokens(TokensCommand::List { json }) => {
            let config = load_config(&cli.config, cli.config_is_explicit())?;
            print!("{}", crate::sources_cmd::tokens(&config, *json)?);
        }
        Command::Tokens(TokensCommand::Add { name, role }) => {
            print!("{}", crate::sources_cmd::add_token(name, role, &crate::sources_cmd::new_api_token())?);
        }
        Command::Sources { command: Some(SourcesCommand::Add { name, format, url }), .. } => {
            print!("{}", crate::sources_cmd::add(name, format, url, &crate::sources_cmd::new_source_key())?);
        }
        Command::Stats(StatsCommand::Compare {
            csv,
            baseline,
            candidate,
            cluster,
            margin,
            alpha,
            planned_n,
            sequential,
            json,
        }) => {
            let settings = evaltap_app::stats_csv::CompareSettings {
                baseline,
                candidate,
                cluster: cluster.as_deref(),
                margin: *margin,
                alpha: *alpha,
                planned_n: *planned_n,
                sequential: *sequential,
            };
            let result = evaltap_app::stats_csv::compare_csv(csv, &settings)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{}", crate::stats_cmd::render(&result));
            }
        }
        Command::Bench(command) => crate::bench_cmd::run(command).await?,
        Command::Golden(command) => {
            return crate::golden_cmd::dispatch(&open_app(&cli).await?, command).await;
        }
        Command::Rubric(RubricCommand::Check) => {
            let config = load_config(&cli.config, cli.config_is_explicit())?;
            print!("{}", crate::judge_cmd::check_rubrics(&config.rubrics_dir)?);
        }
        Command::Rubric(RubricCommand::Render { name, exchange, experiment, candidate }) => {
            let app = open_app(&cli).await?;
            let prompt = crate::judge_cmd::render_rubric(
                &app,
                name,
                exchange,
                experiment.as_deref(),
                candidate.as_deref(),
            )
            .await?;
            println!("{prompt}");
        }
        Command::Judge(JudgeCommand::Calibrate { rubric, labels, json }) => {
            let app = open_app(&cli).await?;
            let result = evaltap_app::calibrate::calibrate(&app, rubric, labels).await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print!("{}", evaltap_judge::calibration::render(rubric, &result));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
