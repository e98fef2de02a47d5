//! The load generator of `order create --count` and of drills: N orders, paced at a rate or all at
//! once, at most C requests in flight, each with lines from a mix and a payment token from a list.
//! (`omsctl bench` measures with its own open/closed loop and HDR histograms.)

use std::future::Future;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use oms_contracts::api::{CreateOrder, OrderAccepted};
use serde::Deserialize;

use crate::ctx::{self, Ctx};
use oms_contracts::ServiceId as Svc;

/// Which lines each order gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lines {
    /// Every order has these lines.
    All(Vec<(String, u32)>),
    /// Each order has one of these lines, chosen at random.
    OneOf(Vec<(String, u32)>),
    /// One or two random products of the catalog, one or two units each.
    FromCatalog(Vec<String>),
}

/// A load to place.
#[derive(Debug, Clone)]
pub struct Load {
    /// How many orders.
    pub count: usize,
    /// Orders per second (`None`: as fast as `concurrency` allows).
    pub rate: Option<f64>,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Their lines.
    pub lines: Lines,
    /// Payment tokens to choose from (empty: the service's default).
    pub tokens: Vec<String>,
    /// Who orders.
    pub customer: Customer,
}

/// The customer of each order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Customer {
    /// The service's default customer.
    Default,
    /// This one for every order.
    Fixed(String),
    /// `PREFIX-i` for order `i`.
    Numbered(String),
}

impl Load {
    /// The body of order number `i`.
    pub fn body(&self, i: usize) -> CreateOrder {
        let lines = match &self.lines {
            Lines::All(lines) => lines.clone(),
            Lines::OneOf(lines) => lines
                .get(fastrand::usize(0..lines.len().max(1)))
                .cloned()
                .into_iter()
                .collect(),
            Lines::FromCatalog(products) if products.is_empty() => Vec::new(),
            Lines::FromCatalog(products) => {
                let mut lines: Vec<(String, u32)> = Vec::new();
                for _ in 0..1 + fastrand::usize(0..2) {
                    let p = &products[fastrand::usize(0..products.len())];
                    if !lines.iter().any(|(q, _)| q == p) {
                        lines.push((p.clone(), 1 + fastrand::u32(0..2)));
                    }
                }
                lines
            }
        };
        let token = (!self.tokens.is_empty())
            .then(|| self.tokens[fastrand::usize(0..self.tokens.len())].as_str());
        let customer = match &self.customer {
            Customer::Default => None,
            Customer::Fixed(c) => Some(c.clone()),
            Customer::Numbered(p) => Some(format!("{p}-{i}")),
        };
        crate::order::body(&lines, customer.as_deref(), token)
    }
}

/// Why an order was not accepted.
pub type Refusal = String;

/// Places the orders of `load` and runs `then` on each accepted one (following it to its
/// outcome, say), `load.concurrency` at a time; yields each result as it completes.
pub fn place<'a, T, F, Fut>(
    ctx: &'a Ctx,
    load: &'a Load,
    then: F,
) -> impl Stream<Item = Result<T, Refusal>> + 'a
where
    T: 'a,
    F: Fn(OrderAccepted) -> Fut + 'a,
    Fut: Future<Output = Result<T, Refusal>> + 'a,
{
    let started = Instant::now();
    let interval = load.rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let then = std::sync::Arc::new(then);
    futures::stream::iter(0..load.count)
        .map(move |i| {
            let then = std::sync::Arc::clone(&then);
            async move {
                if let Some(every) = interval {
                    let due = started + every.mul_f64(i as f64);
                    tokio::time::sleep_until(due.into()).await;
                }
                let accepted = place_one(ctx, &load.body(i)).await?;
                then(accepted).await
            }
        })
        .buffer_unordered(load.concurrency.max(1))
}

/// How often a placement whose answer was lost is sent again (with the same key).
const PLACE_ATTEMPTS: u32 = 3;

/// Places one order: the service's acceptance, or why not. Each order carries its own
/// `Idempotency-Key`, so a request whose answer was lost (the replica died mid-request, a
/// timeout) is sent again, up to three times, and can never make a second order.
pub async fn place_one(ctx: &Ctx, body: &CreateOrder) -> Result<OrderAccepted, Refusal> {
    let key = uuid::Uuid::now_v7().to_string();
    let headers = [("Idempotency-Key", key.as_str())];
    let mut attempt = 1;
    loop {
        match ctx.post(Svc::Order, "/orders", body, &headers).await {
            Ok((status, answer)) if status.is_success() => {
                return OrderAccepted::deserialize(&answer)
                    .map_err(|e| format!("unreadable answer: {e}"))
            }
            Ok((status, answer)) => {
                return Err(ctx::api_failure(Svc::Order, status, &answer)
                    .error
                    .to_string())
            }
            Err(_) if attempt < PLACE_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(_) => return Err("order service unreachable".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(lines: Lines) -> Load {
        Load {
            count: 10,
            rate: None,
            concurrency: 2,
            lines,
            tokens: vec!["tok_visa".into(), "tok_chargeDeclined".into()],
            customer: Customer::Numbered("drill".into()),
        }
    }

    #[test]
    fn bodies_take_their_lines_tokens_and_customers_from_the_load() {
        let l = load(Lines::OneOf(vec![("a".into(), 1), ("b".into(), 2)]));
        for i in 0..20 {
            let b = l.body(i);
            assert_eq!(b.items.len(), 1);
            let line = (b.items[0].product_id.as_str(), b.items[0].quantity);
            assert!(line == ("a", 1) || line == ("b", 2), "{line:?}");
            assert_eq!(
                b.customer_id.as_deref(),
                Some(format!("drill-{i}").as_str())
            );
            assert!(l
                .tokens
                .contains(b.payment_token.as_ref().unwrap_or(&String::new())));
        }
        let all = load(Lines::All(vec![("a".into(), 1), ("b".into(), 2)])).body(0);
        assert_eq!(all.items.len(), 2);
        let catalog = load(Lines::FromCatalog(vec!["x".into(), "y".into()]));
        for i in 0..20 {
            let b = catalog.body(i);
            assert!((1..=2).contains(&b.items.len()));
            assert!(b.items.iter().all(|l| (1..=2).contains(&l.quantity)));
        }
        let mut anonymous = load(Lines::All(vec![("a".into(), 1)]));
        anonymous.tokens.clear();
        anonymous.customer = Customer::Default;
        let b = anonymous.body(3);
        assert!(b.customer_id.is_none() && b.payment_token.is_none());
        anonymous.customer = Customer::Fixed("ann".into());
        assert_eq!(anonymous.body(4).customer_id.as_deref(), Some("ann"));
    }
}
