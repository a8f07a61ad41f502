//! What the two-host overlay tests share: `ip` and the simulated hosts' clean-up.
#![allow(dead_code)] // each test file uses its own subset

use std::process::Command;

/// Runs `ip args...`; its error output when it fails.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The two simulated hosts (network namespaces `names`, each with a directory
/// where namespaces are mounted); removes them, and every namespace mounted
/// under their directories, when dropped, whether the test passed or not.
pub struct Hosts {
    /// The hosts' network namespaces.
    pub names: [String; 2],
    /// Where each host mounts its namespaces.
    pub dirs: [tempfile::TempDir; 2],
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for dir in &self.dirs {
            if let Ok(entries) = std::fs::read_dir(dir.path()) {
                for entry in entries.flatten() {
                    let _ = nix::mount::umount2(&entry.path(), nix::mount::MntFlags::MNT_DETACH);
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
