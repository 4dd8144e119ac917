//! The PostgreSQL provider: IAM-only login roles and their privileges, managed over a verified
//! TLS connection as the master user.
//!
//! - The master credentials are read at apply time — from the Secrets Manager secret RDS manages
//!   (`master_password: managed`), or the environment — and live only in memory.
//! - Each resource change is one multi-statement simple query, which PostgreSQL runs as one
//!   transaction: no half-applied SQL. Identifiers are always quoted; privileges come from a
//!   closed list. Nothing from the stack is interpolated unquoted.
//! - A role is `LOGIN`, `PASSWORD NULL`, member of `rds_iam`; the master user never inherits it
//!   (it borrows a user's privileges only within one transaction, see `acting_for`).
//! - Dropping a role first reassigns what it owns to the master user, then drops its
//!   privileges, so objects the application created survive and nothing else is touched.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Applied, Inputs, Provider, ProviderError, input_str, input_strings};
use crate::db::{Target, connect, resolve};
use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::secret::Secret;
use crate::spec::model::{MasterPassword, Privilege, PrivilegeTarget};
use crate::state::ResourceState;

/// What the provider needs from the stack and the environment.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// The stack's name: the roles pwless makes carry it in their comment ([`ownership_mark`]).
    pub stack: String,
    /// Each database's settings, by its logical name ([`crate::spec::model::Database::key`]):
    /// a resource's `connection.db` names it (absent: [`crate::spec::model::MAIN_DATABASE`]).
    /// Never empty.
    pub databases: BTreeMap<String, DatabaseSettings>,
}

/// How pwless reaches one database of the stack, and as whom.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The PostgreSQL database its users get their privileges in.
    pub database: String,
    pub master_username: String,
    pub master_password: MasterPassword,
    pub ca_bundle: PathBuf,
    /// Where to fetch the bundle from when it is the user's cache and not there yet.
    pub ca_bundle_url: Option<String>,
    pub admin_endpoint: Option<String>,
    pub tls_server_name: Option<String>,
}

impl PostgresSettings {
    /// The settings of the database a resource's `connection` names. A database the stack no
    /// longer declares (its users are being dropped) is reached with what the connection
    /// recorded: its database and master user, the RDS-managed master secret, the CA bundle of
    /// one of the stack's databases (by name order), no tunnel.
    ///
    /// # Errors
    /// Such a database whose master password came from the environment (its connection records
    /// no managed secret): only the stack named the variable.
    fn of(
        &self,
        connection: &Value,
    ) -> Result<std::borrow::Cow<'_, DatabaseSettings>, ProviderError> {
        let key = connection
            .get("db")
            .and_then(Value::as_str)
            .unwrap_or(crate::spec::model::MAIN_DATABASE);
        if let Some(settings) = self.databases.get(key) {
            return Ok(std::borrow::Cow::Borrowed(settings));
        }
        if connection
            .get("master_secret_arn")
            .is_none_or(Value::is_null)
        {
            return Err(error(format!(
                "database `{key}` is no longer in the stack, and its master password came from an environment variable only the stack named: keep `{key}` under `databases` with `users: []` for one apply (pwless drops its users), then remove it"
            ))
            .local());
        }
        let first = self.databases.values().next();
        let recorded = |name: &str| {
            connection
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Ok(std::borrow::Cow::Owned(DatabaseSettings {
            database: recorded("database"),
            master_username: recorded("master_username"),
            master_password: MasterPassword::Managed,
            ca_bundle: first
                .map(|first| first.ca_bundle.clone())
                .unwrap_or_default(),
            ca_bundle_url: first.and_then(|first| first.ca_bundle_url.clone()),
            admin_endpoint: None,
            tls_server_name: None,
        }))
    }
}

pub struct PostgresProvider {
    settings: PostgresSettings,
    secrets: aws_sdk_secretsmanager::Client,
    /// The way to the database relay, for connections that name one (`connection.relay`).
    kubernetes: Arc<super::kubernetes::KubernetesProvider>,
    /// One connection per cluster endpoint and database, shared by all operations (queries
    /// pipeline). Other databases than the stack's are reached only to drop a user that
    /// holds something there.
    clients: Mutex<BTreeMap<String, Arc<tokio_postgres::Client>>>,
}

fn error(message: impl Into<String>) -> ProviderError {
    ProviderError::permanent(message)
}

/// The comment on a role pwless made: `pwless:stack=<stack> pwless:address=<address>`, set in
/// the create's transaction, like the `pwless:stack` and `pwless:address` tags on AWS resources.
fn ownership_mark(stack: &str, address: &str) -> String {
    format!("pwless:stack={stack} pwless:address={address}")
}

/// A role of the stack's user's name that this stack did not make: refused, never taken over
/// (`ErrorKind::Taken`: nothing was created, nothing is left pending).
fn taken(name: &str) -> ProviderError {
    ProviderError {
        kind: super::ErrorKind::Taken,
        code: Some("42710".into()),
        message: format!(
            "database user {name} exists already and is not made by this stack: pwless does not take it over (its password, memberships and privileges stay as they are); give the stack's user another name, or drop the existing one if it is unused"
        ),
    }
}

/// A query's error with what PostgreSQL said: SQLSTATE, message, DETAIL, HINT
/// ([`crate::db::describe`]).
fn db_error(action: &str) -> impl FnOnce(tokio_postgres::Error) -> ProviderError + '_ {
    move |source| error(format!("cannot {action}: {}", crate::db::describe(&source)))
}

/// `"name"`, with inner quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with inner quotes doubled.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A role attribute pwless keeps off, by its `pg_roles` column and its `ALTER ROLE` words.
/// Each lets a role do more than its grants say (CREATE ROLE, PostgreSQL documentation).
const ROLE_ATTRIBUTES: [(&str, &str, &str, &str); 5] = [
    ("superuser", "rolsuper", "SUPERUSER", "NOSUPERUSER"),
    ("create_role", "rolcreaterole", "CREATEROLE", "NOCREATEROLE"),
    ("create_db", "rolcreatedb", "CREATEDB", "NOCREATEDB"),
    ("bypass_rls", "rolbypassrls", "BYPASSRLS", "NOBYPASSRLS"),
    (
        "replication",
        "rolreplication",
        "REPLICATION",
        "NOREPLICATION",
    ),
];

/// What a database user's `attributes` input says: every attribute of [`ROLE_ATTRIBUTES`]
/// off.
pub fn role_attributes_off() -> BTreeMap<&'static str, bool> {
    ROLE_ATTRIBUTES
        .iter()
        .map(|(name, ..)| (*name, false))
        .collect()
}

/// What the plan shows for a password set outside pwless: never the password, nor its hash.
pub const PASSWORD_SET: &str = "(set outside pwless)";

/// The other users whose tables a grant covers (`table_owners`; none in states written before
/// it was recorded).
fn table_owners(inputs: &Inputs) -> Vec<String> {
    input_strings(inputs, "table_owners").unwrap_or_default()
}

/// Table owners as they stand in the catalog ([`PostgresProvider::owners`]).
#[derive(Debug, Default)]
struct Owners {
    /// The owners that exist.
    existing: Vec<String>,
    /// Those of them the master acts for only while a change runs.
    borrowed: Vec<String>,
}

/// `action` (`GRANT SELECT ON {table} TO "r"` with a `{table}` slot) for every table of
/// `schema` whose owner the current user acts for. `ON ALL TABLES IN SCHEMA` would fail on a
/// table the application owns: on RDS the master user is no superuser.
fn for_each_own_table(schema: &str, action: &str) -> Result<String, ProviderError> {
    if schema.contains('$') || action.contains("$pwless$") {
        return Err(error("a schema or role name holds `$`"));
    }
    let (before, after) = action
        .split_once("{table}")
        .ok_or_else(|| error("internal: no {table} slot"))?;
    Ok(format!(
        "DO $pwless$ DECLARE t regclass; BEGIN\n\
         FOR t IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = {} AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND pg_has_role(c.relowner, 'USAGE') LOOP\n\
         EXECUTE {} || t::text || {};\n\
         END LOOP; END $pwless$;\n",
        literal(schema),
        literal(before),
        literal(after)
    ))
}

/// The privileges of `target` named in `inputs[key]`, in the canonical order, as SQL words.
fn privileges(
    inputs: &Inputs,
    key: &str,
    target: PrivilegeTarget,
) -> Result<Vec<&'static str>, ProviderError> {
    let names = input_strings(inputs, key)?;
    let mut found = Vec::new();
    for name in &names {
        let privilege = Privilege::from_name(name)
            .filter(|p| p.target() == target)
            .ok_or_else(|| error(format!("`{name}` is not a privilege for {key}")))?;
        found.push(privilege);
    }
    found.sort();
    Ok(found.into_iter().map(sql_word).collect())
}

fn sql_word(privilege: Privilege) -> &'static str {
    match privilege {
        Privilege::Connect => "CONNECT",
        Privilege::Temporary => "TEMPORARY",
        Privilege::Usage => "USAGE",
        Privilege::Create => "CREATE",
        Privilege::Select => "SELECT",
        Privilege::Insert => "INSERT",
        Privilege::Update => "UPDATE",
        Privilege::Delete => "DELETE",
        Privilege::Truncate => "TRUNCATE",
        Privilege::References => "REFERENCES",
        Privilege::Trigger => "TRIGGER",
    }
}

/// Catalog privilege words back to the stack's names, in the canonical order.
fn names_of(words: &[String], target: PrivilegeTarget) -> Value {
    let mut found: Vec<Privilege> = Privilege::ALL
        .into_iter()
        .filter(|p| {
            p.target() == target && words.iter().any(|w| w.eq_ignore_ascii_case(sql_word(*p)))
        })
        .collect();
    found.sort();
    json!(found.into_iter().map(Privilege::name).collect::<Vec<_>>())
}

/// The privilege words a one-row ACL query returns for (`name`, `role`).
async fn acl_words(
    client: &tokio_postgres::Client,
    query: &str,
    name: &str,
    role: &str,
) -> Result<Vec<String>, ProviderError> {
    let row = client
        .query_one(query, &[&name, &role])
        .await
        .map_err(db_error("read the privileges"))?;
    Ok(row.get(0))
}

impl PostgresProvider {
    pub fn new(
        settings: PostgresSettings,
        config: &aws_config::SdkConfig,
        kubernetes: Arc<super::kubernetes::KubernetesProvider>,
    ) -> Self {
        PostgresProvider {
            settings,
            secrets: aws_sdk_secretsmanager::Client::new(config),
            kubernetes,
            clients: Mutex::new(BTreeMap::new()),
        }
    }

    /// The master user and password: from the RDS-managed secret, or the environment (for the
    /// user the connection names, a referenced cluster's, else the stack's
    /// `database.master_username`).
    async fn master(
        &self,
        settings: &DatabaseSettings,
        secret_arn: Option<&str>,
        username: Option<&str>,
    ) -> Result<(String, Secret), ProviderError> {
        let username = username.unwrap_or(&settings.master_username);
        match &settings.master_password {
            MasterPassword::Env(variable) => match std::env::var(variable) {
                Ok(value) if !value.is_empty() => Ok((username.to_string(), Secret::new(value))),
                _ => Err(error(format!(
                    "environment variable {variable} (the database's master_password.env) is not set"
                ))),
            },
            MasterPassword::Managed => {
                let arn = secret_arn
                    .ok_or_else(|| error("the cluster reports no managed master secret"))?;
                let out = self
                    .secrets
                    .get_secret_value()
                    .secret_id(arn)
                    .send()
                    .await
                    .map_err(crate::provider::aws::sdk_error("read the master secret"))?;
                let text = Secret::new(out.secret_string().unwrap_or_default().to_string());
                let parsed: Value = serde_json::from_str(text.expose())
                    .map_err(|_| error("the master secret is not the JSON RDS writes"))?;
                let user = parsed
                    .get("username")
                    .and_then(Value::as_str)
                    .unwrap_or(username)
                    .to_string();
                let password = parsed
                    .get("password")
                    .and_then(Value::as_str)
                    .ok_or_else(|| error("the master secret holds no password"))?;
                Ok((user, Secret::new(password.to_string())))
            }
        }
    }

    /// A connection to the cluster the inputs name, made once and shared. Its errors are
    /// [`super::ErrorKind::Local`]: no statement was sent, so nothing changed.
    async fn client(&self, inputs: &Inputs) -> Result<Arc<tokio_postgres::Client>, ProviderError> {
        self.connect(inputs, None)
            .await
            .map_err(ProviderError::local)
    }

    /// The CA bundle connections to the database a resource's inputs name trust.
    pub fn ca_bundle(&self, inputs: &Inputs) -> PathBuf {
        let connection = inputs.get("connection").cloned().unwrap_or_default();
        self.settings
            .of(&connection)
            .map(|settings| settings.ca_bundle.clone())
            .unwrap_or_default()
    }

    /// Where a connection to the cluster the inputs name goes (to `database` instead of the
    /// recorded one when given): the target (name checked in the certificate, tunnel address,
    /// CA bundle, fetched if it is the cache's and missing), and the relay's map when the
    /// connection goes through the relay in the cluster.
    async fn route<'a>(
        &self,
        inputs: &'a Inputs,
        database: Option<&str>,
    ) -> Result<(Target, Option<&'a Value>), ProviderError> {
        let connection = inputs
            .get("connection")
            .ok_or_else(|| error("input `connection` is missing"))?;
        let endpoint = connection
            .get("endpoint")
            .and_then(Value::as_str)
            .ok_or_else(|| error("the cluster endpoint is unknown"))?;
        let port = connection
            .get("port")
            .and_then(Value::as_u64)
            .and_then(|port| u16::try_from(port).ok())
            .unwrap_or(5432);
        let settings = self.settings.of(connection)?;
        // The database the resource records (states written before it was recorded: the
        // stack's).
        let database = database.unwrap_or_else(|| {
            connection
                .get("database")
                .and_then(Value::as_str)
                .unwrap_or(&settings.database)
        });
        let address = match &settings.admin_endpoint {
            Some(tunnel) => Some(resolve(tunnel).map_err(|e| error(e.to_string()))?),
            None => None,
        };
        // Through the relay in the EKS cluster when the connection names one, unless a tunnel
        // of the user's own (PWLESS_DB_ADMIN_ENDPOINT) says otherwise.
        let relay = connection
            .get("relay")
            .filter(|relay| relay.is_object() && address.is_none());
        let target = Target {
            server_name: settings
                .tls_server_name
                .clone()
                .unwrap_or_else(|| endpoint.to_string()),
            address,
            port,
            database: database.to_string(),
            ca_bundle: settings.ca_bundle.clone(),
        };
        if let Some(url) = &settings.ca_bundle_url {
            crate::ca_bundle::ensure(&settings.ca_bundle, url)
                .await
                .map_err(error)?;
        }
        Ok((target, relay))
    }

    /// The roles of the cluster a resource's `connection` reaches that may log in, but for the
    /// master user pwless connects as, superusers (no customer role on Aurora is one) and the
    /// names PostgreSQL and RDS reserve (`pg_…`, `rds_…`, `rdsadmin` and RDS's other system users): (name, whether its comment marks it
    /// as made by this stack, [`ownership_mark`]'s `pwless:stack=`), by name. For the access
    /// matrix's flag of users the stack does not declare. Errors: the cluster cannot be
    /// reached or read (SQLSTATE and message).
    pub async fn login_roles(&self, inputs: &Inputs) -> Result<Vec<(String, bool)>, ProviderError> {
        let client = self.client(inputs).await?;
        let rows = client
            .query(
                "select r.rolname::text, coalesce(shobj_description(r.oid, 'pg_authid'), '') \
                 from pg_roles r where r.rolcanlogin and not r.rolsuper \
                 and r.rolname <> current_user and r.rolname !~ '^(pg_|rds_)' \
                 and r.rolname not in ('rdsadmin', 'rdsrepladmin', 'rdstopmgr', 'rdsproxyadmin') order by 1",
                &[],
            )
            .await
            .map_err(db_error("list the cluster's login roles"))?;
        let mark = format!("pwless:stack={} ", self.settings.stack);
        Ok(rows
            .iter()
            .map(|row| {
                let comment: String = row.get(1);
                (row.get(0), comment.starts_with(&mark))
            })
            .collect())
    }

    /// The stack whose mark ([`ownership_mark`]) the role `name` carries in its comment, in the
    /// cluster a resource's `connection` reaches: `None` for an unmarked role (or none).
    /// Errors: the cluster cannot be reached or read.
    pub async fn role_stack(
        &self,
        inputs: &Inputs,
        name: &str,
    ) -> Result<Option<String>, ProviderError> {
        let client = self.client(inputs).await?;
        let rows = client
            .query(
                "select coalesce(shobj_description(oid, 'pg_authid'), '') from pg_roles where rolname = $1",
                &[&name],
            )
            .await
            .map_err(db_error("read the role's comment"))?;
        Ok(rows.first().and_then(|row| {
            let comment: String = row.get(0);
            comment
                .strip_prefix("pwless:stack=")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        }))
    }

    /// The TLS handshake alone ([`pwless_iam_auth::db::tls_check`]) over the route a
    /// connection for `inputs` takes (the relay, a tunnel, or straight): what `pwless doctor`
    /// checks before it logs in. Errors: the route cannot be opened, or the handshake fails;
    /// a refused certificate has the code `UnknownIssuer`, `WrongName`, `Expired` or
    /// `Certificate`, a CA bundle that cannot be read `CaBundle`.
    pub async fn tls_check(
        &self,
        inputs: &Inputs,
    ) -> Result<pwless_iam_auth::db::TlsFacts, ProviderError> {
        use pwless_iam_auth::db::{CertificateProblem, DbError};
        let (target, relay) = self.route(inputs, None).await?;
        let checked = match relay {
            Some(relay) => {
                let opened = self.kubernetes.open_relay(relay).await?;
                let timeout =
                    crate::db::connect_timeout().unwrap_or(crate::db::DEFAULT_CONNECT_TIMEOUT);
                tokio::time::timeout(
                    timeout,
                    pwless_iam_auth::db::tls_check(opened.stream, &target),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(DbError::Timeout {
                        target: format!("{} (through the database relay)", target.server_name),
                        seconds: timeout.as_secs(),
                    })
                })
            }
            None => pwless_iam_auth::db::tls_check_direct(&target).await,
        };
        checked.map_err(|failure| {
            let code = match &failure {
                DbError::Certificate { problem, .. } => Some(match problem {
                    CertificateProblem::UnknownIssuer => "UnknownIssuer",
                    CertificateProblem::WrongName => "WrongName",
                    CertificateProblem::Expired => "Expired",
                    CertificateProblem::Other => "Certificate",
                }),
                DbError::CaBundle { .. } | DbError::EmptyCaBundle { .. } => Some("CaBundle"),
                _ => None,
            };
            ProviderError {
                code: code.map(str::to_string),
                ..error(failure.to_string())
            }
        })
    }

    /// A connection to the cluster the inputs name, to `database` instead of the recorded one
    /// when given.
    async fn connect(
        &self,
        inputs: &Inputs,
        database: Option<&str>,
    ) -> Result<Arc<tokio_postgres::Client>, ProviderError> {
        let connection = inputs
            .get("connection")
            .ok_or_else(|| error("input `connection` is missing"))?;
        let settings = self.settings.of(connection)?;
        let key = format!(
            "{}/{}",
            connection
                .get("endpoint")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            database.unwrap_or_else(|| {
                connection
                    .get("database")
                    .and_then(Value::as_str)
                    .unwrap_or(&settings.database)
            })
        );
        let mut cached = self.clients.lock().await;
        if let Some(client) = cached.get(&key)
            && !client.is_closed()
        {
            return Ok(client.clone());
        }
        let (target, relay) = self.route(inputs, database).await?;
        let (user, password) = self
            .master(
                &settings,
                connection.get("master_secret_arn").and_then(Value::as_str),
                connection.get("master_username").and_then(Value::as_str),
            )
            .await?;
        let client = match relay {
            None => connect(&target, &user, &password)
                .await
                .map_err(|e| error(e.to_string()))?,
            Some(relay) => {
                let opened = self.kubernetes.open_relay(relay).await?;
                let timeout =
                    crate::db::connect_timeout().unwrap_or(crate::db::DEFAULT_CONNECT_TIMEOUT);
                let via = format!("database relay pod {}", opened.pod);
                match crate::db::connect_over(
                    &target,
                    opened.stream,
                    &via,
                    &user,
                    &password,
                    timeout,
                )
                .await
                {
                    Ok(client) => client,
                    Err(failure) => {
                        // The kubelet says why the relay could not be reached, if it did.
                        let said = match opened.error {
                            Some(error) => {
                                tokio::time::timeout(std::time::Duration::from_secs(1), error)
                                    .await
                                    .ok()
                                    .flatten()
                            }
                            None => None,
                        };
                        return Err(error(match said {
                            Some(said) => format!("{failure}; the port-forward said: {said}"),
                            None => failure.to_string(),
                        }));
                    }
                }
            }
        };
        let client = Arc::new(client);
        cached.insert(key, client.clone());
        Ok(client)
    }

    /// Whether the role has a password: `Some` where the catalog says (`pg_authid`, which only
    /// a superuser may read), `None` where it is hidden, as from the master user on RDS and in
    /// the sandbox, which is no superuser either. Only `rolpassword is not null` is selected:
    /// the password and its hash never leave the server. Where it is hidden, a password set by
    /// hand is inert while the user is in `rds_iam` ("IAM authentication takes precedence over
    /// password authentication", Database authentication with Amazon RDS), and every change
    /// pwless makes to the role clears it.
    async fn password_set(
        client: &tokio_postgres::Client,
        role: &str,
    ) -> Result<Option<bool>, ProviderError> {
        match client
            .query_opt(
                "select rolpassword is not null from pg_authid where rolname = $1",
                &[&role],
            )
            .await
        {
            Ok(row) => Ok(row.map(|row| row.get(0))),
            Err(error)
                if error.code()
                    == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) =>
            {
                Ok(None)
            }
            Err(error) => Err(db_error("read whether the role has a password")(error)),
        }
    }

    /// What `role` owns or holds in each database of the cluster, from `pg_shdepend`, the
    /// catalog of dependencies on roles that every database shares (readable by everyone):
    /// `o` entries are objects it owns, the others (`a` ACL, `i` initial ACL, `r` policy)
    /// objects it holds privileges on; its default privileges (`pg_default_acl`, which it owns)
    /// count as privileges, as they hold no data. Databases in name order, cluster-wide objects last.
    async fn holdings(
        client: &tokio_postgres::Client,
        role: &str,
    ) -> Result<Vec<crate::plan::Holding>, ProviderError> {
        let rows = client
            .query(
                "select d.datname::text, count(*) filter (where s.deptype = 'o' and s.classid <> 'pg_default_acl'::regclass), \
                 count(*) filter (where s.deptype <> 'o' or s.classid = 'pg_default_acl'::regclass) \
                 from pg_shdepend s left join pg_database d on d.oid = s.dbid \
                 where s.refclassid = 'pg_authid'::regclass and s.refobjid = (select oid from pg_roles where rolname = $1) \
                 group by d.datname order by d.datname nulls last",
                &[&role],
            )
            .await
            .map_err(db_error("read what the role owns and holds"))?;
        Ok(rows
            .into_iter()
            .map(|row| crate::plan::Holding {
                database: row.get(0),
                owns: row.get::<_, i64>(1).max(0) as u64,
                privileges: row.get::<_, i64>(2).max(0) as u64,
            })
            .collect())
    }

    /// Before `role` is dropped from the stack's database: in every other database where it
    /// owns or holds something, what it owns goes to the master user and its privileges are
    /// revoked, one transaction per database (REASSIGN OWNED and DROP OWNED act on the current
    /// database only, so DROP ROLE fails while anything is left elsewhere: "role cannot be
    /// dropped because some objects depend on it", DETAIL "1 object in database postgres").
    /// Errors name the database and keep PostgreSQL's SQLSTATE, DETAIL and HINT.
    async fn release_elsewhere(
        &self,
        client: &tokio_postgres::Client,
        inputs: &Inputs,
        role: &str,
    ) -> Result<(), ProviderError> {
        let current: String = client
            .query_one("select current_database()::text", &[])
            .await
            .map_err(db_error("read the current database"))?
            .get(0);
        for holding in Self::holdings(client, role).await? {
            let Some(database) = holding.database.filter(|database| *database != current) else {
                continue;
            };
            let elsewhere = self.connect(inputs, Some(&database)).await.map_err(|failure| {
                error(format!(
                    "user {role} owns {} and holds privileges on {} objects in database {database}, which pwless cannot reach to release them: {}",
                    holding.owns, holding.privileges, failure.message
                ))
            })?;
            let member: bool = elsewhere
                .query_one("select pg_has_role(current_user, $1, 'USAGE')", &[&role])
                .await
                .map_err(db_error("look up the role"))?
                .get(0);
            let owners = Owners {
                existing: vec![role.to_string()],
                borrowed: if member {
                    Vec::new()
                } else {
                    vec![role.to_string()]
                },
            };
            let quoted = ident(role);
            elsewhere
                .batch_execute(&Self::acting_for(
                    &owners,
                    format!(
                        "REASSIGN OWNED BY {quoted} TO CURRENT_USER;\nDROP OWNED BY {quoted};\n"
                    ),
                ))
                .await
                .map_err(|source| {
                    error(format!(
                        "cannot release what user {role} owns and holds in database {database}: {}",
                        crate::db::describe(&source)
                    ))
                })?;
            // DROP OWNED revokes only what the master may revoke: a privilege another role
            // granted on its own object (a superuser's, say) stays, with a warning only.
            let left = Self::holdings(&elsewhere, role)
                .await?
                .into_iter()
                .find(|left| left.database.as_deref() == Some(database.as_str()));
            if let Some(left) = left {
                return Err(error(format!(
                    "user {role} still holds privileges on {} objects in database {database} that the master user cannot revoke (another role granted them on its own objects); revoke them as that role (`REVOKE ALL ON <object> FROM {quoted}` in database {database}), then apply again",
                    left.privileges + left.owns
                )));
            }
        }
        Ok(())
    }

    /// Who granted `member` its membership in `group`: one grantor before PostgreSQL 16 (where
    /// REVOKE takes any of them), possibly several since.
    async fn grantors(
        client: &tokio_postgres::Client,
        member: &str,
        group: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let rows = client
            .query(
                "select distinct gr.rolname::text from pg_auth_members m join pg_roles g on g.oid = m.roleid \
                 join pg_roles r on r.oid = m.member join pg_roles gr on gr.oid = m.grantor \
                 where r.rolname = $1 and g.rolname = $2 order by 1",
                &[&member, &group],
            )
            .await
            .map_err(db_error("read who granted the membership"))?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    async fn role_oid_exists(
        client: &tokio_postgres::Client,
        role: &str,
    ) -> Result<bool, ProviderError> {
        let row = client
            .query_opt("select 1 from pg_roles where rolname = $1", &[&role])
            .await
            .map_err(db_error("look up the role"))?;
        Ok(row.is_some())
    }

    /// The other users whose tables `inputs` covers (`table_owners`), as they stand: those
    /// that exist, and those of them whose privileges the master does not have already
    /// (`USAGE`, not `MEMBER`: since PostgreSQL 16 the creator of a role is a member of it, with
    /// ADMIN OPTION but neither INHERIT nor SET, which ALTER DEFAULT PRIVILEGES FOR ROLE,
    /// REASSIGN OWNED and the table loop's `pg_has_role(owner, 'USAGE')` do not accept). Owners that are
    /// gone (a user removed in the same run) are left out.
    async fn owners(
        client: &tokio_postgres::Client,
        inputs: &Inputs,
    ) -> Result<Owners, ProviderError> {
        let wanted = table_owners(inputs);
        if wanted.is_empty() {
            return Ok(Owners::default());
        }
        let rows = client
            .query(
                "select rolname::text, pg_has_role(current_user, oid, 'USAGE') from pg_roles where rolname = any($1) order by 1",
                &[&wanted],
            )
            .await
            .map_err(db_error("look up the table owners"))?;
        let mut owners = Owners::default();
        for row in rows {
            let name: String = row.get(0);
            if !row.get::<_, bool>(1) {
                owners.borrowed.push(name.clone());
            }
            owners.existing.push(name);
        }
        Ok(owners)
    }

    /// `sql`, run while the master acts for `owners`: it takes their membership, inheriting,
    /// for this transaction only (the REVOKE removes the row this GRANT made; on PostgreSQL 16+
    /// the master's ADMIN-only membership as the roles' creator stays). A lasting inheriting
    /// membership would make the master an indirect member of `rds_iam`, and RDS would then refuse its password ("If the rds_iam role is added to the
    /// master user, IAM authentication takes precedence", Database authentication with Amazon
    /// RDS). On RDS the master may grant itself a role it created (PostgreSQL 16: its creator
    /// holds ADMIN OPTION; 15: CREATEROLE).
    fn acting_for(owners: &Owners, sql: String) -> String {
        let mut wrapped = String::new();
        for owner in &owners.borrowed {
            wrapped.push_str(&format!("GRANT {} TO CURRENT_USER;\n", ident(owner)));
        }
        wrapped.push_str(&sql);
        for owner in &owners.borrowed {
            wrapped.push_str(&format!("REVOKE {} FROM CURRENT_USER;\n", ident(owner)));
        }
        wrapped
    }

    fn grant_sql(inputs: &Inputs, owners: &Owners) -> Result<String, ProviderError> {
        let role = ident(input_str(inputs, "role")?);
        let database = ident(input_str(inputs, "database")?);
        let schema = ident(input_str(inputs, "schema")?);
        let mut sql = Self::revoke_sql(inputs, owners)?;
        let on_database = privileges(inputs, "database_privileges", PrivilegeTarget::Database)?;
        let on_schema = privileges(inputs, "schema_privileges", PrivilegeTarget::Schema)?;
        let on_tables = privileges(inputs, "table_privileges", PrivilegeTarget::Tables)?;
        if !on_database.is_empty() {
            sql.push_str(&format!(
                "GRANT {} ON DATABASE {database} TO {role};\n",
                on_database.join(", ")
            ));
        }
        if !on_schema.is_empty() {
            sql.push_str(&format!(
                "GRANT {} ON SCHEMA {schema} TO {role};\n",
                on_schema.join(", ")
            ));
        }
        if !on_tables.is_empty() {
            let list = on_tables.join(", ");
            sql.push_str(&for_each_own_table(
                input_str(inputs, "schema")?,
                &format!("GRANT {list} ON {{table}} TO {role}"),
            )?);
            sql.push_str(&format!(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {list} ON TABLES TO {role};\n"
            ));
            for owner in &owners.existing {
                sql.push_str(&format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {schema} GRANT {list} ON TABLES TO {role};\n",
                    ident(owner)
                ));
            }
        }
        Ok(sql)
    }

    /// What [`Self::grant_sql`] granted, revoked: on the database, the schema, the tables of
    /// the master and of `owners`, and their default privileges.
    fn revoke_sql(inputs: &Inputs, owners: &Owners) -> Result<String, ProviderError> {
        let role = ident(input_str(inputs, "role")?);
        let database = ident(input_str(inputs, "database")?);
        let schema = ident(input_str(inputs, "schema")?);
        let mut sql = format!(
            "REVOKE ALL ON DATABASE {database} FROM {role};\n\
             REVOKE ALL ON SCHEMA {schema} FROM {role};\n\
             {}\
             ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {role};\n",
            for_each_own_table(
                input_str(inputs, "schema")?,
                &format!("REVOKE ALL ON {{table}} FROM {role}")
            )?
        );
        for owner in &owners.existing {
            sql.push_str(&format!(
                "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {role};\n",
                ident(owner)
            ));
        }
        Ok(sql)
    }
}

impl Provider for PostgresProvider {
    fn supports(&self, kind: ResourceKind) -> bool {
        kind.provider() == crate::graph::Provider::Postgres
    }

    async fn create(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Applied, ProviderError> {
        let client = self.client(inputs).await?;
        match kind {
            ResourceKind::PostgresRole => {
                let name = input_str(inputs, "name")?;
                // Marked as this stack's in the same transaction, so an interrupted create is
                // adopted only when it is this one's (`adopt`).
                let mut sql = format!(
                    "CREATE ROLE {} LOGIN PASSWORD NULL;\nCOMMENT ON ROLE {} IS {};\n",
                    ident(name),
                    ident(name),
                    literal(&ownership_mark(&self.settings.stack, address)),
                );
                for group in input_strings(inputs, "member_of")? {
                    sql.push_str(&format!("GRANT {} TO {};\n", ident(&group), ident(name)));
                }
                client.batch_execute(&sql).await.map_err(|source| {
                    if source.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_OBJECT) {
                        taken(name)
                    } else {
                        db_error("create the role")(source)
                    }
                })?;
                Ok(Applied {
                    id: Some(name.to_string()),
                    outputs: BTreeMap::new(),
                })
            }
            ResourceKind::PostgresGrant => {
                let owners = Self::owners(&client, inputs).await?;
                client
                    .batch_execute(&Self::acting_for(
                        &owners,
                        Self::grant_sql(inputs, &owners)?,
                    ))
                    .await
                    .map_err(db_error("grant the privileges"))?;
                Ok(Applied {
                    id: Some(format!(
                        "{}@{}",
                        input_str(inputs, "role")?,
                        input_str(inputs, "database")?
                    )),
                    outputs: BTreeMap::new(),
                })
            }
            other => Err(error(format!("{other} is not a PostgreSQL resource"))),
        }
    }

    async fn read(&self, resource: &ResourceState) -> Result<Observed, ProviderError> {
        let prior = &resource.inputs;
        let client = self.client(prior).await?;
        let present = |inputs: Inputs| Observed::Present {
            inputs,
            outputs: resource.outputs.clone(),
        };
        match resource.kind {
            ResourceKind::PostgresRole => {
                let name = input_str(prior, "name")?;
                let columns: Vec<&str> = ROLE_ATTRIBUTES
                    .iter()
                    .map(|(_, column, ..)| *column)
                    .collect();
                let row = client
                    .query_opt(
                        &format!(
                            "select r.rolcanlogin, coalesce(array(select distinct g.rolname::text from pg_auth_members m join pg_roles g on g.oid = m.roleid \
                             where m.member = r.oid order by 1), '{{}}'), {} from pg_roles r where r.rolname = $1",
                            columns.iter().map(|c| format!("r.{c}")).collect::<Vec<_>>().join(", ")
                        ),
                        &[&name],
                    )
                    .await
                    .map_err(db_error("read the role"))?;
                let Some(row) = row else {
                    return Ok(Observed::Missing);
                };
                let login: bool = row.get(0);
                let groups: Vec<String> = row.get(1);
                let attributes: BTreeMap<&str, bool> = ROLE_ATTRIBUTES
                    .iter()
                    .enumerate()
                    .map(|(index, (attribute, ..))| (*attribute, row.get::<_, bool>(2 + index)))
                    .collect();
                let mut observed = vec![
                    ("login", json!(login)),
                    ("member_of", json!(groups)),
                    ("attributes", json!(attributes)),
                ];
                if let Some(set) = Self::password_set(&client, name).await? {
                    observed.push((
                        "password",
                        if set {
                            json!(PASSWORD_SET)
                        } else {
                            Value::Null
                        },
                    ));
                }
                // What it owns and holds, for a plan that drops it to list (never an input:
                // it is no part of what the stack declares).
                let mut outputs = resource.outputs.clone();
                outputs.insert(
                    "holdings".into(),
                    json!(Self::holdings(&client, name).await?),
                );
                Ok(Observed::Present {
                    inputs: super::overlay(prior, observed),
                    outputs,
                })
            }
            ResourceKind::PostgresGrant => {
                let role = input_str(prior, "role")?;
                if !Self::role_oid_exists(&client, role).await? {
                    return Ok(Observed::Missing);
                }
                let database = input_str(prior, "database")?;
                let schema = input_str(prior, "schema")?;
                let on_database = acl_words(
                    &client,
                    "select coalesce(array_agg(distinct a.privilege_type::text), '{}') from pg_database d, aclexplode(d.datacl) a \
                     where d.datname = $1 and a.grantee = (select oid from pg_roles where rolname = $2)",
                    database,
                    role,
                )
                .await?;
                let on_schema = acl_words(
                    &client,
                    "select coalesce(array_agg(distinct a.privilege_type::text), '{}') from pg_namespace n, aclexplode(n.nspacl) a \
                     where n.nspname = $1 and a.grantee = (select oid from pg_roles where rolname = $2)",
                    schema,
                    role,
                )
                .await?;
                // Tables made later: what the default privileges of the master and of every
                // other owner (`table_owners`) give the role; only what all of them give counts.
                let owners = Self::owners(&client, prior).await?;
                let future_rows = client
                    .query(
                        "select o.rolname::text, coalesce(array(select distinct a.privilege_type::text from pg_default_acl d \
                         join pg_namespace n on n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a \
                         where n.nspname = $1 and d.defaclobjtype = 'r' and d.defaclrole = o.oid \
                         and a.grantee = (select oid from pg_roles where rolname = $2)), '{}') \
                         from pg_roles o where o.rolname = current_user or o.rolname = any($3)",
                        &[&schema, &role, &owners.existing],
                    )
                    .await
                    .map_err(db_error("read the default privileges"))?;
                let mut on_tables: Option<Vec<String>> = None;
                for row in future_rows {
                    let held: Vec<String> = row.get(1);
                    on_tables = Some(match on_tables {
                        None => held,
                        Some(mut words) => {
                            words.retain(|word| held.contains(word));
                            words
                        }
                    });
                }
                let mut on_tables = on_tables.unwrap_or_default();
                // Existing tables of the master (and the roles it acts for) and of the other
                // owners: only what the role holds on every one of them counts. Its own tables
                // it holds everything on; the tables of roles pwless does not manage are no
                // part of the stack.
                let rows = client
                    .query(
                        "select c.oid, coalesce(array(select a.privilege_type::text from aclexplode(c.relacl) a \
                         where a.grantee = (select oid from pg_roles where rolname = $2)), '{}') \
                         from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relkind in ('r', 'p', 'v', 'm', 'f') \
                         and c.relowner <> (select oid from pg_roles where rolname = $2) \
                         and (pg_has_role(c.relowner, 'USAGE') or c.relowner in (select oid from pg_roles where rolname = any($3)))",
                        &[&schema, &role, &owners.existing],
                    )
                    .await
                    .map_err(db_error("read the table privileges"))?;
                for row in rows {
                    let held: Vec<String> = row.get(1);
                    on_tables.retain(|word| held.contains(word));
                }
                Ok(present(super::overlay(
                    prior,
                    [
                        (
                            "database_privileges",
                            names_of(&on_database, PrivilegeTarget::Database),
                        ),
                        (
                            "schema_privileges",
                            names_of(&on_schema, PrivilegeTarget::Schema),
                        ),
                        (
                            "table_privileges",
                            names_of(&on_tables, PrivilegeTarget::Tables),
                        ),
                    ],
                )))
            }
            other => Err(error(format!("{other} is not a PostgreSQL resource"))),
        }
    }

    async fn update(
        &self,
        resource: &ResourceState,
        inputs: &Inputs,
        changed: &[String],
    ) -> Result<Applied, ProviderError> {
        let unchanged = Applied {
            id: resource.id.clone(),
            outputs: resource.outputs.clone(),
        };
        // How pwless reaches the database is no part of the role or its privileges: a change
        // of path alone (`connection`) sends no SQL and is only recorded.
        if changed.iter().all(|name| name == "connection") {
            return Ok(unchanged);
        }
        let client = self.client(inputs).await?;
        match resource.kind {
            ResourceKind::PostgresRole => {
                let name = ident(input_str(inputs, "name")?);
                // Whatever changed, the password is cleared: where the catalog hides it, this
                // is how one set by hand goes.
                let mut sql = format!("ALTER ROLE {name} PASSWORD NULL;\n");
                if changed.iter().any(|c| c == "login") {
                    sql.push_str(&format!("ALTER ROLE {name} LOGIN;\n"));
                }
                if changed.iter().any(|c| c == "attributes") {
                    // Only the attributes that differ: ALTER ROLE ... NOSUPERUSER is refused
                    // to a non-superuser even when it changes nothing.
                    let had = resource.inputs.get("attributes");
                    let wanted = inputs.get("attributes");
                    for (attribute, _, on, off) in ROLE_ATTRIBUTES {
                        let value = |map: Option<&Value>| {
                            map.and_then(|m| m.get(attribute)).and_then(Value::as_bool)
                        };
                        let want = value(wanted).unwrap_or(false);
                        // Unknown before (never read): left alone rather than guessed.
                        if value(had).is_some_and(|had| had != want) {
                            sql.push_str(&format!(
                                "ALTER ROLE {name} {};\n",
                                if want { on } else { off }
                            ));
                        }
                    }
                }
                if changed.iter().any(|c| c == "member_of") {
                    let wanted = input_strings(inputs, "member_of")?;
                    let had = input_strings(&resource.inputs, "member_of").unwrap_or_default();
                    let plain = input_str(inputs, "name")?;
                    for group in had.iter().filter(|group| !wanted.contains(group)) {
                        // Since PostgreSQL 16 a membership may be granted more than once, by
                        // different grantors, and a plain REVOKE removes only the current user's
                        // grant (with a warning for the others): each grantor's is revoked.
                        for grantor in Self::grantors(&client, plain, group).await? {
                            sql.push_str(&format!(
                                "REVOKE {} FROM {name} GRANTED BY {};\n",
                                ident(group),
                                ident(&grantor)
                            ));
                        }
                    }
                    for group in wanted.iter().filter(|group| !had.contains(group)) {
                        sql.push_str(&format!("GRANT {} TO {name};\n", ident(group)));
                    }
                }
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(db_error("update the role"))?;
            }
            ResourceKind::PostgresGrant => {
                // Revoke everything and grant what the stack says, as one transaction. A new
                // schema: what was granted on the old one (recorded) is revoked there first.
                let mut sql = String::new();
                let owners = Self::owners(&client, inputs).await?;
                if changed.iter().any(|name| name == "schema") {
                    let before = Self::owners(&client, &resource.inputs).await?;
                    sql.push_str(&Self::acting_for(
                        &before,
                        Self::revoke_sql(&resource.inputs, &before)?,
                    ));
                }
                sql.push_str(&Self::acting_for(
                    &owners,
                    Self::grant_sql(inputs, &owners)?,
                ));
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(db_error("update the privileges"))?;
            }
            other => return Err(error(format!("{other} is not a PostgreSQL resource"))),
        }
        Ok(unchanged)
    }

    async fn delete(&self, resource: &ResourceState) -> Result<(), ProviderError> {
        let client = self.client(&resource.inputs).await?;
        match resource.kind {
            ResourceKind::PostgresRole => {
                let name = input_str(&resource.inputs, "name")?;
                if !Self::role_oid_exists(&client, name).await? {
                    return Ok(());
                }
                self.release_elsewhere(&client, &resource.inputs, name)
                    .await?;
                let role = ident(name);
                // Acting for the role (CREATEROLE allows taking its membership) lets the master
                // take over what it owns; the membership dies with the role, in this transaction.
                let sql = format!(
                    "GRANT {role} TO CURRENT_USER;\nREASSIGN OWNED BY {role} TO CURRENT_USER;\nDROP OWNED BY {role};\nDROP ROLE {role};\n"
                );
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(db_error("drop the role"))
            }
            ResourceKind::PostgresGrant => {
                if !Self::role_oid_exists(&client, input_str(&resource.inputs, "role")?).await? {
                    return Ok(());
                }
                let owners = Self::owners(&client, &resource.inputs).await?;
                client
                    .batch_execute(&Self::acting_for(
                        &owners,
                        Self::revoke_sql(&resource.inputs, &owners)?,
                    ))
                    .await
                    .map_err(db_error("revoke the privileges"))
            }
            other => Err(error(format!("{other} is not a PostgreSQL resource"))),
        }
    }

    async fn adopt(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Option<Applied>, ProviderError> {
        let client = self.client(inputs).await?;
        match kind {
            // Only a role this stack's create made (its comment says so): a role of the same
            // name that someone else made is never taken over.
            ResourceKind::PostgresRole => {
                let name = input_str(inputs, "name")?;
                let row = client
                    .query_opt(
                        "select shobj_description(oid, 'pg_authid') from pg_roles where rolname = $1",
                        &[&name],
                    )
                    .await
                    .map_err(db_error("look up the role"))?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let comment: Option<String> = row.get(0);
                if comment.as_deref()
                    != Some(ownership_mark(&self.settings.stack, address).as_str())
                {
                    return Err(taken(name));
                }
                Ok(Some(Applied {
                    id: Some(name.to_string()),
                    outputs: BTreeMap::new(),
                }))
            }
            // Grants are one transaction and idempotent: an interrupted one is simply made again.
            ResourceKind::PostgresGrant => Ok(None),
            other => Err(error(format!("{other} is not a PostgreSQL resource"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A database the stack no longer declares is reached with what its users' connection
    /// recorded; one whose master password only the stack named is refused, saying how to
    /// remove it.
    #[test]
    fn a_database_no_longer_in_the_stack_is_reached_as_recorded_or_refused_with_the_way_out() {
        let settings = PostgresSettings {
            stack: "s".into(),
            databases: [(
                "orders".to_string(),
                DatabaseSettings {
                    database: "orders".into(),
                    master_username: "postgres".into(),
                    master_password: MasterPassword::Env("ORDERS_PASSWORD".into()),
                    ca_bundle: "/ca.pem".into(),
                    ca_bundle_url: None,
                    admin_endpoint: Some("127.0.0.1:1".into()),
                    tls_server_name: None,
                },
            )]
            .into(),
        };
        let declared = settings.of(&json!({"db": "orders"})).unwrap();
        assert_eq!(declared.admin_endpoint.as_deref(), Some("127.0.0.1:1"));
        let gone = settings
            .of(
                &json!({"db": "shop", "database": "shop", "master_username": "admin",
                        "master_secret_arn": "arn:aws:secretsmanager:us-west-2:1:secret:x"}),
            )
            .unwrap();
        assert_eq!(
            (gone.database.as_str(), gone.master_username.as_str()),
            ("shop", "admin")
        );
        assert_eq!(gone.master_password, MasterPassword::Managed);
        assert_eq!(gone.ca_bundle, PathBuf::from("/ca.pem"));
        assert!(gone.admin_endpoint.is_none());
        // `main` when the connection names none (a one-database stack's users).
        let refused = settings
            .of(&json!({"database": "appdb", "master_secret_arn": null}))
            .unwrap_err();
        assert!(
            refused.message.contains(
                "database `main` is no longer in the stack, and its master password came from an environment variable only the stack named: keep `main` under `databases` with `users: []`"
            ),
            "{}",
            refused.message
        );
        assert_eq!(refused.kind, crate::provider::ErrorKind::Local);
    }

    #[test]
    fn identifiers_are_quoted_with_inner_quotes_doubled() {
        assert_eq!(ident("app_user"), "\"app_user\"");
        assert_eq!(
            ident("x\"; DROP ROLE postgres; --"),
            "\"x\"\"; DROP ROLE postgres; --\""
        );
    }

    #[test]
    fn grant_sql_names_only_the_listed_privileges() {
        let inputs: Inputs = serde_json::from_value(json!({
            "role": "app_user", "database": "appdb", "schema": "public",
            "database_privileges": ["connect"], "schema_privileges": ["usage"], "table_privileges": ["select", "insert"],
        }))
        .unwrap();
        let sql = PostgresProvider::grant_sql(&inputs, &Owners::default()).unwrap();
        assert!(sql.contains("GRANT CONNECT ON DATABASE \"appdb\" TO \"app_user\";"));
        assert!(
            sql.contains("EXECUTE 'GRANT SELECT, INSERT ON ' || t::text || ' TO \"app_user\"';"),
            "{sql}"
        );
        assert!(sql.contains("WHERE n.nspname = 'public'"), "{sql}");
        assert!(sql.starts_with("REVOKE ALL ON DATABASE"));
        let bad: Inputs = serde_json::from_value(json!({
            "role": "r", "database": "d", "schema": "s",
            "database_privileges": ["select"], "schema_privileges": [], "table_privileges": [],
        }))
        .unwrap();
        assert!(
            PostgresProvider::grant_sql(&bad, &Owners::default()).is_err(),
            "a table privilege on a database is refused"
        );
    }
}
