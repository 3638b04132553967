//! Cursor pagination: opaque cursors over a stable sort key, with a maximum page size.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::util::{b64url_decode, b64url_encode};

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 200;

/// Validates the `limit` query parameter.
pub fn page_size(limit: Option<i64>) -> Result<i64, Error> {
    match limit {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
        Some(_) => Err(Error::invalid_query(
            "limit",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        )),
    }
}

/// Encodes the sort key of the last item of a page.
pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    b64url_encode(&serde_json::to_vec(key).unwrap_or_default())
}

/// Decodes a cursor produced by [`encode_cursor`]; anything else is a 400 on `cursor`.
pub fn decode_cursor<K: DeserializeOwned>(cursor: Option<&str>) -> Result<Option<K>, Error> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    b64url_decode(cursor)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| Error::invalid_query("cursor", "not a cursor returned by this list"))
}

/// Splits a result fetched with `limit + 1` rows into a page and its next cursor.
pub fn paginate<R, T, K: Serialize>(
    mut rows: Vec<R>,
    limit: i64,
    key: impl Fn(&R) -> K,
    item: impl Fn(R) -> T,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|r| encode_cursor(&key(r)))
    } else {
        None
    };
    (rows.into_iter().map(item).collect(), next_cursor)
}
