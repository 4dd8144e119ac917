//! `pwless doctor`: walks the passwordless chain of each access link, in order, and stops at
//! the first broken link with what is wrong and the fix (issue 20). RDS answers every broken
//! link with the same "PAM authentication failed"; pwless knows each link and looks at it.
//!
//! The links of an access entry (service account -> IAM role -> database user), in order:
//! 0. `tls`: the database's certificate verifies against the CA bundle pwless uses, for the
//!    cluster endpoint's name (a TLS handshake alone, over the route pwless's connections take:
//!    the relay, a tunnel, or straight); first, as every other database check goes through it;
//! 1. `database user`: the user exists, may log in, is in `rds_iam`, has no attribute beyond
//!    its grants (read as the plan reads it, through the PostgreSQL provider);
//! 2. `iam database authentication`: the Aurora cluster has it on (DescribeDBClusters);
//! 3. `connect policy`: the role's inline and attached policies allow `rds-db:connect` on
//!    exactly `arn:<partition>:rds-db:<region>:<account>:dbuser:<cluster resource id>/<user>`
//!    (the cluster's resource id as RDS reports it now), and no Deny takes it away ("Policy
//!    evaluation logic", IAM User Guide: an explicit Deny wins over any Allow);
//! 4. `trust`: the role's trust policy admits this service account's web identity from the
//!    cluster's OIDC provider (`sub` and `aud`), and that provider exists;
//! 5. `service account`: it exists, annotated with the role's ARN (read through the
//!    Kubernetes provider);
//! 6. `security group`: the database's security group admits the private subnets (where the
//!    pods run) on the database port.
//!
//! A Pod Identity entry (`identity: pod_identity`) has one more link after `trust`, and its
//! trust and service account are checked as Pod Identity needs them:
//! 4. `trust`: the role's trust admits `pods.eks.amazonaws.com` for `sts:AssumeRole` and
//!    `sts:TagSession` under the session tags EKS sets for this cluster, namespace and service
//!    account;
//! 5. `pod identity association`: the service account's association names the role, and the
//!    `eks-pod-identity-agent` add-on is ACTIVE;
//! 6. `service account`: it exists and carries no IRSA annotation (which the SDKs would take
//!    first).
//!
//! After the links, whatever their state, `auth error log`: the logins as the entry's user RDS
//! refused in the last hour and why, from the cluster's `iam-db-auth-error` log in CloudWatch
//! Logs (the export apply turns on; [`auth_error_log`]). The CA bundle checked is pwless's
//! own; an app's (the demo image's) is the same file only if built so.
//!
//! Conditions in identity policies are not evaluated: a statement with a `Condition` is
//! reported as such. In trust policies, conditions doctor cannot tell
//! (other than IRSA's `sub`/`aud`, or the session tags EKS Pod Identity sets) are taken as
//! holding, so a common `aws:SourceAccount` does not read as broken.

use serde::Serialize;
use serde_json::Value;

use crate::graph::address;
use crate::plan::Observed;
use crate::provider::aws::iam::parse_document;
use crate::provider::{Provider, Providers};
use crate::spec::Stack;
use crate::spec::model::{Access, Database, Identity};
use crate::state::State;
use pwless_sandbox::wildcard;

/// One link of the chain and what doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// `database user`, `iam database authentication`, `connect policy`, `trust`,
    /// `service account`, `security group`.
    pub name: &'static str,
    pub status: Status,
    /// What was found, in words.
    pub detail: String,
    /// What to do, when it is broken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Broken,
    /// Not looked at (an earlier link is broken), or not provable from what doctor reads (a
    /// security group that admits other groups rather than address blocks).
    NotChecked,
}

/// One access entry's chain: a service account, one database, its user there.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    /// `namespace/service_account`.
    pub service_account: String,
    /// The database's logical name (`main` for `database:`).
    pub database: String,
    pub db_user: String,
    pub links: Vec<Link>,
}

impl Chain {
    /// No link is broken (a link doctor could not prove either way is not checked, not
    /// broken).
    pub fn healthy(&self) -> bool {
        self.links.iter().all(|link| link.status != Status::Broken)
    }
}

/// Which chains to check: those of a service account (`namespace/service_account`), into a
/// database (its logical name), as a database user; each `None` admits all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter<'a> {
    pub service_account: Option<&'a str>,
    pub database: Option<&'a str>,
    pub user: Option<&'a str>,
}

/// The chains of the stack's access entries that `filter` admits. Errors: nothing matches the
/// filter, or the state does not record the entry (apply first).
pub async fn check(
    stack: &Stack,
    state: &State,
    providers: &Providers,
    filter: Filter<'_>,
) -> Result<Vec<Chain>, String> {
    let entries: Vec<_> = stack
        .access
        .iter()
        .filter(|entry| {
            filter
                .service_account
                .is_none_or(|only| only == format!("{}/{}", entry.namespace, entry.service_account))
        })
        .filter(|entry| {
            filter
                .database
                .is_none_or(|database| database == entry.database)
        })
        .filter(|entry| filter.user.is_none_or(|user| user == entry.db_user))
        .collect();
    if entries.is_empty() {
        return Err(match filter {
            Filter {
                service_account: None,
                database: None,
                user: None,
            } => "the stack has no `access` entries: there is no chain to check".into(),
            _ => format!(
                "no access entry matches; the stack's are: {}",
                stack
                    .access
                    .iter()
                    .map(|entry| format!(
                        "{}/{} as {} in {}",
                        entry.namespace, entry.service_account, entry.db_user, entry.database
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let mut chains = Vec::new();
    for entry in entries {
        let mut links = Vec::new();
        let steps: &[Step] = match entry.identity {
            Identity::Irsa => &[
                Step::Tls,
                Step::User,
                Step::IamAuth,
                Step::Policy,
                Step::Trust,
                Step::ServiceAccount,
                Step::SecurityGroup,
            ],
            Identity::PodIdentity => &[
                Step::Tls,
                Step::User,
                Step::IamAuth,
                Step::Policy,
                Step::Trust,
                Step::Association,
                Step::ServiceAccount,
                Step::SecurityGroup,
            ],
        };
        let mut broken = false;
        for &step in steps {
            if broken {
                links.push(Link {
                    name: step.name(),
                    status: Status::NotChecked,
                    detail: "an earlier link is broken".into(),
                    fix: None,
                });
                continue;
            }
            let link = step.check(stack, state, providers, entry).await;
            broken = link.status == Status::Broken;
            links.push(link);
        }
        // What RDS logged, after the chain's links: evidence whether or not one is broken.
        links.push(
            auth_error_log(database_of(stack, entry), state, providers, &entry.db_user).await,
        );
        chains.push(Chain {
            service_account: format!("{}/{}", entry.namespace, entry.service_account),
            database: entry.database.clone(),
            db_user: entry.db_user.clone(),
            links,
        });
    }
    Ok(chains)
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Tls,
    User,
    IamAuth,
    Policy,
    Trust,
    Association,
    ServiceAccount,
    SecurityGroup,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Link {
    Link {
        name,
        status: Status::Ok,
        detail: detail.into(),
        fix: None,
    }
}

fn broken(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Link {
    Link {
        name,
        status: Status::Broken,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

const APPLY: &str = "run `pwless apply`: it puts this link back as the stack says";

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Tls => "tls",
            Step::User => "database user",
            Step::IamAuth => "iam database authentication",
            Step::Policy => "connect policy",
            Step::Trust => "trust",
            Step::Association => "pod identity association",
            Step::ServiceAccount => "service account",
            Step::SecurityGroup => "security group",
        }
    }

    async fn check(
        self,
        stack: &Stack,
        state: &State,
        providers: &Providers,
        entry: &Access,
    ) -> Link {
        let (namespace, service_account, user) = (
            entry.namespace.as_str(),
            entry.service_account.as_str(),
            entry.db_user.as_str(),
        );
        let name = self.name();
        let recorded = |address: &str| state.resource(address);
        let database = database_of(stack, entry);
        let role_address = address::access_role(namespace, service_account, entry.identity);
        match self {
            Step::Tls => {
                let Some(role) = recorded(&address::db_user_role(&entry.database, user)) else {
                    return broken(
                        name,
                        format!("the state records no database user {user}"),
                        "run `pwless apply` to create it",
                    );
                };
                let Some(postgres) = providers.postgres.as_ref() else {
                    return broken(
                        name,
                        "the stack has no database users to reach the database for",
                        APPLY,
                    );
                };
                match postgres.tls_check(&role.inputs).await {
                    Ok(facts) => ok(
                        name,
                        format!(
                            "{} ({}) verified for {} by {}",
                            facts.certificate, facts.version, facts.server_name, facts.ca
                        ),
                    ),
                    Err(error) => {
                        let fix = match error.code.as_deref() {
                            Some("UnknownIssuer" | "CaBundle") => format!(
                                "the CA bundle pwless uses ({}) does not hold the CA that issued the cluster's certificate: point {}.ca_bundle or PWLESS_DB_CA_BUNDLE at the RDS bundle for {} ({}), or name none and pwless fetches it; apps need the same bundle (the demo image carries it at {})",
                                postgres.ca_bundle(&role.inputs).display(),
                                database.path,
                                stack.region,
                                crate::ca_bundle::url(&stack.region),
                                crate::graph::APP_CA_BUNDLE_PATH
                            ),
                            Some("WrongName") => format!("check the certificate against the cluster endpoint's name: through a tunnel, PWLESS_DB_TLS_SERVER_NAME (or {}.tls_server_name) must be that name, not the tunnel's", database.path),
                            Some("Expired") => "check this machine's clock; if it is right, the cluster's certificate has expired: rotate its CA (`aws rds modify-db-instance --ca-certificate-identifier`, \"Rotating your SSL/TLS certificate\", Amazon Aurora User Guide)".to_string(),
                            _ => "make the database reachable as `pwless plan` does (the relay in the cluster, or PWLESS_DB_ADMIN_ENDPOINT), then run doctor again".to_string(),
                        };
                        broken(name, error.message, fix)
                    }
                }
            }
            Step::User => {
                let Some(role) = recorded(&address::db_user_role(&entry.database, user)) else {
                    return broken(
                        name,
                        format!("the state records no database user {user}"),
                        "run `pwless apply` to create it",
                    );
                };
                match providers.read(role).await {
                    Err(error) => broken(
                        name,
                        format!("cannot read database user {user}: {}", error.message),
                        "make the database reachable as `pwless plan` does (the relay in the cluster, or PWLESS_DB_ADMIN_ENDPOINT), then run doctor again",
                    ),
                    Ok(Observed::Missing) => {
                        broken(name, format!("database user {user} does not exist"), APPLY)
                    }
                    Ok(Observed::Present { inputs, .. }) => user_problems(user, &inputs)
                        .map_or_else(
                            || {
                                ok(
                                    name,
                                    format!(
                                        "{user} exists, may log in, is in rds_iam and nothing more"
                                    ),
                                )
                            },
                            |problem| broken(name, problem, APPLY),
                        ),
                }
            }
            Step::IamAuth => {
                let Some(identifier) = cluster_identifier(database, state) else {
                    return broken(
                        name,
                        "the state records no Aurora cluster",
                        "run `pwless apply`",
                    );
                };
                match describe_cluster(providers, identifier).await {
                    Err(error) => broken(
                        name,
                        error,
                        "check the AWS credentials and region, then run doctor again",
                    ),
                    Ok(None) => broken(
                        name,
                        format!("Aurora cluster {identifier} does not exist"),
                        APPLY,
                    ),
                    Ok(Some(found))
                        if !found.iam_database_authentication_enabled().unwrap_or(false) =>
                    {
                        let referenced = format!(
                            "ask the cluster's owners to turn it on (pwless never changes a cluster it references): `aws rds modify-db-cluster --db-cluster-identifier {identifier} --enable-iam-database-authentication --apply-immediately`"
                        );
                        broken(
                            name,
                            format!(
                                "Aurora cluster {identifier} has IAM database authentication off: RDS refuses every token"
                            ),
                            if database.existing.is_some() {
                                referenced.as_str()
                            } else {
                                APPLY
                            },
                        )
                    }
                    Ok(Some(_)) => ok(name, format!("on for Aurora cluster {identifier}")),
                }
            }
            Step::Policy => {
                let Some(role) = recorded(&role_address) else {
                    return broken(
                        name,
                        "the state records no IAM role for this service account",
                        "run `pwless apply`",
                    );
                };
                let role_name = role
                    .outputs
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let role_arn = role
                    .outputs
                    .get("arn")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let identifier = cluster_identifier(database, state)
                    .unwrap_or_default()
                    .to_string();
                let resource_id = match describe_cluster(providers, &identifier).await {
                    Ok(Some(found)) => found
                        .db_cluster_resource_id()
                        .unwrap_or_default()
                        .to_string(),
                    Ok(None) => {
                        return broken(
                            name,
                            format!("Aurora cluster {identifier} does not exist"),
                            APPLY,
                        );
                    }
                    Err(error) => {
                        return broken(
                            name,
                            error,
                            "check the AWS credentials, then run doctor again",
                        );
                    }
                };
                let account = role_arn.split(':').nth(4).unwrap_or_default();
                let wanted = format!(
                    "arn:{}:rds-db:{}:{account}:dbuser:{resource_id}/{user}",
                    stack.partition(),
                    stack.region
                );
                match role_statements(providers, &role_name).await {
                    Err(error) => broken(
                        name,
                        error,
                        "check the AWS credentials (iam:GetRolePolicy, iam:GetPolicyVersion), then run doctor again",
                    ),
                    Ok(statements) => match evaluate(&statements, "rds-db:connect", &wanted) {
                        Decision::Allowed(by) => ok(
                            name,
                            format!("role {role_name} may rds-db:connect as {wanted} ({by})"),
                        ),
                        Decision::Denied(by) => broken(
                            name,
                            format!(
                                "role {role_name} is denied rds-db:connect on {wanted} by {by} (an explicit Deny wins over any Allow)"
                            ),
                            format!("remove the Deny from {by}"),
                        ),
                        Decision::NotAllowed(near) => broken(
                            name,
                            match near.as_slice() {
                                [] => format!(
                                    "no policy of role {role_name} allows rds-db:connect on {wanted}"
                                ),
                                near => format!(
                                    "role {role_name} may rds-db:connect only on {}, not on {wanted} (the ARN names the cluster's resource id {resource_id}, the region, the account and the user exactly)",
                                    near.join(", ")
                                ),
                            },
                            APPLY,
                        ),
                    },
                }
            }
            Step::Trust if entry.identity == Identity::PodIdentity => {
                pod_identity_trust(
                    stack,
                    state,
                    providers,
                    &role_address,
                    namespace,
                    service_account,
                )
                .await
            }
            Step::Association => {
                pod_identity_association(
                    stack,
                    state,
                    providers,
                    &role_address,
                    namespace,
                    service_account,
                )
                .await
            }
            Step::Trust => {
                let Some(role) = recorded(&role_address) else {
                    return broken(
                        name,
                        "the state records no IAM role for this service account",
                        "run `pwless apply`",
                    );
                };
                let role_name = role
                    .outputs
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let provider_arn = role
                    .inputs
                    .get("web_identity")
                    .and_then(|w| w.get("provider_arn"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let issuer = role
                    .inputs
                    .get("web_identity")
                    .and_then(|w| w.get("issuer"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let subject = format!("system:serviceaccount:{namespace}:{service_account}");
                if let Err(error) = providers
                    .aws
                    .iam
                    .get_open_id_connect_provider()
                    .open_id_connect_provider_arn(provider_arn)
                    .send()
                    .await
                {
                    let error = crate::provider::aws::sdk_error("read the OIDC provider")(error);
                    return broken(
                        name,
                        format!(
                            "the cluster's OIDC provider {provider_arn}: {}",
                            error.message
                        ),
                        APPLY,
                    );
                }
                match role_trust(providers, role_name).await {
                    Err(error) => broken(name, error, APPLY),
                    Ok(document) => {
                        match pwless_sandbox::trust_allows(
                            &document,
                            provider_arn,
                            issuer,
                            &subject,
                            crate::partition::IRSA_AUDIENCE,
                            true,
                        ) {
                            Ok(()) => ok(
                                name,
                                format!("role {role_name} trusts {subject} through {provider_arn}"),
                            ),
                            Err(why) => broken(
                                name,
                                format!("role {role_name} does not admit {subject}: {why}"),
                                APPLY,
                            ),
                        }
                    }
                }
            }
            Step::ServiceAccount => {
                let address = address::of(
                    crate::graph::ResourceKind::KubernetesServiceAccount,
                    &format!("{namespace}/{service_account}"),
                );
                let Some(account) = recorded(&address) else {
                    return broken(
                        name,
                        format!(
                            "the state records no service account {namespace}/{service_account}"
                        ),
                        "run `pwless apply`",
                    );
                };
                // Pod Identity wants no annotation at all; IRSA the role's ARN.
                let wanted = match entry.identity {
                    Identity::PodIdentity => String::new(),
                    Identity::Irsa => account
                        .inputs
                        .get("role_arn")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                };
                match providers.read(account).await {
                    Err(error) => broken(
                        name,
                        format!(
                            "cannot read service account {namespace}/{service_account}: {}",
                            error.message
                        ),
                        "make the cluster's Kubernetes API reachable (an access entry for who you are), then run doctor again",
                    ),
                    Ok(Observed::Missing) => broken(
                        name,
                        format!("service account {namespace}/{service_account} does not exist"),
                        APPLY,
                    ),
                    Ok(Observed::Present { inputs, .. }) => {
                        let found = inputs
                            .get("role_arn")
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        if found == wanted && wanted.is_empty() {
                            ok(
                                name,
                                format!(
                                    "{namespace}/{service_account} has no IRSA annotation: its pods take the Pod Identity Agent's credentials"
                                ),
                            )
                        } else if found == wanted {
                            ok(
                                name,
                                format!("{namespace}/{service_account} is annotated with {wanted}"),
                            )
                        } else if wanted.is_empty() {
                            broken(
                                name,
                                format!(
                                    "{namespace}/{service_account} is annotated with IRSA role {found}: the SDKs take IRSA's web identity before the Pod Identity Agent's credentials"
                                ),
                                APPLY,
                            )
                        } else {
                            broken(
                                name,
                                format!(
                                    "{namespace}/{service_account} is annotated with {} instead of {wanted}",
                                    if found.is_empty() { "no role" } else { found }
                                ),
                                APPLY,
                            )
                        }
                    }
                }
            }
            Step::SecurityGroup => {
                // The groups that guard the database: the stack's own, or those of a
                // referenced cluster (its owners' to change).
                let (ids, port, fix) = if database.existing.is_some() {
                    let identifier = cluster_identifier(database, state).unwrap_or_default();
                    match describe_cluster(providers, identifier).await {
                        Ok(Some(found)) => (
                            found
                                .vpc_security_groups()
                                .iter()
                                .filter_map(|group| group.vpc_security_group_id())
                                .map(str::to_string)
                                .collect::<Vec<_>>(),
                            found
                                .port()
                                .and_then(|port| u16::try_from(port).ok())
                                .unwrap_or(crate::relay::PORT),
                            "ask the cluster's owners to admit the private subnets on the cluster's port (pwless never changes a cluster it references)",
                        ),
                        Ok(None) => {
                            return broken(
                                name,
                                format!("Aurora cluster {identifier} does not exist"),
                                format!("check `{}.existing.cluster_identifier`", database.path),
                            );
                        }
                        Err(error) => {
                            return broken(
                                name,
                                error,
                                "check the AWS credentials and region, then run doctor again",
                            );
                        }
                    }
                } else {
                    let Some(group) = recorded(&address::of(
                        crate::graph::ResourceKind::SecurityGroup,
                        &address::per_database("database", &entry.database),
                    )) else {
                        return broken(
                            name,
                            "the state records no database security group",
                            "run `pwless apply`",
                        );
                    };
                    (
                        vec![group.id.clone().unwrap_or_default()],
                        crate::relay::PORT,
                        APPLY,
                    )
                };
                if ids.is_empty() {
                    // (DescribeSecurityGroups without ids would describe every group.)
                    return broken(
                        name,
                        "the Aurora cluster reports no VPC security group",
                        fix,
                    );
                }
                let groups = ids.join(", ");
                let out = match providers
                    .aws
                    .ec2
                    .describe_security_groups()
                    .set_group_ids(Some(ids.clone()))
                    .send()
                    .await
                {
                    Ok(out) => out,
                    Err(error) => {
                        return broken(
                            name,
                            crate::provider::aws::sdk_error("read the security group")(error)
                                .message,
                            fix,
                        );
                    }
                };
                if out.security_groups().is_empty() {
                    return broken(name, format!("security group {groups} does not exist"), fix);
                }
                let on_port: Vec<&aws_sdk_ec2::types::IpPermission> = out
                    .security_groups()
                    .iter()
                    .flat_map(|group| group.ip_permissions())
                    .filter(|rule| {
                        rule.ip_protocol() == Some("-1")
                            || (rule.ip_protocol() == Some("tcp")
                                && rule.from_port().unwrap_or(0) <= i32::from(port)
                                && rule.to_port().unwrap_or(0) >= i32::from(port))
                    })
                    .collect();
                let admitted: Vec<String> = on_port
                    .iter()
                    .flat_map(|rule| {
                        rule.ip_ranges()
                            .iter()
                            .filter_map(|range| range.cidr_ip().map(str::to_string))
                    })
                    .collect();
                let missing: Vec<String> = stack
                    .network
                    .private_subnets
                    .iter()
                    .filter(|subnet| {
                        !admitted.iter().any(|cidr| {
                            cidr.parse::<crate::spec::cidr::Ipv4Cidr>()
                                .is_ok_and(|block| block.contains(subnet))
                        })
                    })
                    .map(ToString::to_string)
                    .collect();
                // A rule may admit other security groups instead of address blocks (a team's
                // usual way: the EKS cluster's or nodes' group); which pods carry them is not
                // something doctor reads.
                let from_groups: Vec<&str> = on_port
                    .iter()
                    .flat_map(|rule| rule.user_id_group_pairs())
                    .filter_map(|pair| pair.group_id())
                    .collect();
                if missing.is_empty() {
                    ok(
                        name,
                        format!("{groups} admits the private subnets on port {port}"),
                    )
                } else if !from_groups.is_empty() {
                    // Not broken, not proven: which groups the pods' network interfaces carry is
                    // not read here.
                    Link {
                        name,
                        status: Status::NotChecked,
                        detail: format!(
                            "{groups} admits security groups {} on port {port}, not {} by address: doctor does not read which groups the pods carry",
                            from_groups.join(", "),
                            missing.join(", ")
                        ),
                        fix: None,
                    }
                } else {
                    broken(
                        name,
                        format!(
                            "{groups} does not admit {} on port {port}: pods there cannot reach the database",
                            missing.join(", ")
                        ),
                        fix,
                    )
                }
            }
        }
    }
}

/// The database an access entry logs in to (validation ties each entry to one of the stack's).
fn database_of<'s>(stack: &'s Stack, entry: &Access) -> &'s Database {
    stack
        .database(&entry.database)
        .expect("validation ties every access entry to a database of the stack")
}

/// A database's Aurora cluster identifier: the one it references (`existing`), else the one
/// the state records.
fn cluster_identifier<'a>(database: &'a Database, state: &'a State) -> Option<&'a str> {
    if let Some(existing) = &database.existing {
        return Some(existing.cluster_identifier.id.as_str());
    }
    state
        .resource(&address::rds_cluster(&database.key))
        .and_then(|cluster| cluster.inputs.get("cluster_identifier"))
        .and_then(Value::as_str)
}

/// How far back the `auth error log` link reads.
const LOG_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);
/// At most this many pages of the log are read (RDS writes one event per refused login; a page
/// holds up to 10,000 events or 1 MB).
const LOG_PAGES: usize = 10;

/// The `auth error log` link, read after the chain: the logins as `user` RDS refused in the last
/// hour, from the cluster's `iam-db-auth-error` log in CloudWatch Logs ("Troubleshooting for IAM
/// DB authentication", Amazon Aurora User Guide: one event per refused login, `... Failed to
/// authenticate the connection request for user '<user>' because <reason>` or, for a policy
/// that does not allow it or throttling, `... Failed to authorize the connection request for
/// user '<user>' ...`; both are matched by `for user '<user>'`). Never broken
/// itself: a refusal may be history (before a repair) or come from a caller that is not this
/// service account's pods, and an export that is off breaks no login; it says which.
async fn auth_error_log(
    database: &Database,
    state: &State,
    providers: &Providers,
    user: &str,
) -> Link {
    let name = "auth error log";
    let Some(identifier) = cluster_identifier(database, state) else {
        return ok(name, "the state records no Aurora cluster: no log to read");
    };
    let exported = match describe_cluster(providers, identifier).await {
        Ok(Some(cluster)) => cluster
            .enabled_cloudwatch_logs_exports()
            .iter()
            .any(|export| export == crate::provider::aws::rds::IAM_AUTH_ERROR_LOG),
        Ok(None) => return ok(name, format!("Aurora cluster {identifier} does not exist")),
        Err(error) => return ok(name, format!("not read: {error}")),
    };
    if !exported {
        let how = if database.existing.is_some() {
            format!(
                "its owners turn the export on (pwless never changes a cluster it references): `aws rds modify-db-cluster --db-cluster-identifier {identifier} --cloudwatch-logs-export-configuration EnableLogTypes={}`",
                crate::provider::aws::rds::IAM_AUTH_ERROR_LOG
            )
        } else {
            format!(
                "`{}.iam_auth_error_log: true` (the default) and `pwless apply` turn the export on",
                database.path
            )
        };
        return ok(
            name,
            format!(
                "Aurora cluster {identifier} does not export its IAM authentication errors to CloudWatch Logs, so why RDS refused a token cannot be read: {how}"
            ),
        );
    }
    let group = format!(
        "/aws/rds/cluster/{identifier}/{}",
        crate::provider::aws::rds::IAM_AUTH_ERROR_LOG
    );
    let logs = aws_sdk_cloudwatchlogs::Client::new(&providers.config);
    let since = std::time::SystemTime::now()
        .checked_sub(LOG_WINDOW)
        .and_then(|since| since.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_millis() as i64);
    let needle = format!("for user '{user}'");
    let mut refused = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        pages += 1;
        let out = match logs
            .filter_log_events()
            .log_group_name(&group)
            .start_time(since)
            .set_next_token(token.clone())
            .send()
            .await
        {
            Ok(out) => out,
            Err(error) => {
                let error =
                    crate::provider::aws::sdk_error("read the IAM authentication error log")(error);
                // No group yet: RDS makes it with the first refusal.
                return if error.code.as_deref() == Some("ResourceNotFoundException") {
                    ok(
                        name,
                        format!(
                            "RDS has refused no IAM login of Aurora cluster {identifier} yet ({group})"
                        ),
                    )
                } else {
                    ok(
                        name,
                        format!(
                            "not read ({group}): {} (the caller needs logs:FilterLogEvents on it)",
                            error.message
                        ),
                    )
                };
            }
        };
        refused.extend(
            out.events()
                .iter()
                .filter_map(|event| event.message())
                .filter(|message| message.contains(&needle))
                .map(str::to_string),
        );
        token = out.next_token().map(str::to_string);
        if token.is_none() || pages >= LOG_PAGES {
            break;
        }
    }
    // Pages left unread: the count is a floor.
    let at_least = if token.is_some() { "at least " } else { "" };
    match refused.last() {
        None => ok(
            name,
            format!("RDS refused no IAM login as {user} in the last hour ({group})"),
        ),
        Some(latest) => ok(
            name,
            format!(
                "RDS refused {at_least}{} IAM login(s) as {user} in the last hour ({group}); the latest read: {latest} (before a repair, or from a caller other than this service account's pods, as `pwless verify`'s expected refusals are)",
                refused.len()
            ),
        ),
    }
}

/// A role's trust policy as IAM has it now; the error is IAM's, with its code.
async fn role_trust(providers: &Providers, role_name: &str) -> Result<Value, String> {
    let out = providers
        .aws
        .iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .map_err(|error| crate::provider::aws::sdk_error("read the role")(error).message)?;
    Ok(out
        .role()
        .and_then(|role| role.assume_role_policy_document())
        .map(parse_document)
        .unwrap_or(Value::Null))
}

/// The `trust` link of a Pod Identity entry: the role's trust admits EKS Pod Identity for the
/// session tags EKS sets for this cluster, namespace and service account
/// ([`pwless_sandbox::pod_identity::trust_allows`]).
async fn pod_identity_trust(
    stack: &Stack,
    state: &State,
    providers: &Providers,
    role_address: &str,
    namespace: &str,
    service_account: &str,
) -> Link {
    let name = Step::Trust.name();
    let Some(role_name) = state
        .resource(role_address)
        .and_then(|role| role.outputs.get("name"))
        .and_then(Value::as_str)
    else {
        return broken(
            name,
            "the state records no IAM role for this service account",
            "run `pwless apply`",
        );
    };
    let output = |name: &str| {
        crate::ops::outputs::eks_cluster_output(stack, state, name).unwrap_or_default()
    };
    let tags = [
        ("eks-cluster-arn", output("arn")),
        ("eks-cluster-name", output("name")),
        ("kubernetes-namespace", namespace),
        ("kubernetes-service-account", service_account),
    ];
    match role_trust(providers, role_name).await {
        Err(error) => broken(name, error, APPLY),
        Ok(document) => match pwless_sandbox::pod_identity::trust_allows(&document, &tags, true) {
            Ok(()) => ok(
                name,
                format!(
                    "role {role_name} trusts EKS Pod Identity for {namespace}/{service_account} on {}",
                    output("name")
                ),
            ),
            Err(why) => broken(
                name,
                format!(
                    "role {role_name} does not admit EKS Pod Identity for {namespace}/{service_account}: {why}"
                ),
                APPLY,
            ),
        },
    }
}

/// The `pod identity association` link: the service account's association names the role, and
/// the Pod Identity Agent add-on that hands pods their credentials is ACTIVE.
async fn pod_identity_association(
    stack: &Stack,
    state: &State,
    providers: &Providers,
    role_address: &str,
    namespace: &str,
    service_account: &str,
) -> Link {
    let name = Step::Association.name();
    let role_arn = state
        .resource(role_address)
        .and_then(|role| role.outputs.get("arn"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(cluster) = crate::ops::outputs::eks_cluster_output(stack, state, "name") else {
        return broken(
            name,
            "the state records no EKS cluster",
            "run `pwless apply`",
        );
    };
    let eks = &providers.aws.eks;
    let association = match crate::provider::aws::eks_pod_identity::association_of(
        &providers.aws,
        cluster,
        namespace,
        service_account,
    )
    .await
    {
        Ok(association) => association,
        Err(error) => {
            return broken(
                name,
                error.message,
                "check the AWS credentials (eks:ListPodIdentityAssociations, eks:DescribePodIdentityAssociation), then run doctor again",
            );
        }
    };
    let Some(association) = association else {
        return broken(
            name,
            format!(
                "{namespace}/{service_account} has no Pod Identity association on {cluster}: its pods get no credentials"
            ),
            APPLY,
        );
    };
    let id = association.association_id().unwrap_or_default();
    let associated = association.role_arn().unwrap_or_default();
    if associated != role_arn {
        return broken(
            name,
            format!(
                "association {id} gives {namespace}/{service_account} role {associated}, not {role_arn}"
            ),
            APPLY,
        );
    }
    let agent = crate::graph::POD_IDENTITY_AGENT_ADDON;
    let status = match eks
        .describe_addon()
        .cluster_name(cluster)
        .addon_name(agent)
        .send()
        .await
    {
        Ok(out) => out
            .addon()
            .and_then(|addon| addon.status())
            .map(|status| status.as_str().to_string())
            .unwrap_or_default(),
        Err(error) => {
            let error = crate::provider::aws::sdk_error("describe the add-on")(error);
            if !error.is_not_found() {
                return broken(name, error.message, APPLY);
            }
            "missing".to_string()
        }
    };
    if status != "ACTIVE" {
        return broken(
            name,
            format!("the {agent} add-on is {status}: no agent hands pods their credentials"),
            APPLY,
        );
    }
    ok(
        name,
        format!(
            "association {id} gives {namespace}/{service_account} role {role_arn}; {agent} is ACTIVE"
        ),
    )
}

/// What is wrong with a user as the PostgreSQL provider read it, if anything.
fn user_problems(user: &str, inputs: &std::collections::BTreeMap<String, Value>) -> Option<String> {
    if inputs.get("login") != Some(&Value::Bool(true)) {
        return Some(format!("{user} may not log in (NOLOGIN)"));
    }
    let groups: Vec<&str> = inputs
        .get("member_of")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !groups.contains(&"rds_iam") {
        return Some(format!(
            "{user} is not in rds_iam, so RDS checks a password instead of the IAM token"
        ));
    }
    if let Some(other) = groups.iter().find(|group| **group != "rds_iam") {
        return Some(format!(
            "{user} is also in {other}, which the stack does not give it"
        ));
    }
    let attributes = inputs.get("attributes").and_then(Value::as_object);
    if let Some((attribute, _)) = attributes
        .into_iter()
        .flatten()
        .find(|(_, on)| on.as_bool() == Some(true))
    {
        return Some(format!(
            "{user} has {attribute}, which the stack does not give it"
        ));
    }
    if inputs
        .get("password")
        .is_some_and(|password| !password.is_null())
    {
        return Some(format!("{user} has a password set outside pwless"));
    }
    None
}

async fn describe_cluster(
    providers: &Providers,
    identifier: &str,
) -> Result<Option<aws_sdk_rds::types::DbCluster>, String> {
    match providers
        .aws
        .rds
        .describe_db_clusters()
        .db_cluster_identifier(identifier)
        .send()
        .await
    {
        Ok(out) => Ok(out.db_clusters().first().cloned()),
        Err(error) => {
            let error = crate::provider::aws::sdk_error("describe the Aurora cluster")(error);
            if error.code.as_deref() == Some("DBClusterNotFoundFault") {
                Ok(None)
            } else {
                Err(error.message)
            }
        }
    }
}

/// A policy statement and where it came from (`inline policy NAME`, `managed policy ARN`).
#[derive(Debug, Clone)]
pub struct Statement {
    pub source: String,
    pub body: Value,
}

/// Every statement of the role's inline and attached managed policies (their default
/// versions).
async fn role_statements(providers: &Providers, role: &str) -> Result<Vec<Statement>, String> {
    let iam = &providers.aws.iam;
    let mut statements = Vec::new();
    let mut push = |source: String, document: Value| match document.get("Statement") {
        Some(Value::Array(items)) => statements.extend(items.iter().map(|body| Statement {
            source: source.clone(),
            body: body.clone(),
        })),
        Some(single) => statements.push(Statement {
            source,
            body: single.clone(),
        }),
        None => {}
    };
    let inline = iam
        .list_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|error| {
            crate::provider::aws::sdk_error("list the role's inline policies")(error).message
        })?;
    for name in inline.policy_names() {
        let out = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(name)
            .send()
            .await
            .map_err(|error| {
                crate::provider::aws::sdk_error("read an inline policy")(error).message
            })?;
        push(
            format!("inline policy {name}"),
            parse_document(out.policy_document()),
        );
    }
    let attached = iam
        .list_attached_role_policies()
        .role_name(role)
        .send()
        .await
        .map_err(|error| {
            crate::provider::aws::sdk_error("list the role's attached policies")(error).message
        })?;
    for policy in attached.attached_policies() {
        let Some(arn) = policy.policy_arn() else {
            continue;
        };
        let out = iam
            .get_policy()
            .policy_arn(arn)
            .send()
            .await
            .map_err(|error| {
                crate::provider::aws::sdk_error("read an attached policy")(error).message
            })?;
        let Some(version) = out.policy().and_then(|policy| policy.default_version_id()) else {
            continue;
        };
        let out = iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(|error| {
                crate::provider::aws::sdk_error("read an attached policy's version")(error).message
            })?;
        let Some(document) = out.policy_version().and_then(|version| version.document()) else {
            continue;
        };
        push(format!("managed policy {arn}"), parse_document(document));
    }
    Ok(statements)
}

/// What a set of identity-policy statements decides for one action on one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, by this source.
    Allowed(String),
    /// An explicit Deny, from this source.
    Denied(String),
    /// No Allow matches; the resources allowed for the action elsewhere, for the message.
    NotAllowed(Vec<String>),
}

/// IAM's evaluation for identity policies ("Policy evaluation logic", IAM User Guide): an
/// explicit Deny that matches wins; else an Allow that matches allows; else it is implicitly
/// denied. `Action`/`NotAction` match case-insensitively with `*` and `?` wildcards,
/// `Resource`/`NotResource` case-sensitively. A statement with a `Condition` is taken as
/// matching (doctor does not know the request's context), which errs toward reporting a Deny.
pub fn evaluate(statements: &[Statement], action: &str, resource: &str) -> Decision {
    let list = |value: Option<&Value>| -> Option<Vec<String>> {
        match value? {
            Value::String(text) => Some(vec![text.clone()]),
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|item| item.as_str().map(str::to_string))
                    .collect(),
            ),
            _ => Some(Vec::new()),
        }
    };
    let matches_action =
        |body: &Value| match (list(body.get("Action")), list(body.get("NotAction"))) {
            (Some(actions), _) => actions
                .iter()
                .any(|pattern| wildcard(&pattern.to_lowercase(), &action.to_lowercase())),
            (None, Some(not)) => !not
                .iter()
                .any(|pattern| wildcard(&pattern.to_lowercase(), &action.to_lowercase())),
            (None, None) => false,
        };
    let matches_resource =
        |body: &Value| match (list(body.get("Resource")), list(body.get("NotResource"))) {
            (Some(resources), _) => resources.iter().any(|pattern| wildcard(pattern, resource)),
            (None, Some(not)) => !not.iter().any(|pattern| wildcard(pattern, resource)),
            (None, None) => false,
        };
    let effect = |body: &Value| {
        body.get("Effect")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if let Some(deny) = statements
        .iter()
        .find(|s| effect(&s.body) == "Deny" && matches_action(&s.body) && matches_resource(&s.body))
    {
        return Decision::Denied(deny.source.clone());
    }
    if let Some(allow) = statements.iter().find(|s| {
        effect(&s.body) == "Allow" && matches_action(&s.body) && matches_resource(&s.body)
    }) {
        return Decision::Allowed(allow.source.clone());
    }
    Decision::NotAllowed(
        statements
            .iter()
            .filter(|s| effect(&s.body) == "Allow" && matches_action(&s.body))
            .flat_map(|s| list(s.body.get("Resource")).unwrap_or_default())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn statements(items: &[(&str, Value)]) -> Vec<Statement> {
        items
            .iter()
            .map(|(source, body)| Statement {
                source: source.to_string(),
                body: body.clone(),
            })
            .collect()
    }

    const ARN: &str = "arn:aws:rds-db:us-west-2:123456789012:dbuser:cluster-ABC/app_user";

    #[test]
    fn policy_evaluation_follows_iams_rules() {
        let allow = json!({"Effect": "Allow", "Action": "rds-db:connect", "Resource": ARN});
        let cases: Vec<(&str, Vec<Statement>, Decision)> = vec![
            (
                "exact allow",
                statements(&[("p", allow.clone())]),
                Decision::Allowed("p".into()),
            ),
            (
                "wildcards in action and resource",
                statements(&[(
                    "w",
                    json!({"Effect": "Allow", "Action": ["RDS-DB:*"], "Resource": "arn:aws:rds-db:*:123456789012:dbuser:cluster-ABC/*"}),
                )]),
                Decision::Allowed("w".into()),
            ),
            (
                "another cluster's resource id",
                statements(&[(
                    "p",
                    json!({"Effect": "Allow", "Action": "rds-db:connect", "Resource": "arn:aws:rds-db:us-west-2:123456789012:dbuser:cluster-OTHER/app_user"}),
                )]),
                Decision::NotAllowed(vec![
                    "arn:aws:rds-db:us-west-2:123456789012:dbuser:cluster-OTHER/app_user".into(),
                ]),
            ),
            (
                "resource ids are case-sensitive",
                statements(&[(
                    "p",
                    json!({"Effect": "Allow", "Action": "rds-db:connect", "Resource": ARN.to_lowercase()}),
                )]),
                Decision::NotAllowed(vec![ARN.to_lowercase()]),
            ),
            (
                "a deny wins",
                statements(&[
                    ("p", allow.clone()),
                    (
                        "d",
                        json!({"Effect": "Deny", "Action": "rds-db:*", "Resource": "*"}),
                    ),
                ]),
                Decision::Denied("d".into()),
            ),
            (
                "a deny of other actions does not",
                statements(&[
                    ("p", allow.clone()),
                    (
                        "d",
                        json!({"Effect": "Deny", "NotAction": "rds-db:connect", "Resource": "*"}),
                    ),
                ]),
                Decision::Allowed("p".into()),
            ),
            ("nothing", Vec::new(), Decision::NotAllowed(Vec::new())),
        ];
        for (name, statements, expected) in cases {
            assert_eq!(
                evaluate(&statements, "rds-db:connect", ARN),
                expected,
                "{name}"
            );
        }
    }

    #[test]
    fn wildcards_match_as_iam_does() {
        for (pattern, text, expected) in [
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a?c", "abc", true),
            ("a?c", "abbc", false),
            ("cluster-*/app_user", "cluster-ABC/app_user", true),
            ("cluster-*/app_user", "cluster-ABC/reader", false),
            ("", "", true),
            ("abc", "ab", false),
        ] {
            assert_eq!(wildcard(pattern, text), expected, "{pattern} vs {text}");
        }
    }
}
