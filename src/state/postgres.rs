//! State in PostgreSQL.
//!
//! - One table (created if missing, `pwless_state` unless `state.table` says otherwise), a row
//!   per stack: the document as JSONB with its lineage and serial, and a `revision` that every
//!   write raises. A write names the revision it read (`UPDATE ... WHERE revision = $read`), so
//!   a stale writer changes no row and is refused.
//! - The lock is a session-level advisory lock (`pg_try_advisory_lock`) on the connection that
//!   also does the reads and writes: it dies with that connection, so a killed run's lock is
//!   gone at once, and a run whose connection was ended can write nothing more. Who holds it
//!   is recorded in `<table>_locks` with the holder's backend pid, for the refusal message and
//!   for `pwless force-unlock` (which ends the holder's session).
//! - The URL comes from the environment variable `state.url_env` names, never from the stack
//!   file, and is never printed. The connection uses verified TLS (`sslmode=verify-full` with
//!   `sslrootcert`), or none only to a Unix socket or loopback address (`sslmode=disable`).

use std::path::PathBuf;

use sha2::Digest;
use tokio_postgres::config::{Host, SslMode};

use super::{LockInfo, Revision, StateError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url_env: String,
    pub table: String,
    pub stack: String,
}

impl Target {
    pub fn location(&self) -> String {
        format!(
            "PostgreSQL table {} (stack {}, database from ${})",
            self.table, self.stack, self.url_env
        )
    }

    fn locks_table(&self) -> String {
        format!("{}_locks", self.table)
    }

    /// The advisory lock key: one per table and stack.
    fn key(&self) -> i64 {
        let digest = sha2::Sha256::digest(format!("pwless-state\0{}\0{}", self.table, self.stack));
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        i64::from_be_bytes(bytes)
    }
}

enum Tls {
    VerifyFull(PathBuf),
    Disable,
}

/// The connection settings from the URL in the environment. libpq's `sslmode` and
/// `sslrootcert` are read here (tokio-postgres knows neither `verify-full` nor the root
/// certificate); the rest goes to tokio-postgres.
fn settings(target: &Target) -> Result<(tokio_postgres::Config, Tls), StateError> {
    let url = std::env::var(&target.url_env)
        .ok()
        .filter(|url| !url.is_empty())
        .ok_or_else(|| {
            StateError::Backend(format!(
                "environment variable {} (named by `state.url_env`) is not set: export the state database's URL in it, e.g. postgresql://pwless@db.example.com:5432/pwless?sslmode=verify-full&sslrootcert=global-bundle.pem; nothing was changed",
                target.url_env
            ))
        })?;
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return Err(StateError::Backend(format!(
            "${} must hold a postgresql:// URL; nothing was changed",
            target.url_env
        )));
    }
    let (base, query) = url.split_once('?').unwrap_or((url.as_str(), ""));
    let mut sslmode = None;
    let mut rootcert = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "sslmode" => sslmode = Some(percent_decode(value)),
            "sslrootcert" => rootcert = Some(percent_decode(value)),
            _ => rest.push(pair),
        }
    }
    let rebuilt = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    // tokio-postgres's parse errors name the option, never its value.
    let mut config: tokio_postgres::Config = rebuilt.parse().map_err(|error| {
        StateError::Backend(format!(
            "${} is not a usable PostgreSQL URL ({error}); nothing was changed",
            target.url_env
        ))
    })?;
    let local = config.get_hosts().iter().all(|host| match host {
        Host::Unix(_) => true,
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    });
    let tls = match (sslmode.as_deref(), rootcert) {
        (Some("verify-full") | None, Some(path)) => Tls::VerifyFull(PathBuf::from(path)),
        (Some("disable"), _) if local => Tls::Disable,
        (Some("disable"), _) => {
            return Err(StateError::Backend(format!(
                "${} asks for sslmode=disable to a remote host: the state would cross the network in clear; use sslmode=verify-full&sslrootcert=<CA bundle>; nothing was changed",
                target.url_env
            )));
        }
        (Some("verify-full") | None, None) => {
            return Err(StateError::Backend(format!(
                "${} has no sslrootcert: add sslmode=verify-full&sslrootcert=<CA bundle> (for RDS, global-bundle.pem from https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem); nothing was changed",
                target.url_env
            )));
        }
        (Some(other), _) => {
            return Err(StateError::Backend(format!(
                "${} has sslmode={other}, which does not check who the server is: use sslmode=verify-full&sslrootcert=<CA bundle>; nothing was changed",
                target.url_env
            )));
        }
    };
    config.connect_timeout(std::time::Duration::from_secs(10));
    Ok((config, tls))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[index + 1..index + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            index += 3;
            continue;
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn server(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("(default)")
    )
}

fn unreachable(target: &Target, server: &str, error: impl std::fmt::Display) -> StateError {
    StateError::Backend(format!(
        "cannot reach the state database {server} (from ${}): {error}; nothing was changed",
        target.url_env
    ))
}

fn query_failed(target: &Target, what: &str, error: &tokio_postgres::Error) -> StateError {
    // PostgreSQL's SQLSTATE, message, DETAIL and HINT, or the transport's whole cause chain.
    let detail = crate::db::describe(error);
    let hint = match error.code() {
        Some(code) if *code == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE => format!(
            " (the state database's user needs CREATE on the schema once, then SELECT, INSERT, UPDATE, DELETE on {t} and {t}_locks)",
            t = target.table
        ),
        _ => String::new(),
    };
    StateError::Backend(format!(
        "cannot {what} {}: {detail}{hint}; nothing was changed",
        target.location()
    ))
}

/// Connects with the URL's settings, `application_name` naming the run.
async fn connect(
    target: &Target,
    application_name: &str,
) -> Result<(tokio_postgres::Client, String), StateError> {
    let (mut config, tls) = settings(target)?;
    let server = server(&config);
    config.application_name(application_name);
    let client = match tls {
        Tls::VerifyFull(bundle) => {
            let tls_config = crate::db::tls_config(&bundle)
                .map_err(|error| unreachable(target, &server, error))?;
            config.ssl_mode(SslMode::Require);
            let connector = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
            let (client, connection) = config
                .connect(connector)
                .await
                .map_err(|error| unreachable(target, &server, error))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
        Tls::Disable => {
            config.ssl_mode(SslMode::Disable);
            let (client, connection) = config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(|error| unreachable(target, &server, error))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
        }
    };
    Ok((client, server))
}

async fn tables_exist(
    client: &tokio_postgres::Client,
    target: &Target,
) -> Result<bool, StateError> {
    Ok(client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL AND to_regclass($2) IS NOT NULL",
            &[&target.table, &target.locks_table()],
        )
        .await
        .map_err(|error| query_failed(target, "look for", &error))?
        .get(0))
}

/// Creates the tables if they are missing, one creator at a time.
async fn ensure_tables(
    client: &mut tokio_postgres::Client,
    target: &Target,
) -> Result<(), StateError> {
    if tables_exist(client, target).await? {
        return Ok(());
    }
    let transaction = client
        .transaction()
        .await
        .map_err(|error| query_failed(target, "create", &error))?;
    let table_key = {
        let digest = sha2::Sha256::digest(format!("pwless-state-table\0{}", target.table));
        i64::from_be_bytes(digest[..8].try_into().unwrap_or_default())
    };
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&table_key])
        .await
        .map_err(|error| query_failed(target, "create", &error))?;
    transaction
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                stack text PRIMARY KEY,
                lineage text NOT NULL,
                serial bigint NOT NULL,
                revision bigint NOT NULL,
                document jsonb NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now(),
                updated_by text NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {t}_locks (
                stack text PRIMARY KEY,
                lock_id text NOT NULL,
                info jsonb NOT NULL,
                backend_pid integer NOT NULL,
                acquired_at timestamptz NOT NULL DEFAULT now()
             );",
            t = target.table
        ))
        .await
        .map_err(|error| query_failed(target, "create", &error))?;
    transaction
        .commit()
        .await
        .map_err(|error| query_failed(target, "create", &error))
}

/// Who holds the stack's advisory lock: its session, and how to name it.
struct Holder {
    pid: i32,
    text: String,
    /// From its lock row; none when the row is not (yet) there.
    lock_id: Option<String>,
}

/// The holder of the stack's advisory lock, as its lock row and session tell it.
async fn holder(client: &tokio_postgres::Client, target: &Target) -> Option<Holder> {
    let key = target.key();
    let (classid, objid) = ((key >> 32) & 0xffff_ffff, key & 0xffff_ffff);
    let row = client
        .query_opt(
            &format!(
                "SELECT l.pid, k.info::text, a.application_name, a.backend_start::text
                   FROM pg_locks l
                   LEFT JOIN pg_stat_activity a ON a.pid = l.pid
                   LEFT JOIN {} k ON k.stack = $3 AND k.backend_pid = l.pid
                  WHERE l.locktype = 'advisory' AND l.granted
                    AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
                    AND l.objsubid = 1
                  LIMIT 1",
                target.locks_table()
            ),
            &[&classid, &objid, &target.stack],
        )
        .await
        .ok()??;
    let pid: i32 = row.get(0);
    let info = row
        .get::<_, Option<String>>(1)
        .and_then(|info| serde_json::from_str::<LockInfo>(&info).ok());
    let text = match &info {
        Some(info) => info.to_string(),
        None => format!(
            "database session {pid} (`{}`, since {})",
            row.get::<_, Option<String>>(2).unwrap_or_default(),
            row.get::<_, Option<String>>(3).unwrap_or_default()
        ),
    };
    Some(Holder {
        pid,
        text,
        lock_id: info.map(|info| info.id),
    })
}

/// A connection holding the stack's advisory lock.
pub struct PgStore {
    client: tokio_postgres::Client,
    target: Target,
    server: String,
    info: LockInfo,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("target", &self.target)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn application_name(info: &LockInfo) -> String {
    let mut name = format!("pwless {} {} pid {}", info.operation, info.who, info.pid);
    name.truncate(63);
    name
}

impl PgStore {
    /// Connects and takes the lock for `operation`, refusing at once when it is held.
    pub async fn open(target: &Target, operation: &str) -> Result<Self, StateError> {
        let info = LockInfo::new(operation);
        let (mut client, server) = connect(target, &application_name(&info)).await?;
        ensure_tables(&mut client, target).await?;
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&target.key()])
            .await
            .map_err(|error| query_failed(target, "lock", &error))?
            .get(0);
        if !locked {
            let holder = holder(&client, target).await;
            let id = holder
                .as_ref()
                .and_then(|holder| holder.lock_id.clone())
                .unwrap_or_else(|| "ID".into());
            return Err(StateError::Locked {
                location: target.location(),
                holder: holder.map_or_else(
                    || "another session (it let go just now: run again)".to_string(),
                    |holder| holder.text,
                ),
                hint: format!(
                    "the lock ends with that run's database session, however the run ends; `pwless force-unlock {id}` ends the session now"
                ),
            });
        }
        let record = serde_json::to_string(&info).unwrap_or_default();
        client
            .execute(
                &format!(
                    "INSERT INTO {} (stack, lock_id, info, backend_pid)
                     VALUES ($1, $2, ($3::text)::jsonb, pg_backend_pid())
                     ON CONFLICT (stack) DO UPDATE
                        SET lock_id = excluded.lock_id, info = excluded.info,
                            backend_pid = excluded.backend_pid, acquired_at = now()",
                    target.locks_table()
                ),
                &[&target.stack, &info.id, &record],
            )
            .await
            .map_err(|error| query_failed(target, "record the lock in", &error))?;
        Ok(PgStore {
            client,
            target: target.clone(),
            server,
            info,
        })
    }

    pub fn location(&self) -> String {
        format!(
            "PostgreSQL table {} (stack {}) on {}",
            self.target.table, self.target.stack, self.server
        )
    }

    fn lost_or(&self, what: &str, error: tokio_postgres::Error) -> StateError {
        if error.is_closed()
            || error.code() == Some(&tokio_postgres::error::SqlState::ADMIN_SHUTDOWN)
        {
            StateError::LockLost {
                location: self.location(),
                why: "the database session holding it ended".into(),
            }
        } else {
            query_failed(&self.target, what, &error)
        }
    }

    pub async fn get(&self) -> Result<Option<(Vec<u8>, Revision)>, StateError> {
        get(&self.client, &self.target)
            .await
            .map_err(|error| self.lost_or("read", error))
    }

    /// Writes the row if its revision is still `expected` (`None`: if there is no row yet).
    /// `document` is `state` serialized; lineage and serial also go to their own columns.
    pub async fn put(
        &self,
        state: &super::State,
        document: &str,
        expected: Option<&Revision>,
    ) -> Result<Revision, StateError> {
        let lineage = &state.lineage;
        let serial = i64::try_from(state.serial).unwrap_or(i64::MAX);
        let by = format!("{} ({})", self.info.who, self.info.operation);
        let row = match expected {
            None => self
                .client
                .query_opt(
                    &format!(
                        "INSERT INTO {} (stack, lineage, serial, revision, document, updated_by)
                         VALUES ($1, $2, $3, 1, ($4::text)::jsonb, $5)
                         ON CONFLICT (stack) DO NOTHING RETURNING revision",
                        self.target.table
                    ),
                    &[&self.target.stack, &lineage, &serial, &document, &by],
                )
                .await,
            Some(revision) => {
                let read: i64 = revision.0.parse().unwrap_or(-1);
                self.client
                    .query_opt(
                        &format!(
                            "UPDATE {} SET lineage = $2, serial = $3, revision = revision + 1,
                                    document = ($4::text)::jsonb, updated_at = now(), updated_by = $5
                              WHERE stack = $1 AND revision = $6 RETURNING revision",
                            self.target.table
                        ),
                        &[&self.target.stack, &lineage, &serial, &document, &by, &read],
                    )
                    .await
            }
        }
        .map_err(|error| self.lost_or("write", error))?;
        match row {
            Some(row) => Ok(Revision(row.get::<_, i64>(0).to_string())),
            None => Err(StateError::conflict(self.location())),
        }
    }

    /// Lets go of the lock and closes the session.
    pub async fn release(self) {
        let _ = self
            .client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE stack = $1 AND lock_id = $2",
                    self.target.locks_table()
                ),
                &[&self.target.stack, &self.info.id],
            )
            .await;
        let _ = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&self.target.key()])
            .await;
    }
}

async fn get(
    client: &tokio_postgres::Client,
    target: &Target,
) -> Result<Option<(Vec<u8>, Revision)>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            &format!(
                "SELECT document::text, revision FROM {} WHERE stack = $1",
                target.table
            ),
            &[&target.stack],
        )
        .await?;
    Ok(row.map(|row| {
        (
            row.get::<_, String>(0).into_bytes(),
            Revision(row.get::<_, i64>(1).to_string()),
        )
    }))
}

/// Reads the stack's row without the lock (a row is replaced whole). Makes no table: a
/// reader may have no right to.
pub async fn read_unlocked(target: &Target) -> Result<Option<(Vec<u8>, Revision)>, StateError> {
    let (client, _) = connect(target, "pwless read").await?;
    if !tables_exist(&client, target).await? {
        return Ok(None);
    }
    get(&client, target)
        .await
        .map_err(|error| query_failed(target, "read", &error))
}

/// Ends the session holding lock `id` (`pwless force-unlock`); its advisory lock goes with it.
pub async fn force_unlock(target: &Target, id: &str) -> Result<String, StateError> {
    let (client, _) = connect(target, "pwless force-unlock").await?;
    let holder = match tables_exist(&client, target).await? {
        true => holder(&client, target).await,
        false => None,
    };
    let Some(Holder { pid, text, lock_id }) = holder else {
        return Err(StateError::Backend(format!(
            "{} is not locked; nothing was changed",
            target.location()
        )));
    };
    if lock_id.as_deref() != Some(id) {
        return Err(StateError::Backend(format!(
            "the lock on {} is {text}, not {id}; nothing was changed",
            target.location()
        )));
    }
    let ended: bool = client
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .map_err(|error| {
            StateError::Backend(format!(
                "cannot end database session {pid} holding the lock: {}; a superuser, a member of pg_signal_backend or the holder's own role can",
                crate::db::describe(&error)
            ))
        })?
        .get(0);
    if !ended {
        return Err(StateError::Backend(format!(
            "database session {pid} holding the lock could not be ended"
        )));
    }
    // Ending is a signal: wait (briefly) until the session, and its lock, are gone.
    for _ in 0..100 {
        let alive: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
                &[&pid],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(false);
        if !alive {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Ok(text)
}
