//! The swarm itself: `swarm init` and `swarm join` requests, a swarm spec of
//! the Engine API applied over the cluster's, and the cluster as `GET /swarm`
//! and `GET /info` show it.

use bollard::models as dm;
use serde::Serialize;
use serde_json::{Value, json};
use swarm_core::types::*;

use super::values::{duration, nanos, time};
use crate::api::ApiError;

/// `POST /swarm/init` (Docker's `InitRequest`, which has fields bollard's
/// model lacks).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InitRequest {
    /// Cluster port to listen on.
    pub listen_addr: Option<String>,
    /// Address to advertise.
    pub advertise_addr: Option<String>,
    /// Data-path address.
    pub data_path_addr: Option<String>,
    /// VXLAN port.
    pub data_path_port: Option<u32>,
    /// Force a new cluster from this manager's state.
    pub force_new_cluster: Option<bool>,
    /// Swarm settings.
    pub spec: Option<dm::SwarmSpec>,
    /// Autolock.
    pub auto_lock_managers: Option<bool>,
    /// This node's availability.
    pub availability: Option<String>,
    /// Address pools for overlay subnets.
    pub default_addr_pool: Option<Vec<String>>,
    /// Their subnet size.
    pub subnet_size: Option<u32>,
}

/// `POST /swarm/join` (Docker's `JoinRequest`).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinRequest {
    /// Cluster port to listen on.
    pub listen_addr: Option<String>,
    /// Address to advertise.
    pub advertise_addr: Option<String>,
    /// Data-path address.
    pub data_path_addr: Option<String>,
    /// Managers to join through.
    pub remote_addrs: Option<Vec<String>>,
    /// The join token.
    pub join_token: Option<String>,
    /// This node's availability.
    pub availability: Option<String>,
}

/// A swarm spec of the Engine API, applied over `current`. Zero values of the
/// settings docker leaves at zero when a flag is not given keep the current
/// value, as dockerd does.
pub fn swarm_spec(d: dm::SwarmSpec, current: &ClusterSpec) -> Result<ClusterSpec, ApiError> {
    let mut s = current.clone();
    if let Some(n) = d.name.filter(|n| !n.is_empty()) {
        s.annotations.name = n;
    }
    if let Some(l) = d.labels {
        s.annotations.labels = l.into_iter().collect();
    }
    if let Some(o) = d.orchestration
        && let Some(l) = o.task_history_retention_limit
    {
        s.orchestration.task_history_retention_limit = l;
    }
    if let Some(r) = d.raft {
        if let Some(v) = r.snapshot_interval.filter(|v| *v > 0) {
            s.raft.snapshot_interval = v;
        }
        if let Some(v) = r.keep_old_snapshots {
            s.raft.keep_old_snapshots = v;
        }
        if let Some(v) = r.log_entries_for_slow_followers.filter(|v| *v > 0) {
            s.raft.log_entries_for_slow_followers = v;
        }
        if let Some(v) = r.election_tick.filter(|v| *v != 0) {
            s.raft.election_tick = u32::try_from(v)
                .map_err(|_| ApiError::bad_request(format!("Raft.ElectionTick: invalid {v}")))?;
        }
        if let Some(v) = r.heartbeat_tick.filter(|v| *v != 0) {
            s.raft.heartbeat_tick = u32::try_from(v)
                .map_err(|_| ApiError::bad_request(format!("Raft.HeartbeatTick: invalid {v}")))?;
        }
    }
    if let Some(disp) = d.dispatcher
        && let Some(p) = duration("Dispatcher.HeartbeatPeriod", disp.heartbeat_period)?
        && !p.is_zero()
    {
        s.dispatcher.heartbeat_period = p;
    }
    if let Some(ca) = d.ca_config
        && let Some(e) = duration("CAConfig.NodeCertExpiry", ca.node_cert_expiry)?
        && !e.is_zero()
    {
        s.ca_config.node_cert_expiry = e;
    }
    if let Some(e) = d.encryption_config
        && let Some(a) = e.auto_lock_managers
    {
        refuse_autolock(a)?;
        s.encryption_config.auto_lock_managers = a;
    }
    Ok(s)
}

/// Autolock would promise keys encrypted at rest, which this swarm does not
/// do yet: refused rather than recorded and ignored.
fn refuse_autolock(on: bool) -> Result<(), ApiError> {
    if on {
        return Err(ApiError::bad_request(
            "autolock is not supported by this swarm: its managers do not encrypt their keys at rest",
        ));
    }
    Ok(())
}

/// The parts of a `swarm init` this swarm cannot honour, refused with a
/// message naming them (nothing is set up).
pub fn refuse_unsupported_init(req: &InitRequest) -> Result<(), ApiError> {
    refuse_autolock(req.auto_lock_managers.unwrap_or(false))?;
    if req.force_new_cluster == Some(true) {
        return Err(ApiError::bad_request(
            "--force-new-cluster is not supported: start a new swarm, or restore a manager's data directory",
        ));
    }
    Ok(())
}

/// A swarm spec as the Engine API shows it.
pub fn swarm_spec_json(s: &ClusterSpec) -> Value {
    json!({
        "Name": s.annotations.name,
        "Labels": s.annotations.labels,
        "Orchestration": {"TaskHistoryRetentionLimit": s.orchestration.task_history_retention_limit},
        "Raft": {
            "SnapshotInterval": s.raft.snapshot_interval,
            "KeepOldSnapshots": s.raft.keep_old_snapshots,
            "LogEntriesForSlowFollowers": s.raft.log_entries_for_slow_followers,
            "ElectionTick": s.raft.election_tick,
            "HeartbeatTick": s.raft.heartbeat_tick,
        },
        "Dispatcher": {"HeartbeatPeriod": nanos(s.dispatcher.heartbeat_period)},
        "CAConfig": {"NodeCertExpiry": nanos(s.ca_config.node_cert_expiry)},
        "TaskDefaults": {},
        "EncryptionConfig": {"AutoLockManagers": s.encryption_config.auto_lock_managers},
    })
}

/// The cluster block shared by `GET /swarm` and `GET /info`.
pub fn cluster_json(c: &Cluster) -> Value {
    json!({
        "ID": c.id.as_str(),
        "Version": {"Index": c.meta.version.index},
        "CreatedAt": time(c.meta.created_at),
        "UpdatedAt": time(c.meta.updated_at),
        "Spec": swarm_spec_json(&c.spec),
        "TLSInfo": {
            "TrustRoot": String::from_utf8_lossy(&c.root_ca.ca_cert),
        },
        "RootRotationInProgress": c.root_ca.root_rotation.is_some(),
        "DataPathPort": c.vxlan_udp_port,
        "DefaultAddrPool": c.default_address_pool,
        "SubnetSize": c.subnet_size,
    })
}

#[cfg(test)]
mod tests {
    use super::super::strict;
    use super::*;

    #[test]
    fn autolock_and_force_new_cluster_are_refused_not_ignored() {
        let init: InitRequest =
            strict(br#"{"ListenAddr":"0.0.0.0:2377","AutoLockManagers":true}"#).unwrap();
        let e = refuse_unsupported_init(&init).unwrap_err();
        assert!(
            e.message.contains("autolock is not supported"),
            "{}",
            e.message
        );
        let init: InitRequest = strict(br#"{"ForceNewCluster":true}"#).unwrap();
        assert!(refuse_unsupported_init(&init).is_err());
        let init: InitRequest = strict(br#"{"AutoLockManagers":false}"#).unwrap();
        assert!(refuse_unsupported_init(&init).is_ok());
        let update: dm::SwarmSpec =
            strict(br#"{"EncryptionConfig":{"AutoLockManagers":true}}"#).unwrap();
        assert!(swarm_spec(update, &ClusterSpec::default()).is_err());
    }
}
