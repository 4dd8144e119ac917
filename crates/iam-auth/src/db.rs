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
    #[error("cannot read the CA bundle {}: {source}; point database.ca_bundle or PWLESS_DB_CA_BUNDLE at the RDS bundle, or name none and pwless fetches it (https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem)", path.display())]
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
    /// The server's certificate was refused during the handshake ([`tls_check`]).
    #[error("{message}")]
    Certificate {
        problem: CertificateProblem,
        message: String,
    },
    /// The server refused or broke the connection; the message carries PostgreSQL's SQLSTATE,
    /// message, DETAIL and HINT, or the transport's chain of causes ([`describe`]).
    /// (`error` is said in the message, not chained as a source: once is enough.)
    #[error("cannot connect to {target}: {}", describe(error))]
    Connect {
        target: String,
        error: tokio_postgres::Error,
    },
    /// Nothing answered in time: the TCP connection, the TLS handshake and the login together
    /// took longer than the connect timeout.
    #[error(
        "timed out after {seconds} s connecting to {target}: nothing answered (is the endpoint reachable from here? PWLESS_DB_CONNECT_TIMEOUT sets the wait, in seconds)"
    )]
    Timeout { target: String, seconds: u64 },
}

/// How long a connection may take, TCP connect, TLS handshake and login together, when
/// `PWLESS_DB_CONNECT_TIMEOUT` does not say otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The connect timeout: `PWLESS_DB_CONNECT_TIMEOUT` (whole seconds, 1 to 3600), else
/// [`DEFAULT_CONNECT_TIMEOUT`]. Errors with the variable's value and the fix when it is not a
/// whole number in range.
pub fn connect_timeout() -> Result<std::time::Duration, String> {
    match std::env::var("PWLESS_DB_CONNECT_TIMEOUT") {
        Err(_) => Ok(DEFAULT_CONNECT_TIMEOUT),
        Ok(text) if text.is_empty() => Ok(DEFAULT_CONNECT_TIMEOUT),
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(seconds @ 1..=3600) => Ok(std::time::Duration::from_secs(seconds)),
            _ => Err(format!(
                "PWLESS_DB_CONNECT_TIMEOUT is `{text}`: write whole seconds from 1 to 3600, e.g. PWLESS_DB_CONNECT_TIMEOUT=30"
            )),
        },
    }
}

/// A PostgreSQL error as psql shows it: for an error the server sent, its message with the
/// SQLSTATE, then DETAIL and HINT when present (PostgreSQL documentation, "Error Message
/// Reporting"); for anything else (a refused connection, a TLS failure), the whole chain of
/// causes, so "error connecting to server" keeps its "Connection refused".
pub fn describe(error: &tokio_postgres::Error) -> String {
    if let Some(database) = error.as_db_error() {
        let mut text = format!(
            "{} (SQLSTATE {})",
            database.message(),
            database.code().code()
        );
        if let Some(detail) = database.detail() {
            text.push_str(&format!("; DETAIL: {detail}"));
        }
        if let Some(hint) = database.hint() {
            text.push_str(&format!("; HINT: {hint}"));
        }
        return text;
    }
    crate::errors::chain(error)
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
/// connection on the runtime, within the configured [`connect_timeout`] (the default when the
/// variable does not parse; the CLI refuses a bad value before changing anything). The
/// password is handed to the protocol and nowhere else.
pub async fn connect(
    target: &Target,
    user: &str,
    password: &Secret,
) -> Result<tokio_postgres::Client, DbError> {
    let timeout = connect_timeout().unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    connect_within(target, user, password, timeout).await
}

/// [`connect`] with an explicit timeout for the TCP connect, TLS handshake and login together:
/// an endpoint that accepts but never answers is a [`DbError::Timeout`], not a hang.
pub async fn connect_within(
    target: &Target,
    user: &str,
    password: &Secret,
    timeout: std::time::Duration,
) -> Result<tokio_postgres::Client, DbError> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(&target.ca_bundle)?);
    let mut config = login(target, user, password, timeout);
    if let Some(address) = target.address {
        config.hostaddr(address.ip());
    } else if let Ok(ip) = target.server_name.parse::<IpAddr>() {
        config.hostaddr(ip);
    }
    let (client, connection) = tokio::time::timeout(timeout, config.connect(tls))
        .await
        .map_err(|_| DbError::Timeout {
            target: target.describe(),
            seconds: timeout.as_secs(),
        })?
        .map_err(|error| DbError::Connect {
            target: target.describe(),
            error,
        })?;
    tokio::spawn(async move {
        // Ends when the client is dropped; an error here surfaces on the next query.
        let _ = connection.await;
    });
    Ok(client)
}

/// The connection settings of a login: TLS required, checked against `target.server_name`.
fn login(
    target: &Target,
    user: &str,
    password: &Secret,
    timeout: std::time::Duration,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.server_name)
        .port(target.address.map_or(target.port, |address| address.port()))
        .user(user)
        .password(password.expose())
        .dbname(&target.database)
        .ssl_mode(SslMode::Require)
        .application_name("pwless")
        .connect_timeout(timeout);
    config
}

/// [`connect_within`] over a byte stream the caller opened (a Kubernetes port-forward to the
/// database relay in pwless's cluster)): the same TLS, checked against `target.server_name`, the
/// same login and timeout. `via` says what the stream goes through, for errors
/// (`relay pod pwless/db-relay-…`). `target.address` is not used.
pub async fn connect_over<S>(
    target: &Target,
    stream: S,
    via: &str,
    user: &str,
    password: &Secret,
    timeout: std::time::Duration,
) -> Result<tokio_postgres::Client, DbError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use tokio_postgres::tls::MakeTlsConnect;
    let mut tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(&target.ca_bundle)?);
    let connector =
        <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::make_tls_connect(
            &mut tls,
            &target.server_name,
        )
        .map_err(|error| DbError::Tls(format!("{}: {error}", target.server_name)))?;
    let described = format!("{}:{} (through the {via})", target.server_name, target.port);
    let config = login(target, user, password, timeout);
    let (client, connection) = tokio::time::timeout(timeout, config.connect_raw(stream, connector))
        .await
        .map_err(|_| DbError::Timeout {
            target: described.clone(),
            seconds: timeout.as_secs(),
        })?
        .map_err(|error| DbError::Connect {
            target: described,
            error,
        })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Why a server certificate was refused, from rustls's `CertificateError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateProblem {
    /// No certificate of the CA bundle issued it (or its signature does not verify): the
    /// bundle is not the one for the server's CA.
    UnknownIssuer,
    /// It does not carry the name it was checked for.
    WrongName,
    /// It is expired or not valid yet (or the machine's clock is off).
    Expired,
    /// Anything else rustls refused, or a handshake that failed before a certificate came.
    Other,
}

/// What a TLS handshake with the database showed ([`tls_check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFacts {
    /// `TLSv1_3` or `TLSv1_2`, as rustls names the version.
    pub version: String,
    /// The name the certificate was verified for.
    pub server_name: String,
    /// The server certificate's subject (RFC 4514).
    pub certificate: String,
    /// The subject of the certificate in the bundle that issued the server's chain.
    pub ca: String,
}

/// The PostgreSQL `SSLRequest` message: length 8, code 80877103 (PostgreSQL documentation,
/// "Message Formats" and "SSL Session Encryption").
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// Asks the server on `stream` for TLS as libpq does (`SSLRequest`, answered `S`), then does
/// the handshake with the certificates of `target.ca_bundle` alone, checked for
/// `target.server_name`, and hangs up: no login. Errors: [`DbError::Tls`] with rustls's
/// reason (an unknown issuer, a name the certificate does not carry, an expired certificate),
/// or the server that does not offer TLS; the bundle's own errors as for [`connect`].
pub async fn tls_check<S>(mut stream: S, target: &Target) -> Result<TlsFacts, DbError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use x509_cert::der::Decode as _;
    let failed = |what: String| DbError::Tls(format!("{}: {what}", target.server_name));
    let config = tls_config(&target.ca_bundle)?;
    stream
        .write_all(&SSL_REQUEST)
        .await
        .map_err(|error| failed(format!("cannot ask for TLS: {error}")))?;
    let mut answer = [0u8; 1];
    stream
        .read_exact(&mut answer)
        .await
        .map_err(|error| failed(format!("no answer to the TLS request: {error}")))?;
    if answer[0] != b'S' {
        return Err(failed("the server does not offer TLS".into()));
    }
    let name = rustls::pki_types::ServerName::try_from(target.server_name.clone())
        .map_err(|error| failed(error.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|error| {
            use rustls::CertificateError as C;
            let problem = match error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                Some(rustls::Error::InvalidCertificate(certificate)) => match certificate {
                    C::UnknownIssuer | C::BadSignature => CertificateProblem::UnknownIssuer,
                    C::NotValidForName | C::NotValidForNameContext { .. } => {
                        CertificateProblem::WrongName
                    }
                    C::Expired
                    | C::ExpiredContext { .. }
                    | C::NotValidYet
                    | C::NotValidYetContext { .. } => CertificateProblem::Expired,
                    _ => CertificateProblem::Other,
                },
                _ => CertificateProblem::Other,
            };
            DbError::Certificate {
                problem,
                message: format!("{}: {error}", target.server_name),
            }
        })?;
    let (_, session) = tls.get_ref();
    let subject = |der: &[u8]| {
        x509_cert::Certificate::from_der(der)
            .map(|certificate| certificate.tbs_certificate)
            .map_err(|error| failed(format!("cannot read a certificate: {error}")))
    };
    let chain = session.peer_certificates().unwrap_or_default();
    let (Some(leaf), Some(top)) = (chain.first(), chain.last()) else {
        return Err(failed("the server sent no certificate".into()));
    };
    let issuer = subject(top)?.issuer;
    let bundle = std::fs::read(&target.ca_bundle).map_err(|source| DbError::CaBundle {
        path: target.ca_bundle.clone(),
        source,
    })?;
    let ca = certificates(&bundle)
        .map_err(failed)?
        .iter()
        .filter_map(|certificate| subject(certificate).ok())
        .find(|certificate| certificate.subject == issuer)
        .map_or_else(
            || issuer.to_string(),
            |certificate| certificate.subject.to_string(),
        );
    Ok(TlsFacts {
        version: session
            .protocol_version()
            .map_or_else(|| "unknown".to_string(), |version| format!("{version:?}")),
        server_name: target.server_name.clone(),
        certificate: subject(leaf)?.subject.to_string(),
        ca,
    })
}

/// [`tls_check`] over a TCP connection of its own to `target` (its tunnel address, else
/// `server_name:port`), all within the connect timeout ([`connect_timeout`]).
pub async fn tls_check_direct(target: &Target) -> Result<TlsFacts, DbError> {
    let timeout = connect_timeout().unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let checked = async {
        let address = match target.address {
            Some(address) => address,
            None => resolve(&format!("{}:{}", target.server_name, target.port))?,
        };
        let stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|error| DbError::Tls(format!("cannot connect to {address}: {error}")))?;
        tls_check(stream, target).await
    };
    tokio::time::timeout(timeout, checked)
        .await
        .map_err(|_| DbError::Timeout {
            target: target.describe(),
            seconds: timeout.as_secs(),
        })?
}
