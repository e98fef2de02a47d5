//! HTTP pieces every service shares: the operational routes (`/health/live`, `/health/ready`,
//! `/metrics`) and the one JSON error body all endpoints answer with.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use oms_contracts::api::{Check, Liveness, Page, PendingRow, Problem, Readiness, PROBLEM_JSON};
use oms_contracts::routes;
use sqlx::PgPool;

use crate::auth::{MetricsReader, Operator};
use crate::metrics::Metrics;
use crate::outbox;
pub use crate::problem::{too_many, ApiError, Challenge};
use crate::relay::RelayStatus;

/// The filters every paged list takes, checked: `status` (any case, one of `allowed`) and `limit`
/// (`default` when absent, at most `max`). Every problem is reported under its field.
pub fn list_filters(
    status: Option<String>,
    allowed: &[&str],
    limit: Option<i64>,
    (default, max): (i64, i64),
) -> Result<(Option<String>, i64), ApiError> {
    let mut errors = BTreeMap::new();
    let status = status.map(|s| s.to_ascii_uppercase());
    if let Some(s) = &status {
        if !allowed.contains(&s.as_str()) {
            errors.insert(
                "status".to_owned(),
                format!("expected {}", allowed.join(", ")),
            );
        }
    }
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        errors.insert("limit".to_owned(), format!("must be between 1 and {max}"));
    }
    if errors.is_empty() {
        Ok((status, limit))
    } else {
        Err(ApiError::validation(errors))
    }
}

/// A page of `limit` from `rows` fetched with `LIMIT limit + 1`: the extra row only says there is
/// more, and the last row kept gives the cursor of the next page.
pub fn page_of<R, T>(
    mut rows: Vec<R>,
    limit: i64,
    cursor: impl Fn(&R) -> uuid::Uuid,
    view: impl Fn(&R) -> Result<T, ApiError>,
) -> Result<Page<T>, ApiError> {
    let keep = usize::try_from(limit).unwrap_or(0);
    let next_cursor = if rows.len() > keep {
        rows.truncate(keep);
        rows.last().map(&cursor)
    } else {
        None
    };
    Ok(Page {
        items: rows.iter().map(view).collect::<Result<_, _>>()?,
        next_cursor,
    })
}

/// `Query<T>` whose rejection is our JSON error body (400) instead of plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// `Path<T>` whose rejection is our JSON error body (400) instead of plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// A JSON object body as `T`, with rejections in our JSON error body: 400 for malformed or
/// mistyped JSON or anything but an object (the reason under `errors.body`), 413 for a body over
/// the limit, 415 without a JSON content type.
///
/// The object check matters: serde reads a struct from a JSON array too (fields by position),
/// so `[]` sent to a settings endpoint whose fields all have defaults would quietly reset it.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

fn body_error(reason: String) -> ApiError {
    ApiError::validation(BTreeMap::from([("body".to_owned(), reason)]))
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        // The raw text first (same content-type check and body limit as `Json`), so the object
        // check costs no tree and serde still refuses duplicate fields when reading `T`.
        match Json::<Box<serde_json::value::RawValue>>::from_request(req, state).await {
            Ok(Json(raw)) if raw.get().starts_with('{') => serde_json::from_str(raw.get())
                .map(ApiJson)
                .map_err(|e| body_error(e.to_string())),
            Ok(Json(raw)) => Err(body_error(format!(
                "expected a JSON object, got {}",
                json_type(raw.get())
            ))),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large",
                ))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected Content-Type: application/json",
            )),
            Err(e) => Err(body_error(e.body_text())),
        }
    }
}

/// What a valid JSON text (without leading whitespace, as `RawValue` keeps it) is.
fn json_type(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

/// Most header bytes (names and values) a request may carry: real clients send a few hundred,
/// a token about one KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses, in the JSON error body, what no route can take: headers adding up to more than
/// [`MAX_HEADER_BYTES`] (431; hyper itself closes connections with a bare 431 only past ~400
/// KiB), and a NUL byte (`%00`) anywhere in the path or query (400: PostgreSQL text cannot hold
/// one, so it would otherwise surface as a database error).
pub async fn screen_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let has_nul = |s: &str| {
        s.as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"%00"))
    };
    if has_nul(req.uri().path()) || req.uri().query().is_some_and(has_nul) {
        return ApiError::bad_request("A NUL byte (%00) is not allowed in a URL").into_response();
    }
    let size: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("Request headers too large: {size} bytes, at most {MAX_HEADER_BYTES}"),
        )
        .into_response();
    }
    next.run(req).await
}

/// What [`observe`] needs: the service's name and metrics.
#[derive(Clone)]
pub struct Observe {
    /// Service name (a span field).
    pub service: Arc<str>,
    /// Where request counts and latencies go.
    pub metrics: Metrics,
}

/// Routes that are polled, not used: counted, never traced (a scrape every few seconds would
/// bury the traces that matter).
const UNTRACED: &[&str] = &["/health/live", "/health/ready", "/metrics"];

/// Middleware: every request is a server span (the parent is the caller's `traceparent` header,
/// when valid) and is counted by method, route template and status, with its latency. Requests
/// no route matches are counted under the route `unmatched`.
pub async fn observe(
    State(o): State<Observe>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let response = if UNTRACED.contains(&route.as_str()) {
        next.run(req).await
    } else {
        let span = tracing::info_span!(
            "http request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
            service = %o.service,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        let parent = req
            .headers()
            .get(oms_contracts::headers::TRACEPARENT)
            .and_then(|v| v.to_str().ok());
        crate::telemetry::set_parent(&span, parent);
        let response = next.run(req).instrument(span.clone()).await;
        span.record("http.response.status_code", response.status().as_u16());
        if response.status().is_server_error() {
            span.record("otel.status_code", "error");
        }
        response
    };
    o.metrics.observe_http(
        method.as_str(),
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The answer to a path no route matches: 404 in the JSON error body.
pub async fn no_such_route() -> ApiError {
    ApiError::not_found("No such endpoint")
}

/// What the operational routes need.
#[derive(Clone)]
pub struct OpsState {
    /// The service's OpenAPI document, rendered.
    pub openapi: Arc<String>,
    /// The service's database.
    pub pool: PgPool,
    /// Metrics to expose.
    pub metrics: Metrics,
    /// The relay's view (heartbeat).
    pub relay: Arc<RelayStatus>,
    /// A Kafka client to probe the broker with (the relay's producer).
    pub kafka: Arc<crate::publisher::Publisher>,
}

/// How long the relay loop may go without a heartbeat before readiness fails.
const RELAY_STUCK_AFTER: Duration = Duration::from_secs(30);

/// The operational routes every service serves, as documented.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(live, ready, metrics, outbox_pending, openapi_json),
    components(schemas(Problem)),
    tags((name = "operations", description = "Health, metrics, outbox and this spec: the same on every service"))
)]
struct OpsApi;

/// The OpenAPI 3.1 document of service `name`: its own routes (`api`) and the operational ones,
/// every error answer as problem details. What `GET /openapi.json` serves, and what
/// `contracts/openapi/NAME.json` pins.
pub fn openapi_document(name: &str, api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi as _;
    let mut doc = api.merge_from(OpsApi::openapi());
    document_auth(&mut doc);
    doc.info = utoipa::openapi::InfoBuilder::new()
        .title(format!("oms-{name}"))
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(format!(
            "The HTTP API of the OMS {name} service. Errors are RFC 9457 problem details ({PROBLEM_JSON})."
        )))
        .license(Some(utoipa::openapi::License::new("Apache-2.0")))
        .build();
    doc
}

/// The name of the bearer-token security scheme in every document.
pub const BEARER: &str = "bearer";

/// The roles an operation's security requirement names (`security(("bearer" = [...]))`): the
/// roles allowed, every role when empty; `None` for an open operation.
pub fn operation_roles(op: &utoipa::openapi::path::Operation) -> Option<Vec<String>> {
    let requirements = serde_json::to_value(op.security.as_ref()?).ok()?;
    requirements
        .as_array()?
        .iter()
        .find_map(|r| r.get(BEARER))
        .and_then(|roles| serde_json::from_value(roles.clone()).ok())
}

/// Adds the bearer scheme, and to every operation that needs a token its 401 answer (and 403
/// when it is for some roles only).
fn document_auth(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
    use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder};
    let mut scheme = Http::new(HttpAuthScheme::Bearer);
    scheme.bearer_format = Some("JWT".into());
    scheme.description = Some(
        "A JWT (ES256 of the local stack's issuer key, RS256/ES256 of the configured issuer, or \
         HS256 with a configured secret) with `sub`, `role` (metrics, customer, operator or \
         admin), `iss`, `aud` and `exp`. The roles an operation lists are the ones allowed."
            .into(),
    );
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    let problem = || {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            let Some(roles) = operation_roles(op) else {
                continue;
            };
            let responses = &mut op.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                ResponseBuilder::new()
                    .description("No bearer token, or one that does not check out")
                    .content(PROBLEM_JSON, problem())
                    .header(
                        "www-authenticate",
                        HeaderBuilder::new()
                            .schema(
                                utoipa::openapi::ObjectBuilder::new()
                                    .schema_type(utoipa::openapi::schema::Type::String),
                            )
                            .description(Some("The Bearer challenge"))
                            .build(),
                    )
                    .build()
                    .into()
            });
            if !roles.is_empty() {
                responses.entry("403".into()).or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(format!("The token's role is not {}", one_of(&roles)))
                        .content(PROBLEM_JSON, problem())
                        .build()
                        .into()
                });
            }
        }
    }
}

/// The operational routes: open ones (`/health/live`, `/health/ready`, `/openapi.json`: probes
/// and API clients need them before they hold a token) and ones for operators (`/metrics`,
/// `/outbox/pending`), to be put behind authentication.
pub fn ops_router(state: OpsState) -> (Router, Router) {
    let open = Router::new()
        .route(routes::HEALTH_LIVE.path, get(live))
        .route(routes::HEALTH_READY.path, get(ready))
        .route("/openapi.json", get(openapi_json))
        .with_state(state.clone());
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .route(routes::OUTBOX_PENDING.path, get(outbox_pending))
        .with_state(state);
    (open, guarded)
}

/// Alive: the process answers.
#[utoipa::path(get, path = "/health/live", tag = "operations", security(()),
    responses((status = 200, description = "The process answers", body = Liveness)))]
async fn live() -> Json<Liveness> {
    Json(Liveness {
        status: "live".into(),
        version: Some(env!("CARGO_PKG_VERSION").into()),
    })
}

/// Ready: database, broker and relay answer; with the outbox backlog.
#[utoipa::path(get, path = "/health/ready", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready, with the failing checks", body = Readiness),
    ))]
async fn ready(State(state): State<OpsState>) -> Response {
    let database = match tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&state.pool),
    )
    .await
    {
        Ok(Ok(_)) => Check::pass(),
        Ok(Err(e)) => Check::fail(e.to_string()),
        Err(_) => Check::fail("timed out after 2s"),
    };
    let kafka = Arc::clone(&state.kafka);
    let broker = match tokio::task::spawn_blocking(move || {
        crate::kafka::probe_broker(kafka.client(), Duration::from_secs(2))
    })
    .await
    {
        Ok(Ok(())) => Check::pass(),
        Ok(Err(e)) => Check::fail(e.to_string()),
        Err(e) => Check::fail(e.to_string()),
    };
    let relay = match state.relay.since_heartbeat() {
        Some(d) if d <= RELAY_STUCK_AFTER => Check::pass(),
        Some(d) => Check::fail(format!("relay loop silent for {:.0}s", d.as_secs_f64())),
        None => Check::fail("relay not started"),
    };
    let outbox = if database.ok {
        outbox::backlog(&state.pool).await.ok()
    } else {
        None
    };
    let all_ok = database.ok && broker.ok && relay.ok;
    let body = Readiness {
        status: if all_ok { "ready" } else { "not_ready" }.to_owned(),
        database,
        broker,
        relay,
        relay_leader: state.relay.is_leader(),
        outbox,
    };
    let code = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PendingQuery {
    /// Only rows of this message key (an order id); no NUL byte.
    #[param(pattern = r"^[^\x00]*$")]
    key: Option<String>,
    /// At most this many rows (1 to 10,000; default 100).
    limit: Option<i64>,
}

/// Outbox rows not yet published (optionally of one key): what a service still has to say.
#[utoipa::path(get, path = "/outbox/pending", tag = "operations", params(PendingQuery),
    security(("bearer" = ["operator", "admin"])),
    responses(
        (status = 200, description = "Unpublished rows, oldest first", body = Page<PendingRow>),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
    ))]
async fn outbox_pending(
    _: Operator,
    State(state): State<OpsState>,
    ApiQuery(q): ApiQuery<PendingQuery>,
) -> Result<Json<Page<PendingRow>>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = outbox::pending(&state.pool, q.key.as_deref(), limit).await?;
    Ok(Json(Page::all(rows)))
}

/// Metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("bearer" = ["metrics", "operator", "admin"])),
    responses((status = 200, description = "OpenMetrics text", body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
async fn metrics(_: MetricsReader, State(state): State<OpsState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// This service's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
async fn openapi_json(State(state): State<OpsState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_ref().clone(),
    )
        .into_response()
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(words: &[String]) -> String {
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oms_contracts::api::PROBLEM_VALIDATION;

    #[test]
    fn a_request_over_a_limit_is_told_when_to_come_back() {
        let e = too_many("orders from this customer", Duration::from_millis(1));
        assert_eq!(e.retry_after, Some(1));
        assert_eq!(e.problem.status, 429);
    }
    use axum::extract::FromRequest;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Settings {
        rate: f64,
        latency_ms: u64,
    }

    impl Default for Settings {
        fn default() -> Self {
            Self {
                rate: 0.5,
                latency_ms: 7,
            }
        }
    }

    async fn read(body: &'static str) -> Result<Settings, ApiError> {
        let request = axum::http::Request::builder()
            .method("PUT")
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body))
            .map_err(|e| ApiError::internal(&e))?;
        ApiJson::<Settings>::from_request(request, &())
            .await
            .map(|j| j.0)
    }

    #[tokio::test]
    async fn a_json_body_must_be_an_object_of_known_fields() {
        assert_eq!(
            read(r#"{"rate": 0.1}"#).await.ok(),
            Some(Settings {
                rate: 0.1,
                latency_ms: 7
            })
        );
        // serde would read a struct from an array by position; `[]` must not reset the defaults.
        for (body, reason) in [
            ("[]", "expected a JSON object, got an array"),
            ("[0.9, 1]", "expected a JSON object, got an array"),
            ("null", "expected a JSON object, got null"),
            ("3", "expected a JSON object, got a number"),
            (r#"{"rate": "high"}"#, "invalid type"),
            (r#"{"rat": 1}"#, "unknown field"),
            (r#"{"rate": 0.1, "rate": 0.9}"#, "duplicate field"),
            ("  [ ]", "expected a JSON object, got an array"),
            (r#""x""#, "expected a JSON object, got a string"),
            ("{", "EOF"),
        ] {
            let problem = read(body).await.expect_err(body).problem;
            assert_eq!(problem.status, 400, "{body}");
            let said = problem.errors.get("body").cloned().unwrap_or_default();
            assert!(said.contains(reason), "{body}: {said}");
        }
    }

    #[test]
    fn errors_are_problem_details() {
        let response = ApiError::not_found("No order 42").into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(PROBLEM_JSON.as_bytes())
        );
        let p = ApiError::not_found("No order 42").problem;
        assert_eq!(
            (p.kind.as_str(), p.title.as_str(), p.detail.as_str()),
            ("about:blank", "Not Found", "No order 42")
        );
        let mut errors = BTreeMap::new();
        errors.insert("items".to_owned(), "empty".to_owned());
        errors.insert("limit".to_owned(), "too big".to_owned());
        let v = ApiError::validation(errors).problem;
        assert_eq!((v.status, v.kind.as_str()), (400, PROBLEM_VALIDATION));
        assert_eq!(v.detail, "2 fields are invalid: items, limit");
    }

    #[test]
    fn list_filters_check_status_and_limit_and_name_every_problem() {
        let allowed = ["PENDING", "CONFIRMED"];
        assert_eq!(
            list_filters(Some("pending".into()), &allowed, None, (50, 1000)).ok(),
            Some((Some("PENDING".to_owned()), 50))
        );
        let e = list_filters(Some("lost".into()), &allowed, Some(0), (50, 1000))
            .err()
            .map(|e| e.problem.errors);
        let fields: Vec<String> = e.into_iter().flat_map(|m| m.into_keys()).collect();
        assert_eq!(fields, ["limit", "status"]);
        assert!(list_filters(None, &allowed, Some(1001), (50, 1000)).is_err());
        assert!(list_filters(None, &allowed, Some(1000), (50, 1000)).is_ok());
    }

    #[test]
    fn a_page_keeps_limit_rows_and_points_past_the_last_only_when_there_is_more() {
        let id = |n: u128| uuid::Uuid::from_u128(n);
        let rows: Vec<u128> = vec![5, 4, 3];
        let page = page_of(rows.clone(), 2, |r| id(*r), |r| Ok(*r)).ok();
        assert_eq!(
            page.map(|p| (p.items, p.next_cursor)),
            Some((vec![5, 4], Some(id(4))))
        );
        let last = page_of(rows, 3, |r| id(*r), |r| Ok(*r)).ok();
        assert_eq!(
            last.map(|p| (p.items, p.next_cursor)),
            Some((vec![5, 4, 3], None))
        );
    }
}
