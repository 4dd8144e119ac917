//! `pwless sandbox run --as NAMESPACE/SERVICE_ACCOUNT -f STACK -- COMMAND`: a command run the
//! way the stack's app runs on EKS under that service account — with the credentials its IRSA
//! role gives (from the sandbox's STS, after the trust policy is checked as STS would,
//! [`crate::sandbox`]) and the app's database environment — so a laptop can prove the whole
//! chain against moto and the sandbox PostgreSQL.

use std::process::Command;

use super::{StackArgs, UserError};

#[derive(Debug, clap::Subcommand)]
pub enum SandboxCommand {
    /// Run a command the way a pod of one of the stack's service accounts runs on EKS: with the
    /// credentials of its IRSA role and the demo app's DB_* environment.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The service account, as in the stack's `access` entries.
    #[arg(long = "as", value_name = "NAMESPACE/SERVICE_ACCOUNT")]
    pub service_account: String,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub fn run(command: SandboxCommand) -> anyhow::Result<u8> {
    match command {
        SandboxCommand::Run(args) => run_as(args),
    }
}

fn run_as(args: RunArgs) -> anyhow::Result<u8> {
    let stack = crate::spec::load(&args.stack.file()?)?;
    let Some(entry) = stack.access.iter().find(|entry| {
        format!("{}/{}", entry.namespace, entry.service_account) == args.service_account
    }) else {
        let known: Vec<String> = stack
            .access
            .iter()
            .map(|entry| format!("{}/{}", entry.namespace, entry.service_account))
            .collect();
        return Err(UserError(format!(
            "`{}` is no service account of stack {}; its access entries are: {}",
            args.service_account,
            stack.name,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ))
        .into());
    };
    let location = args.stack.location(&stack)?;
    // Read without the lock: the command may be pwless itself.
    let state = super::engine::block_on(crate::ops::run::read_state(&location, &stack.name))??
        .unwrap_or_else(|| crate::state::State::new(&stack.name));
    let outputs = crate::ops::outputs::StackOutputs::from_state(&state);
    let identity = outputs.irsa_identity(&entry.namespace, &entry.service_account)?;
    let (endpoint, port) = outputs.database().ok_or_else(|| {
        UserError(format!(
            "the state has no database endpoint ({}): apply the stack first",
            crate::graph::address::rds_cluster()
        ))
    })?;
    let credentials = super::engine::runtime()?.block_on(async {
        let config = crate::provider::aws::load_config(&stack.region).await;
        crate::sandbox::assume_as(&config, &identity)
            .await
            .map_err(|error| UserError(error.to_string()))
    })?;
    let crate::sandbox::Identity {
        subject, role_name, ..
    } = &identity;

    match std::env::var_os("PWLESS_SANDBOX_IAM_CREDENTIALS") {
        Some(registry) => crate::sandbox::register_credentials(
            std::path::Path::new(&registry),
            &credentials.access_key_id,
            credentials.secret_access_key.expose(),
            Some(credentials.session_token.expose()),
        )
        .map_err(|error| {
            UserError(format!(
                "cannot register the credentials with the sandbox's token verifier: {error}"
            ))
        })?,
        None => eprintln!(
            "warning: PWLESS_SANDBOX_IAM_CREDENTIALS is not set (see scripts/pg-sandbox): the sandbox PostgreSQL will not know these credentials"
        ),
    }

    // The app's environment, as the Deployment sets it, plus the tunnel the sandbox needs.
    let settings = crate::db::Settings::for_stack(&stack, super::stack_dir(&args.stack.file()?));
    if let Some(url) = &settings.ca_bundle_url
        && let Some(fetched) =
            super::engine::block_on(crate::ca_bundle::ensure(&settings.ca_bundle, url))?
                .map_err(UserError)?
    {
        eprintln!("{fetched}");
    }
    let mut child = Command::new(&args.command[0]);
    child
        .args(&args.command[1..])
        .env("AWS_ACCESS_KEY_ID", &credentials.access_key_id)
        .env(
            "AWS_SECRET_ACCESS_KEY",
            credentials.secret_access_key.expose(),
        )
        .env("AWS_SESSION_TOKEN", credentials.session_token.expose())
        .env_remove("AWS_PROFILE")
        .env("AWS_REGION", &stack.region)
        .env("DB_ENDPOINT", endpoint)
        .env("DB_PORT", port.to_string())
        .env("DB_NAME", &stack.database.name)
        .env("DB_USER", &entry.db_user)
        .env("RDS_CA_CERT", &settings.ca_bundle);
    // The command runs where a pod runs, inside the VPC: it reaches the database straight,
    // at the address the sandbox gives in-VPC clients (scripts/pg-sandbox's
    // PWLESS_SANDBOX_DB_ADDRESS), else through the user's tunnel. A `pwless connect` it runs
    // takes that straight path too, as it would in a pod.
    let in_vpc = std::env::var("PWLESS_SANDBOX_DB_ADDRESS")
        .ok()
        .filter(|address| !address.is_empty())
        .or_else(|| settings.admin_endpoint.clone());
    if let Some(address) = &in_vpc {
        child.env("DB_HOSTADDR", address);
        child.env("PWLESS_DB_ADMIN_ENDPOINT", address);
    }
    if let Some(name) = &settings.tls_server_name {
        child.env("DB_TLS_SERVER_NAME", name);
    }
    eprintln!(
        "sandbox: running as {subject} (IAM role {role_name}), database user {}",
        entry.db_user
    );
    // The command takes this process's place, as a container's entrypoint would: signals
    // reach it, and nothing of pwless is left running beside it.
    use std::os::unix::process::CommandExt;
    let error = child.exec();
    Err(UserError(format!("cannot run {}: {error}", args.command[0])).into())
}
