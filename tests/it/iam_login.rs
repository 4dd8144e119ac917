//! The passwordless login, proven in the sandbox: the sandbox PostgreSQL checks IAM tokens as
//! RDS does (scripts/iam-verifier.py behind PAM), and `pwless sandbox run --as` acts as a
//! service account with the credentials its IRSA role gets from the sandbox STS.
//!
//! Every refusal must be PostgreSQL's own `PAM authentication failed` (or, without TLS, no
//! pg_hba entry at all), and every admission must come from the whole chain: trust policy,
//! role credentials, `rds-db:connect` on the exact dbuser ARN, `rds_iam`, verified TLS.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, SystemTime};

use pwless::db::connect;
use pwless::secret::Secret;
use pwless::token::{SigningCredentials, TokenSigner};

use crate::common::{assert_exit, stderr, stdout};
use crate::kubernetes::FullStack;

/// The example stack with a second user and a second service account logging in as it.
fn two_service_accounts(text: String) -> String {
    text.replacen(
        "      privileges: [connect, usage, create, select, insert, update, delete]\n",
        "      privileges: [connect, usage, create, select, insert, update, delete]\n    - name: reporting\n      privileges: [connect, usage, select]\n",
        1,
    )
    .replacen(
        "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n",
        "  - {namespace: demo, service_account: demo-app, db_user: app_user}\n  - {namespace: demo, service_account: reporter, db_user: reporting}\n",
        1,
    )
}

impl FullStack {
    /// `pwless sandbox run -f stack.yaml --as <account> -- <command...>`.
    fn as_service_account(&self, account: &str, command: &[&str]) -> std::process::Output {
        self.pwless()
            .args([
                "sandbox",
                "run",
                "-f",
                self.file.to_str().unwrap(),
                "--as",
                account,
                "--",
            ])
            .args(command)
            .output()
            .unwrap()
    }

    /// psql as `user`, through `pwless connect`, as `account` (or with the test credentials).
    pub(crate) fn login(&self, account: Option<&str>, user: &str) -> std::process::Output {
        let pwless = env!("CARGO_BIN_EXE_pwless");
        let file = self.file.to_str().unwrap();
        let connect = [
            pwless,
            "connect",
            "-f",
            file,
            "--user",
            user,
            "--",
            "-tAc",
            "select current_user",
        ];
        match account {
            Some(account) => self.as_service_account(account, &connect),
            None => self.run(&[
                "connect",
                "--user",
                user,
                "--",
                "-tAc",
                "select current_user",
            ]),
        }
    }

    /// The credentials `sandbox run --as` hands to its command.
    fn credentials_of(&self, account: &str) -> SigningCredentials {
        let output = self.as_service_account(account, &["env"]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let env: HashMap<String, String> = stdout(&output)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        SigningCredentials {
            access_key_id: env["AWS_ACCESS_KEY_ID"].clone(),
            secret_access_key: Secret::new(env["AWS_SECRET_ACCESS_KEY"].clone()),
            session_token: Some(Secret::new(env["AWS_SESSION_TOKEN"].clone())),
        }
    }

    fn verifier_log(&self) -> String {
        std::fs::read_to_string(self.pg.var("PWLESS_SANDBOX_IAM_LOG")).unwrap()
    }
}

pub(crate) fn refused(output: &std::process::Output, user: &str) -> bool {
    output.status.code() != Some(0)
        && stderr(output).contains(&format!("PAM authentication failed for user \"{user}\""))
}

#[test]
fn a_service_account_logs_in_as_its_own_user_and_nothing_else() {
    let stack = FullStack::with("login", two_service_accounts);
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    // Each service account logs in as its own user.
    for (account, user) in [
        ("demo/demo-app", "app_user"),
        ("demo/reporter", "reporting"),
    ] {
        let output = stack.login(Some(account), user);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{account}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output).trim(), user);
    }
    // ... and not as the other's.
    let output = stack.login(Some("demo/demo-app"), "reporting");
    assert!(refused(&output, "reporting"), "{}", stderr(&output));
    assert!(
        stack.verifier_log().contains(
            "may not rds-db:connect on arn:aws:rds-db:us-west-2:123456789012:dbuser:cluster-"
        ),
        "{}",
        stack.verifier_log()
    );
    // The right user, but credentials whose principal has no rds-db:connect at all. From
    // outside the VPC, `pwless connect` goes through the relay in the cluster (a port-forward
    // per connection), and it is PostgreSQL itself that refuses.
    let forwards = stack.port_forward_count();
    let output = stack.login(None, "app_user");
    assert!(refused(&output, "app_user"), "{}", stderr(&output));
    assert!(
        stack.port_forward_count() > forwards,
        "connect did not go through the cluster"
    );

    // Tokens made here from the service account's own credentials: a fresh one is admitted,
    // an expired or tampered one is not, nor one for the master user, nor one without TLS.
    let credentials = stack.credentials_of("demo/demo-app");
    let signer = TokenSigner::new(credentials, "us-west-2").unwrap();
    let endpoint = stack.output("databaseEndpoint");
    let token_at =
        |user: &str, when: SystemTime| signer.token(&endpoint, 5432, user, when).unwrap();
    let target = stack
        .pg
        .target("localhost", stack.pg.var("PWLESS_DB_CA_BUNDLE"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let login = |user: &str, password: &str| {
        rt.block_on(async {
            connect(&target, user, &Secret::new(password.to_string()))
                .await
                .map(drop)
                .map_err(|error| {
                    // The whole chain: PostgreSQL's message is in the source.
                    let mut text = error.to_string();
                    let mut source = std::error::Error::source(&error);
                    while let Some(cause) = source {
                        text.push_str(&format!(": {cause}"));
                        source = cause.source();
                    }
                    text
                })
        })
    };
    let fresh = token_at("app_user", SystemTime::now());
    // moto's session tokens are shorter than real ones (356 bytes, not 1,000+), but the token is
    // still past the 511 bytes pam_exec would have cut: the PAM module passes it whole.
    assert!(fresh.expose().len() > 511, "{} bytes", fresh.expose().len());
    login("app_user", fresh.expose()).expect("a fresh token of the right role is admitted");

    let expired = token_at("app_user", SystemTime::now() - Duration::from_secs(16 * 60));
    let error = login("app_user", expired.expose()).unwrap_err();
    assert!(error.contains("PAM authentication failed"), "{error}");
    assert!(
        stack.verifier_log().contains("the token expired"),
        "{}",
        stack.verifier_log()
    );

    let mut tampered = fresh.expose().to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let error = login("app_user", &tampered).unwrap_err();
    assert!(error.contains("PAM authentication failed"), "{error}");
    assert!(
        stack
            .verifier_log()
            .contains("the signature does not match"),
        "{}",
        stack.verifier_log()
    );

    // The master user is not in rds_iam: a token is just a wrong password for it.
    let master_token = token_at("admin", SystemTime::now());
    let error = login("admin", master_token.expose()).unwrap_err();
    assert!(
        error.contains("password authentication failed for user \"admin\""),
        "{error}"
    );

    // Without TLS there is no way in at all.
    let port = stack
        .pg
        .var("PWLESS_SANDBOX_DB_ADDRESS")
        .rsplit_once(':')
        .unwrap()
        .1
        .to_string();
    let output = Command::new("psql")
        .arg(format!(
            "host=127.0.0.1 port={port} user=app_user dbname=appdb sslmode=disable"
        ))
        .args(["-c", "select 1"])
        .env(
            "PGPASSWORD",
            token_at("app_user", SystemTime::now()).expose(),
        )
        .output()
        .unwrap();
    assert!(
        stderr(&output).contains("no encryption"),
        "{}",
        stderr(&output)
    );

    // The reporter loses its access entry: its role goes, and its credentials no longer get in.
    let reporter = stack.credentials_of("demo/reporter");
    let text = std::fs::read_to_string(&stack.file).unwrap();
    std::fs::write(
        &stack.file,
        text.replacen(
            "  - {namespace: demo, service_account: reporter, db_user: reporting}\n",
            "",
            1,
        ),
    )
    .unwrap();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("aws_iam_role.irsa[demo/reporter]: destroyed"),
        "{}",
        stderr(&output)
    );
    let signer = TokenSigner::new(reporter, "us-west-2").unwrap();
    let token = signer
        .token(&endpoint, 5432, "reporting", SystemTime::now())
        .unwrap();
    let error = login("reporting", token.expose()).unwrap_err();
    assert!(
        error.contains("PAM authentication failed for user \"reporting\""),
        "{error}"
    );
    let output = stack.login(Some("demo/reporter"), "reporting");
    assert!(
        stderr(&output).contains("is no service account of stack"),
        "{}",
        stderr(&output)
    );
    // The other service account still gets in.
    assert_eq!(
        stack.login(Some("demo/demo-app"), "app_user").status.code(),
        Some(0)
    );

    // The pool: a connection outlives the credentials that logged it in (RDS checks tokens at
    // login only), while a new one with them is refused, with an error that says what to check.
    let credentials = stack.credentials_of("demo/demo-app");
    let access_key = credentials.access_key_id.clone();
    let tokens = std::sync::Arc::new(pwless::pool::TokenCache::with_credentials(
        credentials,
        pwless::pool::TokenTarget {
            region: "us-west-2".into(),
            host: endpoint.clone(),
            port: 5432,
            user: "app_user".into(),
        },
    ));
    rt.block_on(async {
        use pwless::pool::Manager;
        let pool = pwless::pool::IamPool::new(tokens, target.clone(), 2, true).unwrap();
        let held = pool.get().await.expect("a pooled connection");
        // The sandbox forgets these credentials, as if they had expired.
        let registry = stack.pg.var("PWLESS_SANDBOX_IAM_CREDENTIALS");
        let mut known: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&std::fs::read(registry).unwrap()).unwrap();
        assert!(known.remove(&access_key).is_some());
        std::fs::write(registry, serde_json::Value::Object(known).to_string()).unwrap();
        let row = held
            .query_one("select current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "app_user");
        let error = pool.manager().create().await.unwrap_err().to_string();
        assert!(
            error.contains("the database refused the IAM token for user `app_user`")
                && error.contains("rds-db:connect"),
            "{error}"
        );
    });

    // Nothing the verifier logged is a token.
    assert!(!stack.verifier_log().contains("X-Amz-Signature"));

    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// The example stack with a second service account; `demo/demo-app` on EKS Pod Identity when
/// `pod_identity`, `demo/reporter` on IRSA.
fn mixed_identities(pod_identity: bool) -> impl FnOnce(String) -> String {
    move |text| {
        let text = two_service_accounts(text);
        if pod_identity {
            text.replacen(
                "service_account: demo-app, db_user: app_user}",
                "service_account: demo-app, db_user: app_user, identity: pod_identity}",
                1,
            )
        } else {
            text
        }
    }
}

/// A stack mixing EKS Pod Identity and IRSA (issue 19): each service account logs in as its
/// own user through its own mechanism (Pod Identity's credentials from the agent `sandbox run`
/// runs, after EKS Auth checked the association and the role's trust) and is refused as the
/// other's; the Pod Identity role trusts exactly this cluster, namespace and service account,
/// and its service account carries no IRSA annotation; destroy leaves no role behind.
///
/// `pwless verify` (issue 20) proves the same from Jobs under three service accounts (a third,
/// `ops/auditor`, logs in as `auditor` with IRSA): the matrix is right, and a policy added by
/// hand that lets the auditor in as `app_user` is caught.
#[test]
fn pod_identity_and_irsa_side_by_side_each_log_in_as_their_own_user_only() {
    let stack = FullStack::with("podid", |text| {
        mixed_identities(true)(text)
            .replacen(
                "    - name: reporting\n",
                "    - name: auditor\n      privileges: [connect]\n    - name: reporting\n",
                1,
            )
            .replacen(
                "  - {namespace: demo, service_account: reporter, db_user: reporting}\n",
                "  - {namespace: demo, service_account: reporter, db_user: reporting}\n  - {namespace: ops, service_account: auditor, db_user: auditor}\n",
                1,
            )
    });
    // The demo image in the example is a tag: verify refuses to run it before anything else.
    let output = stack.run(&["verify"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("is not pinned by digest"),
        "{}",
        stderr(&output)
    );
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let image = crate::common::verify_image();
    let output = stack.run(&["verify", "--image", &image]);
    assert_exit(&output, 0);
    let matrix = stdout(&output);
    let rows: Vec<Vec<&str>> = matrix
        .lines()
        .filter(|line| line.contains("(IRSA)") || line.contains("(Pod Identity)"))
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(
        rows,
        [
            [
                "demo/demo-app (Pod Identity)",
                "login",
                "refused",
                "refused"
            ],
            ["demo/reporter (IRSA)", "refused", "refused", "login"],
            ["ops/auditor (IRSA)", "refused", "login", "refused"],
        ],
        "{matrix}"
    );
    assert!(
        matrix.contains("app_user") && matrix.contains("auditor"),
        "{matrix}"
    );
    // The Jobs are gone.
    let rt = crate::aws::runtime();
    let requests = rt.block_on(stack.kube.requests());
    assert_eq!(
        requests
            .iter()
            .filter(|r| r.starts_with("DELETE jobs/"))
            .count(),
        3,
        "{requests:?}"
    );
    // A policy added by hand that lets the auditor in as app_user: verify catches it.
    let clients = rt.block_on(crate::aws::clients(&stack.moto));
    let resource_id = stack.output("databaseClusterResourceId");
    let document = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "rds-db:connect",
            "Resource": format!("arn:aws:rds-db:us-west-2:123456789012:dbuser:{resource_id}/app_user")}]
    });
    rt.block_on(
        clients
            .iam
            .put_role_policy()
            .role_name(pwless::spec::names::irsa_role(
                &stack.name,
                "ops",
                "auditor",
            ))
            .policy_name("by-hand")
            .policy_document(document.to_string())
            .send(),
    )
    .unwrap();
    let output = stack.run(&["verify", "--image", &image]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(
        stdout(&output)
            .contains("! ops/auditor as app_user should be refused, but logged in: app_user"),
        "{}",
        stdout(&output)
    );
    rt.block_on(
        clients
            .iam
            .delete_role_policy()
            .role_name(pwless::spec::names::irsa_role(
                &stack.name,
                "ops",
                "auditor",
            ))
            .policy_name("by-hand")
            .send(),
    )
    .unwrap();

    for (account, user, mechanism) in [
        ("demo/demo-app", "app_user", "Pod Identity"),
        ("demo/reporter", "reporting", "IRSA"),
    ] {
        let output = stack.login(Some(account), user);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{account}: {}",
            stderr(&output)
        );
        assert_eq!(stdout(&output).trim(), user);
        assert!(stderr(&output).contains(mechanism), "{}", stderr(&output));
    }
    for (account, other) in [
        ("demo/demo-app", "reporting"),
        ("demo/reporter", "app_user"),
    ] {
        let output = stack.login(Some(account), other);
        assert!(
            refused(&output, other),
            "{account} as {other}: {}",
            stderr(&output)
        );
    }
    // The Pod Identity command got no keys in its environment: only the agent's address.
    let output = stack.as_service_account("demo/demo-app", &["env"]);
    let env = stdout(&output);
    assert!(
        env.contains("AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:"),
        "{env}"
    );
    assert!(!env.contains("AWS_ACCESS_KEY_ID="), "{env}");

    // Through the AWS API: the association, the agent, the trust pinned to this service account.
    let associations = rt
        .block_on(
            clients
                .eks
                .list_pod_identity_associations()
                .cluster_name(&stack.name)
                .send(),
        )
        .unwrap();
    let listed: Vec<(&str, &str)> = associations
        .associations()
        .iter()
        .map(|a| (a.namespace().unwrap(), a.service_account().unwrap()))
        .collect();
    assert_eq!(listed, [("demo", "demo-app")]);
    let agent = rt
        .block_on(
            clients
                .eks
                .describe_addon()
                .cluster_name(&stack.name)
                .addon_name("eks-pod-identity-agent")
                .send(),
        )
        .unwrap();
    assert_eq!(agent.addon().unwrap().status().unwrap().as_str(), "ACTIVE");
    let role_name = format!("{}-pi-demo-demo-app", stack.name);
    let role = rt
        .block_on(clients.iam.get_role().role_name(&role_name).send())
        .unwrap();
    let trust: serde_json::Value = serde_json::from_str(
        &percent_encoding::percent_decode_str(
            role.role().unwrap().assume_role_policy_document().unwrap(),
        )
        .decode_utf8_lossy(),
    )
    .unwrap();
    let equals = &trust["Statement"][0]["Condition"]["StringEquals"];
    assert_eq!(equals["aws:RequestTag/kubernetes-namespace"], "demo");
    assert_eq!(
        equals["aws:RequestTag/kubernetes-service-account"],
        "demo-app"
    );
    assert!(
        equals["aws:RequestTag/eks-cluster-arn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":cluster/{}", stack.name))
    );
    // A second plan is clean (the trust and the association read back as declared).
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_exit(&output, 0);

    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    // The association and the agent are taken away themselves, before their cluster.
    for address in [
        "aws_eks_pod_identity_association.main[demo/demo-app]",
        "aws_eks_addon.pod_identity_agent",
    ] {
        assert!(
            stderr(&output).contains(&format!("{address}: destroyed after")),
            "{}",
            stderr(&output)
        );
    }
    let roles = rt.block_on(clients.iam.list_roles().send()).unwrap();
    assert!(
        roles
            .roles()
            .iter()
            .all(|role| !role.role_name().starts_with(&stack.name)),
        "roles left behind"
    );
}

/// A migration from IRSA to EKS Pod Identity in one apply (issue 19) never leaves the service
/// account without a login: the apply is killed at each of its checkpoints in turn, and at
/// every one a command run as the service account logs in. Regression: the old role's
/// `rds-db:connect` policy had no dependent, so its delete ran first and took the login away
/// before the association existed.
#[test]
fn a_migration_from_irsa_to_pod_identity_never_leaves_the_service_account_without_a_login() {
    let stack = FullStack::with("migrate", mixed_identities(false));
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = stack.login(Some("demo/reporter"), "reporting");
    assert!(stderr(&output).contains("IRSA"), "{}", stderr(&output));

    // The reporter migrates from IRSA to Pod Identity in one apply, killed (SIGKILL) at its
    // k-th state checkpoint in round k and run again from what it left: at every checkpoint
    // the service account logs in, the way a pod started at that moment would (its mechanism
    // as the applied state says: the annotation while there is one, then the association).
    std::fs::write(
        &stack.file,
        std::fs::read_to_string(&stack.file).unwrap().replacen(
            "service_account: reporter, db_user: reporting}",
            "service_account: reporter, db_user: reporting, identity: pod_identity}",
            1,
        ),
    )
    .unwrap();
    let serial = || -> u64 {
        std::fs::read_to_string(stack.state_path())
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|state| state["serial"].as_u64())
            .unwrap_or(0)
    };
    let mut mechanisms = std::collections::BTreeSet::new();
    let mut rounds = 0;
    for point in 1.. {
        assert!(point < 40, "the migration did not finish");
        let start = serial();
        let mut apply = stack
            .command(&["apply", "--auto-approve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut killed = false;
        while apply.try_wait().unwrap().is_none() {
            if serial() >= start + point {
                apply.kill().unwrap();
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let status = apply.wait().unwrap();
        let output = stack.login(Some("demo/reporter"), "reporting");
        assert_eq!(
            output.status.code(),
            Some(0),
            "killed at checkpoint {point} of a run: {}",
            stderr(&output)
        );
        mechanisms.insert(stderr(&output).contains("Pod Identity"));
        if !killed {
            assert!(status.success(), "the last run failed");
            break;
        }
        rounds += 1;
    }
    assert!(rounds >= 3, "only {rounds} checkpoints were interrupted");
    // Both mechanisms were seen during the migration, and Pod Identity at its end.
    assert_eq!(mechanisms.len(), 2, "{mechanisms:?}");
    let output = stack.login(Some("demo/reporter"), "reporting");
    assert!(
        stderr(&output).contains("Pod Identity"),
        "{}",
        stderr(&output)
    );
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_exit(&output, 0);

    let rt = crate::aws::runtime();
    let clients = rt.block_on(crate::aws::clients(&stack.moto));
    let gone = rt.block_on(
        clients
            .iam
            .get_role()
            .role_name(format!("{}-demo-reporter", stack.name))
            .send(),
    );
    assert!(gone.is_err(), "the IRSA role is still there");

    // And back to IRSA in one apply: the association and the Pod Identity role go, the
    // service account is annotated again and logs in through IRSA.
    std::fs::write(
        &stack.file,
        std::fs::read_to_string(&stack.file).unwrap().replacen(
            "service_account: reporter, db_user: reporting, identity: pod_identity}",
            "service_account: reporter, db_user: reporting}",
            1,
        ),
    )
    .unwrap();
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = stack.login(Some("demo/reporter"), "reporting");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("IRSA"), "{}", stderr(&output));
    let listed = rt
        .block_on(
            clients
                .eks
                .list_pod_identity_associations()
                .cluster_name(&stack.name)
                .send(),
        )
        .unwrap();
    assert!(listed.associations().is_empty(), "{listed:?}");
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_exit(&output, 0);
}

/// Lost answers (the call takes effect, pwless hears nothing) on the Pod Identity creates: the
/// association and the agent add-on are made once each in one run, with a clean plan after.
#[test]
fn lost_answers_to_pod_identity_creates_neither_duplicate_nor_fail() {
    let stack = FullStack::with("lostpi", mixed_identities(true));
    let associations = format!("POST /clusters/{}/pod-identity-associations=1", stack.name);
    let addons = format!("POST /clusters/{}/addons=1", stack.name);
    let proxy =
        crate::aws::Proxy::with_options(&stack.moto, &["--lose", &associations, "--lose", &addons]);
    let output = stack
        .command(&["apply", "--auto-approve"])
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lost = proxy
        .calls()
        .iter()
        .filter(|call| call["lost"] == true)
        .count();
    assert_eq!(lost, 2, "every planned loss happened");
    drop(proxy);
    let rt = crate::aws::runtime();
    let clients = rt.block_on(crate::aws::clients(&stack.moto));
    let listed = rt
        .block_on(
            clients
                .eks
                .list_pod_identity_associations()
                .cluster_name(&stack.name)
                .send(),
        )
        .unwrap();
    assert_eq!(listed.associations().len(), 1);
    let addons = rt
        .block_on(clients.eks.list_addons().cluster_name(&stack.name).send())
        .unwrap();
    assert_eq!(addons.addons(), ["eks-pod-identity-agent"]);
    let output = stack.run(&["plan", "--detailed-exitcode"]);
    assert_exit(&output, 0);
    let output = stack.login(Some("demo/demo-app"), "app_user");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
