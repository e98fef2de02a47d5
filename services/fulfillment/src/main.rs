//! `oms-fulfillment`: the fulfillment service binary. Everything lives in the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = oms_fulfillment::Config::parse();
    let (runtime, listen) = (config.runtime.clone(), config.listen.clone());
    oms_runtime::service::start(
        oms_contracts::ServiceId::Fulfillment,
        &runtime,
        &listen,
        |listener, shutdown| oms_fulfillment::run(config, listener, shutdown),
    )
}
