use std::collections::BTreeMap;
use std::sync::Arc;

use swarm_core::testing::{node, service, task};
use swarm_core::types::*;
use swarm_core::{Id, Store};

use super::*;

pub(crate) fn overlay(id: &str, vni: u32, subnet: &str, gateway: &str) -> Network {
    Network {
        id: Id::from(id),
        spec: NetworkSpec {
            annotations: Annotations::named(id),
            driver_config: Driver {
                name: "overlay".into(),
                options: BTreeMap::new(),
            },
            ..Default::default()
        },
        driver_state: Some(Driver {
            name: "overlay".into(),
            options: [(VXLAN_OPTION.to_string(), vni.to_string())].into(),
        }),
        ipam: Some(IpamOptions {
            configs: vec![IpamConfig {
                subnet: subnet.into(),
                gateway: gateway.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn on(mut t: Task, net: &Network, addr: &str, node_id: &str, state: TaskState) -> Task {
    t.node_id = Id::from(node_id);
    t.status.state = state;
    t.networks.push(NetworkAttachment {
        network: Arc::new(net.clone()),
        addresses: vec![addr.into()],
        aliases: vec![],
    });
    t
}

pub(crate) fn addressed(id: &str, addr: &str) -> Node {
    let mut n = node(id, id);
    n.status.addr = addr.into();
    n
}

/// A store with an overlay `backend` (and ingress) holding service `web`
/// (VIP, alias `www`: t1 running on n1, t2 starting on n2) and `db` (dnsrr: t3
/// running on n2), plus tasks the view leaves out (leaving, on ingress only).
pub(crate) fn backend_store() -> Store {
    let net = overlay("backend", 4097, "10.0.1.0/24", "10.0.1.1");
    let mut ingress = overlay("ingress", 4096, "10.0.0.0/24", "10.0.0.1");
    ingress.spec.ingress = true;
    let mut web = service("web", "web", "busybox", 2);
    web.spec.task.networks = vec![NetworkAttachmentConfig {
        target: "backend".into(),
        aliases: vec!["www".into()],
        ..Default::default()
    }];
    web.endpoint = Some(Endpoint {
        virtual_ips: vec![VirtualIp {
            network_id: Id::from("backend"),
            addr: "10.0.1.2/24".into(),
        }],
        ..Default::default()
    });
    let mut db = service("db", "db", "busybox", 1);
    db.spec.endpoint = Some(EndpointSpec {
        mode: ResolutionMode::Dnsrr,
        ..Default::default()
    });
    let store = Store::new();
    store
        .update_local(|tx| {
            let mut n1 = addressed("n1", "192.168.3.1");
            n1.description.as_mut().unwrap().mesh_addr = "192.168.30.1:7946".into();
            tx.create(n1)?;
            tx.create(addressed("n2", "192.168.3.2"))?;
            tx.create(net.clone())?;
            tx.create(ingress.clone())?;
            tx.create(web.clone())?;
            tx.create(db.clone())?;
            tx.create(on(
                task("t1", &web, 1),
                &net,
                "10.0.1.3/24",
                "n1",
                TaskState::Running,
            ))?;
            tx.create(on(
                task("t2", &web, 2),
                &net,
                "10.0.1.4/24",
                "n2",
                TaskState::Starting,
            ))?;
            tx.create(on(
                task("t3", &db, 1),
                &net,
                "10.0.1.5/24",
                "n2",
                TaskState::Running,
            ))?;
            // Leaving, or on ingress only: not in the view.
            let mut gone = on(
                task("t4", &web, 3),
                &net,
                "10.0.1.6/24",
                "n1",
                TaskState::Running,
            );
            gone.desired_state = TaskState::Shutdown;
            tx.create(gone)?;
            tx.create(on(
                task("t5", &web, 4),
                &ingress,
                "10.0.0.5/24",
                "n1",
                TaskState::Running,
            ))?;
            Ok(())
        })
        .unwrap();
    store
}

#[test]
fn view_lists_overlay_tasks_with_their_nodes_and_services() {
    let store = backend_store();
    let v = compute(&store.view());
    assert_eq!(v.vxlan_port, 4789);
    assert_eq!(
        v.nodes,
        vec![
            (Id::from("n1"), "192.168.30.1".parse().unwrap()),
            (Id::from("n2"), "192.168.3.2".parse().unwrap())
        ]
    );
    assert_eq!(v.networks.len(), 1);
    let n = &v.networks[0];
    assert_eq!(
        (n.vni, n.subnet.as_str(), n.gateway.as_str()),
        (4097, "10.0.1.0/24", "10.0.1.1")
    );
    let ids: Vec<&str> = n.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["t1", "t2", "t3"]);
    assert_eq!(n.tasks[0].name, "web.1.t1");
    assert_eq!(n.tasks[0].node_addr, Some("192.168.30.1".parse().unwrap()));
    assert!(n.tasks[0].running && !n.tasks[1].running);
}

#[test]
fn only_overlay_task_changes_are_relevant() {
    let net = overlay("backend", 4097, "10.0.1.0/24", "10.0.1.1");
    let web = service("web", "web", "busybox", 1);
    let plain = task("p1", &web, 1);
    let store = Store::new();
    let (_, mut watch) = store.view_and_watch(Filter::kinds([Kind::Task]));
    store
        .update_local(|tx| {
            tx.create(plain.clone())?;
            tx.create(on(
                task("t1", &web, 2),
                &net,
                "10.0.1.3/24",
                "n1",
                TaskState::Assigned,
            ))
        })
        .unwrap();
    let event = futures::executor::block_on(futures::StreamExt::next(&mut watch)).unwrap();
    let flags: Vec<bool> = event
        .changes
        .iter()
        .map(|c| relevant(c, &HashSet::new()))
        .collect();
    assert_eq!(flags, vec![false, true]);
}
