//! `pwless connect`: psql as a database user of the stack, with a fresh IAM token and
//! `sslmode=verify-full`. The token travels in `PGPASSWORD`, never on a command line.
//!
//! When the stack reaches its database through the relay in the EKS cluster
//! (`database.admin_access: cluster`), pwless listens on a free loopback port for as long as
//! psql runs and carries each connection to the relay through a Kubernetes port-forward, as
//! `kubectl port-forward` would; psql still verifies the certificate against the cluster
//! endpoint's name, end to end.

use std::path::PathBuf;
use std::process::Command;
use std::time::SystemTime;

use super::{StackArgs, UserError};
use crate::token::TokenSigner;

#[derive(Debug, clap::Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The database user to log in as.
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// The database the user is in, by its name in the stack file [default: the stack's only
    /// one].
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// The psql to run.
    #[arg(long, default_value = "psql", value_name = "PATH")]
    pub psql: PathBuf,
    /// Arguments passed on to psql (after `--`).
    #[arg(last = true)]
    pub psql_args: Vec<String>,
}

/// `key='value'` for a libpq connection string.
fn conninfo(key: &str, value: &str) -> String {
    format!(
        "{key}='{}'",
        value.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

pub fn run(args: ConnectArgs) -> anyhow::Result<u8> {
    let stack = crate::spec::load(&args.stack.file()?)?;
    let super::DatabasePath {
        database,
        endpoint,
        port,
        relay,
    } = super::database_path(&args.stack, &stack, args.database.as_deref(), &args.user)?;
    // The same connection settings pwless uses for itself: tunnel, name to verify, CA bundle.
    let settings =
        crate::db::Settings::for_database(&stack, database, super::stack_dir(&args.stack.file()?));
    let ca_bundle = settings.ca_bundle;
    let server_name = settings.tls_server_name.unwrap_or_else(|| endpoint.clone());
    let mut info = vec![
        conninfo("host", &server_name),
        conninfo("user", &args.user),
        conninfo("dbname", &database.name),
        conninfo("sslmode", "verify-full"),
        conninfo("sslrootcert", &ca_bundle.to_string_lossy()),
    ];
    let runtime = super::engine::runtime()?;
    if let Some(url) = &settings.ca_bundle_url
        && let Some(fetched) = runtime
            .block_on(crate::ca_bundle::ensure(&ca_bundle, url))
            .map_err(UserError)?
    {
        eprintln!("{fetched}");
    }
    // A tunnel of the user's own wins; else the relay the user's role was managed through.
    let relay = relay.filter(|_| settings.admin_endpoint.is_none());
    let mut forwarding = None;
    match (&settings.admin_endpoint, relay) {
        (Some(tunnel), _) => {
            let address =
                crate::db::resolve(tunnel).map_err(|error| UserError(error.to_string()))?;
            info.push(conninfo("hostaddr", &address.ip().to_string()));
            info.push(conninfo("port", &address.port().to_string()));
        }
        (None, Some(relay)) => {
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))
                .map_err(|error| UserError(format!("cannot listen on a loopback port: {error}")))?;
            let local = listener.local_addr()?;
            info.push(conninfo("hostaddr", &local.ip().to_string()));
            info.push(conninfo("port", &local.port().to_string()));
            let kubernetes = runtime.block_on(async {
                let config = crate::provider::aws::load_config(&stack.region).await;
                std::sync::Arc::new(crate::provider::kubernetes::KubernetesProvider::new(
                    &stack.region,
                    &config,
                    crate::provider::kubernetes::KubernetesSettings::from_environment(),
                ))
            });
            forwarding = Some(runtime.spawn(forward(listener, kubernetes, relay)));
        }
        (None, None) => info.push(conninfo("port", &port.to_string())),
    }

    let token = runtime
        .block_on(async {
            let signer = TokenSigner::from_environment(&stack.region).await?;
            // Signed for the endpoint the user connects to, as RDS checks it.
            signer.token(&endpoint, port, &args.user, SystemTime::now())
        })
        .map_err(|error| UserError(error.to_string()))?;
    let status = Command::new(&args.psql)
        .arg(info.join(" "))
        .args(&args.psql_args)
        .env("PGPASSWORD", token.expose())
        .status()
        .map_err(|error| UserError(format!("cannot run {}: {error}", args.psql.display())));
    if let Some(forwarding) = forwarding {
        forwarding.abort();
    }
    Ok(u8::try_from(status?.code().unwrap_or(1)).unwrap_or(1))
}

/// Carries every connection made to `listener` to the database relay, each through a
/// port-forward of its own, until aborted. A connection that cannot be forwarded is closed,
/// and why is said on stderr (psql then reports the closed connection).
async fn forward(
    listener: tokio::net::TcpListener,
    kubernetes: std::sync::Arc<crate::provider::kubernetes::KubernetesProvider>,
    relay: serde_json::Value,
) {
    while let Ok((mut local, _)) = listener.accept().await {
        let kubernetes = kubernetes.clone();
        let relay = relay.clone();
        tokio::spawn(async move {
            match kubernetes.open_relay(&relay).await {
                Ok(mut opened) => {
                    let _ = tokio::io::copy_bidirectional(&mut local, &mut opened.stream).await;
                }
                Err(error) => eprintln!("pwless: cannot reach the database relay: {error}"),
            }
        });
    }
}
