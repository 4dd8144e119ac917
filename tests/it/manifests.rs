//! `pwless manifests` against the official Kubernetes schemas (kubernetes-validate, pinned in
//! scripts/sandbox), before the first apply and after it.

use std::path::Path;
use std::process::Command;

use crate::common::{EXAMPLE, TempDir, graph_of, pwless, stack_from, stderr, stdout};

fn validate(dir: &Path, yaml: &str) -> std::process::Output {
    let moto = std::env::var("PWLESS_MOTO_SERVER")
        .expect("PWLESS_MOTO_SERVER is not set: run the tests with scripts/test");
    let validator = Path::new(&moto).with_file_name("kubernetes-validate");
    let file = dir.join("objects.yaml");
    std::fs::write(&file, yaml).unwrap();
    Command::new(validator)
        .args(["--strict", "-k", "1.32.0"])
        .arg(&file)
        .output()
        .expect("run kubernetes-validate")
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas_before_and_after_apply() {
    let dir = TempDir::new("manifests");
    let stack_file = dir.write("stack.yaml", EXAMPLE);
    let before = pwless(
        &["manifests", "-f", stack_file.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(before.status.code(), Some(0), "{}", stderr(&before));
    let yaml = stdout(&before);
    assert_eq!(
        yaml.matches("\n---\n").count() + 1,
        8,
        "two namespaces, service account, deployment, service, and the database relay's config map, network policy and deployment:\n{yaml}"
    );
    assert!(yaml.contains("eks.amazonaws.com/role-arn: \"<known after apply>\""));
    let checked = validate(dir.path(), &yaml);
    assert!(
        checked.status.success(),
        "{}{}",
        stdout(&checked),
        stderr(&checked)
    );

    // After an apply: the real role ARN and endpoint from the state.
    let stack = stack_from(EXAMPLE);
    let mut state = pwless_testing::applied_state(&stack.name, &graph_of(&stack));
    let mut role = state
        .resource("aws_iam_role.irsa[demo/demo-app]")
        .unwrap()
        .clone();
    role.outputs.insert(
        "arn".into(),
        serde_json::json!("arn:aws:iam::123456789012:role/iam-postgres-demo-demo-app"),
    );
    state.upsert(role);
    crate::common::write_local_state(&dir.path().join("state/iam-postgres.json"), &mut state);
    let after = pwless(
        &["manifests", "-f", stack_file.to_str().unwrap()],
        dir.path(),
    );
    let yaml = stdout(&after);
    assert!(yaml.contains("eks.amazonaws.com/role-arn: \"arn:aws:iam::123456789012:role/iam-postgres-demo-demo-app\""), "{yaml}");
    assert!(!yaml.contains("role-arn: \"<known after apply>\""));
    let checked = validate(dir.path(), &yaml);
    assert!(
        checked.status.success(),
        "{}{}",
        stdout(&checked),
        stderr(&checked)
    );

    // The check can fail: a wrongly typed field is caught.
    let broken = yaml.replacen("replicas: 2", "replicas: \"two\"", 1);
    assert_ne!(broken, yaml);
    assert!(
        !validate(dir.path(), &broken).status.success(),
        "the validator must reject a string replica count"
    );
}
