//! `omsctl bench`: the load generator (open or closed loop) and its report.

use oms_ops::bench::{self, BenchArgs, Pictures};
use oms_ops::ctx::Ctx;
use oms_ops::Failure;

pub async fn run(ctx: &Ctx, args: BenchArgs) -> Result<(), Failure> {
    // --plot and --hdr-log: their files are created now, not after a long run.
    let pictures = Pictures::open(&args)?;
    let run = match bench::measure(ctx, &args).await {
        Ok(run) => run,
        Err(e) => {
            pictures.discard();
            return Err(e);
        }
    };
    let report = &run.report;
    ctx.print(report, || report.table())?;
    // A run that fails its verdict is drawn all the same: that is when the pictures help.
    pictures.write(&run)?;
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
