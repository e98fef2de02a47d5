//! `otlp-sink LISTEN`: an OTLP/HTTP trace receiver that counts what it gets (for
//! `scripts/bench.sh tracing`, where the services export to it as they would to Jaeger). Prints
//! the running count every 5 s, and the final count when stopped (SIGTERM or Ctrl-C).

use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4318".to_owned());
    let sink = oms_tests::otlp::OtlpSink::start(&listen, false).await?;
    println!("receiving OTLP/HTTP traces at {}", sink.endpoint());
    let mut term = signal(SignalKind::terminate())?;
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => println!("spans received: {}", sink.count()),
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("spans received: {}", sink.count());
    Ok(())
}
