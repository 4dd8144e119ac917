//! The RDS CA bundle without a manual download: fetched once into the user's cache from the
//! published address (here a local HTTPS server, through `PWLESS_RDS_CA_BUNDLE_URL`), and,
//! offline with nothing cached, a refusal before any change that gives the fetch command.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{TempDir, stderr};
use crate::kubernetes::FullStack;

/// A local HTTPS server (python3's http.server over TLS) serving `dir`, with the sandbox
/// PostgreSQL's server certificate (for 127.0.0.1, signed by its CA); stopped when dropped.
struct HttpsServer {
    child: std::process::Child,
    port: u16,
}

impl HttpsServer {
    fn start(dir: &Path, certificate: &Path, key: &Path) -> Self {
        let script = r#"
import functools, http.server, ssl, sys
directory, certificate, key = sys.argv[1:4]
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory)
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certificate, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;
        let mut command = Command::new("python3");
        command
            .args(["-c", script])
            .arg(dir)
            .arg(certificate)
            .arg(key)
            .stderr(Stdio::null());
        let (child, port) = crate::common::spawn_listening(command, "the HTTPS server");
        HttpsServer { child, port }
    }
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_rds_ca_bundle_is_fetched_once_into_the_cache_when_none_is_configured() {
    let stack = FullStack::new("cabundle");
    // The "published" bundle is the sandbox PostgreSQL's CA: what its certificate chains to.
    let ca = Path::new(stack.pg.var("PWLESS_DB_CA_BUNDLE")).to_path_buf();
    let sandbox = ca.parent().unwrap();
    let published = TempDir::new("cabundle-published");
    std::fs::copy(&ca, published.path().join("global-bundle.pem")).unwrap();
    let server = HttpsServer::start(
        published.path(),
        &sandbox.join("server.pem"),
        &sandbox.join("server.key"),
    );
    let cache = TempDir::new("cabundle-cache");
    let run = |args: &[&str]| {
        stack
            .command(args)
            .env_remove("PWLESS_DB_CA_BUNDLE")
            .env("XDG_CACHE_HOME", cache.path())
            .env(
                "PWLESS_RDS_CA_BUNDLE_URL",
                format!("https://127.0.0.1:{}/global-bundle.pem", server.port),
            )
            // The server's certificate is checked against the system's roots: here, its CA.
            .env("SSL_CERT_FILE", &ca)
            .output()
            .unwrap()
    };
    let output = run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let cached = cache.path().join("pwless/rds-global-bundle.pem");
    assert!(
        stderr(&output).contains(&format!(
            "Fetched the RDS CA bundle (1 certificates) from https://127.0.0.1:{}/global-bundle.pem into {}",
            server.port,
            cached.display()
        )),
        "{}",
        stderr(&output)
    );
    assert_eq!(std::fs::read(&cached).unwrap(), std::fs::read(&ca).unwrap());
    // Cached: the next run reads the users with it and fetches nothing.
    let output = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stderr(&output).contains("Fetched"), "{}", stderr(&output));
    let output = run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

#[test]
fn offline_with_no_cached_ca_bundle_apply_refuses_before_any_change_and_gives_the_fetch_command() {
    use crate::aws::PwlessCommand as _;
    let moto = crate::aws::Moto::start();
    let dir = TempDir::new("cabundle-offline");
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/with-users.yaml"),
    )
    .unwrap()
    .replacen("stack: with-users", "stack: offline", 1);
    let file = dir.write("stack.yaml", &text);
    let cache = TempDir::new("cabundle-offline-cache");
    let output = moto
        .command(dir.path())
        .args(["apply", "--auto-approve", "-f", file.to_str().unwrap()])
        .env_remove("PWLESS_DB_CA_BUNDLE")
        .env_remove("PWLESS_DB_ADMIN_ENDPOINT")
        .env("XDG_CACHE_HOME", cache.path())
        // Nothing listens on port 1: as offline as a test can be.
        .env(
            "PWLESS_RDS_CA_BUNDLE_URL",
            "https://127.0.0.1:1/global/global-bundle.pem",
        )
        .output()
        .unwrap();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    let cached = cache.path().join("pwless/rds-global-bundle.pem");
    assert!(
        message.contains(&format!(
            "fetch it with `mkdir -p '{}' && curl -fsSL 'https://127.0.0.1:1/global/global-bundle.pem' -o '{}'`",
            cached.parent().unwrap().display(),
            cached.display()
        )),
        "{message}"
    );
    assert!(message.contains("nothing was changed"), "{message}");
    assert!(!cached.exists());
    let rt = crate::aws::runtime();
    let clients = rt.block_on(crate::aws::clients(&moto));
    let left = rt.block_on(crate::aws::live(&clients, "offline"));
    assert!(crate::aws::nothing(&left), "{left:?}");
}
