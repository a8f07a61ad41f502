//! Timestamps and the injected clock.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time: seconds and nanoseconds since the Unix epoch (UTC), as in
/// protobuf's `Timestamp`. Stored in objects so that applying a replicated batch is
/// deterministic: the proposer stamps times, the state machine never reads a clock.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp {
    /// Whole seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds within the second, 0..1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// The epoch; also the value of an unset timestamp.
    pub const ZERO: Timestamp = Timestamp {
        seconds: 0,
        nanos: 0,
    };

    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// Whether the timestamp is unset.
    pub fn is_zero(&self) -> bool {
        *self == Timestamp::ZERO
    }

    /// This timestamp moved forward by `d`.
    pub fn add(&self, d: Duration) -> Timestamp {
        let total = self.nanos as u64 + d.subsec_nanos() as u64;
        Timestamp {
            seconds: self.seconds + d.as_secs() as i64 + (total / 1_000_000_000) as i64,
            nanos: (total % 1_000_000_000) as u32,
        }
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(&self, earlier: Timestamp) -> Duration {
        let a = self.seconds as i128 * 1_000_000_000 + self.nanos as i128;
        let b = earlier.seconds as i128 * 1_000_000_000 + earlier.nanos as i128;
        if a <= b {
            Duration::ZERO
        } else {
            Duration::from_nanos((a - b).min(u64::MAX as i128) as u64)
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp {
                seconds: d.as_secs() as i64,
                nanos: d.subsec_nanos(),
            },
            Err(e) => {
                let d = e.duration();
                let mut seconds = -(d.as_secs() as i64);
                let mut nanos = d.subsec_nanos();
                if nanos > 0 {
                    seconds -= 1;
                    nanos = 1_000_000_000 - nanos;
                }
                Timestamp { seconds, nanos }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        if t.seconds >= 0 {
            UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(t.seconds.unsigned_abs())
                + Duration::from_nanos(t.nanos as u64)
        }
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with nanoseconds, the form the Docker API uses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.seconds.div_euclid(86_400);
        let secs = self.seconds.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60,
            self.nanos
        )
    }
}

impl std::str::FromStr for Timestamp {
    type Err = crate::Error;

    /// RFC 3339 (`2006-01-02T15:04:05.999999999Z`, or with a `+hh:mm`/`-hh:mm`
    /// offset), the form Docker prints; the fraction is optional, up to 9 digits.
    fn from_str(s: &str) -> Result<Timestamp, crate::Error> {
        let bad = || crate::Error::InvalidArgument(format!("{s:?} is not an RFC 3339 time"));
        let num = |r: std::ops::Range<usize>| -> Result<i64, crate::Error> {
            let part = s.get(r).ok_or_else(bad)?;
            if part.bytes().all(|b| b.is_ascii_digit()) {
                part.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return Err(bad());
        }
        if b[13] != b':' || b[16] != b':' {
            return Err(bad());
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if b[i] == b'.' {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            if end == start || end - start > 9 {
                return Err(bad());
            }
            nanos = num(start..end)? as u32 * 10u32.pow((9 - (end - start)) as u32);
            i = end;
        }
        let offset = match &s[i..] {
            "Z" | "z" => 0,
            o if o.len() == 6
                && matches!(o.as_bytes()[0], b'+' | b'-')
                && o.as_bytes()[3] == b':' =>
            {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                let v = oh * 3600 + om * 60;
                if o.starts_with('-') { -v } else { v }
            }
            _ => return Err(bad()),
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        Ok(Timestamp {
            seconds: days * 86_400 + h * 3600 + mi * 60 + sec - offset,
            nanos,
        })
    }
}

/// A (year, month, day) civil date to days since 1970-01-01 (the inverse of
/// [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a (year, month, day) civil date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A source of the current time, injected so that logic can be tested with a manual
/// clock instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicI64,
}

impl ManualClock {
    /// A manual clock standing at `t`.
    pub fn new(t: Timestamp) -> ManualClock {
        ManualClock {
            nanos: AtomicI64::new(t.seconds * 1_000_000_000 + t.nanos as i64),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.nanos.fetch_add(d.as_nanos() as i64, Ordering::SeqCst);
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.nanos
            .store(t.seconds * 1_000_000_000 + t.nanos as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let n = self.nanos.load(Ordering::SeqCst);
        Timestamp {
            seconds: n.div_euclid(1_000_000_000),
            nanos: n.rem_euclid(1_000_000_000) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let t = Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        };
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(
            Timestamp::ZERO.to_string(),
            "1970-01-01T00:00:00.000000000Z"
        );
    }

    #[test]
    fn parses_rfc3339_back() {
        for t in [
            Timestamp::ZERO,
            Timestamp {
                seconds: 1_700_000_000,
                nanos: 5,
            },
            Timestamp {
                seconds: 951_782_400, // 2000-02-29
                nanos: 999_999_999,
            },
            Timestamp {
                seconds: -86_401,
                nanos: 0,
            },
        ] {
            assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        }
        let docker: Timestamp = "2023-11-14T22:13:20.5Z".parse().unwrap();
        assert_eq!((docker.seconds, docker.nanos), (1_700_000_000, 500_000_000));
        let offset: Timestamp = "2023-11-15T00:13:20+02:00".parse().unwrap();
        assert_eq!((offset.seconds, offset.nanos), (1_700_000_000, 0));
        for bad in [
            "",
            "yesterday",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20.1234567890Z",
            "2023-11-14T22:1a:20Z",
            "2023-11-14T22:13:20+0200",
            "２023-11-14T22:13:20Z",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
    }

    #[test]
    fn converts_with_system_time_both_ways() {
        let now = SystemTime::now();
        assert_eq!(SystemTime::from(Timestamp::from(now)), now);
        let before = UNIX_EPOCH - Duration::from_millis(1500);
        let t = Timestamp::from(before);
        assert_eq!(
            t,
            Timestamp {
                seconds: -2,
                nanos: 500_000_000
            }
        );
        assert_eq!(SystemTime::from(t), before);
    }

    #[test]
    fn add_and_since() {
        let t = Timestamp {
            seconds: 10,
            nanos: 900_000_000,
        };
        let u = t.add(Duration::from_millis(200));
        assert_eq!(
            u,
            Timestamp {
                seconds: 11,
                nanos: 100_000_000
            }
        );
        assert_eq!(u.since(t), Duration::from_millis(200));
        assert_eq!(t.since(u), Duration::ZERO);
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp {
            seconds: 5,
            nanos: 0,
        });
        assert_eq!(c.now().seconds, 5);
        c.advance(Duration::from_secs(3));
        assert_eq!(c.now().seconds, 8);
        c.set(Timestamp::ZERO);
        assert!(c.now().is_zero());
    }
}
