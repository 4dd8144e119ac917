//! The front door (issue 13): what a new user meets first. Each test is named after what was
//! broken for them.

use crate::common::{EXAMPLE, TempDir, pwless, stderr, stdout};

/// Every file under `dir`, relative, sorted.
fn files(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path.clone());
            }
            found.push(
                path.strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    found.sort();
    found
}

#[test]
fn plan_without_a_state_leaves_no_lock_file_behind() {
    let dir = TempDir::new("front-no-lock");
    dir.write("stack.yaml", EXAMPLE);
    let output = pwless(&["plan", "-f", "stack.yaml"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let saved = pwless(
        &["plan", "-f", "stack.yaml", "-o", "tonight.plan"],
        dir.path(),
    );
    assert_eq!(saved.status.code(), Some(0), "{}", stderr(&saved));
    // Only what the user asked for: no state directory, no lock file.
    assert_eq!(files(dir.path()), ["stack.yaml", "tonight.plan"]);
}

#[test]
fn the_stack_file_defaults_to_pwless_yaml_then_stack_yaml() {
    let dir = TempDir::new("front-default-file");
    let output = pwless(&["validate"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("neither pwless.yaml nor stack.yaml is in") && message.contains("-f FILE"),
        "{message}"
    );

    dir.write("stack.yaml", EXAMPLE);
    let output = pwless(&["validate"], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).starts_with("stack.yaml is valid"));

    dir.write(
        "pwless.yaml",
        &EXAMPLE.replace("stack: iam-postgres", "stack: preferred"),
    );
    let output = pwless(&["validate"], dir.path());
    assert!(
        stdout(&output).starts_with("pwless.yaml is valid: stack preferred"),
        "{}",
        stdout(&output)
    );
    // The plan and the other commands find it too; -f still wins.
    let output = pwless(&["plan", "--json"], dir.path());
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["stack"], "preferred");
    let output = pwless(&["validate", "-f", "stack.yaml"], dir.path());
    assert!(stdout(&output).starts_with("stack.yaml is valid: stack iam-postgres"));
}

#[test]
fn version_names_the_commit_the_build_date_and_the_target() {
    let output = pwless(&["--version"], std::path::Path::new("."));
    assert_eq!(output.status.code(), Some(0));
    let text = stdout(&output);
    let line = text.trim_end();
    let rest = line
        .strip_prefix(&format!("pwless {} (commit ", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|| panic!("{line}"));
    let (commit, rest) = rest
        .split_once(", built ")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line}"
    );
    let (date, target) = rest.split_once(", ").unwrap_or_else(|| panic!("{line}"));
    assert!(
        date.len() == 10 && date.as_bytes()[4] == b'-' && date.as_bytes()[7] == b'-',
        "{line}"
    );
    assert!(
        target.ends_with(')') && target.matches('-').count() >= 2,
        "{line}"
    );
}

#[test]
fn completion_scripts_exist_for_every_common_shell() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let output = pwless(&["completion", shell], std::path::Path::new("."));
        assert_eq!(
            output.status.code(),
            Some(0),
            "{shell}: {}",
            stderr(&output)
        );
        let script = stdout(&output);
        assert!(
            script.contains("pwless")
                && script.contains("destroy")
                && script.contains("auto-approve"),
            "{shell}: {script}"
        );
    }
    // The bash script is valid bash.
    let dir = TempDir::new("front-completion");
    let script = dir.write(
        "pwless.bash",
        &stdout(&pwless(&["completion", "bash"], dir.path())),
    );
    let status = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_main_commands_help_ends_with_examples() {
    for command in [
        "plan", "apply", "destroy", "output", "token", "connect", "validate",
    ] {
        let output = pwless(&[command, "--help"], std::path::Path::new("."));
        let help = stdout(&output);
        let examples = help
            .split_once("\nExamples:\n")
            .map(|(_, examples)| examples)
            .unwrap_or_else(|| panic!("{command} --help has no examples:\n{help}"));
        let count = examples
            .lines()
            .filter(|line| line.starts_with("  "))
            .count();
        assert!((2..=3).contains(&count), "{command}: {examples}");
    }
}

const README: &str = include_str!("../../README.md");

#[test]
fn the_readme_shows_the_example_stack_as_it_is() {
    // The README's stack once named an admin the sandbox does not run as: copying it failed
    // with a 403 after 30 resources. It is now the example file itself, header comment aside.
    let body: String = EXAMPLE
        .lines()
        .skip_while(|line| line.starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(
        README.contains(&format!("```yaml\n{body}```\n")),
        "README.md's stack differs from stack.example.yaml"
    );
}

#[test]
fn the_readme_shows_a_mistake_as_pwless_prints_it() {
    let marker = "this (`availability_zones` misspelt in `stack.yaml`):\n\n```\n";
    let shown = README
        .split_once(marker)
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .map(|(block, _)| block)
        .expect("README.md shows a mistake");
    let dir = TempDir::new("front-readme-mistake");
    dir.write(
        "stack.yaml",
        &EXAMPLE.replace("availability_zones: 2", "availabilty_zones: 2"),
    );
    let output = pwless(&["validate"], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), shown);
}

#[test]
fn the_example_plan_fits_100_columns() {
    // Maps and lists used to print as one-line JSON, up to 217 characters a line.
    let dir = TempDir::new("front-plan-width");
    dir.write("stack.yaml", EXAMPLE);
    let plan = stdout(&pwless(&["plan"], dir.path()));
    // Only an image pinned by digest, one value that cannot be broken, may run longer.
    let wide: Vec<&str> = plan
        .lines()
        .filter(|line| line.chars().count() > 100)
        .filter(|line| {
            line.rsplit_once(" = ")
                .is_none_or(|(_, value)| value.contains(' ') || !value.contains("@sha256:"))
        })
        .collect();
    assert!(wide.is_empty(), "{wide:#?}");
    assert!(plan.contains("        + tags                 = {\n            + Name             = \"iam-postgres\"\n"), "{plan}");
}

#[test]
fn the_sandbox_scripts_keep_to_their_own_directory_and_say_their_environment_again() {
    // The sandboxes once used fixed shared paths (/tmp/pwless-pg): two people on one machine
    // collided, and a second terminal could not get the environment back.
    let dir = TempDir::new("front-sandbox-dir");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-sandbox");
    let run = |verb: &str| {
        std::process::Command::new(&script)
            .arg(verb)
            .env("PWLESS_SANDBOX_DIR", dir.path())
            .env_remove("PWLESS_PG_SANDBOX_DIR")
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .unwrap()
    };
    let started = run("start");
    assert!(started.status.success(), "{}", stderr(&started));
    assert!(dir.path().join("pg").is_dir());
    assert!(
        stderr(&started).contains("pg-sandbox: PostgreSQL 15"),
        "it says what it started: {}",
        stderr(&started)
    );
    let environment = stdout(&started);
    assert!(
        environment.contains(&format!(
            "export PWLESS_DB_CA_BUNDLE={}",
            dir.path().join("pg/ca.pem").display()
        )),
        "{environment}"
    );
    let again = run("env");
    assert_eq!(stdout(&again), environment);
    let stopped = run("stop");
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert!(!dir.path().join("pg").exists());
    assert!(
        !run("env").status.success(),
        "env of a stopped sandbox must fail"
    );
}
