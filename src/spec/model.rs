//! The validated stack: every value checked, every default filled in. Nothing here can be
//! wrong in a way the validator could have caught.

use std::collections::BTreeMap;

use super::cidr::Ipv4Cidr;

#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    /// Names and tags every resource.
    pub name: String,
    pub region: String,
    pub tags: BTreeMap<String, String>,
    pub network: Network,
    pub cluster: Cluster,
    /// The stack's databases, in the stack file's order, each under its logical name
    /// ([`Database::key`]); `database:` is the one-database shorthand for `databases: {main:
    /// ...}`. Never empty.
    pub databases: Vec<Database>,
    pub access: Vec<Access>,
    pub app: Option<App>,
    /// Where the state lives (the `state:` section); the local file by default.
    pub state: StateBackend,
}

/// The logical name of the database `database:` declares (the one-database shorthand): its
/// resources keep the addresses a one-database stack always had (`aws_rds_cluster.main`,
/// `postgresql_role.user[<user>]`).
pub const MAIN_DATABASE: &str = "main";

impl Stack {
    /// The database of logical name `key`.
    pub fn database(&self, key: &str) -> Option<&Database> {
        self.databases.iter().find(|database| database.key == key)
    }

    /// The database of logical name `key`, to record what discovery read of it.
    pub fn database_mut(&mut self, key: &str) -> Option<&mut Database> {
        self.databases
            .iter_mut()
            .find(|database| database.key == key)
    }

    /// The database the caller means: the one named, or the only one when none is named.
    ///
    /// # Errors
    /// The message names the databases to choose from: when none is named and the stack has
    /// several, or when the named one is not the stack's.
    pub fn chosen_database(&self, key: Option<&str>) -> Result<&Database, String> {
        let keys = || {
            self.databases
                .iter()
                .map(|database| database.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match key {
            Some(key) => self.database(key).ok_or_else(|| {
                format!(
                    "the stack has no database `{key}`; its databases are: {}",
                    keys()
                )
            }),
            None => match self.databases.as_slice() {
                [only] => Ok(only),
                _ => Err(format!(
                    "the stack has several databases ({}); say which with --database",
                    keys()
                )),
            },
        }
    }

    /// The region's partition (`aws`, `aws-cn` or `aws-us-gov`): every ARN, service
    /// principal and address of the stack follows it.
    pub fn partition(&self) -> crate::partition::Partition {
        crate::partition::Partition::of_region(&self.region)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatGateways {
    None,
    Single,
    PerAz,
}

impl NatGateways {
    pub const NAMES: [&'static str; 3] = ["none", "single", "per_az"];
}

/// The stack's network. For a network pwless creates, every fact comes from the stack file.
/// For a referenced one (`network.existing`), pwless creates no network resource, and the
/// facts are the ones [`crate::ops::discover`] read through the EC2 API: until then `cidr`
/// is `0.0.0.0/0` and the lists are empty, and the graph refuses to expand
/// ([`crate::graph::GraphError::Unread`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// The VPC's (primary) IPv4 block.
    pub cidr: Ipv4Cidr,
    /// Availability zone names: of each subnet pair for a created network, of each private
    /// subnet for a referenced one.
    pub availability_zones: Vec<String>,
    pub nat_gateways: NatGateways,
    /// One per availability zone, in order (a referenced network: one per public subnet id).
    pub public_subnets: Vec<Ipv4Cidr>,
    /// One per availability zone, in order (a referenced network: one per private subnet id).
    pub private_subnets: Vec<Ipv4Cidr>,
    /// The existing VPC and subnets the stack uses instead of creating its own.
    pub existing: Option<ExistingNetwork>,
}

impl Network {
    /// Whether the facts are known: always for a created network, after discovery for a
    /// referenced one.
    pub fn is_known(&self) -> bool {
        self.existing
            .as_ref()
            .is_none_or(|existing| existing.read.is_some())
    }

    /// What discovery read of a referenced network; `None` for a network the stack creates,
    /// or before discovery.
    pub fn read(&self) -> Option<&ReadNetwork> {
        self.existing.as_ref().and_then(ExistingNetwork::read)
    }

    /// Records what discovery read of a referenced network, and takes the network's facts
    /// from it: the VPC's block, the private subnets' zones and blocks, the public subnets'
    /// blocks. The one way to set them (nothing else can leave the two apart). Does nothing
    /// for a network the stack creates.
    pub fn record_read(&mut self, read: ReadNetwork) {
        let Some(existing) = &mut self.existing else {
            return;
        };
        self.cidr = read.cidr;
        self.availability_zones = read
            .private
            .iter()
            .map(|subnet| subnet.availability_zone.clone())
            .collect();
        self.private_subnets = read.private.iter().map(|subnet| subnet.cidr).collect();
        self.public_subnets = read.public.iter().map(|subnet| subnet.cidr).collect();
        existing.read = Some(read);
    }
}

impl ExistingNetwork {
    /// What discovery read; `None` before it ran.
    pub fn read(&self) -> Option<&ReadNetwork> {
        self.read.as_ref()
    }
}

impl Cluster {
    /// What discovery read of a referenced cluster; `None` for a cluster the stack creates,
    /// or before discovery.
    pub fn read(&self) -> Option<&ReadCluster> {
        self.existing.as_ref().and_then(ExistingCluster::read)
    }

    /// Whether the cluster's facts are known: always for a created cluster, after discovery
    /// for a referenced one.
    pub fn is_known(&self) -> bool {
        self.existing.is_none() || self.read().is_some()
    }

    /// Records what discovery read of a referenced cluster (its version becomes the
    /// cluster's). Does nothing for a cluster the stack creates.
    pub fn record_read(&mut self, read: ReadCluster) {
        let Some(existing) = &mut self.existing else {
            return;
        };
        self.version = read.version.clone();
        existing.read = Some(read);
    }
}

impl ExistingCluster {
    /// What discovery read; `None` before it ran.
    pub fn read(&self) -> Option<&ReadCluster> {
        self.read.as_ref()
    }
}

/// An id the stack file names, with its place in the file (for the diagnostics of what
/// discovery finds wrong with it).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub id: String,
    /// The key path (`network.existing.vpc_id`).
    pub path: String,
    pub span: super::yaml::SourceSpan,
}

/// `network.existing`: a VPC and subnets pwless reads but never changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingNetwork {
    pub vpc_id: Reference,
    /// At least two, in at least two availability zones: the EKS nodes, the cluster's
    /// network interfaces and the database go there.
    pub private_subnet_ids: Vec<Reference>,
    /// Optional: the demo app's load balancer and `database.subnets: public` need them.
    pub public_subnet_ids: Vec<Reference>,
    /// What discovery read ([`Network::record_read`] sets it).
    pub(super) read: Option<ReadNetwork>,
}

/// The facts of a referenced network, as the EC2 API gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadNetwork {
    pub vpc_id: String,
    pub cidr: Ipv4Cidr,
    pub private: Vec<ReadSubnet>,
    pub public: Vec<ReadSubnet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReadSubnet {
    pub id: String,
    pub availability_zone: String,
    pub cidr: Ipv4Cidr,
}

/// The stack's EKS cluster. For a referenced one (`cluster.existing`), pwless creates no
/// cluster, node group, cluster or node role, nor access entries: `version` is the one read
/// (empty until discovery), `node_group` and `endpoint_public_access` are unused.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub version: String,
    pub node_group: NodeGroup,
    /// The Kubernetes service CIDR, if set (EKS picks one otherwise).
    pub service_cidr: Option<Ipv4Cidr>,
    pub endpoint_public_access: bool,
    /// IAM principal ARNs with cluster-admin through EKS access entries.
    pub admins: Vec<String>,
    /// The existing EKS cluster the stack uses instead of creating its own.
    pub existing: Option<ExistingCluster>,
}

/// `cluster.existing`: an EKS cluster pwless reads but never changes.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingCluster {
    pub name: Reference,
    /// What discovery read ([`Cluster::record_read`] sets it).
    pub(super) read: Option<ReadCluster>,
}

/// The facts of a referenced EKS cluster, as `DescribeCluster` and IAM gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadCluster {
    pub name: String,
    pub arn: String,
    /// The Kubernetes API server's URL.
    pub endpoint: String,
    /// `https://oidc.eks.<region>.amazonaws.com/id/<ID>`.
    pub oidc_issuer: String,
    pub vpc_id: String,
    pub version: String,
    /// The IAM OIDC provider for the issuer when one exists that is not this stack's: IRSA
    /// roles trust it as it is. `None`: the stack manages one (it creates it, or it made it
    /// before: its `pwless:stack` and `pwless:address` tags say so).
    pub oidc_provider_arn: Option<String>,
    /// Whether the Pod Identity Agent add-on is installed and not this stack's: then the stack
    /// uses it as it is, and does not manage one.
    pub pod_identity_agent: bool,
}

impl Stack {
    /// Whether every referenced resource was read ([`crate::ops::discover`]); always true for
    /// a stack that references nothing.
    pub fn is_known(&self) -> bool {
        self.network.is_known()
            && self.cluster.is_known()
            && self.databases.iter().all(Database::is_known)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeGroup {
    pub instance_types: Vec<String>,
    pub min_size: u32,
    pub desired_size: u32,
    pub max_size: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum MasterPassword {
    /// RDS keeps it in Secrets Manager (`ManageMasterUserPassword`); it never passes through pwless.
    Managed,
    /// Read from this environment variable at apply time; never stored.
    Env(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseSubnets {
    Private,
    Public,
}

/// The stack's database: an Aurora PostgreSQL cluster pwless creates, or, with `existing`, one
/// it references (`database.existing`), where it manages the users and their privileges only.
/// For a referenced cluster `name` is the PostgreSQL database the users get their privileges
/// in, `engine_version` and `master_username` are the ones read (empty until discovery), and
/// `instance_class`, `instances`, `subnets`, `final_snapshot` and `iam_auth_error_log` are
/// unused.
#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    /// The logical name: a key of `databases`, or [`MAIN_DATABASE`] for `database:`. It names
    /// the database's resources ([`crate::graph::address`]) and its created cluster
    /// ([`crate::spec::names::rds_cluster`]).
    pub key: String,
    /// Where it is declared in the stack file: `database` (the shorthand) or
    /// `databases.<key>`; diagnostics and fixes name its keys under it.
    pub path: String,
    pub engine_version: String,
    pub instance_class: String,
    pub instances: u32,
    /// The database created in the cluster (a referenced cluster: the database the users
    /// get their privileges in).
    pub name: String,
    pub master_username: String,
    pub master_password: MasterPassword,
    pub subnets: DatabaseSubnets,
    pub users: Vec<DatabaseUser>,
    /// Whether destroying the cluster first takes a final snapshot (the default: destroy
    /// removes the cluster, not the only copy of the data).
    pub final_snapshot: bool,
    /// Whether the cluster exports its IAM database authentication error log
    /// (`iam-db-auth-error`) to CloudWatch Logs, where `pwless doctor` reads why RDS refused a
    /// token [default: on].
    pub iam_auth_error_log: bool,
    /// How pwless reaches the database to manage users; not part of any resource.
    pub connection: DbConnection,
    /// The existing Aurora cluster the stack uses instead of creating its own.
    pub existing: Option<ExistingDatabase>,
}

impl Database {
    /// Whether this is the one-database shorthand's database ([`MAIN_DATABASE`]).
    pub fn is_main(&self) -> bool {
        self.key == MAIN_DATABASE
    }

    /// What discovery read of a referenced cluster; `None` for a cluster the stack creates, or
    /// before discovery.
    pub fn read(&self) -> Option<&ReadDatabase> {
        self.existing
            .as_ref()
            .and_then(|existing| existing.read.as_ref())
    }

    /// Whether the cluster's facts are known: always for a created cluster, after discovery
    /// for a referenced one.
    pub fn is_known(&self) -> bool {
        self.existing.is_none() || self.read().is_some()
    }

    /// Records what discovery read of a referenced cluster: its engine version and master
    /// user become the database's. Does nothing for a cluster the stack creates.
    pub fn record_read(&mut self, read: ReadDatabase) {
        let Some(existing) = &mut self.existing else {
            return;
        };
        self.engine_version = read.engine_version.clone();
        self.master_username = read.master_username.clone();
        existing.read = Some(read);
    }
}

/// `database.existing`: an Aurora PostgreSQL cluster pwless reads but never changes; the users
/// go in its database `name` ([`Database::name`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingDatabase {
    /// `database.existing.cluster_identifier`.
    pub cluster_identifier: Reference,
    /// `database.existing.enable_iam_auth`: the stack may turn IAM database authentication on
    /// in the cluster (in place, never off again) [default: false: a cluster with it off is
    /// refused].
    pub enable_iam_auth: bool,
    /// What discovery read ([`Database::record_read`] sets it).
    pub(super) read: Option<ReadDatabase>,
}

/// The facts of a referenced Aurora cluster, as `DescribeDBClusters` and
/// `DescribeDBSubnetGroups` gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadDatabase {
    pub cluster_identifier: String,
    pub arn: String,
    /// The writer endpoint (a DNS name) and its port.
    pub endpoint: String,
    pub port: u16,
    pub reader_endpoint: Option<String>,
    /// `cluster-<ID>`: what `rds-db:connect` policies name
    /// (<https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/UsingWithRDS.IAMDBAuth.IAMPolicy.html>).
    pub cluster_resource_id: String,
    pub engine_version: String,
    /// The VPC of its DB subnet group.
    pub vpc_id: String,
    pub master_username: String,
    /// The Secrets Manager secret RDS keeps the master password in, when it manages it.
    pub master_secret_arn: Option<String>,
    /// Whether IAM database authentication was on when read.
    pub iam_auth: bool,
}

/// Apply-time settings for pwless's own database connection. The environment overrides each
/// (`PWLESS_DB_CA_BUNDLE`, `PWLESS_DB_ADMIN_ENDPOINT`, `PWLESS_DB_TLS_SERVER_NAME`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DbConnection {
    /// The path to the database for user management [default: `cluster`].
    pub admin_access: AdminAccess,
    /// The relay's image, when not pwless's pinned HAProxy ([`crate::relay::IMAGE`]): a
    /// mirror in the user's own registry, for nodes that cannot reach ECR Public.
    pub relay_image: Option<String>,
    /// The CA bundle the server certificate must chain to [default: `global-bundle.pem`, the
    /// RDS global bundle, beside the stack file].
    pub ca_bundle: Option<String>,
    /// `host:port` of a tunnel to the cluster (it usually sits in private subnets).
    pub admin_endpoint: Option<String>,
    /// The name the certificate must carry [default: the cluster endpoint].
    pub tls_server_name: Option<String>,
}

/// How pwless reaches the Aurora cluster to manage users and grants (`database.admin_access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminAccess {
    /// Through the stack's EKS cluster: a relay pod pwless runs there, reached through the
    /// Kubernetes API's pod port-forward. Needs no network path from where pwless runs.
    #[default]
    Cluster,
    /// Straight to the cluster endpoint, or to `admin_endpoint` (a tunnel of the user's own).
    Endpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Privilege {
    Connect,
    Temporary,
    Usage,
    Create,
    Select,
    Insert,
    Update,
    Delete,
    Truncate,
    References,
    Trigger,
}

/// What a privilege is granted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivilegeTarget {
    Database,
    Schema,
    Tables,
}

impl Privilege {
    pub const ALL: [Privilege; 11] = [
        Privilege::Connect,
        Privilege::Temporary,
        Privilege::Usage,
        Privilege::Create,
        Privilege::Select,
        Privilege::Insert,
        Privilege::Update,
        Privilege::Delete,
        Privilege::Truncate,
        Privilege::References,
        Privilege::Trigger,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Privilege::Connect => "connect",
            Privilege::Temporary => "temporary",
            Privilege::Usage => "usage",
            Privilege::Create => "create",
            Privilege::Select => "select",
            Privilege::Insert => "insert",
            Privilege::Update => "update",
            Privilege::Delete => "delete",
            Privilege::Truncate => "truncate",
            Privilege::References => "references",
            Privilege::Trigger => "trigger",
        }
    }

    pub fn from_name(name: &str) -> Option<Privilege> {
        Privilege::ALL
            .into_iter()
            .find(|privilege| privilege.name() == name)
    }

    pub fn target(self) -> PrivilegeTarget {
        match self {
            Privilege::Connect | Privilege::Temporary => PrivilegeTarget::Database,
            Privilege::Usage | Privilege::Create => PrivilegeTarget::Schema,
            _ => PrivilegeTarget::Tables,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseUser {
    pub name: String,
    /// The schema its schema and table privileges apply to.
    pub schema: String,
    /// Sorted, without duplicates.
    pub privileges: Vec<Privilege>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub namespace: String,
    pub service_account: String,
    /// The logical name of the database ([`Database::key`]) whose user it logs in as.
    pub database: String,
    pub db_user: String,
    pub identity: Identity,
}

/// How a service account's pods get their IAM role's credentials (`irsa` or `pod_identity`
/// in the stack file and in the JSON plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Identity {
    /// IAM roles for service accounts: the service account's annotation names the role, the
    /// pod trades its projected token with STS `AssumeRoleWithWebIdentity` through the
    /// cluster's OIDC provider
    /// (<https://docs.aws.amazon.com/eks/latest/userguide/iam-roles-for-service-accounts.html>).
    #[default]
    Irsa,
    /// EKS Pod Identity: an association (cluster, namespace, service account, role) and the Pod
    /// Identity Agent add-on; the role trusts `pods.eks.amazonaws.com`
    /// (<https://docs.aws.amazon.com/eks/latest/userguide/pod-identities.html>).
    PodIdentity,
}

impl Identity {
    pub const NAMES: [(&'static str, Identity); 2] = [
        ("irsa", Identity::Irsa),
        ("pod_identity", Identity::PodIdentity),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Identity::Irsa => "irsa",
            Identity::PodIdentity => "pod_identity",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub namespace: String,
    pub service_account: String,
    /// The logical name of the database the app uses (its service account's access entry's).
    pub database: String,
    pub image: String,
    pub replicas: u32,
    pub port: u16,
}

/// Where a stack's state lives. Saved in plan files, so a saved plan applies against the
/// state it was made from: it holds names only (a bucket, an environment variable), never a
/// URL or a secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum StateBackend {
    /// A JSON file, `state/<stack>.json` beside the stack file unless `path` says otherwise
    /// (relative to the stack file's directory).
    Local {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path: Option<String>,
    },
    S3 {
        bucket: String,
        key: String,
        /// The bucket's region [default: the stack's].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// How long a lock lives without being renewed by its holder.
        lock_lease_seconds: u32,
        /// SSE-KMS with this key; SSE-S3 (AES256) without it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kms_key_id: Option<String>,
    },
    Postgres {
        /// The environment variable holding the libpq URL.
        url_env: String,
        /// The table (created if missing); its lock table is `<table>_locks`.
        table: String,
    },
}

impl Default for StateBackend {
    fn default() -> Self {
        StateBackend::Local { path: None }
    }
}

impl StateBackend {
    pub const DEFAULT_LEASE_SECONDS: u32 = 60;
    pub const DEFAULT_TABLE: &'static str = "pwless_state";
}
