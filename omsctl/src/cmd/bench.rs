//! `omsctl bench`: the load generator (open or closed loop) and its report.

use oms_ops::bench::{self, BenchArgs};
use oms_ops::ctx::Ctx;
use oms_ops::Failure;

pub async fn run(ctx: &Ctx, args: BenchArgs) -> Result<(), Failure> {
    let report = bench::measure(ctx, &args).await?;
    ctx.print(&report, || report.table())?;
    let refused: u64 = report.refused.values().sum();
    let (unfinished, undelivered) = (report.unfinished, report.undelivered);
    if unfinished > 0 || refused > 0 || undelivered > 0 {
        return Err(Failure::verdict(format!(
            "{unfinished} accepted order(s) without an outcome and {undelivered} confirmed \
             order(s) not delivered after {}, {refused} refused",
            humantime::format_duration(args.timeout)
        )));
    }
    Ok(())
}
