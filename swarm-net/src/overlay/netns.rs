//! Named network namespaces (bind mounts, like `ip netns add`) and running code on a
//! thread that joined one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use super::OverlayError;

/// `f_type` of the nsfs file system that namespace files live on.
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// Whether `path` is a bind mount of a namespace (an existing named namespace).
pub(crate) fn is_netns(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    // SAFETY: fstatfs only writes into the zeroed struct we own.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    rc == 0 && st.f_type as i64 == NSFS_MAGIC
}

/// Creates the named network namespace `dir/name` with its loopback up; an existing one
/// is kept (idempotent). A fresh namespace is entered by a dedicated thread (unshare
/// changes only the calling thread) and kept alive by the bind mount.
pub(crate) fn create(dir: &Path, name: &str) -> Result<PathBuf, OverlayError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| OverlayError::io(format!("creating {}", dir.display()), e))?;
    let path = dir.join(name);
    if is_netns(&path) {
        return Ok(path);
    }
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| OverlayError::io(format!("creating {}", path.display()), e))?;
    let target = path.clone();
    let made = std::thread::spawn(move || -> Result<(), OverlayError> {
        unshare(CloneFlags::CLONE_NEWNET)
            .map_err(|e| OverlayError::io("unshare(CLONE_NEWNET)", e.into()))?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| OverlayError::io(format!("bind-mounting {}", target.display()), e.into()))?;
        loopback_up()
    })
    .join()
    .unwrap_or_else(|_| {
        Err(OverlayError::io(
            "network namespace thread",
            io::Error::other("panicked"),
        ))
    });
    if let Err(e) = made {
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    tracing::debug!(netns = %path.display(), "network namespace created");
    Ok(path)
}

/// Removes the named namespace at `path` (idempotent). The namespace itself goes away
/// when nothing else (a process, a socket, another mount) holds it.
pub(crate) fn remove(path: &Path) -> Result<(), OverlayError> {
    if !path.exists() {
        return Ok(());
    }
    if is_netns(path) {
        umount2(path, MntFlags::MNT_DETACH)
            .map_err(|e| OverlayError::io(format!("unmounting {}", path.display()), e.into()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OverlayError::io(format!("removing {}", path.display()), e)),
    }
}

/// Opens a namespace file, `NotFound`-style errors naming it.
pub(crate) fn open(path: &Path) -> Result<File, OverlayError> {
    File::open(path).map_err(|e| OverlayError::io(format!("opening {}", path.display()), e))
}

/// Runs `f` on a new thread that joined the network namespace at `path` (the caller's
/// threads stay where they are).
pub(crate) fn run_in<T, F>(path: &Path, f: F) -> Result<T, OverlayError>
where
    T: Send,
    F: FnOnce() -> Result<T, OverlayError> + Send,
{
    let ns = open(path)?;
    run_in_ns(&ns, &path.display().to_string(), f)
}

/// Runs `f` on a new thread that joined the network namespace `ns` (an open namespace
/// file, named `what` in errors).
pub(crate) fn run_in_ns<T, F>(ns: &File, what: &str, f: F) -> Result<T, OverlayError>
where
    T: Send,
    F: FnOnce() -> Result<T, OverlayError> + Send,
{
    std::thread::scope(|s| {
        s.spawn(move || {
            setns(ns, CloneFlags::CLONE_NEWNET)
                .map_err(|e| OverlayError::io(format!("entering {what}"), e.into()))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(OverlayError::io(
                "network namespace thread",
                io::Error::other("panicked"),
            ))
        })
    })
}

/// Brings `lo` up in the calling thread's network namespace.
fn loopback_up() -> Result<(), OverlayError> {
    // SAFETY: plain socket/ioctl calls on a struct we own; the fd is closed below.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(OverlayError::io("socket", io::Error::last_os_error()));
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
            return Err(OverlayError::io("bringing lo up", err));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_namespace_is_created_once_with_loopback_up_and_removed() {
        if !nix::unistd::geteuid().is_root() {
            println!("skipped: named network namespaces need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "t1").unwrap();
        assert!(is_netns(&path));
        assert_eq!(create(dir.path(), "t1").unwrap(), path);
        // Loopback is up inside: a connection to 127.0.0.1 works there.
        let echoed = run_in(&path, || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| OverlayError::io("bind", e))?;
            let addr = listener
                .local_addr()
                .map_err(|e| OverlayError::io("addr", e))?;
            std::net::TcpStream::connect(addr).map_err(|e| OverlayError::io("connect", e))?;
            Ok(addr)
        })
        .unwrap();
        assert!(echoed.ip().is_loopback());
        // The test's own namespace was not touched: the file is a different namespace.
        let ours = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
        let theirs = std::fs::metadata(&path).unwrap();
        assert_ne!(
            std::os::unix::fs::MetadataExt::ino(&ours),
            std::os::unix::fs::MetadataExt::ino(&theirs)
        );
        remove(&path).unwrap();
        assert!(!path.exists());
        remove(&path).unwrap();
        assert!(!is_netns(&path));
    }
}
