//! What must hold before apply changes anything: every local prerequisite of the run, and the
//! caller's access to what the run must reach. A missing prerequisite found after a resource
//! was created is a bug; these checks exist so the user hears about it first, all at once.
//!
//! - every `PWLESS_*` override that pwless reads parses (`PWLESS_DB_CONNECT_TIMEOUT`,
//!   `PWLESS_DB_ADMIN_ENDPOINT`, `PWLESS_KUBE_API_URL`);
//! - the CA bundle is there and holds certificates, when the plan changes database users (the
//!   user's cached copy of the RDS bundle is fetched now when it is the one and missing);
//! - the caller (STS `GetCallerIdentity`) is one of the cluster admins the plan leaves in place,
//!   when the plan changes Kubernetes objects: EKS admits only callers with an access entry
//!   (authentication mode `API`). On a cluster this plan creates, the stack's
//!   `cluster.admins` are the only entries there will be; on an existing cluster, the entries
//!   EKS lists (some may have been made outside pwless) less those the plan deletes, plus
//!   those it creates. When the entries cannot be listed, a warning says so and the run goes on.
//!
//! AWS credentials are checked before this, when the run first needs the cloud
//! ([`super::run::check_credentials`]).

use crate::graph::Provider;
use crate::plan::{Action, Plan};

/// What the preflight found: problems refuse the run, warnings are said and let it go on,
/// notes say what it did on the way (the RDS CA bundle fetched into the user's cache).
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

/// The problems and warnings found, one line each. `database`: each database's connection
/// settings (none for a saved plan, which carries none).
pub async fn check(
    plan: &Plan,
    config: &aws_config::SdkConfig,
    database: Option<&[crate::db::Settings]>,
) -> Findings {
    let mut problems = environment_problems();
    let mut warnings = Vec::new();
    let mut notes = Vec::new();
    let changes = |provider: Provider| {
        plan.resource_changes
            .iter()
            .any(|change| change.kind.provider() == provider && change.makes_call())
    };
    let mut bundles: Vec<&crate::db::Settings> = Vec::new();
    for settings in database.unwrap_or_default() {
        if !bundles
            .iter()
            .any(|seen| seen.ca_bundle == settings.ca_bundle)
        {
            bundles.push(settings);
        }
    }
    for settings in bundles {
        if !changes(Provider::Postgres) {
            break;
        }
        // The user's cached copy of the RDS bundle is fetched now if it is not there yet.
        let fetched = match &settings.ca_bundle_url {
            Some(url) => crate::ca_bundle::ensure(&settings.ca_bundle, url).await,
            None => Ok(None),
        };
        if let Ok(Some(fetched)) = &fetched {
            notes.push(fetched.to_string());
        }
        match fetched.and_then(|_| {
            crate::db::tls_config(&settings.ca_bundle).map_err(|error| error.to_string())
        }) {
            Ok(_) => {}
            Err(problem) => problems.push(problem),
        }
    }
    if changes(Provider::Kubernetes) {
        let admins = planned_admins(plan);
        let mut admitted = admins.clone();
        // An existing cluster: the entries EKS has, less those this plan deletes.
        if let Some(cluster) = existing_cluster(plan) {
            match access_entries(config, &cluster).await {
                Ok(entries) => admitted.extend(entries.into_iter().filter(|principal| {
                    !plan.resource_changes.iter().any(|change| {
                        change.action == Action::Delete
                            && change.address == crate::graph::address::admin_access_entry(principal)
                    })
                })),
                Err(error) => warnings.push(format!(
                    "cannot list the access entries of EKS cluster {cluster} ({error}): only cluster.admins were checked"
                )),
            }
        }
        match caller(config).await {
            Ok(caller) if admitted.iter().any(|admin| is_admin(&caller, admin)) => {}
            Ok(caller) if referenced(plan) => problems.push(format!(
                "{caller} has no access entry on the EKS cluster the stack references, so EKS would refuse it the Kubernetes objects after the AWS resources were made; ask the cluster's owners for one (e.g. `aws eks create-access-entry` and `aws eks associate-access-policy` with AmazonEKSClusterAdminPolicy, or an admin policy scoped to the stack's namespaces)"
            )),
            Ok(caller) => {
                let listed = if admins.is_empty() {
                    "none".to_string()
                } else {
                    admins.join(", ")
                };
                problems.push(format!(
                    "{caller} is not in cluster.admins ({listed}) and no other access entry admits it: EKS would refuse it the Kubernetes objects after the AWS resources were made; add it (for an assumed role, its role ARN) to cluster.admins"
                ));
            }
            Err(error) => problems.push(format!(
                "cannot tell who pwless runs as (STS GetCallerIdentity): {error}"
            )),
        }
    }
    Findings {
        problems,
        warnings,
        notes,
    }
}

/// The `PWLESS_*` overrides that do not parse, one line each with the fix.
fn environment_problems() -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(problem) = crate::db::connect_timeout() {
        // (an empty value counts as unset, as for the other overrides)
        problems.push(problem);
    }
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if let Some(endpoint) = var("PWLESS_DB_ADMIN_ENDPOINT")
        && crate::db::resolve(&endpoint).is_err()
    {
        problems.push(format!(
            "PWLESS_DB_ADMIN_ENDPOINT is `{endpoint}`: write HOST:PORT that resolves here, e.g. 127.0.0.1:15432"
        ));
    }
    if let Some(url) = var("PWLESS_KUBE_API_URL")
        && !(url.starts_with("https://") && url.len() > "https://".len())
    {
        problems.push(format!(
            "PWLESS_KUBE_API_URL is `{url}`: write the API server's https:// URL, e.g. https://127.0.0.1:6443"
        ));
    }
    problems
}

/// The principals with cluster-admin while the plan's Kubernetes changes run: the access
/// entries it does not delete, or, in a destroy, all of them (they go last, after the
/// Kubernetes objects that depend on them).
fn planned_admins(plan: &Plan) -> Vec<String> {
    plan.resource_changes
        .iter()
        .filter(|change| plan.mode == crate::plan::Mode::Destroy || change.action != Action::Delete)
        .filter_map(|change| {
            crate::graph::address::key_of(
                &change.address,
                crate::graph::ResourceKind::EksAccessEntry,
                "admin",
            )
            .map(str::to_string)
        })
        .collect()
}

/// The name of the EKS cluster the plan keeps (neither creates nor replaces), or the one the
/// stack references (`cluster.existing`: in the plan's reads, or, in a destroy, which reads
/// nothing, the cluster its Kubernetes objects were recorded on), if any.
fn existing_cluster(plan: &Plan) -> Option<String> {
    if let Some(read) = plan
        .reads
        .iter()
        .find(|read| read.address == crate::graph::address::data::EKS_CLUSTER)
    {
        return Some(read.id.clone());
    }
    if let Some(change) = plan
        .resource_changes
        .iter()
        .find(|change| change.kind == crate::graph::ResourceKind::EksCluster)
    {
        return matches!(
            change.action,
            Action::NoOp | Action::Update | Action::Delete
        )
        .then(|| {
            change
                .before
                .as_ref()?
                .get("name")?
                .as_str()
                .map(str::to_string)
        })
        .flatten();
    }
    recorded_cluster(plan)
}

/// The cluster a plan without an EKS cluster of its own recorded its Kubernetes objects on
/// (their `cluster_arn`, `arn:…:eks:REGION:ACCOUNT:cluster/NAME`).
fn recorded_cluster(plan: &Plan) -> Option<String> {
    plan.resource_changes
        .iter()
        .filter(|change| change.kind.provider() == Provider::Kubernetes)
        .find_map(|change| {
            let arn = change.before.as_ref()?.get("cluster_arn")?.as_str()?;
            arn.rsplit_once(":cluster/")
                .map(|(_, name)| name.to_string())
        })
}

/// Whether the plan's EKS cluster is one the stack references (`cluster.existing`): read by
/// the plan, or not the stack's at all.
fn referenced(plan: &Plan) -> bool {
    plan.reads
        .iter()
        .any(|read| read.address == crate::graph::address::data::EKS_CLUSTER)
        || (!plan
            .resource_changes
            .iter()
            .any(|change| change.kind == crate::graph::ResourceKind::EksCluster)
            && recorded_cluster(plan).is_some())
}

/// The principal ARNs of the cluster's access entries (EKS `ListAccessEntries`, every page).
async fn access_entries(
    config: &aws_config::SdkConfig,
    cluster: &str,
) -> Result<Vec<String>, String> {
    let eks = aws_sdk_eks::Client::new(config);
    let mut principals = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = eks
            .list_access_entries()
            .cluster_name(cluster)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|error| crate::errors::chain(&error))?;
        principals.extend(page.access_entries().iter().cloned());
        match page.next_token() {
            Some(next) => token = Some(next.to_string()),
            None => return Ok(principals),
        }
    }
}

/// The caller's ARN, as STS reports it.
async fn caller(config: &aws_config::SdkConfig) -> Result<String, String> {
    let identity = aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|error| crate::errors::chain(&error))?;
    identity
        .arn()
        .map(str::to_string)
        .ok_or_else(|| "STS answered without an ARN".to_string())
}

/// Whether `caller` (an STS caller ARN) is the principal `admin` (an IAM ARN in
/// `cluster.admins`). An assumed role, `arn:P:sts::A:assumed-role/NAME/SESSION`, is the role
/// `arn:P:iam::A:role/[PATH/]NAME` (EKS maps it so; "Grant IAM users access to Kubernetes with
/// EKS access entries", EKS User Guide); anything else must be the same ARN.
pub(crate) fn is_admin(caller: &str, admin: &str) -> bool {
    if caller == admin {
        return true;
    }
    let parts: Vec<&str> = caller.splitn(6, ':').collect();
    let [_, partition, "sts", _, account, resource] = parts.as_slice() else {
        return false;
    };
    let Some(role) = resource
        .strip_prefix("assumed-role/")
        .and_then(|rest| rest.split('/').next())
    else {
        return false;
    };
    let prefix = format!("arn:{partition}:iam::{account}:role/");
    admin
        .strip_prefix(&prefix)
        .is_some_and(|path_and_name| path_and_name.rsplit('/').next() == Some(role))
}

#[cfg(test)]
mod tests {
    use super::is_admin;

    #[test]
    fn an_assumed_role_is_its_role_and_nothing_else() {
        let cases = [
            (
                "arn:aws:iam::123456789012:user/moto",
                "arn:aws:iam::123456789012:user/moto",
                true,
            ),
            (
                "arn:aws:iam::123456789012:user/moto",
                "arn:aws:iam::123456789012:user/other",
                false,
            ),
            (
                "arn:aws:sts::123456789012:assumed-role/deployer/ci-42",
                "arn:aws:iam::123456789012:role/deployer",
                true,
            ),
            (
                "arn:aws:sts::123456789012:assumed-role/deployer/ci-42",
                "arn:aws:iam::123456789012:role/platform/deployer",
                true,
            ),
            (
                "arn:aws:sts::123456789012:assumed-role/deployer/ci-42",
                "arn:aws:iam::999999999999:role/deployer",
                false,
            ),
            (
                "arn:aws:sts::123456789012:assumed-role/deployer/ci-42",
                "arn:aws:iam::123456789012:role/deployer-old",
                false,
            ),
            (
                "arn:aws-cn:sts::123456789012:assumed-role/deployer/s",
                "arn:aws:iam::123456789012:role/deployer",
                false,
            ),
            (
                "arn:aws-cn:sts::123456789012:assumed-role/deployer/s",
                "arn:aws-cn:iam::123456789012:role/deployer",
                true,
            ),
            (
                "arn:aws:sts::123456789012:federated-user/bob",
                "arn:aws:iam::123456789012:user/bob",
                false,
            ),
        ];
        for (caller, admin, expected) in cases {
            assert_eq!(is_admin(caller, admin), expected, "{caller} as {admin}");
        }
    }
}
