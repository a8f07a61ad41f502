//! The gateway bridge of a node: how tasks in their own network namespace reach
//! the node and the outside, and how the node reaches them (Docker's
//! `docker_gwbridge`).
//!
//! A task on overlay networks lives in a namespace of its own: its overlays give it
//! connected routes to the other tasks, nothing more. A [`Gateway`] is a Linux
//! bridge in the node's own namespace ([`DEFAULT_BRIDGE`], subnet
//! [`DEFAULT_SUBNET`]; both configurable) holding the subnet's first address, the
//! gateway. [`Gateway::attach`] gives a task one more veth, its end in the task
//! named by the caller (`eth<N>` after the overlays), an address of the bridge's
//! subnet allocated here and the task's **default route** through the gateway, as
//! Docker does; the overlays keep their connected routes. Then:
//!
//! ```text
//!  task namespace                          node namespace
//!  eth0 ── overlay sandbox (VXLAN)
//!  eth1 172.18.0.2 ──veth── swarm_gwbridge 172.18.0.1 ── routing, masquerade ── eth0
//! ```
//!
//! * the node reaches the task at its gateway address (the routing mesh's local
//!   backend, host-mode published ports);
//! * the task's outbound traffic leaves through the node, masqueraded: an nftables
//!   table in the node's namespace (`nft -f -`, the runner of [`crate::vip`]) with
//!   one `postrouting` rule, `ip saddr <subnet> oifname != <bridge> masquerade`, and
//!   IPv4 forwarding switched on in that namespace (as Docker does);
//! * the task's end gets the MAC [`crate::overlay::mac_for_ip`] of its address, so
//!   an address freed and given to another task never meets a stale neighbour entry.
//!
//! Addresses are allocated by this module, lowest free first, and freed by
//! [`Gateway::detach`]. Each one given is a claim file
//! `<state_dir>/<bridge>-<namespace inode>/<address>` holding the task's namespace
//! path: several nodes in one namespace (tests run three on one machine) share the
//! bridge and never give one address twice, and the last one leaves removes it
//! ([`Gateway::remove`]). A claim whose namespace is gone (a node killed with its
//! tasks) is taken over. A node that restarts and adopts running tasks keeps their
//! addresses: their claims are still there, and [`Gateway::adopt`] reads the address
//! from the task's interface.
//!
//! Not done (Docker does): isolating the tasks on the bridge from each other
//! (Docker's `enable_icc=false`) needs `br_netfilter`; here tasks on one node may
//! reach each other's gateway address.
//!
//! Needs Linux, root and `nft`.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::address::AddressAttribute;
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

use crate::overlay::veth::{self, Bridge, Route, TaskEnd, TaskNs};
use crate::overlay::{
    Cidr, OverlayError, add_address, connect_in, link_index, mac_for_ip, must_index, nl, set_link,
};
use crate::vip::{self, VipError};

/// The bridge's default name (Docker's is `docker_gwbridge`).
pub const DEFAULT_BRIDGE: &str = "swarm_gwbridge";
/// The bridge's default subnet (Docker's `docker_gwbridge` default).
pub const DEFAULT_SUBNET: &str = "172.18.0.0/16";
/// The nftables table (family `ip`) holding the masquerade rule by default.
pub const DEFAULT_TABLE: &str = "swarm_gw";
/// Where the address claims live by default.
pub const DEFAULT_STATE_DIR: &str = "/run/swarm/gateway";
/// MTU of the bridge and its veths.
const MTU: u32 = 1500;

/// Why the gateway could not be set up or a task attached.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// A netlink request, a namespace or a bad argument (see [`OverlayError`]).
    #[error(transparent)]
    Net(#[from] OverlayError),
    /// `nft` or a sysctl in the node's namespace.
    #[error(transparent)]
    System(#[from] VipError),
    /// Every address of the subnet is in use.
    #[error("no free address left in the gateway subnet {0}")]
    Exhausted(Cidr),
}

/// How a [`Gateway`] is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The bridge's name (at most 15 bytes).
    pub bridge: String,
    /// Its IPv4 subnet; the first address is the gateway's. At most a /30.
    pub subnet: Cidr,
    /// The namespace the bridge lives in; `None`: the calling thread's.
    pub netns: Option<PathBuf>,
    /// The nftables table of the masquerade rule.
    pub table: String,
    /// Where the address claims of the bridges live (see the [module docs](self)).
    pub state_dir: PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            bridge: DEFAULT_BRIDGE.to_string(),
            subnet: DEFAULT_SUBNET.parse().expect("valid default subnet"),
            netns: None,
            table: DEFAULT_TABLE.to_string(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        }
    }
}

/// A node's gateway bridge (see the [module docs](self)). Methods may be called
/// concurrently.
pub struct Gateway {
    cfg: GatewayConfig,
    /// The bridge's namespace, kept open: reached as `/proc/self/fd/<fd>`.
    ns: File,
    handle: Handle,
    bridge: u32,
    network: u32,
    prefix_len: u8,
    gateway: Ipv4Addr,
    /// The claims of this bridge: one file per address given.
    claims: PathBuf,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("cfg", &self.cfg).finish()
    }
}

fn invalid(msg: String) -> GatewayError {
    GatewayError::Net(OverlayError::InvalidArgument(msg))
}

impl Gateway {
    /// Sets up (idempotently, adopting what a previous run left) the bridge with the
    /// gateway address, up; IPv4 forwarding and the masquerade table in its
    /// namespace. Needs a tokio runtime and root.
    pub async fn new(cfg: GatewayConfig) -> Result<Gateway, GatewayError> {
        let IpAddr::V4(base) = cfg.subnet.addr else {
            return Err(invalid(format!(
                "gateway subnet {} is not IPv4",
                cfg.subnet
            )));
        };
        if !(8..=30).contains(&cfg.subnet.prefix_len) {
            return Err(invalid(format!(
                "gateway subnet {} must be between a /8 and a /30",
                cfg.subnet
            )));
        }
        if cfg.bridge.is_empty() || cfg.bridge.len() > 15 || cfg.bridge.contains(['/', ' ']) {
            return Err(invalid(format!("bad bridge name {:?}", cfg.bridge)));
        }
        if cfg.table.is_empty()
            || !cfg
                .table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(format!("bad nftables table name {:?}", cfg.table)));
        }
        let mask = u32::MAX << (32 - cfg.subnet.prefix_len);
        let network = u32::from(base) & mask;
        let gateway = Ipv4Addr::from(network + 1);
        let here = PathBuf::from("/proc/thread-self/ns/net");
        let at = cfg.netns.as_deref().unwrap_or(&here);
        let ns =
            File::open(at).map_err(|e| OverlayError::io(format!("opening {}", at.display()), e))?;
        let ino = std::os::unix::fs::MetadataExt::ino(
            &ns.metadata()
                .map_err(|e| OverlayError::io("reading the namespace's inode", e))?,
        );
        let claims = cfg.state_dir.join(format!("{}-{ino}", cfg.bridge));
        std::fs::create_dir_all(&claims)
            .map_err(|e| OverlayError::io(format!("creating {}", claims.display()), e))?;
        let gw = Gateway {
            handle: connect_in(&fd_path(&ns))?,
            claims,
            ns,
            bridge: 0,
            network,
            prefix_len: cfg.subnet.prefix_len,
            gateway,
            cfg,
        };
        let bridge = match link_index(&gw.handle, &gw.cfg.bridge).await? {
            Some(index) => index,
            None => {
                let msg = LinkBridge::new(&gw.cfg.bridge).mtu(MTU).build();
                gw.handle
                    .link()
                    .add(msg)
                    .execute()
                    .await
                    .map_err(nl(format!("creating bridge {}", gw.cfg.bridge)))?;
                must_index(&gw.handle, &gw.cfg.bridge).await?
            }
        };
        add_address(
            &gw.handle,
            bridge,
            IpAddr::V4(gateway),
            gw.prefix_len,
            &gw.cfg.bridge,
        )
        .await?;
        let up = LinkUnspec::new_with_index(bridge).up().build();
        set_link(&gw.handle, format!("bringing {} up", gw.cfg.bridge), up).await?;
        let gw = Gateway { bridge, ..gw };
        let script = gw.render();
        let path = fd_path(&gw.ns);
        tokio::task::spawn_blocking(move || {
            vip::run_in(&path, move || {
                std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|source| {
                    VipError::Io {
                        op: "enabling IPv4 forwarding".into(),
                        source,
                    }
                })?;
                vip::nft(&script)
            })
        })
        .await
        .map_err(|e| OverlayError::io("gateway worker", std::io::Error::other(e)))??;
        tracing::info!(bridge = %gw.cfg.bridge, subnet = %gw.subnet(), %gateway, "gateway bridge ready");
        Ok(gw)
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &GatewayConfig {
        &self.cfg
    }

    /// The gateway's address (on the bridge).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The subnet, normalized (`172.18.0.0/16`).
    pub fn subnet(&self) -> Cidr {
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::from(self.network)),
            prefix_len: self.prefix_len,
        }
    }

    /// The `nft -f` script that replaces the masquerade table (pure).
    pub fn render(&self) -> String {
        let t = &self.cfg.table;
        format!(
            "table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{\n  chain postrouting {{\n    \
             type nat hook postrouting priority 100; policy accept;\n    \
             ip saddr {} oifname != \"{}\" masquerade\n  }}\n}}\n",
            self.subnet(),
            self.cfg.bridge
        )
    }

    /// The number of host addresses (offsets 2 ..= last - 1 are the tasks').
    fn last_offset(&self) -> u32 {
        (1u32 << (32 - self.prefix_len)) - 2
    }

    fn offset_of(&self, ip: Ipv4Addr) -> Option<u32> {
        let off = u32::from(ip).checked_sub(self.network)?;
        (2..=self.last_offset()).contains(&off).then_some(off)
    }

    fn claim_path(&self, ip: Ipv4Addr) -> PathBuf {
        self.claims.join(ip.to_string())
    }

    /// Claims `ip` for the task namespace `netns`: `true` if it was free (or its
    /// claim stale: the namespace named there is gone).
    fn claim(&self, ip: Ipv4Addr, netns: &Path) -> Result<bool, GatewayError> {
        use std::io::Write as _;
        let path = self.claim_path(ip);
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(netns.as_os_str().as_encoded_bytes())
                        .map_err(|e| OverlayError::io(format!("writing {}", path.display()), e))?;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    if holder.is_empty() || Path::new(&holder).exists() {
                        return Ok(false);
                    }
                    tracing::debug!(%ip, %holder, "taking over a stale gateway address");
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => {
                    return Err(OverlayError::io(format!("creating {}", path.display()), e).into());
                }
            }
        }
        Ok(false)
    }

    fn allocate(&self, netns: &Path) -> Result<Ipv4Addr, GatewayError> {
        for off in 2..=self.last_offset() {
            let ip = Ipv4Addr::from(self.network + off);
            if self.claim(ip, netns)? {
                return Ok(ip);
            }
        }
        Err(GatewayError::Exhausted(self.subnet()))
    }

    fn free(&self, ip: Ipv4Addr) {
        if self.offset_of(ip).is_some() {
            let _ = std::fs::remove_file(self.claim_path(ip));
        }
    }

    /// Connects the task namespace at `task_netns` (a named namespace or
    /// `/proc/<pid>/ns/net`) to the bridge: a veth with its task end named `ifname`,
    /// a free address of the subnet, up, and the task's default route via the
    /// gateway (replacing one it had). Returns the address. On failure nothing is
    /// left behind.
    pub async fn attach(&self, task_netns: &Path, ifname: &str) -> Result<Ipv4Addr, GatewayError> {
        crate::overlay::check_ifname(ifname)?;
        let task = TaskNs::open(task_netns, ifname).await?;
        let ip = self.allocate(task_netns)?;
        let bridge = Bridge {
            handle: &self.handle,
            index: self.bridge,
            name: &self.cfg.bridge,
            mtu: MTU,
            prefixes: ("vg", "vh"),
        };
        let end = TaskEnd {
            ifname,
            mac: mac_for_ip(ip),
            addr: Cidr {
                addr: IpAddr::V4(ip),
                prefix_len: self.prefix_len,
            },
            route: Route::Replace(self.gateway),
        };
        if let Err(e) = veth::connect(&bridge, &task, &end).await {
            self.free(ip);
            return Err(e.into());
        }
        tracing::debug!(task = %task_netns.display(), %ip, "task attached to the gateway bridge");
        Ok(ip)
    }

    /// Takes back the address of a task attached by an earlier run (a node that
    /// restarted and adopts its running tasks): reads the IPv4 address of `ifname`
    /// in `task_netns` and marks it used. `None` when the task has no such
    /// interface or its address is not of this subnet.
    pub async fn adopt(
        &self,
        task_netns: &Path,
        ifname: &str,
    ) -> Result<Option<Ipv4Addr>, GatewayError> {
        crate::overlay::check_ifname(ifname)?;
        let task = connect_in(task_netns)?;
        let Some(index) = link_index(&task, ifname).await? else {
            return Ok(None);
        };
        let mut addrs = task.address().get().set_link_index_filter(index).execute();
        while let Some(msg) = addrs
            .try_next()
            .await
            .map_err(nl(format!("reading the addresses of {ifname}")))?
        {
            for attr in &msg.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attr
                    && self.offset_of(*ip).is_some()
                {
                    let path = self.claim_path(*ip);
                    std::fs::write(&path, task_netns.as_os_str().as_encoded_bytes())
                        .map_err(|e| OverlayError::io(format!("writing {}", path.display()), e))?;
                    return Ok(Some(*ip));
                }
            }
        }
        Ok(None)
    }

    /// Disconnects `ifname` of the task namespace at `task_netns` and frees `addr`
    /// (idempotent: a missing interface or namespace is fine, the address is freed
    /// anyway).
    pub async fn detach(
        &self,
        task_netns: &Path,
        ifname: &str,
        addr: Ipv4Addr,
    ) -> Result<(), GatewayError> {
        crate::overlay::check_ifname(ifname)?;
        let result = async {
            if !task_netns.exists() {
                return Ok(());
            }
            let task = connect_in(task_netns)?;
            veth::remove_link(&task, ifname).await
        }
        .await;
        self.free(addr);
        Ok(result?)
    }

    /// Frees `addr` without touching any interface (a task whose veth stays, or
    /// is gone with its namespace).
    pub fn release(&self, addr: Ipv4Addr) {
        self.free(addr);
    }

    /// The addresses given to tasks now (by every node sharing the bridge), sorted.
    pub fn allocated(&self) -> Vec<Ipv4Addr> {
        let mut out: Vec<Ipv4Addr> = std::fs::read_dir(&self.claims)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                // A claim of a namespace that is gone (a node killed with its
                // tasks, or a namespace whose inode a new one reuses) is dropped.
                let holder = std::fs::read_to_string(e.path()).unwrap_or_default();
                let live = holder.is_empty() || Path::new(&holder).exists();
                if !live {
                    let _ = std::fs::remove_file(e.path());
                }
                live
            })
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        out.sort();
        out
    }

    /// Deletes the bridge and the masquerade table (IPv4 forwarding is left on)
    /// unless an address is still given (another node sharing the bridge has
    /// tasks on it): `Ok(false)` then, and nothing changes.
    pub async fn remove(self) -> Result<bool, GatewayError> {
        if !self.allocated().is_empty() {
            return Ok(false);
        }
        let _ = std::fs::remove_dir(&self.claims);
        veth::remove_link(&self.handle, &self.cfg.bridge).await?;
        let t = self.cfg.table.clone();
        let path = fd_path(&self.ns);
        let script = format!("table ip {t} {{}}\ndelete table ip {t}\n");
        tokio::task::spawn_blocking(move || vip::run_in(&path, move || vip::nft(&script)))
            .await
            .map_err(|e| OverlayError::io("gateway worker", std::io::Error::other(e)))??;
        Ok(true)
    }
}

/// The path that reopens the namespace file `ns` of this process.
fn fd_path(ns: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", ns.as_raw_fd()))
}

#[cfg(test)]
mod tests;
