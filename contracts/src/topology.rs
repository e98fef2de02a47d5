//! The system's structure in one table: every service with its default port, its consumer group,
//! the message types it handles and emits, and from those the topics it reads and writes; and how a
//! deployment spells topic names (`Topics`, the prefix).
//!
//! The runtime, the services, omsctl and the test stack all read [`SERVICES`]; adding a service is
//! one entry here plus its crate (docs/architecture.md has the checklist).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::messages::MessageType;
use crate::topics;

/// A service of the OMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceId {
    /// Accepts orders, owns their status.
    Order,
    /// Authorizes and refunds payments through a simulated gateway.
    Payment,
    /// Owns the catalog's stock and reservations.
    Inventory,
    /// Tells customers what became of their orders.
    Notification,
    /// Orchestrates the order saga.
    Saga,
    /// Ships confirmed orders through a simulated carrier.
    Fulfillment,
}

/// One row of the topology table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Which service.
    pub id: ServiceId,
    /// Its name: binary `oms-NAME`, database `NAME`, variables `OMS_NAME_*`.
    pub name: &'static str,
    /// Default HTTP port on the local stack (the listen address is `127.0.0.1:PORT`).
    pub port: u16,
    /// Consumer group, before the deployment's prefix.
    pub group: &'static str,
    /// Message types its consumer acts on (it skips every other type on the topics it reads).
    pub handles: &'static [MessageType],
    /// Message types it publishes through its outbox.
    pub emits: &'static [MessageType],
}

use MessageType as M;

/// Every service, in the local stack's start order (the saga's participants before the
/// orchestrator, so its first commands find them consuming).
pub const SERVICES: &[ServiceSpec] = &[
    ServiceSpec {
        id: ServiceId::Inventory,
        name: "inventory",
        port: 8083,
        group: "oms-inventory",
        handles: &[
            M::InventoryReserve,
            M::InventoryRelease,
            M::OrderConfirmed,
            M::FulfillmentPicked,
        ],
        emits: &[
            M::InventoryReserved,
            M::InventoryRejected,
            M::InventoryReleased,
        ],
    },
    ServiceSpec {
        id: ServiceId::Payment,
        name: "payment",
        port: 8082,
        group: "oms-payment",
        handles: &[M::PaymentAuthorize, M::PaymentRefund],
        emits: &[M::PaymentAuthorized, M::PaymentDeclined, M::PaymentRefunded],
    },
    ServiceSpec {
        id: ServiceId::Fulfillment,
        name: "fulfillment",
        port: 8086,
        group: "oms-fulfillment",
        handles: &[M::FulfillmentShip, M::FulfillmentCancel],
        emits: &[
            M::FulfillmentPicked,
            M::FulfillmentShipped,
            M::FulfillmentDelivered,
            M::FulfillmentFailed,
            M::FulfillmentCancelled,
        ],
    },
    ServiceSpec {
        id: ServiceId::Order,
        name: "order",
        port: 8081,
        group: "oms-order",
        handles: &[
            M::OrderConfirmed,
            M::OrderShipped,
            M::OrderDelivered,
            M::OrderCancelled,
            M::FulfillmentPicked,
        ],
        emits: &[M::OrderCreated, M::OrderCancelRequested],
    },
    ServiceSpec {
        id: ServiceId::Saga,
        name: "saga",
        port: 8085,
        group: "oms-saga",
        handles: &[
            M::OrderCreated,
            M::InventoryReserved,
            M::InventoryRejected,
            M::InventoryReleased,
            M::PaymentAuthorized,
            M::PaymentDeclined,
            M::PaymentRefunded,
            M::OrderCancelRequested,
            M::FulfillmentPicked,
            M::FulfillmentShipped,
            M::FulfillmentDelivered,
            M::FulfillmentFailed,
            M::FulfillmentCancelled,
        ],
        emits: &[
            M::InventoryReserve,
            M::InventoryRelease,
            M::PaymentAuthorize,
            M::PaymentRefund,
            M::FulfillmentShip,
            M::FulfillmentCancel,
            M::OrderConfirmed,
            M::OrderShipped,
            M::OrderDelivered,
            M::OrderCancelled,
        ],
    },
    ServiceSpec {
        id: ServiceId::Notification,
        name: "notification",
        port: 8084,
        group: "oms-notification",
        handles: &[
            M::OrderConfirmed,
            M::OrderShipped,
            M::OrderDelivered,
            M::OrderCancelled,
        ],
        emits: &[],
    },
];

impl ServiceId {
    /// Every service, in start order.
    pub fn all() -> impl Iterator<Item = ServiceId> {
        SERVICES.iter().map(|s| s.id)
    }

    /// Its row of the table.
    pub fn spec(self) -> &'static ServiceSpec {
        // Every variant has a row: `every_service_has_one_row` proves it.
        SERVICES
            .iter()
            .find(|s| s.id == self)
            .unwrap_or(&SERVICES[0])
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Every service's name, comma separated (for error messages).
    pub fn names() -> String {
        SERVICES
            .iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no service of the topology.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown service {0:?}; expected one of {names}", names = ServiceId::names())]
pub struct UnknownService(pub String);

impl FromStr for ServiceId {
    type Err = UnknownService;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SERVICES
            .iter()
            .find(|spec| spec.name == s)
            .map(|spec| spec.id)
            .ok_or_else(|| UnknownService(s.to_owned()))
    }
}

/// The one service that emits `message_type` (the table proves there is exactly one).
pub fn emitter(message_type: MessageType) -> &'static ServiceSpec {
    SERVICES
        .iter()
        .find(|s| s.emits.contains(&message_type))
        .unwrap_or(&SERVICES[0])
}

/// Why a message could not have come from where it says: a type its topic does not carry, or an
/// emitter other than the one service that emits its type. `topic` is the contract topic it was
/// read from (the deployment's prefix removed).
pub fn misrouted(message_type: MessageType, source: &str, topic: &str) -> Option<String> {
    let t = message_type.as_str();
    if message_type.topic() != topic {
        return Some(format!(
            "{t} read from {topic}: it belongs on {}",
            message_type.topic()
        ));
    }
    let emitter = emitter(message_type).name;
    if source != emitter {
        return Some(format!(
            "{t} says it comes from {source:?}: only {emitter} emits it"
        ));
    }
    None
}

impl ServiceSpec {
    /// Contract topics its consumer reads: the topics of the types it handles, in first-seen order.
    pub fn reads(&self) -> Vec<&'static str> {
        unique_topics(self.handles)
    }

    /// Contract topics it writes.
    pub fn writes(&self) -> Vec<&'static str> {
        unique_topics(self.emits)
    }

    /// Whether its consumer acts on `message_type`.
    pub fn handles(&self, message_type: MessageType) -> bool {
        self.handles.contains(&message_type)
    }

    /// Its Kafka user (SCRAM) on a secured cluster: `oms-NAME`, as the Kubernetes KafkaUsers are
    /// named.
    pub fn kafka_user(&self) -> String {
        format!("oms-{}", self.name)
    }

    /// Everything its Kafka user may do, and nothing more, as deployed: read the topics of the
    /// types it handles, through its own consumer group only; write the topics of the types it
    /// emits, and the dead-letter topic of every topic it reads (its runtime dead-letters
    /// there). Broker ACLs are made from this (locally and in Kubernetes, whose manifest test
    /// compares).
    pub fn grants(&self, topics: &Topics) -> Vec<Grant> {
        let mut out = Vec::new();
        for t in self.reads() {
            out.push(Grant::new(Operation::Read, Resource::Topic(topics.name(t))));
        }
        if !self.reads().is_empty() {
            out.push(Grant::new(
                Operation::Read,
                Resource::Group(topics.name(self.group)),
            ));
        }
        for t in self.writes() {
            out.push(Grant::new(
                Operation::Write,
                Resource::Topic(topics.name(t)),
            ));
        }
        for t in self.reads() {
            out.push(Grant::new(
                Operation::Write,
                Resource::Topic(topics.name(&topics::dlq(t))),
            ));
        }
        out
    }
}

/// What a grant allows (each implies `Describe` of its resource, as Kafka's ACLs do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Consume a topic, or join a consumer group and commit its offsets.
    Read,
    /// Produce to a topic.
    Write,
}

impl Operation {
    /// Kafka's name of the operation (`READ`, `WRITE`).
    pub fn kafka_name(self) -> &'static str {
        match self {
            Operation::Read => "READ",
            Operation::Write => "WRITE",
        }
    }
}

/// A Kafka resource, named as deployed (prefix included).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// A topic.
    Topic(String),
    /// A consumer group.
    Group(String),
}

impl Resource {
    /// Kafka's name of the resource type (`TOPIC`, `GROUP`).
    pub fn kafka_type(&self) -> &'static str {
        match self {
            Resource::Topic(_) => "TOPIC",
            Resource::Group(_) => "GROUP",
        }
    }

    /// The resource's name.
    pub fn name(&self) -> &str {
        match self {
            Resource::Topic(n) | Resource::Group(n) => n,
        }
    }
}

/// One right of a service's Kafka user: an operation on one literally named resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Grant {
    /// What it may do.
    pub operation: Operation,
    /// On what.
    pub resource: Resource,
}

impl Grant {
    fn new(operation: Operation, resource: Resource) -> Self {
        Self {
            operation,
            resource,
        }
    }
}

fn unique_topics(types: &[MessageType]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for t in types {
        if !out.contains(&t.topic()) {
            out.push(t.topic());
        }
    }
    out
}

/// A topic prefix may only hold characters Kafka allows in topic names.
pub fn parse_topic_prefix(s: &str) -> Result<String, String> {
    if s.len() > 100 {
        return Err("topic prefix is longer than 100 characters".into());
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "invalid topic prefix {s:?}: {c:?} is not allowed (letters, digits, '.', '_', '-')"
        )),
        None => Ok(s.to_owned()),
    }
}

/// Topic names as one deployment spells them: the contract's name behind the configured prefix.
/// Consumer groups carry the prefix too, so two environments sharing a cluster never share one.
#[derive(Debug, Clone, Default)]
pub struct Topics {
    prefix: Arc<str>,
}

impl Topics {
    /// Topic names with `prefix` (already validated by [`parse_topic_prefix`]).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: Arc::from(prefix),
        }
    }

    /// The deployed name of contract topic (or consumer group) `base`.
    pub fn name(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Every topic of the saga and its dead-letter topic, as deployed.
    pub fn all_with_dlq(&self) -> Vec<String> {
        topics::all_with_dlq()
            .iter()
            .map(|t| self.name(t))
            .collect()
    }

    /// A service's consumer group and the topics it reads, as deployed.
    pub fn consumer(&self, service: &ServiceSpec) -> (String, Vec<String>) {
        (
            self.name(service.group),
            service.reads().iter().map(|t| self.name(t)).collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_one_row() {
        for id in [
            ServiceId::Order,
            ServiceId::Payment,
            ServiceId::Inventory,
            ServiceId::Notification,
            ServiceId::Saga,
            ServiceId::Fulfillment,
        ] {
            assert_eq!(SERVICES.iter().filter(|s| s.id == id).count(), 1, "{id:?}");
            assert_eq!(id.spec().id, id);
            assert_eq!(id.name().parse::<ServiceId>(), Ok(id));
        }
        let mut ports: Vec<u16> = SERVICES.iter().map(|s| s.port).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), SERVICES.len(), "ports are unique");
    }

    #[test]
    fn every_message_someone_emits_is_handled_by_someone() {
        for s in SERVICES {
            for t in s.emits {
                assert!(
                    SERVICES.iter().any(|r| r.handles(*t)),
                    "{} emits {} but no service handles it",
                    s.name,
                    t.as_str()
                );
            }
        }
    }

    #[test]
    fn every_topic_someone_writes_is_read_by_someone_and_every_topic_is_written() {
        let read: Vec<&str> = SERVICES.iter().flat_map(|s| s.reads()).collect();
        let written: Vec<&str> = SERVICES.iter().flat_map(|s| s.writes()).collect();
        for t in &written {
            assert!(read.contains(t), "{t} is written but never read");
        }
        for t in topics::ALL {
            assert!(
                written.contains(t),
                "{t} is in topics::ALL but nobody writes it"
            );
            assert!(!topics::is_dlq(t));
        }
        // Dead-letter topics are written by the runtime of whoever reads the topic and read by
        // operators (omsctl dlq): every read topic has one.
        let all = topics::all_with_dlq();
        for t in &read {
            assert!(all.contains(&topics::dlq(t)));
        }
    }

    #[test]
    fn a_message_off_its_topic_or_from_another_emitter_is_misrouted() {
        for t in MessageType::ALL {
            let from = emitter(*t);
            assert!(from.emits.contains(t));
            assert_eq!(misrouted(*t, from.name, t.topic()), None, "{}", t.as_str());
            for other in SERVICES.iter().filter(|s| s.name != from.name) {
                let why = misrouted(*t, other.name, t.topic()).unwrap_or_default();
                assert!(
                    why.contains(&format!("only {} emits it", from.name)),
                    "{why}"
                );
            }
            for topic in MessageType::ALL
                .iter()
                .map(|m| m.topic())
                .filter(|x| *x != t.topic())
            {
                let why = misrouted(*t, from.name, topic).unwrap_or_default();
                assert!(why.contains(&format!("belongs on {}", t.topic())), "{why}");
            }
        }
    }

    #[test]
    fn every_message_type_is_emitted_by_exactly_one_service() {
        for t in MessageType::ALL {
            let n = SERVICES.iter().filter(|s| s.emits.contains(t)).count();
            assert_eq!(n, 1, "{} is emitted by {n} services", t.as_str());
        }
    }

    #[test]
    fn a_service_may_read_what_it_handles_and_write_what_it_emits_and_nothing_else() {
        let t = Topics::new("dev.");
        let payment = ServiceId::Payment.spec();
        assert_eq!(payment.kafka_user(), "oms-payment");
        let grants: Vec<(Operation, String)> = payment
            .grants(&t)
            .into_iter()
            .map(|g| {
                (
                    g.operation,
                    format!("{}:{}", g.resource.kafka_type(), g.resource.name()),
                )
            })
            .collect();
        assert_eq!(
            grants,
            [
                (Operation::Read, "TOPIC:dev.oms.payment.commands".to_owned()),
                (Operation::Read, "GROUP:dev.oms-payment".to_owned()),
                (Operation::Write, "TOPIC:dev.oms.payment.events".to_owned()),
                (
                    Operation::Write,
                    "TOPIC:dev.oms.payment.commands.dlq".to_owned()
                ),
            ]
        );
        for s in SERVICES {
            let grants = s.grants(&t);
            // Every topic a service writes is one it emits or a dead-letter topic of one it
            // reads; no service may write another's events or read another's group.
            for g in &grants {
                match (&g.operation, &g.resource) {
                    (Operation::Write, Resource::Topic(name)) => {
                        let base = name.trim_start_matches("dev.");
                        assert!(
                            s.writes().contains(&base)
                                || s.reads().iter().any(|r| topics::dlq(r) == base),
                            "{} may write {name}",
                            s.name
                        );
                    }
                    (Operation::Read, Resource::Group(group)) => {
                        assert_eq!(group, &t.name(s.group), "{}", s.name);
                    }
                    (Operation::Read, Resource::Topic(name)) => {
                        assert!(s.reads().contains(&name.trim_start_matches("dev.")));
                    }
                    (Operation::Write, Resource::Group(_)) => panic!("{}: no group writes", s.name),
                }
            }
        }
        // A service that reads nothing joins no group.
        let silent = ServiceSpec {
            id: ServiceId::Order,
            name: "silent",
            port: 1,
            group: "oms-silent",
            handles: &[],
            emits: &[MessageType::OrderCreated],
        };
        assert!(silent
            .grants(&t)
            .iter()
            .all(|g| !matches!(g.resource, Resource::Group(_))));
    }

    #[test]
    fn names_parse_and_unknown_ones_list_the_choices() {
        assert_eq!("saga".parse::<ServiceId>(), Ok(ServiceId::Saga));
        let err = "brokr"
            .parse::<ServiceId>()
            .expect_err("not a service")
            .to_string();
        assert!(
            err.contains("brokr") && err.contains("inventory, payment, fulfillment, order"),
            "{err}"
        );
    }

    #[test]
    fn topic_prefixes_are_checked_and_applied() {
        assert!(parse_topic_prefix("dev.eu-1_").is_ok());
        assert!(parse_topic_prefix("a b").is_err());
        assert!(parse_topic_prefix(&"x".repeat(101)).is_err());
        let t = Topics::new("dev.");
        assert_eq!(t.name(topics::ORDER_EVENTS), "dev.oms.order.events");
        let (group, reads) = t.consumer(ServiceId::Inventory.spec());
        assert_eq!(group, "dev.oms-inventory");
        assert_eq!(
            reads,
            [
                "dev.oms.inventory.commands",
                "dev.oms.order.events",
                "dev.oms.fulfillment.events"
            ]
        );
    }
}
