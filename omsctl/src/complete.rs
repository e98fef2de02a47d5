//! Dynamic shell completions: the shell asks omsctl itself (`COMPLETE=bash omsctl -- …`, the
//! clap_complete engine), so topics, consumer groups, drills, components, saga states and order
//! statuses are completed from what this omsctl knows: the topology (with `OMS_TOPIC_PREFIX`),
//! the drills directory and the contracts' enums.
//!
//! `omsctl completions SHELL` prints the script that registers this with the shell.

use clap_complete::CompletionCandidate;

fn prefixed(name: &str) -> String {
    let prefix = std::env::var("OMS_TOPIC_PREFIX").unwrap_or_default();
    oms_contracts::Topics::new(&prefix).name(name)
}

/// The OMS topics and their dead-letter topics (as deployed).
pub fn topics() -> Vec<CompletionCandidate> {
    oms_contracts::topics::all_with_dlq()
        .iter()
        .map(|t| CompletionCandidate::new(prefixed(t)))
        .collect()
}

/// `tail`'s topics: every topic, its DLQ, and `all`.
pub fn tail_topics() -> Vec<CompletionCandidate> {
    let mut out = topics();
    out.push(CompletionCandidate::new("all").help(Some("every topic and DLQ".into())));
    out
}

/// The services' consumer groups (as deployed).
pub fn groups() -> Vec<CompletionCandidate> {
    oms_contracts::topology::SERVICES
        .iter()
        .map(|s| {
            CompletionCandidate::new(prefixed(s.group))
                .help(Some(format!("{} service", s.id.name()).into()))
        })
        .collect()
}

/// The drills shipped in the drills directory.
pub fn drills() -> Vec<CompletionCandidate> {
    let Some(dir) = oms_ops::paths::drills_dir() else {
        return Vec::new();
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// The services of the topology.
pub fn services() -> Vec<CompletionCandidate> {
    oms_contracts::ServiceId::all()
        .map(|s| CompletionCandidate::new(s.name()))
        .collect()
}

/// Local stack components: postgres, the broker and its nodes, each service (replicas are
/// `order-2` ...).
pub fn components() -> Vec<CompletionCandidate> {
    let mut out = vec![CompletionCandidate::new("postgres")];
    out.extend(broker_nodes());
    out.extend(services());
    out
}

/// What a broker fault names: `broker` (every node), `leader`, and each node of a cluster of
/// three (`broker-1` ...).
pub fn broker_nodes() -> Vec<CompletionCandidate> {
    let mut out = vec![
        CompletionCandidate::new("broker"),
        CompletionCandidate::new("leader"),
    ];
    out.extend(
        (1..=oms_kafka::node::MAX_NODES).map(|k| CompletionCandidate::new(format!("broker-{k}"))),
    );
    out
}

/// Saga states.
pub fn saga_states() -> Vec<CompletionCandidate> {
    oms_contracts::api::SagaState::ALL
        .iter()
        .map(|s| CompletionCandidate::new(s.as_str()))
        .collect()
}

/// Order statuses.
pub fn order_statuses() -> Vec<CompletionCandidate> {
    oms_contracts::api::OrderStatus::ALL
        .iter()
        .map(|s| CompletionCandidate::new(s.to_string()))
        .collect()
}

/// The registration script for `shell` (bash, zsh, fish, elvish, powershell): it calls this
/// omsctl back with `COMPLETE=<shell>` to complete.
pub fn registration(shell: &str) -> Result<Vec<u8>, oms_ops::Failure> {
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells.completer(shell).ok_or_else(|| {
        oms_ops::Failure::usage(format!(
            "no completions for {shell:?} (expected one of {})",
            shells.names().collect::<Vec<_>>().join(", ")
        ))
    })?;
    let bin = std::env::current_exe()
        .ok()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "omsctl".into());
    let mut script = Vec::new();
    completer.write_registration("COMPLETE", "omsctl", &bin, &bin, &mut script)?;
    Ok(script)
}

/// Where `completions --install` put a shell's script, and what (if anything) the user still
/// has to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Installed {
    /// The shell.
    pub shell: String,
    /// The file written.
    pub path: std::path::PathBuf,
    /// A line for the shell's startup file, when the shell does not load the directory by itself.
    pub add_to_startup: Option<String>,
}

/// The shell named by `$SHELL` (its file name), when set.
pub fn login_shell() -> Option<String> {
    let shell = std::env::var_os("SHELL")?;
    std::path::Path::new(&shell)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
}

/// Where `shell` loads completions from by itself, under `home` and the XDG directories: bash
/// (bash-completion 2) and fish do; for the others a file omsctl keeps and a line to source it.
fn install_path(
    shell: &str,
    home: &std::path::Path,
    data: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
) -> (std::path::PathBuf, bool) {
    let data = data.unwrap_or_else(|| home.join(".local/share"));
    let config = config.unwrap_or_else(|| home.join(".config"));
    match shell {
        "bash" => (data.join("bash-completion/completions/omsctl"), true),
        "fish" => (config.join("fish/completions/omsctl.fish"), true),
        other => (
            data.join(format!("omsctl/completions/omsctl.{other}")),
            false,
        ),
    }
}

/// Writes `shell`'s registration script where the shell finds it (see [`install_path`]).
pub fn install(shell: &str) -> Result<Installed, oms_ops::Failure> {
    let script = registration(shell)?;
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
        .ok_or_else(|| oms_ops::Failure::usage("HOME is not set: cannot tell where to install"))?;
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    let (path, loaded) = install_path(shell, &home, var("XDG_DATA_HOME"), var("XDG_CONFIG_HOME"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, script)?;
    Ok(Installed {
        shell: shell.to_owned(),
        add_to_startup: (!loaded).then(|| format!("source {}", path.display())),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(c: Vec<CompletionCandidate>) -> Vec<String> {
        c.iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn candidates_come_from_the_topology_and_the_contracts() {
        let topics = names(tail_topics());
        assert!(
            topics.iter().any(|t| t.ends_with("oms.payment.commands")),
            "{topics:?}"
        );
        assert!(
            topics
                .iter()
                .any(|t| t.ends_with("oms.payment.commands.dlq")),
            "{topics:?}"
        );
        assert!(topics.contains(&"all".to_owned()));
        assert!(names(groups()).iter().any(|g| g.ends_with("oms-saga")));
        assert!(names(components()).contains(&"broker".to_owned()));
        assert!(names(saga_states()).contains(&"AUTHORIZING".to_owned()));
        assert!(names(order_statuses()).contains(&"CONFIRMED".to_owned()));
    }

    #[test]
    fn every_known_shell_registers_and_others_are_refused() {
        for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
            let script = registration(shell).expect(shell);
            assert!(
                String::from_utf8_lossy(&script).contains("COMPLETE"),
                "{shell}"
            );
        }
        assert!(registration("tcsh").is_err());
    }

    #[test]
    fn completions_go_where_each_shell_looks() {
        let home = std::path::Path::new("/home/ann");
        let (bash, loaded) = install_path("bash", home, None, None);
        assert_eq!(
            bash,
            home.join(".local/share/bash-completion/completions/omsctl")
        );
        assert!(loaded);
        let (fish, loaded) = install_path("fish", home, None, Some("/cfg".into()));
        assert_eq!(
            fish,
            std::path::Path::new("/cfg/fish/completions/omsctl.fish")
        );
        assert!(loaded);
        let (zsh, loaded) = install_path("zsh", home, Some("/data".into()), None);
        assert_eq!(
            zsh,
            std::path::Path::new("/data/omsctl/completions/omsctl.zsh")
        );
        assert!(!loaded, "zsh needs a line in .zshrc");
    }
}
