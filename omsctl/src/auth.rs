//! Tokens: the local stack's secret, tokens minted from it (`omsctl auth token`), and the token
//! every request to a service carries.
//!
//! Which token a request carries: `--token` / `OMS_TOKEN`, else the output of `--token-command`
//! / `OMS_TOKEN_COMMAND` (or `token-command` in the config file; run once per omsctl run), else,
//! when the state directory holds the local stack's secret, a short-lived admin token minted
//! from it for each request. The token is never printed except by `auth token`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use oms_contracts::auth::{Claims, Role};
use oms_contracts::CustomerId;
use serde_json::json;

use crate::ctx::Ctx;
use crate::Failure;

/// The file in the state directory holding the local stack's HS256 secret.
pub const SECRET_FILE: &str = "jwt-secret";

/// How long the admin tokens omsctl mints for its own requests live.
const OWN_TOKEN_TTL: u64 = 300;

/// Longest `--ttl` of `auth token`.
const MAX_TTL: Duration = Duration::from_secs(90 * 86_400);

/// Where the local stack's secret lives in `state_dir`.
pub fn secret_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SECRET_FILE)
}

/// The local stack's secret file, created (32 random bytes, hex; mode 0600) when missing.
pub fn ensure_secret(state_dir: &Path) -> Result<PathBuf, Failure> {
    let path = secret_path(state_dir);
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(state_dir)?;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Failure::usage(format!("no randomness: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Written aside and renamed into place: a reader never sees half a secret.
    let partial = state_dir.join(format!(".{SECRET_FILE}.{}", std::process::id()));
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)?;
        f.write_all(hex.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&partial, &path)?;
    Ok(path)
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

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
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
    /// Minted from the local stack's secret (read once, on first use), if it exists.
    Local {
        /// The secret file.
        path: PathBuf,
        /// Its secret.
        secret: Arc<OnceLock<Vec<u8>>>,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token or the secret.
        match self {
            TokenSource::Given(_) => f.write_str("TokenSource::Given"),
            TokenSource::Command { command, .. } => write!(f, "TokenSource::Command({command})"),
            TokenSource::Local { path, .. } => write!(f, "TokenSource::Local({})", path.display()),
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
                path: secret_path(state_dir),
                secret: Arc::new(OnceLock::new()),
            },
        }
    }

    /// Where tokens come from, in words (never the token).
    pub fn describe(&self) -> &'static str {
        match self {
            TokenSource::Given(_) => "given (hidden)",
            TokenSource::Command { .. } => "from the token command",
            TokenSource::Local { path, .. } if path.is_file() => {
                "minted from the local stack's secret"
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
            TokenSource::Local { path, secret } => {
                let secret = match secret.get() {
                    Some(s) => s,
                    None if path.is_file() => {
                        let s = read_secret(path)?;
                        secret.get_or_init(|| s)
                    }
                    None => return Ok(None),
                };
                let claims = Claims::local("omsctl", Role::Admin, now(), OWN_TOKEN_TTL);
                mint(secret, &claims).map(Some)
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

/// `omsctl auth ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Print a token minted from the local stack's secret (for curl, scripts, a browser):
    /// `export OMS_TOKEN=$(omsctl auth token --role operator)`.
    Token(TokenArgs),
}

/// `omsctl auth token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// What the bearer may do: customer, operator or admin.
    #[arg(long, value_parser = parse_role)]
    role: Role,

    /// The customer id (the token's subject); required for, and only for, --role customer.
    #[arg(long)]
    customer: Option<String>,

    /// Subject of an operator or admin token (a user or client name).
    #[arg(long, default_value = "omsctl")]
    subject: String,

    /// How long the token is valid (at most 90 days).
    #[arg(long, default_value = "1h", value_parser = crate::ctx::duration)]
    ttl: Duration,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: oms_contracts::auth::UnknownRole| e.to_string())
}

/// Runs an `auth` command.
pub async fn run(ctx: &Ctx, command: AuthCommand) -> Result<(), Failure> {
    match command {
        AuthCommand::Token(args) => token(ctx, args),
    }
}

/// The subject of the token `args` ask for, checked.
fn subject_of(args: &TokenArgs) -> Result<String, Failure> {
    match (args.role, &args.customer) {
        (Role::Customer, Some(c)) => CustomerId::try_from(c.clone())
            .map(|c| c.as_str().to_owned())
            .map_err(|e| Failure::usage(format!("--customer: {e}"))),
        (Role::Customer, None) => Err(Failure::usage(
            "--role customer needs --customer ID (the customer the token acts for)",
        )),
        (_, Some(_)) => Err(Failure::usage(
            "--customer goes with --role customer only (use --subject to name an operator or admin)",
        )),
        (_, None) if args.subject.trim().is_empty() => {
            Err(Failure::usage("--subject must not be empty"))
        }
        (_, None) => Ok(args.subject.clone()),
    }
}

fn token(ctx: &Ctx, args: TokenArgs) -> Result<(), Failure> {
    if args.ttl.is_zero() || args.ttl > MAX_TTL {
        return Err(Failure::usage(
            "--ttl must be above zero and at most 90 days",
        ));
    }
    let subject = subject_of(&args)?;
    let path = secret_path(&ctx.state_dir);
    if !path.is_file() {
        return Err(Failure::usage(format!(
            "no local stack secret at {} (`omsctl stack up` creates it); a deployment's tokens come from its identity provider",
            path.display()
        )));
    }
    let secret = read_secret(&path)?;
    let claims = Claims::local(&subject, args.role, now(), args.ttl.as_secs());
    let token = mint(&secret, &claims)?;
    let expires =
        chrono::DateTime::from_timestamp(i64::try_from(claims.exp).unwrap_or(i64::MAX), 0)
            .map(|t| t.to_rfc3339());
    let value = json!({
        "token": token,
        "role": claims.role,
        "subject": claims.sub,
        "issuer": claims.iss,
        "audience": claims.aud,
        "expiresAt": expires,
    });
    // The table form is the bare token, so `$(omsctl auth token ...)` works.
    ctx.print(&value, || token.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AuthCommand,
    }

    fn args(argv: &[&str]) -> Option<TokenArgs> {
        let argv = ["auth", "token"].iter().chain(argv).copied();
        match Cli::try_parse_from(argv).ok()?.command {
            AuthCommand::Token(a) => Some(a),
        }
    }

    #[test]
    fn a_customer_token_needs_a_customer_and_only_it_takes_one() {
        let subject = |argv: &[&str]| args(argv).map(|a| subject_of(&a).ok());
        assert_eq!(
            subject(&["--role", "customer", "--customer", "c-7"]),
            Some(Some("c-7".into()))
        );
        assert_eq!(subject(&["--role", "customer"]), Some(None));
        assert_eq!(
            subject(&["--role", "operator", "--customer", "c-7"]),
            Some(None)
        );
        assert_eq!(
            subject(&["--role", "admin", "--subject", "alice"]),
            Some(Some("alice".into()))
        );
        assert_eq!(
            subject(&["--role", "customer", "--customer", " "]),
            Some(None)
        );
        assert!(args(&["--role", "root"]).is_none());
        assert!(args(&["--role", "admin", "--ttl", "soon"]).is_none());
    }

    #[test]
    fn the_secret_is_made_once_private_and_long_enough() {
        let Ok(dir) = tempfile::tempdir() else {
            panic!("tempdir")
        };
        let path = ensure_secret(dir.path()).ok();
        let first = path.as_deref().map(read_secret).and_then(Result::ok);
        assert_eq!(first.as_ref().map(Vec::len), Some(64));
        let again = ensure_secret(dir.path())
            .ok()
            .as_deref()
            .map(read_secret)
            .and_then(Result::ok);
        assert_eq!(first, again);
        use std::os::unix::fs::PermissionsExt;
        let mode = path
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode, Some(0o600));
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
        assert!(ensure_secret(dir.path()).is_ok());
        let minted = TokenSource::new(None, None, dir.path())
            .bearer()
            .await
            .ok()
            .flatten();
        assert_eq!(minted.map(|t| t.split('.').count()), Some(3));
        let command = TokenSource::new(None, Some("echo xyz".into()), dir.path());
        assert_eq!(command.bearer().await.ok(), Some(Some("xyz".into())));
        let failing = TokenSource::new(None, Some("exit 3".into()), dir.path());
        assert!(failing.bearer().await.is_err());
    }
}
