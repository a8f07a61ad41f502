//! Tests of the spread scheduler and the filters, as a pure function of
//! (view, tasks) → plan.

use std::collections::BTreeMap;
use std::sync::Arc;

use swarm_core::testing;
use swarm_core::types::*;

use super::SpreadScheduler;
use crate::{NodeView, Plan, Scheduler};

fn node(id: &str) -> Node {
    testing::node(id, id)
}

fn labeled(id: &str, labels: &[(&str, &str)]) -> Node {
    let mut n = node(id);
    for (k, v) in labels {
        n.spec
            .annotations
            .labels
            .insert(k.to_string(), v.to_string());
    }
    n
}

fn service(id: &str) -> Service {
    testing::service(id, id, "img", 1)
}

/// `count` PENDING tasks of `svc`, IDs `<svc>.<i>`.
fn pending(svc: &Service, count: usize) -> Vec<Arc<Task>> {
    (1..=count)
        .map(|i| {
            let mut t = testing::task(&format!("{}.{i:03}", svc.id), svc, i as u64);
            t.status.state = TaskState::Pending;
            Arc::new(t)
        })
        .collect()
}

/// `count` RUNNING tasks of `svc` on `node`.
fn running(view: &mut NodeView, svc: &Service, node: &str, count: usize) {
    for i in 0..count {
        let mut t = testing::task(&format!("{}.{node}.run{i}", svc.id), svc, 100 + i as u64);
        t.node_id = node.into();
        t.status.state = TaskState::Running;
        view.account_task(&t);
    }
}

fn view_of(nodes: impl IntoIterator<Item = Node>) -> NodeView {
    let mut view = NodeView::new();
    for n in nodes {
        view.upsert_node(Arc::new(n));
    }
    view
}

fn schedule(view: &NodeView, tasks: &[Arc<Task>]) -> Plan {
    SpreadScheduler.schedule(view, tasks)
}

fn per_node(plan: &Plan) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for p in &plan.placements {
        *m.entry(p.node.to_string()).or_default() += 1;
    }
    m
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

fn with_spec(tasks: Vec<Arc<Task>>, f: impl Fn(&mut Task)) -> Vec<Arc<Task>> {
    tasks
        .into_iter()
        .map(|t| {
            let mut t = (*t).clone();
            f(&mut t);
            Arc::new(t)
        })
        .collect()
}

fn placement(t: &mut Task) -> &mut Placement {
    t.spec.placement.get_or_insert_with(Default::default)
}

#[test]
fn spreads_evenly_ties_by_node_id() {
    let view = view_of([node("c"), node("a"), node("b")]);
    let plan = schedule(&view, &pending(&service("web"), 7));
    assert_eq!(per_node(&plan), counts(&[("a", 3), ("b", 2), ("c", 2)]));
    assert_eq!(plan.placements[0].node.as_str(), "a");
    assert_eq!(plan.placements[1].node.as_str(), "b");
    assert!(plan.unplaced.is_empty());
}

#[test]
fn uneven_loads_prefer_fewest_service_tasks_then_fewest_tasks() {
    let mut view = view_of([node("a"), node("b"), node("c")]);
    let (other, web) = (service("other"), service("web"));
    running(&mut view, &other, "a", 3);
    running(&mut view, &other, "c", 1);
    let plan = schedule(&view, &pending(&web, 4));
    let order: Vec<&str> = plan.placements.iter().map(|p| p.node.as_str()).collect();
    // b (0 tasks), c (1 task), a (3 tasks): each gets one of web first.
    assert_eq!(order, ["b", "c", "a", "b"]);

    // The service's own tasks weigh first: a already runs 2 of web.
    let mut view = view_of([node("a"), node("b"), node("c")]);
    running(&mut view, &web, "a", 2);
    running(&mut view, &other, "b", 5);
    let plan = schedule(&view, &pending(&web, 4));
    assert_eq!(per_node(&plan), counts(&[("b", 2), ("c", 2)]));
}

#[test]
fn several_services_in_one_batch_see_each_other() {
    let view = view_of([node("a"), node("b")]);
    let mut tasks = pending(&service("one"), 1);
    tasks.extend(pending(&service("two"), 1));
    let plan = schedule(&view, &tasks);
    // "two" avoids the node "one" just took: fewest tasks overall.
    assert_eq!(per_node(&plan), counts(&[("a", 1), ("b", 1)]));
}

#[test]
fn ready_filter_skips_down_paused_and_drained_nodes() {
    let mut down = node("down");
    down.status.state = NodeState::Down;
    let mut paused = node("paused");
    paused.spec.availability = Availability::Pause;
    let mut drained = node("drained");
    drained.spec.availability = Availability::Drain;
    let view = view_of([down, paused, drained, node("ok")]);
    let plan = schedule(&view, &pending(&service("web"), 3));
    assert_eq!(per_node(&plan), counts(&[("ok", 3)]));

    let view = view_of([{
        let mut n = node("x");
        n.spec.availability = Availability::Drain;
        n
    }]);
    let plan = schedule(&view, &pending(&service("web"), 1));
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (1 node not available for new tasks)"
    );
}

#[test]
fn resources_run_out_mid_batch() {
    // testing::node has 4 CPUs and 8 GiB; each task reserves 2 CPUs.
    let view = view_of([node("a"), node("b"), node("c")]);
    let tasks = with_spec(pending(&service("web"), 7), |t| {
        t.spec.resources = Some(ResourceRequirements {
            limits: None,
            reservations: Some(Resources {
                nano_cpus: 2_000_000_000,
                memory_bytes: 1 << 30,
                generic: vec![],
            }),
        });
    });
    let plan = schedule(&view, &tasks);
    assert_eq!(per_node(&plan), counts(&[("a", 2), ("b", 2), ("c", 2)]));
    assert_eq!(plan.unplaced.len(), 1);
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (insufficient resources on 3 nodes)"
    );
}

#[test]
fn generic_resources_are_counted() {
    let mut gpu = node("gpu");
    gpu.description.as_mut().unwrap().resources.generic = vec![
        GenericResource::Discrete {
            kind: "gpu".into(),
            value: 1,
        },
        GenericResource::Named {
            kind: "gpu".into(),
            value: "GPU-1".into(),
        },
    ];
    let view = view_of([gpu, node("plain")]);
    let tasks = with_spec(pending(&service("ml"), 3), |t| {
        t.spec.resources = Some(ResourceRequirements {
            limits: None,
            reservations: Some(Resources {
                generic: vec![GenericResource::Discrete {
                    kind: "gpu".into(),
                    value: 1,
                }],
                ..Default::default()
            }),
        });
    });
    let plan = schedule(&view, &tasks);
    assert_eq!(per_node(&plan), counts(&[("gpu", 2)]));
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (insufficient resources on 2 nodes)"
    );
}

#[test]
fn constraints_select_nodes_and_can_exclude_all() {
    let view = view_of([
        labeled("a", &[("zone", "east")]),
        labeled("b", &[("zone", "west")]),
        node("c"),
    ]);
    let east = with_spec(pending(&service("web"), 2), |t| {
        placement(t).constraints = vec!["node.labels.zone==east".into()];
    });
    assert_eq!(per_node(&schedule(&view, &east)), counts(&[("a", 2)]));

    let not_east = with_spec(pending(&service("web"), 2), |t| {
        placement(t).constraints = vec!["node.labels.zone!=east".into()];
    });
    assert_eq!(
        per_node(&schedule(&view, &not_east)),
        counts(&[("b", 1), ("c", 1)])
    );

    let nowhere = with_spec(pending(&service("web"), 2), |t| {
        placement(t).constraints = vec!["node.role==manager".into()];
    });
    let plan = schedule(&view, &nowhere);
    assert!(plan.placements.is_empty());
    for u in &plan.unplaced {
        assert_eq!(
            u.reason,
            "no suitable node (scheduling constraints not satisfied on 3 nodes)"
        );
    }
}

#[test]
fn network_plugin_filter() {
    let mut with_plugin = node("p");
    with_plugin.description.as_mut().unwrap().engine.plugins = vec![PluginDescription {
        r#type: "Network".into(),
        name: "weave:latest".into(),
    }];
    let view = view_of([with_plugin, node("q")]);
    let tasks = with_spec(pending(&service("web"), 2), |t| {
        t.networks = vec![NetworkAttachment {
            network: Arc::new(Network {
                driver_state: Some(Driver {
                    name: "weave".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }];
    });
    let plan = schedule(&view, &tasks);
    assert_eq!(per_node(&plan), counts(&[("p", 2)]));
}

#[test]
fn platform_filter_treats_arch_aliases_as_equal() {
    let mut arm = node("arm");
    arm.description.as_mut().unwrap().platform.architecture = "aarch64".into();
    let view = view_of([arm, node("x86")]);
    let want = |arch: &str| {
        let arch = arch.to_string();
        with_spec(pending(&service("web"), 2), move |t| {
            placement(t).platforms = vec![Platform {
                architecture: arch.clone(),
                os: "linux".into(),
            }];
        })
    };
    assert_eq!(
        per_node(&schedule(&view, &want("amd64"))),
        counts(&[("x86", 2)])
    );
    assert_eq!(
        per_node(&schedule(&view, &want("arm64"))),
        counts(&[("arm", 2)])
    );
    let plan = schedule(&view, &want("s390x"));
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (unsupported platform on 2 nodes)"
    );
}

#[test]
fn host_ports_are_taken_once_per_node() {
    let mut view = view_of([node("a"), node("b"), node("c")]);
    let publish = |t: &mut Task| {
        t.endpoint = Some(Endpoint {
            ports: vec![PortConfig {
                protocol: Protocol::Tcp,
                target_port: 80,
                published_port: 8080,
                publish_mode: PublishMode::Host,
                ..Default::default()
            }],
            ..Default::default()
        });
    };
    // c already runs a task holding 8080/tcp.
    let mut holder = testing::task("holder", &service("old"), 1);
    publish(&mut holder);
    holder.node_id = "c".into();
    holder.status.state = TaskState::Running;
    view.account_task(&holder);

    let plan = schedule(&view, &with_spec(pending(&service("web"), 3), publish));
    assert_eq!(per_node(&plan), counts(&[("a", 1), ("b", 1)]));
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (host-mode port already in use on 3 nodes)"
    );
}

#[test]
fn max_replicas_per_node() {
    let view = view_of([node("a"), node("b")]);
    let tasks = with_spec(pending(&service("web"), 5), |t| {
        placement(t).max_replicas = 2
    });
    let plan = schedule(&view, &tasks);
    assert_eq!(per_node(&plan), counts(&[("a", 2), ("b", 2)]));
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (max replicas per node limit exceed)"
    );
}

#[test]
fn explanation_lists_every_reason_most_frequent_first() {
    let mut down = node("down");
    down.status.state = NodeState::Down;
    let view = view_of([down, node("a"), node("b")]);
    let tasks = with_spec(pending(&service("big"), 1), |t| {
        t.spec.resources = Some(ResourceRequirements {
            limits: None,
            reservations: Some(Resources {
                memory_bytes: 64 << 30,
                ..Default::default()
            }),
        });
    });
    let plan = schedule(&view, &tasks);
    assert_eq!(
        plan.unplaced[0].reason,
        "no suitable node (insufficient resources on 2 nodes; 1 node not available for new tasks)"
    );
    let plan = schedule(&NodeView::new(), &tasks);
    assert_eq!(plan.unplaced[0].reason, "no suitable node");
}

#[test]
fn preferences_spread_over_two_label_levels() {
    let view = view_of([
        labeled("e1a", &[("dc", "east"), ("rack", "1")]),
        labeled("e1b", &[("dc", "east"), ("rack", "1")]),
        labeled("e2a", &[("dc", "east"), ("rack", "2")]),
        labeled("w1a", &[("dc", "west"), ("rack", "1")]),
    ]);
    let prefs = |t: &mut Task| {
        placement(t).preferences = ["node.labels.dc", "node.labels.rack"]
            .iter()
            .map(|d| PlacementPreference {
                spread_descriptor: d.to_string(),
            })
            .collect();
    };
    let plan = schedule(&view, &with_spec(pending(&service("web"), 8), prefs));
    // 4 per datacenter; in east 2 per rack.
    assert_eq!(
        per_node(&plan),
        counts(&[("e1a", 1), ("e1b", 1), ("e2a", 2), ("w1a", 4)])
    );

    // Nodes without the label form their own group.
    let mut view = view;
    view.upsert_node(Arc::new(node("nolabel")));
    let plan = schedule(&view, &with_spec(pending(&service("web"), 9), prefs));
    assert_eq!(per_node(&plan)["nolabel"], 3);
    assert_eq!(per_node(&plan)["w1a"], 3);
}

#[test]
fn preferences_count_existing_tasks_and_skip_full_branches() {
    let mut view = view_of([
        labeled("a", &[("zone", "1")]),
        labeled("b", &[("zone", "2")]),
        labeled("c", &[("zone", "2")]),
    ]);
    let web = service("web");
    running(&mut view, &web, "b", 2);
    let prefs = |t: &mut Task| {
        placement(t).preferences = vec![PlacementPreference {
            spread_descriptor: "node.labels.zone".into(),
        }];
        placement(t).max_replicas = 3;
    };
    // Zone 1 catches up with zone 2 (2 tasks), then they alternate until a is
    // full (3); the rest go to zone 2, where c catches up with b first.
    let plan = schedule(&view, &with_spec(pending(&web, 6), prefs));
    assert_eq!(per_node(&plan), counts(&[("a", 3), ("b", 1), ("c", 2)]));
}

#[test]
fn passes_the_conformance_suite() {
    crate::testing::suite(|| Box::new(SpreadScheduler));
}
