//! The cost of one checkpoint (one conditional state write, what the executor does before and
//! after every cloud call) on each state backend, with the example stack's applied state.
//!
//! `PWLESS_MOTO_SERVER=$(scripts/sandbox install) cargo bench --bench checkpoint`
//!
//! It starts its own moto (S3, through scripts/moto-server.py) and sandbox PostgreSQL
//! (scripts/pg-sandbox, verified TLS) on loopback, so the remote figures are the sandbox's:
//! a real S3 or RDS adds its network round trip. Without PWLESS_MOTO_SERVER only the local file
//! is measured. `cargo test` runs it once in its quick mode: five checkpoints per backend.

use std::path::Path;
use std::time::{Duration, Instant};

use pwless::state::{Location, State, StateStore};

const ROUNDS: usize = 200;

/// Checkpoints per backend: [`ROUNDS`] under `cargo bench`, 5 in the quick mode of `cargo test`.
fn rounds() -> usize {
    if pwless_testing::quick_bench() {
        5
    } else {
        ROUNDS
    }
}
const PG_PASSWORD: &str = "P%4055w0rd!";

fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    format!(
        "median {:>7.3} ms   p95 {:>7.3} ms   mean {:>7.3} ms",
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() * 95 / 100]),
        ms(mean)
    )
}

async fn measure(location: &Location, state: &State) -> (Vec<Duration>, usize) {
    let mut store = StateStore::open(location, "bench").await.expect("lock");
    let _ = store.read().await.expect("read");
    let mut state = state.clone();
    store.write(&mut state).await.expect("first write");
    let size = serde_json::to_vec_pretty(&state).unwrap().len();
    let mut samples = Vec::with_capacity(rounds());
    for round in 0..rounds() {
        // Each checkpoint changes a little, as a pending operation coming and going does.
        state.pending_operations.clear();
        if round % 2 == 0
            && let Some(resource) = state.resources.first()
        {
            state
                .pending_operations
                .push(pwless::state::PendingOperation {
                    address: resource.address.clone(),
                    kind: resource.kind,
                    operation: pwless::state::Operation::Update,
                    token: format!("bench-{round}"),
                    started_at: "2026-11-25T00:00:00Z".into(),
                    inputs: None,
                    dependencies: Vec::new(),
                });
        }
        let started = Instant::now();
        store.write(&mut state).await.expect("checkpoint");
        samples.push(started.elapsed());
    }
    store.release().await;
    (samples, size)
}

/// The sandboxes the remote backends are measured against, started before any thread.
struct Sandboxes {
    _moto: pwless_testing::Moto,
    _pg: pwless_testing::PgSandbox,
}

/// Starts moto and the sandbox PostgreSQL and points this process's environment at them.
/// Called first thing in `main`, while this is the only thread.
fn start_sandboxes() -> Sandboxes {
    let moto = pwless_testing::Moto::start();
    let pg = pwless_testing::PgSandbox::start("bench-checkpoint", None);
    let pg_port = pg
        .var("PWLESS_DB_ADMIN_ENDPOINT")
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    // SAFETY: no other thread exists yet (the runtime is built after this).
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", &moto.endpoint);
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::remove_var("AWS_SESSION_TOKEN");
        std::env::remove_var("AWS_PROFILE");
        std::env::set_var(
            "PWLESS_BENCH_STATE_DB",
            format!(
                "postgresql://admin:{PG_PASSWORD}@localhost:{pg_port}/appdb?sslmode=verify-full&sslrootcert={}",
                pg.var("PWLESS_DB_CA_BUNDLE")
            ),
        );
    }
    Sandboxes {
        _moto: moto,
        _pg: pg,
    }
}

fn main() {
    let dir = std::env::temp_dir().join(format!("pwless-bench-checkpoint-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sandboxes = std::env::var_os("PWLESS_MOTO_SERVER").map(|_| start_sandboxes());

    let stack = pwless::spec::parse_str(
        Path::new("stack.example.yaml"),
        include_str!("../stack.example.yaml"),
    )
    .expect("example");
    let graph = pwless::graph::ResourceGraph::from_stack(&stack).expect("graph");
    let state = pwless_testing::applied_state(&stack.name, &graph);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "pwless checkpoint benchmark: one conditional state write, {} resources, {} rounds",
        state.resources.len(),
        rounds()
    );
    let report = |label: String, (samples, size): (Vec<Duration>, usize)| {
        println!(
            "  {:<52} {}",
            label.replace("SIZE", &size.to_string()),
            summary(samples)
        );
    };

    let local = Location::Local(dir.join("state.json"));
    report(
        "local file (fsync, rename, backup; SIZE bytes)".into(),
        runtime.block_on(measure(&local, &state)),
    );

    if sandboxes.is_none() {
        println!("  S3 and PostgreSQL skipped: set PWLESS_MOTO_SERVER=$(scripts/sandbox install)");
    } else {
        let target = pwless::state::s3::Target {
            bucket: "bench-state".into(),
            key: "bench/state.json".into(),
            region: "us-west-2".into(),
            lease: Duration::from_secs(60),
            kms_key_id: None,
        };
        runtime.block_on(async {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-west-2"))
                .load()
                .await;
            let s3 = aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&config)
                    .force_path_style(true)
                    .build(),
            );
            s3.create_bucket()
                .bucket(&target.bucket)
                .create_bucket_configuration(
                    aws_sdk_s3::types::CreateBucketConfiguration::builder()
                        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
                        .build(),
                )
                .send()
                .await
                .expect("bucket");
            // As the docs advise (and so pwless does not warn).
            s3.put_bucket_versioning()
                .bucket(&target.bucket)
                .versioning_configuration(
                    aws_sdk_s3::types::VersioningConfiguration::builder()
                        .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send()
                .await
                .expect("versioning");
        });
        report(
            "S3 on moto (PUT If-Match, SSE; SIZE bytes)".into(),
            runtime.block_on(measure(&Location::S3(target), &state)),
        );
        let target = pwless::state::postgres::Target {
            url_env: "PWLESS_BENCH_STATE_DB".into(),
            table: "pwless_state".into(),
            stack: stack.name.clone(),
        };
        report(
            "PostgreSQL (UPDATE ... WHERE revision; SIZE bytes)".into(),
            runtime.block_on(measure(&Location::Postgres(target), &state)),
        );
    }
    drop(runtime);
    drop(sandboxes);
    let _ = std::fs::remove_dir_all(&dir);
}
