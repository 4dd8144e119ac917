//! Plans: what apply will do, computed once and rendered many ways.
//!
//! [`planner::plan`] is a pure function of (resource graph, prior state, observed state, mode).
//! A [`Plan`] is complete — apply makes no decision it does not show — and records the prior
//! state's lineage and serial so that a saved plan is refused once the state has moved.

pub mod access;
pub mod planner;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::graph::{Expr, ResourceKind};
use crate::state::State;

pub use planner::{Observed, ObservedState, plan};

/// The plan file format this build writes and reads.
/// 2: changes carry `final_snapshot` and `forget`, which an older pwless would ignore (and so
/// do what the reviewed plan did not show).
/// 3: changes carry `data_loss` and plans `allowed_destroy`: an older pwless would apply a
/// plan that destroys data without the consent this one asks for.
pub const PLAN_FORMAT_VERSION: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Make the infrastructure match the stack.
    Normal,
    /// Delete everything in the state.
    Destroy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "no-op")]
    NoOp,
    #[serde(rename = "create")]
    Create,
    #[serde(rename = "update")]
    Update,
    /// Delete, then create anew: an input that cannot change on a live resource changed.
    #[serde(rename = "replace")]
    Replace,
    #[serde(rename = "delete")]
    Delete,
}

impl Action {
    pub fn word(self) -> &'static str {
        match self {
            Action::NoOp => "no-op",
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
        }
    }
}

/// One resource's change, attribute by attribute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    pub address: String,
    pub kind: ResourceKind,
    pub action: Action,
    /// Why, when it is not simply "the stack says so": drift, a replacement trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Inputs as they are now (prior or observed), `null` for a create.
    pub before: Option<BTreeMap<String, Value>>,
    /// Inputs known at plan time, `null` for a delete.
    pub after: Option<BTreeMap<String, Value>>,
    /// Inputs known only after apply, with the expression apply evaluates for each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub after_unknown: BTreeMap<String, Expr>,
    /// Inputs whose value changes (or may, if unknown), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// The changed inputs that force the replacement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_paths: Vec<String>,
    /// Changes that must finish before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// For a delete or replace of an Aurora cluster whose `final_snapshot` is on: the
    /// identifier of the snapshot RDS takes before deleting it
    /// (`<cluster>-final-<first 8 of the lineage>-<serial>`, unique per plan and known now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_snapshot: Option<String>,
    /// Its delete only removes the state entry, without a call: the resource goes with another
    /// that this plan deletes (a database user and its grants with their Aurora cluster), so
    /// destroy never needs to reach a database that is going anyway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forget: bool,
    /// For a delete or replace of a resource that holds data (the Aurora cluster and its
    /// instances, the EKS cluster) and still exists: what is lost, in words. Apply refuses the
    /// plan unless the address is named with `--allow-destroy` (a destroy is consent itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<String>,
    /// For a delete of a database user that still exists: what it owns or holds, per database
    /// of the cluster, as the refresh read it (`pg_shdepend`). Apply reassigns what it owns to
    /// the master user (kept) and revokes what it holds, in every database.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holdings: Vec<Holding>,
}

/// What a database user owns or holds in one database ([`ResourceChange::holdings`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// The database; `None` for objects the whole cluster shares (databases, tablespaces).
    pub database: Option<String>,
    /// Objects it owns there (tables, sequences, schemas, default privileges ...).
    pub owns: u64,
    /// Objects it holds privileges on there.
    pub privileges: u64,
}

/// The state a plan was computed against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorState {
    /// `None` when there was no state file yet.
    pub lineage: Option<String>,
    pub serial: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub destroy: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub pwless_version: String,
    pub stack: String,
    /// The AWS region the plan is for; a saved plan is applied there.
    pub region: String,
    pub mode: Mode,
    /// Where the state lives (the stack's `state:` section), so a saved plan is applied
    /// against the state it was made from. Left out for the default local file.
    #[serde(default, skip_serializing_if = "is_default_state")]
    pub state_backend: crate::spec::model::StateBackend,
    pub prior_state: PriorState,
    pub resource_changes: Vec<ResourceChange>,
    pub summary: Summary,
    /// Who may log in as whom after this plan (empty for a destroy). Absent from plans saved
    /// by an older pwless: they read as empty.
    #[serde(default, skip_serializing_if = "access::AccessSummary::is_empty")]
    pub access: access::AccessSummary,
    /// The addresses whose data loss was consented to when the plan was made
    /// (`pwless plan --allow-destroy ADDRESS -o FILE`): a saved plan carries the consent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_destroy: Vec<String>,
    /// The existing resources the stack references (`network.existing`, `cluster.existing`,
    /// `database.existing`), as they were read for this plan: never changed, never in the state. The changes hold the values used as
    /// literals; this says where they came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<Read>,
}

/// A resource the stack references and pwless only reads ([`Plan::reads`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Read {
    /// `data.aws_vpc.existing`, `data.aws_subnet.private[0]`, `data.aws_subnet.public[0]`.
    pub address: String,
    /// Its AWS id (`vpc-…`, `subnet-…`, the EKS cluster's name, the OIDC provider's ARN, the
    /// Aurora cluster's identifier).
    pub id: String,
    /// The values the plan used, by name (`cidr_block`, `availability_zone`).
    pub values: BTreeMap<String, Value>,
}

/// What a stack's plan reads: its referenced network's VPC and subnets, its referenced EKS
/// cluster (and the OIDC provider and Pod Identity Agent it uses as they are), its referenced
/// Aurora cluster, once discovery read them (none otherwise).
pub fn reads(stack: &crate::spec::Stack) -> Vec<Read> {
    let mut reads = network_reads(stack);
    reads.extend(cluster_reads(stack));
    let text = |value: &str| Value::from(value.to_string());
    for database in &stack.databases {
        let Some(read) = database.read() else {
            continue;
        };
        reads.push(Read {
            address: crate::graph::address::data::rds_cluster(&database.key),
            id: read.cluster_identifier.clone(),
            values: [
                ("arn".to_string(), text(&read.arn)),
                (
                    "cluster_resource_id".to_string(),
                    text(&read.cluster_resource_id),
                ),
                ("endpoint".to_string(), text(&read.endpoint)),
                ("port".to_string(), Value::from(read.port)),
                ("engine_version".to_string(), text(&read.engine_version)),
                ("vpc_id".to_string(), text(&read.vpc_id)),
                ("database_name".to_string(), text(&database.name)),
            ]
            .into(),
        });
    }
    reads
}

fn cluster_reads(stack: &crate::spec::Stack) -> Vec<Read> {
    let mut reads = Vec::new();
    let Some(cluster) = stack.cluster.read() else {
        return reads;
    };
    let text = |value: &str| Value::from(value.to_string());
    reads.push(Read {
        address: crate::graph::address::data::EKS_CLUSTER.into(),
        id: cluster.name.clone(),
        values: [
            ("arn".to_string(), text(&cluster.arn)),
            ("oidc_issuer".to_string(), text(&cluster.oidc_issuer)),
            ("version".to_string(), text(&cluster.version)),
            ("vpc_id".to_string(), text(&cluster.vpc_id)),
        ]
        .into(),
    });
    if let Some(arn) = &cluster.oidc_provider_arn {
        reads.push(Read {
            address: crate::graph::address::data::OIDC_PROVIDER.into(),
            id: arn.clone(),
            values: [("url".to_string(), text(&cluster.oidc_issuer))].into(),
        });
    }
    if cluster.pod_identity_agent {
        reads.push(Read {
            address: crate::graph::address::data::POD_IDENTITY_AGENT.into(),
            id: format!(
                "{}:{}",
                cluster.name,
                crate::graph::POD_IDENTITY_AGENT_ADDON
            ),
            values: BTreeMap::new(),
        });
    }
    reads
}

fn network_reads(stack: &crate::spec::Stack) -> Vec<Read> {
    let Some(read) = stack.network.read() else {
        return Vec::new();
    };
    let mut reads = vec![Read {
        address: crate::graph::address::data::VPC.into(),
        id: read.vpc_id.clone(),
        values: [("cidr_block".to_string(), Value::from(read.cidr.to_string()))].into(),
    }];
    for (tier, subnets) in [("private", &read.private), ("public", &read.public)] {
        for (index, subnet) in subnets.iter().enumerate() {
            reads.push(Read {
                address: crate::graph::address::data::subnet(tier, index),
                id: subnet.id.clone(),
                values: [
                    (
                        "availability_zone".to_string(),
                        Value::from(subnet.availability_zone.clone()),
                    ),
                    (
                        "cidr_block".to_string(),
                        Value::from(subnet.cidr.to_string()),
                    ),
                ]
                .into(),
            });
        }
    }
    reads
}

/// A plan that destroys data nobody consented to: apply changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this plan destroys data, and apply changes nothing without consent for each:\n{}\nIf that is intended, run again with {}; else change the stack so the plan keeps {}",
    .unconsented.iter().map(|(address, lost)| format!("  {address}: {lost}")).collect::<Vec<_>>().join("\n"),
    .unconsented.iter().map(|(address, _)| format!("--allow-destroy {address}")).collect::<Vec<_>>().join(" "),
    if .unconsented.len() == 1 { "it" } else { "them" }
)]
pub struct NoConsent {
    /// (address, what is lost) of each change without consent.
    pub unconsented: Vec<(String, String)>,
}

fn is_default_state(backend: &crate::spec::model::StateBackend) -> bool {
    *backend == crate::spec::model::StateBackend::default()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StalePlan {
    #[error("the plan is for stack `{planned}`, the state is for `{current}`")]
    OtherStack { planned: String, current: String },
    #[error(
        "the plan was made against state lineage {planned}, but the state now has lineage {current}; make a new plan"
    )]
    Lineage { planned: String, current: String },
    #[error(
        "the plan was made at state serial {planned}, but the state is now at serial {current}; make a new plan"
    )]
    Serial { planned: u64, current: u64 },
    #[error("the plan was made before any state existed, but a state exists now; make a new plan")]
    StateAppeared,
    #[error(
        "the plan was made against an existing state, but there is no state now; make a new plan"
    )]
    StateVanished,
    #[error("the plan file has format version {0}, this pwless reads {PLAN_FORMAT_VERSION}")]
    Format(u32),
}

impl Plan {
    /// A plan file (`pwless plan -o FILE`) read back. A plan saved before plans carried their
    /// access summary gets it computed from its changes, as it was then at render time.
    pub fn from_saved(bytes: &[u8]) -> Result<Plan, serde_json::Error> {
        let mut plan: Plan = serde_json::from_slice(bytes)?;
        if plan.access.is_empty() {
            plan.access = access::summarize(&plan.resource_changes, plan.mode, &plan.reads);
        }
        Ok(plan)
    }
}

impl ResourceChange {
    /// Whether carrying it out calls a provider: not a no-op, and not a delete that only
    /// removes the state entry ([`ResourceChange::forget`]).
    pub fn makes_call(&self) -> bool {
        self.action != Action::NoOp && !(self.forget && self.action == Action::Delete)
    }
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        self.resource_changes
            .iter()
            .any(|change| change.action != Action::NoOp)
    }

    /// The changes that destroy data and so need consent before apply: none for a destroy
    /// (`pwless destroy` is consent in itself).
    pub fn data_losses(&self) -> impl Iterator<Item = &ResourceChange> {
        self.resource_changes
            .iter()
            .filter(move |change| self.mode == Mode::Normal && change.data_loss.is_some())
    }

    /// Refuses a plan that destroys data at an address neither `allowed` (the `--allow-destroy`
    /// given now) nor the plan's own [`Plan::allowed_destroy`] names. Gives back the allowed
    /// addresses at which this plan destroys no data (a typo, or a plan that changed): for a
    /// warning, not a refusal.
    pub fn check_consent(&self, allowed: &[String]) -> Result<Vec<String>, NoConsent> {
        let consented = |address: &str| {
            allowed
                .iter()
                .chain(&self.allowed_destroy)
                .any(|a| a == address)
        };
        let unconsented: Vec<(String, String)> = self
            .data_losses()
            .filter(|change| !consented(&change.address))
            .map(|change| {
                (
                    change.address.clone(),
                    change.data_loss.clone().unwrap_or_default(),
                )
            })
            .collect();
        if !unconsented.is_empty() {
            return Err(NoConsent { unconsented });
        }
        Ok(allowed
            .iter()
            .chain(&self.allowed_destroy)
            .filter(|address| !self.data_losses().any(|change| change.address == **address))
            .cloned()
            .collect())
    }

    pub fn change(&self, address: &str) -> Option<&ResourceChange> {
        self.resource_changes
            .iter()
            .find(|change| change.address == address)
    }

    /// Whether this (saved) plan may still be applied to `state` (`None`: no state file).
    pub fn check_current(&self, state: Option<&State>) -> Result<(), StalePlan> {
        if self.format_version != PLAN_FORMAT_VERSION {
            return Err(StalePlan::Format(self.format_version));
        }
        match (&self.prior_state.lineage, state) {
            (None, None) => Ok(()),
            (None, Some(_)) => Err(StalePlan::StateAppeared),
            (Some(_), None) => Err(StalePlan::StateVanished),
            (Some(lineage), Some(state)) => {
                if state.stack != self.stack {
                    return Err(StalePlan::OtherStack {
                        planned: self.stack.clone(),
                        current: state.stack.clone(),
                    });
                }
                if *lineage != state.lineage {
                    return Err(StalePlan::Lineage {
                        planned: lineage.clone(),
                        current: state.lineage.clone(),
                    });
                }
                if self.prior_state.serial != state.serial {
                    return Err(StalePlan::Serial {
                        planned: self.prior_state.serial,
                        current: state.serial,
                    });
                }
                Ok(())
            }
        }
    }
}

pub(crate) fn summarize(changes: &[ResourceChange]) -> Summary {
    let mut summary = Summary::default();
    for change in changes {
        match change.action {
            Action::NoOp => {}
            Action::Create => summary.add += 1,
            Action::Update => summary.change += 1,
            Action::Replace => {
                summary.add += 1;
                summary.destroy += 1;
            }
            Action::Delete => summary.destroy += 1,
        }
    }
    summary
}
