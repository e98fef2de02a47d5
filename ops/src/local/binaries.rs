//! Where `stack up` finds the service binaries when `--bin-dir` does not say: next to omsctl
//! (a build tree, or `cargo install` of every crate), on `PATH`, else built from a checkout of
//! the repository (`cargo build --release`, once).

use std::path::{Path, PathBuf};

use oms_contracts::topology::SERVICES;

use super::say;
use crate::Failure;

/// The file name of every service binary (`oms-order`, ...).
pub fn service_binaries() -> Vec<String> {
    SERVICES.iter().map(|s| format!("oms-{}", s.name)).collect()
}

/// The first of `dirs` that holds every one of `names` as a file.
pub fn holding_all(dirs: impl IntoIterator<Item = PathBuf>, names: &[String]) -> Option<PathBuf> {
    dirs.into_iter()
        .find(|d| names.iter().all(|n| d.join(n).is_file()))
}

/// How the service binaries were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// In the directory of the omsctl that runs.
    BesideOmsctl(PathBuf),
    /// In a directory on `PATH`.
    OnPath(PathBuf),
    /// Built in a checkout of the repository, into its `target/release`.
    Built(PathBuf),
}

impl Found {
    /// The directory that holds them.
    pub fn dir(&self) -> &Path {
        match self {
            Found::BesideOmsctl(d) | Found::OnPath(d) | Found::Built(d) => d,
        }
    }
}

/// Finds the service binaries, building them from a checkout when they are nowhere else; an
/// error says every way to get them.
pub async fn locate() -> Result<Found, Failure> {
    let names = service_binaries();
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    if let Some(dir) = holding_all(beside, &names) {
        return Ok(Found::BesideOmsctl(dir));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(dir) = holding_all(std::env::split_paths(&path), &names) {
        return Ok(Found::OnPath(dir));
    }
    let Some(root) = crate::paths::repository_root() else {
        return Err(Failure::usage(format!(
            "the service binaries ({}) are not next to omsctl nor on PATH, and there is no \
             checkout of the repository to build them in: install them (`cargo install --path \
             services/order`, … for each service) or pass --bin-dir",
            names.join(", ")
        )));
    };
    build(&root, &names).await?;
    Ok(Found::Built(root.join("target/release")))
}

/// `cargo build --release` of the service binaries in the checkout at `root`.
async fn build(root: &Path, names: &[String]) -> Result<(), Failure> {
    say(format!(
        "building the services in {} (cargo build --release; the first build takes minutes)",
        root.display()
    ));
    let mut cargo =
        tokio::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(root)
        .args(["build", "--release", "--quiet"]);
    for n in names {
        cargo.args(["--bin", n]);
    }
    let status = cargo.status().await.map_err(|e| {
        Failure::usage(format!(
            "cannot run cargo to build the services in {} ({e}); install Rust or pass --bin-dir",
            root.display()
        ))
    })?;
    if !status.success() {
        return Err(Failure::verdict(format!(
            "building the services in {} failed ({status}); see cargo's messages above",
            root.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_of_the_topology_has_its_binary_name() {
        let names = service_binaries();
        assert_eq!(names.len(), SERVICES.len());
        assert!(names.contains(&"oms-order".to_owned()), "{names:?}");
        assert!(names.contains(&"oms-fulfillment".to_owned()), "{names:?}");
    }

    #[test]
    fn only_a_directory_with_every_binary_is_taken() {
        let some = tempfile::tempdir().expect("dir");
        let all = tempfile::tempdir().expect("dir");
        let names = service_binaries();
        std::fs::write(some.path().join(&names[0]), "").expect("write");
        for n in &names {
            std::fs::write(all.path().join(n), "").expect("write");
        }
        let dirs = || vec![some.path().to_path_buf(), all.path().to_path_buf()];
        assert_eq!(holding_all(dirs(), &names), Some(all.path().to_path_buf()));
        assert_eq!(holding_all(vec![some.path().to_path_buf()], &names), None);
        // A directory of that name is not a binary.
        let dir_named = tempfile::tempdir().expect("dir");
        for n in &names {
            std::fs::create_dir(dir_named.path().join(n)).expect("mkdir");
        }
        assert_eq!(
            holding_all(vec![dir_named.path().to_path_buf()], &names),
            None
        );
    }
}
