//! CPU time of the local stack's processes, read from `/proc`, so `omsctl bench` can say what each
//! component spent per order.
//!
//! A component is a process and, for PostgreSQL, its whole process tree: the postmaster's own time,
//! the time of the backends it has already reaped (`cutime`/`cstime`) and that of the live ones.
//! Only the local process stack has pid files; against any other stack the snapshot is empty.

use std::collections::BTreeMap;
use std::path::Path;

/// CPU seconds of one process from the text of its `/proc/<pid>/stat`: (own user + system, reaped
/// children's user + system).
pub fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    // The command name is parenthesised and may hold spaces or ')': fields start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let field = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some((field(11)? + field(12)?, field(13)? + field(14)?))
}

/// The parent pid from the text of `/proc/<pid>/stat`.
pub fn parse_ppid(stat: &str) -> Option<u32> {
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn ticks_per_second() -> f64 {
    // Linux has reported CPU times in USER_HZ = 100 ticks per second on every architecture the
    // stack runs on; reading sysconf would need libc for one constant.
    100.0
}

fn stat_of(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// CPU ticks of `pid` alone.
fn own_ticks(pid: u32) -> Option<u64> {
    parse_stat(&stat_of(pid)?).map(|(own, _)| own)
}

/// CPU ticks of `pid`, its reaped children and its live children.
fn tree_ticks(pid: u32) -> Option<u64> {
    let (own, reaped) = parse_stat(&stat_of(pid)?)?;
    let mut total = own + reaped;
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(stat) = stat_of(child) {
                if parse_ppid(&stat) == Some(pid) {
                    total += parse_stat(&stat).map(|(own, _)| own).unwrap_or(0);
                }
            }
        }
    }
    Some(total)
}

fn pid_file(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// The postmaster of the stack's cluster: from `postmaster.pid` when readable, else the
/// `postgres` process whose data directory is the stack's (the data directory may belong to
/// another user).
fn postmaster(state_dir: &Path) -> Option<u32> {
    let data = state_dir.join("postgres/data");
    if let Some(pid) = pid_file(&data.join("postmaster.pid")) {
        return Some(pid);
    }
    let data = std::fs::canonicalize(&data).ok()?;
    let data = data.to_string_lossy();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_postgres = args.first().is_some_and(|a| a.ends_with("/postgres"));
        let has_data = args
            .windows(2)
            .any(|w| w[0] == "-D" && w[1].trim_end_matches('/') == data);
        if is_postgres && has_data {
            return Some(pid);
        }
    }
    None
}

/// The components of the local stack that are running, by name, with how to count them.
fn components(state_dir: &Path) -> Vec<(String, u32, bool)> {
    let mut out = Vec::new();
    if let Some(pid) = pid_file(&state_dir.join("broker/broker.pid")) {
        out.push(("broker".to_owned(), pid, false));
    }
    if let Some(pid) = postmaster(state_dir) {
        out.push(("postgres".to_owned(), pid, true));
    }
    for svc in crate::ctx::Svc::all() {
        let path = state_dir.join(format!("services/{}.pid", svc.name()));
        if let Some(pid) = pid_file(&path) {
            out.push((svc.name().to_owned(), pid, false));
        }
    }
    out.retain(|(_, pid, _)| crate::stack::alive(*pid));
    out
}

/// CPU ticks of every component at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    ticks: BTreeMap<String, u64>,
}

impl Snapshot {
    /// Reads the local stack under `state_dir` (nothing when it is not running here) and this
    /// process, as `generator`.
    pub fn take(state_dir: &Path) -> Self {
        let mut ticks = BTreeMap::new();
        for (name, pid, tree) in components(state_dir) {
            let t = if tree {
                tree_ticks(pid)
            } else {
                own_ticks(pid)
            };
            if let Some(t) = t {
                ticks.insert(name, t);
            }
        }
        if let Some(t) = own_ticks(std::process::id()) {
            ticks.insert("generator".to_owned(), t);
        }
        Self { ticks }
    }

    /// CPU seconds each component spent since `earlier` (components present in both).
    pub fn since(&self, earlier: &Snapshot) -> Vec<(String, f64)> {
        self.ticks
            .iter()
            .filter_map(|(name, now)| {
                let before = earlier.ticks.get(name)?;
                Some((
                    name.clone(),
                    now.saturating_sub(*before) as f64 / ticks_per_second(),
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // A name with spaces and a ')' must not shift the fields.
        let stat = "4242 (tokio rt) worker)) S 1 4242 4242 0 -1 4194304 100 0 0 0 \
                    250 50 7 3 20 0 12 0 1000 0 0";
        assert_eq!(parse_stat(stat), Some((300, 10)));
        assert_eq!(parse_ppid(stat), Some(1));
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse_stat("no parenthesis here"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_ppid("1 (x)"), None);
    }

    #[test]
    fn a_snapshot_measures_this_process() {
        let before = Snapshot::take(Path::new("/nonexistent"));
        // Burn a little CPU so the difference can be seen (ticks are 10 ms).
        let started = std::time::Instant::now();
        let mut x: u64 = 1;
        while started.elapsed() < std::time::Duration::from_millis(60) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        assert_ne!(x, 0);
        let spent = Snapshot::take(Path::new("/nonexistent")).since(&before);
        let generator = spent.iter().find(|(n, _)| n == "generator");
        assert!(
            generator.is_some_and(|(_, s)| *s >= 0.02),
            "generator CPU not measured: {spent:?}"
        );
    }
}
