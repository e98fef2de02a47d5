//! The payment gateway behind a trait, and the simulated one the OMS runs with.
//!
//! The simulation is deterministic by token, like Stripe's test cards: `tok_visa` and
//! `tok_mastercard` authorize, `tok_chargeDeclined` and `tok_insufficientFunds` decline with that
//! reason, anything else is an invalid token. Fault knobs, changeable at run time, add a random
//! decline rate, latency and a transient error rate on top.

use std::future::Future;
use std::time::Duration;

use oms_contracts::messages::DeclineReason;
use oms_contracts::Money;

/// What the gateway is asked.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// Amount to hold.
    pub amount: Money,
    /// Payment method token.
    pub token: String,
}

/// What the gateway decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The amount is held.
    Approved,
    /// Nothing was charged.
    Declined(DeclineReason),
}

/// The gateway could not answer this time (worth retrying).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gateway unavailable: {0}")]
pub struct Transient(pub String);

/// A payment gateway.
pub trait Gateway: Send + Sync + 'static {
    /// Authorizes (holds) an amount.
    fn authorize(
        &self,
        request: &AuthorizeRequest,
    ) -> impl Future<Output = Result<Decision, Transient>> + Send;
}

/// Fault knobs of the simulated gateway (the API type, shared with omsctl).
pub use oms_contracts::api::GatewayKnobs as Knobs;

/// The decision a token stands for, before any knob.
pub fn decide_by_token(token: &str) -> Decision {
    match token {
        "tok_visa" | "tok_mastercard" | "tok_amex" => Decision::Approved,
        "tok_chargeDeclined" => Decision::Declined(DeclineReason::CardDeclined),
        "tok_insufficientFunds" => Decision::Declined(DeclineReason::InsufficientFunds),
        _ => Decision::Declined(DeclineReason::InvalidToken),
    }
}

/// The simulated gateway, with knobs shared with the HTTP API.
#[derive(Debug, Clone, Default)]
pub struct Simulated {
    knobs: oms_runtime::knobs::Shared<Knobs>,
}

impl Simulated {
    /// Current knobs.
    pub fn knobs(&self) -> Knobs {
        self.knobs.get()
    }

    /// Replaces the knobs (validate them first).
    pub fn set_knobs(&self, knobs: Knobs) {
        self.knobs.set(knobs);
    }
}

impl Gateway for Simulated {
    async fn authorize(&self, request: &AuthorizeRequest) -> Result<Decision, Transient> {
        let knobs = self.knobs();
        if knobs.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(knobs.latency_ms)).await;
        }
        if knobs.error_rate > 0.0 && fastrand::f64() < knobs.error_rate {
            return Err(Transient("simulated transient error".into()));
        }
        match decide_by_token(&request.token) {
            Decision::Approved
                if knobs.decline_rate > 0.0 && fastrand::f64() < knobs.decline_rate =>
            {
                Ok(Decision::Declined(DeclineReason::CardDeclined))
            }
            decision => Ok(decision),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_contracts::Currency;

    fn request(token: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            amount: Money::new(1000, Currency::EUR).unwrap_or_else(|_| unreachable!()),
            token: token.into(),
        }
    }

    #[tokio::test]
    async fn tokens_decide_like_test_cards() {
        let g = Simulated::default();
        assert_eq!(
            g.authorize(&request("tok_visa")).await,
            Ok(Decision::Approved)
        );
        assert_eq!(
            g.authorize(&request("tok_chargeDeclined")).await,
            Ok(Decision::Declined(DeclineReason::CardDeclined))
        );
        assert_eq!(
            g.authorize(&request("tok_insufficientFunds")).await,
            Ok(Decision::Declined(DeclineReason::InsufficientFunds))
        );
        assert_eq!(
            g.authorize(&request("tok_bogus")).await,
            Ok(Decision::Declined(DeclineReason::InvalidToken))
        );
    }

    #[tokio::test]
    async fn knobs_at_one_decline_or_fail_every_call() {
        let g = Simulated::default();
        g.set_knobs(Knobs {
            decline_rate: 1.0,
            ..Knobs::default()
        });
        assert_eq!(
            g.authorize(&request("tok_visa")).await,
            Ok(Decision::Declined(DeclineReason::CardDeclined))
        );
        g.set_knobs(Knobs {
            error_rate: 1.0,
            ..Knobs::default()
        });
        assert!(g.authorize(&request("tok_visa")).await.is_err());
    }
}
