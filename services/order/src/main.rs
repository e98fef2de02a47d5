//! `oms-order`: the order service binary. Everything lives in the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = oms_order::Config::parse();
    let (runtime, listen) = (config.runtime.clone(), config.listen.clone());
    oms_runtime::service::start(
        oms_contracts::ServiceId::Order,
        &runtime,
        &listen,
        |listener, shutdown| oms_order::run(config, listener, shutdown),
    )
}
