//! Running a plan: steady state, setup, the load with the method's steps at their times,
//! waiting for every order, the checks, the rollbacks; then the verdict and the report.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use oms_contracts::api::{OrderStatus, OrderView};
use oms_contracts::routes;
use tokio::sync::Mutex;

use super::plan::{Plan, Probe};
use super::report::{Duplicates, Orders, Report};
use super::steps::{
    act_logged, dlq_total, now_text, probe, probe_logged, quiescent, record, say, Journal,
};
use super::verdict::{self, Observed};
use super::{failover, takeover};
use crate::ctx::Ctx;
use crate::render::opt;
use crate::{verify, Failure};

/// How long after `since` every order in `ids` was finished (with `settled`: delivered or
/// cancelled), polled every 250 ms for at most ten minutes.
async fn recovery(
    ctx: Arc<Ctx>,
    ids: Vec<String>,
    since: Instant,
    settled: bool,
) -> Option<Duration> {
    let mut open = ids;
    while since.elapsed() < Duration::from_secs(600) {
        let mut still = Vec::new();
        for id in open {
            match ctx.read_opt(routes::GET_ORDER, &[id.as_str()]).await {
                Ok(Some(o)) if is_finished(&o, settled) => {}
                _ => still.push(id),
            }
        }
        if still.is_empty() {
            return Some(since.elapsed());
        }
        open = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// Whether an order is finished: its placement's outcome, or with `settled` the end of its
/// life (delivered or cancelled).
fn is_finished(o: &OrderView, settled: bool) -> bool {
    if settled {
        o.status.is_final()
    } else {
        o.status != OrderStatus::Pending
    }
}

/// When the load and method ended, the steps that failed, the recovery watcher, the takeovers
/// of killed replicas and the failovers of lost broker nodes.
type MethodDone = (
    Instant,
    Vec<String>,
    tokio::task::JoinHandle<Option<Duration>>,
    Vec<takeover::Takeover>,
    Vec<failover::Failover>,
);

/// What the load did.
#[derive(Default)]
struct Placed {
    ids: Vec<String>,
    refused: BTreeMap<String, u64>,
    /// The answers to the customers' cancellations: `accepted`, `too late (409)`, or the error.
    cancels: BTreeMap<String, u64>,
}

async fn load(ctx: Arc<Ctx>, plan: Arc<Plan>, placed: Arc<Mutex<Placed>>) {
    let mut cancels = Vec::new();
    let mut orders = crate::place::place(&ctx, &plan.load, |accepted| async move { Ok(accepted) });
    while let Some(result) = orders.next().await {
        let mut p = placed.lock().await;
        match result {
            Ok(a) => {
                let id = a.order_id.to_string();
                if let Some(c) = plan.cancels.filter(|c| fastrand::f64() < c.share) {
                    let after = c.within.mul_f64(fastrand::f64());
                    cancels.push(tokio::spawn(cancel_later(
                        Arc::clone(&ctx),
                        id.clone(),
                        after,
                        Arc::clone(&placed),
                    )));
                }
                p.ids.push(id);
            }
            Err(why) => *p.refused.entry(why).or_default() += 1,
        }
    }
    drop(orders);
    for c in cancels {
        let _ = c.await;
    }
}

/// The customer cancels order `id` after `after`; the answer is counted.
async fn cancel_later(ctx: Arc<Ctx>, id: String, after: Duration, placed: Arc<Mutex<Placed>>) {
    tokio::time::sleep(after).await;
    let answer = ctx
        .call(routes::CANCEL_ORDER, crate::client::Request::to(&[&id]))
        .await;
    let kind = match answer {
        Ok(Ok(_)) => "accepted".to_owned(),
        Ok(Err(r)) if r.status == reqwest::StatusCode::CONFLICT => "too late (409)".to_owned(),
        Ok(Err(r)) => format!("error: {}", r.failure().error),
        Err(e) => format!("error: {}", e.error),
    };
    *placed.lock().await.cancels.entry(kind).or_default() += 1;
}

async fn rollback(ctx: &Ctx, plan: &Plan, journal: &Journal) {
    for a in &plan.rollback {
        if let Err(e) = act_logged(ctx, journal, "rollback", a).await {
            say(format!("rollback {} failed: {e}", a.describe()));
        }
    }
}

/// Runs `plan`; prints the report and writes it to `report` when given.
pub async fn execute(ctx: &Ctx, plan: Plan, report: Option<&Path>) -> Result<(), Failure> {
    let started_at = chrono::Utc::now();
    say(format!(
        "{}{}: {}",
        plan.name,
        if plan.short { " (short form)" } else { "" },
        plan.hypothesis
    ));
    let journal: Journal = Arc::default();
    let mut before = Vec::new();
    for (name, p) in &plan.steady_state {
        if let Err(e) = probe_logged(ctx, &journal, "steady-state-before", name, p).await {
            before.push(format!("{name}: {e}"));
        }
    }
    if !before.is_empty() {
        return Err(Failure::verdict(format!(
            "steady state not met before the drill: {}",
            before.join("; ")
        )));
    }
    let dlq_before = dlq_total(ctx).await.map_err(Failure::usage)?;

    let ctx_arc = Arc::new(ctx.clone());
    // The local stack, when the context is it: replica kills are watched there.
    let local = (ctx.context.target == crate::context::Target::Local)
        .then(|| crate::local::Local::open(&ctx.state_dir).ok())
        .flatten()
        .map(Arc::new);
    let plan = Arc::new(plan);
    let placed = Arc::new(Mutex::new(Placed::default()));
    let outcome: Result<MethodDone, Failure> = async {
        for a in &plan.setup {
            act_logged(ctx, &journal, "setup", a)
                .await
                .map_err(Failure::verdict)?;
        }
        say(format!("load: {}", plan.load_text));
        let load_task = tokio::spawn(load(
            Arc::clone(&ctx_arc),
            Arc::clone(&plan),
            Arc::clone(&placed),
        ));
        let t0 = Instant::now();
        let mut errors = Vec::new();
        let mut watches = Vec::new();
        let mut broker_watches = Vec::new();
        for (at, action) in &plan.method {
            tokio::select! {
                _ = tokio::time::sleep_until((t0 + *at).into()) => {}
                _ = tokio::signal::ctrl_c() => return Err(Failure::verdict("interrupted")),
            }
            // A step that kills one replica of the local stack: time the survivors' takeover.
            if let (Some(unit), Some(local)) = (takeover::victim(action), &local) {
                let before = takeover::before(ctx, local, unit).await;
                watches.push(tokio::spawn(takeover::watch(
                    Arc::clone(&ctx_arc),
                    Arc::clone(local),
                    before,
                )));
            }
            // A step that stops or kills a Kafka node: time the election of new leaders.
            if let (true, Some(local)) = (failover::hits_broker(action), &local) {
                if let Some(before) = failover::before(ctx, local).await {
                    broker_watches.push(tokio::spawn(failover::watch(
                        Arc::clone(&ctx_arc),
                        Arc::clone(local),
                        before,
                    )));
                }
            }
            if let Err(e) = act_logged(ctx, &journal, "method", action).await {
                say(format!("step failed: {e}"));
                errors.push(e);
            }
        }
        // Recovery is timed from here (the last fault undone): until every order accepted so
        // far has finished, measured while the load may still run.
        let faults_over = Instant::now();
        let backlog = placed.lock().await.ids.clone();
        let watcher = tokio::spawn(recovery(
            Arc::clone(&ctx_arc),
            backlog,
            faults_over,
            plan.expect.settled,
        ));
        tokio::select! {
            _ = load_task => {}
            _ = tokio::signal::ctrl_c() => return Err(Failure::verdict("interrupted")),
        }
        say("load and method done; waiting for every order to finish");
        let mut takeovers = Vec::new();
        for w in watches {
            if let Ok(t) = w.await {
                say(format!(
                    "takeover of {}: relay {}, group {}",
                    t.replica,
                    t.relay_text(),
                    t.group_text()
                ));
                takeovers.push(t);
            }
        }
        let mut failovers = Vec::new();
        for w in broker_watches {
            if let Ok(Some(f)) = w.await {
                say(format!(
                    "failover of {}: {} partition(s) it led had new leaders in {}",
                    f.node,
                    f.led_before,
                    f.election_text()
                ));
                failovers.push(f);
            }
        }
        Ok((Instant::now(), errors, watcher, takeovers, failovers))
    }
    .await;

    let (method_done, step_errors, watcher, takeovers, mut failovers) = match outcome {
        Ok(o) => o,
        Err(e) => {
            rollback(ctx, &plan, &journal).await;
            return Err(e);
        }
    };

    let (ids, refused, cancel_answers) = {
        let p = placed.lock().await;
        (p.ids.clone(), p.refused.clone(), p.cancels.clone())
    };
    let done = |o: &OrderView| is_finished(o, plan.expect.settled);
    let end = method_done + plan.expect.deadline;
    let mut finished: BTreeMap<String, OrderView> = BTreeMap::new();
    let mut recovered_at: Option<Instant> = None;
    loop {
        let open: Vec<String> = ids
            .iter()
            .filter(|id| !finished.contains_key(*id))
            .cloned()
            .collect();
        for id in &open {
            if let Ok(Some(o)) = ctx.read_opt(routes::GET_ORDER, &[id.as_str()]).await {
                if done(&o) {
                    finished.insert(id.clone(), o);
                }
            }
        }
        if finished.len() == ids.len() {
            recovered_at = Some(Instant::now());
            break;
        }
        if Instant::now() > end {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let lost: Vec<String> = ids
        .iter()
        .filter(|id| !finished.contains_key(*id))
        .cloned()
        .collect();
    let finished_orders: Vec<OrderView> = finished.values().cloned().collect();
    for f in &mut failovers {
        f.measure(&finished_orders);
    }
    let mut confirmed = 0u64;
    let mut delivered = 0u64;
    let mut cancelled: BTreeMap<String, u64> = BTreeMap::new();
    for o in finished.values() {
        if o.status.is_placed() {
            confirmed += 1;
            delivered += u64::from(o.status == OrderStatus::Delivered);
        } else {
            *cancelled.entry(opt(o.cancel_reason.as_ref())).or_default() += 1;
        }
    }
    let mut after = Vec::new();
    for (name, p) in &plan.steady_state {
        // The steady state must come back; give it until the deadline.
        let start = now_text();
        let mut last = Err(String::new());
        while Instant::now() <= end + Duration::from_secs(5) {
            last = probe(ctx, p).await;
            if last.is_ok() || matches!(p, Probe::DlqEmpty) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        record(
            &journal,
            "steady-state-after",
            name.clone(),
            start,
            &last,
            Vec::new(),
        );
        if let Err(e) = last {
            after.push(format!("{name}: {e}"));
        }
    }
    // Let every consumer and outbox drain (a late charge and its refund, say) before judging.
    let quiet_by = Instant::now().max(end) + Duration::from_secs(5);
    loop {
        let drained = quiescent(ctx).await;
        if drained.is_ok() || Instant::now() > quiet_by {
            if let Err(e) = drained {
                say(format!("not quiescent by the deadline: {e}"));
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let dlq_new = dlq_total(ctx).await.map_err(Failure::usage)? - dlq_before;
    let since = (chrono::Utc::now() - started_at)
        .to_std()
        .unwrap_or_default()
        + Duration::from_secs(5);
    let inv = verify::evaluate(
        ctx,
        &verify::VerifyArgs {
            since: Some(since),
            deadline: Duration::from_secs(3600),
            settle: Duration::ZERO,
        },
    )
    .await?;
    let failed_checks: Vec<String> = inv
        .failed()
        .map(|c| {
            let first: Vec<&str> = c.failures.iter().take(3).map(String::as_str).collect();
            format!("{}: {}", c.id.title(), first.join("; "))
        })
        .collect();
    let charged_unconfirmed = inv
        .check(verify::CheckId::NoChargeWithoutOrder)
        .map_or(0, |c| c.failures.len());
    // The watcher gives up at the same deadline; without it, fall back to the final wait.
    let recover_secs = match watcher.await {
        Ok(Some(d)) => Some(d.as_secs_f64()),
        _ => recovered_at.map(|t| t.saturating_duration_since(method_done).as_secs_f64()),
    };

    let why = verdict::reasons(
        &plan.expect,
        &Observed {
            lost: lost.len() as u64,
            confirmed,
            refused: refused.values().sum(),
            cancelled: cancelled.clone(),
            dlq_new,
            failed_checks: failed_checks.clone(),
            steady_state_not_back: after,
            step_errors: step_errors
                .into_iter()
                .chain(
                    cancel_answers
                        .iter()
                        .filter(|(k, _)| k.starts_with("error"))
                        .map(|(k, n)| format!("{n} cancellation(s) failed: {k}")),
                )
                .collect(),
            no_takeover: takeovers
                .iter()
                .filter(|t| !t.healed())
                .map(|t| {
                    format!(
                        "{}: relay {}, group {}",
                        t.replica,
                        t.relay_text(),
                        t.group_text()
                    )
                })
                .chain(
                    failovers
                        .iter()
                        .filter(|f| !f.elected())
                        .map(|f| format!("{}: no new leader for what it led", f.node)),
                )
                .collect(),
        },
    );
    // Rollbacks always run, after the verification (they may restore what the drill measured).
    rollback(ctx, &plan, &journal).await;
    let affected: Vec<String> = lost
        .iter()
        .cloned()
        .chain(
            finished
                .iter()
                .filter(|(_, o)| o.status == OrderStatus::Cancelled)
                .map(|(id, _)| id.clone()),
        )
        .take(50)
        .collect();
    let r = Report {
        drill: plan.name.clone(),
        short: plan.short,
        hypothesis: plan.hypothesis.clone(),
        held: why.is_empty(),
        why,
        started_at: started_at.to_rfc3339(),
        orders: Orders {
            created: ids.len(),
            refused,
            confirmed,
            delivered,
            cancelled,
            lost: lost.len(),
            cancel_requests: cancel_answers,
        },
        charged_without_confirmed_order: charged_unconfirmed,
        duplicates: Duplicates {
            double_charges: charged_unconfirmed,
            note: "one payment per order by key; a second charge would show as a payment without a confirmed order".to_owned(),
        },
        dlq_new,
        invariants: inv.view(),
        time_to_recover_seconds: recover_secs,
        lost_orders: lost,
        affected_orders: affected,
        takeovers,
        failovers,
        failed_checks,
        journal: journal.lock().unwrap_or_else(|p| p.into_inner()).clone(),
    };
    let doc = serde_json::to_value(&r)?;
    if let Some(path) = report {
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .map_err(|e| Failure::usage(format!("writing {}: {e}", path.display())))?;
    }
    ctx.print(&doc, || r.table())?;
    if r.held {
        Ok(())
    } else {
        Err(Failure::verdict(format!(
            "drill {} failed: {}",
            r.drill,
            r.why.join("; ")
        )))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::steps::p99_of;
    use super::*;

    /// An order view created and (when `completed` is given) confirmed at those times.
    pub(crate) fn order(created: &str, completed: Option<&str>) -> OrderView {
        serde_json::from_value(serde_json::json!({
            "orderId": "0190aaaa-0000-7000-8000-000000000001", "customerId": "c-1",
            "status": if completed.is_some() { "CONFIRMED" } else { "PENDING" },
            "items": [{"productId": "mouse-01", "quantity": 1}],
            "createdAt": created, "updatedAt": created, "completedAt": completed,
            "lines": null, "total": null, "paymentId": null, "cancelReason": null, "cancelDetail": null,
        }))
        .expect("an order view")
    }

    #[test]
    fn p99_looks_at_orders_finished_in_the_window_only() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:30Z")
            .expect("time")
            .to_utc();
        let orders = vec![
            order("2026-12-01T10:00:20Z", Some("2026-12-01T10:00:20.100Z")),
            order("2026-12-01T10:00:21Z", Some("2026-12-01T10:00:23Z")),
            // Finished before the window: not counted, however slow.
            order("2026-12-01T09:00:00Z", Some("2026-12-01T10:00:10Z")),
            order("2026-12-01T10:00:25Z", None),
        ];
        assert_eq!(
            p99_of(&orders, now, Duration::from_secs(10)),
            Some((2000.0, 2))
        );
        assert_eq!(p99_of(&orders[2..], now, Duration::from_secs(10)), None);
    }
}
