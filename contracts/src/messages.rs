//! Every command and event of the order saga (docs/architecture.md, "The order saga").
//!
//! Commands ask one service for an action (`inventory.reserve`, `payment.authorize`, ...); events
//! state facts (`inventory.reserved`, `order.confirmed`, ...). Each message type has exactly one
//! topic, one schema version and one payload struct.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::topics;
use crate::values::{
    CustomerId, Money, OrderId, OrderLine, PricedLine, ProductId, ShippingAddress,
};

/// Whether a message asks for an action or states a fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Addressed to one service, asking it to act.
    Command,
    /// A fact that happened; anyone may react.
    Event,
}

macro_rules! message_types {
    ($( $variant:ident => $name:literal, $kind:ident, $topic:path, $payload:ident; )+) => {
        crate::values::wire_enum! {
            /// The type of a message, as carried in the envelope's `type` field and the
            /// `oms-message-type` header.
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
            pub enum MessageType {
                $(
                    #[doc = concat!("`", $name, "`")]
                    $variant = $name,
                )+
            }
            /// A message type name nobody defined.
            pub struct UnknownMessageType("message type", all_by_ref);
        }

        impl MessageType {
            /// Command or event.
            pub fn kind(self) -> MessageKind {
                match self { $(MessageType::$variant => MessageKind::$kind),+ }
            }

            /// The topic messages of this type are published on.
            pub fn topic(self) -> &'static str {
                match self { $(MessageType::$variant => $topic),+ }
            }
        }

        /// A typed message payload: one variant per message type.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(untagged)]
        pub enum Message {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant($payload),
            )+
        }

        impl Message {
            /// The type of this message.
            pub fn message_type(&self) -> MessageType {
                match self { $(Message::$variant(_) => MessageType::$variant),+ }
            }

            /// The order this message is about (also its Kafka key).
            pub fn order_id(&self) -> OrderId {
                match self { $(Message::$variant(p) => p.order_id),+ }
            }

            /// Decodes a JSON payload of the given type.
            pub(crate) fn decode_payload(
                message_type: MessageType,
                payload: &str,
            ) -> Result<Message, serde_json::Error> {
                Ok(match message_type {
                    $(MessageType::$variant => Message::$variant(serde_json::from_str(payload)?),)+
                })
            }
        }

        $(
            impl From<$payload> for Message {
                fn from(value: $payload) -> Self {
                    Message::$variant(value)
                }
            }
        )+
    };
}

message_types! {
    OrderCreated => "order.created", Event, topics::ORDER_EVENTS, OrderCreated;
    OrderConfirmed => "order.confirmed", Event, topics::ORDER_EVENTS, OrderConfirmed;
    OrderCancelled => "order.cancelled", Event, topics::ORDER_EVENTS, OrderCancelled;
    InventoryReserve => "inventory.reserve", Command, topics::INVENTORY_COMMANDS, ReserveStock;
    InventoryRelease => "inventory.release", Command, topics::INVENTORY_COMMANDS, ReleaseStock;
    InventoryReserved => "inventory.reserved", Event, topics::INVENTORY_EVENTS, StockReserved;
    InventoryRejected => "inventory.rejected", Event, topics::INVENTORY_EVENTS, StockRejected;
    InventoryReleased => "inventory.released", Event, topics::INVENTORY_EVENTS, StockReleased;
    PaymentAuthorize => "payment.authorize", Command, topics::PAYMENT_COMMANDS, AuthorizePayment;
    PaymentRefund => "payment.refund", Command, topics::PAYMENT_COMMANDS, RefundPayment;
    PaymentAuthorized => "payment.authorized", Event, topics::PAYMENT_EVENTS, PaymentAuthorized;
    PaymentDeclined => "payment.declined", Event, topics::PAYMENT_EVENTS, PaymentDeclined;
    PaymentRefunded => "payment.refunded", Event, topics::PAYMENT_EVENTS, PaymentRefunded;
    OrderCancelRequested => "order.cancel-requested", Event, topics::ORDER_EVENTS, CancelRequested;
    OrderShipped => "order.shipped", Event, topics::ORDER_EVENTS, OrderShipped;
    OrderDelivered => "order.delivered", Event, topics::ORDER_EVENTS, OrderDelivered;
    FulfillmentShip => "fulfillment.ship", Command, topics::FULFILLMENT_COMMANDS, ShipOrder;
    FulfillmentCancel => "fulfillment.cancel", Command, topics::FULFILLMENT_COMMANDS, CancelShipment;
    FulfillmentPicked => "fulfillment.picked", Event, topics::FULFILLMENT_EVENTS, ShipmentPicked;
    FulfillmentShipped => "fulfillment.shipped", Event, topics::FULFILLMENT_EVENTS, ShipmentShipped;
    FulfillmentDelivered => "fulfillment.delivered", Event, topics::FULFILLMENT_EVENTS, ShipmentDelivered;
    FulfillmentFailed => "fulfillment.failed", Event, topics::FULFILLMENT_EVENTS, ShipmentFailed;
    FulfillmentCancelled => "fulfillment.cancelled", Event, topics::FULFILLMENT_EVENTS, ShipmentCancelled;
}

impl MessageType {
    /// The current schema version of this type. Bump it (and add a fixture) for any change that
    /// breaks the golden fixtures.
    pub fn schema_version(self) -> u16 {
        1
    }
}

/// Checks that no message carries an impossible value (the parts serde cannot express).
pub(crate) fn check_contract(message: &Message) -> Result<(), String> {
    fn lines(items: &[OrderLine]) -> Result<(), String> {
        if items.is_empty() {
            return Err("an order needs at least one line".into());
        }
        if let Some(line) = items.iter().find(|l| l.quantity == 0) {
            return Err(format!(
                "quantity of {} must be at least 1",
                line.product_id
            ));
        }
        Ok(())
    }
    fn priced(items: &[PricedLine], total: &Money) -> Result<(), String> {
        if items.is_empty() {
            return Err("a priced order needs at least one line".into());
        }
        let mut sum = Money::new(0, total.currency).map_err(|e| e.0)?;
        for line in items {
            if line.quantity == 0 {
                return Err(format!(
                    "quantity of {} must be at least 1",
                    line.product_id
                ));
            }
            sum = line
                .unit_price
                .checked_mul(line.quantity)
                .and_then(|l| sum.checked_add(l))
                .ok_or_else(|| "line totals overflow or mix currencies".to_owned())?;
        }
        if sum != *total {
            return Err(format!("total {total} does not match the lines ({sum})"));
        }
        Ok(())
    }
    fn address(address: Option<&ShippingAddress>) -> Result<(), String> {
        let problems = address.map(ShippingAddress::problems).unwrap_or_default();
        if problems.is_empty() {
            return Ok(());
        }
        Err(problems
            .into_iter()
            .map(|(field, reason)| format!("{field} {reason}"))
            .collect::<Vec<_>>()
            .join("; "))
    }
    match message {
        Message::OrderCreated(m) => {
            lines(&m.items).and_then(|()| address(m.shipping_address.as_ref()))
        }
        Message::InventoryReserve(m) => lines(&m.items),
        Message::InventoryReserved(m) => priced(&m.lines, &m.total),
        Message::OrderConfirmed(m) => priced(&m.lines, &m.total),
        Message::FulfillmentShip(m) if m.lines.is_empty() => {
            Err("a shipment needs at least one line".into())
        }
        Message::FulfillmentShip(m) => address(m.shipping_address.as_ref()),
        Message::InventoryRejected(m) if m.product_ids.is_empty() => {
            Err("a rejection names at least one product".into())
        }
        _ => Ok(()),
    }
}

/// `order.created`: the order service accepted an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCreated {
    /// The new order.
    pub order_id: OrderId,
    /// Who placed it.
    pub customer_id: CustomerId,
    /// What was asked for (prices come from the catalog, never from the client).
    pub items: Vec<OrderLine>,
    /// Payment method token of the simulated gateway (`tok_visa`, ...).
    pub payment_token: String,
    /// Where it ships to (added within v1; absent: the customer's address on file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<ShippingAddress>,
}

/// `order.confirmed`: the saga completed; stock is sold and the payment authorized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderConfirmed {
    /// The order.
    pub order_id: OrderId,
    /// Lines as priced by the catalog.
    pub lines: Vec<PricedLine>,
    /// Sum of the lines.
    pub total: Money,
    /// The authorized payment.
    pub payment_id: Uuid,
    /// Who placed the order (added within v1: absent from messages of earlier builds), so
    /// consumers such as notifications can tell whose it is without asking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
}

crate::values::wire_enum! {
    /// Why an order was cancelled.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum CancelReason {
        /// Not enough stock for at least one line.
        OutOfStock = "OUT_OF_STOCK",
        /// A line names a product the catalog does not have.
        UnknownProduct = "UNKNOWN_PRODUCT",
        /// The payment was declined.
        PaymentDeclined = "PAYMENT_DECLINED",
        /// A saga step got no answer before its deadline.
        Timeout = "TIMEOUT",
        /// An operator cancelled the saga (`POST /sagas/{orderId}/cancel`).
        OperatorCancelled = "OPERATOR_CANCELLED",
        /// The customer cancelled before the shipment was picked (`POST /orders/{id}/cancel`).
        CustomerCancelled = "CUSTOMER_CANCELLED",
        /// The carrier refused the shipment; the payment was refunded and the stock released.
        FulfillmentFailed = "FULFILLMENT_FAILED",
    }
    /// A name that is no [`CancelReason`].
    pub struct UnknownCancelReason("cancel reason");
}

/// `order.cancelled`: the saga gave up; everything it did was compensated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    /// The order.
    pub order_id: OrderId,
    /// Why.
    pub reason: CancelReason,
    /// Human-readable detail, such as the decline reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Who placed the order (added within v1: absent from messages of earlier builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<CustomerId>,
}

/// `order.cancel-requested`: the customer asked for the order to be cancelled. The saga decides:
/// before the shipment is picked it is cancelled and refunded, afterwards the request is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequested {
    /// The order.
    pub order_id: OrderId,
    /// Whose order it is.
    pub customer_id: CustomerId,
    /// Who asked (the token's subject).
    pub requested_by: String,
}

/// `order.shipped`: the carrier has the parcel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderShipped {
    /// The order.
    pub order_id: OrderId,
    /// Its shipment.
    pub shipment_id: Uuid,
    /// The carrier's tracking number.
    pub tracking_number: String,
    /// Who placed the order.
    pub customer_id: CustomerId,
}

/// `order.delivered`: the customer has the parcel; the order's life is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderDelivered {
    /// The order.
    pub order_id: OrderId,
    /// Its shipment.
    pub shipment_id: Uuid,
    /// Who placed the order.
    pub customer_id: CustomerId,
}

/// `fulfillment.ship`: create the order's shipment and drive it to delivery (idempotent: asked
/// again, fulfillment answers with the shipment's latest fact).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipOrder {
    /// The order.
    pub order_id: OrderId,
    /// Who receives it.
    pub customer_id: CustomerId,
    /// What to pick, as sold.
    pub lines: Vec<PricedLine>,
    /// Where to (absent: the customer's address on file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<ShippingAddress>,
}

/// `fulfillment.cancel`: cancel the shipment if it is not picked yet. Fulfillment answers
/// `fulfillment.cancelled`, or, once picked, the shipment's latest fact (the cancel lost).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelShipment {
    /// The order.
    pub order_id: OrderId,
    /// Why.
    pub reason: CancelReason,
}

/// `fulfillment.picked`: the goods left the shelf; the stock is sold now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentPicked {
    /// The order.
    pub order_id: OrderId,
    /// The shipment.
    pub shipment_id: Uuid,
    /// What was picked.
    pub lines: Vec<PricedLine>,
}

/// `fulfillment.shipped`: handed to the carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentShipped {
    /// The order.
    pub order_id: OrderId,
    /// The shipment.
    pub shipment_id: Uuid,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// `fulfillment.delivered`: the carrier delivered it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentDelivered {
    /// The order.
    pub order_id: OrderId,
    /// The shipment.
    pub shipment_id: Uuid,
}

crate::values::wire_enum! {
    /// Why the carrier refused a shipment.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum FailReason {
        /// The carrier does not serve the destination's region.
        RegionNotServed = "REGION_NOT_SERVED",
        /// The carrier cannot deliver to the address.
        AddressUndeliverable = "ADDRESS_UNDELIVERABLE",
        /// The carrier refused it for no stated reason (the failure-rate knob).
        CarrierRejected = "CARRIER_REJECTED",
    }
    /// A name that is no [`FailReason`].
    pub struct UnknownFailReason("fail reason");
}

/// `fulfillment.failed`: the carrier refused the shipment before it was picked; nothing left the
/// shelf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentFailed {
    /// The order.
    pub order_id: OrderId,
    /// The shipment.
    pub shipment_id: Uuid,
    /// Why.
    pub reason: FailReason,
}

/// `fulfillment.cancelled`: the shipment is cancelled and will never be picked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShipmentCancelled {
    /// The order.
    pub order_id: OrderId,
    /// The shipment (none when the cancellation came before the shipment was asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipment_id: Option<Uuid>,
}

/// `inventory.reserve`: reserve every line or none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReserveStock {
    /// The order the reservation is for.
    pub order_id: OrderId,
    /// Lines to reserve.
    pub items: Vec<OrderLine>,
}

crate::values::wire_enum! {
    /// Why a reservation is released.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ReleaseReason {
        /// The saga compensates a failed order.
        Compensation = "COMPENSATION",
        /// The reservation outlived its TTL.
        Expired = "EXPIRED",
    }
    /// A name that is no [`ReleaseReason`].
    pub struct UnknownReleaseReason("release reason");
}

/// `inventory.release`: give the order's reserved stock back (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseStock {
    /// The order whose reservation to release.
    pub order_id: OrderId,
    /// Why.
    pub reason: ReleaseReason,
}

/// `inventory.reserved`: all lines are reserved until `expires_at`, priced from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReserved {
    /// The order.
    pub order_id: OrderId,
    /// Reserved lines with catalog prices.
    pub lines: Vec<PricedLine>,
    /// Sum of the lines.
    pub total: Money,
    /// When an unconfirmed reservation is released by itself.
    pub expires_at: DateTime<Utc>,
}

crate::values::wire_enum! {
    /// Why inventory refused a reservation.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum RejectReason {
        /// Not enough stock.
        OutOfStock = "OUT_OF_STOCK",
        /// The catalog has no such product.
        UnknownProduct = "UNKNOWN_PRODUCT",
    }
    /// A name that is no [`RejectReason`].
    pub struct UnknownRejectReason("reject reason");
}

/// `inventory.rejected`: nothing was reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockRejected {
    /// The order.
    pub order_id: OrderId,
    /// Why.
    pub reason: RejectReason,
    /// The products that caused the rejection.
    pub product_ids: Vec<ProductId>,
}

/// `inventory.released`: the order's reserved stock is available again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StockReleased {
    /// The order.
    pub order_id: OrderId,
    /// Why it was released.
    pub reason: ReleaseReason,
}

/// `payment.authorize`: charge the order's total (idempotent per order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizePayment {
    /// The order.
    pub order_id: OrderId,
    /// Who pays.
    pub customer_id: CustomerId,
    /// Amount to authorize.
    pub amount: Money,
    /// Payment method token.
    pub payment_token: String,
}

/// `payment.refund`: undo the order's payment: refund it when authorized, void it when its
/// outcome is unknown (idempotent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundPayment {
    /// The order.
    pub order_id: OrderId,
    /// Why, for the record.
    pub reason: CancelReason,
}

/// `payment.authorized`: the amount is held on the customer's card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentAuthorized {
    /// The order.
    pub order_id: OrderId,
    /// The gateway's payment.
    pub payment_id: Uuid,
    /// Amount authorized.
    pub amount: Money,
}

crate::values::wire_enum! {
    /// Why the gateway declined.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum DeclineReason {
        /// The card was declined.
        CardDeclined = "CARD_DECLINED",
        /// Not enough funds.
        InsufficientFunds = "INSUFFICIENT_FUNDS",
        /// The token is not one the gateway knows.
        InvalidToken = "INVALID_TOKEN",
    }
    /// A name that is no [`DeclineReason`].
    pub struct UnknownDeclineReason("decline reason");
}

/// `payment.declined`: nothing was charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDeclined {
    /// The order.
    pub order_id: OrderId,
    /// Why.
    pub reason: DeclineReason,
}

crate::values::wire_enum! {
    /// What a refund did.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum RefundOutcome {
        /// An authorized payment was refunded.
        Refunded = "REFUNDED",
        /// A payment in an unknown state was voided.
        Voided = "VOIDED",
        /// There was no payment to undo.
        NothingToRefund = "NOTHING_TO_REFUND",
    }
    /// A name that is no [`RefundOutcome`].
    pub struct UnknownRefundOutcome("refund outcome");
}

/// `payment.refunded`: the order's payment is undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    /// The order.
    pub order_id: OrderId,
    /// What was done.
    pub outcome: RefundOutcome,
    /// Amount given back, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_type() {
        for t in MessageType::ALL {
            assert_eq!(t.as_str().parse::<MessageType>(), Ok(*t));
        }
        assert!("order.exploded".parse::<MessageType>().is_err());
        crate::values::check_wire_enum(MessageType::ALL, MessageType::as_str, false);
        let names: Vec<&str> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names[0], "order.created");
        assert_eq!(names[13], "order.cancel-requested");
        assert_eq!(names.len(), 23);
    }

    #[test]
    fn reasons_are_wire_enums_with_their_names() {
        use crate::values::check_wire_enum;
        check_wire_enum(&CancelReason::ALL, CancelReason::as_str, false);
        check_wire_enum(&FailReason::ALL, FailReason::as_str, false);
        check_wire_enum(&ReleaseReason::ALL, ReleaseReason::as_str, false);
        check_wire_enum(&RejectReason::ALL, RejectReason::as_str, false);
        check_wire_enum(&DeclineReason::ALL, DeclineReason::as_str, false);
        check_wire_enum(&RefundOutcome::ALL, RefundOutcome::as_str, false);
        // The wire, byte for byte (what `rename_all = "SCREAMING_SNAKE_CASE"` wrote before).
        let json = |v: serde_json::Result<String>| v.unwrap_or_default();
        assert_eq!(
            json(serde_json::to_string(&CancelReason::ALL)),
            r#"["OUT_OF_STOCK","UNKNOWN_PRODUCT","PAYMENT_DECLINED","TIMEOUT","OPERATOR_CANCELLED","CUSTOMER_CANCELLED","FULFILLMENT_FAILED"]"#
        );
        assert_eq!(
            json(serde_json::to_string(&FailReason::ALL)),
            r#"["REGION_NOT_SERVED","ADDRESS_UNDELIVERABLE","CARRIER_REJECTED"]"#
        );
        assert_eq!(
            json(serde_json::to_string(&ReleaseReason::ALL)),
            r#"["COMPENSATION","EXPIRED"]"#
        );
        assert_eq!(
            json(serde_json::to_string(&RejectReason::ALL)),
            r#"["OUT_OF_STOCK","UNKNOWN_PRODUCT"]"#
        );
        assert_eq!(
            json(serde_json::to_string(&DeclineReason::ALL)),
            r#"["CARD_DECLINED","INSUFFICIENT_FUNDS","INVALID_TOKEN"]"#
        );
        assert_eq!(
            json(serde_json::to_string(&RefundOutcome::ALL)),
            r#"["REFUNDED","VOIDED","NOTHING_TO_REFUND"]"#
        );
        // What `wire_name` (serde) says is what `as_str` says.
        for r in CancelReason::ALL {
            assert_eq!(crate::wire_name(&r), r.as_str());
        }
    }

    #[test]
    fn commands_and_events_go_to_their_own_topics() {
        for t in MessageType::ALL {
            let expected = match t.kind() {
                MessageKind::Command => "commands",
                MessageKind::Event => "events",
            };
            assert!(
                t.topic().ends_with(expected),
                "{t} goes to {} but is a {:?}",
                t.topic(),
                t.kind()
            );
        }
    }
}
