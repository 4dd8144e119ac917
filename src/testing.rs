//! Helpers for this crate's tests and benchmarks, not for users: they fabricate an applied
//! state so the planner can be exercised without a cloud.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::graph::ResourceGraph;
use crate::state::{ResourceState, State};

/// The state a perfect apply of `graph` would leave: every input resolved, every output set to
/// a recognisable fake value (`"<address>.<output>"`).
pub fn applied_state(stack: &str, graph: &ResourceGraph) -> State {
    let mut state = State::new(stack);
    state.serial = 1;
    for resource in graph.in_order() {
        let mut inputs = BTreeMap::new();
        for (name, expr) in &resource.inputs {
            let value = expr
                .resolve(&mut |reference| {
                    state
                        .resource(&reference.address)
                        .and_then(|applied| applied.outputs.get(&reference.output))
                        .cloned()
                })
                .unwrap_or(Value::Null);
            inputs.insert(name.clone(), value);
        }
        let outputs: BTreeMap<String, Value> = resource
            .kind
            .outputs()
            .iter()
            .map(|output| {
                (
                    (*output).to_string(),
                    json!(format!("{}.{output}", resource.address)),
                )
            })
            .collect();
        state.upsert(ResourceState {
            address: resource.address.clone(),
            kind: resource.kind,
            id: Some(format!("{}-id", resource.address)),
            inputs,
            outputs,
            dependencies: resource
                .dependencies()
                .into_iter()
                .map(str::to_string)
                .collect(),
        });
    }
    state
}

/// Whether a benchmark runs in its quick mode: `cargo test` runs each bench once without the
/// `--bench` argument that `cargo bench` passes, to prove it still works (a few rounds, no
/// figures worth reading); `cargo bench` measures.
pub fn quick_bench() -> bool {
    !std::env::args().any(|argument| argument == "--bench")
}

/// A valid stack text with `users` database users, each with its own service account: about
/// `5 * users + 37` resources.
pub fn generated_stack(users: usize) -> String {
    let mut text = String::from(
        "stack: big\nregion: us-west-2\nnetwork: {cidr: 10.0.0.0/16, availability_zones: 3, nat_gateways: per_az}\n\
         cluster: {version: \"1.31\", node_group: {instance_types: [t3.medium], min_size: 1, desired_size: 2, max_size: 3}, admins: [\"arn:aws:iam::123456789012:role/platform-deployer\"]}\n\
         database:\n  engine_version: \"17.4\"\n  instance_class: db.t4g.medium\n  name: appdb\n  master_username: postgres\n  users:\n",
    );
    for index in 0..users {
        text.push_str(&format!(
            "    - {{name: user_{index}, privileges: [connect, usage, select]}}\n"
        ));
    }
    text.push_str("access:\n");
    for index in 0..users {
        text.push_str(&format!(
            "  - {{namespace: team-{}, service_account: app-{index}, db_user: user_{index}}}\n",
            index % 50
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_bench_stacks_are_valid() {
        // The plan benchmark panicked on its generated stacks once `cluster.admins` became
        // required: they are checked here, not only when someone runs the benchmark.
        for users in [1, 250] {
            let text = super::generated_stack(users);
            let stack = crate::spec::parse_str(std::path::Path::new("bench.yaml"), &text)
                .unwrap_or_else(|errors| panic!("{errors}"));
            let graph = crate::graph::ResourceGraph::from_stack(&stack).unwrap();
            assert!(graph.len() >= 5 * users + 37, "{}", graph.len());
        }
    }
}
