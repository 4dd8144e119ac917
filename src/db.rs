//! pwless's own database connection settings for a stack ([`Settings`]); the connections
//! themselves are the IAM-auth library's ([`pwless_iam_auth::db`], re-exported here).

use std::path::{Path, PathBuf};

pub use pwless_iam_auth::db::*;

/// The environment variables that override one database's connection settings: with several
/// databases in a stack they would not say which, and loading the stack refuses them
/// ([`crate::spec::SpecError::AmbiguousOverride`]).
pub const ONE_DATABASE_OVERRIDES: [&str; 2] =
    ["PWLESS_DB_ADMIN_ENDPOINT", "PWLESS_DB_TLS_SERVER_NAME"];

/// pwless's own connection settings for one database of a stack: its keys (`ca_bundle`,
/// `admin_endpoint`, `tls_server_name`), each overridden by the environment
/// (`PWLESS_DB_CA_BUNDLE`, and for a stack with one database `PWLESS_DB_ADMIN_ENDPOINT`,
/// `PWLESS_DB_TLS_SERVER_NAME`); a relative path starts at the stack file's directory. Without
/// a bundle named, `global-bundle.pem` beside the stack file, else the user's cached copy of
/// the RDS bundle ([`crate::ca_bundle`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub ca_bundle: PathBuf,
    /// Where to fetch the CA bundle from when `ca_bundle` is the user's cache and not there
    /// yet ([`crate::ca_bundle`]); `None` when the user named the bundle.
    pub ca_bundle_url: Option<String>,
    pub admin_endpoint: Option<String>,
    pub tls_server_name: Option<String>,
}

impl Settings {
    pub fn for_database(
        stack: &crate::spec::Stack,
        database: &crate::spec::model::Database,
        stack_dir: &Path,
    ) -> Self {
        let connection = &database.connection;
        let setting = |variable: &str, from_stack: &Option<String>| {
            std::env::var(variable)
                .ok()
                .filter(|value| !value.is_empty())
                .or_else(|| from_stack.clone())
        };
        // The user's bundle, else one beside the stack file, else the cache (fetched when
        // first needed); with no cache directory at all, the file beside the stack.
        let beside = stack_dir.join("global-bundle.pem");
        let (ca_bundle, ca_bundle_url) = match setting("PWLESS_DB_CA_BUNDLE", &connection.ca_bundle)
        {
            Some(path) => (stack_dir.join(path), None),
            None if beside.exists() => (beside, None),
            None => match crate::ca_bundle::cache_path(&stack.region) {
                Some(cached) => (cached, Some(crate::ca_bundle::url(&stack.region))),
                None => (beside, None),
            },
        };
        Settings {
            ca_bundle,
            ca_bundle_url,
            admin_endpoint: setting("PWLESS_DB_ADMIN_ENDPOINT", &connection.admin_endpoint),
            tls_server_name: setting("PWLESS_DB_TLS_SERVER_NAME", &connection.tls_server_name),
        }
    }
}
