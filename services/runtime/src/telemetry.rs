//! Logs and traces.
//!
//! Logs are JSON lines (or text) through `tracing`; a line carries the fields of every span it is
//! in (`spans`, outermost first), and the spans this runtime opens record their OpenTelemetry
//! `trace_id` and `span_id`.
//!
//! Traces: every HTTP request, consumed message, outbox enqueue and relay publish is a span. The
//! W3C `traceparent` of the incoming request or message is the span's parent; the enqueue span's
//! context is stored with the outbox row, and the relay's publish span (its child) is what the
//! published message carries, so one order's journey through every service is one trace. Spans
//! are always made (ids propagate even when nothing is exported); OTLP/HTTP export is on only
//! when an endpoint is configured.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{SpanContext, TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;
use oms_contracts::headers::TRACEPARENT;

/// The `target` of spans kept out of traces (a consumer's batch transaction: its messages belong
/// to several traces, and each has a span of its own in its trace).
pub const LOCAL_ONLY: &str = "oms::local";

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter for {endpoint}: {source}")]
pub struct TelemetryError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// Keeps the tracer provider alive; dropping it flushes the spans not yet exported.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        // Nothing to do about a failed flush at exit but lose those spans.
        let _ = self.provider.shutdown();
    }
}

/// The OTLP/HTTP traces URL for a configured endpoint: the endpoint is a base URL (as the
/// standard `OTEL_EXPORTER_OTLP_ENDPOINT`), `/v1/traces` is added unless already there.
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// A tracer provider for `service` (its `service.name`), exporting in batches to `endpoint`
/// when one is given.
pub fn provider(
    service: &str,
    endpoint: Option<&str>,
) -> Result<SdkTracerProvider, TelemetryError> {
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = endpoint {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(endpoint))
            .build()
            .map_err(|source| TelemetryError {
                endpoint: endpoint.to_owned(),
                source,
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    Ok(builder.build())
}

/// The layer that turns this runtime's spans into OpenTelemetry spans of `provider`. Only spans
/// and events of the OMS crates at `INFO` and above reach it (not the database driver's or the
/// HTTP stack's), never those of [`LOCAL_ONLY`], and whatever the log filter says: traces do not
/// vanish when logs are turned down.
pub fn otel_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let tracer = provider.tracer("oms");
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            let target = meta.target();
            target.starts_with("oms")
                && target != LOCAL_ONLY
                && *meta.level() <= tracing::Level::INFO
        }))
}

/// What becomes of spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracing<'a> {
    /// Made and exported over OTLP/HTTP to this endpoint (a base URL).
    Export(&'a str),
    /// Made (ids propagate and reach the logs), not exported.
    Local,
    /// Not made at all.
    Off,
}

/// Installs the global subscriber: logs to stderr in `format`, filtered by `filter`, and
/// traces of `service` as `tracing` says. Safe to call twice (the second
/// subscriber is not installed), which tests that start several services in one process rely on.
/// Keep the returned value until exit: dropping it flushes what is not exported yet.
pub fn init(
    format: LogFormat,
    filter: &str,
    service: &str,
    tracing: Tracing<'_>,
) -> Result<Telemetry, TelemetryError> {
    let endpoint = match tracing {
        Tracing::Export(endpoint) => Some(endpoint),
        Tracing::Local | Tracing::Off => None,
    };
    let provider = provider(service, endpoint)?;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let spans = (!matches!(tracing, Tracing::Off)).then(|| otel_layer(&provider));
    let registry = tracing_subscriber::registry().with(spans);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // The log filter is the log layer's own.
    let _ = match format {
        LogFormat::Json => registry
            .with(
                // Every span in scope, outermost first: the request's or message's span (with its
                // trace and span ids) stays on the line when a handler opens spans of its own.
                fmt.json()
                    .with_current_span(false)
                    .with_span_list(true)
                    .flatten_event(true)
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(fmt.with_ansi(false).with_filter(filter))
            .try_init(),
    };
    Ok(Telemetry { provider })
}

/// The configured OTLP endpoint: `configured` (`OMS_OTLP_ENDPOINT`), else the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT`; blank means none.
pub fn otlp_endpoint(configured: Option<&str>) -> Option<String> {
    configured
        .map(str::to_owned)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|s| !s.trim().is_empty())
}

struct One<'a>(Option<&'a str>);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == TRACEPARENT {
            self.0
        } else {
            None
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

struct Out(Option<String>);

impl Injector for Out {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// The context a W3C `traceparent` value names (an empty context when it is missing or not a
/// valid `traceparent`: the span that takes it as parent starts a trace).
pub fn context_of(traceparent: Option<&str>) -> Context {
    TraceContextPropagator::new().extract(&One(traceparent))
}

/// The span context a `traceparent` names, when valid (for links).
pub fn span_context_of(traceparent: &str) -> Option<SpanContext> {
    let cx = context_of(Some(traceparent));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// Makes `traceparent` the parent of `span` (which must not have been entered yet) and records
/// the resulting ids on it; returns its context. Without a valid `traceparent`, `span` starts a
/// trace.
pub fn set_parent(span: &Span, traceparent: Option<&str>) -> Context {
    // Fails only when no OpenTelemetry layer is installed (tests without one): nothing to link.
    let _ = span.set_parent(context_of(traceparent));
    record_ids(span)
}

/// Records `span`'s OpenTelemetry ids in its `trace_id` and `span_id` fields (for log lines);
/// returns its context (read once: callers that also propagate it pass it to [`traceparent_in`]).
pub fn record_ids(span: &Span) -> Context {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        span.record("trace_id", tracing::field::display(sc.trace_id()));
        span.record("span_id", tracing::field::display(sc.span_id()));
    }
    cx
}

/// The `traceparent` naming the span of `cx`, when it is part of a trace.
pub fn traceparent_in(cx: &Context) -> Option<String> {
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Out(None);
    TraceContextPropagator::new().inject_context(cx, &mut out);
    out.0
}

/// The `traceparent` of `span`, when it is part of a trace.
pub fn traceparent(span: &Span) -> Option<String> {
    traceparent_in(&span.context())
}

/// The trace id of `span` (32 hex digits), when it is part of a trace.
pub fn trace_id(span: &Span) -> Option<String> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_a_remote_parent_and_garbage_is_none() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let sc = span_context_of(tp).expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(sc.is_remote() && sc.is_sampled());
        for bad in [
            "",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "zz-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        ] {
            assert!(span_context_of(bad).is_none(), "{bad:?} accepted");
        }
    }

    #[test]
    fn an_endpoint_that_is_no_url_is_refused_naming_it() {
        match provider("t", Some("jaeger 4318")) {
            Err(e) => assert!(e.to_string().contains("jaeger 4318"), "{e}"),
            Ok(_) => panic!("a broken endpoint was accepted"),
        }
    }

    #[test]
    fn the_traces_url_is_the_base_plus_the_signal_path_once() {
        assert_eq!(
            traces_url("http://jaeger:4318"),
            "http://jaeger:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://jaeger:4318/"),
            "http://jaeger:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces"),
            "http://c:4318/v1/traces"
        );
    }

    #[test]
    fn spans_are_made_when_logs_are_filtered_down() {
        use tracing_subscriber::layer::SubscriberExt;
        let provider = provider("t", None).expect("no exporter to build");
        let subscriber = tracing_subscriber::registry()
            .with(otel_layer(&provider))
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::sink)
                    .with_filter(EnvFilter::new("error")),
            );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(target: "oms_runtime::http", "request");
            set_parent(&span, None);
            assert!(
                trace_id(&span).is_some(),
                "an info span vanished under OMS_LOG=error"
            );
            let local = tracing::info_span!(target: LOCAL_ONLY, "batch");
            assert!(
                trace_id(&local).is_none(),
                "a local-only span reached the trace"
            );
        });
    }

    #[test]
    fn a_span_under_the_layer_continues_its_parent_and_says_so() {
        use tracing_subscriber::layer::SubscriberExt;
        let provider = provider("t", None).expect("no exporter to build");
        let subscriber = tracing_subscriber::registry().with(otel_layer(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "x",
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty
            );
            set_parent(
                &span,
                Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            );
            assert_eq!(
                trace_id(&span).as_deref(),
                Some("0af7651916cd43dd8448eb211c80319c")
            );
            let tp = traceparent(&span).expect("in a trace");
            assert!(
                tp.starts_with("00-0af7651916cd43dd8448eb211c80319c-"),
                "{tp}"
            );
            assert!(!tp.contains("b7ad6b7169203331"), "its own span id: {tp}");
            // Without a parent it starts a trace of its own.
            let root = tracing::info_span!("y");
            set_parent(&root, None);
            let id = trace_id(&root).expect("a new trace");
            assert_ne!(id, "0af7651916cd43dd8448eb211c80319c");
        });
    }
}
