//! Store benchmarks, shaped like SwarmKit's own (`manager/state/store`
//! `Benchmark*Node*`): nodes with a random ID and spec name `name<i>`, preloaded
//! in one transaction. Every figure is time per operation.
//!
//! Run: `cargo bench --bench store`. Figures and the comparison with SwarmKit are
//! in BENCHMARKS.md.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use swarm_core::types::{Annotations, Node, NodeSpec, Service, Task, TaskState};
use swarm_core::{Id, Store};

fn new_node(id: Id, i: usize) -> Node {
    Node {
        id,
        spec: NodeSpec {
            annotations: Annotations::named(format!("name{i}")),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn ids(n: usize) -> Vec<Id> {
    (0..n).map(|_| Id::generate()).collect()
}

/// A store with `n` nodes created in one transaction.
fn setup_nodes(n: usize) -> (Store, Vec<Id>) {
    let store = Store::new();
    let ids = ids(n);
    store
        .update_local(|tx| {
            for (i, id) in ids.iter().enumerate() {
                tx.create(new_node(id.clone(), i))?;
            }
            Ok(())
        })
        .unwrap();
    (store, ids)
}

/// A store with `n` tasks spread over `n / 100` services (100 tasks each).
fn setup_tasks(n: usize) -> (Store, Vec<Id>) {
    let store = Store::new();
    let services: Vec<Id> = (0..n / 100).map(|_| Id::generate()).collect();
    store
        .update_local(|tx| {
            for (s, sid) in services.iter().enumerate() {
                tx.create(Service {
                    id: sid.clone(),
                    spec: swarm_core::types::ServiceSpec {
                        annotations: Annotations::named(format!("svc{s}")),
                        ..Default::default()
                    },
                    ..Default::default()
                })?;
                for slot in 1..=100 {
                    tx.create(Task {
                        service_id: sid.clone(),
                        slot,
                        node_id: Id::from(format!("node{}", slot % 7)),
                        desired_state: TaskState::Running,
                        ..Default::default()
                    })?;
                }
            }
            Ok(())
        })
        .unwrap();
    (store, services)
}

fn bench_size(c: &mut Criterion, n: usize) {
    let label = if n >= 100_000 { "100k" } else { "10k" };
    let mut g = c.benchmark_group(format!("store/{label}"));
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);

    // Create nodes in one big transaction (transactions of up to n creates).
    g.bench_function("create_node_in_one_tx", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let chunk = left.min(n);
                let store = Store::new();
                let ids = ids(chunk);
                let start = Instant::now();
                store
                    .update_local(|tx| {
                        for (i, id) in ids.iter().enumerate() {
                            tx.create(new_node(id.clone(), i))?;
                        }
                        Ok(())
                    })
                    .unwrap();
                total += start.elapsed();
                left -= chunk;
            }
            total
        })
    });

    let (store, node_ids) = setup_nodes(n);

    // Update nodes (read, change the name, write) in one big transaction.
    g.bench_function("update_node_in_one_tx", |b| {
        let mut round = 0usize;
        b.iter_custom(|iters| {
            round += 1;
            let start = Instant::now();
            store
                .update_local(|tx| {
                    for i in 0..iters as usize {
                        let id = &node_ids[i % n];
                        let mut node = (*tx.get::<Node>(id).unwrap()).clone();
                        node.spec.annotations.name = format!("{id}_{round}_{i}");
                        tx.update(node)?;
                    }
                    Ok(())
                })
                .unwrap();
            start.elapsed()
        })
    });

    // One transaction and commit per update.
    g.bench_function("update_node_tx_commit_each", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let id = &node_ids[i % n];
            let name = format!("{id}_c{i}");
            store
                .update_local(|tx| {
                    let mut node = (*tx.get::<Node>(id).unwrap()).clone();
                    node.spec.annotations.name = name;
                    tx.update(node).map(drop)
                })
                .unwrap();
            i += 1;
        })
    });

    let view = store.view();
    g.bench_function("get_node", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            black_box(view.get::<Node>(&node_ids[i % n]))
        })
    });
    // A deep copy, as SwarmKit's Get returns: the price of not sharing.
    g.bench_function("get_node_deep_copy", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            black_box(view.get::<Node>(&node_ids[i % n]).map(|n| (*n).clone()))
        })
    });

    let (named, named_ids) = setup_nodes(n);
    let named_view = named.view();
    g.bench_function("find_node_by_name", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            black_box(named_view.find_by_name::<Node>(&format!("name{i}")).next())
        })
    });

    g.bench_function("find_all_nodes", |b| {
        b.iter(|| black_box(named_view.list::<Node>().collect::<Vec<Arc<Node>>>()))
    });

    let (tasks, services) = setup_tasks(n);
    let tasks_view = tasks.view();
    g.bench_function("find_100_tasks_by_service", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            black_box(
                tasks_view
                    .tasks_by_service(&services[i % services.len()])
                    .collect::<Vec<Arc<Task>>>(),
            )
        })
    });

    // 5 writer threads (a transaction per update) and 5 reader threads (gets)
    // at once; time per round of 5 updates + 5 reads.
    g.bench_function("concurrent_5_writers_5_readers", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            std::thread::scope(|scope| {
                for w in 0..5 {
                    let (store, ids) = (&named, &named_ids);
                    scope.spawn(move || {
                        for i in 0..iters as usize {
                            let id = &ids[i % n];
                            let name = format!("{id}_{w}_{i}");
                            store
                                .update_local(|tx| {
                                    let mut node = (*tx.get::<Node>(id).unwrap()).clone();
                                    node.spec.annotations.name = name;
                                    tx.update(node).map(drop)
                                })
                                .unwrap();
                        }
                    });
                }
                for _ in 0..5 {
                    let (view, ids) = (named.view(), &named_ids);
                    scope.spawn(move || {
                        for i in 0..iters as usize {
                            black_box(view.get::<Node>(&ids[i % n]));
                        }
                    });
                }
            });
            start.elapsed()
        })
    });
    // The same with the 10 workers as tasks on a 2-thread runtime: goroutines
    // on GOMAXPROCS=2, as SwarmKit's benchmark runs on this machine.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    g.bench_function("concurrent_5_writers_5_readers_on_2_threads", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                let mut handles = Vec::new();
                for w in 0..5 {
                    let (store, ids) = (named.clone(), named_ids.clone());
                    handles.push(tokio::spawn(async move {
                        for i in 0..iters as usize {
                            let id = &ids[i % n];
                            let name = format!("{id}_{w}_{i}");
                            store
                                .update_local(|tx| {
                                    let mut node = (*tx.get::<Node>(id).unwrap()).clone();
                                    node.spec.annotations.name = name;
                                    tx.update(node).map(drop)
                                })
                                .unwrap();
                        }
                    }));
                }
                for _ in 0..5 {
                    let (view, ids) = (named.view(), named_ids.clone());
                    handles.push(tokio::spawn(async move {
                        for i in 0..iters as usize {
                            black_box(view.get::<Node>(&ids[i % n]));
                        }
                    }));
                }
                for h in handles {
                    h.await.unwrap();
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_size(c, 10_000);
    bench_size(c, 100_000);
}

criterion_group!(store, benches);
criterion_main!(store);
