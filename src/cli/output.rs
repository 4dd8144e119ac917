//! `pwless output [NAME]`: what the applied stack offers its users, from the state.

use serde_json::Value;

use super::{StackArgs, UserError};
use crate::ops::outputs::{StackOutputs, text};

#[derive(Debug, clap::Args)]
pub struct OutputArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// One output; its value alone is printed (strings without quotes), for scripts.
    pub name: Option<String>,
    /// Print JSON (every output as one object, or the one value) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: OutputArgs) -> anyhow::Result<u8> {
    let stack = crate::spec::load(&args.stack.file()?)?;
    let location = args.stack.location(&stack)?;
    let state =
        super::engine::block_on(crate::ops::run::read_applied_state(&location, &stack.name))??;
    let all = StackOutputs::from_state(&state).to_map();
    let text = match &args.name {
        Some(name) => {
            let value = all.get(name).ok_or_else(|| {
                UserError(format!(
                    "no output `{name}`; the outputs are: {}",
                    all.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
            match (value, args.json) {
                (Value::String(text), false) => format!("{text}\n"),
                (value, _) => format!("{}\n", serde_json::to_string_pretty(value)?),
            }
        }
        None if args.json => format!("{}\n", serde_json::to_string_pretty(&all)?),
        None => text(&all),
    };
    super::print(&text)?;
    Ok(super::EXIT_OK)
}
