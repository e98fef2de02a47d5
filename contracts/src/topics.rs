//! Topic names. One topic per bounded context and kind, keyed by order id, dead letters in
//! `<topic>.dlq`.

/// Order lifecycle events: `order.created`, `order.confirmed`, `order.shipped`,
/// `order.delivered`, `order.cancelled`, and the customer's `order.cancel-requested`.
pub const ORDER_EVENTS: &str = "oms.order.events";
/// Commands to inventory: `inventory.reserve`, `inventory.release`.
pub const INVENTORY_COMMANDS: &str = "oms.inventory.commands";
/// Inventory outcomes: `inventory.reserved`, `inventory.rejected`, `inventory.released`.
pub const INVENTORY_EVENTS: &str = "oms.inventory.events";
/// Commands to payment: `payment.authorize`, `payment.refund`.
pub const PAYMENT_COMMANDS: &str = "oms.payment.commands";
/// Payment outcomes: `payment.authorized`, `payment.declined`, `payment.refunded`.
pub const PAYMENT_EVENTS: &str = "oms.payment.events";

/// Commands to fulfillment: `fulfillment.ship`, `fulfillment.cancel`.
pub const FULFILLMENT_COMMANDS: &str = "oms.fulfillment.commands";
/// Shipment facts: `fulfillment.picked`, `fulfillment.shipped`, `fulfillment.delivered`,
/// `fulfillment.failed`, `fulfillment.cancelled`.
pub const FULFILLMENT_EVENTS: &str = "oms.fulfillment.events";

/// Every topic messages are published on (dead-letter topics excluded).
pub const ALL: &[&str] = &[
    ORDER_EVENTS,
    INVENTORY_COMMANDS,
    INVENTORY_EVENTS,
    PAYMENT_COMMANDS,
    PAYMENT_EVENTS,
    FULFILLMENT_COMMANDS,
    FULFILLMENT_EVENTS,
];

/// Partitions of every topic, its dead-letter topic included.
pub const PARTITIONS: i32 = 3;

/// Suffix of dead-letter topics.
pub const DLQ_SUFFIX: &str = ".dlq";

/// The dead-letter topic of `topic`.
pub fn dlq(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// Whether `topic` is a dead-letter topic.
pub fn is_dlq(topic: &str) -> bool {
    topic.ends_with(DLQ_SUFFIX)
}

/// Every topic the system uses, dead-letter topics included.
pub fn all_with_dlq() -> Vec<String> {
    ALL.iter().flat_map(|t| [(*t).to_owned(), dlq(t)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_has_a_dead_letter_topic() {
        let all = all_with_dlq();
        assert_eq!(all.len(), ALL.len() * 2);
        assert!(all.contains(&"oms.payment.events.dlq".to_owned()));
        assert!(is_dlq("oms.payment.events.dlq") && !is_dlq("oms.payment.events"));
    }
}
