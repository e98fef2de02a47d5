//! `omsctl tail` throughput: prints figures, asserts nothing (these machines are shared and noisy).
//!
//! 50,000 envelopes on one 3-partition topic, read from the beginning to the end by
//! (1) a bare rdkafka reader that only counts bytes (the baseline: what the broker and librdkafka
//! can deliver here), (2) `omsctl tail --exit -o json` (NDJSON), (3) `omsctl tail --exit` (lines)
//! and (4) `omsctl tail --exit --type …` (decoding and filtering, printing nothing), all to
//! /dev/null; best of two runs each after a warm-up pass. Needs the stack and a release omsctl:
//! `scripts/bench.sh tail`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oms_contracts::messages::{CancelReason, OrderCancelled};
use oms_contracts::{Envelope, OrderId};
use oms_tests::{brokers, fresh_topic, producer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const MESSAGES: usize = 50_000;

fn bare_read(brokers: &str, topic: &str) -> anyhow::Result<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-bare")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))?;
    }
    consumer.assign(&tpl)?;
    let mut seen = 0;
    let mut bytes = 0usize;
    while seen < MESSAGES {
        match consumer.poll(Duration::from_secs(5)) {
            Some(m) => {
                let m = m?;
                bytes += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len);
                seen += 1;
            }
            None => anyhow::bail!("bare reader stalled at {seen}"),
        }
    }
    Ok(bytes)
}

fn omsctl(brokers: &str, topic: &str, extra: &[&str]) -> anyhow::Result<f64> {
    let bin = std::env::var("OMS_OMSCTL_BIN").unwrap_or_else(|_| "target/release/omsctl".into());
    let t = Instant::now();
    let status = Command::new(bin)
        .args([
            "--brokers",
            brokers,
            "tail",
            topic,
            "--from",
            "beginning",
            "--exit",
        ])
        .args(extra)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "omsctl tail failed: {status}");
    Ok(t.elapsed().as_secs_f64())
}

async fn fill(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let producer = producer(brokers)?;
    let mut pending = Vec::new();
    for i in 0..MESSAGES {
        let order = OrderId::new();
        let env = Envelope::new(
            OrderCancelled {
                order_id: order,
                reason: CancelReason::Timeout,
                detail: Some(format!("bench {i}")),
                customer_id: None,
            },
            "bench",
            order.0,
        );
        let producer = producer.clone();
        let topic = topic.to_owned();
        pending.push(async move {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&env.key())
                        .payload(&env.encode()),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| anyhow::anyhow!("{e}"))
        });
        if pending.len() == 1000 {
            futures::future::try_join_all(pending.drain(..)).await?;
        }
    }
    futures::future::try_join_all(pending).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = brokers();
    let topic = fresh_topic(&brokers, "tail-bench", 3).await?;
    fill(&brokers, &topic).await?;

    let bare_once = || {
        let b = brokers.clone();
        let tp = topic.clone();
        async move {
            let t = Instant::now();
            tokio::task::spawn_blocking(move || bare_read(&b, &tp)).await??;
            anyhow::Ok(t.elapsed().as_secs_f64())
        }
    };
    bare_once().await?;
    let bare = bare_once().await?.min(bare_once().await?);

    println!("tail: {MESSAGES} envelopes, one topic, 3 partitions, beginning to end, output to /dev/null");
    println!(
        "{:<48} {:>8} {:>12} {:>9}",
        "reader", "seconds", "messages/s", "vs bare"
    );
    println!(
        "{:<48} {bare:>8.2} {:>12.0} {:>9}",
        "bare rdkafka reader (baseline)",
        MESSAGES as f64 / bare,
        "1.00x"
    );
    for (name, extra) in [
        ("omsctl tail -o json (NDJSON, decoded)", vec!["-o", "json"]),
        ("omsctl tail (one line each, decoded)", vec![]),
        (
            "omsctl tail --type payment.declined (filter)",
            vec!["--type", "payment.declined"],
        ),
    ] {
        let best = omsctl(&brokers, &topic, &extra)?.min(omsctl(&brokers, &topic, &extra)?);
        println!(
            "{name:<48} {best:>8.2} {:>12.0} {:>8.2}x",
            MESSAGES as f64 / best,
            bare / best
        );
    }
    Ok(())
}
