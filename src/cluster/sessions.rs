//! Web sessions every node knows: the key-value bucket
//! `AUDIT_<cluster>_SESSIONS` (docs/cluster.md, "Web sessions").
//!
//! A session signed in on one node is put in the bucket before the sign-in
//! is answered; any node finds it there by the cookie's id; a sign-out
//! deletes it. Nothing secret is stored: the key is the hex SHA-256 of the
//! session id (the cookie's secret, never stored or logged), the value the
//! user (name, organization, role) and the session's end. The session's
//! CSRF token is derived from the id (`server::session::csrf_of`), so it is
//! not stored either.
//!
//! Reads go to the bucket stream's leader (JetStream's "get message", not
//! the "direct get" any replica answers), so that a session put on one node
//! is found by the next request on another, and a deleted one is not.

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ClusterConfig, ClusterError};
use crate::auth::User;

/// The sessions' bucket of cluster `cluster`.
pub fn sessions_bucket(cluster: &str) -> String {
    format!("AUDIT_{cluster}_SESSIONS")
}

/// The key of session `id`: the hex SHA-256 of its bytes (64 lowercase hex
/// digits).
pub fn session_key(id: &str) -> String {
    crate::hex::encode(&Sha256::digest(id.as_bytes()))
}

/// A session's value in the bucket (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedSession {
    pub user: User,
    /// When the session ends (unix seconds, UTC).
    pub expires_at: i64,
}

/// The bucket, created if missing (entries dropped after
/// `config.session_ttl`).
async fn bucket(js: &jetstream::Context, config: &ClusterConfig) -> Result<kv::Store, ClusterError> {
    super::streams::key_value(
        js,
        config,
        sessions_bucket(&config.name),
        format!("auditstore cluster {}: the web sessions", config.name),
        config.session_ttl,
    )
    .await
}

/// Record session `id` of `user`, ending at `expires_at`; answered once
/// JetStream acknowledged it.
pub async fn put(
    js: &jetstream::Context,
    config: &ClusterConfig,
    id: &str,
    user: &User,
    expires_at: i64,
) -> Result<(), ClusterError> {
    let value = serde_json::to_vec(&SharedSession {
        user: user.clone(),
        expires_at,
    })
    .map_err(|e| ClusterError::Task(format!("encode a session: {e}")))?;
    let bucket = bucket(js, config).await?;
    bucket
        .put(session_key(id), value.into())
        .await
        .map_err(|e| ClusterError::nats("record the session", e))?;
    Ok(())
}

/// The live session `id`, or `None` (never recorded, deleted, expired, or
/// not a session's value).
pub async fn find(
    js: &jetstream::Context,
    config: &ClusterConfig,
    id: &str,
) -> Result<Option<SharedSession>, ClusterError> {
    use jetstream::stream::LastRawMessageErrorKind as Kind;
    let name = sessions_bucket(&config.name);
    let stream = js
        .get_stream_no_info(format!("KV_{name}"))
        .await
        .map_err(|e| ClusterError::nats("the sessions' bucket", e))?;
    let subject = format!("$KV.{name}.{}", session_key(id));
    let message = match stream.get_last_raw_message_by_subject(&subject).await {
        Ok(m) => m,
        Err(e) if e.kind() == Kind::NoMessageFound => return Ok(None),
        // No bucket yet: nobody signed in.
        Err(e)
            if matches!(e.kind(), Kind::JetStream(ref j)
                if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(ClusterError::nats("look a session up", e)),
    };
    // A delete or purge marker: signed out.
    let operation = message.headers.get("KV-Operation").map(|v| v.as_str());
    if matches!(operation, Some("DEL" | "PURGE")) {
        return Ok(None);
    }
    let Ok(session) = serde_json::from_slice::<SharedSession>(&message.payload) else {
        tracing::warn!(bucket = %name, "a value in the sessions' bucket is not a session");
        return Ok(None);
    };
    let now = crate::server::session::unix_now();
    Ok((session.expires_at > now).then_some(session))
}

/// Forget session `id` (a sign-out); answered once JetStream acknowledged
/// the delete marker.
pub async fn delete(js: &jetstream::Context, config: &ClusterConfig, id: &str) -> Result<(), ClusterError> {
    bucket(js, config)
        .await?
        .delete(session_key(id))
        .await
        .map_err(|e| ClusterError::nats("delete the session", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    #[test]
    fn keys_and_values() {
        assert_eq!(sessions_bucket("prod"), "AUDIT_prod_SESSIONS");
        let id = "00".repeat(32);
        // python3: hashlib.sha256(b'0' * 64).hexdigest()
        assert_eq!(
            session_key(&id),
            "60e05bd1b195af2f94112fa7197a5c88289058840ce7c6df9693756bc6250f55"
        );
        assert_ne!(session_key(&id), crate::server::session::csrf_of(&id));
        let value = SharedSession {
            user: User {
                user: "ann".into(),
                org: "acme".into(),
                role: Role::Admin,
            },
            expires_at: 1_796_688_000,
        };
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(
            json,
            r#"{"user":{"user":"ann","org":"acme","role":"admin"},"expires_at":1796688000}"#
        );
        assert_eq!(serde_json::from_str::<SharedSession>(&json).unwrap(), value);
    }
}
