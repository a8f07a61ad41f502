//! The checks: a cluster and batches each, every plan [`verify`](super::verify)'d,
//! plus the counts the contract forces on that cluster.

use std::ops::RangeInclusive;
use std::sync::Arc;

use swarm_core::Id;
use swarm_core::testing;
use swarm_core::types::*;

use super::{Check, schedule};
use crate::scheduler::{Plan, Scheduler};
use crate::view::NodeView;

type Make<'a> = &'a dyn Fn() -> Box<dyn Scheduler>;

pub(super) fn run(check: Check, make: Make<'_>) -> Result<(), String> {
    match check {
        Check::EmptyCluster => empty_cluster(make),
        Check::UnavailableNodes => unavailable_nodes(make),
        Check::Constraints => constraints(make),
        Check::Resources => resources(make),
        Check::HostPorts => host_ports(make),
        Check::MaxReplicas => max_replicas(make),
        Check::MixedBatch => mixed_batch(make),
        Check::FollowsTheView => follows_the_view(make),
    }
}

fn empty_cluster(make: Make<'_>) -> Result<(), String> {
    let empty = NodeView::new();
    let tasks = [pending("web", 1..=3, |_| {}), pending("db", 1..=2, |_| {})].concat();
    schedule(&mut *make(), &empty, &tasks)?;
    schedule(&mut *make(), &empty, &[])?;
    let cluster = view_of([node("n1"), node("n2")]);
    schedule(&mut *make(), &cluster, &[])?;
    Ok(())
}

fn unavailable_nodes(make: Make<'_>) -> Result<(), String> {
    let unavailable = || {
        [
            ("down", NodeState::Down, Availability::Active),
            (
                "disconnected",
                NodeState::Disconnected,
                Availability::Active,
            ),
            ("unknown", NodeState::Unknown, Availability::Active),
            ("drained", NodeState::Ready, Availability::Drain),
            ("paused", NodeState::Ready, Availability::Pause),
        ]
        .map(|(id, state, availability)| {
            let mut n = node(id);
            n.status.state = state;
            n.spec.availability = availability;
            n
        })
    };
    let tasks = pending("web", 1..=6, |_| {});
    let view = view_of(
        unavailable()
            .into_iter()
            .chain([node("ready1"), node("ready2")]),
    );
    let plan = schedule(&mut *make(), &view, &tasks)?;
    placed(&plan, 6, "6 tasks on two ready, active nodes")?;
    let view = view_of(unavailable());
    schedule(&mut *make(), &view, &tasks)?;
    Ok(())
}

fn constraints(make: Make<'_>) -> Result<(), String> {
    let zone = |id: &str, z: &str| {
        let mut n = node(id);
        n.spec.annotations.labels.insert("zone".into(), z.into());
        n
    };
    let mut arm = zone("arm", "b");
    if let Some(d) = &mut arm.description {
        d.platform.architecture = "aarch64".into();
    }
    let view = view_of([
        zone("a1", "a"),
        zone("a2", "a"),
        zone("b1", "b"),
        node("bare"),
        arm,
    ]);
    let constrained =
        |expr: &'static str| move |t: &mut Task| placement(t).constraints = vec![expr.into()];
    let platform = |arch: &'static str| {
        move |t: &mut Task| {
            placement(t).platforms = vec![Platform {
                architecture: arch.into(),
                os: "linux".into(),
            }]
        }
    };
    let tasks = [
        pending("in-a", 1..=4, constrained("node.labels.zone==a")),
        pending("in-c", 1..=2, constrained("node.labels.zone==c")),
        pending("arm64", 1..=2, platform("arm64")),
        pending("s390x", 1..=1, platform("s390x")),
    ]
    .concat();
    let plan = schedule(&mut *make(), &view, &tasks)?;
    placed(&plan, 6, "the 4 zone==a and the 2 arm64 tasks")
}

fn resources(make: Make<'_>) -> Result<(), String> {
    let mut view = view_of([node("n1"), node("n2"), node("n3")]);
    // n3 has 2 of its 4 CPUs reserved.
    running(&mut view, "old", "n3", reserve(2_000_000_000, 0));
    let cpu = pending("cpu", 1..=5, reserve(3_000_000_000, 0));
    let plan = schedule(&mut *make(), &view, &cpu)?;
    placed(&plan, 2, "3-CPU tasks on nodes with 4, 4 and 2 CPUs free")?;
    let memory = pending("memory", 1..=7, reserve(0, 3 << 30));
    let plan = schedule(&mut *make(), &view, &memory)?;
    placed(&plan, 6, "3 GiB tasks on three nodes of 8 GiB")
}

fn host_ports(make: Make<'_>) -> Result<(), String> {
    let mut view = view_of([node("a"), node("b"), node("c")]);
    running(&mut view, "old", "c", publish(Protocol::Tcp, 8080));
    let tasks = [
        pending("tcp", 1..=4, publish(Protocol::Tcp, 8080)),
        pending("udp", 1..=1, publish(Protocol::Udp, 8080)),
    ]
    .concat();
    let plan = schedule(&mut *make(), &view, &tasks)?;
    placed(
        &plan,
        3,
        "8080/tcp on the two nodes where it is free, and 8080/udp",
    )
}

fn max_replicas(make: Make<'_>) -> Result<(), String> {
    let at_most_2 = |t: &mut Task| placement(t).max_replicas = 2;
    let mut view = view_of([node("a"), node("b")]);
    running(&mut view, "web", "a", at_most_2);
    let tasks = pending("web", 1..=5, at_most_2);
    let plan = schedule(&mut *make(), &view, &tasks)?;
    placed(
        &plan,
        3,
        "max 2 per node on a node running 1 and an empty one",
    )
}

fn mixed_batch(make: Make<'_>) -> Result<(), String> {
    let zone = |id: &str, z: &str| {
        let mut n = node(id);
        n.spec.annotations.labels.insert("zone".into(), z.into());
        n
    };
    let mut drained = zone("n4", "b");
    drained.spec.availability = Availability::Drain;
    let mut view = view_of([zone("n1", "a"), zone("n2", "b"), zone("n3", "b"), drained]);
    running(&mut view, "cache", "n2", publish(Protocol::Tcp, 6379));
    let groups = [
        pending("web", 1..=6, |_| {}),
        pending("api", 1..=4, |t| {
            placement(t).constraints = vec!["node.labels.zone==b".into()];
            reserve(2_000_000_000, 0)(t);
        }),
        pending("cache", 1..=4, |t| {
            publish(Protocol::Tcp, 6379)(t);
            placement(t).max_replicas = 1;
        }),
        pending("batch", 1..=4, reserve(0, 6 << 30)),
    ];
    // Interleaved: web.001, api.001, cache.001, batch.001, web.002, ...
    let longest = groups.iter().map(Vec::len).max().unwrap_or(0);
    let tasks: Vec<Arc<Task>> = (0..longest)
        .flat_map(|i| groups.iter().filter_map(move |g| g.get(i).cloned()))
        .collect();
    let plan = schedule(&mut *make(), &view, &tasks)?;
    // web fits anywhere: every web task is placed whatever else is.
    let web = plan
        .placements
        .iter()
        .filter(|p| p.task.as_str().starts_with("web."))
        .count();
    expect(web == 6, || {
        format!("places {web} of the 6 unconstrained tasks")
    })
}

fn follows_the_view(make: Make<'_>) -> Result<(), String> {
    let mut scheduler = make();
    let at_most_1 = |t: &mut Task| placement(t).max_replicas = 1;
    let tasks = pending("web", 1..=4, at_most_1);
    let mut view = view_of([node("n1"), node("n2")]);

    let first = schedule(&mut *scheduler, &view, &tasks[..3])?;
    placed(&first, 2, "max 1 per node on two nodes")?;
    account(&mut view, &tasks, &first);

    let mut drained = node("n1");
    drained.spec.availability = Availability::Drain;
    view.upsert_node(Arc::new(drained));
    view.upsert_node(Arc::new(node("n3")));
    let left = not_placed(&tasks, &[&first]);
    let second = schedule(&mut *scheduler, &view, &left)?;
    placed(&second, 1, "n1 drained, n2 full, n3 joined")?;
    account(&mut view, &tasks, &second);

    view.remove_node("n3");
    let left = not_placed(&tasks, &[&first, &second]);
    let third = schedule(&mut *scheduler, &view, &left)?;
    placed(&third, 0, "n1 drained, n2 full, n3 removed")
}

fn expect(ok: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(message()) }
}

/// The contract forces `count` placements on this cluster: `why`.
fn placed(plan: &Plan, count: usize, why: &str) -> Result<(), String> {
    let n = plan.placements.len();
    expect(n == count, || {
        format!("places {n} tasks where a correct scheduler places {count} ({why})")
    })
}

/// A READY, active node with 4 CPUs and 8 GiB.
fn node(id: &str) -> Node {
    testing::node(id, id)
}

fn view_of(nodes: impl IntoIterator<Item = Node>) -> NodeView {
    let mut view = NodeView::new();
    for n in nodes {
        view.upsert_node(Arc::new(n));
    }
    view
}

/// PENDING tasks of service `service` in `slots`, IDs `<service>.<slot>`, as
/// `spec` changes them.
fn pending(service: &str, slots: RangeInclusive<u64>, spec: impl Fn(&mut Task)) -> Vec<Arc<Task>> {
    let svc = testing::service(service, service, "img", 1);
    slots
        .map(|slot| {
            let mut t = testing::task(&format!("{service}.{slot:03}"), &svc, slot);
            t.status.state = TaskState::Pending;
            spec(&mut t);
            Arc::new(t)
        })
        .collect()
}

/// A task of `service` RUNNING on `node`, as `spec` changes it.
fn running(view: &mut NodeView, service: &str, node: &str, spec: impl Fn(&mut Task)) {
    let svc = testing::service(service, service, "img", 1);
    let mut t = testing::task(&format!("{service}.{node}.running"), &svc, 100);
    spec(&mut t);
    t.node_id = node.into();
    t.status.state = TaskState::Running;
    view.account_task(&t);
}

/// Counts the plan's placements in the view, as the driver's writes do.
fn account(view: &mut NodeView, tasks: &[Arc<Task>], plan: &Plan) {
    for p in &plan.placements {
        if let Some(t) = tasks.iter().find(|t| t.id == p.task) {
            view.account_placement(t, &p.node);
        }
    }
}

/// The tasks none of `plans` placed.
fn not_placed(tasks: &[Arc<Task>], plans: &[&Plan]) -> Vec<Arc<Task>> {
    let placed = |id: &Id| plans.iter().any(|p| p.node_of(id.as_str()).is_some());
    tasks.iter().filter(|t| !placed(&t.id)).cloned().collect()
}

fn placement(t: &mut Task) -> &mut Placement {
    t.spec.placement.get_or_insert_with(Default::default)
}

fn reserve(nano_cpus: i64, memory_bytes: i64) -> impl Fn(&mut Task) {
    move |t| {
        t.spec.resources = Some(ResourceRequirements {
            reservations: Some(Resources {
                nano_cpus,
                memory_bytes,
                generic: vec![],
            }),
            ..Default::default()
        })
    }
}

fn publish(protocol: Protocol, port: u32) -> impl Fn(&mut Task) {
    move |t| {
        t.endpoint = Some(Endpoint {
            ports: vec![PortConfig {
                protocol,
                target_port: 80,
                published_port: port,
                publish_mode: PublishMode::Host,
                ..Default::default()
            }],
            ..Default::default()
        })
    }
}
