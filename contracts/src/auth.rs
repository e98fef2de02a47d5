//! Who may call the HTTP APIs: the roles a bearer token carries and the claims of the tokens the
//! local stack mints. Services validate tokens (`oms-runtime`'s `auth`); `omsctl auth token` and
//! the tests mint them with these claims.

use serde::{Deserialize, Serialize};

/// The issuer (`iss`) of tokens minted from the local stack's secret; the services' default.
pub const LOCAL_ISSUER: &str = "oms-local";

/// The audience (`aud`) every OMS service expects by default.
pub const AUDIENCE: &str = "oms";

/// The claim that carries the role.
pub const ROLE_CLAIM: &str = "role";

crate::values::wire_enum! {
    /// What a caller may do. Ordered: from `customer` on, each role may do what the ones before
    /// it may; `metrics` stands apart (it reads `/metrics` and nothing else, not even what a
    /// customer may). `ALL` lists them least powerful first.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
    pub enum Role {
        /// A scraper (Prometheus): `GET /metrics` only.
        Metrics = "metrics",
        /// A shopper: the token's subject is its customer id. Places orders for itself, reads its
        /// own orders and notifications and the catalog; anything else is forbidden.
        Customer = "customer",
        /// Operations staff on call: reads everything (orders, sagas, payments, reservations,
        /// shipments, notifications, outbox, metrics) and repairs a saga in flight (retry its
        /// current step, or cancel it as `OPERATOR_CANCELLED`), each action recorded with the
        /// token's subject. Changes no data of its own accord: no stock, no fault knobs, no
        /// orders.
        Operator = "operator",
        /// Also changes stock and the payment gateway's and carrier's fault knobs, and places
        /// orders for any customer.
        Admin = "admin",
    }
    /// A role name that is not one of [`Role::ALL`] (names are lower case, exactly).
    pub struct UnknownRole("role");
}

/// The claims of a token minted for the OMS (`omsctl auth token`): registered claims plus the
/// role. A token from another issuer needs the same `sub`, `role`, `iss`, `aud` and `exp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the customer id for [`Role::Customer`]; a user or client name otherwise.
    pub sub: String,
    /// What the bearer may do.
    pub role: Role,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
}

impl Claims {
    /// Claims for the local stack: issuer [`LOCAL_ISSUER`], audience [`AUDIENCE`], valid from
    /// `now` (seconds since the epoch) for `ttl_secs`.
    pub fn local(sub: &str, role: Role, now: u64, ttl_secs: u64) -> Self {
        Self {
            sub: sub.to_owned(),
            role,
            iss: LOCAL_ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl_secs),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power_and_round_trip_by_name() {
        crate::values::check_wire_enum(&Role::ALL, Role::as_str, false);
        assert_eq!(
            serde_json::to_string(&Role::ALL).unwrap_or_default(),
            r#"["metrics","customer","operator","admin"]"#
        );
        assert_eq!(
            "root".parse::<Role>().map_err(|e| e.to_string()),
            Err(
                r#"unknown role "root" (expected one of metrics, customer, operator, admin)"#
                    .to_owned()
            )
        );
        assert!(Role::Customer < Role::Operator && Role::Operator < Role::Admin);
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(
                serde_json::to_value(r).ok(),
                Some(serde_json::json!(r.as_str()))
            );
        }
        assert!("root".parse::<Role>().is_err());
        assert!("Admin".parse::<Role>().is_err());
    }

    #[test]
    fn local_claims_expire_after_their_ttl() {
        let c = Claims::local("c-1", Role::Customer, 1_000, 3_600);
        assert_eq!((c.iat, c.exp), (1_000, 4_600));
        assert_eq!((c.iss.as_str(), c.aud.as_str()), (LOCAL_ISSUER, AUDIENCE));
        assert_eq!(Claims::local("x", Role::Admin, u64::MAX, 1).exp, u64::MAX);
    }
}
