//! The database relay: how pwless reaches an Aurora cluster in private subnets from a laptop or
//! a CI runner with no network path to it (`database.admin_access: cluster`, the default).
//!
//! pwless runs a small TCP relay in the stack's EKS cluster (a Deployment in the namespace
//! [`NAMESPACE`], its pods allowed egress only to the database port) and reaches it through
//! the Kubernetes API's pod port-forward, over the same authenticated connection it uses for
//! every other Kubernetes object. TLS stays end to end: pwless's PostgreSQL client speaks TLS
//! through the forwarded stream and checks the certificate against the cluster endpoint's name
//! (`verify-full`); the relay moves bytes only and never sees a password or token.
//!
//! The relay is HAProxy, the Docker official image as mirrored on Amazon ECR Public (EKS nodes
//! pull it without Docker Hub's rate limits), pinned by digest: a proxy in TCP mode is exactly
//! what is needed, it runs as a non-root user by default, writes nothing to its filesystem, and
//! re-resolves the cluster endpoint (whose address moves on a failover). pwless ships no image
//! of its own, so nothing of ours has to be built, published or trusted on the nodes.

/// The namespace of pwless's own objects on a cluster the stack creates.
pub const NAMESPACE: &str = "pwless";

/// The relay's namespace for `stack`: [`NAMESPACE`] on a cluster the stack creates, and
/// `pwless-<stack>` on one it references (`cluster.existing`), which other stacks may use
/// too: each stack's relay is then its own, in a namespace of its own that its destroy may
/// delete (a Deployment's pods are selected within its namespace only).
pub fn namespace(stack: &crate::spec::Stack) -> String {
    if stack.cluster.existing.is_some() {
        format!("{NAMESPACE}-{}", stack.name)
    } else {
        NAMESPACE.to_string()
    }
}
/// The relay's Deployment and ConfigMap, and its NetworkPolicy, for the one-database
/// shorthand's database ([`name`]).
pub const NAME: &str = "db-relay";
/// The port the relay listens on, in the pod (the database's port is the cluster's).
pub const PORT: u16 = 5432;
/// `app.kubernetes.io/name` of the shorthand's database's relay pods: how pwless finds one to
/// forward to ([`app_label`]).
pub const APP_LABEL: &str = "pwless-db-relay";

/// The name of the relay (its Deployment, ConfigMap and NetworkPolicy) of the database of
/// logical name `database`: [`NAME`] for `database:`, `db-relay-<database>` for the others
/// (each database has its own relay, allowed to reach its cluster's port only).
pub fn name(database: &str) -> String {
    if database == crate::spec::model::MAIN_DATABASE {
        NAME.to_string()
    } else {
        format!("{NAME}-{database}")
    }
}

/// `app.kubernetes.io/name` of the relay pods of the database `database`, as [`name`].
pub fn app_label(database: &str) -> String {
    if database == crate::spec::model::MAIN_DATABASE {
        APP_LABEL.to_string()
    } else {
        format!("{APP_LABEL}-{database}")
    }
}

/// HAProxy 3.0 (LTS) on Alpine, the multi-architecture index (amd64 and arm64 nodes), from
/// ECR Public's mirror of the Docker official images. The digest is taken from public
/// deployments that pin this image; it could not be pulled from these build machines (no
/// registry access), so the first real apply is what proves it.
pub const IMAGE: &str = "public.ecr.aws/docker/library/haproxy:3.0-alpine@sha256:dee54db8b27cd6c21519ea4f0ba0604f3742e8e7369bc16fb5b69133dec3f47f";
/// The `haproxy` user of the official image.
pub const RUN_AS_USER: u32 = 99;
/// Where the image reads its configuration.
pub const CONFIG_DIR: &str = "/usr/local/etc/haproxy";

/// The relay's HAProxy configuration. The endpoint comes from the container's environment
/// (`DB_ENDPOINT`, `DB_PORT`; HAProxy expands `"${VAR}"` inside double quotes), so the text is
/// the same for every stack. The endpoint is resolved at start and again every 10 s through
/// the pod's resolver (`parse-resolv-conf`), so a failover's new address is picked up; client
/// and server timeouts of an hour let a long `apply` keep one connection.
/// (HAProxy configuration manual, sections 3 "global", 4 "proxies" and 5.3 "resolvers".)
pub const HAPROXY_CONFIG: &str = "\
global
  maxconn 64
  log stdout format raw local0 info

defaults
  mode tcp
  log global
  option tcplog
  timeout connect 10s
  timeout client 1h
  timeout server 1h

resolvers pod
  parse-resolv-conf
  hold valid 10s

frontend postgres
  bind :5432
  default_backend aurora

backend aurora
  server writer \"${DB_ENDPOINT}:${DB_PORT}\" resolvers pod init-addr last,libc,none
";
