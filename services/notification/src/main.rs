//! `oms-notification`: the notification service binary. Everything lives in the library.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let config = oms_notification::Config::parse();
    let (runtime, listen) = (config.runtime.clone(), config.listen.clone());
    oms_runtime::service::start(
        oms_contracts::ServiceId::Notification,
        &runtime,
        &listen,
        |listener, shutdown| oms_notification::run(config, listener, shutdown),
    )
}
