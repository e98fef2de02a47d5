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

/// Declares a wire enum: a unit enum whose values travel as text (JSON, database columns, Kafka
/// headers, query strings, command-line arguments). Each variant's wire name is written once,
/// and serde (`#[serde(rename)]`), `as_str`, `Display` and `FromStr` all use it; `ALL` lists
/// every value in declaration order. It also declares the error `FromStr` answers with for any
/// other name, which names the allowed ones.
///
/// ```text
/// wire_enum! {
///     /// Where an order stands.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
///     pub enum OrderStatus {
///         /// Accepted; the saga runs.
///         Pending = "PENDING",
///         /// The customer has it.
///         Delivered = "DELIVERED",
///     }
///     /// A name that is no order status.
///     pub struct UnknownOrderStatus("order status", any_case);
/// }
/// ```
///
/// The enum derives `Clone` and `Copy` (listed by the caller, with whatever else it needs); the
/// macro derives `Serialize` and `Deserialize` itself, so they are never listed. The error is a
/// `struct Name(pub String)` holding the refused text; its message reads `unknown <noun> "x"
/// (expected one of A, B, C)`. Options after the noun:
/// - `any_case`: `FromStr` also accepts the names in any ASCII case (serde never does: what
///   travels is exact);
/// - `all_by_ref`: `ALL` is a `&'static [Self]` rather than an array.
///
/// A wire name is matched as a `tt`, not a `literal`: a `literal` fragment reaches derives
/// wrapped in an invisible group, and utoipa's `ToSchema` then ignores the `#[serde(rename)]`
/// (the OpenAPI documents would list `Pending` instead of `PENDING`).
macro_rules! wire_enum {
    (@any_case) => { false };
    (@any_case any_case $($rest:ident)*) => { true };
    (@any_case all_by_ref $($rest:ident)*) => { $crate::values::wire_enum!(@any_case $($rest)*) };

    (@all [$($variant:ident)+]) => {
        /// Every value, in declaration order.
        pub const ALL: [Self; [$(stringify!($variant)),+].len()] = [$(Self::$variant),+];
    };
    (@all [$($variant:ident)+] all_by_ref $($rest:ident)*) => {
        /// Every value, in declaration order.
        pub const ALL: &'static [Self] = &[$(Self::$variant),+];
    };
    (@all [$($variant:ident)+] any_case $($rest:ident)*) => {
        $crate::values::wire_enum!(@all [$($variant)+] $($rest)*);
    };

    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:tt ),+ $(,)?
        }
        $(#[$emeta:meta])*
        $evis:vis struct $error:ident($what:literal $(, $option:ident)* $(,)?);
    ) => {
        $(#[$meta])*
        #[derive(::serde::Serialize, ::serde::Deserialize)]
        $vis enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $wire)]
                $variant,
            )+
        }

        impl $name {
            $crate::values::wire_enum!(@all [$($variant)+] $($option)*);

            /// Whether `FromStr` ignores ASCII case.
            const ANY_CASE: bool = $crate::values::wire_enum!(@any_case $($option)*);

            /// The wire name: what JSON, the database and Kafka carry.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $error;

            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    $($wire => Ok(Self::$variant),)+
                    _ if Self::ANY_CASE => Self::ALL
                        .iter()
                        .copied()
                        .find(|v| v.as_str().eq_ignore_ascii_case(s))
                        .ok_or_else(|| $error(s.to_owned())),
                    _ => Err($error(s.to_owned())),
                }
            }
        }

        $(#[$emeta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        $evis struct $error(pub String);

        impl ::std::fmt::Display for $error {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "unknown {} {:?} (expected one of ", $what, self.0)?;
                for (i, value) in $name::ALL.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    f.write_str(value.as_str())?;
                }
                f.write_str(")")
            }
        }

        impl ::std::error::Error for $error {}
    };
}
pub(crate) use wire_enum;

/// Checks a [`wire_enum!`] type: every value round-trips through its name, `Display` and serde,
/// names are distinct, other case is accepted by `FromStr` only when `any_case` (by serde never),
/// and an unknown name is refused with an error that names every allowed one.
#[cfg(test)]
pub(crate) fn check_wire_enum<T>(all: &[T], as_str: fn(T) -> &'static str, any_case: bool)
where
    T: Copy + fmt::Debug + PartialEq + fmt::Display + std::str::FromStr + Serialize,
    T: serde::de::DeserializeOwned,
    <T as std::str::FromStr>::Err: fmt::Debug + fmt::Display,
{
    use serde_json::{json, Value};
    let names: std::collections::BTreeSet<&str> = all.iter().map(|v| as_str(*v)).collect();
    assert_eq!(names.len(), all.len(), "wire names repeat: {names:?}");
    for &v in all {
        let name = as_str(v);
        assert_eq!(name.parse::<T>().ok(), Some(v), "{name}");
        assert_eq!(v.to_string(), name);
        assert_eq!(serde_json::to_value(v).ok(), Some(json!(name)));
        assert_eq!(serde_json::from_value::<T>(json!(name)).ok(), Some(v));
        for other in [name.to_ascii_lowercase(), name.to_ascii_uppercase()] {
            if other == name {
                continue;
            }
            assert_eq!(other.parse::<T>().ok(), any_case.then_some(v), "{other}");
            assert!(serde_json::from_value::<T>(Value::String(other)).is_err());
        }
    }
    for unknown in ["", "no such value", "PENDING.", " admin"] {
        if names.contains(unknown) {
            continue;
        }
        let refused = unknown.parse::<T>().err().map(|e| e.to_string());
        let message = refused.unwrap_or_else(|| panic!("{unknown:?} was accepted"));
        assert!(message.contains(&format!("{unknown:?}")), "{message}");
        let expected = names_in_order(all, as_str);
        assert!(
            message.ends_with(&format!("(expected one of {expected})")),
            "{message}"
        );
        assert!(serde_json::from_value::<T>(json!(unknown)).is_err());
    }
}

#[cfg(test)]
fn names_in_order<T: Copy>(all: &[T], as_str: fn(T) -> &'static str) -> String {
    all.iter()
        .map(|v| as_str(*v))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    wire_enum! {
        /// A wire enum of every shape the macro takes: names that are no identifier, mixed case.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Sample {
            /// Dotted.
            Dotted = "sample.dotted-name",
            /// Upper case.
            Upper = "UPPER_CASE",
            /// Lower case.
            Lower = "lower",
        }
        /// No sample.
        struct UnknownSample("sample");
    }

    wire_enum! {
        /// The same, parsed in any case and listed by reference.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Loose {
            /// One.
            One = "ONE",
            /// Two.
            Two = "two",
        }
        /// No loose one.
        struct UnknownLoose("loose one", any_case, all_by_ref);
    }

    #[test]
    fn wire_enums_round_trip_by_their_one_name() {
        check_wire_enum(&Sample::ALL, Sample::as_str, false);
        check_wire_enum(Loose::ALL, Loose::as_str, true);
        assert_eq!(Sample::ALL, [Sample::Dotted, Sample::Upper, Sample::Lower]);
        assert_eq!(
            "nope".parse::<Sample>().map_err(|e| e.to_string()),
            Err(
                r#"unknown sample "nope" (expected one of sample.dotted-name, UPPER_CASE, lower)"#
                    .to_owned()
            )
        );
        assert_eq!("Sample.Dotted-Name".parse::<Sample>().ok(), None);
        assert_eq!("tWo".parse::<Loose>().ok(), Some(Loose::Two));
        assert_eq!(
            "three".parse::<Loose>(),
            Err(UnknownLoose("three".to_owned()))
        );
        assert_eq!(
            serde_json::to_string(&[Sample::Dotted, Sample::Lower]).ok(),
            Some(r#"["sample.dotted-name","lower"]"#.to_owned())
        );
    }

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
