//! `pwless state pull|push|migrate` and `pwless force-unlock`: move a stack's state by hand,
//! safely.

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{EXIT_OK, StackArgs, UserError, engine};
use crate::state::{Location, State, StateStore};

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
            let Some(state) = engine::block_on(engine::read_state(&location, &stack.name))?? else {
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
    let mut pushed = crate::state::store::parse_named(&name, "fix it and push again", &bytes)?;
    if pushed.stack != stack.name {
        return Err(UserError(format!(
            "{name} is the state of stack `{}`, not `{}`",
            pushed.stack, stack.name
        ))
        .into());
    }
    if pushed.moved_to.is_some() {
        return Err(UserError(format!(
            "{name} is the marker a migration left behind, not a state; nothing was changed"
        ))
        .into());
    }
    let location = args.stack.location(&stack)?;
    engine::runtime()?.block_on(async {
        let mut opened = engine::open_state(&location, &stack.name, "state push").await?;
        let result = async {
            if opened.existed {
                let current = &opened.state;
                if pushed.lineage != current.lineage {
                    return Err(UserError(format!(
                        "{name} has lineage {}, the state has {}: it is another history of this stack; nothing was changed",
                        pushed.lineage, current.lineage
                    ))
                    .into());
                }
                if pushed.serial < current.serial {
                    return Err(UserError(format!(
                        "{name} is at serial {}, older than the state's {}; nothing was changed",
                        pushed.serial, current.serial
                    ))
                    .into());
                }
            }
            opened.store.write(&mut pushed).await?;
            eprintln!(
                "Pushed {name} to {} (serial {}).",
                location.describe(),
                pushed.serial
            );
            anyhow::Ok(EXIT_OK)
        }
        .await;
        opened.store.release().await;
        result
    })
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

/// The same state, whatever pwless wrote it.
fn same_state(a: &State, b: &State) -> bool {
    let strip = |state: &State| State {
        pwless_version: String::new(),
        version: 0,
        ..state.clone()
    };
    strip(a) == strip(b)
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
    if from.same_place(&to) {
        return Err(UserError(format!(
            "the stack's `state:` section already points at {}: change it to the new place first, then migrate --from the old one",
            to.describe()
        ))
        .into());
    }
    engine::runtime()?.block_on(async {
        let mut source = engine::open_store(&from, "state migrate").await?;
        let mut target = match engine::open_store(&to, "state migrate").await {
            Ok(target) => target,
            Err(error) => {
                source.release().await;
                return Err(error.into());
            }
        };
        let result = copy_verify_switch(&mut source, &mut target, &stack.name).await;
        source.release().await;
        target.release().await;
        let state = result?;
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
    })
}

/// Marks the old place moved (keeping the whole state in the marker), copies, verifies. In
/// that order, a migration stopped at any point leaves no two live copies: before the marker,
/// nothing changed; after it, every run at the old place is refused, and running the same
/// migration again takes the state from the marker and finishes.
async fn copy_verify_switch(
    source: &mut StateStore,
    target: &mut StateStore,
    stack: &str,
) -> anyhow::Result<State> {
    let (from, to) = (source.location().clone(), target.location().clone());
    let Some(found) = source.read().await? else {
        return Err(UserError(format!(
            "no state in {}; nothing was changed",
            from.describe()
        ))
        .into());
    };
    if found.stack != stack {
        return Err(UserError(format!(
            "{} holds the state of stack `{}`, not `{stack}`; nothing was changed",
            from.describe(),
            found.stack
        ))
        .into());
    }
    let resuming = match &found.moved_to {
        None => false,
        Some(moved) if *moved == to.to_argument() => true,
        Some(moved) => {
            return Err(UserError(format!(
                "{} was already moved to {moved}; nothing was changed",
                from.describe()
            ))
            .into());
        }
    };
    let state = State {
        moved_to: None,
        ..found
    };
    let there = target.read().await?;
    match &there {
        None => {}
        // A marker this very history left when it moved away earlier: it may come back.
        Some(there) if there.moved_to.is_some() && there.lineage == state.lineage => {}
        Some(there) if resuming && there.lineage == state.lineage => {
            return Err(UserError(format!(
                "{} was already moved to {} (serial {} there now); nothing was changed",
                from.describe(),
                to.describe(),
                there.serial
            ))
            .into());
        }
        Some(there) => {
            return Err(UserError(format!(
                "{} already holds a state (lineage {}, serial {}); nothing was changed. Pull it and compare: if it is stale, remove it by hand first",
                to.describe(),
                there.lineage,
                there.serial
            ))
            .into());
        }
    }
    if resuming {
        eprintln!(
            "Finishing an earlier migration: {} says it moved to {}.",
            from.describe(),
            to.describe()
        );
    } else {
        source
            .put_exact(&State {
                moved_to: Some(to.to_argument()),
                ..state.clone()
            })
            .await?;
    }
    target.put_exact(&state).await?;
    let copied = target.read().await?;
    if !copied
        .as_ref()
        .is_some_and(|copied| same_state(copied, &state))
    {
        return Err(UserError(format!(
            "the copy in {} does not read back the same; the state is kept in the marker at {}: run the same migration again",
            to.describe(),
            from.describe()
        ))
        .into());
    }
    Ok(state)
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
