//! Tasks as `GET /tasks` and `GET /tasks/{id}` show them, written straight
//! from the objects, and the cache that writes a listing again only for the
//! tasks that changed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use swarm_core::types::*;
use swarm_core::{Id, Timestamp};

use super::service::ports_json;
use super::task_spec::task_spec_json;

/// A time written straight into the output (no intermediate string).
struct TimeOut(Timestamp);

impl Serialize for TimeOut {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[derive(Serialize)]
struct PortsOut {
    #[serde(rename = "Ports")]
    ports: Value,
}

#[derive(Serialize)]
struct IndexOut {
    #[serde(rename = "Index")]
    index: u64,
}

#[derive(Serialize)]
struct ContainerOut<'a> {
    #[serde(rename = "ContainerID")]
    container_id: &'a str,
    #[serde(rename = "PID")]
    pid: i32,
    #[serde(rename = "ExitCode")]
    exit_code: i32,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TaskStatusOut<'a> {
    timestamp: TimeOut,
    state: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    err: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_status: Option<ContainerOut<'a>>,
    port_status: PortsOut,
}

/// A task in Docker's shape, written straight from the object (no
/// intermediate JSON tree: `GET /tasks` of 10k tasks is one pass).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TaskOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    version: IndexOut,
    created_at: TimeOut,
    updated_at: TimeOut,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    labels: &'a BTreeMap<String, String>,
    spec: &'a RawValue,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    slot: Option<u64>,
    #[serde(rename = "NodeID", skip_serializing_if = "Option::is_none")]
    node_id: Option<&'a str>,
    status: TaskStatusOut<'a>,
    desired_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    job_iteration: Option<IndexOut>,
}

fn task_out<'a>(t: &'a Task, spec: &'a RawValue) -> TaskOut<'a> {
    TaskOut {
        id: t.id.as_str(),
        version: IndexOut {
            index: t.meta.version.index,
        },
        created_at: TimeOut(t.meta.created_at),
        updated_at: TimeOut(t.meta.updated_at),
        name: (!t.annotations.name.is_empty()).then_some(t.annotations.name.as_str()),
        labels: &t.annotations.labels,
        spec,
        service_id: t.service_id.as_str(),
        slot: (t.slot > 0).then_some(t.slot),
        node_id: (!t.node_id.is_empty()).then_some(t.node_id.as_str()),
        status: TaskStatusOut {
            timestamp: TimeOut(t.status.timestamp),
            state: t.status.state.as_str(),
            message: &t.status.message,
            err: &t.status.err,
            container_status: t.status.container_status.as_ref().map(|c| ContainerOut {
                container_id: &c.container_id,
                pid: c.pid,
                exit_code: c.exit_code,
            }),
            port_status: PortsOut {
                ports: match &t.status.port_status {
                    Some(p) if !p.ports.is_empty() => ports_json(&p.ports),
                    _ => Value::Array(Vec::new()),
                },
            },
        },
        desired_state: t.desired_state.as_str(),
        job_iteration: t.job_iteration.map(|j| IndexOut { index: j.index }),
    }
}

fn raw_spec(spec: &TaskSpec) -> Box<RawValue> {
    serde_json::value::to_raw_value(&task_spec_json(spec)).expect("JSON values always serialise")
}

/// A task as `GET /tasks/{id}` shows it.
pub fn task_json(t: &Task) -> Value {
    let spec = raw_spec(&t.spec);
    serde_json::to_value(task_out(t, &spec)).unwrap_or(Value::Null)
}

/// Each task's JSON, in order. Tasks of one service version share their
/// template: it is written once and reused.
fn tasks_json_each(tasks: &[Arc<Task>]) -> Vec<Vec<u8>> {
    let mut specs: HashMap<(&str, u64), (&TaskSpec, Box<RawValue>)> = HashMap::new();
    tasks
        .iter()
        .map(|t| {
            let own;
            let spec: &RawValue = match t.spec_version {
                Some(v) => {
                    let key = (t.service_id.as_str(), v.index);
                    match specs.get(&key) {
                        Some((s, raw)) if **s == t.spec => raw,
                        Some(_) => {
                            own = raw_spec(&t.spec);
                            &own
                        }
                        None => &specs.entry(key).or_insert((&t.spec, raw_spec(&t.spec))).1,
                    }
                }
                None => {
                    own = raw_spec(&t.spec);
                    &own
                }
            };
            serde_json::to_vec(&task_out(t, spec)).unwrap_or_else(|_| b"null".to_vec())
        })
        .collect()
}

fn json_array<B: AsRef<[u8]>>(items: &[B]) -> Vec<u8> {
    let len = items.iter().map(|i| i.as_ref().len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (n, i) in items.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.extend_from_slice(i.as_ref());
    }
    out.push(b']');
    out
}

/// Tasks as `GET /tasks` shows them, as JSON bytes, with no cache.
#[cfg(test)]
fn tasks_json_bytes(tasks: &[Arc<Task>]) -> Vec<u8> {
    json_array(&tasks_json_each(tasks))
}

/// Each task's JSON by task ID and version. A stored object never changes
/// without a new version, so a listing writes again only the tasks that
/// changed since the last one.
#[derive(Default)]
pub struct TaskJsonCache {
    entries: parking_lot::Mutex<CachedTasks>,
}

/// Task ID → (version, its JSON).
type CachedTasks = HashMap<Id, (u64, Arc<[u8]>)>;

impl std::fmt::Debug for TaskJsonCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskJsonCache")
            .field("entries", &self.entries.lock().len())
            .finish()
    }
}

impl TaskJsonCache {
    /// `tasks` as a JSON array; `stored` is how many tasks the store holds
    /// (the cache keeps about that many entries).
    pub fn list(&self, tasks: &[Arc<Task>], stored: usize) -> Vec<u8> {
        let misses: Vec<Arc<Task>> = {
            let e = self.entries.lock();
            tasks
                .iter()
                .filter(|t| e.get(&t.id).map(|(v, _)| *v) != Some(t.meta.version.index))
                .cloned()
                .collect()
        };
        let fresh = tasks_json_each(&misses);
        let mut e = self.entries.lock();
        for (t, json) in misses.iter().zip(fresh) {
            e.insert(t.id.clone(), (t.meta.version.index, json.into()));
        }
        let parts: Vec<Arc<[u8]>> = tasks
            .iter()
            .map(|t| {
                e.get(&t.id)
                    .map(|(_, j)| j.clone())
                    .unwrap_or_else(|| b"null".as_slice().into())
            })
            .collect();
        if e.len() > 2 * stored + 1024 {
            let keep: HashSet<&Id> = tasks.iter().map(|t| &t.id).collect();
            e.retain(|id, _| keep.contains(id));
        }
        drop(e);
        json_array(&parts)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_task_list_shares_templates_and_matches_single_tasks() {
        use std::sync::Arc;
        let mut a = Task {
            id: "t1".into(),
            service_id: "s1".into(),
            slot: 1,
            spec_version: Some(swarm_core::types::Version { index: 1 }),
            ..Default::default()
        };
        a.spec.container.image = "busybox:1".into();
        let mut b = a.clone();
        b.id = "t2".into();
        b.slot = 2;
        b.node_id = "n1".into();
        // Same version, another template (never expected, still written right).
        let mut c = a.clone();
        c.id = "t3".into();
        c.spec.container.image = "busybox:2".into();
        let mut d = a.clone();
        d.id = "t4".into();
        d.spec_version = None;
        d.status.err = "No such image: busybox:1".into();
        let tasks: Vec<Arc<Task>> = [a, b, c, d].into_iter().map(Arc::new).collect();
        let listed: Value = serde_json::from_slice(&tasks_json_bytes(&tasks)).unwrap();
        let singles: Vec<Value> = tasks.iter().map(|t| task_json(t)).collect();
        assert_eq!(listed, json!(singles));
        // Through the cache: the same, and a new version is written again.
        let cache = TaskJsonCache::default();
        let cached: Value = serde_json::from_slice(&cache.list(&tasks, 4)).unwrap();
        assert_eq!(cached, listed);
        let mut moved = (*tasks[1]).clone();
        moved.meta.version.index += 1;
        moved.node_id = "n2".into();
        let again = vec![tasks[0].clone(), Arc::new(moved)];
        let cached: Value = serde_json::from_slice(&cache.list(&again, 4)).unwrap();
        assert_eq!(cached[1]["NodeID"], "n2");
        assert_eq!(cached[0], listed[0]);
        assert_eq!(listed[2]["Spec"]["ContainerSpec"]["Image"], "busybox:2");
        assert_eq!(listed[3]["Status"]["Err"], "No such image: busybox:1");
        assert_eq!(listed[1]["NodeID"], "n1");
        assert!(listed[0].get("NodeID").is_none());
    }
}
