//! Web sessions: opaque random ids in an `HttpOnly`, `SameSite=Lax`
//! cookie, kept in memory (a restart signs everyone out), each with its
//! own CSRF token for the forms and unsafe API calls it makes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::{Role, User};

/// The session cookie's name.
pub const COOKIE: &str = "auditstore_session";

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    /// Sent with every form and unsafe request of this session.
    pub csrf: String,
    expires: Instant,
}

impl Session {
    pub fn role(&self) -> Role {
        self.user.role
    }
}

/// The live sessions.
pub struct Sessions {
    ttl: Duration,
    live: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as hex.
pub fn random_hex() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("random bytes: {e}")))?;
    Ok(crate::hex::encode(&bytes))
}

impl Sessions {
    pub fn new(ttl_secs: u64) -> Self {
        Sessions {
            ttl: Duration::from_secs(ttl_secs),
            live: Mutex::new(HashMap::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start a session for `user`: (session id, its CSRF token).
    pub fn start(&self, user: User) -> std::io::Result<(String, String)> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let now = Instant::now();
        let mut live = self.live();
        live.retain(|_, s| s.expires > now);
        live.insert(
            id.clone(),
            Session {
                user,
                csrf: csrf.clone(),
                expires: now + self.ttl,
            },
        );
        Ok((id, csrf))
    }

    /// The live session with this id.
    pub fn get(&self, id: &str) -> Option<Session> {
        let live = self.live();
        live.get(id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// Sign out.
    pub fn end(&self, id: &str) {
        self.live().remove(id);
    }
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
