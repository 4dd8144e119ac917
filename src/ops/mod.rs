//! The operations behind the commands, as library calls with typed results: the CLI parses,
//! calls one of these, and renders what it returns (terraform's `backend/local` operations,
//! pulumi's `engine` package: the command line is a thin client of both).
//!
//! - [`run`]: plan, apply and destroy: lock and read the state, settle what a dead run left
//!   pending, refresh, plan, check what apply needs (`preflight`), carry the plan out, and let
//!   go of the lock whatever happened.
//! - [`discover`]: reads what the stack references but does not manage (`network.existing`,
//!   `cluster.existing`) and fills in the stack's facts, before the graph is made.
//! - [`import`]: brings an existing resource into the state under an address of the stack.
//! - [`preflight`]: what must hold before apply changes anything.
//! - [`outputs`]: what an applied stack offers its users ([`outputs::StackOutputs`]), read from
//!   the state, for `pwless output`, apply's summary, `token`, `connect` and the sandbox.
//! - [`state`]: `state push` (lineage and serial rules) and `state migrate` (mark, copy,
//!   verify).
//!
//! None of them prints: progress goes to an [`crate::exec::Events`] sink, the rest is in what
//! they return. Their errors are one of [`UserError`] (exit 1), [`Bug`] (exit 70),
//! [`Interrupted`] and [`Cancelled`] (exit 130), or an error from below with its cause (exit 1).

pub mod discover;
pub mod doctor;
pub mod import;
pub mod outputs;
pub mod preflight;
pub mod run;
pub mod state;
pub mod verify;

/// An error in what the user gave us (input, files, environment, the state's history): exit 1.
/// The message names what is wrong and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// A run stopped by a second Ctrl-C: exit 130. What was in flight stays pending in the state.
#[derive(Debug, thiserror::Error)]
#[error(
    "{summary}\n  in flight, left pending for the next run to settle: {}\nThe state records everything that was done; run apply again to continue.",
    if abandoned.is_empty() { "nothing".to_string() } else { abandoned.join(", ") }
)]
pub struct Interrupted {
    pub summary: String,
    pub abandoned: Vec<String>,
}

/// A command stopped by Ctrl-C before it changed anything in the cloud (while planning, or at
/// the question): exit 130. The lock was let go.
#[derive(Debug, thiserror::Error)]
#[error("{0} stopped by Ctrl-C; nothing in the cloud was changed")]
pub struct Cancelled(pub &'static str);

/// An error that means pwless itself is wrong: exit 70 and ask for a report.
#[derive(Debug, thiserror::Error)]
#[error("internal error: {0} (this is a bug in pwless; please report it with the stack file)")]
pub struct Bug(pub String);
