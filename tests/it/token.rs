//! The token signer against botocore's `generate_db_auth_token`, byte for byte, with botocore's
//! clock frozen (the vectors are made at test time by the boto3 that comes with moto).

use std::process::Command;
use std::time::{Duration, SystemTime};

use pwless::secret::Secret;
use pwless::token::{SigningCredentials, TokenSigner};

struct Case {
    region: &'static str,
    host: &'static str,
    port: u16,
    user: &'static str,
    session_token: Option<String>,
}

fn cases() -> Vec<Case> {
    // An IRSA session token is 1,000+ bytes of base64 with `+`, `/` and `=`.
    let long_token: String = (0..1100)
        .map(|i| ["A", "z", "+", "/", "9", "="][i % 6])
        .collect();
    vec![
        Case {
            region: "us-west-2",
            host: "db.cluster-abc.us-west-2.rds.amazonaws.com",
            port: 5432,
            user: "app_user",
            session_token: None,
        },
        Case {
            region: "us-west-2",
            host: "db.cluster-abc.us-west-2.rds.amazonaws.com",
            port: 5432,
            user: "app_user",
            session_token: Some("FQoGZXIvYXdzEJr//////////wEaDOn+tok/en=".into()),
        },
        Case {
            region: "eu-central-1",
            host: "localhost",
            port: 15432,
            user: "weird user+/=ü",
            session_token: None,
        },
        Case {
            region: "us-gov-west-1",
            host: "10.0.3.7",
            port: 6543,
            user: "svc-reader",
            session_token: Some(long_token),
        },
        // Token host case: a host written in capitals (as consoles and copy-paste give it)
        // was signed as written; botocore signs it in lower case.
        Case {
            region: "us-west-2",
            host: "MyDB.Cluster-ABC123.us-west-2.rds.amazonaws.com",
            port: 5432,
            user: "app_user",
            session_token: None,
        },
        Case {
            region: "us-west-2",
            host: "MyDB.Cluster-ABC123.us-west-2.rds.amazonaws.com",
            port: 3306,
            user: "App_User",
            session_token: Some("FQoGZXIvYXdzEJr//////////wEaDOn+tok/en=".into()),
        },
        Case {
            region: "ap-southeast-2",
            host: "proxy.example.internal",
            port: 443,
            user: "u",
            session_token: None,
        },
    ]
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2026-11-24T12:00:00Z
const FROZEN_UNIX: u64 = 1_795_521_600;

fn botocore_tokens(cases: &[Case]) -> Vec<String> {
    let moto = std::env::var("PWLESS_MOTO_SERVER")
        .expect("PWLESS_MOTO_SERVER is not set: run the tests with scripts/test");
    let python = std::path::Path::new(&moto).with_file_name("python");
    let input: Vec<serde_json::Value> = cases
        .iter()
        .map(|case| serde_json::json!({"region": case.region, "host": case.host, "port": case.port, "user": case.user, "token": case.session_token}))
        .collect();
    let script = r#"
import datetime, json, sys, boto3, botocore.auth
from unittest import mock
frozen = datetime.datetime.fromtimestamp(int(sys.argv[1]), datetime.timezone.utc).replace(tzinfo=None)
out = []
with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
    for case in json.loads(sys.argv[2]):
        client = boto3.client("rds", region_name=case["region"], aws_access_key_id="AKIDEXAMPLE",
                              aws_secret_access_key=sys.argv[3], aws_session_token=case["token"])
        out.append(client.generate_db_auth_token(DBHostname=case["host"], Port=case["port"], DBUsername=case["user"]))
print(json.dumps(out))
"#;
    let output = Command::new(python)
        .args([
            "-c",
            script,
            &FROZEN_UNIX.to_string(),
            &serde_json::to_string(&input).unwrap(),
            SECRET,
        ])
        .output()
        .expect("run botocore");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn tokens_match_botocore_byte_for_byte() {
    let cases = cases();
    let expected = botocore_tokens(&cases);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(FROZEN_UNIX);
    for (case, expected) in cases.iter().zip(&expected) {
        let signer = TokenSigner::new(
            SigningCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new(SECRET.into()),
                session_token: case.session_token.clone().map(Secret::new),
            },
            case.region,
        )
        .unwrap();
        let token = signer.token(case.host, case.port, case.user, now).unwrap();
        assert_eq!(
            token.expose(),
            expected,
            "region {} host {} port {} user {:?}",
            case.region,
            case.host,
            case.port,
            case.user
        );
        // The cached signing key gives the same answer the second time.
        assert_eq!(
            signer
                .token(case.host, case.port, case.user, now)
                .unwrap()
                .expose(),
            expected
        );
    }
    assert!(
        expected[3].len() > 1000,
        "the IRSA-sized case is 1,000+ bytes"
    );
}

/// `aws eks get-token` for each case, with botocore's clock frozen and nothing from the
/// developer's AWS configuration.
fn aws_eks_get_token(cases: &[(&str, &str, Option<&str>)]) -> Vec<String> {
    let moto = std::env::var("PWLESS_MOTO_SERVER")
        .expect("PWLESS_MOTO_SERVER is not set: run the tests with scripts/test");
    let python = std::path::Path::new(&moto).with_file_name("python");
    let script = r#"
import datetime, json, sys, botocore.auth
from unittest import mock
from awscli.clidriver import create_clidriver
frozen = datetime.datetime.fromtimestamp(int(sys.argv[1]), datetime.timezone.utc).replace(tzinfo=None)
with mock.patch("botocore.auth.get_current_datetime", return_value=frozen):
    sys.exit(create_clidriver().main(sys.argv[2:]))
"#;
    cases
        .iter()
        .map(|(region, cluster, session_token)| {
            let mut command = Command::new(&python);
            command
                .args([
                    "-c",
                    script,
                    &FROZEN_UNIX.to_string(),
                    "eks",
                    "get-token",
                    "--cluster-name",
                    cluster,
                    "--region",
                    region,
                    "--output",
                    "json",
                ])
                .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
                .env("AWS_SECRET_ACCESS_KEY", SECRET)
                .env("AWS_CONFIG_FILE", "/dev/null")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
                .env_remove("AWS_ENDPOINT_URL")
                .env_remove("AWS_PROFILE")
                .env_remove("AWS_SESSION_TOKEN");
            if let Some(token) = session_token {
                command.env("AWS_SESSION_TOKEN", token);
            }
            let output = command.output().expect("run aws eks get-token");
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let credential: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            credential["status"]["token"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn eks_tokens_match_aws_eks_get_token_byte_for_byte() {
    let long_token: String = (0..1100)
        .map(|i| ["B", "y", "+", "/", "7", "="][i % 6])
        .collect();
    let cases = [
        ("us-west-2", "iam-postgres", None),
        (
            "eu-central-1",
            "main.cluster_2",
            Some("FQoGZXIvYXdzEJr//////////wEaDOn+tok/en="),
        ),
        ("us-east-1", "c", Some(long_token.as_str())),
    ];
    let expected = aws_eks_get_token(&cases);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(FROZEN_UNIX);
    for ((region, cluster, session_token), expected) in cases.iter().zip(&expected) {
        let credentials = SigningCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: Secret::new(SECRET.into()),
            session_token: session_token.map(|token| Secret::new(token.into())),
        };
        let token = pwless::eks_token::token(&credentials, region, cluster, now);
        assert_eq!(
            token.expose(),
            expected,
            "region {region} cluster {cluster}"
        );
    }
}
