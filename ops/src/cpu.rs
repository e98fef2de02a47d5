//! CPU time of the local stack's processes, read from `/proc` (by procfs), so `omsctl bench` can say what each
//! component spent per order.
//!
//! A component is a process and, for PostgreSQL, its whole process tree: the postmaster's own time,
//! the time of the backends it has already reaped (`cutime`/`cstime`) and that of the live ones.
//! Only the local process stack has pid files; against any other stack the snapshot is empty.

use std::collections::BTreeMap;
use std::path::Path;

use crate::Failure;

/// A process's `/proc/<pid>/stat`, parsed by procfs.
fn stat_of(pid: u32) -> Option<procfs::process::Stat> {
    procfs::process::Process::new(i32::try_from(pid).ok()?)
        .ok()?
        .stat()
        .ok()
}

/// CPU ticks a stat says: (own user + system, reaped children's user + system).
fn ticks(stat: &procfs::process::Stat) -> (u64, u64) {
    let reaped = u64::try_from(stat.cutime.saturating_add(stat.cstime)).unwrap_or(0);
    (stat.utime + stat.stime, reaped)
}

/// CPU ticks of `pid` alone.
fn own_ticks(pid: u32) -> Option<u64> {
    stat_of(pid).map(|s| ticks(&s).0)
}

/// CPU ticks of `pid`, its reaped children and its live children.
fn tree_ticks(pid: u32) -> Option<u64> {
    let (own, reaped) = ticks(&stat_of(pid)?);
    let mut total = own + reaped;
    for child in crate::local::processes() {
        if let Some(stat) = stat_of(child) {
            if u32::try_from(stat.ppid).ok() == Some(pid) {
                total += ticks(&stat).0;
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
                    now.saturating_sub(*before) as f64 / procfs::ticks_per_second() as f64,
                ))
            })
            .collect()
    }
}

/// CPU spent by each component of the local stack over a while (`stack cpu`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuReport {
    /// Over how long.
    pub seconds: f64,
    /// Per component.
    pub components: Vec<CpuRow>,
    /// All of them.
    pub total_cpu_seconds: f64,
    /// All of them, in percent of one core.
    pub total_core_percent: f64,
}

/// One component's CPU.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuRow {
    /// Its name.
    pub component: String,
    /// CPU seconds spent.
    pub cpu_seconds: f64,
    /// In percent of one core.
    pub core_percent: f64,
}

/// CPU each running component of the local stack under `state_dir` spends over `over`.
pub async fn measure(state_dir: &Path, over: std::time::Duration) -> Result<CpuReport, Failure> {
    if over.is_zero() {
        return Err(Failure::usage("--over must be longer than zero"));
    }
    let before = Snapshot::take(state_dir);
    let started = std::time::Instant::now();
    tokio::time::sleep(over).await;
    let seconds = started.elapsed().as_secs_f64();
    let spent: Vec<(String, f64)> = Snapshot::take(state_dir)
        .since(&before)
        .into_iter()
        .filter(|(name, _)| name != "generator")
        .collect();
    if spent.is_empty() {
        return Err(Failure::verdict(format!(
            "nothing of the local stack runs under {}",
            state_dir.display()
        )));
    }
    let total: f64 = spent.iter().map(|(_, s)| s).sum();
    let percent = |s: f64| (s / seconds * 1000.0).round() / 10.0;
    Ok(CpuReport {
        seconds,
        components: spent
            .iter()
            .map(|(name, s)| CpuRow {
                component: name.clone(),
                cpu_seconds: *s,
                core_percent: percent(*s),
            })
            .collect(),
        total_cpu_seconds: total,
        total_core_percent: percent(total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_add_user_and_system_and_keep_reaped_children_apart() {
        use procfs::FromRead;
        // A name with spaces and a ')' must not shift the fields.
        let stat = "4242 (tokio rt) worker)) S 1 4242 4242 0 -1 4194304 100 0 0 0 \
                    250 50 7 3 20 0 12 0 1000 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        let parsed = procfs::process::Stat::from_read(stat.as_bytes()).expect("a stat line");
        assert_eq!(ticks(&parsed), (300, 10));
        assert_eq!(parsed.ppid, 1);
        assert!(procfs::process::Stat::from_read("no parenthesis here".as_bytes()).is_err());
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
