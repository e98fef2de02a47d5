//! `otlp-sink LISTEN`: an OTLP/HTTP trace receiver that counts what it gets (for
//! `scripts/bench.sh tracing`, where the services export to it as they would to Jaeger). Prints
//! the running count every 5 s; runs until killed.

use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4318".to_owned());
    let sink = oms_tests::otlp::OtlpSink::start(&listen, false).await?;
    println!("receiving OTLP/HTTP traces at {}", sink.endpoint());
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!("spans received: {}", sink.count());
    }
}
