//! RFC 8785 (JCS) serialization of a parsed JSON value, written directly:
//! object members sorted by the UTF-16 code units of their names, strings
//! escaped as ECMAScript's `JSON.stringify` does (which serde_json's string
//! writer matches: `\"`, `\\`, `\b \f \n \r \t`, other controls as
//! `\u00xx`), numbers as ECMAScript's `Number.prototype.toString` of the
//! IEEE 754 double (RFC 8785 §3.2.2.3). Checked byte for byte against the
//! RFC's examples (tests/integrity/leaf.rs).
//!
//! It replaces `serde_json_canonicalizer` on the integrator's path, which
//! re-parses every member name to sort it (most of the cost of a leaf).

use serde_json::{Number, Value};

use super::canon;

/// Appends the JCS form of `v` to `out`; `Err` for a non-finite number.
pub fn write(v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => number(n, out)?,
        Value::String(s) => canon::string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| canon::utf16_cmp(a.0, b.0));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canon::string(k, out);
                out.push(b':');
                write(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn number(n: &Number, out: &mut Vec<u8>) -> Result<(), String> {
    const EXACT: u64 = 1 << 53;
    if let Some(u) = n.as_u64().filter(|u| *u <= EXACT) {
        out.extend_from_slice(u.to_string().as_bytes());
        return Ok(());
    }
    if let Some(i) = n.as_i64().filter(|i| i.unsigned_abs() <= EXACT) {
        out.extend_from_slice(i.to_string().as_bytes());
        return Ok(());
    }
    match n.as_f64().filter(|f| f.is_finite()) {
        Some(f) => {
            out.extend_from_slice(es_number(f).as_bytes());
            Ok(())
        }
        None => Err(format!("the number {n} is not finite")),
    }
}

/// ECMAScript's Number::toString(10) of a finite double (ryu-js: Rust's
/// own shortest formatting breaks ties between two shortest forms the other
/// way, e.g. 1658206780088562.25).
pub(super) fn es_number(f: f64) -> String {
    ryu_js::Buffer::new().format_finite(f).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_ecmascript_does() {
        for (f, want) in [
            (1e30, "1e+30"),
            (4.5, "4.5"),
            (0.002, "0.002"),
            (1e-27, "1e-27"),
            (333333333.3333333, "333333333.3333333"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123456789012345680000.0, "123456789012345680000"),
            (1e-7, "1e-7"),
            (1e-6, "0.000001"),
            (-1.5, "-1.5"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (12345678901234567000.0, "12345678901234567000"),
        ] {
            assert_eq!(es_number(f), want, "{f}");
        }
    }

    /// The same bytes as `serde_json_canonicalizer` (an independent JCS
    /// implementation) for many numbers and every sample event.
    #[test]
    fn agrees_with_serde_json_canonicalizer() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut values: Vec<Value> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let f = f64::from_bits(x);
                let g = (x % 1_000_000) as f64 / 1000.0 * if x.is_multiple_of(3) { -1.0 } else { 1.0 };
                serde_json::json!([
                    if f.is_finite() { f } else { 0.5 },
                    g,
                    x >> 11,
                    -((x >> 12) as i64)
                ])
            })
            .collect();
        let sample = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/sample-events.jsonl"
        ))
        .unwrap_or_default();
        values.extend(sample.lines().filter_map(|l| serde_json::from_str(l).ok()));
        for v in &values {
            let mut ours = Vec::new();
            write(v, &mut ours).unwrap();
            assert_eq!(ours, serde_json_canonicalizer::to_vec(v).unwrap(), "{v}");
        }
    }

    #[test]
    fn members_sort_by_utf16_code_units() {
        let v: Value =
            serde_json::from_str(r#"{"\ufb33":1,"\ud83d\ude00":2,"b":[true,null,"\u000f"]}"#).unwrap();
        let mut out = Vec::new();
        write(&v, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"b\":[true,null,\"\\u000f\"],\"\u{1f600}\":2,\"\u{fb33}\":1}"
        );
    }
}
