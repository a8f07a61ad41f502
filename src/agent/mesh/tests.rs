use swarm_core::Id;
use swarm_core::types::Protocol;

use super::*;

#[test]
fn a_node_forwards_host_ports_to_its_task_unless_the_task_binds_them() {
    let ports = [
        IngressPort {
            protocol: Protocol::Tcp,
            published_port: 18080,
            target_port: 80,
            proxy_protocol: false,
        },
        IngressPort {
            protocol: Protocol::Udp,
            published_port: 53,
            target_port: 53,
            proxy_protocol: false,
        },
    ];
    let id = Id::from("t1");
    let on_host = LocalTask {
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        host_network: true,
    };
    let entries: Vec<_> = host_entries(&id, &ports, on_host).collect();
    assert_eq!(entries.len(), 1, "the task binds 53 itself: {entries:?}");
    assert_eq!(entries[0].published_port, 18080);
    assert_eq!(
        entries[0].backends,
        vec![mesh::Backend {
            task_id: "t1".into(),
            target: mesh::Target::Local("127.0.0.1:80".parse().unwrap()),
            draining_until: None,
        }],
        "only the local task, never another node"
    );

    let own_addr = LocalTask {
        ip: "10.0.0.7".parse().unwrap(),
        host_network: false,
    };
    let entries: Vec<_> = host_entries(&id, &ports, own_addr)
        .map(|p| (p.protocol, p.published_port, p.backends[0].target))
        .collect();
    assert_eq!(
        entries,
        vec![
            (
                mesh::Protocol::Tcp,
                18080,
                mesh::Target::Local("10.0.0.7:80".parse().unwrap())
            ),
            (
                mesh::Protocol::Udp,
                53,
                mesh::Target::Local("10.0.0.7:53".parse().unwrap())
            ),
        ],
        "a task with its own address is reached on it, even on the same port"
    );
}
