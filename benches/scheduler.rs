//! The scheduler end to end, on SwarmKit's own benchmark workloads
//! (`manager/scheduler` BenchmarkScheduler*, see ANCHORS.md):
//!
//! - N nodes named `name<i>`, READY, active, no resources; every third node
//!   (i % 3 == 0) offers the plugin `{name: "network", type: "Network"}`;
//! - T tasks `task<i>`, desired RUNNING, observed PENDING, no service; in the
//!   constraint variant each attaches to a network whose driver is `network`,
//!   so only the plugin nodes qualify.
//!
//! The driver (`swarm_sched::Driver::run`) is already following the store on
//! its own thread. The clock starts before the transaction that inserts nodes
//! and tasks commits, and stops once T assignments have been seen on a watch:
//! commit and events, the view update, the pass, validation and the batched
//! write-back are all inside.
//!
//! `cargo bench --bench scheduler` runs criterion (throughput in tasks/s),
//! then the `pass` group: the scheduling pass alone on a prebuilt view, to show
//! the cost per placement against the number of nodes.
//! `SCHED_BENCH_FIGURES=3 cargo bench --bench scheduler` instead prints a table
//! (median of 3 runs per workload); `SCHED_BENCH_ONLY=NAME` keeps only the
//! workload of that name, or those whose name contains NAME (e.g. for
//! `/usr/bin/time -v`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use futures::StreamExt;
use futures::executor::block_on;
use swarm_core::types::*;
use swarm_core::{Action, Filter, Kind, Store};
use swarm_sched::{Driver as Scheduling, NodeView, Scheduler, SpreadScheduler};

#[derive(Clone, Copy)]
struct Workload {
    name: &'static str,
    nodes: usize,
    tasks: usize,
    constraint: bool,
    /// Too slow for criterion's ten samples: figures mode only.
    heavy: bool,
}

const fn w(name: &'static str, nodes: usize, tasks: usize, constraint: bool) -> Workload {
    Workload {
        name,
        nodes,
        tasks,
        constraint,
        heavy: false,
    }
}

const WORKLOADS: [Workload; 9] = [
    w("1k-nodes-1k-tasks", 1_000, 1_000, false),
    w("1k-nodes-1k-tasks-constraint", 1_000, 1_000, true),
    w("1k-nodes-10k-tasks", 1_000, 10_000, false),
    w("1k-nodes-10k-tasks-constraint", 1_000, 10_000, true),
    w("1k-nodes-100k-tasks", 1_000, 100_000, false),
    w("1k-nodes-100k-tasks-constraint", 1_000, 100_000, true),
    w("100k-nodes-1k-tasks", 100_000, 1_000, false),
    w("5k-nodes-100k-tasks-constraint", 5_000, 100_000, true),
    Workload {
        heavy: true,
        ..w("100k-nodes-100k-tasks", 100_000, 100_000, false)
    },
];

fn nodes(n: usize) -> Vec<Node> {
    (0..n)
        .map(|i| {
            let plugins = match i % 3 {
                0 => vec![PluginDescription {
                    r#type: "Network".into(),
                    name: "network".into(),
                }],
                _ => vec![],
            };
            Node {
                id: format!("id{i}").into(),
                spec: NodeSpec {
                    annotations: Annotations::named(format!("name{i}")),
                    ..Default::default()
                },
                status: NodeStatus {
                    state: NodeState::Ready,
                    ..Default::default()
                },
                description: Some(NodeDescription {
                    engine: EngineDescription {
                        plugins,
                        ..Default::default()
                    },
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect()
}

fn tasks(n: usize, constraint: bool) -> Vec<Task> {
    let network = Arc::new(Network {
        driver_state: Some(Driver {
            name: "network".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    (0..n)
        .map(|i| Task {
            id: format!("task{i}").into(),
            desired_state: TaskState::Running,
            status: TaskStatus {
                state: TaskState::Pending,
                ..Default::default()
            },
            networks: match constraint {
                true => vec![NetworkAttachment {
                    network: network.clone(),
                    ..Default::default()
                }],
                false => vec![],
            },
            ..Default::default()
        })
        .collect()
}

/// One run: returns the time from the insert until T assignments were seen.
fn run_once(w: &Workload, check: bool) -> Duration {
    let (nodes, tasks) = (nodes(w.nodes), tasks(w.tasks, w.constraint));
    let store = Store::new();
    let driver = Scheduling::new(store.clone(), Box::new(SpreadScheduler));
    let (stop, stopped) = futures::channel::oneshot::channel::<()>();
    let scheduler = std::thread::spawn(move || {
        block_on(driver.run(async {
            let _ = stopped.await;
        }))
    });
    let mut watch = store.watch(Filter::kinds([Kind::Task]).actions([Action::Update]));

    let start = Instant::now();
    store
        .update_local(|tx| {
            for n in nodes {
                tx.create(n)?;
            }
            for t in tasks {
                tx.create(t)?;
            }
            Ok(())
        })
        .expect("insert");
    let mut assigned = 0;
    block_on(async {
        while assigned < w.tasks {
            let event = watch.next().await.expect("store alive");
            assigned += event
                .changes
                .iter()
                .filter(|c| {
                    c.object
                        .downcast::<Task>()
                        .is_some_and(|t| !t.node_id.is_empty())
                })
                .count();
        }
    });
    let elapsed = start.elapsed();

    let _ = stop.send(());
    scheduler.join().expect("driver thread").expect("driver");
    if check {
        check_even(&store, w);
    }
    elapsed
}

/// The result SwarmKit gets: a perfectly even spread over the qualifying nodes.
fn check_even(store: &Store, w: &Workload) {
    let view = store.view();
    let counts: Vec<usize> = (0..w.nodes)
        .filter(|i| !w.constraint || i % 3 == 0)
        .map(|i| view.tasks_by_node(&format!("id{i}")).count())
        .collect();
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 1, "{}: uneven spread {min}..{max}", w.name);
    assert_eq!(
        counts.iter().sum::<usize>(),
        w.tasks,
        "{}: tasks off qualifying nodes",
        w.name
    );
}

fn selected() -> impl Iterator<Item = &'static Workload> {
    let only = std::env::var("SCHED_BENCH_ONLY").unwrap_or_default();
    let exact = WORKLOADS.iter().any(|w| w.name == only);
    WORKLOADS.iter().filter(move |w| {
        if exact {
            w.name == only
        } else {
            w.name.contains(&only)
        }
    })
}

fn figures(runs: usize) {
    println!("| workload | median time | tasks placed / s | runs |");
    println!("|---|---|---|---|");
    for w in selected() {
        let mut times: Vec<Duration> = (0..runs).map(|i| run_once(w, i == 0)).collect();
        times.sort();
        let median = times[times.len() / 2];
        let rate = w.tasks as f64 / median.as_secs_f64();
        println!(
            "| {} | {:.1} ms | {:.0} | {} |",
            w.name,
            median.as_secs_f64() * 1e3,
            rate,
            runs
        );
    }
}

fn criterion_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for w in selected().filter(|w| !w.heavy) {
        group.throughput(Throughput::Elements(w.tasks as u64));
        let mut first = true;
        group.bench_function(w.name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += run_once(w, std::mem::take(&mut first));
                }
                total
            })
        });
    }
    group.finish();
}

/// The scheduling pass alone (no store): a view of `nodes` nodes built once,
/// then `tasks` tasks placed. Shows how the cost per placement grows with the
/// number of nodes.
fn pass_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("pass");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    for (nodes, tasks) in [
        (1_000, 1_000),
        (10_000, 1_000),
        (100_000, 1_000),
        (1_000, 100_000),
    ] {
        let mut view = NodeView::new();
        for n in self::nodes(nodes) {
            view.upsert_node(Arc::new(n));
        }
        let batch: Vec<Arc<Task>> = self::tasks(tasks, false)
            .into_iter()
            .map(Arc::new)
            .collect();
        group.throughput(Throughput::Elements(tasks as u64));
        group.bench_function(format!("{nodes}-nodes-{tasks}-tasks"), |b| {
            b.iter(|| SpreadScheduler.schedule(&view, &batch))
        });
    }
    group.finish();
}

fn main() {
    match std::env::var("SCHED_BENCH_FIGURES") {
        Ok(runs) => figures(runs.parse().unwrap_or(3).max(1)),
        Err(_) => {
            let mut c = Criterion::default().configure_from_args();
            criterion_benches(&mut c);
            if std::env::var("SCHED_BENCH_ONLY").is_err() {
                pass_benches(&mut c);
            }
            c.final_summary();
        }
    }
}
