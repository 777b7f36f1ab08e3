//! The dashboard in a real browser: `evaltap demo` serving, Debian's Chromium driven headless
//! through ChromeDriver (installed by `.ci/run`; skipped with the reason where they are missing,
//! unless `EVALTAP_TEST_REQUIRE` names `chromium`). Screenshots land in
//! `target/tmp/browser-screenshots/`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The demo, run as a user runs it, until dropped.
struct Demo {
    _child: tokio::process::Child,
    dashboard: String,
    _dir: crate::common::TempDir,
}

async fn start_demo() -> Demo {
    let dir = crate::common::TempDir::new("browser-demo");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args(["demo", "--port", "0", "--exchanges", "120"])
        .current_dir(&dir.0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start evaltap demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let dashboard = tokio::time::timeout(Duration::from_secs(240), async {
        while let Some(line) = lines.next_line().await.expect("read demo output") {
            if let Some(url) = line.strip_prefix("dashboard: ") {
                return url.trim().to_string();
            }
        }
        panic!("the demo ended without serving its dashboard");
    })
    .await
    .expect("the demo serves within 4 minutes");
    // Keep draining its output so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Demo { _child: child, dashboard, _dir: dir }
}

/// ChromeDriver on a free port, until dropped.
async fn start_chromedriver(installed: &evaltap_testenv::Browser) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = tokio::process::Command::new(&installed.chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let http = evaltap_providers::http_client(Duration::from_secs(5)).expect("client");
    for _ in 0..100 {
        if http.get(format!("{url}/status")).send().await.is_ok() {
            return (child, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

async fn browser(installed: &evaltap_testenv::Browser, driver: &str, width: u32, height: u32) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": installed.chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     format!("--window-size={width},{height}")],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(driver)
        .await
        .expect("a browser session")
}

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot folder");
    dir
}

async fn save(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshot_dir().join(format!("{name}.png")), png).expect("save screenshot");
}

/// Whether the page is wider than the window (a horizontal scroll bar).
async fn scrolls_sideways(client: &Client) -> bool {
    let value = client
        .execute("return document.documentElement.scrollWidth > window.innerWidth;", vec![])
        .await
        .expect("measure");
    value.as_bool().expect("a boolean")
}

async fn count(client: &Client, css: &str) -> usize {
    client.find_all(Locator::Css(css)).await.expect("query").len()
}

#[tokio::test]
async fn every_page_renders_in_chromium_and_a_regression_clicks_through_to_its_diff() {
    let Some(installed) = evaltap_testenv::browser_or_skip() else { return };
    let demo = start_demo().await;
    let (_driver, driver_url) = start_chromedriver(&installed).await;
    let base = demo.dashboard.trim_end_matches("/experiments/demo").to_string();
    let client = browser(&installed, &driver_url, 1280, 800).await;

    client.goto(&format!("{base}/")).await.expect("index");
    client.find(Locator::Css("a[href='/experiments/demo']")).await.expect("the demo is listed");
    save(&client, "index").await;

    // The experiment page: a point per candidate and the baseline, error bars, the frontier.
    client.goto(&demo.dashboard).await.expect("experiment page");
    let status =
        client.find(Locator::Css("strong.status")).await.expect("status").text().await.expect("text");
    assert_eq!(status, "done");
    assert_eq!(count(&client, "svg.cost-quality circle.point").await, 3, "baseline + 2 candidates");
    assert_eq!(count(&client, "svg.cost-quality circle.point.baseline").await, 1);
    assert_eq!(count(&client, "svg.cost-quality g.error-bar").await, 2, "an error bar per candidate");
    assert_eq!(count(&client, "svg.cost-quality polyline.frontier").await, 1);
    let chart = client.find(Locator::Css("svg.cost-quality")).await.expect("chart");
    let (_, _, width, height) = chart.rectangle().await.expect("chart size");
    assert!(width > 300.0 && height > 150.0, "the chart is drawn ({width}×{height})");
    // It uses the page's width (over half of a 1280 px window), and no point's label runs past
    // its right edge.
    assert!(width > 640.0, "the chart uses {width} px of 1280");
    let clipped = client
        .execute(
            "const svg = document.querySelector('svg.cost-quality').getBoundingClientRect();
             return [...document.querySelectorAll('svg.cost-quality text.point-label')]
                 .filter(t => t.getBoundingClientRect().right > svg.right + 0.5).map(t => t.textContent);",
            vec![],
        )
        .await
        .expect("measure labels");
    assert_eq!(clipped, serde_json::json!([]), "labels clipped at the right edge");
    assert!(!scrolls_sideways(&client).await, "no horizontal scroll at 1280 px");
    save(&client, "experiment").await;

    // From a regression to its example: the worse candidate's link, then the top example.
    let worse_row = client
        .find(Locator::XPath("//table[contains(@class,'deltas')]//tr[.//span[contains(@class,'worse')]]"))
        .await
        .expect("a worse verdict in the table");
    worse_row
        .find(Locator::Css("a.regressions"))
        .await
        .expect("regressions link")
        .click()
        .await
        .expect("click");
    let url = client.current_url().await.expect("url");
    assert!(url.path().ends_with("/experiments/demo/examples"), "{url}");
    assert!(url.query().is_some_and(|q| q.contains("direction=regressions")), "{url}");
    assert!(count(&client, "tr.example.regression").await > 0, "regressions are listed");
    save(&client, "examples").await;
    // A regression the judge's noise made can have the same answer on both sides; one the
    // model made shows what changed. Follow the listed regressions to the first that differs.
    let mut links = Vec::new();
    for link in client.find_all(Locator::Css("tr.example.regression a.example-link")).await.expect("examples")
    {
        links.push(link.attr("href").await.expect("href").expect("a link"));
    }
    assert!(!links.is_empty(), "regressions are listed");
    let mut differs = false;
    for href in links.iter().take(10) {
        client.goto(&format!("{base}{href}")).await.expect("example page");
        let url = client.current_url().await.expect("url");
        assert!(url.path().contains("/experiments/demo/examples/"), "{url}");
        assert!(count(&client, ".answer.diff").await >= 1, "side-by-side answers with a diff");
        if count(&client, ".answer.diff del, .answer.diff ins").await > 0 {
            differs = true;
            break;
        }
    }
    assert!(differs, "no listed regression's answer differs from production's");
    assert!(count(&client, ".judgment").await >= 2, "judge scores and reasons");
    save(&client, "example").await;

    // The experiment page links to its per-route recommendations: a row per route, a chart
    // per route, and each gateway's configuration ready to copy.
    client.goto(&demo.dashboard).await.expect("experiment page");
    client
        .find(Locator::Css("p.recommendations-link a"))
        .await
        .expect("the link")
        .click()
        .await
        .expect("click");
    let url = client.current_url().await.expect("url");
    assert!(url.path().ends_with("/experiments/demo/recommendations"), "{url}");
    assert_eq!(count(&client, "table.recommendations tr").await, 3, "a header and one row per route");
    assert_eq!(count(&client, "svg.cost-quality").await, 2, "a chart per route");
    assert_eq!(count(&client, "pre.export").await, 5, "json, litellm, portkey, kong, openrouter");
    assert!(!scrolls_sideways(&client).await, "recommendations fit 1280 px");
    save(&client, "recommendations").await;

    for (path, name, marker) in [
        ("/spend", "spend", "table.spend"),
        ("/sources", "sources", "svg.traffic"),
        ("/datasets", "datasets", "table"),
        ("/drift", "drift", "table"),
    ] {
        client.goto(&format!("{base}{path}")).await.expect(path);
        client.find(Locator::Css(marker)).await.unwrap_or_else(|_| panic!("{path} shows {marker}"));
        assert!(!scrolls_sideways(&client).await, "{path} fits 1280 px");
        save(&client, name).await;
    }
    client.goto(&format!("{base}/spend")).await.expect("spend");
    let sentence = client
        .find(Locator::Css("p.sentence"))
        .await
        .expect("a what-if sentence")
        .text()
        .await
        .expect("text");
    assert!(sentence.starts_with("You spent $"), "{sentence}");
    client.close().await.expect("close");

    // At a phone's width the page itself does not scroll sideways (wide tables scroll in place).
    let phone = browser(&installed, &driver_url, 390, 844).await;
    phone.goto(&demo.dashboard).await.expect("experiment page");
    assert!(!scrolls_sideways(&phone).await, "no horizontal scroll at a phone's width");
    save(&phone, "experiment-phone").await;
    phone.close().await.expect("close");
    eprintln!("screenshots in {}", screenshot_dir().display());
}
