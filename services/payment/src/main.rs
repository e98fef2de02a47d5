//! `oms-payment`: the payment service binary. Everything lives in the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = oms_payment::Config::parse();
    let (runtime, listen) = (config.runtime.clone(), config.listen.clone());
    oms_runtime::service::start(
        oms_contracts::ServiceId::Payment,
        &runtime,
        &listen,
        |listener, shutdown| oms_payment::run(config, listener, shutdown),
    )
}
