//! Field checks and decoding shared by both parsers: present/required,
//! types, strings, ids, actions, versions, and the compact form of nested
//! objects.

use std::borrow::Cow;

use serde_json::value::RawValue;
use uuid::Uuid;

use super::*;

// ---------------------------------------------------------------------------
// Field helpers

/// `None` for an absent field or an explicit `null`.
pub(super) fn present(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

pub(super) fn required<'a>(raw: Option<&'a RawValue>, field: &str) -> Result<&'a RawValue, EventError> {
    raw.ok_or_else(|| EventError::at(field, "missing"))
}

pub(super) fn json_type(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

pub(super) fn type_error(field: &str, expected: &str, raw: Option<&RawValue>) -> EventError {
    let got = raw.map_or("nothing", json_type);
    EventError::at(field, format_args!("must be {expected}, got {got}"))
}

/// Decodes a JSON string, borrowing when it has no escapes.
pub(super) fn string<'a>(raw: &'a RawValue, field: &str) -> Result<Cow<'a, str>, EventError> {
    let text = raw.get();
    let inner = match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if text.len() >= 2 => inner,
        _ => return Err(type_error(field, "a string", Some(raw))),
    };
    if !inner.contains('\\') {
        return Ok(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text)
        .map(Cow::Owned)
        .map_err(|e| EventError::at(field, format_args!("invalid string: {e}")))
}

/// A UUID in the hyphenated 8-4-4-4-12 form, any version, any hex case.
pub(super) fn parse_uuid(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok()
}

pub(super) fn check_action(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    if let Some((i, c)) = s
        .char_indices()
        .find(|(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
    {
        return Err(format!(
            "invalid character {c:?} at byte {i} in {} (allowed: a-z, 0-9, '_', '-', '.')",
            quote(s)
        ));
    }
    if s.len() > MAX_ACTION_LEN {
        return Err(format!(
            "{} characters long, longer than the {MAX_ACTION_LEN}-character limit",
            s.len()
        ));
    }
    if !s.as_bytes()[0].is_ascii_lowercase() {
        return Err(format!("must start with a letter a-z: {}", quote(s)));
    }
    if s.split('.').any(str::is_empty) {
        return Err(format!("empty segment between dots in {}", quote(s)));
    }
    Ok(())
}

pub(super) fn parse_version(raw: &RawValue) -> Result<u32, EventError> {
    let text = raw.get();
    if json_type(raw) != "number" {
        return Err(type_error("version", "an integer", Some(raw)));
    }
    if text.contains(['.', 'e', 'E']) {
        return Err(EventError::at(
            "version",
            format_args!("must be an integer, got {}", short_name(text)),
        ));
    }
    if text == "1" {
        return Ok(SUPPORTED_VERSION);
    }
    Err(EventError::at(
        "version",
        format_args!(
            "unsupported version {} (only {SUPPORTED_VERSION} is supported)",
            short_name(text)
        ),
    ))
}

/// Checks that `raw` is an object and returns its compact text.
pub(super) fn object(raw: &RawValue, field: &str) -> Result<String, EventError> {
    if !raw.get().starts_with('{') {
        return Err(type_error(field, "an object", Some(raw)));
    }
    compact(raw.get(), field)
}

/// Removes whitespace outside strings in one pass, checking the nesting
/// depth, refusing a repeated key in one object (which has no RFC 8785
/// form, so no leaf hash) and a number outside the double range.
/// `s` is valid JSON (serde_json checked it while reading the top level).
pub(super) fn compact(s: &str, field: &str) -> Result<String, EventError> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut run_start = 0;
    let mut depth = 0usize;
    // The keys of each open object (`None` for an array), and whether the
    // next string is a key.
    let mut keys: Vec<Option<Vec<Cow<'_, str>>>> = Vec::new();
    let mut expect_key = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                // Skip the string, honouring escapes.
                let start = i;
                i += 1;
                loop {
                    i = find_quote_or_backslash(b, i);
                    match b.get(i) {
                        Some(b'\\') if b.get(i + 1) == Some(&b'u') => {
                            i = check_unicode_escape(b, i).map_err(|why| EventError::at(field, why))?;
                        }
                        Some(b'\\') => i += 2,
                        _ => break,
                    }
                }
                if let (true, Some(Some(seen))) = (expect_key, keys.last_mut()) {
                    let raw = s.get(start + 1..i).unwrap_or_default();
                    let key: Cow<'_, str> = match raw.contains('\\') {
                        false => Cow::Borrowed(raw),
                        true => Cow::Owned(
                            serde_json::from_str::<String>(s.get(start..=i).unwrap_or_default())
                                .unwrap_or_else(|_| raw.to_owned()),
                        ),
                    };
                    if seen.contains(&key) {
                        let shown: String = key.chars().take(40).collect();
                        // A member of the field's own object is named as
                        // the top level's repeated fields are.
                        if depth == 1 {
                            return Err(EventError::at(
                                &format!("{field}.{shown}"),
                                "appears more than once",
                            ));
                        }
                        return Err(EventError::at(
                            field,
                            format_args!(
                                "repeated key {shown:?} in one nested object: JSON with a repeated key has \
                                 no canonical form (RFC 8785), and readers disagree on which value counts"
                            ),
                        ));
                    }
                    seen.push(key);
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(EventError::at(
                        field,
                        format_args!("nested deeper than {MAX_NESTING_DEPTH} levels"),
                    ));
                }
                expect_key = b[i] == b'{';
                keys.push(expect_key.then(Vec::new));
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                keys.pop();
                expect_key = false;
            }
            b',' => expect_key = matches!(keys.last(), Some(Some(_))),
            b'-' | b'0'..=b'9' => {
                // A number: refuse one outside the f64 range, which common
                // JSON parsers (serde_json among them) cannot read back.
                let end = b[i..]
                    .iter()
                    .position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .map_or(b.len(), |n| i + n);
                let token = s.get(i..end).unwrap_or_default();
                if token.len() > 15 || token.bytes().any(|c| c == b'e' || c == b'E') {
                    let finite = token.parse::<f64>().map(f64::is_finite).unwrap_or(false);
                    if !finite {
                        let shown: String = token.chars().take(40).collect();
                        return Err(EventError::at(
                            field,
                            format_args!("number out of range: {shown}"),
                        ));
                    }
                }
                i = end;
                continue;
            }
            b' ' | b'\t' | b'\n' | b'\r' => {
                // Whitespace bytes are ASCII, so both ends are char boundaries.
                out.push_str(s.get(run_start..i).unwrap_or_default());
                run_start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(s.get(run_start..).unwrap_or_default());
    Ok(out)
}

/// `b[i..]` starts with a `\u` escape (syntax already checked by
/// serde_json). A UTF-16 surrogate must come as a high-low pair: a lone one
/// is not Unicode, and most JSON readers (serde_json among them) refuse it.
/// Returns the index after the escape (or after the pair).
pub(super) fn check_unicode_escape(b: &[u8], i: usize) -> Result<usize, &'static str> {
    let unit = |at: usize| -> Option<u16> {
        let hex = b.get(at + 2..at + 6)?;
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let first = unit(i).ok_or("invalid \\u escape")?;
    match first {
        0xD800..=0xDBFF => {
            let pair = (b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u'))
                .then(|| unit(i + 6))
                .flatten();
            match pair {
                Some(0xDC00..=0xDFFF) => Ok(i + 12),
                _ => Err("lone UTF-16 surrogate in a \\u escape"),
            }
        }
        0xDC00..=0xDFFF => Err("lone UTF-16 surrogate in a \\u escape"),
        _ => Ok(i + 6),
    }
}

/// Index of the first `"` or `\` in `b` at or after `i` (`b.len()` if none),
/// eight bytes at a time.
pub(super) fn find_quote_or_backslash(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = LO * b'"' as u64;
    const BACKSLASHES: u64 = LO * b'\\' as u64;
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let x = u64::from_le_bytes(chunk);
        let q = x ^ QUOTES;
        let e = x ^ BACKSLASHES;
        // A byte of `q` or `e` is zero where `x` has a quote or a backslash;
        // the lowest flagged byte is always a true match.
        let found = ((q.wrapping_sub(LO) & !q) | (e.wrapping_sub(LO) & !e)) & HI;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' {
            return i;
        }
        i += 1;
    }
    b.len()
}
