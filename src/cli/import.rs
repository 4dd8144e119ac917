//! `pwless import ADDRESS ID`: bring an existing resource under the stack's management
//! ([`crate::ops::import`]).

use super::{EXIT_OK, StackArgs, engine};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The resource's address in the stack, e.g. `aws_vpc.main` (`pwless graph` lists them).
    #[arg(value_name = "ADDRESS")]
    pub address: String,
    /// Its id: an EC2 id (`vpc-…`, `subnet-…`, `igw-…`, `rtb-…`, `sg-…`), an OIDC provider's
    /// ARN, or the name of an IAM role, EKS cluster, Aurora cluster or database user.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// Exit 0 once the resource is in the state; it says to plan next.
pub fn run(args: ImportArgs) -> anyhow::Result<u8> {
    let file = args.stack.file()?;
    let (stack, graph) = super::load_graph(&file)?;
    let location = args.stack.location(&stack)?;
    let imported = engine::block_on(crate::ops::import::import(
        &stack,
        &graph,
        &location,
        super::stack_dir(&file),
        &args.address,
        &args.id,
        &engine::Progress { json: false },
    ))??;
    eprintln!(
        "Imported {} ({}) into the state. `pwless plan` shows what apply would change to make it match the stack; from now on destroy deletes it too.",
        imported.address, imported.id
    );
    Ok(EXIT_OK)
}
