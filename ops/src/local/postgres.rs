//! The local PostgreSQL cluster: its directory, initdb as an unprivileged user, start and stop.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::Command;

use crate::Failure;

use super::process::{alive, pid_file, processes, tail};
use super::{say, Local, PG_PASSWORD_FILE, PG_USER};

/// The postmaster of the cluster in `data`: from `postmaster.pid` when readable, else the
/// `postgres` process whose data directory it is (the data directory may belong to another
/// user).
pub fn postmaster(data: &Path) -> Option<u32> {
    if let Some(pid) = pid_file(&data.join("postmaster.pid")) {
        return Some(pid);
    }
    let data = std::fs::canonicalize(data).ok()?;
    let data = data.to_string_lossy();
    for pid in processes() {
        let Some(args) = i32::try_from(pid)
            .ok()
            .and_then(|p| procfs::process::Process::new(p).ok())
            .and_then(|p| p.cmdline().ok())
        else {
            continue;
        };
        let is_postgres = args.first().is_some_and(|a| a.ends_with("/postgres"));
        let has_data = args
            .windows(2)
            .any(|w| w[0] == "-D" && w[1].trim_end_matches('/') == data);
        if is_postgres && has_data && alive(pid) {
            return Some(pid);
        }
    }
    None
}

// --- PostgreSQL -------------------------------------------------------------------------------

/// Directory holding initdb, pg_ctl and postgres (the newest installed major version).
pub fn pg_bin() -> Result<PathBuf, Failure> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, d)| d).ok_or_else(|| {
        Failure::usage(
            "PostgreSQL server binaries not found under /usr/lib/postgresql; run scripts/deps.sh",
        )
    })
}

/// Who may own the PostgreSQL directory: this process's user, and `postgres` when we are root.
pub fn pg_dir_owners() -> Vec<u32> {
    let mut owners: Vec<u32> = vec![rustix::process::geteuid().as_raw()];
    if is_root() {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        owners.extend(
            passwd
                .lines()
                .filter_map(|l| l.strip_prefix("postgres:"))
                .filter_map(|rest| rest.split(':').nth(1)?.parse::<u32>().ok()),
        );
    }
    owners
}

/// An existing PostgreSQL directory (or the link to it the state directory holds) is used only
/// when it is a directory owned by one of `owners` that nobody else may write: a directory or
/// link someone else prepared (a planted link in a shared /var/tmp, say) is refused, not
/// `chown`ed or written through.
pub fn check_pg_dir(dir: &Path, owners: &[u32]) -> Result<(), Failure> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| {
        Err(Failure::usage(format!(
            "{}: {why}; refusing to keep PostgreSQL's data there (`omsctl stack wipe` starts afresh)",
            dir.display()
        )))
    };
    let target = std::fs::canonicalize(dir)
        .map_err(|e| Failure::usage(format!("{}: {e}", dir.display())))?;
    let link = std::fs::symlink_metadata(dir)?;
    if link.file_type().is_symlink() && !owners.contains(&link.uid()) {
        return refuse(format!("a link owned by uid {}", link.uid()));
    }
    let meta = std::fs::metadata(&target)?;
    if !meta.is_dir() {
        return refuse(format!("{} is not a directory", target.display()));
    }
    if !owners.contains(&meta.uid()) {
        return refuse(format!(
            "{} is owned by uid {}, not by this user or postgres",
            target.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "{} may be written by others (mode {:o})",
            target.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}

/// Whether omsctl runs as root (its effective user).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `program args` as the user that runs PostgreSQL: `postgres` when we are root (initdb refuses
/// root), else ourselves.
pub fn as_pg_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub async fn run_quiet(mut c: Command, what: &str) -> Result<std::process::Output, Failure> {
    c.stdin(Stdio::null());
    c.output()
        .await
        .map_err(|e| Failure::usage(format!("{what}: {e}")))
}

pub async fn checked(c: Command, what: &str) -> Result<(), Failure> {
    let out = run_quiet(c, what).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Failure::verdict(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// As root, the cluster belongs to the `postgres` system user, which must be able to reach the
/// data directory. When the state directory sits where it cannot (say under /root), the data
/// lives in a directory of a random name made anew in /var/tmp (never one that was there), and
/// the state directory links to it. An existing directory is used only if it is ours
/// ([`check_pg_dir`]).
pub async fn prepare_pg_dir(local: &Local) -> Result<(), Failure> {
    let dir = local.pg_dir();
    std::fs::create_dir_all(local.state_dir())?;
    if std::fs::symlink_metadata(&dir).is_ok() {
        return check_pg_dir(&dir, &pg_dir_owners());
    }
    if !is_root() {
        std::fs::create_dir_all(&dir)?;
        return Ok(());
    }
    let mut useradd = Command::new("sh");
    useradd.args([
        "-c",
        "id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres",
    ]);
    checked(useradd, "creating the postgres system user").await?;
    std::fs::create_dir_all(&dir)?;
    let mut chown = Command::new("chown");
    chown.arg("postgres:").arg(&dir);
    checked(chown, "chown of the PostgreSQL directory").await?;
    let mut probe = Command::new("runuser");
    probe.args(["-u", "postgres", "--", "test", "-w"]).arg(&dir);
    if run_quiet(probe, "runuser").await?.status.success() {
        return Ok(());
    }
    std::fs::remove_dir(&dir)?;
    // mkdtemp: a new directory (0700) of an unpredictable name, or an error; never a path
    // someone prepared.
    let elsewhere = tempfile::Builder::new()
        .prefix("oms-postgres-")
        .tempdir_in("/var/tmp")
        .map_err(|e| Failure::usage(format!("cannot make a directory in /var/tmp: {e}")))?
        .keep();
    let mut chown = Command::new("chown");
    chown.arg("postgres:").arg(&elsewhere);
    checked(chown, "chown of the PostgreSQL directory").await?;
    std::os::unix::fs::symlink(&elsewhere, &dir)?;
    say(format!(
        "postgres cannot reach {}; its data lives in {} (linked)",
        local.state_dir().display(),
        elsewhere.display()
    ));
    Ok(())
}

pub async fn pg_running(bin: &Path, data: &Path) -> Result<bool, Failure> {
    let mut status = as_pg_user(&bin.join("pg_ctl"));
    status.arg("-D").arg(data).arg("status");
    Ok(run_quiet(status, "pg_ctl status").await?.status.success())
}

pub async fn pg_start(local: &Local) -> Result<(), Failure> {
    let bin = pg_bin()?;
    prepare_pg_dir(local).await?;
    let dir = local.pg_home();
    let data = dir.join("data");
    if !data.join("PG_VERSION").exists() {
        say(format!(
            "initialising a PostgreSQL cluster in {}",
            data.display()
        ));
        // A password of its own, kept in the state directory (0600) for the services' URL.
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| Failure::usage(format!("no randomness: {e}")))?;
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        crate::auth::write_atomically(
            &local.state_dir().join(PG_PASSWORD_FILE),
            password.as_bytes(),
            0o600,
        )?;
        let pwfile = dir.join(".pwfile");
        let mut write = as_pg_user(Path::new("sh"));
        write.args(["-c", "umask 077; printf '%s\\n' \"$1\" > \"$2\"", "sh"]);
        write.arg(&password).arg(&pwfile);
        checked(write, "writing the initdb password file").await?;
        let mut initdb = as_pg_user(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .arg(format!("--username={PG_USER}"))
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ]);
        let result = checked(initdb, "initdb").await;
        let _ = std::fs::remove_file(&pwfile);
        result?;
    }
    // Local connections are trusted (`pg_ctl -w` and the owner's own tools use the socket), so
    // the socket's directory is the owner's alone: nobody else reaches the server without the
    // password. A cluster made before this had it open to all.
    let mut socket_dir = as_pg_user(Path::new("sh"));
    socket_dir
        .args(["-c", "mkdir -p \"$1\" && chmod 700 \"$1\"", "sh"])
        .arg(dir.join("run"));
    checked(socket_dir, "making the socket directory private").await?;
    if pg_running(&bin, &data).await? {
        say(format!(
            "PostgreSQL already running on 127.0.0.1:{}",
            local.pg_port
        ));
        return Ok(());
    }
    say(format!(
        "starting PostgreSQL on 127.0.0.1:{}",
        local.pg_port
    ));
    let log = dir.join("postgres.log");
    let mut start = as_pg_user(&bin.join("pg_ctl"));
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o"])
        .arg(format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400{}",
            local.pg_port,
            dir.join("run").display(),
            pg_options()?
        ))
        .arg("start");
    checked(start, "starting PostgreSQL")
        .await
        .map_err(|f| Failure::verdict(format!("{}\n{}", f.error, tail(&log, 20))))
}

/// Extra server settings from `OMS_PG_OPTIONS` (e.g. `-c shared_preload_libraries=pg_stat_statements`
/// for a profile), with a leading space; empty when unset. pg_ctl hands them to a shell, so only
/// plain settings are taken.
pub fn pg_options() -> Result<String, Failure> {
    let Ok(options) = std::env::var("OMS_PG_OPTIONS") else {
        return Ok(String::new());
    };
    check_pg_options(&options)
        .map(|()| format!(" {}", options.trim()))
        .map_err(Failure::usage)
}

pub fn check_pg_options(options: &str) -> Result<(), String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || " _-=.,:/".contains(c);
    match options.chars().find(|c| !plain(*c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "OMS_PG_OPTIONS may hold only settings such as `-c name=value` (letters, digits, \
             spaces and _-=.,:/), not {c:?}"
        )),
    }
}

pub async fn pg_stop(local: &Local) -> Result<(), Failure> {
    let Ok(bin) = pg_bin() else {
        return Ok(());
    };
    let data = local.pg_home().join("data");
    if !data.join("PG_VERSION").exists() || !pg_running(&bin, &data).await? {
        return Ok(());
    }
    say("stopping PostgreSQL");
    let mut stop = as_pg_user(&bin.join("pg_ctl"));
    stop.arg("-D").arg(&data).args(["-m", "fast", "-w", "stop"]);
    checked(stop, "stopping PostgreSQL").await
}

// --- broker and services ------------------------------------------------------------------------
