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
    pub database: Database,
    pub access: Vec<Access>,
    pub app: Option<App>,
}

impl Stack {
    /// `aws`, `aws-cn` or `aws-us-gov`, from the region.
    pub fn partition(&self) -> &'static str {
        partition_of(&self.region)
    }
}

pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
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

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub cidr: Ipv4Cidr,
    /// Availability zone names, one public and one private subnet in each.
    pub availability_zones: Vec<String>,
    pub nat_gateways: NatGateways,
    /// One per availability zone, in order.
    pub public_subnets: Vec<Ipv4Cidr>,
    pub private_subnets: Vec<Ipv4Cidr>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub version: String,
    pub node_group: NodeGroup,
    /// The Kubernetes service CIDR, if set (EKS picks one otherwise).
    pub service_cidr: Option<Ipv4Cidr>,
    pub endpoint_public_access: bool,
    /// IAM principal ARNs with cluster-admin through EKS access entries.
    pub admins: Vec<String>,
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

#[derive(Debug, Clone, PartialEq)]
pub struct Database {
    pub engine_version: String,
    pub instance_class: String,
    pub instances: u32,
    /// The database created in the cluster.
    pub name: String,
    pub master_username: String,
    pub master_password: MasterPassword,
    pub subnets: DatabaseSubnets,
    pub users: Vec<DatabaseUser>,
    /// Whether destroying the cluster first takes a final snapshot (the default: destroy
    /// removes the cluster, not the only copy of the data).
    pub final_snapshot: bool,
    /// How pwless reaches the database to manage users; not part of any resource.
    pub connection: DbConnection,
}

/// Apply-time settings for pwless's own database connection. The environment overrides each
/// (`PWLESS_DB_CA_BUNDLE`, `PWLESS_DB_ADMIN_ENDPOINT`, `PWLESS_DB_TLS_SERVER_NAME`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DbConnection {
    /// The CA bundle the server certificate must chain to [default: `global-bundle.pem`, the
    /// RDS global bundle, beside the stack file].
    pub ca_bundle: Option<String>,
    /// `host:port` of a tunnel to the cluster (it usually sits in private subnets).
    pub admin_endpoint: Option<String>,
    /// The name the certificate must carry [default: the cluster endpoint].
    pub tls_server_name: Option<String>,
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
    pub db_user: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub namespace: String,
    pub service_account: String,
    pub image: String,
    pub replicas: u32,
    pub port: u16,
}
