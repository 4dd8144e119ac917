//! The command line: clap definitions and one small module per command
//! (parse -> library calls -> render).

mod apply;
mod connect;
pub mod engine;
mod graph;
mod manifests;
pub mod output;
mod plan;
mod sandbox;
mod show;
mod state;
mod token;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes. `--detailed-exitcode` adds [`EXIT_CHANGES`].
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_CHANGES: u8 = 2;
/// An internal error: a bug in pwless, not in the input.
pub const EXIT_BUG: u8 = 70;

#[derive(Debug, Parser)]
#[command(
    name = "pwless",
    version,
    about = "Passwordless PostgreSQL on AWS, declared in one YAML stack file"
)]
pub struct Cli {
    /// Never colour output (NO_COLOR is honoured too).
    #[arg(long, global = true)]
    pub no_color: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what apply would change (or destroy, with --destroy).
    Plan(plan::PlanArgs),
    /// Make the infrastructure match the stack (or apply a saved plan exactly).
    Apply(apply::ApplyArgs),
    /// Delete everything the state records, in reverse dependency order.
    Destroy(apply::DestroyArgs),
    /// Print the outputs of the applied stack (endpoints, ids, ARNs).
    Output(output::OutputArgs),
    /// Print a 15-minute IAM auth token for a database user (use it as the password).
    Token(token::TokenArgs),
    /// Start psql as a database user, with a fresh IAM token and verify-full TLS.
    Connect(connect::ConnectArgs),
    /// Print the Kubernetes objects of the stack as YAML (for review and GitOps).
    Manifests(manifests::ManifestsArgs),
    /// Read, replace or move the state (pull prints it; push checks lineage and serial;
    /// migrate moves it to where the stack's `state:` section now points).
    #[command(subcommand)]
    State(state::StateCommand),
    /// End a lock whose holder you know is gone (S3: delete the lock; PostgreSQL: end the
    /// holder's session). A dead holder's lock ends by itself: at once on PostgreSQL and for a
    /// local file, after its lease on S3.
    ForceUnlock(state::ForceUnlockArgs),
    /// Print the resource graph (edges point from a dependency to what needs it).
    Graph(graph::GraphArgs),
    /// Check a stack file and report every problem.
    Validate(validate::ValidateArgs),
    /// Show a saved plan and whether it can still be applied.
    Show(show::ShowArgs),
    /// Work with the local sandbox (moto, the sandbox PostgreSQL): run as a service account.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
}

/// The stack file argument shared by the commands.
#[derive(Debug, clap::Args)]
pub struct StackArgs {
    /// The stack file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// A local state file [default: the stack's `state:` section, else state/STACK.json
    /// beside the stack file].
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
}

impl StackArgs {
    /// Where the stack's state lives.
    pub fn location(&self, stack: &crate::spec::Stack) -> anyhow::Result<crate::state::Location> {
        Ok(crate::state::Location::resolve(
            &stack.state,
            stack_dir(&self.file),
            &stack.name,
            &stack.region,
            self.state.as_deref(),
        )
        .map_err(UserError)?)
    }
}

/// Where a saved plan's state lives: its stack's `state:` section (relative paths from the
/// plan file's directory), or the local `--state` file given.
pub(crate) fn plan_location(
    plan: &crate::plan::Plan,
    plan_file: &Path,
    state: Option<&Path>,
) -> anyhow::Result<crate::state::Location> {
    Ok(crate::state::Location::resolve(
        &plan.state_backend,
        stack_dir(plan_file),
        &plan.stack,
        &plan.region,
        state,
    )
    .map_err(UserError)?)
}

/// The directory of the stack file: relative paths in it (state, CA bundle) start there.
pub fn stack_dir(stack_file: &Path) -> &Path {
    stack_file
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// An error in what the user gave us (input, files, environment): exit 1.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// An error that means pwless itself is wrong: exit 70 and ask for a report.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0} (this is a bug in pwless; please report it with the stack file)")]
pub struct Bug(pub String);

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            if error.downcast_ref::<Bug>().is_some() {
                eprintln!("error: {error:#}");
                return ExitCode::from(EXIT_BUG);
            }
            match error.downcast_ref::<crate::spec::SpecError>() {
                // Rendered diagnostics carry their own "error:" lines.
                Some(crate::spec::SpecError::Invalid(errors)) => eprint!("{}", errors.render()),
                _ => eprintln!("error: {error:#}"),
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

pub fn run(cli: Cli) -> anyhow::Result<u8> {
    let style = crate::render::Style::for_stdout(cli.no_color);
    match cli.command {
        Command::Plan(args) => plan::run(args, style),
        Command::Apply(args) => apply::apply(args, style),
        Command::Destroy(args) => apply::destroy(args, style),
        Command::Output(args) => output::run(args),
        Command::Token(args) => token::run(args),
        Command::Connect(args) => connect::run(args),
        Command::Manifests(args) => manifests::run(args),
        Command::State(command) => state::run(command),
        Command::ForceUnlock(args) => state::force_unlock(args),
        Command::Graph(args) => graph::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Show(args) => show::run(args, style),
        Command::Sandbox(command) => sandbox::run(command),
    }
}

/// Loads and expands a stack: the first steps of most commands.
pub(crate) fn load_graph(
    file: &Path,
) -> anyhow::Result<(crate::spec::Stack, crate::graph::ResourceGraph)> {
    let stack = crate::spec::load(file)?;
    // The expansion is ours: a graph error here is a bug, not bad input.
    let graph =
        crate::graph::ResourceGraph::from_stack(&stack).map_err(|error| Bug(error.to_string()))?;
    Ok((stack, graph))
}

/// The applied database of a stack, for a user of it: (endpoint, port) from the state.
pub(crate) fn database_endpoint(
    stack_args: &StackArgs,
    stack: &crate::spec::Stack,
    user: &str,
) -> anyhow::Result<(String, u16)> {
    if !stack.database.users.iter().any(|known| known.name == user) {
        return Err(UserError(format!(
            "`{user}` is not a database user of stack {}",
            stack.name
        ))
        .into());
    }
    let location = stack_args.location(stack)?;
    let state = engine::block_on(engine::read_state(&location, &stack.name))??;
    let cluster = state
        .as_ref()
        .and_then(|state| state.resource("aws_rds_cluster.main"))
        .ok_or_else(|| {
            UserError(format!(
                "no database in {}: apply the stack first",
                location.describe()
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
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or(5432);
    Ok((endpoint, port))
}

/// Writes `text` to stdout; a closed pipe (`pwless plan | head`) is not an error.
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}
