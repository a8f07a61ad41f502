//! Following the leader's NetworkView: the node's overlay starts once a view
//! names this node's data-path address, then every view programs the sandboxes
//! in use (remote peers, keys) and the attached tasks (DNS records, VIP rules).

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Weak};

use swarm_core::Id;
use swarm_net::dns::{NetworkRecords, Resolution, ServiceRecord, TaskRecord};
use swarm_net::overlay::{OverlayConfig, OverlayDriver, Peer, mac_for_ip};
use swarm_net::vip::{self, VipRule};
use tokio::sync::watch;

use super::claims::collect_dead_nodes;
use super::{Attached, PlaneInner};
use crate::views::network::{NetworkView, OverlayKeys, ViewNetwork, ViewTask};

/// Starts the overlay once the view names this node's address, and applies
/// every view, until the plane is dropped.
pub(super) async fn follow(plane: Weak<PlaneInner>, mut views: watch::Receiver<Arc<NetworkView>>) {
    if let Some(inner) = plane.upgrade() {
        collect_dead_nodes(&inner.netns_dir, inner.factory.as_ref()).await;
    }
    let mut warned = false;
    loop {
        let view = views.borrow_and_update().clone();
        let Some(inner) = plane.upgrade() else { return };
        let mut overlay = inner.overlay.borrow().clone();
        if overlay.is_none()
            && let Some((_, ip)) = view.nodes.iter().find(|(n, _)| *n == inner.node_id)
        {
            let mut cfg = OverlayConfig::new(*ip);
            cfg.vxlan_port = view.vxlan_port;
            cfg.netns_dir = inner.netns_dir.clone();
            match inner.factory.start(cfg).await {
                Ok(o) => {
                    inner.overlay.send_replace(Some(o.clone()));
                    overlay = Some(o);
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "overlay networks unavailable on this node");
                }
                Err(_) => {}
            }
        }
        if let Some(overlay) = overlay {
            let mut tasks = inner.tasks.lock().await;
            inner.apply(overlay.as_ref(), &view, &mut tasks).await;
        }
        drop(inner);
        if views.changed().await.is_err() {
            return;
        }
    }
}

impl PlaneInner {
    /// Gives the encrypted network `net` the swarm's keys when they are not the
    /// ones it has (a sandbox without keys drops every frame until it gets some).
    pub(super) async fn set_keys(&self, overlay: &dyn OverlayDriver, net: &Id, keys: &OverlayKeys) {
        if keys.keys.is_empty() {
            tracing::warn!(network = %net, "no overlay keys from the managers yet: the encrypted network carries nothing until they come");
            return;
        }
        let current = self
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(net)
            .cloned();
        if current.as_ref() == Some(keys) {
            return;
        }
        match overlay.set_keys(net.as_str(), &keys.ring()).await {
            Ok(()) => {
                tracing::info!(network = %net, ?keys, "encrypted network keys set");
                self.keys
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(net.clone(), keys.clone());
            }
            Err(e) => {
                tracing::warn!(network = %net, error = %e, "could not set the network's keys")
            }
        }
    }

    /// Applies `view` to the sandboxes and tasks attached here.
    pub(super) async fn apply(
        &self,
        overlay: &dyn OverlayDriver,
        view: &NetworkView,
        tasks: &mut HashMap<Id, Attached>,
    ) {
        let by_id: HashMap<&Id, &ViewNetwork> = view.networks.iter().map(|n| (&n.id, n)).collect();
        let used: HashSet<&Id> = tasks
            .values()
            .flat_map(|t| t.networks.iter().map(|(n, _)| n))
            .collect();
        for net in &used {
            let peers: Vec<Peer> = by_id
                .get(net)
                .map(|n| {
                    n.tasks
                        .iter()
                        .filter(|t| t.node_id != self.node_id)
                        .filter_map(|t| {
                            let IpAddr::V4(v4) = t.addr else { return None };
                            Some(Peer {
                                addr: t.addr,
                                mac: mac_for_ip(v4).0,
                                node_underlay: t.node_addr?,
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            if let Err(e) = overlay.set_peers(net.as_str(), &peers).await {
                tracing::warn!(network = %net, error = %e, "could not program the network's peers");
            }
            if by_id.get(net).is_some_and(|n| n.encrypted) {
                self.set_keys(overlay, net, &view.keys).await;
            }
        }
        for (task_id, t) in tasks.iter_mut() {
            let mut rules = Vec::new();
            for (net, _) in &t.networks {
                let Some(n) = by_id.get(net) else {
                    t.dns.remove_network(net.as_str());
                    continue;
                };
                let (records, vips) = records_of(n);
                rules.extend(vips);
                if let Err(e) = t.dns.set_network(net.as_str(), records) {
                    tracing::warn!(task = %task_id, network = %net, error = %e, "DNS records refused");
                }
            }
            if t.vips.as_ref() != Some(&rules) {
                let (netns, r) = (t.netns.clone(), rules.clone());
                let done = tokio::task::spawn_blocking(move || vip::program(&netns, &r)).await;
                match done {
                    Ok(Ok(())) => t.vips = Some(rules),
                    Ok(Err(e)) => {
                        tracing::warn!(task = %task_id, error = %e, "could not program the VIPs")
                    }
                    Err(e) => tracing::warn!(task = %task_id, error = %e, "VIP worker failed"),
                }
            }
        }
    }
}

/// The DNS records and the VIP rules of one network.
fn records_of(n: &ViewNetwork) -> (NetworkRecords, Vec<VipRule>) {
    let mut services = Vec::new();
    let mut vips = Vec::new();
    for s in &n.services {
        let tasks: Vec<&ViewTask> = n
            .tasks
            .iter()
            .filter(|t| t.service_id == s.service_id && t.running)
            .collect();
        let mode = match (s.dnsrr, s.vip) {
            (false, Some(vip)) => {
                if let IpAddr::V4(v4) = vip {
                    vips.push(VipRule {
                        vip: v4,
                        backends: tasks
                            .iter()
                            .filter_map(|t| match t.addr {
                                IpAddr::V4(a) => Some(a),
                                IpAddr::V6(_) => None,
                            })
                            .collect(),
                    });
                }
                Resolution::Vip(vip)
            }
            _ => Resolution::Dnsrr,
        };
        services.push(ServiceRecord {
            name: s.name.clone(),
            aliases: s.aliases.clone(),
            mode,
            tasks: tasks
                .iter()
                .map(|t| TaskRecord {
                    name: t.name.clone(),
                    addr: t.addr,
                })
                .collect(),
        });
    }
    (NetworkRecords { services }, vips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::network::compute;
    use crate::views::network::tests::backend_store;

    #[test]
    fn records_resolve_running_tasks_and_vips_take_their_traffic() {
        let v = compute(&backend_store().view());
        let n = &v.networks[0];
        let (records, vips) = records_of(n);
        let web_rec = records.services.iter().find(|s| s.name == "web").unwrap();
        assert_eq!(web_rec.mode, Resolution::Vip("10.0.1.2".parse().unwrap()));
        assert_eq!(web_rec.aliases, vec!["www".to_string()]);
        // Only the running task resolves and takes VIP traffic.
        assert_eq!(web_rec.tasks.len(), 1);
        assert_eq!(
            vips,
            vec![VipRule {
                vip: "10.0.1.2".parse().unwrap(),
                backends: vec!["10.0.1.3".parse().unwrap()],
            }]
        );
        let db_rec = records.services.iter().find(|s| s.name == "db").unwrap();
        assert_eq!(db_rec.mode, Resolution::Dnsrr);
        assert_eq!(db_rec.tasks[0].addr, "10.0.1.5".parse::<IpAddr>().unwrap());
    }
}
