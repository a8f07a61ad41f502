use std::time::Duration;

use swarm_core::SystemClock;
use swarm_core::types::{Annotations, TaskState};
use swarm_runtime::ProcessRuntime;
use tokio::time::timeout;

use super::*;

fn task(id: &str, script: &str) -> Task {
    let mut t = Task {
        id: Id::from(id),
        slot: 1,
        node_id: Id::from("node1"),
        service_annotations: Annotations::named("svc"),
        desired_state: TaskState::Running,
        ..Default::default()
    };
    t.status.state = TaskState::Assigned;
    t.spec.container.command = vec!["/bin/sh".into(), "-c".into(), script.into()];
    t.spec.container.stop_grace_period = Some(Duration::from_secs(2));
    t
}

async fn agent(
    dir: &std::path::Path,
) -> (
    Agent,
    mpsc::UnboundedReceiver<StatusUpdate>,
    Arc<dyn Runtime>,
) {
    let runtime: Arc<dyn Runtime> = Arc::new(ProcessRuntime::new(dir).unwrap());
    let (a, rx) = Agent::new(Id::from("node1"), runtime.clone(), Arc::new(SystemClock))
        .await
        .unwrap();
    (a, rx, runtime)
}

/// Waits (bounded) until `task` reports `state`; returns every state seen for it.
async fn until(
    rx: &mut mpsc::UnboundedReceiver<StatusUpdate>,
    task: &str,
    state: TaskState,
) -> Vec<StatusUpdate> {
    let mut seen = Vec::new();
    timeout(Duration::from_secs(30), async {
        while let Some(u) = rx.recv().await {
            let done = u.task_id == task && u.status.state == state;
            if u.task_id == task {
                seen.push(u);
            }
            if done {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{task} never reached {state}; saw {seen:?}"));
    seen
}

#[tokio::test]
async fn runs_assigned_tasks_and_reports_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut rx, _rt) = agent(dir.path()).await;
    a.assign(&[task("ok", "exit 0"), task("bad", "exit 3")]);
    // The two run side by side: collect both until each has ended.
    let mut seen: std::collections::HashMap<String, Vec<StatusUpdate>> = Default::default();
    timeout(Duration::from_secs(30), async {
        while let Some(u) = rx.recv().await {
            seen.entry(u.task_id.to_string()).or_default().push(u);
            let ended = |t: &str| {
                seen.get(t)
                    .is_some_and(|v| v.last().is_some_and(|u| u.status.state.is_terminal()))
            };
            if ended("ok") && ended("bad") {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("both tasks did not end; saw {seen:?}"));
    let states: Vec<TaskState> = seen["ok"].iter().map(|u| u.status.state).collect();
    use TaskState::*;
    assert_eq!(
        states,
        [Accepted, Preparing, Ready, Starting, Running, Complete]
    );
    let bad = seen["bad"].last().unwrap();
    assert_eq!(bad.status.state, Failed);
    assert_eq!(bad.status.err, "task: non-zero exit (3)");
}

#[tokio::test]
async fn desired_shutdown_stops_a_running_task_and_unassigning_removes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut rx, rt) = agent(dir.path()).await;
    let mut t = task("long", "sleep 60");
    a.assign(std::slice::from_ref(&t));
    until(&mut rx, "long", TaskState::Running).await;
    t.desired_state = TaskState::Shutdown;
    a.assign(std::slice::from_ref(&t));
    until(&mut rx, "long", TaskState::Shutdown).await;
    assert_eq!(
        rt.list().await.unwrap().len(),
        1,
        "kept for its logs while assigned"
    );
    a.assign(&[]);
    timeout(Duration::from_secs(30), async {
        while !rt.list().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the task is removed once no longer assigned");
}

#[tokio::test]
async fn a_restarted_agent_adopts_instead_of_starting_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut rx, rt) = agent(dir.path()).await;
    let t = task("adopt-me", "sleep 60");
    a.assign(std::slice::from_ref(&t));
    let running = until(&mut rx, "adopt-me", TaskState::Running).await;
    let pid = running
        .last()
        .unwrap()
        .status
        .container_status
        .as_ref()
        .unwrap()
        .pid;
    assert!(pid > 0);
    a.detach();

    // The swarm still assigns the task, as RUNNING.
    let mut known = t.clone();
    known.status = running.last().unwrap().status.clone();
    let (mut b, mut rx2, _) = agent(dir.path()).await;
    b.assign(std::slice::from_ref(&known));
    let listed = rt.list().await.unwrap();
    assert_eq!(listed.len(), 1, "no duplicate");
    assert_eq!(listed[0].container.pid, pid, "the same process");
    known.desired_state = TaskState::Shutdown;
    b.assign(std::slice::from_ref(&known));
    until(&mut rx2, "adopt-me", TaskState::Shutdown).await;
}

#[tokio::test]
async fn orphans_from_before_a_restart_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut rx, rt) = agent(dir.path()).await;
    a.assign(&[task("orphan", "sleep 60")]);
    until(&mut rx, "orphan", TaskState::Running).await;
    a.detach();
    let (mut b, _rx2, _) = agent(dir.path()).await;
    b.assign(&[]);
    timeout(Duration::from_secs(30), async {
        while !rt.list().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the orphan is removed");
}

#[tokio::test]
async fn reports_again_what_the_swarm_has_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut rx, _rt) = agent(dir.path()).await;
    let t = task("lost", "sleep 30");
    a.assign(std::slice::from_ref(&t));
    until(&mut rx, "lost", TaskState::Running).await;
    // A new session's full set still shows ASSIGNED (the reports went to a
    // manager that lost its leadership before writing them): RUNNING again.
    a.report_behind(std::slice::from_ref(&t));
    let again = timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.task_id, "lost");
    assert_eq!(again.status.state, TaskState::Running);
    // The swarm already has RUNNING: nothing to repeat.
    let mut known = t.clone();
    known.status.state = TaskState::Running;
    a.report_behind(&[known]);
    assert!(
        timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "a status the swarm has was sent again"
    );
    a.assign(&[]);
}

#[tokio::test]
async fn an_agent_given_no_plane_drives_its_runtime_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let runtime: Arc<dyn Runtime> = Arc::new(ProcessRuntime::new(dir.path()).unwrap());
    let (a, _rx) = Agent::with_plane(
        Id::from("node1"),
        runtime.clone(),
        Arc::new(SystemClock),
        |_| NetPlane::disabled(),
    )
    .await
    .unwrap();
    // No NetRuntime around it, even as root.
    assert!(Arc::ptr_eq(&a.runtime(), &runtime));
}
