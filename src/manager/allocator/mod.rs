//! The allocator: the leader loop that gives networks their subnets and VXLAN
//! IDs, services their published ports and virtual IPs, and tasks their
//! addresses before they move from NEW to PENDING.
//!
//! ```text
//! store events ──► Work {networks, services, tasks} ──► one transaction per pass:
//!   networks lacking IPAM   → Network.ipam (subnet, gateway), driver_state (VXLAN ID)
//!   services (new, changed) → Service.endpoint (ports, VIPs per network)
//!   NEW tasks still wanted  → Task.networks (+ ingress), Task.endpoint, PENDING
//! removals (and tasks stopped for good and unwanted) free what they held
//! ```
//!
//! Its pools ([`swarm_net::ipam`]) live in memory and are rebuilt from the
//! store when the loop starts and after any commit fails, so the store is its
//! only state: a new leader carries on with the same allocations and never
//! hands out an address twice. A task keeps its addresses while it is in the
//! store, until it has stopped for good (COMPLETE or later) with a desired
//! state past RUNNING; then they go back to the pool.
//!
//! A conflict that slipped past the control API's checks (two services
//! racing for a port) never stops the loop: the later service stays
//! unallocated, its tasks NEW, and the error is logged.
//!
//! It may use swarm-core (the store), swarm-net's IPAM, the facade's network
//! view (the VXLAN option it writes) and `error`: its errors ([`AllocError`])
//! become an `InvalidArgument` where the control API's checks return them. No
//! other room of the manager.

mod checks;
mod error;
mod state;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use swarm_core::types::{Endpoint, EndpointSpec, Network, Service, Task, TaskState};
use swarm_core::{Action, Filter, Id, Kind, Store, Tables, Tx};
use tokio::sync::watch;

pub(crate) use checks::{check_network, check_ports};
pub(crate) use error::AllocError;
#[cfg(test)]
use state::{FIRST_VXLAN_ID, VXLAN_OPTION};
use state::{Pools, holds_addresses, ingress_ports, vip_networks};

/// What a pass looks at.
#[derive(Debug, Default)]
struct Work {
    networks: BTreeSet<Id>,
    services: BTreeSet<Id>,
    tasks: BTreeSet<Id>,
}

impl Work {
    fn is_empty(&self) -> bool {
        self.networks.is_empty() && self.services.is_empty() && self.tasks.is_empty()
    }

    /// Everything that may need allocating in `view`.
    fn scan(view: &Tables) -> Work {
        Work {
            networks: view
                .list::<Network>()
                .filter(|n| n.ipam.is_none())
                .map(|n| n.id.clone())
                .collect(),
            services: view.list::<Service>().map(|s| s.id.clone()).collect(),
            tasks: view
                .list::<Task>()
                .filter(|t| t.status.state == TaskState::New)
                .map(|t| t.id.clone())
                .collect(),
        }
    }
}

/// The ingress network, if there is one.
fn ingress(view: &Tables) -> Option<Arc<Network>> {
    view.list::<Network>().find(|n| n.spec.ingress)
}

/// The IDs of the networks a service's task template attaches to (those that
/// resolve).
fn attached(view: &Tables, s: &Service) -> Result<Vec<Id>, AllocError> {
    s.spec
        .task
        .networks
        .iter()
        .map(|a| {
            view.resolve::<Network>(&a.target)
                .map(|n| n.id.clone())
                .map_err(|_| AllocError::NetworkNotFound {
                    target: a.target.clone(),
                })
        })
        .collect()
}

/// Whether a service's `stored` endpoint already says what `allocated` does:
/// the same, or none for an endpoint with nothing in it (no ports, no VIPs,
/// the default spec).
fn unchanged(stored: Option<&Endpoint>, allocated: &Endpoint) -> bool {
    match stored {
        Some(e) => e == allocated,
        None => {
            allocated.ports.is_empty()
                && allocated.virtual_ips.is_empty()
                && allocated
                    .spec
                    .as_ref()
                    .is_none_or(|s| *s == EndpointSpec::default())
        }
    }
}

/// One pass over `work` inside a transaction. Returns the tasks that could not
/// be allocated yet (their network or service is not ready).
fn pass(pools: &mut Pools, tx: &mut Tx, work: &Work) -> swarm_core::Result<BTreeSet<Id>> {
    for id in &work.networks {
        let Some(n) = tx.get::<Network>(id) else {
            continue;
        };
        if n.ipam.is_some() || pools.network_allocated(id) {
            continue;
        }
        match pools.allocate_network(&n) {
            Ok((ipam, driver)) => {
                let mut n = (*n).clone();
                n.ipam = Some(ipam);
                n.driver_state = Some(driver);
                tx.update(n)?;
            }
            Err(e) => {
                tracing::error!(network = %n.spec.annotations.name, error = %e, "network not allocated")
            }
        }
    }
    let ingress_id = ingress(tx)
        .filter(|n| pools.network_allocated(&n.id))
        .map(|n| n.id.clone());
    for id in &work.services {
        let Some(s) = tx.get::<Service>(id) else {
            continue;
        };
        let nets = match attached(tx, &s) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(service = %s.spec.annotations.name, error = %e, "service not allocated");
                continue;
            }
        };
        let publishes = ingress_ports(
            &s.spec
                .endpoint
                .as_ref()
                .map(|e| e.ports.clone())
                .unwrap_or_default(),
        );
        if publishes && ingress_id.is_none() {
            tracing::error!(service = %s.spec.annotations.name, "service publishes ports but there is no ingress network");
            continue;
        }
        let vips = vip_networks(&s, &nets, ingress_id.as_ref());
        if pools.service_current(&s, &vips) {
            continue;
        }
        let names = |sid: &str| {
            tx.get::<Service>(sid)
                .map(|o| o.spec.annotations.name.clone())
                .unwrap_or_default()
        };
        match pools.allocate_service(&s, &vips, names) {
            // Nothing to write: a service with no ports and no VIPs keeps no
            // endpoint (as SwarmKit's), and a current one stays as it is.
            Ok(endpoint) if unchanged(s.endpoint.as_ref(), &endpoint) => {}
            Ok(endpoint) => {
                let mut s = (*s).clone();
                s.endpoint = Some(endpoint);
                tx.update(s)?;
            }
            Err(e) => {
                tracing::error!(service = %s.spec.annotations.name, error = %e, "service not allocated")
            }
        }
    }
    let ingress_net = ingress(tx);
    let mut blocked = BTreeSet::new();
    for id in &work.tasks {
        let Some(t) = tx.get::<Task>(id) else {
            continue;
        };
        if t.status.state != TaskState::New || t.desired_state > TaskState::Running {
            continue;
        }
        let service = if t.service_id.is_empty() {
            None
        } else {
            match tx.get::<Service>(&t.service_id) {
                Some(s) if pools.service_allocated(&s.id) => Some(s),
                _ => {
                    blocked.insert(id.clone());
                    continue;
                }
            }
        };
        let mut nets = Vec::new();
        let mut missing = None;
        for a in &t.spec.networks {
            match tx.resolve::<Network>(&a.target) {
                Ok(n) => nets.push((n, a.aliases.clone(), a.addresses.clone())),
                Err(_) => missing = Some(a.target.clone()),
            }
        }
        if let Some(m) = missing {
            tracing::error!(task = %t.id, network = %m, "task not allocated: network not found");
            blocked.insert(id.clone());
            continue;
        }
        if let Some(s) = &service
            && s.endpoint.as_ref().is_some_and(|e| ingress_ports(&e.ports))
            && let Some(i) = &ingress_net
        {
            nets.push((i.clone(), Vec::new(), Vec::new()));
        }
        match pools.allocate_task(&t.id, &nets) {
            Ok(attachments) => {
                let mut t = (*t).clone();
                t.networks = attachments;
                t.endpoint = service.as_ref().and_then(|s| s.endpoint.clone());
                t.status.state = TaskState::Pending;
                t.status.message = "pending task scheduling".into();
                t.status.timestamp = tx.now();
                tx.update(t)?;
            }
            Err(e) => {
                tracing::error!(task = %t.id, error = %e, "task not allocated");
                blocked.insert(id.clone());
            }
        }
    }
    Ok(blocked)
}

/// The allocator loop; runs until `stop` turns true or the store goes.
pub(crate) async fn run(store: Store, mut stop: watch::Receiver<bool>) {
    let filter = Filter::kinds([Kind::Network, Kind::Service, Kind::Task]);
    let (view, mut watch) = store.view_and_watch(filter);
    let mut pools = Pools::rebuild(&view);
    let mut work = Work::scan(&view);
    drop(view);
    let mut blocked: BTreeSet<Id> = BTreeSet::new();
    loop {
        if *stop.borrow() {
            return;
        }
        if !work.is_empty() {
            let batch = std::mem::take(&mut work);
            match store.update(|tx| pass(&mut pools, tx, &batch)).await {
                Ok(b) => blocked.extend(b),
                Err(e) => {
                    tracing::debug!(error = %e, "allocation not committed; rebuilding from the store");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let view = store.view();
                    pools = Pools::rebuild(&view);
                    work = Work::scan(&view);
                    continue;
                }
            }
        }
        tokio::select! {
            e = watch.next() => {
                let Some(e) = e else { return };
                let mut events = vec![e];
                events.extend(watch.drain());
                let mut retry_blocked = false;
                for e in events {
                    for c in &e.changes {
                        let id = c.object.id().clone();
                        match (c.object.kind(), c.action) {
                            (Kind::Network, Action::Remove) => pools.free_network(&id),
                            (Kind::Network, _) => {
                                work.networks.insert(id);
                                retry_blocked = true;
                            }
                            (Kind::Service, Action::Remove) => pools.free_service(&id),
                            (Kind::Service, _) => {
                                work.services.insert(id);
                                retry_blocked = true;
                            }
                            (Kind::Task, Action::Remove) => {
                                pools.free_task(&id);
                                blocked.remove(&id);
                            }
                            (Kind::Task, _) => {
                                let Some(t) = c.object.downcast::<Task>() else { continue };
                                if t.status.state == TaskState::New {
                                    work.tasks.insert(id);
                                } else if !holds_addresses(t) && pools.task_holds(&id) {
                                    pools.free_task(&id);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                if retry_blocked {
                    work.tasks.extend(std::mem::take(&mut blocked));
                }
            }
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests;
