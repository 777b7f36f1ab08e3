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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

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

/// A folder holding both `initdb` and `pg_ctl`: the `PATH`'s, else Debian's newest version.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(pg_ctl) = find_on_path("pg_ctl") {
        // Debian's /usr/bin/pg_ctl… are wrappers; follow links to the real folder.
        let real = std::fs::canonicalize(&pg_ctl).unwrap_or(pg_ctl);
        if let Some(dir) = real.parent().filter(|dir| has_both(dir)) {
            return Some(dir.to_path_buf());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// `target/tmp`, the folder Cargo gives integration tests, found from the running test binary
/// (`target/<profile>/deps/<binary>`).
fn tmp_dir() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let target = exe
        .ancestors()
        .nth(3)
        .ok_or_else(|| std::io::Error::other(format!("{} is not under a target folder", exe.display())))?;
    let dir = target.join("tmp");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// initdb + pg_ctl start on a free loopback port; a watchdog stops the cluster and removes its
/// folder once this process is gone, however it ends.
pub fn start_throwaway_cluster(bin: &Path, parent: &Path) -> Result<Postgres, String> {
    let data = parent.join(format!("evaltap-postgres-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(|err| format!("create {}: {err}", data.display()))?;
    if is_root() {
        run(Command::new("chown").arg("postgres:").arg(&data))
            .map_err(|err| format!("hand the cluster folder to user postgres: {err}"))?;
    }
    let command = |program: &str| {
        let mut command = as_cluster_owner(&bin.join(program));
        // The postgres user may not enter the caller's folder.
        command.current_dir(&data);
        command
    };
    run(command("initdb").arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "-A",
        "trust",
        "-E",
        "UTF8",
        "--no-sync",
    ]))
    .map_err(|err| format!("initdb: {err}"))?;
    let port = free_port().map_err(|err| format!("find a free port: {err}"))?;
    // No durability needed for a scratch cluster; connections for a full parallel suite.
    let options = format!(
        "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    );
    let log = data.join("server.log");
    // The watchdog first, so a start that half-succeeds is cleaned up too.
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {runner}'{pg_ctl}' -D '{data}' -m immediate -w stop; rm -rf '{data}'",
        pid = std::process::id(),
        runner = if is_root() { "runuser -u postgres -- " } else { "" },
        pg_ctl = bin.join("pg_ctl").display(),
        data = data.display(),
    );
    {
        use std::os::unix::process::CommandExt as _;
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: Ctrl-C on the test run must not take the cleanup with it.
            .process_group(0)
            .spawn()
            .map_err(|err| format!("start the cluster's watchdog: {err}"))?;
    }
    run(command("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o", &options, "start"]))
    .map_err(|err| {
        let tail = std::fs::read_to_string(&log).unwrap_or_default();
        format!("pg_ctl start: {err}; server log: {}", tail.trim())
    })?;
    let version = Command::new(bin.join("postgres"))
        .arg("--version")
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().replace("postgres (PostgreSQL)", "PostgreSQL"))
        .unwrap_or_default();
    Ok(Postgres {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        origin: format!("a throwaway cluster, {version}, on port {port} in {}", data.display()),
    })
}

/// PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user that
/// Debian's package creates.
fn as_cluster_owner(program: &Path) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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

    #[test]
    fn a_throwaway_cluster_starts_on_a_free_port_and_is_gone_after_its_process() {
        let Some(bin) = postgres_bin_dir() else {
            skip(Need::Postgres, "PostgreSQL's server binaries are not installed");
            return;
        };
        let parent = tmp_dir().expect("target/tmp");
        let data = parent.join(format!("evaltap-postgres-{}", std::process::id()));
        let postgres = start_throwaway_cluster(&bin, &parent).expect("start a cluster");
        let port: u16 = postgres
            .admin_url
            .rsplit(':')
            .next()
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("port");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok(), "{postgres:?}");
        assert!(data.join("PG_VERSION").is_file());
        // The watchdog stops it once this process is gone; here, stop it as the watchdog would.
        let mut stop = as_cluster_owner(&bin.join("pg_ctl"));
        run(stop.arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"])).expect("stop");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the cluster still answers after stop");
        let _ = std::fs::remove_dir_all(&data);
    }
}
