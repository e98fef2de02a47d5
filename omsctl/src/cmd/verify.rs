//! `omsctl verify`: the invariants, each printed with PASS or FAIL and counts; exit 1 when any
//! fails.

use oms_ops::ctx::Ctx;
use oms_ops::render::table;
use oms_ops::verify::{evaluate, Outcome, VerifyArgs};
use oms_ops::Failure;

pub async fn run(ctx: &Ctx, args: VerifyArgs) -> Result<(), Failure> {
    let report = evaluate(ctx, &args).await?;
    let failed = report.failed().count();
    ctx.print(&report.view(), || {
        let mut t = table(&["CHECK", "RESULT", "CHECKED", "DETAIL"]);
        for c in &report.checks {
            let detail = match c.outcome() {
                Outcome::Info => c.info.clone().unwrap_or_default(),
                Outcome::Fail => {
                    let mut shown: Vec<String> = c.failures.iter().take(5).cloned().collect();
                    if c.failures.len() > 5 {
                        shown.push(format!("… and {} more", c.failures.len() - 5));
                    }
                    shown.join("\n")
                }
                Outcome::Pass => String::new(),
            };
            let result = match c.outcome() {
                Outcome::Pass => "PASS",
                Outcome::Fail => "FAIL",
                Outcome::Info => "INFO",
            };
            t.add_row([
                c.id.title().to_owned(),
                result.to_owned(),
                c.checked.to_string(),
                detail,
            ]);
        }
        format!(
            "{t}\n{} orders checked; {failed} check(s) failed",
            report.orders
        )
    })?;
    if failed > 0 {
        return Err(Failure::verdict(format!(
            "{failed} invariant check(s) failed"
        )));
    }
    Ok(())
}
