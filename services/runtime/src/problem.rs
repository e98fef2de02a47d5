//! The one error answer every endpoint gives: RFC 9457 problem details as
//! `application/problem+json`, with its `Retry-After` and `WWW-Authenticate` when it has them.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use oms_contracts::api::{Problem, PROBLEM_JSON, PROBLEM_VALIDATION};

/// An error answer: RFC 9457 problem details ([`Problem`]), the one body every endpoint answers
/// errors with, as `application/problem+json`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The body.
    pub problem: Problem,
    /// `Retry-After` in seconds, for 429 and 503 answers that know it.
    pub retry_after: Option<u32>,
    /// `WWW-Authenticate` challenge, for 401 answers.
    pub www_authenticate: Option<Challenge>,
}

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// No token was given.
    Bearer,
    /// The token given does not check out.
    InvalidToken,
}

impl Challenge {
    fn header_value(self) -> &'static str {
        match self {
            Challenge::Bearer => r#"Bearer realm="oms""#,
            Challenge::InvalidToken => r#"Bearer realm="oms", error="invalid_token""#,
        }
    }
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            problem: Problem {
                kind: "about:blank".into(),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                errors: BTreeMap::new(),
            },
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// Ok when `problems` (field, reason) is empty, otherwise [`ApiError::validation`] of them.
    pub fn check(problems: Vec<(&'static str, String)>) -> Result<(), Self> {
        if problems.is_empty() {
            return Ok(());
        }
        Err(Self::validation(
            problems
                .into_iter()
                .map(|(f, r)| (f.to_owned(), r))
                .collect(),
        ))
    }

    /// A 400 validation problem with one reason per field.
    pub fn validation(errors: BTreeMap<String, String>) -> Self {
        let fields: Vec<&str> = errors.keys().map(String::as_str).collect();
        let detail = match fields.len() {
            1 => format!("1 field is invalid: {}", fields.join(", ")),
            n => format!("{n} fields are invalid: {}", fields.join(", ")),
        };
        let mut e = Self::bad_request(detail);
        e.problem.kind = PROBLEM_VALIDATION.into();
        e.problem.title = "Validation failed".into();
        e.problem.errors = errors;
        e
    }

    /// A 500 whose cause is logged, never shown.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static(PROBLEM_JSON),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        if let Some(challenge) = self.www_authenticate {
            headers.insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static(challenge.header_value()),
            );
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_outage(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return Self::new(StatusCode::SERVICE_UNAVAILABLE, "Database unavailable");
        }
        Self::internal(&e)
    }
}

/// The 429 of a request over a limit: `what` is too many, retry after `wait` (whole seconds,
/// at least one, in `Retry-After` too).
pub fn too_many(what: &str, wait: Duration) -> ApiError {
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("Too many {what}; retry in {secs}s"),
    );
    e.retry_after = Some(u32::try_from(secs).unwrap_or(u32::MAX));
    e
}
