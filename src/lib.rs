//! pwless: passwordless PostgreSQL on AWS, declared in one YAML stack file.
//!
//! A tour, in the order data flows (docs/ARCHITECTURE.md has the long form):
//!
//! - [`spec`]: the stack file. YAML text becomes a node tree that remembers line and column
//!   ([`spec::yaml`]), which the validator turns into a typed [`spec::Stack`], reporting every
//!   problem with its place and fix ([`spec::SpecErrors`]).
//! - [`graph`]: the stack expanded into the low-level resources pwless manages
//!   ([`graph::expand`]), each a [`graph::Resource`] of a [`graph::ResourceKind`] whose inputs
//!   may reference other resources' outputs ([`graph::Expr`]); a petgraph DAG whose edges
//!   mean "must happen after" ([`graph::ResourceGraph`]).
//! - [`state`]: the JSON state (version, lineage, serial, resources, pending operations) and
//!   its store ([`state::StateStore`]): a lock, and compare-and-swap writes, over a local file,
//!   S3 or PostgreSQL.
//! - [`plan`]: the planner, a pure function of (graph, prior state, observed state, mode)
//!   giving a complete [`plan::Plan`]; destroy is a mode of the same planner.
//! - [`render`]: one plan, rendered for people (the `+ ~ -/+ -` legend) and as JSON; the
//!   executor's events as progress lines or JSON lines ([`render::progress`]).
//! - [`exec`]: the executor, a DAG walk over the plan's operations with every side effect
//!   journaled ([`exec::journal`]); [`exec::recover`] settles what a dead run left pending and
//!   [`exec::refresh`] reads what is live. It reports [`exec::Event`]s and prints nothing.
//! - [`ops`]: the operations behind the commands (plan, apply, destroy, state push and
//!   migrate, the stack's outputs, the preflight), as library calls with typed results; the
//!   CLI parses, calls one, and renders what it returns.
//! - [`provider`]: one contract ([`provider::Provider`]: create, read, update, delete, adopt)
//!   carried out for AWS, PostgreSQL and Kubernetes.
//! - [`token`], [`db`], [`pool`], [`secret`], [`errors`]: IAM database tokens, verified-TLS
//!   connections, a token-refreshing pool, a type that keeps secrets out of output, and error
//!   chains, from the `pwless-iam-auth` crate (crates/iam-auth, re-exported); [`db::Settings`]
//!   is pwless's own connection settings for a stack. The demo web app built on them is the
//!   `pwless-demo` crate (crates/demo). [`eks_token`]: EKS bearer tokens.
//! - [`kubernetes`]: the Kubernetes objects of a stack (service accounts, the demo app, the
//!   relay's objects).
//! - [`sandbox`] (the `pwless-sandbox` crate, crates/sandbox): acting as a service account
//!   without a cluster (`pwless sandbox run`: what
//!   EKS's pod identity webhook and STS would do for a pod).
//! - [`relay`]: the database relay in the EKS cluster, pwless's path to a private database.
//! - [`ca_bundle`]: the RDS CA bundle, found or fetched and cached.
//! - [`cli`]: the commands; `main.rs` only calls [`cli::main`].
//!
//! Test support (the sandboxes as fixtures, fabricated states and stacks) is the
//! `pwless-testing` crate (crates/testing), a dev-dependency only.

// Library code reports through return values and `exec::Events`; only `cli`, the command
// line's edge, writes to stdout and stderr (`clippy.toml` also disallows `std::io::stdout`
// and `std::io::stderr`, which `writeln!` would otherwise reach unnoticed).
#![deny(clippy::print_stdout, clippy::print_stderr)]
// The futures of a run nest deeply (ops -> executor -> providers -> the SDKs' orchestrators):
// computing their layout needs more than the default 128 levels.
#![recursion_limit = "256"]

pub mod ca_bundle;
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::disallowed_methods,
    reason = "the command line's edge: the one place that writes to the terminal"
)]
pub mod cli;
pub mod db;
pub mod eks_token;
pub mod exec;
pub mod graph;
pub mod kubernetes;
pub mod ops;
pub mod partition;
pub mod plan;
pub mod provider;
pub mod relay;
pub mod render;
pub mod spec;
pub mod state;

// The IAM-auth library's modules, under the names pwless has always given them.
pub use pwless_iam_auth::{errors, pool, secret, token};
// The sandbox's tools (crates/sandbox), for `pwless sandbox run`.
pub use pwless_sandbox as sandbox;
