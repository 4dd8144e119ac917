//! Stacks that reference existing infrastructure (`network.existing`, issue 18): the VPC and
//! subnets are made here through the AWS API (the SDK against moto, not through pwless), as a
//! platform team's Terraform would have made them; pwless must read them, use them, and leave
//! them exactly as they were.

use std::process::Stdio;

use crate::aws::{Clients, Moto, PwlessCommand, clients, live, nothing, runtime};
use crate::common::{TempDir, assert_exit, stderr, stdout};

/// A team's network: a VPC with DNS support and hostnames on, two private and two public
/// subnets over two zones, an internet gateway and a route table; and, beside it, another
/// VPC with one subnet (for the wrong references).
struct TeamNetwork {
    vpc: String,
    private: [String; 2],
    public: [String; 2],
    other_subnet: String,
}

async fn make_team_network(ec2: &aws_sdk_ec2::Client) -> TeamNetwork {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.42.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    ec2.modify_vpc_attribute()
        .vpc_id(&vpc)
        .enable_dns_hostnames(
            aws_sdk_ec2::types::AttributeBooleanValue::builder()
                .value(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut subnets = Vec::new();
    for (index, zone) in ["us-west-2a", "us-west-2b", "us-west-2a", "us-west-2b"]
        .iter()
        .enumerate()
    {
        let subnet = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.42.{index}.0/24"))
            .availability_zone(*zone)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Subnet)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("team")
                            .value("network")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .unwrap();
        subnets.push(subnet.subnet().unwrap().subnet_id().unwrap().to_string());
    }
    let gateway = ec2
        .create_internet_gateway()
        .send()
        .await
        .unwrap()
        .internet_gateway()
        .unwrap()
        .internet_gateway_id()
        .unwrap()
        .to_string();
    ec2.attach_internet_gateway()
        .vpc_id(&vpc)
        .internet_gateway_id(&gateway)
        .send()
        .await
        .unwrap();
    let other = ec2
        .create_vpc()
        .cidr_block("10.43.0.0/16")
        .send()
        .await
        .unwrap()
        .vpc()
        .unwrap()
        .vpc_id()
        .unwrap()
        .to_string();
    let other_subnet = ec2
        .create_subnet()
        .vpc_id(&other)
        .cidr_block("10.43.0.0/24")
        .availability_zone("us-west-2a")
        .send()
        .await
        .unwrap()
        .subnet()
        .unwrap()
        .subnet_id()
        .unwrap()
        .to_string();
    TeamNetwork {
        vpc,
        private: [subnets[0].clone(), subnets[1].clone()],
        public: [subnets[2].clone(), subnets[3].clone()],
        other_subnet,
    }
}

/// Everything the AWS API says about the team's network, as text: the VPC, its DNS
/// attributes, its subnets, gateways and route tables. Equal text before and after means
/// pwless changed nothing of it.
async fn describe_team_network(ec2: &aws_sdk_ec2::Client, vpc: &str) -> String {
    let in_vpc = || {
        aws_sdk_ec2::types::Filter::builder()
            .name("vpc-id")
            .values(vpc)
            .build()
    };
    let vpcs = ec2.describe_vpcs().vpc_ids(vpc).send().await.unwrap();
    let mut text = format!("{:?}\n", vpcs.vpcs());
    for attribute in [
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport,
        aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames,
    ] {
        let answer = ec2
            .describe_vpc_attribute()
            .vpc_id(vpc)
            .attribute(attribute)
            .send()
            .await
            .unwrap();
        text.push_str(&format!(
            "{:?} {:?}\n",
            answer.enable_dns_support(),
            answer.enable_dns_hostnames()
        ));
    }
    let subnets = ec2
        .describe_subnets()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    let mut subnets: Vec<String> = subnets
        .subnets()
        .iter()
        .map(|subnet| format!("{subnet:?}"))
        .collect();
    subnets.sort();
    text.push_str(&subnets.join("\n"));
    let gateways = ec2
        .describe_internet_gateways()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("attachment.vpc-id")
                .values(vpc)
                .build(),
        )
        .send()
        .await
        .unwrap();
    text.push_str(&format!("\n{:?}\n", gateways.internet_gateways()));
    let tables = ec2
        .describe_route_tables()
        .filters(in_vpc())
        .send()
        .await
        .unwrap();
    text.push_str(&format!("{:?}\n", tables.route_tables()));
    text
}

/// `pwless <args[0]> -f FILE <args[1..]>` against `moto`, in FILE's directory.
fn pwless_on(moto: &Moto, file: &std::path::Path, args: &[&str]) -> std::process::Output {
    moto.command(file.parent().unwrap())
        .arg(args[0])
        .args(["-f", file.to_str().unwrap()])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Asserts that the JSON plan changes no resource whose address starts with one of `kinds`.
fn plans_none_of(plan: &serde_json::Value, kinds: &[&str]) {
    let addresses: Vec<&str> = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["address"].as_str().unwrap())
        .collect();
    for kind in kinds {
        assert!(
            addresses.iter().all(|address| !address.starts_with(kind)),
            "{kind}: {addresses:?}"
        );
    }
}

fn stack_text(name: &str, network: &str) -> String {
    format!(
        "stack: {name}\nregion: us-west-2\n{network}\
         cluster:\n  version: \"1.31\"\n  node_group: {{instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}}\n\
         database:\n  engine_version: \"17.4\"\n  instance_class: db.t4g.medium\n  instances: 1\n  name: appdb\n  master_username: postgres\n  final_snapshot: false\n"
    )
}

fn existing(vpc: &str, private: &[&str], public: &[&str]) -> String {
    let mut text = format!(
        "network:\n  existing:\n    vpc_id: {vpc}\n    private_subnet_ids: [{}]\n",
        private.join(", ")
    );
    if !public.is_empty() {
        text.push_str(&format!("    public_subnet_ids: [{}]\n", public.join(", ")));
    }
    text
}

#[test]
fn a_referenced_network_is_used_and_left_exactly_as_it_was() {
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let team = rt.block_on(make_team_network(&clients.ec2));
    let before = rt.block_on(describe_team_network(&clients.ec2, &team.vpc));

    let name = format!("t{}-existing", std::process::id());
    let dir = TempDir::new(&name);
    let private: Vec<&str> = team.private.iter().map(String::as_str).collect();
    let public: Vec<&str> = team.public.iter().map(String::as_str).collect();
    let file = dir.write(
        "stack.yaml",
        &stack_text(&name, &existing(&team.vpc, &private, &public)),
    );
    let run = |args: &[&str]| pwless_on(&moto, &file, args);

    // The plan says what it read, with the values it used, and creates no network resource.
    let output = run(&["plan", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let reads: Vec<(&str, &str)> = plan["reads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|read| {
            (
                read["address"].as_str().unwrap(),
                read["id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reads,
        [
            ("data.aws_vpc.existing", team.vpc.as_str()),
            ("data.aws_subnet.private[0]", private[0]),
            ("data.aws_subnet.private[1]", private[1]),
            ("data.aws_subnet.public[0]", public[0]),
            ("data.aws_subnet.public[1]", public[1]),
        ]
    );
    assert_eq!(plan["reads"][0]["values"]["cidr_block"], "10.42.0.0/16");
    plans_none_of(
        &plan,
        &[
            "aws_vpc.",
            "aws_subnet.",
            "aws_internet_gateway.",
            "aws_route_table",
            "aws_nat_gateway.",
            "aws_eip.",
        ],
    );

    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("Apply complete. Resources: 15 added, 0 changed, 0 destroyed."),
        "{}",
        stderr(&output)
    );
    // Through the AWS API: the security group, the EKS cluster and the database's subnet group
    // are in the team's VPC and subnets; pwless made no network of its own.
    rt.block_on(async {
        let counts = live(&clients, &name).await;
        for (kind, expected) in [
            ("vpc", 0),
            ("subnet", 0),
            ("internet gateway", 0),
            ("route table", 0),
            ("security group", 1),
            ("nat gateway", 0),
            ("eks cluster", 1),
            ("aurora cluster", 1),
        ] {
            assert!(counts.contains(&(kind, expected)), "{kind}: {counts:?}");
        }
        let group = clients
            .ec2
            .describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:pwless:stack")
                    .values(&name)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(group.security_groups()[0].vpc_id(), Some(team.vpc.as_str()));
        let cluster = clients
            .eks
            .describe_cluster()
            .name(&name)
            .send()
            .await
            .unwrap();
        let mut subnets: Vec<&str> = cluster
            .cluster()
            .and_then(|cluster| cluster.resources_vpc_config())
            .map(|config| config.subnet_ids().iter().map(String::as_str).collect())
            .unwrap_or_default();
        subnets.sort_unstable();
        let mut expected: Vec<&str> = private.iter().chain(&public).copied().collect();
        expected.sort_unstable();
        assert_eq!(subnets, expected);
        let group = clients
            .rds
            .describe_db_subnet_groups()
            .db_subnet_group_name(&name)
            .send()
            .await
            .unwrap();
        let group = &group.db_subnet_groups()[0];
        assert_eq!(group.vpc_id(), Some(team.vpc.as_str()));
        let mut subnets: Vec<&str> = group
            .subnets()
            .iter()
            .filter_map(|subnet| subnet.subnet_identifier())
            .collect();
        subnets.sort_unstable();
        let mut expected = private.clone();
        expected.sort_unstable();
        assert_eq!(subnets, expected);
    });
    // Nothing referenced is in the state: apply and destroy cannot touch it.
    let state =
        std::fs::read_to_string(dir.path().join("state").join(format!("{name}.json"))).unwrap();
    assert!(!state.contains("\"aws_vpc."), "{state}");
    assert!(!state.contains("\"aws_subnet."), "{state}");

    let output = run(&["plan", "--detailed-exitcode"]);
    assert_exit(&output, 0);

    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(nothing(&rt.block_on(live(&clients, &name))));
    let after = rt.block_on(describe_team_network(&clients.ec2, &team.vpc));
    assert_eq!(before, after, "the referenced network changed");
}

#[test]
fn bad_references_fail_the_plan_at_their_line_with_the_fix() {
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let team = rt.block_on(make_team_network(&clients.ec2));
    let dir = TempDir::new(&format!("t{}-badrefs", std::process::id()));
    let plan = |network: &str| {
        let file = dir.write("stack.yaml", &stack_text("badrefs", network));
        let output = pwless_on(&moto, &file, &["plan"]);
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        assert!(stdout(&output).is_empty(), "{}", stdout(&output));
        stderr(&output)
    };
    let [p0, p1] = [team.private[0].as_str(), team.private[1].as_str()];

    // A VPC id that names nothing in the region.
    let errors = plan(&existing("vpc-0123456789abcdef0", &[p0, p1], &[]));
    assert!(
        errors.contains("error: VPC `vpc-0123456789abcdef0` does not exist in us-west-2\n  --> "),
        "{errors}"
    );
    assert!(errors.contains("stack.yaml:5:13\n"), "{errors}");
    assert!(
        errors.contains("help: check the id, the stack's `region`"),
        "{errors}"
    );

    // A subnet of another VPC, and one that does not exist: each at its own place.
    let errors = plan(&existing(
        &team.vpc,
        &[p0, &team.other_subnet, "subnet-0123456789abcdef0"],
        &[],
    ));
    assert!(
        errors.contains(&format!(
            "error: subnet `{}` is in VPC `vpc-",
            team.other_subnet
        )),
        "{errors}"
    );
    assert!(
        errors.contains(&format!("not in `{}` (network.existing.vpc_id)", team.vpc)),
        "{errors}"
    );
    assert!(
        errors.contains("error: subnet `subnet-0123456789abcdef0` does not exist in us-west-2"),
        "{errors}"
    );
    assert!(
        errors.contains("has 2 problems; nothing was planned or changed"),
        "{errors}"
    );

    // Private subnets in one zone.
    let errors = plan(&existing(&team.vpc, &[p0, &team.public[0]], &[]));
    assert!(
        errors.contains("error: the private subnets are all in us-west-2a; EKS and Aurora need subnets in at least two availability zones"),
        "{errors}"
    );
    assert!(errors.contains("stack.yaml:6:26\n"), "{errors}");

    // DNS hostnames off: the fix is the user's, pwless never changes a referenced VPC.
    rt.block_on(async {
        clients
            .ec2
            .modify_vpc_attribute()
            .vpc_id(&team.vpc)
            .enable_dns_hostnames(
                aws_sdk_ec2::types::AttributeBooleanValue::builder()
                    .value(false)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let errors = plan(&existing(&team.vpc, &[p0, p1], &[]));
    assert!(
        errors.contains(&format!(
            "error: VPC `{}` has `enableDnsHostnames` off",
            team.vpc
        )),
        "{errors}"
    );
    assert!(
        errors.contains(&format!(
            "`aws ec2 modify-vpc-attribute --vpc-id {} --enable-dns-hostnames`",
            team.vpc
        )),
        "{errors}"
    );
}

/// Makes the team's EKS cluster in `subnets` (as eksctl or Terraform would), with access
/// entries enabled unless `mode` says otherwise; gives its OIDC issuer.
async fn make_team_cluster(
    eks: &aws_sdk_eks::Client,
    name: &str,
    subnets: &[&str],
    mode: aws_sdk_eks::types::AuthenticationMode,
) -> String {
    let cluster = eks
        .create_cluster()
        .name(name)
        .role_arn("arn:aws:iam::123456789012:role/team-eks-cluster")
        .resources_vpc_config(
            aws_sdk_eks::types::VpcConfigRequest::builder()
                .set_subnet_ids(Some(subnets.iter().map(|id| id.to_string()).collect()))
                .build(),
        )
        .access_config(
            aws_sdk_eks::types::CreateAccessConfigRequest::builder()
                .authentication_mode(mode)
                .build(),
        )
        .send()
        .await
        .unwrap();
    cluster
        .cluster()
        .and_then(|cluster| cluster.identity())
        .and_then(|identity| identity.oidc())
        .and_then(|oidc| oidc.issuer())
        .unwrap()
        .to_string()
}

/// A stack file on the team's cluster: the sandbox PostgreSQL (checking tokens) stands for the
/// database, the Kubernetes API stand-in for the cluster's API (its Jobs run as `pwless sandbox
/// run` would), and pwless reaches the database through the relay's port-forward.
struct OnTeamCluster<'a> {
    moto: &'a Moto,
    dir: TempDir,
    file: std::path::PathBuf,
    pg: crate::postgres::LocalPostgres,
    kube: crate::kubernetes::KubeStandin,
}

impl<'a> OnTeamCluster<'a> {
    fn start(moto: &'a Moto, short: &str, cluster: &str, dir: TempDir, text: &str) -> Self {
        let file = dir.write("stack.yaml", text);
        let pg = crate::postgres::LocalPostgres::checking_tokens(short, moto);
        let runner = crate::kubernetes::job_runner(moto, dir.path(), &file, &pg);
        let kube = crate::kubernetes::KubeStandin::start(
            short,
            cluster,
            moto,
            "testing",
            "testing",
            pg.var("PWLESS_SANDBOX_DB_ADDRESS"),
            Some(runner),
        );
        OnTeamCluster {
            moto,
            dir,
            file,
            pg,
            kube,
        }
    }

    /// `pwless <args[0]> -f FILE <args[1..]>` on the cluster path.
    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut command = self.moto.command(self.dir.path());
        command
            .arg(args[0])
            .args(["-f", self.file.to_str().unwrap()])
            .args(&args[1..])
            .stdin(Stdio::null());
        self.kube.cluster_path(&self.pg, &mut command);
        command.output().unwrap()
    }

    /// After an apply: the plan shows no change, and `pwless verify` finds every service
    /// account logs in as its own user only. (The examples run no app, so the demo image is
    /// named here; the stand-in runs the local pwless-demo for any image.)
    fn converged_and_verified(&self) {
        assert_exit(&self.run(&["plan", "--detailed-exitcode"]), 0);
        assert_exit(
            &self.run(&["verify", "--image", &crate::common::verify_image()]),
            0,
        );
    }
}

/// The team's cluster (access entries only), with an access entry that lets pwless's principal
/// (the sandbox's user) in as cluster-admin.
async fn make_team_cluster_for_pwless(eks: &aws_sdk_eks::Client, cluster: &str, subnets: &[&str]) {
    make_team_cluster(
        eks,
        cluster,
        subnets,
        aws_sdk_eks::types::AuthenticationMode::Api,
    )
    .await;
    let principal = "arn:aws:iam::123456789012:user/moto";
    eks.create_access_entry()
        .cluster_name(cluster)
        .principal_arn(principal)
        .send()
        .await
        .unwrap();
    eks.associate_access_policy()
        .cluster_name(cluster)
        .principal_arn(principal)
        .policy_arn("arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy")
        .access_scope(
            aws_sdk_eks::types::AccessScope::builder()
                .r#type(aws_sdk_eks::types::AccessScopeType::Cluster)
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// What the EKS API says of the team's cluster, as text.
async fn describe_team_cluster(eks: &aws_sdk_eks::Client, name: &str) -> String {
    let cluster = eks.describe_cluster().name(name).send().await.unwrap();
    format!("{:?}", cluster.cluster())
}

/// The add-ons on the cluster.
async fn addons(eks: &aws_sdk_eks::Client, name: &str) -> Vec<String> {
    let addons = eks.list_addons().cluster_name(name).send().await.unwrap();
    addons.addons().to_vec()
}

fn existing_cluster(name: &str) -> String {
    format!("cluster:\n  existing: {{name: {name}}}\n")
}

/// A stack on the team's network and cluster: no cluster keys, the database and `extra`.
fn stack_on_cluster(name: &str, network: &str, cluster: &str, extra: &str) -> String {
    let text = stack_text(name, network);
    let cluster_start = text.find("cluster:\n").unwrap();
    let database_start = text.find("database:\n").unwrap();
    format!(
        "{}{cluster}{}{extra}",
        &text[..cluster_start],
        &text[database_start..]
    )
}

#[test]
fn a_referenced_cluster_gets_only_the_passwordless_part_and_is_left_as_it_was() {
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let team = rt.block_on(make_team_network(&clients.ec2));
    let private: Vec<&str> = team.private.iter().map(String::as_str).collect();
    let public: Vec<&str> = team.public.iter().map(String::as_str).collect();
    let all: Vec<&str> = private.iter().chain(&public).copied().collect();
    let issuer = rt.block_on(make_team_cluster(
        &clients.eks,
        "team-cluster",
        &all,
        aws_sdk_eks::types::AuthenticationMode::ApiAndConfigMap,
    ));
    let network = existing(&team.vpc, &private, &public);
    let cluster_before = rt.block_on(describe_team_cluster(&clients.eks, "team-cluster"));

    let name = format!("t{}-oncluster", std::process::id());
    let dir = TempDir::new(&name);
    let file = dir.write(
        "stack.yaml",
        &stack_on_cluster(&name, &network, &existing_cluster("team-cluster"), ""),
    );
    let run = |args: &[&str]| pwless_on(&moto, &file, args);

    // The plan reads the cluster; of the EKS part it creates only the OIDC provider for the
    // cluster's issuer, which IAM does not have yet.
    let output = run(&["plan", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let read = plan["reads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|read| read["address"] == "data.aws_eks_cluster.existing")
        .unwrap_or_else(|| panic!("{}", plan["reads"]));
    assert_eq!(read["id"], "team-cluster");
    assert_eq!(read["values"]["vpc_id"], team.vpc.as_str());
    assert_eq!(read["values"]["oidc_issuer"], issuer.as_str());
    let changes: Vec<(&str, &serde_json::Value)> = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| (change["address"].as_str().unwrap(), &change["after"]))
        .collect();
    let addresses: Vec<&str> = changes.iter().map(|(address, _)| *address).collect();
    for managed in [
        "aws_eks_cluster.",
        "aws_eks_node_group.",
        "aws_iam_role.eks_",
        "aws_eks_access_entry.",
    ] {
        assert!(
            addresses
                .iter()
                .all(|address| !address.starts_with(managed)),
            "{managed}: {addresses:?}"
        );
    }
    let oidc = changes
        .iter()
        .find(|(address, _)| *address == "aws_iam_openid_connect_provider.eks")
        .unwrap_or_else(|| panic!("{addresses:?}"));
    assert_eq!(oidc.1["url"], issuer.as_str());

    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = run(&["plan", "--detailed-exitcode"]);
    assert_exit(&output, 0);
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The OIDC provider pwless made for the team's issuer stays: other stacks on the cluster
    // may trust it. The cluster is as it was.
    let providers = rt
        .block_on(clients.iam.list_open_id_connect_providers().send())
        .unwrap();
    let [provider] = providers.open_id_connect_provider_list() else {
        panic!("{providers:?}");
    };
    let provider = provider.arn().unwrap().to_string();
    assert_eq!(
        cluster_before,
        rt.block_on(describe_team_cluster(&clients.eks, "team-cluster")),
        "the referenced cluster changed"
    );

    // Another stack on the cluster uses that provider as it is: its IRSA roles trust it, and
    // its plan creates none.
    let name = format!("{name}-b");
    let with_access = stack_on_cluster(
        &name,
        &network,
        &existing_cluster("team-cluster"),
        "  users: [{name: app_user, privileges: [connect]}]\n  admin_access: endpoint\n\
         access:\n  - {namespace: shop, service_account: checkout, db_user: app_user}\n",
    );
    std::fs::write(&file, with_access).unwrap();
    let output = run(&["plan", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let changes = plan["resource_changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .all(|change| change["address"] != "aws_iam_openid_connect_provider.eks"),
        "{changes:?}"
    );
    let role = changes
        .iter()
        .find(|change| change["address"] == "aws_iam_role.irsa[shop/checkout]")
        .unwrap_or_else(|| panic!("{changes:?}"));
    assert_eq!(
        role["after"]["web_identity"]["provider_arn"],
        provider.as_str(),
        "{role}"
    );
    assert!(
        plan["reads"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |read| read["address"] == "data.aws_iam_openid_connect_provider.existing"
                    && read["id"] == provider.as_str()
            ),
        "{}",
        plan["reads"]
    );
    let service_account = changes
        .iter()
        .find(|change| change["address"] == "kubernetes_service_account.shop/checkout")
        .unwrap_or_else(|| panic!("{changes:?}"));
    let cluster_arn = read["values"]["arn"].as_str().unwrap();
    assert_eq!(service_account["after"]["cluster_arn"], cluster_arn);
}

#[test]
fn a_referenced_cluster_in_another_vpc_or_without_access_entries_fails_the_plan() {
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let team = rt.block_on(make_team_network(&clients.ec2));
    let private: Vec<&str> = team.private.iter().map(String::as_str).collect();
    rt.block_on(make_team_cluster(
        &clients.eks,
        "elsewhere",
        &[&team.other_subnet],
        aws_sdk_eks::types::AuthenticationMode::Api,
    ));
    rt.block_on(make_team_cluster(
        &clients.eks,
        "aws-auth-only",
        &private,
        aws_sdk_eks::types::AuthenticationMode::ConfigMap,
    ));
    let dir = TempDir::new(&format!("t{}-badcluster", std::process::id()));
    let network = existing(&team.vpc, &private, &[]);
    let plan = |cluster: &str, extra: &str| {
        let file = dir.write(
            "stack.yaml",
            &stack_on_cluster("badcluster", &network, &existing_cluster(cluster), extra),
        );
        let output = pwless_on(&moto, &file, &["plan"]);
        assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
        stderr(&output)
    };
    let errors = plan("no-such-cluster", "");
    assert!(
        errors.contains("error: EKS cluster `no-such-cluster` does not exist in us-west-2\n  --> "),
        "{errors}"
    );
    assert!(errors.contains("stack.yaml:8:20\n"), "{errors}");
    let errors = plan("elsewhere", "");
    assert!(
        errors.contains("error: EKS cluster `elsewhere` is in VPC `vpc-")
            && errors.contains(&format!("not in `{}` (network.existing.vpc_id)", team.vpc)),
        "{errors}"
    );
    let errors = plan(
        "aws-auth-only",
        "access:\n  - {namespace: shop, service_account: checkout, db_user: app_user}\n",
    );
    // (the stack's access names a user it lacks: that is the load-time error, first)
    assert!(errors.contains("app_user"), "{errors}");
    let errors = plan(
        "aws-auth-only",
        "  users: [{name: app_user, privileges: [connect]}]\n\
         access:\n  - {namespace: shop, service_account: checkout, db_user: app_user}\n",
    );
    assert!(
        errors.contains("error: EKS cluster `aws-auth-only` takes its Kubernetes users from the aws-auth ConfigMap only"),
        "{errors}"
    );
    assert!(
        errors.contains("aws eks update-cluster-config --name aws-auth-only --access-config authenticationMode=API_AND_CONFIG_MAP"),
        "{errors}"
    );
}

/// The shipped example on the team's platform, end to end: the team's VPC and EKS cluster
/// (made through the AWS API) and a namespace of theirs on it; pwless adds the passwordless
/// part through the Kubernetes API stand-in and the token-checking PostgreSQL, `pwless verify`
/// proves each login, and destroy leaves the team's namespace, cluster and network as they
/// were.
#[test]
fn the_existing_cluster_example_applies_on_the_teams_platform_and_destroy_keeps_what_is_theirs() {
    use kube::api::{DynamicObject, Patch, PatchParams};
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let team = rt.block_on(make_team_network(&clients.ec2));
    let private: Vec<&str> = team.private.iter().map(String::as_str).collect();
    let cluster = format!("team-{}", std::process::id());
    rt.block_on(make_team_cluster_for_pwless(
        &clients.eks,
        &cluster,
        &private,
    ));
    let network_before = rt.block_on(describe_team_network(&clients.ec2, &team.vpc));
    let cluster_before = rt.block_on(describe_team_cluster(&clients.eks, &cluster));

    let name = format!("t{}-teamplat", std::process::id());
    let dir = TempDir::new(&name);
    let text = include_str!("../../examples/existing-cluster.yaml")
        .replacen("stack: shop-db", &format!("stack: {name}"), 1)
        .replacen("vpc-0123456789abcdef0", &team.vpc, 1)
        .replacen("subnet-0123456789abcdef1", private[0], 1)
        .replacen("subnet-0123456789abcdef2", private[1], 1)
        .replacen("name: platform-prod", &format!("name: {cluster}"), 1)
        // (the sandbox PostgreSQL stands for the new Aurora cluster with its database `appdb`)
        .replacen("  name: shop\n", "  name: appdb\n", 1)
        .replacen("  users:", "  final_snapshot: false\n  users:", 1);
    let platform = OnTeamCluster::start(&moto, "teamplat", &cluster, dir, &text);
    let (kube, run) = (&platform.kube, |args: &[&str]| platform.run(args));
    let _inside = rt.enter();
    let client = kube.client();
    // The team's namespace, with something of theirs in it.
    rt.block_on(async {
        let namespaces = crate::kubernetes::namespaces(&client);
        let namespace: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "shop"}},
        }))
        .unwrap();
        // (server-side apply, as the team's own tools would; the stand-in serves no POST)
        let apply = PatchParams::apply("team-tools");
        namespaces
            .patch("shop", &apply, &Patch::Apply(&namespace))
            .await
            .unwrap();
        let maps = kube::Api::<DynamicObject>::namespaced_with(
            client.clone(),
            "shop",
            &crate::kubernetes::resource("v1", "ConfigMap", "configmaps"),
        );
        let map: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "checkout-settings", "namespace": "shop"},
            "data": {"currency": "EUR"},
        }))
        .unwrap();
        maps.patch("checkout-settings", &apply, &Patch::Apply(&map))
            .await
            .unwrap();
    });
    // A service account of the team's under a name the stack uses is not taken over: apply
    // stops there and leaves it as it was.
    let accounts = kube::Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "shop",
        &crate::kubernetes::resource("v1", "ServiceAccount", "serviceaccounts"),
    );
    let theirs: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "checkout", "namespace": "shop",
                     "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/team-checkout"}},
    }))
    .unwrap();
    rt.block_on(accounts.patch(
        "checkout",
        &PatchParams::apply("team-tools"),
        &Patch::Apply(&theirs),
    ))
    .unwrap();
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("kubernetes_service_account shop/checkout exists already and is not made by pwless (it has no pwless/stack label): pwless does not take it over"),
        "{}",
        stderr(&output)
    );
    let account = rt.block_on(accounts.get("checkout")).unwrap();
    assert_eq!(
        account.metadata.annotations.unwrap_or_default()["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::123456789012:role/team-checkout"
    );
    // Once the team let it go, the apply goes on from where it stopped.
    rt.block_on(accounts.delete("checkout", &Default::default()))
        .unwrap();
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The chain holds on the team's cluster: each service account logs in as its own user
    // only (IRSA through the OIDC provider pwless made for the team's issuer, and Pod Identity
    // through the agent it installed).
    platform.converged_and_verified();
    // The relay is the stack's own, in its own namespace; the team's namespace kept its
    // labels (pwless claims none).
    let namespace = |name: &str| {
        rt.block_on(crate::kubernetes::namespaces(&client).get_opt(name))
            .unwrap()
    };
    assert!(namespace(&format!("pwless-{name}")).is_some());
    let shop = namespace("shop").unwrap();
    assert_eq!(
        shop.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("shop")
    );

    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let progress = stderr(&output);
    assert!(progress.contains("kubernetes_namespace.shop"), "{progress}");
    assert!(
        namespace(&format!("pwless-{name}")).is_none(),
        "the stack's relay namespace stayed"
    );
    assert!(
        namespace("shop").is_some(),
        "destroy deleted the team's namespace"
    );
    let map = rt.block_on(
        kube::Api::<DynamicObject>::namespaced_with(
            client.clone(),
            "shop",
            &crate::kubernetes::resource("v1", "ConfigMap", "configmaps"),
        )
        .get_opt("checkout-settings"),
    );
    assert!(map.unwrap().is_some(), "the team's ConfigMap went");
    // Of the stack's AWS resources only the OIDC provider is left (shared, see below).
    let left = rt.block_on(live(&clients, &name));
    assert!(
        left.iter()
            .all(|(kind, count)| *count == usize::from(*kind == "oidc provider")),
        "{left:?}"
    );
    assert_eq!(
        network_before,
        rt.block_on(describe_team_network(&clients.ec2, &team.vpc))
    );
    assert_eq!(
        cluster_before,
        rt.block_on(describe_team_cluster(&clients.eks, &cluster))
    );
    // The Pod Identity Agent pwless installed stays: other stacks' pods on the cluster may
    // get their credentials through it.
    assert_eq!(
        rt.block_on(addons(&clients.eks, &cluster)),
        ["eks-pod-identity-agent"]
    );
}

/// Makes the team's Aurora PostgreSQL cluster in `subnets` (as Terraform would), its master
/// password kept by RDS, its database `appdb` (what the sandbox PostgreSQL serves), with IAM
/// database authentication as `iam_auth` says; `engine` is `aurora-postgresql` but for the
/// wrong-kind test.
async fn make_team_aurora(
    rds: &aws_sdk_rds::Client,
    identifier: &str,
    subnets: &[&str],
    engine: &str,
    iam_auth: bool,
) {
    make_team_aurora_in(rds, identifier, subnets, engine, iam_auth, None).await;
}

/// [`make_team_aurora`], guarded by `security_group` when given.
async fn make_team_aurora_in(
    rds: &aws_sdk_rds::Client,
    identifier: &str,
    subnets: &[&str],
    engine: &str,
    iam_auth: bool,
    security_group: Option<&str>,
) {
    let group = format!("{identifier}-subnets");
    rds.create_db_subnet_group()
        .db_subnet_group_name(&group)
        .db_subnet_group_description("the team's database subnets")
        .set_subnet_ids(Some(subnets.iter().map(|id| id.to_string()).collect()))
        .send()
        .await
        .unwrap();
    rds.create_db_cluster()
        .db_cluster_identifier(identifier)
        .engine(engine)
        .engine_version(if engine == "aurora-postgresql" {
            "16.4"
        } else {
            "8.0.mysql_aurora.3.05.2"
        })
        .master_username("teamadmin")
        .manage_master_user_password(true)
        .database_name("appdb")
        .db_subnet_group_name(&group)
        .enable_iam_database_authentication(iam_auth)
        .set_vpc_security_group_ids(security_group.map(|group| vec![group.to_string()]))
        .storage_encrypted(true)
        .send()
        .await
        .unwrap();
}

/// What the RDS API says of the team's Aurora cluster, as text, but for its latest restorable
/// time, which moves on its own (RDS: "the latest time to which a database can be restored
/// with point-in-time restore").
async fn describe_team_aurora(rds: &aws_sdk_rds::Client, identifier: &str) -> String {
    let out = rds
        .describe_db_clusters()
        .db_cluster_identifier(identifier)
        .send()
        .await
        .unwrap();
    let text = format!("{:?}", out.db_clusters());
    let field = "latest_restorable_time: ";
    let start = text.find(field).unwrap() + field.len();
    let end = start + text[start..].find(", ").unwrap();
    format!("{}{}", &text[..start], &text[end..])
}

/// The roles of these names the sandbox PostgreSQL has.
fn roles_in(
    pg: &crate::postgres::LocalPostgres,
    rt: &tokio::runtime::Runtime,
    names: &[&str],
) -> Vec<String> {
    rt.block_on(async {
        let client = crate::aws::superuser(pg).await;
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        client
            .query(
                "select rolname::text from pg_roles where rolname = any($1) order by 1",
                &[&names],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    })
}

#[test]
fn the_existing_database_example_adds_only_the_users_and_roles_and_destroy_leaves_the_team_s_cluster()
 {
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let team = rt.block_on(make_team_network(&clients.ec2));
    let private: Vec<&str> = team.private.iter().map(String::as_str).collect();
    let cluster = format!("team-{}", std::process::id());
    let aurora = format!("team-aurora-{}", std::process::id());
    rt.block_on(make_team_cluster_for_pwless(
        &clients.eks,
        &cluster,
        &private,
    ));
    let group = rt.block_on(async {
        // The team's database security group admits its VPC's block on 5432.
        let group = clients
            .ec2
            .create_security_group()
            .group_name("team-aurora")
            .description("the team's database")
            .vpc_id(&team.vpc)
            .send()
            .await
            .unwrap();
        let group = group.group_id().unwrap().to_string();
        let group = group.as_str();
        clients
            .ec2
            .authorize_security_group_ingress()
            .group_id(group)
            .ip_protocol("tcp")
            .from_port(5432)
            .to_port(5432)
            .cidr_ip("10.42.0.0/16")
            .send()
            .await
            .unwrap();
        make_team_aurora_in(
            &clients.rds,
            &aurora,
            &private,
            "aurora-postgresql",
            true,
            Some(group),
        )
        .await;
        group.to_string()
    });
    let network_before = rt.block_on(describe_team_network(&clients.ec2, &team.vpc));
    let cluster_before = rt.block_on(describe_team_cluster(&clients.eks, &cluster));
    let aurora_before = rt.block_on(describe_team_aurora(&clients.rds, &aurora));
    let resource_id = rt.block_on(async {
        clients
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(&aurora)
            .send()
            .await
            .unwrap()
            .db_clusters()[0]
            .db_cluster_resource_id()
            .unwrap()
            .to_string()
    });

    let name = format!("t{}-teamdb", std::process::id());
    let dir = TempDir::new(&name);
    let text = include_str!("../../examples/existing-database.yaml")
        .replacen("stack: shop-access", &format!("stack: {name}"), 1)
        .replacen("vpc-0123456789abcdef0", &team.vpc, 1)
        .replacen("subnet-0123456789abcdef1", private[0], 1)
        .replacen("subnet-0123456789abcdef2", private[1], 1)
        .replacen("name: platform-prod", &format!("name: {cluster}"), 1)
        .replacen(
            "cluster_identifier: shop-aurora",
            &format!("cluster_identifier: {aurora}"),
            1,
        )
        // (the sandbox PostgreSQL serves the team's database as `appdb`)
        .replacen("    name: shop ", "    name: appdb ", 1);
    let platform = OnTeamCluster::start(&moto, "teamdb", &cluster, dir, &text);
    let (pg, run) = (&platform.pg, |args: &[&str]| platform.run(args));

    // The team's own application logs in with a password: the plan flags it as a user the
    // stack does not declare, and leaves it.
    rt.block_on(async {
        crate::aws::superuser(pg)
            .await
            .batch_execute("CREATE ROLE legacy_app LOGIN PASSWORD 'team-secret'")
            .await
            .unwrap();
    });
    // The plan reads the team's Aurora cluster and creates nothing of a database's own: the
    // users' dbuser ARNs name the read cluster resource id.
    let output = run(&["plan", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let read = plan["reads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|read| read["address"] == "data.aws_rds_cluster.existing")
        .unwrap_or_else(|| panic!("{}", plan["reads"]));
    assert_eq!(read["id"], aurora.as_str());
    assert_eq!(read["values"]["cluster_resource_id"], resource_id.as_str());
    plans_none_of(
        &plan,
        &[
            "aws_rds_cluster",
            "aws_db_subnet_group.",
            "aws_security_group",
            "aws_eks_cluster.",
        ],
    );
    for link in plan["access"]["database"].as_array().unwrap() {
        assert_eq!(link["cluster"], aurora.as_str(), "{link}");
        assert_eq!(link["cluster_resource_id"], resource_id.as_str(), "{link}");
    }
    // (A first plan reads no database: nothing reaches it before the relay is made.)
    assert!(
        plan["access"].get("undeclared_users").is_none(),
        "{}",
        plan["access"]
    );

    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        roles_in(pg, &rt, &["checkout", "reporting"]),
        ["checkout", "reporting"]
    );
    // Each service account logs in to the team's cluster as its own user only.
    platform.converged_and_verified();
    // The refresh reads the cluster's login roles: the team's own is flagged, and left.
    let output = run(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        plan["access"]["undeclared_users"],
        serde_json::json!([{"database": "main", "user": "legacy_app"}])
    );
    let output = run(&["plan"]);
    assert!(
        stdout(&output).contains("  ! user legacy_app may log in to the cluster but is not in the stack: pwless leaves it: it never touches a user it did not make"),
        "{}",
        stdout(&output)
    );
    // doctor follows each chain into the team's cluster: its IAM authentication, the connect
    // policies on its resource id, its own security group; the log export is the team's to
    // turn on.
    let output = run(&["doctor"]);
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{report}{}", stderr(&output));
    assert!(
        report.contains("Every link of 2 chain(s) holds."),
        "{report}"
    );
    assert!(
        report.contains(&format!("on for Aurora cluster {aurora}")),
        "{report}"
    );
    assert!(
        report.contains("admits the private subnets on port 5432"),
        "{report}"
    );
    assert!(
        report.contains(
            "its owners turn the export on (pwless never changes a cluster it references)"
        ),
        "{report}"
    );
    // The team admits its nodes' security group instead of the subnets' blocks: doctor
    // cannot prove that link either way and says so; with nothing admitted, it is broken, and
    // the fix is the owners'.
    let group_pair = || {
        aws_sdk_ec2::types::IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(5432)
            .to_port(5432)
            .user_id_group_pairs(
                aws_sdk_ec2::types::UserIdGroupPair::builder()
                    .group_id(&group)
                    .build(),
            )
            .build()
    };
    rt.block_on(async {
        let ec2 = &clients.ec2;
        ec2.revoke_security_group_ingress()
            .group_id(&group)
            .ip_protocol("tcp")
            .from_port(5432)
            .to_port(5432)
            .cidr_ip("10.42.0.0/16")
            .send()
            .await
            .unwrap();
        ec2.authorize_security_group_ingress()
            .group_id(&group)
            .ip_permissions(group_pair())
            .send()
            .await
            .unwrap();
    });
    let output = run(&["doctor"]);
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{report}{}", stderr(&output));
    assert!(
        report.contains(&format!(
            "-      security group: {group} admits security groups {group} on port 5432"
        )) && report
            .contains("No link of 2 chain(s) is broken; 2 could not be checked (marked -)."),
        "{report}"
    );
    rt.block_on(
        clients
            .ec2
            .revoke_security_group_ingress()
            .group_id(&group)
            .ip_permissions(group_pair())
            .send(),
    )
    .unwrap();
    let output = run(&["doctor"]);
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{report}{}", stderr(&output));
    assert!(
        report.contains(&format!("BROKEN security group: {group} does not admit"))
            && report.contains("ask the cluster's owners to admit the private subnets"),
        "{report}"
    );
    // `pwless output` names the team's database, from the state alone.
    let output = run(&["output", "databaseClusterResourceId"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains(&resource_id),
        "{}",
        stdout(&output)
    );

    // Destroy drops the stack's users and leaves the team's cluster, network and Aurora
    // cluster exactly as they were.
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(roles_in(pg, &rt, &["checkout", "reporting"]).is_empty());
    assert_eq!(roles_in(pg, &rt, &["legacy_app"]), ["legacy_app"]);
    assert_eq!(
        aurora_before,
        rt.block_on(describe_team_aurora(&clients.rds, &aurora))
    );
    assert_eq!(
        network_before,
        rt.block_on(describe_team_network(&clients.ec2, &team.vpc))
    );
    assert_eq!(
        cluster_before,
        rt.block_on(describe_team_cluster(&clients.eks, &cluster))
    );
}

#[test]
fn bad_aurora_references_fail_the_plan_at_their_line_with_the_fix() {
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let team = rt.block_on(make_team_network(&clients.ec2));
    let private: Vec<&str> = team.private.iter().map(String::as_str).collect();
    let public: Vec<&str> = team.public.iter().map(String::as_str).collect();
    rt.block_on(async {
        make_team_aurora(&clients.rds, "team-mysql", &private, "aurora-mysql", true).await;
        make_team_aurora(
            &clients.rds,
            "team-no-iam",
            &private,
            "aurora-postgresql",
            false,
        )
        .await;
    });
    // A cluster in another VPC: the team's other network's subnet and one more there.
    let other_vpc = rt.block_on(async {
        let subnet = clients
            .ec2
            .describe_subnets()
            .subnet_ids(&team.other_subnet)
            .send()
            .await
            .unwrap();
        let vpc = subnet.subnets()[0].vpc_id().unwrap().to_string();
        let second = clients
            .ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block("10.43.1.0/24")
            .availability_zone("us-west-2b")
            .send()
            .await
            .unwrap();
        let second = second.subnet().unwrap().subnet_id().unwrap();
        make_team_aurora(
            &clients.rds,
            "team-elsewhere",
            &[team.other_subnet.as_str(), second],
            "aurora-postgresql",
            true,
        )
        .await;
        vpc
    });
    let name = format!("t{}-badaurora", std::process::id());
    let dir = TempDir::new(&name);
    let plan = |identifier: &str, network: &str, user: &str| {
        let text = format!(
            "stack: {name}\nregion: us-west-2\n{network}cluster:\n  version: \"1.31\"\n  node_group: {{instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}}\n  admins: [arn:aws:iam::123456789012:user/moto]\ndatabase:\n  existing:\n    cluster_identifier: {identifier}\n    name: appdb\n  users:\n    - {{name: {user}, privileges: [connect]}}\n"
        );
        let file = dir.write("stack.yaml", &text);
        let output = pwless_on(&moto, &file, &["plan"]);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        stderr(&output)
    };
    let network = existing(&team.vpc, &private, &public);
    // The identifier's line in each stack file.
    let at = |errors: &str, line: usize| {
        assert!(errors.contains(&format!("stack.yaml:{line}:")), "{errors}")
    };
    let errors = plan("team-gone", &network, "app_user");
    assert!(
        errors.contains("Aurora cluster `team-gone` does not exist in us-west-2"),
        "{errors}"
    );
    assert!(errors.contains("aws rds describe-db-clusters"), "{errors}");
    at(&errors, 14);
    let errors = plan("team-mysql", &network, "app_user");
    assert!(errors.contains("`team-mysql` is an RDS cluster of engine `aurora-mysql`, not an Aurora PostgreSQL cluster"), "{errors}");
    at(&errors, 14);
    let errors = plan("team-no-iam", &network, "app_user");
    assert!(
        errors.contains("Aurora cluster `team-no-iam` has IAM database authentication off"),
        "{errors}"
    );
    assert!(errors.contains("aws rds modify-db-cluster --db-cluster-identifier team-no-iam --enable-iam-database-authentication --apply-immediately"), "{errors}");
    at(&errors, 14);
    // Nothing was changed: the cluster's IAM authentication is still off.
    let still_off = rt.block_on(async {
        clients
            .rds
            .describe_db_clusters()
            .db_cluster_identifier("team-no-iam")
            .send()
            .await
            .unwrap()
            .db_clusters()[0]
            .iam_database_authentication_enabled()
    });
    assert_eq!(still_off, Some(false));
    // An Aurora cluster in another VPC than the stack's network.
    let errors = plan("team-elsewhere", &network, "app_user");
    assert!(
        errors.contains(&format!("Aurora cluster `team-elsewhere` is in VPC `{other_vpc}`, not in `{}` (network.existing.vpc_id)", team.vpc)),
        "{errors}"
    );
    at(&errors, 14);
    // A user named as the team's master user.
    rt.block_on(make_team_aurora(
        &clients.rds,
        "team-ok",
        &private,
        "aurora-postgresql",
        true,
    ));
    let errors = plan("team-ok", &network, "teamadmin");
    assert!(
        errors.contains("`teamadmin` is the master user of Aurora cluster `team-ok`"),
        "{errors}"
    );
    // A master password RDS does not keep, and none from the environment; a stopped cluster.
    rt.block_on(async {
        clients
            .rds
            .create_db_cluster()
            .db_cluster_identifier("team-password")
            .engine("aurora-postgresql")
            .master_username("teamadmin")
            .master_user_password("team-secret-1")
            .db_subnet_group_name("team-ok-subnets")
            .enable_iam_database_authentication(true)
            .send()
            .await
            .unwrap();
        clients
            .rds
            .stop_db_cluster()
            .db_cluster_identifier("team-ok")
            .send()
            .await
            .unwrap();
    });
    let errors = plan("team-password", &network, "app_user");
    assert!(
        errors.contains(
            "Aurora cluster `team-password`'s master password is not kept by RDS in Secrets Manager"
        ) && errors.contains("`master_password: {env: VAR_NAME}`"),
        "{errors}"
    );
    assert!(!errors.contains("team-secret-1"), "{errors}");
    let errors = plan("team-ok", &network, "app_user");
    assert!(
        errors.contains("Aurora cluster `team-ok` is stopped, not available"),
        "{errors}"
    );
}

#[test]
fn enable_iam_auth_turns_it_on_in_the_team_s_cluster_in_place_and_destroy_leaves_it_on() {
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let (team, cluster, aurora) = rt.block_on(team_platform(&clients, "noiam", false));
    let iam_auth = || {
        rt.block_on(async {
            clients
                .rds
                .describe_db_clusters()
                .db_cluster_identifier(&aurora)
                .send()
                .await
                .unwrap()
                .db_clusters()[0]
                .iam_database_authentication_enabled()
        })
    };
    let name = format!("t{}-enableiam", std::process::id());
    let dir = TempDir::new(&name);
    let text = tunnel_stack(
        &name,
        &team,
        &cluster,
        &format!("{{cluster_identifier: {aurora}, name: appdb, enable_iam_auth: true}}"),
        "app_user",
    );
    let file = dir.write("stack.yaml", &text);
    let pg = crate::postgres::LocalPostgres::checking_tokens("enableiam", &moto);
    let run = |args: &[&str]| through_the_tunnel(&moto, &pg, &file, args);

    // The plan says it turns IAM authentication on, and what that changes for password users.
    let output = run(&["plan"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan = stdout(&output);
    assert!(
        plan.contains("+ aws_rds_cluster_iam_auth.existing")
            && plan.contains("users that log in with passwords keep doing so"),
        "{plan}"
    );
    assert_eq!(iam_auth(), Some(false), "plan changed nothing");
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(iam_auth(), Some(true));
    assert_eq!(roles_in(&pg, &rt, &["app_user"]), ["app_user"]);
    let output = run(&["plan", "--detailed-exitcode"]);
    assert_exit(&output, 0);
    // Turned off by hand: the plan turns it on again.
    rt.block_on(
        clients
            .rds
            .modify_db_cluster()
            .db_cluster_identifier(&aurora)
            .enable_iam_database_authentication(false)
            .apply_immediately(true)
            .send(),
    )
    .unwrap();
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(iam_auth(), Some(true));
    // Destroy drops the user and leaves IAM authentication on: others may log in with tokens.
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(roles_in(&pg, &rt, &["app_user"]).is_empty());
    assert_eq!(iam_auth(), Some(true));
}

/// The team's network, EKS cluster (access entries only) and Aurora PostgreSQL cluster
/// `team-<kind>-<pid>` (IAM database authentication as `iam_auth` says), made through the SDK:
/// (network, EKS cluster name, Aurora cluster identifier).
async fn team_platform(
    clients: &Clients,
    kind: &str,
    iam_auth: bool,
) -> (TeamNetwork, String, String) {
    let team = make_team_network(&clients.ec2).await;
    let private: Vec<&str> = team.private.iter().map(String::as_str).collect();
    let cluster = format!("team-{}", std::process::id());
    let aurora = format!("team-{kind}-{}", std::process::id());
    make_team_cluster(
        &clients.eks,
        &cluster,
        &private,
        aws_sdk_eks::types::AuthenticationMode::Api,
    )
    .await;
    make_team_aurora(
        &clients.rds,
        &aurora,
        &private,
        "aurora-postgresql",
        iam_auth,
    )
    .await;
    (team, cluster, aurora)
}

/// A stack with no Kubernetes objects on the team's network, cluster and Aurora cluster
/// (`database.existing` is `existing`), whose one user `user` is managed through a tunnel of the
/// user's own (the sandbox PostgreSQL).
fn tunnel_stack(
    name: &str,
    team: &TeamNetwork,
    cluster: &str,
    existing_database: &str,
    user: &str,
) -> String {
    let private: Vec<&str> = team.private.iter().map(String::as_str).collect();
    format!(
        "stack: {name}\nregion: us-west-2\n{}{}database:\n  existing: {existing_database}\n  admin_access: endpoint\n  users:\n    - {{name: {user}, privileges: [connect, usage, select]}}\n",
        existing(&team.vpc, &private, &[]),
        existing_cluster(cluster),
    )
}

/// `pwless <args[0]> -f FILE <args[1..]>` with the sandbox PostgreSQL as the tunnel.
fn through_the_tunnel(
    moto: &Moto,
    pg: &crate::postgres::LocalPostgres,
    file: &std::path::Path,
    args: &[&str],
) -> std::process::Output {
    moto.command(file.parent().unwrap())
        .arg(args[0])
        .args(["-f", file.to_str().unwrap()])
        .args(&args[1..])
        .envs(pg.env())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Whether `role` may log in, has a password, and the roles it is a member of.
fn role_facts(
    pg: &crate::postgres::LocalPostgres,
    rt: &tokio::runtime::Runtime,
    role: &str,
) -> (bool, bool, Vec<String>) {
    rt.block_on(async {
        let client = crate::aws::superuser(pg).await;
        let row = client
            .query_one(
                "select rolcanlogin, rolpassword is not null, array(select b.rolname::text from pg_auth_members m join pg_roles b on b.oid = m.roleid where m.member = a.oid order by 1) from pg_authid a where rolname = $1",
                &[&role],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    })
}

#[test]
fn a_team_s_database_user_of_the_same_name_is_never_taken_over() {
    // Before, CREATE ROLE's "already exists" left the create pending, and the next run's
    // recovery adopted the team's role by its name: made it IAM-only, took its memberships
    // away, and destroy dropped it.
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let (team, cluster, aurora) = rt.block_on(team_platform(&clients, "users", true));
    let pg = crate::postgres::LocalPostgres::checking_tokens("teamusers", &moto);
    rt.block_on(async {
        crate::aws::superuser(&pg)
            .await
            .batch_execute(
                "CREATE ROLE team_readers; CREATE ROLE checkout LOGIN PASSWORD 'team-secret'; GRANT team_readers TO checkout;",
            )
            .await
            .unwrap();
    });
    let theirs = (true, true, vec!["team_readers".to_string()]);
    assert_eq!(role_facts(&pg, &rt, "checkout"), theirs);

    let name = format!("t{}-teamusers", std::process::id());
    let dir = TempDir::new(&name);
    let text = tunnel_stack(
        &name,
        &team,
        &cluster,
        &format!("{{cluster_identifier: {aurora}, name: appdb}}"),
        "checkout",
    );
    let file = dir.write("stack.yaml", &text);
    let run = |args: &[&str]| through_the_tunnel(&moto, &pg, &file, args);
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("database user checkout exists already and is not made by this stack: pwless does not take it over"),
        "{}",
        stderr(&output)
    );
    assert_eq!(role_facts(&pg, &rt, "checkout"), theirs);
    let state_path = dir.path().join("state").join(format!("{name}.json"));
    let mut state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(state["pending_operations"], serde_json::json!([]));

    // A create of the stack's own that was interrupted (pending) is not adopted either when
    // the role of that name is the team's: recovery settles it as not made.
    let output = run(&["plan", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let change = plan["resource_changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|change| change["address"] == "postgresql_role.user[checkout]")
        .unwrap_or_else(|| panic!("{plan}"))
        .clone();
    state["pending_operations"] = serde_json::json!([{
        "address": "postgresql_role.user[checkout]",
        "kind": "postgresql_role",
        "operation": "create",
        "token": "checkout",
        "started_at": "2026-12-01T00:00:00Z",
        "inputs": change["after"],
    }]);
    std::fs::write(&state_path, serde_json::to_string_pretty(&state).unwrap()).unwrap();
    let output = run(&["plan"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("+ postgresql_role.user[checkout]"),
        "{}",
        stdout(&output)
    );
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(state["pending_operations"], serde_json::json!([]));
    assert!(
        state["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|resource| resource["address"] != "postgresql_role.user[checkout]"),
        "{state}"
    );
    assert_eq!(role_facts(&pg, &rt, "checkout"), theirs);
}

/// What `role`'s inline `rds-db-connect` policy allows: (cluster resource id, user) per
/// statement, in order.
fn connect_grants(
    clients: &Clients,
    rt: &tokio::runtime::Runtime,
    role: &str,
) -> Vec<(String, String)> {
    rt.block_on(async {
        let out = clients
            .iam
            .get_role_policy()
            .role_name(role)
            .policy_name("rds-db-connect")
            .send()
            .await
            .unwrap();
        let document: serde_json::Value = serde_json::from_str(
            &percent_encoding::percent_decode_str(out.policy_document()).decode_utf8_lossy(),
        )
        .unwrap();
        document["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .map(|statement| {
                assert_eq!(statement["Action"], "rds-db:connect", "{statement}");
                let arn = statement["Resource"].as_str().unwrap();
                let (cluster, user) = arn
                    .rsplit_once(":dbuser:")
                    .unwrap()
                    .1
                    .split_once('/')
                    .unwrap();
                (cluster.to_string(), user.to_string())
            })
            .collect()
    })
}

/// The sandbox test of many databases (issue 18): the team's network, EKS cluster and Aurora
/// cluster are made through the SDK; the stack (examples/many-databases.yaml) adds users to the
/// team's cluster and creates a second one, each reached through its own relay and each a
/// sandbox PostgreSQL of its own (the Kubernetes API stand-in routes each relay to its
/// database by the endpoint it is given). Three service accounts with crossing access each log
/// in exactly where the stack lets them, as their user there, and are refused everywhere else
/// (`pwless verify`: every service account against every database); taking one database away
/// from a service account refuses it there even as a user of the same name it keeps in the
/// other cluster; destroy leaves the team's cluster as it was and removes the created one.
#[test]
fn two_databases_and_three_service_accounts_log_in_exactly_where_the_stack_says() {
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let (team, cluster, aurora) = rt.block_on(async {
        let team = make_team_network(&clients.ec2).await;
        let private: Vec<&str> = team.private.iter().map(String::as_str).collect();
        let cluster = format!("team-{}", std::process::id());
        let aurora = format!("team-shop-{}", std::process::id());
        make_team_cluster_for_pwless(&clients.eks, &cluster, &private).await;
        make_team_aurora(&clients.rds, &aurora, &private, "aurora-postgresql", true).await;
        (team, cluster, aurora)
    });
    let describe = |identifier: &str| {
        rt.block_on(async {
            clients
                .rds
                .describe_db_clusters()
                .db_cluster_identifier(identifier)
                .send()
                .await
                .unwrap()
                .db_clusters()[0]
                .clone()
        })
    };
    let shop = describe(&aurora);
    let shop_endpoint = shop.endpoint().unwrap().to_string();
    let shop_id = shop.db_cluster_resource_id().unwrap().to_string();
    let aurora_before = rt.block_on(describe_team_aurora(&clients.rds, &aurora));

    // One sandbox PostgreSQL per database, each with its own token verifier, their
    // certificates signed by one CA, as RDS signs every cluster of a region with the same CAs
    // (so one bundle, PWLESS_DB_CA_BUNDLE, verifies both).
    let pg_shop = crate::postgres::LocalPostgres::checking_tokens("manyshop", &moto);
    let pg_orders =
        crate::postgres::LocalPostgres::checking_tokens_signed_by("manyorders", &moto, &pg_shop);
    let ca_bundle = pg_shop.var("PWLESS_DB_CA_BUNDLE");
    let name = format!("t{}-many", std::process::id());
    let dir = TempDir::new(&name);
    let text = include_str!("../../examples/many-databases.yaml")
        .replacen("stack: shop-platform", &format!("stack: {name}"), 1)
        .replacen("vpc-0123456789abcdef0", &team.vpc, 1)
        .replacen("subnet-0123456789abcdef1", &team.private[0], 1)
        .replacen("subnet-0123456789abcdef2", &team.private[1], 1)
        .replacen("name: platform-prod", &format!("name: {cluster}"), 1)
        .replacen(
            "cluster_identifier: shop-aurora",
            &format!("cluster_identifier: {aurora}"),
            1,
        )
        // (each sandbox PostgreSQL serves its database as `appdb`)
        .replacen("      name: shop ", "      name: appdb ", 1)
        .replacen("    name: orders\n", "    name: appdb\n", 1);
    let file = dir.write("stack.yaml", &text);
    // A pod reaches each cluster at its sandbox PostgreSQL: the team's by its endpoint, the
    // created one (whose endpoint moto makes at apply) by default.
    let registries = std::env::join_paths([
        pg_shop.var("PWLESS_SANDBOX_IAM_CREDENTIALS"),
        pg_orders.var("PWLESS_SANDBOX_IAM_CREDENTIALS"),
    ])
    .unwrap();
    let mut runner = moto.command(dir.path());
    runner
        .args(["sandbox", "run", "-f", file.to_str().unwrap()])
        .env("PWLESS_DB_CA_BUNDLE", ca_bundle)
        .env("PWLESS_SANDBOX_IAM_CREDENTIALS", &registries)
        .env(
            "PWLESS_SANDBOX_DB_ADDRESS",
            pg_orders.var("PWLESS_SANDBOX_DB_ADDRESS"),
        )
        .env(
            "PWLESS_SANDBOX_DB_ROUTES",
            format!(
                "{shop_endpoint}={}",
                pg_shop.var("PWLESS_SANDBOX_DB_ADDRESS")
            ),
        );
    let kube = crate::kubernetes::KubeStandin::start_routed(
        "many",
        &cluster,
        &moto,
        ("testing", "testing"),
        pg_orders.var("PWLESS_SANDBOX_DB_ADDRESS"),
        &[(
            shop_endpoint.clone(),
            pg_shop.var("PWLESS_SANDBOX_DB_ADDRESS").to_string(),
        )],
        Some(runner),
    );
    let run = |args: &[&str]| {
        let mut command = moto.command(dir.path());
        command
            .arg(args[0])
            .args(["-f", file.to_str().unwrap()])
            .args(&args[1..])
            .envs(kube.env())
            .env("PWLESS_DB_CA_BUNDLE", ca_bundle)
            .stdin(Stdio::null());
        command.output().unwrap()
    };

    // The plan reads the team's cluster, creates the orders cluster, and its access matrix has
    // a link per (service account, database).
    let output = run(&["plan", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(
        plan["reads"]
            .as_array()
            .unwrap()
            .iter()
            .any(|read| read["address"] == "data.aws_rds_cluster.shop"
                && read["id"] == aurora.as_str()),
        "{}",
        plan["reads"]
    );
    let mut links: Vec<String> = plan["access"]["database"]
        .as_array()
        .unwrap()
        .iter()
        .map(|link| {
            format!(
                "{} {} {} {}",
                link["service_account"].as_str().unwrap(),
                link["database"].as_str().unwrap(),
                link["db_user"].as_str().unwrap(),
                link["cluster"].as_str().unwrap()
            )
        })
        .collect();
    links.sort();
    let orders_cluster = format!("{name}-orders");
    assert_eq!(
        links,
        [
            format!("analytics/reports orders reporting {orders_cluster}"),
            format!("analytics/reports shop reporting {aurora}"),
            format!("orders/api orders orders_api {orders_cluster}"),
            format!("storefront/web shop storefront {aurora}"),
        ]
    );

    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // Each database got its own users, each through its own relay.
    assert_eq!(
        roles_in(&pg_shop, &rt, &["storefront", "reporting", "orders_api"]),
        ["reporting", "storefront"]
    );
    assert_eq!(
        roles_in(&pg_orders, &rt, &["storefront", "reporting", "orders_api"]),
        ["orders_api", "reporting"]
    );
    let forwards: Vec<String> = rt
        .block_on(kube.port_forwards())
        .iter()
        .filter_map(|request| request["target"].as_str().map(str::to_string))
        .collect();
    for pg in [&pg_shop, &pg_orders] {
        assert!(
            forwards
                .iter()
                .any(|target| target == pg.var("PWLESS_SANDBOX_DB_ADDRESS")),
            "{forwards:?}"
        );
    }
    // One role per service account: the reports service's may connect as `reporting` in each
    // cluster, one statement each, and as nothing else.
    let orders_id = describe(&orders_cluster)
        .db_cluster_resource_id()
        .unwrap()
        .to_string();
    let reports_role = format!("{name}-analytics-reports");
    assert_eq!(
        connect_grants(&clients, &rt, &reports_role),
        [
            (shop_id.clone(), "reporting".to_string()),
            (orders_id.clone(), "reporting".to_string()),
        ]
    );
    assert_eq!(
        connect_grants(&clients, &rt, &format!("{name}-storefront-web")),
        [(shop_id.clone(), "storefront".to_string())]
    );
    assert_exit(&run(&["plan", "--detailed-exitcode"]), 0);

    // Every service account against every database: its user there logs in, as itself;
    // everything else is refused.
    let image = crate::common::verify_image();
    let verify = || {
        let output = run(&["verify", "--image", &image, "--json"]);
        let rows: serde_json::Value = serde_json::from_str(&stdout(&output))
            .unwrap_or_else(|_| panic!("{}{}", stdout(&output), stderr(&output)));
        (output.status.code(), rows)
    };
    let (code, rows) = verify();
    let matrix: Vec<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row["cells"].as_array().unwrap().iter().map(move |cell| {
                format!(
                    "{} {} {} {}",
                    row["service_account"].as_str().unwrap(),
                    row["database"].as_str().unwrap(),
                    cell["user"].as_str().unwrap(),
                    cell["result"].as_str().unwrap()
                )
            })
        })
        .collect();
    assert_eq!(code, Some(0), "{matrix:#?}");
    assert_eq!(
        matrix,
        [
            "storefront/web shop storefront logged_in",
            "storefront/web shop reporting refused",
            "storefront/web orders orders_api refused",
            "storefront/web orders reporting refused",
            "orders/api shop storefront refused",
            "orders/api shop reporting refused",
            "orders/api orders orders_api logged_in",
            "orders/api orders reporting refused",
            "analytics/reports shop storefront refused",
            "analytics/reports shop reporting logged_in",
            "analytics/reports orders orders_api refused",
            "analytics/reports orders reporting logged_in",
        ]
    );
    // doctor follows each chain into its own database.
    let output = run(&["doctor", "--database", "orders"]);
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{report}{}", stderr(&output));
    assert!(
        report.contains("Every link of 2 chain(s) holds.")
            && report.contains("analytics/reports -> database orders, database user reporting"),
        "{report}"
    );

    // The reports service loses the orders database: its role keeps the shop statement alone,
    // the plan flags orders' `reporting` as nobody's, and a login as `reporting` into orders,
    // a user of the same name it still is in the shop cluster, is refused.
    let fewer = text.replacen(
        "  - {namespace: analytics, service_account: reports, database: orders, db_user: reporting}\n",
        "",
        1,
    );
    std::fs::write(&file, &fewer).unwrap();
    let output = run(&["plan"]);
    assert!(
        stdout(&output).contains(
            "! database user reporting of database orders: no service account may log in as it"
        ),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        connect_grants(&clients, &rt, &reports_role),
        [(shop_id.clone(), "reporting".to_string())]
    );
    let (code, rows) = verify();
    assert_eq!(code, Some(0), "{rows:#}");
    let reports_in_orders = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["service_account"] == "analytics/reports" && row["database"] == "orders")
        .unwrap();
    assert!(
        reports_in_orders.get("db_user").is_none(),
        "{reports_in_orders}"
    );
    assert!(
        reports_in_orders["cells"]
            .as_array()
            .unwrap()
            .iter()
            .all(|cell| cell["result"] == "refused"),
        "{reports_in_orders}"
    );

    // The shop database leaves the stack (and its access entries with it): its users are
    // dropped from the team's cluster, reached with what the state records (the managed
    // master secret, the relay, which goes after them), and the cluster stays. So does the
    // orders database's `reporting`, which nobody used any more.
    let mut in_shop = false;
    let without_shop: String = fewer
        .lines()
        .filter(|line| {
            if line.starts_with("  shop:") {
                in_shop = true;
            } else if line.starts_with("  orders:") {
                in_shop = false;
            }
            !in_shop && !line.contains("database: shop")
        })
        .map(|line| format!("{line}\n"))
        .collect::<String>()
        .replacen(
            "      - name: reporting          # a user of the orders cluster, apart from shop's\n        privileges: [connect, usage, select]\n",
            "",
            1,
        );
    std::fs::write(&file, &without_shop).unwrap();
    // The users this plan drops are recorded, so not flagged as undeclared ones (they were,
    // as "made by this stack and no longer recorded").
    assert!(
        !without_shop.contains("- name: reporting"),
        "{without_shop}"
    );
    let output = run(&["plan", "--json"]);
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(
        plan["access"].get("undeclared_users").is_none(),
        "{}",
        plan["access"]
    );
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(roles_in(&pg_shop, &rt, &["storefront", "reporting"]).is_empty());
    assert_eq!(
        roles_in(&pg_orders, &rt, &["orders_api", "reporting"]),
        ["orders_api"]
    );
    assert_exit(&run(&["plan", "--detailed-exitcode"]), 0);

    // Destroy: the users go from both databases, the created cluster goes (its final snapshot
    // kept), the team's stays exactly as it was.
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The team's cluster stays: its users are dropped. The created cluster goes, and its users
    // with it (only forgotten: the sandbox PostgreSQL that stood for it keeps them).
    assert!(roles_in(&pg_shop, &rt, &["storefront", "reporting"]).is_empty());
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(format!("state/{name}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(state["resources"], serde_json::json!([]), "{state:#}");
    assert_eq!(
        aurora_before,
        rt.block_on(describe_team_aurora(&clients.rds, &aurora))
    );
    let left = rt.block_on(
        clients
            .rds
            .describe_db_clusters()
            .db_cluster_identifier(&orders_cluster)
            .send(),
    );
    assert!(left.is_err(), "{left:?}");
}

/// `pwless import`: a VPC the team made through the SDK is brought under the stack at
/// `aws_vpc.main`, read and recorded, nothing changed; the plan then updates it in place (the
/// stack's tags, DNS hostnames) and builds the rest in it instead of making a VPC; apply and
/// destroy manage it from then on. What cannot be imported is refused before anything is
/// read or written: an address the stack lacks, a kind that lives inside another resource, an
/// id of another kind, a name other than the stack's, a resource that is not there or that
/// another stack's tags claim, an address recorded already.
#[test]
fn a_vpc_made_outside_is_imported_at_its_address_and_managed_from_then_on() {
    let moto = Moto::start();
    let rt = runtime();
    let clients = rt.block_on(clients(&moto));
    let make_vpc = |tags: &[(&str, &str)]| {
        rt.block_on(async {
            let mut spec = aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Vpc);
            for (key, value) in tags {
                spec = spec.tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(*key)
                        .value(*value)
                        .build(),
                );
            }
            clients
                .ec2
                .create_vpc()
                .cidr_block("10.0.0.0/16")
                .tag_specifications(spec.build())
                .send()
                .await
                .unwrap()
                .vpc()
                .unwrap()
                .vpc_id()
                .unwrap()
                .to_string()
        })
    };
    let team_vpc = make_vpc(&[("owner", "team")]);
    let claimed_vpc = make_vpc(&[("pwless:stack", "someone-else")]);
    let name = format!("t{}-import", std::process::id());
    let dir = TempDir::new(&name);
    let file = dir.write(
        "stack.yaml",
        &include_str!("../../examples/aws-only.yaml").replacen(
            "stack: iam-postgres",
            &format!("stack: {name}"),
            1,
        ),
    );
    let run = |args: &[&str]| {
        moto.command(dir.path())
            .arg(args[0])
            .args(["-f", file.to_str().unwrap()])
            .args(&args[1..])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let state_file = dir.path().join(format!("state/{name}.json"));
    let refused = |args: &[&str], message: &str| {
        let output = run(args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    };
    refused(
        &["import", "aws_vpc.mian", &team_vpc],
        "the stack has no resource `aws_vpc.mian`: did you mean `aws_vpc.main`?",
    );
    refused(
        &["import", "aws_vpc.main", "subnet-0123456789abcdef0"],
        "`subnet-0123456789abcdef0` is a subnet's, not the id of a VPC, which aws_vpc.main is",
    );
    refused(
        &[
            "import",
            "aws_route_table_association.public[0]",
            "rtbassoc-0123",
        ],
        "aws_route_table_association cannot be imported",
    );
    refused(
        &["import", "aws_iam_role.eks_cluster", "someone-elses-role"],
        &format!(
            "the stack names aws_iam_role.eks_cluster `{name}-eks-cluster`, not `someone-elses-role`"
        ),
    );
    refused(
        &["import", "aws_vpc.main", "vpc-0000000000000000f"],
        "there is no aws_vpc `vpc-0000000000000000f` to import",
    );
    refused(
        &["import", "aws_vpc.main", &claimed_vpc],
        "is marked as stack someone-else's (pwless:stack)",
    );
    assert!(
        std::fs::read_to_string(&state_file).map_or(true, |text| !text.contains("aws_vpc.main")),
        "a refused import recorded nothing"
    );

    let output = run(&["import", "aws_vpc.main", &team_vpc]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!(
            "Imported aws_vpc.main ({team_vpc}) into the state"
        )),
        "{}",
        stderr(&output)
    );
    refused(
        &["import", "aws_vpc.main", &team_vpc],
        "the state records `aws_vpc.main` already",
    );
    // One subnet under two addresses would be changed and deleted twice.
    let subnet = rt.block_on(async {
        clients
            .ec2
            .create_subnet()
            .vpc_id(&team_vpc)
            .cidr_block("10.0.0.0/20")
            .send()
            .await
            .unwrap()
            .subnet()
            .unwrap()
            .subnet_id()
            .unwrap()
            .to_string()
    });
    let output = run(&["import", "aws_subnet.public[0]", &subnet]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    refused(
        &["import", "aws_subnet.public[1]", &subnet],
        &format!("`{subnet}` is recorded already, as `aws_subnet.public[0]`"),
    );
    refused(
        &["import", "aws_nat_gateway.main[0]", "nat-0123456789abcdef0"],
        "aws_nat_gateway cannot be imported",
    );
    // The plan updates the imported VPC in place and builds in it: no VPC to create.
    let output = run(&["plan", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let change = |address: &str| {
        plan["resource_changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|change| change["address"] == address)
            .unwrap_or_else(|| panic!("{address}"))
            .clone()
    };
    let vpc = change("aws_vpc.main");
    assert_eq!(vpc["action"], "update", "{vpc}");
    assert!(
        vpc["changed"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("tags")),
        "{vpc}"
    );
    assert_eq!(
        change("aws_subnet.private[0]")["after"]["vpc_id"],
        team_vpc.as_str()
    );

    // Apply keeps that VPC (tagged now as the stack's); destroy deletes it with the rest.
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let tags = rt.block_on(async {
        clients
            .ec2
            .describe_vpcs()
            .vpc_ids(&team_vpc)
            .send()
            .await
            .unwrap()
            .vpcs()[0]
            .tags()
            .iter()
            .map(|tag| {
                (
                    tag.key().unwrap().to_string(),
                    tag.value().unwrap().to_string(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    assert_eq!(tags.get("pwless:stack"), Some(&name), "{tags:?}");
    assert_exit(&run(&["plan", "--detailed-exitcode"]), 0);
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let left = rt.block_on(clients.ec2.describe_vpcs().vpc_ids(&team_vpc).send());
    assert!(left.is_err(), "{left:?}");
}
