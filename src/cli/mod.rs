//! The command line: clap definitions and one small module per command
//! (parse -> library calls -> render).

mod apply;
mod connect;
mod doctor;
pub mod engine;
mod graph;
mod import;
mod manifests;
mod output;
mod plan;
mod sandbox;
mod show;
mod state;
mod token;
mod validate;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes. `--detailed-exitcode` adds [`EXIT_CHANGES`].
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_CHANGES: u8 = 2;
/// An internal error: a bug in pwless, not in the input.
pub const EXIT_BUG: u8 = 70;
/// Stopped by a second Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// `pwless --version`: the version, the commit it was built from, the build date (UTC) and the
/// target triple, as uv and Terraform print them. Set by `build.rs`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PWLESS_COMMIT"),
    ", built ",
    env!("PWLESS_BUILD_DATE"),
    ", ",
    env!("PWLESS_TARGET"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "pwless",
    version = LONG_VERSION,
    about = "Passwordless PostgreSQL on AWS, declared in one YAML stack file",
    after_help = "Examples:
  pwless plan -f stack.example.yaml        the full plan of the example stack, offline
  pwless apply --auto-approve              apply ./pwless.yaml (else ./stack.yaml)
  pwless completion bash > ~/.local/share/bash-completion/completions/pwless"
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
    #[command(after_help = "Examples:
  pwless plan -f stack.example.yaml             what apply would do, offline before the first apply
  pwless plan -o tonight.plan                   save it; `pwless apply tonight.plan` applies exactly this
  pwless plan --detailed-exitcode --json        for CI: exit 2 when there are changes")]
    Plan(plan::PlanArgs),
    /// Make the infrastructure match the stack (or apply a saved plan exactly).
    #[command(after_help = "Examples:
  pwless apply -f stack.example.yaml            plan, ask for `yes`, apply
  pwless apply --auto-approve                   ./pwless.yaml (else ./stack.yaml), no question
  pwless apply tonight.plan                     a saved plan, exactly; refused if the state moved")]
    Apply(apply::ApplyArgs),
    /// Delete everything the state records, in reverse dependency order.
    #[command(after_help = "Examples:
  pwless plan --destroy -f stack.example.yaml   see what would be deleted (and the final snapshot kept)
  pwless destroy -f stack.example.yaml          delete it all after a `yes`")]
    Destroy(apply::DestroyArgs),
    /// Print the outputs of the applied stack (endpoints, ids, ARNs).
    #[command(after_help = "Examples:
  pwless output                                 every output, one per line
  pwless output databaseEndpoint                one value alone, for scripts
  pwless output --json                          all of them as JSON")]
    Output(output::OutputArgs),
    /// Walk each access link's chain (database user, IAM auth, connect policy, trust, service
    /// account, security group) and name the first broken link and its fix; exit 1 if any.
    #[command(after_help = "Examples:
  pwless doctor                                 every access entry's chain
  pwless doctor --as demo/demo-app              one service account's
  pwless doctor --json                          for machines")]
    Doctor(doctor::DoctorArgs),
    /// Prove each login on the cluster: a Job under every access entry's service account logs
    /// in as its own database user (must succeed) and as every other (must be refused); prints
    /// the matrix, exit 1 on any unexpected result.
    #[command(after_help = "Examples:
  pwless verify --image 123456789012.dkr.ecr.us-west-2.amazonaws.com/pwless-demo@sha256:<digest>
  pwless verify                                 with app.image pinned by digest
  pwless verify --json                          for machines")]
    Verify(verify::VerifyArgs),
    /// Print a 15-minute IAM auth token for a database user (use it as the password).
    #[command(after_help = "Examples:
  PGPASSWORD=\"$(pwless token --user app_user)\" psql \"host=... sslmode=verify-full ...\"
  pwless token --user app_user --host db.cluster-abc.us-west-2.rds.amazonaws.com --region us-west-2")]
    Token(token::TokenArgs),
    /// Start psql as a database user, with a fresh IAM token and verify-full TLS.
    #[command(after_help = "Examples:
  pwless connect --user app_user                        psql as app_user
  pwless connect --user app_user -- -c 'select 1'       with psql arguments")]
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
    /// Bring a resource that exists under the stack's management: read it by its id and record
    /// it at ADDRESS in the state (nothing in the cloud changes); the next plan shows what apply
    /// would change to make it match the stack.
    #[command(after_help = "Examples:
  pwless import aws_vpc.main vpc-0123456789abcdef0
  pwless import 'aws_iam_role.irsa[demo/demo-app]' iam-postgres-demo-demo-app
  pwless import 'postgresql_role.user[app_user]' app_user")]
    Import(import::ImportArgs),
    /// Check a stack file and report every problem.
    #[command(after_help = "Examples:
  pwless validate                               ./pwless.yaml, else ./stack.yaml
  pwless validate -f stack.example.yaml")]
    Validate(validate::ValidateArgs),
    /// Show a saved plan and whether it can still be applied.
    Show(show::ShowArgs),
    /// Work with the local sandbox (moto, the sandbox PostgreSQL): run as a service account.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    #[command(after_help = "Examples:
  pwless completion bash > ~/.local/share/bash-completion/completions/pwless
  pwless completion zsh > \"${fpath[1]}/_pwless\"
  pwless completion fish > ~/.config/fish/completions/pwless.fish")]
    Completion(CompletionArgs),
}

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The stack file argument shared by the commands.
#[derive(Debug, clap::Args)]
pub struct StackArgs {
    /// The stack file [default: pwless.yaml, else stack.yaml, in the current directory].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// A local state file [default: the stack's `state:` section, else state/STACK.json
    /// beside the stack file].
    #[arg(long, value_name = "PATH")]
    pub state: Option<PathBuf>,
}

/// The stack files looked for, in order, when `-f` is not given (as Terraform and uv find
/// their configuration in the current directory).
pub const DEFAULT_STACK_FILES: [&str; 2] = ["pwless.yaml", "stack.yaml"];

/// The stack file to use: `explicit` when given, else the first of [`DEFAULT_STACK_FILES`]
/// in the current directory. Errors with the names looked for and the `-f` fix.
pub fn stack_file(explicit: Option<&Path>) -> Result<PathBuf, UserError> {
    if let Some(file) = explicit {
        return Ok(file.to_path_buf());
    }
    DEFAULT_STACK_FILES
        .iter()
        .map(PathBuf::from)
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            let here = std::env::current_dir()
                .map(|dir| dir.display().to_string())
                .unwrap_or_else(|_| "the current directory".into());
            UserError(format!(
                "no stack file: neither {} nor {} is in {here}; name one with -f FILE \
                 (for example `pwless plan -f stack.example.yaml`)",
                DEFAULT_STACK_FILES[0], DEFAULT_STACK_FILES[1]
            ))
        })
}

impl StackArgs {
    /// The stack file: `-f`, or the default one found in the current directory.
    pub fn file(&self) -> Result<PathBuf, UserError> {
        stack_file(self.file.as_deref())
    }

    /// Where the stack's state lives.
    pub fn location(&self, stack: &crate::spec::Stack) -> anyhow::Result<crate::state::Location> {
        Ok(crate::state::Location::resolve(
            &stack.state,
            stack_dir(&self.file()?),
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

pub use crate::ops::{Bug, Cancelled, Interrupted, UserError};

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            if error.downcast_ref::<Bug>().is_some() {
                eprintln!("error: {error:#}");
                return ExitCode::from(EXIT_BUG);
            }
            if error.downcast_ref::<Interrupted>().is_some()
                || error.downcast_ref::<Cancelled>().is_some()
            {
                eprintln!("error: {error:#}");
                return ExitCode::from(EXIT_INTERRUPTED);
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
        Command::Doctor(args) => doctor::run(args),
        Command::Import(args) => import::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Token(args) => token::run(args),
        Command::Connect(args) => connect::run(args),
        Command::Manifests(args) => manifests::run(args),
        Command::State(command) => state::run(command),
        Command::ForceUnlock(args) => state::force_unlock(args),
        Command::Graph(args) => graph::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Show(args) => show::run(args, style),
        Command::Sandbox(command) => sandbox::run(command),
        Command::Completion(args) => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "pwless", &mut script);
            print(&String::from_utf8_lossy(&script))?;
            Ok(EXIT_OK)
        }
    }
}

/// Loads a stack, its warnings printed on stderr; its references are not read yet.
pub(crate) fn load_stack(file: &Path) -> anyhow::Result<crate::spec::Stack> {
    let (stack, warnings) = crate::spec::load_with_warnings(file)?;
    if let Some(warnings) = warnings {
        eprint!("{}", warnings.render_warnings());
    }
    Ok(stack)
}

/// Loads a stack, reads what it references ([`discover`]) and expands it: the first steps of
/// most commands.
pub(crate) fn load_graph(
    file: &Path,
) -> anyhow::Result<(crate::spec::Stack, crate::graph::ResourceGraph)> {
    let mut stack = load_stack(file)?;
    discover(file, &mut stack)?;
    // The expansion is ours: a graph error here is a bug, not bad input.
    let graph =
        crate::graph::ResourceGraph::from_stack(&stack).map_err(|error| Bug(error.to_string()))?;
    Ok((stack, graph))
}

/// [`load_graph`] for a destroy, which needs no graph (it deletes what the state holds): the
/// references are not read, so a destroy never depends on them.
pub(crate) fn load_for_destroy(
    file: &Path,
) -> anyhow::Result<(crate::spec::Stack, crate::graph::ResourceGraph)> {
    let stack = load_stack(file)?;
    let graph = if stack.is_known() {
        crate::graph::ResourceGraph::from_stack(&stack)
    } else {
        crate::graph::ResourceGraph::build(Vec::new())
    }
    .map_err(|error| Bug(error.to_string()))?;
    Ok((stack, graph))
}

/// Reads the existing resources the stack references through the AWS API
/// ([`crate::ops::discover`]), so a stack with `network.existing` or `cluster.existing` needs
/// credentials to plan.
/// A missing or unsuitable reference is an error at its line of `file`.
pub(crate) fn discover(file: &Path, stack: &mut crate::spec::Stack) -> anyhow::Result<()> {
    if stack.is_known() {
        return Ok(());
    }
    let region = stack.region.clone();
    let result = engine::block_on(async {
        let config = crate::provider::aws::load_config(&region).await;
        crate::provider::aws::check_credentials(&config)
            .await
            .map_err(|message| anyhow::Error::from(UserError(message)))?;
        Ok::<_, anyhow::Error>(crate::ops::discover::discover(stack, &config).await)
    })??;
    match result {
        Ok(()) => Ok(()),
        Err(crate::ops::discover::DiscoverError::Invalid(diagnostics)) => {
            use anyhow::Context as _;
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read stack file {}", file.display()))?;
            Err(
                crate::spec::SpecError::Invalid(crate::spec::SpecErrors::new(
                    file,
                    &text,
                    diagnostics,
                ))
                .into(),
            )
        }
        Err(error) => Err(UserError(error.to_string()).into()),
    }
}

/// The applied database of a stack, for a user of it: (endpoint, port) from the state.
/// `database`: the `--database` given (optional when the stack has one).
pub(crate) fn database_endpoint(
    stack_args: &StackArgs,
    stack: &crate::spec::Stack,
    database: Option<&str>,
    user: &str,
) -> anyhow::Result<(String, u16)> {
    database_path(stack_args, stack, database, user).map(|path| (path.endpoint, path.port))
}

/// Where a user of one database of the stack logs in.
pub(crate) struct DatabasePath<'s> {
    pub database: &'s crate::spec::model::Database,
    pub endpoint: String,
    pub port: u16,
    /// The database relay the user's role was managed through (its recorded
    /// `connection.relay`), if any.
    pub relay: Option<serde_json::Value>,
}

/// The database `database` names (or the stack's only one), its cluster endpoint and port
/// from the state, and the relay the user's role was managed through. Errors: no such
/// database, or several and none named; `user` is not one of its users; nothing applied yet.
pub(crate) fn database_path<'s>(
    stack_args: &StackArgs,
    stack: &'s crate::spec::Stack,
    database: Option<&str>,
    user: &str,
) -> anyhow::Result<DatabasePath<'s>> {
    let chosen = stack.chosen_database(database).map_err(UserError)?;
    if !chosen.users.iter().any(|known| known.name == user) {
        let whose = if stack.databases.len() == 1 {
            format!("stack {}", stack.name)
        } else {
            format!("database `{}` of stack {}", chosen.key, stack.name)
        };
        return Err(UserError(format!("`{user}` is not a database user of {whose}")).into());
    }
    let location = stack_args.location(stack)?;
    let state = engine::block_on(crate::ops::run::read_state(&location, &stack.name))??;
    let mut outputs = state
        .as_ref()
        .map(crate::ops::outputs::StackOutputs::from_state)
        .unwrap_or_default();
    let (endpoint, port) = outputs.database(&chosen.key).ok_or_else(|| {
        UserError(format!(
            "no database in {}: apply the stack first",
            location.describe()
        ))
    })?;
    let endpoint = endpoint.to_string();
    Ok(DatabasePath {
        database: chosen,
        endpoint,
        port,
        relay: outputs
            .relays
            .remove(&crate::graph::address::db_user_role(&chosen.key, user)),
    })
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every option and argument of every command, with its command's path.
    fn arguments(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        for argument in command.get_arguments() {
            out.push((path.to_string(), argument.clone()));
        }
        for sub in command.get_subcommands() {
            arguments(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_option_has_help_text() {
        let mut all = Vec::new();
        arguments(&super::Cli::command(), "pwless", &mut all);
        let missing: Vec<String> = all
            .iter()
            .filter(|(_, argument)| !matches!(argument.get_id().as_str(), "help" | "version"))
            .filter(|(_, argument)| argument.get_help().is_none())
            .map(|(path, argument)| format!("{path} --{}", argument.get_id()))
            .collect();
        assert!(missing.is_empty(), "options without help: {missing:?}");
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
