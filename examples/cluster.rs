//! A local swarm in one process: 3 managers and 2 workers on loopback addresses,
//! each with its own data directory and the process runtime. It creates a
//! 5-replica service, scales it to 10, drains a worker, stops the leader, and
//! prints the node and task tables as `docker node ls` / `docker service ps`
//! would.
//!
//! Run with `cargo run --release --example cluster`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use swarm::core::types::*;
use swarm::runtime::{ProcessRuntime, Runtime};
use swarm::{Control, TaskFilter};
use swarm::{Manager, ManagerConfig, Worker, WorkerConfig};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    let base = tempfile::tempdir()?;
    let runtimes = std::cell::RefCell::new(Vec::<Arc<dyn Runtime>>::new());
    let runtime = |name: &str| -> Result<Arc<dyn Runtime>> {
        let rt: Arc<dyn Runtime> =
            Arc::new(ProcessRuntime::new(base.path().join(name).join("runtime"))?);
        runtimes.borrow_mut().push(rt.clone());
        Ok(rt)
    };

    println!("$ docker swarm init --advertise-addr 127.0.0.1");
    let first = Manager::start(
        ManagerConfig::new(base.path().join("manager1"), "127.0.0.1:0")
            .hostname("manager1")
            .runtime(runtime("manager1")?),
    )
    .await?;
    let tokens = first.control().join_tokens()?;
    println!(
        "Swarm initialized: current node ({}) is now a manager.\n",
        first.node_id()
    );
    println!("To add a worker to this swarm, run the following command:\n");
    println!(
        "    docker swarm join --token {} {}\n",
        tokens.worker,
        first.addr()
    );

    let mut managers = vec![first];
    for (i, ip) in [(2, "127.0.0.2"), (3, "127.0.0.3")] {
        let name = format!("manager{i}");
        let cfg = ManagerConfig::new(base.path().join(&name), format!("{ip}:0"))
            .hostname(&name)
            .runtime(runtime(&name)?);
        managers.push(Manager::join(cfg, managers[0].addr(), &tokens.manager).await?);
        println!("{name}: This node joined a swarm as a manager.");
    }
    let mut workers = Vec::new();
    for (i, _ip) in [(1, "127.0.0.4"), (2, "127.0.0.5")] {
        let name = format!("worker{i}");
        let cfg = WorkerConfig::new(base.path().join(&name))
            .hostname(&name)
            .join(managers[0].addr(), &tokens.worker);
        workers.push(Worker::start(cfg, runtime(&name)?).await?);
        println!("{name}: This node joined a swarm as a worker.");
    }
    let control = managers[0].control().clone();
    wait("5 nodes ready", || ready_nodes(&control) == 5).await?;
    println!("\n$ docker node ls");
    print_nodes(&control, managers[0].node_id());

    println!("\n$ docker service create --replicas 5 --name helloworld alpine ping docker.com");
    let started = Instant::now();
    control.create_service(spec("helloworld", 5)).await?;
    wait("5 running", || running(&control, "helloworld") == 5).await?;
    println!("5/5 running after {:?}", started.elapsed());
    print_tasks(&control, "helloworld");

    println!("\n$ docker service scale helloworld=10");
    let started = Instant::now();
    control.scale_service("helloworld", 10).await?;
    wait("10 running", || running(&control, "helloworld") == 10).await?;
    println!("10/10 running after {:?}", started.elapsed());
    print_tasks(&control, "helloworld");

    println!("\n$ docker node update --availability drain worker1");
    let w1 = control.inspect_node("worker1")?;
    let mut drain = w1.spec.clone();
    drain.availability = Availability::Drain;
    control
        .update_node("worker1", w1.meta.version.index, drain)
        .await?;
    wait("nothing on worker1 and 10 running", || {
        running(&control, "helloworld") == 10
            && tasks(&control, "helloworld").iter().all(|t| {
                t.node_id != w1.id
                    || t.desired_state > TaskState::Running && t.status.state.is_terminal()
            })
    })
    .await?;
    print_nodes(&control, managers[0].node_id());
    print_tasks(&control, "helloworld");

    let leader = managers
        .iter()
        .position(|m| m.is_leader())
        .context("no leader")?;
    let gone = managers.remove(leader);
    let gone_id = gone.node_id().clone();
    println!("\n# stopping the leader ({gone_id})");
    let started = Instant::now();
    gone.shutdown().await;
    wait("a new leader", || managers.iter().any(|m| m.is_leader())).await?;
    println!("new leader elected after {:?}", started.elapsed());
    let control = managers[0].control().clone();
    wait("10 running without the old leader", || {
        running(&control, "helloworld") == 10
            && tasks(&control, "helloworld")
                .iter()
                .filter(|t| t.desired_state == TaskState::Running)
                .all(|t| t.node_id != gone_id)
    })
    .await?;
    println!("\n$ docker node ls");
    print_nodes(&control, managers[0].node_id());
    println!("\n$ docker service ps helloworld");
    print_tasks(&control, "helloworld");

    println!("\n$ docker service rm helloworld");
    control.remove_service("helloworld").await?;
    // Every node still up stops and removes its tasks; the stopped leader's are
    // cleaned up here (nothing runs that node anymore).
    let runtimes = runtimes.into_inner();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut left = 0;
        for rt in &runtimes {
            left += rt.list().await?.len();
        }
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{left} tasks left on the nodes after service rm");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Instant::now() + Duration::from_secs(50) > deadline {
            for rt in &runtimes {
                for t in rt.list().await? {
                    if t.labels.node_id == gone_id {
                        rt.remove(&t.labels.task_id).await?;
                    }
                }
            }
        }
    }
    println!("helloworld removed: no task left on any node");
    for w in workers {
        w.shutdown().await;
    }
    for m in managers {
        m.shutdown().await;
    }
    Ok(())
}

fn spec(name: &str, replicas: u64) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations::named(name),
        task: TaskSpec {
            container: ContainerSpec {
                image: "alpine".into(),
                command: vec!["/bin/sh".into(), "-c".into(), "sleep 3600".into()],
                stop_grace_period: Some(Duration::from_secs(1)),
                ..Default::default()
            },
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas },
        ..Default::default()
    }
}

async fn wait(what: &str, f: impl Fn() -> bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn ready_nodes(c: &Control) -> usize {
    c.list_nodes(&Default::default())
        .iter()
        .filter(|n| n.status.state == NodeState::Ready)
        .count()
}

fn tasks(c: &Control, service: &str) -> Vec<Arc<Task>> {
    c.list_tasks(&TaskFilter {
        services: vec![service.into()],
        ..Default::default()
    })
    .unwrap_or_default()
}

fn running(c: &Control, service: &str) -> usize {
    tasks(c, service)
        .iter()
        .filter(|t| t.status.state == TaskState::Running && t.desired_state == TaskState::Running)
        .count()
}

fn print_nodes(c: &Control, me: &swarm::core::Id) {
    println!(
        "{:<28} {:<10} {:<8} {:<13} {:<15} ENGINE VERSION",
        "ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER STATUS"
    );
    for n in c.list_nodes(&Default::default()) {
        let star = if &n.id == me { " *" } else { "" };
        let manager = match &n.manager_status {
            Some(m) if m.leader => "Leader",
            Some(m)
                if m.reachability == Reachability::Reachable
                    && n.status.state != NodeState::Down =>
            {
                "Reachable"
            }
            Some(_) => "Unreachable",
            None => "",
        };
        let engine = n
            .description
            .as_ref()
            .map(|d| d.engine.engine_version.clone())
            .unwrap_or_default();
        println!(
            "{:<28} {:<10} {:<8} {:<13} {:<15} {}",
            format!("{}{star}", n.id),
            n.name(),
            title(&format!("{:?}", n.status.state)),
            title(&format!("{:?}", n.spec.availability)),
            manager,
            engine
        );
    }
}

fn title(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| {
            f.to_uppercase()
                .chain(c.flat_map(|x| x.to_lowercase()))
                .collect()
        })
        .unwrap_or_default()
}

fn print_tasks(c: &Control, service: &str) {
    println!(
        "{:<13} {:<16} {:<8} {:<10} {:<14} {:<24} ERROR",
        "ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE"
    );
    let mut last_slot = None;
    for t in tasks(c, service) {
        let node = c
            .inspect_node(&t.node_id)
            .map(|n| n.name().to_string())
            .unwrap_or_default();
        let name = if last_slot == Some(t.slot) {
            format!(" \\_ {}", t.annotations.name)
        } else {
            t.annotations.name.clone()
        };
        last_slot = Some(t.slot);
        let ago = t.status.timestamp.since(Timestamp::ZERO).as_secs();
        let now = Timestamp::now().since(Timestamp::ZERO).as_secs();
        println!(
            "{:<13} {:<16} {:<8} {:<10} {:<14} {:<24} {}",
            &t.id.as_str()[..12.min(t.id.len())],
            name,
            t.spec.container.image,
            node,
            title(t.desired_state.as_str()),
            format!(
                "{} {} seconds ago",
                title(t.status.state.as_str()),
                now.saturating_sub(ago)
            ),
            t.status.err
        );
    }
}

use swarm::core::Timestamp;
