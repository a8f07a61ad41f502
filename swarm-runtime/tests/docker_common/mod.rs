//! Shared set-up of the Docker tests: find the engine, build the test image, clear
//! leftovers of earlier runs.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use swarm_runtime::DockerRuntime;

/// The image the tests run: a busybox rootfs imported locally.
pub const TEST_IMAGE: &str = "swarm-test/busybox:1";
/// Prefix of every task ID and service name the Docker tests use.
pub const PREFIX: &str = "swt-docker";

/// Builds the image and removes leftover containers once per test binary; the
/// reason to skip when that is impossible.
fn setup() -> &'static Result<(), String> {
    static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
    SETUP.get_or_init(|| {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-image.sh");
        let out = Command::new("sh")
            .arg(&script)
            .arg(TEST_IMAGE)
            .output()
            .map_err(|e| format!("running {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "cannot build {TEST_IMAGE}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        remove_leftovers();
        Ok(())
    })
}

/// Removes every container whose service name starts with the test prefix (from
/// runs that were killed before their own cleanup).
pub fn remove_leftovers() {
    let Ok(out) = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^/{PREFIX}")])
        .output()
    else {
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

/// A runtime on the local engine with the test image present, or `None` (after
/// printing why) when the tests cannot run here.
pub async fn engine() -> Option<DockerRuntime> {
    let rt = match DockerRuntime::connect().await {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skipping: no Docker Engine answers ({e})");
            return None;
        }
    };
    if let Err(e) = rt.client().ping().await {
        eprintln!("skipping: no Docker Engine answers ({e})");
        return None;
    }
    let ready = tokio::task::spawn_blocking(|| setup().clone())
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match ready {
        Ok(()) => Some(rt),
        Err(reason) => {
            eprintln!("skipping: {reason}");
            None
        }
    }
}
