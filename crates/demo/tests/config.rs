//! The demo app's configuration from the environment, through the binary itself. (The app
//! end to end, against the sandbox's token-checking PostgreSQL, is in pwless's tests:
//! tests/it/demo.rs.)

use std::process::Command;

#[test]
fn missing_configuration_is_named_all_of_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_pwless-demo"))
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("pwless-demo is configured from the environment"),
        "{message}"
    );
    for name in [
        "DB_ENDPOINT",
        "DB_NAME",
        "DB_USER",
        "AWS_REGION",
        "RDS_CA_CERT",
    ] {
        assert!(message.contains(name), "{message}");
    }
}

#[test]
fn a_port_that_is_not_a_number_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_pwless-demo"))
        .env_clear()
        .env("PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(
        message.contains("PORT=eighty is not a port number"),
        "{message}"
    );
}
