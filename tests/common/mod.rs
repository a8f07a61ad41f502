//! Helpers the multi-node tests share beyond `swarm::testing`: the Docker
//! Engine and its containers, and swarmd processes.
#![allow(dead_code)] // each test file uses its own subset

pub mod daemon;
pub mod netlab;

/// The image the Docker tests run: a busybox rootfs imported locally.
pub const TEST_IMAGE: &str = "swarm-test/busybox:1";

/// Whether a Docker Engine answers and [`TEST_IMAGE`] is built; prints why
/// the test skips when not.
pub fn have_engine_and_image() -> bool {
    use std::process::Command;
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !engine {
        eprintln!("skipping: no Docker Engine answers");
        return false;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-test-image.sh");
    match Command::new("sh").args([script, TEST_IMAGE]).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!(
                "skipping: cannot build {TEST_IMAGE}: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            false
        }
        Err(e) => {
            eprintln!("skipping: cannot run the image script: {e}");
            false
        }
    }
}

/// IDs of the containers whose names start with `prefix`.
pub fn containers(prefix: &str) -> Vec<String> {
    std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("name=^/{prefix}")])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Removes every container whose name starts with `prefix`.
pub fn remove_containers(prefix: &str) {
    let ids = containers(prefix);
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
}

/// Removes the containers whose names start with its prefix when dropped: a
/// failed (or killed) test's nodes stop without removing theirs.
pub struct RemoveContainers(pub &'static str);

impl Drop for RemoveContainers {
    fn drop(&mut self) {
        remove_containers(self.0);
    }
}
