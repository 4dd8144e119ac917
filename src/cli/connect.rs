//! `pwless connect`: psql as a database user of the stack, with a fresh IAM token and
//! `sslmode=verify-full`. The token travels in `PGPASSWORD`, never on a command line.

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
    let (endpoint, port) = super::database_endpoint(&args.stack, &stack, &args.user)?;
    // The same connection settings pwless uses for itself: tunnel, name to verify, CA bundle.
    let settings = crate::db::Settings::for_stack(
        &stack.database.connection,
        super::stack_dir(&args.stack.file()?),
    );
    let ca_bundle = settings.ca_bundle;
    let server_name = settings.tls_server_name.unwrap_or_else(|| endpoint.clone());
    let mut info = vec![
        conninfo("host", &server_name),
        conninfo("user", &args.user),
        conninfo("dbname", &stack.database.name),
        conninfo("sslmode", "verify-full"),
        conninfo("sslrootcert", &ca_bundle.to_string_lossy()),
    ];
    match settings.admin_endpoint {
        Some(tunnel) => {
            let address =
                crate::db::resolve(&tunnel).map_err(|error| UserError(error.to_string()))?;
            info.push(conninfo("hostaddr", &address.ip().to_string()));
            info.push(conninfo("port", &address.port().to_string()));
        }
        None => info.push(conninfo("port", &port.to_string())),
    }

    let token = super::engine::runtime()?
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
        .map_err(|error| UserError(format!("cannot run {}: {error}", args.psql.display())))?;
    Ok(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1))
}
