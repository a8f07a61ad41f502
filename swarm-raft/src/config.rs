//! Settings of a raft member.

use std::path::PathBuf;
use std::time::Duration;

use swarm_core::types::RaftConfig;

use crate::error::{RaftError, Result};

/// Settings of one raft member. Build it from the cluster spec with
/// [`Config::new`] and adjust the fields.
#[derive(Clone, Debug)]
pub struct Config {
    /// This member's ID: non-zero, unique in the group, never reused.
    pub id: u64,
    /// Directory holding the log (`log/`) and snapshots (`snap/`).
    pub dir: PathBuf,
    /// Time between ticks. Default 100 ms.
    pub tick_interval: Duration,
    /// Ticks between leader heartbeats. Default 1.
    pub heartbeat_tick: usize,
    /// Ticks without a leader before an election. Default 10.
    pub election_tick: usize,
    /// Log entries between snapshots. Default 10000.
    pub snapshot_interval: u64,
    /// Old snapshot files kept besides the newest. Default 0.
    pub keep_old_snapshots: u64,
    /// Entries kept in the log behind a snapshot for slow followers. Default 500.
    pub log_entries_for_slow_followers: u64,
    /// Append messages in flight to one follower. Default 256.
    pub max_inflight_msgs: usize,
    /// Largest append message in bytes. Default 1 MiB.
    pub max_size_per_msg: u64,
    /// Longest wait for a proposal, a read or a membership change. Default 10 s.
    pub request_timeout: Duration,
    /// Most store batches packed into one raft entry. Default 1024.
    pub max_batches_per_entry: usize,
}

impl Config {
    /// Settings for member `id` keeping its files in `dir`, with the cluster's raft
    /// settings and the default tick interval (100 ms).
    pub fn new(id: u64, dir: impl Into<PathBuf>, raft: &RaftConfig) -> Config {
        Config {
            id,
            dir: dir.into(),
            tick_interval: Duration::from_millis(100),
            heartbeat_tick: raft.heartbeat_tick as usize,
            election_tick: raft.election_tick as usize,
            snapshot_interval: raft.snapshot_interval,
            keep_old_snapshots: raft.keep_old_snapshots,
            log_entries_for_slow_followers: raft.log_entries_for_slow_followers,
            max_inflight_msgs: 256,
            max_size_per_msg: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_batches_per_entry: 1024,
        }
    }

    /// The time without a leader before a member campaigns.
    pub fn election_timeout(&self) -> Duration {
        self.tick_interval * self.election_tick as u32
    }

    /// Checks the settings; the message names the field at fault.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(RaftError::InvalidArgument(m.to_string()));
        if self.id == 0 {
            return bad("id must not be 0");
        }
        if self.heartbeat_tick == 0 {
            return bad("heartbeat_tick must be at least 1");
        }
        if self.election_tick <= self.heartbeat_tick {
            return bad("election_tick must be greater than heartbeat_tick");
        }
        if self.tick_interval.is_zero() {
            return bad("tick_interval must not be zero");
        }
        if self.snapshot_interval == 0 {
            return bad("snapshot_interval must be at least 1");
        }
        if self.max_inflight_msgs == 0 {
            return bad("max_inflight_msgs must be at least 1");
        }
        if self.max_batches_per_entry == 0 {
            return bad("max_batches_per_entry must be at least 1");
        }
        Ok(())
    }

    pub(crate) fn raft_config(&self, applied: u64) -> raft::Config {
        raft::Config {
            id: self.id,
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_cluster_spec() {
        let c = Config::new(1, "/tmp/x", &RaftConfig::default());
        assert_eq!(c.election_tick, 10);
        assert_eq!(c.heartbeat_tick, 1);
        assert_eq!(c.snapshot_interval, 10_000);
        assert_eq!(c.election_timeout(), Duration::from_secs(1));
        c.validate().unwrap();
    }

    #[test]
    fn validate_names_the_field() {
        let mut c = Config::new(0, "/tmp/x", &RaftConfig::default());
        assert!(c.validate().unwrap_err().to_string().contains("id"));
        c.id = 1;
        c.election_tick = 1;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("election_tick")
        );
    }
}
