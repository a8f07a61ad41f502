use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;

use super::*;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Named namespaces `swm5g-*`, deleted when dropped (also when a test fails).
struct Lab(Vec<String>);

impl Lab {
    fn new(names: &[&str]) -> Lab {
        let lab = Lab(names.iter().map(|n| format!("swm5g-{n}")).collect());
        lab.clean();
        for n in &lab.0 {
            ip(&["netns", "add", n]);
            ip(&["-n", n, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn path(&self, n: &str) -> PathBuf {
        PathBuf::from(format!("/run/netns/swm5g-{n}"))
    }

    fn clean(&self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.clean();
    }
}

fn usable() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (namespaces, links)");
    }
    for tool in ["ip", "nft"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some("needs ip and nft");
        }
    }
    None
}

/// Accepts one connection on `at` inside `ns`, answering with the peer address it
/// saw; returns the listener's thread.
fn serve_once(ns: &Path, at: SocketAddr) -> std::thread::JoinHandle<()> {
    let listener = vip::run_in(ns, move || {
        TcpListener::bind(at).map_err(|source| VipError::Io {
            op: format!("bind {at}"),
            source,
        })
    })
    .unwrap();
    std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.write_all(peer.ip().to_string().as_bytes()).unwrap();
    })
}

/// Connects to `to` from inside `ns`; what the server said.
fn ask(ns: &Path, to: SocketAddr) -> String {
    vip::run_in(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, std::time::Duration::from_secs(5)).map_err(
            |source| VipError::Io {
                op: format!("connect {to}"),
                source,
            },
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|source| VipError::Io {
            op: "read".into(),
            source,
        })?;
        Ok(out)
    })
    .unwrap()
}

fn config(lab: &Lab, state: &Path) -> GatewayConfig {
    GatewayConfig {
        bridge: "swm5gbr".into(),
        subnet: "10.251.0.0/24".parse().unwrap(),
        netns: Some(lab.path("node")),
        table: "swm5_gw".into(),
        state_dir: state.to_path_buf(),
    }
}

#[test]
fn bad_configurations_are_refused() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bad = |f: fn(&mut GatewayConfig)| {
        let mut cfg = GatewayConfig::default();
        f(&mut cfg);
        rt.block_on(Gateway::new(cfg)).unwrap_err().to_string()
    };
    assert!(bad(|c| c.subnet = "fd00::/64".parse().unwrap()).contains("not IPv4"));
    assert!(bad(|c| c.subnet = "10.0.0.0/31".parse().unwrap()).contains("/30"));
    assert!(bad(|c| c.bridge = "a-name-far-too-long".into()).contains("bridge name"));
    assert!(bad(|c| c.table = "x; flush ruleset".into()).contains("table name"));
}

#[test]
fn tasks_get_addresses_a_default_route_and_masqueraded_outbound() {
    if let Some(why) = usable() {
        println!("skipped: {why}");
        return;
    }
    let lab = Lab::new(&["node", "out", "t1", "t2"]);
    // "out" is a machine beyond the node: 10.252.0.2, reached through the node's
    // veth 10.252.0.1 (the tasks have no route to it but their default one).
    ip(&[
        "-n",
        "swm5g-node",
        "link",
        "add",
        "up0",
        "type",
        "veth",
        "peer",
        "name",
        "up1",
        "netns",
        "swm5g-out",
    ]);
    ip(&[
        "-n",
        "swm5g-node",
        "addr",
        "add",
        "10.252.0.1/24",
        "dev",
        "up0",
    ]);
    ip(&["-n", "swm5g-node", "link", "set", "up0", "up"]);
    ip(&[
        "-n",
        "swm5g-out",
        "addr",
        "add",
        "10.252.0.2/24",
        "dev",
        "up1",
    ]);
    ip(&["-n", "swm5g-out", "link", "set", "up1", "up"]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let gw = rt
        .block_on(Gateway::new(config(&lab, state.path())))
        .unwrap();
    assert_eq!(gw.gateway(), "10.251.0.1".parse::<Ipv4Addr>().unwrap());
    assert!(
        gw.render()
            .contains("ip saddr 10.251.0.0/24 oifname != \"swm5gbr\" masquerade")
    );
    let (t1, t2) = (lab.path("t1"), lab.path("t2"));
    let a1 = rt.block_on(gw.attach(&t1, "eth1")).unwrap();
    let a2 = rt.block_on(gw.attach(&t2, "eth1")).unwrap();
    assert_eq!(a1.to_string(), "10.251.0.2");
    assert_eq!(a2.to_string(), "10.251.0.3");
    // The same name twice in one task is refused, and allocates nothing.
    assert!(rt.block_on(gw.attach(&t1, "eth1")).is_err());
    assert_eq!(gw.allocated(), vec![a1, a2]);

    // The node reaches the task at its address; the task reaches the gateway.
    let server = serve_once(&t1, SocketAddr::new(a1.into(), 8080));
    assert_eq!(
        ask(&lab.path("node"), SocketAddr::new(a1.into(), 8080)),
        "10.251.0.1"
    );
    server.join().unwrap();
    let server = serve_once(
        &lab.path("node"),
        SocketAddr::new(gw.gateway().into(), 8081),
    );
    assert_eq!(
        ask(&t2, SocketAddr::new(gw.gateway().into(), 8081)),
        a2.to_string()
    );
    server.join().unwrap();
    // Outbound through the default route, masqueraded as the node.
    let server = serve_once(&lab.path("out"), "10.252.0.2:8082".parse().unwrap());
    assert_eq!(ask(&t1, "10.252.0.2:8082".parse().unwrap()), "10.252.0.1");
    server.join().unwrap();

    // Detach frees the address (reused, lowest first) and is idempotent.
    rt.block_on(gw.detach(&t1, "eth1", a1)).unwrap();
    rt.block_on(gw.detach(&t1, "eth1", a1)).unwrap();
    assert_eq!(gw.allocated(), vec![a2]);
    assert_eq!(rt.block_on(gw.attach(&t1, "gw0")).unwrap(), a1);

    // A node restarted: a new gateway adopts the bridge and its claims, and
    // takes the tasks' addresses back from their interfaces.
    drop(gw);
    let gw = rt
        .block_on(Gateway::new(config(&lab, state.path())))
        .unwrap();
    assert_eq!(rt.block_on(gw.adopt(&t2, "eth1")).unwrap(), Some(a2));
    assert_eq!(rt.block_on(gw.adopt(&t2, "eth9")).unwrap(), None);
    assert_eq!(gw.allocated(), vec![a1, a2]);
    // A second node in the same namespace shares the bridge and its addresses.
    let other = rt
        .block_on(Gateway::new(config(&lab, state.path())))
        .unwrap();
    let a3 = rt.block_on(other.attach(&lab.path("out"), "gw0")).unwrap();
    assert_eq!(a3.to_string(), "10.251.0.4");
    // The first node's tasks leave; its bridge stays for the other node's task.
    rt.block_on(gw.detach(&t1, "gw0", a1)).unwrap();
    rt.block_on(gw.detach(&t2, "eth1", a2)).unwrap();
    assert!(!rt.block_on(gw.remove()).unwrap(), "removed under a task");
    let server = serve_once(&lab.path("out"), SocketAddr::new(a3.into(), 8083));
    assert_eq!(
        ask(&lab.path("node"), SocketAddr::new(a3.into(), 8083)),
        "10.251.0.1"
    );
    server.join().unwrap();
    // A claim whose namespace is gone is taken over.
    std::fs::write(other.claims.join("10.251.0.2"), "/run/netns/swm5g-gone").unwrap();
    assert_eq!(rt.block_on(other.attach(&t1, "eth1")).unwrap(), a1);
    rt.block_on(other.detach(&t1, "eth1", a1)).unwrap();
    rt.block_on(other.detach(&lab.path("out"), "gw0", a3))
        .unwrap();
    assert!(rt.block_on(other.remove()).unwrap());
    let links = Command::new("ip")
        .args(["-n", "swm5g-node", "link", "show", "swm5gbr"])
        .output()
        .unwrap();
    assert!(!links.status.success(), "the bridge is gone");
}
