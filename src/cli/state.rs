//! `pwless state pull|push|migrate` and `pwless force-unlock`: move a stack's state by hand,
//! safely.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{EXIT_OK, StackArgs, UserError, engine};
use crate::state::Location;

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Print the state as JSON.
    Pull(PullArgs),
    /// Replace the state with FILE: refused for another stack, another lineage or an older serial.
    Push(PushArgs),
    /// Move the state to where the stack's `state:` section now points, from where it was:
    /// mark the old place moved (runs there are refused from then on), copy, verify.
    Migrate(MigrateArgs),
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    #[command(flatten)]
    pub stack: StackArgs,
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// A state file, as `pwless state pull` prints it.
    pub source: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The stack file, its `state:` section already pointing at the new place [default:
    /// pwless.yaml, else stack.yaml, in the current directory].
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Where the state is now: `local` (state/STACK.json beside the stack file),
    /// `local:PATH`, `s3://BUCKET/KEY` or `postgres:ENV_VAR[/TABLE]`.
    #[arg(long, value_name = "WHERE")]
    pub from: String,
}

#[derive(Debug, clap::Args)]
pub struct ForceUnlockArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The lock id, as the refusal message names it.
    pub lock_id: String,
}

pub fn run(command: StateCommand) -> anyhow::Result<u8> {
    match command {
        StateCommand::Pull(args) => {
            let stack = crate::spec::load(&args.stack.file()?)?;
            let location = args.stack.location(&stack)?;
            let Some(state) =
                engine::block_on(crate::ops::run::read_state(&location, &stack.name))??
            else {
                return Err(UserError(format!("no state in {}", location.describe())).into());
            };
            super::print(&format!("{}\n", serde_json::to_string_pretty(&state)?))?;
            Ok(EXIT_OK)
        }
        StateCommand::Push(args) => push(args),
        StateCommand::Migrate(args) => migrate(args),
    }
}

fn push(args: PushArgs) -> anyhow::Result<u8> {
    let stack = crate::spec::load(&args.stack.file()?)?;
    let bytes = std::fs::read(&args.source)
        .with_context(|| format!("cannot read {}", args.source.display()))?;
    let name = args.source.display().to_string();
    let location = args.stack.location(&stack)?;
    let pushed = engine::runtime()?.block_on(crate::ops::state::push(
        &location,
        &stack.name,
        &name,
        &bytes,
        &engine::Progress { json: false },
    ))?;
    eprintln!(
        "Pushed {name} to {} (serial {}).",
        location.describe(),
        pushed.serial
    );
    Ok(EXIT_OK)
}

/// `--from` of `state migrate`.
fn parse_from(
    text: &str,
    stack: &crate::spec::Stack,
    stack_file: &Path,
) -> anyhow::Result<Location> {
    use crate::spec::model::StateBackend;
    let backend = if text == "local" {
        StateBackend::Local { path: None }
    } else if let Some(path) = text.strip_prefix("local:") {
        // A path on the command line starts where the command runs.
        return Ok(Location::Local(PathBuf::from(path)));
    } else if let Some(rest) = text.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || key.is_empty() {
            return Err(UserError(format!(
                "--from {text}: write s3://BUCKET/KEY, e.g. s3://acme-pwless-state/prod/iam-postgres.json"
            ))
            .into());
        }
        let region = match &stack.state {
            StateBackend::S3 {
                bucket: same,
                region,
                ..
            } if same == bucket => region.clone(),
            _ => None,
        };
        StateBackend::S3 {
            bucket: bucket.to_string(),
            key: key.to_string(),
            region,
            lock_lease_seconds: StateBackend::DEFAULT_LEASE_SECONDS,
            kms_key_id: None,
        }
    } else if let Some(rest) = text.strip_prefix("postgres:") {
        let (url_env, table) = rest
            .split_once('/')
            .unwrap_or((rest, StateBackend::DEFAULT_TABLE));
        if url_env.is_empty() || table.is_empty() {
            return Err(UserError(format!(
                "--from {text}: write postgres:ENV_VAR or postgres:ENV_VAR/TABLE"
            ))
            .into());
        }
        StateBackend::Postgres {
            url_env: url_env.to_string(),
            table: table.to_string(),
        }
    } else {
        return Err(UserError(format!(
            "--from {text}: write `local`, `local:PATH`, `s3://BUCKET/KEY` or `postgres:ENV_VAR[/TABLE]`"
        ))
        .into());
    };
    Ok(Location::resolve(
        &backend,
        super::stack_dir(stack_file),
        &stack.name,
        &stack.region,
        None,
    )
    .map_err(UserError)?)
}

fn migrate(args: MigrateArgs) -> anyhow::Result<u8> {
    let file = super::stack_file(args.file.as_deref())?;
    let stack = crate::spec::load(&file)?;
    let stack_args = StackArgs {
        file: Some(file.clone()),
        state: None,
    };
    let to = stack_args.location(&stack)?;
    let from = parse_from(&args.from, &stack, &file)?;
    let state = engine::runtime()?.block_on(crate::ops::state::migrate(
        &from,
        &to,
        &stack.name,
        &engine::Progress { json: false },
    ))?;
    eprintln!(
        "Moved the state of stack {} (lineage {}, serial {}) from {} to {}.\n{} now holds a marker (with the state as it was) that refuses runs made with the old `state:` section.",
        stack.name,
        state.lineage,
        state.serial,
        from.describe(),
        to.describe(),
        from.describe()
    );
    Ok(EXIT_OK)
}

pub fn force_unlock(args: ForceUnlockArgs) -> anyhow::Result<u8> {
    let stack = crate::spec::load(&args.stack.file()?)?;
    let location = args.stack.location(&stack)?;
    let holder = engine::block_on(crate::state::store::force_unlock(&location, &args.lock_id))??;
    eprintln!(
        "Unlocked {} (the lock of {holder}). If that run is still going, its next state write is refused.",
        location.describe()
    );
    Ok(EXIT_OK)
}
