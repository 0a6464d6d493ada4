//! RFC 8785 (JCS) straight from JSON text, without building a
//! `serde_json::Value`: the fast path of an event's leaf data
//! ([`super::leaf`]), which the integrator, the export builder and
//! `export verify` compute for every event.
//!
//! Strings without escapes are copied as they are (JCS writes non-ASCII
//! text raw and escapes only what valid JSON text escapes anyway); an
//! integer of at most 15 digits is copied (exactly a double); an object's
//! members are canonicalized into a scratch buffer and written in UTF-16
//! order of their names. Anything else rare (escapes, other numbers) goes
//! through the same writers as [`super::jcs`]. A repeated member name,
//! invalid JSON or nesting past [`MAX_DEPTH`] is [`NotFast`]: the caller
//! then takes the general path, which gives the authoritative answer (a
//! leaf or the error). So this module only has to be right when it
//! succeeds, which the property tests check against [`super::jcs`].

/// The text was not canonicalized here (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFast;

/// Deeper nesting is left to the general path (serde_json's own limit).
pub const MAX_DEPTH: usize = 128;

/// Appends the RFC 8785 form of the JSON text `text` to `out`. On `Err`,
/// `out` may hold a partial write: callers truncate it.
pub fn canonicalize(text: &str, out: &mut Vec<u8>) -> Result<(), NotFast> {
    thread_local! {
        /// Scratch buffers of objects, kept between calls: a leaf
        /// canonicalizes several objects, millions of leaves one after
        /// another.
        static POOLS: std::cell::RefCell<Pools> = std::cell::RefCell::new(Pools::default());
    }
    let pools = POOLS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let mut p = Parser {
        s: text,
        b: text.as_bytes(),
        i: 0,
        pools,
    };
    let result = p.value(out, 0).and_then(|()| {
        p.ws();
        if p.i == p.b.len() {
            Ok(())
        } else {
            Err(NotFast)
        }
    });
    let pools = p.pools;
    POOLS.with(|p| *p.borrow_mut() = pools);
    result
}

/// Reusable buffers of [`Parser::object`].
#[derive(Default)]
struct Pools {
    values: Vec<Vec<u8>>,
    members: Vec<Vec<Member>>,
}

/// An object member: its name (a range of the text, or decoded when it has
/// escapes) and its canonical value's range in the object's buffer.
struct Member {
    name: (usize, usize),
    decoded: Option<String>,
    value: (usize, usize),
}

impl Member {
    fn name<'s>(&'s self, text: &'s str) -> &'s str {
        match &self.decoded {
            Some(name) => name,
            None => text.get(self.name.0..self.name.1).unwrap_or_default(),
        }
    }
}

/// Appends `s` as a JCS string.
pub fn string(s: &str, out: &mut Vec<u8>) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // serde_json escapes exactly as JSON.stringify does.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    pools: Pools,
}

impl<'a> Parser<'a> {
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
                let (raw, escaped) = self.string_token()?;
                if escaped {
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

    /// The string token at `i` with its quotes, and whether it has escapes.
    fn string_token(&mut self) -> Result<(&'a str, bool), NotFast> {
        let start = self.i;
        let mut j = start + 1;
        let mut escaped = false;
        loop {
            let rest = self.b.get(j..).ok_or(NotFast)?;
            let at = memchr::memchr2(b'"', b'\\', rest).ok_or(NotFast)?;
            if rest.get(..at).is_some_and(|run| run.iter().any(|&c| c < 0x20)) {
                return Err(NotFast);
            }
            j += at;
            if self.b.get(j) == Some(&b'"') {
                break;
            }
            escaped = true;
            // The escaped character (a quote or a backslash among them).
            if self.b.get(j + 1).is_some_and(|&c| c < 0x20) {
                return Err(NotFast);
            }
            j += 2;
        }
        self.i = j + 1;
        // Quotes and backslashes are ASCII: these are char boundaries.
        let raw = self.s.get(start..self.i).ok_or(NotFast)?;
        Ok((raw, escaped))
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<(), NotFast> {
        let start = self.i;
        let digits = |p: &mut Parser<'_>| {
            let from = p.i;
            while matches!(p.b.get(p.i), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i - from
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let int_from = self.i;
        let int_digits = digits(self);
        if int_digits == 0 || (int_digits > 1 && self.b.get(int_from) == Some(&b'0')) {
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
            // Exactly a double; `-0` prints as `0`.
            let n: i64 = token.parse().map_err(|_| NotFast)?;
            out.extend_from_slice(n.to_string().as_bytes());
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

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<(), NotFast> {
        self.i += 1;
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            out.extend_from_slice(b"{}");
            return Ok(());
        }
        let mut members = self.pools.members.pop().unwrap_or_default();
        let mut values = self.pools.values.pop().unwrap_or_default();
        members.clear();
        values.clear();
        let written = self.members(&mut members, &mut values, out, depth);
        self.pools.members.push(members);
        self.pools.values.push(values);
        written
    }

    /// The members of the object at `i` (after its `{`), canonicalized.
    fn members(
        &mut self,
        members: &mut Vec<Member>,
        values: &mut Vec<u8>,
        out: &mut Vec<u8>,
        depth: usize,
    ) -> Result<(), NotFast> {
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(NotFast);
            }
            let start = self.i;
            let (raw, escaped) = self.string_token()?;
            let decoded = if escaped { Some(decode(raw)?) } else { None };
            self.ws();
            if self.b.get(self.i) != Some(&b':') {
                return Err(NotFast);
            }
            self.i += 1;
            let from = values.len();
            self.value(values, depth + 1)?;
            members.push(Member {
                name: (start + 1, start + raw.len() - 1),
                decoded,
                value: (from, values.len()),
            });
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(NotFast),
            }
        }
        let text = self.s;
        members.sort_by(|a, b| utf16_cmp(a.name(text), b.name(text)));
        if members.windows(2).any(|w| w[0].name(text) == w[1].name(text)) {
            return Err(NotFast);
        }
        out.push(b'{');
        for (k, m) in members.iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            string(m.name(text), out);
            out.push(b':');
            out.extend_from_slice(values.get(m.value.0..m.value.1).ok_or(NotFast)?);
        }
        out.push(b'}');
        Ok(())
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
