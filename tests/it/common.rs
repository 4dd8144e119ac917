//! Shared helpers: the example stack, temp dirs, the pwless binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pwless::graph::ResourceGraph;
use pwless::spec::Stack;

pub const EXAMPLE: &str = include_str!("../../stack.example.yaml");

pub fn stack_from(text: &str) -> Stack {
    match pwless::spec::parse_str(Path::new("test.yaml"), text) {
        Ok(stack) => stack,
        Err(errors) => panic!("stack should be valid:\n{errors}"),
    }
}

pub fn graph_of(stack: &Stack) -> ResourceGraph {
    ResourceGraph::from_stack(stack).expect("the expansion makes a valid graph")
}

/// Replaces `from` (which must occur) in the example stack.
pub fn example_with(from: &str, to: &str) -> String {
    assert!(EXAMPLE.contains(from), "the example has no `{from}`");
    EXAMPLE.replacen(from, to, 1)
}

pub use pwless_testing::TempDir;

pub fn pwless(args: &[&str], dir: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pwless"));
    command.args(args).current_dir(dir).env("NO_COLOR", "1");
    offline_ca_bundle(&mut command, dir);
    command.output().expect("run pwless")
}

/// Keeps the RDS CA bundle cache inside the test's directory and its address unreachable, so
/// a test behaves the same with or without internet and never writes to the user's home
/// (tests that fetch the bundle set their own address: tests/it/ca_bundle.rs).
pub fn offline_ca_bundle(command: &mut Command, dir: &Path) {
    command.env("XDG_CACHE_HOME", dir.join(".cache")).env(
        "PWLESS_RDS_CA_BUNDLE_URL",
        "https://127.0.0.1:1/global/global-bundle.pem",
    );
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that `output` exited with `code`, showing its stdout and stderr when not.
#[track_caller]
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}{}",
        stdout(output),
        stderr(output)
    );
}

/// The image `pwless verify` is given in the sandbox: pinned by a made-up digest, as verify
/// requires (the Kubernetes API stand-in runs the local pwless-demo for any image).
pub fn verify_image() -> String {
    format!("example.com/pwless-demo@sha256:{}", "ab".repeat(32))
}

/// `plan --detailed-exitcode` output that changes exactly `address`, as drift.
pub fn assert_plans_one_drift_repair(output: &Output, address: &str) {
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}{}",
        stdout(output),
        stderr(output)
    );
    let plan = stdout(output);
    assert!(
        plan.contains(&format!("~ {address}  # it was changed outside pwless")),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );
}

/// Writes `state` as the next serial of the local state file at `path`, as pwless would.
pub fn write_local_state(path: &Path, state: &mut pwless::state::State) {
    let location = pwless::state::Location::Local(path.to_path_buf());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut store = pwless::state::StateStore::open(&location, "test")
                .await
                .unwrap();
            store.read().await.unwrap();
            store.write(state).await.unwrap();
            store.release().await;
        });
}

/// Starts `command`, a server that prints the port it listens on as its first line, and gives
/// the child and that port. `what` names it in the panic when it does not.
pub fn spawn_listening(mut command: Command, what: &str) -> (std::process::Child, u16) {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("start {what}: {error}"));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{what} printed no port: {line:?}"));
    (child, port)
}

/// Where each text first appears in `log` (a run's output), for asserting the order of its
/// lines; panics, showing the log, when a text is not there.
pub fn position_in(log: &str) -> impl Fn(&str) -> usize + '_ {
    move |text| {
        log.find(text)
            .unwrap_or_else(|| panic!("`{text}` not in:\n{log}"))
    }
}

/// The `pwless-demo` executable of this build (crates/demo). It is another package's binary, so
/// cargo gives no `CARGO_BIN_EXE_` for it; `cargo test --workspace` builds it beside this test
/// binary (the demo package has integration tests of its own), as assert_cmd's `cargo_bin`
/// finds binaries.
pub fn demo_binary() -> PathBuf {
    let deps = std::env::current_exe()
        .expect("the test binary's path")
        .parent()
        .expect("target/<profile>/deps")
        .to_path_buf();
    let binary = deps
        .parent()
        .expect("target/<profile>")
        .join(format!("pwless-demo{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&binary)
        .and_then(|metadata| metadata.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is not built: run the tests with `cargo test --workspace` (scripts/test does)",
                binary.display()
            )
        });
    // A plain `cargo test` does not rebuild it: refuse one older than its sources.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest_source = ["crates/demo/src", "crates/iam-auth/src"]
        .iter()
        .flat_map(|crate_dir| files_under(&root.join(crate_dir)))
        .filter_map(|file| std::fs::metadata(file).and_then(|m| m.modified()).ok())
        .max();
    assert!(
        newest_source.is_none_or(|newest| newest <= built),
        "{} is older than its sources: run the tests with `cargo test --workspace` (scripts/test does)",
        binary.display()
    );
    binary
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
