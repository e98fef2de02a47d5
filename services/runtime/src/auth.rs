//! Bearer-token authentication and role checks, the same in every service.
//!
//! Every route but `/health/*` and `/openapi.json` needs a JWT (`Authorization: Bearer ...`)
//! whose signature, `exp`, `iss` and `aud` check out and which carries a `sub` and a `role`
//! ([`Role`]). Keys: a JWKS file (keys picked by `kid`; the local stack writes the public half of
//! its ES256 issuer key into one), a PEM public key (RS256 or ES256), or an HS256 secret file.
//! The key file is looked at every [`KEY_REFRESH`] and re-read when it changed: a new key is
//! accepted and a removed one refused without a restart.
//! Missing or bad tokens answer 401, a role that may not do something 403, both as problem
//! details. Handlers say what they need with the extractors [`Caller`], [`Operator`], [`Admin`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use oms_contracts::auth::Role;
use oms_contracts::CustomerId;

use crate::problem::{ApiError, Challenge};

/// Shortest accepted HS256 secret, in bytes (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// How long after `exp` (and before `nbf`) a token still passes: clock skew between hosts.
const LEEWAY_SECS: u64 = 30;

pub use crate::config::{AuthConfig, AuthMode};

/// Why the authentication settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Auth is on and no key is configured.
    #[error("auth is on but no key is configured: give --jwt-secret-file, --jwt-public-key-file or --jwt-jwks-file (or --auth off)")]
    NoKey,
    /// More than one key source.
    #[error("give only one of --jwt-secret-file, --jwt-public-key-file and --jwt-jwks-file")]
    TooManyKeys,
    /// A key file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Auth is off on a listener others can reach.
    #[error("auth is off, which makes every caller an admin: refused on {addr}, which is not a loopback address (listen on 127.0.0.1, or turn auth on)")]
    OffBeyondLoopback {
        /// The listener's address.
        addr: std::net::SocketAddr,
    },
    /// A key file holds no usable key.
    #[error("{path}: {reason}")]
    BadKey {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Who is calling: what the token said (or, with auth off, an anonymous admin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What the caller may do.
    pub role: Role,
    /// The token's subject; `None` with auth off.
    pub subject: Option<String>,
}

impl Caller {
    /// The customer this caller is limited to: `Some` for the customer role only.
    pub fn customer(&self) -> Option<&str> {
        match self.role {
            Role::Customer => self.subject.as_deref(),
            _ => None,
        }
    }

    /// Ok when the caller has `role` (or a more powerful one), 403 otherwise.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("This needs the {role} role; the token has {}", self.role),
            ))
        }
    }
}

/// One verification key and the one algorithm it is used with.
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

/// How many verified tokens a gate remembers.
const VERIFIED_CAPACITY: usize = 4096;

/// How often a gate looks at its key file for a change.
pub const KEY_REFRESH: Duration = Duration::from_secs(2);

/// The keys a gate verifies with, and the file they came from, re-read when it changes.
struct KeyRing {
    current: RwLock<Arc<Vec<Key>>>,
    config: AuthConfig,
    /// The key file as last read: (modified, length, inode).
    stamp: Mutex<Option<FileStamp>>,
    /// When the file is next due a look, in ms since `born`.
    next_look_ms: AtomicU64,
    born: Instant,
    every: Duration,
}

type FileStamp = (Option<std::time::SystemTime>, u64, u64);

fn stamp_of(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len(), m.ino()))
}

impl KeyRing {
    fn new(config: &AuthConfig) -> Result<Self, AuthError> {
        let stamp = key_file(config).and_then(stamp_of);
        Ok(Self {
            current: RwLock::new(Arc::new(load_keys(config)?)),
            config: config.clone(),
            stamp: Mutex::new(stamp),
            next_look_ms: AtomicU64::new(0),
            born: Instant::now(),
            every: KEY_REFRESH,
        })
    }

    fn keys(&self) -> Arc<Vec<Key>> {
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Re-reads the key file when it is due a look and changed; true when the keys changed.
    /// One caller looks; the others go on with the keys they have.
    fn refresh(&self) -> bool {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = self.next_look_ms.load(Ordering::Relaxed);
        let next = now.saturating_add(u64::try_from(self.every.as_millis()).unwrap_or(0));
        if now < due
            || self
                .next_look_ms
                .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        let Some(path) = key_file(&self.config) else {
            return false;
        };
        let stamp = stamp_of(path);
        {
            let mut last = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
            if *last == stamp {
                return false;
            }
            *last = stamp;
        }
        match load_keys(&self.config) {
            Ok(keys) => {
                tracing::info!(file = %path.display(), keys = keys.len(), "verification keys re-read");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "verification keys not re-read; the previous ones stay");
                false
            }
        }
    }
}

/// The file `config` takes its keys from.
fn key_file(config: &AuthConfig) -> Option<&Path> {
    config
        .jwt_jwks_file
        .as_deref()
        .or(config.jwt_public_key_file.as_deref())
        .or(config.jwt_secret_file.as_deref())
}

/// Checks bearer tokens (or, when off, lets everyone in as admin).
///
/// A client sends one token with many requests, and an RS256 or ES256 signature costs hundreds
/// of microseconds to verify (`scripts/bench.sh auth`), so a token that checked out is remembered,
/// keyed by its exact text (same text, same signature, same verdict), with its caller and
/// expiry: until then it passes again without a signature check; after it, it is refused as
/// expired like any other.
pub struct Gate {
    keys: Option<KeyRing>,
    /// Refused requests per client address, when limited.
    refusals: Option<Arc<crate::limit::Limiter<std::net::IpAddr>>>,
    issuer: String,
    audience: String,
    verified: quick_cache::sync::Cache<String, Verified>,
}

/// A token that checked out: who it names and until when (`exp`, seconds since the epoch).
#[derive(Clone)]
struct Verified {
    caller: Caller,
    exp: u64,
}

/// The claims a service reads (signature and registered claims are checked by jsonwebtoken).
#[derive(serde::Deserialize)]
struct TokenClaims {
    sub: String,
    role: Role,
    /// Required (the validation says so when it is missing); optional here so that a missing
    /// one is reported as such rather than as unreadable claims.
    #[serde(default)]
    exp: Option<u64>,
}

impl Gate {
    /// The gate `config` describes; keys are read and checked now, so a bad key stops start-up.
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthError> {
        let keys = match config.mode {
            AuthMode::Off => None,
            AuthMode::Jwt => Some(KeyRing::new(config)?),
        };
        let refusals = match config.mode {
            AuthMode::Off => None,
            AuthMode::Jwt => config
                .unauthenticated_rate_limit
                .and_then(crate::limit::Limiter::new)
                .map(Arc::new),
        };
        Ok(Self {
            keys,
            refusals,
            issuer: config.jwt_issuer.clone(),
            audience: config.jwt_audience.clone(),
            verified: quick_cache::sync::Cache::new(VERIFIED_CAPACITY),
        })
    }

    /// The limiter of refused requests per address, when there is one (its upkeep is the
    /// runtime's).
    pub fn refusal_limiter(&self) -> Option<Arc<crate::limit::Limiter<std::net::IpAddr>>> {
        self.refusals.clone()
    }

    /// How often the key file is looked at for a change ([`KEY_REFRESH`] unless set).
    pub fn refresh_every(mut self, every: Duration) -> Self {
        if let Some(ring) = &mut self.keys {
            ring.every = every;
        }
        self
    }

    /// Whether tokens are checked.
    pub fn is_on(&self) -> bool {
        self.keys.is_some()
    }

    /// Whether this gate may guard a listener on `addr`: with auth off, only a loopback one
    /// (the benchmarks of the bare path), never one other hosts reach.
    pub fn may_listen_on(&self, addr: std::net::SocketAddr) -> Result<(), AuthError> {
        if self.is_on() || addr.ip().is_loopback() {
            Ok(())
        } else {
            Err(AuthError::OffBeyondLoopback { addr })
        }
    }

    /// What the service says about its auth at start-up (never the key).
    pub fn describe(&self) -> String {
        match &self.keys {
            None => "off: every caller is an admin".to_owned(),
            Some(ring) => {
                let keys = ring.keys();
                let mut algs: Vec<String> =
                    keys.iter().map(|k| format!("{:?}", k.algorithm)).collect();
                algs.sort();
                algs.dedup();
                format!(
                    "bearer JWT ({}; {} key(s); iss {:?}, aud {:?})",
                    algs.join(", "),
                    keys.len(),
                    self.issuer,
                    self.audience
                )
            }
        }
    }

    /// The caller `authorization` (the header's value) identifies.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<Caller, Unauthorized> {
        self.check_at(authorization, jsonwebtoken::get_current_timestamp())
    }

    /// [`Gate::check`] at `now` (seconds since the epoch) for remembered tokens; a token checked
    /// for the first time is judged by the clock.
    fn check_at(&self, authorization: Option<&[u8]>, now: u64) -> Result<Caller, Unauthorized> {
        let Some(ring) = &self.keys else {
            return Ok(Caller {
                role: Role::Admin,
                subject: None,
            });
        };
        if ring.refresh() {
            // A removed key's tokens must stop passing: forget every verdict.
            self.verified.clear();
        }
        let keys = ring.keys();
        let value = authorization.ok_or(Unauthorized::Missing)?;
        let value = std::str::from_utf8(value).map_err(|_| Unauthorized::Missing)?;
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(Unauthorized::Missing),
        };
        if let Some(known) = self.verified.get(token) {
            if now <= known.exp.saturating_add(LEEWAY_SECS) {
                return Ok(known.caller);
            }
            self.verified.remove(token);
            return Err(Unauthorized::Invalid("token expired"));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| Unauthorized::Invalid("malformed token (or an algorithm not accepted)"))?;
        let key = match &header.kid {
            Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid.as_str())),
            None if keys.len() == 1 => keys.first(),
            None => None,
        }
        .ok_or(Unauthorized::Invalid("no key for this token's kid"))?;
        if header.alg != key.algorithm {
            return Err(Unauthorized::Invalid("algorithm not accepted"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.leeway = LEEWAY_SECS;
        // A token is good from its `nbf` (when it has one), not only until its `exp`.
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<TokenClaims>(token, &key.key, &validation).map_err(|e| {
                Unauthorized::Invalid(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::ImmatureSignature => "token not valid yet",
                    ErrorKind::InvalidAudience => "token is for another audience",
                    ErrorKind::InvalidIssuer => "token from another issuer",
                    ErrorKind::InvalidSignature => "bad signature",
                    ErrorKind::InvalidAlgorithm => "algorithm not accepted",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "token lacks a required claim (exp, iss, aud, sub)"
                    }
                    ErrorKind::Json(_) => "token claims invalid (sub and a known role needed)",
                    _ => "malformed token",
                })
            })?;
        let claims = data.claims;
        if claims.role == Role::Customer && CustomerId::try_from(claims.sub.clone()).is_err() {
            return Err(Unauthorized::Invalid(
                "a customer token's subject must be a customer id",
            ));
        }
        let caller = Caller {
            role: claims.role,
            subject: Some(claims.sub),
        };
        if let Some(exp) = claims.exp {
            self.verified.insert(
                token.to_owned(),
                Verified {
                    caller: caller.clone(),
                    exp,
                },
            );
        }
        Ok(caller)
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that does not check out, and why.
    Invalid(&'static str),
}

impl From<Unauthorized> for ApiError {
    fn from(u: Unauthorized) -> Self {
        let (detail, challenge) = match u {
            Unauthorized::Missing => (
                "Missing bearer token (Authorization: Bearer <JWT>)".to_owned(),
                Challenge::Bearer,
            ),
            Unauthorized::Invalid(why) => {
                (format!("Invalid token: {why}"), Challenge::InvalidToken)
            }
        };
        let mut e = ApiError::new(StatusCode::UNAUTHORIZED, detail);
        e.www_authenticate = Some(challenge);
        e
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::Read {
        path: path.to_owned(),
        source,
    })
}

fn bad(path: &Path, reason: impl Into<String>) -> AuthError {
    AuthError::BadKey {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// The secret in a secret file: its bytes without surrounding whitespace, as `omsctl` mints with.
pub fn secret_of(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

fn load_keys(config: &AuthConfig) -> Result<Vec<Key>, AuthError> {
    let sources = [
        config.jwt_secret_file.is_some(),
        config.jwt_public_key_file.is_some(),
        config.jwt_jwks_file.is_some(),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => return Err(AuthError::NoKey),
        1 => {}
        _ => return Err(AuthError::TooManyKeys),
    }
    if let Some(path) = &config.jwt_secret_file {
        let bytes = read(path)?;
        let secret = secret_of(&bytes);
        if secret.len() < MIN_SECRET_BYTES {
            return Err(bad(
                path,
                format!("the HS256 secret must be at least {MIN_SECRET_BYTES} bytes"),
            ));
        }
        return Ok(vec![Key {
            kid: None,
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret),
        }]);
    }
    if let Some(path) = &config.jwt_public_key_file {
        let pem = read(path)?;
        let key = if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
            (Algorithm::RS256, k)
        } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
            (Algorithm::ES256, k)
        } else {
            return Err(bad(path, "not a PEM RSA or P-256 public key"));
        };
        return Ok(vec![Key {
            kid: None,
            algorithm: key.0,
            key: key.1,
        }]);
    }
    let path = config.jwt_jwks_file.as_deref().ok_or(AuthError::NoKey)?;
    let set: JwkSet = serde_json::from_slice(&read(path)?)
        .map_err(|e| bad(path, format!("not a JWKS document: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
                if ec.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            // Keys for other algorithms are skipped: tokens signed with them answer 401.
            _ => continue,
        };
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| bad(path, format!("key {:?}: {e}", jwk.common.key_id)))?;
        keys.push(Key {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        return Err(bad(path, "no RS256 or ES256 key in the set"));
    }
    Ok(keys)
}

/// Middleware: authenticates the request (401 when it cannot be) and hands the [`Caller`] to
/// the handler. The token itself is never logged.
pub async fn authenticate(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match gate.check(value) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(why) => {
            tracing::debug!(path = %req.uri().path(), ?why, "unauthenticated request refused");
            let address = req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip());
            if let (Some(limiter), Some(address)) = (&gate.refusals, address) {
                if let Err(wait) = limiter.check(&address) {
                    return crate::problem::too_many(
                        "requests without a valid token from this address",
                        wait,
                    )
                    .into_response();
                }
            }
            ApiError::from(why).into_response()
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Fails closed: a route outside the middleware has no caller and answers 401, and a
        // metrics token is no caller of anything but /metrics ([`MetricsReader`]).
        let caller = authenticated(parts)?;
        if caller.role == Role::Metrics {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "A metrics token reads /metrics and nothing else",
            ));
        }
        Ok(caller)
    }
}

fn authenticated(parts: &Parts) -> Result<Caller, ApiError> {
    parts
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ApiError::from(Unauthorized::Missing))
}

/// A caller that may read `/metrics`: the metrics role, an operator or an admin (403
/// otherwise).
#[derive(Debug, Clone)]
pub struct MetricsReader(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for MetricsReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let caller = authenticated(parts)?;
        if caller.role != Role::Metrics {
            caller.require(Role::Operator)?;
        }
        Ok(Self(caller))
    }
}

/// A caller with the operator role or above (403 otherwise).
#[derive(Debug, Clone)]
pub struct Operator(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Role::Operator)?;
        Ok(Self(caller))
    }
}

/// A caller with the admin role (403 otherwise).
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.require(Role::Admin)?;
        Ok(Self(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use oms_contracts::auth::Claims;
    use oms_contracts::auth::{AUDIENCE, LOCAL_ISSUER};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn gate(secret: &[u8]) -> Option<Gate> {
        let dir = tempfile::tempdir().ok()?;
        let path = dir.path().join("secret");
        std::fs::write(&path, [secret, b"\n"].concat()).ok()?;
        Gate::from_config(&AuthConfig::secret_file(path)).ok()
    }

    fn token(claims: &impl serde::Serialize, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap_or_default()
    }

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    #[test]
    fn a_remembered_token_passes_until_its_expiry_and_then_is_refused() {
        let Some(g) = gate(SECRET) else {
            panic!("gate")
        };
        let claims = Claims::local("c-1", Role::Customer, now(), 600);
        let header = bearer(&token(&claims, SECRET));
        let caller = g.check(Some(&header));
        assert!(caller.is_ok(), "{caller:?}");
        // Remembered now: judged by its expiry (plus leeway) at whatever time it is asked.
        assert_eq!(g.check_at(Some(&header), claims.exp + LEEWAY_SECS), caller);
        assert_eq!(
            g.check_at(Some(&header), claims.exp + LEEWAY_SECS + 1),
            Err(Unauthorized::Invalid("token expired"))
        );
        // Forgotten once refused; the clock's verdict on it is "valid" again, as it should be.
        assert_eq!(g.check(Some(&header)), caller);
        // One changed character of the signature is another key, checked in full. The first
        // character of the signature is changed: any letter there is canonical base64url,
        // where the last one carries padding bits (a `B` there would be malformed, not forged).
        let mut forged = header.clone();
        let first_of_signature = forged.iter().rposition(|b| *b == b'.').map(|dot| dot + 1);
        if let Some(c) = first_of_signature.and_then(|at| forged.get_mut(at)) {
            *c = if *c == b'A' { b'B' } else { b'A' };
        }
        assert_eq!(
            g.check(Some(&forged)),
            Err(Unauthorized::Invalid("bad signature"))
        );
    }

    #[test]
    fn a_good_token_names_the_caller_and_bad_ones_say_why() {
        let Some(g) = gate(SECRET) else {
            panic!("gate")
        };
        let good = Claims::local("c-1", Role::Customer, now(), 600);
        assert_eq!(
            g.check(Some(&bearer(&token(&good, SECRET)))),
            Ok(Caller {
                role: Role::Customer,
                subject: Some("c-1".into())
            })
        );
        let expired = Claims::local("c-1", Role::Customer, now() - 7200, 600);
        let mut other_aud = good.clone();
        other_aud.aud = "billing".into();
        let mut other_iss = good.clone();
        other_iss.iss = "elsewhere".into();
        let cases = [
            (token(&expired, SECRET), "token expired"),
            (token(&other_aud, SECRET), "token is for another audience"),
            (token(&other_iss, SECRET), "token from another issuer"),
            (
                token(&good, b"another-secret-another-secret-xx"),
                "bad signature",
            ),
            (
                token(
                    &serde_json::json!({"sub": "x", "role": "root", "iss": LOCAL_ISSUER,
                        "aud": AUDIENCE, "exp": now() + 60}),
                    SECRET,
                ),
                "token claims invalid (sub and a known role needed)",
            ),
            (
                token(
                    &serde_json::json!({"sub": "x", "role": "admin", "iss": LOCAL_ISSUER,
                        "aud": AUDIENCE}),
                    SECRET,
                ),
                "token lacks a required claim (exp, iss, aud, sub)",
            ),
            // Valid only from tomorrow: refused today, whatever its expiry.
            (
                token(
                    &serde_json::json!({"sub": "x", "role": "admin", "iss": LOCAL_ISSUER,
                        "aud": AUDIENCE, "nbf": now() + 86_400, "exp": now() + 2 * 86_400}),
                    SECRET,
                ),
                "token not valid yet",
            ),
        ];
        for (t, why) in cases {
            assert_eq!(
                g.check(Some(&bearer(&t))),
                Err(Unauthorized::Invalid(why)),
                "{why}"
            );
        }
        assert_eq!(g.check(None), Err(Unauthorized::Missing));
        assert_eq!(
            g.check(Some(b"Basic dXNlcjpwYXNz")),
            Err(Unauthorized::Missing)
        );
    }

    #[test]
    fn unsigned_tokens_are_refused() {
        let Some(g) = gate(SECRET) else {
            panic!("gate")
        };
        let header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = serde_json::json!({"sub": "ops", "role": "admin", "iss": LOCAL_ISSUER,
            "aud": AUDIENCE, "exp": now() + 600});
        let body = base64_url(claims.to_string().as_bytes());
        for t in [format!("{header}.{body}."), format!("{header}.{body}")] {
            assert!(matches!(
                g.check(Some(&bearer(&t))),
                Err(Unauthorized::Invalid(_))
            ));
        }
    }

    /// Base64url without padding, enough for hand-made tokens.
    fn base64_url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    fn testdata(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name)
    }

    fn signed(alg: Algorithm, kid: Option<&str>, private: &str, claims: &Claims) -> String {
        let pem = std::fs::read(testdata(private)).unwrap_or_default();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        };
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        key.and_then(|k| encode(&header, claims, &k))
            .unwrap_or_default()
    }

    fn public_key_gate(file: &str) -> Option<Gate> {
        Gate::from_config(&AuthConfig {
            jwt_secret_file: None,
            jwt_public_key_file: Some(testdata(file)),
            ..AuthConfig::secret_file("x")
        })
        .ok()
    }

    #[test]
    fn rs256_and_es256_tokens_pass_with_their_public_key_only() {
        let claims = Claims::local("ops", Role::Operator, now(), 600);
        let rs = signed(Algorithm::RS256, None, "rs256-private.pem", &claims);
        let es = signed(Algorithm::ES256, None, "es256-private.pem", &claims);
        let (Some(rsa), Some(ec)) = (
            public_key_gate("rs256-public.pem"),
            public_key_gate("es256-public.pem"),
        ) else {
            panic!("gates")
        };
        assert_eq!(
            rsa.check(Some(&bearer(&rs))).map(|c| c.role),
            Ok(Role::Operator)
        );
        assert_eq!(
            ec.check(Some(&bearer(&es))).map(|c| c.role),
            Ok(Role::Operator)
        );
        assert!(rsa.check(Some(&bearer(&es))).is_err());
        assert!(ec.check(Some(&bearer(&rs))).is_err());
        // The classic confusion: HS256 "signed" with the public key as the secret.
        let public = std::fs::read(testdata("rs256-public.pem")).unwrap_or_default();
        assert_eq!(
            rsa.check(Some(&bearer(&token(&claims, &public)))),
            Err(Unauthorized::Invalid("algorithm not accepted"))
        );
        assert!(public_key_gate("README.md").is_none());
    }

    /// The public JWK of the test key `private` (for `alg`), named `kid`.
    fn jwk(private: &str, alg: Algorithm, kid: &str) -> Option<jsonwebtoken::jwk::Jwk> {
        let pem = std::fs::read(testdata(private)).unwrap_or_default();
        let key = match alg {
            Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
            _ => EncodingKey::from_ec_pem(&pem),
        };
        let mut jwk = key
            .and_then(|k| jsonwebtoken::jwk::Jwk::from_encoding_key(&k, alg))
            .ok();
        if let Some(j) = &mut jwk {
            j.common.key_id = Some(kid.to_owned());
        }
        jwk
    }

    #[test]
    fn a_jwks_picks_the_key_by_kid() {
        use jsonwebtoken::jwk::{Jwk, JwkSet};
        let keys: Vec<Jwk> = [
            jwk("rs256-private.pem", Algorithm::RS256, "r1"),
            jwk("es256-private.pem", Algorithm::ES256, "e1"),
        ]
        .into_iter()
        .flatten()
        .collect();
        assert_eq!(keys.len(), 2);
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("jwks.json");
        let set = serde_json::to_vec(&JwkSet { keys }).unwrap_or_default();
        assert!(std::fs::write(&path, set).is_ok());
        let Ok(g) = Gate::from_config(&AuthConfig {
            jwt_secret_file: None,
            jwt_jwks_file: Some(path),
            ..AuthConfig::secret_file("x")
        }) else {
            panic!("jwks gate")
        };
        let claims = Claims::local("c-9", Role::Customer, now(), 600);
        let by = |alg, kid, private| g.check(Some(&bearer(&signed(alg, kid, private, &claims))));
        assert!(by(Algorithm::RS256, Some("r1"), "rs256-private.pem").is_ok());
        assert!(by(Algorithm::ES256, Some("e1"), "es256-private.pem").is_ok());
        assert_eq!(
            by(Algorithm::ES256, Some("r1"), "es256-private.pem"),
            Err(Unauthorized::Invalid("algorithm not accepted"))
        );
        assert_eq!(
            by(Algorithm::RS256, Some("zz"), "rs256-private.pem"),
            Err(Unauthorized::Invalid("no key for this token's kid"))
        );
        assert_eq!(
            by(Algorithm::RS256, None, "rs256-private.pem"),
            Err(Unauthorized::Invalid("no key for this token's kid"))
        );
    }

    #[test]
    fn a_changed_jwks_is_re_read_adding_and_removing_keys_without_a_restart() {
        use jsonwebtoken::jwk::{Jwk, JwkSet};
        let (Some(ec), Some(rsa)) = (
            jwk("es256-private.pem", Algorithm::ES256, "e1"),
            jwk("rs256-private.pem", Algorithm::RS256, "r1"),
        ) else {
            panic!("jwks")
        };
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = dir.path().join("jwks.json");
        // Written aside and renamed into place, as omsctl and a Secret volume update do.
        let publish = |keys: Vec<Jwk>| {
            let aside = dir.path().join(".jwks.json.new");
            let set = serde_json::to_vec(&JwkSet { keys }).unwrap_or_default();
            assert!(std::fs::write(&aside, set).is_ok());
            assert!(std::fs::rename(&aside, &path).is_ok());
        };
        publish(vec![ec.clone()]);
        let Ok(g) = Gate::from_config(&AuthConfig {
            jwt_secret_file: None,
            jwt_jwks_file: Some(path.clone()),
            ..AuthConfig::secret_file("x")
        }) else {
            panic!("jwks gate")
        };
        let g = g.refresh_every(Duration::ZERO);
        let claims = Claims::local("ops", Role::Operator, now(), 600);
        let by_ec = bearer(&signed(
            Algorithm::ES256,
            Some("e1"),
            "es256-private.pem",
            &claims,
        ));
        let by_rsa = bearer(&signed(
            Algorithm::RS256,
            Some("r1"),
            "rs256-private.pem",
            &claims,
        ));
        assert!(g.check(Some(&by_ec)).is_ok());
        assert_eq!(
            g.check(Some(&by_rsa)),
            Err(Unauthorized::Invalid("no key for this token's kid"))
        );
        // A key added: accepted at once.
        publish(vec![ec.clone(), rsa.clone()]);
        assert!(g.check(Some(&by_rsa)).is_ok());
        // A key removed: its tokens are refused, even one that passed before.
        publish(vec![rsa]);
        assert_eq!(
            g.check(Some(&by_ec)),
            Err(Unauthorized::Invalid("no key for this token's kid"))
        );
        assert!(g.check(Some(&by_rsa)).is_ok());
        // A broken file keeps the keys the gate had.
        assert!(std::fs::write(&path, b"{not json").is_ok());
        assert!(g.check(Some(&by_rsa)).is_ok());
    }

    #[test]
    fn secrets_must_be_long_enough_and_keys_must_be_configured_once() {
        assert!(gate(b"short").is_none());
        let none = AuthConfig {
            jwt_secret_file: None,
            ..AuthConfig::secret_file("x")
        };
        assert!(matches!(Gate::from_config(&none), Err(AuthError::NoKey)));
        let two = AuthConfig {
            jwt_jwks_file: Some("y".into()),
            ..AuthConfig::secret_file("x")
        };
        assert!(matches!(
            Gate::from_config(&two),
            Err(AuthError::TooManyKeys)
        ));
        let off = AuthConfig {
            mode: AuthMode::Off,
            ..none
        };
        let g = Gate::from_config(&off).ok();
        assert_eq!(
            g.as_ref().and_then(|g| g.check(None).ok()).map(|c| c.role),
            Some(Role::Admin)
        );
        // Off makes every caller an admin: loopback listeners only.
        let g = g.expect("an off gate");
        for addr in ["127.0.0.1:8081", "[::1]:8081"] {
            assert!(
                g.may_listen_on(addr.parse().expect("addr")).is_ok(),
                "{addr}"
            );
        }
        for addr in ["0.0.0.0:8081", "10.0.0.7:8081", "[::]:8081"] {
            let e = g.may_listen_on(addr.parse().expect("addr")).err();
            assert!(
                e.is_some_and(|e| e.to_string().contains("not a loopback address")),
                "{addr}"
            );
        }
        let on = gate(&[7u8; 32]).expect("a gate");
        assert!(on
            .may_listen_on("0.0.0.0:8081".parse().expect("addr"))
            .is_ok());
    }

    #[test]
    fn roles_are_checked_from_the_least_to_the_most_powerful() {
        let caller = |role| Caller {
            role,
            subject: Some("s".into()),
        };
        assert!(caller(Role::Customer).require(Role::Operator).is_err());
        assert!(caller(Role::Operator).require(Role::Operator).is_ok());
        assert!(caller(Role::Operator).require(Role::Admin).is_err());
        assert!(caller(Role::Admin).require(Role::Operator).is_ok());
        let e = caller(Role::Customer).require(Role::Admin).err();
        assert_eq!(e.map(|e| e.problem.status), Some(403));
        assert_eq!(caller(Role::Customer).customer(), Some("s"));
        assert_eq!(caller(Role::Admin).customer(), None);
    }
}
