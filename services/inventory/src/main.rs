//! `oms-inventory`: the inventory service binary. Everything lives in the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = oms_inventory::Config::parse();
    let (runtime, listen) = (config.runtime.clone(), config.listen.clone());
    oms_runtime::service::start(
        oms_contracts::ServiceId::Inventory,
        &runtime,
        &listen,
        |listener, shutdown| oms_inventory::run(config, listener, shutdown),
    )
}
