//! `pwless manifests`: the Kubernetes objects pwless would apply, as YAML, for review and for
//! GitOps tools. Before the first apply, values not yet known read `<known after apply>`.

use super::StackArgs;

#[derive(Debug, clap::Args)]
pub struct ManifestsArgs {
    #[command(flatten)]
    pub stack: StackArgs,
}

pub fn run(args: ManifestsArgs) -> anyhow::Result<u8> {
    let (stack, graph) = super::load_graph(&args.stack.file()?)?;
    let location = args.stack.location(&stack)?;
    let state = super::engine::block_on(crate::ops::run::read_state(&location, &stack.name))??;
    let documents = crate::kubernetes::manifests(&graph, state.as_ref());
    super::print(&crate::kubernetes::to_yaml(&documents))?;
    Ok(super::EXIT_OK)
}
