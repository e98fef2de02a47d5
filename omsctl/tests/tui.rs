//! `omsctl tui` in a real terminal: tmux runs it against the six services (in-process, on the
//! test PostgreSQL and broker) while orders flow; the pane's text is what a user would see.

use std::process::Command;
use std::time::Duration;

use oms_contracts::routes;
use oms_tests::stack::{Service, Stack, StackOptions};
use oms_tests::{eventually, unique};
use serde_json::json;

fn tmux(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("tmux").args(args).output()?;
    anyhow::ensure!(
        out.status.success(),
        "tmux {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The number on the dashboard's `total` line.
fn total(pane: &str) -> Option<i64> {
    pane.lines()
        .find_map(|l| l.trim_start_matches('│').trim_start().strip_prefix("total"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_live_counts_opens_help_and_quits_cleanly() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let dir = tempfile::tempdir()?;
    let exit_file = dir.path().join("exit");
    let mut env = stack.omsctl_env()?;
    env.push(("OMS_STATE_DIR".to_owned(), dir.path().display().to_string()));
    let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}='{v}'")).collect();
    let command = format!(
        "env {} {} tui --refresh 500ms; echo EXIT=$? > {}; echo the shell is back; sleep 120",
        env.join(" "),
        env!("CARGO_BIN_EXE_omsctl"),
        exit_file.display()
    );
    let name = format!("omsctl-tui-{}", unique());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "150",
        "-y",
        "42",
        &command,
    ])?;
    let session = Session(name.clone());
    let pane = || tmux(&["capture-pane", "-p", "-t", &session.0]);

    // Orders flow while we watch.
    let feeding = {
        let http = stack.http.clone();
        let url = format!("{}/orders", stack.url(Service::Order)?);
        tokio::spawn(async move {
            loop {
                let _ = http
                    .post(&url)
                    .json(&json!({"items": [{"productId": "mouse-01", "quantity": 1}]}))
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let first = eventually(
        Duration::from_secs(60),
        "saga counts on the dashboard",
        || async {
            let text = pane()?;
            Ok(total(&text).filter(|n| *n > 0))
        },
    )
    .await?;
    let text = pane()?;
    for needle in [
        "sagas by state",
        "CONFIRMED",
        "orders/s",
        "services",
        "LIVE · refresh 500ms",
    ] {
        assert!(text.contains(needle), "missing {needle:?}:\n{text}");
    }
    eventually(Duration::from_secs(60), "the counts to change", || async {
        Ok(total(&pane()?).filter(|n| *n > first))
    })
    .await?;

    tmux(&["send-keys", "-t", &name, "?"])?;
    let help = eventually(Duration::from_secs(10), "the help overlay", || async {
        let text = pane()?;
        Ok(text.contains("keys (? or Esc closes)").then_some(text))
    })
    .await?;
    assert!(help.contains("freeze / resume updates"), "{help}");

    tmux(&["send-keys", "-t", &name, "Escape"])?;
    eventually(
        Duration::from_secs(10),
        "the help overlay to close",
        || async { Ok((!pane()?.contains("keys (? or Esc closes)")).then_some(())) },
    )
    .await?;

    // The raw JSON of the selected saga.
    tmux(&["send-keys", "-t", &name, "2"])?;
    eventually(Duration::from_secs(10), "the sagas view", || async {
        Ok(pane()?.contains("STATE").then_some(()))
    })
    .await?;
    tmux(&["send-keys", "-t", &name, "v"])?;
    let raw = eventually(Duration::from_secs(10), "the raw JSON view", || async {
        let text = pane()?;
        Ok(text.contains("raw JSON (y copies").then_some(text))
    })
    .await?;
    assert!(raw.contains("\"orderId\":"), "{raw}");
    tmux(&["send-keys", "-t", &name, "Escape"])?;
    // Until the overlay is gone: a key right after Escape can be read as Alt+key.
    eventually(
        Duration::from_secs(10),
        "the raw JSON view to close",
        || async { Ok((!pane()?.contains("raw JSON (y copies")).then_some(())) },
    )
    .await?;

    // A command: checked, asked, then run; "n" changes nothing, "y" does it.
    let knobs = || async { stack.read(routes::GET_GATEWAY_FAULTS, &[]).await };
    let before = knobs().await?;
    let command = |keys: &'static str| {
        let name = name.clone();
        async move {
            tmux(&["send-keys", "-t", &name, ":"])?;
            eventually(Duration::from_secs(10), "the command line", || async {
                let text = tmux(&["capture-pane", "-p", "-t", &name])?;
                Ok(text.lines().any(|l| l.starts_with(':')).then_some(()))
            })
            .await?;
            tmux(&["send-keys", "-t", &name, "-l", keys])?;
            tmux(&["send-keys", "-t", &name, "Enter"])?;
            eventually(Duration::from_secs(10), "the confirmation", || async {
                let text = tmux(&["capture-pane", "-p", "-t", &name])?;
                Ok(text.contains("y: yes").then_some(text))
            })
            .await
        }
    };
    let asked = command("chaos payment --error-rate 0.5").await?;
    assert!(
        asked.contains("Run `omsctl chaos payment --error-rate 0.5`?"),
        "{asked}"
    );
    tmux(&["send-keys", "-t", &name, "n"])?;
    eventually(Duration::from_secs(10), "the answer no", || async {
        Ok(pane()?.contains("nothing changed").then_some(()))
    })
    .await?;
    assert_eq!(knobs().await?, before, "a refused command ran");
    command("chaos payment --error-rate 0.5").await?;
    tmux(&["send-keys", "-t", &name, "y"])?;
    eventually(
        Duration::from_secs(30),
        "the knob set from the dashboard",
        || async { Ok((knobs().await?.error_rate == 0.5).then_some(())) },
    )
    .await?;
    command("chaos reset").await?;
    tmux(&["send-keys", "-t", &name, "y"])?;
    eventually(
        Duration::from_secs(30),
        "the knob reset from the dashboard",
        || async { Ok((knobs().await? == before).then_some(())) },
    )
    .await?;

    tmux(&["send-keys", "-t", &name, "q"])?;
    // The shell creates the file before it writes the code: wait for the code itself.
    let code = eventually(Duration::from_secs(10), "omsctl tui to exit", || async {
        Ok(std::fs::read_to_string(&exit_file)
            .ok()
            .filter(|text| !text.trim().is_empty()))
    })
    .await?;
    assert_eq!(code.trim(), "EXIT=0");
    let after = eventually(Duration::from_secs(10), "the shell to be back", || async {
        let text = pane()?;
        Ok(text.contains("the shell is back").then_some(text))
    })
    .await?;
    assert!(
        !after.contains("sagas by state"),
        "the dashboard is still on screen:\n{after}"
    );
    feeding.abort();
    drop(session);
    stack.shutdown().await
}
