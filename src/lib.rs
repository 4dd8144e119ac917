//! pwless: declarative passwordless PostgreSQL on AWS.
pub mod cli;
pub mod graph;
pub mod plan;
pub mod render;
pub mod spec;
pub mod state;
#[doc(hidden)]
pub mod testing;
