//! The stock `docker` CLI against three `swarmd` processes on 127.0.0.x
//! (process runtime). Skips with a printed reason when no docker client is
//! installed.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use swarm::testing::Patience;

mod common;
use common::TEST_IMAGE;
use common::daemon::{Daemon, docker, ok};

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(ip: &str, name: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let cluster = format!("{ip}:{}", free_port(ip));
    start_in(
        dir,
        ip,
        name,
        &["--listen-addr", &cluster, "--advertise-addr", &cluster],
    )
}

/// Starts swarmd on `dir` (a new one, or one a stopped swarmd left): the
/// process runtime unless `extra` names one; published ports and the routing
/// mesh's peer listener on `ip`.
fn start_in(dir: tempfile::TempDir, ip: &str, name: &str, extra: &[&str]) -> Daemon {
    let api = format!("{ip}:{}", free_port(ip));
    let runtime: &[&str] = if extra.contains(&"--runtime") {
        &[]
    } else {
        &["--runtime", "process"]
    };
    let args: Vec<&str> = ["--ingress-addr", ip, "--mesh-port", "0"]
        .into_iter()
        .chain(extra.iter().copied())
        .chain(runtime.iter().copied())
        .collect();
    Daemon::on_tcp(dir, &api, name, &args)
}

fn wait_until(what: &str, f: impl FnMut() -> bool) {
    Patience::within(Duration::from_secs(60))
        .every(Duration::from_millis(200))
        .until_blocking(what, f);
}

fn have_docker() -> bool {
    Command::new("docker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Raw HTTP to the API: (status, body).
fn http(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(d.api_addr()).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// `docker swarm init` on `first` (advertising `ip`), then every node of
/// `workers` joins it with the worker token.
fn init_and_join(first: &Daemon, ip: &str, workers: &[&Daemon]) {
    ok(first, &["swarm", "init", "--advertise-addr", ip]);
    let token = ok(first, &["swarm", "join-token", "-q", "worker"]);
    let manager = ok(
        first,
        &[
            "info",
            "--format",
            "{{(index .Swarm.RemoteManagers 0).Addr}}",
        ],
    );
    for n in workers {
        ok(
            n,
            &["swarm", "join", "--token", token.trim(), manager.trim()],
        );
    }
}

fn running_tasks(d: &Daemon, service: &str) -> Vec<String> {
    ok(
        d,
        &[
            "service",
            "ps",
            service,
            "--filter",
            "desired-state=running",
            "--format",
            "{{.Name}} {{.Node}} {{.CurrentState}}",
        ],
    )
    .lines()
    .filter(|l| l.contains("Running"))
    .map(str::to_string)
    .collect()
}

#[test]
fn the_docker_cli_drives_a_three_node_swarm() {
    if !have_docker() {
        eprintln!("skipping: no docker client installed");
        return;
    }
    let n1 = start("127.0.0.21", "node1");
    let n2 = start("127.0.0.22", "node2");
    let n3 = start("127.0.0.23", "node3");

    // Outside a swarm: docker's 503.
    let o = docker(&n1, &["node", "ls"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("This node is not a swarm manager"));

    let out = ok(&n1, &["swarm", "init", "--advertise-addr", "127.0.0.21"]);
    assert!(out.contains("Swarm initialized: current node ("), "{out}");
    assert!(out.contains("docker swarm join --token SWMTKN-1-"), "{out}");
    let worker_token = ok(&n1, &["swarm", "join-token", "-q", "worker"]);
    let manager_addr = ok(
        &n1,
        &[
            "info",
            "--format",
            "{{(index .Swarm.RemoteManagers 0).Addr}}",
        ],
    );
    let (worker_token, manager_addr) = (worker_token.trim(), manager_addr.trim());
    assert!(worker_token.starts_with("SWMTKN-1-"));

    // A wrong token is refused; the node stays out.
    let o = docker(
        &n2,
        &[
            "swarm",
            "join",
            "--token",
            "SWMTKN-1-bogus-bogus",
            manager_addr,
        ],
    );
    assert!(!o.status.success());
    for n in [&n2, &n3] {
        let out = ok(n, &["swarm", "join", "--token", worker_token, manager_addr]);
        assert!(
            out.contains("This node joined a swarm as a worker."),
            "{out}"
        );
    }
    let info = ok(
        &n1,
        &["info", "--format", "{{.Swarm.Managers}} {{.Swarm.Nodes}}"],
    );
    assert_eq!(info.trim(), "1 3");

    wait_until("three ready nodes", || {
        ok(&n1, &["node", "ls", "--format", "{{.Status}}"])
            .lines()
            .filter(|l| *l == "Ready")
            .count()
            == 3
    });
    let ls = ok(&n1, &["node", "ls"]);
    assert!(ls.lines().next().unwrap().starts_with("ID "), "{ls}");
    let me = ls
        .lines()
        .find(|l| l.contains(" * "))
        .expect("* marks this node");
    assert!(me.contains("node1") && me.contains("Leader"), "{ls}");

    // A worker cannot manage the swarm.
    let o = docker(&n2, &["service", "ls"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("Worker nodes can't be used"));

    ok(
        &n1,
        &[
            "service",
            "create",
            "--detach",
            "--replicas",
            "3",
            "--name",
            "web",
            "busybox",
            "sleep",
            "600",
        ],
    );
    wait_until("3/3", || {
        ok(
            &n1,
            &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"],
        )
        .trim()
            == "web 3/3"
    });
    ok(&n1, &["service", "scale", "--detach", "web=5"]);
    wait_until("5 running", || running_tasks(&n1, "web").len() == 5);
    // `docker ps` on each node shows the tasks it runs.
    wait_until("5 containers across the nodes", || {
        [&n1, &n2, &n3]
            .iter()
            .map(|n| {
                ok(n, &["ps", "--format", "{{.Names}}"])
                    .lines()
                    .filter(|l| l.starts_with("web."))
                    .count()
            })
            .sum::<usize>()
            == 5
    });

    // Logs come from every node that runs a task of the service.
    ok(
        &n1,
        &[
            "service",
            "create",
            "--detach",
            "--replicas",
            "3",
            "--name",
            "talk",
            "busybox",
            "sh",
            "-c",
            "echo hello; sleep 600",
        ],
    );
    wait_until("3 talk tasks running", || {
        running_tasks(&n1, "talk").len() == 3
    });
    wait_until("a hello from each task", || {
        let out = ok(&n1, &["service", "logs", "talk"]);
        let lines: Vec<&str> = out.lines().filter(|l| l.ends_with("| hello")).collect();
        let mut prefixes: Vec<&str> = lines.iter().map(|l| l.split('|').next().unwrap()).collect();
        prefixes.sort();
        prefixes.dedup();
        prefixes.len() == 3
            && prefixes
                .iter()
                .all(|p| p.starts_with("talk.") && p.contains('@'))
    });
    let task = ok(&n1, &["service", "ps", "-q", "talk"]);
    let task = task.lines().next().unwrap();
    let one = ok(&n1, &["service", "logs", task]);
    assert_eq!(
        one.lines().filter(|l| l.ends_with("| hello")).count(),
        1,
        "{one}"
    );
    ok(&n1, &["service", "rm", "talk"]);

    // Drain: node2's tasks move; the replica count holds.
    ok(&n1, &["node", "update", "--availability", "drain", "node2"]);
    wait_until("nothing on node2", || {
        let r = running_tasks(&n1, "web");
        r.len() == 5 && r.iter().all(|l| !l.contains("node2"))
    });
    let ps = ok(&n1, &["service", "ps", "web"]);
    assert!(ps.contains("\\_ web."), "history rows: {ps}");
    ok(
        &n1,
        &["node", "update", "--availability", "active", "node2"],
    );

    // Promote and demote.
    ok(&n1, &["node", "promote", "node3"]);
    wait_until("node3 reachable", || {
        ok(
            &n1,
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
        )
        .contains("node3 Reachable")
    });
    // node3's own daemon serves the manager API once it has switched roles,
    // a moment after the leader counts it reachable.
    wait_until("node3 answers node ls", || {
        docker(&n3, &["node", "ls"]).status.success()
    });
    ok(&n1, &["node", "demote", "node3"]);
    wait_until("one manager", || {
        ok(&n1, &["info", "--format", "{{.Swarm.Managers}}"]).trim() == "1"
    });
    let o = docker(&n1, &["node", "demote", "node1"]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("last manager"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // A rolling update of the image, one slot at a time with a delay, followed
    // to the end by the CLI's own progress display (no --detach).
    let out = ok(
        &n1,
        &[
            "service",
            "update",
            "--image",
            "busybox:2",
            "--update-delay",
            "100ms",
            "--update-parallelism",
            "2",
            "--update-monitor",
            "500ms",
            "web",
        ],
    );
    assert!(out.contains("converged"), "{out}");
    // The CLI's own 5 s verification and the updater's monitor window end at
    // about the same time: the update is marked completed then, not before.
    wait_until("the update completed", || {
        let state = ok(
            &n1,
            &[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                "web",
            ],
        );
        assert!(
            ["updating", "completed"].contains(&state.trim()),
            "update state {state}"
        );
        state.trim() == "completed"
    });
    let ps = ok(&n1, &["service", "ps", "--no-trunc", "web"]);
    let running_new = ps
        .lines()
        .filter(|l| l.contains("busybox:2") && l.contains("Running"))
        .count();
    assert_eq!(running_new, 5, "{ps}");
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().next().is_some_and(|id| id.len() == 25)),
        "full IDs: {ps}"
    );
    let img = ok(
        &n1,
        &[
            "service",
            "inspect",
            "--format",
            "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
            "web",
        ],
    );
    assert_eq!(img.trim(), "busybox:2");
    let pretty = ok(&n1, &["service", "inspect", "--pretty", "web"]);
    assert!(pretty.contains("Replicas:\t5"), "{pretty}");

    // Bad input: Docker-style errors, nothing changed.
    let (status, body) = http(&n1, "POST", "/v1.47/services/create", "{not json");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"message\""), "{body}");
    let (status, body) = http(
        &n1,
        "POST",
        "/v1.47/services/create",
        r#"{"Name":"x","TaskTemplate":{"ContainerSpec":{"Imagee":"a"}}}"#,
    );
    assert_eq!(status, 400);
    assert!(body.contains("TaskTemplate.ContainerSpec.Imagee"), "{body}");
    let (status, _) = http(&n1, "GET", "/v1.47/services/nosuchservice", "");
    assert_eq!(status, 404);
    let (status, _) = http(
        &n1,
        "POST",
        "/v1.47/services/create",
        r#"{"Name":"web","TaskTemplate":{"ContainerSpec":{"Image":"a"}}}"#,
    );
    assert_eq!(status, 409, "a taken name");
    let (status, _) = http(
        &n1,
        "POST",
        "/v1.47/nodes/node2/update?version=1",
        r#"{"Role":"king"}"#,
    );
    assert_eq!(status, 400);
    let huge = format!("{{\"Name\":\"{}\"}}", "a".repeat(5 << 20));
    let (status, _) = http(&n1, "POST", "/v1.47/services/create", &huge);
    assert!(status == 413 || status == 400, "{status}");
    assert_eq!(
        ok(&n1, &["service", "ls", "--format", "{{.Name}}"]).trim(),
        "web",
        "nothing created"
    );

    ok(&n1, &["service", "rm", "web"]);
    wait_until("no service", || {
        ok(&n1, &["service", "ls", "-q"]).trim().is_empty()
    });

    let pretty = ok(&n1, &["node", "inspect", "--pretty", "self"]);
    assert!(
        pretty.contains("Hostname:") && pretty.contains("node1"),
        "{pretty}"
    );
    assert!(pretty.contains("Leader:\t\tYes"), "{pretty}");

    // A worker leaves; the manager sees it go down, and it can be removed.
    ok(&n2, &["swarm", "leave"]);
    wait_until("node2 down", || {
        ok(
            &n1,
            &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"],
        )
        .contains("node2 Down")
    });
    ok(&n1, &["node", "rm", "node2"]);
    let ls = ok(&n1, &["node", "ls", "--format", "{{.Hostname}}"]);
    assert!(!ls.contains("node2"), "{ls}");
}

#[test]
fn networks_secrets_configs_stacks_and_rollback_through_the_cli() {
    if !have_docker() {
        eprintln!("skipping: no docker client installed");
        return;
    }
    let n1 = start("127.0.0.24", "node1");
    ok(&n1, &["swarm", "init", "--advertise-addr", "127.0.0.24"]);
    let files = tempfile::tempdir().unwrap();
    let secret = files.path().join("pass");
    std::fs::write(&secret, "s3cret").unwrap();
    let config = files.path().join("app.conf");
    std::fs::write(&config, "listen 80").unwrap();

    ok(
        &n1,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--attachable",
            "backend",
        ],
    );
    let nets = ok(
        &n1,
        &[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ],
    );
    assert!(nets.contains("backend overlay swarm"), "{nets}");
    ok(
        &n1,
        &["secret", "create", "dbpass", secret.to_str().unwrap()],
    );
    ok(
        &n1,
        &["config", "create", "app.conf", config.to_str().unwrap()],
    );
    let cfg = ok(&n1, &["config", "inspect", "--pretty", "app.conf"]);
    assert!(cfg.contains("listen 80"), "{cfg}");
    let o = docker(&n1, &["secret", "create", "-bad", secret.to_str().unwrap()]);
    assert!(!o.status.success(), "a bad name is refused");

    ok(
        &n1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "db",
            "--secret",
            "dbpass",
            "--config",
            "app.conf",
            "--network",
            "backend",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let refs = ok(
        &n1,
        &[
            "service",
            "inspect",
            "--format",
            "{{(index .Spec.TaskTemplate.ContainerSpec.Secrets 0).SecretName}}",
            "db",
        ],
    );
    assert_eq!(refs.trim(), "dbpass");
    for (args, needle) in [
        (
            vec!["secret", "rm", "dbpass"],
            "in use by the following service: db",
        ),
        (
            vec!["config", "rm", "app.conf"],
            "in use by the following service: db",
        ),
        (vec!["network", "rm", "backend"], "in use by service db"),
    ] {
        let o = docker(&n1, &args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
    }

    // Update, then roll back to the previous spec.
    ok(
        &n1,
        &[
            "service",
            "update",
            "--detach",
            "--image",
            "busybox:2",
            "db",
        ],
    );
    ok(&n1, &["service", "rollback", "--detach", "db"]);
    wait_until("the old image back", || {
        ok(
            &n1,
            &[
                "service",
                "inspect",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                "db",
            ],
        )
        .trim()
            == "busybox:latest"
    });

    // A restarted swarmd (no address flags) comes back as the same node, on
    // the cluster address it was given at init, with the swarm's state.
    let id = ok(&n1, &["info", "--format", "{{.Swarm.NodeID}}"]);
    let addr = ok(&n1, &["info", "--format", "{{.Swarm.NodeAddr}}"]);
    let dir = n1.kill();
    let n1 = start_in(dir, "127.0.0.24", "node1", &[]);
    wait_until("the node back in its swarm", || {
        let o = docker(&n1, &["service", "ls", "--format", "{{.Name}}"]);
        o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "db"
    });
    assert_eq!(ok(&n1, &["info", "--format", "{{.Swarm.NodeID}}"]), id);
    assert_eq!(ok(&n1, &["info", "--format", "{{.Swarm.NodeAddr}}"]), addr);

    // A stack from a compose file.
    let compose = files.path().join("stack.yml");
    std::fs::write(
        &compose,
        "version: \"3.8\"\nservices:\n  web:\n    image: busybox\n    command: [\"sleep\", \"600\"]\n    deploy:\n      replicas: 2\nnetworks:\n  default:\n    driver: overlay\n",
    )
    .unwrap();
    ok(
        &n1,
        &["stack", "deploy", "-c", compose.to_str().unwrap(), "demo"],
    );
    wait_until("demo_web 2/2", || {
        ok(
            &n1,
            &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"],
        )
        .contains("demo_web 2/2")
    });
    let stacks = ok(&n1, &["stack", "ls", "--format", "{{.Name}} {{.Services}}"]);
    assert_eq!(stacks.trim(), "demo 1");
    ok(&n1, &["stack", "rm", "demo"]);
    ok(&n1, &["service", "rm", "db"]);
    ok(&n1, &["secret", "rm", "dbpass"]);
    ok(&n1, &["config", "rm", "app.conf"]);
    wait_until("the stack's network gone", || {
        let o = docker(&n1, &["network", "rm", "backend"]);
        o.status.success()
    });
    let nets = ok(&n1, &["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !nets.contains("backend") && !nets.contains("demo_default"),
        "{nets}"
    );
    // As root the stack's tasks were on the machine's gateway bridge, which the
    // other tests' nodes here share: its removal with the last task is checked
    // where a lab has it alone (tests/overlay_swarm.rs, swarm-net's gateway tests).
}

/// What answers an HTTP GET of `/` at `addr`: `(status, body)`, or `None`
/// when nothing does.
fn http_get(addr: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |b| b.1)
        .trim()
        .to_string();
    Some((status, body))
}

/// The distinct bodies (each task serves its own host name) of `n` GETs.
fn answering(addr: &str, n: usize) -> std::collections::BTreeSet<String> {
    (0..n)
        .filter_map(|_| http_get(addr))
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
        .collect()
}

/// The tutorial's routing mesh part with the docker CLI: `--publish 8080:80`
/// answered on every node by tasks across all nodes, `--publish-add` and
/// `--publish-rm`, and HAProxy in front of the three nodes as the tutorial
/// configures it. Tasks run in containers (Docker runtime) so each has its own
/// port 80.
#[test]
fn the_routing_mesh_answers_on_every_node_and_behind_haproxy() {
    if !have_docker() {
        eprintln!("skipping: no docker client installed");
        return;
    }
    if !common::have_engine_and_image() {
        return;
    }
    // Containers of an earlier run that was killed, and of this one if it fails.
    common::remove_containers("my-web.");
    let _cleanup = common::RemoveContainers("my-web.");
    let ips = ["127.0.0.51", "127.0.0.52", "127.0.0.53"];
    let nodes: Vec<Daemon> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let dir = tempfile::tempdir().unwrap();
            let cluster = format!("{ip}:{}", free_port(ip));
            start_in(
                dir,
                ip,
                &format!("node{}", i + 1),
                &[
                    "--listen-addr",
                    &cluster,
                    "--advertise-addr",
                    &cluster,
                    "--runtime",
                    "docker",
                ],
            )
        })
        .collect();
    let n1 = &nodes[0];
    init_and_join(n1, ips[0], &[&nodes[2]]);
    // node2 takes mesh hand-overs on its own data-path address.
    let token = ok(n1, &["swarm", "join-token", "-q", "worker"]);
    let manager = ok(
        n1,
        &[
            "info",
            "--format",
            "{{(index .Swarm.RemoteManagers 0).Addr}}",
        ],
    );
    ok(
        &nodes[1],
        &[
            "swarm",
            "join",
            "--token",
            token.trim(),
            "--data-path-addr",
            "127.0.0.54",
            manager.trim(),
        ],
    );
    wait_until("three ready nodes", || {
        ok(n1, &["node", "ls", "--format", "{{.Status}}"])
            .lines()
            .filter(|l| *l == "Ready")
            .count()
            == 3
    });

    // The tutorial's command; without --detach the CLI follows to convergence.
    let out = ok(
        n1,
        &[
            "service",
            "create",
            "--name",
            "my-web",
            "--publish",
            "8080:80",
            "--replicas",
            "3",
            TEST_IMAGE,
            "sh",
            "-c",
            "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www",
        ],
    );
    assert!(
        out.contains("verify: Service") || out.contains("converged"),
        "{out}"
    );
    let ports = ok(
        n1,
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Endpoint.Ports}}",
            "my-web",
        ],
    );
    assert!(ports.contains(r#""PublishedPort":8080"#), "{ports}");
    assert!(ports.contains(r#""TargetPort":80"#), "{ports}");
    let on_nodes: std::collections::BTreeSet<String> = running_tasks(n1, "my-web")
        .iter()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect();
    assert_eq!(on_nodes.len(), 3, "one task per node: {on_nodes:?}");

    // Every node answers, and spreads requests over the three tasks.
    for ip in ips {
        let at = format!("{ip}:8080");
        wait_until(&format!("three tasks answering through {at}"), || {
            answering(&at, 9).len() == 3
        });
    }

    // publish-add and publish-rm change the ports without restarting tasks.
    let task_ids = || {
        ok(
            n1,
            &[
                "service",
                "ps",
                "-q",
                "--filter",
                "desired-state=running",
                "my-web",
            ],
        )
    };
    let before = task_ids();
    ok(
        n1,
        &[
            "service",
            "update",
            "--detach",
            "--publish-add",
            "8081:80",
            "my-web",
        ],
    );
    for ip in ips {
        let at = format!("{ip}:8081");
        wait_until(&format!("{at} answering"), || !answering(&at, 3).is_empty());
    }
    // HAProxy in front of the three nodes, as the tutorial configures it.
    match Command::new("haproxy").arg("-v").output() {
        Ok(o) if o.status.success() => {
            let front = format!("127.0.0.50:{}", free_port("127.0.0.50"));
            let dir = tempfile::tempdir().unwrap();
            let cfg = dir.path().join("haproxy.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "global\n    maxconn 256\n\ndefaults\n    mode http\n    timeout connect 5000ms\n    timeout client 50000ms\n    timeout server 50000ms\n\n\
                     frontend http-in\n    bind {front}\n    default_backend http_servers\n\n\
                     backend http_servers\n    balance roundrobin\n    server srv1 {}:8081 check\n    server srv2 {}:8081 check\n    server srv3 {}:8081 check\n",
                    ips[0], ips[1], ips[2]
                ),
            )
            .unwrap();
            let mut haproxy = Command::new("haproxy")
                .args(["-db", "-f"])
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("haproxy starts");
            wait_until("haproxy answering", || http_get(&front).is_some());
            let answers: Vec<_> = (0..30).map(|_| http_get(&front)).collect();
            let _ = haproxy.kill();
            let _ = haproxy.wait();
            assert!(
                answers
                    .iter()
                    .all(|a| a.as_ref().is_some_and(|(s, _)| *s == 200)),
                "every request through HAProxy served: {answers:?}"
            );
            // Which task serves depends on how HAProxy's health checks and
            // requests interleave with each node's round robin; the mesh's
            // spread over the tasks is checked per node above.
            let tasks: std::collections::BTreeSet<_> =
                answers.into_iter().flatten().map(|(_, b)| b).collect();
            eprintln!("HAProxy's 30 requests were served by tasks {tasks:?}");
        }
        _ => eprintln!("skipping the HAProxy part: no haproxy installed (apt-get install haproxy)"),
    }

    ok(
        n1,
        &[
            "service",
            "update",
            "--detach",
            "--publish-rm",
            "80",
            "my-web",
        ],
    );
    // Docker's CLI removes by target port: both published ports go.
    for ip in ips {
        for port in [8080, 8081] {
            let at = format!("{ip}:{port}");
            wait_until(&format!("{at} closed"), || http_get(&at).is_none());
        }
    }
    assert_eq!(task_ids(), before, "publishing changes restart no task");

    ok(n1, &["service", "rm", "my-web"]);
    wait_until("the service's containers gone", || {
        let o = Command::new("docker")
            .args(["ps", "-aq", "--filter", "name=^/my-web."])
            .output()
            .unwrap();
        o.stdout.is_empty()
    });
}

/// The first time in a `--timestamps` log line.
fn line_time(line: &str) -> swarm::core::Timestamp {
    let first = line.split_whitespace().next().unwrap_or_default();
    first
        .parse()
        .unwrap_or_else(|e| panic!("no time at the start of {line:?}: {e}"))
}

#[test]
fn logs_follow_the_managers_with_tail_and_the_nodes_timestamps() {
    if !have_docker() {
        eprintln!("skipping: no docker client installed");
        return;
    }
    let n1 = start("127.0.0.31", "node1");
    let n2 = start("127.0.0.32", "node2");
    let n3 = start("127.0.0.33", "node3");
    init_and_join(&n1, "127.0.0.31", &[&n2, &n3]);
    // node2 joined while node1 was the only manager; its task prints there
    // (process runtime: the task runs on this host, so a file tells it to go on).
    let gate = tempfile::tempdir().unwrap();
    let go = gate.path().join("go");
    let script = format!(
        "echo one; echo two; echo three; while [ ! -e {} ]; do sleep 0.05; done; echo four; sleep 600",
        go.display()
    );
    let created = swarm::core::Timestamp::now();
    ok(
        &n1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "talk",
            "--constraint",
            "node.hostname==node2",
            "busybox",
            "sh",
            "-c",
            &script,
        ],
    );
    wait_until("talk running on node2", || {
        running_tasks(&n1, "talk")
            .iter()
            .any(|l| l.contains("node2"))
    });

    ok(&n1, &["node", "promote", "node3"]);
    wait_until("node3 reachable", || {
        ok(
            &n1,
            &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"],
        )
        .contains("node3 Reachable")
    });
    // Through the new manager: node2 learned of it from its session and
    // publishes its task's output there too.
    wait_until("node2's output through node3", || {
        let o = docker(&n3, &["service", "logs", "talk"]);
        let out = String::from_utf8_lossy(&o.stdout);
        o.status.success()
            && out
                .lines()
                .any(|l| l.contains("@node2") && l.ends_with("| three"))
    });

    // --tail: the last lines only.
    let out = ok(&n1, &["service", "logs", "--tail", "2", "talk"]);
    let words: Vec<&str> = out.lines().filter_map(|l| l.rsplit("| ").next()).collect();
    assert_eq!(words, ["two", "three"], "{out}");

    // --timestamps: when node2 got each line, before this manager was asked
    // for it (the lines were already printed), after the service was created.
    let asked = swarm::core::Timestamp::now();
    let out = ok(&n1, &["service", "logs", "--timestamps", "talk"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    let times: Vec<_> = lines.iter().map(|l| line_time(l)).collect();
    for (l, t) in lines.iter().zip(&times) {
        assert!(
            created <= *t && *t <= asked,
            "{l} (created {created}, asked {asked})"
        );
    }
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{out}");

    // --follow with --tail: the last line, then what comes.
    let mut follow = Command::new("docker")
        .env("DOCKER_HOST", n3.docker_host())
        .args(["service", "logs", "--follow", "--tail", "1", "talk"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                return;
            }
        }
    });
    let next = || {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a followed line")
    };
    let first = next();
    assert!(first.ends_with("| three"), "{first}");
    std::fs::write(&go, "").unwrap();
    let then = next();
    assert!(then.ends_with("| four"), "{then}");
    let _ = follow.kill();
    let _ = follow.wait();
}

/// The `Spec` of an object's JSON, as JSON (what the CLI posts back).
fn spec_of(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
    v["Spec"].to_string()
}

#[test]
fn updates_from_a_read_before_the_swarms_own_writes_still_apply() {
    if !have_docker() {
        eprintln!("skipping: no docker client installed");
        return;
    }
    let n1 = start("127.0.0.41", "node1");
    ok(&n1, &["swarm", "init", "--advertise-addr", "127.0.0.41"]);
    ok(
        &n1,
        &[
            "service",
            "create",
            "--detach",
            "--replicas",
            "2",
            "--update-monitor",
            "300ms",
            "--name",
            "web",
            "busybox",
            "sleep",
            "600",
        ],
    );
    wait_until("2/2", || {
        ok(&n1, &["service", "ls", "--format", "{{.Replicas}}"]).trim() == "2/2"
    });
    // A user reads the service right after an update; the updater then writes
    // its progress (update status only) until it completes.
    ok(
        &n1,
        &[
            "service",
            "update",
            "--detach",
            "--image",
            "busybox:2",
            "web",
        ],
    );
    let (status, body) = http(&n1, "GET", "/v1.47/services/web", "");
    assert_eq!(status, 200, "{body}");
    let read: serde_json::Value = serde_json::from_str(&body).unwrap();
    let version = read["Version"]["Index"].as_u64().unwrap();
    let spec = spec_of(&body);
    wait_until("the update completed", || {
        ok(
            &n1,
            &[
                "service",
                "inspect",
                "--format",
                "{{.UpdateStatus.State}}",
                "web",
            ],
        )
        .trim()
            == "completed"
    });
    let now = ok(
        &n1,
        &[
            "service",
            "inspect",
            "--format",
            "{{.Version.Index}}",
            "web",
        ],
    );
    assert!(
        now.trim().parse::<u64>().unwrap() > version,
        "the swarm wrote since"
    );
    let post = |image: &str| {
        http(
            &n1,
            "POST",
            &format!("/v1.47/services/web/update?version={version}"),
            &spec.replace("busybox:2", image),
        )
    };
    let (status, body) = post("busybox:3");
    assert_eq!(status, 200, "{body}");
    let image = |n: &Daemon| {
        ok(
            n,
            &[
                "service",
                "inspect",
                "--format",
                "{{.Spec.TaskTemplate.ContainerSpec.Image}}",
                "web",
            ],
        )
    };
    assert_eq!(image(&n1).trim(), "busybox:3");
    // The spec changed since that read: out of sequence, nothing changed.
    let (status, body) = post("busybox:4");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("update out of sequence"), "{body}");
    assert_eq!(image(&n1).trim(), "busybox:3");

    // The cluster: settings read, then a token rotation.
    let (_, body) = http(&n1, "GET", "/v1.47/swarm", "");
    let read: serde_json::Value = serde_json::from_str(&body).unwrap();
    let version = read["Version"]["Index"].as_u64().unwrap();
    let spec = spec_of(&body);
    ok(&n1, &["swarm", "join-token", "--rotate", "-q", "worker"]);
    let limited = spec.replace(
        "\"TaskHistoryRetentionLimit\":5",
        "\"TaskHistoryRetentionLimit\":3",
    );
    assert_ne!(limited, spec, "the limit is in the spec: {spec}");
    let path = format!("/v1.47/swarm/update?version={version}");
    let (status, body) = http(&n1, "POST", &path, &limited);
    assert_eq!(status, 200, "{body}");
    let limit = ok(
        &n1,
        &[
            "info",
            "--format",
            "{{.Swarm.Cluster.Spec.Orchestration.TaskHistoryRetentionLimit}}",
        ],
    );
    assert_eq!(limit.trim(), "3");
    let (status, body) = http(&n1, "POST", &path, &spec);
    assert_eq!(status, 409, "{body}");
}

#[test]
fn address_pools_ingress_vips_and_published_ports_through_the_cli() {
    if !have_docker() {
        eprintln!("skipping: no docker client installed");
        return;
    }
    let n1 = start("127.0.0.25", "node1");
    ok(
        &n1,
        &[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.25",
            "--default-addr-pool",
            "10.20.0.0/16",
            "--default-addr-pool-mask-length",
            "26",
            "--data-path-port",
            "4800",
        ],
    );
    let info = ok(&n1, &["info"]);
    for line in [
        "Default Address Pool: 10.20.0.0/16",
        "SubnetSize: 26",
        "Data Path Port: 4800",
    ] {
        assert!(
            info.contains(line),
            "{line:?} missing from docker info:\n{info}"
        );
    }
    let (status, body) = http(&n1, "GET", "/v1.47/swarm", "");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(r#""DefaultAddrPool":["10.20.0.0/16"]"#)
            && body.contains(r#""SubnetSize":26"#)
            && body.contains(r#""DataPathPort":4800"#),
        "{body}"
    );
    let nets = ok(
        &n1,
        &[
            "network",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Scope}}",
        ],
    );
    assert!(nets.contains("ingress overlay swarm"), "{nets}");
    let ingress_id = ok(
        &n1,
        &["network", "inspect", "ingress", "--format", "{{.ID}}"],
    );
    let ingress_id = ingress_id.trim().to_string();
    let mut ipam = String::new();
    wait_until("the ingress subnet", || {
        ipam = ok(
            &n1,
            &[
                "network",
                "inspect",
                "ingress",
                "--format",
                "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{index .Options \"com.docker.network.driver.overlay.vxlanid_list\"}}",
            ],
        );
        ipam.trim() == "10.20.0.0/26 10.20.0.1 4096"
    });
    ok(&n1, &["network", "create", "-d", "overlay", "backend"]);
    wait_until("the backend subnet", || {
        ok(
            &n1,
            &[
                "network",
                "inspect",
                "backend",
                "--format",
                "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            ],
        )
        .trim()
            == "10.20.0.64/26"
    });

    ok(
        &n1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "web",
            "-p",
            "8080:80",
            "--network",
            "backend",
            "busybox",
            "sleep",
            "600",
        ],
    );
    let web_id = ok(&n1, &["service", "inspect", "web", "--format", "{{.ID}}"]);
    let o = docker(
        &n1,
        &[
            "service", "create", "--detach", "--name", "web2", "-p", "8080:80", "busybox", "sleep",
            "600",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "port '8080' is already in use by service 'web' ({}) as an ingress port",
            web_id.trim()
        )),
        "{err}"
    );
    assert!(!ok(&n1, &["service", "ls", "--format", "{{.Name}}"]).contains("web2"));

    wait_until("web running", || running_tasks(&n1, "web").len() == 1);
    let vips = |name: &str| {
        ok(
            &n1,
            &[
                "service",
                "inspect",
                name,
                "--format",
                "{{range .Endpoint.VirtualIPs}}{{.NetworkID}}={{.Addr}} {{end}}",
            ],
        )
    };
    let v = vips("web");
    assert!(v.contains(&format!("{ingress_id}=10.20.0.")), "{v}");
    assert!(v.contains("=10.20.0.66/26"), "backend VIP: {v}");
    // The node running web's task is a peer of both networks it is attached to.
    for net in ["backend", "ingress"] {
        let peers = ok(
            &n1,
            &[
                "network",
                "inspect",
                net,
                "--format",
                "{{range .Peers}}{{.Name}}={{.IP}} {{end}}",
            ],
        );
        assert_eq!(peers.trim(), "node1=127.0.0.25", "{net}: {peers}");
    }
    let ports = ok(
        &n1,
        &[
            "service",
            "inspect",
            "web",
            "--format",
            "{{json .Endpoint.Ports}}",
        ],
    );
    assert!(ports.contains(r#""PublishedPort":8080"#), "{ports}");

    // publish-add: a picked port, and the task keeps running untouched.
    let before = ok(&n1, &["service", "ps", "-q", "web"]);
    ok(
        &n1,
        &[
            "service",
            "update",
            "--detach",
            "--publish-add",
            "90",
            "web",
        ],
    );
    let mut ports = String::new();
    wait_until("the picked port", || {
        ports = ok(
            &n1,
            &[
                "service",
                "inspect",
                "web",
                "--format",
                "{{json .Endpoint.Ports}}",
            ],
        );
        ports.contains(r#""PublishedPort":30000"#)
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        ok(&n1, &["service", "ps", "-q", "web"]),
        before,
        "no task restarted"
    );
    assert_eq!(running_tasks(&n1, "web").len(), 1);
}

/// Whether a TCP connection to `addr` is refused (nothing listens there).
fn tcp_refused(addr: &str) -> bool {
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    matches!(
        std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(2)),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// Host-mode publishing with the docker CLI: `service ps`, the task's and the
/// service's inspect show the ports (a dynamic one as picked on the node),
/// and the ports are bound on the task's node only.
#[test]
fn host_mode_ports_show_in_service_ps_and_bind_on_the_tasks_node_only() {
    if !have_docker() {
        eprintln!("skipping: no docker client installed");
        return;
    }
    let ips = ["127.0.0.90", "127.0.0.91", "127.0.0.92"];
    // The meshes in user space: the tasks only sleep, and their node's port is
    // seen bound by the mesh accepting a connection (the kernel path answers a
    // connection to a task that does not listen with a reset).
    let nodes: Vec<Daemon> = ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            let cluster = format!("{ip}:{}", free_port(ip));
            start_in(
                tempfile::tempdir().unwrap(),
                ip,
                &format!("node{}", i + 1),
                &[
                    "--listen-addr",
                    &cluster,
                    "--advertise-addr",
                    &cluster,
                    "--mesh-kernel",
                    "off",
                ],
            )
        })
        .collect();
    init_and_join(&nodes[0], ips[0], &[&nodes[1], &nodes[2]]);
    let n1 = &nodes[0];
    wait_until("three ready nodes", || {
        ok(n1, &["node", "ls", "--format", "{{.Status}}"])
            .lines()
            .filter(|l| *l == "Ready")
            .count()
            == 3
    });
    ok(
        n1,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            "hostweb",
            "--publish",
            "mode=host,published=18031,target=18032",
            "--publish",
            "mode=host,target=18033",
            "--constraint",
            "node.hostname==node2",
            "busybox",
            "sleep",
            "600",
        ],
    );
    wait_until("hostweb running", || {
        running_tasks(n1, "hostweb").len() == 1
    });
    let mut row = String::new();
    wait_until("the ports in service ps", || {
        row = ok(
            n1,
            &[
                "service",
                "ps",
                "hostweb",
                "--format",
                "{{.Node}} {{.Ports}}",
            ],
        );
        row.contains("*:18031->18032/tcp")
    });
    let (node, ports) = row.trim().split_once(' ').expect("node and ports");
    assert_eq!(node, "node2", "{row}");
    let dynamic: u16 = ports
        .split(',')
        .find_map(|p| p.strip_prefix("*:")?.strip_suffix("->18033/tcp"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("a picked port for 18033: {row}"));
    assert_ne!(dynamic, 0);

    let task = ok(n1, &["service", "ps", "-q", "hostweb"]);
    let status = ok(
        n1,
        &[
            "inspect",
            "--format",
            "{{json .Status.PortStatus}}",
            task.trim(),
        ],
    );
    for want in [
        r#""PublishedPort":18031"#.to_string(),
        format!(r#""PublishedPort":{dynamic}"#),
        r#""PublishMode":"host""#.to_string(),
    ] {
        assert!(status.contains(&want), "{want} in {status}");
    }
    let endpoint = ok(
        n1,
        &[
            "service",
            "inspect",
            "--format",
            "{{json .Endpoint.Ports}}",
            "hostweb",
        ],
    );
    assert!(
        endpoint.contains(r#""PublishedPort":18031"#)
            && endpoint.contains(r#""PublishMode":"host""#),
        "{endpoint}"
    );

    // Bound on node2 (its mesh forwards to the task), refused elsewhere.
    for port in [18031, dynamic] {
        let on = format!("{}:{port}", ips[1]);
        wait_until(&format!("{on} bound"), || !tcp_refused(&on));
        for ip in [ips[0], ips[2]] {
            let at = format!("{ip}:{port}");
            assert!(tcp_refused(&at), "{at} is refused");
        }
    }
    ok(n1, &["service", "rm", "hostweb"]);
    let on = format!("{}:18031", ips[1]);
    wait_until(&format!("{on} closed"), || tcp_refused(&on));
}
