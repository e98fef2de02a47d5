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
    for child in crate::local::processes() {
        if let Some(stat) = stat_of(child) {
            if parse_ppid(&stat) == Some(pid) {
                total += parse_stat(&stat).map(|(own, _)| own).unwrap_or(0);
            }
        }
    }
    Some(total)
}

/// The components of the local stack that are running, by name, with their pid and whether
/// their children count too (PostgreSQL's backends do).
fn components(state_dir: &Path) -> Vec<(String, u32, bool)> {
    let Ok(local) = crate::local::Local::open(state_dir) else {
        return Vec::new();
    };
    crate::local::Component::all(&local)
        .into_iter()
        .filter_map(|c| {
            let pid = c.pid(&local)?;
            Some((c.name(&local), pid, c == crate::local::Component::Postgres))
        })
        .collect()
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
