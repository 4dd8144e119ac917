//! The whole example stack, end to end: moto for AWS, a real PostgreSQL (scripts/pg-sandbox)
//! and, for the Kubernetes API, scripts/kube-standin.py — no API server can run on these
//! machines; the stand-in speaks the API's status codes, server-side apply and EKS token
//! checking (see its docstring for what it does not cover).
//!
//! Every link is checked where it lives: the IAM documents through the IAM API, the objects
//! through the Kubernetes API, the database roles in PostgreSQL's catalogs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kube::api::{ApiResource, DynamicObject};
use serde_json::{Value, json};

use crate::aws::{Moto, PwlessCommand};
use crate::common::{EXAMPLE, TempDir, stderr, stdout};
use crate::postgres::LocalPostgres;

/// How the stand-in runs a Job's pod: as `pwless sandbox run -f FILE` would run it, with
/// pwless's own environment on the cluster path (the stand-in adds where its API is).
pub fn job_runner(moto: &Moto, dir: &Path, file: &Path, pg: &LocalPostgres) -> Command {
    let mut runner = moto.command(dir);
    runner.args(["sandbox", "run", "-f", file.to_str().unwrap()]);
    for (key, value) in pg.env() {
        if key != "PWLESS_DB_ADMIN_ENDPOINT" && key != "PWLESS_DB_TLS_SERVER_NAME" {
            runner.env(key, value);
        }
    }
    runner
        .env_remove("PWLESS_DB_ADMIN_ENDPOINT")
        .env_remove("PWLESS_DB_TLS_SERVER_NAME");
    runner
}

/// scripts/kube-standin.py on a free port, with its own CA; stopped when dropped.
pub struct KubeStandin {
    child: std::process::Child,
    pub url: String,
    pub ca: PathBuf,
    static_token: String,
    _dir: TempDir,
}

impl KubeStandin {
    /// Admits EKS tokens for `cluster` signed with `access_key`/`secret`, from callers with an
    /// access entry in `moto`.
    /// A port-forward to a relay pod's port 5432 reaches `db_target` (`HOST:PORT`). With
    /// `jobs`, a Job's pod runs the demo executable under that command (its program and
    /// arguments, then `--as NAMESPACE/SERVICE_ACCOUNT -- pwless-demo ARGS`; its environment
    /// is the stand-in's, so the pod's too).
    pub fn start(
        name: &str,
        cluster: &str,
        moto: &Moto,
        access_key: &str,
        secret: &str,
        db_target: &str,
        jobs: Option<Command>,
    ) -> Self {
        Self::start_routed(
            name,
            cluster,
            moto,
            (access_key, secret),
            db_target,
            &[],
            jobs,
        )
    }

    /// [`KubeStandin::start`], where a relay pod whose `DB_ENDPOINT` is the first of a pair of
    /// `routes` reaches the second (`HOST:PORT`; one sandbox PostgreSQL per database).
    pub fn start_routed(
        name: &str,
        cluster: &str,
        moto: &Moto,
        (access_key, secret): (&str, &str),
        db_target: &str,
        routes: &[(String, String)],
        jobs: Option<Command>,
    ) -> Self {
        let dir = TempDir::new(&format!("kube-{name}"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kube-standin.py");
        let static_token = format!("test-{}", uuid::Uuid::new_v4());
        let mut command = Command::new("python3");
        command
            .arg(script)
            .args(["--dir", dir.path().to_str().unwrap(), "--cluster", cluster])
            .args(["--aws-key", &format!("{access_key}:{secret}")])
            .args(["--moto", &moto.endpoint, "--db-target", db_target])
            .args(["--deploy-seconds", "0.3", "--lb-seconds", "0.5"])
            .env("KUBE_STANDIN_STATIC_TOKEN", &static_token);
        for (endpoint, address) in routes {
            command.args(["--db-route", &format!("{endpoint}={address}")]);
        }
        if let Some(runner) = jobs {
            let mut argv = vec![runner.get_program().to_string_lossy().into_owned()];
            argv.extend(
                runner
                    .get_args()
                    .map(|arg| arg.to_string_lossy().into_owned()),
            );
            command
                .args(["--job-runner", &serde_json::to_string(&argv).unwrap()])
                .args([
                    "--job-binary",
                    crate::common::demo_binary().to_str().unwrap(),
                ]);
            for (key, value) in runner.get_envs() {
                match value {
                    Some(value) => command.env(key, value),
                    None => command.env_remove(key),
                };
            }
        }
        let (child, port) = crate::common::spawn_listening(command, "scripts/kube-standin.py");
        KubeStandin {
            child,
            url: format!("https://127.0.0.1:{port}"),
            ca: dir.path().join("ca.pem"),
            static_token,
            _dir: dir,
        }
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PWLESS_KUBE_API_URL", self.url.clone()),
            ("PWLESS_KUBE_CA_FILE", self.ca.display().to_string()),
        ]
    }

    /// A client of our own (the stand-in's fixed token), for looking at objects.
    pub fn client(&self) -> kube::Client {
        let mut config = kube::Config::new(self.url.parse().unwrap());
        let pem = std::fs::read(&self.ca).unwrap();
        config.root_cert = Some(
            pwless::db::certificates(&pem)
                .unwrap()
                .into_iter()
                .map(|certificate| certificate.to_vec())
                .collect(),
        );
        config.headers.push((
            http::header::AUTHORIZATION,
            format!("Bearer {}", self.static_token).parse().unwrap(),
        ));
        kube::Client::try_from(config).unwrap()
    }

    /// The requests the stand-in served, as its log has them (`/_standin/requests`).
    async fn logged(&self) -> Vec<Value> {
        let text = self
            .client()
            .request_text(
                http::Request::get("/_standin/requests")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// The requests the stand-in served: `METHOD plural/name`.
    pub async fn requests(&self) -> Vec<String> {
        self.logged()
            .await
            .iter()
            .map(|request| {
                format!(
                    "{} {}/{}",
                    request["method"].as_str().unwrap(),
                    request["plural"].as_str().unwrap(),
                    request["name"].as_str().unwrap()
                )
            })
            .collect()
    }

    /// The port-forwards the stand-in served: namespace, pod, ports and where the relay's
    /// connection went.
    pub async fn port_forwards(&self) -> Vec<Value> {
        self.logged()
            .await
            .into_iter()
            .filter(|request| request["subresource"] == "portforward")
            .collect()
    }

    /// Sets `command`'s environment for the cluster path: the sandbox PostgreSQL's CA and
    /// credentials registry, this stand-in's address, and neither the database's address
    /// (`PWLESS_DB_ADMIN_ENDPOINT`) nor a name override (`PWLESS_DB_TLS_SERVER_NAME`): the
    /// database is reached through the relay, its certificate checked against the cluster
    /// endpoint's name, as on AWS.
    pub fn cluster_path(&self, pg: &LocalPostgres, command: &mut Command) {
        for (key, value) in pg.env() {
            if key != "PWLESS_DB_ADMIN_ENDPOINT" && key != "PWLESS_DB_TLS_SERVER_NAME" {
                command.env(key, value);
            }
        }
        command
            .env_remove("PWLESS_DB_ADMIN_ENDPOINT")
            .env_remove("PWLESS_DB_TLS_SERVER_NAME");
        for (key, value) in self.env() {
            command.env(key, value);
        }
    }
}

impl Drop for KubeStandin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

pub(crate) fn namespaces(client: &kube::Client) -> kube::Api<DynamicObject> {
    kube::Api::all_with(client.clone(), &resource("v1", "Namespace", "namespaces"))
}

fn in_namespace(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    plural: &str,
) -> kube::Api<DynamicObject> {
    kube::Api::namespaced_with(client.clone(), "demo", &resource(api_version, kind, plural))
}

/// The database relay's objects (namespace `pwless`).
fn relay_object(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    plural: &str,
) -> kube::Api<DynamicObject> {
    kube::Api::namespaced_with(
        client.clone(),
        pwless::relay::NAMESPACE,
        &resource(api_version, kind, plural),
    )
}

/// What a test that reaches the database through the cluster checks: the relay was made
/// before the users, as a hardened pod allowed to reach only the database port, and every
/// database connection of the run went through a port-forward to it, reaching the database.
fn assert_users_made_through_the_relay(stack: &FullStack, rt: &tokio::runtime::Runtime, log: &str) {
    let position = crate::common::position_in(log);
    assert!(
        position("kubernetes_network_policy.pwless/db-relay: created")
            < position("kubernetes_db_relay.pwless/db-relay: created")
    );
    assert!(
        position("kubernetes_db_relay.pwless/db-relay: created")
            < position("postgresql_role.user[app_user]: created")
    );
    let kube = stack.kube.client();
    let (relay, policy) = rt.block_on(async {
        (
            relay_object(&kube, "apps/v1", "Deployment", "deployments")
                .get(pwless::relay::NAME)
                .await
                .unwrap(),
            relay_object(
                &kube,
                "networking.k8s.io/v1",
                "NetworkPolicy",
                "networkpolicies",
            )
            .get(pwless::relay::NAME)
            .await
            .unwrap(),
        )
    });
    let pod = &relay.data["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert!(
        container["image"].as_str().unwrap().contains("@sha256:"),
        "the relay image is pinned by digest: {container}"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert_eq!(pod["automountServiceAccountToken"], false);
    let spec = &policy.data["spec"];
    assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
    assert!(spec["ingress"].is_null(), "no ingress: {spec}");
    assert_eq!(
        spec["egress"][0]["ports"],
        json!([{"protocol": "TCP", "port": 5432}])
    );
    assert_eq!(spec["egress"][0]["to"][0]["ipBlock"]["cidr"], "10.0.0.0/16");
    let forwards = rt.block_on(stack.kube.port_forwards());
    assert!(
        !forwards.is_empty(),
        "no port-forward: the database was reached another way"
    );
    for forward in &forwards {
        assert_eq!(forward["namespace"], pwless::relay::NAMESPACE, "{forward}");
        assert!(
            forward["name"].as_str().unwrap().starts_with("db-relay-"),
            "{forward}"
        );
        assert_eq!(forward["ports"], json!([5432]), "{forward}");
        assert_eq!(
            forward["target"],
            stack.pg.var("PWLESS_SANDBOX_DB_ADDRESS"),
            "{forward}"
        );
    }
}

/// IAM hands policy documents back URL-encoded.
fn url_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            index += 3;
        } else {
            out.push(if bytes[index] == b'+' {
                b' '
            } else {
                bytes[index]
            });
            index += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

pub struct FullStack {
    pub name: String,
    pub dir: TempDir,
    pub file: PathBuf,
    pub moto: Moto,
    pub pg: LocalPostgres,
    pub kube: KubeStandin,
}

impl FullStack {
    /// The example stack, named for the test, without a final snapshot.
    pub fn new(test: &str) -> Self {
        Self::with(test, |text| text)
    }

    /// The example stack changed by `edit`.
    pub fn with(test: &str, edit: impl FnOnce(String) -> String) -> Self {
        Self::of(test, EXAMPLE, edit)
    }

    /// The stack `text` (named `iam-postgres` or `with-users`), named for the test, without a
    /// final snapshot, changed by `edit`.
    pub fn of(test: &str, text: &str, edit: impl FnOnce(String) -> String) -> Self {
        let name = format!("t{}-{test}", std::process::id());
        let dir = TempDir::new(&name);
        let text: String = text
            .lines()
            .filter(|line| !line.starts_with("  final_snapshot:"))
            .map(|line| format!("{line}\n"))
            .collect();
        let text = text
            .replacen("stack: iam-postgres", &format!("stack: {name}"), 1)
            .replacen("stack: with-users", &format!("stack: {name}"), 1)
            .replacen(
                "  subnets: private",
                "  final_snapshot: false\n  subnets: private",
                1,
            );
        let file = dir.write("stack.yaml", &edit(text));
        let moto = Moto::start();
        let pg = LocalPostgres::checking_tokens(test, &moto);
        let runner = job_runner(&moto, dir.path(), &file, &pg);
        FullStack {
            kube: KubeStandin::start(
                test,
                &name,
                &moto,
                "testing",
                "testing",
                pg.var("PWLESS_SANDBOX_DB_ADDRESS"),
                Some(runner),
            ),
            pg,
            moto,
            name,
            dir,
            file,
        }
    }

    /// `pwless <args[0]> -f stack.yaml <args[1..]>` with all three sandboxes.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = self.pwless();
        command
            .arg(args[0])
            .args(["-f", self.file.to_str().unwrap()])
            .args(&args[1..]);
        command
    }

    /// pwless with the environment of all three sandboxes, no arguments yet: the database
    /// reached as on AWS, through the relay in the cluster ([`KubeStandin::cluster_path`]).
    pub fn pwless(&self) -> Command {
        let mut command = self.moto.command(self.dir.path());
        self.kube.cluster_path(&self.pg, &mut command);
        command.stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().unwrap()
    }

    /// The local state file.
    pub fn state_path(&self) -> PathBuf {
        self.dir
            .path()
            .join("state")
            .join(format!("{}.json", self.name))
    }

    /// How many port-forwards to the database relay the stand-in has served.
    pub fn port_forward_count(&self) -> usize {
        let rt = runtime();
        let _inside = rt.enter();
        rt.block_on(self.kube.port_forwards()).len()
    }

    pub fn output(&self, name: &str) -> String {
        let output = self.run(&["output", name]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        stdout(&output).trim().to_string()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn the_example_stack_applies_end_to_end_and_every_link_checks_out() {
    let stack = FullStack::new("full");
    let rt = runtime();
    // kube's client spawns its connection task: make it inside the runtime.
    let _inside = rt.enter();
    let kube = stack.kube.client();

    // A token signed with the wrong secret is refused by the API server: the AWS part is
    // applied, no Kubernetes object is made, and the error says what to look at.
    let output = stack
        .command(&["apply", "--auto-approve"])
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    // A refused apply names the cause and leaves nothing in the cluster.
    let refused_by_cluster = |output: &std::process::Output, code: &str, words: &str| {
        assert_eq!(output.status.code(), Some(1), "{}", stderr(output));
        assert!(
            stderr(output).contains(code) && stderr(output).contains(words),
            "{}",
            stderr(output)
        );
        assert!(
            rt.block_on(namespaces(&kube).get_opt("demo"))
                .unwrap()
                .is_none()
        );
    };
    refused_by_cluster(&output, "401", "EKS token");

    // The cluster has no implicit admin: a caller that is not in cluster.admins would be refused
    // (403) after the AWS resources were made, so apply refuses first, changing nothing.
    let with_admins = |admins: &str| {
        let text = std::fs::read_to_string(&stack.file).unwrap();
        let start = text.find("  admins:").unwrap();
        let end = text.find("database:").unwrap();
        std::fs::write(
            &stack.file,
            format!("{}  admins: [{admins}]\n{}", &text[..start], &text[end..]),
        )
        .unwrap();
    };
    with_admins("arn:aws:iam::123456789012:role/someone-else");
    let state_before = std::fs::read(stack.state_path()).unwrap();
    let output = stack.run(&["apply", "--auto-approve"]);
    refused_by_cluster(
        &output,
        "arn:aws:iam::123456789012:user/moto is not in cluster.admins (arn:aws:iam::123456789012:role/someone-else)",
        "nothing was changed",
    );
    assert_eq!(
        std::fs::read(stack.state_path()).unwrap(),
        state_before,
        "a refused apply changed the state"
    );
    // The plan shows what apply would do, and says apply would refuse.
    let output = stack.run(&["plan"]);
    assert!(
        stderr(&output).contains("warning: apply would refuse: arn:aws:iam::123456789012:user/moto is not in cluster.admins"),
        "{}",
        stderr(&output)
    );

    // With pwless's own principal an admin again (its entry, made by the first apply, was
    // never touched by the refused one), the next apply finishes the rest.
    with_admins("arn:aws:iam::123456789012:user/moto");
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("aws_eks_access_entry"),
        "{}",
        stderr(&output)
    );
    for created in [
        "kubernetes_namespace.demo: created",
        "kubernetes_service_account.demo/demo-app: created",
        "kubernetes_deployment.demo/pwless-demo: created",
        "kubernetes_service.demo/pwless-demo: created",
    ] {
        assert!(stderr(&output).contains(created), "{}", stderr(&output));
    }
    assert_users_made_through_the_relay(&stack, &rt, &stderr(&output));

    // IAM: the exact trust and permission documents of the service account's role.
    let clients = rt.block_on(crate::aws::clients(&stack.moto));
    let role_name = format!("{}-demo-demo-app", stack.name);
    let issuer = stack.output("clusterOidcIssuer");
    let issuer_host = issuer.trim_start_matches("https://");
    let resource_id = stack.output("databaseClusterResourceId");
    assert!(resource_id.starts_with("cluster-"), "{resource_id}");
    let (role_arn, trust, inline, attached, permission) = rt.block_on(async {
        let role = clients
            .iam
            .get_role()
            .role_name(&role_name)
            .send()
            .await
            .unwrap()
            .role
            .unwrap();
        let trust: Value =
            serde_json::from_str(&url_decoded(role.assume_role_policy_document().unwrap()))
                .unwrap();
        let inline = clients
            .iam
            .list_role_policies()
            .role_name(&role_name)
            .send()
            .await
            .unwrap()
            .policy_names()
            .to_vec();
        let attached = clients
            .iam
            .list_attached_role_policies()
            .role_name(&role_name)
            .send()
            .await
            .unwrap()
            .attached_policies()
            .len();
        let document = clients
            .iam
            .get_role_policy()
            .role_name(&role_name)
            .policy_name("rds-db-connect")
            .send()
            .await
            .unwrap()
            .policy_document()
            .to_string();
        let permission: Value = serde_json::from_str(&url_decoded(&document)).unwrap();
        (role.arn().to_string(), trust, inline, attached, permission)
    });
    assert_eq!(
        trust,
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": format!("arn:aws:iam::123456789012:oidc-provider/{issuer_host}")},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    format!("{issuer_host}:sub"): "system:serviceaccount:demo:demo-app",
                    format!("{issuer_host}:aud"): "sts.amazonaws.com",
                }},
            }],
        })
    );
    assert_eq!(inline, vec!["rds-db-connect".to_string()]);
    assert_eq!(attached, 0, "no managed policy on an IRSA role");
    assert_eq!(
        permission,
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "rds-db:connect",
                "Resource": format!("arn:aws:rds-db:us-west-2:123456789012:dbuser:{resource_id}/app_user"),
            }],
        })
    );
    let output = stack.run(&["output", "accessRoleArns", "--json"]);
    let arns: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(arns["demo/demo-app"], json!(role_arn));

    // Kubernetes: the service account carries that role; the app runs under it with the
    // database settings and no secret.
    let (account, deployment, service) = rt.block_on(async {
        let account = in_namespace(&kube, "v1", "ServiceAccount", "serviceaccounts")
            .get("demo-app")
            .await
            .unwrap();
        let deployment = in_namespace(&kube, "apps/v1", "Deployment", "deployments")
            .get("pwless-demo")
            .await
            .unwrap();
        let service = in_namespace(&kube, "v1", "Service", "services")
            .get("pwless-demo")
            .await
            .unwrap();
        (account, deployment, service)
    });
    assert_eq!(
        account.metadata.annotations.unwrap()["eks.amazonaws.com/role-arn"],
        role_arn
    );
    let managers: Vec<String> = deployment
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| entry.manager)
        .collect();
    assert_eq!(managers, vec!["pwless".to_string()]);
    let pod = &deployment.data["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "demo-app");
    let env: std::collections::BTreeMap<String, String> = pod["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["name"].as_str().unwrap().to_string(),
                entry["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(env["DB_ENDPOINT"], stack.output("databaseEndpoint"));
    assert_eq!(env["DB_PORT"], stack.output("databasePort"));
    assert_eq!(env["DB_USER"], "app_user");
    assert_eq!(env["DB_NAME"], "appdb");
    assert_eq!(env["AWS_REGION"], "us-west-2");
    assert_eq!(env["PORT"], "8080");
    assert!(env.contains_key("RDS_CA_CERT"));
    assert!(
        !env.keys().any(|key| key.contains("PASSWORD")),
        "no secret in the app's environment: {env:?}"
    );
    assert_eq!(deployment.data["status"]["availableReplicas"], 2);
    let hostname = service.data["status"]["loadBalancer"]["ingress"][0]["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(service.data["spec"]["type"], "LoadBalancer");
    assert_eq!(stack.output("appUrl"), format!("http://{hostname}"));

    // The database user the role may log in as is IAM-only.
    rt.block_on(async {
        let su = crate::aws::superuser(&stack.pg).await;
        let row = su
            .query_one("select rolcanlogin, rolpassword is null, pg_has_role(oid, 'rds_iam', 'member') from pg_authid where rolname = 'app_user'", &[])
            .await
            .unwrap();
        assert_eq!((row.get::<_, bool>(0), row.get::<_, bool>(1), row.get::<_, bool>(2)), (true, true, true));
    });

    // A second apply changes nothing: no write reaches the API server.
    let before = rt.block_on(stack.kube.requests()).len();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("No changes."),
        "{}",
        stdout(&output)
    );
    let writes: Vec<String> = rt.block_on(stack.kube.requests())[before..]
        .iter()
        .filter(|request| !request.starts_with("GET "))
        .cloned()
        .collect();
    assert_eq!(writes, Vec::<String>::new());

    // Someone revokes a privilege in the database: the plan reads the grants through the
    // relay, shows the drift, and apply puts the privilege back.
    let forwards_before = rt.block_on(stack.kube.port_forwards()).len();
    rt.block_on(async {
        let su = crate::aws::superuser(&stack.pg).await;
        su.batch_execute("revoke create on schema public from app_user")
            .await
            .unwrap();
    });
    crate::common::assert_plans_one_drift_repair(
        &stack.run(&["plan", "--detailed-exitcode"]),
        "postgresql_grant.user[app_user]",
    );
    assert!(rt.block_on(stack.kube.port_forwards()).len() > forwards_before);
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stack.run(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );

    // Someone scales the app by hand: the plan shows it, apply takes the field back.
    rt.block_on(async {
        in_namespace(&kube, "apps/v1", "Deployment", "deployments")
            .patch(
                "pwless-demo",
                &kube::api::PatchParams {
                    field_manager: Some("kubectl-scale".into()),
                    ..Default::default()
                },
                &kube::api::Patch::Merge(json!({"spec": {"replicas": 5}})),
            )
            .await
            .unwrap();
    });
    crate::common::assert_plans_one_drift_repair(
        &stack.run(&["plan", "--detailed-exitcode"]),
        "kubernetes_deployment.demo/pwless-demo",
    );
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let replicas = rt.block_on(async {
        in_namespace(&kube, "apps/v1", "Deployment", "deployments")
            .get("pwless-demo")
            .await
            .unwrap()
            .data["spec"]["replicas"]
            .clone()
    });
    assert_eq!(replicas, 2);
    assert_eq!(
        stack.run(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );

    // Destroy: the Service (and its load balancer) goes before the network, then everything.
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let log = stderr(&output);
    let position = crate::common::position_in(&log);
    assert!(
        position("kubernetes_service.demo/pwless-demo: destroyed")
            < position("aws_internet_gateway.main: destroyed")
    );
    assert!(
        log.contains("Destroy complete. Resources: 0 added, 0 changed, 43 destroyed."),
        "{log}"
    );
    for namespace in ["demo", pwless::relay::NAMESPACE] {
        assert!(
            rt.block_on(namespaces(&kube).get_opt(namespace))
                .unwrap()
                .is_none(),
            "namespace {namespace} is left"
        );
    }
    let left = rt.block_on(crate::aws::live(&clients, &stack.name));
    assert!(crate::aws::nothing(&left), "{left:?}");
}

#[test]
fn a_cluster_deleted_by_hand_takes_its_objects_with_it_and_destroy_still_works() {
    let stack = FullStack::new("gone");
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rt = runtime();
    let clients = rt.block_on(crate::aws::clients(&stack.moto));
    rt.block_on(async {
        clients
            .eks
            .delete_nodegroup()
            .cluster_name(&stack.name)
            .nodegroup_name("default")
            .send()
            .await
            .unwrap();
        clients
            .eks
            .delete_cluster()
            .name(&stack.name)
            .send()
            .await
            .unwrap();
    });
    // Without the stand-in's overrides pwless asks EKS where the API is: nowhere any more.
    let without_overrides = |args: &[&str]| {
        stack
            .command(args)
            .env_remove("PWLESS_KUBE_API_URL")
            .env_remove("PWLESS_KUBE_CA_FILE")
            .output()
            .unwrap()
    };
    let output = without_overrides(&["plan"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The users cannot be read with the relay's cluster gone: said, and taken as recorded.
    assert!(
        stderr(&output).contains(
            "Not refreshed: postgresql_grant.user[app_user], postgresql_role.user[app_user]"
        ),
        "{}",
        stderr(&output)
    );
    let plan = stdout(&output);
    for created in [
        "+ aws_eks_cluster.main",
        "+ kubernetes_namespace.demo",
        "+ kubernetes_deployment.demo/pwless-demo",
    ] {
        assert!(plan.contains(created), "{created}:\n{plan}");
    }
    let output = without_overrides(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let left = rt.block_on(crate::aws::live(&clients, &stack.name));
    assert!(crate::aws::nothing(&left), "{left:?}");
}

#[test]
fn a_stack_of_another_shape_manages_its_users_through_the_relay_from_apply_to_destroy() {
    // No app and no access entries (the relay is the only Kubernetes object), three zones,
    // two instances, two users; the database is reached only through the cluster.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/with-users.yaml"),
    )
    .unwrap();
    let stack = FullStack::of("shape", &text, |text| {
        text.replacen("availability_zones: 2", "availability_zones: 3", 1)
            .replacen("instances: 1", "instances: 2", 1)
    });
    let rt = runtime();
    let _inside = rt.enter();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let log = stderr(&output);
    let position = crate::common::position_in(&log);
    for user in ["app_user", "reporting"] {
        assert!(
            position("kubernetes_db_relay.pwless/db-relay: created")
                < position(&format!("postgresql_grant.user[{user}]: created"))
        );
    }
    assert!(stack.port_forward_count() > 0);
    let roles = |rt: &tokio::runtime::Runtime| {
        rt.block_on(async {
            let su = crate::aws::superuser(&stack.pg).await;
            su.query(
                "select rolname from pg_roles where pg_has_role(oid, 'rds_iam', 'member') and rolname <> 'rds_iam' and not rolsuper order by 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
        })
    };
    assert_eq!(roles(&rt), ["app_user", "reporting"]);
    assert_eq!(
        stack.run(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );

    // Drift made in the database is read through the relay and repaired.
    rt.block_on(async {
        let su = crate::aws::superuser(&stack.pg).await;
        su.batch_execute("revoke usage on schema public from reporting")
            .await
            .unwrap();
    });
    crate::common::assert_plans_one_drift_repair(
        &stack.run(&["plan", "--detailed-exitcode"]),
        "postgresql_grant.user[reporting]",
    );
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // A user removed from the stack is dropped through the relay.
    let text = std::fs::read_to_string(&stack.file).unwrap();
    std::fs::write(
        &stack.file,
        text.replacen(
            "    - name: reporting\n      privileges: [connect, usage, select]\n",
            "",
            1,
        ),
    )
    .unwrap();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(roles(&rt), ["app_user"]);
    assert_eq!(
        stack.run(&["plan", "--detailed-exitcode"]).status.code(),
        Some(0)
    );

    // Destroy leaves no relay, no namespace and nothing in AWS.
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let kube = stack.kube.client();
    assert!(
        rt.block_on(namespaces(&kube).get_opt(pwless::relay::NAMESPACE))
            .unwrap()
            .is_none()
    );
    let clients = rt.block_on(crate::aws::clients(&stack.moto));
    let left = rt.block_on(crate::aws::live(&clients, &stack.name));
    assert!(crate::aws::nothing(&left), "{left:?}");
}

/// Issue 20: `pwless doctor` names exactly the broken link, one broken at a time, and holds
/// the healthy stack (exit 0). Each link is broken as users break it by hand, then put back;
/// the wrong CA bundle too.
#[test]
fn doctor_names_exactly_the_broken_link_each_time() {
    let stack = FullStack::with("doctor", |text| {
        text[..text.find("app:").unwrap()].to_string()
    });
    let rt = runtime();
    let _inside = rt.enter();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let doctor = || {
        let output = stack.run(&["doctor"]);
        (output.status.code(), stdout(&output), stderr(&output))
    };
    let (code, report, errors) = doctor();
    assert_eq!(code, Some(0), "{report}{errors}");
    assert!(
        report.contains("Every link of 1 chain(s) holds."),
        "{report}"
    );
    // Apply turned the export on; nothing was refused yet.
    assert!(
        report.contains("auth error log: RDS has refused no IAM login of Aurora cluster"),
        "{report}"
    );
    // The handshake's facts: the version and the bundle's CA that verified the endpoint's name.
    let tls = report.lines().find(|line| line.contains("tls: ")).unwrap();
    assert!(
        tls.contains("TLSv1_") && tls.contains("verified for ") && tls.contains(" by "),
        "{report}"
    );

    let aws = rt.block_on(crate::aws::clients(&stack.moto));
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(stack.state_path()).unwrap()).unwrap();
    let resources = state["resources"].as_array().unwrap();
    let of = |address: &str| {
        resources
            .iter()
            .find(|r| r["address"] == address)
            .unwrap()
            .clone()
    };
    let role = of("aws_iam_role.irsa[demo/demo-app]");
    let role_name = role["outputs"]["name"].as_str().unwrap().to_string();
    let policy = resources
        .iter()
        .find(|r| r["kind"] == "aws_iam_role_policy")
        .unwrap()["inputs"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let cluster = of("aws_rds_cluster.main")["inputs"]["cluster_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    let group = of("aws_security_group.database")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let trust = rt.block_on(trust_of(&aws, &role_name));

    type Step<'a> = Box<dyn Fn() + 'a>;
    let by_hand = |sql: &'static str| {
        let pg = &stack.pg;
        Box::new(move || {
            runtime().block_on(async {
                crate::aws::superuser(pg)
                    .await
                    .batch_execute(sql)
                    .await
                    .unwrap()
            })
        }) as Step
    };
    let apply: Step = Box::new(|| {
        let output = stack.run(&["apply", "--auto-approve"]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    });
    // The CA bundle pwless trusts, replaced by an unrelated CA's (an outdated bundle, another
    // environment's): every database check goes through TLS, so doctor names TLS first.
    let bundle = std::path::PathBuf::from(stack.pg.var("PWLESS_DB_CA_BUNDLE"));
    let original = std::fs::read(&bundle).unwrap();
    let cases: Vec<(&str, Step, Step)> = vec![
        (
            "tls",
            Box::new(|| std::fs::write(&bundle, std::fs::read(&stack.kube.ca).unwrap()).unwrap()),
            Box::new(|| std::fs::write(&bundle, &original).unwrap()),
        ),
        (
            "database user",
            by_hand("REVOKE rds_iam FROM app_user;"),
            by_hand("GRANT rds_iam TO app_user;"),
        ),
        (
            "iam database authentication",
            Box::new(|| {
                rt.block_on(
                    aws.rds
                        .modify_db_cluster()
                        .db_cluster_identifier(&cluster)
                        .enable_iam_database_authentication(false)
                        .apply_immediately(true)
                        .send(),
                )
                .unwrap();
            }),
            Box::new(|| {
                rt.block_on(
                    aws.rds
                        .modify_db_cluster()
                        .db_cluster_identifier(&cluster)
                        .enable_iam_database_authentication(true)
                        .apply_immediately(true)
                        .send(),
                )
                .unwrap();
            }),
        ),
        (
            "connect policy",
            Box::new(|| {
                let wrong = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "rds-db:connect",
                    "Resource": "arn:aws:rds-db:us-west-2:123456789012:dbuser:cluster-SOMEOTHERCLUSTER/app_user"}]});
                rt.block_on(
                    aws.iam
                        .put_role_policy()
                        .role_name(&role_name)
                        .policy_name(&policy)
                        .policy_document(wrong.to_string())
                        .send(),
                )
                .unwrap();
            }),
            Box::new(|| {
                rt.block_on(
                    aws.iam
                        .delete_role_policy()
                        .role_name(&role_name)
                        .policy_name(&policy)
                        .send(),
                )
                .unwrap();
                let output = stack.run(&["apply", "--auto-approve"]);
                assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
            }),
        ),
        (
            "connect policy",
            Box::new(|| {
                let deny = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "rds-db:*", "Resource": "*"}]});
                rt.block_on(
                    aws.iam
                        .put_role_policy()
                        .role_name(&role_name)
                        .policy_name("deny-all-databases")
                        .policy_document(deny.to_string())
                        .send(),
                )
                .unwrap();
                // The app tries meanwhile: RDS refuses it and logs why (the export is on).
                let output = stack.login(Some("demo/demo-app"), "app_user");
                assert!(
                    crate::iam_login::refused(&output, "app_user"),
                    "{}",
                    stderr(&output)
                );
            }),
            Box::new(|| {
                rt.block_on(
                    aws.iam
                        .delete_role_policy()
                        .role_name(&role_name)
                        .policy_name("deny-all-databases")
                        .send(),
                )
                .unwrap();
            }),
        ),
        (
            "connect policy",
            Box::new(|| {
                rt.block_on(
                    aws.iam
                        .delete_role_policy()
                        .role_name(&role_name)
                        .policy_name(&policy)
                        .send(),
                )
                .unwrap();
            }),
            Box::new(|| {
                let output = stack.run(&["apply", "--auto-approve"]);
                assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
            }),
        ),
        (
            "trust",
            Box::new(|| {
                let other = trust.replace(
                    "system:serviceaccount:demo:demo-app",
                    "system:serviceaccount:demo:someone-else",
                );
                assert_ne!(other, trust);
                rt.block_on(
                    aws.iam
                        .update_assume_role_policy()
                        .role_name(&role_name)
                        .policy_document(other)
                        .send(),
                )
                .unwrap();
            }),
            Box::new(|| {
                rt.block_on(
                    aws.iam
                        .update_assume_role_policy()
                        .role_name(&role_name)
                        .policy_document(&trust)
                        .send(),
                )
                .unwrap();
            }),
        ),
        (
            "service account",
            Box::new(|| {
                let client = stack.kube.client();
                rt.block_on(in_namespace(&client, "v1", "ServiceAccount", "serviceaccounts").patch(
                    "demo-app",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": null}}})),
                )).unwrap();
            }),
            apply,
        ),
        (
            "security group",
            Box::new(|| {
                rt.block_on(
                    aws.ec2
                        .revoke_security_group_ingress()
                        .group_id(&group)
                        .ip_protocol("tcp")
                        .from_port(5432)
                        .to_port(5432)
                        .cidr_ip("10.0.128.0/18")
                        .send(),
                )
                .unwrap();
            }),
            Box::new(|| {
                rt.block_on(
                    aws.ec2
                        .authorize_security_group_ingress()
                        .group_id(&group)
                        .ip_protocol("tcp")
                        .from_port(5432)
                        .to_port(5432)
                        .cidr_ip("10.0.128.0/18")
                        .send(),
                )
                .unwrap();
            }),
        ),
    ];
    for (link, break_it, repair) in &cases {
        break_it();
        let (code, report, errors) = doctor();
        assert_eq!(code, Some(1), "{link}: {report}{errors}");
        let first = report
            .lines()
            .find(|line| line.contains("BROKEN"))
            .unwrap_or_default();
        assert!(
            first.trim_start().starts_with(&format!("BROKEN {link}:")),
            "{link}: the first broken link is another:\n{report}"
        );
        assert!(report.contains("fix: "), "{link}: {report}");
        repair();
        let (code, report, errors) = doctor();
        assert_eq!(code, Some(0), "{link} repaired: {report}{errors}");
    }
    // A certificate checked for another name than it carries (a tunnel's name given as the
    // server name): the TLS link, with the name's fix, not the bundle's.
    let output = stack
        .command(&["doctor"])
        .env("PWLESS_DB_TLS_SERVER_NAME", "elsewhere.example.com")
        .output()
        .unwrap();
    let report = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{report}{}", stderr(&output));
    let broken = report
        .lines()
        .skip_while(|line| !line.contains("BROKEN tls:"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        broken.contains("elsewhere.example.com")
            && broken.contains("fix: check the certificate against the cluster endpoint's name"),
        "{report}"
    );
    // The refusal of the Deny's time is in the IAM authentication error log, with its reason,
    // on the healthy stack too (doctor says it may be history).
    let (code, report, errors) = doctor();
    assert_eq!(code, Some(0), "{report}{errors}");
    let log = report
        .lines()
        .find(|line| line.contains("auth error log: "))
        .unwrap_or_default();
    assert!(
        log.contains("RDS refused 1 IAM login(s) as app_user in the last hour")
            && log.contains("Failed to authorize the connection request for user 'app_user'")
            && log.contains("an explicit Deny"),
        "{report}"
    );
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// A role's trust policy as IAM answers it, percent-decoded.
async fn trust_of(aws: &crate::aws::Clients, role_name: &str) -> String {
    let document = aws
        .iam
        .get_role()
        .role_name(role_name)
        .send()
        .await
        .unwrap()
        .role()
        .unwrap()
        .assume_role_policy_document()
        .unwrap()
        .to_string();
    percent_encoding::percent_decode_str(&document)
        .decode_utf8_lossy()
        .into_owned()
}

/// `pwless doctor` on a Pod Identity entry (issues 19 and 20): each link broken by hand the
/// way users break it is named as the first broken link, and holds again once repaired.
#[test]
fn doctor_names_the_broken_pod_identity_link() {
    let stack = FullStack::with("doctorpi", |text| {
        text[..text.find("app:").unwrap()].replacen(
            "db_user: app_user}",
            "db_user: app_user, identity: pod_identity}",
            1,
        )
    });
    let rt = runtime();
    let _inside = rt.enter();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let doctor = || {
        let output = stack.run(&["doctor"]);
        (output.status.code(), stdout(&output), stderr(&output))
    };
    let (code, report, errors) = doctor();
    assert_eq!(code, Some(0), "{report}{errors}");
    assert!(report.contains("pod identity association"), "{report}");

    let aws = rt.block_on(crate::aws::clients(&stack.moto));
    let role_name = format!("{}-pi-demo-demo-app", stack.name);
    let role_arn = format!("arn:aws:iam::123456789012:role/{role_name}");
    let trust = rt.block_on(trust_of(&aws, &role_name));
    let association = || {
        rt.block_on(
            aws.eks
                .list_pod_identity_associations()
                .cluster_name(&stack.name)
                .send(),
        )
        .unwrap()
        .associations()[0]
            .association_id()
            .unwrap()
            .to_string()
    };
    type Step<'a> = Box<dyn Fn() + 'a>;
    let apply: Step = Box::new(|| {
        let output = stack.run(&["apply", "--auto-approve"]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    });
    let set_trust = |document: String| -> Step {
        let (aws, role_name) = (&aws, &role_name);
        let rt = &rt;
        Box::new(move || {
            rt.block_on(
                aws.iam
                    .update_assume_role_policy()
                    .role_name(role_name)
                    .policy_document(&document)
                    .send(),
            )
            .unwrap();
        })
    };
    let other = trust.replace("\"demo-app\"", "\"someone-else\"");
    assert_ne!(other, trust);
    let cases: Vec<(&str, Step, Step)> = vec![
        ("trust", set_trust(other), set_trust(trust.clone())),
        (
            "pod identity association",
            Box::new(|| {
                rt.block_on(
                    aws.eks
                        .delete_pod_identity_association()
                        .cluster_name(&stack.name)
                        .association_id(association())
                        .send(),
                )
                .unwrap();
            }),
            Box::new(|| {
                let output = stack.run(&["apply", "--auto-approve"]);
                assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
            }),
        ),
        (
            "pod identity association",
            Box::new(|| {
                rt.block_on(
                    aws.eks
                        .delete_addon()
                        .cluster_name(&stack.name)
                        .addon_name("eks-pod-identity-agent")
                        .send(),
                )
                .unwrap();
            }),
            Box::new(|| {
                let output = stack.run(&["apply", "--auto-approve"]);
                assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
            }),
        ),
        (
            "service account",
            Box::new(|| {
                let client = stack.kube.client();
                rt.block_on(in_namespace(&client, "v1", "ServiceAccount", "serviceaccounts").patch(
                    "demo-app",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"eks.amazonaws.com/role-arn": role_arn}}})),
                )).unwrap();
            }),
            apply,
        ),
    ];
    for (link, break_it, repair) in &cases {
        break_it();
        let (code, report, errors) = doctor();
        assert_eq!(code, Some(1), "{link}: {report}{errors}");
        let first = report
            .lines()
            .find(|line| line.contains("BROKEN"))
            .unwrap_or_default();
        assert!(
            first.trim_start().starts_with(&format!("BROKEN {link}:")),
            "{link}: the first broken link is another:\n{report}"
        );
        repair();
        let (code, report, errors) = doctor();
        assert_eq!(code, Some(0), "{link} repaired: {report}{errors}");
    }
    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
