//! The kernel data path: nftables NAT rules in the node's network namespace
//! that balance new connections and flows of a published port over its local
//! backends, as Docker's IPVS mesh does when it runs as root.
//!
//! ```text
//!  nat prerouting / output, daddr local (or = ingress address), dport = published
//!    └─ numgen inc mod N vmap ─┬─ i < L : dnat to local backend i     (kernel, conntrack)
//!                              └─ i >= L: redirect to :internal port  (user space:
//!                                          the mesh hands over to a remote backend)
//! ```
//!
//! N counts every active backend, local or remote, so each gets an equal share
//! of new connections; the remote shares land on a per-port internal socket of
//! the mesh, which picks a remote backend round robin and hands over as the
//! user-space path does (DNAT keeps the client's address). The whole table is
//! replaced in one `nft -f -` transaction, so a backend change is atomic; a
//! backend that leaves the map keeps its established connections through
//! conntrack.
//!
//! Choices:
//! - The `nft` binary, not a netlink crate: `nft -f -` is the documented
//!   transactional interface, its text is readable in logs and tests, and the
//!   Rust netlink crates for nftables (rustables, nftnl) are thin, rarely
//!   released and would pull bindgen/libnftnl. One `nft` run per change of the
//!   desired rules (never per connection) costs a few milliseconds.
//! - IPv4 only (table family `ip`); IPv6 clients use the user-space path.
//! - Backends on loopback (host-network tasks at 127.0.0.1): DNAT to 127/8 from
//!   prerouting needs `route_localnet`, which lets outside packets reach
//!   loopback-only services (CVE-2020-8558); `redirect` would rewrite to the
//!   interface address and miss a task bound to 127.0.0.1. So such a port is
//!   answered by the kernel only for clients on the node itself (output hook);
//!   outside clients go through the user-space listener.
//! - Tasks behind a bridge are reached by forwarding, which Docker's filter
//!   FORWARD chain drops by default: the DNAT rules mark their connections
//!   (conntrack mark bit 0x20000000) and, when the host has Docker's
//!   `DOCKER-USER` chain, one rule there accepts them (removed at stop).
//! - Locally originated connections to a loopback destination leave with a
//!   127/8 source, which cannot be routed to a non-loopback backend: for such a
//!   port the output rule excludes loopback destinations (user space again).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::process::{Command, Stdio};

use std::collections::HashMap;
use std::sync::Arc;

use super::error::NftError;
use super::{Inner, KernelState, MeshConfig, PortKey, PortSpec, Protocol, Share, State, Target};

/// Default name of the mesh's nftables table.
pub const DEFAULT_TABLE: &str = "swarm_mesh";

/// Conntrack mark bit set on the connections the mesh DNATs to a backend, so
/// that a forward filter can let them through (see [`docker_user`]).
const FORWARD_MARK: &str = "0x20000000";

/// One published port as the kernel rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelPort {
    pub protocol: Protocol,
    pub port: u16,
    /// Active local backends (IPv4).
    pub locals: Vec<SocketAddrV4>,
    /// Active remote backends (their share goes to `internal_port`).
    pub remotes: usize,
    /// The mesh's internal socket for this port (bound on every address).
    pub internal_port: u16,
}

impl KernelPort {
    /// Whether the kernel answers clients coming from outside (prerouting):
    /// not when a backend is on loopback (see the module docs).
    pub fn serves_outside_clients(&self) -> bool {
        !self.locals.iter().any(|a| a.ip().is_loopback())
    }

    /// Whether a node-local connection to a loopback destination can be
    /// DNATed: only when every local backend is on loopback too.
    fn loopback_clients(&self) -> bool {
        self.locals.iter().all(|a| a.ip().is_loopback())
    }
}

/// Checks a table name: nft identifiers, at most 64 characters.
pub(crate) fn check_table(name: &str) -> Result<(), NftError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(NftError::BadTable(name.to_owned()))
    }
}

/// The nft script that replaces table `table` with the rules of `ports`
/// (creating it first, so it works whether or not a table is left over).
pub(crate) fn ruleset(table: &str, ingress: Ipv4Addr, ports: &[KernelPort]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "table ip {table}\ndelete table ip {table}\ntable ip {table} {{"
    );
    let dest = if ingress.is_unspecified() {
        "fib daddr type local".to_owned()
    } else {
        format!("ip daddr {ingress}")
    };
    let mut pre = String::new();
    let mut out = String::new();
    let mut input = String::new();
    let mut chains = String::new();
    for p in ports {
        let total = p.locals.len() + p.remotes;
        if p.locals.is_empty() || total == 0 {
            continue;
        }
        let proto = p.protocol.to_string();
        let name = format!("{proto}_{}", p.port);
        let hit = format!("{dest} {proto} dport {} goto {name}", p.port);
        if p.serves_outside_clients() {
            let _ = writeln!(pre, "    {hit}");
        }
        if p.loopback_clients() {
            let _ = writeln!(out, "    {hit}");
        } else {
            let _ = writeln!(
                out,
                "    {dest} ip daddr != 127.0.0.0/8 {proto} dport {} goto {name}",
                p.port
            );
        }
        let mut entries = Vec::with_capacity(total);
        for (i, addr) in p.locals.iter().enumerate() {
            entries.push(format!("{i} : goto {name}_{i}"));
            let _ = writeln!(
                chains,
                "  chain {name}_{i} {{\n    meta l4proto {proto} ct mark set ct mark or {FORWARD_MARK} dnat to {addr}\n  }}"
            );
        }
        if p.remotes > 0 {
            for i in p.locals.len()..total {
                entries.push(format!("{i} : goto {name}_u"));
            }
            let _ = writeln!(
                chains,
                "  chain {name}_u {{\n    meta l4proto {proto} redirect to :{}\n  }}",
                p.internal_port
            );
        }
        let _ = writeln!(
            chains,
            "  chain {name} {{\n    numgen inc mod {total} vmap {{ {} }}\n  }}",
            entries.join(", ")
        );
        // The internal socket listens on every address: only redirected traffic may reach it.
        let _ = writeln!(
            input,
            "    {proto} dport {0} ct status dnat accept\n    {proto} dport {0} drop",
            p.internal_port
        );
    }
    let _ = writeln!(
        s,
        "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{pre}  }}"
    );
    let _ = writeln!(
        s,
        "  chain output {{\n    type nat hook output priority -100; policy accept;\n{out}  }}"
    );
    let _ = writeln!(
        s,
        "  chain input {{\n    type filter hook input priority filter; policy accept;\n{input}  }}"
    );
    s.push_str(&chains);
    s.push_str("}\n");
    s
}

/// The script that removes table `table` (whether or not it exists).
pub(crate) fn removal(table: &str) -> String {
    format!("table ip {table}\ndelete table ip {table}\n")
}

/// Runs `nft -f -` with `script` in the calling thread's network namespace
/// (the one runner of the crate, [`crate::vip::nft`]).
pub(crate) fn run(script: &str) -> Result<(), NftError> {
    crate::vip::nft(script).map_err(|e| match e {
        crate::vip::VipError::Nft { status, stderr } => NftError::Refused { status, stderr },
        crate::vip::VipError::Io { source, .. } => NftError::Spawn { source },
    })
}

/// Whether this process may program nftables: effective capability
/// CAP_NET_ADMIN (bit 12 of `CapEff` in /proc/self/status).
pub(crate) fn permitted() -> bool {
    const CAP_NET_ADMIN: u32 = 12;
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// The IPv4 address of a local backend, if the kernel can DNAT to it.
pub(crate) fn v4(addr: std::net::SocketAddr) -> Option<SocketAddrV4> {
    match addr {
        std::net::SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(a),
        std::net::SocketAddr::V6(_) | std::net::SocketAddr::V4(_) => None,
    }
}

/// Whether the kernel path can serve `ingress` at all (IPv4 or every address).
pub(crate) fn ingress_v4(ingress: IpAddr) -> Option<Ipv4Addr> {
    match ingress {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(a) if a.is_unspecified() => Some(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => None,
    }
}

/// Removes what a killed mesh with `config`'s table left (its nftables table
/// and `DOCKER-USER` rule), when this process may: a mesh that starts on the
/// user-space path must not have a dead one's NAT rules take its ports.
/// Nothing to remove, no `nft` or no permission: nothing done.
pub(super) fn clear_leftovers(config: &MeshConfig) {
    let table = config.table_name();
    if check_table(&table).is_err() || !permitted() {
        return;
    }
    let _ = run(&removal(&table));
    docker_user(&table, false);
}

/// Checks that the kernel path can work for `config` and replaces its table
/// with an empty one.
pub(super) fn setup(config: &MeshConfig) -> Result<KernelState, NftError> {
    let table = config.table_name();
    check_table(&table)?;
    let ingress = ingress_v4(config.ingress_ip).ok_or(NftError::Ipv6Ingress(config.ingress_ip))?;
    if !permitted() {
        return Err(NftError::NotPermitted);
    }
    let script = ruleset(&table, ingress, &[]);
    run(&script)?;
    let forward_accept = docker_user(&table, true);
    Ok(KernelState {
        table,
        ingress,
        applied: script,
        forward_accept,
    })
}

/// A host running Docker drops forwarded packets by default (filter FORWARD
/// policy drop, in iptables' tables, which an accept in this table cannot
/// override): a connection DNATed to a container address would be dropped.
/// Docker's extension point for that is its `DOCKER-USER` chain: when it
/// exists, one rule there accepts the connections this mesh marked, tagged
/// with the table name; `add == false` (or a restart) removes it. Returns
/// whether the rule is in place. Without iptables or that chain: nothing to do.
pub(super) fn docker_user(table: &str, add: bool) -> bool {
    let iptables = |op: &str| {
        Command::new("iptables")
            .args(["-w", op, "DOCKER-USER", "-m", "connmark", "--mark"])
            .arg(format!("{FORWARD_MARK}/{FORWARD_MARK}"))
            .args(["-m", "comment", "--comment", table, "-j", "ACCEPT"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let chain = Command::new("iptables")
        .args(["-w", "-S", "DOCKER-USER"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !chain {
        return false;
    }
    // Leftovers of a killed mesh with the same table first.
    for _ in 0..16 {
        if !iptables("-D") {
            break;
        }
    }
    if !add {
        return false;
    }
    let ok = iptables("-I");
    if ok {
        tracing::info!(
            table,
            "mesh: DOCKER-USER accepts the connections the kernel path forwards"
        );
    } else {
        tracing::warn!(
            table,
            "mesh: cannot add the DOCKER-USER rule: connections DNATed to forwarded addresses may be dropped"
        );
    }
    ok
}

impl Inner {
    /// Brings the kernel rules and internal sockets in line with `specs`, and
    /// logs the ports whose data path changed.
    pub(super) fn apply_kernel(
        self: &Arc<Self>,
        st: &mut State,
        specs: &HashMap<PortKey, Arc<PortSpec>>,
    ) {
        let mut paths: HashMap<PortKey, &'static str> = HashMap::new();
        let mut kports = Vec::new();
        let on = st.kernel.is_some();
        for (key, spec) in specs.iter() {
            let (port, path) = self.kernel_port(st, on, spec);
            if let Some(p) = port {
                kports.push(p);
            }
            paths.insert(*key, path);
        }
        st.internal.retain(|key, (task, _)| {
            let keep = kports
                .iter()
                .any(|p| p.protocol == key.protocol && p.port == key.port);
            if !keep {
                task.abort();
            }
            keep
        });
        if let Some(k) = st.kernel.as_mut() {
            kports.sort_by_key(|p| (p.port, p.protocol));
            let script = ruleset(&k.table, k.ingress, &kports);
            if script != k.applied {
                match run(&script) {
                    Ok(()) => {
                        tracing::debug!(table = %k.table, "mesh: kernel rules replaced");
                        k.applied = script;
                        if !k.forward_accept {
                            // Docker may have started since.
                            k.forward_accept = docker_user(&k.table, true);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(table = %k.table, error = %e, "mesh: kernel rules not applied: every port in user space until the next change");
                        if let Err(e) = run(&removal(&k.table)) {
                            tracing::warn!(table = %k.table, error = %e, "mesh: cannot remove the kernel rules");
                        }
                        k.applied.clear();
                        for path in paths.values_mut() {
                            *path = "user space (nft failed)";
                        }
                    }
                }
            }
        }
        for (key, path) in &paths {
            if st.paths.get(key) != Some(path) {
                tracing::info!(port = key.port, protocol = %key.protocol, path, "mesh: data path");
            }
        }
        st.paths = paths;
    }

    /// The kernel rules of one port (binding its internal socket when it has
    /// remote backends), or none, with the data path it gets.
    fn kernel_port(
        self: &Arc<Self>,
        st: &mut State,
        on: bool,
        spec: &PortSpec,
    ) -> (Option<KernelPort>, &'static str) {
        let key = spec.key;
        if !on {
            return (None, "user space");
        }
        if key.protocol == Protocol::Tcp && spec.proxy_protocol {
            return (None, "user space (PROXY protocol)");
        }
        let mut locals = Vec::new();
        for &i in &spec.active {
            if let Target::Local(addr) = spec.backends[i].target {
                match v4(addr) {
                    Some(a) => locals.push(a),
                    None => {
                        return (
                            None,
                            "user space (a backend address the kernel path cannot reach)",
                        );
                    }
                }
            }
        }
        if locals.is_empty() {
            return (None, "user space (no local backend)");
        }
        let remotes = spec.remote.len();
        let internal_port = match st.internal.get(&key) {
            Some((_, port)) => *port,
            None if remotes == 0 => 0,
            None => match self.bind_internal(key) {
                Ok((task, port)) => {
                    st.internal.insert(key, (task, port));
                    port
                }
                Err(e) => {
                    tracing::warn!(port = key.port, protocol = %key.protocol, error = %e, "mesh: cannot bind the internal socket");
                    return (None, "user space (no internal socket)");
                }
            },
        };
        let port = KernelPort {
            protocol: key.protocol,
            port: key.port,
            locals,
            remotes,
            internal_port,
        };
        let path = if port.serves_outside_clients() {
            "kernel"
        } else {
            "kernel for node-local clients, user space for others (loopback backend)"
        };
        (Some(port), path)
    }

    /// Binds the internal socket of a port on every address, on a port picked
    /// by the system, and serves the remote share on it.
    fn bind_internal(
        self: &Arc<Self>,
        key: PortKey,
    ) -> std::io::Result<(tokio::task::JoinHandle<()>, u16)> {
        let any = std::net::SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        match key.protocol {
            Protocol::Tcp => {
                let l = super::tcp::bind(any)?;
                let port = l.local_addr()?.port();
                let task = tokio::spawn(super::tcp::serve(self.clone(), key, l, Share::Remote));
                Ok((task, port))
            }
            Protocol::Udp => {
                let s = super::udp::bind(any)?;
                let port = s.local_addr()?.port();
                let task = tokio::spawn(super::udp::serve(
                    self.clone(),
                    key,
                    Arc::new(s),
                    Share::Remote,
                ));
                Ok((task, port))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(locals: &[&str], remotes: usize) -> KernelPort {
        KernelPort {
            protocol: Protocol::Tcp,
            port: 8080,
            locals: locals.iter().map(|a| a.parse().unwrap()).collect(),
            remotes,
            internal_port: 40000,
        }
    }

    #[test]
    fn every_backend_local_or_remote_gets_one_entry_of_the_map() {
        let s = ruleset(
            "swarm_mesh",
            Ipv4Addr::UNSPECIFIED,
            &[port(&["10.0.0.2:80", "10.0.0.3:80"], 2)],
        );
        assert!(s.contains(
            "numgen inc mod 4 vmap { 0 : goto tcp_8080_0, 1 : goto tcp_8080_1, 2 : goto tcp_8080_u, 3 : goto tcp_8080_u }"
        ), "{s}");
        assert!(s.contains("dnat to 10.0.0.3:80"), "{s}");
        assert!(s.contains("redirect to :40000"), "{s}");
        assert!(
            s.contains("fib daddr type local tcp dport 8080 goto tcp_8080"),
            "{s}"
        );
        // Node-local clients on loopback cannot be DNATed to 10.0.0.x.
        assert!(s.contains("ip daddr != 127.0.0.0/8 tcp dport 8080"), "{s}");
        assert!(s.contains("tcp dport 40000 ct status dnat accept"), "{s}");
    }

    #[test]
    fn loopback_backends_serve_only_node_local_clients() {
        let s = ruleset(
            "t",
            "127.0.0.21".parse().unwrap(),
            &[port(&["127.0.0.1:9000"], 0)],
        );
        let pre = s.split("chain output").next().unwrap();
        assert!(!pre.contains("dport 8080"), "{s}");
        assert!(
            s.contains("ip daddr 127.0.0.21 tcp dport 8080 goto tcp_8080"),
            "{s}"
        );
        assert!(!s.contains("_u"), "{s}");
    }

    #[test]
    fn ports_without_local_backends_stay_in_user_space() {
        let s = ruleset("t", Ipv4Addr::UNSPECIFIED, &[port(&[], 3)]);
        assert!(!s.contains("8080"), "{s}");
        assert!(s.starts_with("table ip t\ndelete table ip t\n"), "{s}");
    }

    #[test]
    fn table_names_are_checked() {
        assert!(check_table("swarm_mesh_2").is_ok());
        for bad in ["", "1x", "a b", "x;flush ruleset", &"a".repeat(65)] {
            assert!(check_table(bad).is_err(), "{bad}");
        }
    }
}
