//! The node's gateway bridge as the plane uses it: set up by the first attach,
//! a veth and an address on it for each task, removed with the last local task.
//! (The bridge itself and its address claims are [`swarm_net::gateway`]'s.)

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use swarm_core::Id;
use swarm_net::gateway::{Gateway, GatewayConfig};

use super::{Attached, NetPlaneError, PlaneInner};

/// Puts a task on the gateway bridge as `ifname` (`fresh`), or takes back the
/// address an adopted task has there; `None` for an adopted task without one.
pub(super) async fn attach(
    gw: &Gateway,
    netns: &Path,
    ifname: String,
    fresh: bool,
) -> Result<Option<(String, Ipv4Addr)>, NetPlaneError> {
    let ip = if fresh {
        Some(gw.attach(netns, &ifname).await?)
    } else {
        gw.adopt(netns, &ifname).await?
    };
    Ok(ip.map(|ip| (ifname, ip)))
}

/// Takes a task off the gateway bridge (its veth only when `fresh`: an adopted
/// task's stays) and frees its address.
pub(super) async fn detach(
    gw: &Gateway,
    netns: &Path,
    (ifname, ip): &(String, Ipv4Addr),
    fresh: bool,
) {
    if !fresh {
        gw.release(*ip);
        return;
    }
    if let Err(e) = gw.detach(netns, ifname, *ip).await {
        tracing::warn!(netns = %netns.display(), error = %e, "could not detach from the gateway bridge");
    }
}

impl PlaneInner {
    /// The node's gateway bridge, set up on first use in this thread's namespace
    /// (the node's); `None` when it could not be (logged once).
    pub(super) async fn gateway(&self) -> Option<Arc<Gateway>> {
        let mut slot = self.gateway.lock().await;
        if slot.is_none() {
            match Gateway::new(GatewayConfig::default()).await {
                Ok(gw) => *slot = Some(Arc::new(gw)),
                Err(e) => {
                    if !self
                        .gateway_failed
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::warn!(error = %e, "no gateway bridge: tasks on overlay networks get no outbound route and are not reached by the routing mesh");
                    }
                }
            }
        }
        slot.clone()
    }

    /// Takes the detached task `a` off the gateway bridge; with no local task
    /// left (`tasks`, locked by the caller) and no attach in flight, removes the
    /// bridge, as the last task of a network removes its sandbox.
    pub(super) async fn leave_gateway(&self, a: &Attached, tasks: &HashMap<Id, Attached>) {
        let mut slot = self.gateway.lock().await;
        let Some(gw) = slot.clone() else { return };
        if let Some(at) = &a.gateway {
            detach(&gw, &a.netns, at, true).await;
        }
        drop(gw);
        Self::remove_idle_gateway(&mut slot, tasks).await;
    }

    /// Removes the gateway bridge when no local task is attached (`tasks`) and
    /// no attach is in flight (each holds a clone of it).
    pub(super) async fn remove_idle_gateway(
        slot: &mut Option<Arc<Gateway>>,
        tasks: &HashMap<Id, Attached>,
    ) {
        let idle = slot.as_ref().is_some_and(|gw| Arc::strong_count(gw) == 1);
        if tasks.is_empty()
            && idle
            && let Some(gw) = slot.take().and_then(Arc::into_inner)
        {
            match gw.remove().await {
                Ok(true) => tracing::info!("gateway bridge removed"),
                Ok(false) => tracing::debug!("gateway bridge kept: another node on it has tasks"),
                Err(e) => tracing::warn!(error = %e, "could not remove the gateway bridge"),
            }
        }
    }
}
