//! An OTLP/HTTP trace receiver (protobuf, `POST /v1/traces`) in process: what a collector such as
//! Jaeger would receive from the services, decoded, so tests can check what was exported.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message;
use tokio_util::sync::CancellationToken;

/// One span as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    /// The exporter's `service.name`.
    pub service: String,
    /// Trace id, 32 hex digits.
    pub trace_id: String,
    /// Span id, 16 hex digits.
    pub span_id: String,
    /// Parent span id, 16 hex digits (empty for a root).
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
}

#[derive(Default)]
struct Received {
    spans: Vec<ReceivedSpan>,
    count: u64,
    keep: bool,
}

/// The receiver; stops when dropped.
pub struct OtlpSink {
    addr: SocketAddr,
    received: Arc<Mutex<Received>>,
    stop: CancellationToken,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of an export request, with their service.
pub fn decode(body: &[u8]) -> Result<Vec<ReceivedSpan>, prost::DecodeError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    let mut out = Vec::new();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref()?.value.as_ref())
            .map(|v| match v {
                AnyValue::StringValue(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .unwrap_or_default();
        for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
            out.push(ReceivedSpan {
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
            });
        }
    }
    Ok(out)
}

async fn receive(
    State(received): State<Arc<Mutex<Received>>>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let proto = [(header::CONTENT_TYPE, "application/x-protobuf")];
    match decode(&body) {
        Ok(spans) => {
            if let Ok(mut r) = received.lock() {
                r.count += spans.len() as u64;
                if r.keep {
                    r.spans.extend(spans);
                }
            }
            (
                StatusCode::OK,
                proto,
                ExportTraceServiceResponse::default().encode_to_vec(),
            )
        }
        Err(_) => (StatusCode::BAD_REQUEST, proto, Vec::new()),
    }
}

impl OtlpSink {
    /// Listens on `addr` (`127.0.0.1:0` for any port); `keep`: keep every span (else count).
    pub async fn start(addr: &str, keep: bool) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Received {
            keep,
            ..Received::default()
        }));
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(Arc::clone(&received));
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { token.cancelled().await })
                .await;
        });
        Ok(Self {
            addr,
            received,
            stop,
        })
    }

    /// The base URL to configure as `OMS_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The spans received so far (when kept).
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received
            .lock()
            .map(|r| r.spans.clone())
            .unwrap_or_default()
    }

    /// How many spans were received.
    pub fn count(&self) -> u64 {
        self.received.lock().map(|r| r.count).unwrap_or(0)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
