//! swarmd as a real process, driven by the stock docker CLI on its Engine
//! API: on this host with the API on TCP (tests/swarmd.rs), or in a lab host's
//! network namespace with the API on a unix socket (see `netlab`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use swarm::testing::Patience;

use super::netlab::run;

/// How long a new swarmd has to answer on its API.
const START: Patience =
    Patience::within(Duration::from_secs(120)).every(Duration::from_millis(200));

/// How a [`Daemon`] stops when dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDrop {
    /// As an operator stops swarmd: SIGTERM (it closes its published ports and
    /// removes its nftables rules), SIGKILL after 10 s.
    Terminate,
    /// As a crash: SIGKILL; then what its process-runtime tasks left running is
    /// killed and their namespaces unmounted (a test that failed midway).
    KillAndReap,
}

/// One swarmd process.
pub struct Daemon {
    child: Child,
    /// Its Engine API, as `DOCKER_HOST` names it.
    docker_host: String,
    /// The data directory, until [`kill`](Self::kill) hands it back.
    dir: Option<tempfile::TempDir>,
    /// The network namespace (`/run/netns/<name>`) it runs in, if not this
    /// host's.
    netns: Option<String>,
    name: String,
    /// Its arguments beyond the data directory, API, host name and log level.
    args: Vec<String>,
    on_drop: OnDrop,
    /// The node's ID once it is in a swarm: names its sandbox directory.
    pub node_id: Option<String>,
}

impl Daemon {
    /// swarmd `name` on this host keeping its state in `dir`, its API on
    /// `tcp://{api}`, with `args`; stops as an operator stops it.
    pub fn on_tcp(dir: tempfile::TempDir, api: &str, name: &str, args: &[&str]) -> Daemon {
        Daemon::start(
            dir,
            format!("tcp://{api}"),
            None,
            name,
            args,
            OnDrop::Terminate,
        )
    }

    /// swarmd `name` in the network namespace `host` only (the namespaces it
    /// mounts and the Engine's socket stay visible), its API on a unix socket
    /// in a new data directory, with `args` (`--runtime ...` and more); dropped,
    /// it is killed and its tasks reaped.
    pub fn in_netns(host: &str, name: &str, args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("api.sock");
        Daemon::start(
            dir,
            format!("unix://{}", sock.display()),
            Some(host.to_string()),
            name,
            args,
            OnDrop::KillAndReap,
        )
    }

    fn start(
        dir: tempfile::TempDir,
        docker_host: String,
        netns: Option<String>,
        name: &str,
        args: &[&str],
        on_drop: OnDrop,
    ) -> Daemon {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = spawn(dir.path(), &docker_host, netns.as_deref(), name, &args);
        let d = Daemon {
            child,
            docker_host,
            dir: Some(dir),
            netns,
            name: name.to_string(),
            args,
            on_drop,
            node_id: None,
        };
        d.wait_api();
        d
    }

    fn wait_api(&self) {
        START.until_blocking("the API answers", || {
            docker(self, &["version"]).status.success()
        });
    }

    /// Its Engine API, as `DOCKER_HOST` names it.
    pub fn docker_host(&self) -> &str {
        &self.docker_host
    }

    /// The `IP:PORT` its API listens on.
    ///
    /// # Panics
    ///
    /// When its API is on a unix socket.
    pub fn api_addr(&self) -> &str {
        self.docker_host
            .strip_prefix("tcp://")
            .expect("an API on TCP")
    }

    /// Its data directory (the process runtime's tasks under `runtime/`).
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("a data dir").path()
    }

    /// The namespace of this node's process-runtime task `task_id`.
    pub fn netns(&self, task_id: &str) -> PathBuf {
        self.dir().join("runtime").join(task_id).join("netns")
    }

    /// Stops the process (SIGKILL, like a crash; its tasks keep running) and
    /// hands back its data directory.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.take().expect("a data dir")
    }

    /// Kills this node's swarmd (its tasks keep running) and starts it again
    /// on the same data.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(sock) = self.docker_host.strip_prefix("unix://") {
            let _ = std::fs::remove_file(sock);
        }
        self.child = spawn(
            self.dir(),
            &self.docker_host,
            self.netns.as_deref(),
            &self.name,
            &self.args,
        );
        self.wait_api();
    }

    /// Kills what the node's tasks left running (a test that failed midway)
    /// and unmounts their namespaces.
    fn reap_tasks(&self) {
        let Some(dir) = &self.dir else {
            return;
        };
        let tasks = std::fs::read_dir(dir.path().join("runtime"));
        for e in tasks.into_iter().flatten().flatten() {
            if let Ok(text) = std::fs::read_to_string(e.path().join("state.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(pid) = v["pid"].as_i64().filter(|p| *p > 1)
                && v["exit_code"].is_null()
            {
                // The task's own process only (never a group or -1).
                let _ = run("kill", &["-s", "KILL", &pid.to_string()]);
            }
            let _ = run("umount", &["-l", e.path().join("netns").to_str().unwrap()]);
        }
        // Sandboxes a killed node left behind.
        if let Some(id) = &self.node_id {
            let dir = Path::new("/run/swarm/netns").join(id);
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let _ = run("umount", &["-l", e.path().to_str().unwrap()]);
                let _ = std::fs::remove_file(e.path());
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

impl Drop for Daemon {
    /// This node's own process only, as [`OnDrop`] says.
    fn drop(&mut self) {
        match self.on_drop {
            OnDrop::Terminate => {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return; // killed already
                }
                let pid = self.child.id().to_string();
                let _ = Command::new("kill").args(["-s", "TERM", &pid]).status();
                let exited = Patience::within(Duration::from_secs(10))
                    .every(Duration::from_millis(50))
                    .poll_blocking(|| matches!(self.child.try_wait(), Ok(Some(_))));
                if !exited {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                }
            }
            OnDrop::KillAndReap => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.reap_tasks();
            }
        }
    }
}

fn spawn(dir: &Path, docker_host: &str, netns: Option<&str>, name: &str, args: &[String]) -> Child {
    let swarmd = env!("CARGO_BIN_EXE_swarmd");
    let mut cmd = match netns {
        // nsenter joins the host's network namespace only (`ip netns exec`
        // would also give swarmd a mount namespace of its own, hiding the
        // namespaces it mounts from the test).
        Some(host) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/run/netns/{host}"))
                .arg(swarmd)
                .env_remove("DOCKER_HOST");
            c
        }
        None => Command::new(swarmd),
    };
    cmd.args(["--data-dir", dir.to_str().unwrap()])
        .args(["--api-addr", docker_host])
        .args(args)
        .args(["--hostname", name, "--log-level", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("swarmd starts")
}

/// The docker CLI on node `d`'s API.
pub fn docker(d: &Daemon, args: &[&str]) -> Output {
    Command::new("docker")
        .env("DOCKER_HOST", &d.docker_host)
        .env("DOCKER_CLI_HINTS", "false")
        .args(args)
        .output()
        .expect("docker runs")
}

/// [`docker`], which must succeed: its standard output.
pub fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = docker(d, args);
    assert!(
        o.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
