//! Token generation benchmark: pwless's signer against `aws_sdk_rds::auth_token` and boto3's
//! `generate_db_auth_token`, in the same run. `cargo bench --bench token` (boto3 is taken from
//! moto's virtualenv: set PWLESS_MOTO_SERVER as scripts/test does, or it is skipped).
//! `cargo test` runs it once in its quick mode: a few rounds, and boto3 must run.

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_rds::auth_token::{AuthTokenGenerator, Config};
use pwless::secret::Secret;
use pwless::token::{SigningCredentials, TokenSigner};

const HOST: &str = "db.cluster-abc.us-west-2.rds.amazonaws.com";
/// Rounds per signer (`cargo bench`; the quick mode of `cargo test` does 100).
const ROUNDS: u32 = 20_000;

fn per_token(total: Duration, rounds: u32) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(rounds)
}

fn main() {
    let quick = pwless_testing::quick_bench();
    let rounds = if quick { 100 } else { ROUNDS };
    let session = "FQoGZXIvYXdzEJr//////////wEaDOn+tok/en=".repeat(25);
    let signer = TokenSigner::new(
        SigningCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into()),
            session_token: Some(Secret::new(session.clone())),
        },
        "us-west-2",
    )
    .expect("signer");
    let _ = signer.token(HOST, 5432, "app_user", SystemTime::now());
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(
            signer
                .token(HOST, 5432, "app_user", SystemTime::now())
                .expect("token"),
        );
    }
    let ours = per_token(started.elapsed(), rounds);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sdk = runtime.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-west-2"))
            .credentials_provider(aws_sdk_rds::config::Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                Some(session.clone()),
                None,
                "bench",
            ))
            .load()
            .await;
        let generator = AuthTokenGenerator::new(
            Config::builder()
                .hostname(HOST)
                .port(5432)
                .username("app_user")
                .build()
                .expect("config"),
        );
        let _ = generator.auth_token(&config).await;
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(generator.auth_token(&config).await.expect("sdk token"));
        }
        per_token(started.elapsed(), rounds)
    });

    println!("IAM auth token generation, per token (session credentials, {rounds} rounds)");
    println!("  pwless TokenSigner:         {ours:>8.2} µs");
    println!(
        "  aws_sdk_rds::auth_token:    {sdk:>8.2} µs  (pwless is {:.1}x faster)",
        sdk / ours
    );
    match std::env::var("PWLESS_MOTO_SERVER") {
        Ok(moto) => {
            let python = std::path::Path::new(&moto).with_file_name("python");
            let boto_rounds = if quick { 50 } else { 5000 };
            let script = format!(
                "import timeit, boto3\n\
                 c = boto3.client('rds', region_name='us-west-2', aws_access_key_id='AKIDEXAMPLE', aws_secret_access_key='x', aws_session_token={session:?})\n\
                 n = {boto_rounds}\n\
                 print(timeit.timeit(lambda: c.generate_db_auth_token('{HOST}', 5432, 'app_user'), number=n) / n * 1e6)"
            );
            match std::process::Command::new(python)
                .args(["-c", &script])
                .output()
            {
                Ok(output) if output.status.success() => {
                    let boto: f64 = String::from_utf8_lossy(&output.stdout)
                        .trim()
                        .parse()
                        .unwrap_or(f64::NAN);
                    println!(
                        "  boto3 generate_db_auth_token:{boto:>7.2} µs  (pwless is {:.0}x faster)",
                        boto / ours
                    );
                }
                // The quick mode proves the benchmark works: boto3 must run.
                failed if quick => panic!("boto3 could not run: {failed:?}"),
                _ => println!("  boto3: could not run"),
            }
        }
        Err(_) => println!(
            "  boto3: skipped (set PWLESS_MOTO_SERVER, e.g. PWLESS_MOTO_SERVER=$(scripts/sandbox install))"
        ),
    }
}
