//! Processes of the local stack: signals, liveness from `/proc`, pid files, ports, detached
//! spawning.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::Failure;

/// A signal omsctl sends to a component's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Ask it to stop.
    Term,
    /// Kill it outright (a crash).
    Kill,
    /// Freeze it (a hang).
    Stop,
    /// Thaw it.
    Cont,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }

    fn of(self) -> rustix::process::Signal {
        use rustix::process::Signal as S;
        match self {
            Signal::Term => S::TERM,
            Signal::Kill => S::KILL,
            Signal::Stop => S::STOP,
            Signal::Cont => S::CONT,
        }
    }
}

/// Sends `signal` to process `pid` (kill(2), through rustix).
pub fn signal(pid: u32, signal: Signal) -> Result<(), Failure> {
    let sig = signal.name();
    let target = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| Failure::usage(format!("kill -{sig} {pid}: not a process id")))?;
    rustix::process::kill_process(target, signal.of())
        .map_err(|e| Failure::verdict(format!("kill -{sig} {pid} failed: {e}")))
}

/// The state of a process (`R`, `S`, `T`, `Z`, ...), when it exists (procfs reads `/proc`).
pub fn process_state(pid: u32) -> Option<char> {
    let pid = i32::try_from(pid).ok()?;
    procfs::process::Process::new(pid)
        .ok()?
        .stat()
        .ok()
        .map(|s| s.state)
}

/// Whether a process exists and is not a zombie (a killed service nobody reaped yet).
pub fn alive(pid: u32) -> bool {
    process_state(pid).is_some_and(|s| s != 'Z')
}

/// Whether a process is stopped by a signal (SIGSTOP: a paused service).
pub fn frozen(pid: u32) -> bool {
    process_state(pid).is_some_and(|s| s == 'T')
}

/// The ids of every process on the machine.
pub fn processes() -> impl Iterator<Item = u32> {
    procfs::process::all_processes()
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|p| u32::try_from(p.pid()).ok())
}

pub fn pid_file(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    alive(pid).then_some(pid)
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(300),
    )
    .is_ok()
}

/// Polls `ready` every 200 ms until it holds or `within` has passed.
pub async fn wait_for(within: Duration, mut ready: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if ready().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Raises this process's soft limit of open files to its hard limit (what its children then
/// inherit); nothing when it cannot.
pub fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(raised) = raised_soft_limit(limit.current, limit.maximum) {
        limit.current = Some(raised);
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// The soft limit to raise `current` to under `maximum` (`None`: unlimited), if any: the hard
/// limit, or 1,048,576 (the kernel's usual cap) when the hard limit is unlimited.
pub(super) fn raised_soft_limit(current: Option<u64>, maximum: Option<u64>) -> Option<u64> {
    let target = maximum.unwrap_or(1 << 20);
    match current {
        Some(c) if c < target => Some(target),
        _ => None,
    }
}

/// Starts `program` detached: its own process group (a Ctrl-C in the terminal does not reach
/// it), stdin closed, output appended to `log`, its pid written to `pid_path`. It outlives
/// omsctl.
pub fn spawn_detached(mut command: Command, log: &Path, pid_path: &Path) -> Result<u32, Failure> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    // Logs name customers and orders: the owner and its group read them, nobody else.
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(log)?;
    out.set_permissions(std::fs::Permissions::from_mode(0o640))?;
    let err = out.try_clone()?;
    // A Kafka node keeps a file open per partition segment and a socket per client: the
    // default soft limit (1024 on many machines) runs out under a few thousand partitions,
    // and the node stops taking connections. The children inherit the raised limit.
    raise_open_files_limit();
    command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    let child = command
        .spawn()
        .map_err(|e| Failure::usage(format!("starting {}: {e}", log.display())))?;
    let pid = child
        .id()
        .ok_or_else(|| Failure::verdict("the started process exited at once"))?;
    std::fs::write(pid_path, pid.to_string())?;
    Ok(pid)
}
