//! Validation of `POST /orders` bodies: every problem found, one reason per field, before any
//! state changes. Pure, so every rule is unit-tested.

use std::collections::{BTreeMap, HashMap};

use oms_contracts::{CustomerId, OrderLine, ProductId, ShippingAddress};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Limits and defaults of an order request.
#[derive(Debug, Clone)]
pub struct Rules {
    /// Most lines in one order.
    pub max_lines: usize,
    /// Most units of one product in one order.
    pub max_quantity: u32,
    /// Customer when the request names none.
    pub default_customer: String,
    /// Payment token when the request names none.
    pub default_payment_token: String,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            max_lines: 50,
            max_quantity: 1000,
            default_customer: "guest".into(),
            default_payment_token: "tok_visa".into(),
        }
    }
}

/// A valid order request, defaults applied. Its JSON is the canonical form compared for
/// `Idempotency-Key` reuse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrder {
    /// Who orders.
    pub customer_id: CustomerId,
    /// What, in request order.
    pub items: Vec<OrderLine>,
    /// How they pay.
    pub payment_token: String,
    /// Where it ships to (none: the customer's address on file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<ShippingAddress>,
}

/// Per-field reasons.
pub type FieldErrors = BTreeMap<String, String>;

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses and validates a request body.
pub fn parse_order(body: &[u8], rules: &Rules) -> Result<NewOrder, FieldErrors> {
    let mut errors = FieldErrors::new();
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            errors.insert("body".into(), format!("malformed JSON: {e}"));
            return Err(errors);
        }
    };
    let Value::Object(fields) = value else {
        errors.insert(
            "body".into(),
            format!("expected a JSON object, got {}", type_name(&value)),
        );
        return Err(errors);
    };
    for name in fields.keys() {
        if !matches!(
            name.as_str(),
            "customerId" | "items" | "paymentToken" | "shippingAddress"
        ) {
            errors.insert(name.clone(), "unknown field".into());
        }
    }

    let customer_id = match fields.get("customerId") {
        None | Some(Value::Null) => CustomerId::try_from(rules.default_customer.as_str()).ok(),
        Some(Value::String(s)) => match CustomerId::try_from(s.as_str()) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.insert("customerId".into(), e.0);
                None
            }
        },
        Some(other) => {
            errors.insert(
                "customerId".into(),
                format!("must be a string, got {}", type_name(other)),
            );
            None
        }
    };

    let payment_token = match fields.get("paymentToken") {
        None | Some(Value::Null) => Some(rules.default_payment_token.clone()),
        Some(Value::String(s))
            if (1..=64).contains(&s.len())
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            Some(s.clone())
        }
        Some(Value::String(_)) => {
            errors.insert(
                "paymentToken".into(),
                "must be 1 to 64 letters, digits or '_' (e.g. tok_visa)".into(),
            );
            None
        }
        Some(other) => {
            errors.insert(
                "paymentToken".into(),
                format!("must be a string, got {}", type_name(other)),
            );
            None
        }
    };

    let items = match fields.get("items") {
        None | Some(Value::Null) => {
            errors.insert("items".into(), "at least one item is required".into());
            None
        }
        Some(Value::Array(items)) if items.is_empty() => {
            errors.insert("items".into(), "at least one item is required".into());
            None
        }
        Some(Value::Array(items)) if items.len() > rules.max_lines => {
            errors.insert(
                "items".into(),
                format!(
                    "at most {} lines per order, got {}",
                    rules.max_lines,
                    items.len()
                ),
            );
            None
        }
        Some(Value::Array(items)) => parse_lines(items, rules, &mut errors),
        Some(other) => {
            errors.insert(
                "items".into(),
                format!("must be an array, got {}", type_name(other)),
            );
            None
        }
    };

    let shipping_address = match fields.get("shippingAddress") {
        None | Some(Value::Null) => None,
        Some(value) => match ShippingAddress::deserialize(value) {
            Ok(address) => {
                errors.extend(address.problems());
                Some(address)
            }
            Err(e) => {
                errors.insert("shippingAddress".into(), e.to_string());
                None
            }
        },
    };

    match (customer_id, items, payment_token) {
        (Some(customer_id), Some(items), Some(payment_token)) if errors.is_empty() => {
            Ok(NewOrder {
                customer_id,
                items,
                payment_token,
                shipping_address,
            })
        }
        _ => Err(errors),
    }
}

fn parse_lines(items: &[Value], rules: &Rules, errors: &mut FieldErrors) -> Option<Vec<OrderLine>> {
    let mut lines = Vec::with_capacity(items.len());
    // Two lines of one product are one line of their total quantity (each line is bounded on
    // its own), so every list the document admits is accepted; position of the first line.
    let mut line_of: HashMap<String, usize> = HashMap::new();
    let before = errors.len();
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("items[{i}].{field}");
        let Value::Object(item) = item else {
            errors.insert(
                format!("items[{i}]"),
                format!("must be an object, got {}", type_name(item)),
            );
            continue;
        };
        for name in item.keys() {
            if !matches!(name.as_str(), "productId" | "quantity") {
                errors.insert(at(name), "unknown field".into());
            }
        }
        let product = match item.get("productId") {
            Some(Value::String(s)) => match ProductId::try_from(s.as_str()) {
                Ok(p) => Some(p),
                Err(e) => {
                    errors.insert(at("productId"), e.0);
                    None
                }
            },
            None | Some(Value::Null) => {
                errors.insert(at("productId"), "is required".into());
                None
            }
            Some(other) => {
                errors.insert(
                    at("productId"),
                    format!("must be a string, got {}", type_name(other)),
                );
                None
            }
        };
        let quantity = match item.get("quantity") {
            Some(Value::Number(n)) => match oms_contracts::api::whole_number(n) {
                Some(q) if q < 1 => {
                    errors.insert(at("quantity"), "must be at least 1".into());
                    None
                }
                Some(q) if q > i64::from(rules.max_quantity) => {
                    errors.insert(
                        at("quantity"),
                        format!("must be at most {}", rules.max_quantity),
                    );
                    None
                }
                Some(q) => u32::try_from(q).ok(),
                None if n.is_u64() => {
                    errors.insert(
                        at("quantity"),
                        format!("must be at most {}", rules.max_quantity),
                    );
                    None
                }
                None => {
                    errors.insert(at("quantity"), "must be a whole number".into());
                    None
                }
            },
            None | Some(Value::Null) => {
                errors.insert(at("quantity"), "is required".into());
                None
            }
            Some(other) => {
                errors.insert(
                    at("quantity"),
                    format!("must be a whole number, got {}", type_name(other)),
                );
                None
            }
        };
        if let (Some(product_id), Some(quantity)) = (product, quantity) {
            match line_of.get(product_id.as_str()) {
                Some(&first) => {
                    let line: &mut OrderLine = &mut lines[first];
                    match line.quantity.checked_add(quantity) {
                        Some(total) => line.quantity = total,
                        None => {
                            errors
                                .insert(at("quantity"), format!("total of {product_id} too large"));
                        }
                    }
                }
                None => {
                    line_of.insert(product_id.as_str().to_owned(), lines.len());
                    lines.push(OrderLine {
                        product_id,
                        quantity,
                    });
                }
            }
        }
    }
    (errors.len() == before).then_some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shipping_address_is_checked_field_by_field() {
        let ok = parse_order(
            br#"{"items":[{"productId":"mouse-01","quantity":1}],
                "shippingAddress":{"line1":"Hauptstr. 1","city":"Berlin","postalCode":"10115","country":"DE"}}"#,
            &Rules::default(),
        )
        .expect("valid order");
        assert_eq!(
            ok.shipping_address.map(|a| a.country),
            Some("DE".to_owned())
        );
        let e = errors_of(
            r#"{"items":[{"productId":"mouse-01","quantity":1}],
                "shippingAddress":{"line1":"","city":"Berlin","postalCode":"10115","country":"Germany"}}"#,
        );
        assert!(e.contains_key("shippingAddress.line1"), "{e:?}");
        assert!(e.contains_key("shippingAddress.country"), "{e:?}");
        let e = errors_of(
            r#"{"items":[{"productId":"mouse-01","quantity":1}],"shippingAddress":{"city":"Berlin"}}"#,
        );
        assert!(
            e.get("shippingAddress")
                .is_some_and(|r| r.contains("missing field")),
            "{e:?}"
        );
        let e =
            errors_of(r#"{"items":[{"productId":"mouse-01","quantity":1}],"shippingAddress":7}"#);
        assert!(e.contains_key("shippingAddress"), "{e:?}");
    }

    fn errors_of(body: &str) -> FieldErrors {
        match parse_order(body.as_bytes(), &Rules::default()) {
            Ok(o) => panic!("accepted {body}: {o:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_minimal_order_gets_the_defaults() {
        let order = parse_order(
            br#"{"items": [{"productId": "mouse-01", "quantity": 2}]}"#,
            &Rules::default(),
        )
        .expect("valid");
        assert_eq!(order.customer_id.as_str(), "guest");
        assert_eq!(order.payment_token, "tok_visa");
        assert_eq!(order.items.len(), 1);
        assert_eq!(order.items[0].quantity, 2);
    }

    #[test]
    fn every_rule_names_its_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("{", "body", "malformed JSON"),
            ("[]", "body", "expected a JSON object"),
            ("{}", "items", "at least one item"),
            (r#"{"items": []}"#, "items", "at least one item"),
            (r#"{"items": {}}"#, "items", "must be an array"),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 0}]}"#,
                "items[0].quantity",
                "at least 1",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": -3}]}"#,
                "items[0].quantity",
                "at least 1",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 1001}]}"#,
                "items[0].quantity",
                "at most 1000",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 18446744073709551615}]}"#,
                "items[0].quantity",
                "at most",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 1.5}]}"#,
                "items[0].quantity",
                "whole number",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": "2"}]}"#,
                "items[0].quantity",
                "got a string",
            ),
            (
                r#"{"items": [{"productId": "mouse-01"}]}"#,
                "items[0].quantity",
                "is required",
            ),
            (
                r#"{"items": [{"quantity": 1}]}"#,
                "items[0].productId",
                "is required",
            ),
            (
                r#"{"items": [{"productId": 7, "quantity": 1}]}"#,
                "items[0].productId",
                "must be a string",
            ),
            (
                r#"{"items": [{"productId": "Mouse 01", "quantity": 1}]}"#,
                "items[0].productId",
                "product id",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 1, "price": 1}]}"#,
                "items[0].price",
                "unknown field",
            ),
            (
                r#"{"items": ["mouse-01"]}"#,
                "items[0]",
                "must be an object",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 1}], "total": 5}"#,
                "total",
                "unknown field",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 1}], "customerId": 5}"#,
                "customerId",
                "must be a string",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 1}], "customerId": ""}"#,
                "customerId",
                "customer",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 1}], "paymentToken": "tok visa"}"#,
                "paymentToken",
                "letters",
            ),
            (
                r#"{"items": [{"productId": "mouse-01", "quantity": 1}], "paymentToken": true}"#,
                "paymentToken",
                "must be a string",
            ),
        ];
        for (body, field, needle) in cases {
            let errors = errors_of(body);
            let reason = errors
                .get(*field)
                .unwrap_or_else(|| panic!("{body}: no error for {field}: {errors:?}"));
            assert!(
                reason.to_lowercase().contains(&needle.to_lowercase()),
                "{body}: {field}: {reason:?} lacks {needle:?}"
            );
        }
    }

    #[test]
    fn lines_of_one_product_become_one_line_of_their_total() {
        let order = parse_order(
            br#"{"items": [{"productId": "mouse-01", "quantity": 2}, {"productId": "kb-02", "quantity": 1}, {"productId": "mouse-01", "quantity": 1000}]}"#,
            &Rules::default(),
        )
        .expect("valid");
        let lines: Vec<(&str, u32)> = order
            .items
            .iter()
            .map(|l| (l.product_id.as_str(), l.quantity))
            .collect();
        assert_eq!(lines, [("mouse-01", 1002), ("kb-02", 1)]);
        let huge = Rules {
            max_quantity: u32::MAX,
            ..Rules::default()
        };
        let body = format!(
            r#"{{"items": [{{"productId": "a", "quantity": {m}}}, {{"productId": "a", "quantity": {m}}}]}}"#,
            m = u32::MAX
        );
        let errors = parse_order(body.as_bytes(), &huge).expect_err("overflow");
        assert!(
            errors["items[1].quantity"].contains("too large"),
            "{errors:?}"
        );
    }

    #[test]
    fn too_many_lines_are_refused() {
        let items: Vec<String> = (0..51)
            .map(|i| format!(r#"{{"productId": "p-{i}", "quantity": 1}}"#))
            .collect();
        let errors = errors_of(&format!(r#"{{"items": [{}]}}"#, items.join(",")));
        assert!(errors["items"].contains("at most 50"), "{errors:?}");
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let errors = errors_of(
            r#"{"items": [{"productId": "mouse-01", "quantity": 0}, {"productId": "", "quantity": 1}], "x": 1}"#,
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn the_canonical_form_ignores_layout_but_not_content() {
        let rules = Rules::default();
        let a = parse_order(
            br#"{"items":[{"productId":"mouse-01","quantity":2}]}"#,
            &rules,
        );
        let b = parse_order(
            br#"{ "paymentToken": "tok_visa", "items": [ { "quantity": 2, "productId": "mouse-01" } ] }"#,
            &rules,
        );
        let c = parse_order(
            br#"{"items":[{"productId":"mouse-01","quantity":3}]}"#,
            &rules,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
