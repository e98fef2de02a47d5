//! Value types the message payloads are built from.
//!
//! Every type validates itself when it is deserialized, so a payload that decodes is well formed.
//! Money is integer minor units plus an ISO 4217 currency code; floating point never appears.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Identifier of an order (a UUID, v7 when created by the order service). Also the Kafka key of
/// every message about that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub Uuid);

impl OrderId {
    /// A new, time-ordered order id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for OrderId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Readable catalog identifier of a product, such as `mouse-01`: 1 to 64 characters of lowercase
/// ASCII letters, digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProductId(String);

impl ProductId {
    /// Longest accepted product id.
    pub const MAX_LEN: usize = 64;

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProductId {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let ok_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
        if value.is_empty() || value.len() > Self::MAX_LEN {
            return Err(InvalidValue(format!(
                "product id must be 1 to {} characters",
                Self::MAX_LEN
            )));
        }
        if !value.chars().all(ok_char) {
            return Err(InvalidValue(
                "product id may only hold lowercase letters, digits, '-', '_' and '.'".into(),
            ));
        }
        Ok(Self(value))
    }
}

impl TryFrom<&str> for ProductId {
    type Error = InvalidValue;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::try_from(value.to_owned())
    }
}

impl From<ProductId> for String {
    fn from(value: ProductId) -> Self {
        value.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifier of a customer: 1 to 128 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CustomerId(String);

impl CustomerId {
    /// Longest accepted customer id.
    pub const MAX_LEN: usize = 128;

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CustomerId {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        // Blank: Unicode white space, and the byte-order mark JSON Schema's `\s` counts too.
        let blank = |c: char| c.is_whitespace() || c == '\u{feff}';
        if value.chars().all(blank) || value.chars().count() > Self::MAX_LEN {
            return Err(InvalidValue(format!(
                "customer id must be 1 to {} characters",
                Self::MAX_LEN
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(InvalidValue(
                "customer id must not hold control characters".into(),
            ));
        }
        Ok(Self(value))
    }
}

impl TryFrom<&str> for CustomerId {
    type Error = InvalidValue;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::try_from(value.to_owned())
    }
}

impl From<CustomerId> for String {
    fn from(value: CustomerId) -> Self {
        value.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// ISO 4217 currency code: three uppercase ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, example = "EUR", pattern = "^[A-Z]{3}$")
)]
pub struct Currency([u8; 3]);

impl Currency {
    /// Euro, the catalog's default currency.
    pub const EUR: Currency = Currency(*b"EUR");

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII uppercase letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::try_from(value.as_str())
    }
}

impl TryFrom<&str> for Currency {
    type Error = InvalidValue;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        match value.as_bytes() {
            [a, b, c] if value.bytes().all(|b| b.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(InvalidValue(format!(
                "currency must be an ISO 4217 code of three uppercase letters, got {value:?}"
            ))),
        }
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money in minor units (cents) of a currency. Never negative on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "MoneyWire")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Money {
    /// Amount in minor units of `currency`.
    pub amount_minor: i64,
    /// ISO 4217 currency.
    pub currency: Currency,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MoneyWire {
    amount_minor: i64,
    currency: Currency,
}

impl TryFrom<MoneyWire> for Money {
    type Error = InvalidValue;

    fn try_from(value: MoneyWire) -> Result<Self, Self::Error> {
        Money::new(value.amount_minor, value.currency)
    }
}

impl Money {
    /// Money from stored parts: an amount and a currency code (as a database row holds them).
    pub fn from_parts(amount_minor: i64, currency: &str) -> Result<Self, InvalidValue> {
        Money::new(amount_minor, Currency::try_from(currency)?)
    }

    /// Money of a non-negative amount.
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, InvalidValue> {
        if amount_minor < 0 {
            return Err(InvalidValue(format!(
                "money amount must not be negative, got {amount_minor}"
            )));
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }

    /// `self * factor`, or `None` on overflow.
    pub fn checked_mul(self, factor: u32) -> Option<Money> {
        self.amount_minor
            .checked_mul(i64::from(factor))
            .map(|amount_minor| Money {
                amount_minor,
                currency: self.currency,
            })
    }

    /// `self + other`, or `None` on overflow or when the currencies differ.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        self.amount_minor
            .checked_add(other.amount_minor)
            .map(|amount_minor| Money {
                amount_minor,
                currency: self.currency,
            })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:02} {}",
            self.amount_minor / 100,
            self.amount_minor % 100,
            self.currency
        )
    }
}

/// A requested order line: a product and a quantity of at least one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderLine {
    /// Catalog product.
    pub product_id: ProductId,
    /// Units wanted, at least 1.
    pub quantity: u32,
}

/// An order line priced from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PricedLine {
    /// Catalog product.
    pub product_id: ProductId,
    /// Units reserved, at least 1.
    pub quantity: u32,
    /// Catalog price of one unit.
    pub unit_price: Money,
}

/// Where an order ships to. Deliberately simple: the simulated carrier keys its rules on two
/// test values, like the payment gateway's tokens (country `XX`: a region it does not serve;
/// postal code `00000`: an address it cannot deliver to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShippingAddress {
    /// Street and number (1 to 200 characters).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub line1: String,
    /// City (1 to 100 characters).
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 100))]
    pub city: String,
    /// Postal code (1 to 16 letters, digits, spaces or dashes).
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 16, pattern = "^[A-Za-z0-9 -]{1,16}$")
    )]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, upper case.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Z]{2}$"))]
    pub country: String,
}

impl ShippingAddress {
    /// Reasons per field (`shippingAddress.city`, ...) why this address is malformed.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut text = |field: &str, value: &str, max: usize| {
            let n = value.chars().count();
            if value.trim().is_empty() || n > max || value.chars().any(char::is_control) {
                out.push((
                    format!("shippingAddress.{field}"),
                    format!("must be 1 to {max} characters of visible text"),
                ));
            }
        };
        text("line1", &self.line1, 200);
        text("city", &self.city, 100);
        let postal_ok = (1..=16).contains(&self.postal_code.len())
            && self
                .postal_code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-');
        if !postal_ok {
            out.push((
                "shippingAddress.postalCode".into(),
                "must be 1 to 16 letters, digits, spaces or dashes".into(),
            ));
        }
        if !(self.country.len() == 2 && self.country.chars().all(|c| c.is_ascii_uppercase())) {
            out.push((
                "shippingAddress.country".into(),
                "must be an ISO 3166-1 alpha-2 code such as DE".into(),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipping_addresses_are_checked_field_by_field() {
        let good = ShippingAddress {
            line1: "Hauptstraße 1".into(),
            city: "Berlin".into(),
            postal_code: "10115".into(),
            country: "DE".into(),
        };
        assert!(good.problems().is_empty());
        let bad = ShippingAddress {
            line1: " ".into(),
            city: "x".repeat(101),
            postal_code: "10_115".into(),
            country: "de".into(),
        };
        let fields: Vec<String> = bad.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "shippingAddress.line1",
                "shippingAddress.city",
                "shippingAddress.postalCode",
                "shippingAddress.country"
            ]
        );
    }

    #[test]
    fn product_ids_are_validated() {
        assert!(ProductId::try_from("mouse-01").is_ok());
        assert!(ProductId::try_from("").is_err());
        assert!(ProductId::try_from("Mouse").is_err());
        assert!(ProductId::try_from("a b").is_err());
        assert!(ProductId::try_from("x".repeat(65)).is_err());
    }

    #[test]
    fn customer_ids_are_text_with_something_visible() {
        for ok in [
            "alice",
            "Ünal Yılmaz",
            " bob ",
            "ß\u{00a1}",
            &"é".repeat(128),
        ] {
            assert!(CustomerId::try_from(ok).is_ok(), "{ok:?}");
        }
        let long = "é".repeat(129);
        for bad in [
            "",
            "   ",
            "\u{3000}\u{feff}",
            "a\u{9c}b",
            "a\nb",
            "\u{7f}",
            &long,
        ] {
            assert!(CustomerId::try_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn currency_must_be_three_uppercase_letters() {
        assert_eq!(Currency::try_from("EUR"), Ok(Currency::EUR));
        for bad in ["eur", "EU", "EURO", "E1R", ""] {
            assert!(Currency::try_from(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn negative_money_is_refused_on_the_wire() {
        let err = serde_json::from_str::<Money>(r#"{"amountMinor":-1,"currency":"EUR"}"#);
        assert!(err.is_err());
        let ok: Money = serde_json::from_str(r#"{"amountMinor":2999,"currency":"EUR"}"#)
            .expect("valid money decodes");
        assert_eq!(ok.to_string(), "29.99 EUR");
    }

    #[test]
    fn money_arithmetic_checks_overflow_and_currency() {
        let eur = Money::new(i64::MAX, Currency::EUR).expect("non-negative");
        assert_eq!(eur.checked_mul(2), None);
        let usd = Money::new(1, Currency::try_from("USD").expect("valid")).expect("valid");
        assert_eq!(
            Money::new(1, Currency::EUR)
                .expect("valid")
                .checked_add(usd),
            None
        );
    }
}
