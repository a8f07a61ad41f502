//! The allocator on a real swarm: three managers over real sockets (raft, TLS)
//! and one worker running tasks with the process runtime. Subnets come from
//! the pool given at init; services get VIPs and published ports, tasks get
//! addresses; a leader failover keeps every allocation and hands out no
//! address twice; `service update --publish-add` restarts no task; `service
//! rm` frees the VIPs, the port and the task addresses for the next service.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use swarm::Control;
use swarm::NetworkConfig;
use swarm::core::types::*;
use swarm::core::{Id, View};
use swarm::testing::{Cluster, eventually, sleep_spec, tasks, wanted_running};

fn spec(name: &str, replicas: u64) -> ServiceSpec {
    let mut s = sleep_spec(name, replicas);
    s.task.networks = vec![NetworkAttachmentConfig {
        target: "backend".into(),
        ..Default::default()
    }];
    s.task.placement = Some(Placement {
        constraints: vec!["node.role==worker".into()],
        ..Default::default()
    });
    s.endpoint = Some(EndpointSpec {
        mode: ResolutionMode::Vip,
        ports: vec![PortConfig {
            target_port: 80,
            published_port: 8080,
            ..Default::default()
        }],
    });
    s
}

/// Every address held in `view` (VIPs, and tasks not stopped for good and
/// unwanted), with its network.
fn held(view: &View) -> Vec<(Id, String)> {
    let mut out = Vec::new();
    for s in view.list::<Service>() {
        for v in s.endpoint.iter().flat_map(|e| e.virtual_ips.iter()) {
            out.push((v.network_id.clone(), v.addr.clone()));
        }
    }
    for t in view.list::<Task>() {
        if t.status.state.is_terminal() && t.desired_state > TaskState::Running {
            continue;
        }
        for a in &t.networks {
            for addr in &a.addresses {
                out.push((a.network.id.clone(), addr.clone()));
            }
        }
    }
    out
}

fn assert_no_duplicate(view: &View) {
    let all = held(view);
    let set: BTreeSet<&(Id, String)> = all.iter().collect();
    assert_eq!(set.len(), all.len(), "an address held twice: {all:?}");
}

fn wanted(c: &Control, service: &str) -> Vec<Arc<Task>> {
    tasks(c, service)
        .into_iter()
        .filter(|t| t.desired_state == TaskState::Running)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allocations_survive_failover_and_are_freed_and_reused() {
    let mut cluster = Cluster::builder()
        .managers(3)
        .managers_run_tasks(false)
        .network(NetworkConfig {
            default_addr_pool: vec!["10.20.0.0/16".into()],
            subnet_size: 26,
            data_path_port: 4800,
        })
        .workers(1)
        .start()
        .await;

    let c = cluster.control();
    let info = c.info(&Id::from("x"), "").unwrap();
    assert_eq!(
        (
            info.default_address_pool.clone(),
            info.subnet_size,
            info.data_path_port
        ),
        (vec!["10.20.0.0/16".to_string()], 26, 4800)
    );
    eventually("the ingress network allocated from the pool", || {
        c.inspect_network("ingress").is_ok_and(|n| {
            n.ipam
                .as_ref()
                .is_some_and(|i| i.configs[0].subnet == "10.20.0.0/26")
        })
    })
    .await;
    let backend = c
        .create_network(NetworkSpec {
            annotations: Annotations::named("backend"),
            ..Default::default()
        })
        .await
        .unwrap();
    c.create_service(spec("web", 3)).await.unwrap();
    eventually("3 wanted web tasks running", || {
        wanted_running(&c, "web").len() == 3
    })
    .await;
    let web = c.inspect_service("web").unwrap();
    let endpoint = web.endpoint.clone().expect("web allocated");
    assert_eq!(endpoint.ports[0].published_port, 8080);
    let ingress = c.inspect_network("ingress").unwrap();
    let vip_nets: Vec<&Id> = endpoint.virtual_ips.iter().map(|v| &v.network_id).collect();
    assert_eq!(vip_nets, [&backend.id, &ingress.id]);
    assert_eq!(
        endpoint.virtual_ips[0].addr, "10.20.0.66/26",
        "backend: 10.20.0.64/26"
    );
    for t in wanted(&c, "web") {
        let nets: Vec<&Id> = t.networks.iter().map(|a| &a.network.id).collect();
        assert_eq!(nets, [&backend.id, &ingress.id]);
    }
    assert_no_duplicate(&c.store().view());
    let before = c.store().view();

    // The leader goes; the next one keeps every allocation and adds new ones
    // without reusing a held address.
    cluster.stop_leader().await;
    eventually("a new leader", || cluster.leader().is_some()).await;
    let c = cluster.control();
    c.scale_service("web", 6).await.unwrap();
    eventually("6 wanted web tasks running", || {
        wanted_running(&c, "web").len() == 6
    })
    .await;
    let after = c.store().view();
    for t in before.list::<Task>() {
        assert_eq!(
            after.get::<Task>(&t.id).map(|n| n.networks.clone()),
            Some(t.networks.clone()),
            "task {} kept its addresses",
            t.id
        );
    }
    assert_eq!(
        after.resolve::<Service>("web").unwrap().endpoint,
        Some(endpoint.clone())
    );
    assert_no_duplicate(&after);

    // publish-add: a new port is picked, the tasks keep running untouched.
    let ids: BTreeSet<Id> = wanted(&c, "web").iter().map(|t| t.id.clone()).collect();
    let s = c.inspect_service("web").unwrap();
    let mut new_spec = s.spec.clone();
    new_spec.endpoint.as_mut().unwrap().ports.push(PortConfig {
        target_port: 81,
        protocol: Protocol::Udp,
        ..Default::default()
    });
    c.update_service("web", s.meta.version.index, new_spec)
        .await
        .unwrap();
    eventually("the picked port", || {
        c.inspect_service("web")
            .is_ok_and(|s| s.endpoint.as_ref().is_some_and(|e| e.ports.len() == 2))
    })
    .await;
    let e = c.inspect_service("web").unwrap().endpoint.clone().unwrap();
    assert_eq!(e.ports[1].published_port, 30000);
    assert_eq!(e.virtual_ips, endpoint.virtual_ips);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let now: BTreeSet<Id> = wanted_running(&c, "web")
        .iter()
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(now, ids, "no task restarted by an endpoint change");
    assert_eq!(tasks(&c, "web").len(), 6, "no task created");

    // service rm: once its tasks stopped, the next service gets the same VIPs,
    // port and task addresses.
    let old_addrs: BTreeSet<String> = wanted(&c, "web")
        .iter()
        .flat_map(|t| t.networks.iter().flat_map(|a| a.addresses.clone()))
        .collect();
    c.remove_service("web").await.unwrap();
    let web_id = s.id.clone();
    eventually("web's tasks stopped or gone", || {
        c.store()
            .view()
            .list::<Task>()
            .filter(|t| t.service_id == web_id)
            .all(|t| t.status.state.is_terminal())
    })
    .await;
    c.create_service(spec("api", 6)).await.unwrap();
    eventually("6 api tasks running", || {
        wanted_running(&c, "api").len() == 6
    })
    .await;
    let api = c.inspect_service("api").unwrap();
    assert_eq!(api.endpoint.as_ref().unwrap().ports[0].published_port, 8080);
    assert_eq!(
        api.endpoint.as_ref().unwrap().virtual_ips,
        endpoint.virtual_ips
    );
    let new_addrs: BTreeSet<String> = wanted(&c, "api")
        .iter()
        .flat_map(|t| t.networks.iter().flat_map(|a| a.addresses.clone()))
        .collect();
    assert_eq!(new_addrs, old_addrs, "freed task addresses reused");
    assert_no_duplicate(&c.store().view());

    cluster.shutdown().await;
}
