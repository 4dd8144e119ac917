//! `pwless sandbox run --as NAMESPACE/SERVICE_ACCOUNT -f STACK -- COMMAND`: a command run the
//! way the stack's app runs on EKS under that service account — with the credentials its IRSA
//! role gives (from the sandbox's STS, after the trust policy is checked as STS would,
//! [`crate::sandbox`]) and the app's database environment — so a laptop can prove the whole
//! chain against moto and the sandbox PostgreSQL.

use std::path::PathBuf;
use std::process::Command;

use crate::spec::model::Identity;

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
    /// The database whose environment (DB_*) the command gets, by its name in the stack file
    /// [default: the service account's only one]; one it has no access entry for proves it is
    /// refused there.
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
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
    let file = args.stack.file()?;
    let mut stack = crate::spec::load(&file)?;
    // A referenced cluster's issuer and name come from reading it, not from the state.
    super::discover(&file, &mut stack)?;
    let entries: Vec<&crate::spec::model::Access> = stack
        .access
        .iter()
        .filter(|entry| {
            format!("{}/{}", entry.namespace, entry.service_account) == args.service_account
        })
        .collect();
    if entries.is_empty() {
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
    }
    // The database whose environment the command gets: the one named, else the service
    // account's only one. A database the service account has no entry for may be named too:
    // the command then proves it is refused there.
    let (entry, database, db_user) = match (&args.database, entries.as_slice()) {
        (None, [only]) => (*only, stack.database(&only.database), Some(&only.db_user)),
        (None, several) => {
            return Err(UserError(format!(
                "{} may log in to several databases ({}); say which with --database",
                args.service_account,
                several
                    .iter()
                    .map(|entry| entry.database.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into());
        }
        (Some(database), _) => {
            let chosen = stack.chosen_database(Some(database)).map_err(UserError)?;
            let own = entries.iter().find(|entry| entry.database == *database);
            (
                own.copied().unwrap_or(entries[0]),
                Some(chosen),
                own.map(|entry| &entry.db_user),
            )
        }
    };
    let database = database.expect("validation ties every access entry to a database of the stack");
    let location = args.stack.location(&stack)?;
    // Read without the lock: the command may be pwless itself.
    let state = super::engine::block_on(crate::ops::run::read_state(&location, &stack.name))??
        .unwrap_or_else(|| crate::state::State::new(&stack.name));
    let outputs = crate::ops::outputs::StackOutputs::from_state(&state).with_references(&stack);
    let (endpoint, port) = outputs.database_of(database).map_err(UserError)?;
    // The token verifiers' registries: one per sandbox PostgreSQL the command may reach (a
    // stack's databases may each be one), separated as PATH is.
    let registries: Vec<PathBuf> = std::env::var_os("PWLESS_SANDBOX_IAM_CREDENTIALS")
        .map(|list| std::env::split_paths(&list).collect())
        .unwrap_or_default();
    if registries.is_empty() {
        eprintln!(
            "warning: PWLESS_SANDBOX_IAM_CREDENTIALS is not set (see scripts/pg-sandbox): the sandbox PostgreSQL will not know these credentials"
        );
    }
    let mut child = Command::new(&args.command[0]);
    child.args(&args.command[1..]).env_remove("AWS_PROFILE");
    // Credentials: IRSA's straight in the environment, as the SDK would get them from STS;
    // Pod Identity's from an agent this process runs while the command does.
    let mut agent = None;
    let who = match super::engine::block_on(mechanism(&stack, &state, entry))? {
        Identity::Irsa => {
            let identity = outputs.irsa_identity(&entry.namespace, &entry.service_account)?;
            let credentials = super::engine::runtime()?.block_on(async {
                let config = crate::provider::aws::load_config(&stack.region).await;
                crate::sandbox::assume_as(&config, &identity)
                    .await
                    .map_err(|error| UserError(error.to_string()))
            })?;
            for registry in &registries {
                crate::sandbox::register_credentials(
                    registry,
                    &credentials.access_key_id,
                    credentials.secret_access_key.expose(),
                    Some(credentials.session_token.expose()),
                )
                .map_err(|error| {
                    UserError(format!(
                        "cannot register the credentials with the sandbox's token verifier: {error}"
                    ))
                })?;
            }
            child
                .env("AWS_ACCESS_KEY_ID", &credentials.access_key_id)
                .env(
                    "AWS_SECRET_ACCESS_KEY",
                    credentials.secret_access_key.expose(),
                )
                .env("AWS_SESSION_TOKEN", credentials.session_token.expose());
            format!(
                "{} (IAM role {}, IRSA)",
                identity.subject, identity.role_name
            )
        }
        Identity::PodIdentity => {
            let identity = outputs.pod_identity(&entry.namespace, &entry.service_account)?;
            let directory = PrivateDir::new()?;
            let runtime = super::engine::runtime()?;
            let started = runtime.block_on(async {
                let config = crate::provider::aws::load_config(&stack.region).await;
                crate::sandbox::pod_identity::start_agent(
                    &config,
                    &identity,
                    registries.clone(),
                    &directory.0,
                )
                .await
                .map_err(|error| UserError(error.to_string()))
            })?;
            // Ctrl-C reaches the command (the terminal's foreground group); this process
            // stays, serving credentials until the command ends.
            runtime.spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });
            // Nothing the SDKs' chain would take before the agent: no keys, no web identity,
            // no relative URI or literal token, and no shared config or credentials file (a
            // developer's `[default]` profile comes before container credentials).
            for variable in [
                "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_ROLE_ARN",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_AUTHORIZATION_TOKEN",
            ] {
                child.env_remove(variable);
            }
            let empty = directory.0.join("empty");
            std::fs::write(&empty, "")
                .map_err(|error| UserError(format!("cannot write {}: {error}", empty.display())))?;
            child
                .env("AWS_CONFIG_FILE", &empty)
                .env("AWS_SHARED_CREDENTIALS_FILE", &empty)
                .env("AWS_CONTAINER_CREDENTIALS_FULL_URI", &started.url)
                .env(
                    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    &started.token_file,
                );
            let who = format!(
                "system:serviceaccount:{}:{} ({}, Pod Identity)",
                entry.namespace, entry.service_account, started.session_arn
            );
            agent = Some((runtime, directory));
            who
        }
    };

    // The app's environment, as the Deployment sets it, plus the tunnel the sandbox needs.
    let settings =
        crate::db::Settings::for_database(&stack, database, super::stack_dir(&args.stack.file()?));
    if let Some(url) = &settings.ca_bundle_url
        && let Some(fetched) =
            super::engine::block_on(crate::ca_bundle::ensure(&settings.ca_bundle, url))?
                .map_err(UserError)?
    {
        eprintln!("{fetched}");
    }
    child
        .env("AWS_REGION", &stack.region)
        .env("DB_ENDPOINT", endpoint)
        .env("DB_PORT", port.to_string())
        .env("DB_NAME", &database.name)
        // Without an entry for this database, the first of its users (whom it must not be).
        .env(
            "DB_USER",
            db_user.map_or_else(
                || database.users.first().map_or("", |user| user.name.as_str()),
                String::as_str,
            ),
        )
        .env("RDS_CA_CERT", &settings.ca_bundle);
    // The command runs where a pod runs, inside the VPC: it reaches the database straight,
    // at the address the sandbox gives in-VPC clients (PWLESS_SANDBOX_DB_ROUTES, the route of
    // this database's endpoint, `ENDPOINT=HOST:PORT` separated by commas: one sandbox
    // PostgreSQL per database; else scripts/pg-sandbox's PWLESS_SANDBOX_DB_ADDRESS), else
    // through the user's tunnel. A `pwless connect` it runs takes that straight path too, as
    // it would in a pod.
    let routed = std::env::var("PWLESS_SANDBOX_DB_ROUTES")
        .unwrap_or_default()
        .split(',')
        .filter_map(|route| route.split_once('='))
        .find(|(host, _)| *host == endpoint)
        .map(|(_, address)| address.to_string());
    let in_vpc = routed
        .or_else(|| std::env::var("PWLESS_SANDBOX_DB_ADDRESS").ok())
        .filter(|address| !address.is_empty())
        .or_else(|| settings.admin_endpoint.clone());
    if let Some(address) = &in_vpc {
        child.env("DB_HOSTADDR", address);
        child.env("PWLESS_DB_ADMIN_ENDPOINT", address);
    }
    if let Some(name) = &settings.tls_server_name {
        child.env("DB_TLS_SERVER_NAME", name);
    }
    match db_user {
        Some(user) => eprintln!("sandbox: running as {who}, database user {user}"),
        None => eprintln!(
            "sandbox: running as {who}, which has no access entry for database `{}`: every login there should be refused",
            database.key
        ),
    }
    if let Some((runtime, directory)) = agent {
        let status = child
            .status()
            .map_err(|error| UserError(format!("cannot run {}: {error}", args.command[0])));
        drop(runtime);
        drop(directory);
        // A command ended by a signal exits as a shell reports it: 128 + the signal.
        use std::os::unix::process::ExitStatusExt as _;
        let status = status?;
        let code = status
            .code()
            .or_else(|| status.signal().map(|signal| 128 + signal))
            .unwrap_or(1);
        return Ok(u8::try_from(code).unwrap_or(1));
    }
    // The command takes this process's place, as a container's entrypoint would: signals
    // reach it, and nothing of pwless is left running beside it.
    use std::os::unix::process::CommandExt;
    let error = child.exec();
    Err(UserError(format!("cannot run {}: {error}", args.command[0])).into())
}

/// How a pod of `entry`'s service account started now gets its credentials, as EKS's webhook
/// decides it when the pod is made: from the live service account (read through the cluster's
/// Kubernetes API; the state's record when the cluster cannot be reached): its IRSA annotation
/// when it has one (the SDKs take IRSA's web identity first), else its Pod Identity
/// association when the state records one; before anything is applied, what the stack says.
/// So in the middle of a migration between the two, a command runs the way a pod started at
/// that moment would.
async fn mechanism(
    stack: &crate::spec::Stack,
    state: &crate::state::State,
    entry: &crate::spec::model::Access,
) -> Identity {
    use crate::graph::{ResourceKind, address};
    use crate::provider::Provider as _;
    let key = format!("{}/{}", entry.namespace, entry.service_account);
    let recorded = state.resource(&address::of(ResourceKind::KubernetesServiceAccount, &key));
    let annotated = |inputs: &crate::provider::Inputs| {
        inputs
            .get("role_arn")
            .is_some_and(serde_json::Value::is_string)
    };
    let mut is_annotated = recorded.map(|account| annotated(&account.inputs));
    if let Some(account) = recorded {
        let config = crate::provider::aws::load_config(&stack.region).await;
        let kubernetes = crate::provider::kubernetes::KubernetesProvider::new(
            &stack.region,
            &config,
            crate::provider::kubernetes::KubernetesSettings::from_environment(),
        );
        match kubernetes.read(account).await {
            Ok(crate::plan::Observed::Present { inputs, .. }) => {
                is_annotated = Some(annotated(&inputs));
            }
            Ok(crate::plan::Observed::Missing) => {}
            Err(error) => eprintln!(
                "note: cannot read service account {key} through the cluster ({}); going by the state",
                error.message
            ),
        }
    }
    let associated = state
        .resource(&address::pod_identity_association(
            &entry.namespace,
            &entry.service_account,
        ))
        .is_some();
    match (is_annotated, associated) {
        (Some(true), _) => Identity::Irsa,
        (Some(false), true) => Identity::PodIdentity,
        _ => entry.identity,
    }
}

/// A directory only this user may read (the Pod Identity token), removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> Result<Self, UserError> {
        use std::os::unix::fs::DirBuilderExt as _;
        // A name no earlier run can have left behind (a crashed one's pid can come again).
        let path = std::env::temp_dir().join(format!(
            "pwless-pod-identity-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|error| UserError(format!("cannot make {}: {error}", path.display())))?;
        Ok(PrivateDir(path))
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
