//! What checking a bearer token costs per request: `Gate::check` for each kind of key, on a token
//! the gate sees for the first time (signature verified) and on one it has verified before (the
//! gate remembers verified tokens until they expire), beside the gate with auth off (the
//! baseline). Prints figures, asserts nothing (these machines are shared and noisy):
//! `scripts/bench.sh auth` runs it after the stack-level comparison of `POST /orders`.

use std::path::PathBuf;
use std::time::Instant;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use oms_contracts::auth::{Claims, Role};
use oms_runtime::auth::{AuthConfig, Gate};

/// Distinct tokens per key (each first seen once per round).
const TOKENS: usize = 200;
/// Checks of remembered tokens per round.
const CALLS: usize = 20_000;
const ROUNDS: usize = 5;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../services/runtime/testdata")
        .join(name)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median over rounds of the mean µs per check: (first sight, remembered).
fn time_checks(
    new_gate: &dyn Fn() -> anyhow::Result<Gate>,
    headers: &[Vec<u8>],
) -> anyhow::Result<(f64, f64)> {
    let (mut first, mut again) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let gate = new_gate()?;
        let started = Instant::now();
        for h in headers {
            // Every token must pass, or this would time the refusal path.
            gate.check(Some(std::hint::black_box(h)))
                .map_err(|e| anyhow::anyhow!("the benchmark's token is refused: {e:?}"))?;
        }
        first.push(started.elapsed().as_secs_f64() * 1e6 / headers.len() as f64);
        let started = Instant::now();
        for h in headers.iter().cycle().take(CALLS) {
            std::hint::black_box(gate.check(Some(std::hint::black_box(h))).is_ok());
        }
        again.push(started.elapsed().as_secs_f64() * 1e6 / CALLS as f64);
    }
    Ok((median(first), median(again)))
}

fn main() -> anyhow::Result<()> {
    let now = jsonwebtoken::get_current_timestamp();
    let dir = tempfile::tempdir()?;
    let secret_file = dir.path().join("jwt-secret");
    let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    std::fs::write(&secret_file, secret)?;

    let sign_all = |alg: Algorithm, key: EncodingKey| -> anyhow::Result<Vec<Vec<u8>>> {
        (0..TOKENS)
            .map(|i| {
                let claims = Claims::local(&format!("customer-{i}"), Role::Customer, now, 3600);
                let token = jsonwebtoken::encode(&Header::new(alg), &claims, &key)?;
                Ok(format!("Bearer {token}").into_bytes())
            })
            .collect()
    };
    let public_key = |file: &str| AuthConfig {
        jwt_secret_file: None,
        jwt_public_key_file: Some(testdata(file)),
        ..AuthConfig::secret_file("")
    };
    let hs = sign_all(
        Algorithm::HS256,
        EncodingKey::from_secret(secret.as_bytes()),
    )?;
    let rs = sign_all(
        Algorithm::RS256,
        EncodingKey::from_rsa_pem(&std::fs::read(testdata("rs256-private.pem"))?)?,
    )?;
    let es = sign_all(
        Algorithm::ES256,
        EncodingKey::from_ec_pem(&std::fs::read(testdata("es256-private.pem"))?)?,
    )?;

    let off = AuthConfig::off();
    let hs_config = AuthConfig::secret_file(&secret_file);
    let rs_config = public_key("rs256-public.pem");
    let es_config = public_key("es256-public.pem");
    let cases: [(&str, &AuthConfig, &[Vec<u8>]); 4] = [
        ("auth off (baseline)", &off, &hs),
        ("HS256 secret", &hs_config, &hs),
        ("RS256 public key (2048 bit)", &rs_config, &rs),
        ("ES256 public key (P-256)", &es_config, &es),
    ];
    println!(
        "Gate::check, µs per check, median of {ROUNDS} rounds ({TOKENS} distinct tokens first seen, then {CALLS} checks of them remembered)"
    );
    println!("{:<30} {:>12} {:>12}", "key", "first sight", "remembered");
    for (name, config, headers) in cases {
        let (first, again) = time_checks(&|| Ok(Gate::from_config(config)?), headers)?;
        println!("{name:<30} {first:>12.2} {again:>12.2}");
    }
    Ok(())
}
