//! The small values every conversion shares: times, durations, numbers that
//! must not be negative, label maps and the strings of bollard's enums.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use swarm_core::Timestamp;

use crate::api::ApiError;

/// The JSON string of a bollard enum (`"drain"`, `"on-failure"`, ...).
pub(super) fn enum_str<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A time as the Engine API writes it (RFC 3339 with nanoseconds).
pub fn time(t: Timestamp) -> String {
    t.to_string()
}

/// A duration as the Engine API writes it: nanoseconds.
pub(super) fn nanos(d: Duration) -> i64 {
    d.as_nanos().min(i64::MAX as u128) as i64
}

/// A duration the Engine API sent in nanoseconds; a negative one is refused,
/// naming `field`.
pub(super) fn duration(field: &str, ns: Option<i64>) -> Result<Option<Duration>, ApiError> {
    match ns {
        None => Ok(None),
        Some(n) if n < 0 => Err(ApiError::bad_request(format!(
            "{field}: a duration must not be negative (got {n}ns)"
        ))),
        Some(n) => Ok(Some(Duration::from_nanos(n as u64))),
    }
}

/// A count the Engine API sent; a negative one is refused, naming `field`.
pub(super) fn unsigned(field: &str, v: Option<i64>) -> Result<Option<u64>, ApiError> {
    match v {
        None => Ok(None),
        Some(n) if n < 0 => Err(ApiError::bad_request(format!(
            "{field}: must not be negative (got {n})"
        ))),
        Some(n) => Ok(Some(n as u64)),
    }
}

/// Labels or options, absent or not, as the object model keeps them.
pub(super) fn map(m: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    m.unwrap_or_default().into_iter().collect()
}
