//! Providers carry out resource changes: create, read (for refresh), update, delete, and adopt
//! (find a resource a crashed run created but did not record).
//!
//! One trait; today one implementation, [`aws::AwsProvider`]. The PostgreSQL and Kubernetes
//! providers come with issues 4 and 5; until then [`Provider::supports`] says no for their
//! kinds and apply refuses such plans before changing anything.

pub mod aws;
pub mod wait;

use std::collections::BTreeMap;
use std::future::Future;

use serde_json::Value;

use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::state::ResourceState;

pub type Inputs = BTreeMap<String, Value>;

/// What a create or update leaves behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub id: Option<String>,
    pub outputs: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retrying later may succeed (throttling, eventual consistency, a dependency draining).
    Retryable,
    /// The input is wrong or the cloud refuses for good.
    Permanent,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// The service's error code, e.g. `DependencyViolation`.
    pub code: Option<String>,
    pub message: String,
}

impl ProviderError {
    pub fn permanent(message: impl Into<String>) -> Self {
        ProviderError {
            kind: ErrorKind::Permanent,
            code: None,
            message: message.into(),
        }
    }
}

pub trait Provider: Send + Sync {
    /// Whether this provider can change resources of `kind`.
    fn supports(&self, kind: ResourceKind) -> bool;

    fn create(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> impl Future<Output = Result<Applied, ProviderError>> + Send;

    /// The resource as it is now; [`Observed::Missing`] when it is gone. Not-found is an
    /// answer, not an error.
    fn read(
        &self,
        resource: &ResourceState,
    ) -> impl Future<Output = Result<Observed, ProviderError>> + Send;

    /// Changes `changed` inputs of a live resource to their values in `inputs`.
    fn update(
        &self,
        resource: &ResourceState,
        inputs: &Inputs,
        changed: &[String],
    ) -> impl Future<Output = Result<Applied, ProviderError>> + Send;

    /// Deletes it and waits until it is gone. Already gone is success.
    fn delete(
        &self,
        resource: &ResourceState,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send;

    /// Finds a resource created for `address` whose create was interrupted before it was
    /// recorded (by its `pwless:address` tag or its deterministic name).
    fn adopt(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> impl Future<Output = Result<Option<Applied>, ProviderError>> + Send;
}

/// Typed access to resolved inputs, with errors that name the input.
pub(crate) fn input_str<'a>(inputs: &'a Inputs, name: &str) -> Result<&'a str, ProviderError> {
    inputs.get(name).and_then(Value::as_str).ok_or_else(|| {
        ProviderError::permanent(format!("input `{name}` is missing or not a string"))
    })
}

pub(crate) fn input_bool(inputs: &Inputs, name: &str) -> Result<bool, ProviderError> {
    inputs.get(name).and_then(Value::as_bool).ok_or_else(|| {
        ProviderError::permanent(format!("input `{name}` is missing or not a boolean"))
    })
}

pub(crate) fn input_i64(inputs: &Inputs, name: &str) -> Result<i64, ProviderError> {
    inputs.get(name).and_then(Value::as_i64).ok_or_else(|| {
        ProviderError::permanent(format!("input `{name}` is missing or not a number"))
    })
}

pub(crate) fn input_strings(inputs: &Inputs, name: &str) -> Result<Vec<String>, ProviderError> {
    inputs
        .get(name)
        .and_then(Value::as_array)
        .and_then(|items| {
            items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .ok_or_else(|| {
            ProviderError::permanent(format!(
                "input `{name}` is missing or not a list of strings"
            ))
        })
}

/// The `tags` input as pairs, sorted by key.
pub(crate) fn input_tags(inputs: &Inputs) -> Vec<(String, String)> {
    inputs
        .get("tags")
        .and_then(Value::as_object)
        .map(|tags| {
            tags.iter()
                .filter_map(|(key, value)| {
                    value.as_str().map(|value| (key.clone(), value.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Tags as the `tags` input value.
pub(crate) fn tags_value(tags: impl IntoIterator<Item = (String, String)>) -> Value {
    Value::Object(
        tags.into_iter()
            .map(|(key, value)| (key, Value::String(value)))
            .collect(),
    )
}

/// `prior` with `observed` values laid over it: what a read could see replaces what was
/// recorded, what it cannot see stays as recorded.
pub(crate) fn overlay(
    prior: &Inputs,
    observed: impl IntoIterator<Item = (&'static str, Value)>,
) -> Inputs {
    let mut inputs = prior.clone();
    for (name, value) in observed {
        inputs.insert(name.to_string(), value);
    }
    inputs
}
