//! Hosts as network namespaces on one machine, and swarmd on each, for the
//! multi-host tests (tests/overlay_swarm.rs, tests/overlay_docker.rs): a lab of
//! `<prefix>-h<i>` namespaces at `<subnet>.<i>/24` on a bridge in `<prefix>-sw`,
//! swarmd in each ([`Daemon::in_netns`]), driven by the docker CLI on a unix
//! socket.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use swarm::testing::Patience;

use super::daemon::{Daemon, ok};

/// Runs a command, returning its output (never panics on a failed command).
pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run: {e}"))
}

/// Runs a command that must succeed; its standard output.
pub fn must(program: &str, args: &[&str]) -> String {
    let o = run(program, args);
    assert!(
        o.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Why the lab cannot run here (not root, or a tool missing: `ip`, `nsenter`,
/// `nft`, the docker client and `extra` as `(tool, argument that succeeds)`).
pub fn missing_tool(extra: &[(&str, &str)]) -> Option<String> {
    if !std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
    {
        return Some("needs root (network namespaces, VXLAN)".into());
    }
    let tools = [
        ("ip", "-V"),
        ("nsenter", "--version"),
        ("nft", "--version"),
        ("docker", "--version"),
    ];
    for (tool, arg) in tools.iter().chain(extra) {
        if !Command::new(tool)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

/// The simulated hosts; removed (namespaces, leftovers) when dropped.
pub struct Lab {
    /// Prefix of its namespaces' and links' names.
    prefix: &'static str,
    /// The switch namespace (`<prefix>-sw`).
    pub switch: String,
    pub hosts: Vec<String>,
}

impl Lab {
    /// `n` hosts `<prefix>-h<i>` at `<subnet>.<i>/24` on a bridge in `<prefix>-sw`.
    pub fn new(prefix: &'static str, subnet: &str, n: usize) -> Lab {
        let switch = format!("{prefix}-sw");
        let mut lab = Lab {
            prefix,
            switch: switch.clone(),
            hosts: Vec::new(),
        };
        lab.clean();
        let switch = switch.as_str();
        must("ip", &["netns", "add", switch]);
        must(
            "ip",
            &["-n", switch, "link", "add", "br0", "type", "bridge"],
        );
        must("ip", &["-n", switch, "link", "set", "br0", "up"]);
        for i in 1..=n {
            let host = format!("{prefix}-h{i}");
            must("ip", &["netns", "add", &host]);
            lab.hosts.push(host.clone());
            let port = format!("{prefix}-h{i}p");
            must(
                "ip",
                &[
                    "-n", &host, "link", "add", "eth0", "type", "veth", "peer", "name", &port,
                    "netns", switch,
                ],
            );
            must(
                "ip",
                &["-n", switch, "link", "set", &port, "master", "br0", "up"],
            );
            must(
                "ip",
                &[
                    "-n",
                    &host,
                    "addr",
                    "add",
                    &format!("{subnet}.{i}/24"),
                    "dev",
                    "eth0",
                ],
            );
            must("ip", &["-n", &host, "link", "set", "eth0", "up"]);
            must("ip", &["-n", &host, "link", "set", "lo", "up"]);
        }
        lab
    }

    fn clean(&mut self) {
        for i in 1..=3 {
            let _ = run("ip", &["netns", "del", &format!("{}-h{i}", self.prefix)]);
        }
        let _ = run("ip", &["netns", "del", &self.switch]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Waits up to 120 s for `f`.
pub fn wait_until(what: &str, f: impl FnMut() -> bool) {
    Patience::within(Duration::from_secs(120))
        .every(Duration::from_millis(250))
        .until_blocking(what, f);
}

/// `(task id, node hostname)` of the running tasks of `service`.
pub fn running(d: &Daemon, service: &str) -> Vec<(String, String)> {
    ok(
        d,
        &[
            "service",
            "ps",
            service,
            "--no-trunc",
            "--filter",
            "desired-state=running",
            "--format",
            "{{.ID}} {{.Node}} {{.CurrentState}}",
        ],
    )
    .lines()
    .filter(|l| l.contains("Running"))
    .filter_map(|l| {
        let mut w = l.split_whitespace();
        Some((w.next()?.to_string(), w.next()?.to_string()))
    })
    .collect()
}

/// One swarmd per host of `lab` (`args`), the first the manager, the
/// others joined as workers; returns once the three are ready.
pub fn swarm_of(lab: &Lab, subnet: &str, args: &[&str]) -> Vec<Daemon> {
    let mut nodes: Vec<Daemon> = lab
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| Daemon::in_netns(h, &format!("h{}", i + 1), args))
        .collect();
    let first = format!("{subnet}.1");
    ok(&nodes[0], &["swarm", "init", "--advertise-addr", &first]);
    let token = ok(&nodes[0], &["swarm", "join-token", "-q", "worker"]);
    for (i, n) in nodes.iter().enumerate().skip(1) {
        ok(
            n,
            &[
                "swarm",
                "join",
                "--advertise-addr",
                &format!("{subnet}.{}", i + 1),
                "--token",
                token.trim(),
                &format!("{first}:2377"),
            ],
        );
    }
    for n in &mut nodes {
        let id = ok(n, &["info", "--format", "{{.Swarm.NodeID}}"]);
        n.node_id = Some(id.trim().to_string());
    }
    let m = &nodes[0];
    wait_until("every node ready", || {
        ok(m, &["node", "ls", "--format", "{{.Status}}"])
            .lines()
            .filter(|l| l.trim() == "Ready")
            .count()
            == nodes.len()
    });

    nodes
}

/// The body of a `GET /` sent through `client` (a command that relays its
/// standard input and output to the server, e.g. `busybox nc IP 80` inside a
/// task), when the server answers 200.
pub fn http_get_through(mut client: Command) -> Option<String> {
    use std::io::Write;
    let mut child = client
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()?
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .ok()?;
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1);
    (head.starts_with("HTTP/1.") && status == Some("200")).then(|| body.to_string())
}
