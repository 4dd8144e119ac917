//! `pwless verify`: every login of the stack proved from inside the cluster
//! ([`crate::ops::verify`]).

use super::{StackArgs, UserError};
use crate::ops::verify::Row;

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub stack: StackArgs,
    /// The pwless-demo image the Jobs run, pinned by digest
    /// (`REGISTRY/REPOSITORY@sha256:DIGEST`) [default: the stack's app.image].
    #[arg(long)]
    pub image: Option<String>,
    /// Print the matrix as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Exit 0 when every login came out as the stack says, 1 otherwise.
pub fn run(args: VerifyArgs) -> anyhow::Result<u8> {
    let file = args.stack.file()?;
    let mut stack = crate::spec::load(&file)?;
    // A referenced cluster's ARN comes from reading it.
    super::discover(&file, &mut stack)?;
    let image = crate::ops::verify::image(&stack, args.image.as_deref()).map_err(UserError)?;
    let location = args.stack.location(&stack)?;
    let rows = super::engine::block_on(async {
        let state = crate::ops::run::read_applied_state(&location, &stack.name).await?;
        let config = crate::provider::aws::load_config(&stack.region).await;
        let kubernetes = crate::provider::kubernetes::KubernetesProvider::new(
            &stack.region,
            &config,
            crate::provider::kubernetes::KubernetesSettings::from_environment(),
        );
        crate::ops::verify::verify(&stack, &state, &kubernetes, &image)
            .await
            .map_err(|message| anyhow::Error::from(UserError(message)))
    })??;
    let text = if args.json {
        format!("{}\n", serde_json::to_string_pretty(&rows)?)
    } else {
        render(&rows, &image)
    };
    super::print(&text)?;
    Ok(if rows.iter().all(Row::as_expected) {
        super::EXIT_OK
    } else {
        1
    })
}

/// The matrix, a table per database (named when the stack has several), a row per service
/// account and a column per user of that database: `login` or `refused` as the stack wants,
/// in capitals with a `!` where the result was not that; then what went wrong.
fn render(rows: &[Row], image: &str) -> String {
    let mut out = format!("Each service account logged in from a Job running {image}:\n");
    let mut databases: Vec<&str> = Vec::new();
    for row in rows {
        if !databases.contains(&row.database.as_str()) {
            databases.push(&row.database);
        }
    }
    let several = databases.len() > 1;
    let mut users_total = 0;
    for database in &databases {
        let rows: Vec<&Row> = rows
            .iter()
            .filter(|row| row.database == *database)
            .collect();
        out.push('\n');
        if several {
            out.push_str(&format!("Database {database}:\n"));
        }
        let users: Vec<&str> = rows
            .first()
            .map(|row| row.cells.iter().map(|cell| cell.user.as_str()).collect())
            .unwrap_or_default();
        users_total += users.len();
        let first = rows
            .iter()
            .map(|row| row.service_account.len() + 4 + identity(row).len())
            .chain(["service account".len()])
            .max()
            .unwrap_or(0);
        let width = |user: &str| user.len().max("REFUSED!".len());
        out.push_str(&format!("{:first$}", "service account"));
        for user in &users {
            out.push_str(&format!("  {user:w$}", w = width(user)));
        }
        out.push('\n');
        for row in rows {
            out.push_str(&format!(
                "{:first$}",
                format!("{} ({})", row.service_account, identity(row))
            ));
            for (cell, user) in row.cells.iter().zip(&users) {
                let text = match (cell.result, cell.as_expected) {
                    ("logged_in", true) => "login".to_string(),
                    ("refused", true) => "refused".to_string(),
                    ("logged_in", false) => "LOGIN!".to_string(),
                    ("refused", false) => "REFUSED!".to_string(),
                    (other, _) => format!("{}!", other.to_uppercase()),
                };
                out.push_str(&format!("  {text:w$}", w = width(user)));
            }
            out.push('\n');
        }
    }
    let in_database = |row: &Row| {
        if several {
            format!(" (database {})", row.database)
        } else {
            String::new()
        }
    };
    let mut problems = Vec::new();
    for row in rows {
        if let Some(error) = &row.error {
            problems.push(format!(
                "{}{}: {error}",
                row.service_account,
                in_database(row)
            ));
        }
        for cell in row.cells.iter().filter(|cell| !cell.as_expected) {
            let wanted = if cell.allowed {
                "should log in"
            } else {
                "should be refused"
            };
            problems.push(format!(
                "{}{} as {} {wanted}, but {}{}",
                row.service_account,
                in_database(row),
                cell.user,
                match cell.result {
                    "missing" => "the Job reported nothing for it".to_string(),
                    other => other.replace('_', " "),
                },
                if cell.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", cell.detail)
                }
            ));
        }
    }
    out.push('\n');
    if problems.is_empty() {
        out.push_str(&format!(
            "Every login is as the stack says ({}).\n",
            if several {
                format!(
                    "{} login(s) across {} databases",
                    rows.iter().map(|row| row.cells.len()).sum::<usize>(),
                    databases.len()
                )
            } else {
                format!("{} service account(s) x {users_total} user(s)", rows.len())
            }
        ));
    } else {
        for problem in &problems {
            out.push_str(&format!("! {problem}\n"));
        }
        // A wrong login or refusal is a link of the chain; a Job that did not run is not.
        if rows
            .iter()
            .flat_map(|row| &row.cells)
            .any(|cell| !cell.as_expected && matches!(cell.result, "logged_in" | "refused"))
        {
            out.push_str("Run `pwless doctor` to find the broken link.\n");
        }
    }
    out
}

fn identity(row: &Row) -> &'static str {
    match row.identity {
        crate::spec::model::Identity::Irsa => "IRSA",
        crate::spec::model::Identity::PodIdentity => "Pod Identity",
    }
}
