//! The faults in force, recorded in the state directory (`chaos.json`) so `status` shows them
//! and `reset` undoes them even after the omsctl that caused them is gone.

use crate::ctx::Ctx;
use crate::local;
use crate::Failure;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::PathBuf;

use super::fault::Fault;

/// A fault in force, as recorded in `chaos.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
    /// When it started (RFC 3339).
    pub since: String,
    /// When `--for` undoes it, if given (RFC 3339).
    pub until: Option<String>,
    /// The omsctl that holds it for `--for` and will undo it.
    pub holder: Option<u32>,
}

impl Recorded {
    /// Past its `--for` deadline with nobody left to undo it: the omsctl that held it died.
    pub fn overdue(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        let past = self
            .until
            .as_deref()
            .and_then(|u| chrono::DateTime::parse_from_rfc3339(u).ok())
            .is_some_and(|u| u < now);
        past && !self.holder.is_some_and(local::alive)
    }

    /// As `chaos status` shows it: the record with its target, action and whether it is
    /// overdue.
    pub fn view(&self, now: chrono::DateTime<chrono::Utc>) -> Value {
        // The record as it is kept, with three fields for people and tools: the target and
        // action in words (over the fault's own fields of those names) and whether it is overdue.
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(fields) = &mut v {
            fields.insert("target".into(), self.fault.target().into());
            fields.insert("action".into(), self.fault.action().into());
            fields.insert("overdue".into(), self.overdue(now).into());
        }
        v
    }
}

/// The faults recorded as in force (for dashboards), one line each.
pub fn active(ctx: &Ctx) -> Vec<String> {
    let now = chrono::Utc::now();
    Faults::at(ctx)
        .read()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let overdue = if r.overdue(now) { " (OVERDUE)" } else { "" };
            match &r.fault {
                Fault::Payment { .. } => {
                    format!("payment gateway: {}{overdue}", r.fault.action())
                }
                Fault::Carrier { .. } => format!("carrier: {}{overdue}", r.fault.action()),
                f => format!(
                    "{} {} since {}{overdue}",
                    f.target(),
                    f.action(),
                    r.since.get(11..19).unwrap_or(&r.since)
                ),
            }
        })
        .collect()
}

/// The fault file, changed only under an exclusive lock (two omsctl at once never lose a
/// fault) and written atomically (a crash never leaves half a file).
pub struct Faults {
    pub(super) path: PathBuf,
}

impl Faults {
    /// The faults recorded for `ctx`'s stack.
    pub fn at(ctx: &Ctx) -> Self {
        Self {
            path: ctx.state_dir.join("chaos.json"),
        }
    }

    /// Every fault recorded.
    pub fn read(&self) -> Result<Vec<Recorded>, Failure> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim().is_empty() => Ok(Vec::new()),
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                Failure::usage(format!("{} is not a fault list: {e}", self.path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Failure::usage(format!("{}: {e}", self.path.display()))),
        }
    }

    /// Reads, changes and writes the list under the lock; returns what `change` returns.
    fn update<T>(&self, change: impl FnOnce(&mut Vec<Recorded>) -> T) -> Result<T, Failure> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock()
            .with_context(|| format!("locking {}", lock_path.display()))?;
        let mut faults = self.read()?;
        let out = change(&mut faults);
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&faults)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        drop(lock);
        Ok(out)
    }

    pub(super) fn record(&self, r: Recorded) -> Result<(), Failure> {
        self.update(|faults| {
            faults.retain(|f| f.fault.target() != r.fault.target());
            faults.push(r);
        })
    }

    /// Forgets the fault on `target`.
    pub fn forget(&self, target: &str) -> Result<(), Failure> {
        self.update(|faults| faults.retain(|f| f.fault.target() != target))
    }
}

/// Now, RFC 3339 to the second.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
