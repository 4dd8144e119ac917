//! Progress of an apply, destroy or recovery: each [`Event`] as one human line (stderr) or one
//! JSON object (`pwless apply --json`, stdout; docs/plan-json.md).

use crate::exec::Event;
use crate::state::Operation;

/// The line a person reads, in terraform's words where users know them:
/// `aws_vpc.main: creating...`, `aws_vpc.main: still creating... [10s elapsed]`,
/// `aws_vpc.main: created after 1.2s [id=vpc-0abc…]`.
pub fn line(event: &Event) -> String {
    match event {
        Event::Started {
            address,
            operation: Operation::Update,
            changed,
        } => format!("{address}: updating ({})...", changed.join(", ")),
        Event::Started {
            address, operation, ..
        } => format!("{address}: {}...", verb(*operation)),
        Event::StillRunning {
            address,
            operation,
            elapsed_seconds,
        } => format!(
            "{address}: still {}... [{elapsed_seconds}s elapsed]",
            verb(*operation)
        ),
        Event::Done {
            address,
            outcome,
            elapsed_seconds,
            id,
        } => {
            // The resource's id once known, as terraform shows it: `[id=vpc-0abc…]`.
            let id = id
                .as_ref()
                .map(|id| format!(" [id={id}]"))
                .unwrap_or_default();
            format!(
                "{address}: {} after {elapsed_seconds:.1}s{id}",
                outcome.words()
            )
        }
        Event::Failed {
            address,
            elapsed_seconds,
            same_as: Some(first),
            ..
        } => format!("{address}: failed after {elapsed_seconds:.1}s (the same error as {first})"),
        Event::Failed {
            address,
            elapsed_seconds,
            error,
            ..
        } => format!("{address}: failed after {elapsed_seconds:.1}s: {error}"),
        Event::Settled {
            address,
            settlement,
        } => format!("  {address}: {}", settlement.words()),
        Event::Recovering { pending } => format!(
            "An interrupted run left {pending} pending operation{}; settling {} first:",
            if *pending == 1 { "" } else { "s" },
            if *pending == 1 { "it" } else { "them" }
        ),
        Event::Refreshing { resources } => format!("Refreshing {resources} resources..."),
        Event::NotRefreshed { addresses } => format!(
            "Not refreshed: {} (the database relay, its EKS cluster or its nodes are gone, so the database cannot be read; the plan takes them as recorded, and makes the relay again)",
            addresses.join(", ")
        ),
        Event::Notice { message } => message.clone(),
    }
}

/// The event as one line of JSON (no newline).
pub fn json_line(event: &Event) -> String {
    serde_json::to_string(event).unwrap_or_else(|error| {
        // Serializing these plain structs cannot fail; say so rather than lose the event.
        format!(r#"{{"type":"unserializable","error":"{error}"}}"#)
    })
}

/// The progressive verb of an operation: `creating`, `updating`, `destroying`.
fn verb(operation: Operation) -> &'static str {
    match operation {
        Operation::Create => "creating",
        Operation::Update => "updating",
        Operation::Delete => "destroying",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{Outcome, Settlement};

    #[test]
    fn each_event_reads_as_the_line_users_know_and_as_tagged_json() {
        let cases = [
            (
                Event::Started {
                    address: "aws_vpc.main".into(),
                    operation: Operation::Create,
                    changed: vec![],
                },
                "aws_vpc.main: creating...",
                r#"{"type":"started","address":"aws_vpc.main","operation":"create"}"#,
            ),
            (
                Event::Started {
                    address: "aws_eks_cluster.main".into(),
                    operation: Operation::Update,
                    changed: vec!["version".into(), "tags".into()],
                },
                "aws_eks_cluster.main: updating (version, tags)...",
                r#"{"type":"started","address":"aws_eks_cluster.main","operation":"update","changed":["version","tags"]}"#,
            ),
            (
                Event::StillRunning {
                    address: "aws_rds_cluster.main".into(),
                    operation: Operation::Delete,
                    elapsed_seconds: 20,
                },
                "aws_rds_cluster.main: still destroying... [20s elapsed]",
                r#"{"type":"still_running","address":"aws_rds_cluster.main","operation":"delete","elapsed_seconds":20}"#,
            ),
            (
                Event::Done {
                    address: "aws_vpc.main".into(),
                    outcome: Outcome::Created,
                    elapsed_seconds: 1.3,
                    id: Some("vpc-1".into()),
                },
                "aws_vpc.main: created after 1.3s [id=vpc-1]",
                r#"{"type":"done","address":"aws_vpc.main","outcome":"created","elapsed_seconds":1.3,"id":"vpc-1"}"#,
            ),
            (
                Event::Failed {
                    address: "aws_subnet.b".into(),
                    operation: Operation::Create,
                    elapsed_seconds: 0.5,
                    error: "no".into(),
                    code: Some("UnauthorizedOperation".into()),
                    same_as: Some("aws_subnet.a".into()),
                },
                "aws_subnet.b: failed after 0.5s (the same error as aws_subnet.a)",
                r#"{"type":"failed","address":"aws_subnet.b","operation":"create","elapsed_seconds":0.5,"error":"no","code":"UnauthorizedOperation","same_as":"aws_subnet.a"}"#,
            ),
            (
                Event::Settled {
                    address: "aws_vpc.main".into(),
                    settlement: Settlement::Refreshed {
                        operation: Operation::Delete,
                    },
                },
                "  aws_vpc.main: an interrupted delete is settled by refreshing it",
                r#"{"type":"settled","address":"aws_vpc.main","settlement":{"how":"refreshed","operation":"delete"}}"#,
            ),
        ];
        for (event, human, json) in cases {
            assert_eq!(line(&event), human);
            assert_eq!(json_line(&event), json);
        }
    }
}
