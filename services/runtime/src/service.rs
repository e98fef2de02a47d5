//! Wiring of one service: database, relay, consumers, background tasks and HTTP, all stopped by
//! one shutdown token. A service's `run(config, shutdown)` builds a [`Runtime`], adds its
//! consumers and sweepers, and hands its API router to [`Runtime::serve`].

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::migrate::Migrator;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::auth::Gate;
use crate::config::RuntimeConfig;
use crate::consumer::{ConsumerConfig, ConsumerError, ConsumerStats, Handler, InboxConsumer};
use crate::db::{self, DbError};
use crate::http::{ops_router, OpsState};
use crate::metrics::Metrics;
use crate::relay::{Relay, RelayConfig, RelayError};
use oms_contracts::{MessageType, ServiceSpec, Topics};

/// Why a service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Database.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Outbox relay.
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// A consumer.
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// Kafka client creation.
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// HTTP server.
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    /// librdkafka properties.
    #[error(transparent)]
    KafkaProperties(#[from] oms_kafka::properties::PropertyError),
    /// Authentication settings.
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// A background task failed.
    #[error("task {task} failed: {message}")]
    Task {
        /// Task name.
        task: String,
        /// What it said.
        message: String,
    },
}

/// A service being assembled and then run.
pub struct Runtime {
    name: String,
    config: RuntimeConfig,
    pool: PgPool,
    metrics: Metrics,
    shutdown: CancellationToken,
    tasks: JoinSet<(String, Result<(), String>)>,
    gate: Arc<Gate>,
    kafka: oms_kafka::Properties,
}

impl Runtime {
    /// Connects to (creating and migrating) the service's database. `register_metrics` may add
    /// the service's own metrics.
    pub async fn start(
        name: &str,
        config: RuntimeConfig,
        migrations: Option<Migrator>,
        shutdown: CancellationToken,
        register_metrics: impl FnOnce(&mut prometheus_client::registry::Registry),
    ) -> Result<Self, RuntimeError> {
        // Settings first: a bad Kafka property or key stops start-up before anything is touched.
        let kafka = config.kafka()?;
        let gate = Arc::new(Gate::from_config(&config.auth)?);
        if !kafka.is_empty() {
            let shown: Vec<String> = kafka
                .redacted()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            tracing::info!(service = name, properties = %shown.join(" "), "kafka properties");
        }
        if gate.is_on() {
            tracing::info!(service = name, auth = %gate.describe(), "authentication");
        } else {
            tracing::warn!(service = name, auth = %gate.describe(), "authentication is OFF");
        }
        let database = config
            .database_name
            .clone()
            .unwrap_or_else(|| format!("oms_{}", name.replace('-', "_")));
        let pool = db::connect(
            &config.database_url,
            &database,
            config.database_max_connections,
            migrations,
        )
        .await?;
        tracing::info!(service = name, database, "database ready");
        let refusals = gate.refusal_limiter();
        let mut runtime = Self {
            name: name.to_owned(),
            metrics: Metrics::new(register_metrics),
            config,
            pool,
            shutdown,
            tasks: JoinSet::new(),
            gate,
            kafka,
        };
        if let Some(limiter) = refusals {
            let token = runtime.shutdown.clone();
            runtime.spawn("refused-request limiter upkeep", limiter.upkeep(token));
        }
        Ok(runtime)
    }

    /// The service's database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The shutdown token every task watches.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// The runtime configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// A client that asks whether the broker answers, by the metadata of `topic` (as deployed).
    pub fn broker_probe(&self, topic: &str) -> Result<crate::kafka::BrokerProbe, RuntimeError> {
        Ok(crate::kafka::BrokerProbe::new(
            &self.config.brokers,
            &self.kafka,
            topic,
        )?)
    }

    /// Topic names as deployed (with the configured prefix).
    pub fn topics(&self) -> Topics {
        Topics::new(&self.config.topic_prefix)
    }

    /// Starts `service`'s idempotent consumer as the topology says: its group, the topics it
    /// reads, and only the message types it handles reach `handler` (the rest are acknowledged
    /// without a transaction).
    pub fn consume<H: Handler>(
        &mut self,
        service: &ServiceSpec,
        handler: H,
    ) -> Result<Arc<ConsumerStats>, RuntimeError> {
        self.start_consumer(
            service.group,
            &service.reads(),
            Some(service.handles.to_vec()),
            handler,
        )
    }

    /// Starts an idempotent consumer of contract topics `topics` (the prefix is added to them and
    /// to the group) in group `group` running `handler` on every message type it is interested
    /// in: for consumers that are not a service of the topology (tests, tools).
    pub fn consume_topics<H: Handler>(
        &mut self,
        group: &str,
        topics: &[&str],
        handler: H,
    ) -> Result<Arc<ConsumerStats>, RuntimeError> {
        self.start_consumer(group, topics, None, handler)
    }

    fn start_consumer<H: Handler>(
        &mut self,
        group: &str,
        topics: &[&str],
        handles: Option<Vec<MessageType>>,
        handler: H,
    ) -> Result<Arc<ConsumerStats>, RuntimeError> {
        let names = self.topics();
        let topics: Vec<String> = topics.iter().map(|t| names.name(t)).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        // Groups carry the prefix too: two environments sharing a cluster never share a group.
        let group = names.name(group);
        let mut config = ConsumerConfig::new(&self.name, &group, &topics, &self.config.brokers);
        config.topic_names = names;
        config.kafka = self.kafka.clone();
        config.handles = handles;
        config.fetch_wait = self.config.consumer_fetch_wait;
        config.group_protocol = self.config.consumer_group_protocol;
        config.max_attempts = self.config.consumer_max_attempts.max(1);
        if let Some(w) = self.config.consumer_workers {
            config.max_parallelism.workers = usize::from(w);
        }
        if let Some(b) = self.config.consumer_max_batch {
            config.max_parallelism.max_batch = usize::from(b);
        }
        let consumer =
            InboxConsumer::new(self.pool.clone(), config, handler, self.metrics.clone())?;
        let stats = consumer.stats();
        let token = self.shutdown.clone();
        self.spawn(&format!("consumer {group}"), async move {
            consumer.run(token).await.map_err(|e| e.to_string())
        });
        Ok(stats)
    }

    /// Runs a background task (a sweeper, say) until shutdown; an error stops the service.
    pub fn spawn(
        &mut self,
        name: &str,
        task: impl Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let name = name.to_owned();
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Starts the relay, serves `api` (documented by `doc`) plus the operational routes and the
    /// OpenAPI document on `listener`, and runs until shutdown; then waits for every task to
    /// finish its work in hand.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        api: Router,
        doc: utoipa::openapi::OpenApi,
    ) -> Result<(), RuntimeError> {
        self.gate.may_listen_on(listener.local_addr()?)?;
        let mut relay_config = RelayConfig::new(&self.name, &self.config.brokers);
        relay_config.kafka = self.kafka.clone();
        relay_config.wakeup = self.config.outbox_wakeup;
        relay_config.retention = self.config.outbox_retention;
        relay_config.batch_size = self.config.outbox_batch_size.max(1);
        relay_config.max_backoff = self.config.outbox_max_backoff;
        let relay = Relay::new(self.pool.clone(), relay_config, self.metrics.clone())?;
        let relay_status = relay.status();
        let publisher = relay.publisher();
        let token = self.shutdown.clone();
        self.spawn("outbox relay", async move {
            relay.run(token).await.map_err(|e| e.to_string())
        });
        let (pool, retention, token) = (
            self.pool.clone(),
            self.config.inbox_retention,
            self.shutdown.clone(),
        );
        self.spawn("inbox pruning", async move {
            let pool = &pool;
            every(
                "inbox pruning",
                crate::inbox::prune_interval(retention),
                token,
                || async move {
                    let batch = crate::inbox::PRUNE_BATCH;
                    let n = crate::inbox::prune(pool, retention, batch).await?;
                    Ok::<_, sqlx::Error>(n >= batch as u64)
                },
            )
            .await
        });

        let doc = crate::http::openapi_document(&self.name, doc);
        let rendered = doc.to_pretty_json().map_err(|e| RuntimeError::Task {
            task: "openapi".into(),
            message: e.to_string(),
        })?;
        let (open, guarded) = ops_router(OpsState {
            openapi: Arc::new(rendered),
            pool: self.pool.clone(),
            metrics: self.metrics.clone(),
            relay: relay_status,
            kafka: publisher,
        });
        // Everything but the open operational routes is behind the bearer-token check.
        let authenticate =
            axum::middleware::from_fn_with_state(Arc::clone(&self.gate), crate::auth::authenticate);
        let app = api
            .merge(guarded)
            .layer(authenticate)
            .merge(open)
            .fallback(crate::http::no_such_route)
            .layer(axum::middleware::from_fn_with_state(
                crate::http::Observe {
                    service: Arc::from(self.name.as_str()),
                    metrics: self.metrics.clone(),
                },
                crate::http::observe,
            ))
            .layer(axum::middleware::from_fn(crate::http::screen_request));
        let addr = listener.local_addr()?;
        tracing::info!(service = %self.name, %addr, "serving HTTP");
        let token = self.shutdown.clone();
        // The client's address reaches handlers (`ConnectInfo`): the order service limits by it.
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            token.cancelled().await;
        });

        let mut failure: Option<RuntimeError> = None;
        tokio::select! {
            served = server => {
                if let Err(e) = served {
                    failure = Some(RuntimeError::Http(e));
                }
                self.shutdown.cancel();
            }
            Some(joined) = self.tasks.join_next() => {
                failure = task_failure(joined);
                self.shutdown.cancel();
            }
        }
        while let Some(joined) = self.tasks.join_next().await {
            if let Some(e) = task_failure(joined) {
                failure.get_or_insert(e);
            }
        }
        self.pool.close().await;
        tracing::info!(service = %self.name, "stopped");
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn task_failure(
    joined: Result<(String, Result<(), String>), tokio::task::JoinError>,
) -> Option<RuntimeError> {
    match joined {
        Ok((_, Ok(()))) => None,
        Ok((task, Err(message))) => {
            tracing::error!(task, error = %message, "task failed");
            Some(RuntimeError::Task { task, message })
        }
        Err(e) => Some(RuntimeError::Task {
            task: "unknown".into(),
            message: e.to_string(),
        }),
    }
}

/// Runs `tick` until `shutdown`: again at once while it reports more work (`Ok(true)`), after
/// `interval` otherwise. A failure (the database is down, say) is logged once when it starts and
/// once when it ends, and retried every `interval` (at least a second). For sweepers.
pub async fn every<F, Fut, E>(
    what: &str,
    interval: Duration,
    shutdown: CancellationToken,
    mut tick: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
    E: Display,
{
    paced(what, interval, shutdown, None, || {
        let ticked = tick();
        async move {
            ticked
                .await
                .map(|more| if more { Duration::ZERO } else { interval })
        }
    })
    .await;
    Ok(())
}

/// Runs `tick` until `shutdown`, sleeping after each the pause it returns, cut short when
/// `wake` is notified. A failure is logged once (and its recovery), then retried after
/// `on_error`, at least a second.
pub async fn paced<F, Fut, E>(
    what: &str,
    on_error: Duration,
    shutdown: CancellationToken,
    wake: Option<&tokio::sync::Notify>,
    mut tick: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Duration, E>>,
    E: Display,
{
    let mut failing = false;
    loop {
        let pause = match tick().await {
            Ok(pause) => {
                if failing {
                    tracing::info!(task = what, "recovered");
                    failing = false;
                }
                pause
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(task = what, error = %e, "failed; retrying");
                    failing = true;
                }
                on_error.max(Duration::from_secs(1))
            }
        };
        let woken = async {
            match wake {
                Some(w) => w.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
            _ = woken => {}
        }
    }
}

/// The whole `main` of a service binary, on a runtime of `--worker-threads` threads: JSON logs
/// and traces, SIGTERM/SIGINT handling, the listener on `listen`, then `run` until shutdown.
pub fn start<F, Fut>(
    service: oms_contracts::ServiceId,
    runtime: &RuntimeConfig,
    listen: &str,
    run: F,
) -> anyhow::Result<()>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), RuntimeError>>,
{
    use anyhow::Context;
    let what = format!("{} service", service.name());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(usize::from(runtime.worker_threads.max(1)))
        .enable_all()
        .build()
        .with_context(|| format!("{what}: async runtime"))?
        .block_on(async move {
            use crate::telemetry::Tracing;
            let endpoint = crate::telemetry::otlp_endpoint(runtime.otlp_endpoint.as_deref());
            let tracing = match (runtime.tracing, endpoint.as_deref()) {
                (false, _) => Tracing::Off,
                (true, None) => Tracing::Local,
                (true, Some(endpoint)) => Tracing::Export(endpoint),
            };
            let _telemetry = crate::telemetry::init(
                runtime.log_format,
                &runtime.log_filter,
                &format!("oms-{}", service.name()),
                tracing,
            )
            .with_context(|| format!("{what}: tracing"))?;
            match tracing {
                Tracing::Export(endpoint) => {
                    tracing::info!(endpoint = %crate::telemetry::traces_url(endpoint), "exporting traces over OTLP/HTTP")
                }
                Tracing::Local => tracing::info!("traces: spans made, not exported (no OTLP endpoint)"),
                Tracing::Off => tracing::info!("traces: off"),
            }
            let shutdown = CancellationToken::new();
            crate::shutdown::cancel_on_signal(shutdown.clone());
            let listener = TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            run(listener, shutdown)
                .await
                .with_context(|| format!("{what} stopped"))
        })
}
