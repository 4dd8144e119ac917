//! Plan benchmark: prints the figures issue 2 names. Run with `cargo bench --bench plan`;
//! `cargo test` runs it once in its quick mode (the example and the smallest generated stack,
//! three runs each), so a broken benchmark fails the test suite.
//!
//! - the example stack, in process: parse + validate + expand + plan, against no state and
//!   against a fully applied state (the no-op plan);
//! - generated stacks of about 1,250 / 2,500 / 5,000 / 10,000 resources, to show the growth.
//!
//! Medians over repeated runs; wall-clock on this machine, so compare within one run.

use std::path::Path;
use std::time::{Duration, Instant};

use pwless::graph::ResourceGraph;
use pwless::plan::{Mode, ObservedState, plan};
use pwless_testing::{applied_state, generated_stack};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn measure(runs: usize, mut work: impl FnMut()) -> Duration {
    work(); // warm-up
    median(
        (0..runs)
            .map(|_| {
                let started = Instant::now();
                work();
                started.elapsed()
            })
            .collect(),
    )
}

fn full_plan(text: &str, with_state: bool, quick: bool) -> (usize, Duration) {
    let stack = pwless::spec::parse_str(Path::new("bench.yaml"), text).expect("valid bench stack");
    let graph = ResourceGraph::from_stack(&stack).expect("graph");
    let state = applied_state(&stack.name, &graph);
    let resources = graph.len();
    let runs = match (quick, resources > 2000) {
        (true, _) => 3,
        (false, true) => 11,
        (false, false) => 101,
    };
    let time = measure(runs, || {
        let stack = pwless::spec::parse_str(Path::new("bench.yaml"), text).expect("valid");
        let graph = ResourceGraph::from_stack(&stack).expect("graph");
        let prior = with_state.then_some(&state);
        let plan = plan(&stack, &graph, prior, &ObservedState::new(), Mode::Normal);
        // A plan of every resource, or of none once applied: else the figures measure a bug.
        let expected = if with_state { 0 } else { resources };
        assert_eq!(plan.summary.add, expected, "a wrong plan");
        std::hint::black_box(plan);
    });
    (resources, time)
}

fn main() {
    // `cargo bench` passes `--bench`; anything else is a filter we do not use.
    let quick = pwless_testing::quick_bench();
    let example = include_str!("../stack.example.yaml");
    println!("pwless plan benchmark (median wall-clock; parse + validate + expand + plan)");
    let (count, time) = full_plan(example, false, quick);
    println!(
        "  example stack, {count} resources, empty state:   {:>9.3} ms",
        time.as_secs_f64() * 1e3
    );
    let (count, time) = full_plan(example, true, quick);
    println!(
        "  example stack, {count} resources, applied state: {:>9.3} ms",
        time.as_secs_f64() * 1e3
    );

    let mut previous: Option<(usize, Duration)> = None;
    let sizes: &[usize] = if quick {
        &[250]
    } else {
        &[250, 500, 1000, 2000]
    };
    for &users in sizes {
        let text = generated_stack(users);
        for with_state in [false, true] {
            let (count, time) = full_plan(&text, with_state, quick);
            let per = time.as_secs_f64() * 1e6 / count as f64;
            let label = if with_state {
                "applied state"
            } else {
                "empty state  "
            };
            let mut line = format!(
                "  generated stack, {count:>6} resources, {label}: {:>9.1} ms  ({per:.2} µs/resource)",
                time.as_secs_f64() * 1e3
            );
            if with_state {
                if let Some((previous_count, previous_time)) = previous {
                    let growth = time.as_secs_f64() / previous_time.as_secs_f64();
                    let size = count as f64 / previous_count as f64;
                    line.push_str(&format!("  x{growth:.2} time for x{size:.2} resources"));
                }
                previous = Some((count, time));
            }
            println!("{line}");
        }
    }
}
