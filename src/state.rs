//! What a node keeps in its data directory so it comes back as itself after a
//! restart: its identity (key, certificate, the root CA), its role and raft ID,
//! and the managers it knows.
//!
//! ```text
//! <data dir>/node.json               node ID, cluster ID, role, raft ID, managers
//! <data dir>/certificates/ca.crt     root CA certificate
//! <data dir>/certificates/ca.key     root CA key (managers)
//! <data dir>/certificates/node.key   the node's key (mode 0600)
//! <data dir>/certificates/node.crt   the node's certificate
//! <data dir>/raft/                   the raft log and snapshots (managers)
//! <data dir>/runtime/                the process runtime's state
//! <data dir>/swarmd.json             the cluster addresses of swarmd's init or join
//! ```
//!
//! Room: shared by every other room (the node's files, its addresses and host
//! name); uses only [`crate::pki`] and [`crate::error`].

use std::fs;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use swarm_core::Id;
use swarm_core::types::NodeRole;

use crate::error::{Error, Result};
use crate::pki::{NodeIdentity, RootCa};

/// The node's saved facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFile {
    /// The node ID.
    pub node_id: Id,
    /// The cluster ID.
    pub cluster_id: Id,
    /// The role the certificate grants.
    pub role: NodeRole,
    /// The raft member ID (managers).
    pub raft_id: u64,
    /// Manager addresses known.
    pub managers: Vec<String>,
}

/// A data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::Unavailable(format!("{}: {e}", path.display()))
}

fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(|e| io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io(&tmp, e))?;
        f.sync_all().map_err(|e| io(&tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io(path, e))
}

impl DataDir {
    /// The data directory at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<DataDir> {
        let root = root.into();
        fs::create_dir_all(root.join("certificates")).map_err(|e| io(&root, e))?;
        Ok(DataDir { root })
    }

    /// Where raft keeps its files.
    pub fn raft_dir(&self) -> PathBuf {
        self.root.join("raft")
    }

    fn certs(&self) -> PathBuf {
        self.root.join("certificates")
    }

    /// Whether a node was saved here (the node belongs to a swarm).
    pub fn has_node(&self) -> bool {
        self.root.join("node.json").exists()
    }

    /// Saves the node's facts, identity and CA.
    pub fn save(&self, node: &NodeFile, identity: &NodeIdentity, ca: &RootCa) -> Result<()> {
        let certs = self.certs();
        write_atomic(&certs.join("ca.crt"), ca.cert_pem().as_bytes(), false)?;
        if let Some(key) = ca.key_pem() {
            write_atomic(&certs.join("ca.key"), key.as_bytes(), true)?;
        }
        write_atomic(&certs.join("node.key"), identity.key_pem().as_bytes(), true)?;
        write_atomic(
            &certs.join("node.crt"),
            identity.cert_pem().as_bytes(),
            false,
        )?;
        self.save_node(node)
    }

    /// Forgets what only a manager keeps: the raft log and snapshots, and the
    /// root CA key (a demoted node must not sign certificates; a promoted one
    /// joins the raft group as a new member).
    pub fn forget_manager_state(&self) -> Result<()> {
        let raft = self.raft_dir();
        if raft.exists() {
            fs::remove_dir_all(&raft).map_err(|e| io(&raft, e))?;
        }
        let key = self.certs().join("ca.key");
        if key.exists() {
            fs::remove_file(&key).map_err(|e| io(&key, e))?;
        }
        Ok(())
    }

    /// Saves the node's facts only (e.g. a new manager list).
    pub fn save_node(&self, node: &NodeFile) -> Result<()> {
        let json = serde_json::to_vec_pretty(node).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&self.root.join("node.json"), &json, false)
    }

    /// Loads what [`save`](DataDir::save) wrote. A missing or damaged file is an
    /// error naming it.
    pub fn load(&self) -> Result<(NodeFile, NodeIdentity, RootCa)> {
        let read = |p: PathBuf| fs::read_to_string(&p).map_err(|e| io(&p, e));
        let node: NodeFile =
            serde_json::from_str(&read(self.root.join("node.json"))?).map_err(|e| {
                Error::InvalidArgument(format!("{}: {e}", self.root.join("node.json").display()))
            })?;
        let certs = self.certs();
        let ca_key = fs::read_to_string(certs.join("ca.key")).ok();
        let ca = RootCa::from_pem(&read(certs.join("ca.crt"))?, ca_key.as_deref())?;
        let identity = NodeIdentity::from_pem(
            &read(certs.join("node.key"))?,
            &read(certs.join("node.crt"))?,
        )?;
        if identity.peer.node_id != node.node_id {
            return Err(Error::InvalidArgument(format!(
                "{}: the certificate is for node {}, not {}",
                certs.display(),
                identity.peer.node_id,
                node.node_id
            )));
        }
        Ok((node, identity, ca))
    }
}

/// The cluster addresses an init or join settled on, kept beside the node so a
/// restarted swarmd comes back on them (`swarmd.json` in the data directory).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedAddrs {
    /// The address the cluster port listens on.
    pub listen_addr: Option<String>,
    /// The address other nodes reach this one on.
    pub advertise_addr: Option<String>,
    /// `--data-path-addr`: where the routing mesh takes connections from other
    /// nodes (default: the advertised address).
    pub data_path_addr: Option<String>,
}

impl DataDir {
    const ADDRS: &str = "swarmd.json";

    /// The addresses [`save_addrs`](DataDir::save_addrs) wrote; none when
    /// there are none or the file is unreadable.
    pub fn load_addrs(&self) -> SavedAddrs {
        fs::read(self.root.join(Self::ADDRS))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Saves the node's cluster addresses; a failure is an internal error
    /// naming the file.
    pub fn save_addrs(&self, addrs: &SavedAddrs) -> Result<()> {
        let path = self.root.join(Self::ADDRS);
        let bytes = serde_json::to_vec_pretty(addrs).unwrap_or_default();
        fs::write(&path, bytes)
            .map_err(|e| Error::Internal(format!("saving {}: {e}", path.display())))
    }

    /// Forgets the swarm this directory's node belonged to: its facts,
    /// certificates, raft state and saved addresses. What cannot be removed
    /// is left.
    pub fn forget_swarm(&self) {
        for sub in ["node.json", "certificates", "raft", Self::ADDRS] {
            let p = self.root.join(sub);
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
    }
}

/// What this host reports about itself: hostname, platform, CPUs and memory.
pub fn describe(hostname: &str) -> swarm_core::types::NodeDescription {
    use swarm_core::types::*;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let memory = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|kb| kb.parse::<i64>().ok())
                })
        })
        .map_or(0, |kb| kb * 1024);
    NodeDescription {
        hostname: hostname.to_string(),
        platform: Platform {
            architecture: std::env::consts::ARCH.into(),
            os: std::env::consts::OS.into(),
        },
        resources: Resources {
            nano_cpus: cpus * 1_000_000_000,
            memory_bytes: memory,
            generic: Vec::new(),
        },
        engine: EngineDescription {
            engine_version: format!("swarm-{}", env!("CARGO_PKG_VERSION")),
            // The network drivers every node serves (the allocator writes the
            // driver into each network's state; the scheduler checks for it).
            plugins: ["bridge", "host", "null", "overlay"]
                .into_iter()
                .map(|name| PluginDescription {
                    r#type: "Network".into(),
                    name: name.into(),
                })
                .collect(),
            ..Default::default()
        },
        tls_root_ca: Vec::new(),
        mesh_addr: String::new(),
    }
}

/// The IP address in `addr` (`ip`, `ip:port` or `[v6]:port`); `None` for a
/// host name.
pub fn ip_of(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| addr.parse::<IpAddr>())
        .ok()
}

/// The host's name, from the kernel.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_with_or_without_a_port() {
        assert_eq!(ip_of("127.0.0.5:2377"), Some("127.0.0.5".parse().unwrap()));
        assert_eq!(ip_of("10.1.2.3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(ip_of("[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(ip_of("node-1:2377"), None);
    }
}
