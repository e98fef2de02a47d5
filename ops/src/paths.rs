//! Where omsctl finds its files when nothing names them: the state directory and the drills.

use std::path::PathBuf;

/// The state directory when none is configured: `$XDG_STATE_HOME/oms`, else
/// `~/.local/state/oms` (the same from every working directory), else `.oms`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("oms");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/state/oms"),
        None => PathBuf::from(".oms"),
    }
}

/// Where the shipped drills live: `OMS_DRILLS_DIR`, `OMS_ROOT/scripts/drills`, else next to the
/// omsctl binary's repository (`target/*/omsctl` → `scripts/drills`).
pub fn drills_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("OMS_DRILLS_DIR").map(PathBuf::from) {
        return Some(d);
    }
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Ok(root) = std::env::var("OMS_ROOT") {
        starts.push(PathBuf::from(root));
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    starts.into_iter().find_map(|s| {
        s.ancestors()
            .map(|d| d.join("scripts/drills"))
            .find(|d| d.is_dir())
    })
}
