//! The demo web app (`pwless-demo`): a page that creates a table, adds messages and lists them,
//! every database call through the token-refreshing pool ([`pwless_iam_auth::pool`]) — no password
//! anywhere. Configured from the environment the Deployment sets:
//!
//! `DB_ENDPOINT`, `DB_PORT` (5432), `DB_NAME`, `DB_USER`, `AWS_REGION` (required, never
//! guessed), `RDS_CA_CERT` (the CA bundle), `PORT` (8080); through a tunnel (the sandbox),
//! `DB_HOSTADDR` (`host:port` to connect to) and `DB_TLS_SERVER_NAME` (the name the
//! certificate carries), while the token is still signed for `DB_ENDPOINT`.
//!
//! The page also shows how it logs in: the IAM identity it runs as (`sts:GetCallerIdentity`)
//! and where its credentials come from, the current token's age and the next refresh, the TLS
//! version and the bundle's CA that verified the database, and `current_user` as the database
//! reports it.
//!
//! Routes: `GET /` (the page), `POST /table` and `POST /messages` (its forms), the same as
//! JSON — `POST /api/table`, `POST /api/messages` `{"text": "..."}`, `GET /api/messages` — and
//! `GET /healthz`. Text is escaped wherever it is shown, messages are at most
//! [`MAX_TEXT`] characters and request bodies at most [`MAX_BODY`] bytes; a database refusal
//! is a clear error on the page and a 5xx JSON `{"error": ...}` from the API.

#![deny(clippy::print_stdout, clippy::print_stderr)]

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Form, Json, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use pwless_iam_auth::db::Target;
use pwless_iam_auth::pool::{IamPool, PoolError, TokenCache, TokenTarget};

pub const MAX_TEXT: usize = 500;
pub const MAX_BODY: usize = 16 * 1024;

/// The app's settings, from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    pub endpoint: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub region: String,
    pub ca_bundle: std::path::PathBuf,
    pub listen_port: u16,
    pub hostaddr: Option<String>,
    pub tls_server_name: Option<String>,
}

impl Config {
    /// Every missing or malformed variable, named, in one error.
    pub fn from_environment() -> Result<Self, String> {
        let mut problems = Vec::new();
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let mut required = |name: &str| {
            var(name).unwrap_or_else(|| {
                problems.push(format!("{name} is not set"));
                String::new()
            })
        };
        let endpoint = required("DB_ENDPOINT");
        let database = required("DB_NAME");
        let user = required("DB_USER");
        let region = required("AWS_REGION");
        let ca_bundle = required("RDS_CA_CERT");
        let mut number = |name: &str, default: u16| match var(name) {
            None => default,
            Some(text) => text.parse().unwrap_or_else(|_| {
                problems.push(format!("{name}={text} is not a port number"));
                default
            }),
        };
        let port = number("DB_PORT", 5432);
        let listen_port = number("PORT", 8080);
        if !problems.is_empty() {
            return Err(format!(
                "pwless-demo is configured from the environment: {}",
                problems.join("; ")
            ));
        }
        Ok(Config {
            endpoint,
            port,
            database,
            user,
            region,
            ca_bundle: ca_bundle.into(),
            listen_port,
            hostaddr: var("DB_HOSTADDR"),
            tls_server_name: var("DB_TLS_SERVER_NAME"),
        })
    }

    fn target(&self) -> Result<Target, String> {
        let address = self
            .hostaddr
            .as_deref()
            .map(pwless_iam_auth::db::resolve)
            .transpose()
            .map_err(|error| error.to_string())?;
        Ok(Target {
            server_name: self
                .tls_server_name
                .clone()
                .unwrap_or_else(|| self.endpoint.clone()),
            address,
            port: self.port,
            database: self.database.clone(),
            ca_bundle: self.ca_bundle.clone(),
        })
    }
}

/// One report line per user ([`pwless_iam_auth::probe`]): a login as each with a token signed
/// with this process's credentials (the standard chain: IRSA's web identity, Pod Identity's
/// agent), to the configured database over verified TLS. No credentials is a `failed` line
/// for every user.
pub async fn check_logins(config: &Config, users: &[String]) -> Vec<String> {
    use pwless_iam_auth::probe::{Outcome, login};
    let prepared = match config.target() {
        Ok(target) => pwless_iam_auth::token::TokenSigner::from_environment(&config.region)
            .await
            .map(|signer| (target, signer))
            .map_err(|error| pwless_iam_auth::errors::chain(&error)),
        Err(message) => Err(message),
    };
    let mut lines = Vec::with_capacity(users.len());
    for user in users {
        let outcome = match &prepared {
            Ok((target, signer)) => {
                login(signer, &config.endpoint, config.port, target, user).await
            }
            Err(message) => Outcome::Failed {
                message: message.clone(),
            },
        };
        lines.push(outcome.line(user));
    }
    lines
}

pub struct App {
    config: Config,
    pool: IamPool,
    tokens: Arc<TokenCache>,
    sts: aws_sdk_sts::Client,
    /// Who this process is to AWS, asked once (it changes only with new pods).
    caller: tokio::sync::OnceCell<String>,
}

/// The app's pool and router; the token refresher starts on the current runtime.
pub async fn app(config: Config) -> Result<Router, String> {
    let tokens = TokenCache::from_environment(TokenTarget {
        region: config.region.clone(),
        host: config.endpoint.clone(),
        port: config.port,
        user: config.user.clone(),
    })
    .await
    .map_err(|error| error.to_string())?;
    let tokens = Arc::new(tokens);
    let pool = IamPool::new(tokens.clone(), config.target()?, 8, true)
        .map_err(|error| error.to_string())?;
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.region.clone()))
        .load()
        .await;
    let state = Arc::new(App {
        config,
        pool,
        tokens,
        sts: aws_sdk_sts::Client::new(&aws),
        caller: tokio::sync::OnceCell::new(),
    });
    Ok(Router::new()
        .route("/", get(page))
        .route("/table", post(create_table_form))
        .route("/messages", post(add_message_form))
        .route("/api/table", post(create_table_api))
        .route("/api/messages", get(list_api).post(add_message_api))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state))
}

/// An error of a database call, with the status it answers.
struct Failure {
    status: StatusCode,
    message: String,
}

impl From<PoolError> for Failure {
    fn from(error: PoolError) -> Self {
        let status = match error {
            PoolError::Refused { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        Failure {
            status,
            message: pwless_iam_auth::errors::chain(&error),
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        match error.as_db_error() {
            Some(database)
                if *database.code() == tokio_postgres::error::SqlState::UNDEFINED_TABLE =>
            {
                Failure {
                    status: StatusCode::CONFLICT,
                    message: "the messages table does not exist yet: create it first".into(),
                }
            }
            // The message and SQLSTATE only: a DETAIL can hold row data ("Key (email)=(...)
            // already exists"), which a web page must not show to whoever asks.
            Some(database) => Failure {
                status: StatusCode::BAD_GATEWAY,
                message: format!(
                    "the database said: {} (SQLSTATE {})",
                    database.message(),
                    database.code().code()
                ),
            },
            None => Failure {
                status: StatusCode::BAD_GATEWAY,
                message: pwless_iam_auth::errors::chain(&error),
            },
        }
    }
}

fn bad_request(message: impl Into<String>) -> Failure {
    Failure {
        status: StatusCode::BAD_REQUEST,
        message: message.into(),
    }
}

#[derive(serde::Serialize)]
struct Message {
    id: i64,
    text: String,
    created_at: String,
}

async fn create_table(app: &App) -> Result<(), Failure> {
    let client = app.pool.get().await?;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS messages (id bigserial PRIMARY KEY, \
             text text NOT NULL CHECK (char_length(text) BETWEEN 1 AND {MAX_TEXT}), \
             created_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await?;
    Ok(())
}

fn checked_text(text: &str) -> Result<&str, Failure> {
    let text = text.trim();
    if text.is_empty() {
        return Err(bad_request("a message needs some text"));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(bad_request(format!(
            "a message has at most {MAX_TEXT} characters"
        )));
    }
    Ok(text)
}

async fn add_message(app: &App, text: &str) -> Result<Message, Failure> {
    let text = checked_text(text)?;
    let client = app.pool.get().await?;
    let row = client
        .query_one(
            "INSERT INTO messages (text) VALUES ($1) RETURNING id, text, \
             to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[&text],
        )
        .await?;
    Ok(Message {
        id: row.get(0),
        text: row.get(1),
        created_at: row.get(2),
    })
}

async fn messages(app: &App) -> Result<Vec<Message>, Failure> {
    let client = app.pool.get().await?;
    let rows = client
        .query(
            "SELECT id, text, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             FROM messages ORDER BY id DESC LIMIT 100",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| Message {
            id: row.get(0),
            text: row.get(1),
            created_at: row.get(2),
        })
        .collect())
}

/// The passwordless chain as this process sees it, for the page ("How this page logs in").
struct ChainView {
    /// The IAM identity the credentials are (`sts:GetCallerIdentity`), or why unknown.
    caller: Result<String, String>,
    /// How the credentials came: IRSA's web identity, the Pod Identity Agent, or else.
    mechanism: &'static str,
    /// How long ago the pool's current token was signed, and when the next one is.
    token: Option<(std::time::Duration, std::time::Duration)>,
    /// A TLS handshake with the database as the pool makes it.
    tls: Result<pwless_iam_auth::db::TlsFacts, String>,
    /// `current_user` as the database reports it for a pooled connection.
    current_user: Result<String, String>,
}

/// The credentials' source, from the variables EKS's webhooks set (IRSA:
/// `AWS_WEB_IDENTITY_TOKEN_FILE`; Pod Identity: `AWS_CONTAINER_CREDENTIALS_FULL_URI`), in the
/// order the SDKs' default chain takes them after environment keys.
fn mechanism() -> &'static str {
    let set = |name: &str| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    if set("AWS_ACCESS_KEY_ID") {
        "keys in the environment"
    } else if set("AWS_WEB_IDENTITY_TOKEN_FILE") {
        "IRSA (web identity token)"
    } else if set("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        "EKS Pod Identity (the agent)"
    } else {
        "the default credentials chain"
    }
}

async fn chain(app: &App) -> ChainView {
    let caller = app
        .caller
        .get_or_try_init(|| async {
            app.sts
                .get_caller_identity()
                .send()
                .await
                .map(|out| out.arn().unwrap_or_default().to_string())
                .map_err(|error| aws_sdk_sts::error::DisplayErrorContext(error).to_string())
        })
        .await
        .cloned();
    let token = app.tokens.age().await.map(|age| {
        (
            age,
            pwless_iam_auth::pool::REFRESH_EVERY.saturating_sub(age),
        )
    });
    let tls = match app.config.target() {
        Err(message) => Err(message),
        Ok(target) => pwless_iam_auth::db::tls_check_direct(&target)
            .await
            .map_err(|error| error.to_string()),
    };
    let current_user = match app.pool.get().await {
        Err(error) => Err(pwless_iam_auth::errors::chain(&error)),
        Ok(client) => client
            .query_one("select current_user::text", &[])
            .await
            .map(|row| row.get(0))
            .map_err(|error| pwless_iam_auth::db::describe(&error)),
    };
    ChainView {
        caller,
        mechanism: mechanism(),
        token,
        tls,
        current_user,
    }
}

fn render_chain(view: &ChainView) -> String {
    let shown = |value: &Result<String, String>| match value {
        Ok(text) => escape(text),
        Err(error) => format!("<span class=\"error\">{}</span>", escape(error)),
    };
    let token = match view.token {
        Some((age, next)) => format!(
            "signed {} s ago, valid for {} s; the next is signed in {} s",
            age.as_secs(),
            pwless_iam_auth::token::EXPIRES_SECONDS,
            next.as_secs()
        ),
        None => "none signed yet".to_string(),
    };
    let tls = match &view.tls {
        Ok(facts) => format!(
            "{} for <code>{}</code>, verified by <code>{}</code>",
            escape(&facts.version),
            escape(&facts.server_name),
            escape(&facts.ca)
        ),
        Err(error) => format!("<span class=\"error\">{}</span>", escape(error)),
    };
    format!(
        "<h2>How this page logs in</h2>\n<dl id=\"chain\">\
         <dt>Runs as</dt><dd id=\"chain-role\">{role}</dd>\
         <dt>Credentials from</dt><dd id=\"chain-mechanism\">{mechanism}</dd>\
         <dt>IAM auth token</dt><dd id=\"chain-token\">{token}</dd>\
         <dt>TLS</dt><dd id=\"chain-tls\">{tls}</dd>\
         <dt>The database says <code>current_user</code> is</dt><dd id=\"chain-user\">{user}</dd></dl>\n",
        role = shown(&view.caller),
        mechanism = view.mechanism,
        user = shown(&view.current_user),
    )
}

/// HTML escaping for text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn render(
    app: &App,
    listed: &Result<Vec<Message>, Failure>,
    error: Option<&str>,
    chain: &ChainView,
) -> String {
    let config = &app.config;
    let mut body = String::new();
    if let Some(error) = error {
        body.push_str(&format!(
            "<p class=\"error\" id=\"error\" role=\"alert\">{}</p>\n",
            escape(error)
        ));
    }
    match listed {
        Ok(list) if list.is_empty() => {
            body.push_str("<p id=\"empty\">No messages yet.</p>\n<ul id=\"messages\"></ul>\n")
        }
        Ok(list) => {
            body.push_str("<ul id=\"messages\">\n");
            for message in list {
                body.push_str(&format!(
                    "<li data-id=\"{}\"><time>{}</time> <span class=\"text\">{}</span></li>\n",
                    message.id,
                    escape(&message.created_at),
                    escape(&message.text)
                ));
            }
            body.push_str("</ul>\n");
        }
        Err(failure) if error.is_none() => body.push_str(&format!(
            "<p class=\"error\" id=\"error\" role=\"alert\">{}</p>\n",
            escape(&failure.message)
        )),
        Err(_) => {}
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>pwless demo</title>\n\
         <style>body{{font-family:sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}\
         .error{{background:#fde8e8;border:1px solid #e0a0a0;padding:.6rem}}\
         code{{background:#f3f3f3;padding:0 .2rem}} li{{margin:.3rem 0}} time{{color:#777;font-size:.85em}} dt{{font-weight:bold}}</style></head>\n\
         <body><h1>Passwordless PostgreSQL</h1>\n\
         <p>Database <code id=\"endpoint\">{endpoint}:{port}/{database}</code> as IAM user <code id=\"user\">{user}</code>; \
         every connection logs in with a 15-minute IAM token over verified TLS.</p>\n\
         <form method=\"post\" action=\"/table\"><button id=\"create-table\" type=\"submit\">Create the messages table</button></form>\n\
         <form method=\"post\" action=\"/messages\"><input id=\"text\" name=\"text\" maxlength=\"{max}\" required placeholder=\"A message\">\
         <button id=\"add-message\" type=\"submit\">Add</button></form>\n\
         <h2>Messages</h2>\n{body}{chain}</body></html>\n",
        endpoint = escape(&config.endpoint),
        port = config.port,
        database = escape(&config.database),
        user = escape(&config.user),
        max = MAX_TEXT,
        chain = render_chain(chain),
    )
}

async fn page(State(app): State<Arc<App>>) -> Response {
    let listed = messages(&app).await;
    let status = match &listed {
        Ok(_) => StatusCode::OK,
        // No table yet is the start, not an outage.
        Err(failure) if failure.status == StatusCode::CONFLICT => StatusCode::OK,
        Err(failure) => failure.status,
    };
    let chain = chain(&app).await;
    (status, Html(render(&app, &listed, None, &chain))).into_response()
}

/// After a form: back to the page (303), or the page with the error.
async fn after_form(app: &App, result: Result<(), Failure>) -> Response {
    match result {
        Ok(()) => Redirect::to("/").into_response(),
        Err(failure) => {
            let listed = messages(app).await;
            let chain = chain(app).await;
            (
                failure.status,
                Html(render(app, &listed, Some(&failure.message), &chain)),
            )
                .into_response()
        }
    }
}

async fn create_table_form(State(app): State<Arc<App>>) -> Response {
    let result = create_table(&app).await;
    after_form(&app, result).await
}

#[derive(Deserialize)]
struct NewMessage {
    text: String,
}

async fn add_message_form(State(app): State<Arc<App>>, Form(form): Form<NewMessage>) -> Response {
    let result = add_message(&app, &form.text).await.map(drop);
    after_form(&app, result).await
}

fn json_error(failure: Failure) -> Response {
    (
        failure.status,
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({"error": failure.message})),
    )
        .into_response()
}

async fn create_table_api(State(app): State<Arc<App>>) -> Response {
    match create_table(&app).await {
        Ok(()) => Json(json!({"table": "messages"})).into_response(),
        Err(failure) => json_error(failure),
    }
}

async fn add_message_api(
    State(app): State<Arc<App>>,
    body: Result<Json<NewMessage>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(message) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return json_error(Failure {
                status: rejection.status(),
                message: format!(
                    "the body must be JSON {{\"text\": \"...\"}}: {}",
                    rejection.body_text()
                ),
            });
        }
    };
    match add_message(&app, &message.text).await {
        Ok(message) => (StatusCode::CREATED, Json(message)).into_response(),
        Err(failure) => json_error(failure),
    }
}

async fn list_api(State(app): State<Arc<App>>) -> Response {
    match messages(&app).await {
        Ok(list) => Json(list).into_response(),
        Err(failure) => json_error(failure),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn text_is_bounded() {
        assert!(checked_text("   ").is_err());
        assert!(checked_text(&"x".repeat(MAX_TEXT + 1)).is_err());
        assert_eq!(checked_text(" hi ").ok(), Some("hi"));
    }
}
