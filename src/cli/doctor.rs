//! `pwless doctor`: which link of the passwordless chain is broken, and the fix
//! ([`crate::ops::doctor`]).

use super::{StackArgs, UserError};
use crate::ops::doctor::{Chain, Status};

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// Only this access entry's chain (`NAMESPACE/SERVICE_ACCOUNT`).
    #[arg(long = "as", value_name = "NAMESPACE/SERVICE_ACCOUNT")]
    pub service_account: Option<String>,
    /// Only the chains that log in as this database user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only the chains into this database, by its name in the stack file.
    #[arg(long, value_name = "NAME")]
    pub database: Option<String>,
    /// Print the chains as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit 0 when every link of every chain holds, 1 when one is broken.
pub fn run(args: DoctorArgs) -> anyhow::Result<u8> {
    let file = args.stack.file()?;
    let mut stack = crate::spec::load(&file)?;
    super::discover(&file, &mut stack)?;
    let location = args.stack.location(&stack)?;
    let chains = super::engine::block_on(async {
        let state = crate::ops::run::read_applied_state(&location, &stack.name).await?;
        let providers =
            crate::provider::Providers::for_stack(&stack, super::stack_dir(&file)).await;
        crate::ops::doctor::check(
            &stack,
            &state,
            &providers,
            crate::ops::doctor::Filter {
                service_account: args.service_account.as_deref(),
                database: args.database.as_deref(),
                user: args.user.as_deref(),
            },
        )
        .await
        .map_err(|message| anyhow::Error::from(UserError(message)))
    })??;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&chains)?)
    } else {
        render(&chains)
    };
    super::print(&text)?;
    Ok(if chains.iter().all(Chain::healthy) {
        super::EXIT_OK
    } else {
        1
    })
}

fn render(chains: &[Chain]) -> String {
    let mut out = String::new();
    for chain in chains {
        let database = if chain.database == crate::spec::model::MAIN_DATABASE {
            String::new()
        } else {
            format!("database {}, ", chain.database)
        };
        out.push_str(&format!(
            "{} -> {database}database user {}\n",
            chain.service_account, chain.db_user
        ));
        for link in &chain.links {
            let mark = match link.status {
                Status::Ok => "ok    ",
                Status::Broken => "BROKEN",
                Status::NotChecked => "-     ",
            };
            out.push_str(&format!("  {mark} {}: {}\n", link.name, link.detail));
            if let Some(fix) = &link.fix {
                out.push_str(&format!("         fix: {fix}\n"));
            }
        }
    }
    let broken = chains.iter().filter(|chain| !chain.healthy()).count();
    let unproven = chains
        .iter()
        .flat_map(|chain| &chain.links)
        .filter(|link| link.status == Status::NotChecked)
        .count();
    out.push_str(&match (broken, unproven) {
        (0, 0) => format!("Every link of {} chain(s) holds.\n", chains.len()),
        (0, n) => format!(
            "No link of {} chain(s) is broken; {n} could not be checked (marked -).\n",
            chains.len()
        ),
        (n, _) => format!("{n} of {} chain(s) broken.\n", chains.len()),
    });
    out
}
