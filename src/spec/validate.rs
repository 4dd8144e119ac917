//! From a YAML node tree to the typed [`Stack`], collecting every problem on the way.
//!
//! Each check reports at the node it concerns and says how to fix it. Validation carries on
//! after a problem, so one run shows them all.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::cidr::{CidrError, Ipv4Cidr};
use super::diagnostic::{Diagnostic, did_you_mean};
use super::model::*;
use super::names;
use super::yaml::{Node, NodeKind, SourceSpan};
use crate::partition::Partition;

const TOP_KEYS: &[&str] = &[
    "stack",
    "region",
    "tags",
    "network",
    "cluster",
    "database",
    "databases",
    "access",
    "app",
    "state",
];
const NETWORK_KEYS: &[&str] = &[
    "existing",
    "cidr",
    "availability_zones",
    "nat_gateways",
    "public_subnets",
    "private_subnets",
];
const EXISTING_NETWORK_KEYS: &[&str] = &["vpc_id", "private_subnet_ids", "public_subnet_ids"];
/// EC2 id prefixes and what they name, to say what a misplaced id is
/// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html>).
const EC2_ID_PREFIXES: &[(&str, &str)] = &[
    ("vpc", "a VPC"),
    ("subnet", "a subnet"),
    ("sg", "a security group"),
    ("igw", "an internet gateway"),
    ("nat", "a NAT gateway"),
    ("rtb", "a route table"),
    ("eni", "a network interface"),
    ("i", "an instance"),
];
const CLUSTER_KEYS: &[&str] = &[
    "existing",
    "version",
    "node_group",
    "service_cidr",
    "endpoint_public_access",
    "admins",
];
const EXISTING_CLUSTER_KEYS: &[&str] = &["name"];
const NODE_GROUP_KEYS: &[&str] = &["instance_types", "min_size", "desired_size", "max_size"];
const DATABASE_KEYS: &[&str] = &[
    "existing",
    "engine_version",
    "instance_class",
    "instances",
    "name",
    "master_username",
    "master_password",
    "subnets",
    "users",
    "final_snapshot",
    "iam_auth_error_log",
    "ca_bundle",
    "admin_access",
    "admin_endpoint",
    "relay_image",
    "tls_server_name",
];
/// What a referenced Aurora cluster's keys would describe of a cluster pwless creates: none of
/// them may sit beside `database.existing`.
const CREATED_DATABASE_KEYS: &[&str] = &[
    "engine_version",
    "instance_class",
    "instances",
    "name",
    "master_username",
    "subnets",
    "final_snapshot",
    "iam_auth_error_log",
];
const EXISTING_DATABASE_KEYS: &[&str] = &["cluster_identifier", "name", "enable_iam_auth"];
const USER_KEYS: &[&str] = &["name", "privileges", "schema"];
const ACCESS_KEYS: &[&str] = &[
    "namespace",
    "service_account",
    "database",
    "db_user",
    "identity",
];
const APP_KEYS: &[&str] = &[
    "namespace",
    "service_account",
    "database",
    "image",
    "replicas",
    "port",
];
/// The longest logical database name: `<stack>-<database>` names its Aurora cluster, and
/// `<stack>-<database>-<N>` its instances, within RDS's 63 characters.
const DATABASE_KEY_MAX: usize = 20;
const STATE_LOCAL_KEYS: &[&str] = &["backend", "path"];
const STATE_S3_KEYS: &[&str] = &[
    "backend",
    "bucket",
    "key",
    "region",
    "lock_lease_seconds",
    "kms_key_id",
];
const STATE_POSTGRES_KEYS: &[&str] = &["backend", "url_env", "table"];

/// Role names that exist on every Aurora PostgreSQL cluster or mean something to PostgreSQL.
const RESERVED_ROLE_NAMES: &[&str] = &[
    "rds_iam",
    "rdsadmin",
    "public",
    "none",
    "current_user",
    "current_role",
    "session_user",
];

/// The stack, with the warnings, or every error.
pub(crate) fn validate(root: &Node) -> Result<(Stack, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut checker = Checker::default();
    let stack = checker.stack(root);
    match stack {
        Some(stack) if checker.diagnostics.is_empty() => Ok((stack, checker.warnings)),
        _ => {
            if checker.diagnostics.is_empty() {
                // Every `None` above comes with a diagnostic; keep that promise visible.
                checker.error(
                    "",
                    root.span,
                    "the stack file could not be read as a stack",
                    None,
                );
            }
            Err(checker.diagnostics)
        }
    }
}

/// A mapping's entries, keyed by their (string) key.
struct Fields<'n> {
    path: String,
    span: SourceSpan,
    entries: HashMap<&'n str, (&'n Node, &'n Node)>,
    /// The keys suggested for unknown keys here: a missing key among them was misspelt, and
    /// the unknown-key error already says so (one mistake, one error).
    suggested: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    fn value(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .get(key)
            .map(|(_, value)| *value)
            .filter(|value| !value.is_null())
    }

    fn path(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

/// `a VPC` -> `A VPC`.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Where the database of logical name `key` sits in the stack file: its path (`database` or
/// `databases.<key>`) and its node.
fn database_node<'n>(fields: &Fields<'n>, key: &str) -> Option<(String, &'n Node)> {
    match fields.value("databases") {
        Some(databases) => Some((format!("databases.{key}"), databases.get(key)?)),
        None => Some(("database".to_string(), fields.value("database")?)),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[derive(Default)]
struct Checker {
    diagnostics: Vec<Diagnostic>,
    /// Values that may be right but that pwless does not know (they do not stop the run).
    warnings: Vec<Diagnostic>,
    /// Names under each database's `users`, by the database's logical name, recorded even
    /// when that section has other problems, so `access` entries are still checked against
    /// them.
    declared_users: BTreeMap<String, Vec<String>>,
    /// The databases with an entry of `users` that lacks its `name` key: then an `access`
    /// entry naming an unknown user may mean that one (a misspelt `name`), and only the user
    /// entry's own error is reported (one mistake, one error).
    users_incomplete: BTreeSet<String>,
    /// The logical names of the databases, in the stack file's order, recorded even when a
    /// database has other problems, so `access` entries are still checked against them.
    declared_databases: Vec<String>,
    /// Whether the stack declares its database with the `database` shorthand.
    shorthand: bool,
}

impl Checker {
    fn error(
        &mut self,
        path: &str,
        span: SourceSpan,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.diagnostics.push(Diagnostic {
            path: path.to_string(),
            span,
            message: message.into(),
            help,
            secret: false,
        });
    }

    fn warning(&mut self, path: &str, span: SourceSpan, message: String, help: String) {
        self.warnings.push(Diagnostic {
            path: path.to_string(),
            span,
            message,
            help: Some(help),
            secret: false,
        });
    }

    /// An error about a value that may be a secret: the value is masked when shown.
    fn secret_error(
        &mut self,
        path: &str,
        span: SourceSpan,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.error(path, span, message, help);
        if let Some(last) = self.diagnostics.last_mut() {
            last.secret = true;
        }
    }

    // ---- shapes -------------------------------------------------------------------------

    fn mapping<'n>(
        &mut self,
        node: &'n Node,
        path: &str,
        allowed: &[&'static str],
    ) -> Option<Fields<'n>> {
        let NodeKind::Mapping(entries) = &node.kind else {
            let what = if path.is_empty() {
                "the stack file".to_string()
            } else {
                format!("`{path}`")
            };
            self.error(
                path,
                node.span,
                format!("expected a mapping for {what}, found {}", node.describe()),
                Some(format!(
                    "write it as `key: value` lines; allowed keys: {}",
                    allowed.join(", ")
                )),
            );
            return None;
        };
        let mut fields = Fields {
            path: path.to_string(),
            span: node.span,
            entries: HashMap::new(),
            suggested: Vec::new(),
        };
        for (key, value) in entries {
            let NodeKind::Scalar { value: name, .. } = &key.kind else {
                self.error(
                    path,
                    key.span,
                    "a key must be a plain word",
                    Some(format!("allowed keys: {}", allowed.join(", "))),
                );
                continue;
            };
            if !allowed.contains(&name.as_str()) {
                let help = match did_you_mean(name, allowed.iter().copied()) {
                    Some(suggestion) => {
                        fields.suggested.push(suggestion);
                        format!("did you mean `{suggestion}`?")
                    }
                    None => format!("allowed keys here: {}", allowed.join(", ")),
                };
                let place = if path.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in `{path}`")
                };
                self.error(
                    &join(path, name),
                    key.span,
                    format!("unknown key `{name}` {place}"),
                    Some(help),
                );
                continue;
            }
            if fields.entries.contains_key(name.as_str()) {
                self.error(
                    &join(path, name),
                    key.span,
                    format!("key `{name}` appears twice"),
                    Some("keep one of them; YAML would silently use the last".into()),
                );
                continue;
            }
            fields.entries.insert(name.as_str(), (key, value));
        }
        Some(fields)
    }

    fn required<'n>(&mut self, fields: &Fields<'n>, key: &str, example: &str) -> Option<&'n Node> {
        let value = fields.value(key);
        if value.is_none() && !fields.suggested.contains(&key) {
            let span = fields
                .entries
                .get(key)
                .map(|(key, _)| key.span)
                .unwrap_or(fields.span);
            let place = if fields.path.is_empty() {
                "the stack file".to_string()
            } else {
                format!("`{}`", fields.path)
            };
            self.error(
                &fields.path(key),
                span,
                format!("missing `{key}` in {place}"),
                Some(format!("add `{key}: {example}`")),
            );
        }
        value
    }

    fn string<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        match &node.kind {
            NodeKind::Scalar { value, quoted } if *quoted || !node.is_null() => {
                let _ = quoted;
                Some(value.as_str())
            }
            _ => {
                self.error(
                    path,
                    node.span,
                    format!("expected a string for `{path}`, found {}", node.describe()),
                    None,
                );
                None
            }
        }
    }

    fn integer(&mut self, node: &Node, path: &str, min: i64, max: i64) -> Option<i64> {
        let parsed = match &node.kind {
            NodeKind::Scalar {
                value,
                quoted: false,
            } => value.parse::<i64>().ok(),
            _ => None,
        };
        let Some(number) = parsed else {
            self.error(
                path,
                node.span,
                format!(
                    "expected a whole number for `{path}`, found {}",
                    node.describe()
                ),
                Some(format!(
                    "write a number from {min} to {max}, without quotes"
                )),
            );
            return None;
        };
        if number < min || number > max {
            self.error(
                path,
                node.span,
                format!("`{path}` is {number}; it must be from {min} to {max}"),
                Some(format!("use a number from {min} to {max}")),
            );
            return None;
        }
        Some(number)
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.kind {
            NodeKind::Scalar {
                value,
                quoted: false,
            } if value == "true" => Some(true),
            NodeKind::Scalar {
                value,
                quoted: false,
            } if value == "false" => Some(false),
            _ => {
                self.error(
                    path,
                    node.span,
                    format!(
                        "expected true or false for `{path}`, found {}",
                        node.describe()
                    ),
                    None,
                );
                None
            }
        }
    }

    fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.kind {
            NodeKind::Sequence(items) => Some(items),
            _ => {
                self.error(
                    path,
                    node.span,
                    format!("expected a list for `{path}`, found {}", node.describe()),
                    Some("write `[a, b]` or one `- item` per line".into()),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, node: &Node, path: &str, choices: &[(&str, T)]) -> Option<T> {
        let text = self.string(node, path)?;
        if let Some((_, value)) = choices.iter().find(|(name, _)| *name == text) {
            return Some(*value);
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        let help = match did_you_mean(text, names.iter().copied()) {
            Some(suggestion) => format!(
                "did you mean `{suggestion}`? (one of: {})",
                names.join(", ")
            ),
            None => format!("use one of: {}", names.join(", ")),
        };
        self.error(
            path,
            node.span,
            format!("`{text}` is not a valid value for `{path}`"),
            Some(help),
        );
        None
    }

    fn cidr(&mut self, node: &Node, path: &str) -> Option<Ipv4Cidr> {
        let text = self.string(node, path)?;
        match text.parse::<Ipv4Cidr>() {
            Ok(cidr) => Some(cidr),
            Err(error) => {
                let help = match &error {
                    CidrError::HostBits { network, .. } => format!("did you mean `{network}`?"),
                    _ => "write an IPv4 block like 10.0.0.0/16".into(),
                };
                self.error(
                    path,
                    node.span,
                    format!("bad CIDR for `{path}`: {error}"),
                    Some(help),
                );
                None
            }
        }
    }

    // ---- sections -----------------------------------------------------------------------

    fn stack(&mut self, root: &Node) -> Option<Stack> {
        let fields = self.mapping(root, "", TOP_KEYS)?;

        let name = self
            .required(&fields, "stack", "iam-postgres")
            .and_then(|node| {
                let name = self.string(node, "stack")?;
                self.stack_name(name, node.span).then(|| name.to_string())
            });
        let region = self
            .required(&fields, "region", "us-west-2")
            .and_then(|node| {
                let region = self.string(node, "region")?;
                if is_region(region) {
                    Some(region.to_string())
                } else {
                    self.error(
                        "region",
                        node.span,
                        format!("`{region}` is not an AWS region name"),
                        Some("write a region like us-west-2 or eu-central-1".into()),
                    );
                    None
                }
            });
        let tags = match fields.value("tags") {
            Some(node) => self.tags(node),
            None => Some(BTreeMap::new()),
        };
        let network = self
            .required(
                &fields,
                "network",
                "{cidr: 10.0.0.0/16, availability_zones: 2, nat_gateways: single}",
            )
            .and_then(|node| self.network(node, region.as_deref()));
        let cluster = self
            .required(&fields, "cluster", "{version: \"1.31\", node_group: {...}}")
            .and_then(|node| {
                let partition = region.as_deref().map(Partition::of_region);
                self.cluster(node, network.as_ref(), partition)
            });
        let databases = self.databases(&fields, network.as_ref());
        let access = match fields.value("access") {
            Some(node) => self.access(node),
            None => Some(Vec::new()),
        };
        let app = match fields.value("app") {
            Some(node) => self.app(node, access.as_deref()).map(Some),
            None => Some(None),
        };
        // Kubernetes objects need someone (pwless's own principal first) with access to the
        // cluster's API; the cluster is made without an implicit admin.
        let has_objects = access.as_ref().is_some_and(|access| !access.is_empty())
            || app.as_ref().is_some_and(Option::is_some);
        if let (Some(cluster), Some(node)) = (&cluster, fields.value("cluster"))
            && has_objects
            && cluster.existing.is_none()
            && cluster.admins.is_empty()
        {
            self.error(
                "cluster.admins",
                node.span,
                "`cluster.admins` is required when the stack has Kubernetes objects (`access` or `app`)",
                Some(format!("list the IAM role or user pwless runs as (and your team's), e.g. `admins: [{}]`; each gets an EKS access entry with cluster-admin", region.as_deref().map_or(Partition::Aws, Partition::of_region).role_arn("123456789012", "platform-deployer"))),
            );
        }

        // A referenced network's public subnets are optional; a database in them is not.
        for database in databases.iter().flatten() {
            if let Some(network) = &network
                && let Some(existing) = &network.existing
                && existing.public_subnet_ids.is_empty()
                && database.subnets == DatabaseSubnets::Public
                && let Some((at, node)) = database_node(&fields, &database.key)
                && let Some(node) = node.get("subnets")
            {
                self.error(
                    &format!("{at}.subnets"),
                    node.span,
                    format!("`{at}.subnets: public` needs public subnets, and `network.existing` lists none"),
                    Some("add `public_subnet_ids` to `network.existing`, or keep the database in the private subnets".into()),
                );
            }
        }

        // The demo app's Service is an internet-facing load balancer: it needs public subnets.
        if let (Some(network), Some(Some(_))) = (&network, &app)
            && let Some(existing) = &network.existing
            && existing.public_subnet_ids.is_empty()
            && let Some((key, _)) = fields.entries.get("app")
        {
            self.error(
                "app",
                key.span,
                "`app` is served by an internet-facing load balancer, which needs public subnets, and `network.existing` lists none",
                Some("add `public_subnet_ids` to `network.existing`, or leave `app` out".into()),
            );
        }

        let state = match fields.value("state") {
            Some(node) => self.state(node),
            None => Some(StateBackend::default()),
        };

        let stack = Stack {
            name: name?,
            region: region?,
            tags: tags?,
            network: network?,
            cluster: cluster?,
            databases: databases?,
            access: access?,
            app: app?,
            state: state?,
        };
        let clusters = self.cluster_names(&stack);
        (self.generated_names(&stack, fields.value("access"), root.span) && clusters)
            .then_some(stack)
    }

    /// Refuses a database that references the Aurora cluster another database of the stack
    /// creates ([`names::rds_cluster`]): pwless would make that cluster and also treat it as
    /// the team's. Said at the reference.
    fn cluster_names(&mut self, stack: &Stack) -> bool {
        let created: Vec<(String, &str)> = stack
            .databases
            .iter()
            .filter(|database| database.existing.is_none())
            .map(|database| {
                (
                    names::rds_cluster(&stack.name, &database.key),
                    database.path.as_str(),
                )
            })
            .collect();
        let mut ok = true;
        for database in &stack.databases {
            let Some(existing) = &database.existing else {
                continue;
            };
            let reference = &existing.cluster_identifier;
            if let Some((_, path)) = created.iter().find(|(name, _)| *name == reference.id) {
                self.error(
                    &reference.path,
                    reference.span,
                    format!(
                        "Aurora cluster `{}` is the one {path} creates",
                        reference.id
                    ),
                    Some("reference a cluster the stack does not create, or rename the stack or that database".into()),
                );
                ok = false;
            }
        }
        ok
    }

    /// Refuses a stack in which two generated IAM role names are the same
    /// ([`names::iam_role_collisions`]): apply would fail on the second, and recovery, which
    /// looks roles up by name, could mistake one for the other. Names both entries.
    fn generated_names(
        &mut self,
        stack: &Stack,
        access: Option<&Node>,
        fallback: SourceSpan,
    ) -> bool {
        let collisions = names::iam_role_collisions(stack);
        let entry = |index: usize| {
            let entry = &stack.access[index];
            format!(
                "access[{index}] ({}/{})",
                entry.namespace, entry.service_account
            )
        };
        for (first, later, name) in &collisions {
            let names::RoleOwner::Access(index) = later else {
                continue;
            };
            let span = match access.map(|node| &node.kind) {
                Some(NodeKind::Sequence(items)) if *index < items.len() => items[*index].span,
                _ => fallback,
            };
            let (message, help) = match first {
                names::RoleOwner::Access(first) => (
                    format!(
                        "{} and {} both get the IAM role name `{name}`",
                        entry(*first),
                        entry(*index)
                    ),
                    "an IRSA role is named `<stack>-<namespace>-<service account>`, and IAM role names are unique per account: rename the namespace or the service account of one entry".to_string(),
                ),
                owner => (
                    format!(
                        "{} gets the IAM role name `{name}`, which is {owner}",
                        entry(*index)
                    ),
                    "an IRSA role is named `<stack>-<namespace>-<service account>`: use another namespace or service account".to_string(),
                ),
            };
            self.error(&format!("access[{index}]"), span, message, Some(help));
        }
        collisions.is_empty()
    }

    fn stack_name(&mut self, name: &str, span: SourceSpan) -> bool {
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && !name.contains("--")
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            self.error(
                "stack",
                span,
                format!("`{name}` is not a valid stack name"),
                Some("use 1 to 32 lowercase letters, digits and single hyphens, starting with a letter (it names the EKS and Aurora clusters and prefixes IAM roles)".into()),
            );
        }
        valid
    }

    fn tags(&mut self, node: &Node) -> Option<BTreeMap<String, String>> {
        let NodeKind::Mapping(entries) = &node.kind else {
            self.error(
                "tags",
                node.span,
                format!("expected a mapping for `tags`, found {}", node.describe()),
                Some("write `tags: {team: platform}`".into()),
            );
            return None;
        };
        let mut tags = BTreeMap::new();
        let mut ok = true;
        for (key, value) in entries {
            let Some(key_text) = self.string(key, "tags") else {
                ok = false;
                continue;
            };
            let path = join("tags", key_text);
            let Some(value_text) = self.string(value, &path) else {
                ok = false;
                continue;
            };
            let lower = key_text.to_ascii_lowercase();
            if lower.starts_with("aws:") || lower.starts_with("pwless:") {
                self.error(
                    &path,
                    key.span,
                    format!("tag key `{key_text}` uses a reserved prefix"),
                    Some(
                        "`aws:` belongs to AWS and `pwless:` to pwless; choose another key".into(),
                    ),
                );
                ok = false;
            } else if key_text.is_empty()
                || key_text.chars().count() > 128
                || value_text.chars().count() > 256
            {
                self.error(
                    &path,
                    key.span,
                    "tag keys must have 1 to 128 characters and values at most 256",
                    None,
                );
                ok = false;
            } else if tags
                .insert(key_text.to_string(), value_text.to_string())
                .is_some()
            {
                self.error(
                    &path,
                    key.span,
                    format!("tag `{key_text}` appears twice"),
                    Some("keep one of them".into()),
                );
                ok = false;
            }
        }
        ok.then_some(tags)
    }

    fn network(&mut self, node: &Node, region: Option<&str>) -> Option<Network> {
        let fields = self.mapping(node, "network", NETWORK_KEYS)?;
        if let Some(existing) = fields.value("existing") {
            return self.existing_network(&fields, existing);
        }
        let cidr = self.required(&fields, "cidr", "10.0.0.0/16").and_then(|node| {
            let cidr = self.cidr(node, "network.cidr")?;
            if !(16..=28).contains(&cidr.prefix()) {
                self.error("network.cidr", node.span, format!("a VPC block must be between /16 and /28, `{cidr}` is /{}", cidr.prefix()), Some("AWS allows VPC blocks from /16 (65,536 addresses) to /28 (16)".into()));
                return None;
            }
            if !cidr.is_private() {
                self.error("network.cidr", node.span, format!("`{cidr}` is not a private address range"), Some("use a block inside 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 or 100.64.0.0/10".into()));
                return None;
            }
            Some((cidr, node.span))
        });
        let zone_count = self
            .required(&fields, "availability_zones", "2")
            .and_then(|node| self.integer(node, "network.availability_zones", 2, 6));
        let nat_gateways = match fields.value("nat_gateways") {
            Some(node) => self.choice(
                node,
                "network.nat_gateways",
                &[
                    ("none", NatGateways::None),
                    ("single", NatGateways::Single),
                    ("per_az", NatGateways::PerAz),
                ],
            ),
            None => Some(NatGateways::Single),
        };
        let (cidr, cidr_span) = cidr?;
        let zone_count = usize::try_from(zone_count?).ok()?;
        let region = region?;
        let availability_zones: Vec<String> = (0..zone_count)
            .map(|index| format!("{region}{}", char::from(b'a' + index as u8)))
            .collect();

        let explicit_public = fields.value("public_subnets");
        let explicit_private = fields.value("private_subnets");
        let (public_subnets, private_subnets) = if explicit_public.is_none()
            && explicit_private.is_none()
        {
            let needed = 2 * zone_count;
            let bits = usize::BITS - (needed - 1).leading_zeros();
            let new_prefix = u32::from(cidr.prefix()) + bits;
            if new_prefix > 28 {
                let per_subnet = if new_prefix <= 32 {
                    1u64 << (32 - new_prefix)
                } else {
                    0
                };
                self.error(
                    "network.cidr",
                    cidr_span,
                    format!(
                        "too few addresses: {zone_count} availability zones need {needed} subnets, and `{cidr}` leaves /{new_prefix} subnets of {per_subnet} addresses (AWS needs at least /28)"
                    ),
                    Some(format!("use a larger block such as /{} or fewer availability zones", (28 - bits).min(24))),
                );
                return None;
            }
            let new_prefix = new_prefix as u8;
            let carve = |index: usize| cidr.subnet(new_prefix, index as u32);
            let public: Option<Vec<_>> = (0..zone_count).map(carve).collect();
            let private: Option<Vec<_>> = (zone_count..needed).map(carve).collect();
            (public?, private?)
        } else {
            let public = self.subnet_list(&fields, "public_subnets", zone_count, cidr);
            let private = self.subnet_list(&fields, "private_subnets", zone_count, cidr);
            let (public, private) = (public?, private?);
            let mut all: Vec<(Ipv4Cidr, SourceSpan, String)> =
                public.into_iter().chain(private).collect();
            let mut overlapping = false;
            for first in 0..all.len() {
                for second in first + 1..all.len() {
                    if all[first].0.overlaps(&all[second].0) {
                        let (block, span, path) = &all[second];
                        self.error(
                            path,
                            *span,
                            format!("`{block}` overlaps `{}` ({})", all[first].0, all[first].2),
                            Some("give every subnet its own block".into()),
                        );
                        overlapping = true;
                    }
                }
            }
            if overlapping {
                return None;
            }
            let private = all.split_off(zone_count);
            (
                all.into_iter().map(|entry| entry.0).collect(),
                private.into_iter().map(|entry| entry.0).collect(),
            )
        };

        Some(Network {
            cidr,
            availability_zones,
            nat_gateways: nat_gateways?,
            public_subnets,
            private_subnets,
            existing: None,
        })
    }

    /// `network.existing`: the ids only (their resources are read at plan time,
    /// [`crate::ops::discover`]); no key that describes a network to create may sit beside it.
    fn existing_network(&mut self, fields: &Fields<'_>, node: &Node) -> Option<Network> {
        let mut beside = false;
        for key in NETWORK_KEYS.iter().filter(|key| **key != "existing") {
            if let Some((key_node, _)) = fields.entries.get(key) {
                self.error(
                    &fields.path(key),
                    key_node.span,
                    format!("`network.{key}` describes a network to create, but `network.existing` names one that exists"),
                    Some(format!("remove `{key}`: pwless reads the VPC's block, zones and subnets from AWS")),
                );
                beside = true;
            }
        }
        let existing = self.mapping(node, "network.existing", EXISTING_NETWORK_KEYS)?;
        let vpc_id = self
            .required(&existing, "vpc_id", "vpc-0123456789abcdef0")
            .and_then(|node| self.ec2_id(node, "network.existing.vpc_id", "vpc"));
        let private = self
            .required(
                &existing,
                "private_subnet_ids",
                "[subnet-0123456789abcdef0, subnet-0fedcba9876543210]",
            )
            .and_then(|node| self.subnet_ids(node, "network.existing.private_subnet_ids", 2));
        let public = match existing.value("public_subnet_ids") {
            Some(node) => self.subnet_ids(node, "network.existing.public_subnet_ids", 1),
            None => Some(Vec::new()),
        };
        let (vpc_id, private, public) = (vpc_id?, private?, public?);
        let mut seen: HashMap<&str, &Reference> = HashMap::new();
        let mut repeated = false;
        for reference in private.iter().chain(&public) {
            if let Some(first) = seen.insert(&reference.id, reference) {
                self.error(
                    &reference.path,
                    reference.span,
                    format!(
                        "`{}` is listed twice (first as `{}`)",
                        reference.id, first.path
                    ),
                    Some("list each subnet once, as private or as public".into()),
                );
                repeated = true;
            }
        }
        if beside || repeated {
            return None;
        }
        Some(Network {
            cidr: Ipv4Cidr::UNKNOWN,
            availability_zones: Vec::new(),
            nat_gateways: NatGateways::None,
            public_subnets: Vec::new(),
            private_subnets: Vec::new(),
            existing: Some(ExistingNetwork {
                vpc_id,
                private_subnet_ids: private,
                public_subnet_ids: public,
                read: None,
            }),
        })
    }

    fn subnet_ids(&mut self, node: &Node, path: &str, at_least: usize) -> Option<Vec<Reference>> {
        let items = self.list(node, path)?;
        if items.len() < at_least {
            self.error(
                path,
                node.span,
                format!(
                    "`{path}` lists {} subnet{}, at least {at_least} needed",
                    items.len(),
                    if items.len() == 1 { "" } else { "s" }
                ),
                Some(if at_least > 1 {
                    "list subnets in at least two availability zones: EKS and Aurora both need two"
                        .into()
                } else {
                    "list at least one subnet, or leave the key out".into()
                }),
            );
            return None;
        }
        let ids: Vec<Option<Reference>> = items
            .iter()
            .enumerate()
            .map(|(index, item)| self.ec2_id(item, &format!("{path}[{index}]"), "subnet"))
            .collect();
        ids.into_iter().collect()
    }

    /// An EC2 id of the kind `prefix` names (`vpc`, `subnet`): the prefix, a dash and 8 or 17
    /// lowercase hexadecimal digits
    /// (<https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/resource-ids.html>).
    fn ec2_id(&mut self, node: &Node, path: &str, prefix: &str) -> Option<Reference> {
        let text = self.string(node, path)?;
        let what = |wanted: &str| {
            EC2_ID_PREFIXES
                .iter()
                .find(|(known, _)| *known == wanted)
                .map_or("an EC2 resource", |(_, what)| *what)
        };
        let (found, digits) = text.split_once('-').unwrap_or(("", text));
        let well_formed = (digits.len() == 8 || digits.len() == 17)
            && digits
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
        if found == prefix && well_formed {
            return Some(Reference {
                id: text.to_string(),
                path: path.to_string(),
                span: node.span,
            });
        }
        if found != prefix && EC2_ID_PREFIXES.iter().any(|(known, _)| *known == found) {
            self.error(
                path,
                node.span,
                format!(
                    "`{text}` is the id of {}, not of {}",
                    what(found),
                    what(prefix)
                ),
                Some(format!(
                    "write the id of {} here (`{prefix}-` and 17 hexadecimal digits)",
                    what(prefix)
                )),
            );
        } else {
            self.error(
                path,
                node.span,
                format!("`{text}` is not the id of {}", what(prefix)),
                Some(format!("{} id is `{prefix}-` and 8 or 17 lowercase hexadecimal digits, e.g. `{prefix}-0123456789abcdef0`", capitalized(what(prefix)))),
            );
        }
        None
    }

    fn subnet_list(
        &mut self,
        fields: &Fields<'_>,
        key: &str,
        zone_count: usize,
        vpc: Ipv4Cidr,
    ) -> Option<Vec<(Ipv4Cidr, SourceSpan, String)>> {
        let path = fields.path(key);
        let Some(node) = fields.value(key) else {
            self.error(&path, fields.span, format!("`{path}` is missing while the other subnet list is set"), Some("list both public_subnets and private_subnets, or neither to have them carved from `cidr`".into()));
            return None;
        };
        let items = self.list(node, &path)?;
        if items.len() != zone_count {
            self.error(
                &path,
                node.span,
                format!(
                    "`{path}` lists {} blocks for {zone_count} availability zones",
                    items.len()
                ),
                Some(format!(
                    "list exactly {zone_count}, one per availability zone"
                )),
            );
            return None;
        }
        let mut blocks = Vec::new();
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            match self.cidr(item, &item_path) {
                Some(block) if !vpc.contains(&block) => {
                    self.error(
                        &item_path,
                        item.span,
                        format!("`{block}` is outside the VPC block `{vpc}`"),
                        Some("subnets must lie inside network.cidr".into()),
                    );
                    ok = false;
                }
                Some(block) if block.prefix() > 28 => {
                    self.error(
                        &item_path,
                        item.span,
                        format!("too few addresses: `{block}` is smaller than /28"),
                        Some("AWS subnets are /16 to /28".into()),
                    );
                    ok = false;
                }
                Some(block) => blocks.push((block, item.span, item_path)),
                None => ok = false,
            }
        }
        ok.then_some(blocks)
    }

    fn cluster(
        &mut self,
        node: &Node,
        network: Option<&Network>,
        partition: Option<Partition>,
    ) -> Option<Cluster> {
        let fields = self.mapping(node, "cluster", CLUSTER_KEYS)?;
        if let Some(existing) = fields.value("existing") {
            return self.existing_cluster(&fields, existing, network);
        }
        let version = self
            .required(&fields, "version", "\"1.31\"")
            .and_then(|node| {
                let version = self.string(node, "cluster.version")?;
                let valid = version.strip_prefix("1.").is_some_and(|minor| {
                    !minor.is_empty()
                        && minor.len() <= 2
                        && minor.bytes().all(|b| b.is_ascii_digit())
                });
                if !valid {
                    self.error(
                        "cluster.version",
                        node.span,
                        format!("`{version}` is not a Kubernetes version"),
                        Some("write the EKS version in quotes, like \"1.31\"".into()),
                    );
                    return None;
                }
                Some(version.to_string())
            });
        let node_group = self
            .required(
                &fields,
                "node_group",
                "{instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}",
            )
            .and_then(|node| self.node_group(node));
        let service_cidr = match fields.value("service_cidr") {
            None => Some(None),
            Some(node) => self.cidr(node, "cluster.service_cidr").and_then(|block| {
                if !(12..=24).contains(&block.prefix()) || !block.is_private() {
                    self.error(
                        "cluster.service_cidr",
                        node.span,
                        format!("`{block}` cannot be an EKS service block"),
                        Some(
                            "EKS needs a private block from /12 to /24, e.g. 172.20.0.0/16".into(),
                        ),
                    );
                    return None;
                }
                // A referenced VPC's block is read at plan time (EKS refuses an overlap then).
                if let Some(network) = network
                    && network.existing.is_none()
                    && network.cidr.overlaps(&block)
                {
                    self.error(
                        "cluster.service_cidr",
                        node.span,
                        format!("`{block}` overlaps the VPC block `{}`", network.cidr),
                        Some("choose a service block outside the VPC, e.g. 172.20.0.0/16".into()),
                    );
                    return None;
                }
                Some(Some(block))
            }),
        };
        let endpoint_public_access = match fields.value("endpoint_public_access") {
            Some(node) => self.boolean(node, "cluster.endpoint_public_access"),
            None => Some(true),
        };
        let admins = match fields.value("admins") {
            Some(node) => self.admins(node, partition),
            None => Some(Vec::new()),
        };
        Some(Cluster {
            version: version?,
            node_group: node_group?,
            service_cidr: service_cidr?,
            endpoint_public_access: endpoint_public_access?,
            admins: admins?,
            existing: None,
        })
    }

    /// `cluster.existing`: the cluster's name only (the cluster is read at plan time,
    /// [`crate::ops::discover`]). It needs `network.existing` (a cluster that exists is in a
    /// VPC that exists), and no key that describes a cluster to create may sit beside it.
    fn existing_cluster(
        &mut self,
        fields: &Fields<'_>,
        node: &Node,
        network: Option<&Network>,
    ) -> Option<Cluster> {
        let mut beside = false;
        for key in CLUSTER_KEYS.iter().filter(|key| **key != "existing") {
            if let Some((key_node, _)) = fields.entries.get(key) {
                let help = if *key == "admins" {
                    "remove `admins`: who may use an existing cluster's Kubernetes API is its owners' decision (EKS access entries pwless does not manage); pwless uses the access its own principal has".to_string()
                } else {
                    format!("remove `{key}`: pwless reads the cluster as it is")
                };
                self.error(
                    &fields.path(key),
                    key_node.span,
                    format!("`cluster.{key}` describes a cluster to create, but `cluster.existing` names one that exists"),
                    Some(help),
                );
                beside = true;
            }
        }
        let existing = self.mapping(node, "cluster.existing", EXISTING_CLUSTER_KEYS)?;
        let name = self
            .required(&existing, "name", "my-cluster")
            .and_then(|node| {
                let name = self.string(node, "cluster.existing.name")?;
                // "The name can contain only alphanumeric characters (case-sensitive),
                // hyphens, and underscores. It must start with an alphanumeric character and
                // can't be longer than 100 characters." (EKS CreateCluster, `name`)
                let valid = (1..=100).contains(&name.len())
                    && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    self.error(
                        "cluster.existing.name",
                        node.span,
                        format!("`{name}` is not an EKS cluster name"),
                        Some("an EKS cluster name is 1 to 100 letters, digits, hyphens and underscores, starting with a letter or digit (`aws eks list-clusters` lists yours)".into()),
                    );
                    return None;
                }
                Some(Reference {
                    id: name.to_string(),
                    path: "cluster.existing.name".into(),
                    span: node.span,
                })
            });
        if let Some(network) = network
            && network.existing.is_none()
        {
            self.error(
                "cluster.existing",
                node.span,
                "`cluster.existing` needs `network.existing`: a cluster that exists is in a VPC that exists, not in one this stack creates",
                Some("name the cluster's VPC and subnets under `network.existing`".into()),
            );
            return None;
        }
        let name = name?;
        if beside {
            return None;
        }
        Some(Cluster {
            version: String::new(),
            node_group: NodeGroup {
                instance_types: Vec::new(),
                min_size: 0,
                desired_size: 0,
                max_size: 0,
            },
            service_cidr: None,
            endpoint_public_access: true,
            admins: Vec::new(),
            existing: Some(ExistingCluster { name, read: None }),
        })
    }

    /// IAM principal ARNs (roles or users) given cluster-admin through EKS access entries.
    /// `cluster.admins`: IAM role or user ARNs of the stack's partition (`partition`, when the
    /// region is valid), each once; a role session is refused with its role's ARN as the fix.
    fn admins(&mut self, node: &Node, partition: Option<Partition>) -> Option<Vec<String>> {
        let items = self.list(node, "cluster.admins")?;
        let mut admins: Vec<String> = Vec::new();
        let mut valid = true;
        for item in items {
            let Some(arn) = self.string(item, "cluster.admins") else {
                valid = false;
                continue;
            };
            let problem = if let Some(role) = arn
                .split_once(":sts::")
                .and_then(|(_, rest)| rest.split_once(":assumed-role/"))
            {
                let (account, rest) = role;
                let name = rest.split('/').next().unwrap_or(rest);
                let fix = partition
                    .or_else(|| Partition::of_arn(arn))
                    .unwrap_or(Partition::Aws)
                    .role_arn(account, name);
                Some((
                    format!("`{arn}` is a role session, not a principal"),
                    format!("name the role: {fix}"),
                ))
            } else if !is_principal_arn(arn) {
                let id = partition.unwrap_or(Partition::Aws).id();
                Some((
                    format!("`{arn}` is not an IAM role or user ARN"),
                    format!(
                        "write arn:{id}:iam::<account>:role/<name> or arn:{id}:iam::<account>:user/<name> (`aws sts get-caller-identity` tells who you are)"
                    ),
                ))
            } else if let Some(stack_partition) = partition
                && Partition::of_arn(arn) != Some(stack_partition)
            {
                let given = Partition::of_arn(arn).map_or("?", Partition::id);
                let fix = arn.replacen(
                    &format!("arn:{given}:"),
                    &format!("arn:{stack_partition}:"),
                    1,
                );
                Some((
                    format!(
                        "`{arn}` is a principal of partition `{given}`, but the stack's region is in partition `{stack_partition}`"
                    ),
                    format!("EKS admits only principals of its own partition: write {fix}"),
                ))
            } else if admins.iter().any(|admin| admin == arn) {
                Some((
                    format!("`{arn}` is listed twice"),
                    "list each principal once".to_string(),
                ))
            } else {
                None
            };
            match problem {
                Some((message, help)) => {
                    self.error("cluster.admins", item.span, message, Some(help));
                    valid = false;
                }
                None => admins.push(arn.to_string()),
            }
        }
        valid.then_some(admins)
    }

    fn node_group(&mut self, node: &Node) -> Option<NodeGroup> {
        let fields = self.mapping(node, "cluster.node_group", NODE_GROUP_KEYS)?;
        let instance_types = self
            .required(&fields, "instance_types", "[t3.medium]")
            .and_then(|node| {
                let items = self.list(node, "cluster.node_group.instance_types")?;
                if items.is_empty() {
                    self.error(
                        "cluster.node_group.instance_types",
                        node.span,
                        "no instance types",
                        Some("list at least one, e.g. [t3.medium]".into()),
                    );
                    return None;
                }
                let mut types = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    let path = format!("cluster.node_group.instance_types[{index}]");
                    let name = self.string(item, &path)?;
                    let valid = name.split_once('.').is_some_and(|(family, size)| {
                        !family.is_empty()
                            && !size.is_empty()
                            && name.chars().all(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
                            })
                    });
                    if !valid {
                        self.error(
                            &path,
                            item.span,
                            format!("`{name}` is not an EC2 instance type"),
                            Some("write it like t3.medium or m7g.large".into()),
                        );
                        return None;
                    }
                    types.push(name.to_string());
                }
                Some(types)
            });
        let size = |checker: &mut Checker, key: &str, example: &str| {
            checker.required(&fields, key, example).and_then(|node| {
                checker
                    .integer(node, &fields.path(key), 0, 450)
                    .map(|value| (value as u32, node.span))
            })
        };
        let min = size(self, "min_size", "1");
        let desired = size(self, "desired_size", "2");
        let max = size(self, "max_size", "3");
        let ((min, _), (desired, desired_span), (max, max_span)) = (min?, desired?, max?);
        if max == 0 {
            self.error(
                "cluster.node_group.max_size",
                max_span,
                "max_size must be at least 1",
                Some("EKS node groups need max_size >= 1".into()),
            );
            return None;
        }
        if !(min <= desired && desired <= max) {
            self.error(
                "cluster.node_group.desired_size",
                desired_span,
                format!("sizes must satisfy min_size <= desired_size <= max_size, found {min} <= {desired} <= {max}"),
                Some("raise max_size or lower desired_size/min_size".into()),
            );
            return None;
        }
        Some(NodeGroup {
            instance_types: instance_types?,
            min_size: min,
            desired_size: desired,
            max_size: max,
        })
    }

    /// `database` (the one-database shorthand, logical name [`MAIN_DATABASE`]) or `databases`
    /// (a mapping from logical names to the same bodies); exactly one of the two.
    fn databases(
        &mut self,
        fields: &Fields<'_>,
        network: Option<&Network>,
    ) -> Option<Vec<Database>> {
        match (
            fields.entries.get("database"),
            fields.entries.get("databases"),
        ) {
            (Some((_, node)), None) => {
                self.shorthand = true;
                self.declared_databases.push(MAIN_DATABASE.to_string());
                self.database(node, "database", MAIN_DATABASE, network)
                    .map(|database| vec![database])
            }
            (Some(_), Some((key, _))) => {
                self.error(
                    "databases",
                    key.span,
                    "the stack has both `database` and `databases`",
                    Some("`database: {...}` is the shorthand for `databases: {main: {...}}`: move it under `databases` as `main`, or keep one of the two".into()),
                );
                None
            }
            (None, Some((_, node))) => {
                let NodeKind::Mapping(entries) = &node.kind else {
                    self.error(
                        "databases",
                        node.span,
                        format!("expected a mapping from database names to databases, found {}", node.describe()),
                        Some("write `databases: {orders: {engine_version: \"17.4\", ...}, billing: {existing: {...}, users: [...]}}`".into()),
                    );
                    return None;
                };
                if entries.is_empty() {
                    self.error(
                        "databases",
                        node.span,
                        "`databases` is empty",
                        Some("declare at least one database, e.g. `databases: {main: {engine_version: \"17.4\", ...}}`".into()),
                    );
                    return None;
                }
                let mut databases = Vec::new();
                let mut ok = true;
                for (key_node, body) in entries {
                    let Some(key) = self.string(key_node, "databases") else {
                        ok = false;
                        continue;
                    };
                    let at = format!("databases.{key}");
                    let valid = (1..=DATABASE_KEY_MAX).contains(&key.len())
                        && key.starts_with(|c: char| c.is_ascii_lowercase())
                        && key
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
                    if valid && key == "existing" {
                        // `main`'s referenced cluster is `data.aws_rds_cluster.existing`.
                        self.error(
                            &at,
                            key_node.span,
                            "`existing` cannot name a database: the `main` database's referenced cluster carries that name in addresses",
                            Some("choose another name".into()),
                        );
                        ok = false;
                    } else if !valid {
                        self.error(
                            &at,
                            key_node.span,
                            format!("`{}` is not a database name pwless accepts", key.escape_debug()),
                            Some(format!("use 1 to {DATABASE_KEY_MAX} lowercase letters and digits, starting with a letter (it names the database's Aurora cluster `<stack>-<name>`, its relay and its addresses)")),
                        );
                        ok = false;
                    }
                    // Declared even when misnamed, so `access` entries naming it are checked
                    // against its users, not reported again (one mistake, one error).
                    self.declared_databases.push(key.to_string());
                    match self.database(body, &at, key, network) {
                        Some(database) if valid && key != "existing" => databases.push(database),
                        _ => ok = false,
                    }
                }
                let databases = ok.then_some(databases)?;
                self.shared_clusters(&databases, node);
                Some(databases)
            }
            (None, None) => {
                self.required(fields, "database", "{engine_version: \"17.4\", ...}");
                None
            }
        }
    }

    /// Where the database of logical name `key` is declared: `database` (the shorthand) or
    /// `databases.<key>`.
    fn database_path(&self, key: &str) -> String {
        if self.shorthand {
            "database".to_string()
        } else {
            format!("databases.{key}")
        }
    }

    /// Two databases of one referenced Aurora cluster (two PostgreSQL databases in it) share
    /// its roles, which are the cluster's, not a database's: their users must have different
    /// names, or two stack entries would manage one role.
    fn shared_clusters(&mut self, databases: &[Database], node: &Node) {
        let mut owners: HashMap<(&str, &str), &str> = HashMap::new();
        for database in databases {
            let Some(existing) = &database.existing else {
                continue;
            };
            for (index, user) in database.users.iter().enumerate() {
                let Some(first) = owners.insert(
                    (existing.cluster_identifier.id.as_str(), user.name.as_str()),
                    database.key.as_str(),
                ) else {
                    continue;
                };
                let span = node
                    .get(&database.key)
                    .and_then(|body| body.get("users"))
                    .and_then(|users| match &users.kind {
                        NodeKind::Sequence(items) => items.get(index).map(|item| item.span),
                        _ => None,
                    })
                    .unwrap_or(node.span);
                self.error(
                    &format!("databases.{}.users[{index}]", database.key),
                    span,
                    format!(
                        "database user `{}` is also a user of databases.{first}, in the same Aurora cluster `{}`",
                        user.name, existing.cluster_identifier.id
                    ),
                    Some("a PostgreSQL role belongs to the whole cluster, not to one database in it: give the users different names, or declare the user once and grant it in one database".into()),
                );
            }
        }
    }

    /// One database: `database` (the shorthand, `at` = `database`, `key` = [`MAIN_DATABASE`])
    /// or an entry of `databases` (`at` = `databases.<key>`).
    fn database(
        &mut self,
        node: &Node,
        at: &str,
        key: &str,
        network: Option<&Network>,
    ) -> Option<Database> {
        let fields = self.mapping(node, at, DATABASE_KEYS)?;
        if let Some(existing) = fields.value("existing") {
            return self.existing_database(&fields, existing, at, key, network);
        }
        let engine_version = self
            .required(&fields, "engine_version", "\"17.4\"")
            .and_then(|node| {
                let version = self.string(node, &format!("{at}.engine_version"))?;
                let valid = {
                    let mut parts = version.split('.');
                    let major = parts.next().unwrap_or("");
                    let minor = parts.next();
                    parts.next().is_none()
                        && !major.is_empty()
                        && major.len() <= 2
                        && major.bytes().all(|b| b.is_ascii_digit())
                        && minor.is_none_or(|minor| {
                            !minor.is_empty()
                                && minor.len() <= 3
                                && minor.bytes().all(|b| b.is_ascii_digit())
                        })
                };
                if !valid {
                    self.error(
                        &format!("{at}.engine_version"),
                        node.span,
                        format!("`{version}` is not an Aurora PostgreSQL version"),
                        Some("write it in quotes, like \"17.4\"".into()),
                    );
                    return None;
                }
                if let Some(nearest) = super::known::unknown_engine_version(version) {
                    self.warning(
                        &format!("{at}.engine_version"),
                        node.span,
                        format!("`{version}` is not an Aurora PostgreSQL version pwless knows"),
                        format!(
                            "the nearest known is \"{nearest}\"; if AWS lists it (`aws rds describe-db-engine-versions --engine aurora-postgresql`), it is fine"
                        ),
                    );
                }
                Some(version.to_string())
            });
        let instance_class = self
            .required(&fields, "instance_class", "db.t4g.medium")
            .and_then(|node| {
                let class = self.string(node, &format!("{at}.instance_class"))?;
                let valid = class.strip_prefix("db.").is_some_and(|rest| {
                    rest.split_once('.')
                        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
                        && rest.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
                        })
                });
                if !valid {
                    self.error(
                        &format!("{at}.instance_class"),
                        node.span,
                        format!("`{class}` is not an RDS instance class"),
                        Some(
                            "write it like db.t4g.medium or db.r7g.large (or db.serverless)".into(),
                        ),
                    );
                    return None;
                }
                if let Some(nearest) = super::known::unknown_instance_class(class) {
                    self.warning(
                        &format!("{at}.instance_class"),
                        node.span,
                        format!("`{class}` is not an Aurora PostgreSQL instance class pwless knows"),
                        format!(
                            "the nearest known is {nearest}; if AWS offers it in your region, it is fine"
                        ),
                    );
                }
                Some(class.to_string())
            });
        let instances = match fields.value("instances") {
            Some(node) => self
                .integer(node, &format!("{at}.instances"), 1, 16)
                .map(|n| n as u32),
            None => Some(1),
        };
        let name = self.required(&fields, "name", "appdb").and_then(|node| {
            let name = self.string(node, &format!("{at}.name"))?;
            if !self.identifier(name, &format!("{at}.name"), node.span) {
                return None;
            }
            if ["postgres", "template0", "template1", "rdsadmin"].contains(&name) {
                self.error(
                    &format!("{at}.name"),
                    node.span,
                    format!("`{name}` is a database every cluster already has"),
                    Some("name the application's database, e.g. appdb".into()),
                );
                return None;
            }
            Some(name.to_string())
        });
        let master_username = self.required(&fields, "master_username", "postgres").and_then(|node| {
            let name = self.string(node, &format!("{at}.master_username"))?;
            if !self.identifier(name, &format!("{at}.master_username"), node.span) {
                return None;
            }
            if RESERVED_ROLE_NAMES.contains(&name) || name.starts_with("pg_") || name.starts_with("rds") || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                self.error(&format!("{at}.master_username"), node.span, format!("`{name}` cannot be the master user"), Some("RDS requires a name that starts with a letter and is not reserved; `postgres` is the usual choice".into()));
                return None;
            }
            Some(name.to_string())
        });
        let master_password = match fields.value("master_password") {
            None => Some(MasterPassword::Managed),
            Some(node) => self.master_password(node, at),
        };
        let connection = self.db_connection(&fields, at);
        let final_snapshot = match fields.value("final_snapshot") {
            Some(node) => self.boolean(node, &format!("{at}.final_snapshot")),
            None => Some(true),
        };
        let iam_auth_error_log = match fields.value("iam_auth_error_log") {
            Some(node) => self.boolean(node, &format!("{at}.iam_auth_error_log")),
            None => Some(true),
        };
        let subnets = match fields.value("subnets") {
            Some(node) => self.choice(
                node,
                &format!("{at}.subnets"),
                &[
                    ("private", DatabaseSubnets::Private),
                    ("public", DatabaseSubnets::Public),
                ],
            ),
            None => Some(DatabaseSubnets::Private),
        };
        let users = match fields.value("users") {
            None => Some(Vec::new()),
            Some(node) => self.users(node, at, key, master_username.as_deref()),
        };
        Some(Database {
            key: key.to_string(),
            path: at.to_string(),
            engine_version: engine_version?,
            instance_class: instance_class?,
            instances: instances?,
            name: name?,
            master_username: master_username?,
            master_password: master_password?,
            subnets: subnets?,
            final_snapshot: final_snapshot?,
            iam_auth_error_log: iam_auth_error_log?,
            connection: connection?,
            users: users?,
            existing: None,
        })
    }

    /// How pwless reaches the database (`ca_bundle`, `tls_server_name`, `admin_endpoint`,
    /// `admin_access`, `relay_image`), for a created or a referenced cluster alike.
    fn db_connection(&mut self, fields: &Fields<'_>, at: &str) -> Option<DbConnection> {
        let optional_text = |checker: &mut Checker, key: &str| match fields.value(key) {
            None => Some(None),
            Some(node) => checker
                .string(node, &fields.path(key))
                .map(|text| Some((text.to_string(), node.span))),
        };
        let ca_bundle = optional_text(self, "ca_bundle");
        let tls_server_name = optional_text(self, "tls_server_name");
        let admin_endpoint =
            optional_text(self, "admin_endpoint").and_then(|endpoint| match endpoint {
                Some((text, span)) => {
                    let valid = text.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
                    });
                    if !valid {
                        self.error(
                            &format!("{at}.admin_endpoint"),
                            span,
                            format!("`{}` is not host:port", text.escape_debug()),
                            Some("write the tunnel's local end, e.g. 127.0.0.1:15432".into()),
                        );
                        return None;
                    }
                    Some(Some((text, span)))
                }
                None => Some(None),
            });
        let admin_access = match fields.value("admin_access") {
            Some(node) => self.choice(
                node,
                &format!("{at}.admin_access"),
                &[
                    ("cluster", AdminAccess::Cluster),
                    ("endpoint", AdminAccess::Endpoint),
                ],
            ),
            // A tunnel of the user's own means the endpoint path.
            None => Some(match &admin_endpoint {
                Some(Some(_)) => AdminAccess::Endpoint,
                _ => AdminAccess::Cluster,
            }),
        };
        if let (Some(AdminAccess::Cluster), Some(Some((_, span)))) = (admin_access, &admin_endpoint)
        {
            self.error(
                &format!("{at}.admin_endpoint"),
                *span,
                "a tunnel's address means nothing with `admin_access: cluster`".to_string(),
                Some("write `admin_access: endpoint` to use this tunnel, or remove admin_endpoint to go through the EKS cluster".into()),
            );
        }
        let relay_image = optional_text(self, "relay_image").and_then(|image| match image {
            Some((text, span)) => {
                if text.is_empty() || text.chars().any(char::is_whitespace) {
                    self.error(
                        &format!("{at}.relay_image"),
                        span,
                        format!("`{}` is not an image reference", text.escape_debug()),
                        Some("write REGISTRY/REPOSITORY@sha256:DIGEST, e.g. a copy of pwless's HAProxy image in your own ECR".into()),
                    );
                    return None;
                }
                if !text.contains("@sha256:") {
                    self.warning(
                        &format!("{at}.relay_image"),
                        span,
                        format!("`{text}` is not pinned by digest"),
                        "pin it (`…@sha256:<digest>`), so the relay that reaches your database cannot change under you".into(),
                    );
                }
                Some(Some(text))
            }
            None => Some(None),
        });
        Some(DbConnection {
            admin_access: admin_access?,
            relay_image: relay_image?,
            ca_bundle: ca_bundle?.map(|(text, _)| text),
            admin_endpoint: admin_endpoint?.map(|(text, _)| text),
            tls_server_name: tls_server_name?.map(|(text, _)| text),
        })
    }

    /// `database.existing`: an Aurora cluster's identifier and the PostgreSQL database in it
    /// (the cluster is read at plan time, [`crate::ops::discover`]), beside the users and how
    /// pwless reaches it. It needs `network.existing` (a cluster that exists is in a VPC that
    /// exists), and no key that describes a cluster to create may sit beside it.
    fn existing_database(
        &mut self,
        fields: &Fields<'_>,
        node: &Node,
        at: &str,
        key: &str,
        network: Option<&Network>,
    ) -> Option<Database> {
        let mut beside = false;
        for key in CREATED_DATABASE_KEYS {
            if let Some((key_node, _)) = fields.entries.get(key) {
                let help = match *key {
                    "name" => "move it under `existing`: `existing: {cluster_identifier: ..., name: <the PostgreSQL database the users get their privileges in>}`".to_string(),
                    "final_snapshot" => "remove it: pwless never deletes a cluster it references, so it takes no final snapshot of one".to_string(),
                    "iam_auth_error_log" => "remove it: pwless never changes a cluster it references; export the `iam-db-auth-error` log yourself (`aws rds modify-db-cluster --db-cluster-identifier <the cluster> --cloudwatch-logs-export-configuration EnableLogTypes=iam-db-auth-error`) for `pwless doctor` to read it".to_string(),
                    _ => format!("remove `{key}`: pwless reads the cluster as it is"),
                };
                self.error(
                    &fields.path(key),
                    key_node.span,
                    format!("`{at}.{key}` describes a cluster to create, but `{at}.existing` names one that exists"),
                    Some(help),
                );
                beside = true;
            }
        }
        let existing = self.mapping(node, &format!("{at}.existing"), EXISTING_DATABASE_KEYS)?;
        let cluster_identifier = self
            .required(&existing, "cluster_identifier", "team-aurora")
            .and_then(|node| {
                let path = &format!("{at}.existing.cluster_identifier");
                let identifier = self.string(node, path)?;
                // "Must contain from 1 to 63 letters, numbers, or hyphens. First character must
                // be a letter. Can't end with a hyphen or contain two consecutive hyphens."
                // (RDS CreateDBCluster, `DBClusterIdentifier`)
                let valid = (1..=63).contains(&identifier.len())
                    && identifier.starts_with(|c: char| c.is_ascii_alphabetic())
                    && identifier
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !identifier.ends_with('-')
                    && !identifier.contains("--");
                if !valid {
                    let help = if identifier.starts_with("arn:") {
                        "write the cluster's identifier, not its ARN (the part after `:cluster:`)"
                    } else if identifier.starts_with("cluster-") {
                        "that looks like a cluster resource id; write the cluster's identifier (`aws rds describe-db-clusters --query 'DBClusters[].DBClusterIdentifier'`)"
                    } else {
                        "an Aurora cluster identifier is 1 to 63 letters, digits and hyphens, starting with a letter (`aws rds describe-db-clusters --query 'DBClusters[].DBClusterIdentifier'` lists yours)"
                    };
                    self.error(
                        path,
                        node.span,
                        format!("`{}` is not an Aurora cluster identifier", identifier.escape_debug()),
                        Some(help.into()),
                    );
                    return None;
                }
                Some(Reference {
                    // RDS keeps identifiers in lowercase.
                    id: identifier.to_ascii_lowercase(),
                    path: path.into(),
                    span: node.span,
                })
            });
        let name = self.required(&existing, "name", "appdb").and_then(|node| {
            let name = self.string(node, &format!("{at}.existing.name"))?;
            if !self.identifier(name, &format!("{at}.existing.name"), node.span) {
                return None;
            }
            if ["template0", "template1", "rdsadmin"].contains(&name) {
                self.error(
                    &format!("{at}.existing.name"),
                    node.span,
                    format!("`{name}` is not a database applications use"),
                    Some("name the application's database in the cluster".into()),
                );
                return None;
            }
            Some(name.to_string())
        });
        let enable_iam_auth = match existing.value("enable_iam_auth") {
            Some(node) => self.boolean(node, &format!("{at}.existing.enable_iam_auth")),
            None => Some(false),
        };
        let master_password = match fields.value("master_password") {
            None => Some(MasterPassword::Managed),
            Some(node) => self.master_password(node, at),
        };
        let connection = self.db_connection(fields, at);
        // The master user is known once the cluster is read; discovery refuses a user of its
        // name.
        let users = match fields.value("users") {
            None => Some(Vec::new()),
            Some(node) => self.users(node, at, key, None),
        };
        if let Some(network) = network
            && network.existing.is_none()
        {
            self.error(
                &format!("{at}.existing"),
                node.span,
                format!("`{at}.existing` needs `network.existing`: an Aurora cluster that exists is in a VPC that exists, not in one this stack creates"),
                Some("name the cluster's VPC and subnets under `network.existing`".into()),
            );
            return None;
        }
        let (cluster_identifier, name) = (cluster_identifier?, name?);
        if beside {
            return None;
        }
        Some(Database {
            key: key.to_string(),
            path: at.to_string(),
            engine_version: String::new(),
            instance_class: String::new(),
            instances: 0,
            name,
            master_username: String::new(),
            master_password: master_password?,
            subnets: DatabaseSubnets::Private,
            users: users?,
            final_snapshot: false,
            iam_auth_error_log: false,
            connection: connection?,
            existing: Some(ExistingDatabase {
                cluster_identifier,
                enable_iam_auth: enable_iam_auth?,
                read: None,
            }),
        })
    }

    fn master_password(&mut self, node: &Node, at: &str) -> Option<MasterPassword> {
        let path = &format!("{at}.master_password");
        let help = "use `managed` (RDS keeps it in Secrets Manager) or `{env: VAR_NAME}` (read at apply time, never stored)";
        match &node.kind {
            NodeKind::Scalar { value, .. } if value == "managed" => Some(MasterPassword::Managed),
            NodeKind::Scalar { .. } => {
                // Never echo the value: it may be a real password.
                self.secret_error(
                    path,
                    node.span,
                    "a password must never be written in the stack file",
                    Some(help.into()),
                );
                None
            }
            NodeKind::Mapping(_) => {
                let fields = self.mapping(node, path, &["env"])?;
                let variable_node = self.required(&fields, "env", "PWLESS_MASTER_PASSWORD")?;
                let variable = self.string(variable_node, &format!("{at}.master_password.env"))?;
                let valid = variable.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && variable
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    self.error(
                        &format!("{at}.master_password.env"),
                        variable_node.span,
                        format!("`{variable}` is not an environment variable name"),
                        Some(
                            "use letters, digits and underscores, e.g. PWLESS_MASTER_PASSWORD"
                                .into(),
                        ),
                    );
                    return None;
                }
                Some(MasterPassword::Env(variable.to_string()))
            }
            NodeKind::Sequence(_) => {
                self.error(
                    path,
                    node.span,
                    format!(
                        "expected `managed` or `{{env: VAR}}`, found {}",
                        node.describe()
                    ),
                    Some(help.into()),
                );
                None
            }
        }
    }

    /// A PostgreSQL role, database or schema name pwless accepts: lowercase, unquoted-safe.
    fn identifier(&mut self, name: &str, path: &str, span: SourceSpan) -> bool {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            self.error(
                path,
                span,
                format!("`{}` is not a valid PostgreSQL identifier here", name.escape_debug()),
                Some("use 1 to 63 lowercase letters, digits and underscores, starting with a letter or underscore".into()),
            );
        }
        valid
    }

    fn users(
        &mut self,
        node: &Node,
        at: &str,
        key: &str,
        master: Option<&str>,
    ) -> Option<Vec<DatabaseUser>> {
        let items = self.list(node, &format!("{at}.users"))?;
        let incomplete = !items.iter().all(|item| match &item.kind {
            NodeKind::Mapping(entries) => entries.iter().any(
                |(key, _)| matches!(&key.kind, NodeKind::Scalar { value, .. } if value == "name"),
            ),
            _ => false,
        });
        if incomplete {
            self.users_incomplete.insert(key.to_string());
        }
        self.declared_users.insert(
            key.to_string(),
            items
                .iter()
                .filter_map(|item| match &item.kind {
                    NodeKind::Mapping(entries) => {
                        entries
                            .iter()
                            .find_map(|(key, value)| match (&key.kind, &value.kind) {
                                (
                                    NodeKind::Scalar { value: key, .. },
                                    NodeKind::Scalar { value, .. },
                                ) if key == "name" => Some(value.clone()),
                                _ => None,
                            })
                    }
                    _ => None,
                })
                .collect(),
        );
        let mut users = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            let path = format!("{at}.users[{index}]");
            let Some(fields) = self.mapping(item, &path, USER_KEYS) else {
                ok = false;
                continue;
            };
            let name = self.required(&fields, "name", "app_user").and_then(|node| {
                let name_path = fields.path("name");
                let name = self.string(node, &name_path)?;
                if !self.identifier(name, &name_path, node.span) {
                    return None;
                }
                let reserved = Some(name) == master
                    || RESERVED_ROLE_NAMES.contains(&name)
                    || name.starts_with("pg_")
                    || name.starts_with("rds");
                if reserved {
                    let why = if Some(name) == master {
                        "it is the master user"
                    } else {
                        "the name is reserved by PostgreSQL or RDS"
                    };
                    self.error(
                        &name_path,
                        node.span,
                        format!("`{name}` cannot be a database user: {why}"),
                        Some(
                            "choose another name; names starting with pg_ or rds are reserved"
                                .into(),
                        ),
                    );
                    return None;
                }
                if let Some(first) = seen.insert(name.to_string(), index) {
                    self.error(
                        &name_path,
                        node.span,
                        format!(
                            "database user `{name}` is defined twice (first at {at}.users[{first}])"
                        ),
                        Some("merge the two entries".into()),
                    );
                    return None;
                }
                Some(name.to_string())
            });
            let schema = match fields.value("schema") {
                None => Some("public".to_string()),
                Some(node) => {
                    let schema_path = fields.path("schema");
                    self.string(node, &schema_path)
                        .filter(|schema| self.identifier(schema, &schema_path, node.span))
                        .map(str::to_string)
                }
            };
            let privileges = self
                .required(&fields, "privileges", "[connect, usage, select]")
                .and_then(|node| self.privileges(node, &fields.path("privileges")));
            match (name, schema, privileges) {
                (Some(name), Some(schema), Some(privileges)) => users.push(DatabaseUser {
                    name,
                    schema,
                    privileges,
                }),
                _ => ok = false,
            }
        }
        ok.then_some(users)
    }

    fn privileges(&mut self, node: &Node, path: &str) -> Option<Vec<Privilege>> {
        let items = self.list(node, path)?;
        let mut privileges = BTreeSet::new();
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{index}]");
            let Some(name) = self.string(item, &item_path) else {
                ok = false;
                continue;
            };
            match Privilege::from_name(&name.to_ascii_lowercase()) {
                Some(privilege) => {
                    if !privileges.insert(privilege) {
                        self.error(
                            &item_path,
                            item.span,
                            format!("privilege `{name}` is listed twice"),
                            Some("list each privilege once".into()),
                        );
                        ok = false;
                    }
                }
                None => {
                    let names = Privilege::ALL.map(Privilege::name);
                    let help = match did_you_mean(&name.to_ascii_lowercase(), names) {
                        Some(suggestion) => format!(
                            "did you mean `{suggestion}`? (one of: {})",
                            names.join(", ")
                        ),
                        None => format!("use some of: {}", names.join(", ")),
                    };
                    self.error(
                        &item_path,
                        item.span,
                        format!("unknown privilege `{}`", name.escape_debug()),
                        Some(help),
                    );
                    ok = false;
                }
            }
        }
        ok.then(|| privileges.into_iter().collect())
    }

    fn access(&mut self, node: &Node) -> Option<Vec<Access>> {
        let items = self.list(node, "access")?;
        let databases = self.declared_databases.clone();
        let mut entries: Vec<Access> = Vec::new();
        // The index in `access` of each of `entries`.
        let mut indices: Vec<usize> = Vec::new();
        let mut seen: HashMap<(String, String, String), usize> = HashMap::new();
        let mut ok = true;
        for (index, item) in items.iter().enumerate() {
            let path = format!("access[{index}]");
            let Some(fields) = self.mapping(item, &path, ACCESS_KEYS) else {
                ok = false;
                continue;
            };
            let namespace = self
                .required(&fields, "namespace", "demo")
                .and_then(|node| self.namespace(node, &fields.path("namespace")));
            let service_account = self
                .required(&fields, "service_account", "demo-app")
                .and_then(|node| self.dns_subdomain(node, &fields.path("service_account")));
            let database = self.access_database(&fields, &databases, &path);
            let db_user = self
                .required(&fields, "db_user", "app_user")
                .and_then(|node| {
                    let user_path = fields.path("db_user");
                    let user = self.string(node, &user_path)?;
                    // Checked against its database's users once that is known.
                    let database = database.clone()?;
                    let at = self.database_path(&database);
                    let declared = self.declared_users.get(&database);
                    let users: Vec<&str> = declared
                        .iter()
                        .flat_map(|users| users.iter().map(String::as_str))
                        .collect();
                    if users.contains(&user) {
                        return Some(user.to_string());
                    }
                    if self.users_incomplete.contains(&database) {
                        return None;
                    }
                    let help = match did_you_mean(user, users.iter().copied()) {
                        Some(suggestion) => format!("did you mean `{suggestion}`?"),
                        None if users.is_empty() => format!("define it under {at}.users first"),
                        None => format!("defined users: {}", users.join(", ")),
                    };
                    self.error(
                        &user_path,
                        node.span,
                        format!(
                            "`{}` is not a user defined in {at}.users",
                            user.escape_debug()
                        ),
                        Some(help),
                    );
                    None
                });
            let identity = match fields.value("identity") {
                Some(node) => self.choice(node, &fields.path("identity"), &Identity::NAMES),
                None => Some(Identity::Irsa),
            };
            let (
                Some(namespace),
                Some(service_account),
                Some(database),
                Some(db_user),
                Some(identity),
            ) = (namespace, service_account, database, db_user, identity)
            else {
                ok = false;
                continue;
            };
            let key = (namespace.clone(), service_account.clone(), database.clone());
            if let Some(first) = seen.insert(key, index) {
                let (message, help) = if databases.len() == 1 {
                    (
                        format!(
                            "service account {namespace}/{service_account} appears twice in access (first at access[{first}])"
                        ),
                        "a service account gets one IAM role and logs in as one database user; remove one entry",
                    )
                } else {
                    (
                        format!(
                            "service account {namespace}/{service_account} has two entries for database `{database}` (first at access[{first}])"
                        ),
                        "a service account logs in to each database as one database user; remove one entry",
                    )
                };
                self.error(&path, item.span, message, Some(help.into()));
                ok = false;
                continue;
            }
            // One role per service account: its entries for several databases share it, and so
            // how its pods get that role's credentials.
            if let Some(first) = entries.iter().position(|entry| {
                entry.namespace == namespace
                    && entry.service_account == service_account
                    && entry.identity != identity
            }) {
                self.error(
                    &fields.path("identity"),
                    fields.value("identity").map_or(item.span, |node| node.span),
                    format!(
                        "service account {namespace}/{service_account} has identity `{}` here and `{}` at access[{}]",
                        identity.name(),
                        entries[first].identity.name(),
                        indices[first]
                    ),
                    Some("a service account has one IAM role, for all its databases: give its entries the same `identity`".into()),
                );
                ok = false;
                continue;
            }
            entries.push(Access {
                namespace,
                service_account,
                database,
                db_user,
                identity,
            });
            indices.push(index);
        }
        ok.then_some(entries)
    }

    /// `access[i].database`: the logical name of a declared database; optional when the stack
    /// has one.
    fn access_database(
        &mut self,
        fields: &Fields<'_>,
        databases: &[String],
        path: &str,
    ) -> Option<String> {
        match fields.value("database") {
            Some(node) => {
                let database_path = fields.path("database");
                let name = self.string(node, &database_path)?;
                if databases.iter().any(|known| known == name) {
                    return Some(name.to_string());
                }
                if databases.is_empty() {
                    // The databases have errors of their own.
                    return None;
                }
                let help = match did_you_mean(name, databases.iter().map(String::as_str)) {
                    Some(suggestion) => format!("did you mean `{suggestion}`?"),
                    None => format!("the stack's databases: {}", databases.join(", ")),
                };
                self.error(
                    &database_path,
                    node.span,
                    format!("`{}` is not a database of the stack", name.escape_debug()),
                    Some(help),
                );
                None
            }
            None => match databases {
                [only] => Some(only.clone()),
                [] => None,
                _ => {
                    self.error(
                        path,
                        fields.span,
                        format!("`{path}` does not say which database it logs in to, and the stack has several"),
                        Some(format!("add `database: <name>`, one of: {}", databases.join(", "))),
                    );
                    None
                }
            },
        }
    }

    fn dns_label(&mut self, node: &Node, path: &str) -> Option<String> {
        let name = self.string(node, path)?;
        if is_dns_label(name) {
            Some(name.to_string())
        } else {
            self.error(path, node.span, format!("`{}` is not a valid Kubernetes name (DNS-1123 label)", name.escape_debug()), Some("use at most 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit".into()));
            None
        }
    }

    /// A namespace pwless creates, and deletes on destroy: never `default` or one of the
    /// `kube-` prefix, which Kubernetes reserves for itself (and whose deletion it refuses).
    fn namespace(&mut self, node: &Node, path: &str) -> Option<String> {
        let name = self.dns_label(node, path)?;
        if name == "default" || name.starts_with("kube-") {
            self.error(
                path,
                node.span,
                format!("namespace `{name}` belongs to Kubernetes; pwless creates its namespaces and deletes them on destroy"),
                Some("use a namespace of your own, e.g. the application's name".into()),
            );
            return None;
        }
        Some(name)
    }

    fn dns_subdomain(&mut self, node: &Node, path: &str) -> Option<String> {
        let name = self.string(node, path)?;
        if name.len() <= 253 && name.split('.').all(is_dns_label) {
            Some(name.to_string())
        } else {
            self.error(path, node.span, format!("`{}` is not a valid Kubernetes name (DNS-1123 subdomain)", name.escape_debug()), Some("use lowercase letters, digits, hyphens and dots, starting and ending with a letter or digit".into()));
            None
        }
    }

    fn app(&mut self, node: &Node, access: Option<&[Access]>) -> Option<App> {
        let fields = self.mapping(node, "app", APP_KEYS)?;
        let namespace = self
            .required(&fields, "namespace", "demo")
            .and_then(|node| self.namespace(node, "app.namespace"));
        let service_account_node = self.required(&fields, "service_account", "demo-app");
        let service_account =
            service_account_node.and_then(|node| self.dns_subdomain(node, "app.service_account"));
        let image = self
            .required(&fields, "image", "ghcr.io/example/pwless-demo:0.1.0")
            .and_then(|node| {
                let image = self.string(node, "app.image")?;
                let valid = !image.is_empty()
                    && image.len() <= 512
                    && !image.starts_with('-')
                    && image.chars().all(|c| c.is_ascii_graphic());
                if !valid {
                    self.error(
                        "app.image",
                        node.span,
                        format!(
                            "`{}` is not a container image reference",
                            image.escape_debug()
                        ),
                        Some("write it like ghcr.io/example/pwless-demo:0.1.0".into()),
                    );
                    return None;
                }
                Some(image.to_string())
            });
        let replicas = match fields.value("replicas") {
            Some(node) => self.integer(node, "app.replicas", 0, 100).map(|n| n as u32),
            None => Some(2),
        };
        let port = match fields.value("port") {
            Some(node) => self.integer(node, "app.port", 1, 65535).and_then(|port| {
                if port < 1024 {
                    self.error(
                        "app.port",
                        node.span,
                        format!("port {port} needs root, and the demo app runs as a non-root user"),
                        Some(
                            "use a port from 1024 up, e.g. 8080 (the Service still listens on 80)"
                                .into(),
                        ),
                    );
                    return None;
                }
                u16::try_from(port).ok()
            }),
            None => Some(8080),
        };
        let (namespace, service_account) = (namespace?, service_account?);
        let entries: Vec<&Access> = access
            .unwrap_or_default()
            .iter()
            .filter(|entry| {
                entry.namespace == namespace && entry.service_account == service_account
            })
            .collect();
        if access.is_some() && entries.is_empty() {
            self.error(
                "app.service_account",
                service_account_node.map(|node| node.span).unwrap_or(fields.span),
                format!("the app runs as {namespace}/{service_account}, which has no `access` entry, so it could not log in to the database"),
                Some(format!(
                    "add `- {{namespace: {namespace}, service_account: {service_account}, {}db_user: <user>}}` under `access`",
                    if self.declared_databases.len() > 1 { "database: <name>, " } else { "" }
                )),
            );
            return None;
        }
        // The app uses one database: its service account's, or the one it names when its
        // service account may log in to several.
        let database = match fields.value("database") {
            Some(node) => {
                let name = self.string(node, "app.database")?;
                if access.is_some() && !entries.iter().any(|entry| entry.database == name) {
                    let theirs: Vec<&str> = entries
                        .iter()
                        .map(|entry| entry.database.as_str())
                        .collect();
                    self.error(
                        "app.database",
                        node.span,
                        format!("the app runs as {namespace}/{service_account}, which has no `access` entry for database `{}`", name.escape_debug()),
                        Some(format!("name one of its databases ({}), or add an `access` entry for it", theirs.join(", "))),
                    );
                    return None;
                }
                name.to_string()
            }
            None => match entries.as_slice() {
                [entry] => entry.database.clone(),
                [] => return None,
                several => {
                    let theirs: Vec<&str> = several
                        .iter()
                        .map(|entry| entry.database.as_str())
                        .collect();
                    self.error(
                        "app",
                        fields.span,
                        format!("the app's service account {namespace}/{service_account} may log in to several databases ({}), and the app uses one", theirs.join(", ")),
                        Some("say which with `database: <name>` under `app`".into()),
                    );
                    return None;
                }
            },
        };
        Some(App {
            namespace,
            service_account,
            database,
            image: image?,
            replicas: replicas?,
            port: port?,
        })
    }

    fn state(&mut self, node: &Node) -> Option<StateBackend> {
        // The backend decides which keys belong: look it up before checking the others.
        let backend_node = match &node.kind {
            NodeKind::Mapping(entries) => entries
                .iter()
                .find(|(key, _)| {
                    matches!(&key.kind, NodeKind::Scalar { value, .. } if value == "backend")
                })
                .map(|(_, value)| value)
                .filter(|value| !value.is_null()),
            _ => None,
        };
        #[derive(Clone, Copy)]
        enum Kind {
            Local,
            S3,
            Postgres,
        }
        let kind = match backend_node {
            Some(value) => self.choice(
                value,
                "state.backend",
                &[
                    ("local", Kind::Local),
                    ("s3", Kind::S3),
                    ("postgres", Kind::Postgres),
                ],
            )?,
            None => Kind::Local,
        };
        let allowed = match kind {
            Kind::Local => STATE_LOCAL_KEYS,
            Kind::S3 => STATE_S3_KEYS,
            Kind::Postgres => STATE_POSTGRES_KEYS,
        };
        let fields = self.mapping(node, "state", allowed)?;
        match kind {
            Kind::Local => {
                let path = match fields.value("path") {
                    Some(node) => {
                        let path = self.string(node, "state.path")?;
                        if path.is_empty() || path.ends_with('/') {
                            self.error(
                                "state.path",
                                node.span,
                                "`state.path` must name a file",
                                Some(
                                    "write it like state/prod.json (relative to the stack file)"
                                        .into(),
                                ),
                            );
                            return None;
                        }
                        Some(path.to_string())
                    }
                    None => None,
                };
                Some(StateBackend::Local { path })
            }
            Kind::S3 => {
                let bucket = self
                    .required(&fields, "bucket", "acme-pwless-state")
                    .and_then(|node| {
                        let bucket = self.string(node, "state.bucket")?;
                        if is_bucket_name(bucket) {
                            Some(bucket.to_string())
                        } else {
                            self.error(
                                "state.bucket",
                                node.span,
                                format!("`{}` is not an S3 bucket name", bucket.escape_debug()),
                                Some("use 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit (just the name: no s3:// and no key)".into()),
                            );
                            None
                        }
                    });
                let key = self
                    .required(&fields, "key", "prod/iam-postgres.json")
                    .and_then(|node| {
                        let key = self.string(node, "state.key")?;
                        let valid = !key.is_empty()
                            && key.len() <= 1000
                            && !key.starts_with('/')
                            && !key.ends_with('/')
                            && !key.chars().any(char::is_control);
                        if !valid {
                            self.error(
                                "state.key",
                                node.span,
                                format!("`{}` is not a usable object key", key.escape_debug()),
                                Some("write a path without a leading or trailing slash, e.g. prod/iam-postgres.json; the lock lives beside it as <key>.lock".into()),
                            );
                            return None;
                        }
                        Some(key.to_string())
                    });
                let region = match fields.value("region") {
                    Some(node) => {
                        let region = self.string(node, "state.region")?;
                        if !is_region(region) {
                            self.error(
                                "state.region",
                                node.span,
                                format!("`{region}` is not an AWS region name"),
                                Some("write the bucket's region, like us-east-1; leave it out when it is the stack's".into()),
                            );
                            return None;
                        }
                        Some(region.to_string())
                    }
                    None => None,
                };
                let lock_lease_seconds = match fields.value("lock_lease_seconds") {
                    Some(node) => self
                        .integer(node, "state.lock_lease_seconds", 5, 3600)
                        .map(|seconds| seconds as u32),
                    None => Some(StateBackend::DEFAULT_LEASE_SECONDS),
                };
                let kms_key_id = match fields.value("kms_key_id") {
                    Some(node) => {
                        let id = self.string(node, "state.kms_key_id")?;
                        if id.is_empty() {
                            self.error(
                                "state.kms_key_id",
                                node.span,
                                "`state.kms_key_id` is empty",
                                Some("name a KMS key (id, ARN or alias/...), or leave the key out for SSE-S3".into()),
                            );
                            return None;
                        }
                        Some(id.to_string())
                    }
                    None => None,
                };
                Some(StateBackend::S3 {
                    bucket: bucket?,
                    key: key?,
                    region,
                    lock_lease_seconds: lock_lease_seconds?,
                    kms_key_id,
                })
            }
            Kind::Postgres => {
                let url_env = self
                    .required(&fields, "url_env", "PWLESS_STATE_DATABASE_URL")
                    .and_then(|node| {
                        let variable = self.string(node, "state.url_env")?;
                        if variable.contains("://") || variable.contains('=') || variable.contains('@') {
                            // Never echo it: it may hold a password.
                            self.secret_error(
                                "state.url_env",
                                node.span,
                                "`state.url_env` names an environment variable; this looks like a connection URL, which must never be written in the stack file",
                                Some("put the URL in an environment variable and name that here, e.g. `url_env: PWLESS_STATE_DATABASE_URL`".into()),
                            );
                            return None;
                        }
                        let valid = variable
                            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                            && variable.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        if !valid {
                            self.error(
                                "state.url_env",
                                node.span,
                                format!("`{}` is not an environment variable name", variable.escape_debug()),
                                Some("use letters, digits and underscores, e.g. PWLESS_STATE_DATABASE_URL".into()),
                            );
                            return None;
                        }
                        Some(variable.to_string())
                    });
                let table = match fields.value("table") {
                    Some(node) => {
                        let table = self.string(node, "state.table")?;
                        if !self.identifier(table, "state.table", node.span) {
                            return None;
                        }
                        if table.len() > 57 {
                            self.error(
                                "state.table",
                                node.span,
                                format!("`{table}` is too long: its lock table `{table}_locks` would pass PostgreSQL's 63 characters"),
                                Some("use at most 57 characters".into()),
                            );
                            return None;
                        }
                        Some(table.to_string())
                    }
                    None => Some(StateBackend::DEFAULT_TABLE.to_string()),
                };
                Some(StateBackend::Postgres {
                    url_env: url_env?,
                    table: table?,
                })
            }
        }
    }
}

/// S3's rules for general purpose buckets (no IP addresses, no `xn--` prefix).
fn is_bucket_name(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !name.contains("..")
        && !name.starts_with("xn--")
        && name.parse::<std::net::Ipv4Addr>().is_err()
}

fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && parts.len() <= 4
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && parts[parts.len() - 1].len() <= 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase()))
}

pub(crate) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `arn:<partition>:iam::<12 digits>:role/<path/>name` or `...:user/...`, no wildcards.
fn is_principal_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let name_ok = |name: &str| {
        !name.is_empty()
            && name.len() <= 512
            && name.chars().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, '+' | '=' | ',' | '.' | '@' | '_' | '-' | '/')
            })
            && !name.ends_with('/')
    };
    matches!(partition, "aws" | "aws-cn" | "aws-us-gov")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (resource
            .strip_prefix("role/")
            .or_else(|| resource.strip_prefix("user/"))
            .is_some_and(name_ok))
}
