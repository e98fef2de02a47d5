//! Placing orders, one path for every command: the `POST /orders` body, the request with its
//! `Idempotency-Key` and its refusal, and the load generator of `order create --count` and of
//! drills (N orders, paced at a rate or all at once, at most C requests in flight, each with lines
//! from a mix and a payment token from a list). `omsctl bench` sends through [`try_place`] with
//! its own open/closed loop and HDR histograms.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use oms_contracts::api::{CreateOrder, OrderAccepted, Page, ProductView, RequestedLine};
use oms_contracts::routes;

use crate::client::Request;
use crate::ctx::Ctx;
use crate::Failure;

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
        body(&lines, customer.as_deref(), token)
    }
}

/// What `order create --count` placed and how it ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadSummary {
    /// Orders asked for.
    pub requested: u32,
    /// Orders accepted.
    pub created: u32,
    /// Accepted orders that were CONFIRMED.
    pub confirmed: u32,
    /// Accepted orders CANCELLED, by reason.
    pub cancelled: std::collections::BTreeMap<String, u32>,
    /// Refusals, by what was said.
    pub errors: std::collections::BTreeMap<String, u32>,
    /// How long it all took.
    pub seconds: f64,
    /// Median time from acceptance to the outcome, in ms.
    pub p50_ms: Option<f64>,
    /// 99th percentile of it.
    pub p99_ms: Option<f64>,
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
                let accepted = place_one(ctx, &load.body(i), None)
                    .await
                    .map_err(|f| f.error.to_string())?;
                then(accepted).await
            }
        })
        .buffer_unordered(load.concurrency.max(1))
}

/// How often a placement whose answer was lost is sent again (with the same key).
const PLACE_ATTEMPTS: u32 = 3;

/// Sends one `POST /orders`, once: the service's acceptance, or its refusal (exit 2 for a
/// request it refused, 1 otherwise).
pub async fn try_place(
    ctx: &Ctx,
    body: &CreateOrder,
    key: Option<&str>,
) -> Result<OrderAccepted, Failure> {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    ctx.act(
        routes::CREATE_ORDER,
        Request::to(&[]).body(body).headers(&headers),
    )
    .await
}

/// Places one order: the service's acceptance, or why not. Each order carries an
/// `Idempotency-Key` (`key`, else a fresh one), so a request whose answer was lost (the replica
/// died mid-request, a timeout) is sent again, up to three times, and can never make a second
/// order.
pub async fn place_one(
    ctx: &Ctx,
    body: &CreateOrder,
    key: Option<&str>,
) -> Result<OrderAccepted, Failure> {
    let fresh;
    let key = match key {
        Some(k) => k,
        None => {
            fresh = uuid::Uuid::now_v7().to_string();
            fresh.as_str()
        }
    };
    let headers = [("Idempotency-Key", key)];
    let mut attempt = 1;
    loop {
        let request = Request::to(&[]).body(body).headers(&headers);
        match ctx.call(routes::CREATE_ORDER, request).await {
            Ok(answer) => return answer.map_err(|r| r.failure()),
            Err(_) if attempt < PLACE_ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(f) => return Err(f),
        }
    }
}

/// `--item PRODUCT[:QUANTITY]`.
pub fn parse_item(s: &str) -> Result<(String, u32), String> {
    let (product, quantity) = match s.split_once(':') {
        Some((p, q)) => {
            let q: u32 = q.parse().map_err(|_| {
                format!("invalid quantity {q:?} in {s:?} (expected PRODUCT[:QUANTITY])")
            })?;
            (p, q)
        }
        None => (s, 1),
    };
    if product.is_empty() {
        return Err(format!("invalid item {s:?}: no product"));
    }
    if quantity == 0 {
        return Err(format!("invalid item {s:?}: quantity must be at least 1"));
    }
    Ok((product.to_owned(), quantity))
}

/// Product ids of the catalog, or `None` when inventory cannot be asked.
pub async fn catalog(ctx: &Ctx) -> Option<Vec<String>> {
    let products: Page<ProductView> = ctx.page(routes::LIST_PRODUCTS, &[]).await.ok()?;
    Some(products.items.into_iter().map(|p| p.product_id).collect())
}

/// Refuses lines whose product the catalog lacks (unchecked, with a warning, when inventory
/// cannot be asked).
pub async fn check_items(ctx: &Ctx, items: &[(String, u32)]) -> Result<(), Failure> {
    let Some(known) = catalog(ctx).await else {
        eprintln!("omsctl: warning: inventory unreachable; items not checked against the catalog");
        return Ok(());
    };
    if let Some((unknown, _)) = items.iter().find(|(p, _)| !known.contains(p)) {
        return Err(Failure::usage(format!(
            "unknown item {unknown:?}; the catalog has {}",
            known.join(", ")
        )));
    }
    Ok(())
}

/// The `POST /orders` body for these lines.
pub fn body(items: &[(String, u32)], customer: Option<&str>, token: Option<&str>) -> CreateOrder {
    CreateOrder {
        customer_id: customer.map(str::to_owned),
        items: items
            .iter()
            .map(|(p, q)| RequestedLine {
                product_id: p.clone(),
                quantity: *q,
            })
            .collect(),
        payment_token: token.map(str::to_owned),
        shipping_address: None,
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
