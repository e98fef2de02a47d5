//! `stack up --observability`: Prometheus beside the local stack, scraping every service replica
//! (one job per service, as in compose) with a token of the metrics role, and evaluating the
//! OMS's alert rules (the same file compose and Kubernetes use, built into omsctl).
//!
//! Prometheus comes from the machine's packages (Debian's `prometheus`; `scripts/deps.sh
//! --observability` installs it). Grafana and Jaeger stay with compose: no registry this project
//! installs from ships them (Debian packages neither; Grafana's code is AGPL; Jaeger's Go module
//! builds without its UI), so the local stack's graphs and alerts are Prometheus's own pages.
//!
//! Files, under `<state dir>/observability/`: `prometheus.yml`, `rules/oms-alerts.yml`,
//! `scrape-token` (0600), `data/`, `prometheus.pid`, `prometheus.log`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oms_contracts::auth::{Claims, Role};
use oms_contracts::ServiceId as Svc;

use super::process::{alive, pid_file, port_open, signal, spawn_detached, wait_for, Signal};
use super::{say, Local};
use crate::Failure;

/// The alert rules, as deploy/observability ships them.
pub const ALERT_RULES: &str = include_str!("../../../deploy/observability/rules/oms-alerts.yml");

/// How long the scrape token lives (a stack outlives a day; `stack up` mints a new one).
const TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Prometheus's port on 127.0.0.1 (`OMS_PROMETHEUS_PORT`, default 9090).
pub fn port() -> Result<u16, Failure> {
    super::env_port("OMS_PROMETHEUS_PORT", 9090)
}

fn dir(local: &Local) -> PathBuf {
    local.state_dir().join("observability")
}

/// The `prometheus` program: `OMS_PROMETHEUS_BIN`, else on PATH.
pub fn binary() -> Result<PathBuf, Failure> {
    if let Some(p) = std::env::var_os("OMS_PROMETHEUS_BIN") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    super::binaries::holding_all(std::env::split_paths(&path), &["prometheus".to_owned()])
        .map(|dir| dir.join("prometheus"))
        .ok_or_else(|| {
            Failure::usage(
                "--observability needs Prometheus: `scripts/deps.sh --observability` installs \
                 Debian's package (or set OMS_PROMETHEUS_BIN)",
            )
        })
}

/// Prometheus's configuration for `local`: one job per service, each replica a target, the
/// token file and the rules file named.
pub fn config(local: &Local, token: &Path, rules: &Path) -> String {
    let mut out = String::from(
        "# Written by `omsctl stack up --observability` from the stack's topology and ports.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\n",
    );
    out.push_str(&format!(
        "rule_files:\n  - {}\n\nscrape_configs:\n",
        rules.display()
    ));
    for svc in Svc::all() {
        let targets: Vec<String> = (1..=local.replicas)
            .map(|r| format!("\"127.0.0.1:{}\"", local.replica_port(svc, r)))
            .collect();
        out.push_str(&format!(
            "  - job_name: {}\n    authorization: {{ type: Bearer, credentials_file: {} }}\n    static_configs: [{{ targets: [{}] }}]\n",
            svc.name(),
            token.display(),
            targets.join(", ")
        ));
    }
    out
}

/// Starts Prometheus unless it runs: writes its files (a fresh scrape token of the metrics
/// role, signed by the stack's issuer) and waits until it answers.
pub async fn start(local: &Local) -> Result<u16, Failure> {
    let port = port()?;
    let dir = dir(local);
    let pid_path = dir.join("prometheus.pid");
    if let Some(pid) = pid_file(&pid_path).filter(|p| alive(*p)) {
        say(format!(
            "prometheus already running on 127.0.0.1:{port} (pid {pid})"
        ));
        return Ok(port);
    }
    let program = binary()?;
    if port_open(port) {
        return Err(Failure::usage(format!(
            "port {port} (prometheus) is taken by another process; set OMS_PROMETHEUS_PORT"
        )));
    }
    std::fs::create_dir_all(dir.join("rules"))?;
    let rules = dir.join("rules/oms-alerts.yml");
    std::fs::write(&rules, ALERT_RULES)?;
    let signer = crate::auth::Signer::local(local.state_dir())?.ok_or_else(|| {
        Failure::usage("the stack has no issuer key yet: `omsctl stack up` makes it first")
    })?;
    let claims = Claims::local(
        "prometheus",
        Role::Metrics,
        crate::auth::now(),
        TOKEN_TTL.as_secs(),
    );
    let token = dir.join("scrape-token");
    crate::auth::write_atomically(&token, signer.sign(&claims)?.as_bytes(), 0o600)?;
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config(local, &token, &rules))?;
    let mut command = tokio::process::Command::new(&program);
    command.args([
        format!("--config.file={}", config_path.display()),
        format!("--storage.tsdb.path={}", dir.join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--storage.tsdb.retention.time=2d".to_owned(),
    ]);
    let pid = spawn_detached(command, &dir.join("prometheus.log"), &pid_path)?;
    let up = wait_for(Duration::from_secs(30), async || {
        port_open(port) || !alive(pid)
    })
    .await;
    if !up || !alive(pid) {
        return Err(Failure::verdict(format!(
            "prometheus did not start; see {}",
            dir.join("prometheus.log").display()
        )));
    }
    say(format!(
        "started prometheus on http://127.0.0.1:{port} (pid {pid}): every service scraped, the OMS alert rules loaded (Grafana and Jaeger: compose.yaml)"
    ));
    Ok(port)
}

/// Prometheus's pid, when it runs.
pub fn pid(local: &Local) -> Option<u32> {
    pid_file(&dir(local).join("prometheus.pid")).filter(|p| alive(*p))
}

/// Stops Prometheus when it runs.
pub async fn stop(local: &Local) -> Result<(), Failure> {
    let Some(pid) = pid(local) else {
        return Ok(());
    };
    say(format!("stopping prometheus (pid {pid})"));
    let _ = signal(pid, Signal::Term);
    if !wait_for(Duration::from_secs(10), async || !alive(pid)).await {
        let _ = signal(pid, Signal::Kill);
    }
    let _ = std::fs::remove_file(dir(local).join("prometheus.pid"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_has_one_job_per_service_with_every_replica_and_the_token() {
        let state = tempfile::tempdir().expect("dir");
        let mut local = Local::from_env(state.path(), Some("/bin".into())).expect("local");
        local.replicas = 2;
        let text = config(
            &local,
            Path::new("/s/observability/scrape-token"),
            Path::new("/s/rules.yml"),
        );
        let doc: serde_norway::Value = serde_norway::from_str(&text).expect("YAML");
        let jobs = doc["scrape_configs"].as_sequence().expect("jobs");
        assert_eq!(jobs.len(), Svc::all().count());
        for (job, svc) in jobs.iter().zip(Svc::all()) {
            assert_eq!(job["job_name"].as_str(), Some(svc.name()));
            let targets = job["static_configs"][0]["targets"]
                .as_sequence()
                .expect("targets");
            let want: Vec<String> = (1..=2)
                .map(|r| format!("127.0.0.1:{}", local.replica_port(svc, r)))
                .collect();
            let got: Vec<&str> = targets.iter().filter_map(|t| t.as_str()).collect();
            assert_eq!(got, want, "{}", svc.name());
            assert_eq!(
                job["authorization"]["credentials_file"].as_str(),
                Some("/s/observability/scrape-token")
            );
        }
        assert_eq!(doc["rule_files"][0].as_str(), Some("/s/rules.yml"));
    }

    #[test]
    fn the_built_in_rules_are_the_shipped_file() {
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/observability/rules/oms-alerts.yml"
        ))
        .expect("rules");
        assert_eq!(ALERT_RULES, shipped);
        assert!(ALERT_RULES.contains("alert:"));
    }
}
