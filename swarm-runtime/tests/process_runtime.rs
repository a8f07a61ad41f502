//! Process-runtime behaviour beyond the conformance suite: the spec's env, working
//! directory and user, the process group dying with the task, persisted state.

use std::time::Duration;

use futures::StreamExt;
use swarm_core::types::{Annotations, Task, TaskState};
use swarm_core::{Id, SystemClock};
use swarm_runtime::{ContainerState, Error, LogOptions, ProcessRuntime, Runtime};
use tokio::sync::watch;

fn task(id: &str, script: &str) -> Task {
    let mut t = Task {
        id: Id::from(id),
        service_id: Id::from("svc"),
        node_id: Id::from("node"),
        slot: 1,
        service_annotations: Annotations::named("swt-proc"),
        desired_state: TaskState::Running,
        ..Default::default()
    };
    t.spec.container.command = vec!["/bin/sh".into(), "-c".into(), script.into()];
    t.spec.container.stop_grace_period = Some(Duration::from_secs(5));
    t
}

async fn run(rt: &ProcessRuntime, t: &Task) -> i32 {
    rt.prepare(t).await.unwrap();
    rt.create(t).await.unwrap();
    rt.start(&t.id).await.unwrap();
    rt.wait(&t.id).await.unwrap()
}

async fn stdout(rt: &ProcessRuntime, id: &str) -> String {
    let mut s = rt.logs(id, LogOptions::default()).await.unwrap();
    let mut out = String::new();
    while let Some(c) = s.next().await {
        let c = c.unwrap();
        if c.stream == swarm_runtime::LogStream::Stdout {
            out.push_str(&String::from_utf8_lossy(&c.data));
        }
    }
    out
}

/// Pids of live (non-zombie) processes in process group `pgid`, once SIGKILLs
/// sent to it have had time to land (they are delivered asynchronously).
async fn group_members_after_kill(pgid: i32) -> Vec<i32> {
    for _ in 0..200 {
        if group_members(pgid).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    group_members(pgid)
}

/// Pids of live (non-zombie) processes in process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) && fields[0] != "Z" {
            out.push(pid);
        }
    }
    out
}

#[tokio::test]
async fn applies_env_workdir_and_user() {
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let mut t = task(
        "envtask",
        "echo $GREETING; pwd; id -u; id -g; echo ${PATH:+has-path}",
    );
    t.spec.container.env = vec!["GREETING=hello world".into()];
    t.spec.container.dir = "/tmp".into();
    let root = nix::unistd::Uid::effective().is_root();
    if root {
        t.spec.container.user = "65534:65534".into();
    }
    assert_eq!(run(&rt, &t).await, 0);
    let out = stdout(&rt, "envtask").await;
    let want_ids = if root {
        "65534\n65534\n".to_string()
    } else {
        format!(
            "{}\n{}\n",
            nix::unistd::Uid::effective(),
            nix::unistd::Gid::effective()
        )
    };
    assert_eq!(out, format!("hello world\n/tmp\n{want_ids}has-path\n"));
    rt.remove("envtask").await.unwrap();
}

#[tokio::test]
async fn the_whole_group_dies_with_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();

    // The main process exits on its own, leaving a background child: the child is
    // killed with it.
    let t = task("leaver", "sleep 300 & echo started; exit 0");
    rt.prepare(&t).await.unwrap();
    rt.create(&t).await.unwrap();
    rt.start(&t.id).await.unwrap();
    // The pid as recorded in the state directory (inspect says 0 once it exited).
    let state = std::fs::read(dir.path().join("leaver/state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    let pid = state["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0);
    assert_eq!(rt.wait("leaver").await.unwrap(), 0);
    assert_eq!(group_members_after_kill(pid).await, Vec::<i32>::new());
    rt.remove("leaver").await.unwrap();

    // Removing a running task kills its children too and leaves no state.
    let t = task("family", "sleep 300 & sleep 301 & echo ready; wait");
    rt.prepare(&t).await.unwrap();
    rt.create(&t).await.unwrap();
    rt.start(&t.id).await.unwrap();
    let pid = rt.inspect("family").await.unwrap().container.pid;
    for _ in 0..200 {
        if group_members(pid).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        group_members(pid).len() >= 3,
        "the shell and its two sleeps"
    );
    rt.remove("family").await.unwrap();
    assert_eq!(group_members_after_kill(pid).await, Vec::<i32>::new());
    assert!(!dir.path().join("family").exists());
    assert!(matches!(
        rt.inspect("family").await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn state_survives_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let t = task("persist", "exit 7");
    {
        let rt = ProcessRuntime::new(dir.path()).unwrap();
        assert_eq!(run(&rt, &t).await, 7);
    }
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let listed = rt.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, ContainerState::Exited);
    assert_eq!(listed[0].exit_code, Some(7));
    assert_eq!(listed[0].labels.service_name, "swt-proc");
    assert_eq!(rt.wait("persist").await.unwrap(), 7);
    rt.remove("persist").await.unwrap();
    assert!(rt.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_specs_are_rejected_by_the_state_machine() {
    let dir = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let mut no_cmd = task("nocmd", "");
    no_cmd.spec.container.command.clear();
    let mut bad_user = task("baduser", "exit 0");
    bad_user.spec.container.user = "no-such-user-for-swarm".into();
    let mut bad_signal = task("badsig", "exit 0");
    bad_signal.spec.container.stop_signal = "SIGNOPE".into();
    for (t, field) in [
        (no_cmd, "container.command"),
        (bad_user, "container.user"),
        (bad_signal, "container.stop_signal"),
    ] {
        let (_tx, rx) = watch::channel(TaskState::Running);
        let done = swarm_runtime::drive(&rt, &SystemClock, t, rx, |_| {}).await;
        assert_eq!(done.status.state, TaskState::Rejected);
        assert!(done.status.err.contains(field), "{}", done.status.err);
    }
    let bad_id = task("../escape", "exit 0");
    assert!(matches!(
        rt.create(&bad_id).await,
        Err(Error::InvalidSpec { .. })
    ));
}

/// Not a check on its own: the other process of `adopts_tasks_of_another_process`,
/// which starts a task and exits without waiting for it.
// Ignored on purpose: it is the child half of `adopts_tasks_of_another_process`,
// which runs it in a separate process (`--ignored --exact`); CI runs that test,
// so this one runs in CI too, where it means something.
#[tokio::test]
#[ignore = "run by adopts_tasks_of_another_process in a child process"]
async fn helper_start_task_and_exit() {
    let Ok(dir) = std::env::var("SWARM_ADOPT_DIR") else {
        return;
    };
    let rt = ProcessRuntime::new(dir).unwrap();
    // It prints once this process (and its log relay) is gone.
    let t = task("crossproc", "sleep 0.5; echo adopted; sleep 300 & wait");
    rt.prepare(&t).await.unwrap();
    rt.create(&t).await.unwrap();
    rt.start(&t.id).await.unwrap();
}

#[tokio::test]
async fn adopts_tasks_of_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_start_task_and_exit"])
        .env("SWARM_ADOPT_DIR", dir.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    // The agent that started it is gone; a new one finds it running.
    let rt = ProcessRuntime::new(dir.path()).unwrap();
    let listed = rt.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].labels.task_id, "crossproc");
    assert_eq!(listed[0].state, ContainerState::Running);
    let pid = listed[0].container.pid;
    assert!(pid > 0);

    // What it wrote while no runtime relayed its output waited in its pipe;
    // the new runtime stores it (with a time) and serves it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut s = rt.logs("crossproc", LogOptions::default()).await.unwrap();
        if let Some(c) = s.next().await {
            let c = c.unwrap();
            assert_eq!(&c.data[..], b"adopted\n");
            assert!(c.time.is_some());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no output relayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // It controls it; the exit code went with the old parent.
    rt.stop("crossproc", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(matches!(
        rt.wait("crossproc").await,
        Err(Error::ExitUnknown { .. })
    ));
    assert_eq!(
        rt.inspect("crossproc").await.unwrap().state,
        ContainerState::Exited
    );
    assert_eq!(group_members_after_kill(pid).await, Vec::<i32>::new());
    rt.remove("crossproc").await.unwrap();
    assert!(rt.list().await.unwrap().is_empty());
}
