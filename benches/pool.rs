//! New-connection rate of the IAM pool, with and without the token cache, and the share of
//! connect time spent getting tokens. Runs as a service account against the sandbox
//! PostgreSQL that checks tokens (README, "Prove the passwordless login on a laptop"):
//!
//!   cargo run --release -- sandbox run --as demo/demo-app -f stack.example.yaml -- \
//!     cargo bench --bench pool
//!
//! Without the DB_* environment that `sandbox run` sets, it measures only what getting a token
//! costs, from the cache and freshly signed, and says how to measure connections. `cargo test`
//! runs it once in that quick mode.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pwless::db::Target;
use pwless::pool::Manager;
use pwless::pool::{IamPool, TokenCache, TokenTarget};

const CONNECTIONS: usize = 40;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

async fn measure(cache: bool, tokens: TokenTarget, target: Target) -> (f64, f64, f64) {
    let tokens = Arc::new(
        TokenCache::from_environment(tokens)
            .await
            .expect("credentials and region"),
    );
    let pool = IamPool::new(tokens.clone(), target, CONNECTIONS, cache).expect("pool");
    // The refresher signs the first token at once: let it, so the cached run starts warm.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let manager = pool.manager();
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(manager.create().await.expect("a connection"));
    }
    let elapsed = started.elapsed();
    let token = Duration::from_nanos(manager.token_nanos.load(Ordering::Relaxed));
    let connect = Duration::from_nanos(manager.connect_nanos.load(Ordering::Relaxed));
    (
        CONNECTIONS as f64 / elapsed.as_secs_f64(),
        token.as_secs_f64() * 1e6 / CONNECTIONS as f64,
        token.as_secs_f64() / connect.as_secs_f64() * 100.0,
    )
}

/// The cost of a token from the cache and of a freshly signed one, in µs per token, with
/// fixed example credentials (no database, no network).
async fn token_costs(rounds: u32) -> (f64, f64) {
    let cache = TokenCache::with_credentials(
        pwless::token::SigningCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: pwless::secret::Secret::new(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            ),
            session_token: Some(pwless::secret::Secret::new("FQoGZXIvYXdz".repeat(80))),
        },
        TokenTarget {
            region: "us-west-2".into(),
            host: "db.cluster-abc.us-west-2.rds.amazonaws.com".into(),
            port: 5432,
            user: "app_user".into(),
        },
    );
    let first = cache.token().await.expect("a token");
    let started = Instant::now();
    for _ in 0..rounds {
        let cached = cache.token().await.expect("a cached token");
        // Within its refresh window the cache hands out the token it has.
        assert_eq!(cached.expose(), first.expose(), "the cache signed anew");
    }
    let cached = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(cache.sign().await.expect("a signed token"));
    }
    let signed = started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds);
    (cached, signed)
}

fn main() {
    let rounds = if pwless_testing::quick_bench() {
        100
    } else {
        10_000
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (cached, signed) = runtime.block_on(token_costs(rounds));
    println!(
        "pool: a token from the cache {cached:.2} µs, freshly signed {signed:.2} µs ({rounds} each)"
    );
    let (Some(endpoint), Some(user), Some(region), Some(ca)) = (
        var("DB_ENDPOINT"),
        var("DB_USER"),
        var("AWS_REGION"),
        var("RDS_CA_CERT"),
    ) else {
        println!(
            "pool: new connections not measured: run it as a service account, with the sandbox up (README, \"Benchmarks\")"
        );
        return;
    };
    let port: u16 = var("DB_PORT")
        .and_then(|port| port.parse().ok())
        .unwrap_or(5432);
    let target = Target {
        server_name: var("DB_TLS_SERVER_NAME").unwrap_or_else(|| endpoint.clone()),
        address: var("DB_HOSTADDR")
            .map(|tunnel| pwless::db::resolve(&tunnel).expect("DB_HOSTADDR")),
        port,
        database: var("DB_NAME").unwrap_or_else(|| "appdb".into()),
        ca_bundle: ca.into(),
    };
    let tokens = TokenTarget {
        region,
        host: endpoint,
        port,
        user,
    };
    runtime.block_on(async {
        println!("pool: {CONNECTIONS} new connections each, sequential, verified TLS, token checked by the sandbox");
        for cache in [true, false] {
            let (rate, token_us, share) = measure(cache, tokens.clone(), target.clone()).await;
            println!(
                "  token cache {:>3}: {rate:7.1} new connections/s; token {token_us:8.1} µs per connection = {share:5.2}% of connect time",
                if cache { "on" } else { "off" }
            );
        }
    });
}
