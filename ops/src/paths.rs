//! Where omsctl finds its files when nothing names them: the state directory and the drills.

use std::path::{Path, PathBuf};

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
/// An omsctl installed away from the repository (`cargo install`) falls back to the copies of the
/// shipped drills built into it, written out under the state directory.
pub fn drills_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("OMS_DRILLS_DIR").map(PathBuf::from) {
        return Some(d);
    }
    repository_drills().or_else(|| built_in_drills(&default_state_dir().join("drills")).ok())
}

/// The drills omsctl was built with: (name, the file's text). A test keeps this list equal to
/// `scripts/drills/`.
pub const SHIPPED_DRILLS: &[(&str, &str)] = &[
    (
        "broker-failover",
        include_str!("../../scripts/drills/broker-failover.toml"),
    ),
    (
        "broker-outage",
        include_str!("../../scripts/drills/broker-outage.toml"),
    ),
    (
        "carrier-outage",
        include_str!("../../scripts/drills/carrier-outage.toml"),
    ),
    (
        "customer-cancel-race",
        include_str!("../../scripts/drills/customer-cancel-race.toml"),
    ),
    (
        "db-restart",
        include_str!("../../scripts/drills/db-restart.toml"),
    ),
    (
        "duplicate-storm",
        include_str!("../../scripts/drills/duplicate-storm.toml"),
    ),
    (
        "last-items-race",
        include_str!("../../scripts/drills/last-items-race.toml"),
    ),
    (
        "payment-outage",
        include_str!("../../scripts/drills/payment-outage.toml"),
    ),
    (
        "poison-pill",
        include_str!("../../scripts/drills/poison-pill.toml"),
    ),
    (
        "replica-failover",
        include_str!("../../scripts/drills/replica-failover.toml"),
    ),
    (
        "service-crash",
        include_str!("../../scripts/drills/service-crash.toml"),
    ),
    (
        "slow-payments",
        include_str!("../../scripts/drills/slow-payments.toml"),
    ),
];

/// Writes the built-in drills into `dir` (each file replaced only when its text differs) and
/// returns `dir`.
pub fn built_in_drills(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    for (name, text) in SHIPPED_DRILLS {
        let path = dir.join(format!("{name}.toml"));
        if std::fs::read_to_string(&path).ok().as_deref() != Some(*text) {
            std::fs::write(&path, text)?;
        }
    }
    Ok(dir.to_path_buf())
}

/// `scripts/drills` of the repository omsctl runs from (`OMS_ROOT`, else above its binary).
fn repository_drills() -> Option<PathBuf> {
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

/// A checkout of the OMS repository (a workspace with `services/order`): `OMS_ROOT`, else above
/// the omsctl binary, else above the working directory, else the checkout omsctl was built
/// from (`cargo install --path omsctl` leaves it where it was).
pub fn repository_root() -> Option<PathBuf> {
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Some(root) = std::env::var_os("OMS_ROOT") {
        starts.push(PathBuf::from(root));
    }
    if let Ok(exe) = std::env::current_exe() {
        starts.push(exe);
    }
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    starts.push(PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")));
    starts.into_iter().find_map(|s| {
        s.ancestors()
            .find(|d| is_repository(d))
            .map(Path::to_path_buf)
    })
}

/// Whether `dir` is the root of the OMS workspace.
pub fn is_repository(dir: &Path) -> bool {
    dir.join("Cargo.toml").is_file() && dir.join("services/order/Cargo.toml").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_drills_are_the_shipped_files() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/drills");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .filter_map(|p| {
                let name = p.file_stem()?.to_string_lossy().into_owned();
                Some((name, std::fs::read_to_string(&p).ok()?))
            })
            .collect();
        files.sort();
        let built_in: Vec<(String, String)> = SHIPPED_DRILLS
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        assert_eq!(
            built_in.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            files.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "add the new drill to SHIPPED_DRILLS"
        );
        assert_eq!(built_in, files);
    }

    #[test]
    fn the_built_in_drills_are_written_out_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("drills");
        assert_eq!(built_in_drills(&dir).ok(), Some(dir.clone()));
        let written = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
        assert_eq!(written, SHIPPED_DRILLS.len());
        let first = dir.join(format!("{}.toml", SHIPPED_DRILLS[0].0));
        std::fs::write(&first, "changed").expect("write");
        assert!(built_in_drills(&dir).is_ok());
        assert_eq!(
            std::fs::read_to_string(&first).ok().as_deref(),
            Some(SHIPPED_DRILLS[0].1)
        );
    }
}
