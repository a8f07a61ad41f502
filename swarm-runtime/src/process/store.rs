//! The process runtime's state directory: one directory per task holding what the
//! task is (`task.json`), where it stands (`state.json`) and its output
//! (`stdout.log`, `stderr.log`). A new runtime instance reads it back to adopt tasks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use swarm_core::Timestamp;
use swarm_core::types::PortConfig;

use crate::error::{Error, Result};
use crate::runtime::TaskLabels;

/// What a task is, written at create.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub labels: TaskLabels,
    /// Recorded, not executed.
    pub image: String,
    /// Command and arguments.
    pub argv: Vec<String>,
    pub env: Vec<String>,
    pub dir: String,
    pub user: String,
    pub stop_signal: String,
    pub stop_grace: Duration,
    pub ports: Vec<PortConfig>,
    /// The task's own network namespace (bind-mounted in its directory) for a
    /// task on an overlay network; `None`: the host's network.
    #[serde(default)]
    pub netns: Option<PathBuf>,
}

/// Where a started task stands.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct ProcState {
    /// Pid of the task's process, also its process group ID.
    pub pid: i32,
    /// The process's start time in clock ticks (see `sys::ProcStat`).
    pub start_ticks: u64,
    pub started_at: Timestamp,
    /// Set once the exit was observed by the parent.
    pub exit_code: Option<i32>,
    pub finished_at: Option<Timestamp>,
}

/// Paths of one task's directory.
#[derive(Clone, Debug)]
pub(crate) struct TaskDir {
    pub root: PathBuf,
}

impl TaskDir {
    /// The directory of `task_id` under `base`; the ID must be a plain name.
    pub fn new(base: &Path, task_id: &str) -> Result<TaskDir> {
        let plain = !task_id.is_empty()
            && task_id != "."
            && task_id != ".."
            && !task_id.contains(['/', '\0']);
        if !plain {
            return Err(Error::InvalidSpec {
                field: "task.id",
                reason: format!("{task_id:?} cannot name a directory"),
            });
        }
        Ok(TaskDir {
            root: base.join(task_id),
        })
    }

    pub fn record_path(&self) -> PathBuf {
        self.root.join("task.json")
    }

    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    pub fn stdout_path(&self) -> PathBuf {
        self.root.join("stdout.log")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.root.join("stderr.log")
    }

    /// Where the task's own network namespace is bind-mounted.
    pub fn netns_path(&self) -> PathBuf {
        self.root.join("netns")
    }

    /// The resolv.conf the task sees in its own mount namespace.
    pub fn resolv_conf_path(&self) -> PathBuf {
        self.root.join("resolv.conf")
    }

    /// The named pipes the task writes its stdout and stderr into.
    pub fn pipe_paths(&self) -> [PathBuf; 2] {
        [self.root.join("stdout.pipe"), self.root.join("stderr.pipe")]
    }

    pub fn exists(&self) -> bool {
        self.record_path().exists()
    }

    pub fn read_record(&self, task_id: &str) -> Result<Record> {
        read_json(&self.record_path())?.ok_or_else(|| Error::not_found(task_id))
    }

    pub fn read_state(&self) -> Result<Option<ProcState>> {
        read_json(&self.state_path())
    }

    pub fn write_record(&self, record: &Record) -> Result<()> {
        write_json(&self.record_path(), record)
    }

    pub fn write_state(&self, state: &ProcState) -> Result<()> {
        write_json(&self.state_path(), state)
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::io(
                format!("reading {}", path.display()),
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| {
        Error::io(
            format!("encoding {}", path.display()),
            std::io::Error::other(e),
        )
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_ids_that_are_not_plain_names() {
        let base = Path::new("/tmp");
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(TaskDir::new(base, bad).is_err(), "{bad:?}");
        }
        assert!(TaskDir::new(base, "abc123").is_ok());
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let td = TaskDir::new(dir.path(), "t1").unwrap();
        std::fs::create_dir_all(&td.root).unwrap();
        assert!(td.read_state().unwrap().is_none());
        let st = ProcState {
            pid: 7,
            start_ticks: 9,
            exit_code: Some(3),
            ..Default::default()
        };
        td.write_state(&st).unwrap();
        let back = td.read_state().unwrap().unwrap();
        assert_eq!(
            (back.pid, back.start_ticks, back.exit_code),
            (7, 9, Some(3))
        );
        assert!(matches!(td.read_record("t1"), Err(Error::NotFound { .. })));
    }
}
