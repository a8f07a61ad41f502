use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

fn s(x: &str) -> Subnet {
    x.parse().unwrap()
}

fn a(x: &str) -> Ipv4Addr {
    x.parse().unwrap()
}

#[test]
fn subnet_parses_and_prints() {
    let n = s("10.0.0.0/24");
    assert_eq!(n.to_string(), "10.0.0.0/24");
    assert_eq!(n.broadcast(), a("10.0.0.255"));
    assert_eq!(n.size(), 256);
    assert!(n.contains(a("10.0.0.7")));
    assert!(!n.contains(a("10.0.1.0")));
    assert_eq!(n.with_prefix(a("10.0.0.9")), "10.0.0.9/24");
    assert!(s("0.0.0.0/0").contains(a("255.255.255.255")));
}

#[test]
fn bad_subnets_are_refused_with_the_reason() {
    for (text, reason) in [
        ("10.0.0.0", "CIDR"),
        ("10.0.0.1/24", "host bits"),
        ("10.0.0.0/33", "at most 32"),
        ("10.0.0/8", "IPv4"),
        ("fd00::/64", "IPv6"),
        ("10.0.0.0/x", "number"),
    ] {
        let e = text.parse::<Subnet>().unwrap_err();
        assert!(e.to_string().contains(reason), "{text}: {e}");
        assert!(e.to_string().contains(text), "{text}: {e}");
    }
}

#[test]
fn default_pool_hands_out_24s_in_order() {
    let mut p = SubnetPools::new(&["10.0.0.0/8".into()], 24).unwrap();
    assert_eq!(p.allocate().unwrap(), s("10.0.0.0/24"));
    assert_eq!(p.allocate().unwrap(), s("10.0.1.0/24"));
    assert!(p.release(&s("10.0.0.0/24")));
    assert!(!p.release(&s("10.0.0.0/24")));
    assert_eq!(
        p.allocate().unwrap(),
        s("10.0.0.0/24"),
        "freed subnet reused"
    );
    assert_eq!(p.allocate().unwrap(), s("10.0.2.0/24"));
}

#[test]
fn configured_pools_and_size() {
    let mut p = SubnetPools::new(&["10.20.0.0/16".into(), "192.168.0.0/24".into()], 26).unwrap();
    assert_eq!(p.allocate().unwrap(), s("10.20.0.0/26"));
    assert_eq!(p.allocate().unwrap(), s("10.20.0.64/26"));
    assert_eq!(p.pools().len(), 2);
    assert_eq!(p.size(), 26);
}

#[test]
fn pool_settings_are_checked() {
    assert!(SubnetPools::new(&[], 24).is_err());
    let e = SubnetPools::new(&["10.0.0.0/16".into()], 8).unwrap_err();
    assert!(e.to_string().contains("subnet size /8"), "{e}");
    assert!(SubnetPools::new(&["10.0.0.0/16".into()], 30).is_err());
    let e = SubnetPools::new(&["10.0.0.0/8".into(), "10.1.0.0/16".into()], 24).unwrap_err();
    assert!(matches!(e, IpamError::Overlap { .. }), "{e}");
}

#[test]
fn user_subnets_are_reserved_exactly_and_skipped() {
    let mut p = SubnetPools::new(&["10.0.0.0/8".into()], 24).unwrap();
    p.reserve(s("10.0.0.0/23")).unwrap();
    p.reserve(s("172.16.0.0/16")).unwrap();
    assert_eq!(p.allocate().unwrap(), s("10.0.2.0/24"));
    let e = p.reserve(s("10.0.1.128/25")).unwrap_err();
    assert_eq!(
        e,
        IpamError::Overlap {
            subnet: s("10.0.1.128/25"),
            other: s("10.0.0.0/23")
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("10.0.1.128/25") && msg.contains("10.0.0.0/23"),
        "{msg}"
    );
    assert!(
        p.reserve(s("172.16.0.0/16")).is_err(),
        "the same subnet twice"
    );
}

#[test]
fn exhausted_pool_names_the_pool() {
    let mut p = SubnetPools::new(&["192.168.7.0/25".into()], 26).unwrap();
    p.allocate().unwrap();
    p.allocate().unwrap();
    let e = p.allocate().unwrap_err();
    assert!(e.to_string().contains("192.168.7.0/25"), "{e}");
    assert!(matches!(e, IpamError::PoolExhausted { size: 26, .. }));
    // a large user subnet covering a pool exhausts it too
    let mut p = SubnetPools::new(&["10.9.0.0/24".into()], 28).unwrap();
    p.reserve(s("10.0.0.0/8")).unwrap();
    assert!(p.allocate().is_err());
}

#[test]
fn addresses_skip_network_gateway_and_broadcast() {
    let mut pool = AddressPool::new(s("10.0.0.0/29"), None, None).unwrap();
    assert_eq!(pool.gateway(), a("10.0.0.1"));
    let got: Vec<Ipv4Addr> = (0..5).map(|_| pool.allocate().unwrap()).collect();
    assert_eq!(
        got,
        ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"].map(a)
    );
    assert_eq!(
        pool.allocate().unwrap_err(),
        IpamError::SubnetFull {
            subnet: s("10.0.0.0/29")
        }
    );
    assert!(pool.release(a("10.0.0.4")));
    assert!(!pool.release(a("10.0.0.4")));
    assert!(!pool.release(a("10.0.0.1")), "the gateway stays");
    assert_eq!(
        pool.allocate().unwrap(),
        a("10.0.0.4"),
        "freed address reused"
    );
}

#[test]
fn ip_range_and_given_gateway_are_honoured() {
    let mut pool = AddressPool::new(
        s("10.1.0.0/24"),
        Some(s("10.1.0.128/30")),
        Some(a("10.1.0.254")),
    )
    .unwrap();
    assert_eq!(pool.gateway(), a("10.1.0.254"));
    let got: Vec<Ipv4Addr> = (0..4).map(|_| pool.allocate().unwrap()).collect();
    assert_eq!(
        got,
        ["10.1.0.128", "10.1.0.129", "10.1.0.130", "10.1.0.131"].map(a)
    );
    assert!(pool.allocate().is_err());
    // a static address outside the range is still a host of the subnet
    pool.reserve(a("10.1.0.9")).unwrap();
    assert!(matches!(
        pool.reserve(a("10.1.0.9")),
        Err(IpamError::AddressInUse { .. })
    ));
    assert!(pool.reserve(a("10.1.0.255")).is_err(), "broadcast");
    assert!(pool.reserve(a("10.2.0.9")).is_err(), "outside");
}

#[test]
fn bad_address_pools_are_refused() {
    assert!(AddressPool::new(s("10.0.0.0/31"), None, None).is_err());
    assert!(AddressPool::new(s("10.0.0.0/24"), Some(s("10.0.1.0/25")), None).is_err());
    assert!(AddressPool::new(s("10.0.0.0/24"), None, Some(a("10.0.0.255"))).is_err());
    assert!(AddressPool::new(s("10.0.0.0/24"), None, Some(a("10.0.5.1"))).is_err());
    assert_eq!(parse_addr("10.0.0.3/24").unwrap(), a("10.0.0.3"));
    assert!(parse_addr("ten").is_err());
}

#[test]
fn ports_explicit_dynamic_and_conflicts() {
    let mut p = PortAllocator::new();
    p.reserve(Protocol::Tcp, 8080, "web").unwrap();
    p.reserve(Protocol::Tcp, 8080, "web").unwrap();
    p.reserve(Protocol::Udp, 8080, "dns").unwrap();
    let e = p.reserve(Protocol::Tcp, 8080, "api").unwrap_err();
    assert_eq!(e.to_string(), "port '8080' (tcp) is already in use by web");
    assert_eq!(p.allocate(Protocol::Tcp, "api").unwrap(), 30000);
    assert_eq!(p.allocate(Protocol::Tcp, "api").unwrap(), 30001);
    assert_eq!(p.allocate(Protocol::Udp, "api").unwrap(), 30000);
    assert_eq!(p.release(Protocol::Tcp, 30000).as_deref(), Some("api"));
    assert_eq!(p.allocate(Protocol::Tcp, "x").unwrap(), 30000);
    assert_eq!(p.owner(Protocol::Udp, 8080), Some("dns"));
    assert_eq!(p.free_dynamic(Protocol::Tcp), DYNAMIC_PORTS.len() - 2);
    assert_eq!(
        p.reserve(Protocol::Tcp, 0, "x").unwrap_err(),
        IpamError::InvalidPort { port: 0 }
    );
    assert!(p.reserve(Protocol::Tcp, 70000, "x").is_err());
}

#[test]
fn dynamic_ports_run_out() {
    let mut p = PortAllocator::new();
    for _ in DYNAMIC_PORTS {
        p.allocate(Protocol::Udp, "big").unwrap();
    }
    assert_eq!(
        p.allocate(Protocol::Udp, "one-more").unwrap_err(),
        IpamError::PortsExhausted {
            protocol: Protocol::Udp
        }
    );
    assert_eq!(p.free_dynamic(Protocol::Udp), 0);
    assert_eq!(p.free_dynamic(Protocol::Tcp), DYNAMIC_PORTS.len());
}

#[derive(Clone, Debug)]
enum Op {
    Alloc,
    Release(usize),
    Reserve(u8),
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(Op::Alloc),
            2 => any::<usize>().prop_map(Op::Release),
            1 => any::<u8>().prop_map(Op::Reserve),
        ],
        0..200,
    )
}

proptest! {
    /// Whatever the sequence of allocations, reservations and releases, an
    /// address is never handed out twice, always lies in the range, and is
    /// never the network, gateway or broadcast address; a full pool fails
    /// only when every usable address is held.
    #[test]
    fn addresses_are_unique_and_usable(ops in ops(), range_start in 0u8..4) {
        let subnet = s("10.3.0.0/26");
        let range = Subnet::new(Ipv4Addr::new(10, 3, 0, range_start * 16), 28).unwrap();
        let mut pool = AddressPool::new(subnet, Some(range), None).unwrap();
        let mut held: BTreeSet<Ipv4Addr> = BTreeSet::new();
        for op in ops {
            match op {
                Op::Alloc => match pool.allocate() {
                    Ok(x) => {
                        prop_assert!(range.contains(x));
                        prop_assert!(x != subnet.network() && x != subnet.broadcast() && x != pool.gateway());
                        prop_assert!(held.insert(x), "{x} handed out twice");
                    }
                    Err(_) => {
                        let usable = (0..16u32)
                            .map(|i| Ipv4Addr::from(u32::from(range.network()) + i))
                            .filter(|x| *x != subnet.network() && *x != pool.gateway() && *x != subnet.broadcast())
                            .all(|x| held.contains(&x));
                        prop_assert!(usable, "full while an address was free");
                    }
                },
                Op::Release(i) => {
                    if !held.is_empty() {
                        let x = *held.iter().nth(i % held.len()).unwrap();
                        prop_assert!(pool.release(x));
                        held.remove(&x);
                    }
                }
                Op::Reserve(b) => {
                    let x = Ipv4Addr::new(10, 3, 0, b % 64);
                    let ok = pool.reserve(x).is_ok();
                    let expect = x != subnet.network() && x != subnet.broadcast() && x != pool.gateway() && !held.contains(&x);
                    prop_assert_eq!(ok, expect);
                    if ok {
                        held.insert(x);
                    }
                }
            }
            prop_assert_eq!(pool.in_use(), held.len() + 1);
        }
    }

    /// Subnets cut from a pool or reserved never overlap, and exhaustion only
    /// happens when no free aligned block is left.
    #[test]
    fn subnets_never_overlap(ops in ops()) {
        let mut pools = SubnetPools::new(&["10.8.0.0/22".into()], 26).unwrap();
        let mut held: Vec<Subnet> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc => match pools.allocate() {
                    Ok(n) => {
                        prop_assert!(s("10.8.0.0/22").covers(&n));
                        prop_assert!(held.iter().all(|h| !h.overlaps(&n)), "{n} overlaps");
                        held.push(n);
                    }
                    Err(_) => {
                        let free = (0..16u32).any(|i| {
                            let c = Subnet::new(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 8, 0, 0)) + i * 64), 26).unwrap();
                            held.iter().all(|h| !h.overlaps(&c))
                        });
                        prop_assert!(!free, "exhausted while a block was free");
                    }
                },
                Op::Release(i) => {
                    if !held.is_empty() {
                        let n = held.remove(i % held.len());
                        prop_assert!(pools.release(&n));
                    }
                }
                Op::Reserve(b) => {
                    let prefix = 24 + (b % 5);
                    let base = u32::from(Ipv4Addr::new(10, 8, 0, 0)) + (u32::from(b) << 4);
                    let n = Subnet::new(Ipv4Addr::from(base & mask(prefix)), prefix).unwrap();
                    let ok = pools.reserve(n).is_ok();
                    prop_assert_eq!(ok, held.iter().all(|h| !h.overlaps(&n)));
                    if ok {
                        held.push(n);
                    }
                }
            }
        }
    }
}
