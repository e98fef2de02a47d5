//! `omsctl version`: omsctl's, the services' and the cluster's versions.

use oms_ops::ctx::Ctx;
use oms_ops::render::{opt, table};
use oms_ops::Failure;

pub async fn run(ctx: &Ctx) -> Result<(), Failure> {
    let report = oms_ops::version::versions(ctx).await?;
    ctx.print(&report, || {
        let mut t = table(&["COMPONENT", "VERSION", "WHERE"]);
        t.add_row([
            "omsctl".to_owned(),
            report.omsctl.clone(),
            format!("librdkafka {}", report.librdkafka),
        ]);
        for s in &report.services {
            let version = match (&s.version, &s.error) {
                (Some(v), _) if *v != report.omsctl => format!("{v} (omsctl is {})", report.omsctl),
                (Some(v), _) => v.clone(),
                (None, e) => format!("? ({})", opt(e.as_ref())),
            };
            t.add_row([s.service.clone(), version, s.url.clone()]);
        }
        let b = &report.broker;
        let kafka = match (&b.kafka, &b.error) {
            (_, Some(e)) => format!("? ({e})"),
            (Some(v), None) => format!("Apache Kafka {v}"),
            (None, None) => "? (a remote cluster does not tell its release)".to_owned(),
        };
        let nodes: Vec<String> = b.nodes.iter().map(i32::to_string).collect();
        t.add_row([
            format!("kafka (nodes {})", nodes.join(",")),
            kafka,
            b.bootstrap.clone(),
        ]);
        t.to_string()
    })?;
    if report.complete() {
        Ok(())
    } else {
        let silent = report
            .services
            .iter()
            .filter(|s| s.version.is_none())
            .count();
        let broker = if report.broker.error.is_some() {
            "; the cluster did not answer"
        } else {
            ""
        };
        Err(Failure::verdict(format!(
            "{silent} of {} service replicas did not say their version{broker}",
            report.services.len()
        )))
    }
}
