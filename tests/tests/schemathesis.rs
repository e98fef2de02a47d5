//! Property-based tests of every service's HTTP API from its own served OpenAPI document, with
//! schemathesis (PyPI): valid and invalid requests generated from the spec, sent with an admin's
//! token, and every answer checked against the spec (no server error, documented status, content
//! type, headers and body schema, invalid data refused, valid data accepted, auth enforced).
//!
//! `scripts/deps.sh --test` installs schemathesis into a virtualenv and `scripts/test.sh` names it
//! in `OMS_SCHEMATHESIS`; otherwise `schemathesis` must be on `PATH`. The seed is fixed so that a
//! failure reproduces (`OMS_SCHEMATHESIS_SEED` picks another; `OMS_SCHEMATHESIS_EXAMPLES` the
//! cases per operation).

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context};
use oms_contracts::auth::Role;
use oms_tests::stack::{Service, Stack, StackOptions};
use serde::Deserialize;

const DEFAULT_SEED: &str = "20261124";
const DEFAULT_EXAMPLES: &str = "20";

fn schemathesis() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("OMS_SCHEMATHESIS") {
        return Ok(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("schemathesis"))
        .find(|p| p.is_file());
    on_path.context(
        "schemathesis is not installed: run scripts/deps.sh --test (or set OMS_SCHEMATHESIS)",
    )
}

/// What one run of schemathesis against one service found.
#[derive(Debug)]
struct Outcome {
    operations: u64,
    cases: u64,
    failures: Vec<String>,
    errors: Vec<String>,
}

/// The members of schemathesis' JSON report (`--report json`) read here.
#[derive(Debug, Deserialize)]
struct Report {
    complete: bool,
    #[serde(default)]
    stop_reason: Option<String>,
    /// `null` when the schema never loaded.
    #[serde(default)]
    operations: Option<Operations>,
    #[serde(default)]
    test_cases: Option<TestCases>,
    #[serde(default)]
    failures: Vec<Group>,
    #[serde(default)]
    errors: Vec<Group>,
}

#[derive(Debug, Deserialize)]
struct Operations {
    tested: u64,
}

#[derive(Debug, Deserialize)]
struct TestCases {
    generated: u64,
}

/// Failures or errors of one kind.
#[derive(Debug, Deserialize)]
struct Group {
    title: String,
    count: u64,
    /// The operations it was found on (errors name none).
    #[serde(default)]
    operations: Vec<String>,
}

fn outcome_of(report: &Report) -> anyhow::Result<Outcome> {
    let titles = |groups: &[Group]| -> Vec<String> {
        groups
            .iter()
            .map(|g| format!("{} × {} {:?}", g.count, g.title, g.operations))
            .collect()
    };
    if !report.complete {
        bail!(
            "the run did not complete: {}",
            report.stop_reason.as_deref().unwrap_or("no reason given")
        );
    }
    Ok(Outcome {
        operations: report
            .operations
            .as_ref()
            .context("no operations in the report")?
            .tested,
        cases: report
            .test_cases
            .as_ref()
            .context("no test cases in the report")?
            .generated,
        failures: titles(&report.failures),
        errors: titles(&report.errors),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_answers_generated_requests_as_its_spec_says() -> anyhow::Result<()> {
    let bin = schemathesis()?;
    let seed = std::env::var("OMS_SCHEMATHESIS_SEED").unwrap_or_else(|_| DEFAULT_SEED.into());
    let examples =
        std::env::var("OMS_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| DEFAULT_EXAMPLES.into());
    let stack = Stack::start(StackOptions::default()).await?;
    let admin = stack.token("schemathesis", Role::Admin, 3600)?;
    let reports = tempfile::tempdir()?;
    let mut broken = Vec::new();
    let mut total = (0, 0);
    for service in Service::all() {
        let url = stack.url(service)?.to_owned();
        let report = reports.path().join(format!("{service}.json"));
        let output = tokio::process::Command::new(&bin)
            .arg("run")
            .arg(format!("{url}/openapi.json"))
            .args(["--url", &url])
            .args(["--header", &format!("Authorization: Bearer {admin}")])
            .args(["--seed", &seed, "--max-examples", &examples])
            .args(["--workers", "1", "--request-timeout", "10"])
            .args(["--report", "json", "--report-json-path"])
            .arg(&report)
            .env("NO_COLOR", "1")
            // Its cache of found failures goes to `.schemathesis/` under the working directory.
            .current_dir(reports.path())
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", bin.display()))?;
        let text = std::fs::read_to_string(&report).with_context(|| {
            format!(
                "schemathesis wrote no report for {service} (exit {:?}): {}",
                output.status.code(),
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        let report: Report = serde_json::from_str(&text)
            .with_context(|| format!("reading the report for {service}: {text}"))?;
        let outcome =
            outcome_of(&report).with_context(|| format!("reading the report for {service}"))?;
        println!(
            "{service}: {} operations, {} cases, {} failures, {} errors",
            outcome.operations,
            outcome.cases,
            outcome.failures.len(),
            outcome.errors.len()
        );
        total = (total.0 + outcome.operations, total.1 + outcome.cases);
        if outcome.operations == 0 || outcome.cases == 0 {
            broken.push(format!("{service}: nothing was tested"));
        }
        if !outcome.failures.is_empty() || !outcome.errors.is_empty() || !output.status.success() {
            println!("{}", String::from_utf8_lossy(&output.stdout));
            broken.push(format!(
                "{service}: failures {:?}, errors {:?}",
                outcome.failures, outcome.errors
            ));
        }
    }
    println!(
        "schemathesis (seed {seed}, {examples} examples per operation): {} operations, {} cases",
        total.0, total.1
    );
    stack.shutdown().await?;
    if !broken.is_empty() {
        bail!("schemathesis found problems:\n{}", broken.join("\n"));
    }
    Ok(())
}

#[test]
fn a_report_with_a_failure_or_an_incomplete_run_is_read_as_such() -> anyhow::Result<()> {
    let report = serde_json::json!({
        "complete": true,
        "operations": {"tested": 3},
        "test_cases": {"generated": 40},
        "failures": [{"title": "Server error", "count": 2, "operations": ["GET /x"]}],
        "errors": []
    });
    let outcome = outcome_of(&serde_json::from_value(report)?)?;
    assert_eq!((outcome.operations, outcome.cases), (3, 40));
    assert_eq!(outcome.failures.len(), 1);
    assert!(outcome.failures[0].contains("Server error"));
    let cut_short = serde_json::json!({"complete": false, "stop_reason": "interrupted"});
    assert!(outcome_of(&serde_json::from_value(cut_short)?).is_err());
    Ok(())
}
