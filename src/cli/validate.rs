//! `pwless validate`: every problem of a stack file, or a one-line summary of what it declares.

use super::StackArgs;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub stack: StackArgs,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<u8> {
    let file = args.stack.file()?;
    let stack = super::load_stack(&file)?;
    // A referenced network is read at plan time: validating stays offline.
    if !stack.is_known() {
        super::print(&format!(
            "{} is valid: stack {} in {}; the existing resources it references are read and checked by `pwless plan`.\n",
            file.display(),
            stack.name,
            stack.region,
        ))?;
        return Ok(super::EXIT_OK);
    }
    let graph = crate::graph::ResourceGraph::from_stack(&stack)
        .map_err(|error| super::Bug(error.to_string()))?;
    super::print(&format!(
        "{} is valid: stack {} in {}, {} resources.\n",
        file.display(),
        stack.name,
        stack.region,
        graph.len()
    ))?;
    Ok(super::EXIT_OK)
}
