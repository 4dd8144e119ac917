//! Test support for pwless's own tests and benchmarks, not for users (issue 15: kept out of the
//! product crate): the sandboxes as fixtures ([`Moto`], [`PgSandbox`]), [`TempDir`], and
//! fabricated input ([`applied_state`], [`generated_stack`]).
//!
//! The sandboxes are real peers, not mocks: moto (the pinned server `scripts/test` installs,
//! started through `scripts/moto-server.py`, which adds the EKS calls moto lacks) and a real
//! PostgreSQL with TLS and, when asked, RDS-style IAM token checking (`scripts/pg-sandbox`).
//! The executor's fake provider stays in the product crate (`provider::fake`, `cfg(test)`):
//! its table tests are unit tests of `exec`, which a crate depending on pwless cannot reach.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pwless::graph::ResourceGraph;
use pwless::state::{ResourceState, State};
use serde_json::{Value, json};

/// The repository's root (where `scripts/` is).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

/// A free TCP port on the loopback interface (free when asked; bind it soon).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("the bound address")
        .port()
}

/// A fresh directory under the system temp dir, `pwless-it-NAME-PID`, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pwless-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to the file `name` in the directory; gives its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A moto server of the caller's own, on a free loopback port, stopped when dropped: the
/// pinned moto (`PWLESS_MOTO_SERVER`, installed by `scripts/test`) with pwless's additions
/// (`scripts/moto-server.py`), IAM's AWS-managed policies loaded.
pub struct Moto {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
}

impl Moto {
    /// Starts it and waits (up to 60 s) until it listens. Panics when `PWLESS_MOTO_SERVER` is
    /// not set, naming the fix.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// [`Moto::start`], with these variables in the server's environment (the stand-in's
    /// knobs: `MOTO_EKS_FAILED_UPDATES`, `MOTO_EKS_UPDATE_SECONDS`, `MOTO_NAT_DELETE_SECONDS`).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let server = std::env::var("PWLESS_MOTO_SERVER")
            .expect("PWLESS_MOTO_SERVER is not set: run the tests with scripts/test, which installs the pinned moto");
        let port = free_port();
        let python = Path::new(&server).with_file_name("python");
        let child = Command::new(python)
            .arg(repo_root().join("scripts/moto-server.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sandbox PostgreSQL (`scripts/pg-sandbox`): TLS with a certificate of its own CA,
/// Aurora's roles (`rds_iam`, `rds_superuser`), stopped and removed when dropped.
pub struct PgSandbox {
    dir: PathBuf,
    /// What `pg-sandbox start` exports (`PWLESS_DB_CA_BUNDLE`, `PWLESS_DB_ADMIN_ENDPOINT`,
    /// `PWLESS_SANDBOX_DB_ADDRESS`, ...).
    pub env: HashMap<String, String>,
}

impl PgSandbox {
    /// Starts one in `pwless-pg-NAME-PID` under the temp dir. With `moto` (its endpoint), it
    /// checks IAM tokens as RDS does, against that moto (`scripts/iam-verifier.py`); without,
    /// members of `rds_iam` cannot log in.
    pub fn start(name: &str, moto: Option<&str>) -> Self {
        Self::start_signed(name, moto, None)
    }

    /// [`PgSandbox::start`], its certificate signed by `ca`'s CA (another sandbox's), as RDS
    /// signs every cluster of a region with the same CAs: one bundle verifies both.
    pub fn start_signed(name: &str, moto: Option<&str>, ca: Option<&PgSandbox>) -> Self {
        let dir = std::env::temp_dir().join(format!("pwless-pg-{name}-{}", std::process::id()));
        let script = repo_root().join("scripts/pg-sandbox");
        let _ = Command::new(&script)
            .args(["stop", dir.to_str().expect("a UTF-8 temp dir")])
            .status();
        let mut command = Command::new(&script);
        command
            .args(["start", dir.to_str().expect("a UTF-8 temp dir")])
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_SESSION_TOKEN");
        match ca {
            Some(ca) => command.env("PWLESS_PG_SANDBOX_CA", &ca.dir),
            None => command.env_remove("PWLESS_PG_SANDBOX_CA"),
        };
        if let Some(endpoint) = moto {
            command
                .env("AWS_ENDPOINT_URL", endpoint)
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing");
        }
        let output = command.output().expect("run scripts/pg-sandbox");
        assert!(
            output.status.success(),
            "pg-sandbox failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let env = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        PgSandbox { dir, env }
    }

    /// One exported variable; panics naming it when `pg-sandbox` did not export it.
    pub fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("pg-sandbox exported no {name}"))
    }
}

impl Drop for PgSandbox {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/pg-sandbox"))
            .args(["stop", &self.dir.to_string_lossy()])
            .status();
    }
}

/// The state a perfect apply of `graph` would leave: every input resolved, every output set to
/// a recognisable fake value (`"<address>.<output>"`), except those that echo an input
/// (`ResourceKind::echoed_outputs`), which are that input.
pub fn applied_state(stack: &str, graph: &ResourceGraph) -> State {
    let mut state = State::new(stack);
    state.serial = 1;
    for resource in graph.in_order() {
        let mut inputs = BTreeMap::new();
        for (name, expr) in &resource.inputs {
            let value = expr
                .resolve(&mut |reference| {
                    state
                        .resource(&reference.address)
                        .and_then(|applied| applied.outputs.get(&reference.output))
                        .cloned()
                })
                .unwrap_or(Value::Null);
            inputs.insert(name.clone(), value);
        }
        let outputs: BTreeMap<String, Value> = resource
            .kind
            .outputs()
            .iter()
            .map(|output| {
                let value = match inputs.get(*output) {
                    // An output that echoes its input (a deterministic name) is that input.
                    Some(input) if resource.kind.echoed_outputs().contains(output) => input.clone(),
                    _ => json!(format!("{}.{output}", resource.address)),
                };
                ((*output).to_string(), value)
            })
            .collect();
        state.upsert(ResourceState {
            address: resource.address.clone(),
            kind: resource.kind,
            id: Some(format!("{}-id", resource.address)),
            inputs,
            outputs,
            dependencies: resource
                .dependencies()
                .into_iter()
                .map(str::to_string)
                .collect(),
        });
    }
    state
}

/// Whether a benchmark runs in its quick mode: `cargo test` runs each bench once without the
/// `--bench` argument that `cargo bench` passes, to prove it still works (a few rounds, no
/// figures worth reading); `cargo bench` measures.
pub fn quick_bench() -> bool {
    !std::env::args().any(|argument| argument == "--bench")
}

/// A valid stack text with `users` database users, each with its own service account: about
/// `5 * users + 37` resources.
pub fn generated_stack(users: usize) -> String {
    let mut text = String::from(
        "stack: big\nregion: us-west-2\nnetwork: {cidr: 10.0.0.0/16, availability_zones: 3, nat_gateways: per_az}\n\
         cluster: {version: \"1.31\", node_group: {instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}, admins: [\"arn:aws:iam::123456789012:role/platform-deployer\"]}\n\
         database:\n  engine_version: \"17.4\"\n  instance_class: db.t4g.medium\n  name: appdb\n  master_username: postgres\n  users:\n",
    );
    for index in 0..users {
        text.push_str(&format!(
            "    - {{name: user_{index}, privileges: [connect, usage, select]}}\n"
        ));
    }
    text.push_str("access:\n");
    for index in 0..users {
        text.push_str(&format!(
            "  - {{namespace: team-{}, service_account: app-{index}, db_user: user_{index}}}\n",
            index % 50
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_bench_stacks_are_valid() {
        // The plan benchmark panicked on its generated stacks once `cluster.admins` became
        // required: they are checked here, not only when someone runs the benchmark.
        for users in [1, 250] {
            let text = super::generated_stack(users);
            let stack = pwless::spec::parse_str(std::path::Path::new("bench.yaml"), &text)
                .unwrap_or_else(|errors| panic!("{errors}"));
            let graph = pwless::graph::ResourceGraph::from_stack(&stack).unwrap();
            assert!(graph.len() >= 5 * users + 37, "{}", graph.len());
        }
    }
}
