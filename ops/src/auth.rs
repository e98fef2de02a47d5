//! Tokens: the local stack's issuer key, tokens signed with it (`omsctl auth token`), and the
//! token every request to a service carries.
//!
//! The local stack's tokens are ES256: the private key (`jwt-issuer.pem`, 0600) never leaves
//! omsctl's state directory; the services get only the public key, as a JWKS file (`jwks.json`)
//! they re-read when it changes. No service can mint a token. A state directory of an older
//! stack that only holds an HS256 secret (`jwt-secret`) is still used as it is.
//!
//! Which token a request carries: `--token` / `OMS_TOKEN`, else the output of `--token-command`
//! / `OMS_TOKEN_COMMAND` (or `token-command` in the config file; run once per omsctl run), else,
//! when the state directory holds the local stack's key, a five-minute admin token signed with
//! it, naming the person who runs omsctl, shared by the requests until a minute before it
//! expires. The token is never printed except by `auth token`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jsonwebtoken::jwk::{Jwk, JwkSet, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use oms_contracts::auth::{Claims, Role};

use crate::Failure;

/// The file in the state directory holding an older local stack's HS256 secret.
pub const SECRET_FILE: &str = "jwt-secret";

/// The file in the state directory holding the local stack's ES256 private key (PKCS#8 PEM).
pub const ISSUER_KEY_FILE: &str = "jwt-issuer.pem";

/// The file in the state directory holding the issuer's public key as a JWKS: what the
/// services verify tokens with.
pub const JWKS_FILE: &str = "jwks.json";

/// How long the admin tokens omsctl mints for its own requests live.
const OWN_TOKEN_TTL: u64 = 300;

/// Longest `--ttl` of `auth token`.
pub const MAX_TTL: Duration = Duration::from_secs(90 * 86_400);

/// Where an older local stack's secret lives in `state_dir`.
pub fn secret_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SECRET_FILE)
}

/// Where the local stack's private key lives in `state_dir`.
pub fn issuer_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(ISSUER_KEY_FILE)
}

/// Where the local stack's JWKS lives in `state_dir`.
pub fn jwks_path(state_dir: &Path) -> PathBuf {
    state_dir.join(JWKS_FILE)
}

/// Writes `bytes` to `path` with `mode`: aside first, then renamed into place, so a reader
/// (a service re-reading its JWKS) never sees half a file.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let partial = path.with_file_name(format!(".{name}.{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&partial)
            .map_err(|e| Failure::usage(format!("cannot write {}: {e}", partial.display())))?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// The local stack's issuer: its private key made once (ES256, P-256; mode 0600) and its JWKS
/// (re)written from it (mode 0644: it is public). Returns the JWKS file, what the services are
/// given.
pub fn ensure_issuer(state_dir: &Path) -> Result<PathBuf, Failure> {
    std::fs::create_dir_all(state_dir)?;
    let key_path = issuer_key_path(state_dir);
    if !key_path.is_file() {
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
            .and_then(|g| openssl::ec::EcKey::generate(&g))
            .and_then(openssl::pkey::PKey::from_ec_key)
            .and_then(|k| k.private_key_to_pem_pkcs8())
            .map_err(|e| Failure::usage(format!("cannot make the issuer key: {e}")))?;
        write_atomically(&key_path, &group, 0o600)?;
    }
    let issuer = Issuer::load(&key_path)?;
    let jwks = jwks_path(state_dir);
    let document = serde_json::to_vec_pretty(&JwkSet {
        keys: vec![issuer.jwk.clone()],
    })?;
    if std::fs::read(&jwks).ok().as_deref() != Some(document.as_slice()) {
        write_atomically(&jwks, &document, 0o644)?;
    }
    Ok(jwks)
}

/// The local stack's signing key.
#[derive(Clone)]
pub struct Issuer {
    key: EncodingKey,
    /// Its public half, with its `kid` (the RFC 7638 thumbprint).
    jwk: Jwk,
}

impl Issuer {
    /// The issuer whose private key is the PEM file `path`.
    pub fn load(path: &Path) -> Result<Self, Failure> {
        let pem = std::fs::read(path)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
        let bad = |e: jsonwebtoken::errors::Error| {
            Failure::usage(format!("{}: not a P-256 private key: {e}", path.display()))
        };
        let key = EncodingKey::from_ec_pem(&pem).map_err(bad)?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(bad)?;
        jwk.common.key_id = Some(jwk.thumbprint(ThumbprintHash::SHA256));
        Ok(Self { key, jwk })
    }

    /// Its key id.
    pub fn kid(&self) -> Option<&str> {
        self.jwk.common.key_id.as_deref()
    }

    /// Signs `claims` (ES256, with the `kid`).
    pub fn sign(&self, claims: &Claims) -> Result<String, Failure> {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = self.jwk.common.key_id.clone();
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| Failure::usage(format!("cannot sign a token: {e}")))
    }
}

/// What the local stack's tokens are signed with: its ES256 issuer key, or an older stack's
/// HS256 secret.
#[derive(Clone)]
pub enum Signer {
    /// The issuer's private key.
    Issuer(Box<Issuer>),
    /// An older stack's shared secret.
    Secret(Vec<u8>),
}

impl Signer {
    /// The local stack's signer in `state_dir`: its issuer key, else an older stack's secret.
    /// Either must be private to its owner: a key others can read is refused, not used.
    pub fn local(state_dir: &Path) -> Result<Option<Self>, Failure> {
        let key = issuer_key_path(state_dir);
        if key.is_file() {
            private(&key)?;
            return Issuer::load(&key).map(|i| Some(Signer::Issuer(Box::new(i))));
        }
        let secret = secret_path(state_dir);
        if secret.is_file() {
            private(&secret)?;
            return read_secret(&secret).map(|s| Some(Signer::Secret(s)));
        }
        Ok(None)
    }

    /// The key id its tokens carry (none for a secret).
    pub fn kid(&self) -> Option<&str> {
        match self {
            Signer::Issuer(i) => i.kid(),
            Signer::Secret(_) => None,
        }
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, Failure> {
        match self {
            Signer::Issuer(i) => i.sign(claims),
            Signer::Secret(s) => mint(s, claims),
        }
    }
}

/// Refuses a signing key file that anyone but its owner may read or write.
fn private(path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Failure::usage(format!(
            "{} may be read by others (mode {mode:o}): anyone who can read it can sign admin tokens; `chmod 600` it (or make a new key: delete it and run `omsctl stack up`)",
            path.display()
        )));
    }
    Ok(())
}

/// Who runs omsctl, for the subject of the tokens it signs: `$USER` (else `$LOGNAME`), else
/// `omsctl`. A saga step an operator took through omsctl records this name.
pub fn person() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|u| u.trim().to_owned())
        .find(|u| !u.is_empty() && u.len() <= 64 && !u.contains(char::is_control))
        .unwrap_or_else(|| "omsctl".to_owned())
}

/// The secret in a secret file (the bytes without surrounding whitespace, as the services read it).
fn read_secret(path: &Path) -> Result<Vec<u8>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    Ok(bytes.trim_ascii().to_vec())
}

/// Signs `claims` with `secret` (HS256).
pub fn mint(secret: &[u8], claims: &Claims) -> Result<String, Failure> {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .map_err(|e| Failure::usage(format!("cannot sign a token: {e}")))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// `auth init`: where the issuer key and its public half are.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerFiles {
    /// The private key (mode 0600).
    pub issuer_key: PathBuf,
    /// Its key id (`kid`).
    pub key_id: Option<String>,
    /// The JWKS files written.
    pub jwks: Vec<PathBuf>,
}

/// `auth token`: a token and what it says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Minted {
    /// The token.
    pub token: String,
    /// Its role.
    pub role: Role,
    /// Its subject.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// Its audience.
    pub audience: String,
    /// The key that signed it, when it has an id.
    pub key_id: Option<String>,
    /// When it expires (RFC 3339).
    pub expires_at: Option<String>,
}

/// Where the token of each request comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// `--token` / `OMS_TOKEN`.
    Given(String),
    /// A command that prints one (run once, on first use).
    Command {
        /// `sh -c` this.
        command: String,
        /// Its answer.
        token: Arc<tokio::sync::OnceCell<String>>,
    },
    /// Signed with the local stack's key (read once, on first use), if it exists.
    Local {
        /// The state directory.
        state_dir: PathBuf,
        /// Its signer.
        signer: Arc<OnceLock<Signer>>,
        /// The last token signed and its `exp`: requests share it until a minute before it
        /// expires (the services remember a token they verified, so a shared one costs them a
        /// lookup instead of an ES256 verification per request).
        current: Arc<std::sync::Mutex<Option<(String, u64)>>>,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or the secret.
        match self {
            TokenSource::Given(_) => f.write_str("TokenSource::Given"),
            TokenSource::Command { command, .. } => write!(f, "TokenSource::Command({command})"),
            TokenSource::Local { state_dir, .. } => {
                write!(f, "TokenSource::Local({})", state_dir.display())
            }
        }
    }
}

impl TokenSource {
    /// The source settings describe: `token`, else `command`, else the local secret.
    pub fn new(token: Option<String>, command: Option<String>, state_dir: &Path) -> Self {
        match (token.filter(|t| !t.trim().is_empty()), command) {
            (Some(t), _) => TokenSource::Given(t.trim().to_owned()),
            (None, Some(command)) => TokenSource::Command {
                command,
                token: Arc::new(tokio::sync::OnceCell::new()),
            },
            (None, None) => TokenSource::Local {
                state_dir: state_dir.to_owned(),
                signer: Arc::new(OnceLock::new()),
                current: Arc::new(std::sync::Mutex::new(None)),
            },
        }
    }

    /// Where tokens come from, in words (never the token).
    pub fn describe(&self) -> &'static str {
        match self {
            TokenSource::Given(_) => "given (hidden)",
            TokenSource::Command { .. } => "from the token command",
            TokenSource::Local { state_dir, .. } if issuer_key_path(state_dir).is_file() => {
                "signed with the local stack's issuer key (ES256)"
            }
            TokenSource::Local { state_dir, .. } if secret_path(state_dir).is_file() => {
                "minted from the local stack's secret (HS256)"
            }
            TokenSource::Local { .. } => "none",
        }
    }

    /// The token for the next request; `None` when there is none to give.
    pub async fn bearer(&self) -> Result<Option<String>, Failure> {
        match self {
            TokenSource::Given(t) => Ok(Some(t.clone())),
            TokenSource::Command { command, token } => token
                .get_or_try_init(|| run_token_command(command))
                .await
                .map(|t| Some(t.clone())),
            TokenSource::Local {
                state_dir,
                signer,
                current,
            } => {
                let mut current = current.lock().unwrap_or_else(|p| p.into_inner());
                let now = now();
                if let Some((token, exp)) = current.as_ref() {
                    if now + 60 < *exp {
                        return Ok(Some(token.clone()));
                    }
                }
                let signer = match signer.get() {
                    Some(s) => s,
                    None => match Signer::local(state_dir)? {
                        Some(s) => signer.get_or_init(|| s),
                        None => return Ok(None),
                    },
                };
                let claims = Claims::local(&person(), Role::Admin, now, OWN_TOKEN_TTL);
                let token = signer.sign(&claims)?;
                *current = Some((token.clone(), claims.exp));
                Ok(Some(token))
            }
        }
    }
}

async fn run_token_command(command: &str) -> Result<String, Failure> {
    let out = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .map_err(|e| Failure::usage(format!("token command {command:?}: {e}")))?;
    if !out.status.success() {
        return Err(Failure::usage(format!(
            "token command {command:?} failed ({})",
            out.status
        )));
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(Failure::usage(format!(
            "token command {command:?} printed no token (one line expected)"
        )));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issuer_key_is_made_once_private_and_only_its_public_half_is_published() {
        use std::os::unix::fs::PermissionsExt;
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let mode = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| m.permissions().mode() & 0o777)
        };
        let jwks = ensure_issuer(dir.path()).ok();
        let key = issuer_key_path(dir.path());
        assert_eq!(mode(&key), Some(0o600));
        assert_eq!(jwks.as_deref().and_then(mode), Some(0o644));
        let first = std::fs::read(&key).ok();
        assert!(ensure_issuer(dir.path()).is_ok());
        assert_eq!(std::fs::read(&key).ok(), first, "the key was made again");
        // The JWKS holds one ES256 public key, named by its thumbprint, and nothing private.
        let text = jwks
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let set: JwkSet = serde_json::from_str(&text).unwrap_or(JwkSet { keys: Vec::new() });
        assert_eq!(set.keys.len(), 1, "{text}");
        assert!(!text.contains("\"d\""), "a private parameter in {text}");
        let issuer = Issuer::load(&key).ok();
        let kid = issuer.as_ref().and_then(|i| i.kid().map(str::to_owned));
        assert_eq!(set.keys[0].common.key_id, kid);
        // What it signs verifies with the published key, and names its kid.
        let claims = Claims::local("alice", Role::Operator, now(), 60);
        let token = issuer.map(|i| i.sign(&claims)).and_then(Result::ok);
        let token = token.unwrap_or_default();
        let header = jsonwebtoken::decode_header(&token).ok();
        assert_eq!(header.as_ref().map(|h| h.alg), Some(Algorithm::ES256));
        assert_eq!(header.and_then(|h| h.kid), kid);
        let decoding = jsonwebtoken::DecodingKey::from_jwk(&set.keys[0]).ok();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
        validation.set_audience(&[oms_contracts::auth::AUDIENCE]);
        let verified =
            decoding.and_then(|k| jsonwebtoken::decode::<Claims>(&token, &k, &validation).ok());
        assert_eq!(verified.map(|d| d.claims.sub), Some("alice".to_owned()));
        // A key others may read is refused, not used.
        assert!(Signer::local(dir.path()).is_ok_and(|s| s.is_some()));
        let opened = std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644));
        assert!(opened.is_ok());
        let refused = Signer::local(dir.path()).err().map(|f| f.error.to_string());
        assert!(
            refused
                .as_ref()
                .is_some_and(|e| e.contains("may be read by others (mode 644)")),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn requests_carry_the_given_token_else_one_minted_locally_else_none() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let given = TokenSource::new(Some("abc".into()), None, dir.path());
        assert_eq!(given.bearer().await.ok(), Some(Some("abc".into())));
        let local = TokenSource::new(None, None, dir.path());
        assert_eq!(local.bearer().await.ok(), Some(None));
        assert!(ensure_issuer(dir.path()).is_ok());
        let minted = TokenSource::new(None, None, dir.path())
            .bearer()
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        // Requests share one token while it is fresh.
        let source = TokenSource::new(None, None, dir.path());
        let (a, b) = (source.bearer().await.ok(), source.bearer().await.ok());
        assert!(a.as_ref().is_some_and(Option::is_some));
        assert_eq!(a, b, "a new token per request");
        // An admin token naming the person who runs omsctl, signed ES256.
        let header = jsonwebtoken::decode_header(&minted).ok();
        assert_eq!(header.map(|h| h.alg), Some(Algorithm::ES256));
        let claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(&minted)
            .ok()
            .map(|d| d.claims);
        assert_eq!(claims.as_ref().map(|c| c.role), Some(Role::Admin));
        assert_eq!(claims.map(|c| c.sub), Some(person()));
        let command = TokenSource::new(None, Some("echo xyz".into()), dir.path());
        assert_eq!(command.bearer().await.ok(), Some(Some("xyz".into())));
        let failing = TokenSource::new(None, Some("exit 3".into()), dir.path());
        assert!(failing.bearer().await.is_err());
    }
}
