//! `pwless token`: an IAM auth token for a database user, for
//! `PGPASSWORD="$(pwless token ...)" psql "host=... sslmode=verify-full ..."`.

use std::path::PathBuf;
use std::time::SystemTime;

use super::{EXIT_OK, UserError};
use crate::token::TokenSigner;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The database user to log in as.
    #[arg(long, value_name = "NAME")]
    pub user: String,
    /// The database the user is in, by its name in the stack file [default: the stack's only
    /// one].
    #[arg(long, value_name = "NAME", conflicts_with = "host")]
    pub database: Option<String>,
    /// The stack file: host, port and region come from its applied state [default:
    /// pwless.yaml, else stack.yaml, in the current directory, unless --host is given].
    #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["host", "port"])]
    pub file: Option<PathBuf>,
    /// The state file [default: state/STACK.json beside the stack file].
    #[arg(long, value_name = "PATH", conflicts_with = "host")]
    pub state: Option<PathBuf>,
    /// The database endpoint (without a stack file).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// The database port the token is for (with --host).
    #[arg(long, value_name = "PORT", default_value_t = 5432, requires = "host")]
    pub port: u16,
    /// The region the token is signed for [default: the stack's, else AWS_REGION].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
}

pub fn run(args: TokenArgs) -> anyhow::Result<u8> {
    let stack_file = match &args.host {
        Some(_) => None,
        None => Some(super::stack_file(args.file.as_deref())?),
    };
    let (host, port, region) = match &stack_file {
        Some(file) => {
            let stack = crate::spec::load(file)?;
            let stack_args = super::StackArgs {
                file: Some(file.clone()),
                state: args.state.clone(),
            };
            let (host, port) = super::database_endpoint(
                &stack_args,
                &stack,
                args.database.as_deref(),
                &args.user,
            )?;
            (host, port, args.region.clone().unwrap_or(stack.region))
        }
        None => {
            let region = args
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
            (
                args.host.clone().unwrap_or_default(),
                args.port,
                region.unwrap_or_default(),
            )
        }
    };
    let token = super::engine::runtime()?
        .block_on(async {
            let signer = TokenSigner::from_environment(&region).await?;
            signer.token(&host, port, &args.user, SystemTime::now())
        })
        .map_err(|error| UserError(error.to_string()))?;
    // The one place a token is printed: on purpose, to stdout, for the caller to hand on.
    super::print(&format!("{}\n", token.expose()))?;
    Ok(EXIT_OK)
}
