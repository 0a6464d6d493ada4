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
mod tests {
    //! The fast path against the reference parser, on generated hostile
    //! events: `parse` may only accept what the reference accepts, with the
    //! same result, and must accept every valid event without a backslash.

    use proptest::prelude::*;

    use super::super::{blob_id_reference, Event};

    fn pick(items: &'static [&'static str]) -> BoxedStrategy<String> {
        prop::sample::select(items).prop_map(str::to_string).boxed()
    }

    /// Whitespace between tokens (mostly none).
    fn ws() -> BoxedStrategy<String> {
        prop_oneof![
            40 => pick(&["", "", "", "", " ", "\n", "\t", "\r\n  "]),
            1 => pick(&[" \u{b} ", "\u{a0}", "\u{c}"]),
        ]
        .boxed()
    }

    /// The inside of a string literal: plain text, escapes good and bad,
    /// surrogates paired and lone, raw control characters, non-ASCII.
    fn string_body() -> BoxedStrategy<String> {
        let piece = pick(&[
            "a",
            "id",
            "type",
            "name",
            "org-01",
            " ",
            "é",
            "😀",
            "\\\"",
            "\\\\",
            "\\/",
            "\\b",
            "\\f",
            "\\n",
            "\\r",
            "\\t",
            "\\u0041",
            "\\u00e9",
            "\\u0000",
            "\\u001f",
            "\\uD83D\\uDE00",
            "\\ud83d\\ude00",
            "\\uD83D",
            "\\uDE00",
            "\\uD83Dx",
            "\\uD83D\\u0041",
            "\\uD83D\\uD83D",
            "\\uDBFF\\uDFFF",
            "\\u12",
            "\\u12G4",
            "\\x",
            "\\a",
            "\\U0041",
            "\\'",
            "\\0",
            "\\",
            "\\u{41}",
            "\u{1}",
            "\t",
            "\u{1f}",
            "\u{7f}",
            "'",
            "`",
            "\\u0069\\u0064",
        ]);
        prop::collection::vec(piece, 0..4)
            .prop_map(|v| v.concat())
            .boxed()
    }

    fn string() -> BoxedStrategy<String> {
        string_body().prop_map(|s| format!("\"{s}\"")).boxed()
    }

    fn number() -> BoxedStrategy<String> {
        prop_oneof![
            8 => pick(NUMBERS),
            1 => (1usize..420, any::<bool>()).prop_map(|(n, neg)| format!("{}{}", if neg { "-" } else { "" }, "9".repeat(n))),
        ]
        .boxed()
    }

    const NUMBERS: &[&str] = &[
        "0",
        "-0",
        "1",
        "2",
        "10",
        "01",
        "-01",
        "1.",
        ".5",
        "-",
        "+1",
        "1e",
        "1e+",
        "1.5",
        "-1.5e-3",
        "1E+2",
        "1e400",
        "-1e400",
        "1e308",
        "1.7976931348623157e308",
        "1.8e308",
        "2.5e-400",
        "1e-400",
        "123456789012345678901234567890",
        "-98765432109876543210987654321",
        "123456789012345",
        "1234567890123456",
        "0.000000000000000000001",
        "1.0",
        "NaN",
        "Infinity",
        "0x10",
        "1_000",
        "-",
        "-a",
        "1.e5",
        "1e5.5",
        "00",
        "0e0",
        "0E-0",
        "-0.0e+00",
    ];

    fn leaf() -> BoxedStrategy<String> {
        prop_oneof![
            3 => string(),
            3 => number(),
            1 => pick(&["1e400", "-1e400", "1.8e308", "-2e308", "1e-400", "1.7976931348623157e308", "4.9e-324"]),
            1 => pick(&["null", "true", "false", "nul", "True", "nulll", "tru", "falsey"]),
        ]
        .boxed()
    }

    /// Renders `[a,b]` / `{k:v}` with whitespace, and sometimes a syntax slip.
    fn container(items: Vec<(String, String, String, String)>, object: bool, slip: u8) -> String {
        let (open, close) = if object { ('{', '}') } else { ('[', ']') };
        let mut s = String::from(open);
        for (n, (key, w1, w2, value)) in items.iter().enumerate() {
            if n > 0 {
                s.push(if slip == 1 { ';' } else { ',' });
            }
            s.push_str(w1);
            if object {
                s.push_str(key);
                s.push_str(w2);
                s.push(if slip == 2 { '=' } else { ':' });
                s.push_str(w1);
            }
            s.push_str(value);
            s.push_str(w2);
        }
        if slip == 3 && !items.is_empty() {
            s.push(',');
        }
        if slip != 4 {
            s.push(close);
        }
        s
    }

    fn key() -> BoxedStrategy<String> {
        prop_oneof![
            12 => pick(&["\"id\"", "\"type\"", "\"name\"", "\"x\"", "\"\"", "\"i\\u0064\"", "\"ID\"", "\"id \""]),
            4 => string(),
            1 => pick(&["id", "1", "null"]),
        ]
        .boxed()
    }

    /// Any JSON-ish value, nested a few levels.
    fn value() -> BoxedStrategy<String> {
        leaf()
            .prop_recursive(5, 48, 6, |inner| {
                let member = (key(), ws(), ws(), inner);
                (prop::collection::vec(member, 0..6), any::<bool>(), 0u8..25)
                    .prop_map(|(items, object, slip)| container(items, object, slip))
            })
            .boxed()
    }

    /// Deep nesting around the depth limit.
    fn deep() -> BoxedStrategy<String> {
        (90usize..=103, any::<bool>(), any::<bool>())
            .prop_map(|(n, arrays, balanced)| {
                let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
                let inner = if arrays { "1" } else { "2" };
                let closes = if balanced { n } else { n - 1 };
                format!("{{\"x\":{}{inner}{}}}", open.repeat(n), close.repeat(closes))
            })
            .boxed()
    }

    /// An actor/target/scope/request-like object: `id`, `type`, `name` and
    /// other members, in any order, maybe repeated, maybe of the wrong type.
    fn party() -> BoxedStrategy<String> {
        let member = prop_oneof![
            4 => (Just("\"id\"".to_string()), prop_oneof![4 => string(), 1 => value()].boxed()),
            3 => (Just("\"type\"".to_string()), prop_oneof![4 => string(), 1 => value()].boxed()),
            2 => (Just("\"name\"".to_string()), prop_oneof![3 => string(), 1 => Just("null".to_string()), 1 => value()].boxed()),
            3 => (key(), value()),
        ];
        (prop::collection::vec((member, ws(), ws()), 0..5), 0u8..40)
            .prop_map(|(members, slip)| {
                let items = members
                    .into_iter()
                    .map(|((k, v), w1, w2)| (k, w1, w2, v))
                    .collect();
                container(items, true, slip)
            })
            .boxed()
    }

    fn nested() -> BoxedStrategy<String> {
        prop_oneof![6 => party(), 2 => value(), 1 => deep(), 1 => Just("null".to_string())].boxed()
    }

    const UUIDS: &[&str] = &[
        "\"1818e811-892f-402b-923f-0824128b2f33\"",
        "\"1818E811-892F-402B-923F-0824128B2F33\"",
        "\"00000000-0000-0000-0000-000000000000\"",
        "\"\\u0031818e811-892f-402b-923f-0824128b2f33\"",
        "\"1818e811892f402b923f0824128b2f33\"",
        "\"{1818e811-892f-402b-923f-0824128b2f33}\"",
        "\"1818e811-892f-402b-923f-0824128b2f3g\"",
        "\"1818e811-892f-402b-923f-0824128b2f3\"",
        "12",
        "null",
    ];

    /// One top-level member: a known field with a mostly plausible value,
    /// or something else.
    fn member() -> BoxedStrategy<(String, String)> {
        let k = |name: &'static str| Just(format!("\"{name}\""));
        prop_oneof![
            3 => (k("id"), pick(UUIDS)),
            3 => (k("action"), prop_oneof![
                4 => pick(&["\"a\"", "\"user.logged_in\"", "\"workflow.job.approve\"", "\"a1.2-_\"", "\"\"",
                    "\"Context.create\"", "\"1a\"", "\"_a\"", "\".a\"", "\"a.\"", "\"a..b\"", "\"contéxt\"",
                    "\"workflow\\u002ejob\"", "\"a\\nb\"", "true"]),
                1 => (1usize..140).prop_map(|n| format!("\"a{}\"", "b".repeat(n - 1))),
            ].boxed()),
            3 => (k("actor"), nested()),
            3 => (k("target"), nested()),
            2 => (k("payload"), nested()),
            3 => (k("occurred_at"), pick(&["\"2026-06-01T00:00:00Z\"", "\"2026-06-01T02:00:00.123+02:00\"",
                "\"2026-06-01T00:00:00\"", "\"2026-02-29T00:00:00Z\"", "\"2026-06-01T00:00:60Z\"",
                "\"2026-06-01T00:00:00.0000000001Z\"", "1780000000", "\"2026-06-01T00:00:00\\u005a\""])),
            2 => (k("metadata"), nested()),
            2 => (k("version"), pick(&["1", "null", "0", "-1", "1.0", "1e0", "10", "01", "\"1\"", "2",
                "123456789012345678901234567890", "true"])),
            2 => (k("scope"), nested()),
            3 => (k("success"), pick(&["true", "false", "null", "1", "\"true\"", "tru", "truee"])),
            2 => (k("request"), nested()),
            1 => (pick(&["\"occurred\\u005fat\"", "\"Success\"", "\"extra\"", "\"a`\\nb\"", "\"\""]), value()),
        ]
        .boxed()
    }

    /// A whole event: the required fields (valid), then generated members,
    /// whitespace, maybe a byte-level mutation.
    fn event() -> BoxedStrategy<String> {
        let base = Just(vec![
            ("\"id\"", "\"1818e811-892f-402b-923f-0824128b2f33\""),
            ("\"action\"", "\"user.logged_in\""),
            ("\"actor\"", "{\"id\":\"u1\",\"type\":\"user\",\"name\":\"bob\"}"),
            ("\"target\"", "{\"id\":\"p1\",\"type\":\"project\"}"),
            ("\"occurred_at\"", "\"2026-06-01T00:00:00Z\""),
            ("\"success\"", "true"),
            ("\"scope\"", "{\"id\":\"org-01\",\"type\":\"account\"}"),
        ]);
        let extra = prop::collection::vec(member(), 0..4);
        let mutation = (0u8..24, any::<prop::sample::Index>(), any::<u8>());
        let drop = (0u8..10, any::<prop::sample::Index>());
        (base, extra, ws(), ws(), 0u8..8, drop, mutation)
            .prop_map(|(base, extra, w1, w2, repeat, (drop, which), (kind, at, byte))| {
                let mut members: Vec<(String, String)> = base
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                if drop == 0 {
                    members.remove(which.index(members.len()));
                }
                for (k, v) in extra {
                    // Mostly replace the field (one value each), sometimes repeat it.
                    match members.iter_mut().find(|(mk, _)| *mk == k) {
                        Some(slot) if repeat != 0 => slot.1 = v,
                        _ => members.push((k, v)),
                    }
                }
                let items = members
                    .into_iter()
                    .map(|(k, v)| (k, w1.clone(), w2.clone(), v))
                    .collect();
                let text = format!("{w1}{}{w2}", container(items, true, 0));
                let mut bytes = text.into_bytes();
                let i = at.index(bytes.len() + 1);
                match kind {
                    0 => bytes.truncate(i),
                    1 if i < bytes.len() => {
                        bytes.remove(i);
                    }
                    2 => bytes.insert(i, byte),
                    3 if i < bytes.len() => bytes[i] = byte,
                    _ => {}
                }
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .boxed()
    }

    fn check(text: &str) -> Result<(), TestCaseError> {
        let reference = Event::from_json_reference(text);
        let fast = super::parse(text);
        if let Some(event) = &fast {
            prop_assert_eq!(&reference, &Ok(event.clone()), "fast path accepted {:?}", text);
            // The scope id the parser remembered, and the fast blob reader.
            prop_assert_eq!(event.scope_id(), event.scope_json().map(blob_id_reference));
            prop_assert_eq!(event.actor_id(), blob_id_reference(event.actor_json()));
            prop_assert_eq!(event.target_id(), blob_id_reference(event.target_json()));
        }
        if reference.is_ok() && !text.contains('\\') {
            prop_assert!(
                fast.is_some(),
                "fast path refused a plain valid event: {:?}",
                text
            );
        }
        prop_assert_eq!(Event::from_json(text), reference);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn fast_path_agrees_with_reference(text in event()) {
            check(&text)?;
        }

        /// One generated value in an otherwise valid event, so that it alone
        /// decides.
        #[test]
        fn nested_values_agree_with_reference(v in value(), party in party(), w in ws(), at in 0u8..6) {
            let user = "{\"id\":\"u\",\"type\":\"user\"}".to_string();
            let (payload, actor, scope) = match at {
                0 => (format!("{{\"v\":{w}{v}}}"), user, "null".to_string()),
                1 => (v, user, "null".to_string()),
                2 => (format!("{{\"a\":[{v},{w}{v}]}}"), party, "null".to_string()),
                3 => ("{}".to_string(), party, "null".to_string()),
                4 => ("{}".to_string(), user, party),
                // Without whitespace (the scope id is then remembered by position).
                _ => ("{}".to_string(), user, party.replace([' ', '\n', '\t', '\r'], "")),
            };
            let text = format!(
                "{{\"id\":\"1818e811-892f-402b-923f-0824128b2f33\",\"action\":\"a\",\"actor\":{actor},\
                 \"target\":{{\"id\":\"t\",\"type\":\"t\"}},\"payload\":{payload},\
                 \"occurred_at\":\"2026-06-01T00:00:00Z\",\"success\":true,\"scope\":{scope}}}"
            );
            check(&text)?;
        }

        #[test]
        fn blob_id_agrees_with_reference(blob in nested(), lead in ws()) {
            let blob = format!("{lead}{blob}");
            if let Some(id) = super::blob_id(&blob) {
                prop_assert_eq!(id, blob_id_reference(&blob));
            }
        }
    }

    /// Hand-picked edge cases, each in an otherwise valid event, through the
    /// same check as the generated ones.
    #[test]
    fn tricky_inputs_agree_with_reference() {
        let valid = r#"{"id":"1818e811-892f-402b-923f-0824128b2f33","action":"a","actor":{"id":"u","type":"user"},"target":{"id":"t","type":"t"},"payload":PAYLOAD,"occurred_at":"2026-06-01T00:00:00Z","success":true}"#;
        let deep = |n: usize| format!("{{\"x\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        let payloads = [
            "{}",
            "{ }",
            "{\"a\":[1;2]}",
            "{\"a\":[1,]}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "{,}",
            "{\"a\":[,1]}",
            "{\"a\":01}",
            "{\"a\":-01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":-}",
            "{\"a\":+1}",
            "{\"a\":1e}",
            "{\"a\":1e+}",
            "{\"a\":1E+2}",
            "{\"a\":-0.0e-0}",
            "{\"a\":1e400}",
            "{\"a\":-1e400}",
            "{\"a\":1e-400}",
            "{\"a\":1.7976931348623157e308}",
            "{\"a\":1.8e308}",
            "{\"a\":\"\\a\"}",
            "{\"a\":\"\\u12\"}",
            "{\"a\":\"\\uD800\"}",
            "{\"a\":\"\\uDC00\"}",
            "{\"a\":\"\\uD800\\uDC00\"}",
            "{\"a\":\"\\uD800\\u0041\"}",
            "{\"\\uD800\":1}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\t\"}",
            "{\"a\":\"\u{7f}\"}",
            "{\"a\":tru}",
            "{\"a\":nul}",
            "{\"a\":truex}",
            "{\"a\":[true,false,null]}",
            "{\"a\":{\"a\":1,\"a\":2}}",
            "{\"a\"\u{b}:1}",
            "{\"a\":1}x",
            "{\"a\":1}}",
            "{\"a\":[1]]}",
            "{\"a\":{]}",
            "{\"a\":[}",
            "null",
            "[]",
            "1",
        ];
        let mut cases: Vec<String> = payloads.iter().map(|p| valid.replace("PAYLOAD", p)).collect();
        for n in [99, 100, 101, 102] {
            cases.push(valid.replace("PAYLOAD", &deep(n)));
        }
        let good = valid.replace("PAYLOAD", "{}");
        for (from, to) in [
            ("true}", "true} "),
            ("true}", "true}x"),
            ("true}", "true},"),
            ("true}", "true,}"),
            ("true}", "true"),
            ("true}", "true}}"),
            ("{\"id\"", " \r\n{\"id\""),
            ("{\"id\"", "\u{feff}{\"id\""),
            (r#""type":"user""#, r#""type":"user","type":"x""#),
            (r#""type":"user""#, r#""type":"user","name":null"#),
            (r#""type":"user""#, r#""type":"user","name":1"#),
            (r#""type":"user""#, r#""type":"user","i\u0064":"v""#),
            (r#""type":"t""#, r#""type":null"#),
            (r#""success":true"#, r#""success":true,"version":1"#),
            (r#""success":true"#, r#""success":true,"version":10"#),
            (r#""success":true"#, r#""success":true,"version":null"#),
            (r#""success":true"#, r#""success":true,"scope":null"#),
            (
                r#""success":true"#,
                r#""success":true,"scope":{"id":"\u0041","type":"x"}"#,
            ),
            (
                r#""success":true"#,
                r#""success":true,"scope":{"type":"x", "id":"a\"b"}"#,
            ),
            (
                r#""success":true"#,
                r#""success":true,"scope":{"type":"x","id":"org-1"}"#,
            ),
            (
                r#""success":true"#,
                r#""success":true,"scope":{ "id":"org-1","type":"x"}"#,
            ),
            (r#""success":true"#, r#""success":true,"scope":null,"scope":null"#),
            (
                r#""success":true"#,
                r#""success":true,"request":{"id":"r","type":[]}"#,
            ),
            (
                r#""success":true"#,
                r#""success":true,"request":{"id":"r","id":"s"}"#,
            ),
            (r#""success":true"#, r#""success":true,"request":{"type":"r"}"#),
            (r#""success":true"#, r#""success":truex"#),
            (r#""action":"a""#, r#""action":"ab""#),
            (r#""action":"a""#, "\"action\":\"a\u{1}\""),
        ] {
            assert!(good.contains(from), "{from}");
            cases.push(good.replacen(from, to, 1));
        }
        for text in &cases {
            check(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        }
    }

    /// The parse_event fuzz corpus and the shared sample files, line by line.
    #[test]
    fn corpus_and_samples_agree_with_reference() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut texts = Vec::new();
        if let Ok(dir) = std::fs::read_dir(root.join("fuzz/corpus/parse_event")) {
            for entry in dir.flatten() {
                let bytes = std::fs::read(entry.path()).unwrap();
                texts.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        for name in ["sample-events.jsonl", "bad-events.jsonl"] {
            if let Ok(text) = std::fs::read_to_string(root.join("../shared/data").join(name)) {
                texts.extend(text.lines().map(str::to_string));
            }
        }
        let mut fast = 0;
        for text in &texts {
            check(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            fast += usize::from(super::parse(text).is_some());
        }
        assert!(
            texts.len() < 50 || fast > 0,
            "the fast path took none of {} inputs",
            texts.len()
        );
    }

    #[test]
    fn fast_path_takes_the_usual_events() {
        let good = r#"{"id":"1818e811-892f-402b-923f-0824128b2f33","action":"a","actor":{"id":"x","type":"user","name":null},"target":{"id":"y\u00e9","type":"t","extra":[1,{"id":3}]},"payload":{ "a b" : "x \" y" , "n": [1e5, -0.5, {}] },"occurred_at":"2026-06-01T02:00:00+02:00","metadata":null,"version":1,"scope":null,"success":false,"request":{"id":"r","type":5}}"#;
        let event = super::parse(good).expect("fast path");
        assert_eq!(Ok(event.clone()), Event::from_json_reference(good));
        assert_eq!(event.payload_json(), r#"{"a b":"x \" y","n":[1e5,-0.5,{}]}"#);
        assert_eq!(
            super::blob_id(event.target_json()),
            None,
            "escaped id: left to serde_json"
        );
        assert_eq!(event.target_id(), "yé");
        assert_eq!(super::blob_id(event.actor_json()), Some("x"));
    }
}
