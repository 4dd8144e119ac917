//! `pwless verify`: the live proof after apply (issue 20). For each service account and each
//! database of the stack, a short Kubernetes Job runs under the service account (so with the
//! credentials EKS gives its pods: IRSA's web identity or Pod Identity's agent) and logs in as
//! every user of that database with a token signed by those credentials, over verified TLS
//! (`pwless-demo check-login`, [`pwless_iam_auth::probe`]). The user its access entry for
//! that database names must log in (and the database must say it is that user); every other
//! user must be refused, and every user of a database it has no entry for. The Jobs run at
//! once, one per service account and database, and are deleted when they end.
//!
//! The image is the demo app's (it holds `pwless-demo` and the RDS CA bundle at
//! [`crate::graph::APP_CA_BUNDLE_PATH`]) and must be pinned by digest, so the proof
//! runs the exact bytes reviewed, not whatever a tag points at today.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::graph::address;
use crate::provider::kubernetes::KubernetesProvider;
use crate::spec::Stack;
use crate::spec::model::{Access, Database, Identity};
use crate::state::State;
use pwless_iam_auth::probe::Outcome;

/// How long one Job may run (its `activeDeadlineSeconds`), scheduling and image pull included.
pub const JOB_LIMIT: Duration = Duration::from_secs(5 * 60);
/// How long pwless waits for a Job: longer than its deadline, so that Kubernetes's own
/// `DeadlineExceeded` is what a Job that never ran reports.
const WAIT_LIMIT: Duration = Duration::from_secs(JOB_LIMIT.as_secs() + 30);

/// One login of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// The database user logged in as.
    pub user: String,
    /// Whether the stack lets this service account log in as this user.
    pub allowed: bool,
    /// `logged_in`, `refused`, `failed`, or `missing` (the Job reported nothing for it).
    pub result: &'static str,
    /// `current_user` as the database reports it, or the message.
    pub detail: String,
    /// Whether the result is what the stack says: allowed users log in as themselves, the
    /// others are refused.
    pub as_expected: bool,
}

/// One row: a service account and one database of the stack.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// `namespace/service_account`.
    pub service_account: String,
    pub identity: Identity,
    /// The database's logical name (`main` for `database:`).
    pub database: String,
    /// The user its access entry for this database names; none when it has no entry for it
    /// (every user there must refuse it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_user: Option<String>,
    /// `namespace/name` of the Job that ran (deleted since).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Why the Job did not report, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub cells: Vec<Cell>,
}

impl Row {
    pub fn as_expected(&self) -> bool {
        self.error.is_none() && self.cells.iter().all(|cell| cell.as_expected)
    }
}

/// The image `verify` runs: `image` when given, else the stack's `app.image`; refused unless
/// pinned by digest (`REPOSITORY@sha256:` and 64 hex digits).
pub fn image(stack: &Stack, image: Option<&str>) -> Result<String, String> {
    let chosen = image
        .map(str::to_string)
        .or_else(|| stack.app.as_ref().map(|app| app.image.clone()));
    let Some(chosen) = chosen else {
        return Err("verify runs the pwless-demo image (the Dockerfile builds it) as a Job under each service account: pass --image REGISTRY/REPOSITORY@sha256:DIGEST".into());
    };
    let pinned = chosen
        .split_once("@sha256:")
        .is_some_and(|(repository, digest)| {
            !repository.is_empty()
                && digest.len() == 64
                && digest
                    .bytes()
                    .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        });
    if pinned {
        Ok(chosen)
    } else {
        Err(format!(
            "`{chosen}` is not pinned by digest: verify runs only an image pinned as REGISTRY/REPOSITORY@sha256:DIGEST (64 lowercase hex digits), so the proof runs the bytes you reviewed; `docker buildx imagetools inspect {chosen}` prints the digest, then pass --image or pin app.image"
        ))
    }
}

/// A row to run: a service account (its first access entry gives its namespace, name and
/// identity) and one database of the stack, with the user the account may log in as there
/// (`None`: it has no entry for that database, and every user there must refuse it).
#[derive(Debug, Clone, Copy)]
pub struct Pairing<'s> {
    pub account: &'s Access,
    pub database: &'s Database,
    pub db_user: Option<&'s str>,
}

impl Pairing<'_> {
    /// The database's users, each logged in as once.
    fn users(&self) -> Vec<String> {
        self.database
            .users
            .iter()
            .map(|user| user.name.clone())
            .collect()
    }
}

/// Every service account of the stack with every database that has users: the whole matrix,
/// so an account is proven refused where the stack gives it nothing too.
pub fn pairings(stack: &Stack) -> Vec<Pairing<'_>> {
    let mut pairings = Vec::new();
    for (account, entries) in crate::graph::service_accounts(stack) {
        for database in stack
            .databases
            .iter()
            .filter(|database| !database.users.is_empty())
        {
            pairings.push(Pairing {
                account,
                database,
                db_user: entries
                    .iter()
                    .find(|entry| entry.database == database.key)
                    .map(|entry| entry.db_user.as_str()),
            });
        }
    }
    pairings
}

/// The Job that logs in as each user of the pairing's database under its service account,
/// named `pwless-verify-<service account, cut>-<hash of namespace/service account (and the
/// database, other than `main`)>-<suffix>`: at most 59 characters, distinct for two service
/// accounts that cut the same. `suffix` (a few hex digits) makes it this run's.
pub fn job(
    stack: &Stack,
    pairing: Pairing<'_>,
    image: &str,
    endpoint: &str,
    port: u16,
    suffix: &str,
) -> Value {
    let entry = pairing.account;
    let users = pairing.users();
    // A Job's name is also its pods' `job-name` label value: at most 63 characters.
    let mut account: String = entry
        .service_account
        .chars()
        .map(|c| if c == '.' { '-' } else { c })
        .take(30)
        .collect();
    while account.ends_with('-') {
        account.pop();
    }
    let whose = if pairing.database.is_main() {
        format!("{}/{}", entry.namespace, entry.service_account)
    } else {
        format!(
            "{}/{}/{}",
            entry.namespace, entry.service_account, pairing.database.key
        )
    };
    let whose = sha2::Sha256::digest(whose);
    let name = format!(
        "pwless-verify-{account}-{}-{suffix}",
        &hex::encode(whose)[..6]
    );
    let labels = json!({
        "app.kubernetes.io/name": "pwless-verify",
        "app.kubernetes.io/managed-by": "pwless",
        "pwless/stack": stack.name,
        // Which database it logs in to (`kubectl get jobs -l pwless/database=orders`).
        "pwless/database": pairing.database.key,
    });
    let env: Vec<Value> = [
        ("DB_ENDPOINT", endpoint.to_string()),
        ("DB_PORT", port.to_string()),
        ("DB_NAME", pairing.database.name.clone()),
        (
            "DB_USER",
            pairing
                .db_user
                .unwrap_or(&pairing.database.users[0].name)
                .to_string(),
        ),
        ("AWS_REGION", stack.region.clone()),
        ("RDS_CA_CERT", crate::graph::APP_CA_BUNDLE_PATH.to_string()),
    ]
    .into_iter()
    .map(|(name, value)| json!({"name": name, "value": value}))
    .collect();
    let mut args = vec!["check-login".to_string()];
    args.extend(users.iter().cloned());
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": entry.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": JOB_LIMIT.as_secs(),
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": entry.service_account,
                    "restartPolicy": "Never",
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": crate::kubernetes::DEMO_RUN_AS,
                        "runAsGroup": crate::kubernetes::DEMO_RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "containers": [{
                        "name": "check-login",
                        "image": image,
                        "command": ["pwless-demo"],
                        "args": args,
                        "env": env,
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}
                        },
                        "resources": {
                            "requests": {"cpu": "50m", "memory": "32Mi"},
                            "limits": {"memory": "128Mi"}
                        }
                    }]
                }
            }
        }
    })
}

/// The matrix: a row per service account and database ([`pairings`]), a cell per user of that
/// database. Errors: the
/// stack has no access entries or users, or the state has no database or cluster (apply
/// first). A Job that cannot run is its row's `error`, not an error of the whole run.
pub async fn verify(
    stack: &Stack,
    state: &State,
    kubernetes: &KubernetesProvider,
    image: &str,
) -> Result<Vec<Row>, String> {
    if stack.access.is_empty() {
        return Err(
            "the stack has no `access` entries: no service account may log in to verify".into(),
        );
    }
    let pairings = pairings(stack);
    if pairings.is_empty() {
        return Err("the stack has no database users to log in as".into());
    }
    let outputs = crate::ops::outputs::StackOutputs::from_state(state).with_references(stack);
    let mut endpoints = std::collections::BTreeMap::new();
    for database in &stack.databases {
        if !database.users.is_empty() {
            endpoints.insert(database.key.as_str(), outputs.database_of(database)?);
        }
    }
    let cluster_arn =
        crate::ops::outputs::eks_cluster_output(stack, state, "arn").ok_or_else(|| {
            format!(
                "the state has no EKS cluster ({}): apply the stack first",
                address::eks_cluster()
            )
        })?;
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let runs = pairings.iter().map(|pairing| {
        let (endpoint, port) = endpoints[pairing.database.key.as_str()];
        async move {
            let manifest = job(stack, *pairing, image, endpoint, port, suffix);
            let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(manifest)
                .map_err(|error| format!("pwless made a Job Kubernetes cannot read: {error}"))?;
            kubernetes
                .run_job(cluster_arn, &job, WAIT_LIMIT)
                .await
                .map_err(|error| error.message)
        }
    });
    let runs = futures_util::future::join_all(runs).await;
    Ok(pairings
        .iter()
        .zip(runs)
        .map(|(pairing, run)| row(*pairing, run))
        .collect())
}

/// One row from its Job's run: the report lines of the log, each judged against the stack.
fn row(pairing: Pairing<'_>, run: Result<crate::provider::kubernetes::JobRun, String>) -> Row {
    let entry = pairing.account;
    let users = pairing.users();
    let (job, error, reported) = match run {
        Ok(run) => {
            let reported: Vec<(String, Outcome)> =
                run.log.lines().filter_map(Outcome::parse).collect();
            let error = (reported.is_empty() || !run.succeeded).then(|| {
                let tail: Vec<&str> = run.log.lines().rev().take(5).collect();
                format!(
                    "Job {} {}{}",
                    run.job,
                    run.failure.map_or_else(
                        || "reported nothing".to_string(),
                        |why| format!("failed ({why})")
                    ),
                    if tail.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; its log ends: {}",
                            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                        )
                    }
                )
            });
            (Some(run.job), error, reported)
        }
        Err(message) => (None, Some(message), Vec::new()),
    };
    let cells = users
        .iter()
        .map(|user| {
            let allowed = Some(user.as_str()) == pairing.db_user;
            let outcome = reported
                .iter()
                .find(|(reported, _)| reported == user)
                .map(|(_, outcome)| outcome);
            let as_expected = match outcome {
                Some(Outcome::LoggedIn { current_user }) => allowed && current_user == user,
                Some(Outcome::Refused { .. }) => !allowed,
                Some(Outcome::Failed { .. }) | None => false,
            };
            Cell {
                user: user.clone(),
                allowed,
                result: outcome.map_or("missing", Outcome::word),
                detail: outcome.map_or_else(String::new, |outcome| outcome.detail().to_string()),
                as_expected,
            }
        })
        .collect();
    Row {
        service_account: format!("{}/{}", entry.namespace, entry.service_account),
        identity: entry.identity,
        database: pairing.database.key.clone(),
        db_user: pairing.db_user.map(str::to_string),
        job,
        error,
        cells,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str) -> Access {
        Access {
            namespace: "team-a".into(),
            service_account: "api".into(),
            database: "main".into(),
            db_user: user.into(),
            identity: Identity::Irsa,
        }
    }

    /// The stack example's database with `users`.
    fn database(users: &[&str]) -> Database {
        let stack = crate::spec::parse_bytes(
            std::path::Path::new("stack.yaml"),
            include_bytes!("../../stack.example.yaml"),
        )
        .unwrap();
        let mut database = stack.databases[0].clone();
        database.users = users
            .iter()
            .map(|name| crate::spec::model::DatabaseUser {
                name: name.to_string(),
                schema: "public".into(),
                privileges: vec![crate::spec::model::Privilege::Connect],
            })
            .collect();
        database
    }

    fn run(log: &str, succeeded: bool) -> Result<crate::provider::kubernetes::JobRun, String> {
        Ok(crate::provider::kubernetes::JobRun {
            job: "team-a/pwless-verify-api-abc123".into(),
            succeeded,
            failure: (!succeeded).then(|| {
                "BackoffLimitExceeded: Job has reached the specified backoff limit".into()
            }),
            log: log.into(),
        })
    }

    #[test]
    fn job_names_fit_a_label_and_stay_distinct_for_service_accounts_cut_alike() {
        let stack = crate::spec::parse_bytes(
            std::path::Path::new("stack.yaml"),
            include_bytes!("../../stack.example.yaml"),
        )
        .unwrap();
        let app = database(&["app_user"]);
        let name_of = |service_account: &str| {
            let entry = Access {
                service_account: service_account.into(),
                ..entry("app_user")
            };
            let pairing = Pairing {
                account: &entry,
                database: &app,
                db_user: Some("app_user"),
            };
            let job = job(&stack, pairing, "i@sha256:0", "db", 5432, "abc123");
            job["metadata"]["name"].as_str().unwrap().to_string()
        };
        let long = "s".repeat(200);
        for name in [name_of("a.b"), name_of("a-b"), name_of(&long)] {
            assert!(name.len() <= 63, "{name}");
        }
        assert_ne!(name_of("a.b"), name_of("a-b"));
        assert_ne!(name_of(&long), name_of(&format!("{long}x")));
        // Non-root as the demo image's user, read-only, nothing to escalate.
        let entry = entry("app_user");
        let pairing = Pairing {
            account: &entry,
            database: &app,
            db_user: Some("app_user"),
        };
        let job = job(&stack, pairing, "i@sha256:0", "db", 5432, "abc123");
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsUser"], 65532);
        assert_eq!(pod["serviceAccountName"], "api");
        assert_eq!(
            pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
            true
        );
        assert_eq!(
            pod["containers"][0]["args"],
            serde_json::json!(["check-login", "app_user"])
        );
    }

    #[test]
    fn each_cell_is_judged_against_the_stack_not_against_what_happened() {
        let both = database(&["app_user", "reporting"]);
        let account = entry("app_user");
        let row_as = |db_user: Option<&'static str>, log: &str, succeeded: bool| {
            let pairing = Pairing {
                account: &account,
                database: &both,
                db_user,
            };
            row(pairing, run(log, succeeded))
        };
        let log = "some noise\npwless-verify\tapp_user\tlogged_in\tapp_user\npwless-verify\treporting\trefused\tPAM authentication failed\n";
        let healthy = row_as(Some("app_user"), log, true);
        assert!(healthy.as_expected(), "{healthy:?}");
        // The same log for an entry that should be reporting: both cells wrong.
        let crossed = row_as(Some("reporting"), log, true);
        assert_eq!(
            crossed
                .cells
                .iter()
                .map(|cell| cell.as_expected)
                .collect::<Vec<_>>(),
            [false, false]
        );
        // A service account with no entry for this database: every login must be refused.
        let refused = "pwless-verify\tapp_user\trefused\tx\npwless-verify\treporting\trefused\tx\n";
        assert!(row_as(None, refused, true).as_expected());
        assert!(!row_as(None, log, true).as_expected());
        // Logged in, but the database says it is someone else.
        let other =
            "pwless-verify\tapp_user\tlogged_in\tpostgres\npwless-verify\treporting\trefused\tx\n";
        assert!(!row_as(Some("app_user"), other, true).as_expected());
        // A failure proves nothing either way, and a missing line is missing.
        let failed = "pwless-verify\tapp_user\tfailed\tno credentials\n";
        let row_failed = row_as(Some("app_user"), failed, true);
        assert_eq!(row_failed.cells[0].result, "failed");
        assert_eq!(row_failed.cells[1].result, "missing");
        assert!(!row_failed.cells[0].as_expected && !row_failed.cells[1].as_expected);
        // A failed Job is the row's error, with its reason and the end of its log.
        let crashed = row_as(Some("app_user"), "exec format error\n", false);
        let error = crashed.error.unwrap();
        assert!(
            error.contains("BackoffLimitExceeded") && error.contains("exec format error"),
            "{error}"
        );
    }
}
