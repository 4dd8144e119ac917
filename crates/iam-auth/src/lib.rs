//! IAM database authentication for Aurora PostgreSQL, for applications and for pwless itself.
//!
//! - [`token`]: RDS IAM auth tokens (SigV4 presigned `connect` URLs for `rds-db`, valid 900 s),
//!   byte for byte what botocore's `generate_db_auth_token` makes.
//! - [`db`]: connections over verified TLS (`verify-full` semantics, rustls), to an endpoint
//!   name checked in the certificate while the TCP connection may go elsewhere (a tunnel).
//! - [`pool`]: a deadpool pool whose new connections take a cached token that one task
//!   refreshes.
//! - [`probe`]: one login with a token and its one-line report (`pwless verify`'s Jobs).
//! - [`secret`]: a value whose `Debug` and `Display` never show it.
//! - [`errors`]: an error and its causes as one line for people.
//!
//! It depends on no Kubernetes client and no EC2 or EKS SDK: an application's image stays
//! small. It never writes to stdout or stderr.

#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod db;
pub mod errors;
pub mod pool;
pub mod probe;
pub mod secret;
pub mod token;
