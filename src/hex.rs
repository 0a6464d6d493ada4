//! Lowercase hex text of bytes, for the few places that show binary
//! values as text (token hashes, page cursors, session ids).

/// `bytes` as lowercase hex digits.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    out
}

/// The `N` bytes that `text` (exactly `2 * N` hex digits, either case)
/// encodes.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let value = |d: u8| (d as char).to_digit(16);
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (value(pair[0])? << 4 | value(pair[1])?) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_refuses_what_is_not_hex() {
        let bytes = [0x00, 0x7f, 0x80, 0xff, 0x12];
        assert_eq!(super::encode(&bytes), "007f80ff12");
        assert_eq!(super::decode::<5>("007f80ff12"), Some(bytes));
        assert_eq!(super::decode::<5>("007F80FF12"), Some(bytes));
        assert_eq!(super::decode::<5>("007f80ff1"), None);
        assert_eq!(super::decode::<2>("+f00"), None);
        assert_eq!(super::decode::<2>("0g00"), None);
    }
}
