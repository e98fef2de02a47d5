//! Authentication and roles on the real stack: every documented operation enforces the roles its
//! OpenAPI document names, customers see and place only their own orders, bad tokens of every
//! kind are refused without changing anything, and rate limits count per token subject.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use oms_contracts::api::{
    CreateOrder, GatewayKnobs, NotificationView, OrderAccepted, OrderView, Page, Problem,
    RequestedLine, SetStock,
};
use oms_contracts::auth::{Claims, Role};
use oms_contracts::routes;
use oms_tests::eventually;
use oms_tests::stack::{Service, Stack, StackOptions};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::{json, Value};

const HOUR: u64 = 3600;

/// An answer: status, `content-type`, `www-authenticate` and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    challenge: Option<String>,
    text: String,
}

impl Answer {
    /// The body as `T`: an error naming the status and the body when it is not one.
    fn body<T: DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_str(&self.text)
            .with_context(|| format!("{}: unexpected body {}", self.status, self.text))
    }

    /// The body as a problem.
    fn problem(&self) -> anyhow::Result<Problem> {
        self.body()
    }
}

async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
    let r = request.send().await?;
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Ok(Answer {
        status: r.status().as_u16(),
        content_type: header("content-type"),
        challenge: header("www-authenticate"),
        text: r.text().await?,
    })
}

/// An order of one mouse for `customer` (`None`: the token's subject).
fn mouse_for(customer: Option<&str>) -> CreateOrder {
    CreateOrder {
        customer_id: customer.map(str::to_owned),
        items: vec![RequestedLine {
            product_id: "mouse-01".into(),
            quantity: 1,
        }],
        payment_token: None,
        shipping_address: None,
    }
}

/// The parts of a served OpenAPI document read here (utoipa's own types keep a security
/// requirement's roles private). Every member of a path item is an operation.
#[derive(Deserialize)]
struct Document {
    paths: BTreeMap<String, BTreeMap<String, Operation>>,
}

#[derive(Deserialize)]
struct Operation {
    /// Each requirement: scheme name to the roles it needs.
    #[serde(default)]
    security: Option<Vec<BTreeMap<String, Vec<String>>>>,
    /// By status code.
    responses: BTreeMap<String, IgnoredAny>,
}

/// A client that sends no token unless asked to.
fn anonymous() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?)
}

fn is_problem(a: &Answer, status: u16) -> bool {
    a.status == status
        && a.content_type.as_deref() == Some("application/problem+json")
        && a.problem().is_ok_and(|p| p.status == status)
}

/// The roles an operation allows (`None`: open to anyone; empty: any authenticated role).
fn roles_of(op: &Operation) -> Option<Vec<Role>> {
    let bearer = op.security.as_ref()?.iter().find_map(|r| r.get("bearer"))?;
    Some(bearer.iter().filter_map(|r| r.parse().ok()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_enforces_the_roles_it_names() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let http = anonymous()?;
    let tokens: Vec<(Role, String)> = vec![
        // Prometheus' role: /metrics, and 403 on everything else.
        (
            Role::Metrics,
            stack.token("prometheus", Role::Metrics, HOUR)?,
        ),
        (
            Role::Customer,
            stack.token("c-roles", Role::Customer, HOUR)?,
        ),
        (Role::Operator, stack.token("ops", Role::Operator, HOUR)?),
        (Role::Admin, stack.token("root", Role::Admin, HOUR)?),
    ];
    let mut checked = 0;
    let mut open = 0;
    for service in Service::all() {
        let base = stack.url(service)?.to_owned();
        // The document itself is open: clients read it before they hold a token.
        let doc = send(http.get(format!("{base}/openapi.json"))).await?;
        assert_eq!(doc.status, 200, "{} /openapi.json", service.name());
        let paths = doc
            .body::<Document>()
            .context("paths in the document")?
            .paths;
        for (path, item) in paths {
            // Path parameters get values that exist nowhere: no request here may change state.
            let concrete = path
                .replace("{id}", "0192f0c4-5a1e-7cc0-8000-00000000dead")
                .replace("{order_id}", "0192f0c4-5a1e-7cc0-8000-00000000dead");
            let url = format!("{base}{concrete}");
            for (method, op) in &item {
                let request = |token: Option<&str>| {
                    let r = match method.as_str() {
                        "get" => http.get(&url),
                        "put" => http.put(&url),
                        "post" => http.post(&url),
                        other => http.request(
                            reqwest::Method::from_bytes(other.to_uppercase().as_bytes())
                                .unwrap_or(reqwest::Method::GET),
                            &url,
                        ),
                    };
                    match token {
                        Some(t) => r.bearer_auth(t),
                        None => r,
                    }
                };
                let what = format!("{} {} {path}", service.name(), method.to_uppercase());
                let Some(roles) = roles_of(op) else {
                    let a = send(request(None)).await?;
                    assert!(
                        a.status != 401 && a.status != 403,
                        "{what} is documented open but answered {a:?}"
                    );
                    open += 1;
                    continue;
                };
                let a = send(request(None)).await?;
                assert!(is_problem(&a, 401), "{what} without a token: {a:?}");
                assert_eq!(
                    a.challenge.as_deref(),
                    Some(r#"Bearer realm="oms""#),
                    "{what}"
                );
                for (role, token) in &tokens {
                    let a = send(request(Some(token))).await?;
                    if roles.is_empty() || roles.contains(role) {
                        assert!(
                            a.status != 401 && a.status != 403,
                            "{what} documents {roles:?}; {role} was refused: {a:?}"
                        );
                    } else {
                        assert!(
                            is_problem(&a, 403),
                            "{what} documents {roles:?}; {role} got {a:?}"
                        );
                        // The spec documents the 403 it answers.
                        assert!(op.responses.contains_key("403"), "{what} documents 403");
                    }
                }
                assert!(op.responses.contains_key("401"), "{what} documents 401");
                checked += 1;
            }
        }
    }
    // Every service's own routes plus /metrics and /outbox/pending; health and the spec are open.
    assert!(checked >= 20, "{checked} guarded operations checked");
    assert_eq!(
        open,
        3 * Service::all().count(),
        "health (2) and the spec are open on each service"
    );
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_see_and_place_only_their_own_orders() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let http = anonymous()?;
    let alice = stack.token("alice", Role::Customer, HOUR)?;
    let bob = stack.token("bob", Role::Customer, HOUR)?;
    let ops = stack.token("ops", Role::Operator, HOUR)?;
    let orders = format!("{}/orders", stack.url(Service::Order)?);

    // Alice orders for herself: with no customerId the token's subject is the customer.
    let placed = send(
        http.post(&orders)
            .bearer_auth(&alice)
            .json(&mouse_for(None)),
    )
    .await?;
    assert_eq!(placed.status, 201, "{placed:?}");
    let accepted: OrderAccepted = placed.body()?;
    assert_eq!(accepted.customer_id.as_str(), "alice");
    let alices = accepted.order_id.to_string();
    // Naming herself is fine; naming Bob is refused and creates nothing.
    let own = send(
        http.post(&orders)
            .bearer_auth(&alice)
            .json(&mouse_for(Some("alice"))),
    )
    .await?;
    assert_eq!(own.status, 201, "{own:?}");
    let as_bob = send(
        http.post(&orders)
            .bearer_auth(&alice)
            .json(&mouse_for(Some("bob"))),
    )
    .await?;
    assert!(is_problem(&as_bob, 403), "{as_bob:?}");
    // Operators read; they do not place orders.
    let by_ops = send(
        http.post(&orders)
            .bearer_auth(&ops)
            .json(&mouse_for(Some("bob"))),
    )
    .await?;
    assert!(is_problem(&by_ops, 403), "{by_ops:?}");
    let bobs = stack.place(mouse_for(Some("bob"))).await?;

    // Bob cannot see Alice's order: 404, the same as an order that does not exist.
    let peek = send(http.get(format!("{orders}/{alices}")).bearer_auth(&bob)).await?;
    assert!(is_problem(&peek, 404), "{peek:?}");
    let missing = send(
        http.get(format!("{orders}/0192f0c4-5a1e-7cc0-8000-00000000beef"))
            .bearer_auth(&bob),
    )
    .await?;
    assert!(is_problem(&missing, 404), "{missing:?}");
    assert_eq!(
        peek.problem()?.title,
        missing.problem()?.title,
        "no existence leak"
    );
    let mine = send(http.get(format!("{orders}/{bobs}")).bearer_auth(&bob)).await?;
    assert_eq!(mine.status, 200);

    // Lists: each customer its own, whatever the filter says; the operator all.
    let customers_of = |a: &Answer| -> anyhow::Result<Vec<String>> {
        let page: Page<OrderView> = a.body()?;
        Ok(page
            .items
            .iter()
            .map(|o| o.customer_id.to_string())
            .collect())
    };
    let a = send(http.get(&orders).bearer_auth(&alice)).await?;
    assert_eq!(customers_of(&a)?, ["alice", "alice"]);
    let sneaky = send(
        http.get(format!("{orders}?customerId=bob"))
            .bearer_auth(&alice),
    )
    .await?;
    assert_eq!(sneaky.status, 200);
    assert!(customers_of(&sneaky)?.is_empty(), "{sneaky:?}");
    let all = send(http.get(&orders).bearer_auth(&ops)).await?;
    let mut seen = customers_of(&all)?;
    seen.sort();
    assert_eq!(seen, ["alice", "alice", "bob"]);
    let of_bob = send(
        http.get(format!("{orders}?customerId=bob"))
            .bearer_auth(&ops),
    )
    .await?;
    assert_eq!(customers_of(&of_bob)?, ["bob"]);

    // Notifications: Alice's are hers, Bob sees none of them, the operator sees all. An order
    // that is CONFIRMED goes on to be shipped and delivered meanwhile, each with its own
    // notification: the confirmations are counted, and every notification a customer sees must
    // be their own.
    stack.finished(&alices, Duration::from_secs(60)).await?;
    stack.finished(&bobs, Duration::from_secs(60)).await?;
    let notifications = format!("{}/notifications", stack.url(Service::Notification)?);
    let seen_by = |token: String| {
        let http = http.clone();
        let url = notifications.clone();
        async move {
            let page: Page<NotificationView> =
                send(http.get(&url).bearer_auth(token)).await?.body()?;
            let kinds: Vec<(String, String)> = page
                .items
                .into_iter()
                .map(|n| {
                    let customer = n.customer_id.map(String::from).unwrap_or_default();
                    (customer, n.kind)
                })
                .collect();
            Ok::<_, anyhow::Error>(kinds)
        }
    };
    let confirmed = |seen: &[(String, String)]| -> Vec<String> {
        let mut customers: Vec<String> = seen
            .iter()
            .filter(|(_, kind)| kind == "ORDER_CONFIRMED")
            .map(|(customer, _)| customer.clone())
            .collect();
        customers.sort();
        customers
    };
    // The whole saga of three orders, on a box that runs this binary's five stacks at once:
    // the same 90 s the other tests give an order to finish.
    eventually(
        Duration::from_secs(90),
        "every order's confirmation notification",
        || async { Ok((confirmed(&seen_by(ops.clone()).await?).len() == 3).then_some(())) },
    )
    .await?;
    let alices_own = seen_by(alice.clone()).await?;
    assert_eq!(confirmed(&alices_own), ["alice", "alice"], "{alices_own:?}");
    assert!(
        alices_own.iter().all(|(c, _)| c == "alice"),
        "{alices_own:?}"
    );
    let bobs_own = seen_by(bob.clone()).await?;
    assert_eq!(confirmed(&bobs_own), ["bob"], "{bobs_own:?}");
    assert!(bobs_own.iter().all(|(c, _)| c == "bob"), "{bobs_own:?}");
    let for_alices_order = send(
        http.get(format!("{notifications}?orderId={alices}"))
            .bearer_auth(&bob),
    )
    .await?;
    let none_for_bob: Page<NotificationView> = for_alices_order.body()?;
    assert!(none_for_bob.items.is_empty(), "{none_for_bob:?}");

    // Customers and operators cannot move stock; admins can.
    let stock = format!("{}/products/mouse-01/stock", stack.url(Service::Inventory)?);
    let before = stack.product("mouse-01").await?.available;
    for token in [&alice, &ops] {
        let a = send(
            http.put(&stock)
                .bearer_auth(token)
                .json(&SetStock { available: 7 }),
        )
        .await?;
        assert!(is_problem(&a, 403), "{a:?}");
    }
    assert_eq!(stack.product("mouse-01").await?.available, before);
    let knobs = format!("{}/gateway/faults", stack.url(Service::Payment)?);
    let declining = GatewayKnobs {
        decline_rate: 1.0,
        ..GatewayKnobs::default()
    };
    let a = send(http.put(&knobs).bearer_auth(&ops).json(&declining)).await?;
    assert!(is_problem(&a, 403), "{a:?}");
    let knobs_now = send(http.get(&knobs).bearer_auth(&ops)).await?;
    assert_eq!(
        knobs_now.body::<GatewayKnobs>()?,
        GatewayKnobs::default(),
        "{knobs_now:?}"
    );
    let set = stack.set_stock("mouse-01", 7).await?;
    assert_eq!(set.available, 7);
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_of_every_kind_are_refused_and_change_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let http = anonymous()?;
    let now = jsonwebtoken::get_current_timestamp();
    let good = Claims::local("mallory", Role::Admin, now, HOUR);
    let claims = |change: &dyn Fn(&mut Claims)| {
        let mut c = good.clone();
        change(&mut c);
        stack.sign(&c)
    };
    // Claims no `Claims` can hold (a role that does not exist, no expiry): JSON as it is.
    let malformed = |change: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = serde_json::to_value(&good)?;
        if let Some(m) = c.as_object_mut() {
            change(m);
        }
        stack.sign(&c)
    };
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-stack-secret-not-the-stack"),
    )?;
    // `alg: none`: a header and claims with no signature at all.
    let unsigned = {
        let good = claims(&|_| {})?;
        let mut parts = good.split('.');
        let (_, body) = (parts.next(), parts.next().context("claims part")?);
        // {"alg":"none","typ":"JWT"}
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.")
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            claims(&|c| {
                c.iat = now - 3 * HOUR;
                c.exp = now - 2 * HOUR;
            })?,
        ),
        ("wrong audience", claims(&|c| c.aud = "billing".into())?),
        ("wrong issuer", claims(&|c| c.iss = "elsewhere".into())?),
        (
            "unknown role",
            malformed(&|c| {
                c.insert("role".into(), json!("root"));
            })?,
        ),
        (
            "no expiry",
            malformed(&|c| {
                c.remove("exp");
            })?,
        ),
        ("wrong signature", forged),
        ("alg none", unsigned),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    let orders = format!("{}/orders", stack.url(Service::Order)?);
    let knobs = format!("{}/gateway/faults", stack.url(Service::Payment)?);
    let declining = GatewayKnobs {
        decline_rate: 1.0,
        ..GatewayKnobs::default()
    };
    for (what, token) in &cases {
        let a = send(
            http.post(&orders)
                .bearer_auth(token)
                .json(&mouse_for(Some("mallory"))),
        )
        .await?;
        assert!(is_problem(&a, 401), "{what}: {a:?}");
        assert_eq!(
            a.challenge.as_deref(),
            Some(r#"Bearer realm="oms", error="invalid_token""#),
            "{what}"
        );
        let a = send(http.put(&knobs).bearer_auth(token).json(&declining)).await?;
        assert!(is_problem(&a, 401), "{what}: {a:?}");
    }
    let basic = send(
        http.get(&orders)
            .header("authorization", "Basic bWFsbG9yeTpzZWNyZXQ="),
    )
    .await?;
    assert!(is_problem(&basic, 401), "{basic:?}");
    // Nothing of any of it happened.
    let page = stack
        .read_query(routes::LIST_ORDERS, &[], &[("customerId", "mallory")])
        .await?;
    assert!(page.items.is_empty(), "{page:?}");
    let knobs_now = stack.read(routes::GET_GATEWAY_FAULTS, &[]).await?;
    assert_eq!(knobs_now, GatewayKnobs::default());
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_counts_per_token_subject() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        order_rate_limit: Some(oms_order::RateLimit {
            per_second: 1,
            burst: 2,
        }),
        ..StackOptions::default()
    })
    .await?;
    let http = anonymous()?;
    let orders = format!("{}/orders", stack.url(Service::Order)?);
    let body = mouse_for(None);
    let carol = stack.token("carol", Role::Customer, HOUR)?;
    let dave = stack.token("dave", Role::Customer, HOUR)?;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            send(http.post(&orders).bearer_auth(&carol).json(&body))
                .await?
                .status,
        );
    }
    let limited = statuses.iter().filter(|s| **s == 429).count();
    if !(3..=4).contains(&limited) || statuses.iter().any(|s| *s != 201 && *s != 429) {
        bail!("carol's burst of 2 (plus at most one refill) passes, the rest is limited: {statuses:?}");
    }
    // Carol being limited takes nothing from Dave: same address, another subject.
    let d = send(http.post(&orders).bearer_auth(&dave).json(&body)).await?;
    assert_eq!(d.status, 201, "{d:?}");
    stack.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_and_refused_requests_are_rate_limited_and_admins_are_not() -> anyhow::Result<()>
{
    let limit = |per_second, burst| Some(oms_order::RateLimit { per_second, burst });
    let stack = Stack::start(StackOptions {
        customer_rate_limit: limit(1, 3),
        unauthenticated_rate_limit: limit(1, 5),
        ..StackOptions::default()
    })
    .await?;
    let http = anonymous()?;
    let orders = format!("{}/orders", stack.url(Service::Order)?);

    // A script ordering as one customer: its burst of 3 (plus at most one refill) passes, the
    // rest is refused with 429 and creates nothing.
    let erin = stack.token("erin", Role::Customer, HOUR)?;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let a = send(http.post(&orders).bearer_auth(&erin).json(&mouse_for(None))).await?;
        if a.status == 429 {
            assert!(is_problem(&a, 429), "{a:?}");
        }
        statuses.push(a.status);
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    if !(3..=4).contains(&created) || statuses.iter().any(|s| *s != 201 && *s != 429) {
        bail!(
            "erin's burst of 3 (plus at most one refill) passes, the rest is limited: {statuses:?}"
        );
    }
    let page = send(http.get(&orders).bearer_auth(&erin)).await?;
    let listed = page.body::<Page<OrderView>>()?.items.len();
    assert_eq!(listed, created, "a refused order was created: {page:?}");

    // An admin placing orders for many customers is not held by the customer limit.
    let root = stack.token("root", Role::Admin, HOUR)?;
    for i in 0..8 {
        let body = mouse_for(Some(&format!("c-{i}")));
        let a = send(http.post(&orders).bearer_auth(&root).json(&body)).await?;
        assert_eq!(a.status, 201, "{a:?}");
    }

    // Bad tokens from one address: 401 for the burst of 5 (plus at most one refill), then 429;
    // a good token from the same address still passes.
    let mut refused = Vec::new();
    for _ in 0..10 {
        refused.push(
            send(http.get(&orders).bearer_auth("not-a-token"))
                .await?
                .status,
        );
    }
    let unauthorized = refused.iter().filter(|s| **s == 401).count();
    if !(5..=6).contains(&unauthorized) || refused.iter().any(|s| *s != 401 && *s != 429) {
        bail!("5 refusals (plus at most one refill) answer 401, the rest 429: {refused:?}");
    }
    let a = send(http.get(&orders).bearer_auth(&root)).await?;
    assert_eq!(a.status, 200, "{a:?}");
    stack.shutdown().await
}
