//! A PostgreSQL connection pool for IAM database authentication: every new connection gets a
//! valid token, and nobody waits for one.
//!
//! - [`TokenCache`] keeps the current token. One background task signs a new one every
//!   [`REFRESH_EVERY`] (credentials come from the standard chain, whose provider caches and
//!   renews them — IRSA web identity, Pod Identity, env), so connections take a token that is
//!   minutes old out of memory. Should the task fall behind, the first caller to find the token
//!   older than [`STALE_AFTER`] signs one under a lock while the others wait for it (single
//!   flight), never a herd.
//! - [`IamPool`] is a deadpool pool of `tokio_postgres::Client`s over verified TLS
//!   ([`crate::db::connect`]); a connection outlives its token, as on RDS (the token is checked
//!   at login only). A token the database refuses is an [`PoolError::Refused`] that says what
//!   to check.
//!
//! Tokens never leave this module except into the connection's password.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use deadpool::managed::{self, Metrics, RecycleResult};

/// The deadpool types this pool's API hands out (a connection is an [`Object`], [`Manager`]
/// makes one outside the pool), so users need not depend on deadpool themselves.
pub use deadpool::managed::{Manager, Object, Status};

use crate::db::{DbError, Target};
use crate::secret::Secret;
use crate::token::{AuthToken, SigningCredentials, TokenError, TokenSigner};

/// How often the background task signs a new token (RDS accepts one for 15 minutes).
pub const REFRESH_EVERY: Duration = Duration::from_secs(5 * 60);
/// A token older than this is not handed out: a new one is signed first.
pub const STALE_AFTER: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(
        "the database refused the IAM token for user `{user}` ({message}): the user must be a member of rds_iam, and the caller's IAM policy must allow rds-db:connect on its dbuser ARN (arn:aws:rds-db:<region>:<account>:dbuser:<cluster resource id>/{user})"
    )]
    Refused { user: String, message: String },
    #[error(transparent)]
    Connect(DbError),
    #[error("no connection from the pool: {0}")]
    Pool(String),
}

/// Where signing credentials come from.
enum Credentials {
    /// The standard chain's provider (it caches and renews).
    Chain(SharedCredentialsProvider),
    /// Fixed credentials (tests, benchmarks).
    Fixed(SigningCredentials),
}

struct Cached {
    token: AuthToken,
    signed_at: Instant,
}

/// What the token is for: the endpoint signed (the cluster's, even through a tunnel).
#[derive(Debug, Clone)]
pub struct TokenTarget {
    pub region: String,
    pub host: String,
    pub port: u16,
    pub user: String,
}

/// The current token of one database user, refreshed ahead of expiry.
pub struct TokenCache {
    credentials: Credentials,
    target: TokenTarget,
    current: tokio::sync::RwLock<Option<Cached>>,
    signing: tokio::sync::Mutex<()>,
    /// Tokens signed (by the task or by callers that found the cache stale).
    pub signed: AtomicU64,
    /// Tokens handed out from memory.
    pub served_from_cache: AtomicU64,
}

impl TokenCache {
    /// Credentials from the standard AWS chain; the region is required (never guessed).
    pub async fn from_environment(target: TokenTarget) -> Result<Self, TokenError> {
        if target.region.is_empty() {
            return Err(TokenError::NoRegion);
        }
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(target.region.clone()))
            .load()
            .await;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| TokenError::NoCredentials("no provider configured".into()))?;
        Ok(Self::new(Credentials::Chain(provider), target))
    }

    pub fn with_credentials(credentials: SigningCredentials, target: TokenTarget) -> Self {
        Self::new(Credentials::Fixed(credentials), target)
    }

    fn new(credentials: Credentials, target: TokenTarget) -> Self {
        TokenCache {
            credentials,
            target,
            current: tokio::sync::RwLock::new(None),
            signing: tokio::sync::Mutex::new(()),
            signed: AtomicU64::new(0),
            served_from_cache: AtomicU64::new(0),
        }
    }

    async fn signing_credentials(&self) -> Result<SigningCredentials, TokenError> {
        match &self.credentials {
            Credentials::Fixed(credentials) => Ok(credentials.clone()),
            Credentials::Chain(provider) => {
                let credentials = provider
                    .provide_credentials()
                    .await
                    .map_err(|error| TokenError::NoCredentials(error.to_string()))?;
                Ok(SigningCredentials::from(&credentials))
            }
        }
    }

    /// Signs a token now (fresh credentials from the provider), without the cache.
    pub async fn sign(&self) -> Result<AuthToken, TokenError> {
        let signer = TokenSigner::new(self.signing_credentials().await?, &self.target.region)?;
        let token = signer.token(
            &self.target.host,
            self.target.port,
            &self.target.user,
            SystemTime::now(),
        )?;
        self.signed.fetch_add(1, Ordering::Relaxed);
        Ok(token)
    }

    /// Signs a new token and makes it the current one.
    pub async fn refresh(&self) -> Result<(), TokenError> {
        let _one_at_a_time = self.signing.lock().await;
        let token = self.sign().await?;
        *self.current.write().await = Some(Cached {
            token,
            signed_at: Instant::now(),
        });
        Ok(())
    }

    /// How long ago the current token was signed; `None` before the first.
    pub async fn age(&self) -> Option<Duration> {
        self.current
            .read()
            .await
            .as_ref()
            .map(|cached| cached.signed_at.elapsed())
    }

    /// The current token, signed first if there is none or it is stale. Concurrent callers
    /// that find it stale wait for one signature.
    pub async fn token(&self) -> Result<AuthToken, TokenError> {
        let fresh = |cached: &Option<Cached>| {
            cached
                .as_ref()
                .filter(|cached| cached.signed_at.elapsed() < STALE_AFTER)
                .map(|cached| cached.token.clone())
        };
        if let Some(token) = fresh(&*self.current.read().await) {
            self.served_from_cache.fetch_add(1, Ordering::Relaxed);
            return Ok(token);
        }
        let _one_at_a_time = self.signing.lock().await;
        // Someone may have signed while this caller waited.
        if let Some(token) = fresh(&*self.current.read().await) {
            self.served_from_cache.fetch_add(1, Ordering::Relaxed);
            return Ok(token);
        }
        let token = self.sign().await?;
        *self.current.write().await = Some(Cached {
            token: token.clone(),
            signed_at: Instant::now(),
        });
        Ok(token)
    }
}

/// Creates connections with the cached token (or, with `cache: false`, a token signed for
/// each connection: what pools without a cache do; kept for comparison).
pub struct IamManager {
    tokens: Arc<TokenCache>,
    target: Target,
    cache: bool,
    /// Total time spent getting tokens for new connections, in nanoseconds.
    pub token_nanos: AtomicU64,
    /// Total time spent opening new connections (token included), in nanoseconds.
    pub connect_nanos: AtomicU64,
}

fn refused(user: &str, error: &DbError) -> Option<PoolError> {
    match crate::probe::refused_or_failed(error) {
        crate::probe::Outcome::Refused { message } => Some(PoolError::Refused {
            user: user.to_string(),
            message,
        }),
        _ => None,
    }
}

impl managed::Manager for IamManager {
    type Type = tokio_postgres::Client;
    type Error = PoolError;

    async fn create(&self) -> Result<tokio_postgres::Client, PoolError> {
        let started = Instant::now();
        let token = if self.cache {
            self.tokens.token().await?
        } else {
            self.tokens.sign().await?
        };
        self.token_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let user = &self.tokens.target.user;
        let password = Secret::new(token.expose().to_string());
        let client = crate::db::connect(&self.target, user, &password)
            .await
            .map_err(|error| refused(user, &error).unwrap_or(PoolError::Connect(error)))?;
        self.connect_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        Ok(client)
    }

    async fn recycle(
        &self,
        client: &mut tokio_postgres::Client,
        _metrics: &Metrics,
    ) -> RecycleResult<PoolError> {
        // A live connection stays good after its token expires: RDS checks tokens at login.
        if client.is_closed() {
            return Err(managed::RecycleError::Message(
                "the connection closed".into(),
            ));
        }
        Ok(())
    }
}

/// A pool of IAM-authenticated connections to one database user.
pub struct IamPool {
    pool: managed::Pool<IamManager>,
    refresher: tokio::task::JoinHandle<()>,
    /// The background refresh's last error, cleared by its next success.
    refresh_error: Arc<std::sync::Mutex<Option<String>>>,
}

impl IamPool {
    /// A pool of at most `max_size` connections to `target` as the cache's user; spawns the
    /// token refresher on the current runtime (it stops with the pool).
    pub fn new(
        tokens: Arc<TokenCache>,
        target: Target,
        max_size: usize,
        cache: bool,
    ) -> Result<Self, PoolError> {
        let manager = IamManager {
            tokens: tokens.clone(),
            target,
            cache,
            token_nanos: AtomicU64::new(0),
            connect_nanos: AtomicU64::new(0),
        };
        let pool = managed::Pool::builder(manager)
            .max_size(max_size)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|error| PoolError::Pool(error.to_string()))?;
        let refresh_error = Arc::new(std::sync::Mutex::new(None));
        let last_error = refresh_error.clone();
        let refresher = tokio::spawn(async move {
            loop {
                // A failure is kept for `refresh_error`, not printed (a library does not write
                // to the application's stderr): the next connection signs a token itself and
                // reports the error to its caller.
                let result = tokens.refresh().await.err().map(|error| error.to_string());
                if let Ok(mut last) = last_error.lock() {
                    *last = result;
                }
                tokio::time::sleep(REFRESH_EVERY).await;
            }
        });
        Ok(IamPool {
            pool,
            refresher,
            refresh_error,
        })
    }

    /// Why the background token refresh last failed; `None` when its last try succeeded (or
    /// none has run yet).
    pub fn refresh_error(&self) -> Option<String> {
        self.refresh_error.lock().ok().and_then(|last| last.clone())
    }

    /// A connection: an idle one, or a new one with the current token.
    pub async fn get(&self) -> Result<managed::Object<IamManager>, PoolError> {
        self.pool.get().await.map_err(|error| match error {
            managed::PoolError::Backend(error) => error,
            other => PoolError::Pool(other.to_string()),
        })
    }

    pub fn manager(&self) -> &IamManager {
        self.pool.manager()
    }

    pub fn status(&self) -> managed::Status {
        self.pool.status()
    }
}

impl Drop for IamPool {
    fn drop(&mut self) {
        self.refresher.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> TokenCache {
        TokenCache::with_credentials(
            SigningCredentials {
                access_key_id: "AKIDEXAMPLE".into(),
                secret_access_key: Secret::new("secret".into()),
                session_token: None,
            },
            TokenTarget {
                region: "us-west-2".into(),
                host: "db.example".into(),
                port: 5432,
                user: "app_user".into(),
            },
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_callers_on_an_empty_cache_wait_for_one_signature() {
        let cache = Arc::new(cache());
        let callers: Vec<_> = (0..64)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(
                    async move { cache.token().await.map(|token| token.expose().to_string()) },
                )
            })
            .collect();
        let mut tokens = Vec::new();
        for caller in callers {
            tokens.push(caller.await.unwrap().unwrap());
        }
        assert_eq!(
            cache.signed.load(Ordering::Relaxed),
            1,
            "one signature for the herd"
        );
        assert!(tokens.windows(2).all(|pair| pair[0] == pair[1]));
        assert_eq!(cache.served_from_cache.load(Ordering::Relaxed), 63);
    }

    #[tokio::test]
    async fn a_refresh_replaces_the_token_callers_get() {
        let cache = cache();
        let first = cache.token().await.unwrap();
        // A later second: SigV4 signatures change with the time.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        cache.refresh().await.unwrap();
        let second = cache.token().await.unwrap();
        assert_ne!(first.expose(), second.expose());
        assert_eq!(cache.signed.load(Ordering::Relaxed), 2);
    }
}
