use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn def() -> NetworkDef {
    NetworkDef {
        id: "net1".into(),
        vni: 4097,
        subnet: "10.0.9.0/24".into(),
        gateway: "10.0.9.1".into(),
        encrypted: false,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn cidr_parses_contains_and_prints() {
    let c: Cidr = "10.0.9.0/24".parse().unwrap();
    assert_eq!(c.to_string(), "10.0.9.0/24");
    assert!(c.contains(ip("10.0.9.255")));
    assert!(!c.contains(ip("10.0.10.1")));
    assert!(!c.contains(ip("::1")));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("192.0.2.1")));
    let v6: Cidr = "fd00::/64".parse().unwrap();
    assert!(v6.contains(ip("fd00::5")) && !v6.contains(ip("fd01::5")));
    for bad in ["10.0.9.0", "10.0.9.0/33", "x/8", "10.0.9.0/-1", "::/129"] {
        assert!(
            matches!(bad.parse::<Cidr>(), Err(OverlayError::InvalidArgument(_))),
            "{bad}"
        );
    }
}

#[test]
fn mac_is_docker_style() {
    let mac = mac_for_ip(Ipv4Addr::new(10, 0, 9, 2));
    assert_eq!(mac, MacAddr([0x02, 0x42, 10, 0, 9, 2]));
    assert_eq!(mac.to_string(), "02:42:0a:00:09:02");
}

#[test]
fn network_definitions_are_checked() {
    let parsed = parse_network(&def()).unwrap();
    assert_eq!(parsed.gateway, Ipv4Addr::new(10, 0, 9, 1));
    assert_eq!(parsed.subnet.prefix_len, 24);
    let with_len = NetworkDef {
        gateway: "10.0.9.1/24".into(),
        ..def()
    };
    assert_eq!(parse_network(&with_len).unwrap(), parsed);

    let cases: Vec<(NetworkDef, &str)> = vec![
        (
            NetworkDef {
                id: "".into(),
                ..def()
            },
            "network id",
        ),
        (
            NetworkDef {
                id: "../x".into(),
                ..def()
            },
            "network id",
        ),
        (NetworkDef { vni: 0, ..def() }, "vni 0"),
        (
            NetworkDef {
                vni: 1 << 24,
                ..def()
            },
            "vni 16777216",
        ),
        (
            NetworkDef {
                subnet: "10.0.9.0".into(),
                ..def()
            },
            "subnet",
        ),
        (
            NetworkDef {
                subnet: "fd00::/64".into(),
                ..def()
            },
            "only IPv4",
        ),
        (
            NetworkDef {
                subnet: "10.0.9.0/31".into(),
                ..def()
            },
            "only IPv4",
        ),
        (
            NetworkDef {
                gateway: "10.0.8.1".into(),
                ..def()
            },
            "outside its subnet",
        ),
        (
            NetworkDef {
                gateway: "gw".into(),
                ..def()
            },
            "gateway",
        ),
    ];
    for (net, words) in cases {
        match parse_network(&net) {
            Err(OverlayError::InvalidArgument(m)) => assert!(m.contains(words), "{m}"),
            other => panic!("{net:?}: {other:?}"),
        }
    }
    let encrypted = NetworkDef {
        encrypted: true,
        ..def()
    };
    let parsed_encrypted = parse_network(&encrypted).unwrap();
    assert!(parsed_encrypted.encrypted && !parsed.encrypted);
    assert_ne!(parsed_encrypted, parsed, "a change of kind is a change");
}

#[test]
fn task_addresses_and_names_are_checked() {
    let net = parse_network(&def()).unwrap();
    let ok: Cidr = "10.0.9.2/24".parse().unwrap();
    assert_eq!(
        check_task_addr("net1", &net, ok).unwrap(),
        Ipv4Addr::new(10, 0, 9, 2)
    );
    for bad in ["10.0.9.1/24", "10.0.10.2/24", "fd00::2/64"] {
        let addr: Cidr = bad.parse().unwrap();
        assert!(check_task_addr("net1", &net, addr).is_err(), "{bad}");
    }
    assert!(check_ifname("eth0").is_ok());
    for bad in ["", "a/b", "eth0:1", "sixteen-chars-xx", "a b", ".."] {
        assert!(check_ifname(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn peers_are_checked_and_local_ones_skipped() {
    let net = parse_network(&def()).unwrap();
    let local = ip("192.168.251.1");
    let remote = Peer {
        addr: ip("10.0.9.3"),
        mac: mac_for_ip(Ipv4Addr::new(10, 0, 9, 3)).0,
        node_underlay: ip("192.168.251.2"),
    };
    let mine = Peer {
        addr: ip("10.0.9.2"),
        node_underlay: local,
        ..remote
    };
    assert_eq!(
        check_peers("net1", &net, local, &[remote, mine]).unwrap(),
        vec![remote]
    );
    let bad = [
        Peer {
            addr: ip("10.0.10.3"),
            ..remote
        },
        Peer {
            node_underlay: ip("fd00::2"),
            ..remote
        },
        Peer {
            mac: [0x03, 0, 0, 0, 0, 1],
            ..remote
        },
        Peer {
            mac: [0; 6],
            ..remote
        },
    ];
    for p in bad {
        assert!(
            matches!(
                check_peers("net1", &net, local, &[p]),
                Err(OverlayError::InvalidArgument(_))
            ),
            "{p:?}"
        );
    }
    let moved = Peer {
        node_underlay: ip("192.168.251.3"),
        ..remote
    };
    assert!(check_peers("net1", &net, local, &[remote, moved]).is_err());
}
