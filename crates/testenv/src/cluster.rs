//! A throwaway PostgreSQL cluster for machines with PostgreSQL's binaries but no server running.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Postgres, find_on_path, run};

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
pub(crate) fn tmp_dir() -> std::io::Result<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Need, skip};
    use std::net::TcpStream;

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
