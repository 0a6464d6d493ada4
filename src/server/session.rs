//! Web sessions: opaque random ids in an `HttpOnly`, `SameSite=Lax`
//! cookie, kept in memory (a restart signs everyone out). A session's CSRF
//! token, for the forms and unsafe API calls it makes, is derived from its
//! id ([`csrf_of`]), so that any server holding the cookie's id can check
//! it: a cluster's nodes share sessions through the replication hook
//! ([`crate::server::replication::Replication::find_session`]) and nothing
//! secret needs to be stored for them.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::auth::{Role, User};

/// The session cookie's name.
pub const COOKIE: &str = "auditstore_session";

/// What a session's CSRF token is derived from, before the id.
const CSRF_CONTEXT: &[u8] = b"auditstore csrf v1\0";

/// How long a session found through a shared store (or started here while
/// sessions are shared) is trusted before it is looked up there again: a
/// sign-out on another node takes effect here within this time.
pub const RECHECK: Duration = Duration::from_secs(2);

/// A signed-in user.
#[derive(Clone)]
pub struct Session {
    pub user: User,
    /// Sent with every form and unsafe request of this session:
    /// [`csrf_of`] its id.
    pub csrf: String,
    /// When it ends (unix seconds, the wall clock: not `--as-of`).
    pub expires_at: i64,
    /// When this server last learnt the session was live.
    checked: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.user)
            .field("csrf", &"<secret>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Session {
    pub fn role(&self) -> Role {
        self.user.role
    }

    /// Whether this server learnt within [`RECHECK`] that it is live.
    pub fn fresh(&self) -> bool {
        self.checked.elapsed() < RECHECK
    }
}

/// The sessions this server knows: those started here, and those a shared
/// store told it of.
pub struct Sessions {
    ttl_secs: u64,
    live: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as hex.
pub fn random_hex() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(format!("random bytes: {e}")))?;
    Ok(crate::hex::encode(&bytes))
}

/// The CSRF token of session `id`: the hex SHA-256 of
/// `"auditstore csrf v1\0"` followed by the id's bytes. It reveals nothing
/// of the id (a page shows it), and any server that holds the id computes
/// it.
pub fn csrf_of(id: &str) -> String {
    let mut h = Sha256::new();
    h.update(CSRF_CONTEXT);
    h.update(id.as_bytes());
    crate::hex::encode(&h.finalize())
}

/// An id we could have made (64 lowercase hex digits): anything else is
/// no session, and is never looked up elsewhere.
pub fn plausible_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The wall clock in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Sessions {
    pub fn new(ttl_secs: u64) -> Self {
        Sessions {
            ttl_secs,
            live: Mutex::new(HashMap::new()),
        }
    }

    /// How long a session lasts.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session's id and when it ends (unix seconds); not live yet
    /// ([`Sessions::insert`] makes it so).
    pub fn new_id(&self) -> std::io::Result<(String, i64)> {
        let ttl = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
        Ok((random_hex()?, unix_now().saturating_add(ttl)))
    }

    /// Hold session `id` of `user` until `expires_at`, learnt live now.
    pub fn insert(&self, id: &str, user: User, expires_at: i64) -> Session {
        let now = unix_now();
        let session = Session {
            user,
            csrf: csrf_of(id),
            expires_at,
            checked: Instant::now(),
        };
        let mut live = self.live();
        live.retain(|_, s| s.expires_at > now);
        live.insert(id.to_owned(), session.clone());
        session
    }

    /// Start a session for `user` here only: (session id, its CSRF token).
    pub fn start(&self, user: User) -> std::io::Result<(String, String)> {
        let (id, expires_at) = self.new_id()?;
        let session = self.insert(&id, user, expires_at);
        Ok((id, session.csrf))
    }

    /// The live session with this id that this server holds.
    pub fn get(&self, id: &str) -> Option<Session> {
        let live = self.live();
        live.get(id).filter(|s| s.expires_at > unix_now()).cloned()
    }

    /// Sign out here.
    pub fn end(&self, id: &str) {
        self.live().remove(id);
    }
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> User {
        User {
            user: "ann".into(),
            org: "acme".into(),
            role: Role::Admin,
        }
    }

    #[test]
    fn the_csrf_token_is_derived_from_the_id() {
        let id = "00".repeat(32);
        // python3: hashlib.sha256(b'auditstore csrf v1\x00' + b'0' * 64).hexdigest()
        assert_eq!(
            csrf_of(&id),
            "c60c5d259f90ff3cbf3e3236d18ffc32bc2a0cf1656a4161844f795781f3866b"
        );
        assert_eq!(csrf_of(&id), csrf_of(&id));
        assert_ne!(csrf_of(&id), csrf_of(&"01".repeat(32)));
        // Neither the id nor its bare hash (a shared store's key).
        let bare = crate::hex::encode(&Sha256::digest(id.as_bytes()));
        assert_ne!(csrf_of(&id), id);
        assert_ne!(csrf_of(&id), bare);
        assert_eq!(csrf_of(&id).len(), 64);
    }

    #[test]
    fn a_started_session_carries_its_derived_token_until_it_ends() {
        let sessions = Sessions::new(60);
        let (id, csrf) = sessions.start(ann()).unwrap();
        assert!(plausible_id(&id));
        assert_eq!(csrf, csrf_of(&id));
        let s = sessions.get(&id).unwrap();
        assert_eq!(s.user, ann());
        assert_eq!(s.csrf, csrf);
        assert!(s.fresh());
        assert!(!format!("{s:?}").contains(&csrf));
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn an_expired_session_is_gone() {
        let sessions = Sessions::new(60);
        let id = "ab".repeat(32);
        sessions.insert(&id, ann(), unix_now() - 1);
        assert!(sessions.get(&id).is_none());
        sessions.insert(&id, ann(), unix_now() + 60);
        assert!(sessions.get(&id).is_some());
    }

    #[test]
    fn plausible_ids() {
        assert!(plausible_id(&"0a".repeat(32)));
        assert!(!plausible_id(&"0A".repeat(32)));
        assert!(!plausible_id(&"0a".repeat(31)));
        assert!(!plausible_id(""));
        assert!(!plausible_id(&"zz".repeat(32)));
    }
}
