//! API tokens as their holders see them: `aus_` followed by 30 random
//! base62 characters (178 bits) and a 6-character base62 CRC-32 of those 30.
//!
//! The prefix and checksum let secret scanners find a leaked token and tell
//! it from random text without asking the store; a mistyped token is
//! refused before any lookup. The store keeps only the SHA-256 of the whole
//! token text ([`TokenHash`]).

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "aus_";
const RANDOM_LEN: usize = 30;
const CHECKSUM_LEN: usize = 6;
/// The length of a token's text.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The SHA-256 of a token's text: all the store keeps of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The hash of `token`'s text.
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    /// Equality in time independent of where the hashes differ.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        crate::hex::decode(s).map(TokenHash)
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({})", self.to_hex())
    }
}

/// A new random token's text.
pub fn generate() -> std::io::Result<String> {
    // Rejection sampling keeps every character uniform over the 62.
    let mut random = String::with_capacity(RANDOM_LEN);
    while random.len() < RANDOM_LEN {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("random bytes: {e}")))?;
        for b in bytes {
            if random.len() == RANDOM_LEN {
                break;
            }
            if b < 248 {
                random.push(BASE62[(b % 62) as usize] as char);
            }
        }
    }
    let checksum = checksum(&random);
    Ok(format!("{TOKEN_PREFIX}{random}{checksum}"))
}

/// Whether `text` has a token's shape: prefix, length, alphabet, checksum.
pub fn is_well_formed(text: &str) -> bool {
    let Some(rest) = text.strip_prefix(TOKEN_PREFIX) else {
        return false;
    };
    if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    let (random, sum) = rest.split_at(RANDOM_LEN);
    checksum(random) == sum
}

fn checksum(random: &str) -> String {
    let mut n = crc32fast::hash(random.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), TOKEN_LEN);
        assert!(is_well_formed(&a) && is_well_formed(&b));
    }

    #[test]
    fn any_single_change_breaks_the_checksum_or_shape() {
        let t = generate().unwrap();
        for i in TOKEN_PREFIX.len()..t.len() {
            let mut bytes = t.clone().into_bytes();
            bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
            let changed = String::from_utf8(bytes).unwrap();
            assert!(!is_well_formed(&changed), "{changed}");
        }
        assert!(!is_well_formed(&t[..t.len() - 1]));
        assert!(!is_well_formed(&t.replace("aus_", "aux_")));
    }

    #[test]
    fn hashes_round_trip_through_hex_and_compare() {
        let h = TokenHash::of("aus_x");
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert!(h.ct_eq(&TokenHash::of("aus_x")));
        assert!(!h.ct_eq(&TokenHash::of("aus_y")));
        assert_eq!(TokenHash::from_hex("zz"), None);
    }
}
