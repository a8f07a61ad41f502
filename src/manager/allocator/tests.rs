use std::collections::BTreeSet;
use std::time::Duration;

use swarm_core::testing::Patience;
use swarm_core::types::*;
use swarm_core::{Store, View};
use tokio::sync::watch;

use super::*;
use crate::manager::control::Control;
use crate::pki::RootCa;

async fn eventually(store: &Store, what: &str, f: impl Fn(&View) -> bool) {
    Patience::within(Duration::from_secs(20))
        .every(Duration::from_millis(5))
        .until_view(store, what, f)
        .await;
}

/// A swarm's store (cluster + ingress) with the allocator running on it.
async fn setup() -> (Control, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let c = Control::new(Store::new());
    c.init_cluster(ClusterSpec::default(), &RootCa::generate().unwrap())
        .await
        .unwrap();
    let (stop, handle) = start(&c);
    (c, stop, handle)
}

fn start(c: &Control) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, rx) = watch::channel(false);
    (stop, tokio::spawn(run(c.store().clone(), rx)))
}

fn port(target: u32, published: u32) -> PortConfig {
    PortConfig {
        target_port: target,
        published_port: published,
        ..Default::default()
    }
}

fn web(name: &str, ports: Vec<PortConfig>, networks: &[&str]) -> ServiceSpec {
    ServiceSpec {
        annotations: Annotations::named(name),
        task: TaskSpec {
            container: ContainerSpec {
                image: "nginx".into(),
                ..Default::default()
            },
            networks: networks
                .iter()
                .map(|n| NetworkAttachmentConfig {
                    target: n.to_string(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
        mode: ServiceMode::Replicated { replicas: 1 },
        endpoint: Some(EndpointSpec {
            mode: ResolutionMode::Vip,
            ports,
        }),
        ..Default::default()
    }
}

/// NEW tasks for `service`, as the orchestrator makes them.
async fn tasks(c: &Control, service: &str, n: u64) -> Vec<Id> {
    let s = c.inspect_service(service).unwrap();
    c.store()
        .update(|tx| {
            (1..=n)
                .map(|slot| {
                    let t = crate::manager::orchestrator::new_task(
                        &s,
                        slot,
                        Id::empty(),
                        TaskState::Running,
                        tx.now(),
                    );
                    tx.create(t).map(|t| t.id.clone())
                })
                .collect()
        })
        .await
        .unwrap()
}

fn addrs(v: &View) -> Vec<String> {
    let mut out: Vec<String> = v
        .list::<Task>()
        .filter(|t| state::holds_addresses(t))
        .flat_map(|t| {
            t.networks
                .iter()
                .flat_map(|a| a.addresses.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    out.extend(v.list::<Service>().flat_map(|s| {
        s.endpoint
            .iter()
            .flat_map(|e| e.virtual_ips.iter().map(|x| x.addr.clone()))
            .collect::<Vec<_>>()
    }));
    out
}

fn assert_unique(v: &View) {
    let all = addrs(v);
    let set: BTreeSet<&String> = all.iter().collect();
    assert_eq!(set.len(), all.len(), "an address held twice: {all:?}");
}

fn allocated(v: &View, name: &str) -> bool {
    v.resolve::<Service>(name)
        .is_ok_and(|s| s.endpoint.is_some())
}

#[tokio::test]
async fn ingress_and_overlay_networks_get_subnets_and_vxlan_ids() {
    let (c, _stop, _h) = setup().await;
    eventually(c.store(), "ingress allocated", |v| {
        v.list::<Network>()
            .any(|n| n.spec.ingress && n.ipam.is_some())
    })
    .await;
    let ingress = c.inspect_network("ingress").unwrap();
    let cfg = &ingress.ipam.as_ref().unwrap().configs[0];
    assert_eq!(
        (cfg.subnet.as_str(), cfg.gateway.as_str()),
        ("10.0.0.0/24", "10.0.0.1")
    );
    assert_eq!(
        ingress.driver_state.as_ref().unwrap().options[VXLAN_OPTION],
        FIRST_VXLAN_ID.to_string()
    );
    let backend = c
        .create_network(NetworkSpec {
            annotations: Annotations::named("backend"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mine = c
        .create_network(NetworkSpec {
            annotations: Annotations::named("mine"),
            ipam: Some(IpamOptions {
                configs: vec![IpamConfig {
                    subnet: "192.168.50.0/24".into(),
                    range: "192.168.50.128/25".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(c.store(), "networks allocated", |v| {
        v.list::<Network>().all(|n| n.ipam.is_some())
    })
    .await;
    let b = c.inspect_network(&backend.id).unwrap();
    assert_eq!(b.ipam.as_ref().unwrap().configs[0].subnet, "10.0.1.0/24");
    let b_vxlan = b.driver_state.as_ref().unwrap().options[VXLAN_OPTION].clone();
    let m = c.inspect_network(&mine.id).unwrap();
    let m_vxlan = m.driver_state.as_ref().unwrap().options[VXLAN_OPTION].clone();
    let mut ids = [b_vxlan.as_str(), m_vxlan.as_str()];
    ids.sort();
    assert_eq!(ids, ["4097", "4098"], "unique, from 4096 up");
    let mc = &m.ipam.as_ref().unwrap().configs[0];
    assert_eq!(
        (mc.subnet.as_str(), mc.range.as_str(), mc.gateway.as_str()),
        ("192.168.50.0/24", "192.168.50.128/25", "192.168.50.1")
    );
    // overlapping a network's subnet: refused naming both, nothing created
    let e = c
        .create_network(NetworkSpec {
            annotations: Annotations::named("clash"),
            ipam: Some(IpamOptions {
                configs: vec![IpamConfig {
                    subnet: "192.168.50.0/25".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("192.168.50.0/25") && msg.contains("192.168.50.0/24"),
        "{msg}"
    );
    assert_eq!(c.list_networks().len(), 3);
    // a removed network's subnet and VXLAN ID are given again
    c.remove_network("backend").await.unwrap();
    let again = c
        .create_network(NetworkSpec {
            annotations: Annotations::named("again"),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(c.store(), "again allocated", |v| {
        v.get::<Network>(&again.id)
            .is_some_and(|n| n.ipam.is_some())
    })
    .await;
    let a = c.inspect_network(&again.id).unwrap();
    assert_eq!(a.ipam.as_ref().unwrap().configs[0].subnet, "10.0.1.0/24");
    assert_eq!(
        a.driver_state.as_ref().unwrap().options[VXLAN_OPTION],
        b_vxlan
    );
}

#[tokio::test]
async fn services_get_ports_and_vips_and_tasks_addresses() {
    let (c, _stop, _h) = setup().await;
    c.create_network(NetworkSpec {
        annotations: Annotations::named("backend"),
        ..Default::default()
    })
    .await
    .unwrap();
    c.create_service(web("web", vec![port(80, 8080), port(443, 0)], &["backend"]))
        .await
        .unwrap();
    c.create_service(ServiceSpec {
        endpoint: Some(EndpointSpec {
            mode: ResolutionMode::Dnsrr,
            ports: vec![],
        }),
        ..web("db", vec![], &["backend"])
    })
    .await
    .unwrap();
    eventually(c.store(), "services allocated", |v| {
        allocated(v, "web") && allocated(v, "db")
    })
    .await;
    let s = c.inspect_service("web").unwrap();
    let e = s.endpoint.clone().unwrap();
    let published: Vec<u32> = e.ports.iter().map(|p| p.published_port).collect();
    assert_eq!(published, [8080, 30000]);
    let ingress = c.inspect_network("ingress").unwrap();
    let backend = c.inspect_network("backend").unwrap();
    let vip_nets: Vec<&Id> = e.virtual_ips.iter().map(|v| &v.network_id).collect();
    assert_eq!(vip_nets, [&backend.id, &ingress.id]);
    assert!(
        e.virtual_ips.iter().all(|v| v.addr.ends_with(".2/24")),
        "{e:?}"
    );
    let db = c.inspect_service("db").unwrap();
    assert!(
        db.endpoint.as_ref().unwrap().virtual_ips.is_empty(),
        "dnsrr: no VIP"
    );

    let ids = tasks(&c, "web", 3).await;
    eventually(c.store(), "tasks pending", |v| {
        ids.iter()
            .all(|id| v.get::<Task>(id).unwrap().status.state == TaskState::Pending)
    })
    .await;
    let view = c.store().view();
    for id in &ids {
        let t = view.get::<Task>(id).unwrap();
        let nets: Vec<&str> = t
            .networks
            .iter()
            .map(|a| a.network.spec.annotations.name.as_str())
            .collect();
        assert_eq!(nets, ["backend", "ingress"]);
        assert!(
            t.networks[0].network.ipam.is_some(),
            "a copy of the allocated network"
        );
        assert_eq!(t.endpoint.as_ref().unwrap().ports.len(), 2);
    }
    assert_unique(&view);

    // a second service on 8080: docker's message, nothing changed
    let before = c.store().index();
    let e = c
        .create_service(web("other", vec![port(80, 8080)], &[]))
        .await
        .unwrap_err();
    assert_eq!(
        e,
        crate::Error::InvalidArgument(format!(
            "port '8080' is already in use by service 'web' ({}) as an ingress port",
            s.id
        ))
    );
    assert_eq!(c.store().index(), before);
}

#[tokio::test]
async fn publish_add_keeps_picked_ports_and_rm_frees_them() {
    let (c, _stop, _h) = setup().await;
    c.create_service(web("web", vec![port(80, 0)], &[]))
        .await
        .unwrap();
    eventually(c.store(), "web allocated", |v| allocated(v, "web")).await;
    let s = c.inspect_service("web").unwrap();
    assert_eq!(s.endpoint.as_ref().unwrap().ports[0].published_port, 30000);
    let vip = s.endpoint.as_ref().unwrap().virtual_ips.clone();
    // publish-add: the picked port and the VIP stay
    let mut spec = s.spec.clone();
    spec.endpoint.as_mut().unwrap().ports.push(port(81, 0));
    spec.endpoint.as_mut().unwrap().ports.push(port(82, 9000));
    c.update_service("web", s.meta.version.index, spec)
        .await
        .unwrap();
    eventually(c.store(), "web reallocated", |v| {
        v.resolve::<Service>("web")
            .is_ok_and(|s| s.endpoint.as_ref().is_some_and(|e| e.ports.len() == 3))
    })
    .await;
    let s = c.inspect_service("web").unwrap();
    let e = s.endpoint.clone().unwrap();
    let published: Vec<u32> = e.ports.iter().map(|p| p.published_port).collect();
    assert_eq!(published, [30000, 30001, 9000]);
    assert_eq!(e.virtual_ips, vip);
    // publish-rm of the first: its port is free for the next service
    let mut spec = s.spec.clone();
    spec.endpoint.as_mut().unwrap().ports.remove(0);
    c.update_service("web", s.meta.version.index, spec)
        .await
        .unwrap();
    eventually(c.store(), "port removed", |v| {
        v.resolve::<Service>("web")
            .is_ok_and(|s| s.endpoint.as_ref().is_some_and(|e| e.ports.len() == 2))
    })
    .await;
    let s = c.inspect_service("web").unwrap();
    let published: Vec<u32> = s
        .endpoint
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .map(|p| p.published_port)
        .collect();
    assert_eq!(published, [30001, 9000], "the other picked port is kept");
    c.create_service(web("next", vec![port(80, 0)], &[]))
        .await
        .unwrap();
    eventually(c.store(), "next allocated", |v| allocated(v, "next")).await;
    let n = c.inspect_service("next").unwrap();
    assert_eq!(n.endpoint.as_ref().unwrap().ports[0].published_port, 30000);
    // service rm: its ports and VIP go back to the pools
    c.remove_service("web").await.unwrap();
    c.create_service(web("later", vec![port(80, 9000)], &[]))
        .await
        .unwrap();
    eventually(c.store(), "later allocated", |v| allocated(v, "later")).await;
    let l = c.inspect_service("later").unwrap();
    assert_eq!(l.endpoint.as_ref().unwrap().ports[0].published_port, 9000);
    assert_eq!(
        l.endpoint.as_ref().unwrap().virtual_ips[0].addr,
        vip[0].addr
    );
}

#[tokio::test]
async fn addresses_are_freed_when_tasks_go_or_end_unwanted_and_reused() {
    let (c, _stop, _h) = setup().await;
    c.create_service(web("web", vec![port(80, 8080)], &[]))
        .await
        .unwrap();
    eventually(c.store(), "web allocated", |v| allocated(v, "web")).await;
    let ids = tasks(&c, "web", 2).await;
    let pending = |ids: Vec<Id>| {
        move |v: &View| {
            ids.iter().all(|id| {
                v.get::<Task>(id)
                    .is_some_and(|t| t.status.state == TaskState::Pending)
            })
        }
    };
    eventually(c.store(), "pending", pending(ids.clone())).await;
    let addr_of =
        |id: &Id| c.store().view().get::<Task>(id).unwrap().networks[0].addresses[0].clone();
    let (a0, a1) = (addr_of(&ids[0]), addr_of(&ids[1]));
    assert_eq!(
        BTreeSet::from([a0.as_str(), a1.as_str()]),
        BTreeSet::from(["10.0.0.3/24", "10.0.0.4/24"]),
        "after the gateway and the VIP"
    );
    // the first task is removed from the store, the second fails and is unwanted
    c.store()
        .update(|tx| {
            tx.delete::<Task>(&ids[0])?;
            let mut t = (*tx.get::<Task>(&ids[1]).unwrap()).clone();
            t.status.state = TaskState::Failed;
            t.desired_state = TaskState::Shutdown;
            tx.update(t).map(drop)
        })
        .await
        .unwrap();
    let more = tasks(&c, "web", 2).await;
    eventually(c.store(), "pending again", pending(more.clone())).await;
    let got: BTreeSet<String> = more.iter().map(addr_of).collect();
    assert_eq!(got, BTreeSet::from([a0, a1]), "freed addresses reused");
}

#[tokio::test]
async fn a_new_allocator_rebuilds_from_the_store_without_duplicates() {
    let (c, stop, h) = setup().await;
    c.create_network(NetworkSpec {
        annotations: Annotations::named("backend"),
        ..Default::default()
    })
    .await
    .unwrap();
    c.create_service(web("web", vec![port(80, 0)], &["backend"]))
        .await
        .unwrap();
    eventually(c.store(), "web allocated", |v| allocated(v, "web")).await;
    let first = tasks(&c, "web", 3).await;
    eventually(c.store(), "pending", |v| {
        v.list::<Task>()
            .all(|t| t.status.state == TaskState::Pending)
    })
    .await;
    let before = c.store().view();
    // the leader changes: this allocator stops, another starts on the same store
    stop.send(true).unwrap();
    h.await.unwrap();
    let (_stop, _h) = start(&c);
    c.create_service(web("api", vec![port(81, 0)], &["backend"]))
        .await
        .unwrap();
    eventually(c.store(), "api allocated", |v| allocated(v, "api")).await;
    let second = tasks(&c, "web", 3).await;
    eventually(c.store(), "all pending", |v| {
        v.list::<Task>()
            .all(|t| t.status.state == TaskState::Pending)
    })
    .await;
    let after = c.store().view();
    for id in &first {
        assert_eq!(
            before.get::<Task>(id).unwrap().networks,
            after.get::<Task>(id).unwrap().networks,
            "allocations kept"
        );
    }
    assert_eq!(second.len(), 3);
    assert_unique(&after);
    let api = after.resolve::<Service>("api").unwrap();
    assert_eq!(
        api.endpoint.as_ref().unwrap().ports[0].published_port,
        30001
    );
    let web = after.resolve::<Service>("web").unwrap();
    assert_eq!(
        web.endpoint,
        before.resolve::<Service>("web").unwrap().endpoint
    );
}

#[tokio::test]
async fn a_port_conflict_that_slipped_in_leaves_the_service_unallocated() {
    let (c, _stop, _h) = setup().await;
    // written straight to the store, past the control API's check
    c.store()
        .update(|tx| {
            for name in ["first", "second"] {
                tx.create(Service {
                    spec: web(name, vec![port(80, 8080)], &[]),
                    spec_version: Some(Version { index: 1 }),
                    ..Default::default()
                })?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let mut third_spec = web("third", vec![port(80, 0)], &[]);
    third_spec.mode = ServiceMode::Replicated { replicas: 1 };
    c.create_service(third_spec).await.unwrap();
    eventually(c.store(), "third allocated", |v| allocated(v, "third")).await;
    let v = c.store().view();
    let (f, s) = (
        v.resolve::<Service>("first").unwrap(),
        v.resolve::<Service>("second").unwrap(),
    );
    assert!(
        f.endpoint.is_some() != s.endpoint.is_some(),
        "exactly one got 8080"
    );
    let loser = if f.endpoint.is_some() {
        "second"
    } else {
        "first"
    };
    let ids = tasks(&c, loser, 1).await;
    let third = tasks(&c, "third", 1).await;
    eventually(c.store(), "third's task pending", |v| {
        v.get::<Task>(&third[0]).unwrap().status.state == TaskState::Pending
    })
    .await;
    assert_eq!(
        c.store().view().get::<Task>(&ids[0]).unwrap().status.state,
        TaskState::New,
        "the unallocated service's task waits"
    );
}

#[tokio::test]
async fn exhausted_dynamic_ports_are_refused_at_create() {
    let (c, _stop, _h) = setup().await;
    let many: Vec<PortConfig> = (1..=(swarm_net::ipam::DYNAMIC_PORTS.len() as u32 + 1))
        .map(|t| port(t, 0))
        .collect();
    let e = c.create_service(web("big", many, &[])).await.unwrap_err();
    assert!(e.to_string().contains("30000-32767 for tcp"), "{e}");
    assert!(c.list_services(&Default::default()).is_empty());
}

#[tokio::test]
async fn an_update_onto_a_taken_port_is_refused_with_nothing_changed() {
    let (c, _stop, _h) = setup().await;
    let web = c
        .create_service(web("web", vec![port(80, 8080)], &[]))
        .await
        .unwrap();
    c.create_service(web_spec_udp("dns")).await.unwrap();
    eventually(c.store(), "both allocated", |v| {
        allocated(v, "web") && allocated(v, "dns")
    })
    .await;
    let dns = c.inspect_service("dns").unwrap();
    let before = c.store().index();
    let mut spec = dns.spec.clone();
    spec.endpoint.as_mut().unwrap().ports.push(port(80, 8080));
    let e = c
        .update_service("dns", dns.meta.version.index, spec)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "invalid argument: port '8080' is already in use by service 'web' ({}) as an ingress port",
            web.id
        )
    );
    assert_eq!(c.store().index(), before, "nothing written");
    assert_eq!(c.inspect_service("dns").unwrap(), dns);
    // the same number over udp is another port
    let mut spec = dns.spec.clone();
    spec.endpoint.as_mut().unwrap().ports = vec![PortConfig {
        protocol: Protocol::Udp,
        ..port(53, 8080)
    }];
    c.update_service("dns", dns.meta.version.index, spec)
        .await
        .unwrap();
}

fn web_spec_udp(name: &str) -> ServiceSpec {
    web(
        name,
        vec![PortConfig {
            protocol: Protocol::Udp,
            ..port(53, 53)
        }],
        &[],
    )
}

#[tokio::test]
async fn a_service_with_nothing_to_allocate_is_not_written_and_its_tasks_go_on() {
    let (c, _stop, _h) = setup().await;
    let mut spec = web("plain", vec![], &[]);
    spec.endpoint = None;
    c.create_service(spec).await.unwrap();
    let created = c.inspect_service("plain").unwrap().meta.version.index;
    let ids = tasks(&c, "plain", 2).await;
    eventually(c.store(), "tasks pending", |v| {
        ids.iter()
            .all(|id| v.get::<Task>(id).unwrap().status.state == TaskState::Pending)
    })
    .await;
    let s = c.inspect_service("plain").unwrap();
    assert_eq!(s.meta.version.index, created, "the allocator wrote nothing");
    assert_eq!(s.endpoint, None);
    for id in &ids {
        let t = c.store().view().get::<Task>(id).unwrap();
        assert_eq!(t.endpoint, None);
        assert!(t.networks.is_empty());
    }

    // A new allocator (a new leader) leaves it alone too, and still allocates
    // its new tasks.
    _stop.send_replace(true);
    let (_stop2, _h2) = start(&c);
    let more = tasks(&c, "plain", 1).await;
    eventually(c.store(), "the new task pending", |v| {
        v.get::<Task>(&more[0]).unwrap().status.state == TaskState::Pending
    })
    .await;
    assert_eq!(
        c.inspect_service("plain").unwrap().meta.version.index,
        created
    );

    // Publishing a port later writes the endpoint.
    let mut spec = s.spec.clone();
    spec.endpoint = Some(EndpointSpec {
        ports: vec![port(80, 0)],
        ..Default::default()
    });
    c.update_service("plain", created, spec).await.unwrap();
    eventually(c.store(), "the port allocated", |v| {
        v.resolve::<Service>("plain")
            .is_ok_and(|s| s.endpoint.as_ref().is_some_and(|e| e.ports.len() == 1))
    })
    .await;
}
