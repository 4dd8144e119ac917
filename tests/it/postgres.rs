//! Verified TLS to a real PostgreSQL (scripts/pg-sandbox: TLS with a CA made at test time,
//! `rds_iam` as on RDS, the master role with moto's managed-secret credentials).

use std::collections::HashMap;
use std::path::PathBuf;

use pwless::db::{DbError, Target, connect};
use pwless::secret::Secret;

/// A PostgreSQL of this test's own, stopped and removed when dropped.
/// The sandbox PostgreSQL ([`pwless_testing::PgSandbox`]), with the connection targets these
/// tests use.
pub struct LocalPostgres {
    sandbox: pwless_testing::PgSandbox,
}

impl LocalPostgres {
    /// Without token checking: members of rds_iam cannot log in.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, None)
    }

    /// Checking IAM tokens as RDS does, against this moto (scripts/iam-verifier.py).
    pub fn checking_tokens(name: &str, moto: &crate::aws::Moto) -> Self {
        Self::start_with(name, Some(&moto.endpoint))
    }

    /// [`LocalPostgres::checking_tokens`], its certificate signed by `ca`'s CA (as RDS signs
    /// every cluster of a region with the same CAs).
    pub fn checking_tokens_signed_by(name: &str, moto: &crate::aws::Moto, ca: &Self) -> Self {
        LocalPostgres {
            sandbox: pwless_testing::PgSandbox::start_signed(
                name,
                Some(&moto.endpoint),
                Some(&ca.sandbox),
            ),
        }
    }

    fn start_with(name: &str, moto: Option<&str>) -> Self {
        LocalPostgres {
            sandbox: pwless_testing::PgSandbox::start(name, moto),
        }
    }

    /// What `pg-sandbox start` exported.
    pub fn env(&self) -> &HashMap<String, String> {
        &self.sandbox.env
    }

    pub fn var(&self, name: &str) -> &str {
        self.sandbox.var(name)
    }

    /// The tunnel-style target: connect to 127.0.0.1:port, verify the certificate for `name`.
    pub fn target(&self, name: &str, ca: &str) -> Target {
        Target {
            server_name: name.to_string(),
            address: Some(pwless::db::resolve(self.var("PWLESS_SANDBOX_DB_ADDRESS")).unwrap()),
            port: 5432,
            database: "appdb".into(),
            ca_bundle: PathBuf::from(ca),
        }
    }
}

fn master() -> Secret {
    Secret::new("P@55w0rd!".into())
}

#[test]
fn verified_tls_admits_the_right_name_and_ca_only() {
    let pg = LocalPostgres::start("tls");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ca = pg.var("PWLESS_DB_CA_BUNDLE").to_string();
    rt.block_on(async {
        // Through the "tunnel" address, checked against the name the certificate carries.
        let client = connect(&pg.target("localhost", &ca), "admin", &master())
            .await
            .expect("verified connection");
        let row = client
            .query_one(
                "select current_user::text, ssl from pg_stat_ssl where pid = pg_backend_pid()",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "admin");
        assert!(row.get::<_, bool>(1), "the session is encrypted");
        // As on RDS: the master is no member of rds_iam (that would send it to token checks).
        let member: bool = client
            .query_one("select pg_has_role('admin', 'rds_iam', 'member')", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!member, "the master user must not be in rds_iam");

        // Without a tunnel, by address: the certificate also carries 127.0.0.1.
        let address = pwless::db::resolve(pg.var("PWLESS_SANDBOX_DB_ADDRESS")).unwrap();
        let direct = Target {
            server_name: "127.0.0.1".into(),
            address: None,
            port: address.port(),
            database: "appdb".into(),
            ca_bundle: ca.clone().into(),
        };
        connect(&direct, "admin", &master())
            .await
            .expect("direct verified connection");

        // Another CA: refused.
        let error = connect(
            &pg.target("localhost", pg.var("PWLESS_SANDBOX_PG_OTHER_CA")),
            "admin",
            &master(),
        )
        .await
        .unwrap_err();
        assert!(matches!(error, DbError::Connect { .. }), "{error}");
        assert!(
            format!("{error:#}").contains("certificate")
                || format!("{:?}", error).contains("UnknownIssuer"),
            "{error:?}"
        );

        // The right CA but another name (a tunnel to the wrong server, or a typo): refused.
        let error = connect(
            &pg.target("db.cluster-abc.us-west-2.rds.amazonaws.com", &ca),
            "admin",
            &master(),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{:?}", error).contains("NotValidForName"),
            "{error:?}"
        );

        // A wrong password: PostgreSQL's own refusal comes through.
        let error = connect(
            &pg.target("localhost", &ca),
            "admin",
            &Secret::new("nope".into()),
        )
        .await
        .unwrap_err();
        assert!(
            format!("{:?}", error).contains("password authentication failed"),
            "{error:?}"
        );

        // A missing bundle names the file and the fix.
        let error = connect(
            &pg.target("localhost", "/nonexistent/bundle.pem"),
            "admin",
            &master(),
        )
        .await
        .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/bundle.pem")
                && error.to_string().contains("PWLESS_DB_CA_BUNDLE"),
            "{error}"
        );
    });
}

/// A target at `127.0.0.1:port` (a tunnel address), checked against `localhost`.
fn loopback_target(port: u16, ca: &str) -> Target {
    Target {
        server_name: "localhost".into(),
        address: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        port,
        database: "appdb".into(),
        ca_bundle: ca.into(),
    }
}

#[test]
fn an_unreachable_admin_endpoint_says_refused_or_timed_out_with_its_address() {
    // The admin endpoint's error once read only "error connecting to server", and an endpoint
    // that accepted but never answered hung apply for minutes.
    let pg = LocalPostgres::start("unreachable");
    let ca = pg.var("PWLESS_DB_CA_BUNDLE").to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Nobody listens: refused, with the cause and the address.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = rt
        .block_on(connect(
            &loopback_target(closed_port, &ca),
            "admin",
            &master(),
        ))
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains(&format!("127.0.0.1:{closed_port}"))
            && refused.to_lowercase().contains("connection refused"),
        "{refused}"
    );
    // Something accepts and never answers (a black hole): a timeout, not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let error = rt
        .block_on(pwless::db::connect_within(
            &loopback_target(silent_port, &ca),
            "admin",
            &master(),
            std::time::Duration::from_secs(1),
        ))
        .unwrap_err();
    assert!(
        matches!(error, DbError::Timeout { seconds: 1, .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("timed out after 1 s")
            && message.contains(&format!("127.0.0.1:{silent_port}")),
        "{message}"
    );
    drop(silent);
}

#[test]
fn database_errors_keep_sqlstate_detail_and_hint() {
    // `role "..." cannot be dropped because some objects depend on it` lost PostgreSQL's
    // DETAIL (which objects, in which database).
    let pg = LocalPostgres::start("sqlstate");
    let ca = pg.var("PWLESS_DB_CA_BUNDLE").to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = connect(&pg.target("localhost", &ca), "admin", &master())
            .await
            .unwrap();
        client
            .batch_execute(
                "CREATE ROLE holder NOLOGIN; CREATE TABLE kept (id int); GRANT SELECT ON kept TO holder;",
            )
            .await
            .unwrap();
        let error = client.batch_execute("DROP ROLE holder").await.unwrap_err();
        let text = pwless::db::describe(&error);
        assert!(text.starts_with("role \"holder\" cannot be dropped because some objects depend on it (SQLSTATE 2BP01)"), "{text}");
        assert!(text.contains("; DETAIL: privileges for table kept"), "{text}");
        let error = client
            .batch_execute("SELECT * FROM missing_table")
            .await
            .unwrap_err();
        assert!(pwless::db::describe(&error).contains("(SQLSTATE 42P01)"));
        let error = client.batch_execute("SELEC 1").await.unwrap_err();
        assert!(pwless::db::describe(&error).contains("(SQLSTATE 42601)"));
        let error = client.batch_execute("SELECT idd FROM kept").await.unwrap_err();
        let text = pwless::db::describe(&error);
        assert!(
            text.contains("(SQLSTATE 42703); HINT: Perhaps you meant to reference the column \"kept.id\""),
            "{text}"
        );
    });
}
