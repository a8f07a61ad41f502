//! Docker containers on an overlay network across hosts: three `swarmd` with
//! `--runtime docker`, each in a network namespace of its own (`swm6-h1..3`, a
//! veth each to a bridge in `swm6-sw`, 192.168.216.1-3/24). The machine's one
//! Docker Engine runs the containers of all three (each node adopts only its
//! own). From inside a client container (`docker exec` on the machine's engine):
//! the embedded DNS at 127.0.0.11 (what the container's resolv.conf names)
//! answers the service name with its VIP and `tasks.<service>` with every task,
//! and HTTP reaches the VIP and every task, two of them on other hosts over
//! VXLAN, while the container keeps Docker's own `eth0`. Needs root, `ip`,
//! `nsenter`, the docker client, a Docker Engine and the test image; skips with
//! a printed reason otherwise.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, ok};
use common::netlab::{Lab, http_get_through, running, swarm_of, wait_until};
use common::{RemoveContainers, TEST_IMAGE, have_engine_and_image};

const SUBNET: &str = "192.168.216";
/// Service names (and so container names) start with it: the clean-up's filter.
const PREFIX: &str = "swm6";

/// The docker CLI on the machine's Engine (where the containers are).
fn engine(args: &[&str]) -> Output {
    Command::new("docker")
        .env_remove("DOCKER_HOST")
        .args(args)
        .output()
        .expect("docker runs")
}

/// The Engine's container of task `task_id`.
fn container_of(task_id: &str) -> String {
    let o = engine(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.task.id={task_id}"),
    ]);
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(!id.is_empty(), "no running container for task {task_id}");
    id
}

/// `busybox args...` inside container `cid`.
fn exec(cid: &str, args: &[&str]) -> Output {
    let mut all = vec!["exec", cid, "busybox"];
    all.extend_from_slice(args);
    engine(&all)
}

/// The IPv4 addresses the container's resolver answers for `name`, sorted
/// (`nslookup` without a server: the one of the container's resolv.conf).
fn lookup(cid: &str, name: &str) -> Vec<String> {
    let o = exec(cid, &["nslookup", "-type=a", name]);
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

/// The body of `GET /` at `ip:80`, from inside container `cid`.
fn http_get(cid: &str, ip: &str) -> Option<String> {
    let mut nc = Command::new("docker");
    nc.env_remove("DOCKER_HOST")
        .args(["exec", "-i", cid, "busybox", "nc", "-w", "5", ip, "80"]);
    http_get_through(nc)
}

#[test]
fn docker_containers_on_an_overlay_network_find_and_reach_each_other_across_hosts() {
    if let Some(why) = common::netlab::missing_tool(&[]) {
        println!("skipped: {why}");
        return;
    }
    if !have_engine_and_image() {
        println!("skipped: no Docker Engine or no {TEST_IMAGE}");
        return;
    }
    let _containers = RemoveContainers(PREFIX);
    common::remove_containers(PREFIX);
    let lab = Lab::new(PREFIX, SUBNET, 3);
    let mut nodes = swarm_of(&lab, SUBNET, &["--runtime", "docker", "--no-routing-mesh"]);
    let m = &nodes[0];

    ok(m, &["network", "create", "-d", "overlay", "swm6net"]);
    // The image has no mkdir: httpd serves /tmp, where the page is written.
    ok(
        m,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "swm6web",
            "--network",
            "swm6net",
            "--replicas",
            "3",
            "--stop-grace-period",
            "1s",
            TEST_IMAGE,
            "sh",
            "-c",
            "echo swm6-docker-ok > /tmp/index.html && exec httpd -f -p 80 -h /tmp",
        ],
    );
    ok(
        m,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "swm6cli",
            "--network",
            "swm6net",
            "--stop-grace-period",
            "1s",
            TEST_IMAGE,
            "sleep",
            "600",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    while running(m, "swm6web").len() != 3 || running(m, "swm6cli").len() != 1 {
        assert!(
            Instant::now() < deadline,
            "web and the client not running: {}",
            ok(m, &["service", "ps", "swm6web", "swm6cli", "--no-trunc"])
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Spread over the three nodes (the scheduler spreads replicas).
    let web_nodes: std::collections::BTreeSet<String> =
        running(m, "swm6web").into_iter().map(|(_, n)| n).collect();
    assert_eq!(web_nodes.len(), 3, "web's tasks are not on three nodes");
    let vip = ok(
        m,
        &[
            "service",
            "inspect",
            "swm6web",
            "--format",
            "{{range .Endpoint.VirtualIPs}}{{.Addr}}{{end}}",
        ],
    );
    let vip = vip.trim().split('/').next().unwrap().to_string();
    assert!(!vip.is_empty(), "web has no VIP");

    let (cli_task, _) = running(m, "swm6cli").into_iter().next().unwrap();
    let cli = container_of(&cli_task);
    let resolv = engine(&["exec", &cli, "cat", "/etc/resolv.conf"]);
    assert!(
        String::from_utf8_lossy(&resolv.stdout).contains("nameserver 127.0.0.11"),
        "resolv.conf: {}",
        String::from_utf8_lossy(&resolv.stdout)
    );
    // Docker's eth0 stays; the overlay's interface comes next to it.
    let links = String::from_utf8_lossy(&exec(&cli, &["ip", "-o", "addr"]).stdout).into_owned();
    assert!(links.contains(" eth0 "), "Docker's eth0 is gone: {links}");
    assert!(
        links.contains(" eth1 "),
        "no overlay interface eth1: {links}"
    );
    // The overlay's MTU (the default 1450: VXLAN's 50 bytes under 1500), not
    // Docker's 1500.
    let eth1 = String::from_utf8_lossy(&exec(&cli, &["ip", "-o", "link", "show", "eth1"]).stdout)
        .into_owned();
    assert!(eth1.contains(" mtu 1450 "), "eth1: {eth1}");
    // Docker's default route stays: the overlay's subnet is a connected route.
    let routes = String::from_utf8_lossy(&exec(&cli, &["ip", "route"]).stdout).into_owned();
    assert!(
        routes
            .lines()
            .any(|l| l.starts_with("default") && l.contains("dev eth0")),
        "routes: {routes}"
    );

    wait_until("swm6web resolves to its VIP inside the container", || {
        lookup(&cli, "swm6web") == [vip.clone()]
    });
    let mut tasks_web = Vec::new();
    wait_until("tasks.swm6web gives every task", || {
        tasks_web = lookup(&cli, "tasks.swm6web");
        tasks_web.len() == 3
    });
    assert!(!tasks_web.contains(&vip));

    // HTTP to every task (two on other hosts: VXLAN) and to the VIP.
    for addr in &tasks_web {
        let mut got = None;
        wait_until(&format!("GET http://{addr}/"), || {
            got = http_get(&cli, addr);
            got.is_some()
        });
        assert_eq!(got.unwrap().trim(), "swm6-docker-ok");
    }
    for _ in 0..6 {
        assert_eq!(
            http_get(&cli, &vip).as_deref().map(str::trim),
            Some("swm6-docker-ok"),
            "GET the VIP {vip}"
        );
    }

    // A restarted swarmd adopts its running containers: their overlay
    // interface (eth1, found again) keeps working, and their DNS and VIP rules
    // are served again.
    let (h2_task, _) = running(m, "swm6web")
        .into_iter()
        .find(|(_, n)| n == "h2")
        .expect("a web task on h2");
    let h2_web = container_of(&h2_task);
    nodes[1].restart();
    let m = &nodes[0];
    wait_until("h2 ready again", || {
        ok(m, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"])
            .lines()
            .any(|l| l.trim() == "h2 Ready")
    });
    wait_until("tasks.swm6web from the adopted container", || {
        lookup(&h2_web, "tasks.swm6web") == tasks_web
    });
    assert_eq!(container_of(&h2_task), h2_web, "the container was replaced");
    wait_until("GET the VIP from the adopted container", || {
        http_get(&h2_web, &vip).as_deref().map(str::trim) == Some("swm6-docker-ok")
    });
    for addr in &tasks_web {
        assert_eq!(
            http_get(&cli, addr).as_deref().map(str::trim),
            Some("swm6-docker-ok"),
            "GET http://{addr}/ after h2's restart"
        );
    }
    let links = String::from_utf8_lossy(&exec(&h2_web, &["ip", "-o", "link"]).stdout).into_owned();
    assert!(
        !links.contains(" eth2"),
        "adoption attached the container again: {links}"
    );

    // Removing the services removes the containers.
    ok(m, &["service", "rm", "swm6web", "swm6cli"]);
    wait_until("the containers removed", || {
        common::containers(PREFIX).is_empty()
    });
    // Each node detached its containers (their /proc/<pid> gone by then) and
    // took the network's sandbox away with the last one.
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
