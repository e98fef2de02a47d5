//! `oms-order`: the order service binary. Everything lives in the library.

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = oms_order::Config::parse();
    oms_runtime::telemetry::init(config.runtime.log_format, &config.runtime.log_filter);
    let shutdown = CancellationToken::new();
    oms_runtime::shutdown::cancel_on_signal(shutdown.clone());
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    oms_order::run(config, listener, shutdown)
        .await
        .context("order service stopped")
}
