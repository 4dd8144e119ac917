//! The local state store across real processes: the lock, and what a refused run leaves.

use std::process::Command;

use pwless::state::{LockInfo, local::LocalStore as StateStore};

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
    // Commands that only read do not need the lock: they work during an apply.
    let output = pwless(&["manifests", "-f", stack.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    drop(holder);
    let output = pwless(&["plan", "-f", stack.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// The child side of `the_lock_dies_with_its_process`: takes the lock and waits to be killed.
#[test]
#[ignore = "started as a child process by the_lock_dies_with_its_process"]
fn lock_holder_child() {
    let Some(path) = std::env::var_os("PWLESS_HOLDER_STATE") else {
        return;
    };
    // The parent polls the same lock without waiting: retry until we win it.
    let _store = loop {
        match StateStore::open(std::path::Path::new(&path), "hold") {
            Ok(store) => break store,
            Err(pwless::state::StateError::Locked { .. }) => std::thread::yield_now(),
            Err(other) => panic!("{other}"),
        }
    };
    std::thread::sleep(std::time::Duration::from_secs(120));
}

#[test]
fn the_lock_dies_with_its_process() {
    let dir = TempDir::new("lock-dies");
    let state_path = dir.path().join("s.json");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "state::lock_holder_child"])
        .env("PWLESS_HOLDER_STATE", &state_path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the child holds the lock: our own try is refused, naming it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match StateStore::open(&state_path, "test") {
            Err(pwless::state::StateError::Locked { holder, .. })
                if holder.contains(&format!("pid {}", child.id())) =>
            {
                break;
            }
            Err(pwless::state::StateError::Locked { .. }) => {}
            Ok(store) => drop(store),
            Err(other) => panic!("{other}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the child never took the lock"
        );
        std::thread::yield_now();
    }
    child.kill().unwrap(); // SIGKILL: no destructor runs
    child.wait().unwrap();
    let store = StateStore::open(&state_path, "test");
    assert!(
        store.is_ok(),
        "a killed holder must not leave a stale lock: {store:?}"
    );
    let info: LockInfo =
        serde_json::from_slice(&std::fs::read(dir.path().join("s.json.lock")).unwrap()).unwrap();
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

/// The child side of `writes_survive_sigkill`: writes ever larger states in a loop until killed.
/// Ignored so it runs only when that test starts it.
#[test]
#[ignore = "started as a child process by writes_survive_sigkill"]
fn state_writer_child() {
    let Some(path) = std::env::var_os("PWLESS_WRITER_STATE") else {
        return;
    };
    let location = pwless::state::Location::Local(std::path::PathBuf::from(&path));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut store = runtime
        .block_on(pwless::state::StateStore::open(&location, "writer"))
        .unwrap();
    let mut state = runtime
        .block_on(store.read())
        .unwrap()
        .unwrap_or_else(|| pwless::state::State::new("crash"));
    for round in 0u64.. {
        // Vary the size so a torn write would show as invalid JSON.
        state.resources = (0..(round % 200))
            .map(|index| pwless::state::ResourceState {
                address: format!("aws_vpc.r{index:05}"),
                kind: pwless::graph::ResourceKind::Vpc,
                id: Some(format!("vpc-{round}-{index}")),
                inputs: Default::default(),
                outputs: Default::default(),
                dependencies: Vec::new(),
            })
            .collect();
        runtime.block_on(store.write(&mut state)).unwrap();
    }
}

#[test]
fn writes_survive_sigkill() {
    let dir = TempDir::new("sigkill");
    let path = dir.path().join("crash.json");
    for attempt in 0..15u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "state::state_writer_child",
                "--nocapture",
            ])
            .env("PWLESS_WRITER_STATE", &path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it write a varying number of times, then kill it wherever it is.
        let start_serial = read_serial(&path);
        let target = start_serial + 5 + attempt * 7;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while read_serial(&path) < target {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer made no progress"
            );
            std::thread::yield_now();
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Whatever the moment, the state and its backup are whole, and the next run goes on.
        let state: pwless::state::State =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("state is whole JSON");
        assert!(state.serial >= target);
        let backup: pwless::state::State =
            serde_json::from_slice(&std::fs::read(dir.path().join("crash.json.backup")).unwrap())
                .expect("backup is whole JSON");
        // Killed between the backup's rename and the state's, both hold the same serial.
        assert!(backup.serial <= state.serial);
        assert_eq!(backup.lineage, state.lineage);
        let store = StateStore::open(&path, "check").expect("no stale lock after SIGKILL");
        let (bytes, _) = store.get().unwrap().unwrap();
        let read: pwless::state::State = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(read.serial, state.serial);
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temp files of the killed writer remain: {leftovers:?}"
        );
    }
}

/// The serial on disk; 0 when there is no file. A torn file would fail the parse (and the test).
fn read_serial(path: &std::path::Path) -> u64 {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .expect("state is whole JSON")["serial"]
            .as_u64()
            .unwrap_or(0),
        Err(_) => 0,
    }
}
