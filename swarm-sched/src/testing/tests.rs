//! The suite passes correct schedulers and catches broken ones, each with the
//! point of the contract it breaks.

use std::sync::Arc;

use swarm_core::Id;
use swarm_core::types::Task;

use super::{Check, run, suite};
use crate::{Draft, NodeView, Plan, Requirements, Scheduler, SpreadScheduler};

/// The first node by ID that passes the filters, counting the plan so far (the
/// crate doc's example). With `remember`, it keeps the node IDs of its first
/// pass and considers only those later: a stale cache.
#[derive(Default)]
struct FirstFit {
    remember: bool,
    known: Option<Vec<Id>>,
}

impl Scheduler for FirstFit {
    fn schedule(&mut self, view: &NodeView, tasks: &[Arc<Task>]) -> Plan {
        let mut ids: Vec<Id> = view.nodes().map(|n| n.id().clone()).collect();
        ids.sort();
        if self.remember {
            ids = self.known.get_or_insert(ids).clone();
        }
        let mut plan = Plan::default();
        let mut draft = Draft::new(view);
        for task in tasks {
            let req = Requirements::of(task);
            let fit = ids
                .iter()
                .filter_map(|id| view.node(id))
                .find(|n| draft.check(n, &task.service_id, &req).is_ok());
            match fit {
                Some(n) => {
                    draft.place(n, &task.service_id, &req);
                    plan.place(&task.id, n.id());
                }
                None => plan.fail(&task.id, draft.explain(&task.service_id, &req).message()),
            }
        }
        plan
    }
}

/// A broken scheduler: `schedule` is the closure.
struct Broken<F>(F);

impl<F: FnMut(&NodeView, &[Arc<Task>]) -> Plan + Send> Scheduler for Broken<F> {
    fn schedule(&mut self, view: &NodeView, tasks: &[Arc<Task>]) -> Plan {
        (self.0)(view, tasks)
    }
}

fn broken(
    f: impl Fn(&NodeView, &[Arc<Task>]) -> Plan + Copy + Send + 'static,
) -> impl Fn() -> Box<dyn Scheduler> {
    move || Box::new(Broken(f)) as Box<dyn Scheduler>
}

/// The message of `check`'s failure on schedulers from `make`.
fn failure(check: Check, make: impl Fn() -> Box<dyn Scheduler>) -> String {
    match run(check, &make) {
        Ok(()) => panic!("{check:?} passed a broken scheduler"),
        Err(f) => {
            assert_eq!(f.check, check);
            f.message
        }
    }
}

fn sorted_nodes(view: &NodeView) -> Vec<Id> {
    let mut ids: Vec<Id> = view.nodes().map(|n| n.id().clone()).collect();
    ids.sort();
    ids
}

#[test]
fn first_fit_passes() {
    // The spread scheduler's run is in spread/tests.rs.
    suite(|| Box::<FirstFit>::default());
}

#[test]
fn a_plan_naming_no_task_is_caught() {
    let make = broken(|_, _| Plan::default());
    for check in Check::ALL {
        let message = failure(check, &make);
        assert!(message.starts_with("neither places task"), "{message}");
    }
}

#[test]
fn placements_on_unavailable_nodes_are_caught() {
    // Everything on the first node by ID, whatever its state.
    let make = broken(|view, tasks| {
        let mut plan = Plan::default();
        if let Some(first) = sorted_nodes(view).first() {
            for t in tasks {
                plan.place(&t.id, first);
            }
        }
        for t in tasks.iter().filter(|_| view.is_empty()) {
            plan.fail(&t.id, "no suitable node");
        }
        plan
    });
    let message = failure(Check::UnavailableNodes, &make);
    assert!(
        message.contains("on node disconnected, which the Ready filter"),
        "{message}"
    );
    let message = failure(Check::Constraints, &make);
    assert!(
        message.contains("on node a1, which the Constraint filter"),
        "{message}"
    );
}

#[test]
fn placements_that_ignore_the_plan_so_far_are_caught() {
    // The first node that passes on the view alone: earlier placements not counted.
    let make = broken(|view, tasks| {
        let mut plan = Plan::default();
        let draft = Draft::new(view);
        for t in tasks {
            let req = Requirements::of(t);
            let ids = sorted_nodes(view);
            match ids.iter().find(|id| {
                let n = view.node(id).unwrap();
                draft.check(n, &t.service_id, &req).is_ok()
            }) {
                Some(id) => plan.place(&t.id, id),
                None => plan.fail(&t.id, "no suitable node"),
            }
        }
        plan
    });
    for (check, filter) in [
        (Check::Resources, "Resources"),
        (Check::HostPorts, "HostPort"),
        (Check::MaxReplicas, "MaxReplicas"),
    ] {
        let message = failure(check, &make);
        assert!(
            message.contains(&format!("the {filter} filter rejects")),
            "{message}"
        );
    }
}

#[test]
fn tasks_given_up_on_while_a_node_has_room_are_caught() {
    let make = broken(|view, tasks| {
        let mut plan = FirstFit::default().schedule(view, tasks.get(..1).unwrap_or(&[]));
        for t in tasks.iter().skip(1) {
            plan.fail(&t.id, "no suitable node (I gave up)");
        }
        plan
    });
    let message = failure(Check::UnavailableNodes, &make);
    assert!(
        message.contains("(I gave up)) although node ready1 can"),
        "{message}"
    );
}

#[test]
fn a_task_named_twice_or_with_no_reason_is_caught() {
    let make = broken(|view, tasks| {
        let mut plan = FirstFit::default().schedule(view, tasks);
        if let Some(p) = plan.placements.first().cloned() {
            plan.fail(&p.task, "changed my mind");
        }
        plan
    });
    let message = failure(Check::HostPorts, &make);
    assert!(message.starts_with("names task tcp.001 twice"), "{message}");

    let make = broken(|view, tasks| {
        let mut plan = FirstFit::default().schedule(view, tasks);
        for u in &mut plan.unplaced {
            u.reason.clear();
        }
        plan
    });
    let message = failure(Check::EmptyCluster, &make);
    assert!(
        message.ends_with("unplaced with an empty reason"),
        "{message}"
    );
}

#[test]
fn a_panic_is_a_failure() {
    let make = broken(|view, _| {
        assert!(!view.is_empty(), "no nodes");
        Plan::default()
    });
    assert_eq!(failure(Check::EmptyCluster, &make), "panics: no nodes");
}

#[test]
fn a_scheduler_that_keeps_a_stale_view_is_caught() {
    let make = || {
        Box::new(FirstFit {
            remember: true,
            ..FirstFit::default()
        }) as Box<dyn Scheduler>
    };
    let message = failure(Check::FollowsTheView, make);
    assert!(
        message.contains("although node n3 can take it"),
        "{message}"
    );
    // The other checks make a scheduler per pass: the cache never goes stale.
    for check in Check::ALL
        .into_iter()
        .filter(|c| *c != Check::FollowsTheView)
    {
        run(check, &make).unwrap();
    }
}

#[test]
fn suite_panics_listing_each_failure() {
    let make = broken(|_, _| Plan::default());
    let panic = std::panic::catch_unwind(|| suite(make)).unwrap_err();
    let message = panic.downcast_ref::<String>().unwrap();
    assert_eq!(message.lines().count(), Check::ALL.len(), "{message}");
    assert!(message.starts_with("scheduler conformance check EmptyCluster failed: "));
}

mod spread_on_random_clusters {
    use proptest::prelude::*;
    use swarm_core::testing;
    use swarm_core::types::*;

    use super::*;
    use crate::testing::verify;

    /// (state, availability, zone, CPUs).
    type NodeSpec = (u8, u8, u8, i64);
    /// (service, CPUs, zone constraint, host port, max replicas, spread over zones).
    type TaskSpec = (u8, i64, Option<u8>, bool, u64, bool);

    fn node(i: usize, (state, availability, zone, cpus): NodeSpec) -> Node {
        let mut n = testing::node(&format!("n{i}"), "h");
        n.status.state =
            [NodeState::Ready, NodeState::Down, NodeState::Disconnected][state as usize];
        n.spec.availability = [
            Availability::Active,
            Availability::Pause,
            Availability::Drain,
        ][availability as usize];
        n.spec
            .annotations
            .labels
            .insert("zone".into(), zone.to_string());
        if let Some(d) = &mut n.description {
            d.resources.nano_cpus = cpus * 1_000_000_000;
        }
        n
    }

    fn task(i: usize, (service, cpus, zone, port, max_replicas, spread): TaskSpec) -> Arc<Task> {
        let svc = testing::service(&format!("s{service}"), "s", "img", 1);
        let mut t = testing::task(&format!("t{i:02}"), &svc, i as u64);
        t.status.state = TaskState::Pending;
        t.spec.resources = Some(ResourceRequirements {
            reservations: Some(Resources {
                nano_cpus: cpus * 1_000_000_000,
                ..Default::default()
            }),
            ..Default::default()
        });
        let placement = t.spec.placement.get_or_insert_with(Default::default);
        placement.max_replicas = max_replicas;
        if let Some(z) = zone {
            placement.constraints = vec![format!("node.labels.zone=={z}")];
        }
        if spread {
            placement.preferences = vec![PlacementPreference {
                spread_descriptor: "node.labels.zone".into(),
            }];
        }
        if port {
            t.endpoint = Some(Endpoint {
                ports: vec![PortConfig {
                    published_port: 8080,
                    publish_mode: PublishMode::Host,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
        Arc::new(t)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every plan of the spread scheduler meets the contract, whatever the
        /// cluster and the batch.
        #[test]
        fn every_plan_verifies(
            nodes in prop::collection::vec((0u8..3, 0u8..3, 0u8..3, 1i64..5), 0..8),
            tasks in prop::collection::vec(
                (0u8..3, 0i64..3, prop::option::of(0u8..3), any::<bool>(), 0u64..3, any::<bool>()),
                0..30,
            ),
        ) {
            let mut view = NodeView::new();
            for (i, n) in nodes.into_iter().enumerate() {
                view.upsert_node(Arc::new(node(i, n)));
            }
            let tasks: Vec<Arc<Task>> = tasks.into_iter().enumerate().map(|(i, t)| task(i, t)).collect();
            let plan = SpreadScheduler.schedule(&view, &tasks);
            if let Err(e) = verify(&view, &tasks, &plan) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
