//! The integration tests: one binary, a module per area (see docs/ARCHITECTURE.md).

mod aws;
mod backends;
mod ca_bundle;
mod cli;
mod common;
mod demo;
mod existing;
mod front_door;
mod iam_login;
mod kubernetes;
mod manifests;
mod planner;
mod postgres;
mod relay;
mod robustness;
mod snapshots;
mod spec_errors;
mod state;
mod token;
