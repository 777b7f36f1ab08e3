//! Real clients from PyPI against real evaltap processes: a LiteLLM proxy whose `generic_api`
//! callback tees to evaltap, and the official `openai` client through the tee proxy. The
//! Python side lives in `tests/python/`; this test prepares its virtualenv (once, under
//! `target/`) and runs it with pytest against the `evaltap` binary Cargo just built.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(cmd: &mut Command) -> std::process::Output {
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        output.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// target/python-venv with tests/python/requirements.txt installed; reinstalled when the
/// requirements change. `Err` says what could not be set up (no venv, no PyPI).
fn venv(python: &Path, root: &Path) -> Result<PathBuf, String> {
    let venv = root.join("target/python-venv");
    let requirements = root.join("tests/python/requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("requirements.txt");
    let marker = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        let setup = |cmd: &mut Command, what: &str| -> Result<(), String> {
            let output = cmd.output().map_err(|e| format!("{what}: {e}"))?;
            if output.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&output.stderr);
            let last = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("");
            Err(format!("{what} failed ({}): {last}", output.status))
        };
        setup(Command::new(python).arg("-m").arg("venv").arg(&venv), "python3 -m venv")?;
        setup(
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
            "installing tests/python/requirements.txt from PyPI (is the package index reachable?)",
        )?;
        std::fs::write(&marker, wanted).expect("marker");
    }
    Ok(venv)
}

#[test]
fn litellm_proxy_and_openai_client_against_real_evaltap() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let Some(python) = evaltap_testenv::python_or_skip() else { return };
    let venv = match venv(&python, &root) {
        Ok(venv) => venv,
        Err(reason) => return evaltap_testenv::skip(evaltap_testenv::Need::Python, &reason),
    };
    let output = run(Command::new(venv.join("bin/python"))
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/python"])
        .current_dir(&root)
        .env("EVALTAP_BIN", env!("CARGO_BIN_EXE_evaltap")));
    println!("{}", String::from_utf8_lossy(&output.stdout));

    // `bench proxy` measures the installed LiteLLM proxy beside the tee proxy.
    let output = run(Command::new(env!("CARGO_BIN_EXE_evaltap"))
        .args([
            "bench",
            "proxy",
            "--requests",
            "100",
            "--concurrency",
            "4",
            "--sequential",
            "10",
            "--litellm",
        ])
        .arg(venv.join("bin/litellm")));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("LiteLLM proxy 1.108.7 (same upstream") && stdout.contains("req/s over 100 requests"),
        "{stdout}"
    );
}
