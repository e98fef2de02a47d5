//! The six services in-process, on the real test PostgreSQL and broker, isolated from every other
//! test by their own databases and a topic (and consumer group) prefix of their own.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context};
use oms_contracts::api::{OrderAccepted, OrderStatus, OrderView, Problem, ProductView, SetStock};
use oms_contracts::auth::{Claims, Role};
use oms_contracts::routes::{self, Method, Route, RouteSpec};
use oms_contracts::Topics;
use oms_runtime::auth::AuthConfig;
use oms_runtime::config::{LogFormat, OutboxWakeup, RuntimeConfig};
use oms_runtime::service::RuntimeError;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{brokers, database_url, eventually, unique};

/// A service of the saga: a row of the topology.
pub use oms_contracts::ServiceId as Service;

/// Timing of a test stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Saga: reserve step deadline.
    pub reserve_timeout: Duration,
    /// Saga: payment step deadline.
    pub payment_timeout: Duration,
    /// Saga: release confirmation deadline.
    pub release_timeout: Duration,
    /// Inventory: reservation TTL.
    pub reservation_ttl: Duration,
    /// Every consumer: `fetch.wait.max.ms`.
    pub fetch_wait: Duration,
    /// Every consumer: at most this many workers (`None`: the handler's choice).
    pub consumer_workers: Option<u16>,
    /// Every consumer: at most this many messages per transaction (`None`: the handler's choice).
    pub consumer_max_batch: Option<u16>,
    /// Order service: `POST /orders` per client address (`None`: off).
    pub order_rate_limit: Option<oms_order::RateLimit>,
    /// Order service: `POST /orders` per customer (`None`: off).
    pub customer_rate_limit: Option<oms_order::RateLimit>,
    /// Every service: requests refused for their token, per address (`None`: off).
    pub unauthenticated_rate_limit: Option<oms_order::RateLimit>,
    /// Saga: broker-outage time given back to a step (zero: none).
    pub outage_budget: Duration,
    /// Saga: given on top of the outage time.
    pub outage_grace: Duration,
    /// The broker (`None`: the one `scripts/test.sh` runs).
    pub brokers: Option<String>,
    /// A secured broker's users (`None`: a plain broker): the stack's topics are created as the
    /// operator and each service connects as its own Kafka user.
    pub kafka_security: Option<oms_kafka::node::Security>,
    /// The stack's topic and group prefix (`None`: a fresh one), e.g. one whose ACLs the test
    /// granted first.
    pub prefix: Option<String>,
    /// Saga: each fulfillment step's deadline (past it the step is asked again).
    pub fulfillment_timeout: Duration,
    /// Fulfillment: from the shipment request to the pick.
    pub pick_after: Duration,
    /// Fulfillment: from the pick to the carrier.
    pub ship_after: Duration,
    /// Fulfillment: from the carrier to delivery.
    pub deliver_after: Duration,
    /// Fulfillment: the longest the carrier worker sleeps unless woken.
    pub carrier_interval: Duration,
    /// Every service: how long its inbox remembers a settled message.
    pub inbox_retention: Duration,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            reserve_timeout: Duration::from_secs(60),
            payment_timeout: Duration::from_secs(60),
            release_timeout: Duration::from_secs(30),
            reservation_ttl: Duration::from_secs(600),
            fetch_wait: oms_runtime::kafka::DEFAULT_FETCH_WAIT,
            consumer_workers: None,
            consumer_max_batch: None,
            order_rate_limit: None,
            customer_rate_limit: None,
            unauthenticated_rate_limit: None,
            outage_budget: Duration::from_secs(120),
            outage_grace: Duration::from_secs(20),
            fulfillment_timeout: Duration::from_secs(60),
            pick_after: Duration::from_millis(100),
            ship_after: Duration::from_millis(100),
            deliver_after: Duration::from_millis(100),
            carrier_interval: Duration::from_secs(1),
            inbox_retention: Duration::from_secs(30 * 86_400),
            brokers: None,
            kafka_security: None,
            prefix: None,
        }
    }
}

/// Logs of the in-process services (once per test process; a test that installed its own
/// subscriber first keeps it). The provider lives as long as the process.
fn init_telemetry(runtime: &RuntimeConfig) {
    static TELEMETRY: std::sync::OnceLock<Option<oms_runtime::telemetry::Telemetry>> =
        std::sync::OnceLock::new();
    TELEMETRY.get_or_init(|| {
        oms_runtime::telemetry::init(
            runtime.log_format,
            &runtime.log_filter,
            "oms-tests",
            oms_runtime::telemetry::Tracing::Local,
        )
        .ok()
    });
}

/// How long the tokens of a test stack's own client live: longer than any test.
const CLIENT_TOKEN_TTL: u64 = 4 * 3600;

struct Running {
    url: String,
    token: CancellationToken,
    handle: JoinHandle<Result<(), RuntimeError>>,
}

/// The whole saga, running in this process.
pub struct Stack {
    /// Topic and consumer-group prefix of this stack.
    pub prefix: String,
    db_suffix: String,
    brokers: String,
    options: StackOptions,
    running: BTreeMap<Service, Running>,
    /// The HS256 secret the services check tokens with (in `secret_dir`).
    secret: Vec<u8>,
    secret_dir: tempfile::TempDir,
    /// An HTTP client with a timeout that sends an admin's token.
    pub http: reqwest::Client,
}

impl Stack {
    /// Creates the topics and starts all five services; returns once each is ready.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let suffix = unique();
        let prefix = options
            .prefix
            .clone()
            .unwrap_or_else(|| format!("t{suffix}."));
        let brokers = options.brokers.clone().unwrap_or_else(brokers);
        let operator = match &options.kafka_security {
            Some(sec) => sec.client_properties(oms_kafka::node::security::OPERATOR)?,
            None => oms_kafka::Properties::new(),
        };
        oms_kafka::ensure_topics_with(
            &brokers,
            &operator,
            &Topics::new(&prefix).all_with_dlq(),
            oms_contracts::topics::PARTITIONS,
        )
        .await
        .context("creating the stack's topics (is scripts/test.sh running the broker?)")?;
        let secret_dir = tempfile::tempdir()?;
        let secret = random_secret()?;
        std::fs::write(secret_dir.path().join("jwt-secret"), &secret)?;
        let admin = mint(&secret, "tests", Role::Admin, CLIENT_TOKEN_TTL)?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {admin}").parse()?,
        );
        let mut stack = Self {
            prefix,
            db_suffix: suffix,
            brokers,
            options,
            running: BTreeMap::new(),
            secret,
            secret_dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .default_headers(headers)
                .build()?,
        };
        for service in Service::all() {
            stack.start_service(service).await?;
        }
        Ok(stack)
    }

    /// The stack's topic names.
    pub fn topics(&self) -> Topics {
        Topics::new(&self.prefix)
    }

    /// The broker the stack uses.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    fn runtime_config(&self, service: Service) -> RuntimeConfig {
        RuntimeConfig {
            database_url: database_url(),
            database_name: Some(format!("t_{}_{}", service.name(), self.db_suffix)),
            database_max_connections: 5,
            brokers: self.brokers.clone(),
            kafka_properties: Vec::new(),
            kafka_properties_file: self
                .options
                .kafka_security
                .as_ref()
                .map(|sec| sec.user_file(&service.spec().kafka_user())),
            topic_prefix: self.prefix.clone(),
            outbox_wakeup: OutboxWakeup::Notify,
            outbox_retention: Duration::from_secs(3600),
            inbox_retention: self.options.inbox_retention,
            outbox_batch_size: 500,
            outbox_max_backoff: Duration::from_secs(2),
            consumer_max_attempts: 3,
            consumer_fetch_wait: self.options.fetch_wait,
            consumer_group_protocol: Default::default(),
            consumer_workers: self.options.consumer_workers,
            consumer_max_batch: self.options.consumer_max_batch,
            worker_threads: 1,
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            tracing: true,
            log_filter: std::env::var("OMS_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            auth: AuthConfig {
                unauthenticated_rate_limit: self.options.unauthenticated_rate_limit,
                ..AuthConfig::secret_file(self.secret_dir.path().join("jwt-secret"))
            },
        }
    }

    /// A token for `subject` with `role`, signed with this stack's secret, valid for `ttl_secs`.
    pub fn token(&self, subject: &str, role: Role, ttl_secs: u64) -> anyhow::Result<String> {
        mint(&self.secret, subject, role, ttl_secs)
    }

    /// Claims signed with this stack's secret as they are (expired ones, foreign audiences...).
    pub fn sign(&self, claims: &impl Serialize) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(&self.secret),
        )?)
    }

    /// Starts `service` (again), on a new port, with its database as it was; waits until ready.
    pub async fn start_service(&mut self, service: Service) -> anyhow::Result<()> {
        if self.running.contains_key(&service) {
            return Ok(());
        }
        let runtime = self.runtime_config(service);
        init_telemetry(&runtime);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let token = CancellationToken::new();
        let t = token.clone();
        let o = &self.options;
        let handle = match service {
            Service::Order => tokio::spawn(oms_order::run(
                oms_order::Config {
                    runtime,
                    listen: String::new(),
                    max_lines: 50,
                    max_quantity: 1000,
                    max_body_bytes: 64 * 1024,
                    idempotency_retention: Duration::from_secs(86_400),
                    rate_limit: o.order_rate_limit,
                    customer_rate_limit: o.customer_rate_limit,
                },
                listener,
                t,
            )),
            Service::Inventory => tokio::spawn(oms_inventory::run(
                oms_inventory::Config {
                    runtime,
                    listen: String::new(),
                    reservation_ttl: o.reservation_ttl,
                    expiry_interval: Duration::from_millis(200),
                },
                listener,
                t,
            )),
            Service::Payment => tokio::spawn(oms_payment::run(
                oms_payment::Config {
                    runtime,
                    listen: String::new(),
                },
                listener,
                t,
            )),
            Service::Saga => tokio::spawn(oms_saga::run(
                oms_saga::Config {
                    runtime,
                    listen: String::new(),
                    reserve_timeout: o.reserve_timeout,
                    payment_timeout: o.payment_timeout,
                    release_timeout: o.release_timeout,
                    sweep_interval: Duration::from_millis(200),
                    outage_budget: o.outage_budget,
                    outage_grace: o.outage_grace,
                    fulfillment_timeout: o.fulfillment_timeout,
                },
                listener,
                t,
            )),
            Service::Fulfillment => tokio::spawn(oms_fulfillment::run(
                oms_fulfillment::Config {
                    runtime,
                    listen: String::new(),
                    pick_after: o.pick_after,
                    ship_after: o.ship_after,
                    deliver_after: o.deliver_after,
                    carrier_interval: o.carrier_interval,
                },
                listener,
                t,
            )),
            Service::Notification => tokio::spawn(oms_notification::run(
                oms_notification::Config {
                    runtime,
                    listen: String::new(),
                },
                listener,
                t,
            )),
        };
        self.running.insert(
            service,
            Running {
                url: url.clone(),
                token,
                handle,
            },
        );
        let http = self.http.clone();
        let ready = format!("{url}/health/ready");
        eventually(
            Duration::from_secs(60),
            &format!("{} to be ready", service.name()),
            || {
                let http = http.clone();
                let ready = ready.clone();
                async move {
                    Ok(match http.get(&ready).send().await {
                        Ok(r) if r.status() == StatusCode::OK => Some(()),
                        _ => None,
                    })
                }
            },
        )
        .await
    }

    /// Stops `service` gracefully and waits until it has.
    pub async fn stop_service(&mut self, service: Service) -> anyhow::Result<()> {
        if let Some(running) = self.running.remove(&service) {
            running.token.cancel();
            running
                .handle
                .await
                .context("joining the service task")?
                .with_context(|| format!("{} stopped with an error", service.name()))?;
        }
        Ok(())
    }

    /// Base URL of a running service.
    pub fn url(&self, service: Service) -> anyhow::Result<&str> {
        self.running
            .get(&service)
            .map(|r| r.url.as_str())
            .with_context(|| format!("{} is not running", service.name()))
    }

    /// The environment that points omsctl at this stack: brokers, topic prefix and the URLs of
    /// the services running (a stopped one's URL would be refused anyway: a closed port).
    pub fn omsctl_env(&self) -> anyhow::Result<Vec<(String, String)>> {
        let mut env = vec![
            ("OMS_BROKERS".to_owned(), self.brokers.clone()),
            ("OMS_TOPIC_PREFIX".to_owned(), self.prefix.clone()),
            (
                "OMS_TOKEN".to_owned(),
                self.token("omsctl-tests", Role::Admin, CLIENT_TOKEN_TTL)?,
            ),
        ];
        for service in Service::all() {
            if let Ok(url) = self.url(service) {
                env.push((
                    format!("OMS_{}_URL", service.name().to_uppercase()),
                    url.to_owned(),
                ));
            }
        }
        Ok(env)
    }

    /// Calls `route` (its `{parameters}` filled with `params`) with `body` (none for `()`), as
    /// the stack's admin: the answer as the route's type when the status is 2xx, an error naming
    /// the route, the status and the body otherwise.
    pub async fn call<B: Serialize + 'static, A: DeserializeOwned>(
        &self,
        route: Route<B, A>,
        params: &[&str],
        body: &B,
    ) -> anyhow::Result<A> {
        let (status, text) = self
            .exchange(route.spec, params, &[], json_body(body)?, None, &[])
            .await?;
        success(route.spec, status, &text)
    }

    /// `GET`s `route`: [`Stack::call`] without a body.
    pub async fn read<A: DeserializeOwned>(
        &self,
        route: Route<(), A>,
        params: &[&str],
    ) -> anyhow::Result<A> {
        self.call(route, params, &()).await
    }

    /// `GET`s `route` with a query string (`?limit=2&cursor=...`, each value percent-encoded):
    /// [`Stack::read`] of a filtered or paged list.
    pub async fn read_query<A: DeserializeOwned>(
        &self,
        route: Route<(), A>,
        params: &[&str],
        query: &[(&str, &str)],
    ) -> anyhow::Result<A> {
        let (status, text) = self
            .exchange(route.spec, params, query, None, None, &[])
            .await?;
        success(route.spec, status, &text)
    }

    /// Calls `route` as the admin or with `token`, whatever the answer: (status, body text).
    pub async fn call_raw<B: Serialize + 'static>(
        &self,
        route: RouteSpec,
        params: &[&str],
        body: &B,
        token: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        self.exchange(route, params, &[], json_body(body)?, token, &[])
            .await
    }

    /// Calls `route` as the admin or with `token`, whatever the status: the route's type for a
    /// 2xx, the problem it was refused with otherwise (an error when the body is neither).
    pub async fn answer<B: Serialize + 'static, A: DeserializeOwned>(
        &self,
        route: Route<B, A>,
        params: &[&str],
        body: &B,
        token: Option<&str>,
    ) -> anyhow::Result<Answer<A>> {
        let (status, text) = self
            .exchange(route.spec, params, &[], json_body(body)?, token, &[])
            .await?;
        Answer::read(route.spec, status, &text)
    }

    /// `GET`s `route` with a query string as the admin, whatever the status (see
    /// [`Stack::answer`]): for filters and cursors that must be refused.
    pub async fn answer_query<A: DeserializeOwned>(
        &self,
        route: Route<(), A>,
        params: &[&str],
        query: &[(&str, &str)],
    ) -> anyhow::Result<Answer<A>> {
        let (status, text) = self
            .exchange(route.spec, params, query, None, None, &[])
            .await?;
        Answer::read(route.spec, status, &text)
    }

    /// Sends one request: `route`'s path filled with `params`, then `query`; `body` as JSON when
    /// there is one; as the admin or with `token`; with extra `headers`. (status, body text).
    async fn exchange(
        &self,
        route: RouteSpec,
        params: &[&str],
        query: &[(&str, &str)],
        body: Option<Vec<u8>>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        let path = route
            .path_with(params)
            .with_context(|| format!("{route}: {} parameter(s) given", params.len()))?;
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.url(route.service)?))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let method = match route.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let r = request.send().await?;
        Ok((r.status().as_u16(), r.text().await?))
    }

    /// `GET` a JSON document from a service; any status but 200 is an error. Untyped: tests
    /// [`Stack::read`] a route's own type instead.
    pub async fn get(&self, service: Service, path: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.url(service)?);
        let r = self.http.get(&url).send().await?;
        if r.status() != StatusCode::OK {
            bail!("GET {url}: {} {}", r.status(), r.text().await?);
        }
        Ok(r.json().await?)
    }

    /// Sets the simulated payment gateway's fault knobs (`{}` or the default
    /// [`oms_contracts::api::GatewayKnobs`] resets them) as the stack's admin.
    pub async fn set_gateway_faults(&self, knobs: impl Serialize + 'static) -> anyhow::Result<()> {
        self.put_knobs(routes::SET_GATEWAY_FAULTS.spec, &knobs)
            .await
    }

    /// Sets the simulated carrier's fault knobs (`{}` or the default
    /// [`oms_contracts::api::CarrierKnobs`] resets them) as the stack's admin.
    pub async fn set_carrier_faults(&self, knobs: impl Serialize + 'static) -> anyhow::Result<()> {
        self.put_knobs(routes::SET_CARRIER_FAULTS.spec, &knobs)
            .await
    }

    async fn put_knobs<K: Serialize + 'static>(
        &self,
        route: RouteSpec,
        knobs: &K,
    ) -> anyhow::Result<()> {
        let (status, text) = self.call_raw(route, &[], knobs, None).await?;
        if !(200..300).contains(&status) {
            bail!("{route}: {status} {text}");
        }
        Ok(())
    }

    /// `GET` and return the status with the body (`null` when it is not JSON). Untyped: tests
    /// read a route's [`Answer`] instead.
    pub async fn get_status(&self, service: Service, path: &str) -> anyhow::Result<(u16, Value)> {
        let r = self
            .http
            .get(format!("{}{path}", self.url(service)?))
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// `POST /orders` (`body`: an [`oms_contracts::api::CreateOrder`], or JSON as it is) with an
    /// optional `Idempotency-Key`: the order accepted, or the problem it was refused with.
    pub async fn post_order<B: Serialize + 'static>(
        &self,
        body: &B,
        key: Option<&str>,
    ) -> anyhow::Result<Answer<OrderAccepted>> {
        let spec = routes::CREATE_ORDER.spec;
        let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
        let (status, text) = self
            .exchange(spec, &[], &[], json_body(body)?, None, &headers)
            .await?;
        Answer::read(spec, status, &text)
    }

    /// Places an order (an [`oms_contracts::api::CreateOrder`], or JSON as it is) that must be
    /// accepted (201); returns its id.
    pub async fn place(&self, body: impl Serialize + 'static) -> anyhow::Result<String> {
        let answer = self.post_order(&body, None).await?;
        if answer.status != 201 {
            bail!("order refused: {} {:?}", answer.status, answer.body);
        }
        Ok(answer.ok()?.order_id.to_string())
    }

    /// Waits until the order is no longer PENDING (placed or cancelled); returns it.
    pub async fn finished(&self, order_id: &str, within: Duration) -> anyhow::Result<OrderView> {
        eventually(within, &format!("order {order_id} to finish"), || async {
            let order = self.read(routes::GET_ORDER, &[order_id]).await?;
            Ok((order.status != OrderStatus::Pending).then_some(order))
        })
        .await
    }

    /// Waits until the order's life is over (DELIVERED or CANCELLED); returns it.
    pub async fn settled(&self, order_id: &str, within: Duration) -> anyhow::Result<OrderView> {
        eventually(within, &format!("order {order_id} to settle"), || async {
            let order = self.read(routes::GET_ORDER, &[order_id]).await?;
            Ok(order.status.is_final().then_some(order))
        })
        .await
    }

    /// One product of the catalog, with its stock.
    pub async fn product(&self, id: &str) -> anyhow::Result<ProductView> {
        self.read(routes::GET_PRODUCT, &[id]).await
    }

    /// Sets a product's available stock; returns the product afterwards.
    pub async fn set_stock(&self, id: &str, available: i64) -> anyhow::Result<ProductView> {
        self.call(routes::SET_STOCK, &[id], &SetStock { available })
            .await
    }

    /// A connection pool to a service's own database (for tests that break things on purpose).
    pub async fn pool(&self, service: Service) -> anyhow::Result<sqlx::PgPool> {
        let name = format!("t_{}_{}", service.name(), self.db_suffix);
        Ok(oms_runtime::db::connect(&database_url(), &name, 2, None).await?)
    }

    /// Stops every service.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for service in Service::all() {
            self.stop_service(service).await?;
        }
        Ok(())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.token.cancel();
        }
        // A stack on the shared test broker under a prefix of its own takes its topics with
        // it: left behind, every test's topics add up to thousands of partitions, a file each,
        // and a broker with 1,024 open files at most stops taking connections.
        if self.options.prefix.is_none() && self.options.brokers.is_none() {
            crate::delete_topics(&self.brokers, self.topics().all_with_dlq());
        }
    }
}

/// What a route answered, whatever its status: the route's own type for a 2xx, the problem
/// (RFC 9457) it was refused with otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer<A> {
    /// The HTTP status.
    pub status: u16,
    /// The body: the route's answer on a 2xx, the problem otherwise.
    pub body: Result<A, Problem>,
}

impl<A> Answer<A> {
    /// Reads `text`, what `route` answered with `status`: as `A` for a 2xx, as a [`Problem`]
    /// otherwise; an error when it is neither (a refusal must be problem+json).
    fn read(route: RouteSpec, status: u16, text: &str) -> anyhow::Result<Self>
    where
        A: DeserializeOwned,
    {
        let body = if (200..300).contains(&status) {
            Ok(serde_json::from_str(text)
                .with_context(|| format!("{route}: unreadable {status} answer {text}"))?)
        } else {
            Err(serde_json::from_str(text)
                .with_context(|| format!("{route}: {status} answer is not a problem: {text}"))?)
        };
        Ok(Self { status, body })
    }

    /// The answer of a 2xx; an error naming the status and the problem otherwise.
    pub fn ok(self) -> anyhow::Result<A> {
        match self.body {
            Ok(a) => Ok(a),
            Err(p) => bail!("refused with {}: {p:?}", self.status),
        }
    }

    /// The problem of a refusal; an error when the request was not refused.
    pub fn problem(self) -> anyhow::Result<Problem>
    where
        A: std::fmt::Debug,
    {
        match self.body {
            Err(p) => Ok(p),
            Ok(a) => bail!("not refused but {}: {a:?}", self.status),
        }
    }
}

/// `body` as the JSON a request carries; none for `()`.
fn json_body<B: Serialize + 'static>(body: &B) -> anyhow::Result<Option<Vec<u8>>> {
    if std::any::TypeId::of::<B>() == std::any::TypeId::of::<()>() {
        return Ok(None);
    }
    Ok(Some(serde_json::to_vec(body)?))
}

/// What `route` answered: its type when `status` is 2xx, an error naming the route, the status
/// and the body otherwise.
fn success<A: DeserializeOwned>(route: RouteSpec, status: u16, text: &str) -> anyhow::Result<A> {
    if !(200..300).contains(&status) {
        bail!("{route}: {status} {text}");
    }
    serde_json::from_str(text).with_context(|| format!("{route}: unreadable answer {text}"))
}

/// 32 random bytes, hex-encoded: a secret as `omsctl stack up` makes one.
fn random_secret() -> anyhow::Result<Vec<u8>> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(bytes
        .iter()
        .flat_map(|b| format!("{b:02x}").into_bytes())
        .collect())
}

/// A local-issuer token for `subject` with `role`.
fn mint(secret: &[u8], subject: &str, role: Role, ttl_secs: u64) -> anyhow::Result<String> {
    let claims = Claims::local(
        subject,
        role,
        jsonwebtoken::get_current_timestamp(),
        ttl_secs,
    );
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )?)
}
