//! Providers carry out resource changes: create, read (for refresh), update, delete, and adopt
//! (find a resource a crashed run created but did not record).
//!
//! One trait, implemented by each provider: [`aws::AwsProvider`],
//! [`postgres::PostgresProvider`] and [`kubernetes::KubernetesProvider`] (and the test
//! suite's `fake::FakeProvider`); [`Providers`] sends each kind to its own. A provider a stack
//! cannot use (a saved plan carries no database settings) says no in [`Provider::supports`],
//! and apply refuses such plans before changing anything.

pub mod aws;
#[cfg(test)]
pub mod fake;
pub mod kubernetes;
pub mod postgres;
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

impl Applied {
    /// What an in-place update that changes no id or output gives back: the recorded ones.
    pub fn unchanged(resource: &ResourceState) -> Self {
        Applied {
            id: resource.id.clone(),
            outputs: resource.outputs.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Retrying later may succeed (throttling, eventual consistency, a dependency draining).
    Retryable,
    /// The input is wrong or the cloud refuses for good.
    Permanent,
    /// Nothing reached the resource's service (no connection was made, no statement sent):
    /// nothing changed, so the operation is not left pending. Not retried.
    Local,
    /// The resource's unique name is taken by one that is not this stack's (another stack's,
    /// or made outside pwless): nothing was created, the other resource is left alone, and
    /// the operation is not left pending. Not retried.
    Taken,
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

    /// The same error, marked as one that happened before anything reached the service.
    pub fn local(self) -> Self {
        ProviderError {
            kind: ErrorKind::Local,
            ..self
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

/// The providers of one stack, each kind sent to its own.
pub struct Providers {
    /// The AWS configuration the clients were made from (region, credentials chain).
    pub config: aws_config::SdkConfig,
    pub aws: aws::AwsProvider,
    /// Present when the stack has database users to manage.
    pub postgres: Option<postgres::PostgresProvider>,
    /// Shared with the PostgreSQL provider, which reaches the database relay through it.
    pub kubernetes: std::sync::Arc<kubernetes::KubernetesProvider>,
}

impl Providers {
    /// AWS from the standard chain in the stack's region; PostgreSQL (whether or not the stack
    /// still has users: the state may),
    /// with its connection settings from the stack, overridden by the environment
    /// (`PWLESS_DB_CA_BUNDLE`, `PWLESS_DB_ADMIN_ENDPOINT`, `PWLESS_DB_TLS_SERVER_NAME`).
    pub async fn for_stack(stack: &crate::spec::Stack, stack_dir: &std::path::Path) -> Self {
        let config = aws::load_config(&stack.region).await;
        let kubernetes = std::sync::Arc::new(kubernetes::KubernetesProvider::new(
            &stack.region,
            &config,
            kubernetes::KubernetesSettings::from_environment(),
        ));
        let databases = stack
            .databases
            .iter()
            .map(|database| {
                let settings = crate::db::Settings::for_database(stack, database, stack_dir);
                (
                    database.key.clone(),
                    postgres::DatabaseSettings {
                        database: database.name.clone(),
                        master_username: database.master_username.clone(),
                        master_password: database.master_password.clone(),
                        ca_bundle: settings.ca_bundle,
                        ca_bundle_url: settings.ca_bundle_url,
                        admin_endpoint: settings.admin_endpoint,
                        tls_server_name: settings.tls_server_name,
                    },
                )
            })
            .collect();
        // Always there (it connects only when used): a stack whose last user was removed must
        // still be able to drop the users its state holds.
        let postgres = Some(postgres::PostgresProvider::new(
            postgres::PostgresSettings {
                stack: stack.name.clone(),
                databases,
            },
            &config,
            kubernetes.clone(),
        ));
        Providers {
            aws: aws::AwsProvider::from_config(&stack.name, &config),
            postgres,
            kubernetes,
            config,
        }
    }

    /// AWS and Kubernetes (a saved plan carries no database settings).
    pub async fn aws_only(stack: &str, region: &str) -> Self {
        let config = aws::load_config(region).await;
        Providers {
            aws: aws::AwsProvider::from_config(stack, &config),
            postgres: None,
            kubernetes: std::sync::Arc::new(kubernetes::KubernetesProvider::new(
                region,
                &config,
                kubernetes::KubernetesSettings::from_environment(),
            )),
            config,
        }
    }

    fn postgres(&self, kind: ResourceKind) -> Result<&postgres::PostgresProvider, ProviderError> {
        self.postgres.as_ref().ok_or_else(|| {
            ProviderError::permanent(format!("{kind} needs the stack's database settings"))
        })
    }
}

/// Sends a call to the provider of `$kind`: the same trait method on each.
macro_rules! dispatch {
    ($self:ident, $kind:expr, $provider:ident => $call:expr) => {
        match $kind.provider() {
            crate::graph::Provider::Aws => {
                let $provider = &$self.aws;
                $call.await
            }
            crate::graph::Provider::Postgres => {
                let $provider = $self.postgres($kind)?;
                $call.await
            }
            crate::graph::Provider::Kubernetes => {
                let $provider = &*$self.kubernetes;
                $call.await
            }
        }
    };
}

impl Provider for Providers {
    fn supports(&self, kind: ResourceKind) -> bool {
        match kind.provider() {
            crate::graph::Provider::Aws => self.aws.supports(kind),
            crate::graph::Provider::Postgres => self
                .postgres
                .as_ref()
                .is_some_and(|postgres| postgres.supports(kind)),
            crate::graph::Provider::Kubernetes => self.kubernetes.supports(kind),
        }
    }

    async fn create(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Applied, ProviderError> {
        dispatch!(self, kind, provider => provider.create(address, kind, inputs))
    }

    async fn read(&self, resource: &ResourceState) -> Result<Observed, ProviderError> {
        dispatch!(self, resource.kind, provider => provider.read(resource))
    }

    async fn update(
        &self,
        resource: &ResourceState,
        inputs: &Inputs,
        changed: &[String],
    ) -> Result<Applied, ProviderError> {
        dispatch!(self, resource.kind, provider => provider.update(resource, inputs, changed))
    }

    async fn delete(&self, resource: &ResourceState) -> Result<(), ProviderError> {
        dispatch!(self, resource.kind, provider => provider.delete(resource))
    }

    async fn adopt(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Option<Applied>, ProviderError> {
        dispatch!(self, kind, provider => provider.adopt(address, kind, inputs))
    }
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

/// What a `tags` update must do, from the tags the resource has (`prior`, recorded or observed)
/// to the wanted ones: the keys to remove, and the tags to add or change. Every AWS service's
/// tag call refuses an empty list, so the caller skips an empty half.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct TagChanges {
    pub removed: Vec<String>,
    pub set: Vec<(String, String)>,
}

pub(crate) fn tag_changes(prior: &Inputs, wanted: &Inputs) -> TagChanges {
    let had: BTreeMap<String, String> = input_tags(prior).into_iter().collect();
    let want: BTreeMap<String, String> = input_tags(wanted).into_iter().collect();
    TagChanges {
        removed: had
            .keys()
            .filter(|key| !want.contains_key(*key))
            .cloned()
            .collect(),
        set: want
            .into_iter()
            .filter(|(key, value)| had.get(key) != Some(value))
            .collect(),
    }
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
