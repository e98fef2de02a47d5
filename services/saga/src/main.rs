//! `oms-saga`: the saga orchestrator binary. Everything lives in the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = oms_saga::Config::parse();
    let (runtime, listen) = (config.runtime.clone(), config.listen.clone());
    oms_runtime::service::start(
        oms_contracts::ServiceId::Saga,
        &runtime,
        &listen,
        |listener, shutdown| oms_saga::run(config, listener, shutdown),
    )
}
