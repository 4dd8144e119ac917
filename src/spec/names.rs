//! The names pwless generates for cloud resources whose name must be unique in their scope,
//! from one place: the graph names resources with these functions, and validation refuses a
//! stack in which two of them are the same (issue 17, item 2).
//!
//! IAM role names are unique per account, compared without regard to case, and at most 64
//! characters of `[A-Za-z0-9+=,.@_-]`
//! (<https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html>,
//! <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html>). The other
//! generated names cannot collide within a stack: the EKS cluster is the stack's name, each
//! Aurora cluster and its DB subnet group [`rds_cluster`] (the stack's name for `database:`,
//! `<stack>-<database>` for the others: a database's logical name is letters and digits
//! starting with a letter, so `<stack>-<database>` is never another cluster's instance), its
//! instances `<cluster>-1`, `<cluster>-2`, ... (at most 56 characters against RDS's 63), its
//! security group `<cluster>-database` in the stack's own VPC.

use super::model::Stack;

/// IAM's limit on a role name, in characters.
pub const IAM_ROLE_NAME_MAX: usize = 64;

/// The role EKS assumes for the cluster: `<stack>-eks-cluster` (at most 44 characters, as a
/// stack name has at most 32).
pub fn cluster_role(stack: &str) -> String {
    format!("{stack}-eks-cluster")
}

/// The role the nodes' instance profile carries: `<stack>-eks-node`.
pub fn node_role(stack: &str) -> String {
    format!("{stack}-eks-node")
}

/// The IRSA role of one service account: `<stack>-<namespace>-<service account>`, cut to IAM's
/// 64 characters with a hash suffix of the namespace and service account when longer. Two
/// service accounts can still get the same name (`team-a`/`api` and `team`/`a-api`):
/// [`iam_role_collisions`] finds them, and validation refuses the stack.
pub fn irsa_role(stack: &str, namespace: &str, service_account: &str) -> String {
    cut_role_name(
        format!("{stack}-{namespace}-{service_account}"),
        namespace,
        service_account,
    )
}

/// The EKS Pod Identity role of one service account: `<stack>-pi-<namespace>-<service
/// account>`, cut as [`irsa_role`] is. A name of its own, so that a migration between IRSA and
/// Pod Identity holds both roles at once (the new one is ready before the old one goes).
pub fn pod_identity_role(stack: &str, namespace: &str, service_account: &str) -> String {
    cut_role_name(
        format!("{stack}-pi-{namespace}-{service_account}"),
        namespace,
        service_account,
    )
}

/// The role of one access entry, by its identity mechanism.
pub fn access_role(stack: &str, entry: &super::model::Access) -> String {
    match entry.identity {
        super::model::Identity::Irsa => irsa_role(stack, &entry.namespace, &entry.service_account),
        super::model::Identity::PodIdentity => {
            pod_identity_role(stack, &entry.namespace, &entry.service_account)
        }
    }
}

fn cut_role_name(full: String, namespace: &str, service_account: &str) -> String {
    if full.len() <= IAM_ROLE_NAME_MAX {
        return full;
    }
    let hash = fnv1a(format!("{namespace}/{service_account}").as_bytes());
    let suffix = format!("-{:08x}", hash as u32);
    let keep = IAM_ROLE_NAME_MAX - suffix.len();
    let mut cut = full[..keep].to_string();
    while cut.ends_with('-') || cut.ends_with('.') {
        cut.pop();
    }
    format!("{cut}{suffix}")
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Who a generated IAM role name is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleOwner {
    /// pwless's EKS cluster role.
    Cluster,
    /// pwless's EKS node role.
    Node,
    /// The role (IRSA or Pod Identity) of `access[index]`.
    Access(usize),
}

impl std::fmt::Display for RoleOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoleOwner::Cluster => f.write_str("pwless's EKS cluster role"),
            RoleOwner::Node => f.write_str("pwless's EKS node role"),
            RoleOwner::Access(index) => write!(f, "access[{index}]"),
        }
    }
}

/// Every IAM role name the stack generates, with whom it is for, in graph order.
pub fn iam_roles(stack: &Stack) -> Vec<(String, RoleOwner)> {
    let mut roles = vec![
        (cluster_role(&stack.name), RoleOwner::Cluster),
        (node_role(&stack.name), RoleOwner::Node),
    ];
    // A service account with entries for several databases has one role: its first entry's.
    let mut seen = std::collections::HashSet::new();
    roles.extend(
        stack
            .access
            .iter()
            .enumerate()
            .filter(|(_, entry)| seen.insert((&entry.namespace, &entry.service_account)))
            .map(|(index, entry)| (access_role(&stack.name, entry), RoleOwner::Access(index))),
    );
    roles
}

/// The Aurora cluster a database of the stack creates: the stack's name for the one-database
/// shorthand's ([`crate::spec::model::MAIN_DATABASE`]), `<stack>-<database>` for the others
/// (at most 32 + 1 + 20 characters). Its DB subnet group has the same name, its instances
/// `<cluster>-1`, `<cluster>-2`, ... and its security group `<cluster>-database`.
pub fn rds_cluster(stack: &str, database: &str) -> String {
    if database == crate::spec::model::MAIN_DATABASE {
        stack.to_string()
    } else {
        format!("{stack}-{database}")
    }
}

/// Pairs `(first, later, name)` of generated IAM role names that are the same for IAM (which
/// compares role names without regard to case); `later` is never pwless's own roles, which
/// come first.
pub fn iam_role_collisions(stack: &Stack) -> Vec<(RoleOwner, RoleOwner, String)> {
    let mut seen: std::collections::HashMap<String, RoleOwner> = Default::default();
    let mut collisions = Vec::new();
    for (name, owner) in iam_roles(stack) {
        match seen.get(&name.to_ascii_lowercase()) {
            Some(first) => collisions.push((first.clone(), owner, name)),
            None => {
                seen.insert(name.to_ascii_lowercase(), owner);
            }
        }
    }
    collisions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_irsa_role_names_are_cut_and_stay_distinct() {
        let a = irsa_role("iam-postgres", &"n".repeat(40), "service-account-one");
        let b = irsa_role("iam-postgres", &"n".repeat(40), "service-account-two");
        assert!(a.len() <= 64 && b.len() <= 64);
        assert_ne!(a, b);
        assert_eq!(irsa_role("s", "demo", "demo-app"), "s-demo-demo-app");
    }

    /// Every generated role name stays within IAM's length and characters, for the longest
    /// inputs validation allows (a 32-character stack, a 63-character namespace, a
    /// 253-character service account), and a cut never leaves a trailing separator.
    #[test]
    fn generated_role_names_stay_within_iam_limits() {
        let stack = format!("s{}", "t".repeat(31));
        let namespace = "n".repeat(63);
        let long_account = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(long_account.len(), 253);
        for (namespace, account) in [
            (namespace.as_str(), long_account.as_str()),
            ("a", "b"),
            (namespace.as_str(), "x"),
            ("team", &format!("{}.y", "x".repeat(40))),
        ] {
            for name in [
                irsa_role(&stack, namespace, account),
                pod_identity_role(&stack, namespace, account),
                cluster_role(&stack),
                node_role(&stack),
            ] {
                assert!(name.len() <= IAM_ROLE_NAME_MAX, "{name}");
                assert!(
                    name.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)),
                    "{name}"
                );
            }
        }
    }
}
