//! New-connection rate of the IAM pool, with and without the token cache, and the share of
//! connect time spent getting tokens. Runs as a service account against the sandbox
//! PostgreSQL that checks tokens (README, "Prove the passwordless login on a laptop"):
//!
//!   cargo run --release -- sandbox run --as demo/demo-app -f stack.example.yaml -- \
//!     cargo bench --bench pool
//!
//! Without the DB_* environment that `sandbox run` sets, it says so and measures nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deadpool::managed::Manager;
use pwless::db::Target;
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

fn main() {
    let (Some(endpoint), Some(user), Some(region), Some(ca)) = (
        var("DB_ENDPOINT"),
        var("DB_USER"),
        var("AWS_REGION"),
        var("RDS_CA_CERT"),
    ) else {
        println!(
            "pool: skipped (run it as a service account: pwless sandbox run --as demo/demo-app -f stack.example.yaml -- cargo bench --bench pool)"
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
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
