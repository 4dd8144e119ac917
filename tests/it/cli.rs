//! The binary: exit codes, output streams, saved plans.

use crate::common::{EXAMPLE, TempDir, example_with, pwless, stderr, stdout};

#[test]
fn plan_prints_to_stdout_and_documents_its_exit_codes() {
    let dir = TempDir::new("cli-plan");
    let stack = dir.write("stack.yaml", EXAMPLE);
    let file = stack.to_str().unwrap();

    let output = pwless(&["plan", "-f", file], dir.path());
    assert_eq!(output.status.code(), Some(0));
    let plan = stdout(&output);
    assert!(
        plan.contains("\nPlan: 43 to add, 0 to change, 0 to destroy.\n"),
        "{plan}"
    );
    // The plan ends with who may log in as whom, and who administers the cluster.
    assert!(
        plan.contains("  demo/demo-app -> database user app_user\n      on cluster iam-postgres (resource id (known after apply))\n      through IAM role iam-postgres-demo-demo-app (IRSA)\n"),
        "{plan}"
    );
    assert!(
        plan.ends_with("\nKubernetes API access (cluster-admin through EKS access entries):\n  arn:aws:iam::123456789012:user/moto\n"),
        "{plan}"
    );
    assert!(!stdout(&output).contains('\x1b'), "NO_COLOR is honoured");

    let output = pwless(&["plan", "-f", file, "--detailed-exitcode"], dir.path());
    assert_eq!(output.status.code(), Some(2));

    let output = pwless(&["plan", "-f", file, "--json"], dir.path());
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["resource_changes"].as_array().unwrap().len(), 43);
    assert_eq!(plan["resource_changes"][0]["action"], "create");
    assert_eq!(plan["summary"]["add"], 43);
}

#[test]
fn an_invalid_stack_exits_1_naming_file_line_and_fix() {
    let dir = TempDir::new("cli-invalid");
    let stack = dir.write(
        "stack.yaml",
        &example_with("nat_gateways: single", "nat_gateways: several"),
    );
    let output = pwless(
        &["plan", "-f", stack.to_str().unwrap(), "--detailed-exitcode"],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("stack.yaml:10:17"), "{message}");
    assert!(
        message.contains("help: use one of: none, single, per_az"),
        "{message}"
    );
    assert!(stdout(&output).is_empty());
    assert!(
        !dir.path().join("state").exists(),
        "nothing is written for an invalid stack"
    );

    let output = pwless(&["plan", "-f", "missing.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot read stack file missing.yaml"));
}

#[test]
fn a_saved_plan_is_shown_and_refused_when_stale() {
    let dir = TempDir::new("cli-saved");
    let stack = dir.write("stack.yaml", EXAMPLE);
    let output = pwless(
        &["plan", "-f", stack.to_str().unwrap(), "-o", "plan.json"],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = pwless(&["show", "plan.json"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("Plan: 43 to add"));

    // A state appears (someone applied meanwhile): the plan no longer applies.
    let mut state = pwless::state::State::new("iam-postgres");
    crate::common::write_local_state(&dir.path().join("state/iam-postgres.json"), &mut state);
    let output = pwless(&["show", "plan.json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("the plan is stale"),
        "{}",
        stderr(&output)
    );
    // And apply refuses it before touching anything.
    let output = pwless(&["apply", "plan.json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains(
            "the saved plan cannot be applied: the plan was made before any state existed"
        ),
        "{}",
        stderr(&output)
    );
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let dir = TempDir::new("cli-graph");
    let stack = dir.write("stack.yaml", EXAMPLE);
    let output = pwless(&["graph", "-f", stack.to_str().unwrap()], dir.path());
    let dot = stdout(&output);
    assert!(dot.starts_with("digraph pwless {"));
    assert!(dot.contains("\"aws_vpc.main\" -> \"aws_subnet.public[0]\";"));
    assert!(dot.contains(
        "\"aws_iam_role.irsa[demo/demo-app]\" -> \"kubernetes_service_account.demo/demo-app\";"
    ));
    let output = pwless(
        &[
            "graph",
            "-f",
            stack.to_str().unwrap(),
            "--format",
            "mermaid",
        ],
        dir.path(),
    );
    let mermaid = stdout(&output);
    assert!(mermaid.starts_with("flowchart LR\n  r0[\"aws_vpc.main\"]"));
    assert!(mermaid.contains("r0 --> r1"));
}

#[test]
fn destroy_plan_of_nothing_is_no_changes() {
    let dir = TempDir::new("cli-destroy");
    let stack = dir.write("stack.yaml", EXAMPLE);
    let output = pwless(
        &[
            "plan",
            "-f",
            stack.to_str().unwrap(),
            "--destroy",
            "--detailed-exitcode",
        ],
        dir.path(),
    );
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).starts_with("No changes. There is nothing to destroy."));
}

#[test]
fn token_signs_for_the_stack_endpoint_and_never_guesses_a_region() {
    let dir = TempDir::new("cli-token");
    let token = |args: &[&str], region: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_pwless"));
        command
            .arg("token")
            .args(args)
            .current_dir(dir.path())
            .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION");
        if let Some(region) = region {
            command.env("AWS_REGION", region);
        }
        command.output().unwrap()
    };
    let output = token(&["--host", "db.example", "--user", "app_user"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("a region is required"),
        "{}",
        stderr(&output)
    );

    let output = token(
        &[
            "--host",
            "db.example",
            "--port",
            "6432",
            "--user",
            "app_user",
        ],
        Some("eu-west-1"),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.starts_with("db.example:6432/?Action=connect&DBUser=app_user&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F"), "{text}");
    assert!(text.contains("%2Feu-west-1%2Frds-db%2Faws4_request"));

    // With a stack: the endpoint and port come from the applied state, the region from the stack.
    let stack = dir.write("stack.yaml", EXAMPLE);
    let parsed = pwless::spec::parse_str(std::path::Path::new("stack.yaml"), EXAMPLE).unwrap();
    let graph = pwless::graph::ResourceGraph::from_stack(&parsed).unwrap();
    let mut state = pwless_testing::applied_state(&parsed.name, &graph);
    let mut cluster = state.resource("aws_rds_cluster.main").unwrap().clone();
    cluster.outputs.insert(
        "endpoint".into(),
        serde_json::json!("appdb.cluster-xyz.us-west-2.rds.amazonaws.com"),
    );
    cluster
        .outputs
        .insert("port".into(), serde_json::json!(5433));
    state.upsert(cluster);
    crate::common::write_local_state(&dir.path().join("state/iam-postgres.json"), &mut state);
    let output = token(&["-f", stack.to_str().unwrap(), "--user", "app_user"], None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with(
        "appdb.cluster-xyz.us-west-2.rds.amazonaws.com:5433/?Action=connect&DBUser=app_user"
    ));
    assert!(stdout(&output).contains("%2Fus-west-2%2Frds-db%2F"));
    let output = token(&["-f", stack.to_str().unwrap(), "--user", "nobody"], None);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("is not a database user"));
}

#[test]
fn state_push_refuses_other_histories_and_older_serials() {
    let dir = TempDir::new("cli-state");
    let stack = dir.write("stack.yaml", EXAMPLE);
    let file = stack.to_str().unwrap();
    let output = pwless(&["state", "pull", "-f", file], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no state in state file"));

    // A first push adopts the pushed state's lineage.
    let parsed = pwless::spec::parse_str(std::path::Path::new("stack.yaml"), EXAMPLE).unwrap();
    let mut state = pwless_testing::applied_state(
        &parsed.name,
        &pwless::graph::ResourceGraph::from_stack(&parsed).unwrap(),
    );
    state.serial = 5;
    dir.write("v5.json", &serde_json::to_string(&state).unwrap());
    let output = pwless(&["state", "push", "-f", file, "v5.json"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let pulled: pwless::state::State =
        serde_json::from_slice(&pwless(&["state", "pull", "-f", file], dir.path()).stdout).unwrap();
    assert_eq!(pulled.lineage, state.lineage);
    assert_eq!(pulled.resources, state.resources);
    assert_eq!(pulled.serial, 5);

    // Older serial: refused. Another lineage: refused. Another stack: refused. Nothing changes.
    let mut older = state.clone();
    older.serial = 4;
    dir.write("v4.json", &serde_json::to_string(&older).unwrap());
    let output = pwless(&["state", "push", "-f", file, "v4.json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("older than the state's 5"),
        "{}",
        stderr(&output)
    );
    let mut other = state.clone();
    other.lineage = "00000000-0000-4000-8000-000000000000".into();
    other.serial = 9;
    dir.write("other.json", &serde_json::to_string(&other).unwrap());
    let output = pwless(&["state", "push", "-f", file, "other.json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("another history of this stack"),
        "{}",
        stderr(&output)
    );
    let mut foreign = state.clone();
    foreign.stack = "someone-else".into();
    dir.write("foreign.json", &serde_json::to_string(&foreign).unwrap());
    let output = pwless(&["state", "push", "-f", file, "foreign.json"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("not `iam-postgres`"),
        "{}",
        stderr(&output)
    );
    let after: pwless::state::State =
        serde_json::from_slice(&pwless(&["state", "pull", "-f", file], dir.path()).stdout).unwrap();
    assert_eq!(after.serial, 5);

    // A newer one of the same history is taken, as the next serial.
    let mut newer = state.clone();
    newer.serial = 7;
    newer.resources.truncate(3);
    dir.write("v7.json", &serde_json::to_string(&newer).unwrap());
    assert_eq!(
        pwless(&["state", "push", "-f", file, "v7.json"], dir.path())
            .status
            .code(),
        Some(0)
    );
    let after: pwless::state::State =
        serde_json::from_slice(&pwless(&["state", "pull", "-f", file], dir.path()).stdout).unwrap();
    assert_eq!((after.serial, after.resources.len()), (6, 3));
}

/// A tunnel given in the environment names one database: with several in the stack it is
/// refused before anything is read or changed, saying what to write instead; with one it is
/// that database's.
#[test]
fn a_one_database_tunnel_variable_is_refused_for_a_stack_of_several() {
    let dir = TempDir::new("cli-many-tunnel");
    let many = dir.write(
        "many.yaml",
        include_str!("../../examples/many-databases.yaml"),
    );
    let validate = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pwless"))
            .args(["validate", "-f", file.to_str().unwrap()])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env("PWLESS_DB_ADMIN_ENDPOINT", "127.0.0.1:15432")
            .output()
            .unwrap()
    };
    let output = validate(&many);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("error: PWLESS_DB_ADMIN_ENDPOINT is set, and the stack has several databases (shop, orders): it would not say which one it is for; unset it, and give each entry of `databases` its own `admin_endpoint`"),
        "{}",
        stderr(&output)
    );
    let one = dir.write("one.yaml", EXAMPLE);
    let output = validate(&one);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
