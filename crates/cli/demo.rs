//! `evaltap demo`: the whole loop on a fresh SQLite file against the simulated upstream
//! (`evaltap-demo`), its report and per-route recommendations printed.

use anyhow::Context as _;
use evaltap_app::App;
use evaltap_demo::{DemoOptions, EXPERIMENT, progress_bar, start};

/// Runs a worker in this process until `experiment` is done, with a progress bar on stderr
/// unless `quiet`.
pub async fn run_with_progress(
    app: &App,
    experiment: &evaltap_store::Experiment,
    concurrency: usize,
    quiet: bool,
) -> anyhow::Result<evaltap_store::Progress> {
    let bar = progress_bar(quiet);
    let done = app
        .run_to_done(experiment, concurrency, |p| {
            bar.set_length(p.total());
            bar.set_position(p.completed());
        })
        .await;
    bar.finish_and_clear();
    Ok(done?)
}

/// `evaltap demo`: on `database_url` when given, else on a new SQLite file under the system's
/// temp folder.
pub async fn run(options: DemoOptions, database_url: Option<String>) -> anyhow::Result<()> {
    let database_url = match database_url {
        Some(url) => url,
        None => {
            let dir = std::env::temp_dir().join(format!("evaltap-demo-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            format!("sqlite://{}", dir.join("evaltap.db").display())
        }
    };
    let run = start(&options, database_url).await?;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&run.report)?);
        eprintln!("database: {}", run.database_url);
        run.shutdown();
        return Ok(());
    }
    print!("{}", evaltap_report::render_text(&run.report));
    println!();
    // The demo's traffic has two routes: per route, the cheapest model shown good enough.
    let recommendations = evaltap_app::recommend::recommendations(&run.app.context(), EXPERIMENT).await?;
    print!("{}", crate::recommend_cmd::render_text(&recommendations));
    println!(
        "Export it for your gateway: evaltap recommend {EXPERIMENT} --format litellm|portkey|kong|openrouter"
    );
    println!();
    println!("database:  {}", run.database_url);
    println!("dashboard: http://{}/experiments/{EXPERIMENT}", run.server_addr);
    println!("Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    run.shutdown();
    Ok(())
}
