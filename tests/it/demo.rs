//! The demo app end to end: `pwless-demo` runs as the stack's service account
//! (`pwless sandbox run --as demo/demo-app`) against the sandbox PostgreSQL that checks IAM
//! tokens, driven in headless Chromium (tests/browser/demo_page.py) and through its JSON API.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::stderr;
use crate::kubernetes::FullStack;

/// A running pwless-demo, killed when dropped.
struct Demo {
    child: Child,
    port: u16,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange: (status, body).
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

impl Demo {
    fn start(mut command: Command) -> Demo {
        let port = free_port();
        let child = command
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut demo = Demo { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http(port, "GET", "/healthz", None).0 == 200
            {
                return demo;
            }
            if let Ok(Some(status)) = demo.child.try_wait() {
                panic!("pwless-demo exited: {status}");
            }
            assert!(Instant::now() < deadline, "pwless-demo did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, body) = http(self.port, method, path, body);
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|_| json!({"raw": body})),
        )
    }
}

/// pwless-demo as demo/demo-app, with `extra` environment on the pwless command.
fn as_demo_app(stack: &FullStack, extra: &[(&str, &str)]) -> Command {
    let mut command = stack.pwless();
    command
        .args(["sandbox", "run", "-f", stack.file.to_str().unwrap()])
        .args(["--as", "demo/demo-app", "--"])
        .arg(crate::common::demo_binary());
    for (key, value) in extra {
        command.env(key, value);
    }
    command
}

#[test]
fn the_demo_page_works_in_chromium_against_the_token_checking_sandbox() {
    let stack = FullStack::new("demo");
    let output = stack.run(&["apply", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let demo = Demo::start(as_demo_app(&stack, &[]));

    // The page, in a real browser: the message's markup is shown as text, not run.
    let message = "<b>bold</b> <img src=x onerror=alert(1)> & <script>alert('x')</script>";
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("demo-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/demo_page.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(format!("http://127.0.0.1:{}/", demo.port))
        .arg(&screenshot)
        .arg(message)
        .output()
        .expect("run the browser script");
    assert!(output.status.success(), "{}", stderr(&output));
    let page: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(page["errors"], json!([]), "{page}");
    assert_eq!(page["texts"], json!([message]), "{page}");
    assert_eq!(
        page["markup_in_list"], 0,
        "the message's markup made elements: {page}"
    );
    assert_eq!(page["user"], json!(["app_user"]));
    // The chain as the app sees it: its role (the sandbox STS's session of the IRSA role), a
    // token signed moments ago, TLS verified for the endpoint's name by the bundle's CA, and
    // the database's own word on who logged in.
    let chain = &page["chain"];
    let role = pwless::spec::names::irsa_role(&stack.name, "demo", "demo-app");
    assert!(
        chain["role"][0]
            .as_str()
            .unwrap()
            .contains(&format!(":assumed-role/{role}/")),
        "{page}"
    );
    assert!(
        chain["token"][0].as_str().unwrap().starts_with("signed "),
        "{page}"
    );
    let tls = chain["tls"][0].as_str().unwrap();
    assert!(
        tls.starts_with("TLSv1_")
            && tls.contains(&stack.output("databaseEndpoint"))
            && tls.contains("verified by"),
        "{page}"
    );
    assert_eq!(chain["user"], json!(["app_user"]), "{page}");
    assert!(
        page["endpoint"][0]
            .as_str()
            .unwrap()
            .starts_with(&stack.output("databaseEndpoint")),
        "{page}"
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 5_000,
        "a real screenshot"
    );

    // The JSON API.
    let (status, created) = demo.api(
        "POST",
        "/api/messages",
        Some(r#"{"text": "hello from the API"}"#),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["text"], "hello from the API");
    let (status, list) = demo.api("GET", "/api/messages", None);
    assert_eq!(status, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], created["id"]);
    assert_eq!(list[1]["text"], message);
    assert!(list[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let (status, error) = demo.api("POST", "/api/messages", Some(r#"{"text": "   "}"#));
    assert_eq!(status, 400, "{error}");
    let too_long = format!(r#"{{"text": "{}"}}"#, "x".repeat(501));
    assert_eq!(demo.api("POST", "/api/messages", Some(&too_long)).0, 400);
    let huge = format!(r#"{{"text": "{}"}}"#, "x".repeat(20_000));
    assert_eq!(demo.api("POST", "/api/messages", Some(&huge)).0, 413);
    assert!(demo.api("POST", "/api/messages", Some("not json")).0 >= 400);
    drop(demo);

    // Another CA: the connection fails verification, and the API says so with a 5xx.
    let other_ca = stack.pg.var("PWLESS_SANDBOX_PG_OTHER_CA").to_string();
    let demo = Demo::start(as_demo_app(&stack, &[("PWLESS_DB_CA_BUNDLE", &other_ca)]));
    let (status, error) = demo.api("GET", "/api/messages", None);
    assert!(status >= 500, "{status} {error}");
    assert!(
        error["error"].as_str().unwrap().contains("certificate"),
        "{error}"
    );
    let (status, page) = http(demo.port, "GET", "/", None);
    assert!(
        status >= 500 && page.contains("id=\"error\""),
        "{status} {page}"
    );
    drop(demo);

    // Not the service account (the test credentials have no rds-db:connect): the token is
    // refused, and the API says what to check.
    let mut command = stack.pwless();
    command.arg("--version");
    let mut outsider = Command::new(crate::common::demo_binary());
    for (key, value) in command.get_envs() {
        if let (key, Some(value)) = (key, value) {
            outsider.env(key, value);
        }
    }
    outsider
        .env("DB_ENDPOINT", stack.output("databaseEndpoint"))
        .env("DB_PORT", "5432")
        .env("DB_NAME", "appdb")
        .env("DB_USER", "app_user")
        .env("AWS_REGION", "us-west-2")
        .env("RDS_CA_CERT", stack.pg.var("PWLESS_DB_CA_BUNDLE"))
        .env("DB_HOSTADDR", stack.pg.var("PWLESS_SANDBOX_DB_ADDRESS"));
    let demo = Demo::start(outsider);
    let (status, error) = demo.api("POST", "/api/table", None);
    assert_eq!(status, 503, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("the database refused the IAM token for user `app_user`"),
        "{error}"
    );
    drop(demo);

    // Missing configuration: crates/demo/tests/config.rs.

    let output = stack.run(&["destroy", "--auto-approve"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
