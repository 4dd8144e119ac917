//! The database relay's HAProxy configuration, run by a real HAProxy (Debian's, installed by
//! scripts/test): it is valid as shipped, and it moves a verified-TLS PostgreSQL login through
//! unchanged. The Kubernetes API stand-in does not run the relay (it connects a port-forward
//! to the database itself), so this is where the relay's own configuration is proven.
//! Debian ships HAProxy 2.6; the image pwless deploys is 3.0 (src/relay.rs).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::TempDir;
use crate::postgres::LocalPostgres;

fn haproxy() -> Command {
    Command::new("haproxy")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_relay_configuration_moves_a_verified_tls_login_through_real_haproxy() {
    let pg = LocalPostgres::start("relay");
    let database = pwless::db::resolve(pg.var("PWLESS_SANDBOX_DB_ADDRESS")).unwrap();
    let dir = TempDir::new("relay-haproxy");
    let shipped = dir.write("haproxy.cfg", pwless::relay::HAPROXY_CONFIG);
    // The relay's environment, as its Deployment sets it (the endpoint here is an address).
    let environment = [
        ("DB_ENDPOINT", database.ip().to_string()),
        ("DB_PORT", database.port().to_string()),
    ];

    // Valid as shipped.
    let checked = haproxy()
        .args(["-c", "-f"])
        .arg(&shipped)
        .envs(environment.clone())
        .output()
        .expect("run haproxy (scripts/test installs Debian's)");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // Run, listening on a free loopback port instead of the pod's :5432 (the one change).
    let port = free_port();
    let local = dir.write(
        "local.cfg",
        &pwless::relay::HAPROXY_CONFIG.replacen(
            "  bind :5432\n",
            &format!("  bind 127.0.0.1:{port}\n"),
            1,
        ),
    );
    assert_ne!(
        std::fs::read_to_string(&local).unwrap(),
        pwless::relay::HAPROXY_CONFIG
    );
    let mut relay = haproxy()
        .args(["-db", "-f"])
        .arg(&local)
        .envs(environment)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "haproxy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    // TLS goes through untouched: the certificate is verified against the database's name,
    // the login is PostgreSQL's own.
    let target = pwless::db::Target {
        server_name: "localhost".into(),
        address: Some(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        port,
        database: "appdb".into(),
        ca_bundle: pg.var("PWLESS_DB_CA_BUNDLE").into(),
    };
    let rt = crate::aws::runtime();
    let row = rt.block_on(async {
        let client = pwless::db::connect_within(
            &target,
            "admin",
            &pwless::secret::Secret::new("P@55w0rd!".into()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        client
            .query_one(
                "select current_user::text, ssl from pg_stat_ssl where pid = pg_backend_pid()",
                &[],
            )
            .await
    });
    let _ = relay.kill();
    let output = relay.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    let row = row.unwrap_or_else(|error| panic!("{error}; haproxy said:\n{log}"));
    assert_eq!(row.get::<_, String>(0), "admin");
    assert!(row.get::<_, bool>(1), "the session is not TLS");
    // HAProxy logged the connection (option tcplog), to stdout as configured.
    assert!(log.contains("postgres aurora/writer"), "{log}");
}
