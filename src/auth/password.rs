//! Web users' passwords: argon2id PHC strings (the argon2 crate's
//! defaults, with a random 16-byte salt per password).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

use crate::error::{Error, Result};

/// Longest accepted password, in bytes (argon2 takes more; a bound keeps
/// a hostile sign-in form from costing more than a normal one).
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Shorter passwords are accepted (the operator who runs `user add`
/// chooses them, and the contract sets no minimum) but warned about.
pub const RECOMMENDED_MIN_CHARS: usize = 8;

/// The PHC string of `password`, after checking its length.
pub fn hash(password: &str) -> Result<String> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(Error::InvalidArgument {
            what: "password",
            reason: format!("it must be 1 character to {MAX_PASSWORD_LEN} bytes long"),
        });
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Metadata(format!("hashing a password: {e}")))
}

/// Whether `password` matches the PHC string `stored`. A stored string
/// that does not parse matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A PHC string no password matches, with the default cost: checked
/// against when a user does not exist, so that the answer takes as long
/// as for one who does.
pub fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        Argon2::default()
            .hash_password(b"no password is this one: decoy for unknown users")
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse battery!", &h));
        assert!(!verify("x", "not a phc string"));
        assert!(!verify("anything", decoy()));
    }

    #[test]
    fn empty_and_huge_passwords_are_refused() {
        assert!(hash("").is_err());
        assert!(hash("short").is_ok());
        assert!(hash(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }
}
