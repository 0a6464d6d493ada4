//! Semantic comparison of stored JSON texts.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::*;

// ---------------------------------------------------------------------------
// Semantic comparison of stored JSON

/// JSON value equality ignoring key order and formatting. Integers compare by
/// their exact digits (no float rounding), other numbers by value. On
/// objects with repeated keys the last one counts, as in serde_json.
pub(super) fn json_eq(a: &str, b: &str, depth: usize) -> bool {
    if a == b {
        return true;
    }
    // Stored blobs are at most MAX_NESTING_DEPTH deep; never recurse without bound.
    if depth > MAX_NESTING_DEPTH + 1 {
        return false;
    }
    match (a.as_bytes().first(), b.as_bytes().first()) {
        (Some(b'{'), Some(b'{')) => {
            let (Ok(ma), Ok(mb)) = (
                serde_json::from_str::<BTreeMap<String, &RawValue>>(a),
                serde_json::from_str::<BTreeMap<String, &RawValue>>(b),
            ) else {
                return false;
            };
            ma.len() == mb.len()
                && ma
                    .iter()
                    .all(|(k, va)| mb.get(k).is_some_and(|vb| json_eq(va.get(), vb.get(), depth + 1)))
        }
        (Some(b'['), Some(b'[')) => {
            let (Ok(va), Ok(vb)) = (
                serde_json::from_str::<Vec<&RawValue>>(a),
                serde_json::from_str::<Vec<&RawValue>>(b),
            ) else {
                return false;
            };
            va.len() == vb.len()
                && va
                    .iter()
                    .zip(&vb)
                    .all(|(x, y)| json_eq(x.get(), y.get(), depth + 1))
        }
        (Some(b'"'), Some(b'"')) => {
            match (
                serde_json::from_str::<Cow<'_, str>>(a),
                serde_json::from_str::<Cow<'_, str>>(b),
            ) {
                (Ok(x), Ok(y)) => x == y,
                _ => false,
            }
        }
        (Some(x), Some(y)) if is_number_start(*x) && is_number_start(*y) => {
            let is_int = |s: &str| !s.contains(['.', 'e', 'E']);
            if is_int(a) || is_int(b) {
                // Text differs: for integers that means a different value
                // (JSON forbids leading zeros), or a float vs an integer.
                false
            } else {
                matches!((a.parse::<f64>(), b.parse::<f64>()), (Ok(x), Ok(y)) if x == y)
            }
        }
        _ => false,
    }
}

pub(super) fn is_number_start(b: u8) -> bool {
    b == b'-' || b.is_ascii_digit()
}
