//! A task's own network namespace, and the namespaces its process starts in.
//!
//! A task on an overlay network gets a network namespace of its own, created at
//! `create` and bind-mounted at `<task dir>/netns` (as `ip netns add` does), so it
//! survives the agent and is found again by a new runtime instance; `remove`
//! unmounts it. Its loopback is up; the node attaches the overlay interfaces and
//! serves DNS on `127.0.0.11` there.
//!
//! The process starts inside it, and in a private mount namespace where
//! `/etc/resolv.conf` is the task's own file (`nameserver 127.0.0.11`,
//! `options ndots:0`, Docker's), so its resolver asks the embedded DNS. Everything
//! the child needs is prepared before the fork: [`Entry::enter`] only makes
//! system calls.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::error::{Error, Result};

/// `f_type` of nsfs, the file system of namespace files.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// What a task on an overlay network finds in `/etc/resolv.conf` (Docker's).
pub(crate) const RESOLV_CONF: &str = "nameserver 127.0.0.11\noptions ndots:0\n";

/// Whether `path` is a mounted namespace.
pub(crate) fn is_netns(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // SAFETY: fstatfs only writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    rc == 0 && st.f_type as i64 == NSFS_MAGIC
}

/// Creates a network namespace bind-mounted at `path` with its loopback up
/// (idempotent: one already there is kept).
pub(crate) fn create(path: &Path) -> Result<()> {
    if is_netns(path) {
        return Ok(());
    }
    std::fs::File::create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let target = path.to_path_buf();
    let made = std::thread::spawn(move || -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        loopback_up()
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")));
    if let Err(e) = made {
        let _ = umount2(path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(path);
        return Err(Error::io(
            format!("creating the network namespace {}", path.display()),
            e,
        ));
    }
    Ok(())
}

/// Unmounts the namespace at `path` and removes the file (idempotent).
pub(crate) fn remove(path: &Path) -> Result<()> {
    if is_netns(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| Error::io(format!("unmounting {}", path.display()), e.into()))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// Brings `lo` up in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain socket/ioctl calls on a struct we own; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err);
        }
    }
    Ok(())
}

/// What a task's process enters before it executes, opened and encoded before
/// the fork.
pub(crate) struct Entry {
    netns: OwnedFd,
    /// `(our resolv.conf, /etc/resolv.conf)`, when the host has one to cover.
    resolv: Option<(CString, CString)>,
}

impl Entry {
    /// Opens the namespace at `netns`; `resolv_conf` is bind-mounted over
    /// `/etc/resolv.conf` (when the host has one).
    pub(crate) fn open(netns: &Path, resolv_conf: &Path) -> Result<Entry> {
        let file =
            File::open(netns).map_err(|e| Error::io(format!("opening {}", netns.display()), e))?;
        let etc = Path::new("/etc/resolv.conf");
        let resolv = if etc.exists() {
            let c = |p: &Path| {
                CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::InvalidSpec {
                    field: "task.id",
                    reason: format!("{} holds a NUL byte", p.display()),
                })
            };
            Some((c(resolv_conf)?, c(etc)?))
        } else {
            None
        };
        Ok(Entry {
            netns: file.into(),
            resolv,
        })
    }

    /// In the child, between fork and exec: joins the network namespace, then
    /// a private mount namespace with our resolv.conf. System calls only.
    pub(crate) fn enter(&self) -> io::Result<()> {
        // SAFETY: async-signal-safe system calls on descriptors and C strings
        // prepared before the fork.
        unsafe {
            if libc::setns(self.netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            let Some((ours, etc)) = &self.resolv else {
                return Ok(());
            };
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::mount(
                ours.as_ptr(),
                etc.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_is_created_once_and_removed() {
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: network namespaces need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netns");
        create(&path).unwrap();
        assert!(is_netns(&path));
        create(&path).unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&path).unwrap();
    }

    #[tokio::test]
    async fn a_task_on_an_overlay_runs_in_its_own_namespace_with_our_resolver() {
        use crate::Runtime;
        use swarm_core::types::{Driver, Network, NetworkAttachment, NetworkSpec, Task, TaskState};
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: a task's own network namespace needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rt = crate::ProcessRuntime::new(dir.path().join("rt")).unwrap();
        let out = dir.path().join("seen");
        let mut task = Task {
            id: "swm3-netns-task".into(),
            desired_state: TaskState::Running,
            ..Default::default()
        };
        task.networks.push(NetworkAttachment {
            network: std::sync::Arc::new(Network {
                id: "net1".into(),
                spec: NetworkSpec {
                    driver_config: Driver {
                        name: "overlay".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                ..Default::default()
            }),
            addresses: vec!["10.0.9.2/24".into()],
            aliases: vec![],
        });
        task.spec.container.command = vec![
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "cat /etc/resolv.conf > {0}; readlink /proc/self/ns/net >> {0}",
                out.display()
            ),
        ];
        rt.create(&task).await.unwrap();
        let created = rt.inspect("swm3-netns-task").await.unwrap();
        let netns = created.netns.clone().expect("a namespace from create on");
        assert!(is_netns(&netns));
        rt.start("swm3-netns-task").await.unwrap();
        assert_eq!(rt.wait("swm3-netns-task").await.unwrap(), 0);
        let seen = std::fs::read_to_string(&out).unwrap();
        assert!(seen.starts_with(RESOLV_CONF), "{seen}");
        // The process ran in the task's namespace, not ours.
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let theirs = format!(
            "net:[{}]",
            std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&netns).unwrap())
        );
        assert!(seen.ends_with(&format!("{theirs}\n")), "{seen} vs {theirs}");
        assert_ne!(ours.to_string_lossy(), theirs);
        // Our own resolv.conf is untouched.
        assert_ne!(
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            RESOLV_CONF
        );
        rt.remove("swm3-netns-task").await.unwrap();
        assert!(!netns.exists());
    }
}
