//! Who may use the store from outside: API tokens (for services and
//! operators) and web users (organization members and admins who sign in
//! to the Audit Log page). Both live in the store's metadata (`meta.redb`).
//!
//! Invariants:
//! - A token's text is shown once, when it is made; the store keeps only
//!   its SHA-256 ([`token::TokenHash`]). A lookup goes by that hash (a
//!   preimage-resistant key of a 178-bit secret: where a comparison stops
//!   tells an attacker nothing), and the stored hash is then compared in
//!   constant time as well.
//! - A revoked token is refused by the next [`Auth::authenticate`]: no
//!   cache stands between a revocation and the metadata.
//! - A user's password is kept only as an argon2id PHC string; signing in
//!   as an unknown user costs the same argon2 check as a known one.
//! - Making or revoking an organization's token, adding a user and a
//!   user's sign-in are recorded in that organization's log as the store's
//!   own audit events (staged with the change: see `store::own_events`).

pub mod password;
mod registry;
pub mod token;

use serde::{Deserialize, Serialize};

pub use registry::Auth;
pub use token::{TokenHash, TOKEN_PREFIX};

use crate::time::Timestamp;

/// What a token or user may do (http.md, "Who may do what").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Append events to its organization; nothing else.
    Ingest,
    /// Read its organization's events.
    Member,
    /// A member's rights plus exports.
    Admin,
    /// Everything, for every organization, plus organization settings.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Operator => "operator",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ingest" => Ok(Role::Ingest),
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            other => Err(format!(
                "unknown role {other:?} (ingest, member, admin or operator)"
            )),
        }
    }
}

/// Whose a new token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenScope {
    /// One organization, with a role below operator.
    Org { org: String, role: Role },
    /// Every organization.
    Operator,
}

/// A token as listed: everything but its secret text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: String,
    /// `None` for an operator token.
    pub org: Option<String>,
    pub role: Role,
    pub name: Option<String>,
    pub created_at: Timestamp,
}

impl TokenInfo {
    /// Who this token acts as in the store's records (an export's
    /// requester): its name, or its id when it has none.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// A token just made: its text, shown this once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken {
    pub info: TokenInfo,
    pub token: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("info", &self.info)
            .field("token", &"<secret>")
            .finish()
    }
}

/// A person who signs in to the web page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub user: String,
    pub org: String,
    /// `member` or `admin`.
    pub role: Role,
}

/// Why an authentication or a token or user change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, unknown or revoked credentials. The reason is
    /// for logs of the refusing side, never for the caller's answer beyond
    /// "unauthorized".
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    #[error("no {what} {id:?}")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] crate::Error),
}

impl AuthError {
    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Unauthorized(_) => "unauthorized",
            AuthError::NotFound { .. } => "not_found",
            AuthError::Conflict(_) => "conflict",
            AuthError::Invalid { .. } => "invalid_request",
            AuthError::Store(e) => e.code(),
        }
    }
}
