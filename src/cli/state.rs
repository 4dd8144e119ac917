//! `pwless state pull|push`: move a stack's state by hand, safely.

use std::path::PathBuf;

use anyhow::Context;

use super::{EXIT_OK, StackArgs, UserError};

#[derive(Debug, clap::Subcommand)]
pub enum StateCommand {
    /// Print the state as JSON.
    Pull(PullArgs),
    /// Replace the state with FILE: refused for another stack, another lineage or an older serial.
    Push(PushArgs),
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

pub fn run(command: StateCommand) -> anyhow::Result<u8> {
    match command {
        StateCommand::Pull(args) => {
            let stack = crate::spec::load(&args.stack.file)?;
            let path = args.stack.state_path(&stack.name);
            let opened = super::engine::open_state(&path, &stack.name, "state pull")?;
            if !opened.existed {
                return Err(UserError(format!("no state at {}", path.display())).into());
            }
            super::print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&opened.state)?
            ))?;
            Ok(EXIT_OK)
        }
        StateCommand::Push(args) => {
            let stack = crate::spec::load(&args.stack.file)?;
            let bytes = std::fs::read(&args.source)
                .with_context(|| format!("cannot read {}", args.source.display()))?;
            let mut pushed = crate::state::store::parse(&args.source, &args.source, &bytes)?;
            if pushed.stack != stack.name {
                return Err(UserError(format!(
                    "{} is the state of stack `{}`, not `{}`",
                    args.source.display(),
                    pushed.stack,
                    stack.name
                ))
                .into());
            }
            let path = args.stack.state_path(&stack.name);
            let mut opened = super::engine::open_state(&path, &stack.name, "state push")?;
            if opened.existed {
                let current = &opened.state;
                if pushed.lineage != current.lineage {
                    return Err(UserError(format!(
                        "{} has lineage {}, the state has {}: it is another history of this stack; nothing was changed",
                        args.source.display(),
                        pushed.lineage,
                        current.lineage
                    ))
                    .into());
                }
                if pushed.serial < current.serial {
                    return Err(UserError(format!(
                        "{} is at serial {}, older than the state's {}; nothing was changed",
                        args.source.display(),
                        pushed.serial,
                        current.serial
                    ))
                    .into());
                }
            }
            opened.store.write(&mut pushed)?;
            eprintln!(
                "Pushed {} to {} (serial {}).",
                args.source.display(),
                path.display(),
                pushed.serial
            );
            Ok(EXIT_OK)
        }
    }
}
