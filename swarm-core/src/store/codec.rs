//! The wire form of batches (raft entries).

use super::object::StoreAction;
use crate::error::{Error, Result};

/// Encodes a batch for a raft entry (compact binary, postcard).
pub fn encode_batch(batch: &[StoreAction]) -> Vec<u8> {
    postcard::to_stdvec(batch).expect("store actions always serialise")
}

/// Decodes a batch written by [`encode_batch`]. Malformed bytes are a `Codec` error.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<StoreAction>> {
    postcard::from_bytes(bytes).map_err(|e| Error::Codec {
        what: "batch",
        message: e.to_string(),
    })
}
