//! `omsctl auth`: make the local issuer key, print a token.

use std::path::PathBuf;
use std::time::Duration;

use oms_contracts::auth::{Claims, Role};
use oms_contracts::CustomerId;

use oms_ops::auth::{
    ensure_issuer, issuer_key_path, now, person, write_atomically, Issuer, IssuerFiles, Minted,
    Signer, MAX_TTL,
};
use oms_ops::ctx::Ctx;
use oms_ops::Failure;

/// `omsctl auth ...`.
#[derive(Debug, clap::Subcommand)]
pub enum AuthCommand {
    /// Make the issuer key in the state directory (once; ES256, mode 0600) and write its public
    /// half as a JWKS: what a deployment's services are given (compose and Kubernetes run this
    /// where the key is to live; `stack up` does it for the local stack).
    Init(InitArgs),
    /// Print a token minted from the local stack's secret (for curl, scripts, a browser):
    /// `export OMS_TOKEN=$(omsctl auth token --role operator)`.
    Token(TokenArgs),
}

/// `omsctl auth init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Also write the JWKS here (mode 0644), for the services to mount.
    #[arg(long)]
    jwks_out: Option<PathBuf>,
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

    /// Subject of an operator or admin token (a user or client name) [default: who runs
    /// omsctl, `$USER`].
    #[arg(long)]
    subject: Option<String>,

    /// How long the token is valid (at most 90 days).
    #[arg(long, default_value = "1h", value_parser = oms_ops::args::duration)]
    ttl: Duration,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
        .map_err(|e: oms_contracts::auth::UnknownRole| e.to_string())
}

/// Runs an `auth` command.
pub async fn run(ctx: &Ctx, command: AuthCommand) -> Result<(), Failure> {
    match command {
        AuthCommand::Init(args) => init(ctx, args),
        AuthCommand::Token(args) => token(ctx, args),
    }
}

fn init(ctx: &Ctx, args: InitArgs) -> Result<(), Failure> {
    let jwks = ensure_issuer(&ctx.state_dir)?;
    let mut written = vec![jwks.clone()];
    if let Some(out) = args.jwks_out.filter(|o| *o != jwks) {
        let document = std::fs::read(&jwks)?;
        write_atomically(&out, &document, 0o644)?;
        written.push(out);
    }
    let kid = Issuer::load(&issuer_key_path(&ctx.state_dir))?
        .kid()
        .map(str::to_owned);
    let value = IssuerFiles {
        issuer_key: issuer_key_path(&ctx.state_dir),
        key_id: kid,
        jwks: written.clone(),
    };
    ctx.print(&value, || {
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    })
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
        (_, None) => match &args.subject {
            Some(s) if s.trim().is_empty() => Err(Failure::usage("--subject must not be empty")),
            Some(s) => Ok(s.clone()),
            None => Ok(person()),
        },
    }
}

fn token(ctx: &Ctx, args: TokenArgs) -> Result<(), Failure> {
    if args.ttl.is_zero() || args.ttl > MAX_TTL {
        return Err(Failure::usage(
            "--ttl must be above zero and at most 90 days",
        ));
    }
    let subject = subject_of(&args)?;
    let Some(signer) = Signer::local(&ctx.state_dir)? else {
        return Err(Failure::usage(format!(
            "no local stack issuer key at {} (`omsctl stack up` creates it); a deployment's tokens come from its identity provider",
            issuer_key_path(&ctx.state_dir).display()
        )));
    };
    let claims = Claims::local(&subject, args.role, now(), args.ttl.as_secs());
    let token = signer.sign(&claims)?;
    let expires =
        chrono::DateTime::from_timestamp(i64::try_from(claims.exp).unwrap_or(i64::MAX), 0)
            .map(|t| t.to_rfc3339());
    let value = Minted {
        token: token.clone(),
        role: claims.role,
        subject: claims.sub,
        issuer: claims.iss,
        audience: claims.aud,
        key_id: signer.kid().map(str::to_owned),
        expires_at: expires,
    };
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
            AuthCommand::Init(_) => None,
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
}
