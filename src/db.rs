//! Connections to the database over verified TLS (`verify-full` semantics), with rustls.
//!
//! The certificate is checked against a *name* — the cluster endpoint, as RDS certificates
//! carry it — while the TCP connection may go to another *address*: a bastion or SSM tunnel on
//! `127.0.0.1:15432`. That is libpq's `host` + `hostaddr`, and what [`Target`] holds. Nothing
//! is sent in clear: the server must speak TLS (`sslmode=require`) and present a certificate
//! from the CA bundle, for that name.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;

use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot read the CA bundle {}: {source}; point database.ca_bundle or PWLESS_DB_CA_BUNDLE at the RDS bundle (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)", path.display())]
    CaBundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA bundle {} holds no certificate", path.display())]
    EmptyCaBundle { path: PathBuf },
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("cannot set up TLS: {0}")]
    Tls(String),
    #[error("cannot connect to {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Where to connect and what to trust.
#[derive(Debug, Clone)]
pub struct Target {
    /// The name the server certificate must carry (the cluster endpoint, or an override).
    pub server_name: String,
    /// Where the TCP connection goes, when not to `server_name` itself (a tunnel).
    pub address: Option<SocketAddr>,
    pub port: u16,
    pub database: String,
    pub ca_bundle: PathBuf,
}

impl Target {
    fn describe(&self) -> String {
        match self.address {
            Some(address) => format!("{} (via {address})", self.server_name),
            None => format!("{}:{}", self.server_name, self.port),
        }
    }
}

/// Resolves `host:port` (a tunnel endpoint) to one socket address.
pub fn resolve(endpoint: &str) -> Result<SocketAddr, DbError> {
    endpoint
        .to_socket_addrs()
        .map_err(|_| DbError::Resolve(endpoint.to_string()))?
        .next()
        .ok_or_else(|| DbError::Resolve(endpoint.to_string()))
}

/// The certificates of a PEM bundle, in order.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .map(|certificate| certificate.map_err(|error| error.to_string()))
        .collect()
}

/// A rustls client configuration trusting exactly the certificates in `bundle`.
pub fn tls_config(bundle: &Path) -> Result<rustls::ClientConfig, DbError> {
    let bytes = std::fs::read(bundle).map_err(|source| DbError::CaBundle {
        path: bundle.to_path_buf(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    let certificates = certificates(&bytes)
        .map_err(|error| DbError::Tls(format!("{}: {error}", bundle.display())))?;
    for certificate in certificates {
        roots
            .add(certificate)
            .map_err(|error| DbError::Tls(format!("{}: {error}", bundle.display())))?;
    }
    if roots.is_empty() {
        return Err(DbError::EmptyCaBundle {
            path: bundle.to_path_buf(),
        });
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| DbError::Tls(error.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Connects as `user` with `password` (a master password or an IAM token) and drives the
/// connection on the runtime. The password is handed to the protocol and nowhere else.
pub async fn connect(
    target: &Target,
    user: &str,
    password: &Secret,
) -> Result<tokio_postgres::Client, DbError> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(&target.ca_bundle)?);
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.server_name)
        .port(target.address.map_or(target.port, |address| address.port()))
        .user(user)
        .password(password.expose())
        .dbname(&target.database)
        .ssl_mode(SslMode::Require)
        .application_name("pwless")
        .connect_timeout(std::time::Duration::from_secs(15));
    if let Some(address) = target.address {
        config.hostaddr(address.ip());
    } else if let Ok(ip) = target.server_name.parse::<IpAddr>() {
        config.hostaddr(ip);
    }
    let (client, connection) = config
        .connect(tls)
        .await
        .map_err(|source| DbError::Connect {
            target: target.describe(),
            source,
        })?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error here surfaces on the next query.
        let _ = connection.await;
    });
    Ok(client)
}

/// pwless's own connection settings for a stack: the stack's `database` keys, each overridden
/// by the environment (`PWLESS_DB_CA_BUNDLE`, `PWLESS_DB_ADMIN_ENDPOINT`,
/// `PWLESS_DB_TLS_SERVER_NAME`); the CA bundle defaults to `global-bundle.pem`, and a relative
/// path starts at the stack file's directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub ca_bundle: PathBuf,
    pub admin_endpoint: Option<String>,
    pub tls_server_name: Option<String>,
}

impl Settings {
    pub fn for_stack(connection: &crate::spec::model::DbConnection, stack_dir: &Path) -> Self {
        let setting = |variable: &str, from_stack: &Option<String>| {
            std::env::var(variable)
                .ok()
                .filter(|value| !value.is_empty())
                .or_else(|| from_stack.clone())
        };
        Settings {
            ca_bundle: stack_dir.join(
                setting("PWLESS_DB_CA_BUNDLE", &connection.ca_bundle)
                    .unwrap_or_else(|| "global-bundle.pem".into()),
            ),
            admin_endpoint: setting("PWLESS_DB_ADMIN_ENDPOINT", &connection.admin_endpoint),
            tls_server_name: setting("PWLESS_DB_TLS_SERVER_NAME", &connection.tls_server_name),
        }
    }
}
