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
    let stack = crate::spec::load(&args.stack.file)?;
    if !stack
        .database
        .users
        .iter()
        .any(|user| user.name == args.user)
    {
        return Err(UserError(format!(
            "`{}` is not a database user of stack {}",
            args.user, stack.name
        ))
        .into());
    }
    let path = args.stack.state_path(&stack.name);
    let opened = super::engine::open_state(&path, &stack.name, "connect")?;
    let cluster = opened
        .state
        .resource("aws_rds_cluster.main")
        .ok_or_else(|| {
            UserError(format!(
                "no database in {}: apply the stack first",
                path.display()
            ))
        })?;
    let endpoint = cluster
        .outputs
        .get("endpoint")
        .and_then(|value| value.as_str())
        .unwrap_or_default()
        .to_string();
    let port = cluster
        .outputs
        .get("port")
        .and_then(|value| value.as_u64())
        .unwrap_or(5432);
    drop(opened);

    // The same connection settings pwless uses for itself: tunnel, name to verify, CA bundle.
    let connection = &stack.database.connection;
    let setting = |variable: &str, from_stack: &Option<String>| {
        std::env::var(variable)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| from_stack.clone())
    };
    let ca_bundle = super::stack_dir(&args.stack.file).join(
        setting("PWLESS_DB_CA_BUNDLE", &connection.ca_bundle)
            .unwrap_or_else(|| "global-bundle.pem".into()),
    );
    let server_name = setting("PWLESS_DB_TLS_SERVER_NAME", &connection.tls_server_name)
        .unwrap_or_else(|| endpoint.clone());
    let mut info = vec![
        conninfo("host", &server_name),
        conninfo("user", &args.user),
        conninfo("dbname", &stack.database.name),
        conninfo("sslmode", "verify-full"),
        conninfo("sslrootcert", &ca_bundle.to_string_lossy()),
    ];
    match setting("PWLESS_DB_ADMIN_ENDPOINT", &connection.admin_endpoint) {
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
            signer.token(
                &endpoint,
                u16::try_from(port).unwrap_or(5432),
                &args.user,
                SystemTime::now(),
            )
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
