//! Service VIPs inside a task's network namespace, and sockets bound there.
//!
//! A task on an overlay network reaches a `vip`-mode service at its virtual IP. As
//! Docker's IPVS does, the task's own namespace turns a connection to the VIP into one
//! to a task of the service: here an nftables table `swarm_vip` with a NAT `output`
//! chain holding, per VIP,
//!
//! ```text
//! ip daddr 10.0.1.2 dnat to numgen random mod 2 map { 0 : 10.0.1.3, 1 : 10.0.1.4 }
//! ```
//!
//! (TCP and UDP, every port: the destination port is kept). [`program`] replaces the
//! whole table in one `nft -f -` transaction, so a connection never sees half an
//! update. A VIP with no task gets no rule (its connections go unanswered, as in Docker).
//!
//! Debian's `nft` (package `nftables`) does the work: no maintained Rust crate speaks
//! nftables' netlink (the `nftnl`/`rustables` bindings need libnftnl or are unmaintained),
//! and the JSON/`-f` interface of `nft` is the documented, stable one.
//!
//! [`bind_in`] binds a UDP socket and a TCP listener from a thread that entered a network
//! namespace, for a server (the embedded DNS on `127.0.0.11:53`) that runs on this
//! process's runtime but answers inside the task's namespace.
//!
//! ```
//! use swarm_net::vip::{VipRule, render};
//!
//! let rules = [VipRule {
//!     vip: "10.0.1.2".parse().unwrap(),
//!     backends: vec!["10.0.1.3".parse().unwrap(), "10.0.1.4".parse().unwrap()],
//! }];
//! let script = render(&rules);
//! assert!(script.contains("ip daddr 10.0.1.2 dnat to numgen random mod 2 map { 0 : 10.0.1.3, 1 : 10.0.1.4 }"));
//! ```
//!
//! Needs Linux, root and `nft`; errors say which is missing.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};

/// The nftables table (family `ip`) holding the VIP rules of a namespace.
pub const TABLE: &str = "swarm_vip";

/// Why programming VIPs or binding in a namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// A system call or a command could not run; `op` says which. `nft` missing shows
    /// here as `NotFound`: install Debian's `nftables`.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// `nft` refused the rules; `stderr` is what it said.
    #[error("nft failed ({status}): {stderr}")]
    Nft {
        /// Its exit status.
        status: String,
        /// Its error output.
        stderr: String,
    },
}

fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> VipError {
    move |source| VipError::Io {
        op: op.into(),
        source,
    }
}

/// One service VIP and the task addresses behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VipRule {
    /// The virtual IP.
    pub vip: Ipv4Addr,
    /// The addresses of the service's running tasks on the VIP's network.
    pub backends: Vec<Ipv4Addr>,
}

/// The `nft -f` script that replaces the table [`TABLE`] with `rules` (pure).
pub fn render(rules: &[VipRule]) -> String {
    let mut s = format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n");
    for r in rules.iter().filter(|r| !r.backends.is_empty()) {
        let map = r
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| format!("{i} : {b}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "    ip daddr {} dnat to numgen random mod {} map {{ {map} }}",
            r.vip,
            r.backends.len()
        );
    }
    s.push_str("  }\n}\n");
    s
}

/// Runs `f` on a new thread that joined the network namespace at `netns` (a bind-mounted
/// named namespace or `/proc/<pid>/ns/net`); processes it spawns start there too.
pub fn run_in<T, F>(netns: &Path, f: F) -> Result<T, VipError>
where
    T: Send,
    F: FnOnce() -> Result<T, VipError> + Send,
{
    let ns = std::fs::File::open(netns).map_err(io_err(format!("opening {}", netns.display())))?;
    std::thread::scope(|s| {
        s.spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io_err(format!("entering {}", netns.display()))(e.into()))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io_err("namespace thread")(io::Error::other("panicked"))))
    })
}

/// Replaces the VIP rules of the namespace at `netns` with `rules`, atomically.
pub fn program(netns: &Path, rules: &[VipRule]) -> Result<(), VipError> {
    let script = render(rules);
    run_in(netns, move || nft(&script))
}

/// Removes the VIP rules of the namespace at `netns` (idempotent).
pub fn clear(netns: &Path) -> Result<(), VipError> {
    let script = format!("table ip {TABLE} {{}}\ndelete table ip {TABLE}\n");
    run_in(netns, move || nft(&script))
}

/// Feeds `script` to `nft -f -` in the calling thread's namespaces (shared with
/// [`crate::gateway`]).
pub(crate) fn nft(script: &str) -> Result<(), VipError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err("running nft (Debian package nftables)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(io_err("writing to nft"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(io_err("waiting for nft"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(VipError::Nft {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Binds a UDP socket and a TCP listener on `addr` inside the namespace at `netns`
/// (with `SO_REUSEADDR` on the listener, as a server restarted on the same address
/// needs). The sockets stay in that namespace whichever thread uses them.
pub fn bind_in(netns: &Path, addr: SocketAddr) -> Result<(UdpSocket, TcpListener), VipError> {
    run_in(netns, move || {
        let udp = UdpSocket::bind(addr).map_err(io_err(format!("binding udp {addr}")))?;
        let tcp = TcpListener::bind(addr).map_err(io_err(format!("binding tcp {addr}")))?;
        Ok((udp, tcp))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_rule_per_vip_with_backends() {
        let rules = [
            VipRule {
                vip: Ipv4Addr::new(10, 0, 1, 2),
                backends: vec![Ipv4Addr::new(10, 0, 1, 3)],
            },
            VipRule {
                vip: Ipv4Addr::new(10, 0, 1, 9),
                backends: vec![],
            },
        ];
        let s = render(&rules);
        assert!(s.starts_with("table ip swarm_vip {}\ndelete table ip swarm_vip\n"));
        assert!(s.contains("ip daddr 10.0.1.2 dnat to numgen random mod 1 map { 0 : 10.0.1.3 }"));
        assert!(!s.contains("10.0.1.9"), "{s}");
    }

    #[test]
    fn programs_and_clears_a_namespace() {
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: needs root (a network namespace and nft)");
            return;
        }
        if Command::new("nft").arg("--version").output().is_err() {
            println!("skipped: nft is not installed (Debian package nftables)");
            return;
        }
        // A throw-away namespace for this test.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swm3-vip");
        std::fs::File::create(&path).unwrap();
        let p = path.clone();
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            nix::mount::mount(
                Some("/proc/thread-self/ns/net"),
                &p,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .unwrap();
        })
        .join()
        .unwrap();
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _guard = Unmount(path.clone());
        let rules = [VipRule {
            vip: Ipv4Addr::new(10, 0, 1, 2),
            backends: vec![Ipv4Addr::new(10, 0, 1, 3), Ipv4Addr::new(10, 0, 1, 4)],
        }];
        program(&path, &rules).unwrap();
        // Replacing is atomic and idempotent.
        program(&path, &rules).unwrap();
        let listed = run_in(&path, || {
            Command::new("nft")
                .args(["list", "table", "ip", TABLE])
                .output()
                .map_err(io_err("nft list"))
        })
        .unwrap();
        let text = String::from_utf8_lossy(&listed.stdout);
        assert!(text.contains("10.0.1.2"), "{text}");
        assert!(text.contains("10.0.1.4"), "{text}");
        // Our own namespace has no such table.
        let here = Command::new("nft")
            .args(["list", "table", "ip", TABLE])
            .output()
            .unwrap();
        assert!(
            !here.status.success() || !String::from_utf8_lossy(&here.stdout).contains("10.0.1.2")
        );
        clear(&path).unwrap();
        clear(&path).unwrap();
        // A socket bound in the namespace: 127.0.0.11 exists there once lo is up.
        let (udp, _tcp) = run_in(&path, || {
            Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .map_err(io_err("ip link"))?;
            Ok(())
        })
        .and_then(|()| bind_in(&path, "127.0.0.11:0".parse().unwrap()))
        .unwrap();
        assert_eq!(
            udp.local_addr().unwrap().ip(),
            "127.0.0.11".parse::<std::net::IpAddr>().unwrap()
        );
    }
}
