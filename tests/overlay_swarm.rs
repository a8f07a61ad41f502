//! Tasks on an overlay network across three hosts: three `swarmd` processes
//! (process runtime), each in a network namespace of its own (`swm3-h1..3`, a
//! veth each to a bridge in `swm3-sw`, 192.168.213.1-3/24), driven by the docker
//! CLI on unix sockets. From inside a task's own namespace: service names, VIPs,
//! `tasks.<service>`, a dnsrr service, HTTP to the VIP and to every task across
//! hosts over VXLAN, and scaling. Then (`swm5-*`, `swm5k-*`: with the routing
//! mesh in user space and in the kernel) the gateway bridge: a published port
//! answers on every host and a host-mode port on each host, served by tasks in
//! their own namespaces, and a task reaches another host's address through
//! its gateway. And (`swm4e-*`, two hosts) an encrypted overlay that keeps
//! carrying HTTP across hosts while the leader rotates its keys every 2 s.
//! Needs root, `ip`, `nsenter`, `nft`, `busybox`
//! and the docker client; skips with a printed reason otherwise.
//!
//! Not checked: forwarding of names outside the swarm (the hosts here have no
//! resolver to forward to).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, ok};
use common::netlab::{Lab, http_get_through, must, run, running, swarm_of, wait_until};

/// The first test's lab: `swm3-*` namespaces on 192.168.213.0/24.
const SUBNET: &str = "192.168.213";
/// The gateway test's lab: `swm5-*` namespaces on 192.168.215.0/24.
const GW_SUBNET: &str = "192.168.215";
/// The kernel-mesh gateway test's lab: `swm5k-*` namespaces on 192.168.216.0/24.
const GW_KERNEL_SUBNET: &str = "192.168.216";
/// The encrypted overlay test's lab: `swm4e-*` namespaces on 192.168.214.0/24.
const SEALED_SUBNET: &str = "192.168.214";

/// Runs `busybox args...` inside the namespace at `netns`.
fn in_task(netns: &Path, args: &[&str]) -> Output {
    let net = format!("--net={}", netns.display());
    let mut all = vec![net.as_str(), "busybox"];
    all.extend_from_slice(args);
    run("nsenter", &all)
}

/// The IPv4 addresses a lookup of `name` at 127.0.0.11 answers, sorted.
fn lookup(netns: &Path, name: &str) -> Vec<String> {
    let o = in_task(netns, &["nslookup", "-type=a", name, "127.0.0.11"]);
    let text = String::from_utf8_lossy(&o.stdout);
    let mut out: Vec<String> = text
        .split("Name:")
        .skip(1)
        .flat_map(|answer| {
            answer
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Address:"))
                .map(|a| a.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok())
        .collect();
    out.sort();
    out
}

/// The body of `GET /` at `ip:80`, from inside the namespace at `netns`
/// (`busybox nc`: the static busybox's wget crashes in its NSS lookups).
fn http_get(netns: &Path, ip: &str) -> Option<String> {
    http_get_port(netns, ip, 80)
}

/// The body of `GET /` at `ip:port`, from inside the namespace at `netns`.
fn http_get_port(netns: &Path, ip: &str, port: u16) -> Option<String> {
    let mut nc = Command::new("nsenter");
    nc.arg(format!("--net={}", netns.display())).args([
        "busybox",
        "nc",
        "-w",
        "5",
        ip,
        &port.to_string(),
    ]);
    http_get_through(nc)
}

#[test]
fn tasks_on_an_overlay_network_find_and_reach_each_other_across_hosts() {
    if let Some(why) = common::netlab::missing_tool(&[("busybox", "true")]) {
        println!("skipped: {why}");
        return;
    }
    let lab = Lab::new("swm3", SUBNET, 3);
    let nodes = swarm_of(&lab, SUBNET, &["--runtime", "process", "--no-routing-mesh"]);
    let m = &nodes[0];

    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "swm3-overlay-ok\n").unwrap();
    ok(m, &["network", "create", "-d", "overlay", "swm3net"]);
    ok(
        m,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "--network",
            "swm3net",
            "--replicas",
            "3",
            "busybox",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            site.path().to_str().unwrap(),
        ],
    );
    ok(
        m,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "db",
            "--network",
            "swm3net",
            "--endpoint-mode",
            "dnsrr",
            "--replicas",
            "2",
            "busybox",
            "busybox",
            "sleep",
            "600",
        ],
    );
    wait_until("web and db running", || {
        running(m, "web").len() == 3 && running(m, "db").len() == 2
    });
    let vip = ok(
        m,
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}",
        ],
    );
    let vip = vip.trim().split('/').next().unwrap().to_string();
    assert!(!vip.is_empty(), "web has no VIP");

    // Look from inside the db task on h1's side, or any db task.
    let (db_task, db_node) = running(m, "db").into_iter().next().unwrap();
    let host_of = |name: &str| -> &Daemon {
        &nodes[name.trim_start_matches('h').parse::<usize>().unwrap() - 1]
    };
    let netns = host_of(&db_node).netns(&db_task);
    assert!(
        netns.exists(),
        "no namespace for task {db_task} at {}",
        netns.display()
    );
    // The task's resolver is the embedded DNS.
    let state = std::fs::read_to_string(netns.with_file_name("state.json")).unwrap();
    let pid = serde_json::from_str::<serde_json::Value>(&state).unwrap()["pid"]
        .as_i64()
        .unwrap();
    let resolv = std::fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf")).unwrap();
    assert_eq!(resolv, "nameserver 127.0.0.11\noptions ndots:0\n");

    wait_until("web resolves to its VIP", || {
        lookup(&netns, "web") == [vip.clone()]
    });
    let mut tasks_web = Vec::new();
    wait_until("tasks.web gives every task", || {
        tasks_web = lookup(&netns, "tasks.web");
        tasks_web.len() == 3
    });
    assert!(!tasks_web.contains(&vip));
    wait_until("db (dnsrr) gives its task addresses", || {
        let db = lookup(&netns, "db");
        db.len() == 2 && db == lookup(&netns, "tasks.db")
    });

    // HTTP to every task, two of them on other hosts (VXLAN), and to the VIP.
    for addr in &tasks_web {
        let mut got = None;
        wait_until(&format!("GET http://{addr}/"), || {
            got = http_get(&netns, addr);
            got.is_some()
        });
        assert_eq!(got.unwrap().trim(), "swm3-overlay-ok");
    }
    for _ in 0..6 {
        assert_eq!(
            http_get(&netns, &vip).as_deref().map(str::trim),
            Some("swm3-overlay-ok"),
            "GET the VIP {vip}"
        );
    }

    // Scaling changes what tasks.web answers.
    ok(m, &["service", "scale", "--detach", "web=1"]);
    wait_until("tasks.web follows the scale", || {
        let now = lookup(&netns, "tasks.web");
        now.len() == 1 && tasks_web.contains(&now[0])
    });
    let left = lookup(&netns, "tasks.web");
    assert_eq!(
        http_get(&netns, &vip).as_deref().map(str::trim),
        Some("swm3-overlay-ok")
    );
    assert_eq!(
        http_get(&netns, &left[0]).as_deref().map(str::trim),
        Some("swm3-overlay-ok")
    );

    // Removing the services takes the tasks' namespaces and the sandboxes away.
    ok(m, &["service", "rm", "web", "db"]);
    wait_until("the task namespaces removed", || {
        nodes.iter().all(|n| {
            std::fs::read_dir(n.dir().join("runtime"))
                .map(|d| d.flatten().count() == 0)
                .unwrap_or(true)
        })
    });
    let sandboxes = |n: &Daemon| {
        std::fs::read_dir(Path::new("/run/swarm/netns").join(n.node_id.as_deref().unwrap()))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("ov-"))
                    .count()
            })
            .unwrap_or(0)
    };
    wait_until("the sandboxes removed", || {
        nodes.iter().all(|n| sandboxes(n) == 0)
    });
    drop(nodes);
    drop(lab);
}

/// The interface of a task's namespace holding an address of the gateway bridge
/// (172.18.0.0/16), with that address: `(ifname, ip)`.
fn gateway_iface(netns: &Path) -> Option<(String, String)> {
    let o = in_task(netns, &["ip", "-4", "-o", "addr"]);
    String::from_utf8_lossy(&o.stdout).lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        let ip = w.get(3)?.split('/').next()?;
        let ifname = w.get(1)?;
        ip.starts_with("172.18.")
            .then(|| (ifname.to_string(), ip.to_string()))
    })
}

#[test]
fn published_ports_reach_tasks_in_their_own_namespace_through_the_gateway_bridge() {
    gateway_bridge_case("swm5", GW_SUBNET, "off");
}

#[test]
fn the_kernel_mesh_reaches_tasks_in_their_own_namespace_through_the_gateway_bridge() {
    gateway_bridge_case("swm5k", GW_KERNEL_SUBNET, "require");
}

/// Published ports (ingress and host mode) and outbound traffic of tasks in
/// their own namespaces, with the routing mesh's data path `mesh_kernel`
/// (`off`: user space, `require`: the kernel's), on a lab `prefix` at `subnet`.
fn gateway_bridge_case(prefix: &'static str, subnet: &str, mesh_kernel: &str) {
    if let Some(why) = common::netlab::missing_tool(&[("busybox", "true")]) {
        println!("skipped: {why}");
        return;
    }
    let lab = Lab::new(prefix, subnet, 3);
    // A client outside the swarm, on the hosts' network: the switch.
    let client = PathBuf::from(format!("/run/netns/{}", lab.switch));
    must(
        "ip",
        &[
            "-n",
            &lab.switch,
            "addr",
            "add",
            &format!("{subnet}.100/24"),
            "dev",
            "br0",
        ],
    );
    let nodes = swarm_of(
        &lab,
        subnet,
        &["--runtime", "process", "--mesh-kernel", mesh_kernel],
    );
    let m = &nodes[0];
    let host_of = |name: &str| -> &Daemon {
        &nodes[name.trim_start_matches('h').parse::<usize>().unwrap() - 1]
    };

    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "swm5-gateway-ok\n").unwrap();
    ok(m, &["network", "create", "-d", "overlay", "swm5net"]);
    let httpd = [
        "busybox",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        site.path().to_str().unwrap(),
    ];
    let mut web = vec![
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--network",
        "swm5net",
        "--publish",
        "8080:80",
        "--replicas",
        "3",
        "busybox",
    ];
    web.extend_from_slice(&httpd);
    ok(m, &web);
    // Host mode: each host answers 8081 with its own task, reached on its
    // gateway address (the process runtime does not bind host ports itself).
    let mut local = vec![
        "service",
        "create",
        "--detach",
        "--name",
        "local",
        "--network",
        "swm5net",
        "--publish",
        "mode=host,published=8081,target=80",
        "--mode",
        "global",
        "busybox",
    ];
    local.extend_from_slice(&httpd);
    ok(m, &local);
    wait_until("web and local running", || {
        running(m, "web").len() == 3 && running(m, "local").len() == 3
    });

    // Every task lives in its own namespace with an address on its node's
    // gateway bridge and its default route through it.
    let tasks: Vec<(String, String)> = running(m, "web")
        .into_iter()
        .chain(running(m, "local"))
        .collect();
    for (task, node) in &tasks {
        let netns = host_of(node).netns(task);
        let (ifname, addr) = gateway_iface(&netns)
            .unwrap_or_else(|| panic!("task {task} on {node} has no gateway address"));
        assert_ne!(
            ifname, "eth0",
            "the overlay is eth0, the gateway comes after it"
        );
        let routes = in_task(&netns, &["ip", "-4", "route"]);
        let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
        println!("task {task} on {node}: {ifname} {addr}");
        assert!(
            routes.contains(&format!("default via 172.18.0.1 dev {ifname}")),
            "task {task} ({addr}) routes: {routes}"
        );
    }

    // The routing mesh: every host answers 8080, served by tasks in their own
    // namespaces (locally or handed over to another host's mesh).
    for i in 1..=3 {
        let host = format!("{subnet}.{i}");
        for _ in 0..3 {
            let mut got = None;
            wait_until(&format!("GET http://{host}:8080/"), || {
                got = http_get_port(&client, &host, 8080);
                got.is_some()
            });
            assert_eq!(got.unwrap().trim(), "swm5-gateway-ok");
        }
    }
    // Host mode: each host's own task answers 8081.
    for i in 1..=3 {
        let host = format!("{subnet}.{i}");
        let mut got = None;
        wait_until(&format!("GET http://{host}:8081/"), || {
            got = http_get_port(&client, &host, 8081);
            got.is_some()
        });
        assert_eq!(got.unwrap().trim(), "swm5-gateway-ok");
    }

    // Outbound: a task reaches another host's address (outside its overlay)
    // through its gateway, masqueraded as its node.
    let (task, node) = running(m, "local")
        .into_iter()
        .find(|(_, n)| n == "h1")
        .expect("a local task on h1");
    let netns = host_of(&node).netns(&task);
    let other = format!("{subnet}.2");
    let mut got = None;
    wait_until(
        &format!("GET http://{other}:8081/ from task {task}"),
        || {
            got = http_get_port(&netns, &other, 8081);
            got.is_some()
        },
    );
    assert_eq!(got.unwrap().trim(), "swm5-gateway-ok");

    ok(m, &["service", "rm", "web", "local"]);
    wait_until("the task namespaces removed", || {
        nodes.iter().all(|n| {
            std::fs::read_dir(n.dir().join("runtime"))
                .map(|d| d.flatten().count() == 0)
                .unwrap_or(true)
        })
    });
    // The last task of a node takes the node's gateway bridge with it.
    wait_until("the gateway bridges removed", || {
        lab.hosts.iter().all(|h| {
            !run("ip", &["-n", h, "link", "show", "swarm_gwbridge"])
                .status
                .success()
        })
    });
    drop(nodes);
    drop(lab);
}

#[test]
fn an_encrypted_overlay_carries_traffic_across_hosts_while_its_keys_rotate() {
    if let Some(why) = common::netlab::missing_tool(&[("busybox", "true")]) {
        println!("skipped: {why}");
        return;
    }
    let lab = Lab::new("swm4e", SEALED_SUBNET, 2);
    // The leader rotates the overlay keys every 2 s (Docker: 12 h).
    let nodes = swarm_of(
        &lab,
        SEALED_SUBNET,
        &[
            "--runtime",
            "process",
            "--no-routing-mesh",
            "--network-key-rotation",
            "2",
        ],
    );
    let m = &nodes[0];

    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "swm3-sealed-ok\n").unwrap();
    ok(
        m,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--opt",
            "encrypted",
            "swm3sec",
        ],
    );
    let net_id = ok(m, &["network", "inspect", "swm3sec", "--format", "{{.ID}}"]);
    let net_id = net_id.trim().to_string();
    let site_dir = site.path().to_str().unwrap();
    ok(
        m,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "sealed",
            "--network",
            "swm3sec",
            "--replicas",
            "2",
            "busybox",
            "busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            site_dir,
        ],
    );
    ok(
        m,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "client",
            "--network",
            "swm3sec",
            "busybox",
            "busybox",
            "sleep",
            "600",
        ],
    );
    wait_until("sealed and client running", || {
        let sealed = running(m, "sealed");
        sealed.len() == 2 && sealed[0].1 != sealed[1].1 && running(m, "client").len() == 1
    });

    // Each node's sandbox of the network carries it over the user-space
    // encrypted data path (tap0), not a kernel VXLAN device.
    for n in &nodes {
        let sandbox = Path::new("/run/swarm/netns")
            .join(n.node_id.as_deref().unwrap())
            .join(format!("ov-{net_id}"));
        let net = format!("--net={}", sandbox.display());
        let links = run("nsenter", &[net.as_str(), "ip", "-o", "link", "show"]);
        let links = String::from_utf8_lossy(&links.stdout);
        assert!(links.contains("tap0"), "{}: {links}", sandbox.display());
        assert!(!links.contains("vxlan0"), "{}: {links}", sandbox.display());
    }

    let (client, client_node) = running(m, "client").into_iter().next().unwrap();
    let host = &nodes[client_node
        .trim_start_matches('h')
        .parse::<usize>()
        .unwrap()
        - 1];
    let netns = host.netns(&client);
    let mut sealed = Vec::new();
    wait_until("tasks.sealed gives both tasks", || {
        sealed = lookup(&netns, "tasks.sealed");
        sealed.len() == 2
    });
    // One of the two runs on the other host: its answers cross the underlay
    // sealed. Both keep answering over several key rotations.
    for addr in &sealed {
        wait_until(&format!("GET http://{addr}/"), || {
            http_get(&netns, addr).is_some()
        });
    }
    let until = Instant::now() + Duration::from_secs(9);
    let mut rounds = 0;
    while Instant::now() < until {
        for addr in &sealed {
            assert_eq!(
                http_get(&netns, addr).as_deref().map(str::trim),
                Some("swm3-sealed-ok"),
                "GET http://{addr}/ after {rounds} rounds"
            );
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    ok(m, &["service", "rm", "sealed", "client"]);
    drop(nodes);
    drop(lab);
}
