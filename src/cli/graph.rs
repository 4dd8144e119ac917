//! `pwless graph`: the resource graph as Graphviz DOT or Mermaid.

use super::StackArgs;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The output format: Graphviz DOT (`| dot -Tsvg`) or a Mermaid flowchart.
    #[arg(long, value_enum, default_value = "dot")]
    pub format: GraphFormat,
}

pub fn run(args: GraphArgs) -> anyhow::Result<u8> {
    let (_, graph) = super::load_graph(&args.stack.file()?)?;
    let text = match args.format {
        GraphFormat::Dot => graph.to_dot(),
        GraphFormat::Mermaid => graph.to_mermaid(),
    };
    super::print(&text)?;
    Ok(super::EXIT_OK)
}
