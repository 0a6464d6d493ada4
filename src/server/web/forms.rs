//! The web forms' bodies and their CSRF tokens.

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::server::session::same_secret;

/// The pre-session cookie that the sign-in form's token is compared
/// with (double submit: a cross-site page can neither read it nor set
/// the matching field).
pub const SIGNIN_COOKIE: &str = "auditstore_signin";

/// `POST /signin`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignInForm {
    pub user: String,
    pub password: String,
    pub csrf: String,
}

/// `POST /audit-log`: a new request.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RequestForm {
    pub from: String,
    pub to: String,
    pub csrf: String,
}

/// `POST /signout`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SignOutForm {
    pub csrf: String,
}

/// A form body; `None` when it does not decode (answered like a form
/// without its token: refused).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_urlencoded::from_bytes(body).ok()
}

/// Whether the token sent with a form is the expected one (both present).
pub fn token_ok(sent: &str, expected: Option<&str>) -> bool {
    match expected {
        Some(expected) if !expected.is_empty() => same_secret(sent, expected),
        _ => false,
    }
}

/// A token cookie value we could have made (64 hex digits): anything
/// else is replaced, never echoed into the page.
pub fn plausible_token(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_must_be_present_and_equal() {
        assert!(token_ok("abc", Some("abc")));
        assert!(!token_ok("abd", Some("abc")));
        assert!(!token_ok("", Some("")));
        assert!(!token_ok("abc", None));
    }

    #[test]
    fn forms_decode_with_missing_fields_empty() {
        let f: SignInForm = parse(b"user=ann%20b&password=p%26w").unwrap_or_default();
        assert_eq!(
            (f.user.as_str(), f.password.as_str(), f.csrf.as_str()),
            ("ann b", "p&w", "")
        );
        assert!(plausible_token(&"a".repeat(64)));
        assert!(!plausible_token("<script>"));
    }
}
