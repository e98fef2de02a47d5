//! What the omsctl end-to-end tests share: omsctl as a user runs it (assert_cmd), pointed at an
//! in-process stack, and reading what it printed.

// Each test file uses its own part of this.
#![allow(dead_code)]

use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use oms_tests::stack::Stack;
use serde::de::DeserializeOwned;

/// omsctl with a clean environment (no config file, state directory or home of the user's),
/// pointed at `stack` when given.
pub fn omsctl(stack: Option<&Stack>) -> anyhow::Result<Command> {
    let mut cmd = Command::cargo_bin("omsctl")?;
    cmd.env_remove("OMS_CONFIG")
        .env_remove("OMS_STATE_DIR")
        .env("HOME", std::env::temp_dir())
        .timeout(Duration::from_secs(120));
    if let Some(stack) = stack {
        cmd.envs(stack.omsctl_env()?);
    }
    Ok(cmd)
}

/// Runs omsctl off the async threads (the services run on them).
pub async fn run(mut cmd: Command, args: &[&str]) -> anyhow::Result<Output> {
    cmd.args(args);
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

/// Runs omsctl with `input` on its standard input.
pub async fn run_with_input(
    mut cmd: Command,
    args: &[&str],
    input: &str,
) -> anyhow::Result<Output> {
    cmd.args(args).write_stdin(input.to_owned());
    Ok(tokio::task::spawn_blocking(move || cmd.output()).await??)
}

/// Standard output (one JSON document) as `T`: the library's report type or the contract type
/// omsctl printed, so a field it lacks or names differently fails here; `Value` only where no
/// such type exists. The error shows both streams.
pub fn json_of<T: DeserializeOwned>(out: &Output) -> anyhow::Result<T> {
    serde_json::from_slice(&out.stdout).map_err(|e| {
        anyhow::anyhow!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Standard output as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exit code (-1 when killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}
