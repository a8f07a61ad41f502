//! Request bodies parsed strictly: malformed JSON, wrong types and fields the
//! Engine API does not have are refused with a message naming them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::ApiError;

/// Parses a request body as `T`, refusing malformed JSON, wrong types and
/// fields the Engine API does not have (Docker's own decoder would drop them
/// silently; a typo then changes nothing without a word).
pub fn strict<T: DeserializeOwned + Serialize>(body: &[u8]) -> Result<T, ApiError> {
    let raw: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON in the request body: {e}")))?;
    let parsed: T = serde_json::from_value(raw.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
    let back = serde_json::to_value(&parsed).unwrap_or(Value::Null);
    if let Some(path) = unknown_field(&raw, &back, String::new()) {
        return Err(ApiError::bad_request(format!(
            "unknown field {path:?} in the request body"
        )));
    }
    Ok(parsed)
}

/// The first field of `raw` that `known` (its parsed and re-written form) lost.
fn unknown_field(raw: &Value, known: &Value, at: String) -> Option<String> {
    match (raw, known) {
        (Value::Object(r), Value::Object(k)) => r.iter().find_map(|(key, v)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match k.get(key) {
                None if v.is_null() || is_empty(v) => None,
                None => Some(path),
                Some(kv) => unknown_field(v, kv, path),
            }
        }),
        (Value::Array(r), Value::Array(k)) => r
            .iter()
            .zip(k)
            .enumerate()
            .find_map(|(i, (rv, kv))| unknown_field(rv, kv, format!("{at}[{i}]"))),
        _ => None,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use bollard::models as dm;

    use super::*;

    #[test]
    fn unknown_fields_are_named() {
        let e = strict::<dm::NodeSpec>(br#"{"Role":"manager","Availabilty":"drain"}"#).unwrap_err();
        assert!(e.message.contains("Availabilty"), "{}", e.message);
        let e = strict::<dm::ServiceSpec>(
            br#"{"Name":"a","TaskTemplate":{"ContainerSpec":{"Imag":"x"}}}"#,
        )
        .unwrap_err();
        assert!(
            e.message.contains("TaskTemplate.ContainerSpec.Imag"),
            "{}",
            e.message
        );
        assert!(strict::<dm::NodeSpec>(br#"{"Role":"manager","Labels":null}"#).is_ok());
    }

    #[test]
    fn malformed_json_and_wrong_types_are_bad_requests() {
        let e = strict::<dm::ServiceSpec>(b"{not json").unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        let e = strict::<dm::ServiceSpec>(br#"{"Name": 5}"#).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
    }
}
