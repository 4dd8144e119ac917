//! The local state store across real processes: the lock, and what a refused run leaves.

use std::process::Command;

use pwless::state::{StateStore, store::LockInfo};

use crate::common::{EXAMPLE, TempDir, pwless, stderr};

#[test]
fn a_second_process_is_refused_at_once_and_told_who_holds_the_lock() {
    let dir = TempDir::new("lock");
    let stack = dir.write("stack.yaml", EXAMPLE);
    let state_path = dir.path().join("state").join("iam-postgres.json");
    let holder = StateStore::open(&state_path, "apply").unwrap();

    let started = std::time::Instant::now();
    let output = pwless(&["plan", "-f", stack.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("is locked by"), "{message}");
    assert!(
        message.contains(&format!("(pid {})", std::process::id())),
        "{message}"
    );
    assert!(message.contains("running `apply`"), "{message}");
    // "At once": no waiting on the lock (a generous bound, this is not a benchmark).
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    drop(holder);
    let output = pwless(&["plan", "-f", stack.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn the_lock_dies_with_its_process() {
    let dir = TempDir::new("lock-dies");
    let state_path = dir.path().join("s.json");
    // A child process takes the lock (flock, as pwless does) and is killed with SIGKILL.
    let lock_path = dir.path().join("s.json.lock");
    std::fs::write(&lock_path, "").unwrap();
    // `-o`: the lock stays with the flock process itself, not with its `sleep` child.
    let mut child = Command::new("flock")
        .arg("-o")
        .arg(&lock_path)
        .args(["sleep", "60"])
        .spawn()
        .expect("flock(1) from util-linux");
    // Wait until the child holds it: our own try fails.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match StateStore::open(&state_path, "test") {
            Err(pwless::state::StateError::Locked { .. }) => break,
            Ok(store) => drop(store),
            Err(other) => panic!("{other}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never took the lock"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let store = StateStore::open(&state_path, "test");
    assert!(store.is_ok(), "a killed holder must not leave a stale lock");
    // And the record names us now.
    let info: LockInfo = serde_json::from_slice(&std::fs::read(&lock_path).unwrap()).unwrap();
    assert_eq!(info.pid, std::process::id());
}

#[test]
fn a_corrupt_state_file_is_refused_by_the_cli_and_left_untouched() {
    let dir = TempDir::new("corrupt-cli");
    let stack = dir.write("stack.yaml", EXAMPLE);
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    let state_path = dir.write(
        "state/iam-postgres.json",
        "{\"version\": 1, \"lineage\": tru",
    );
    let output = pwless(&["plan", "-f", stack.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("is not valid pwless state"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(state_path).unwrap(),
        "{\"version\": 1, \"lineage\": tru"
    );
}
