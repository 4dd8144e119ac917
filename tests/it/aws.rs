//! apply / plan / destroy against the sandbox (moto server, started by scripts/test), checked
//! through the AWS API itself, not through pwless's own state.
//!
//! Each test uses its own stack name, so tests share one moto without seeing each other.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{TempDir, assert_exit, stderr, stdout};

pub use pwless_testing::Moto;

/// `pwless` against a [`Moto`].
pub trait PwlessCommand {
    /// The environment pwless gets: this moto, test credentials, nothing from the developer's.
    fn command(&self, dir: &Path) -> Command;
}

impl PwlessCommand for Moto {
    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_pwless"));
        command
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_REGION", "us-west-2")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE");
        crate::common::offline_ca_bundle(&mut command, dir);
        command
    }
}

/// scripts/moto-proxy.py in front of a moto: records every call pwless makes.
pub(crate) struct Proxy {
    child: std::process::Child,
    port: u16,
}

impl Proxy {
    fn start(moto: &Moto) -> Self {
        Self::with_latency(moto, 0)
    }

    /// Every call delayed by `latency_ms`, as a real cloud would.
    pub(crate) fn with_latency(moto: &Moto, latency_ms: u32) -> Self {
        Self::with_options(moto, &["--latency-ms", &latency_ms.to_string()])
    }

    /// `scripts/moto-proxy.py` with these options (`--delay CreateVpc=11`, ...).
    pub(crate) fn with_options(moto: &Moto, options: &[&str]) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/moto-proxy.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(["--upstream", &moto.endpoint])
            .args(options);
        let (child, port) = crate::common::spawn_listening(command, "scripts/moto-proxy.py");
        Proxy { child, port }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The recorded calls' actions (`CreateVpc`, `GET /clusters/x`, ...).
    fn actions(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|call| call["action"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// The recorded calls: `service`, `action`, `method`, `at`, and `lost: true` for an answer
    /// the proxy lost on purpose (`--lose`).
    pub(crate) fn calls(&self) -> Vec<serde_json::Value> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "GET /_proxy/calls HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .unwrap_or_default();
        serde_json::from_str(body).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an AWS action changes anything.
fn is_mutating(action: &str) -> bool {
    let reads = ["Describe", "Get", "List", "GET "];
    !reads.iter().any(|prefix| action.starts_with(prefix))
}

/// The AWS part of the example stack (no users, access or app), named `name`.
pub(crate) fn aws_stack(name: &str, extra_database: &str) -> String {
    format!(
        "stack: {name}\nregion: us-west-2\ntags: {{team: platform}}\n\
         network: {{cidr: 10.0.0.0/16, availability_zones: 2, nat_gateways: single}}\n\
         cluster:\n  version: \"1.31\"\n  node_group: {{instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}}\n\
         database:\n  engine_version: \"17.4\"\n  instance_class: db.t4g.medium\n  instances: 1\n  name: appdb\n  master_username: postgres\n\
         {extra_database}"
    )
}

/// [`aws_stack`] whose cluster admits the sandbox's caller (`cluster.admins`): a stack with
/// users reaches its database through the relay in the cluster, a Kubernetes object.
pub(crate) fn admin_stack(name: &str, extra_database: &str) -> String {
    aws_stack(name, extra_database).replacen(
        "max_size: 3}\n",
        "max_size: 3}\n  admins: [\"arn:aws:iam::123456789012:user/moto\"]\n",
        1,
    )
}

/// The database reached as on AWS, through the cluster: the sandbox PostgreSQL and a
/// Kubernetes API stand-in whose port-forwards to the relay reach it. pwless gets neither the
/// database's address nor a name override.
struct ThroughCluster {
    pg: crate::postgres::LocalPostgres,
    kube: crate::kubernetes::KubeStandin,
}

impl ThroughCluster {
    fn start(stack: &Stack, checking_tokens: bool) -> Self {
        let test = stack
            .name
            .rsplit('-')
            .next()
            .unwrap_or("cluster")
            .to_string();
        let pg = if checking_tokens {
            crate::postgres::LocalPostgres::checking_tokens(&test, &stack.moto)
        } else {
            crate::postgres::LocalPostgres::start(&test)
        };
        let kube = crate::kubernetes::KubeStandin::start(
            &test,
            &stack.name,
            &stack.moto,
            "testing",
            "testing",
            pg.var("PWLESS_SANDBOX_DB_ADDRESS"),
            None,
        );
        ThroughCluster { pg, kube }
    }

    /// `command` with the sandboxes' environment, the cluster path.
    fn apply_to(&self, command: &mut Command) {
        self.kube.cluster_path(&self.pg, command);
    }
}

struct Stack {
    name: String,
    dir: TempDir,
    file: PathBuf,
    moto: Moto,
}

impl Stack {
    fn new(test: &str, extra_database: &str) -> Self {
        Self::with_text(test, |name| aws_stack(name, extra_database))
    }

    /// A stack whose text `text` makes from its name.
    fn with_text(test: &str, text: impl FnOnce(&str) -> String) -> Self {
        let name = format!("t{}-{test}", std::process::id());
        let dir = TempDir::new(&name);
        let file = dir.write("stack.yaml", &text(&name));
        Stack {
            name,
            dir,
            file,
            moto: Moto::start(),
        }
    }

    /// `pwless <args[0]> -f stack.yaml <args[1..]>` against this test's moto.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.moto.command(self.dir.path());
        command
            .arg(args[0])
            .args(["-f", self.file.to_str().unwrap()])
            .args(&args[1..]);
        command
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    fn state_path(&self) -> PathBuf {
        self.dir
            .path()
            .join("state")
            .join(format!("{}.json", self.name))
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub iam: aws_sdk_iam::Client,
    pub eks: aws_sdk_eks::Client,
    pub rds: aws_sdk_rds::Client,
    /// Path-style, as moto serves no bucket subdomains.
    pub s3: aws_sdk_s3::Client,
}

pub(crate) async fn clients(moto: &Moto) -> Clients {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-west-2"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "pwless-tests",
        ))
        .load()
        .await;
    Clients {
        ec2: aws_sdk_ec2::Client::new(&config),
        iam: aws_sdk_iam::Client::new(&config),
        eks: aws_sdk_eks::Client::new(&config),
        rds: aws_sdk_rds::Client::new(&config),
        s3: aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        ),
    }
}

fn stack_filter(stack: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name("tag:pwless:stack")
        .values(stack)
        .build()
}

/// Counts of the stack's live resources, by kind, as AWS reports them.
pub(crate) async fn live(clients: &Clients, stack: &str) -> Vec<(&'static str, usize)> {
    let ec2 = &clients.ec2;
    let filter = || stack_filter(stack);
    let vpcs = ec2
        .describe_vpcs()
        .filters(filter())
        .send()
        .await
        .unwrap()
        .vpcs()
        .len();
    let subnets = ec2
        .describe_subnets()
        .filters(filter())
        .send()
        .await
        .unwrap()
        .subnets()
        .len();
    let gateways = ec2
        .describe_internet_gateways()
        .filters(filter())
        .send()
        .await
        .unwrap()
        .internet_gateways()
        .len();
    let tables = ec2
        .describe_route_tables()
        .filters(filter())
        .send()
        .await
        .unwrap()
        .route_tables()
        .len();
    let groups = ec2
        .describe_security_groups()
        .filters(filter())
        .send()
        .await
        .unwrap()
        .security_groups()
        .len();
    let addresses = ec2
        .describe_addresses()
        .filters(filter())
        .send()
        .await
        .unwrap()
        .addresses()
        .len();
    // moto ignores tag filters on this call: check the tags here.
    let nats = ec2
        .describe_nat_gateways()
        .send()
        .await
        .unwrap()
        .nat_gateways()
        .iter()
        .filter(|gateway| {
            gateway
                .tags()
                .iter()
                .any(|tag| tag.key() == Some("pwless:stack") && tag.value() == Some(stack))
        })
        .filter(|gateway| gateway.state().map(|s| s.as_str()) != Some("deleted"))
        .count();
    let roles = clients
        .iam
        .list_roles()
        .send()
        .await
        .unwrap()
        .roles()
        .iter()
        .filter(|role| role.role_name().starts_with(&format!("{stack}-")))
        .count();
    let mut oidc = 0;
    for provider in clients
        .iam
        .list_open_id_connect_providers()
        .send()
        .await
        .unwrap()
        .open_id_connect_provider_list()
    {
        let arn = provider.arn().unwrap();
        let details = clients
            .iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(arn)
            .send()
            .await
            .unwrap();
        if details
            .tags()
            .iter()
            .any(|tag| tag.key() == "pwless:stack" && tag.value() == stack)
        {
            oidc += 1;
        }
    }
    let clusters = clients
        .eks
        .list_clusters()
        .send()
        .await
        .unwrap()
        .clusters()
        .iter()
        .filter(|name| *name == stack)
        .count();
    let databases = clients
        .rds
        .describe_db_clusters()
        .send()
        .await
        .unwrap()
        .db_clusters()
        .iter()
        .filter(|c| c.db_cluster_identifier() == Some(stack))
        .count();
    let instances = clients
        .rds
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
        .iter()
        .filter(|instance| instance.db_cluster_identifier() == Some(stack))
        .count();
    vec![
        ("vpc", vpcs),
        ("subnet", subnets),
        ("internet gateway", gateways),
        ("route table", tables),
        ("security group", groups),
        ("elastic ip", addresses),
        ("nat gateway", nats),
        ("iam role", roles),
        ("oidc provider", oidc),
        ("eks cluster", clusters),
        ("aurora cluster", databases),
        ("aurora instance", instances),
    ]
}

/// What a full apply of `aws_stack` leaves: one of each, four subnets, three route tables
/// (public + one private per zone), two roles.
pub(crate) const EXPECTED: &[(&str, usize)] = &[
    ("vpc", 1),
    ("subnet", 4),
    ("internet gateway", 1),
    ("route table", 3),
    ("security group", 1),
    ("elastic ip", 1),
    ("nat gateway", 1),
    ("iam role", 2),
    ("oidc provider", 1),
    ("eks cluster", 1),
    ("aurora cluster", 1),
    ("aurora instance", 1),
];

pub(crate) fn nothing(counts: &[(&'static str, usize)]) -> bool {
    counts.iter().all(|(_, count)| *count == 0)
}

#[test]
fn apply_noop_and_destroy_are_checked_through_the_aws_api() {
    let stack = Stack::new("cycle", "  final_snapshot: false\n");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));

    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Apply complete. Resources: 30 added, 0 changed, 0 destroyed."),
        "{}",
        stderr(&output)
    );
    assert_eq!(rt.block_on(live(&clients, &stack.name)), EXPECTED);
    // Progress names each resource's id once known; apply ends with the outputs, as
    // `pwless output` prints them.
    let progress = stderr(&output);
    assert!(
        progress
            .lines()
            .any(|line| line.starts_with("aws_vpc.main: created after ")
                && line.contains(" [id=vpc-")),
        "{progress}"
    );
    let printed = stdout(&output);
    let outputs = stdout(&stack.run(&["output"]));
    assert!(
        printed.ends_with(&format!("\nOutputs:\n\n{outputs}")),
        "{printed}"
    );
    assert!(outputs.contains("vpcId"), "{outputs}");

    rt.block_on(async {
        let ec2 = &clients.ec2;
        let vpc = &ec2
            .describe_vpcs()
            .filters(stack_filter(&stack.name))
            .send()
            .await
            .unwrap()
            .vpcs()[0]
            .clone();
        assert_eq!(vpc.cidr_block(), Some("10.0.0.0/16"));
        let vpc_id = vpc.vpc_id().unwrap();
        let hostnames = ec2
            .describe_vpc_attribute()
            .vpc_id(vpc_id)
            .attribute(aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames)
            .send()
            .await
            .unwrap();
        assert_eq!(
            hostnames.enable_dns_hostnames().and_then(|v| v.value()),
            Some(true)
        );
        let subnets = ec2
            .describe_subnets()
            .filters(stack_filter(&stack.name))
            .send()
            .await
            .unwrap();
        let mut zones: Vec<&str> = subnets
            .subnets()
            .iter()
            .filter_map(|s| s.availability_zone())
            .collect();
        zones.sort_unstable();
        assert_eq!(
            zones,
            ["us-west-2a", "us-west-2a", "us-west-2b", "us-west-2b"]
        );

        // Database ingress: 5432 from the two private blocks, nothing else, never 0.0.0.0/0.
        let group = &ec2
            .describe_security_groups()
            .filters(stack_filter(&stack.name))
            .send()
            .await
            .unwrap()
            .security_groups()[0]
            .clone();
        let mut sources: Vec<(i32, String)> = group
            .ip_permissions()
            .iter()
            .flat_map(|permission| {
                permission.ip_ranges().iter().map(move |range| {
                    (
                        permission.from_port().unwrap_or(-1),
                        range.cidr_ip().unwrap_or("").to_string(),
                    )
                })
            })
            .collect();
        sources.sort();
        assert_eq!(
            sources,
            [
                (5432, "10.0.128.0/18".to_string()),
                (5432, "10.0.192.0/18".to_string())
            ]
        );

        let cluster = clients
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(&stack.name)
            .send()
            .await
            .unwrap()
            .db_clusters()[0]
            .clone();
        assert_eq!(cluster.iam_database_authentication_enabled(), Some(true));
        assert!(
            cluster.master_user_secret().is_some(),
            "the master password is managed by RDS"
        );
        assert!(
            cluster
                .db_cluster_resource_id()
                .unwrap()
                .starts_with("cluster-")
        );
        let eks = clients
            .eks
            .describe_cluster()
            .name(&stack.name)
            .send()
            .await
            .unwrap();
        let eks = eks.cluster().unwrap();
        assert_eq!(eks.version(), Some("1.31"));
        // (moto does not echo accessConfig, so the API authentication mode is not checked here.)
    });

    // The recorded outputs are what AWS reports.
    let output = stack.run(&["output", "databaseClusterResourceId"]);
    let resource_id = stdout(&output).trim().to_string();
    let reported = rt.block_on(async {
        clients
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(&stack.name)
            .send()
            .await
            .unwrap()
            .db_clusters()[0]
            .db_cluster_resource_id()
            .unwrap()
            .to_string()
    });
    assert_eq!(resource_id, reported);

    // A second plan, refreshed from AWS, changes nothing; so does a second apply.
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_exit(&output, 0);
    // The second apply goes through a recording proxy: it may read, never change.
    let proxy = Proxy::start(&stack.moto);
    let output = stack
        .command(&["apply", "--auto-approve"])
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", proxy.port),
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).starts_with("No changes."),
        "{}",
        stdout(&output)
    );
    let actions = proxy.actions();
    assert!(
        actions.len() >= 30,
        "the refresh reads every resource: {actions:?}"
    );
    let mutating: Vec<&String> = actions
        .iter()
        .filter(|action| is_mutating(action))
        .collect();
    assert!(
        mutating.is_empty(),
        "a no-op apply made changing calls: {mutating:?}"
    );
    drop(proxy);

    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let left = rt.block_on(live(&clients, &stack.name));
    assert!(nothing(&left), "left behind: {left:?}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stack.state_path()).unwrap()).unwrap();
    assert_eq!(state["resources"], serde_json::json!([]));
    assert_eq!(state["pending_operations"], serde_json::json!([]));
}

#[test]
fn drift_outside_pwless_is_planned_and_repaired() {
    let stack = Stack::new("drift", "  final_snapshot: false\n");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));
    assert_eq!(
        stack.run(&["apply", "--auto-approve"]).status.code(),
        Some(0)
    );

    rt.block_on(async {
        // Someone detaches a node policy and retags the VPC by hand.
        clients
            .iam
            .detach_role_policy()
            .role_name(format!("{}-eks-node", stack.name))
            .policy_arn("arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy")
            .send()
            .await
            .unwrap();
        let vpc = clients
            .ec2
            .describe_vpcs()
            .filters(stack_filter(&stack.name))
            .send()
            .await
            .unwrap()
            .vpcs()[0]
            .vpc_id()
            .unwrap()
            .to_string();
        clients
            .ec2
            .create_tags()
            .resources(vpc)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key("team")
                    .value("someone-else")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        // And turns off the export of IAM authentication errors pwless turned on.
        clients
            .rds
            .modify_db_cluster()
            .db_cluster_identifier(&stack.name)
            .cloudwatch_logs_export_configuration(
                aws_sdk_rds::types::CloudwatchLogsExportConfiguration::builder()
                    .disable_log_types("iam-db-auth-error")
                    .build(),
            )
            .apply_immediately(true)
            .send()
            .await
            .unwrap();
    });
    let exports = || {
        rt.block_on(
            clients
                .rds
                .describe_db_clusters()
                .db_cluster_identifier(&stack.name)
                .send(),
        )
        .unwrap()
        .db_clusters()[0]
            .enabled_cloudwatch_logs_exports()
            .to_vec()
    };
    assert!(exports().is_empty());

    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let plan = stdout(&output);
    assert!(
        plan.contains("~ aws_rds_cluster.main  # it was changed outside pwless")
            && plan.contains("~ iam_auth_error_log"),
        "{plan}"
    );
    assert!(plan.contains("+ aws_iam_role_policy_attachment.eks_node[AmazonEKS_CNI_Policy]  # it was deleted outside pwless"), "{plan}");
    assert!(
        plan.contains("~ aws_vpc.main  # it was changed outside pwless"),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 1 to add, 2 to change, 0 to destroy."),
        "{plan}"
    );

    // --refresh=false trusts the state: no drift seen.
    let output = stack.run(&["plan", "--refresh=false", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(0));

    assert_eq!(
        stack.run(&["apply", "--auto-approve"]).status.code(),
        Some(0)
    );
    assert_eq!(exports(), ["iam-db-auth-error"]);
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(
        stack.run(&["destroy", "--auto-approve"]).status.code(),
        Some(0)
    );
}

/// Waits until the state file's serial reaches `serial` (or the process ends).
fn wait_for_serial(path: &Path, serial: u64, child: &mut std::process::Child) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if let Ok(bytes) = std::fs::read(path)
            && let Ok(state) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && state["serial"].as_u64().unwrap_or(0) >= serial
        {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::yield_now();
    }
    panic!("the apply made no progress");
}

#[test]
fn an_apply_killed_at_any_point_converges_without_duplicates_or_orphans() {
    let stack = Stack::new("kill", "  final_snapshot: false\n");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));
    // Kill points spread over the run: each write is one serial (a pending op or a result).
    for kill_at in [3u64, 9, 16, 24, 33, 41, 50] {
        let mut child = stack
            .command(&["apply", "--auto-approve"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let reached = wait_for_serial(&stack.state_path(), kill_at, &mut child);
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        if !reached {
            break; // this run finished before the kill point
        }
    }
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        rt.block_on(live(&clients, &stack.name)),
        EXPECTED,
        "duplicates or gaps after the kills"
    );
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let state = std::fs::read_to_string(stack.state_path()).unwrap();
    assert!(state.contains("\"pending_operations\": []"));

    assert_eq!(
        stack.run(&["destroy", "--auto-approve"]).status.code(),
        Some(0)
    );
    let left = rt.block_on(live(&clients, &stack.name));
    assert!(nothing(&left), "orphans: {left:?}");
}

#[test]
fn answers_lost_after_creates_took_effect_neither_duplicate_nor_orphan() {
    // Lost answers (the call takes effect, the caller hears nothing) on creates: one run left
    // two orphaned Elastic IPs (the SDK sent AllocateAddress again), another never converged
    // (DBInstanceAlreadyExists for an instance pwless itself had made).
    let stack = Stack::new("lost", "  final_snapshot: false\n");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));
    let proxy = Proxy::with_options(
        &stack.moto,
        &[
            "--lose",
            "AllocateAddress=1",
            "--lose",
            "CreateVpc=1",
            "--lose",
            "CreateSubnet=2",
            "--lose",
            "CreateRouteTable=1",
            "--lose",
            "CreateDBInstance=1",
            "--lose",
            "CreateRole=1",
            "--lose",
            "CreateDBSubnetGroup=1",
        ],
    );
    let output = stack
        .command(&["apply", "--auto-approve"])
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    // One run: each lost answer is followed by a look for what the call made.
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lost: Vec<String> = proxy
        .calls()
        .iter()
        .filter(|call| call["lost"] == true)
        .map(|call| call["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(lost.len(), 8, "every planned loss happened: {lost:?}");
    assert_eq!(
        rt.block_on(live(&clients, &stack.name)),
        EXPECTED,
        "duplicates or gaps after lost answers"
    );
    drop(proxy);
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert_eq!(
        stack.run(&["destroy", "--auto-approve"]).status.code(),
        Some(0)
    );
    let left = rt.block_on(live(&clients, &stack.name));
    assert!(nothing(&left), "orphans: {left:?}");
}

#[test]
fn runs_through_throttling_errors_and_lost_answers_converge_without_duplicates_or_orphans() {
    // AWS on a bad day, seeded: 15 % of calls throttled, 5 % answered 500 without effect, 15 %
    // of changing calls carried out with their answer lost. (Measured 2026-11-29 through such
    // a proxy: 2 runs of 4 were clean; one left two orphaned Elastic IPs, one never converged.)
    // benches/faults.rs runs more seeds.
    for seed in ["1", "2"] {
        let stack = Stack::new(&format!("faults{seed}"), "  final_snapshot: false\n");
        let rt = runtime();
        let clients = rt.block_on(clients(&stack.moto));
        let proxy = Proxy::with_options(
            &stack.moto,
            &[
                "--seed",
                seed,
                "--throttle-rate",
                "0.15",
                "--error-rate",
                "0.05",
                "--lose-rate",
                "0.15",
            ],
        );
        let through_faults = |args: &[&str]| {
            stack
                .command(args)
                .env("AWS_ENDPOINT_URL", proxy.endpoint())
                .stdin(Stdio::null())
                .output()
                .unwrap()
        };
        let converges = |args: &[&str]| {
            let mut errors = String::new();
            for _ in 0..2 {
                let output = through_faults(args);
                if output.status.code() == Some(0) {
                    return;
                }
                errors.push_str(&stderr(&output));
            }
            panic!("seed {seed}: {args:?} did not converge in two runs:\n{errors}");
        };
        converges(&["apply", "--auto-approve"]);
        assert_eq!(
            rt.block_on(live(&clients, &stack.name)),
            EXPECTED,
            "seed {seed}: duplicates or gaps"
        );
        let output = stack.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "seed {seed}: {}",
            stdout(&output)
        );
        converges(&["destroy", "--auto-approve"]);
        let left = rt.block_on(live(&clients, &stack.name));
        assert!(nothing(&left), "seed {seed}: orphans: {left:?}");
        let faults = proxy
            .calls()
            .iter()
            .filter(|call| call.get("fault").is_some())
            .count();
        assert!(
            faults > 10,
            "seed {seed}: only {faults} faults were injected"
        );
    }
}

#[test]
fn a_resource_of_the_same_name_made_outside_the_stack_is_never_adopted() {
    // Crash recovery and "already exists" answers look resources up by their deterministic
    // names: a role someone else made under the name pwless would use must be refused, not
    // taken over (its trust would be rewritten).
    let stack = Stack::new("owner", "  final_snapshot: false\n");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));
    let name = format!("{}-eks-cluster", stack.name);
    rt.block_on(
        clients
            .iam
            .create_role()
            .role_name(&name)
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send(),
    )
    .unwrap();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!(
            "IAM role {name} already exists and was not made by pwless"
        )),
        "{}",
        stderr(&output)
    );
    let trust = rt.block_on(async {
        clients
            .iam
            .get_role()
            .role_name(&name)
            .send()
            .await
            .unwrap()
            .role()
            .unwrap()
            .assume_role_policy_document()
            .unwrap()
            .to_string()
    });
    assert!(
        trust.contains("ec2.amazonaws.com"),
        "its trust was left alone: {trust}"
    );
    assert!(!trust.contains("eks.amazonaws.com"), "{trust}");
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Destroy left the other role alone too: it is still there, for its owner to remove.
    rt.block_on(clients.iam.delete_role().role_name(&name).send())
        .expect("the role made outside the stack is still there");
    let left = rt.block_on(live(&clients, &stack.name));
    assert!(nothing(&left), "orphans: {left:?}");
}

#[test]
fn a_master_password_from_the_environment_reaches_neither_state_nor_output() {
    const PASSWORD: &str = "Sup3r-Secret-Value-42";
    let stack = Stack::new(
        "secret",
        "  master_password: {env: PWLESS_IT_MASTER_PASSWORD}\n  final_snapshot: false\n",
    );
    let run = |args: &[&str]| {
        stack
            .command(args)
            .env("PWLESS_IT_MASTER_PASSWORD", PASSWORD)
            .output()
            .unwrap()
    };
    // Without the variable set, apply fails before creating the cluster, saying which variable.
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("environment variable PWLESS_IT_MASTER_PASSWORD"),
        "{}",
        stderr(&output)
    );

    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let mut seen = String::new();
    seen.push_str(&stdout(&output));
    seen.push_str(&stderr(&output));
    for args in [
        &["plan"][..],
        &["output"][..],
        &["destroy", "--auto-approve"][..],
    ] {
        let output = run(args);
        seen.push_str(&stdout(&output));
        seen.push_str(&stderr(&output));
    }
    assert!(!seen.contains(PASSWORD), "the password was printed");
    for entry in std::fs::read_dir(stack.state_path().parent().unwrap())
        .unwrap()
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(
            !text.contains(PASSWORD),
            "{} holds the password",
            entry.path().display()
        );
    }
}

#[test]
fn apply_without_a_terminal_or_auto_approve_changes_nothing() {
    let stack = Stack::new("confirm", "");
    let output = stack
        .command(&["apply"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("not applying without confirmation"),
        "{}",
        stderr(&output)
    );
    let rt = runtime();
    let left = rt.block_on(async { live(&clients(&stack.moto).await, &stack.name).await });
    assert!(nothing(&left), "{left:?}");
}

#[test]
fn a_refresh_without_credentials_says_so_in_plain_words() {
    let stack = Stack::new("nocreds", "  final_snapshot: false\n");
    assert_eq!(
        stack.run(&["apply", "--auto-approve"]).status.code(),
        Some(0)
    );
    let output = stack
        .command(&["plan"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("no usable AWS credentials"), "{message}");
    assert!(!message.contains("DispatchFailure"), "{message}");
    // One cause, one message, one line: the 30 resources are not each refused for it (the
    // credentials are resolved once, before any call).
    assert_eq!(
        message.matches("no usable AWS credentials").count(),
        1,
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");
    assert!(
        message.contains("Environment") && message.ends_with("nothing was changed\n"),
        "{message}"
    );
    assert_eq!(
        stack.run(&["destroy", "--auto-approve"]).status.code(),
        Some(0)
    );
}

/// An apply of `stack` slowed by 300 ms per call (so it can be interrupted in the middle),
/// waited for until it has saved its sixth state; stderr piped. Keep the proxy alive.
fn slow_apply_midway(stack: &Stack) -> (Proxy, std::process::Child) {
    let proxy = Proxy::with_latency(&stack.moto, 300);
    let endpoint = format!("http://127.0.0.1:{}", proxy.port);
    let mut child = stack
        .command(&["apply", "--auto-approve"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for_serial(&stack.state_path(), 6, &mut child),
        "the apply ended before the interrupt"
    );
    (proxy, child)
}

#[test]
fn the_first_ctrl_c_finishes_what_is_in_flight_and_saves() {
    let stack = Stack::new("sigint", "  final_snapshot: false\n");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));
    let (proxy, child) = slow_apply_midway(&stack);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    let message = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains("Interrupted: starting nothing new"),
        "{message}"
    );
    assert!(message.contains("interrupted"), "{message}");

    // What was in flight finished and was recorded: nothing is pending, part is done.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stack.state_path()).unwrap()).unwrap();
    assert_eq!(
        state["pending_operations"],
        serde_json::json!([]),
        "in-flight operations were not finished"
    );
    let recorded = state["resources"].as_array().unwrap().len();
    assert!(
        recorded > 0 && recorded < 30,
        "{recorded} resources recorded"
    );

    drop(proxy);
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(rt.block_on(live(&clients, &stack.name)), EXPECTED);
    assert_eq!(
        stack.run(&["destroy", "--auto-approve"]).status.code(),
        Some(0)
    );
}

#[test]
fn a_second_ctrl_c_leaves_what_is_in_flight_pending_and_lets_go_of_the_lock() {
    // Before, the second Ctrl-C exited from a task: no destructor ran, so the lock was never
    // let go cleanly (an S3 lock stayed held until its lease ran out). (Also a regression test
    // for a second press that came after what was in flight had finished: exit 1, not 130.)
    let stack = Stack::new("sigint2", "  final_snapshot: false\n");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));
    let (proxy, mut child) = slow_apply_midway(&stack);
    // Read stderr as it comes: the second press must follow the first one's handling (two
    // signals before it could merge into one).
    let (lines, said) = std::sync::mpsc::channel::<String>();
    let stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stderr_pipe)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    let interrupt = || {
        assert!(
            Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    interrupt();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|line: &String| line.contains("Interrupted: starting nothing new"))
    {
        seen.push(
            said.recv_timeout(std::time::Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no word of the first Ctrl-C: {seen:?}")),
        );
    }
    interrupt();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    seen.extend(said.try_iter());
    let message = seen.join("\n");
    assert_eq!(status.code(), Some(130), "{message}");
    assert!(message.contains("stopped by a second Ctrl-C"), "{message}");
    assert!(
        message.contains("in flight, left pending for the next run to settle"),
        "{message}"
    );
    // The lock was let go on the way out: its file is gone.
    let lock = stack.state_path().with_extension("json.lock");
    assert!(!lock.exists(), "{} is still there", lock.display());

    // The next run settles what was left pending and converges, with no duplicates.
    drop(proxy);
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(rt.block_on(live(&clients, &stack.name)), EXPECTED);
    assert_eq!(
        stack.run(&["destroy", "--auto-approve"]).status.code(),
        Some(0)
    );
}

#[test]
fn on_a_terminal_apply_asks_and_only_yes_applies() {
    let stack = Stack::new("tty", "  final_snapshot: false\n");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));
    // `script` runs the command on a pseudo-terminal and feeds it our stdin.
    let in_terminal = |answer: &str| {
        let command = format!(
            "{} apply -f {}",
            env!("CARGO_BIN_EXE_pwless"),
            stack.file.display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .current_dir(stack.dir.path())
            .env("AWS_ENDPOINT_URL", &stack.moto.endpoint)
            .env("AWS_REGION", "us-west-2")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("NO_COLOR", "1")
            .env_remove("AWS_SESSION_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let screen = in_terminal("no\n");
    assert!(screen.contains("Only `yes` is accepted"), "{screen}");
    assert!(screen.contains("Nothing was changed."), "{screen}");
    assert!(nothing(&rt.block_on(live(&clients, &stack.name))));

    let screen = in_terminal("yes\n");
    assert!(screen.contains("Apply complete."), "{screen}");
    assert_eq!(rt.block_on(live(&clients, &stack.name)), EXPECTED);
    assert_eq!(
        stack.run(&["destroy", "--auto-approve"]).status.code(),
        Some(0)
    );
}

/// A superuser session over the sandbox's Unix socket, for looking at the catalogs.
pub(crate) async fn superuser(pg: &crate::postgres::LocalPostgres) -> tokio_postgres::Client {
    superuser_in(pg, "appdb").await
}

/// [`superuser`], in another database of the sandbox's cluster.
pub(crate) async fn superuser_in(
    pg: &crate::postgres::LocalPostgres,
    database: &str,
) -> tokio_postgres::Client {
    let port = pg
        .var("PWLESS_SANDBOX_DB_ADDRESS")
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    let dsn = format!(
        "host={} port={port} user=postgres dbname={database}",
        pg.var("PWLESS_SANDBOX_PG_SOCKET_DIR")
    );
    let (client, connection) = tokio_postgres::connect(&dsn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

#[test]
fn database_users_are_iam_only_with_exactly_their_privileges() {
    let users = "  final_snapshot: false\n  users:\n    - {name: app_user, privileges: [connect, usage, create, select, insert]}\n    - {name: reader, privileges: [connect, usage, select]}\n";
    let stack = Stack::with_text("users", |name| admin_stack(name, users));
    let sandboxes = ThroughCluster::start(&stack, true);
    let pg = &sandboxes.pg;
    let run = |args: &[&str]| {
        let mut command = stack.command(args);
        sandboxes.apply_to(&mut command);
        command.stdin(Stdio::null()).output().unwrap()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("postgresql_role.user[app_user]: created"),
        "{}",
        stderr(&output)
    );

    rt.block_on(async {
        let su = superuser(pg).await;
        for user in ["app_user", "reader"] {
            let row = su
                .query_one("select rolcanlogin, rolpassword is null, rolsuper, rolcreaterole, rolcreatedb, pg_has_role(oid, 'rds_iam', 'member') from pg_authid where rolname = $1", &[&user])
                .await
                .unwrap();
            let flags: (bool, bool, bool, bool, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
            assert_eq!(flags, (true, true, false, false, false, true), "{user}: login, no password, no super/createrole/createdb, in rds_iam");
        }
        let admin_in_rds_iam: bool = su.query_one("select pg_has_role('admin', 'rds_iam', 'member')", &[]).await.unwrap().get(0);
        assert!(!admin_in_rds_iam, "the master user never gets rds_iam");

        // A table the master creates later: the default privileges apply to it.
        su.batch_execute("SET ROLE admin; CREATE TABLE public.messages (id int); CREATE SCHEMA other; CREATE TABLE other.secrets (x int); RESET ROLE;").await.unwrap();
        let can = |user: &'static str, privilege: &'static str, table: &'static str| {
            let su = &su;
            async move { su.query_one("select has_table_privilege($1, $3, $2)", &[&user, &privilege, &table]).await.unwrap().get::<_, bool>(0) }
        };
        assert!(can("app_user", "SELECT", "public.messages").await && can("app_user", "INSERT", "public.messages").await);
        assert!(!can("app_user", "DELETE", "public.messages").await, "only the listed privileges");
        assert!(can("reader", "SELECT", "public.messages").await && !can("reader", "INSERT", "public.messages").await);
        let other: bool = su.query_one("select has_schema_privilege('app_user', 'other', 'USAGE')", &[]).await.unwrap().get(0);
        assert!(!other, "no access to other schemas");
    });

    // Revoke a privilege out of band: the plan restores it.
    rt.block_on(async {
        superuser(pg).await.batch_execute("SET ROLE admin; ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE INSERT ON TABLES FROM app_user; RESET ROLE;").await.unwrap();
    });
    crate::common::assert_plans_one_drift_repair(
        &run(&["plan", "--detailed-exitcode"]),
        "postgresql_grant.user[app_user]",
    );
    assert_eq!(run(&["apply", "--auto-approve"]).status.code(), Some(0));
    assert_eq!(run(&["plan", "--detailed-exitcode"]).status.code(), Some(0));

    // A user moved to another schema keeps nothing on the old one. Before, the update revoked
    // and granted on the new schema only: SELECT on public's tables stayed.
    std::fs::write(
        &stack.file,
        admin_stack(
            &stack.name,
            &users.replace(
                "{name: reader, privileges: [connect, usage, select]}",
                "{name: reader, privileges: [connect, usage, select], schema: other}",
            ),
        ),
    )
    .unwrap();
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    rt.block_on(async {
        let su = superuser(pg).await;
        let reader = |check: &'static str| {
            let su = &su;
            async move { su.query_one(check, &[]).await.unwrap().get::<_, bool>(0) }
        };
        assert!(reader("select has_table_privilege('reader', 'other.secrets', 'SELECT')").await);
        assert!(!reader("select has_table_privilege('reader', 'public.messages', 'SELECT')").await);
        // Nor on public's future tables (its default privileges there are gone too).
        su.batch_execute("SET ROLE admin; CREATE TABLE public.made_later (id int); RESET ROLE;")
            .await
            .unwrap();
        assert!(
            !reader("select has_table_privilege('reader', 'public.made_later', 'SELECT')").await
        );
    });
    assert_eq!(run(&["plan", "--detailed-exitcode"]).status.code(), Some(0));

    // `pwless connect`: psql over verified TLS with a fresh token. These stacks have no
    // `access`: the test credentials (moto's user, no IAM policy) may not rds-db:connect, so the
    // sandbox refuses the token as RDS would — after the TLS handshake succeeded; with another
    // CA it fails at certificate verification instead.
    let output = run(&["connect", "--user", "app_user", "--", "-c", "select 1"]);
    assert_ne!(output.status.code(), Some(0));
    let message = stderr(&output);
    assert!(
        message.contains("PAM authentication failed for user \"app_user\""),
        "{message}"
    );
    let mut other_ca = stack.command(&["connect", "--user", "app_user", "--", "-c", "select 1"]);
    sandboxes.apply_to(&mut other_ca);
    other_ca.env("PWLESS_DB_CA_BUNDLE", pg.var("PWLESS_SANDBOX_PG_OTHER_CA"));
    let output = other_ca.stdin(Stdio::null()).output().unwrap();
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("certificate verify failed"),
        "{}",
        stderr(&output)
    );

    // A table the application made survives its role's removal (reassigned to the master),
    // when the users leave the stack while the cluster stays. (Destroy drops no role: the
    // users go with their cluster, which the sandbox PostgreSQL outlives.)
    rt.block_on(async {
        superuser(pg)
            .await
            .batch_execute(
                "SET ROLE app_user; CREATE TABLE public.made_by_app (id int); RESET ROLE;",
            )
            .await
            .unwrap();
    });
    std::fs::write(
        &stack.file,
        admin_stack(&stack.name, "  final_snapshot: false\n"),
    )
    .unwrap();
    // app_user owns a table: its removal needs consent (reader, owning none, does not).
    let output = run(&[
        "apply",
        "--auto-approve",
        "--allow-destroy",
        "postgresql_role.user[app_user]",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The users were dropped through the relay, which went after them.
    let log = stderr(&output);
    let position = crate::common::position_in(&log);
    assert!(
        position("postgresql_role.user[app_user]: destroyed")
            < position("kubernetes_db_relay.pwless/db-relay: destroyed")
    );
    rt.block_on(async {
        let su = superuser(pg).await;
        let roles: i64 = su
            .query_one(
                "select count(*) from pg_roles where rolname in ('app_user', 'reader')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(roles, 0, "the roles are gone");
        let owner: String = su
            .query_one(
                "select tableowner::text from pg_tables where tablename = 'made_by_app'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(owner, "admin");
        let master: i64 = su
            .query_one("select count(*) from pg_roles where rolname = 'admin'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(master, 1, "nothing pwless did not create was touched");
    });
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Issue 17, item 4: a user's table privileges hold on every table of its schema that the
/// master or another of the stack's users owns, tables created later included. Before, a table
/// `app_user` created was planned as `~ table_privileges = [] -> ["select"]` on every plan,
/// apply never cleared it, and `reader` never got SELECT on it.
#[test]
fn tables_an_application_creates_get_every_users_declared_privileges_and_plans_converge() {
    let users = "  final_snapshot: false\n  users:\n    - {name: app_user, privileges: [connect, usage, create, select, insert]}\n    - {name: reader, privileges: [connect, usage, select]}\n";
    let stack = Stack::with_text("apptables", |name| admin_stack(name, users));
    let sandboxes = ThroughCluster::start(&stack, false);
    let pg = &sandboxes.pg;
    let run = |args: &[&str]| {
        let mut command = stack.command(args);
        sandboxes.apply_to(&mut command);
        command.stdin(Stdio::null()).output().unwrap()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let check = |query: &'static str| {
        rt.block_on(async {
            superuser(pg)
                .await
                .query_one(query, &[])
                .await
                .unwrap()
                .get::<_, bool>(0)
        })
    };
    let as_role = |sql: &'static str| {
        rt.block_on(async { superuser(pg).await.batch_execute(sql).await.unwrap() })
    };

    // The application creates its table, as a migration would.
    as_role("SET ROLE app_user; CREATE TABLE public.orders (id int); RESET ROLE;");
    let output = run(&["plan", "--detailed-exitcode"]);
    assert_exit(&output, 0);
    assert!(check(
        "select has_table_privilege('reader', 'public.orders', 'SELECT')"
    ));
    assert!(
        !check("select has_table_privilege('reader', 'public.orders', 'INSERT')"),
        "only the listed privileges"
    );
    // The master acted for app_user only while the grant ran: a lasting membership would make
    // it an indirect member of rds_iam, and RDS would refuse its password.
    assert!(!check("select pg_has_role('admin', 'app_user', 'USAGE')"));
    assert!(!check("select pg_has_role('admin', 'rds_iam', 'USAGE')"));

    // The owner takes the privilege back out of band: the plan repairs it, and converges.
    as_role("SET ROLE app_user; REVOKE SELECT ON public.orders FROM reader; RESET ROLE;");
    crate::common::assert_plans_one_drift_repair(
        &run(&["plan", "--detailed-exitcode"]),
        "postgresql_grant.user[reader]",
    );
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(check(
        "select has_table_privilege('reader', 'public.orders', 'SELECT')"
    ));
    assert_eq!(run(&["plan", "--detailed-exitcode"]).status.code(), Some(0));
    assert!(!check("select pg_has_role('admin', 'app_user', 'USAGE')"));

    // A table of a role pwless does not manage is no part of the stack: no drift, no grant.
    as_role(
        "CREATE ROLE outsider NOLOGIN; GRANT USAGE, CREATE ON SCHEMA public TO outsider; SET ROLE outsider; CREATE TABLE public.theirs (id int); RESET ROLE;",
    );
    assert_eq!(run(&["plan", "--detailed-exitcode"]).status.code(), Some(0));
    assert!(!check(
        "select has_table_privilege('reader', 'public.theirs', 'SELECT')"
    ));

    // reader leaves the stack while app_user stays: its grant and role go, app_user's grant
    // no longer names it.
    std::fs::write(
        &stack.file,
        admin_stack(
            &stack.name,
            &users.replace(
                "    - {name: reader, privileges: [connect, usage, select]}\n",
                "",
            ),
        ),
    )
    .unwrap();
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(check(
        "select not exists (select 1 from pg_roles where rolname = 'reader')"
    ));
    assert_eq!(run(&["plan", "--detailed-exitcode"]).status.code(), Some(0));
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Issue 17, item 6: login attributes and memberships set on a user outside pwless are read
/// and planned back, and a password set by hand goes with the next change, never printed.
/// (The master cannot read `pg_authid` here, as on RDS: the password itself is not seen.)
#[test]
fn login_attributes_and_memberships_set_outside_pwless_are_planned_back() {
    let users = "  final_snapshot: false\n  users:\n    - {name: app_user, privileges: [connect, usage, select]}\n";
    let stack = Stack::with_text("loginattrs", |name| admin_stack(name, users));
    let sandboxes = ThroughCluster::start(&stack, false);
    let pg = &sandboxes.pg;
    let run = |args: &[&str]| {
        let mut command = stack.command(args);
        sandboxes.apply_to(&mut command);
        command.stdin(Stdio::null()).output().unwrap()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let flags = || {
        rt.block_on(async {
            let row = superuser(pg)
                .await
                .query_one(
                    "select rolcanlogin, rolpassword is null, rolcreatedb, rolcreaterole, rolbypassrls, \
                     pg_has_role(oid, 'rds_superuser', 'MEMBER'), pg_has_role(oid, 'rds_iam', 'MEMBER') \
                     from pg_authid where rolname = 'app_user'",
                    &[],
                )
                .await
                .unwrap();
            (0..7).map(|index| row.get::<_, bool>(index)).collect::<Vec<_>>()
        })
    };
    let wanted = vec![true, true, false, false, false, false, true];
    assert_eq!(flags(), wanted);

    rt.block_on(async {
        superuser(pg)
            .await
            .batch_execute(
                "ALTER ROLE app_user NOLOGIN CREATEDB CREATEROLE PASSWORD 'hunter2'; GRANT rds_superuser TO app_user;",
            )
            .await
            .unwrap()
    });
    let output = run(&["plan", "--detailed-exitcode"]);
    let plan = stdout(&output);
    crate::common::assert_plans_one_drift_repair(&output, "postgresql_role.user[app_user]");
    for shown in ["create_db", "create_role", "rds_superuser", "login"] {
        assert!(plan.contains(shown), "{shown}: {plan}");
    }
    assert!(!plan.contains("hunter2") && !stderr(&output).contains("hunter2"));

    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        flags(),
        wanted,
        "login, no password, no attribute, only rds_iam"
    );
    assert_eq!(run(&["plan", "--detailed-exitcode"]).status.code(), Some(0));

    // SUPERUSER (and BYPASSRLS, REPLICATION) only a superuser may take away (the RDS master
    // never can): apply says so
    // with PostgreSQL's code and message, and nothing else of the change is left half done.
    rt.block_on(async {
        superuser(pg)
            .await
            .batch_execute("ALTER ROLE app_user SUPERUSER CREATEDB;")
            .await
            .unwrap()
    });
    let output = run(&["apply", "--auto-approve"]);
    assert_ne!(output.status.code(), Some(0));
    let message = stderr(&output);
    assert!(message.contains("SQLSTATE 42501"), "{message}");
    assert!(message.contains("superuser"), "{message}");
    let createdb: bool = rt.block_on(async {
        superuser(pg)
            .await
            .query_one(
                "select rolcreatedb from pg_roles where rolname = 'app_user'",
                &[],
            )
            .await
            .unwrap()
            .get(0)
    });
    assert!(
        createdb,
        "one transaction: the NOCREATEDB beside the refused NOSUPERUSER did not stay"
    );
    rt.block_on(async {
        superuser(pg)
            .await
            .batch_execute("ALTER ROLE app_user NOSUPERUSER;")
            .await
            .unwrap()
    });
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Issue 17, item 5: a user that owns a table and holds a privilege in another database of
/// the cluster. Before, dropping it failed with `role "reader" cannot be dropped because some
/// objects depend on it` (DETAIL: `1 object in database postgres`), and the plan gave no hint.
/// Now the plan lists what it owns and holds in each database and what apply does about each,
/// and apply releases them in every database before the drop.
#[test]
fn a_user_holding_objects_in_another_database_is_listed_by_the_plan_and_dropped() {
    let users = "  final_snapshot: false\n  users:\n    - {name: app_user, privileges: [connect, usage, select]}\n    - {name: reader, privileges: [connect, usage, create, select]}\n";
    let stack = Stack::with_text("holdings", |name| admin_stack(name, users));
    let sandboxes = ThroughCluster::start(&stack, false);
    let pg = &sandboxes.pg;
    let run = |args: &[&str]| {
        let mut command = stack.command(args);
        sandboxes.apply_to(&mut command);
        command.stdin(Stdio::null()).output().unwrap()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    rt.block_on(async {
        // In another database: a table of the master's that reader may read, a table reader
        // owns, and a privilege a superuser granted on its own table (which the master, no
        // superuser, cannot revoke).
        superuser_in(pg, "postgres")
            .await
            .batch_execute("GRANT ALL ON SCHEMA public TO admin; SET ROLE admin; CREATE TABLE elsewhere (id int); GRANT SELECT ON elsewhere TO reader; CREATE TABLE theirs (id int); RESET ROLE; ALTER TABLE theirs OWNER TO reader; CREATE TABLE superusers (id int); GRANT SELECT ON superusers TO reader;")
            .await
            .unwrap();
        superuser(pg)
            .await
            .batch_execute("SET ROLE reader; CREATE TABLE public.reader_made (id int); RESET ROLE;")
            .await
            .unwrap();
    });

    std::fs::write(
        &stack.file,
        admin_stack(
            &stack.name,
            &users.replace(
                "    - {name: reader, privileges: [connect, usage, create, select]}\n",
                "",
            ),
        ),
    )
    .unwrap();
    let output = run(&["plan"]);
    let plan = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{plan}{}", stderr(&output));
    for line in [
        "# owns 1 object in database postgres: reassigned to the master user, kept",
        "# holds privileges on 2 objects in database postgres: revoked",
        "in database appdb: reassigned to the master user, kept",
        "in database appdb: revoked",
    ] {
        assert!(plan.contains(line), "{line}: {plan}");
    }
    let json = run(&["plan", "--json"]);
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let change = parsed["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|change| change["address"] == "postgresql_role.user[reader]")
        .unwrap();
    assert!(
        change["holdings"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"database": "postgres", "owns": 1, "privileges": 2})),
        "{change}"
    );

    // A user that owns tables is data-holding (issue 16, item 1): the plan says so, and apply
    // refuses without consent, changing nothing.
    assert!(
        plan.contains("# ! destroys the database user that owns 2 object(s) in appdb, postgres"),
        "{plan}"
    );
    let output = run(&["apply", "--auto-approve"]);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("--allow-destroy postgresql_role.user[reader]"),
        "{}",
        stderr(&output)
    );
    rt.block_on(async {
        let exists: bool = superuser(pg)
            .await
            .query_one(
                "select exists (select 1 from pg_roles where rolname = 'reader')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(exists, "refused before any change");
    });
    let consent = [
        "apply",
        "--auto-approve",
        "--allow-destroy",
        "postgresql_role.user[reader]",
    ];

    // What the master cannot revoke stops the drop with what to do, and where.
    let output = run(&consent);
    assert_ne!(output.status.code(), Some(0));
    let message = stderr(&output);
    assert!(
        message.contains("user reader still holds privileges on 1 objects in database postgres that the master user cannot revoke"),
        "{message}"
    );
    rt.block_on(async {
        superuser_in(pg, "postgres")
            .await
            .batch_execute("REVOKE ALL ON superusers FROM reader;")
            .await
            .unwrap()
    });
    let output = run(&consent);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    rt.block_on(async {
        let elsewhere = superuser_in(pg, "postgres").await;
        let owner: String = elsewhere
            .query_one("select tableowner::text from pg_tables where tablename = 'theirs'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(owner, "admin", "what it owned elsewhere is kept, the master's now");
        let gone: bool = superuser(pg)
            .await
            .query_one("select not exists (select 1 from pg_roles where rolname = 'reader')", &[])
            .await
            .unwrap()
            .get(0);
        assert!(gone);
        let memberships: Vec<String> = elsewhere
            .query_one("select array(select g.rolname::text from pg_auth_members m join pg_roles g on g.oid = m.roleid join pg_roles r on r.oid = m.member where r.rolname = 'admin' order by 1)", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(memberships, ["rds_superuser"], "the master holds no membership it took to act");
    });
    assert_eq!(run(&["plan", "--detailed-exitcode"]).status.code(), Some(0));
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// An access entry grants exactly what the stack says: a policy associated with it by hand is
/// drift, and apply takes it away (before, the read saw only that the declared policy was
/// there, and a changed `policy_arn` left the old one associated).
#[test]
fn an_access_policy_associated_by_hand_is_drift_and_taken_away() {
    let stack = Stack::with_text("accesspolicy", |name| {
        admin_stack(name, "  final_snapshot: false\n")
    });
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rt = runtime();
    let aws = rt.block_on(clients(&stack.moto));
    let principal = "arn:aws:iam::123456789012:user/moto";
    let policies = || {
        rt.block_on(async {
            let mut arns: Vec<String> = aws
                .eks
                .list_associated_access_policies()
                .cluster_name(&stack.name)
                .principal_arn(principal)
                .send()
                .await
                .unwrap()
                .associated_access_policies()
                .iter()
                .filter_map(|policy| policy.policy_arn().map(str::to_string))
                .collect();
            arns.sort();
            arns
        })
    };
    let admin = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy";
    assert_eq!(policies(), [admin]);
    rt.block_on(async {
        aws.eks
            .associate_access_policy()
            .cluster_name(&stack.name)
            .principal_arn(principal)
            .policy_arn("arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy")
            .access_scope(
                aws_sdk_eks::types::AccessScope::builder()
                    .r#type(aws_sdk_eks::types::AccessScopeType::Cluster)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    crate::common::assert_plans_one_drift_repair(
        &stack.run(&["plan", "--detailed-exitcode"]),
        &format!("aws_eks_access_entry.admin[{principal}]"),
    );
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(policies(), [admin]);
    assert_eq!(
        stack.run(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// Issue 16, item 4: an EKS update is done when EKS says so by its id (DescribeUpdate), not
/// when the cluster is ACTIVE again: a failed update ends ACTIVE too, and was reported as a
/// success. The stand-in fails every version update here (MOTO_EKS_FAILED_UPDATES) and lets
/// node group scaling succeed, each InProgress for a second first.
#[test]
fn a_failed_eks_update_is_reported_as_failed_not_as_done_when_the_cluster_is_active_again() {
    let mut stack = Stack::new("eksupdate", "  final_snapshot: false\n");
    stack.moto = Moto::start_with(&[("MOTO_EKS_FAILED_UPDATES", "VersionUpdate")]);
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = std::fs::read_to_string(&stack.file).unwrap();
    assert!(text.contains("version: \"1.31\""), "{text}");
    std::fs::write(
        &stack.file,
        text.replace("version: \"1.31\"", "version: \"1.32\""),
    )
    .unwrap();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_ne!(output.status.code(), Some(0));
    let message = stderr(&output);
    assert!(message.contains("the EKS upgrade: EKS update"), "{message}");
    assert!(
        message.contains("failed: Unknown: VersionUpdate failed"),
        "{message}"
    );
    let rt = runtime();
    let aws = rt.block_on(clients(&stack.moto));
    let version = || {
        rt.block_on(async {
            aws.eks
                .describe_cluster()
                .name(&stack.name)
                .send()
                .await
                .unwrap()
                .cluster()
                .and_then(|cluster| cluster.version().map(str::to_string))
                .unwrap()
        })
    };
    assert_eq!(version(), "1.31", "the failed upgrade changed nothing");
    assert_eq!(
        stack.run(&["plan", "--detailed-exitcode"]).status.code(),
        Some(2),
        "the upgrade is still to do"
    );

    // A successful update (the node group's scaling) is waited for and recorded.
    std::fs::write(
        &stack.file,
        text.replace("desired_size: 2", "desired_size: 3"),
    )
    .unwrap();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stack.run(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// A lost answer to an EKS update: all 10 of the SDK's attempts lose theirs, so pwless sends
/// the update again itself, with the client request token it set once, which EKS takes as the
/// same update. Before, pwless's own send got a new token (the SDK makes one per call): it
/// waited for the first update (ResourceInUseException), then asked for the version the
/// cluster already had, and EKS refused it, failing an apply whose upgrade had succeeded.
#[test]
fn an_eks_update_whose_answer_was_lost_is_sent_again_as_the_same_update() {
    let stack = Stack::new("eksretry", "  final_snapshot: false\n");
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Every answer the SDK waits for is lost (its 10 attempts), so pwless itself sends again.
    let lose = format!("POST /clusters/{}/updates=10", stack.name);
    let proxy = Proxy::with_options(&stack.moto, &["--lose", &lose]);
    let text = std::fs::read_to_string(&stack.file).unwrap();
    std::fs::write(
        &stack.file,
        text.replace("version: \"1.31\"", "version: \"1.32\""),
    )
    .unwrap();
    let output = stack
        .command(&["apply", "--auto-approve"])
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let sent: Vec<serde_json::Value> = proxy
        .calls()
        .into_iter()
        .filter(|call| call["action"] == format!("POST /clusters/{}/updates", stack.name))
        .collect();
    assert!(sent.len() >= 2 && sent[0]["lost"] == true, "{sent:?}");
    assert_eq!(
        stack.run(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_long_wait_says_it_is_still_at_it_every_ten_seconds() {
    // Terraform's heartbeat: an operation in flight for 10 s says so, with its own elapsed
    // time. CreateVpc answers 11 s late through the proxy, as a slow API call would.
    let stack = Stack::new("heartbeat", "  final_snapshot: false\n");
    let proxy = Proxy::with_options(&stack.moto, &["--delay", "CreateVpc=11"]);
    let output = stack
        .command(&["apply", "--auto-approve"])
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let progress = stderr(&output);
    assert_eq!(output.status.code(), Some(0), "{progress}");
    let still: Vec<&str> = progress
        .lines()
        .filter(|line| line.contains("still "))
        .collect();
    // Ten seconds in, or a little later on a busy machine (the heartbeat says the time it
    // fired at: it was seen once as 11 s under a full test run on 2 cores).
    assert!(
        still.iter().any(|line| {
            line.strip_prefix("aws_vpc.main: still creating... [")
                .and_then(|rest| rest.strip_suffix("s elapsed]"))
                .and_then(|seconds| seconds.parse::<u32>().ok())
                .is_some_and(|seconds| (10..20).contains(&seconds))
        }),
        "{progress}"
    );
    // Only the slow operation reports, and only once (it finished before 20 s).
    assert!(
        still.iter().all(|line| line.starts_with("aws_vpc.main:")),
        "{still:?}"
    );
    assert_eq!(still.len(), 1, "{still:?}");
    drop(proxy);
    assert_eq!(
        stack.run(&["destroy", "--auto-approve"]).status.code(),
        Some(0)
    );
}

#[test]
fn destroy_names_the_final_snapshot_it_keeps() {
    // `final_snapshot` is on by default: the destroy plan names the snapshot, destroy takes
    // exactly that one and says so at the end.
    let stack = Stack::new("snapshot", "");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = stack.run(&["plan", "--destroy", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let cluster = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|change| change["address"] == "aws_rds_cluster.main")
        .unwrap()
        .clone();
    let snapshot = cluster["final_snapshot"].as_str().unwrap().to_string();
    assert!(
        snapshot.starts_with(&format!("{}-final-", stack.name)),
        "{snapshot}"
    );
    let human = stdout(&stack.run(&["plan", "--destroy"]));
    assert!(
        human.contains(&format!(
            "    - aws_rds_cluster.main\n        # a final snapshot is kept: {snapshot}\n"
        )),
        "{human}"
    );

    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!(
            "Kept the final snapshot {snapshot} of the Aurora cluster."
        )),
        "{}",
        stderr(&output)
    );
    let kept = rt.block_on(async {
        clients
            .rds
            .describe_db_cluster_snapshots()
            .db_cluster_snapshot_identifier(&snapshot)
            .send()
            .await
            .unwrap()
            .db_cluster_snapshots()
            .len()
    });
    assert_eq!(kept, 1, "RDS has no snapshot {snapshot}");
}

#[test]
fn a_database_rename_replaces_the_aurora_cluster_only_with_consent() {
    // Data lost without consent: changing `database.name` planned `-/+ aws_rds_cluster.main`
    // with no warning and applied it on --auto-approve.
    let stack = Stack::new("consent", "");
    let rt = runtime();
    let clients = rt.block_on(clients(&stack.moto));
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    std::fs::write(
        &stack.file,
        aws_stack(&stack.name, "").replace("  name: appdb\n", "  name: otherdb\n"),
    )
    .unwrap();

    let output = stack.run(&["plan", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let losses: Vec<String> = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|change| change.get("data_loss").is_some())
        .map(|change| change["address"].as_str().unwrap().to_string())
        .collect();
    assert!(
        losses.contains(&"aws_rds_cluster.main".to_string()),
        "{losses:?}"
    );

    // Refused, changing nothing: not the state, not the cluster.
    let state_before = std::fs::read(stack.state_path()).unwrap();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("this plan destroys data")
            && stderr(&output).contains("--allow-destroy aws_rds_cluster.main"),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(stack.state_path()).unwrap(), state_before);
    let databases = |clients: &Clients| {
        rt.block_on(async {
            clients
                .rds
                .describe_db_clusters()
                .send()
                .await
                .unwrap()
                .db_clusters()
                .iter()
                .filter_map(|cluster| cluster.database_name().map(str::to_string))
                .collect::<Vec<_>>()
        })
    };
    assert_eq!(databases(&clients), vec!["appdb"]);

    // Consent recorded in a saved plan: applied as it is, the final snapshot taken.
    let saved = stack.dir.path().join("rename.plan");
    let mut args = vec!["plan", "-o", saved.to_str().unwrap()];
    for address in &losses {
        args.extend(["--allow-destroy", address.as_str()]);
    }
    let output = stack.run(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("(allowed in this plan)"),
        "{}",
        stdout(&output)
    );
    let output = stack
        .moto
        .command(stack.dir.path())
        .args(["apply", saved.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Kept the final snapshot"),
        "{}",
        stderr(&output)
    );
    assert_eq!(databases(&clients), vec!["otherdb"]);
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn replacing_a_nat_gateway_waits_until_its_elastic_ip_is_let_go() {
    // Replacing a NAT gateway failed: the new one was created while the old one's Elastic IP
    // was still associated (Resource.AlreadyAssociated); its delete had reported success
    // before EC2 let go of the address. (The sandbox's moto now lets go a second after the
    // delete, as EC2 does after a while: scripts/moto-server.py.)
    let network = |first: &str| {
        format!(
            "network: {{cidr: 10.0.0.0/16, availability_zones: 2, nat_gateways: single, public_subnets: [{first}, 10.0.16.0/20], private_subnets: [10.0.128.0/18, 10.0.192.0/18]}}"
        )
    };
    let text = |name: &str, first: &str| {
        aws_stack(name, "  final_snapshot: false\n").replace(
            "network: {cidr: 10.0.0.0/16, availability_zones: 2, nat_gateways: single}",
            &network(first),
        )
    };
    let stack = Stack::with_text("natreplace", |name| text(name, "10.0.0.0/20"));
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    std::fs::write(&stack.file, text(&stack.name, "10.0.32.0/20")).unwrap();

    let output = stack.run(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let changes = plan["resource_changes"].as_array().unwrap();
    let action = |address: &str| {
        changes
            .iter()
            .find(|change| change["address"] == address)
            .map(|change| change["action"].as_str().unwrap().to_string())
    };
    assert_eq!(
        action("aws_nat_gateway.main[0]").as_deref(),
        Some("replace")
    );
    assert_eq!(action("aws_eip.nat[0]").as_deref(), Some("no-op"));
    let mut args = vec!["apply", "--auto-approve"];
    for change in changes
        .iter()
        .filter(|change| change.get("data_loss").is_some())
    {
        args.extend(["--allow-destroy", change["address"].as_str().unwrap()]);
    }
    let output = stack.run(&args);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("aws_nat_gateway.main[0]: created"),
        "{}",
        stderr(&output)
    );
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn a_ctrl_c_during_a_plans_refresh_stops_it_with_130_and_no_verdict() {
    // A Ctrl-C during a plan's refresh printed "No changes" and exited 0: run as scripts run
    // it, with SIGINT ignored by the parent (inherited through exec), pwless never heard it.
    let stack = Stack::new("planint", "  final_snapshot: false\n");
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let proxy = Proxy::with_options(&stack.moto, &["--delay", "DescribeVpcs=20"]);
    let mut plan = stack.command(&["plan"]);
    plan.env("AWS_ENDPOINT_URL", proxy.endpoint());
    let mut shell = Command::new("sh");
    shell
        .args(["-c", "trap '' INT; exec \"$0\" \"$@\""])
        .arg(plan.get_program())
        .args(plan.get_args())
        .current_dir(stack.dir.path());
    for (key, value) in plan.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    let mut child = shell
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("Refreshing") {
        let mut line = String::new();
        use std::io::BufRead as _;
        assert_ne!(progress.read_line(&mut line).unwrap(), 0, "{seen}");
        seen.push_str(&line);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = std::time::Instant::now();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut progress, &mut rest).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "it waited for the slow read"
    );
    assert!(!out.contains("No changes"), "{out}");
    assert!(rest.contains("plan stopped by Ctrl-C"), "{rest}");
    // The lock was let go: the next plan runs (through moto directly) and sees no changes.
    drop(proxy);
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn removing_the_last_user_drops_it_and_destroy_needs_no_database() {
    // The endpoint path (a tunnel of the user's own, PWLESS_DB_ADMIN_ENDPOINT): "no way in"
    // is a tunnel nobody listens at.
    // Removing the last entry of `database.users` left the stack stuck ("a saved plan cannot
    // manage database users"), and destroy needed the database (CA bundle, a way in) although
    // the users go with their cluster.
    let with_user = "  final_snapshot: false\n  users:\n    - {name: app_user, privileges: [connect, usage, select]}\n";
    let stack = Stack::new("lastuser", with_user);
    let pg = crate::postgres::LocalPostgres::start("lastuser");
    let run = |args: &[&str], extra: &[(&str, &str)]| {
        let mut command = stack.command(args);
        for (key, value) in pg.env() {
            command.env(key, value);
        }
        for (key, value) in extra {
            command.env(key, value);
        }
        command.stdin(Stdio::null()).output().unwrap()
    };
    let role_exists = || {
        let rt = runtime();
        rt.block_on(async {
            superuser(&pg)
                .await
                .query_one(
                    "select count(*) from pg_roles where rolname = 'app_user'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 1
        })
    };
    let output = run(&["apply", "--auto-approve"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(role_exists());

    std::fs::write(
        &stack.file,
        aws_stack(&stack.name, "  final_snapshot: false\n"),
    )
    .unwrap();
    let output = run(&["apply", "--auto-approve"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!role_exists(), "the removed user was not dropped");

    std::fs::write(&stack.file, aws_stack(&stack.name, with_user)).unwrap();
    assert_eq!(
        run(&["apply", "--auto-approve"], &[]).status.code(),
        Some(0)
    );
    // No CA bundle and no way to the database: destroy still finishes, saying what it did.
    let nowhere = [
        ("PWLESS_DB_CA_BUNDLE", "/nonexistent/global-bundle.pem"),
        ("PWLESS_DB_ADMIN_ENDPOINT", "127.0.0.1:1"),
    ];
    let plan = stdout(&run(&["plan", "--destroy"], &nowhere));
    assert!(
        plan.contains("    - postgresql_role.user[app_user]  # it goes with aws_rds_cluster.main; only the state entry is removed\n"),
        "{plan}"
    );
    let output = run(&["destroy", "--auto-approve"], &nowhere);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("postgresql_role.user[app_user]: removed from the state"),
        "{}",
        stderr(&output)
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stack.state_path()).unwrap()).unwrap();
    assert_eq!(state["resources"], serde_json::json!([]));
}

#[test]
fn a_database_change_that_never_reached_the_database_is_not_left_pending() {
    // The endpoint path, with nothing listening there: the role's create fails before any
    // statement is sent, so the state keeps no pending operation for it (a local error), and
    // the next apply simply creates it.
    let with_user = "  final_snapshot: false\n  users:\n    - {name: app_user, privileges: [connect, usage, select]}\n";
    let stack = Stack::new("localerror", with_user);
    let pg = crate::postgres::LocalPostgres::start("localerror");
    let run = |args: &[&str], endpoint: &str| {
        let mut command = stack.command(args);
        for (key, value) in pg.env() {
            command.env(key, value);
        }
        command
            .env("PWLESS_DB_ADMIN_ENDPOINT", endpoint)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let output = run(&["apply", "--auto-approve"], "127.0.0.1:1");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("127.0.0.1:1") && stderr(&output).contains("refused"),
        "{}",
        stderr(&output)
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stack.state_path()).unwrap()).unwrap();
    assert_eq!(state["pending_operations"], serde_json::json!([]));
    assert!(
        !state["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|resource| resource["address"] == "postgresql_role.user[app_user]")
    );
    let output = run(
        &["apply", "--auto-approve"],
        pg.var("PWLESS_DB_ADMIN_ENDPOINT"),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("postgresql_role.user[app_user]: created"),
        "{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("settling"), "{}", stderr(&output));
}

#[test]
fn a_refreshed_plan_after_a_database_rename_reads_the_users_where_they_are() {
    // Renaming the database used to fail the refresh with "db error": the users were read by
    // connecting to the new database, which does not exist until apply.
    let with_user = "  final_snapshot: false\n  users:\n    - {name: app_user, privileges: [connect, usage, select]}\n";
    let stack = Stack::with_text("rename", |name| admin_stack(name, with_user));
    let sandboxes = ThroughCluster::start(&stack, false);
    let run = |args: &[&str]| {
        let mut command = stack.command(args);
        sandboxes.apply_to(&mut command);
        command.stdin(Stdio::null()).output().unwrap()
    };
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = std::fs::read_to_string(&stack.file).unwrap();
    std::fs::write(
        &stack.file,
        text.replacen("name: appdb", "name: otherdb", 1),
    )
    .unwrap();
    let output = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let plan = stdout(&output);
    assert!(
        plan.contains("-/+ aws_rds_cluster.main"),
        "{plan}{}",
        stderr(&output)
    );
    assert!(!stderr(&output).contains("db error"), "{}", stderr(&output));
}

#[test]
fn apply_and_destroy_stream_json_lines_when_asked() {
    let stack = Stack::new("jsonlines", "");
    // Without --auto-approve there is no place for the question: refused before the state is
    // even locked.
    let refused = stack.run(&["apply", "--json"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("add --auto-approve"),
        "{}",
        stderr(&refused)
    );
    assert!(!stack.state_path().exists());

    let records = |output: &std::process::Output| -> Vec<serde_json::Value> {
        stdout(output)
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"))
            })
            .collect()
    };
    let of_type = |records: &[serde_json::Value], kind: &str| -> Vec<serde_json::Value> {
        records
            .iter()
            .filter(|record| record["type"] == kind)
            .cloned()
            .collect()
    };

    let applied = stack.run(&["apply", "--auto-approve", "--json"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    let lines = records(&applied);
    assert_eq!(lines[0]["type"], "plan", "{:?}", lines[0]);
    let planned_adds = lines[0]["plan"]["summary"]["add"].as_u64().unwrap();
    assert!(planned_adds > 10, "{planned_adds}");
    let started = of_type(&lines, "started");
    assert!(
        started
            .iter()
            .any(|record| record["address"] == "aws_vpc.main" && record["operation"] == "create")
    );
    let done = of_type(&lines, "done");
    let vpc = done
        .iter()
        .find(|record| record["address"] == "aws_vpc.main")
        .expect("the VPC's done event");
    assert_eq!(vpc["outcome"], "created");
    assert!(vpc["id"].as_str().unwrap().starts_with("vpc-"), "{vpc}");
    assert_eq!(done.len() as u64, planned_adds);
    let summary = of_type(&lines, "summary");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["succeeded"], true);
    assert_eq!(summary[0]["mode"], "normal");
    assert_eq!(summary[0]["add"].as_u64(), Some(planned_adds));
    let outputs = of_type(&lines, "outputs");
    assert_eq!(outputs.len(), 1, "{lines:?}");
    assert!(outputs[0]["outputs"].is_object());
    // The human lines are not mixed into stdout.
    assert!(!stdout(&applied).contains("Apply complete"));
    assert!(stderr(&applied).contains("Apply complete"));

    let destroyed = stack.run(&["destroy", "--auto-approve", "--json"]);
    assert!(destroyed.status.success(), "{}", stderr(&destroyed));
    let lines = records(&destroyed);
    let summary = of_type(&lines, "summary");
    assert_eq!(summary[0]["mode"], "destroy");
    assert_eq!(summary[0]["destroy"].as_u64(), Some(planned_adds));
    assert!(of_type(&lines, "outputs").is_empty());
    let rt = runtime();
    let left = rt.block_on(async { live(&clients(&stack.moto).await, &stack.name).await });
    assert!(nothing(&left), "{left:?}");
}

#[test]
fn a_tag_removed_from_the_stack_is_removed_from_every_resource() {
    // Before, the OIDC provider's tags were only ever added to: a removed tag stayed, and every
    // plan after showed the same update again.
    let stack = Stack::new("retag", "");
    let applied = stack.run(&["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    std::fs::write(
        &stack.file,
        aws_stack(&stack.name, "").replace("tags: {team: platform}", "tags: {owner: data}"),
    )
    .unwrap();
    let retagged = stack.run(&["apply", "--auto-approve"]);
    assert!(retagged.status.success(), "{}", stderr(&retagged));
    assert!(
        stderr(&retagged).contains("aws_iam_openid_connect_provider.eks: updated"),
        "{}",
        stderr(&retagged)
    );
    // Refreshed from AWS: every resource has exactly the stack's tags now.
    let plan = stack.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    let destroyed = stack.run(&["destroy", "--auto-approve"]);
    assert!(destroyed.status.success(), "{}", stderr(&destroyed));
}

#[test]
fn both_endpoint_flags_changed_are_one_eks_update() {
    // Before, each changed flag sent its own UpdateClusterConfig with both flags: EKS refuses
    // the second ("Cluster is already at the desired configuration"), and the apply failed.
    let stack = Stack::new("endpoints", "");
    let applied = stack.run(&["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", stderr(&applied));
    // Private access turned off outside pwless, while the stack turns public access off. The
    // update made by hand is still in progress (a second, in the stand-in) when apply starts:
    // EKS refuses another update meanwhile (ResourceInUseException), and apply waits its turn.
    let rt = runtime();
    rt.block_on(async {
        clients(&stack.moto)
            .await
            .eks
            .update_cluster_config()
            .name(&stack.name)
            .resources_vpc_config(
                aws_sdk_eks::types::VpcConfigRequest::builder()
                    .endpoint_private_access(false)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    std::fs::write(
        &stack.file,
        aws_stack(&stack.name, "").replace(
            "cluster:\n  version: \"1.31\"\n",
            "cluster:\n  version: \"1.31\"\n  endpoint_public_access: false\n",
        ),
    )
    .unwrap();
    let updated = stack.run(&["apply", "--auto-approve"]);
    assert!(updated.status.success(), "{}", stderr(&updated));
    assert!(
        stderr(&updated).contains(
            "aws_eks_cluster.main: updating (endpoint_private_access, endpoint_public_access)"
        ),
        "{}",
        stderr(&updated)
    );
    let plan = stack.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stdout(&plan));
    let destroyed = stack.run(&["destroy", "--auto-approve"]);
    assert!(destroyed.status.success(), "{}", stderr(&destroyed));
}
