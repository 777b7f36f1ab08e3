//! What evaltap's test suite needs from the machine, found or brought up, or skipped with the
//! reason — and a summary at the end of each test binary so a partial run is never mistaken for a
//! full one.
//!
//! - **PostgreSQL**: `EVALTAP_TEST_POSTGRES_URL` when set; else the server on 127.0.0.1:5432 when
//!   one answers; else, when PostgreSQL's server binaries are installed (`initdb`, `pg_ctl` on the
//!   `PATH` or under Debian's `/usr/lib/postgresql/*/bin`), a throwaway cluster under
//!   `target/tmp` on a free port, stopped and removed when the test binary exits (even on
//!   `kill -9`: a watchdog process waits for it); else the PostgreSQL tests are skipped.
//! - **Chromium** and ChromeDriver for the browser test, **Python 3** with `venv` for the
//!   real-clients test: found → run, missing → skipped.
//!
//! `EVALTAP_TEST_REQUIRE=postgres,chromium,python` (or `all`) makes each of those skips a failure:
//! `.ci/run` sets it, so CI can never pass by skipping.

#![deny(unsafe_op_in_unsafe_fn)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

mod cluster;
use cluster::tmp_dir;
pub use cluster::{postgres_bin_dir, start_throwaway_cluster};

/// Something from the machine a test needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    Postgres,
    Chromium,
    Python,
}

impl Need {
    /// Its name in `EVALTAP_TEST_REQUIRE`.
    pub fn key(self) -> &'static str {
        match self {
            Need::Postgres => "postgres",
            Need::Chromium => "chromium",
            Need::Python => "python",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Need::Postgres => "PostgreSQL",
            Need::Chromium => "Chromium and ChromeDriver",
            Need::Python => "Python 3 and PyPI",
        }
    }
}

/// The variable that turns skips into failures.
pub const REQUIRE_VAR: &str = "EVALTAP_TEST_REQUIRE";

/// Whether `need` is required, as `requirement` (the value of `EVALTAP_TEST_REQUIRE`) says:
/// a comma- or space-separated list of keys, or `all`.
pub fn is_required_by(requirement: &str, need: Need) -> bool {
    requirement
        .split(|c: char| c == ',' || c.is_whitespace())
        .map(str::trim)
        .any(|word| word.eq_ignore_ascii_case(need.key()) || word.eq_ignore_ascii_case("all"))
}

/// Whether this run requires `need` (`EVALTAP_TEST_REQUIRE`).
pub fn is_required(need: Need) -> bool {
    std::env::var(REQUIRE_VAR).map(|value| is_required_by(&value, need)).unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A PostgreSQL server the suite may create databases on.
#[derive(Clone, Debug)]
pub struct Postgres {
    /// A superuser URL; each test creates (and drops) its own database through it.
    pub admin_url: String,
    /// Where it came from, for the summary.
    pub origin: String,
}

/// The server the suite runs on when `EVALTAP_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The PostgreSQL of this run, found or started once per test binary; `Err` says why there is
/// none and how to get one.
pub fn postgres() -> Result<&'static Postgres, &'static str> {
    static POSTGRES: OnceLock<Result<Postgres, String>> = OnceLock::new();
    POSTGRES
        .get_or_init(|| {
            let found = find_postgres();
            if let Ok(postgres) = &found {
                SUMMARY.lock().unwrap_or_else(|e| e.into_inner()).postgres_origin =
                    Some(postgres.origin.clone());
                register_summary();
            }
            found
        })
        .as_ref()
        .map_err(String::as_str)
}

fn find_postgres() -> Result<Postgres, String> {
    if let Ok(url) = std::env::var("EVALTAP_TEST_POSTGRES_URL") {
        return Ok(Postgres { admin_url: url, origin: "EVALTAP_TEST_POSTGRES_URL".into() });
    }
    let default_addr = SocketAddr::from(([127, 0, 0, 1], 5432));
    if TcpStream::connect_timeout(&default_addr, Duration::from_secs(1)).is_ok() {
        return Ok(Postgres {
            admin_url: DEFAULT_POSTGRES_URL.into(),
            origin: "the server at 127.0.0.1:5432".into(),
        });
    }
    let Some(bin) = postgres_bin_dir() else {
        return Err("nothing answers on 127.0.0.1:5432 and PostgreSQL's server binaries (initdb, pg_ctl) \
                    are not installed: install them (Debian: `apt-get install postgresql`; the suite then \
                    starts a throwaway cluster itself) or set EVALTAP_TEST_POSTGRES_URL to a server"
            .into());
    };
    let parent = tmp_dir().map_err(|err| format!("no folder for a throwaway PostgreSQL cluster: {err}"))?;
    start_throwaway_cluster(&bin, &parent).map_err(|err| {
        format!(
            "nothing answers on 127.0.0.1:5432 and starting a throwaway cluster with {} failed: {err}; \
             start a server or set EVALTAP_TEST_POSTGRES_URL",
            bin.display()
        )
    })
}

fn run(command: &mut Command) -> Result<(), String> {
    let output =
        command.stdin(Stdio::null()).output().map_err(|err| format!("{:?}: {err}", command.get_program()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} ({}{})",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            String::from_utf8_lossy(&output.stdout).trim()
        ))
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(program)).find(|path| path.is_file())
}

// ---------------------------------------------------------------------------------------------
// Chromium and Python

/// Chromium and its ChromeDriver.
#[derive(Clone, Debug)]
pub struct Browser {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

/// Chromium and ChromeDriver on the `PATH` (or where Debian puts them).
pub fn browser() -> Result<Browser, String> {
    let find = |names: &[&str], fallbacks: &[&str]| {
        names
            .iter()
            .find_map(|name| find_on_path(name))
            .or_else(|| fallbacks.iter().map(PathBuf::from).find(|path| path.is_file()))
    };
    let chromium = find(&["chromium", "chromium-browser", "google-chrome"], &["/usr/bin/chromium"]);
    let chromedriver = find(&["chromedriver"], &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) => Ok(Browser { chromium, chromedriver }),
        (chromium, _) => Err(format!(
            "{} not found; install them (Debian: `apt-get install chromium chromium-driver`)",
            if chromium.is_none() { "chromium (and chromedriver)" } else { "chromedriver" }
        )),
    }
}

/// A Python 3 that can make virtual environments.
pub fn python() -> Result<PathBuf, String> {
    let python = find_on_path("python3").ok_or_else(|| {
        "python3 not found; install Python 3 with venv (Debian: `apt-get install python3 python3-venv`)"
            .to_string()
    })?;
    run(Command::new(&python).args(["-c", "import venv, ensurepip"])).map_err(|err| {
        format!(
            "{} cannot make virtual environments ({err}); Debian: `apt-get install python3-venv`",
            python.display()
        )
    })?;
    Ok(python)
}

// ---------------------------------------------------------------------------------------------
// Skips, counts and the summary

#[derive(Default)]
struct Summary {
    /// Tests that ran on each engine, by test name.
    engines: BTreeMap<&'static str, BTreeSet<String>>,
    /// Tests skipped for want of each need, with the reason.
    skipped: BTreeMap<Need, (String, BTreeSet<String>)>,
    postgres_origin: Option<String>,
    anonymous: usize,
}

static SUMMARY: Mutex<Summary> = Mutex::new(Summary {
    engines: BTreeMap::new(),
    skipped: BTreeMap::new(),
    postgres_origin: None,
    anonymous: 0,
});

/// The running test's name: libtest names each test's thread after it.
fn current_test(summary: &mut Summary) -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => {
            summary.anonymous += 1;
            format!("test #{}", summary.anonymous)
        }
    }
}

/// Counts the running test as one that ran on `engine` ("SQLite", "PostgreSQL").
pub fn ran_on(engine: &'static str) {
    let mut summary = SUMMARY.lock().unwrap_or_else(|e| e.into_inner());
    let test = current_test(&mut summary);
    summary.engines.entry(engine).or_default().insert(test);
    drop(summary);
    register_summary();
}

/// The running test cannot run for want of `need`: records the skip (for the summary) and
/// returns, or panics with the reason when this run requires `need`.
pub fn skip(need: Need, reason: &str) {
    if is_required(need) {
        panic!("{} is required ({REQUIRE_VAR} names `{}`) but missing: {reason}", need.label(), need.key());
    }
    let mut summary = SUMMARY.lock().unwrap_or_else(|e| e.into_inner());
    let test = current_test(&mut summary);
    eprintln!("skipped {test}: {reason}");
    summary.skipped.entry(need).or_insert_with(|| (reason.to_string(), BTreeSet::new())).1.insert(test);
    drop(summary);
    register_summary();
}

/// The PostgreSQL of this run, or `None` after recording a skip (a failure when required).
pub fn postgres_or_skip() -> Option<&'static Postgres> {
    match postgres() {
        Ok(postgres) => Some(postgres),
        Err(reason) => {
            skip(Need::Postgres, reason);
            None
        }
    }
}

/// Chromium and ChromeDriver, or `None` after recording a skip (a failure when required).
pub fn browser_or_skip() -> Option<Browser> {
    browser().map_err(|reason| skip(Need::Chromium, &reason)).ok()
}

/// Python 3 with venv, or `None` after recording a skip (a failure when required).
pub fn python_or_skip() -> Option<PathBuf> {
    python().map_err(|reason| skip(Need::Python, &reason)).ok()
}

/// The summary's lines: tests per engine, then one line per missing piece.
fn summary_lines(summary: &Summary) -> Vec<String> {
    let count = |engine: &str| summary.engines.get(engine).map_or(0, BTreeSet::len);
    let mut lines = Vec::new();
    let mut engines = format!(
        "evaltap test environment: {} tests ran on SQLite, {} on PostgreSQL",
        count("SQLite"),
        count("PostgreSQL")
    );
    if let Some(origin) = &summary.postgres_origin {
        engines.push_str(&format!(" ({origin})"));
    }
    let skipped: usize = summary.skipped.values().map(|(_, tests)| tests.len()).sum();
    engines.push_str(&format!("; {skipped} skipped"));
    lines.push(engines);
    for (need, (reason, tests)) in &summary.skipped {
        lines.push(format!("  SKIPPED {} tests for want of {}: {reason}", tests.len(), need.label()));
    }
    if skipped > 0 {
        lines.push(format!(
            "  (this was a partial run; {REQUIRE_VAR}=postgres,chromium,python makes anything missing a failure, as in CI)"
        ));
    }
    lines
}

fn register_summary() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: `print_summary` is an `extern "C" fn()` that never unwinds (it catches panics).
        unsafe {
            libc::atexit(print_summary);
        }
    });
}

extern "C" fn print_summary() {
    let _ = std::panic::catch_unwind(|| {
        let summary = SUMMARY.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::from("\n");
        for line in summary_lines(&summary) {
            text.push_str(&line);
            text.push('\n');
        }
        write_stderr(text.as_bytes());
    });
}

/// At exit Rust's own stderr handle may be gone; write to the file descriptor.
fn write_stderr(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length come from a live slice.
        let written = unsafe { libc::write(2, bytes.as_ptr().cast(), bytes.len()) };
        if written <= 0 {
            return;
        }
        bytes = &bytes[written.unsigned_abs()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requirement_names_each_need_or_all() {
        assert!(is_required_by("postgres,chromium,python", Need::Chromium));
        assert!(is_required_by(" Postgres ", Need::Postgres));
        assert!(is_required_by("all", Need::Python));
        assert!(!is_required_by("postgres", Need::Python));
        assert!(!is_required_by("", Need::Postgres));
        assert!(!is_required_by("postgresql", Need::Postgres));
    }

    #[test]
    fn the_summary_counts_engines_and_says_why_each_skip() {
        let mut summary = Summary::default();
        summary.engines.entry("SQLite").or_default().extend(["a".to_string(), "b".to_string()]);
        summary.engines.entry("PostgreSQL").or_default().insert("a".to_string());
        summary.postgres_origin = Some("the server at 127.0.0.1:5432".into());
        let lines = summary_lines(&summary);
        assert_eq!(
            lines,
            [
                "evaltap test environment: 2 tests ran on SQLite, 1 on PostgreSQL (the server at 127.0.0.1:5432); 0 skipped"
            ]
        );
        summary.skipped.insert(Need::Chromium, ("chromium not found".into(), ["browser".to_string()].into()));
        let lines = summary_lines(&summary);
        assert!(lines[0].ends_with("1 skipped"), "{lines:?}");
        assert_eq!(lines[1], "  SKIPPED 1 tests for want of Chromium and ChromeDriver: chromium not found");
        assert!(lines[2].contains("EVALTAP_TEST_REQUIRE"), "{lines:?}");
    }
}
