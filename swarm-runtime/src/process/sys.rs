//! Operating-system helpers of the process runtime: /proc, users, signals.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Group, Uid, User};

use crate::error::{Error, Result};

/// What /proc says about a pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Start time in clock ticks after boot: with the pid, it names one process
    /// for the life of the system, since pids are reused.
    pub start_ticks: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub(crate) fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may hold spaces or `)`:
    // the fields after it start after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

/// Whether `pid` is still the process started at `start_ticks` and has not exited
/// (a zombie has exited).
pub(crate) fn is_alive(pid: i32, start_ticks: u64) -> bool {
    pid > 0
        && proc_stat(pid)
            .is_some_and(|s| s.start_ticks == start_ticks && !matches!(s.state, 'Z' | 'X'))
}

/// Finds `program` the way `execvp` would: a name holding a `/` is used as
/// given; a bare name is looked up in the directories of `path` (an empty entry
/// is the current directory, resolved against `cwd`). `None` when no executable
/// file has that name.
///
/// The runtime resolves the program itself so the child can be started with
/// `posix_spawn` (std falls back to `fork` when a changed `PATH` must be
/// searched in the child, and forking a large multi-threaded host copies its
/// whole page table: milliseconds per task).
pub(crate) fn find_program(program: &str, path: &str, cwd: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    if program.is_empty() {
        return None;
    }
    path.split(':').find_map(|dir| {
        let dir = if dir.is_empty() { cwd } else { Path::new(dir) };
        let candidate = dir.join(program);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

/// Parses a stop signal: `SIGTERM`, `TERM`, `term` or `15`. Empty means SIGTERM.
pub(crate) fn parse_signal(s: &str) -> Result<Signal> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(Signal::SIGTERM);
    }
    let bad = || Error::InvalidSpec {
        field: "container.stop_signal",
        reason: format!("unknown signal {s:?}"),
    };
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| bad())
}

/// Resolves a spec's `user` (`name`, `uid`, `name:group`, `uid:gid`) to ids, using
/// the node's user database. The group defaults to the user's primary group.
pub(crate) fn resolve_user(spec: &str) -> Result<(Uid, Gid)> {
    let bad = |reason: String| Error::InvalidSpec {
        field: "container.user",
        reason,
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => {
            let uid = Uid::from_raw(n);
            let primary = User::from_uid(uid).ok().flatten().map(|u| u.gid);
            (uid, primary)
        }
        Err(_) => match User::from_name(user) {
            Ok(Some(u)) => (u.uid, Some(u.gid)),
            _ => return Err(bad(format!("unknown user {user:?}"))),
        },
    };
    let gid = match group {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => Gid::from_raw(n),
            Err(_) => match Group::from_name(g) {
                Ok(Some(grp)) => grp.gid,
                _ => return Err(bad(format!("unknown group {g:?}"))),
            },
        },
        None => primary.unwrap_or_else(|| Gid::from_raw(uid.as_raw())),
    };
    Ok((uid, gid))
}

/// The exit code Docker reports: the code, or 128 + N when killed by signal N.
pub(crate) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => 255,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let text = "42 (a ) b) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 777 1000 10";
        let s = parse_stat(text).unwrap();
        assert_eq!(s.state, 'S');
        assert_eq!(s.start_ticks, 777);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive() {
        let me = std::process::id() as i32;
        let stat = proc_stat(me).unwrap();
        assert!(is_alive(me, stat.start_ticks));
        assert!(!is_alive(me, stat.start_ticks + 1));
        assert!(!is_alive(0, 0));
    }

    #[test]
    fn finds_programs_like_execvp() {
        let dir = tempfile::tempdir().unwrap();
        let sh = find_program("sh", "/nonexistent:/bin:/usr/bin", dir.path()).unwrap();
        assert!(sh.ends_with("sh") && sh.is_absolute(), "{sh:?}");
        assert_eq!(
            find_program("./x", "/bin", dir.path()),
            Some(PathBuf::from("./x"))
        );
        assert_eq!(
            find_program("no-such-program-here", "/bin", dir.path()),
            None
        );
        // Not executable: skipped.
        std::fs::write(dir.path().join("data"), "x").unwrap();
        assert_eq!(find_program("data", "", dir.path()), None);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("data"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_eq!(
            find_program("data", "/nonexistent:", dir.path()),
            Some(dir.path().join("data"))
        );
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGINT").unwrap(), Signal::SIGINT);
        assert_eq!(parse_signal("hup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGNOPE").is_err());
    }

    #[test]
    fn users() {
        assert_eq!(
            resolve_user("0").unwrap(),
            (Uid::from_raw(0), Gid::from_raw(0))
        );
        assert_eq!(
            resolve_user("root:0").unwrap(),
            (Uid::from_raw(0), Gid::from_raw(0))
        );
        assert_eq!(resolve_user("1234:5678").unwrap().1, Gid::from_raw(5678));
        assert!(resolve_user("no-such-user-here").is_err());
    }
}
