//! Which process owns each node's sandbox directory on this machine (the claim
//! its plane writes there), and collecting the sandboxes of nodes that are gone.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use swarm_net::overlay::OverlayConfig;

use super::OverlayFactory;

/// The file naming the process that owns a node's sandbox directory.
pub(super) const OWNER_FILE: &str = "owner";

/// `<pid> <start time>` of this process (the pair names one process for the
/// life of the system).
fn me() -> Option<String> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let start = stat[stat.rfind(')')? + 1..].split_whitespace().nth(19)?;
    Some(format!("{} {start}", std::process::id()))
}

/// Whether the process named by an owner file's `<pid> <start time>` lives.
fn owner_alive(owner: &str) -> bool {
    let mut w = owner.split_whitespace();
    let (Some(pid), Some(start)) = (w.next(), w.next()) else {
        return false;
    };
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(19).map(|s| s == start))
            .unwrap_or(false)
    })
}

/// Marks `dir` (this node's sandboxes) as owned by this process.
pub(super) fn claim(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(OWNER_FILE), me().unwrap_or_default())
}

/// Removes the sandboxes of nodes whose process is gone (a node killed while
/// it had tasks on overlay networks, then never started again on this
/// machine): their VXLAN devices would otherwise hold their VNIs on the
/// underlay. A node restarted later recreates what it needs (its adopted
/// tasks then lose their interfaces). Directories of live nodes, and this
/// node's own, are left alone.
///
/// Each dead node's sandboxes are removed through an overlay `factory` starts
/// on its directory. They are found by their names in the directory, the
/// layout of [`swarm_net::overlay::Overlay`] (`ov-<network id>`):
/// [`swarm_net::overlay::OverlayDriver`] has no way to list the networks a
/// driver holds, so an overlay that keeps its sandboxes elsewhere has none
/// found here (only the claim and the empty directory go).
pub(super) async fn collect_dead_nodes(mine: &Path, factory: &dyn OverlayFactory) {
    let Some(root) = mine.parent() else { return };
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        if dir == mine || !dir.is_dir() {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        if owner_alive(&owner) {
            continue;
        }
        let mut cfg = OverlayConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        cfg.netns_dir = dir.clone();
        let Ok(overlay) = factory.start(cfg).await else {
            return;
        };
        let sandboxes: Vec<String> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|f| {
                f.file_name()
                    .to_str()?
                    .strip_prefix(swarm_net::overlay::SANDBOX_PREFIX)
                    .map(str::to_string)
            })
            .collect();
        for net in sandboxes {
            if let Err(e) = overlay.remove_network(&net).await {
                tracing::warn!(dir = %dir.display(), network = %net, error = %e, "could not remove a dead node's sandbox");
            }
        }
        let _ = std::fs::remove_file(dir.join(OWNER_FILE));
        if std::fs::remove_dir(&dir).is_ok() {
            tracing::info!(dir = %dir.display(), "removed the sandboxes of a node that is gone");
        }
    }
}

#[cfg(test)]
mod tests {
    use swarm_core::Id;
    use swarm_net::overlay::{NetworkDef, Overlay};

    use super::*;
    use crate::agent::netplane::{KernelOverlay, is_root};

    #[tokio::test]
    async fn sandboxes_of_a_node_that_is_gone_are_removed() {
        if !is_root() {
            println!("skipped: sandboxes need root");
            return;
        }
        let root = Path::new(swarm_net::overlay::DEFAULT_NETNS_DIR);
        let suffix = Id::generate();
        let dead = root.join(format!("swm3-dead-{}", &suffix[..8]));
        let alive = root.join(format!("swm3-live-{}", &suffix[..8]));
        let mine = root.join(format!("swm3-mine-{}", &suffix[..8]));
        // A sandbox left by a node whose process is gone, and one of a live node.
        for (dir, owner) in [(&dead, "999999999 1".to_string()), (&alive, me().unwrap())] {
            let mut cfg = OverlayConfig::new("127.0.0.1".parse().unwrap());
            cfg.netns_dir = dir.clone();
            cfg.vxlan_port = 48_913;
            let overlay = Overlay::new(cfg).await.unwrap();
            let vni = if *dir == dead { 16_000_001 } else { 16_000_002 };
            overlay
                .ensure_network(&NetworkDef {
                    id: "swm3net".into(),
                    vni,
                    subnet: "10.213.0.0/24".into(),
                    gateway: "10.213.0.1".into(),
                    encrypted: false,
                })
                .await
                .unwrap();
            std::fs::write(dir.join(OWNER_FILE), owner).unwrap();
        }
        collect_dead_nodes(&mine, &KernelOverlay).await;
        assert!(!dead.exists(), "the dead node's sandboxes stay");
        assert!(
            alive.join("ov-swm3net").exists(),
            "a live node's sandbox went"
        );
        // Clean up the live one as its node would.
        let mut cfg = OverlayConfig::new("127.0.0.1".parse().unwrap());
        cfg.netns_dir = alive.clone();
        Overlay::new(cfg)
            .await
            .unwrap()
            .remove_network("swm3net")
            .await
            .unwrap();
        let _ = std::fs::remove_file(alive.join(OWNER_FILE));
        let _ = std::fs::remove_dir(&alive);
    }
}
