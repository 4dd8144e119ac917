//! A provider that keeps its resources in memory, for the executor's table tests: the
//! engine's lifecycle (ordering, replace, failure, cancellation, recovery, adoption) without a
//! cloud. After pulumi's `pkg/resource/deploy/deploytest/provider.go`: the real [`Provider`]
//! contract, with the behaviour a test needs given as data and function fields.
//!
//! It is no stand-in for AWS, PostgreSQL or Kubernetes (their providers are tested against moto,
//! a real PostgreSQL and the Kubernetes API stand-in): it checks no input and waits for nothing.
//! Test-only (`cfg(test)`). It stays in this crate, not in the test-support crate
//! (crates/testing): the executor's table tests are unit tests, and a crate that depends on
//! pwless cannot reach them (its `pwless` is another copy of the crate than the one under test).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;

use super::{Applied, Inputs, Provider, ProviderError};
use crate::graph::ResourceKind;
use crate::plan::Observed;
use crate::state::ResourceState;

/// A provider call, as the fake's log and its failure table name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    Create,
    Read,
    Update,
    Delete,
    Adopt,
}

/// Runs at the start of a call, before the fake decides its answer: a test's way to act while
/// an operation is in flight (Ctrl-C, a state written behind the journal's back).
pub type Hook = Box<dyn Fn(Call, &str) + Send + Sync>;

#[derive(Debug, Clone)]
struct Live {
    id: String,
    inputs: Inputs,
    outputs: BTreeMap<String, Value>,
}

#[derive(Default)]
struct World {
    /// What exists, by address.
    live: BTreeMap<String, Live>,
    /// `creating X`, `created X`, `deleting X`, … in the order they happened.
    log: Vec<String>,
    failures: BTreeMap<(Call, String), ProviderError>,
    next_id: u64,
}

#[derive(Default)]
pub struct FakeProvider {
    world: Mutex<World>,
    hook: Option<Hook>,
    unsupported: Vec<ResourceKind>,
    /// Addresses whose calls never answer (a cloud call in flight when the run is stopped).
    hanging: Vec<String>,
}

impl FakeProvider {
    pub fn new() -> Self {
        FakeProvider::default()
    }

    /// `call` on `address` answers `error` (every time).
    pub fn failing(self, call: Call, address: &str, error: ProviderError) -> Self {
        self.world()
            .failures
            .insert((call, address.to_string()), error);
        self
    }

    /// `address` exists already (made by a run whose create was never recorded).
    pub fn with_live(self, address: &str, id: &str) -> Self {
        self.world().live.insert(
            address.to_string(),
            Live {
                id: id.to_string(),
                inputs: Inputs::new(),
                outputs: BTreeMap::from([("id".to_string(), Value::String(id.to_string()))]),
            },
        );
        self
    }

    pub fn with_hook(mut self, hook: Hook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Every call on `address` waits for ever, after its hook ran.
    pub fn hanging(mut self, address: &str) -> Self {
        self.hanging.push(address.to_string());
        self
    }

    /// A kind this provider says it cannot manage ([`Provider::supports`]).
    pub fn without(mut self, kind: ResourceKind) -> Self {
        self.unsupported.push(kind);
        self
    }

    /// Every call so far: `creating X` when it began, `created X` when it took effect.
    pub fn log(&self) -> Vec<String> {
        self.world().log.clone()
    }

    /// The addresses that exist now.
    pub fn live(&self) -> Vec<String> {
        self.world().live.keys().cloned().collect()
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        // A test that panicked while holding the lock has failed already.
        self.world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Logs the start of `call`, runs the hook, lets other operations run, and gives the
    /// failure the table holds for it, if any.
    async fn begin(&self, call: Call, address: &str) -> Result<(), ProviderError> {
        let word = match call {
            Call::Create => "creating",
            Call::Read => "reading",
            Call::Update => "updating",
            Call::Delete => "deleting",
            Call::Adopt => "looking for",
        };
        self.world().log.push(format!("{word} {address}"));
        if let Some(hook) = &self.hook {
            hook(call, address);
        }
        if self.hanging.iter().any(|hanging| hanging == address) {
            std::future::pending::<()>().await;
        }
        // Operations in flight interleave, as cloud calls do.
        tokio::task::yield_now().await;
        match self.world().failures.get(&(call, address.to_string())) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

impl Provider for FakeProvider {
    fn supports(&self, kind: ResourceKind) -> bool {
        !self.unsupported.contains(&kind)
    }

    async fn create(
        &self,
        address: &str,
        kind: ResourceKind,
        inputs: &Inputs,
    ) -> Result<Applied, ProviderError> {
        self.begin(Call::Create, address).await?;
        let mut world = self.world();
        world.next_id += 1;
        let id = format!("fake-{}", world.next_id);
        let outputs: BTreeMap<String, Value> = kind
            .outputs()
            .iter()
            .map(|output| {
                let value = match *output {
                    "id" => Value::String(id.clone()),
                    // An output that echoes its input (a deterministic name) is that input.
                    echoed
                        if kind.echoed_outputs().contains(&echoed)
                            && inputs.contains_key(echoed) =>
                    {
                        inputs[echoed].clone()
                    }
                    other => Value::String(format!("{address}.{other}")),
                };
                (output.to_string(), value)
            })
            .collect();
        world.live.insert(
            address.to_string(),
            Live {
                id: id.clone(),
                inputs: inputs.clone(),
                outputs: outputs.clone(),
            },
        );
        world.log.push(format!("created {address}"));
        Ok(Applied {
            id: Some(id),
            outputs,
        })
    }

    async fn read(&self, resource: &ResourceState) -> Result<Observed, ProviderError> {
        self.begin(Call::Read, &resource.address).await?;
        Ok(match self.world().live.get(&resource.address) {
            Some(live) => Observed::Present {
                inputs: live.inputs.clone(),
                outputs: live.outputs.clone(),
            },
            None => Observed::Missing,
        })
    }

    async fn update(
        &self,
        resource: &ResourceState,
        inputs: &Inputs,
        _changed: &[String],
    ) -> Result<Applied, ProviderError> {
        self.begin(Call::Update, &resource.address).await?;
        let mut world = self.world();
        let Some(live) = world.live.get_mut(&resource.address) else {
            return Err(ProviderError::permanent(format!(
                "{} does not exist",
                resource.address
            )));
        };
        live.inputs = inputs.clone();
        let applied = Applied {
            id: Some(live.id.clone()),
            outputs: live.outputs.clone(),
        };
        world.log.push(format!("updated {}", resource.address));
        Ok(applied)
    }

    async fn delete(&self, resource: &ResourceState) -> Result<(), ProviderError> {
        self.begin(Call::Delete, &resource.address).await?;
        let mut world = self.world();
        world.live.remove(&resource.address);
        world.log.push(format!("deleted {}", resource.address));
        Ok(())
    }

    async fn adopt(
        &self,
        address: &str,
        _kind: ResourceKind,
        _inputs: &Inputs,
    ) -> Result<Option<Applied>, ProviderError> {
        self.begin(Call::Adopt, address).await?;
        let mut world = self.world();
        let found = world.live.get(address).map(|live| Applied {
            id: Some(live.id.clone()),
            outputs: live.outputs.clone(),
        });
        let word = if found.is_some() {
            "found"
        } else {
            "did not find"
        };
        world.log.push(format!("{word} {address}"));
        Ok(found)
    }
}
