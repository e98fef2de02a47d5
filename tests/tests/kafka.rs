//! What we ship, as other tools and attackers meet it: the saga over SASL_SSL with a SCRAM user
//! and only the topology's ACLs per service, a service's user refused where the topology gives it
//! no right, and the OMS topics read by standard tools (kcat, Kafka's own console consumer), on a
//! plain and on a secured Apache Kafka.

use std::process::Command;
use std::time::Duration;

use oms_contracts::api::{CreateOrder, OrderStatus, RequestedLine};
use oms_contracts::values::ShippingAddress;
use oms_contracts::{Envelope, Topics};
use oms_kafka::node::security::{Plan, OPERATOR};
use oms_tests::stack::{Stack, StackOptions};
use oms_tests::{unique, TestBroker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Deserialize;

const DELIVERED: Duration = Duration::from_secs(120);

fn order(customer: &str) -> CreateOrder {
    CreateOrder {
        customer_id: Some(customer.into()),
        items: vec![RequestedLine {
            product_id: "mouse-01".into(),
            quantity: 1,
        }],
        payment_token: Some("tok_visa".into()),
        shipping_address: Some(ShippingAddress {
            line1: "Hauptstraße 1".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
        }),
    }
}

/// One message as `kcat -J` prints it (the members read here).
#[derive(Debug, Deserialize)]
struct KcatLine {
    key: Option<String>,
    payload: Option<String>,
    /// Name, value, name, value...
    #[serde(default)]
    headers: Vec<Option<String>>,
}

fn config(brokers: &str, props: &oms_kafka::Properties) -> ClientConfig {
    let mut c = oms_kafka::client_config(brokers, props);
    c.set("message.timeout.ms", "15000");
    c
}

/// What producing one record as `props`'s user to `topic` gives: Ok, or the broker's refusal.
async fn produce_as(
    brokers: &str,
    props: &oms_kafka::Properties,
    topic: &str,
) -> anyhow::Result<Result<(), RDKafkaErrorCode>> {
    let producer: FutureProducer = config(brokers, props).create()?;
    let sent = producer
        .send(
            FutureRecord::to(topic).key("k").payload("{}"),
            Duration::from_secs(15),
        )
        .await;
    Ok(match sent {
        Ok(_) => Ok(()),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((e, _)) => anyhow::bail!("producing to {topic}: {e}"),
    })
}

/// The first error a consumer of `group` on `topic` meets as `props`'s user (None: it read
/// without one for 10 s).
async fn consume_error(
    brokers: &str,
    props: &oms_kafka::Properties,
    group: &str,
    topic: &str,
) -> anyhow::Result<Option<RDKafkaErrorCode>> {
    let consumer: BaseConsumer = config(brokers, props)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(Err(e)) = consumer.poll(Duration::from_millis(200)) {
                return e.rdkafka_error_code();
            }
        }
        None
    })
    .await
    .map_err(Into::into)
}

/// `kcat` reading `topic` from the beginning to its end, as JSON lines (`-J`), with `extra`
/// arguments (`-F users/omsctl.properties` on a secured broker).
fn kcat(brokers: &str, topic: &str, extra: &[&str]) -> anyhow::Result<Vec<KcatLine>> {
    // Bounded: kcat waits for ever for a broker that never answers.
    let out = Command::new("timeout")
        .args([
            "120",
            "kcat",
            "-C",
            "-b",
            brokers,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-J",
        ])
        .args(extra)
        .output()
        .map_err(|e| anyhow::anyhow!("running kcat under timeout: {e}"))?;
    anyhow::ensure!(
        out.status.code() != Some(127),
        "kcat is not installed (scripts/deps.sh --test installs it)"
    );
    anyhow::ensure!(
        out.status.success(),
        "kcat failed ({}): {}",
        if out.status.code() == Some(124) {
            "no answer within 120 s"
        } else {
            "exit"
        },
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(Into::into))
        .collect()
}

/// Kafka's own console consumer (from the same jars as the broker) reading `count` messages of
/// `topic` from the beginning, keys printed; `config` is a Java client properties file.
fn console_consumer(
    brokers: &str,
    topic: &str,
    count: usize,
    config: Option<&std::path::Path>,
) -> anyhow::Result<Vec<String>> {
    let install = oms_kafka::node::Install::locate()?;
    let mut c = install.java_command_with(
        &["-Dlog4j2.level=WARN".to_owned()],
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
    );
    c.args(["--bootstrap-server", brokers, "--topic", topic])
        .args(["--from-beginning", "--max-messages", &count.to_string()])
        .args(["--timeout-ms", "60000", "--property", "print.key=true"])
        .args(["--property", "key.separator=|"]);
    if let Some(config) = config {
        c.arg("--consumer.config").arg(config);
    }
    let out = c.output()?;
    anyhow::ensure!(
        out.status.success(),
        "the console consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains('|'))
        .map(str::to_owned)
        .collect())
}

/// The type of the envelope a tool printed (what is wrong with it when it is none).
fn type_of(value: &str) -> String {
    match Envelope::decode(value.as_bytes()) {
        Ok(envelope) => envelope.message_type().as_str().to_owned(),
        Err(e) => format!("not an envelope: {e}"),
    }
}

/// The order's events as a standard tool read them: each line's key is the order id and its
/// value an envelope of the order.
fn check_order_events(order_id: &str, keys_and_types: &[(String, String)]) {
    let types: Vec<&str> = keys_and_types
        .iter()
        .filter(|(k, _)| k == order_id)
        .map(|(_, t)| t.as_str())
        .collect();
    for wanted in ["order.created", "order.confirmed", "order.delivered"] {
        assert!(types.contains(&wanted), "{wanted} not read: {types:?}");
    }
}

fn kcat_keys_and_types(lines: &[KcatLine]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| {
            (
                l.key.clone().unwrap_or_default(),
                type_of(l.payload.as_deref().unwrap_or_default()),
            )
        })
        .collect()
}

fn console_keys_and_types(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| l.split_once('|'))
        .map(|(k, v)| (k.to_owned(), type_of(v)))
        .collect()
}

/// Every header kcat shows of a message: `-J` lists them as name, value, name, value...
fn kcat_header_names(line: &KcatLine) -> Vec<String> {
    line.headers.iter().step_by(2).flatten().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_tools_read_the_oms_topics() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let id = stack.place(order("kcat-reader")).await?;
    let done = stack.settled(&id, DELIVERED).await?;
    assert_eq!(done.status, OrderStatus::Delivered, "{done:?}");
    let topic = stack.topics().name(oms_contracts::topics::ORDER_EVENTS);

    let lines = kcat(stack.brokers(), &topic, &[])?;
    check_order_events(&id, &kcat_keys_and_types(&lines));
    let created = lines
        .iter()
        .find(|l| l.key.as_deref() == Some(id.as_str()))
        .ok_or_else(|| anyhow::anyhow!("no message of {id} in {lines:?}"))?;
    let headers = kcat_header_names(created);
    for h in [
        oms_contracts::headers::MESSAGE_TYPE,
        oms_contracts::headers::MESSAGE_ID,
        oms_contracts::headers::CORRELATION_ID,
        oms_contracts::headers::TRACEPARENT,
    ] {
        assert!(headers.iter().any(|n| n == h), "no {h} header: {headers:?}");
    }

    let read = console_consumer(stack.brokers(), &topic, lines.len(), None)?;
    assert_eq!(read.len(), lines.len(), "{read:?}");
    check_order_events(&id, &console_keys_and_types(&read));
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_saga_runs_over_sasl_ssl_with_each_service_held_to_its_acls() -> anyhow::Result<()> {
    let broker = TestBroker::start_secure().await?;
    let brokers = broker.brokers();
    let prefix = format!("s{}.", unique());
    let topics = Topics::new(&prefix);

    // The broker holds exactly the topology's ACLs for these topics.
    let mut granted = broker.grant(&topics).await?;
    let mut planned: Vec<String> = Plan::for_topology(&topics)
        .acls
        .iter()
        .map(|a| a.line())
        .collect();
    granted.sort();
    planned.sort();
    assert_eq!(granted, planned);

    // Nobody gets in without a user, or with a wrong password.
    let plain = oms_kafka::Properties::new();
    let b = brokers.clone();
    let refused = tokio::task::spawn_blocking(move || {
        oms_kafka::node::brokers_answering(&b, &plain, Duration::from_secs(5))
    })
    .await?;
    assert!(refused.is_err(), "a PLAINTEXT client was answered");
    let mut wrong = broker.client_properties("oms-order")?;
    wrong.set("sasl.password", "not-the-password")?;
    let b = brokers.clone();
    let refused = tokio::task::spawn_blocking(move || {
        oms_kafka::node::brokers_answering(&b, &wrong, Duration::from_secs(5))
    })
    .await?;
    assert!(refused.is_err(), "a wrong password was let in");

    // The whole saga, each service as its own user.
    let stack = Stack::start(StackOptions {
        brokers: Some(brokers.clone()),
        kafka_security: Some(broker.security()),
        prefix: Some(prefix.clone()),
        ..StackOptions::default()
    })
    .await?;
    let id = stack.place(order("secure-customer")).await?;
    let done = stack.settled(&id, DELIVERED).await?;
    assert_eq!(
        done.status,
        OrderStatus::Delivered,
        "over SASL_SSL: {done:?}"
    );

    // A service writes what it emits and nothing else, and joins only its own group.
    let payment_events = topics.name(oms_contracts::topics::PAYMENT_EVENTS);
    let notification = broker.client_properties("oms-notification")?;
    let payment = broker.client_properties("oms-payment")?;
    assert_eq!(
        produce_as(&brokers, &notification, &payment_events).await?,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed),
        "the notification service forged a payment event"
    );
    assert_eq!(
        produce_as(&brokers, &payment, &payment_events).await?,
        Ok(()),
        "the payment service may write its own events"
    );
    let payment_commands = topics.name(oms_contracts::topics::PAYMENT_COMMANDS);
    assert_eq!(
        consume_error(
            &brokers,
            &payment,
            &topics.name("oms-saga"),
            &payment_commands
        )
        .await?,
        Some(RDKafkaErrorCode::GroupAuthorizationFailed),
        "the payment service joined the saga's group"
    );
    assert_eq!(
        consume_error(
            &brokers,
            &notification,
            &topics.name("oms-notification"),
            &payment_commands
        )
        .await?,
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "the notification service read payment commands"
    );

    // The operator reads everything with standard tools, over SASL_SSL.
    let security = broker.security();
    let operator_file = security.user_file(OPERATOR);
    let topic = topics.name(oms_contracts::topics::ORDER_EVENTS);
    let f = operator_file.display().to_string();
    let lines = kcat(&brokers, &topic, &["-F", &f])?;
    check_order_events(&id, &kcat_keys_and_types(&lines));
    let read = console_consumer(
        &brokers,
        &topic,
        lines.len(),
        Some(&security.jvm_user_file(OPERATOR)),
    )?;
    check_order_events(&id, &console_keys_and_types(&read));
    stack.shutdown().await
}

/// A stack on the shared test broker deletes its topics when it ends, so a whole test run does
/// not pile thousands of partitions (a file each) onto one broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_on_the_shared_broker_takes_its_topics_with_it() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let brokers = stack.brokers().to_owned();
    let mine = stack.topics().all_with_dlq();
    let held = |brokers: String, mine: Vec<String>| {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()?;
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
        anyhow::Ok(
            metadata
                .topics()
                .iter()
                .filter(|t| mine.iter().any(|m| m == t.name()))
                .count(),
        )
    };
    let before = tokio::task::spawn_blocking({
        let (b, m) = (brokers.clone(), mine.clone());
        move || held(b, m)
    })
    .await??;
    assert_eq!(before, mine.len(), "the stack's topics were not all made");
    stack.shutdown().await?;
    oms_tests::eventually(Duration::from_secs(30), "the stack's topics to go", || {
        let (b, m) = (brokers.clone(), mine.clone());
        async move {
            let left = tokio::task::spawn_blocking(move || held(b, m)).await??;
            Ok((left == 0).then_some(()))
        }
    })
    .await
}
