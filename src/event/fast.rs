//! The fast path of [`Event::from_json`]: one pass over the bytes that
//! checks the JSON syntax, compacts the nested objects and applies every
//! field rule, with no intermediate allocation.
//!
//! It only ever *accepts*: it returns `None` for anything it does not
//! handle (every invalid input, and a few valid but rare shapes such as
//! escapes in top-level keys or strings), and the caller then runs the
//! serde_json-based reference parser, which produces the exact error (or the
//! event). So the contract is one-sided and simple to test:
//! `parse(text) == Some(e)` implies `reference(text) == Ok(e)`.
//!
//! It is deliberately stricter than serde_json where being exact would cost
//! code: e.g. it refuses lone `\u` surrogates anywhere (the reference refuses
//! them in nested objects and in decoded strings only).

use uuid::Uuid;

use super::{
    parse_uuid, Event, Texts, FIELDS, MAX_ACTION_LEN, MAX_EVENT_JSON_BYTES, MAX_NESTING_DEPTH,
    SUPPORTED_VERSION,
};
use crate::time::Timestamp;

/// Keys of one nested object the fast path compares for repeats.
const MAX_KEYS_COMPARED: usize = 32;

// Indexes in `FIELDS`.
const ID: usize = 0;
const ACTION: usize = 1;
const ACTOR: usize = 2;
const TARGET: usize = 3;
const PAYLOAD: usize = 4;
const OCCURRED_AT: usize = 5;
const METADATA: usize = 6;
const VERSION: usize = 7;
const SCOPE: usize = 8;
const SUCCESS: usize = 9;
const REQUEST: usize = 10;

/// Parses a valid event, or returns `None` (see the module docs).
pub(super) fn parse(text: &str) -> Option<Event> {
    if text.len() > MAX_EVENT_JSON_BYTES {
        return None;
    }
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
        // The compact texts are never longer than the input.
        out: Texts::with_capacity(text.len()),
    };
    p.ws();
    p.eat(b'{')?;
    let mut seen = 0u16;
    let mut id = "";
    let mut occurred_at = "";
    let mut success = false;
    // Whether each optional object is present and not null.
    let (mut payload, mut metadata, mut scope, mut request) = (false, false, false, false);
    let mut scope_id = None;
    p.ws();
    if p.peek() == Some(b'}') {
        return None;
    }
    loop {
        p.ws();
        let key = p.plain_string()?;
        let field = FIELDS.iter().position(|f| f.as_bytes() == key)?;
        if seen & (1 << field) != 0 {
            return None;
        }
        seen |= 1 << field;
        p.ws();
        p.eat(b':')?;
        p.ws();
        match field {
            ID => id = p.plain_str()?,
            ACTION => {
                let action = p.plain_str()?;
                if !action_ok(action) {
                    return None;
                }
                p.out.push(super::ACTION, action);
            }
            OCCURRED_AT => occurred_at = p.plain_str()?,
            ACTOR => _ = p.party(Kind::Party, super::ACTOR)?,
            TARGET => _ = p.party(Kind::Party, super::TARGET)?,
            SCOPE => {
                if let Some(id) = p.or_null(|p| p.party(Kind::Party, super::SCOPE))? {
                    scope = true;
                    scope_id = id;
                }
            }
            REQUEST => request = p.or_null(|p| p.party(Kind::Request, super::REQUEST))?.is_some(),
            PAYLOAD => payload = p.or_null(|p| p.compact_object(super::PAYLOAD, None))?.is_some(),
            METADATA => metadata = p.or_null(|p| p.compact_object(super::METADATA, None))?.is_some(),
            VERSION => {
                // `1` (anything longer, like `10` or `1.0`, fails the
                // separator check below) or null.
                if !p.literal(b"1") {
                    p.or_null(|_| None::<()>)?;
                }
            }
            SUCCESS => {
                success = if p.literal(b"true") {
                    true
                } else if p.literal(b"false") {
                    false
                } else {
                    return None;
                };
            }
            _ => return None,
        }
        p.ws();
        match p.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    p.ws();
    if p.i != p.b.len() {
        return None;
    }
    // Every field that was present was checked when read.
    let required =
        (1 << ID) | (1 << ACTION) | (1 << ACTOR) | (1 << TARGET) | (1 << OCCURRED_AT) | (1 << SUCCESS);
    if seen & required != required {
        return None;
    }
    let id: Uuid = parse_uuid(id)?;
    let occurred_at = Timestamp::parse_rfc3339(occurred_at).ok()?;
    let mut out = p.out;
    if !payload {
        out.push(super::PAYLOAD, "{}");
    }
    if !metadata {
        out.push(super::METADATA, "{}");
    }
    let mut event = Event::new(id, occurred_at, SUPPORTED_VERSION, success, scope, request, out);
    event.scope_id = scope_id;
    Some(event)
}

/// The `id` member of a stored nested object, if the blob is a valid
/// object whose `id` is a string without escapes; `None` leaves the answer to
/// the reference (serde_json) reader.
pub(super) fn blob_id(blob: &str) -> Option<&str> {
    let mut p = Parser {
        s: blob,
        b: blob.as_bytes(),
        i: 0,
        // Only written to if the blob has whitespace.
        out: Texts::with_capacity(0),
    };
    let mut members = Members::default();
    let mut run = 0;
    p.object(1, &mut run, Some(&mut members))?;
    if p.i != p.b.len() {
        return None;
    }
    match members.id? {
        Member::Str {
            start,
            end,
            escaped: false,
        } => blob.get(start..end),
        _ => None,
    }
}

/// Same verdict as `check_action(s).is_ok()`.
fn action_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_ACTION_LEN
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
        && !s.split('.').any(str::is_empty)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `actor`, `target`, `scope`: string `id` and `type`, optional `name`.
    Party,
    /// `request`: string `id`.
    Request,
}

/// A member's value, as far as the `id`/`type`/`name` rules care.
#[derive(Clone, Copy)]
enum Member {
    /// A string: the span of its content (between the quotes).
    Str {
        start: usize,
        end: usize,
        escaped: bool,
    },
    Null,
    Other,
}

#[derive(Default)]
struct Members {
    id: Option<Member>,
    type_: Option<Member>,
    name: Option<Member>,
}

/// Nested objects are compacted into `out` as they are read: `run` (an
/// argument of the methods below) is the start of the input not yet copied,
/// and each run of input between whitespace (outside strings) is appended
/// as it ends.
struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    out: Texts,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn literal(&mut self, lit: &[u8]) -> bool {
        let found = self.b.get(self.i..self.i + lit.len()) == Some(lit);
        if found {
            self.i += lit.len();
        }
        found
    }

    /// `f`, or a `null` read as `None`.
    fn or_null<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.literal(b"null") {
            Some(None)
        } else {
            f(self).map(Some)
        }
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Skips whitespace inside a nested object, leaving it out of `out`.
    #[inline]
    fn ws_compact(&mut self, run: &mut usize) {
        if let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            // Whitespace bytes are ASCII, so both ends are char boundaries.
            self.out
                .text
                .push_str(self.s.get(*run..self.i).unwrap_or_default());
            self.ws();
            *run = self.i;
        }
    }

    /// A string without escapes, as raw bytes (for keys).
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        let (start, end, escaped) = self.string()?;
        if escaped {
            return None;
        }
        self.b.get(start..end)
    }

    /// A string without escapes.
    fn plain_str(&mut self) -> Option<&'a str> {
        let (start, end, escaped) = self.string()?;
        if escaped {
            return None;
        }
        self.s.get(start..end)
    }

    /// A string starting at `self.i`, with its escapes checked: returns the
    /// span of its content and whether it has escapes.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = find_special(self.b, self.i);
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some((start, self.i - 1, escaped));
                }
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                // A control character.
                _ => return None,
            }
        }
    }

    /// An escape at `self.i` (the backslash). A `\u` escape of a UTF-16
    /// surrogate must be a high-low pair.
    fn escape(&mut self) -> Option<()> {
        self.i += 1;
        match self.next()? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(()),
            b'u' => match self.hex4()? {
                0xD800..=0xDBFF => {
                    if self.literal(b"\\u") && matches!(self.hex4()?, 0xDC00..=0xDFFF) {
                        Some(())
                    } else {
                        None
                    }
                }
                0xDC00..=0xDFFF => None,
                _ => Some(()),
            },
            _ => None,
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let mut v = 0u16;
        for _ in 0..4 {
            let d = char::from(self.next()?).to_digit(16)?;
            v = (v << 4) | d as u16;
        }
        Some(v)
    }

    /// A nested object that must hold string `id` (and for parties string
    /// `type` and optional string `name`): its compact text becomes `part`.
    /// Returns where the `id` string's content lies in `out`, if it has no
    /// escapes and the object no whitespace to drop (so it was copied as is).
    fn party(&mut self, kind: Kind, part: usize) -> Option<Option<(usize, usize)>> {
        let mut members = Members::default();
        let (in_start, out_start, verbatim) = self.compact_object(part, Some(&mut members))?;
        let is_str = |m: Option<Member>| matches!(m, Some(Member::Str { .. }));
        if !is_str(members.id) {
            return None;
        }
        if kind == Kind::Party
            && !(is_str(members.type_)
                && matches!(members.name, None | Some(Member::Null | Member::Str { .. })))
        {
            return None;
        }
        Some(match members.id {
            Some(Member::Str {
                start,
                end,
                escaped: false,
            }) if verbatim => Some((start - in_start + out_start, end - in_start + out_start)),
            _ => None,
        })
    }

    /// An object starting at `self.i`: its compact text becomes `part`.
    /// Returns where the object started in the input and in `out`, and
    /// whether it was copied as is (it had no whitespace to drop).
    fn compact_object(&mut self, part: usize, members: Option<&mut Members>) -> Option<(usize, usize, bool)> {
        let (in_start, out_start) = (self.i, self.out.text.len());
        let mut run = self.i;
        self.object(1, &mut run, members)?;
        self.out.text.push_str(self.s.get(run..self.i)?);
        self.out.end(part, out_start);
        Some((in_start, out_start, run == in_start))
    }

    /// An object at nesting level `depth`; with `members`, records its `id`,
    /// `type` and `name` members (and refuses keys it cannot compare).
    fn object(&mut self, depth: usize, run: &mut usize, mut members: Option<&mut Members>) -> Option<()> {
        if depth > MAX_NESTING_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.ws_compact(run);
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Some(());
        }
        // The keys so far, to leave an object with a repeated key (or with
        // more keys than are compared here, or an escaped one) to the
        // reference parser, which refuses a repeated key.
        let mut seen = [(0usize, 0usize); MAX_KEYS_COMPARED];
        let mut count = 0;
        loop {
            let (kstart, kend, kescaped) = self.string()?;
            let key = self.b.get(kstart..kend)?;
            if kescaped
                || count == MAX_KEYS_COMPARED
                || seen[..count].iter().any(|&(a, z)| self.b.get(a..z) == Some(key))
            {
                return None;
            }
            seen[count] = (kstart, kend);
            count += 1;
            self.ws_compact(run);
            self.eat(b':')?;
            self.ws_compact(run);
            match members.as_deref_mut() {
                None => self.value(depth, run)?,
                Some(m) => {
                    if kescaped {
                        // Might decode to `id`, `type` or `name`.
                        return None;
                    }
                    let slot = match self.b.get(kstart..kend)? {
                        b"id" => Some(&mut m.id),
                        b"type" => Some(&mut m.type_),
                        b"name" => Some(&mut m.name),
                        _ => None,
                    };
                    let value = match self.peek()? {
                        b'"' => {
                            let (start, end, escaped) = self.string()?;
                            Member::Str { start, end, escaped }
                        }
                        b'n' if self.literal(b"null") => Member::Null,
                        _ => {
                            self.value(depth, run)?;
                            Member::Other
                        }
                    };
                    if let Some(slot) = slot {
                        if slot.is_some() {
                            return None;
                        }
                        *slot = Some(value);
                    }
                }
            }
            self.ws_compact(run);
            match self.next()? {
                b',' => self.ws_compact(run),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize, run: &mut usize) -> Option<()> {
        if depth > MAX_NESTING_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        self.ws_compact(run);
        if self.peek() == Some(b']') {
            self.i += 1;
            return Some(());
        }
        loop {
            self.value(depth, run)?;
            self.ws_compact(run);
            match self.next()? {
                b',' => self.ws_compact(run),
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// Any value inside a container at level `depth`.
    fn value(&mut self, depth: usize, run: &mut usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object(depth + 1, run, None),
            b'[' => self.array(depth + 1, run),
            b't' => self.literal(b"true").then_some(()),
            b'f' => self.literal(b"false").then_some(()),
            b'n' => self.literal(b"null").then_some(()),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, within the f64
    /// range (the same range check as `compact`).
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        let mut exp = false;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            exp = true;
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digit()?;
            self.digits();
        }
        if exp || self.i - start > 15 {
            let finite = self
                .s
                .get(start..self.i)?
                .parse::<f64>()
                .map(f64::is_finite)
                .unwrap_or(false);
            if !finite {
                return None;
            }
        }
        Some(())
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

/// Index of the first `"`, `\` or control character (below 0x20) in `b` at
/// or after `i` (`b.len()` if none), eight bytes at a time.
fn find_special(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = LO * b'"' as u64;
    const BACKSLASHES: u64 = LO * b'\\' as u64;
    const SPACES: u64 = LO * 0x20;
    while let Some(chunk) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let x = u64::from_le_bytes(chunk);
        let q = x ^ QUOTES;
        let e = x ^ BACKSLASHES;
        // Each term flags (in bit 7 of a byte) a zero byte of `q` or `e`, or
        // a byte of `x` below 0x20; borrows may also flag bytes above a true
        // match, never below one, so the lowest flagged byte is a true match.
        let found =
            ((q.wrapping_sub(LO) & !q) | (e.wrapping_sub(LO) & !e) | (x.wrapping_sub(SPACES) & !x)) & HI;
        if found != 0 {
            return i + (found.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            return i;
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests;
