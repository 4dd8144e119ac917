//! Every validation rule: a mutation of the example, the message it must give and where.

use std::path::Path;

use crate::common::{EXAMPLE, example_with, stack_from};
use pwless::spec::model::{AdminAccess, MasterPassword, NatGateways, Privilege};

struct Case {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    message: &'static str,
    line: usize,
    help: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        name: "unknown top-level key",
        from: "region: us-west-2",
        to: "region: us-west-2\nregoin: x",
        message: "unknown key `regoin` at the top level",
        line: 6,
        help: Some("did you mean `region`?"),
    },
    Case {
        name: "unknown nested key",
        from: "availability_zones: 2",
        to: "availabilty_zones: 2",
        message: "unknown key `availabilty_zones` in `network`",
        line: 9,
        help: Some("did you mean `availability_zones`?"),
    },
    Case {
        name: "duplicate key",
        from: "region: us-west-2",
        to: "region: us-west-2\nregion: us-east-1",
        message: "key `region` appears twice",
        line: 6,
        help: None,
    },
    Case {
        name: "bad stack name",
        from: "stack: iam-postgres",
        to: "stack: Iam_Postgres",
        message: "`Iam_Postgres` is not a valid stack name",
        line: 4,
        help: None,
    },
    Case {
        name: "bad region",
        from: "region: us-west-2",
        to: "region: moon-base",
        message: "`moon-base` is not an AWS region name",
        line: 5,
        help: None,
    },
    Case {
        name: "reserved tag",
        from: "tags: {team: platform}",
        to: "tags: {\"pwless:stack\": x}",
        message: "uses a reserved prefix",
        line: 6,
        help: None,
    },
    Case {
        name: "CIDR syntax",
        from: "cidr: 10.0.0.0/16",
        to: "cidr: 10.0.0/16",
        message: "is not a CIDR block",
        line: 8,
        help: None,
    },
    Case {
        name: "CIDR host bits",
        from: "cidr: 10.0.0.0/16",
        to: "cidr: 10.0.3.0/16",
        message: "has host bits set",
        line: 8,
        help: Some("did you mean `10.0.0.0/16`?"),
    },
    Case {
        name: "CIDR too large a block",
        from: "cidr: 10.0.0.0/16",
        to: "cidr: 10.0.0.0/12",
        message: "between /16 and /28",
        line: 8,
        help: None,
    },
    Case {
        name: "public CIDR",
        from: "cidr: 10.0.0.0/16",
        to: "cidr: 8.8.0.0/16",
        message: "not a private address range",
        line: 8,
        help: None,
    },
    Case {
        name: "too few addresses",
        from: "cidr: 10.0.0.0/16",
        to: "cidr: 10.0.0.0/27",
        message: "too few addresses",
        line: 8,
        help: None,
    },
    Case {
        name: "too few AZs",
        from: "availability_zones: 2",
        to: "availability_zones: 1",
        message: "it must be from 2 to 6",
        line: 9,
        help: None,
    },
    Case {
        name: "too many AZs",
        from: "availability_zones: 2",
        to: "availability_zones: 7",
        message: "it must be from 2 to 6",
        line: 9,
        help: None,
    },
    Case {
        name: "AZs not a number",
        from: "availability_zones: 2",
        to: "availability_zones: \"2\"",
        message: "expected a whole number",
        line: 9,
        help: None,
    },
    Case {
        name: "bad nat_gateways",
        from: "nat_gateways: single",
        to: "nat_gateways: singel",
        message: "`singel` is not a valid value for `network.nat_gateways`",
        line: 10,
        help: Some("did you mean `single`?"),
    },
    Case {
        name: "a subnet id as the existing VPC's id",
        from: "network:\n  cidr: 10.0.0.0/16\n  availability_zones: 2          # 2 to 6: one public + one private subnet in each\n  nat_gateways: single           # none | single | per_az\n",
        to: "network:\n  existing:\n    vpc_id: subnet-0123456789abcdef0\n    private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2]\n",
        message: "`subnet-0123456789abcdef0` is the id of a subnet, not of a VPC",
        line: 9,
        help: Some("write the id of a VPC here"),
    },
    Case {
        name: "a malformed subnet id",
        from: "network:\n  cidr: 10.0.0.0/16\n  availability_zones: 2          # 2 to 6: one public + one private subnet in each\n  nat_gateways: single           # none | single | per_az\n",
        to: "network:\n  existing:\n    vpc_id: vpc-0123456789abcdef0\n    private_subnet_ids: [subnet-0123456789abcdef1, subnet-12]\n",
        message: "`subnet-12` is not the id of a subnet",
        line: 10,
        help: Some("A subnet id is `subnet-` and 8 or 17 lowercase hexadecimal digits"),
    },
    Case {
        name: "one private subnet of an existing network",
        from: "network:\n  cidr: 10.0.0.0/16\n  availability_zones: 2          # 2 to 6: one public + one private subnet in each\n  nat_gateways: single           # none | single | per_az\n",
        to: "network:\n  existing:\n    vpc_id: vpc-0123456789abcdef0\n    private_subnet_ids: [subnet-0123456789abcdef1]\n",
        message: "`network.existing.private_subnet_ids` lists 1 subnet, at least 2 needed",
        line: 10,
        help: Some("at least two availability zones"),
    },
    Case {
        name: "a subnet listed twice",
        from: "network:\n  cidr: 10.0.0.0/16\n  availability_zones: 2          # 2 to 6: one public + one private subnet in each\n  nat_gateways: single           # none | single | per_az\n",
        to: "network:\n  existing:\n    vpc_id: vpc-0123456789abcdef0\n    private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2]\n    public_subnet_ids: [subnet-0123456789abcdef1]\n",
        message: "`subnet-0123456789abcdef1` is listed twice (first as `network.existing.private_subnet_ids[0]`)",
        line: 11,
        help: Some("list each subnet once"),
    },
    Case {
        name: "a network to create beside an existing one",
        from: "network:\n  cidr: 10.0.0.0/16\n",
        to: "network:\n  existing: {vpc_id: vpc-0123456789abcdef0, private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2]}\n  cidr: 10.0.0.0/16\n",
        message: "`network.cidr` describes a network to create, but `network.existing` names one that exists",
        line: 9,
        help: Some("remove `cidr`"),
    },
    Case {
        name: "an existing cluster on a network the stack creates",
        from: "cluster:                         # EKS\n  version: \"1.31\"\n  node_group: {instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}\n  admins:                        # IAM principals with cluster-admin (EKS access entries);\n    - arn:aws:iam::123456789012:user/moto   # pwless's own: the sandbox's user, here\n",
        to: "cluster:\n  existing: {name: team-cluster}\n",
        message: "`cluster.existing` needs `network.existing`",
        line: 12,
        help: Some("name the cluster's VPC and subnets under `network.existing`"),
    },
    Case {
        name: "admins beside an existing cluster",
        from: "  version: \"1.31\"\n",
        to: "  existing: {name: team-cluster}\n",
        message: "`cluster.admins` describes a cluster to create, but `cluster.existing` names one that exists",
        line: 14,
        help: Some("who may use an existing cluster's Kubernetes API is its owners' decision"),
    },
    Case {
        name: "a malformed existing cluster name",
        from: "cluster:                         # EKS\n  version: \"1.31\"\n  node_group: {instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}\n  admins:                        # IAM principals with cluster-admin (EKS access entries);\n    - arn:aws:iam::123456789012:user/moto   # pwless's own: the sandbox's user, here\n",
        to: "cluster:\n  existing: {name: _team}\n",
        message: "`_team` is not an EKS cluster name",
        line: 12,
        help: Some("1 to 100 letters, digits, hyphens and underscores"),
    },
    Case {
        name: "an existing database on a network the stack creates",
        from: "database:                        # Aurora PostgreSQL, IAM auth always on\n  engine_version: \"17.4\"\n  instance_class: db.t4g.medium\n  instances: 1\n  name: appdb\n  master_username: postgres\n  master_password: managed       # managed (Secrets Manager) | {env: VAR_NAME}\n  subnets: private               # private (default) | public\n",
        to: "database:\n  existing: {cluster_identifier: team-aurora, name: shop}\n",
        message: "`database.existing` needs `network.existing`",
        line: 17,
        help: Some("name the cluster's VPC and subnets under `network.existing`"),
    },
    Case {
        name: "a cluster to create beside an existing database",
        from: "  engine_version: \"17.4\"\n",
        to: "  existing: {cluster_identifier: team-aurora, name: shop}\n",
        message: "`database.instance_class` describes a cluster to create, but `database.existing` names one that exists",
        line: 18,
        help: Some("remove `instance_class`: pwless reads the cluster as it is"),
    },
    Case {
        name: "the database's name beside an existing database",
        from: "  engine_version: \"17.4\"\n  instance_class: db.t4g.medium\n  instances: 1\n",
        to: "  existing: {cluster_identifier: team-aurora, name: shop}\n",
        message: "`database.name` describes a cluster to create",
        line: 18,
        help: Some("move it under `existing`"),
    },
    Case {
        name: "an ARN as the existing database's cluster identifier",
        from: "database:                        # Aurora PostgreSQL, IAM auth always on\n  engine_version: \"17.4\"\n  instance_class: db.t4g.medium\n  instances: 1\n  name: appdb\n  master_username: postgres\n  master_password: managed       # managed (Secrets Manager) | {env: VAR_NAME}\n  subnets: private               # private (default) | public\n",
        to: "database:\n  existing: {cluster_identifier: \"arn:aws:rds:us-west-2:123456789012:cluster:team\", name: shop}\n",
        message: "is not an Aurora cluster identifier",
        line: 17,
        help: Some("not its ARN"),
    },
    Case {
        name: "a template database in an existing cluster",
        from: "database:                        # Aurora PostgreSQL, IAM auth always on\n  engine_version: \"17.4\"\n  instance_class: db.t4g.medium\n  instances: 1\n  name: appdb\n  master_username: postgres\n  master_password: managed       # managed (Secrets Manager) | {env: VAR_NAME}\n  subnets: private               # private (default) | public\n",
        to: "database:\n  existing:\n    cluster_identifier: team-aurora\n    name: template1\n",
        message: "`template1` is not a database applications use",
        line: 19,
        help: Some("name the application's database"),
    },
    Case {
        name: "bad identity mechanism",
        from: "service_account: demo-app, db_user: app_user}",
        to: "service_account: demo-app, db_user: app_user, identity: pod-identity}",
        message: "`pod-identity` is not a valid value for `access[0].identity`",
        line: 28,
        help: Some("did you mean `pod_identity`?"),
    },
    Case {
        name: "unknown admin access path",
        from: "  subnets: private",
        to: "  subnets: private\n  admin_access: tunnel",
        message: "admin_access",
        line: 24,
        help: Some("use one of: cluster, endpoint"),
    },
    Case {
        name: "a relay image that is no image reference",
        from: "  subnets: private",
        to: "  subnets: private\n  relay_image: \"my registry/haproxy\"",
        message: "is not an image reference",
        line: 24,
        help: Some("@sha256:"),
    },
    Case {
        name: "a tunnel with the cluster path",
        from: "  subnets: private",
        to: "  subnets: private\n  admin_access: cluster\n  admin_endpoint: 127.0.0.1:15432",
        message: "means nothing with `admin_access: cluster`",
        line: 25,
        help: Some("admin_access: endpoint"),
    },
    Case {
        name: "overlapping subnets",
        from: "nat_gateways: single",
        to: "nat_gateways: single\n  public_subnets: [10.0.0.0/24, 10.0.1.0/24]\n  private_subnets: [10.0.1.0/24, 10.0.2.0/24]",
        message: "overlaps `10.0.1.0/24`",
        line: 12,
        help: None,
    },
    Case {
        name: "subnet outside the VPC",
        from: "nat_gateways: single",
        to: "nat_gateways: single\n  public_subnets: [10.1.0.0/24, 10.0.1.0/24]\n  private_subnets: [10.0.2.0/24, 10.0.3.0/24]",
        message: "outside the VPC block",
        line: 11,
        help: None,
    },
    Case {
        name: "wrong number of subnets",
        from: "nat_gateways: single",
        to: "nat_gateways: single\n  public_subnets: [10.0.0.0/24]\n  private_subnets: [10.0.2.0/24, 10.0.3.0/24]",
        message: "lists 1 blocks for 2 availability zones",
        line: 11,
        help: None,
    },
    Case {
        name: "service CIDR overlapping the VPC",
        from: "version: \"1.31\"",
        to: "version: \"1.31\"\n  service_cidr: 10.0.0.0/16",
        message: "overlaps the VPC block",
        line: 13,
        help: None,
    },
    Case {
        name: "an admin that is a role session",
        from: "- arn:aws:iam::123456789012:user/moto",
        to: "- arn:aws:sts::123456789012:assumed-role/deployer/ci-run-7",
        message: "is a role session, not a principal",
        line: 15,
        help: Some("name the role: arn:aws:iam::123456789012:role/deployer"),
    },
    Case {
        name: "an admin that is not a principal ARN",
        from: "- arn:aws:iam::123456789012:user/moto",
        to: "- arn:aws:iam::123456789012:policy/*",
        message: "is not an IAM role or user ARN",
        line: 15,
        help: None,
    },
    Case {
        name: "an admin listed twice",
        from: "- arn:aws:iam::123456789012:user/moto",
        to: "- arn:aws:iam::123456789012:user/moto\n    - arn:aws:iam::123456789012:user/moto",
        message: "is listed twice",
        line: 16,
        help: None,
    },
    Case {
        name: "Kubernetes objects without cluster admins",
        from: "  admins:                        # IAM principals with cluster-admin (EKS access entries);\n    - arn:aws:iam::123456789012:user/moto",
        to: "  admins: []",
        message: "`cluster.admins` is required when the stack has Kubernetes objects",
        line: 12,
        help: Some("list the IAM role or user pwless runs as"),
    },
    Case {
        name: "bad Kubernetes version",
        from: "version: \"1.31\"",
        to: "version: \"v1.31\"",
        message: "is not a Kubernetes version",
        line: 12,
        help: None,
    },
    Case {
        name: "node group sizes",
        from: "desired_size: 2",
        to: "desired_size: 5",
        message: "min_size <= desired_size <= max_size",
        line: 13,
        help: None,
    },
    Case {
        name: "bad instance type",
        from: "instance_types: [t3.medium]",
        to: "instance_types: [t3]",
        message: "is not an EC2 instance type",
        line: 13,
        help: None,
    },
    Case {
        name: "bad instance class",
        from: "instance_class: db.t4g.medium",
        to: "instance_class: t4g.medium",
        message: "is not an RDS instance class",
        line: 18,
        help: None,
    },
    Case {
        name: "bad database name",
        from: "name: appdb",
        to: "name: App-DB",
        message: "is not a valid PostgreSQL identifier",
        line: 20,
        help: None,
    },
    Case {
        name: "template database",
        from: "name: appdb",
        to: "name: template1",
        message: "a database every cluster already has",
        line: 20,
        help: None,
    },
    Case {
        name: "literal password",
        from: "master_password: managed",
        to: "master_password: hunter2",
        message: "a password must never be written in the stack file",
        line: 22,
        help: None,
    },
    Case {
        name: "bad env var name",
        from: "master_password: managed",
        to: "master_password: {env: 1BAD}",
        message: "is not an environment variable name",
        line: 22,
        help: None,
    },
    Case {
        name: "bad subnets choice",
        from: "subnets: private",
        to: "subnets: privat",
        message: "not a valid value for `database.subnets`",
        line: 23,
        help: Some("did you mean `private`?"),
    },
    Case {
        name: "user is the master user",
        from: "- name: app_user",
        to: "- name: postgres",
        message: "it is the master user",
        line: 25,
        help: None,
    },
    Case {
        name: "user is rds_iam",
        from: "- name: app_user",
        to: "- name: rds_iam",
        message: "reserved",
        line: 25,
        help: None,
    },
    Case {
        name: "user is rdsadmin",
        from: "- name: app_user",
        to: "- name: rdsadmin",
        message: "reserved",
        line: 25,
        help: None,
    },
    Case {
        name: "user starts with pg_",
        from: "- name: app_user",
        to: "- name: pg_reader",
        message: "reserved",
        line: 25,
        help: None,
    },
    Case {
        name: "user starts with rds",
        from: "- name: app_user",
        to: "- name: rdsuser",
        message: "reserved",
        line: 25,
        help: None,
    },
    Case {
        name: "hostile user name",
        from: "- name: app_user",
        to: "- name: \"x\\\"; DROP ROLE postgres; --\"",
        message: "is not a valid PostgreSQL identifier",
        line: 25,
        help: None,
    },
    Case {
        name: "unicode user name",
        from: "- name: app_user",
        to: "- name: \"ãpp\"",
        message: "is not a valid PostgreSQL identifier",
        line: 25,
        help: None,
    },
    Case {
        name: "unknown privilege",
        from: "connect, usage",
        to: "connect, usge",
        message: "unknown privilege `usge`",
        line: 26,
        help: Some("did you mean `usage`?"),
    },
    Case {
        name: "privilege twice",
        from: "connect, usage",
        to: "connect, connect",
        message: "listed twice",
        line: 26,
        help: None,
    },
    Case {
        name: "duplicate user",
        from: "      privileges: [connect, usage, create, select, insert, update, delete]\n",
        to: "      privileges: [connect]\n    - name: app_user\n      privileges: [select]\n",
        message: "defined twice",
        line: 27,
        help: None,
    },
    Case {
        name: "access to an undefined user",
        from: "db_user: app_user}",
        to: "db_user: app_usr}",
        message: "`app_usr` is not a user defined in database.users",
        line: 28,
        help: Some("did you mean `app_user`?"),
    },
    Case {
        name: "bad namespace",
        from: "{namespace: demo,",
        to: "{namespace: Demo_NS,",
        message: "not a valid Kubernetes name (DNS-1123 label)",
        line: 28,
        help: None,
    },
    Case {
        name: "bad service account",
        from: "service_account: demo-app, db_user",
        to: "service_account: demo_app, db_user",
        message: "DNS-1123 subdomain",
        line: 28,
        help: None,
    },
    Case {
        name: "duplicate access entry",
        from: "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n",
        to: "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n  - {namespace: demo, service_account: demo-app, db_user: app_user}\n",
        message: "appears twice in access",
        line: 29,
        help: None,
    },
    // Generated names (issue 17, item 2): two entries that would get one IAM role name, and an
    // entry that would get the name of pwless's own roles, are refused with both named.
    Case {
        name: "irsa role names collide across the namespace/service account boundary",
        from: "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n",
        to: "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n  - {namespace: demo-demo, service_account: app, db_user: app_user}\n",
        message: "access[0] (demo/demo-app) and access[1] (demo-demo/app) both get the IAM role name `iam-postgres-demo-demo-app`",
        line: 29,
        help: Some("rename the namespace or the service account of one entry"),
    },
    Case {
        name: "irsa role name is pwless's eks cluster role",
        from: "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n",
        to: "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n  - {namespace: eks, service_account: cluster, db_user: app_user}\n",
        message: "access[1] (eks/cluster) gets the IAM role name `iam-postgres-eks-cluster`, which is pwless's EKS cluster role",
        line: 29,
        help: None,
    },
    Case {
        name: "irsa role name is pwless's eks node role",
        from: "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n",
        to: "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n  - {namespace: eks, service_account: node, db_user: app_user}\n",
        message: "which is pwless's EKS node role",
        line: 29,
        help: None,
    },
    Case {
        name: "access in a namespace kubernetes owns",
        from: "{namespace: demo,",
        to: "{namespace: kube-system,",
        message: "namespace `kube-system` belongs to Kubernetes",
        line: 28,
        help: Some("use a namespace of your own"),
    },
    Case {
        name: "app in the default namespace",
        from: "  namespace: demo\n",
        to: "  namespace: default\n",
        message: "namespace `default` belongs to Kubernetes",
        line: 30,
        help: None,
    },
    Case {
        name: "app without access",
        from: "  service_account: demo-app\n  image",
        to: "  service_account: other\n  image",
        message: "has no `access` entry",
        line: 31,
        help: None,
    },
    Case {
        name: "privileged port",
        from: "port: 8080",
        to: "port: 80",
        message: "needs root",
        line: 34,
        help: None,
    },
    Case {
        name: "bad image",
        from: "image: ghcr.io/example/pwless-demo:0.1.0",
        to: "image: \"has space\"",
        message: "is not a container image reference",
        line: 32,
        help: None,
    },
    Case {
        name: "list where a mapping belongs",
        from: "cluster:                         # EKS\n  version: \"1.31\"\n  node_group: {instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}\n  admins:                        # IAM principals with cluster-admin (EKS access entries);\n    - arn:aws:iam::123456789012:user/moto   # pwless's own: the sandbox's user, here\n",
        to: "cluster: [1, 2]\n",
        message: "expected a mapping for `cluster`",
        line: 11,
        help: None,
    },
    Case {
        name: "missing required key",
        from: "  engine_version: \"17.4\"\n",
        to: "",
        message: "missing `engine_version` in `database`",
        line: 17,
        help: Some("add `engine_version: \"17.4\"`"),
    },
    Case {
        name: "unknown state backend",
        from: "region: us-west-2",
        to: "region: us-west-2\nstate: {backend: dynamodb}",
        message: "`dynamodb` is not a valid value for `state.backend`",
        line: 6,
        help: Some("use one of: local, s3, postgres"),
    },
    Case {
        name: "S3 URL where the bucket name belongs",
        from: "region: us-west-2",
        to: "region: us-west-2\nstate:\n  backend: s3\n  bucket: s3://acme/state\n  key: a.json",
        message: "`s3://acme/state` is not an S3 bucket name",
        line: 8,
        help: None,
    },
    Case {
        name: "missing S3 key",
        from: "region: us-west-2",
        to: "region: us-west-2\nstate: {backend: s3, bucket: acme-state}",
        message: "missing `key` in `state`",
        line: 6,
        help: Some("add `key: prod/iam-postgres.json`"),
    },
    Case {
        name: "S3 lease out of range",
        from: "region: us-west-2",
        to: "region: us-west-2\nstate:\n  backend: s3\n  bucket: acme-state\n  key: a.json\n  lock_lease_seconds: 1",
        message: "`state.lock_lease_seconds` is 1; it must be from 5 to 3600",
        line: 10,
        help: None,
    },
    Case {
        name: "a key of another backend",
        from: "region: us-west-2",
        to: "region: us-west-2\nstate:\n  backend: postgres\n  url_env: PWLESS_STATE_DATABASE_URL\n  bucket: acme-state",
        message: "unknown key `bucket` in `state`",
        line: 9,
        help: Some("allowed keys here: backend, url_env, table"),
    },
    Case {
        name: "a connection URL in the stack file",
        from: "region: us-west-2",
        to: "region: us-west-2\nstate:\n  backend: postgres\n  url_env: postgresql://pwless:hunter2@db/pwless",
        message: "this looks like a connection URL, which must never be written in the stack file",
        line: 8,
        help: None,
    },
    Case {
        name: "YAML syntax",
        from: "region: us-west-2",
        to: "region: [us-west-2",
        message: "invalid YAML",
        line: 6,
        help: None,
    },
];

#[test]
fn every_rule_reports_its_place_and_fix() {
    let mut failures = Vec::new();
    for case in CASES {
        let text = example_with(case.from, case.to);
        let errors = match pwless::spec::parse_str(Path::new("stack.yaml"), &text) {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.name));
                continue;
            }
            Err(errors) => errors,
        };
        let Some(found) = errors
            .diagnostics
            .iter()
            .find(|d| d.message.contains(case.message))
        else {
            failures.push(format!(
                "{}: no message containing {:?} in\n{}",
                case.name,
                case.message,
                errors.render()
            ));
            continue;
        };
        if found.span.start.line != case.line {
            failures.push(format!(
                "{}: reported at line {}, expected {}",
                case.name, found.span.start.line, case.line
            ));
        }
        if let Some(help) = case.help
            && !found.help.as_deref().unwrap_or("").contains(help)
        {
            failures.push(format!(
                "{}: help {:?} lacks {:?}",
                case.name, found.help, help
            ));
        }
        let rendered = errors.render();
        if case.to.contains("hunter2") && rendered.contains("hunter2") {
            failures.push(format!("{}: the secret was shown:\n{rendered}", case.name));
        }
        if !rendered.contains(&format!("stack.yaml:{}:", case.line)) {
            failures.push(format!(
                "{}: rendering lacks file:line\n{rendered}",
                case.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

#[test]
fn all_problems_are_reported_in_one_run() {
    let text = EXAMPLE
        .replacen("cidr: 10.0.0.0/16", "cidr: 10.0.0.0/33", 1)
        .replacen("nat_gateways: single", "nat_gateways: several", 1)
        .replacen("connect, usage", "connect, usge", 1)
        .replacen("port: 8080", "port: 80", 1);
    let errors = pwless::spec::parse_str(Path::new("stack.yaml"), &text).unwrap_err();
    assert_eq!(errors.diagnostics.len(), 4, "{}", errors.render());
    let lines: Vec<usize> = errors
        .diagnostics
        .iter()
        .map(|d| d.span.start.line)
        .collect();
    assert_eq!(lines, [8, 10, 26, 34], "sorted in file order");
    assert!(
        errors
            .render()
            .ends_with("stack.yaml has 4 problems; nothing was planned or changed\n")
    );
}

#[test]
fn literal_passwords_are_never_echoed() {
    let text = example_with(
        "master_password: managed",
        "master_password: \"S3cr3t-Pa55\"",
    );
    let errors = pwless::spec::parse_str(Path::new("stack.yaml"), &text).unwrap_err();
    let rendered = errors.render();
    assert!(rendered.contains("a password must never be written"));
    // The snippet shows the source line (it is the user's own file), but no message repeats it.
    for diagnostic in &errors.diagnostics {
        assert!(!diagnostic.message.contains("S3cr3t"));
        assert!(!diagnostic.help.as_deref().unwrap_or("").contains("S3cr3t"));
    }
}

#[test]
fn optional_sections_may_be_left_out_and_defaults_apply() {
    let minimal = "stack: s\nregion: eu-central-1\nnetwork: {cidr: 10.1.0.0/16, availability_zones: 3}\n\
        cluster: {version: \"1.31\", node_group: {instance_types: [m7g.large], min_size: 0, desired_size: 1, max_size: 2}}\n\
        database: {engine_version: \"16.4\", instance_class: db.r7g.large, name: appdb, master_username: postgres}\n";
    let stack = stack_from(minimal);
    assert!(stack.access.is_empty() && stack.app.is_none() && stack.databases[0].users.is_empty());
    assert_eq!(stack.network.nat_gateways, NatGateways::Single);
    assert_eq!(stack.databases[0].master_password, MasterPassword::Managed);
    // The database is reached through the cluster unless the stack names a tunnel.
    assert_eq!(
        stack.databases[0].connection.admin_access,
        AdminAccess::Cluster
    );
    let tunnelled = stack_from(&minimal.replace(
        "master_username: postgres}",
        "master_username: postgres, admin_endpoint: \"127.0.0.1:15432\"}",
    ));
    assert_eq!(
        tunnelled.databases[0].connection.admin_access,
        AdminAccess::Endpoint
    );
    assert_eq!(
        stack.network.availability_zones,
        ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
    );
    let blocks: Vec<String> = stack
        .network
        .public_subnets
        .iter()
        .chain(&stack.network.private_subnets)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        blocks,
        [
            "10.1.0.0/19",
            "10.1.32.0/19",
            "10.1.64.0/19",
            "10.1.96.0/19",
            "10.1.128.0/19",
            "10.1.160.0/19"
        ]
    );
}

#[test]
fn the_example_parses_to_the_documented_model() {
    let stack = stack_from(EXAMPLE);
    assert_eq!(stack.name, "iam-postgres");
    assert_eq!(stack.cluster.version, "1.31");
    assert_eq!(stack.databases[0].users[0].privileges.len(), 7);
    assert!(
        stack.databases[0].users[0]
            .privileges
            .contains(&Privilege::Connect)
    );
    let env = stack_from(&example_with(
        "master_password: managed",
        "master_password: {env: PG_MASTER}",
    ));
    assert_eq!(
        env.databases[0].master_password,
        MasterPassword::Env("PG_MASTER".into())
    );
    // Plain 1.30 stays "1.30" (a serde float would make it 1.3).
    let unquoted = stack_from(&example_with("version: \"1.31\"", "version: 1.30"));
    assert_eq!(unquoted.cluster.version, "1.30");
}

#[test]
fn the_shipped_examples_are_valid() {
    for path in [
        "examples/aws-only.yaml",
        "examples/with-users.yaml",
        "examples/existing-network.yaml",
        "examples/existing-cluster.yaml",
        "examples/existing-database.yaml",
        "examples/many-databases.yaml",
        "stack.example.yaml",
    ] {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        if let Err(error) = pwless::spec::load(&file) {
            panic!("{path}: {error}");
        }
    }
}

#[test]
fn a_misspelt_key_is_one_error_not_two() {
    // A misspelt required key used to be reported twice: as unknown, and as missing at
    // another line. Every required key of every section, misspelt.
    let cases = [
        ("stack: iam-postgres", "stak: iam-postgres", "stak", "stack"),
        ("region: us-west-2", "regoin: us-west-2", "regoin", "region"),
        ("cidr: 10.0.0.0/16", "cdir: 10.0.0.0/16", "cdir", "cidr"),
        (
            "version: \"1.31\"",
            "verison: \"1.31\"",
            "verison",
            "version",
        ),
        (
            "engine_version: \"17.4\"",
            "engine_verison: \"17.4\"",
            "engine_verison",
            "engine_version",
        ),
        (
            "instance_class: db.t4g.medium",
            "instance_clas: db.t4g.medium",
            "instance_clas",
            "instance_class",
        ),
        (
            "availability_zones: 2",
            "availabilty_zones: 2",
            "availabilty_zones",
            "availability_zones",
        ),
        ("  - name: app_user", "  - nmae: app_user", "nmae", "name"),
    ];
    for (from, to, typo, meant) in cases {
        let errors = pwless::spec::parse_str(Path::new("stack.yaml"), &example_with(from, to))
            .expect_err(typo);
        let messages: Vec<&str> = errors
            .diagnostics
            .iter()
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(messages.len(), 1, "{typo}: {messages:?}");
        assert!(
            messages[0].contains(&format!("unknown key `{typo}`")),
            "{messages:?}"
        );
        assert_eq!(
            errors.diagnostics[0].help.as_deref(),
            Some(format!("did you mean `{meant}`?").as_str())
        );
    }
}

#[test]
fn ranges_are_said_in_words() {
    let errors = pwless::spec::parse_str(
        Path::new("stack.yaml"),
        &example_with("availability_zones: 2", "availability_zones: 7"),
    )
    .unwrap_err();
    let rendered = errors.render();
    assert!(rendered.contains("from 2 to 6"), "{rendered}");
    assert!(!rendered.contains("..="), "{rendered}");
}

#[test]
fn unknown_instance_classes_and_engine_versions_warn_with_the_nearest_known() {
    let text = example_with(
        "instance_class: db.t4g.medium",
        "instance_class: db.r7g.3xlarge",
    )
    .replace("engine_version: \"17.4\"", "engine_version: \"16.5\"");
    let (stack, warnings) =
        pwless::spec::parse_str_with_warnings(Path::new("stack.yaml"), &text).unwrap();
    // A warning, not an error: AWS may know it (a new size or minor version).
    assert_eq!(stack.databases[0].instance_class, "db.r7g.3xlarge");
    let rendered = warnings.expect("two warnings").render_warnings();
    assert!(
        rendered.contains(
            "warning: `db.r7g.3xlarge` is not an Aurora PostgreSQL instance class pwless knows"
        ),
        "{rendered}"
    );
    assert!(
        rendered.contains("the nearest known is db.r7g.2xlarge"),
        "{rendered}"
    );
    assert!(
        rendered.contains("warning: `16.5` is not an Aurora PostgreSQL version pwless knows"),
        "{rendered}"
    );
    assert!(
        rendered.contains("the nearest known is \"16.4\""),
        "{rendered}"
    );
    assert!(rendered.contains("stack.yaml:18:"), "{rendered}");
    // The shipped example warns about nothing.
    let (_, none) =
        pwless::spec::parse_str_with_warnings(Path::new("stack.yaml"), EXAMPLE).unwrap();
    assert!(none.is_none());
}

#[test]
fn a_relay_image_by_tag_is_a_warning_and_by_digest_is_used_as_is() {
    let tagged = example_with(
        "  subnets: private",
        "  subnets: private\n  relay_image: 123456789012.dkr.ecr.us-west-2.amazonaws.com/haproxy:3.0",
    );
    let (stack, warnings) =
        pwless::spec::parse_str_with_warnings(Path::new("stack.yaml"), &tagged).unwrap();
    assert_eq!(
        stack.databases[0].connection.relay_image.as_deref(),
        Some("123456789012.dkr.ecr.us-west-2.amazonaws.com/haproxy:3.0")
    );
    let rendered = warnings.expect("a warning").render_warnings();
    assert!(rendered.contains("is not pinned by digest"), "{rendered}");

    let pinned = example_with(
        "  subnets: private",
        "  subnets: private\n  relay_image: mirror.example/haproxy@sha256:0123",
    );
    let (stack, warnings) =
        pwless::spec::parse_str_with_warnings(Path::new("stack.yaml"), &pinned).unwrap();
    assert!(warnings.is_none());
    let graph = crate::common::graph_of(&stack);
    let relay = graph
        .in_order()
        .find(|resource| resource.address == "kubernetes_db_relay.pwless/db-relay")
        .expect("the relay is in the graph");
    assert_eq!(
        relay.inputs["image"],
        pwless::graph::Expr::from("mirror.example/haproxy@sha256:0123")
    );
}

/// Issue 17, item 1: an admin of another partition than the stack's region is refused on its
/// line, and every suggested ARN names the stack's partition.
#[test]
fn principals_of_another_partition_are_refused_and_fixes_name_the_stacks_partition() {
    struct Row {
        region: &'static str,
        admin: &'static str,
        message: Option<&'static str>,
        help: Option<&'static str>,
    }
    let rows = [
        Row {
            region: "cn-northwest-1",
            admin: "arn:aws:iam::123456789012:user/moto",
            message: Some(
                "is a principal of partition `aws`, but the stack's region is in partition `aws-cn`",
            ),
            help: Some("write arn:aws-cn:iam::123456789012:user/moto"),
        },
        Row {
            region: "us-gov-west-1",
            admin: "arn:aws-cn:iam::123456789012:role/deployer",
            message: Some(
                "partition `aws-cn`, but the stack's region is in partition `aws-us-gov`",
            ),
            help: Some("write arn:aws-us-gov:iam::123456789012:role/deployer"),
        },
        Row {
            region: "us-west-2",
            admin: "arn:aws-us-gov:iam::123456789012:role/deployer",
            message: Some("partition `aws-us-gov`, but the stack's region is in partition `aws`"),
            help: Some("write arn:aws:iam::123456789012:role/deployer"),
        },
        Row {
            region: "cn-north-1",
            admin: "arn:aws-cn:sts::123456789012:assumed-role/deployer/session",
            message: Some("is a role session, not a principal"),
            help: Some("name the role: arn:aws-cn:iam::123456789012:role/deployer"),
        },
        Row {
            region: "cn-north-1",
            admin: "arn:aws:sts::123456789012:assumed-role/deployer/session",
            message: Some("is a role session, not a principal"),
            help: Some("name the role: arn:aws-cn:iam::123456789012:role/deployer"),
        },
        Row {
            region: "us-gov-east-1",
            admin: "deployer",
            message: Some("is not an IAM role or user ARN"),
            help: Some("write arn:aws-us-gov:iam::<account>:role/<name>"),
        },
        Row {
            region: "cn-north-1",
            admin: "arn:aws-cn:iam::123456789012:role/deployer",
            message: None,
            help: None,
        },
    ];
    for row in rows {
        let text = EXAMPLE
            .replacen("region: us-west-2", &format!("region: {}", row.region), 1)
            .replacen("arn:aws:iam::123456789012:user/moto", row.admin, 1);
        let result = pwless::spec::parse_str(Path::new("stack.yaml"), &text);
        match (row.message, result) {
            (None, Ok(stack)) => assert_eq!(stack.cluster.admins, [row.admin]),
            (None, Err(errors)) => panic!("{}: refused:\n{}", row.admin, errors.render()),
            (Some(_), Ok(_)) => panic!("{} in {}: accepted", row.admin, row.region),
            (Some(message), Err(errors)) => {
                let found = errors
                    .diagnostics
                    .iter()
                    .find(|d| d.message.contains(message))
                    .unwrap_or_else(|| {
                        panic!("{}: no {message:?} in\n{}", row.admin, errors.render())
                    });
                assert_eq!(found.span.start.line, 15, "{}", row.admin);
                let help = found.help.as_deref().unwrap_or("");
                assert!(
                    help.contains(row.help.unwrap()),
                    "{}: help {help:?}",
                    row.admin
                );
            }
        }
    }
}

#[test]
fn a_public_database_in_an_existing_network_without_public_subnets_is_refused() {
    let text = example_with(
        "network:\n  cidr: 10.0.0.0/16\n  availability_zones: 2          # 2 to 6: one public + one private subnet in each\n  nat_gateways: single           # none | single | per_az\n",
        "network:\n  existing: {vpc_id: vpc-0123456789abcdef0, private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2]}\n",
    )
    .replacen("subnets: private", "subnets: public", 1);
    let errors = pwless::spec::parse_str(Path::new("stack.yaml"), &text).unwrap_err();
    let rendered = errors.render();
    // (and the example's app, which needs public subnets too)
    assert_eq!(errors.diagnostics.len(), 2, "{rendered}");
    assert!(
        rendered.contains("error: `database.subnets: public` needs public subnets, and `network.existing` lists none\n  --> stack.yaml:21:"),
        "{rendered}"
    );
    assert!(
        rendered.contains("help: add `public_subnet_ids`"),
        "{rendered}"
    );
}

#[test]
fn an_existing_network_is_valid_without_aws_and_expands_only_once_read() {
    let text = example_with(
        "network:\n  cidr: 10.0.0.0/16\n  availability_zones: 2          # 2 to 6: one public + one private subnet in each\n  nat_gateways: single           # none | single | per_az\n",
        "network:\n  existing: {vpc_id: vpc-0123456789abcdef0, private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2], public_subnet_ids: [subnet-0123456789abcdef3]}\n",
    );
    let stack = stack_from(&text);
    let existing = stack.network.existing.as_ref().unwrap();
    assert_eq!(existing.vpc_id.id, "vpc-0123456789abcdef0");
    assert_eq!(existing.private_subnet_ids.len(), 2);
    assert_eq!(existing.public_subnet_ids.len(), 1);
    // Its facts come from AWS: the graph refuses to guess them.
    assert_eq!(
        pwless::graph::ResourceGraph::from_stack(&stack).unwrap_err(),
        pwless::graph::GraphError::Unread
    );
}

#[test]
fn an_app_on_an_existing_network_without_public_subnets_is_refused() {
    let text = example_with(
        "network:\n  cidr: 10.0.0.0/16\n  availability_zones: 2          # 2 to 6: one public + one private subnet in each\n  nat_gateways: single           # none | single | per_az\n",
        "network:\n  existing: {vpc_id: vpc-0123456789abcdef0, private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2]}\n",
    );
    let errors = pwless::spec::parse_str(Path::new("stack.yaml"), &text).unwrap_err();
    let rendered = errors.render();
    assert_eq!(errors.diagnostics.len(), 1, "{rendered}");
    assert!(
        rendered.contains("error: `app` is served by an internet-facing load balancer, which needs public subnets, and `network.existing` lists none"),
        "{rendered}"
    );
    assert!(
        rendered.contains("help: add `public_subnet_ids`"),
        "{rendered}"
    );
}

const MANY: &str = include_str!("../../examples/many-databases.yaml");

/// Each mistake in a stack with several databases, at its line, with the fix: `MANY` with
/// `from` replaced by `to` must give exactly one error, `message`, at the first line holding
/// `at` (in the changed text), whose help contains `help`.
#[test]
fn many_databases_mistakes_are_each_reported_at_their_line_with_the_fix() {
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        &'a str,
    );
    let cases: &[Case] = &[
        (
            "an access entry of a stack with several databases that names none",
            "{namespace: storefront, service_account: web, database: shop, db_user: storefront}",
            "{namespace: storefront, service_account: web, db_user: storefront}",
            "`access[0]` does not say which database it logs in to, and the stack has several",
            "service_account: web",
            "add `database: <name>`, one of: shop, orders",
            "access[0]",
        ),
        (
            "an access entry naming a database the stack does not have",
            "database: shop, db_user: storefront",
            "database: shpo, db_user: storefront",
            "`shpo` is not a database of the stack",
            "database: shpo",
            "did you mean `shop`?",
            "access[0].database",
        ),
        (
            "an access entry naming a user of another database",
            "database: orders, db_user: orders_api",
            "database: orders, db_user: storefront",
            "`storefront` is not a user defined in databases.orders.users",
            "db_user: storefront}\n  - {namespace: analytics",
            "defined users: orders_api, reporting",
            "access[1].db_user",
        ),
        (
            "a service account with two entries for one database",
            "{namespace: analytics, service_account: reports, database: orders, db_user: reporting}",
            "{namespace: analytics, service_account: reports, database: shop, db_user: storefront}",
            "service account analytics/reports has two entries for database `shop` (first at access[2])",
            "service_account: reports, database: shop, db_user: storefront",
            "logs in to each database as one database user",
            "access[3]",
        ),
        (
            "a service account whose entries name two identities",
            "database: orders, db_user: reporting}",
            "database: orders, db_user: reporting, identity: pod_identity}",
            "service account analytics/reports has identity `pod_identity` here and `irsa` at access[2]",
            "identity: pod_identity",
            "give its entries the same `identity`",
            "access[3].identity",
        ),
        (
            "both database and databases",
            "databases:                       # logical name -> what `database:` holds",
            "database: {engine_version: \"17.4\", instance_class: db.t4g.medium, name: a, master_username: postgres}\ndatabases:",
            "the stack has both `database` and `databases`",
            "databases:",
            "move it under `databases` as `main`",
            "databases",
        ),
        (
            "a database name with a capital and a hyphen",
            "access:                          # each names",
            "  Bill-ing: {existing: {cluster_identifier: billing-aurora, name: billing}}\naccess:                          # each names",
            "`Bill-ing` is not a database name pwless accepts",
            "  Bill-ing:",
            "lowercase letters and digits",
            "databases.Bill-ing",
        ),
        (
            "a created cluster's key beside existing, named under its database",
            "      name: shop                 # the PostgreSQL",
            "      name: shop\n    instances: 2 # the PostgreSQL",
            "`databases.shop.instances` describes a cluster to create, but `databases.shop.existing` names one that exists",
            "instances: 2",
            "pwless reads the cluster as it is",
            "databases.shop.instances",
        ),
        (
            "a bad engine version, named under its database",
            "engine_version: \"17.4\"",
            "engine_version: \"seventeen\"",
            "`seventeen` is not an Aurora PostgreSQL version",
            "engine_version",
            "write it in quotes",
            "databases.orders.engine_version",
        ),
        (
            "a database named existing",
            "access:                          # each names",
            "  existing: {existing: {cluster_identifier: billing-aurora, name: billing}}\naccess:                          # each names",
            "`existing` cannot name a database: the `main` database's referenced cluster carries that name in addresses",
            "  existing: {existing",
            "choose another name",
            "databases.existing",
        ),
        (
            "a referenced cluster that another database creates",
            "cluster_identifier: shop-aurora",
            "cluster_identifier: shop-platform-orders",
            "Aurora cluster `shop-platform-orders` is the one databases.orders creates",
            "cluster_identifier: shop-platform-orders",
            "reference a cluster the stack does not create",
            "databases.shop.existing.cluster_identifier",
        ),
    ];
    for (name, from, to, message, at, help, path) in cases {
        assert!(MANY.contains(from), "{name}: the example has no `{from}`");
        let text = MANY.replacen(from, to, 1);
        let errors = match pwless::spec::parse_str(Path::new("many.yaml"), &text) {
            Ok(_) => panic!("{name}: accepted"),
            Err(errors) => errors,
        };
        let rendered = errors.render();
        assert_eq!(errors.diagnostics.len(), 1, "{name}: {rendered}");
        let diagnostic = &errors.diagnostics[0];
        assert_eq!(diagnostic.message, *message, "{name}: {rendered}");
        assert_eq!(diagnostic.path, *path, "{name}: {rendered}");
        let found = text.find(at).unwrap_or_else(|| panic!("{name}: no `{at}`"));
        let line = text[..found].matches('\n').count() + 1;
        assert_eq!(diagnostic.span.start.line, line, "{name}: {rendered}");
        assert!(
            diagnostic
                .help
                .as_deref()
                .unwrap_or_default()
                .contains(help),
            "{name}: {rendered}"
        );
    }
}

/// Two databases of one referenced Aurora cluster (two PostgreSQL databases in it) cannot
/// both declare a user of one name: a role is the cluster's, not a database's.
#[test]
fn two_databases_of_one_referenced_cluster_cannot_share_a_user_name() {
    let text = MANY.replacen(
        "    engine_version: \"17.4\"\n    instance_class: db.t4g.medium\n    name: orders\n    master_username: postgres\n",
        "    existing: {cluster_identifier: shop-aurora, name: orders}\n",
        1,
    );
    let errors = pwless::spec::parse_str(Path::new("many.yaml"), &text).unwrap_err();
    let rendered = errors.render();
    assert_eq!(errors.diagnostics.len(), 1, "{rendered}");
    assert!(
        rendered.contains("error: database user `reporting` is also a user of databases.shop, in the same Aurora cluster `shop-aurora`"),
        "{rendered}"
    );
    assert_eq!(errors.diagnostics[0].path, "databases.orders.users[1]");
    // Distinct names in one cluster are fine.
    let text = text.replacen(
        "      - name: reporting          # a user of the orders cluster",
        "      - name: orders_reporting   # a user of the orders cluster",
        1,
    );
    let text = text.replacen(
        "database: orders, db_user: reporting}",
        "database: orders, db_user: orders_reporting}",
        1,
    );
    let stack = stack_from(&text);
    assert_eq!(stack.databases.len(), 2);
}

/// `database:` is the shorthand for `databases: {main: ...}`: the same stack, the same graph,
/// so a one-database stack may move to `databases` without moving anything in its state.
#[test]
fn the_database_shorthand_and_databases_main_are_the_same_stack() {
    let body: String = EXAMPLE
        .lines()
        .skip_while(|line| !line.starts_with("database:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .map(|line| format!("  {line}\n"))
        .collect();
    let long = EXAMPLE.replacen(
        &format!(
            "database:                        # Aurora PostgreSQL, IAM auth always on\n{}",
            body.lines()
                .map(|line| format!("{}\n", &line[2..]))
                .collect::<String>()
        ),
        &format!("databases:\n  main:\n{body}"),
        1,
    );
    assert_ne!(
        long, EXAMPLE,
        "the example's database section was not found"
    );
    let short = stack_from(EXAMPLE);
    let long = stack_from(&long);
    let addresses = |stack: &pwless::spec::Stack| -> Vec<(String, String)> {
        crate::common::graph_of(stack)
            .in_order()
            .map(|resource| {
                (
                    resource.address.clone(),
                    format!("{:?} after {:?}", resource.inputs, resource.depends_on),
                )
            })
            .collect()
    };
    assert_eq!(addresses(&short), addresses(&long));
    // Only where it is declared differs: what diagnostics name.
    assert_eq!(short.databases[0].path, "database");
    assert_eq!(long.databases[0].path, "databases.main");
}

/// The app uses one database: its service account's only one, or the one `app.database`
/// names among its service account's.
#[test]
fn an_app_whose_service_account_has_several_databases_names_one() {
    let with_app = |app: &str| {
        MANY.replacen(
            "private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2]",
            "private_subnet_ids: [subnet-0123456789abcdef1, subnet-0123456789abcdef2]\n    public_subnet_ids: [subnet-0123456789abcdef3, subnet-0123456789abcdef4]",
            1,
        ) + app
    };
    let app = "app: {namespace: analytics, service_account: reports, image: ghcr.io/example/pwless-demo:0.1.0}\n";
    let errors = pwless::spec::parse_str(Path::new("many.yaml"), &with_app(app)).unwrap_err();
    let rendered = errors.render();
    assert_eq!(errors.diagnostics.len(), 1, "{rendered}");
    assert!(
        rendered.contains("error: the app's service account analytics/reports may log in to several databases (shop, orders), and the app uses one")
            && rendered.contains("help: say which with `database: <name>` under `app`"),
        "{rendered}"
    );
    let errors = pwless::spec::parse_str(
        Path::new("many.yaml"),
        &with_app(&app.replacen("image:", "database: billing, image:", 1)),
    )
    .unwrap_err();
    assert_eq!(
        errors.diagnostics[0].path,
        "app.database",
        "{}",
        errors.render()
    );
    let stack = stack_from(&with_app(&app.replacen(
        "image:",
        "database: orders, image:",
        1,
    )));
    assert_eq!(stack.app.unwrap().database, "orders");
    // The app's environment is that database's.
    let stack = stack_from(&with_app(
        &app.replacen(
            "service_account: reports, image:",
            "service_account: web, image:",
            1,
        )
        .replacen("namespace: analytics", "namespace: storefront", 1),
    ));
    assert_eq!(stack.app.as_ref().unwrap().database, "shop");
}
