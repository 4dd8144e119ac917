//! The planner, table-driven: (stack change, prior state, observed state) -> actions.

use std::collections::HashMap;

use pwless::plan::{Action, Mode, Observed, ObservedState, Plan, StalePlan, plan};
use pwless::state::State;
use pwless_testing::applied_state;

use crate::common::{EXAMPLE, example_with, graph_of, stack_from};

fn plan_for(text: &str, prior: Option<&State>, observed: &ObservedState, mode: Mode) -> Plan {
    let stack = stack_from(text);
    plan(&stack, &graph_of(&stack), prior, observed, mode)
}

fn example_state() -> State {
    let stack = stack_from(EXAMPLE);
    applied_state(&stack.name, &graph_of(&stack))
}

/// address -> action, for the changes that do something.
fn actions(plan: &Plan) -> HashMap<&str, Action> {
    plan.resource_changes
        .iter()
        .filter(|change| change.action != Action::NoOp)
        .map(|change| (change.address.as_str(), change.action))
        .collect()
}

#[test]
fn empty_state_creates_everything_with_unknowns_marked() {
    let plan = plan_for(EXAMPLE, None, &ObservedState::new(), Mode::Normal);
    assert!(
        plan.resource_changes
            .iter()
            .all(|change| change.action == Action::Create)
    );
    assert_eq!(plan.summary.add, plan.resource_changes.len());
    assert_eq!((plan.summary.change, plan.summary.destroy), (0, 0));
    assert_eq!(plan.prior_state.lineage, None);
    let subnet = plan.change("aws_subnet.private[0]").unwrap();
    assert!(
        subnet.after_unknown.contains_key("vpc_id"),
        "vpc_id is known after apply"
    );
    assert_eq!(
        subnet.after.as_ref().unwrap()["cidr_block"],
        "10.0.128.0/18"
    );
    assert_eq!(subnet.depends_on, ["aws_vpc.main"]);
}

#[test]
fn applied_state_plans_no_changes() {
    let state = example_state();
    let plan = plan_for(EXAMPLE, Some(&state), &ObservedState::new(), Mode::Normal);
    assert!(!plan.has_changes(), "{:?}", actions(&plan));
    assert_eq!(
        plan.prior_state.lineage.as_deref(),
        Some(state.lineage.as_str())
    );
    assert_eq!(plan.prior_state.serial, 1);
}

struct Case {
    name: &'static str,
    from: &'static str,
    to: &'static str,
    /// Exactly these resources change, with these actions.
    expect: &'static [(&'static str, Action)],
    replace_paths: &'static [(&'static str, &'static [&'static str])],
}

const CASES: &[Case] = &[
    Case {
        name: "node group scaling updates in place",
        from: "desired_size: 2",
        to: "desired_size: 3",
        expect: &[("aws_eks_node_group.main", Action::Update)],
        replace_paths: &[],
    },
    Case {
        name: "Kubernetes version upgrades cluster and nodes in place",
        from: "version: \"1.31\"",
        to: "version: \"1.32\"",
        expect: &[
            ("aws_eks_cluster.main", Action::Update),
            ("aws_eks_node_group.main", Action::Update),
        ],
        replace_paths: &[],
    },
    Case {
        name: "instance type of the nodes forces a new node group",
        from: "instance_types: [t3.medium]",
        to: "instance_types: [t3.large]",
        expect: &[("aws_eks_node_group.main", Action::Replace)],
        replace_paths: &[("aws_eks_node_group.main", &["instance_types"])],
    },
    Case {
        name: "a tag updates every tagged AWS resource in place",
        from: "tags: {team: platform}",
        to: "tags: {team: data}",
        expect: &[],
        replace_paths: &[],
    },
    Case {
        name: "a privilege change updates only the grant",
        from: "privileges: [connect, usage, create, select, insert, update, delete]",
        to: "privileges: [connect, usage, select]",
        expect: &[("postgresql_grant.user[app_user]", Action::Update)],
        replace_paths: &[],
    },
    Case {
        name: "renaming the database replaces the cluster and everything that needs its outputs",
        from: "name: appdb",
        to: "name: otherdb",
        expect: &[
            ("aws_rds_cluster.main", Action::Replace),
            // Instances live inside the cluster.
            ("aws_rds_cluster_instance.main[0]", Action::Replace),
            // The grant names the database and needs the new cluster's resource id.
            ("postgresql_grant.user[app_user]", Action::Replace),
            ("postgresql_role.user[app_user]", Action::Replace),
            // The policy's dbuser ARN holds the cluster resource id: known after apply.
            ("aws_iam_role_policy.irsa[demo/demo-app]", Action::Update),
            // DB_ENDPOINT and DB_NAME change.
            ("kubernetes_deployment.demo/pwless-demo", Action::Update),
            // The relay forwards to the new cluster's endpoint: known after apply.
            ("kubernetes_db_relay.pwless/db-relay", Action::Update),
        ],
        replace_paths: &[("aws_rds_cluster.main", &["database_name"])],
    },
    Case {
        name: "more app replicas update the deployment only",
        from: "replicas: 2",
        to: "replicas: 4",
        expect: &[("kubernetes_deployment.demo/pwless-demo", Action::Update)],
        replace_paths: &[],
    },
];

#[test]
fn changes_plan_exactly_the_expected_actions() {
    let state = example_state();
    for case in CASES {
        let plan = plan_for(
            &example_with(case.from, case.to),
            Some(&state),
            &ObservedState::new(),
            Mode::Normal,
        );
        let found = actions(&plan);
        if case.name.starts_with("a tag") {
            // Every resource with `tags`, and only those, is updated.
            let tagged: Vec<&str> = state
                .resources
                .iter()
                .filter(|r| r.inputs.contains_key("tags"))
                .map(|r| r.address.as_str())
                .collect();
            assert_eq!(found.len(), tagged.len(), "{}: {found:?}", case.name);
            assert!(
                tagged
                    .iter()
                    .all(|address| found.get(address) == Some(&Action::Update)),
                "{}",
                case.name
            );
            continue;
        }
        let expected: HashMap<&str, Action> = case.expect.iter().copied().collect();
        assert_eq!(found, expected, "{}", case.name);
        for (address, paths) in case.replace_paths {
            let change = plan.change(address).unwrap();
            assert_eq!(change.replace_paths, *paths, "{}: {address}", case.name);
            assert!(
                change
                    .reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("cannot change in place"),
                "{}",
                case.name
            );
        }
    }
}

#[test]
fn a_new_vpc_block_replaces_the_network_and_what_stands_on_it() {
    let state = example_state();
    let text = example_with("cidr: 10.0.0.0/16", "cidr: 10.1.0.0/16");
    let plan = plan_for(&text, Some(&state), &ObservedState::new(), Mode::Normal);
    let found = actions(&plan);
    assert_eq!(found["aws_vpc.main"], Action::Replace);
    assert_eq!(
        plan.change("aws_vpc.main").unwrap().replace_paths,
        ["cidr_block"]
    );
    for address in [
        "aws_subnet.public[0]",
        "aws_subnet.private[1]",
        "aws_internet_gateway.main",
        "aws_eks_cluster.main",
        "aws_security_group.database",
    ] {
        assert_eq!(found[address], Action::Replace, "{address}");
    }
    // IAM does not live in the VPC.
    assert!(!found.contains_key("aws_iam_role.eks_node"));
    let eks = plan.change("aws_eks_cluster.main").unwrap();
    // A cluster cannot move to another VPC; within one, its subnets change in place.
    assert_eq!(eks.replace_paths, ["vpc_id"]);
    // Nor can an Aurora cluster (ModifyDBCluster takes no subnet group): before, it was
    // planned as an update that would fail halfway, with the EKS cluster already replaced.
    // Its replacement destroys its data: consent is needed.
    let rds = plan.change("aws_rds_cluster.main").unwrap();
    assert_eq!(rds.action, Action::Replace);
    assert!(
        rds.replace_paths.contains(&"vpc_id".to_string()),
        "{:?}",
        rds.replace_paths
    );
    assert!(rds.data_loss.is_some());
    assert_eq!(found["aws_db_subnet_group.main"], Action::Replace);
}

#[test]
fn removed_users_and_access_are_deleted_dependents_first() {
    let state = example_state();
    let text = "stack: iam-postgres\nregion: us-west-2\ntags: {team: platform}\n\
        network: {cidr: 10.0.0.0/16, availability_zones: 2, nat_gateways: single}\n\
        cluster: {version: \"1.31\", node_group: {instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}, admins: [\"arn:aws:iam::123456789012:user/moto\"]}\n\
        database: {engine_version: \"17.4\", instance_class: db.t4g.medium, instances: 1, name: appdb, master_username: postgres}\n";
    let plan = plan_for(text, Some(&state), &ObservedState::new(), Mode::Normal);
    // The user was not read (nothing observed): what it owns is not known, so dropping it
    // needs consent as if it owned something. Read, owning nothing, it needs none.
    let user = plan.change("postgresql_role.user[app_user]").unwrap();
    assert!(
        user.data_loss
            .as_deref()
            .unwrap_or_default()
            .contains("not read"),
        "{user:?}"
    );
    let mut observed = ObservedState::new();
    observed.insert(
        "postgresql_role.user[app_user]".to_string(),
        Observed::Present {
            inputs: state
                .resource("postgresql_role.user[app_user]")
                .unwrap()
                .inputs
                .clone(),
            outputs: [(
                "holdings".to_string(),
                serde_json::json!([{"database": "appdb", "owns": 0, "privileges": 3}]),
            )]
            .into(),
        },
    );
    let read = plan_for(text, Some(&state), &observed, Mode::Normal);
    let user = read.change("postgresql_role.user[app_user]").unwrap();
    assert_eq!(user.data_loss, None);
    assert_eq!(user.holdings.len(), 1);
    let found = actions(&plan);
    let gone = [
        "postgresql_role.user[app_user]",
        "postgresql_grant.user[app_user]",
        "aws_iam_role.irsa[demo/demo-app]",
        "aws_iam_role_policy.irsa[demo/demo-app]",
        "kubernetes_namespace.demo",
        "kubernetes_service_account.demo/demo-app",
        "kubernetes_deployment.demo/pwless-demo",
        "kubernetes_service.demo/pwless-demo",
        // No user left to manage: no relay either.
        "kubernetes_namespace.pwless",
        "kubernetes_config_map.pwless/db-relay",
        "kubernetes_network_policy.pwless/db-relay",
        "kubernetes_db_relay.pwless/db-relay",
    ];
    assert_eq!(found.len(), gone.len(), "{found:?}");
    assert!(gone.iter().all(|address| found[address] == Action::Delete));
    let position = |address: &str| {
        plan.resource_changes
            .iter()
            .position(|c| c.address == address)
            .unwrap()
    };
    assert!(
        position("postgresql_grant.user[app_user]") < position("postgresql_role.user[app_user]")
    );
    assert!(
        position("kubernetes_service_account.demo/demo-app")
            < position("aws_iam_role.irsa[demo/demo-app]")
    );
    assert!(
        position("aws_iam_role_policy.irsa[demo/demo-app]")
            < position("aws_iam_role.irsa[demo/demo-app]")
    );
    assert!(
        position("kubernetes_service_account.demo/demo-app")
            < position("kubernetes_namespace.demo")
    );
    // The users are dropped through the relay, which goes after them.
    assert!(
        position("postgresql_role.user[app_user]")
            < position("kubernetes_db_relay.pwless/db-relay")
    );
    let role_delete = plan.change("aws_iam_role.irsa[demo/demo-app]").unwrap();
    assert_eq!(
        role_delete.reason.as_deref(),
        Some("it is no longer in the stack")
    );
    assert!(
        role_delete
            .depends_on
            .contains(&"kubernetes_service_account.demo/demo-app".to_string())
    );
}

#[test]
fn destroy_deletes_everything_in_reverse_dependency_order() {
    let state = example_state();
    let plan = plan_for(EXAMPLE, Some(&state), &ObservedState::new(), Mode::Destroy);
    assert_eq!(plan.summary.destroy, state.resources.len());
    assert_eq!(plan.summary.add + plan.summary.change, 0);
    let position: HashMap<&str, usize> = plan
        .resource_changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.address.as_str(), i))
        .collect();
    for resource in &state.resources {
        for dependency in &resource.dependencies {
            assert!(
                position[resource.address.as_str()] < position[dependency.as_str()],
                "{} must be deleted before {dependency}",
                resource.address
            );
        }
    }
    assert_eq!(
        plan.resource_changes.last().unwrap().address,
        "aws_vpc.main"
    );
    // Destroy of an empty state is no change.
    let nothing = plan_for(EXAMPLE, None, &ObservedState::new(), Mode::Destroy);
    assert!(!nothing.has_changes());
}

#[test]
fn drift_deleted_outside_pwless_is_created_again() {
    let state = example_state();
    let observed: ObservedState = [(
        "aws_iam_role.irsa[demo/demo-app]".to_string(),
        Observed::Missing,
    )]
    .into();
    let plan = plan_for(EXAMPLE, Some(&state), &observed, Mode::Normal);
    let found = actions(&plan);
    let role = plan.change("aws_iam_role.irsa[demo/demo-app]").unwrap();
    assert_eq!(role.action, Action::Create);
    assert_eq!(
        role.reason.as_deref(),
        Some("it was deleted outside pwless")
    );
    // Its ARN and name come anew: the policy (role name forces new) and the service account follow.
    assert_eq!(
        found["aws_iam_role_policy.irsa[demo/demo-app]"],
        Action::Replace
    );
    assert_eq!(
        found["kubernetes_service_account.demo/demo-app"],
        Action::Update
    );
    assert_eq!(found.len(), 3, "{found:?}");
}

#[test]
fn drift_modified_outside_pwless_is_reverted() {
    let state = example_state();
    let prior = state.resource("aws_eks_node_group.main").unwrap();
    let mut inputs = prior.inputs.clone();
    inputs.insert(
        "scaling".into(),
        serde_json::json!({"min_size": 0, "desired_size": 0, "max_size": 3}),
    );
    let observed: ObservedState = [(
        "aws_eks_node_group.main".to_string(),
        Observed::Present {
            inputs,
            outputs: prior.outputs.clone(),
        },
    )]
    .into();
    let plan = plan_for(EXAMPLE, Some(&state), &observed, Mode::Normal);
    let change = plan.change("aws_eks_node_group.main").unwrap();
    assert_eq!(change.action, Action::Update);
    assert_eq!(change.changed, ["scaling"]);
    assert_eq!(
        change.reason.as_deref(),
        Some("it was changed outside pwless")
    );
    assert_eq!(
        change.before.as_ref().unwrap()["scaling"]["desired_size"],
        0
    );
    assert_eq!(actions(&plan).len(), 1);
}

#[test]
fn a_resource_whose_kind_changed_is_replaced_not_orphaned() {
    let mut state = example_state();
    let mut moved = state.resource("aws_eip.nat[0]").unwrap().clone();
    moved.kind = pwless::graph::ResourceKind::SecurityGroup;
    state.upsert(moved);
    let plan = plan_for(EXAMPLE, Some(&state), &ObservedState::new(), Mode::Normal);
    let change = plan.change("aws_eip.nat[0]").unwrap();
    assert_eq!(change.action, Action::Replace);
    assert!(change.reason.as_deref().unwrap().contains("kind changed"));
}

#[test]
fn a_saved_plan_is_refused_once_the_state_moves() {
    let state = example_state();
    let saved = plan_for(
        &example_with("replicas: 2", "replicas: 3"),
        Some(&state),
        &ObservedState::new(),
        Mode::Normal,
    );
    assert_eq!(saved.check_current(Some(&state)), Ok(()));

    let mut newer = state.clone();
    newer.serial += 1;
    assert_eq!(
        saved.check_current(Some(&newer)),
        Err(StalePlan::Serial {
            planned: 1,
            current: 2
        })
    );
    let other = State {
        serial: 1,
        ..State::new("iam-postgres")
    };
    assert!(matches!(
        saved.check_current(Some(&other)),
        Err(StalePlan::Lineage { .. })
    ));
    assert_eq!(saved.check_current(None), Err(StalePlan::StateVanished));

    let first = plan_for(EXAMPLE, None, &ObservedState::new(), Mode::Normal);
    assert_eq!(first.check_current(None), Ok(()));
    assert_eq!(
        first.check_current(Some(&state)),
        Err(StalePlan::StateAppeared)
    );

    // The saved form round-trips exactly, unknown expressions included.
    let text = pwless::render::plan::json(&first);
    let back: Plan = serde_json::from_str(&text).unwrap();
    assert_eq!(back, first);
}

#[test]
fn replacing_a_cluster_replaces_what_lives_inside_it() {
    // Regression: instances and node groups named their cluster by a literal, so a replaced
    // cluster left them as in-place updates of resources that would no longer exist.
    let state = example_state();
    let plan = plan_for(
        &example_with("name: appdb", "name: appdb2"),
        Some(&state),
        &ObservedState::new(),
        Mode::Normal,
    );
    assert_eq!(
        plan.change("aws_rds_cluster_instance.main[0]")
            .unwrap()
            .action,
        Action::Replace
    );
    assert_eq!(
        plan.change("aws_rds_cluster_instance.main[0]")
            .unwrap()
            .replace_paths,
        ["cluster_identifier"]
    );
    let plan = plan_for(
        &example_with(
            "nat_gateways: single",
            "nat_gateways: single\n  public_subnets: [10.0.0.0/20, 10.0.16.0/20]\n  private_subnets: [10.0.128.0/18, 10.0.192.0/18]",
        ),
        Some(&state),
        &ObservedState::new(),
        Mode::Normal,
    );
    // Other public subnets in the same VPC: EKS changes the cluster's subnets in place, and
    // the node group (in the private subnets, in a cluster that stays) is left as it is.
    assert_eq!(
        plan.change("aws_eks_cluster.main").unwrap().action,
        Action::Update
    );
    assert_eq!(
        plan.change("aws_eks_node_group.main").unwrap().action,
        Action::NoOp
    );
    // A cluster replaced (another service CIDR) takes its node group with it.
    let plan = plan_for(
        &example_with(
            "version: \"1.31\"",
            "version: \"1.31\"\n  service_cidr: 172.20.0.0/16",
        ),
        Some(&state),
        &ObservedState::new(),
        Mode::Normal,
    );
    assert_eq!(
        plan.change("aws_eks_cluster.main").unwrap().action,
        Action::Replace
    );
    assert_eq!(
        plan.change("aws_eks_node_group.main").unwrap().action,
        Action::Replace
    );
    assert_eq!(
        plan.change("aws_eks_node_group.main")
            .unwrap()
            .replace_paths,
        ["cluster_name"]
    );
}

#[test]
fn a_plan_that_destroys_data_needs_consent_for_each_address() {
    // Data lost without consent: changing `database.name` planned `-/+ aws_rds_cluster.main`
    // with no warning, and apply carried it out on --auto-approve.
    let prior = example_state();
    let renamed = example_with("name: appdb", "name: otherdb");
    let plan = plan_for(&renamed, Some(&prior), &ObservedState::new(), Mode::Normal);
    let cluster = plan.change("aws_rds_cluster.main").unwrap();
    assert_eq!(cluster.action, Action::Replace);
    assert_eq!(
        cluster.data_loss.as_deref(),
        Some("every database, table and row in the Aurora cluster")
    );
    let losses: Vec<String> = plan
        .data_losses()
        .map(|change| change.address.clone())
        .collect();
    assert!(
        losses.contains(&"aws_rds_cluster.main".to_string()),
        "{losses:?}"
    );
    // Only data-holding kinds are marked.
    assert!(
        plan.resource_changes
            .iter()
            .filter(|change| change.data_loss.is_some())
            .all(|change| change.address.starts_with("aws_rds_")),
        "{losses:?}"
    );

    // Without consent for every one of them: refused, each named with its flag.
    let refused = plan.check_consent(&[]).unwrap_err();
    assert_eq!(refused.unconsented.len(), losses.len());
    assert!(
        refused
            .to_string()
            .contains("--allow-destroy aws_rds_cluster.main"),
        "{refused}"
    );
    let all_but_one = &losses[1..];
    assert!(plan.check_consent(all_but_one).is_err());
    // With it: allowed; an address where nothing is lost is given back for a warning.
    let mut allowed = losses.clone();
    assert_eq!(plan.check_consent(&allowed).unwrap(), Vec::<String>::new());
    allowed.push("aws_vpc.main".into());
    assert_eq!(plan.check_consent(&allowed).unwrap(), vec!["aws_vpc.main"]);
    // A saved plan carries the consent it was made with.
    let mut saved = plan.clone();
    saved.allowed_destroy = losses.clone();
    assert!(saved.check_consent(&[]).is_ok());
    let json = pwless::render::plan::json(&saved);
    assert!(json.contains("\"data_loss\""), "{json}");
    assert!(json.contains("\"allowed_destroy\""), "{json}");
    assert_eq!(Plan::from_saved(json.as_bytes()).unwrap(), saved);

    // The human plan says it at the change and once more at the end.
    let human = pwless::render::plan::human(&plan, pwless::render::Style::plain());
    assert!(
        human.contains(
            "        # ! destroys every database, table and row in the Aurora cluster; apply needs --allow-destroy aws_rds_cluster.main\n"
        ),
        "{human}"
    );
    assert!(
        human.contains(
            "Data loss: apply changes nothing unless each of these is named with --allow-destroy:"
        ),
        "{human}"
    );

    // A cluster already gone loses nothing more; a destroy is consent in itself.
    let mut observed = ObservedState::new();
    observed.insert("aws_rds_cluster.main".into(), Observed::Missing);
    let gone = plan_for(&renamed, Some(&prior), &observed, Mode::Normal);
    assert_eq!(gone.change("aws_rds_cluster.main").unwrap().data_loss, None);
    let destroy = plan_for(EXAMPLE, Some(&prior), &ObservedState::new(), Mode::Destroy);
    assert!(
        destroy
            .change("aws_eks_cluster.main")
            .unwrap()
            .data_loss
            .is_some()
    );
    assert_eq!(destroy.data_losses().count(), 0);
    assert!(destroy.check_consent(&[]).is_ok());
}

#[test]
fn a_subnet_or_subnet_group_deleted_outside_pwless_replaces_neither_cluster() {
    // A subnet deleted out of band planned a replacement of the whole EKS cluster, and a DB
    // subnet group deleted out of band one of the Aurora cluster: EKS changes a cluster's
    // subnets in place, and the group's name is known at plan time (it echoes its input).
    let prior = example_state();
    let mut observed = ObservedState::new();
    observed.insert("aws_subnet.private[0]".into(), Observed::Missing);
    observed.insert("aws_db_subnet_group.main".into(), Observed::Missing);
    let plan = plan_for(EXAMPLE, Some(&prior), &observed, Mode::Normal);
    let actions = actions(&plan);
    assert_eq!(actions["aws_subnet.private[0]"], Action::Create);
    assert_eq!(actions["aws_db_subnet_group.main"], Action::Create);
    assert_eq!(actions.get("aws_eks_cluster.main"), Some(&Action::Update));
    assert_eq!(
        plan.change("aws_eks_cluster.main").unwrap().changed,
        vec!["subnet_ids"]
    );
    assert_eq!(actions.get("aws_rds_cluster.main"), None, "{actions:?}");
    assert_eq!(plan.data_losses().count(), 0);
}

#[test]
fn an_input_a_newer_pwless_records_is_updated_not_replaced() {
    // A state written before the EKS cluster and the DB subnet group recorded their VPC: the
    // new `vpc_id` input (which forces a replacement when it changes) must not replace them.
    let mut prior = example_state();
    for address in ["aws_eks_cluster.main", "aws_db_subnet_group.main"] {
        let resource = prior
            .resources
            .iter_mut()
            .find(|resource| resource.address == address)
            .unwrap();
        resource.inputs.remove("vpc_id");
    }
    let plan = plan_for(EXAMPLE, Some(&prior), &ObservedState::new(), Mode::Normal);
    let found = actions(&plan);
    assert_eq!(found["aws_eks_cluster.main"], Action::Update);
    assert_eq!(found["aws_db_subnet_group.main"], Action::Update);
    assert_eq!(found.len(), 2, "{found:?}");
}

/// Issue 17, item 1: in each partition, every ARN the plan holds names the region's partition,
/// every service principal is that partition's, and no value names another partition's DNS
/// suffix (in China, `eks.amazonaws.com` and the IRSA audience `sts.amazonaws.com` are the same
/// as everywhere: see `pwless::partition`).
#[test]
fn every_arn_and_service_principal_follows_the_regions_partition() {
    fn walk<'v>(value: &'v serde_json::Value, key: &str, out: &mut Vec<(String, &'v str)>) {
        match value {
            serde_json::Value::String(text) => out.push((key.to_string(), text)),
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, key, out)),
            serde_json::Value::Object(map) => {
                map.iter().for_each(|(key, value)| walk(value, key, out))
            }
            _ => {}
        }
    }
    for (region, partition, ec2) in [
        ("us-west-2", "aws", "ec2.amazonaws.com"),
        ("cn-north-1", "aws-cn", "ec2.amazonaws.com.cn"),
        ("cn-northwest-1", "aws-cn", "ec2.amazonaws.com.cn"),
        ("us-gov-west-1", "aws-us-gov", "ec2.amazonaws.com"),
        ("us-gov-east-1", "aws-us-gov", "ec2.amazonaws.com"),
    ] {
        let text = EXAMPLE
            .replacen("region: us-west-2", &format!("region: {region}"), 1)
            .replacen("arn:aws:iam::", &format!("arn:{partition}:iam::"), 1);
        let plan = plan_for(&text, None, &ObservedState::new(), Mode::Normal);
        let mut strings = Vec::new();
        for change in &plan.resource_changes {
            for (key, value) in change.after.iter().flatten() {
                walk(value, key, &mut strings);
            }
        }
        let arns: Vec<&str> = strings
            .iter()
            .filter(|(_, text)| text.starts_with("arn:"))
            .map(|(_, text)| *text)
            .collect();
        assert!(arns.len() >= 6, "{region}: {arns:?}");
        for arn in &arns {
            assert!(
                arn.starts_with(&format!("arn:{partition}:")),
                "{region}: {arn} is not of partition {partition}"
            );
        }
        let services: Vec<&str> = strings
            .iter()
            .filter(|(key, _)| key == "Service")
            .map(|(_, text)| *text)
            .collect();
        assert_eq!(services, ["eks.amazonaws.com", ec2], "{region}");
        if partition == "aws-cn" {
            let universal = ["eks.amazonaws.com", "sts.amazonaws.com"];
            for (key, text) in &strings {
                assert!(
                    !text.ends_with(".amazonaws.com") || universal.contains(text),
                    "{region}: {key} = {text} names the commercial DNS suffix"
                );
            }
        }
    }
}
