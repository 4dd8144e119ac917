//! The rendered plans, human and JSON, as reviewed snapshots (tests/it/snapshots/).

use pwless::plan::{Mode, ObservedState, plan};
use pwless::render::{Style, plan::human, plan::json};
use pwless_testing::applied_state;

use crate::common::{EXAMPLE, example_with, graph_of, stack_from};

#[test]
fn example_create_plan_human() {
    let stack = stack_from(EXAMPLE);
    let plan = plan(
        &stack,
        &graph_of(&stack),
        None,
        &ObservedState::new(),
        Mode::Normal,
    );
    insta::assert_snapshot!(human(&plan, Style::plain()));
}

#[test]
fn example_create_plan_json() {
    let stack = stack_from(EXAMPLE);
    let plan = plan(
        &stack,
        &graph_of(&stack),
        None,
        &ObservedState::new(),
        Mode::Normal,
    );
    insta::assert_snapshot!(json(&plan));
}

#[test]
fn mixed_plan_human() {
    // An update, a replacement and deletions in one plan. Lineage is random: pin it.
    let stack = stack_from(EXAMPLE);
    let mut state = applied_state(&stack.name, &graph_of(&stack));
    state.lineage = "00000000-0000-4000-8000-000000000000".into();
    let text = example_with("desired_size: 2", "desired_size: 3")
        .replacen(
            "instance_class: db.t4g.medium",
            "instance_class: db.r7g.large",
            1,
        )
        .replacen("nat_gateways: single", "nat_gateways: none", 1)
        .replacen("name: appdb", "name: appdb2", 1);
    let changed = stack_from(&text);
    let plan = plan(
        &changed,
        &graph_of(&changed),
        Some(&state),
        &ObservedState::new(),
        Mode::Normal,
    );
    insta::assert_snapshot!(human(&plan, Style::plain()));
}

#[test]
fn destroy_plan_human() {
    let stack = stack_from(EXAMPLE);
    let mut state = applied_state(&stack.name, &graph_of(&stack));
    // A fixed lineage: the final snapshot's name carries it.
    state.lineage = "5e1ec7ed-0000-4000-8000-000000000000".into();
    let plan = plan(
        &stack,
        &graph_of(&stack),
        Some(&state),
        &ObservedState::new(),
        Mode::Destroy,
    );
    insta::assert_snapshot!(human(&plan, Style::plain()));
}

#[test]
fn colour_is_only_added_when_asked() {
    let stack = stack_from(EXAMPLE);
    let plan = plan(
        &stack,
        &graph_of(&stack),
        None,
        &ObservedState::new(),
        Mode::Normal,
    );
    assert!(!human(&plan, Style::plain()).contains('\x1b'));
    assert!(human(&plan, Style { color: true }).contains("\x1b[32m+\x1b[0m"));
}

#[test]
fn access_summary_names_the_resource_id_and_removals() {
    let stack = stack_from(EXAMPLE);
    let mut state = applied_state(&stack.name, &graph_of(&stack));
    let mut cluster = state.resource("aws_rds_cluster.main").unwrap().clone();
    cluster.outputs.insert(
        "cluster_resource_id".into(),
        serde_json::json!("cluster-ABCDEF"),
    );
    cluster.outputs.insert(
        "cluster_identifier".into(),
        serde_json::json!("iam-postgres"),
    );
    state.upsert(cluster);
    // Re-derive the policy's recorded inputs from the new output, as an apply would have.
    let mut policy = state
        .resource("aws_iam_role_policy.irsa[demo/demo-app]")
        .unwrap()
        .clone();
    policy.inputs.get_mut("rds_db_connect").unwrap()[0]["cluster_resource_id"] =
        serde_json::json!("cluster-ABCDEF");
    state.upsert(policy);
    let planned = plan(
        &stack,
        &graph_of(&stack),
        Some(&state),
        &ObservedState::new(),
        Mode::Normal,
    );
    assert!(planned.access.unused_users.is_empty());
    let text = human(&planned, Style::plain());
    assert!(text.contains("  demo/demo-app -> database user app_user\n      on cluster iam-postgres (resource id cluster-ABCDEF)\n      through IAM role iam-postgres-demo-demo-app (IRSA)\n"), "{text}");
    // The JSON plan holds the same summary: the planner computes it, both renderers show it.
    let json: serde_json::Value =
        serde_json::from_str(&pwless::render::plan::json(&planned)).unwrap();
    assert_eq!(
        json["access"]["database"],
        serde_json::json!([{
            "service_account": "demo/demo-app",
            "database": "main",
            "db_user": "app_user",
            "cluster": "iam-postgres",
            "cluster_resource_id": "cluster-ABCDEF",
            "iam_role": "iam-postgres-demo-demo-app",
            "identity": "irsa",
        }])
    );

    let without = stack_from(&example_with("access:                          # who may log in as which database user\n  - {namespace: demo, service_account: demo-app, db_user: app_user}\n", "").replacen("app:                             # the demo web app (optional section)\n  namespace: demo\n  service_account: demo-app\n  image: ghcr.io/example/pwless-demo:0.1.0\n  replicas: 2\n  port: 8080\n", "", 1));
    let planned = plan(
        &without,
        &graph_of(&without),
        Some(&state),
        &ObservedState::new(),
        Mode::Normal,
    );
    let text = human(&planned, Style::plain());
    assert!(
        text.contains("  - demo/demo-app: loses its database access (IRSA)"),
        "{text}"
    );
    // The user stays, and nothing may log in as it any more: the plan flags it.
    assert_eq!(planned.access.unused_users, ["app_user"]);
    assert!(
        text.contains("  ! database user app_user: no service account may log in as it (no `access` entry names it)"),
        "{text}"
    );
    assert_eq!(
        planned.access.database,
        vec![pwless::plan::access::DatabaseAccess {
            service_account: "demo/demo-app".into(),
            revoked: true,
            database: None,
            db_user: None,
            cluster: None,
            cluster_resource_id: None,
            iam_role: None,
            identity: pwless::spec::model::Identity::Irsa,
        }]
    );
    // A destroy leaves no access to show.
    let destroy = plan(
        &stack,
        &graph_of(&stack),
        Some(&state),
        &ObservedState::new(),
        Mode::Destroy,
    );
    assert!(destroy.access.is_empty());
    assert!(!pwless::render::plan::json(&destroy).contains("\"access\""));
}

#[test]
fn a_destroy_plan_says_what_becomes_of_the_aurora_data() {
    // (final_snapshot, the cluster already gone) -> the line under the cluster's delete.
    let cases = [
        (
            true,
            false,
            Some("        # a final snapshot is kept: iam-postgres-final-5e1ec7ed-7\n"),
        ),
        (
            false,
            false,
            Some("        # no final snapshot (final_snapshot: false): its data is lost\n"),
        ),
        (true, true, None),
    ];
    for (keep, gone, line) in cases {
        let text = if keep {
            EXAMPLE.to_string()
        } else {
            example_with(
                "  subnets: private",
                "  subnets: private\n  final_snapshot: false",
            )
        };
        let stack = stack_from(&text);
        let mut state = applied_state(&stack.name, &graph_of(&stack));
        state.lineage = "5e1ec7ed-0000-4000-8000-000000000000".into();
        state.serial = 7;
        let mut observed = ObservedState::new();
        if gone {
            observed.insert(
                "aws_rds_cluster.main".into(),
                pwless::plan::Observed::Missing,
            );
        }
        let plan = plan(
            &stack,
            &graph_of(&stack),
            Some(&state),
            &observed,
            Mode::Destroy,
        );
        let cluster = plan.change("aws_rds_cluster.main").unwrap();
        assert_eq!(
            cluster.final_snapshot.is_some(),
            keep && !gone,
            "{cluster:?}"
        );
        let text = human(&plan, Style::plain());
        let after_header = text
            .split_once("    - aws_rds_cluster.main")
            .map(|(_, rest)| rest.split_once('\n').map_or("", |(_, rest)| rest))
            .unwrap();
        match line {
            Some(line) => assert!(after_header.starts_with(line), "{text}"),
            None => assert!(!after_header.trim_start().starts_with('#'), "{text}"),
        }
    }
}

#[test]
fn database_users_are_forgotten_only_when_their_cluster_goes() {
    let stack = stack_from(EXAMPLE);
    let mut state = applied_state(&stack.name, &graph_of(&stack));
    state.lineage = "5e1ec7ed-0000-4000-8000-000000000000".into();
    // (address, forgotten) of the database changes, each of which must be a delete.
    let forget = |plan: &pwless::plan::Plan| -> Vec<(String, bool)> {
        plan.resource_changes
            .iter()
            .filter(|change| change.address.starts_with("postgresql_"))
            .inspect(|change| assert_eq!(change.action, pwless::plan::Action::Delete, "{change:?}"))
            .map(|change| (change.address.clone(), change.forget))
            .collect()
    };
    // Destroy: the cluster goes, so do its users, from the state alone.
    let destroy = plan(
        &stack,
        &graph_of(&stack),
        Some(&state),
        &ObservedState::new(),
        Mode::Destroy,
    );
    assert!(
        forget(&destroy).iter().all(|(_, forgotten)| *forgotten),
        "{:?}",
        forget(&destroy)
    );
    // A user removed from the stack while the cluster stays is dropped in the database.
    let without_users = stack_from(
        &EXAMPLE
            .replace("  users:\n    - name: app_user\n      privileges: [connect, usage, create, select, insert, update, delete]\n", "")
            .replace("access:                          # who may log in as which database user\n  - {namespace: demo, service_account: demo-app, db_user: app_user}\n", "")
            .replace("app:                             # the demo web app (optional section)\n  namespace: demo\n  service_account: demo-app\n  image: ghcr.io/example/pwless-demo:0.1.0\n  replicas: 2\n  port: 8080\n", ""),
    );
    let removed = plan(
        &without_users,
        &graph_of(&without_users),
        Some(&state),
        &ObservedState::new(),
        Mode::Normal,
    );
    let users = forget(&removed);
    assert_eq!(users.len(), 2, "{users:?}");
    assert!(users.iter().all(|(_, forgotten)| !forgotten), "{users:?}");
}
