use std::time::Duration;

use swarm_core::testing::{node, service, task};
use swarm_core::types::*;
use swarm_core::{Id, Store};

use super::*;

fn published(id: &str, ports: &[(Protocol, u32, u32, PublishMode)]) -> Service {
    let mut s = service(id, id, "web:1", 3);
    s.spec.endpoint = Some(EndpointSpec {
        ports: ports
            .iter()
            .map(
                |&(protocol, published_port, target_port, publish_mode)| PortConfig {
                    protocol,
                    published_port,
                    target_port,
                    publish_mode,
                    ..Default::default()
                },
            )
            .collect(),
        ..Default::default()
    });
    s
}

fn meshed(id: &str, addr: &str) -> Node {
    let mut n = node(id, id);
    n.description.as_mut().unwrap().mesh_addr = addr.into();
    n
}

fn running(id: &str, s: &Service, slot: u64, node: &str) -> Task {
    let mut t = task(id, s, slot);
    t.node_id = Id::from(node);
    t.status.state = TaskState::Running;
    t
}

fn seed(objects: impl FnOnce(&mut swarm_core::Tx) -> swarm_core::Result<()>) -> Store {
    let store = Store::new();
    store.update_local(objects).unwrap();
    store
}

#[test]
fn running_tasks_on_ready_nodes_back_ingress_ports() {
    let web = published(
        "web",
        &[
            (Protocol::Tcp, 8080, 80, PublishMode::Ingress),
            (Protocol::Udp, 8080, 80, PublishMode::Ingress),
            (Protocol::Tcp, 9000, 90, PublishMode::Host),
        ],
    );
    let plain = service("plain", "plain", "x", 1);
    let store = seed(|tx| {
        tx.create(meshed("n1", "127.0.0.31:7946"))?;
        tx.create(meshed("n2", "127.0.0.32:7946"))?;
        let mut down = meshed("n3", "127.0.0.33:7946");
        down.status.state = NodeState::Down;
        tx.create(down)?;
        tx.create(web.clone())?;
        tx.create(plain.clone())?;
        tx.create(running("t1", &web, 1, "n1"))?;
        let mut stopping = running("t2", &web, 2, "n2");
        stopping.desired_state = TaskState::Shutdown;
        stopping.spec.container.stop_grace_period = Some(Duration::from_secs(3));
        tx.create(stopping)?;
        tx.create(running("t3", &web, 3, "n3"))?;
        let mut starting = running("t4", &web, 4, "n1");
        starting.status.state = TaskState::Starting;
        tx.create(starting)?;
        tx.create(running("p1", &plain, 1, "n1"))?;
        Ok(())
    });
    let v = compute(&store.view());
    assert_eq!(v.peers, vec!["127.0.0.31:7946", "127.0.0.32:7946"]);
    assert_eq!(v.services.len(), 1, "only services with ingress ports");
    let s = &v.services[0];
    assert_eq!(s.name, "web");
    let ports: Vec<_> = s
        .ports
        .iter()
        .map(|p| (p.protocol, p.published_port, p.target_port))
        .collect();
    assert_eq!(
        ports,
        vec![(Protocol::Tcp, 8080, 80), (Protocol::Udp, 8080, 80)],
        "host-mode ports are not the mesh's"
    );
    let backends: Vec<_> = s
        .backends
        .iter()
        .map(|b| (b.task_id.as_str(), b.mesh_addr.as_str(), b.draining_for))
        .collect();
    assert_eq!(
        backends,
        vec![
            ("t1", "127.0.0.31:7946", None),
            ("t2", "127.0.0.32:7946", Some(Duration::from_secs(3))),
        ],
        "a task on a down node and one not yet running are left out; a stopping one drains"
    );
}

#[test]
fn allocated_ports_win_and_the_proxy_label_marks_ports() {
    let mut web = published("web", &[(Protocol::Tcp, 0, 80, PublishMode::Ingress)]);
    web.endpoint = Some(Endpoint {
        ports: vec![PortConfig {
            protocol: Protocol::Tcp,
            published_port: 30001,
            target_port: 80,
            ..Default::default()
        }],
        ..Default::default()
    });
    web.spec
        .annotations
        .labels
        .insert(PROXY_PROTOCOL_LABEL.into(), "30001".into());
    let ports = ingress_ports(&web);
    assert_eq!(ports.len(), 1);
    assert_eq!(
        (ports[0].published_port, ports[0].proxy_protocol),
        (30001, true)
    );

    let unallocated = published("x", &[(Protocol::Tcp, 0, 80, PublishMode::Ingress)]);
    assert!(
        ingress_ports(&unallocated).is_empty(),
        "a port waiting for the allocator is not served yet"
    );
}

#[tokio::test]
async fn the_feed_follows_task_changes_and_skips_unrelated_ones() {
    let web = published("web", &[(Protocol::Tcp, 8080, 80, PublishMode::Ingress)]);
    let plain = service("plain", "plain", "x", 1);
    let store = seed(|tx| {
        tx.create(meshed("n1", "127.0.0.31:7946"))?;
        tx.create(web.clone())?;
        tx.create(plain.clone())?;
        Ok(())
    });
    let mut rx = feed(store.clone());
    assert!(rx.borrow_and_update().services[0].backends.is_empty());

    store
        .update_local(|tx| tx.create(running("p1", &plain, 1, "n1")).map(drop))
        .unwrap();
    store
        .update_local(|tx| tx.create(running("t1", &web, 1, "n1")).map(drop))
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("a new view")
        .unwrap();
    let v = rx.borrow_and_update().clone();
    assert_eq!(v.services[0].backends.len(), 1);
    assert_eq!(v.services[0].backends[0].task_id.as_str(), "t1");

    store
        .update_local(|tx| {
            let mut t = (*tx.get::<Task>("t1").unwrap()).clone();
            t.status.state = TaskState::Complete;
            tx.update(t).map(drop)
        })
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("a new view")
        .unwrap();
    assert!(rx.borrow().services[0].backends.is_empty());
}

#[test]
fn host_mode_ports_travel_with_the_tasks_that_reported_them() {
    let host = published("host", &[(Protocol::Tcp, 0, 80, PublishMode::Host)]);
    let store = seed(|tx| {
        tx.create(meshed("n1", "127.0.0.31:7946"))?;
        tx.create(meshed("n2", "127.0.0.32:7946"))?;
        tx.create(host.clone())?;
        let mut t1 = running("t1", &host, 1, "n1");
        t1.status.port_status = Some(PortStatus {
            ports: vec![
                PortConfig {
                    protocol: Protocol::Tcp,
                    published_port: 31000,
                    target_port: 80,
                    publish_mode: PublishMode::Host,
                    ..Default::default()
                },
                PortConfig {
                    protocol: Protocol::Sctp,
                    published_port: 31001,
                    target_port: 81,
                    publish_mode: PublishMode::Host,
                    ..Default::default()
                },
            ],
        });
        tx.create(t1)?;
        tx.create(running("t2", &host, 2, "n2"))?;
        Ok(())
    });
    let v = compute(&store.view());
    assert_eq!(v.services.len(), 1, "a host-mode service is in the view");
    let s = &v.services[0];
    assert!(s.ports.is_empty(), "no port answers on every node");
    let reported: Vec<_> = s
        .backends
        .iter()
        .map(|b| {
            let ports: Vec<_> = b
                .host_ports
                .iter()
                .map(|p| (p.published_port, p.target_port))
                .collect();
            (b.task_id.as_str(), ports)
        })
        .collect();
    assert_eq!(
        reported,
        vec![("t1", vec![(31000, 80)]), ("t2", vec![])],
        "each task with what its node reported (TCP and UDP only)"
    );
}
