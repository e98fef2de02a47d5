//! The services' APIs, typed: every request names a route of [`oms_contracts::routes`] and
//! gets the route's answer type back, or the service's [`Refusal`]. The replicas of a service
//! take turns; each request carries the caller's token.

use anyhow::Context as _;
use oms_contracts::api::{Page, Problem};
use oms_contracts::routes::{Method, Route, RouteSpec};
use oms_contracts::ServiceId as Svc;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ctx::Ctx;
use crate::Failure;

/// What a request carries besides the route: path parameters, a query, a body, headers, and
/// (rarely) the one replica it must go to.
pub struct Request<'a, B> {
    params: &'a [&'a str],
    query: &'a [(&'a str, String)],
    body: Option<&'a B>,
    headers: &'a [(&'a str, &'a str)],
    replica: Option<&'a str>,
}

impl<'a, B> Request<'a, B> {
    /// A request with these path parameters (in the route's order) and nothing else.
    pub fn to(params: &'a [&'a str]) -> Self {
        Self {
            params,
            query: &[],
            body: None,
            headers: &[],
            replica: None,
        }
    }

    /// With a JSON body.
    pub fn body(mut self, body: &'a B) -> Self {
        self.body = Some(body);
        self
    }

    /// With query parameters (each encoded).
    pub fn query(mut self, query: &'a [(&'a str, String)]) -> Self {
        self.query = query;
        self
    }

    /// With these headers.
    pub fn headers(mut self, headers: &'a [(&'a str, &'a str)]) -> Self {
        self.headers = headers;
        self
    }

    /// To the replica at `base` only (each replica keeps some state of its own: fault knobs).
    pub fn replica(mut self, base: &'a str) -> Self {
        self.replica = Some(base);
        self
    }
}

/// A service's refusal: its status and, when it sent one, its problem details.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Who refused.
    pub service: Svc,
    /// The answer's status.
    pub status: StatusCode,
    /// The RFC 9457 problem it answered with, when the body was one.
    pub problem: Option<Problem>,
}

impl Refusal {
    /// The refusal as one line for the user: exit code 2 for a request the service found wrong,
    /// 1 otherwise, with a hint for 401 and 403.
    pub fn failure(&self) -> Failure {
        let what = self.problem.as_ref().map_or_else(
            || self.status.canonical_reason().unwrap_or("error").to_owned(),
            Problem::summary,
        );
        let code = if self.status.is_client_error() { 2 } else { 1 };
        let hint = match self.status {
            StatusCode::UNAUTHORIZED => {
                " (give a token: --token, OMS_TOKEN or --token-command; against the local stack, `omsctl stack up` makes the secret omsctl mints its own from)"
            }
            StatusCode::FORBIDDEN => " (the token's role may not do this)",
            _ => "",
        };
        Failure {
            code,
            error: anyhow::anyhow!(
                "{} service: {} {what}{hint}",
                self.service.name(),
                self.status.as_u16()
            ),
        }
    }

    /// The problem's `detail`, else its title, else the status's reason.
    pub fn detail(&self) -> String {
        self.problem
            .as_ref()
            .map(|p| {
                if p.detail.is_empty() {
                    p.title.clone()
                } else {
                    p.detail.clone()
                }
            })
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("error").to_owned())
    }
}

impl Ctx {
    /// Calls `route`: its answer, or the service's refusal. `Err` when no replica could be
    /// reached or the answer is not the route's type.
    pub async fn call<B: Serialize + 'static, A: DeserializeOwned>(
        &self,
        route: Route<B, A>,
        request: Request<'_, B>,
    ) -> Result<Result<A, Refusal>, Failure> {
        let spec = route.spec;
        let path = spec.path_with(request.params).ok_or_else(|| {
            Failure::from(anyhow::anyhow!(
                "{spec}: {} path parameter(s) given",
                request.params.len()
            ))
        })?;
        let build = |base: &str| {
            let url = format!("{base}{path}");
            let mut r = match spec.method {
                Method::Get => self.http.get(url),
                Method::Post => self.http.post(url),
                Method::Put => self.http.put(url),
            };
            let no_body = std::any::TypeId::of::<B>() == std::any::TypeId::of::<()>();
            if let Some(body) = request.body.filter(|_| !no_body) {
                r = r.json(body);
            } else if spec.method != Method::Get {
                // A body-less action still says it speaks JSON.
                r = r.json(&serde_json::Map::new());
            }
            for (k, v) in request.headers {
                r = r.header(*k, *v);
            }
            if !request.query.is_empty() {
                r = r.query(request.query);
            }
            r
        };
        let response = match request.replica {
            Some(base) => self
                .authorized(build(base))
                .await?
                .send()
                .await
                .map_err(|e| self.unreachable(spec.service, base, &e))?,
            None => self.send(spec.service, build).await?,
        };
        tracing::debug!(route = %spec, path = %path, status = %response.status(), "request");
        answer(spec, response).await
    }

    /// Calls `route`; a refusal is the failure.
    pub async fn act<B: Serialize + 'static, A: DeserializeOwned>(
        &self,
        route: Route<B, A>,
        request: Request<'_, B>,
    ) -> Result<A, Failure> {
        self.call(route, request).await?.map_err(|r| r.failure())
    }

    /// Reads `route` at these parameters: `None` when the service has no such thing (404).
    pub async fn read_opt<A: DeserializeOwned>(
        &self,
        route: Route<(), A>,
        params: &[&str],
    ) -> Result<Option<A>, Failure> {
        found(self.call(route, Request::to(params)).await?)
    }

    /// Reads `route` at these parameters; a missing one is a failure that says so.
    pub async fn read<A: DeserializeOwned>(
        &self,
        route: Route<(), A>,
        params: &[&str],
    ) -> Result<A, Failure> {
        self.read_opt(route, params).await?.ok_or_else(|| {
            Failure::verdict(format!(
                "{} service: {} not found",
                route.spec.service.name(),
                route.spec.path_with(params).unwrap_or_default()
            ))
        })
    }

    /// One page of a list `route`, with `query` (filters, `limit`, `cursor`).
    pub async fn page<T: DeserializeOwned>(
        &self,
        route: Route<(), Page<T>>,
        query: &[(&str, String)],
    ) -> Result<Page<T>, Failure> {
        self.act(route, Request::to(&[]).query(query)).await
    }

    /// Reads `route` from the replica at `base` only: `None` when it has no such thing (404).
    pub async fn read_opt_at<A: DeserializeOwned>(
        &self,
        route: Route<(), A>,
        base: &str,
    ) -> Result<Option<A>, Failure> {
        found(self.call(route, Request::to(&[]).replica(base)).await?)
    }

    /// `request` with the caller's bearer token, when there is one.
    pub async fn authorized(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Failure> {
        Ok(match self.token.bearer().await? {
            Some(token) => request.bearer_auth(token),
            None => request,
        })
    }

    /// Sends the request `build` makes for a base URL of `svc`, with the caller's token. The
    /// replicas take turns; one that refuses the connection (the request never reached it) is
    /// passed over for the next. Any other error is the answer: a request that may have arrived
    /// is not sent twice.
    pub async fn send(
        &self,
        svc: Svc,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failure> {
        let bases = self.urls_of(svc);
        let first = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut refused = None;
        for i in 0..bases.len() {
            let base = &bases[(first + i) % bases.len()];
            match self.authorized(build(base)).await?.send().await {
                Ok(r) => return Ok(r),
                Err(e) if e.is_connect() => refused = Some((base, e)),
                Err(e) => return Err(self.unreachable(svc, base, &e)),
            }
        }
        Err(match refused {
            Some((base, e)) => self.unreachable(svc, base, &e),
            None => Failure::usage(format!("no URL of the {} service", svc.name())),
        })
    }

    fn unreachable(&self, svc: Svc, base: &str, e: &reqwest::Error) -> Failure {
        let why = if e.is_timeout() {
            "timed out"
        } else {
            "unreachable"
        };
        let all = self.urls_of(svc);
        let at = if all.len() > 1 {
            all.join(", ")
        } else {
            base.to_owned()
        };
        Failure::usage(format!(
            "{} service {why} at {at} (is the stack up? `omsctl stack up`)",
            svc.name()
        ))
    }
}

/// A read's answer: `None` when the service has no such thing (404), its refusal's failure for
/// any other refusal.
fn found<A>(answer: Result<A, Refusal>) -> Result<Option<A>, Failure> {
    match answer {
        Ok(a) => Ok(Some(a)),
        Err(r) if r.status == StatusCode::NOT_FOUND => Ok(None),
        Err(r) => Err(r.failure()),
    }
}

/// The answer to a request of `spec`: the route's type on 2xx, the refusal otherwise.
async fn answer<A: DeserializeOwned>(
    spec: RouteSpec,
    response: reqwest::Response,
) -> Result<Result<A, Refusal>, Failure> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .with_context(|| format!("reading the answer to {spec}"))?;
    if status.is_success() {
        let a = serde_json::from_slice(&bytes)
            .with_context(|| format!("{spec}: the answer is not what the API defines"))?;
        return Ok(Ok(a));
    }
    Ok(Err(Refusal {
        service: spec.service,
        status,
        problem: serde_json::from_slice(&bytes).ok(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::Settings;

    /// A port nothing listens on (bound, then let go).
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    }

    /// Answers every request with 200 and `{}`; counts the requests.
    async fn answering() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&served);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let count = std::sync::Arc::clone(&count);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    if s.read(&mut buf).await.is_ok() {
                        count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                            .await;
                    }
                });
            }
        });
        (port, served)
    }

    #[tokio::test]
    async fn requests_take_turns_and_pass_over_a_replica_that_refuses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "").expect("config");
        let (up, served) = answering().await;
        let (other, served_other) = answering().await;
        let down = closed_port();
        let urls =
            format!("http://127.0.0.1:{down},http://127.0.0.1:{up},http://127.0.0.1:{other}");
        let ctx = Ctx::new(Settings {
            urls: vec![(Svc::Order, urls)],
            config: Some(config),
            state_dir: Some(dir.path().to_path_buf()),
            token: Some("t".into()),
            ..Settings::default()
        })
        .expect("settings");
        assert_eq!(ctx.urls_of(Svc::Order).len(), 3);
        for _ in 0..6 {
            let r = ctx
                .send(Svc::Order, |base| ctx.http.post(format!("{base}/orders")))
                .await
                .expect("a replica answers");
            assert!(r.status().is_success());
        }
        let (a, b) = (
            served.load(std::sync::atomic::Ordering::SeqCst),
            served_other.load(std::sync::atomic::Ordering::SeqCst),
        );
        // Six requests, none lost to the refusing replica, both live ones used.
        assert_eq!(a + b, 6, "{a} + {b}");
        assert!(a >= 2 && b >= 2, "{a} and {b}");

        let only_down = Ctx::new(Settings {
            urls: vec![(Svc::Order, format!("http://127.0.0.1:{down}"))],
            config: ctx.config_path.clone(),
            state_dir: Some(dir.path().to_path_buf()),
            token: Some("t".into()),
            ..Settings::default()
        })
        .expect("settings");
        let err = only_down
            .page(oms_contracts::routes::LIST_ORDERS, &[])
            .await
            .err()
            .map(|f| f.error.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("order service unreachable")),
            "{err:?}"
        );
    }
}
