//! `pwless manifests`: the Kubernetes objects pwless would apply, as YAML, for review and for
//! GitOps tools. Before the first apply, values not yet known read `<known after apply>`.

use super::StackArgs;

#[derive(Debug, clap::Args)]
pub struct ManifestsArgs {
    #[command(flatten)]
    pub stack: StackArgs,
}

pub fn run(args: ManifestsArgs) -> anyhow::Result<u8> {
    let (stack, graph) = super::load_graph(&args.stack.file)?;
    let opened = super::engine::open_state(
        &args.stack.state_path(&stack.name),
        &stack.name,
        "manifests",
    )?;
    let state = opened.existed.then_some(&opened.state);
    let documents = crate::kubernetes::manifests(&graph, state);
    super::print(&crate::kubernetes::to_yaml(&documents))?;
    Ok(super::EXIT_OK)
}
