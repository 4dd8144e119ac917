//! `pwless validate`: every problem of a stack file, or a one-line summary of what it declares.

use super::StackArgs;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub stack: StackArgs,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<u8> {
    let file = args.stack.file()?;
    let (stack, graph) = super::load_graph(&file)?;
    super::print(&format!(
        "{} is valid: stack {} in {}, {} resources.\n",
        file.display(),
        stack.name,
        stack.region,
        graph.len()
    ))?;
    Ok(super::EXIT_OK)
}
