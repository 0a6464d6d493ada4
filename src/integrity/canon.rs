//! RFC 8785 (JCS) straight from JSON text, without building a
//! `serde_json::Value`: the fast path of an event's leaf data
//! ([`super::leaf`]), which the integrator, the export builder and
//! `export verify` compute for every event.
//!
//! The text is written to the output as it is parsed: strings without
//! escapes and integers of at most 15 digits (exactly doubles) are copied
//! as they are (JCS writes non-ASCII text raw and escapes only what valid
//! JSON text escapes anyway), and an object's members are written in the
//! order they come. Only an object whose member names are out of UTF-16
//! order is then rewritten, in place, in that order. Anything else rare
//! (escapes, other numbers) goes through the same writers as
//! [`super::jcs`]. A repeated member name, invalid JSON or nesting past
//! [`MAX_DEPTH`] is [`NotFast`]: the caller then takes the general path, which gives the authoritative answer (a
//! leaf or the error). So this module only has to be right when it
//! succeeds, which the property tests check against [`super::jcs`].

use std::cell::RefCell;
use std::cmp::Ordering;

/// The text was not canonicalized here (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFast;

/// Deeper nesting is left to the general path (serde_json's own limit).
pub const MAX_DEPTH: usize = 128;

/// Buffers reused from one canonicalization to the next: a leaf
/// canonicalizes several objects, millions of leaves one after another.
#[derive(Default)]
pub struct Scratch {
    /// The members of the objects being written, innermost last.
    members: Vec<Member>,
    /// An out-of-order object's bytes while it is rewritten.
    object: Vec<u8>,
    /// Member names that had escapes, decoded.
    names: String,
}

impl Scratch {
    /// Runs `f` with this thread's scratch buffers (fresh ones if they are
    /// in use further up the stack).
    pub fn with<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => f(&mut scratch),
            Err(_) => f(&mut Scratch::default()),
        })
    }
}

/// An object member: its name (without quotes) as a range of the text, or
/// of [`Scratch::names`] when it had escapes, and where `"name":value` was
/// written in the output.
struct Member {
    name: (usize, usize),
    /// The name's first 8 bytes, big-endian, zero-padded: names that are
    /// ASCII (no byte 0, since JSON text escapes it) and differ there
    /// compare as their keys do.
    key: u64,
    decoded: bool,
    ascii: bool,
    written: (usize, usize),
}

/// Appends the RFC 8785 form of the JSON text `text` to `out`. On `Err`,
/// `out` may hold a partial write: callers truncate it.
pub fn canonicalize(text: &str, out: &mut Vec<u8>) -> Result<(), NotFast> {
    Scratch::with(|scratch| canonicalize_in(scratch, text, out))
}

/// [`canonicalize`] with the caller's scratch buffers.
pub fn canonicalize_in(scratch: &mut Scratch, text: &str, out: &mut Vec<u8>) -> Result<(), NotFast> {
    scratch.members.clear();
    scratch.names.clear();
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
        scratch,
    };
    p.value(out, 0)?;
    p.ws();
    if p.i == p.b.len() {
        Ok(())
    } else {
        Err(NotFast)
    }
}

/// Appends `s` as a JCS string.
pub fn string(s: &str, out: &mut Vec<u8>) {
    if s.bytes().all(|b| CLASS[b as usize] != SPECIAL) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // serde_json escapes exactly as JSON.stringify does.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Byte classes of string contents: copied as is, the end of a plain
/// run (a quote, a backslash or a control character, which JSON text
/// must escape), or a byte of a non-ASCII character.
const PLAIN: u8 = 0;
const SPECIAL: u8 = 1;
const HIGH: u8 = 2;
static CLASS: [u8; 256] = {
    let mut t = [PLAIN; 256];
    let mut i = 0;
    while i < 256 {
        if i < 0x20 || i == b'"' as usize || i == b'\\' as usize {
            t[i] = SPECIAL;
        } else if i >= 0x80 {
            t[i] = HIGH;
        }
        i += 1;
    }
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The bytes of `w` (little-endian) that are not [`PLAIN`]: the high bit of
/// each such byte set. Only the lowest set bit is exact (the borrow of the
/// subtractions can mark bytes after it), which is all the caller uses.
fn special_bytes(w: u64) -> u64 {
    let below = |n: u64| w.wrapping_sub(ONES * n) & !w & HIGHS;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    below(0x20) | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\'))) | (w & HIGHS)
}

/// [`Member::key`] of the name at `range` of `b`.
fn name_key(b: &[u8], range: (usize, usize)) -> u64 {
    let name = b.get(range.0..range.1).unwrap_or_default();
    let mut key = [0u8; 8];
    let n = name.len().min(8);
    key[..n].copy_from_slice(&name[..n]);
    u64::from_be_bytes(key)
}

/// A string token: its range with the quotes, whether it has escapes, and
/// whether it is ASCII.
struct Token {
    from: usize,
    to: usize,
    escaped: bool,
    ascii: bool,
}

struct Parser<'a, 's> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    scratch: &'s mut Scratch,
}

impl<'a> Parser<'a, '_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), NotFast> {
        if depth > MAX_DEPTH {
            return Err(NotFast);
        }
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') => self.object(out, depth),
            Some(b'[') => self.array(out, depth),
            Some(b'"') => {
                let t = self.string_token()?;
                let raw = self.s.get(t.from..t.to).ok_or(NotFast)?;
                if t.escaped {
                    string(&decode(raw)?, out);
                } else {
                    out.extend_from_slice(raw.as_bytes());
                }
                Ok(())
            }
            Some(b't') => self.literal(b"true", out),
            Some(b'f') => self.literal(b"false", out),
            Some(b'n') => self.literal(b"null", out),
            Some(b'-' | b'0'..=b'9') => self.number(out),
            _ => Err(NotFast),
        }
    }

    fn literal(&mut self, word: &[u8], out: &mut Vec<u8>) -> Result<(), NotFast> {
        if self.b.get(self.i..self.i + word.len()) != Some(word) {
            return Err(NotFast);
        }
        self.i += word.len();
        out.extend_from_slice(word);
        Ok(())
    }

    /// The string token at `i` (a quote), which it moves past.
    fn string_token(&mut self) -> Result<Token, NotFast> {
        let from = self.i;
        let mut j = from + 1;
        let (mut escaped, mut ascii) = (false, true);
        loop {
            // Eight plain bytes at a time.
            while let Some(word) = self.b.get(j..j + 8) {
                let w = u64::from_le_bytes(word.try_into().map_err(|_| NotFast)?);
                match special_bytes(w) {
                    0 => j += 8,
                    found => {
                        j += (found.trailing_zeros() / 8) as usize;
                        break;
                    }
                }
            }
            let c = *self.b.get(j).ok_or(NotFast)?;
            match CLASS[c as usize] {
                PLAIN => j += 1,
                HIGH => {
                    ascii = false;
                    j += 1;
                }
                _ if c == b'"' => break,
                _ if c == b'\\' => {
                    escaped = true;
                    // The escaped character (a quote or a backslash among them).
                    if self.b.get(j + 1).is_none_or(|&e| e < 0x20) {
                        return Err(NotFast);
                    }
                    j += 2;
                }
                _ => return Err(NotFast),
            }
        }
        self.i = j + 1;
        Ok(Token {
            from,
            to: self.i,
            escaped,
            ascii,
        })
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), NotFast> {
        let start = self.i;
        let digits = |p: &mut Parser<'_, '_>| {
            let from = p.i;
            while matches!(p.b.get(p.i), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - from
        };
        let negative = self.b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let int_from = self.i;
        let int_digits = digits(self);
        let leading_zero = self.b.get(int_from) == Some(&b'0');
        if int_digits == 0 || (int_digits > 1 && leading_zero) {
            return Err(NotFast);
        }
        let mut integer = true;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            integer = false;
            if digits(self) == 0 {
                return Err(NotFast);
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            integer = false;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return Err(NotFast);
            }
        }
        let token = self.s.get(start..self.i).ok_or(NotFast)?;
        if integer && int_digits <= 15 {
            // Exactly a double, printed as written; `-0` prints as `0`.
            if negative && leading_zero {
                out.push(b'0');
            } else {
                out.extend_from_slice(token.as_bytes());
            }
            return Ok(());
        }
        let f: f64 = token.parse().map_err(|_| NotFast)?;
        if !f.is_finite() {
            return Err(NotFast);
        }
        out.extend_from_slice(super::jcs::es_number(f).as_bytes());
        Ok(())
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), NotFast> {
        self.i += 1;
        out.push(b'[');
        self.ws();
        if self.b.get(self.i) == Some(&b']') {
            self.i += 1;
            out.push(b']');
            return Ok(());
        }
        loop {
            self.value(out, depth + 1)?;
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    out.push(b',');
                }
                Some(b']') => {
                    self.i += 1;
                    out.push(b']');
                    return Ok(());
                }
                _ => return Err(NotFast),
            }
        }
    }

    /// The object at `i`: its members written as they come, then put in
    /// order if they were not.
    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), NotFast> {
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            out.extend_from_slice(b"{}");
            return Ok(());
        }
        let start = out.len();
        out.push(b'{');
        let base = self.scratch.members.len();
        let mut in_order = true;
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(NotFast);
            }
            let name = self.string_token()?;
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(NotFast);
            }
            self.i += 1;
            let at = out.len();
            let raw = self.s.get(name.from..name.to).ok_or(NotFast)?;
            let (range, decoded) = if name.escaped {
                let text = decode(raw)?;
                string(&text, out);
                let from = self.scratch.names.len();
                self.scratch.names.push_str(&text);
                ((from, self.scratch.names.len()), true)
            } else {
                out.extend_from_slice(raw.as_bytes());
                ((name.from + 1, name.to - 1), false)
            };
            out.push(b':');
            self.value(out, depth + 1)?;
            let member = Member {
                key: if decoded { 0 } else { name_key(self.b, range) },
                name: range,
                decoded,
                ascii: name.ascii && !decoded,
                written: (at, out.len()),
            };
            if self.scratch.members.len() > base {
                if let Some(last) = self.scratch.members.last() {
                    match self.order(last, &member) {
                        Ordering::Less => {}
                        Ordering::Equal => return Err(NotFast),
                        Ordering::Greater => in_order = false,
                    }
                }
            }
            self.scratch.members.push(member);
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => {
                    self.i += 1;
                    out.push(b',');
                }
                Some(b'}') => {
                    self.i += 1;
                    out.push(b'}');
                    break;
                }
                _ => return Err(NotFast),
            }
        }
        let result = if in_order {
            Ok(())
        } else {
            self.reorder(base, start, out)
        };
        self.scratch.members.truncate(base);
        result
    }

    /// Rewrites the object written at `start` of `out`, whose members are
    /// `members[base..]`, in the UTF-16 order of their names.
    fn reorder(&mut self, base: usize, start: usize, out: &mut Vec<u8>) -> Result<(), NotFast> {
        let mut members = std::mem::take(&mut self.scratch.members);
        let mut object = std::mem::take(&mut self.scratch.object);
        let written = (|| {
            let own = members.get_mut(base..).ok_or(NotFast)?;
            own.sort_unstable_by(|a, b| self.order(a, b));
            if own
                .windows(2)
                .any(|w| self.order(&w[0], &w[1]) == Ordering::Equal)
            {
                return Err(NotFast);
            }
            object.clear();
            object.extend_from_slice(out.get(start..).ok_or(NotFast)?);
            out.truncate(start);
            out.push(b'{');
            for (k, m) in own.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                let (from, to) = (m.written.0 - start, m.written.1 - start);
                out.extend_from_slice(object.get(from..to).ok_or(NotFast)?);
            }
            out.push(b'}');
            Ok(())
        })();
        self.scratch.members = members;
        self.scratch.object = object;
        written
    }

    fn order(&self, a: &Member, b: &Member) -> Ordering {
        let name = |m: &Member| {
            let text = if m.decoded {
                self.scratch.names.as_str()
            } else {
                self.s
            };
            text.get(m.name.0..m.name.1).unwrap_or_default()
        };
        if a.ascii && b.ascii {
            match a.key.cmp(&b.key) {
                Ordering::Equal => name(a).as_bytes().cmp(name(b).as_bytes()),
                unequal => unequal,
            }
        } else {
            utf16_cmp(name(a), name(b))
        }
    }
}

/// Member names in the order of their UTF-16 code units (RFC 8785 §3.2.3);
/// for ASCII names that is their byte order.
pub(super) fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// A string token with escapes, decoded.
fn decode(raw: &str) -> Result<String, NotFast> {
    serde_json::from_str(raw).map_err(|_| NotFast)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(text: &str) -> Option<String> {
        let mut out = Vec::new();
        canonicalize(text, &mut out).ok()?;
        String::from_utf8(out).ok()
    }

    #[test]
    fn writes_the_rfc_8785_form() {
        assert_eq!(
            canon(r#" { "b" : [1, 2.50, -0, 1e3, "x\u0041"], "a": {"é": null, "z": true} } "#).as_deref(),
            Some(r#"{"a":{"z":true,"é":null},"b":[1,2.5,0,1000,"xA"]}"#)
        );
        // U+E000 sorts after U+1F600 (a surrogate pair, 0xD83D...) in UTF-16.
        assert_eq!(
            canon("{\"\u{E000}\":1,\"\u{1F600}\":2}").as_deref(),
            Some("{\"\u{1F600}\":2,\"\u{E000}\":1}")
        );
        assert_eq!(
            canon("12345678901234567890").as_deref(),
            Some("12345678901234567000")
        );
    }

    #[test]
    fn leaves_what_it_cannot_do_to_the_general_path() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":1,"\u0061":2}"#,
            "01",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e999",
            "[1,]",
            "{\"a\" 1}",
            "\"\u{1}\"",
            "tru",
            "{} x",
            "",
        ] {
            assert_eq!(canon(bad), None, "{bad:?}");
        }
        let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
        assert_eq!(canon(&deep), None);
    }
}
