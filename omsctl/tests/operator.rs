//! The operator's commands (produce, consumer groups, output formats) as a user runs them,
//! against the six services running in-process on the test PostgreSQL and broker.

use std::process::Output;
use std::time::Duration;

use assert_cmd::Command;
use oms_contracts::api::{OrderStatus, OrderView, SagaAction, SagaState, SagaView};
use oms_contracts::routes;
use oms_ops::dlq::audit::{AuditRecord, Phase, Replay, ReplayState};
use oms_ops::dlq::edit::Change;
use oms_ops::dlq::entry::EntryView;
use oms_ops::dlq::predict::{Outcome, Prediction};
use oms_ops::dlq::replay::PlanReport;
use oms_ops::groups::{GroupDetail, PartitionLag, ResetReport};
use oms_ops::produce::Produced;
use oms_ops::tail::TailLine;
use oms_ops::topics::{TopicDetail, TopicRow};
use oms_tests::eventually;
use oms_tests::stack::{Service, Stack, StackOptions};
use serde_json::json;

mod common;
use common::{code, json_of, run, run_with_input, stderr, stdout};

fn omsctl(stack: &Stack) -> anyhow::Result<Command> {
    common::omsctl(Some(stack))
}

/// The end offsets of a topic, from `topics list`.
async fn ends(stack: &Stack, topic: &str) -> anyhow::Result<Vec<i64>> {
    let out = run(omsctl(stack)?, &["topics", "list", "-o", "json"]).await?;
    let name = format!("{}{topic}", stack.topics().prefix());
    let rows: Vec<TopicRow> = json_of(&out)?;
    rows.into_iter()
        .find(|t| t.topic == name)
        .map(|t| t.end_offsets)
        .ok_or_else(|| anyhow::anyhow!("topics list has no {name}"))
}

/// Tailed lines of one order's messages on `topic`, as `tail -o json` writes them.
async fn tailed(stack: &Stack, topic: &str, key: &str) -> anyhow::Result<Vec<TailLine>> {
    tailed_text(stack, topic, key)
        .await?
        .iter()
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

/// The same lines as text, as a user pipes them into `produce`.
async fn tailed_text(stack: &Stack, topic: &str, key: &str) -> anyhow::Result<Vec<String>> {
    let out = run(
        omsctl(stack)?,
        &[
            "tail",
            topic,
            "--from",
            "beginning",
            "--exit",
            "--key",
            key,
            "-o",
            "json",
        ],
    )
    .await?;
    anyhow::ensure!(code(&out) == 0, "tail: {}", stderr(&out));
    Ok(stdout(&out).lines().map(str::to_owned).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tailed_messages_produce_back_and_bad_input_sends_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let id = stack
        .place(json!({"items": [{"productId": "stand-01", "quantity": 1}]}))
        .await?;
    let done = stack.finished(&id, Duration::from_secs(60)).await?;
    assert!(done.status.is_placed(), "{done:?}");
    let topic = "oms.payment.commands";
    // The lines go to `produce` as `tail` printed them; they are read as `TailLine`s to compare.
    let lines = tailed_text(&stack, topic, &id).await?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = lines[0].clone();
    let before: TailLine = serde_json::from_str(&line)?;

    // A message of another topic's type, a broken line: refused with the line number, and
    // nothing of the input is sent (the good first line neither).
    let events = tailed_text(&stack, "oms.order.events", &id).await?;
    let misplaced = events[0].clone();
    let ends_before = ends(&stack, topic).await?;
    for (input, says) in [
        (
            format!("{line}\n{misplaced}\n"),
            "stdin:2: invalid message: a order.created belongs on oms.order.events",
        ),
        (
            format!("{line}\n{{\"vale\":1}}\n"),
            "stdin:2: unknown field \"vale\"",
        ),
        ("\n".to_owned(), "no messages"),
    ] {
        let out =
            run_with_input(omsctl(&stack)?, &["produce", topic, "--validate"], &input).await?;
        assert_eq!(code(&out), 2, "{input}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{says}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
    let out = run_with_input(
        omsctl(&stack)?,
        &["produce", "oms.nope", "--validate"],
        &line,
    )
    .await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("oms.nope"), "{}", stderr(&out));
    let out = run_with_input(
        omsctl(&stack)?,
        &["produce", topic, "--validate", "--dry-run"],
        &line,
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing sent"), "{}", stdout(&out));
    assert_eq!(
        ends(&stack, topic).await?,
        ends_before,
        "refused input was sent"
    );

    // The tailed line goes back byte for byte: same key, headers and value, at a new offset.
    let out = run_with_input(
        omsctl(&stack)?,
        &["produce", topic, "--validate", "-o", "json"],
        &format!("{line}\n"),
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let produced: Vec<Produced> = json_of(&out)?;
    let [one] = produced.as_slice() else {
        panic!("one message produced: {produced:?}");
    };
    let at = one.at.clone();
    let prefixed = format!("{}{topic}", stack.topics().prefix());
    assert!(at.starts_with(&format!("{prefixed}/")), "{produced:?}");
    assert_eq!(
        at,
        format!("{}/{}@{}", one.topic, one.partition, one.offset),
        "{produced:?}"
    );
    let after = tailed(&stack, topic, &id).await?;
    assert_eq!(after.len(), 2, "{after:?}");
    let (sent, again) = (&before, &after[1]);
    assert_eq!(
        (&again.key, &again.key_hex, &again.headers),
        (&sent.key, &sent.key_hex, &sent.headers),
        "key and headers"
    );
    assert_eq!(
        (&again.value, &again.value_hex),
        (&sent.value, &sent.value_hex),
        "value"
    );
    assert_eq!(
        format!("{}/{}@{}", again.topic, again.partition, again.offset),
        at
    );
    // The payment service takes the duplicate command as one it has handled: nothing changes.
    let out = run(omsctl(&stack)?, &["verify", "-o", "json"]).await?;
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let order = stack.read(routes::GET_ORDER, &[&id]).await?;
    assert!(order.status.is_placed(), "{order:?}");

    // -o ids: one id per line; -o yaml: the same document as YAML.
    let out = run(omsctl(&stack)?, &["order", "list", "-o", "ids"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), vec![id.as_str()]);
    let out = run(omsctl(&stack)?, &["order", "get", &id, "-o", "yaml"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let yaml: OrderView = serde_norway::from_slice(&out.stdout)?;
    assert_eq!(yaml.order_id.to_string(), id, "{}", stdout(&out));
    assert!(yaml.status.is_placed(), "{yaml:?}");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn groups_show_lag_and_a_reset_plans_first_and_moves_only_an_idle_group() -> anyhow::Result<()>
{
    let mut stack = Stack::start(StackOptions::default()).await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            stack
                .place(json!({"items": [{"productId": "stand-01", "quantity": 1}]}))
                .await?,
        );
    }
    for id in &ids {
        let done = stack.finished(id, Duration::from_secs(60)).await?;
        assert!(done.status.is_placed(), "{done:?}");
    }
    let group = format!("{}oms-payment", stack.topics().prefix());
    let commands = format!("{}oms.payment.commands", stack.topics().prefix());

    let out = run(omsctl(&stack)?, &["groups", "list", "-o", "json"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let listed: Vec<oms_ops::groups::GroupRow> = json_of(&out)?;
    let row = listed
        .iter()
        .find(|g| g.group == group)
        .ok_or_else(|| anyhow::anyhow!("groups list has no {group}: {listed:?}"))?;
    assert_eq!(row.members, 1, "{listed:?}");

    // Every command handled and committed: no lag, the partitions held by the one member.
    let described = eventually(
        Duration::from_secs(30),
        "payment's offsets committed",
        || async {
            let out = run(
                omsctl(&stack)?,
                &["groups", "describe", &group, "-o", "json"],
            )
            .await?;
            let d: GroupDetail = json_of(&out)?;
            Ok((d.lag == 0).then_some(d))
        },
    )
    .await?;
    let parts: Vec<&PartitionLag> = described
        .partitions
        .iter()
        .filter(|p| p.topic == commands)
        .collect();
    let total: i64 = parts.iter().map(|p| p.end).sum();
    assert_eq!(total, 3, "{described:?}");
    let busy = parts
        .iter()
        .find(|p| p.end > 0)
        .copied()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no partition of {commands} holds a command"))?;
    assert_eq!(busy.committed, Some(busy.end), "{described:?}");

    // The contract name works too: the prefix is added to an OMS group's name.
    let out = run(
        omsctl(&stack)?,
        &["groups", "describe", "oms-payment", "-o", "json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json_of::<GroupDetail>(&out)?.group, group);
    let out = run(omsctl(&stack)?, &["groups", "describe", "no-such-group"]).await?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no consumer group"),
        "{}",
        stderr(&out)
    );

    // A live group: the plan is printed, executing it is refused.
    let shift = [
        "groups",
        "reset-offsets",
        &group,
        "--topic",
        "oms.payment.commands",
        "--shift-by",
        "-1",
    ];
    let out = run(omsctl(&stack)?, &[&shift[..], &["--execute"]].concat()).await?;
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stderr(&out).contains("live member"), "{}", stderr(&out));

    stack.stop_service(Service::Payment).await?;
    let idle = eventually(
        Duration::from_secs(60),
        "the payment group to empty",
        || async {
            let out = run(
                omsctl(&stack)?,
                &["groups", "describe", &group, "-o", "json"],
            )
            .await?;
            let d: GroupDetail = json_of(&out)?;
            Ok(d.members.is_empty().then_some(d))
        },
    )
    .await?;
    // From a script without --yes: the plan, then a refusal naming --yes; nothing changes.
    let out = run(omsctl(&stack)?, &[&shift[..], &["-o", "json"]].concat()).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert!(!json_of::<ResetReport>(&out)?.executed);
    // --dry-run: the plan, and nothing changes.
    let out = run(
        omsctl(&stack)?,
        &[&shift[..], &["--dry-run", "-o", "json"]].concat(),
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: ResetReport = json_of(&out)?;
    assert!(!plan.executed, "{plan:?}");
    let moved = plan
        .plan
        .iter()
        .find(|m| m.partition == busy.partition)
        .ok_or_else(|| anyhow::anyhow!("partition {} not in the plan", busy.partition))?;
    assert_eq!(moved.current, Some(busy.end), "{plan:?}");
    assert_eq!(moved.target, busy.end - 1, "{plan:?}");
    assert_eq!(moved.lag_after, 1, "{plan:?}");
    let out = run(
        omsctl(&stack)?,
        &["groups", "describe", &group, "-o", "json"],
    )
    .await?;
    assert_eq!(
        json_of::<GroupDetail>(&out)?.partitions,
        idle.partitions,
        "a plan changed offsets"
    );
    let out = run(
        omsctl(&stack)?,
        &[&shift[..], &["--to-offset", "1"]].concat(),
    )
    .await?;
    assert_eq!(
        code(&out),
        2,
        "two targets must be refused: {}",
        stdout(&out)
    );

    // Executed: the group starts one message back; the restarted payment service handles it
    // again, as the duplicate it is, and nothing else changes.
    let out = run(omsctl(&stack)?, &[&shift[..], &["--yes"]].concat()).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("committed"), "{}", stdout(&out));
    let out = run(
        omsctl(&stack)?,
        &["groups", "describe", &group, "-o", "json"],
    )
    .await?;
    let d: GroupDetail = json_of(&out)?;
    let reset = d
        .partitions
        .iter()
        .find(|p| p.topic == commands && p.partition == busy.partition)
        .ok_or_else(|| anyhow::anyhow!("{commands}/{} not described", busy.partition))?;
    assert_eq!(reset.lag, 1, "{d:?}");
    stack.start_service(Service::Payment).await?;
    payment_caught_up(&stack, "payment to catch up again").await?;
    let out = run(omsctl(&stack)?, &["verify"]).await?;
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    for id in &ids {
        let order = stack.read(routes::GET_ORDER, &[id]).await?;
        assert!(order.status.is_placed(), "{order:?}");
    }
    stack.shutdown().await
}

/// Waits until the payment service's group has handled every payment command.
async fn payment_caught_up(stack: &Stack, what: &str) -> anyhow::Result<()> {
    let group = format!("{}oms-payment", stack.topics().prefix());
    eventually(Duration::from_secs(60), what, || async {
        let out = run(
            omsctl(stack)?,
            &["groups", "describe", &group, "-o", "json"],
        )
        .await?;
        Ok((json_of::<GroupDetail>(&out)?.lag == 0).then_some(()))
    })
    .await
}

/// The dead letters of `orders`' payment commands, by order id.
async fn dead_letters(stack: &Stack, n: usize) -> anyhow::Result<Vec<EntryView>> {
    eventually(
        Duration::from_secs(90),
        "the authorizes to be dead-lettered",
        || async {
            let out = run(omsctl(stack)?, &["dlq", "list", "-o", "json"]).await?;
            let list: Vec<EntryView> = json_of(&out)?;
            Ok((list.len() >= n).then_some(list))
        },
    )
    .await
}

/// The replays of `dlq audit -o json`.
async fn audit(stack: &Stack) -> anyhow::Result<Vec<Replay>> {
    let out = run(omsctl(stack)?, &["dlq", "audit", "-o", "json"]).await?;
    json_of(&out)
}

/// The prediction of the first entry of a `dlq replay --dry-run -o json` plan.
fn first_prediction(out: &Output) -> anyhow::Result<Prediction> {
    let report: PlanReport = json_of(out)?;
    report
        .plan
        .first()
        .and_then(|row| row.prediction.clone())
        .ok_or_else(|| anyhow::anyhow!("no prediction in the plan: {report:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_repaired_checked_recorded_and_a_cut_short_replay_resumes(
) -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        payment_timeout: Duration::from_secs(600),
        ..StackOptions::default()
    })
    .await?;
    stack.set_gateway_faults(json!({"errorRate": 1.0})).await?;
    let mut orders = Vec::new();
    for token in ["tok_visa", "tok_visa", "tok_visa", "tok_amex"] {
        orders.push(
            stack
                .place(json!({"items": [{"productId": "stand-01", "quantity": 1}], "paymentToken": token}))
                .await?,
        );
    }
    let entries = dead_letters(&stack, 4).await?;
    stack.set_gateway_faults(json!({})).await?;
    let entry_of = |order: &str| -> String {
        entries
            .iter()
            .find(|e| e.key.as_deref() == Some(order))
            .map(|e| e.id.clone())
            .unwrap_or_default()
    };
    let (declined, edited, resumed) = (&orders[0], &orders[1], &orders[2]);
    // Payload filters pick dead letters by what their envelope says.
    for (condition, n) in [
        ("payload.paymentToken=tok_visa", 3),
        ("payload.paymentToken=tok_amex", 1),
        ("payload.paymentToken=tok_mastercard", 0),
        ("payload.amount.amountMinor>0", 4),
    ] {
        let out = run(
            omsctl(&stack)?,
            &["dlq", "list", "--where", condition, "-o", "ids"],
        )
        .await?;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(
            stdout(&out).lines().count(),
            n,
            "{condition}: {}",
            stdout(&out)
        );
    }
    let dir = tempfile::tempdir()?;

    // A patch that breaks the contract is refused, and nothing is sent or audited.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, r#"{"payload": {"amount": "lots"}}"#)?;
    let wrong_type = dir.path().join("wrong-type.json");
    std::fs::write(&wrong_type, r#"{"type": "order.cancelled"}"#)?;
    let declined_entry = entry_of(declined);
    for (target, patch, says) in [
        (declined_entry.as_str(), &broken, "breaks the contract"),
        (declined_entry.as_str(), &wrong_type, "breaks the contract"),
        ("--all", &broken, "one entry at a time"),
    ] {
        let patch = patch.to_str().unwrap_or_default();
        let out = run(
            omsctl(&stack)?,
            &["dlq", "replay", target, "--patch", patch, "--yes"],
        )
        .await?;
        assert_eq!(code(&out), 2, "{target} {patch}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(says),
            "{target} {patch}: {}",
            stderr(&out)
        );
    }
    let a = audit(&stack).await?;
    assert!(a.is_empty(), "a refused edit was audited: {a:?}");

    // A good patch: the dry run shows the change and sends nothing; the replay sends the
    // edited command, which the gateway now declines, and the audit records the change.
    let decline = dir.path().join("decline.json");
    std::fs::write(
        &decline,
        r#"{"payload": {"paymentToken": "tok_chargeDeclined"}}"#,
    )?;
    let patch = [
        "dlq",
        "replay",
        &entry_of(declined),
        "--patch",
        decline.to_str().unwrap_or_default(),
    ];
    let out = run(omsctl(&stack)?, &[&patch[..], &["--dry-run"]].concat()).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains(r#"/payload/paymentToken: "tok_visa" -> "tok_chargeDeclined""#),
        "{}",
        stdout(&out)
    );
    let a = audit(&stack).await?;
    assert!(a.is_empty(), "a dry run was audited: {a:?}");
    let out = run(omsctl(&stack)?, &[&patch[..], &["--yes"]].concat()).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = stack.finished(declined, Duration::from_secs(60)).await?;
    assert_eq!(done.status, OrderStatus::Cancelled, "{done:?}");
    assert_eq!(
        done.cancel_reason.as_deref(),
        Some("PAYMENT_DECLINED"),
        "{done:?}"
    );
    let a = audit(&stack).await?;
    let first = a
        .first()
        .ok_or_else(|| anyhow::anyhow!("nothing audited"))?;
    assert_eq!(first.state, ReplayState::Finished, "{a:?}");
    assert_eq!(
        first.edits.get(&entry_of(declined)).map(|e| &e.changes[..]),
        Some(
            &[Change::Changed {
                path: "/payload/paymentToken".into(),
                from: json!("tok_visa"),
                to: json!("tok_chargeDeclined"),
            }][..]
        ),
        "{a:?}"
    );

    // --edit runs $EDITOR on the value (here a sed script, as a user's editor would save).
    let mut cmd = omsctl(&stack)?;
    cmd.env("EDITOR", "sed -i s/tok_visa/tok_mastercard/")
        .env_remove("VISUAL");
    let out = run(
        cmd,
        &[
            "dlq",
            "replay",
            &entry_of(edited),
            "--edit",
            "--yes",
            "-o",
            "json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = stack.finished(edited, Duration::from_secs(60)).await?;
    assert!(done.status.is_placed(), "{done:?}");
    let shown = tailed(&stack, "oms.payment.commands", edited).await?;
    let replayed = shown.last();
    assert!(
        replayed
            .and_then(|r| r.value.as_deref())
            .is_some_and(|v| v.contains("tok_mastercard")),
        "{replayed:?}"
    );
    // Sent again, it is a duplicate: predicted, and then the payment service changes nothing.
    let again = ["dlq", "replay", &entry_of(edited), "--force"];
    let out = run(
        omsctl(&stack)?,
        &[&again[..], &["--dry-run", "-o", "json"]].concat(),
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let predicted = first_prediction(&out)?;
    assert_eq!(predicted.outcome, Outcome::Duplicate, "{predicted:?}");
    let answers_before = tailed(&stack, "oms.payment.events", edited).await?.len();
    let out = run(omsctl(&stack)?, &[&again[..], &["--yes"]].concat()).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    payment_caught_up(&stack, "payment to take the duplicate").await?;
    assert_eq!(
        tailed(&stack, "oms.payment.events", edited).await?.len(),
        answers_before,
        "a duplicate was answered"
    );
    // An editor that fails sends nothing; the file it was given was its owner's alone.
    let mut cmd = omsctl(&stack)?;
    cmd.env("EDITOR", r#"sh -c 'stat -c "mode %a" "$0" >&2; exit 1'"#)
        .env_remove("VISUAL");
    let out = run(
        cmd,
        &[
            "dlq",
            "replay",
            &entry_of(edited),
            "--edit",
            "--force",
            "--yes",
        ],
    )
    .await?;
    assert_eq!(code(&out), 1, "a failed editor must send nothing");
    assert!(stderr(&out).contains("nothing sent"), "{}", stderr(&out));
    assert!(stderr(&out).contains("mode 600"), "{}", stderr(&out));

    // A replay cut short: its started record is in the audit, nothing was sent. It is partial,
    // the entry is not counted as replayed, and --resume sends it under the same audit.
    let cut = "0199aaaa-0000-7000-8000-000000000001";
    let target = format!("{}oms.payment.commands", stack.topics().prefix());
    let started = AuditRecord {
        audit_id: cut.to_owned(),
        who: "crashed@host".to_owned(),
        force: false,
        phase: Phase::Started {
            at: "2026-12-01T10:00:00Z".to_owned(),
            entries: vec![entry_of(resumed)],
            targets: [(entry_of(resumed), target)].into(),
            edits: Default::default(),
        },
    };
    let line =
        json!({"key": cut, "headers": [], "value": serde_json::to_string(&started)?}).to_string();
    let out = run_with_input(omsctl(&stack)?, &["produce", "oms.dlq.audit"], &line).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let a = audit(&stack).await?;
    let partial = a
        .iter()
        .find(|r| r.audit_id == cut)
        .ok_or_else(|| anyhow::anyhow!("no replay {cut} in the audit: {a:?}"))?;
    assert_eq!(partial.state, ReplayState::Partial, "{a:?}");
    let out = run(omsctl(&stack)?, &["dlq", "list", "-o", "json"]).await?;
    let listed: Vec<EntryView> = json_of(&out)?;
    let row = listed
        .iter()
        .find(|e| e.key.as_deref() == Some(resumed.as_str()))
        .ok_or_else(|| anyhow::anyhow!("no dead letter of {resumed}: {listed:?}"))?;
    assert!(
        !row.replayed,
        "started but never sent counts as replayed: {row:?}"
    );
    // The dry run predicts what the resume does: the saga waits in AUTHORIZING, no payment
    // yet, so the authorize is handled and the order confirmed.
    let out = run(
        omsctl(&stack)?,
        &["dlq", "replay", "--resume", cut, "--dry-run", "-o", "json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let predicted = first_prediction(&out)?;
    assert_eq!(predicted.outcome, Outcome::Handled, "{predicted:?}");
    assert!(
        predicted.detail.contains("AUTHORIZING -> CONFIRMED"),
        "{predicted:?}"
    );
    let out = run(
        omsctl(&stack)?,
        &["dlq", "replay", "--resume", cut, "--yes"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = stack.finished(resumed, Duration::from_secs(60)).await?;
    assert!(done.status.is_placed(), "{done:?}");
    let a = audit(&stack).await?;
    let finished = a
        .iter()
        .find(|r| r.audit_id == cut)
        .ok_or_else(|| anyhow::anyhow!("no replay {cut} in the audit: {a:?}"))?;
    assert_eq!(finished.state, ReplayState::Finished, "{a:?}");
    assert_eq!(finished.sent.len(), 1, "{finished:?}");
    let out = run(
        omsctl(&stack)?,
        &["dlq", "replay", "--resume", cut, "--yes"],
    )
    .await?;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing to resume"),
        "{}",
        stderr(&out)
    );

    // The budget holds even with --force; --to must name a topic that exists.
    let again = ["dlq", "replay", &entry_of(resumed), "--yes", "--force"];
    let out = run(omsctl(&stack)?, &[&again[..], &["--budget", "1"]].concat()).await?;
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("replay budget of 1 spent"),
        "{}",
        stderr(&out)
    );
    let out = run(
        omsctl(&stack)?,
        &[&again[..], &["--to", "oms.nope"]].concat(),
    )
    .await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("oms.nope"), "{}", stderr(&out));

    // An order an operator cancelled while its authorize sat in the DLQ: the payment is voided,
    // so the replay is predicted to be ignored, and then nothing is charged.
    let voided = &orders[3];
    let out = run(
        omsctl(&stack)?,
        &[
            "saga",
            "cancel",
            voided,
            "--reason",
            "no longer wanted",
            "-y",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let done = stack.finished(voided, Duration::from_secs(60)).await?;
    assert_eq!(
        done.cancel_reason.as_deref(),
        Some("OPERATOR_CANCELLED"),
        "{done:?}"
    );
    // The order's payment, none while the payment service has none.
    let payment = || async {
        let answer = stack
            .answer(routes::GET_PAYMENT, &[voided], &(), None)
            .await?;
        anyhow::Ok(answer.body.ok())
    };
    let before = eventually(Duration::from_secs(60), "the payment voided", || async {
        Ok(payment().await?.filter(|p| p.status != "AUTHORIZED"))
    })
    .await?;
    let replay_voided = ["dlq", "replay", &entry_of(voided)];
    let out = run(
        omsctl(&stack)?,
        &[&replay_voided[..], &["--dry-run", "-o", "json"]].concat(),
    )
    .await?;
    let predicted = first_prediction(&out)?;
    assert_eq!(predicted.outcome, Outcome::Ignored, "{predicted:?}");
    let answers_before = tailed(&stack, "oms.payment.events", voided).await?.len();
    let out = run(omsctl(&stack)?, &[&replay_voided[..], &["--yes"]].concat()).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    payment_caught_up(&stack, "payment to take the replay").await?;
    assert_eq!(payment().await?, Some(before), "the voided payment changed");
    assert_eq!(
        tailed(&stack, "oms.payment.events", voided).await?.len(),
        answers_before,
        "the ignored replay was answered"
    );

    let out = run(omsctl(&stack)?, &["verify"]).await?;
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sagas_are_retried_and_cancelled_from_the_command_line() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions::default()).await?;
    stack.stop_service(Service::Payment).await?;
    let id = stack
        .place(json!({"items": [{"productId": "stand-01", "quantity": 1}]}))
        .await?;
    eventually(
        Duration::from_secs(60),
        "the saga to be AUTHORIZING",
        || async {
            let saga = stack.read(routes::GET_SAGA, &[&id]).await?;
            Ok((saga.state == SagaState::Authorizing).then_some(()))
        },
    )
    .await?;
    // From a script a retry needs --yes; --dry-run shows the saga and sends nothing.
    let steps = || async {
        let saga = stack.read(routes::GET_SAGA, &[&id]).await?;
        anyhow::Ok(saga.steps.map_or(0, |s| s.len()))
    };
    let before = steps().await?;
    let out = run(omsctl(&stack)?, &["saga", "retry", &id]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = run(omsctl(&stack)?, &["saga", "retry", &id, "--dry-run"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("would retry"), "{}", stdout(&out));
    assert_eq!(steps().await?, before, "a dry run retried");
    let out = run(
        omsctl(&stack)?,
        &["saga", "retry", &id, "--yes", "-o", "json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let retried: SagaAction = json_of(&out)?;
    assert_eq!(retried.sent, ["payment.authorize"], "{retried:?}");
    for (args, want, says) in [
        (vec!["saga", "cancel", &id, "--reason", " "], 2, "--reason"),
        (
            vec!["saga", "cancel", "nope", "--reason", "x"],
            2,
            "invalid order id",
        ),
        (
            vec!["saga", "retry", "0199aaaa-0000-7000-8000-000000000001"],
            1,
            "no saga",
        ),
    ] {
        let out = run(omsctl(&stack)?, &args).await?;
        assert_eq!(code(&out), want, "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let cancel = [
        "saga",
        "cancel",
        &id,
        "--reason",
        "duplicate order",
        "--yes",
    ];
    let out = run(omsctl(&stack)?, &cancel).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("done"), "{}", stdout(&out));
    let done = stack.finished(&id, Duration::from_secs(60)).await?;
    assert_eq!(
        done.cancel_reason.as_deref(),
        Some("OPERATOR_CANCELLED"),
        "{done:?}"
    );
    // Idempotent: asked again, nothing changes.
    let out = run(omsctl(&stack)?, &cancel).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("no change"), "{}", stdout(&out));
    // Finished: nothing to retry.
    let out = run(omsctl(&stack)?, &["saga", "retry", &id, "--yes"]).await?;
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    let out = run(omsctl(&stack)?, &["saga", "show", &id, "-o", "json"]).await?;
    let saga: SagaView = json_of(&out)?;
    let inputs: Vec<&str> = saga
        .steps
        .iter()
        .flatten()
        .map(|s| s.input.as_str())
        .collect();
    assert!(inputs.contains(&"operator.retry"), "{inputs:?}");
    assert!(inputs.contains(&"operator.cancel"), "{inputs:?}");
    stack.start_service(Service::Payment).await?;
    stack.shutdown().await
}

/// `tail oms.order.events --from beginning --exit EXTRA…`.
async fn tail_of(stack: &Stack, extra: &[&str]) -> anyhow::Result<Output> {
    let mut args = vec!["tail", "oms.order.events", "--from", "beginning", "--exit"];
    args.extend_from_slice(extra);
    run(omsctl(stack)?, &args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tail_filters_on_payload_fields_partitions_and_an_end() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let mut confirmed = Vec::new();
    for _ in 0..2 {
        confirmed.push(
            stack
                .place(json!({"items": [{"productId": "stand-01", "quantity": 1}]}))
                .await?,
        );
    }
    let declined = stack
        .place(json!({"items": [{"productId": "stand-01", "quantity": 1}], "paymentToken": "tok_chargeDeclined"}))
        .await?;
    for id in confirmed.iter().chain([&declined]) {
        stack.finished(id, Duration::from_secs(60)).await?;
    }
    let lines = |out: &Output| -> anyhow::Result<Vec<TailLine>> {
        stdout(out)
            .lines()
            .map(|l| Ok(serde_json::from_str(l)?))
            .collect()
    };
    let out = tail_of(
        &stack,
        &["--where", "payload.reason=PAYMENT_DECLINED", "-o", "json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let got = lines(&out)?;
    assert_eq!(got.len(), 1, "{}", stdout(&out));
    assert_eq!(got[0].key.as_deref(), Some(declined.as_str()));
    let out = tail_of(
        &stack,
        &[
            "--where",
            "payload.total.amountMinor>=1",
            "--where",
            "type=order.confirmed",
            "-o",
            "json",
        ],
    )
    .await?;
    let keys: std::collections::BTreeSet<String> =
        lines(&out)?.into_iter().filter_map(|l| l.key).collect();
    assert_eq!(
        keys,
        confirmed.iter().cloned().collect(),
        "{}",
        stdout(&out)
    );

    // An end offset: the first message of each partition only.
    let out = tail_of(&stack, &["--until", "1", "-o", "ids"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let ids: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|c| c.ends_with("@0")),
        "{ids:?}"
    );
    // One partition: only its messages.
    let partition = ids[0]
        .rsplit_once('/')
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(p, _)| p.to_owned())
        .unwrap_or_default();
    let out = tail_of(&stack, &["--partition", &partition, "-o", "ids"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out)
            .lines()
            .all(|c| c.contains(&format!("/{partition}@"))),
        "{}",
        stdout(&out)
    );
    // The shorthands are conditions of the same language: --key is --where key=…, --type is
    // --where type=…, and the record's own fields (partition, offset) are fields too.
    let ids_of = |out: &Output| -> Vec<String> { stdout(out).lines().map(str::to_owned).collect() };
    let by_flags = tail_of(
        &stack,
        &["--key", &declined, "--type", "order.cancelled", "-o", "ids"],
    )
    .await?;
    let by_where = tail_of(
        &stack,
        &[
            "--where",
            &format!("key={declined}"),
            "--where",
            "type=order.cancelled",
            "-o",
            "ids",
        ],
    )
    .await?;
    assert_eq!(ids_of(&by_flags).len(), 1, "{}", stdout(&by_flags));
    assert_eq!(ids_of(&by_flags), ids_of(&by_where));
    let out = tail_of(
        &stack,
        &[
            "--where",
            &format!("partition={partition}"),
            "--where",
            "offset=0",
            "-o",
            "ids",
        ],
    )
    .await?;
    let first: Vec<String> = ids
        .iter()
        .filter(|i| i.ends_with(&format!("/{partition}@0")))
        .cloned()
        .collect();
    assert_eq!(first.len(), 1, "{ids:?}");
    assert_eq!(ids_of(&out), first, "{}", stdout(&out));
    // --format: one kcat-style line per message.
    let out = tail_of(&stack, &["--key", &declined, "--format", "%p@%o %k %y\\n"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let formatted: Vec<&str> = text.lines().collect();
    assert!(!formatted.is_empty(), "{}", stdout(&out));
    for line in &formatted {
        let (coords, rest) = line.split_once(' ').unwrap_or_default();
        assert!(coords.contains('@'), "{line}");
        assert!(rest.starts_with(&format!("{declined} order.")), "{line}");
    }
    // A time before every message: nothing.
    let out = tail_of(&stack, &["--until", "@-1h"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    for (bad, says) in [
        (vec!["--partition", "99"], "no partition 99"),
        (vec!["--where", "payload.reason"], "--where"),
        (vec!["--until", "soon"], "--until"),
        (vec!["--format", "%q"], "--format"),
        (vec!["--header", "novalue"], "--header"),
    ] {
        let out = tail_of(&stack, &bad).await?;
        assert_eq!(code(&out), 2, "{bad:?}");
        assert!(stderr(&out).contains(says), "{bad:?}: {}", stderr(&out));
    }
    stack.shutdown().await
}

/// Topics of your own: made with their configs, described, planned and then deleted; the OMS's
/// own topics refused both ways. And `omsctl version` names every service's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn own_topics_are_made_and_deleted_and_every_service_says_its_version() -> anyhow::Result<()>
{
    let stack = Stack::start(StackOptions::default()).await?;
    // As the user types it; the stack's prefix is added, as to every topic name.
    let name = "exports".to_owned();
    let out = run(
        omsctl(&stack)?,
        &[
            "topic",
            "create",
            &name,
            "--partitions",
            "2",
            "--topic-config",
            "retention.ms=3600000",
            "-o",
            "json",
        ],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let made: oms_ops::topics::Created = json_of(&out)?;
    let deployed = format!("{}exports", stack.prefix);
    assert_eq!(
        (made.topic.as_str(), made.partitions),
        (deployed.as_str(), 2)
    );
    let out = run(omsctl(&stack)?, &["topic", "describe", &name, "-o", "json"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let detail: TopicDetail = json_of(&out)?;
    assert_eq!(detail.partitions.len(), 2, "{detail:?}");
    assert_eq!(
        detail.configs.get("retention.ms").map(String::as_str),
        Some("3600000"),
        "{detail:?}"
    );
    // Twice: refused, naming it.
    let out = run(omsctl(&stack)?, &["topic", "create", &name]).await?;
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("exists already"), "{}", stderr(&out));
    // The OMS's own topics are not a user's to make or delete.
    for args in [
        vec!["topic", "create", "oms.order.events"],
        vec!["topic", "delete", "oms.order.events", "--yes"],
        vec!["topic", "create", "bad name"],
    ] {
        let out = run(omsctl(&stack)?, &args).await?;
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
    // Delete: the plan from a script without --yes is refused; --dry-run keeps it; --yes deletes.
    let out = run(omsctl(&stack)?, &["topic", "delete", &name]).await?;
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    let out = run(
        omsctl(&stack)?,
        &["topic", "delete", &name, "--dry-run", "-o", "json"],
    )
    .await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: oms_ops::topics::Deleted = json_of(&out)?;
    assert!(!plan.deleted && plan.partitions == 2, "{plan:?}");
    let out = run(omsctl(&stack)?, &["topic", "delete", &name, "--yes"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    eventually(Duration::from_secs(30), "the topic to be gone", || async {
        let out = run(omsctl(&stack)?, &["topic", "describe", &name]).await?;
        Ok((code(&out) == 2).then_some(()))
    })
    .await?;

    let out = run(omsctl(&stack)?, &["version", "-o", "json"]).await?;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report: oms_ops::version::VersionReport = json_of(&out)?;
    let names: Vec<&str> = report.services.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        names.len(),
        oms_contracts::topology::SERVICES.len(),
        "{report:?}"
    );
    assert!(
        report
            .services
            .iter()
            .all(|s| s.version.as_deref() == Some(report.omsctl.as_str())),
        "{report:?}"
    );
    assert!(!report.broker.nodes.is_empty(), "{report:?}");
    stack.shutdown().await
}

/// What the shell gets when it asks omsctl to complete `words` (fish's protocol: one per line).
fn completions(words: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut cmd = Command::cargo_bin("omsctl")?;
    cmd.env("COMPLETE", "fish")
        .env("OMS_TOPIC_PREFIX", "x.")
        .arg("--")
        .arg("omsctl")
        .args(words);
    let out = cmd.output()?;
    anyhow::ensure!(out.status.success(), "{}", stderr(&out));
    Ok(stdout(&out)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
        .collect())
}

#[test]
fn the_shell_completes_topics_groups_drills_components_and_states() -> anyhow::Result<()> {
    let topics = completions(&["tail", ""])?;
    assert!(
        topics.contains(&"x.oms.payment.commands.dlq".to_owned()),
        "{topics:?}"
    );
    assert!(topics.contains(&"all".to_owned()), "{topics:?}");
    assert!(completions(&["groups", "describe", ""])?.contains(&"x.oms-payment".to_owned()));
    assert!(completions(&["drill", "run", ""])?.contains(&"broker-outage".to_owned()));
    assert!(completions(&["stack", "stop", ""])?.contains(&"broker".to_owned()));
    assert!(completions(&["saga", "list", "--state", ""])?.contains(&"AUTHORIZING".to_owned()));
    assert!(completions(&["order", "list", "--status", ""])?.contains(&"CANCELLED".to_owned()));
    assert!(completions(&["groups", "res"])?.contains(&"reset-offsets".to_owned()));
    let out = Command::cargo_bin("omsctl")?
        .args(["completions", "zsh"])
        .output()?;
    assert!(out.status.success());
    assert!(stdout(&out).contains("COMPLETE"), "{}", stdout(&out));
    let out = Command::cargo_bin("omsctl")?
        .args(["completions", "tcsh"])
        .output()?;
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("no completions for \"tcsh\""),
        "{}",
        stderr(&out)
    );
    Ok(())
}
