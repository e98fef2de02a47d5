//! Golden fixtures: one JSON file per message type under `fixtures/` pins the wire format.
//!
//! Both directions are checked: the fixture decodes to the sample value below, and the sample
//! encodes to the fixture's JSON. Run with `OMS_BLESS_FIXTURES=1` to write the files after an
//! intended change, which must also bump that type's schema version.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use oms_contracts::messages::*;
use oms_contracts::{
    Currency, CustomerId, Envelope, Message, MessageType, Money, OrderId, OrderLine, PricedLine,
    ProductId, ShippingAddress,
};
use uuid::Uuid;

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("fixture uuid")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("fixture time")
        .with_timezone(&Utc)
}

fn eur(amount: i64) -> Money {
    Money::new(amount, Currency::EUR).expect("fixture money")
}

fn product(id: &str) -> ProductId {
    ProductId::try_from(id).expect("fixture product")
}

fn sample(t: MessageType) -> Envelope {
    let order_id = OrderId(uuid("0192f0c4-5a1e-7cc0-8000-000000000001"));
    let priced = vec![
        PricedLine {
            product_id: product("mouse-01"),
            quantity: 2,
            unit_price: eur(2499),
        },
        PricedLine {
            product_id: product("hub-01"),
            quantity: 1,
            unit_price: eur(3999),
        },
    ];
    let items = vec![
        OrderLine {
            product_id: product("mouse-01"),
            quantity: 2,
        },
        OrderLine {
            product_id: product("hub-01"),
            quantity: 1,
        },
    ];
    let payment_id = uuid("0192f0c4-5a1e-7cc0-8000-0000000000aa");
    let shipment_id = uuid("0192f0c4-5a1e-7cc0-8000-0000000000bb");
    let customer = CustomerId::try_from("cust-42").expect("fixture customer");
    let message: Message = match t {
        MessageType::OrderCreated => OrderCreated {
            order_id,
            customer_id: CustomerId::try_from("cust-42").expect("fixture customer"),
            items,
            payment_token: "tok_visa".into(),
            shipping_address: None,
        }
        .into(),
        MessageType::OrderConfirmed => OrderConfirmed {
            order_id,
            lines: priced,
            total: eur(8997),
            payment_id,
            customer_id: CustomerId::try_from("cust-42").ok(),
        }
        .into(),
        MessageType::OrderCancelled => OrderCancelled {
            order_id,
            reason: CancelReason::PaymentDeclined,
            detail: Some("CARD_DECLINED".into()),
            customer_id: CustomerId::try_from("cust-42").ok(),
        }
        .into(),
        MessageType::InventoryReserve => ReserveStock { order_id, items }.into(),
        MessageType::InventoryRelease => ReleaseStock {
            order_id,
            reason: ReleaseReason::Compensation,
        }
        .into(),
        MessageType::InventoryReserved => StockReserved {
            order_id,
            lines: priced,
            total: eur(8997),
            expires_at: at("2026-11-23T12:15:00Z"),
        }
        .into(),
        MessageType::InventoryRejected => StockRejected {
            order_id,
            reason: RejectReason::OutOfStock,
            product_ids: vec![product("mouse-01")],
        }
        .into(),
        MessageType::InventoryReleased => StockReleased {
            order_id,
            reason: ReleaseReason::Expired,
        }
        .into(),
        MessageType::PaymentAuthorize => AuthorizePayment {
            order_id,
            customer_id: CustomerId::try_from("cust-42").expect("fixture customer"),
            amount: eur(8997),
            payment_token: "tok_visa".into(),
        }
        .into(),
        MessageType::PaymentRefund => RefundPayment {
            order_id,
            reason: CancelReason::Timeout,
        }
        .into(),
        MessageType::PaymentAuthorized => PaymentAuthorized {
            order_id,
            payment_id,
            amount: eur(8997),
        }
        .into(),
        MessageType::PaymentDeclined => PaymentDeclined {
            order_id,
            reason: DeclineReason::InsufficientFunds,
        }
        .into(),
        MessageType::PaymentRefunded => PaymentRefunded {
            order_id,
            outcome: RefundOutcome::Refunded,
            amount: Some(eur(8997)),
        }
        .into(),
        MessageType::OrderCancelRequested => CancelRequested {
            order_id,
            customer_id: customer.clone(),
            requested_by: "cust-42".into(),
        }
        .into(),
        MessageType::OrderShipped => OrderShipped {
            order_id,
            shipment_id,
            tracking_number: "SIM0192F0C4000001".into(),
            customer_id: customer.clone(),
        }
        .into(),
        MessageType::OrderDelivered => OrderDelivered {
            order_id,
            shipment_id,
            customer_id: customer.clone(),
        }
        .into(),
        MessageType::FulfillmentShip => ShipOrder {
            order_id,
            customer_id: customer.clone(),
            lines: priced,
            shipping_address: Some(ShippingAddress {
                line1: "Hauptstraße 1".into(),
                city: "Berlin".into(),
                postal_code: "10115".into(),
                country: "DE".into(),
            }),
        }
        .into(),
        MessageType::FulfillmentCancel => CancelShipment {
            order_id,
            reason: CancelReason::CustomerCancelled,
        }
        .into(),
        MessageType::FulfillmentPicked => ShipmentPicked {
            order_id,
            shipment_id,
            lines: priced,
        }
        .into(),
        MessageType::FulfillmentShipped => ShipmentShipped {
            order_id,
            shipment_id,
            tracking_number: "SIM0192F0C4000001".into(),
        }
        .into(),
        MessageType::FulfillmentDelivered => ShipmentDelivered {
            order_id,
            shipment_id,
        }
        .into(),
        MessageType::FulfillmentFailed => ShipmentFailed {
            order_id,
            shipment_id,
            reason: FailReason::RegionNotServed,
        }
        .into(),
        MessageType::FulfillmentCancelled => ShipmentCancelled {
            order_id,
            shipment_id: Some(shipment_id),
        }
        .into(),
    };
    assert_eq!(message.message_type(), t, "sample of the wrong type");
    Envelope {
        event_id: uuid("0192f0c4-5a1e-7cc0-8000-0000000000e1"),
        schema_version: t.schema_version(),
        occurred_at: at("2026-11-23T12:00:00.123456Z"),
        correlation_id: order_id.0,
        causation_id: (t != MessageType::OrderCreated)
            .then(|| uuid("0192f0c4-5a1e-7cc0-8000-0000000000c0")),
        source: "fixture-service".into(),
        message,
    }
}

fn fixture_path(t: MessageType) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(format!("{}.v{}.json", t.as_str(), t.schema_version()))
}

#[test]
fn every_message_type_matches_its_golden_fixture() {
    let bless = std::env::var_os("OMS_BLESS_FIXTURES").is_some();
    for &t in MessageType::ALL {
        let path = fixture_path(t);
        let sample = sample(t);
        let encoded: serde_json::Value =
            serde_json::from_slice(&sample.encode()).expect("encoded sample is JSON");
        if bless {
            let pretty = serde_json::to_string_pretty(&encoded).expect("pretty JSON");
            std::fs::write(&path, pretty + "\n").expect("write fixture");
        }
        let text = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); bless the fixtures", path.display()));

        // Fixture -> value: the golden bytes decode to exactly the sample.
        let decoded = Envelope::decode(&text)
            .unwrap_or_else(|e| panic!("{} does not decode: {e}", path.display()));
        assert_eq!(
            decoded,
            sample,
            "{} decodes to another value",
            path.display()
        );

        // Value -> fixture: encoding gives the same JSON (field names, shapes, formats).
        let golden: serde_json::Value = serde_json::from_slice(&text).expect("fixture is JSON");
        assert_eq!(encoded, golden, "{t} no longer encodes to its fixture");

        // And a decoded fixture re-encodes to the fixture.
        let again: serde_json::Value =
            serde_json::from_slice(&decoded.encode()).expect("re-encoded is JSON");
        assert_eq!(again, golden, "{t} does not survive a round trip");
    }
}

#[test]
fn no_fixture_is_left_without_a_message_type() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut expected: Vec<PathBuf> = MessageType::ALL.iter().map(|t| fixture_path(*t)).collect();
    expected.sort();
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    found.sort();
    assert_eq!(found, expected);
}

#[test]
fn a_changed_fixture_is_caught() {
    // The check above must be able to fail: a renamed field no longer decodes to the sample.
    let t = MessageType::PaymentAuthorized;
    let text = std::fs::read_to_string(fixture_path(t)).expect("fixture");
    let renamed = text.replace("\"paymentId\"", "\"paymentID\"");
    assert!(Envelope::decode(renamed.as_bytes()).is_err());
}

#[test]
fn outcome_events_of_builds_without_the_customer_still_decode() {
    for t in [MessageType::OrderConfirmed, MessageType::OrderCancelled] {
        let text = std::fs::read_to_string(fixture_path(t)).expect("fixture");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
        let removed = json["payload"]
            .as_object_mut()
            .and_then(|p| p.remove("customerId"));
        assert!(removed.is_some(), "{t:?} fixture carries customerId");
        let envelope = Envelope::decode(json.to_string().as_bytes()).expect("decodes");
        let customer = match envelope.message {
            Message::OrderConfirmed(m) => m.customer_id,
            Message::OrderCancelled(m) => m.customer_id,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(customer, None);
    }
}
