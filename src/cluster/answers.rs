//! A command's answer on the wire (docs/cluster.md, "Commands",
//! "Answers"): whichever node applies a command publishes its outcome on
//! core NATS, subject [`subject`], so that the node that issued it can
//! answer its request even when it does not apply the command's partition.
//!
//! The payload is one JSON object (UTF-8), version 1:
//!
//! ```text
//! {"v":1,"ok":{"settings":{"org","plan","retention_days"}}}
//! {"v":1,"ok":{"export":<the request as the export registry stores it>}}
//! {"v":1,"ok":{"processed":{"processed":[<request>...],"expired":[<request>...]}}}
//! {"v":1,"ok":"published"}
//! {"v":1,"ok":{"token":{"id","org","role","name","created_at"}}}      (never the secret)
//! {"v":1,"ok":{"revoked":{"id","org","role","name","created_at"}}}
//! {"v":1,"ok":{"user":{"user","org","role"}}}
//! {"v":1,"error":{"status","code","message","extra","retry_after","next_allowed_at"}}
//! ```
//!
//! An error carries everything the HTTP answer is made of (status, code,
//! message, the extra fields of the error object, `Retry-After`,
//! `next_allowed_at` as i64 nanoseconds), so the issuing node answers
//! exactly what the applying node would have. The settings, token and user
//! objects are those types' own serde JSON; an
//! export request is the registry's record (`export::request::encode`).
//! A reader refuses another version, a missing field, an unknown field of
//! the envelope or the error, an unknown error code, a request record it
//! cannot read: an error, never a panic. Answers are ephemeral (nothing
//! stores them): any change of this form is a new version.

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::outcomes::Answer;
use crate::auth::{NewToken, TokenInfo, User};
use crate::export::{request, ExportRequest};
use crate::org::OrgSettings;
use crate::server::error::ApiError;
use crate::server::replication::Outcome;
use crate::time::Timestamp;

/// The version this build writes and reads.
pub const VERSION: u64 = 1;

/// The subject a command's answer is published on:
/// `AUDIT.<cluster>.answer.<command id>` (the UUID hyphenated, lowercase).
pub fn subject(cluster: &str, id: &Uuid) -> String {
    format!("AUDIT.{cluster}.answer.{}", id.hyphenated())
}

/// Publish the answers of commands just applied (their positions durable)
/// on their subjects, with core NATS: fire and forget, in a task of its
/// own so that applying never waits on it. A failure is logged at debug:
/// the issuing node also has its own applier's outcome, or answers `503`.
pub fn publish(client: async_nats::Client, cluster: &str, answers: &[(Uuid, Answer)]) {
    let messages: Vec<(String, Vec<u8>)> = answers
        .iter()
        .filter_map(|(id, answer)| match encode(answer) {
            Ok(bytes) => Some((subject(cluster, id), bytes)),
            Err(e) => {
                tracing::debug!("command {id}: answer not published: {e}");
                None
            }
        })
        .collect();
    if messages.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for (subject, bytes) in messages {
            if let Err(e) = client.publish(subject.clone(), bytes.into()).await {
                tracing::debug!("{subject}: answer not published: {e}");
            }
        }
    });
}

/// Why bytes are not an answer this build reads, or an answer could not
/// be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnswerError {
    #[error("command answer: {0}")]
    Malformed(String),
    #[error("command answer: unknown version {0} (this build reads version {VERSION})")]
    UnknownVersion(u64),
    #[error("command answer: unknown error code {0:?}")]
    UnknownCode(String),
    #[error("command answer: {0} is not an HTTP status")]
    Status(u16),
    #[error("command answer: export request: {0}")]
    Export(String),
    #[error("command answer: cannot encode: {0}")]
    Encode(String),
}

/// The error codes an answer may carry (`ApiError::code` is `'static`):
/// every code of the contract (http.md) and of the crate's errors.
const CODES: &[&str] = &[
    "invalid_request",
    "invalid_event",
    "invalid_argument",
    "invalid_policy",
    "conflict",
    "unauthorized",
    "forbidden",
    "plan_not_eligible",
    "not_found",
    "no_data",
    "not_ready",
    "failed",
    "expired",
    "too_large",
    "invalid_range",
    "range_too_old",
    "range_in_future",
    "rate_limited",
    "unavailable",
    "locked",
    "io",
    "corrupt",
];

/// Only the version, read first: another version's fields are not looked at.
#[derive(Deserialize)]
struct Head {
    v: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<WireOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<WireError>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum WireOutcome {
    Settings(OrgSettings),
    Export(Box<RawValue>),
    Processed {
        processed: Vec<Box<RawValue>>,
        expired: Vec<Box<RawValue>>,
    },
    Published,
    /// The token's description only: its text never leaves the node that
    /// made it.
    Token(TokenInfo),
    Revoked(TokenInfo),
    User(User),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireError {
    status: u16,
    code: String,
    message: String,
    extra: Map<String, Value>,
    retry_after: Option<u64>,
    /// Nanoseconds since the epoch.
    next_allowed_at: Option<i64>,
}

/// `answer` as the bytes to publish.
pub fn encode(answer: &Answer) -> Result<Vec<u8>, AnswerError> {
    let wire = match answer {
        Ok(outcome) => Wire {
            v: VERSION,
            ok: Some(wire_outcome(outcome)?),
            error: None,
        },
        Err(e) => Wire {
            v: VERSION,
            ok: None,
            error: Some(WireError {
                status: e.status.as_u16(),
                code: e.code.to_owned(),
                message: e.message.clone(),
                extra: (*e.extra).clone(),
                retry_after: e.retry_after,
                next_allowed_at: e.next_allowed_at.map(Timestamp::as_nanos),
            }),
        },
    };
    serde_json::to_vec(&wire).map_err(|e| AnswerError::Encode(e.to_string()))
}

/// The answer in `bytes`, or why they are not one.
pub fn decode(bytes: &[u8]) -> Result<Answer, AnswerError> {
    let head: Head = serde_json::from_slice(bytes).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    if head.v != VERSION {
        return Err(AnswerError::UnknownVersion(head.v));
    }
    let wire: Wire = serde_json::from_slice(bytes).map_err(|e| AnswerError::Malformed(e.to_string()))?;
    match (wire.ok, wire.error) {
        (Some(ok), None) => Ok(Ok(outcome(ok)?)),
        (None, Some(e)) => Ok(Err(api_error(e)?)),
        _ => Err(AnswerError::Malformed(
            "exactly one of `ok` and `error` is expected".into(),
        )),
    }
}

fn wire_outcome(outcome: &Outcome) -> Result<WireOutcome, AnswerError> {
    let requests = |list: &[ExportRequest]| list.iter().map(raw_request).collect::<Result<Vec<_>, _>>();
    Ok(match outcome {
        Outcome::Settings(s) => WireOutcome::Settings(s.clone()),
        Outcome::Export(r) => WireOutcome::Export(raw_request(r)?),
        Outcome::Processed { processed, expired } => WireOutcome::Processed {
            processed: requests(processed)?,
            expired: requests(expired)?,
        },
        Outcome::Published => WireOutcome::Published,
        Outcome::Token(t) => WireOutcome::Token(t.info.clone()),
        Outcome::Revoked(t) => WireOutcome::Revoked(t.clone()),
        Outcome::User(u) => WireOutcome::User(u.clone()),
    })
}

fn outcome(wire: WireOutcome) -> Result<Outcome, AnswerError> {
    let requests = |list: Vec<Box<RawValue>>| list.iter().map(|r| request_of(r)).collect::<Result<_, _>>();
    Ok(match wire {
        WireOutcome::Settings(s) => Outcome::Settings(s),
        WireOutcome::Export(r) => Outcome::Export(request_of(&r)?),
        WireOutcome::Processed { processed, expired } => Outcome::Processed {
            processed: requests(processed)?,
            expired: requests(expired)?,
        },
        WireOutcome::Published => Outcome::Published,
        // The issuing node puts its own token text back into its answer.
        WireOutcome::Token(info) => Outcome::Token(NewToken {
            info,
            token: String::new(),
        }),
        WireOutcome::Revoked(t) => Outcome::Revoked(t),
        WireOutcome::User(u) => Outcome::User(u),
    })
}

/// An export request in the export registry's own form (one format for a
/// request, stored or sent).
fn raw_request(r: &ExportRequest) -> Result<Box<RawValue>, AnswerError> {
    let text = request::encode(r).map_err(|e| AnswerError::Encode(e.to_string()))?;
    RawValue::from_string(text).map_err(|e| AnswerError::Encode(e.to_string()))
}

fn request_of(raw: &RawValue) -> Result<ExportRequest, AnswerError> {
    request::decode("in an answer", raw.get()).map_err(|e| AnswerError::Export(e.to_string()))
}

fn api_error(e: WireError) -> Result<ApiError, AnswerError> {
    let code = CODES
        .iter()
        .copied()
        .find(|c| *c == e.code)
        .ok_or(AnswerError::UnknownCode(e.code))?;
    let status = StatusCode::from_u16(e.status).map_err(|_| AnswerError::Status(e.status))?;
    let mut err = ApiError::new(status, code, e.message);
    *err.extra = e.extra;
    err.retry_after = e.retry_after;
    err.next_allowed_at = e.next_allowed_at.map(Timestamp::from_nanos);
    Ok(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use crate::export::Status;
    use crate::org::Plan;
    use axum::response::IntoResponse;
    use chrono::NaiveDate;

    fn at(nanos: i64) -> Timestamp {
        Timestamp::from_nanos(nanos)
    }

    fn request(n: u8, done: bool) -> ExportRequest {
        ExportRequest {
            id: Uuid::from_bytes([n; 16]),
            org: "org-00".into(),
            requested_by: "ops \"quoted\" é".into(),
            from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
            window_start: at(1_790_000_000_000_000_001),
            window_end: at(1_790_100_000_000_000_000),
            created_at: at(1_796_000_000_123_456_789),
            status: if done { Status::Success } else { Status::Requested },
            completed_at: done.then(|| at(1_796_000_060_000_000_000)),
            expires_at: done.then(|| at(1_796_600_060_000_000_000)),
            has_data: done,
            rows: done.then_some(12),
            bytes: done.then_some(3456),
            crc32: done.then_some(0xdead_beef),
            manifest_sha256: done.then(|| "ab".repeat(32)),
            manifest_seq: done.then_some(7),
            failure_reason: None,
        }
    }

    fn info(org: Option<&str>) -> TokenInfo {
        TokenInfo {
            id: Uuid::from_bytes([9; 16]).hyphenated().to_string(),
            org: org.map(str::to_owned),
            role: if org.is_some() {
                Role::Admin
            } else {
                Role::Operator
            },
            name: Some("ci".into()),
            created_at: at(1_796_000_000_000_000_001),
        }
    }

    fn round_trip(answer: &Answer) -> Answer {
        let bytes = encode(answer).unwrap();
        decode(&bytes).unwrap()
    }

    fn outcome_of(answer: Answer) -> Outcome {
        match answer {
            Ok(o) => o,
            Err(e) => panic!("an error: {e:?}"),
        }
    }

    #[test]
    fn every_outcome_round_trips() {
        let settings = OrgSettings {
            org: "org-01".into(),
            plan: Plan::Scale,
            retention_days: 400,
        };
        match outcome_of(round_trip(&Ok(Outcome::Settings(settings.clone())))) {
            Outcome::Settings(s) => assert_eq!(s, settings),
            other => panic!("{other:?}"),
        }
        for done in [false, true] {
            match outcome_of(round_trip(&Ok(Outcome::Export(request(1, done))))) {
                Outcome::Export(r) => assert_eq!(r, request(1, done)),
                other => panic!("{other:?}"),
            }
        }
        let mut failed = request(4, false);
        failed.status = Status::Failed;
        failed.failure_reason = Some("disk full".into());
        let processed = vec![request(2, true), failed];
        let expired = vec![request(3, true)];
        match outcome_of(round_trip(&Ok(Outcome::Processed {
            processed: processed.clone(),
            expired: expired.clone(),
        }))) {
            Outcome::Processed {
                processed: p,
                expired: e,
            } => assert_eq!((p, e), (processed, expired.clone())),
            other => panic!("{other:?}"),
        }
        match outcome_of(round_trip(&Ok(Outcome::Processed {
            processed: vec![],
            expired: vec![],
        }))) {
            Outcome::Processed { processed, expired } => assert!(processed.is_empty() && expired.is_empty()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            outcome_of(round_trip(&Ok(Outcome::Published))),
            Outcome::Published
        ));
        for org in [None, Some("org-02")] {
            match outcome_of(round_trip(&Ok(Outcome::Revoked(info(org))))) {
                Outcome::Revoked(t) => assert_eq!(t, info(org)),
                other => panic!("{other:?}"),
            }
        }
        let user = User {
            user: "ada".into(),
            org: "org-03".into(),
            role: Role::Member,
        };
        match outcome_of(round_trip(&Ok(Outcome::User(user.clone())))) {
            Outcome::User(u) => assert_eq!(u, user),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_token_answer_never_carries_the_secret() {
        let secret = "aud_secret_text_that_must_not_travel";
        let made = NewToken {
            info: info(Some("org-04")),
            token: secret.into(),
        };
        let bytes = encode(&Ok(Outcome::Token(made))).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(!text.contains(secret), "{text}");
        match outcome_of(decode(&bytes).unwrap()) {
            Outcome::Token(t) => assert_eq!(
                t,
                NewToken {
                    info: info(Some("org-04")),
                    token: String::new()
                }
            ),
            other => panic!("{other:?}"),
        }
    }

    fn errors() -> Vec<ApiError> {
        let mut limited = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "3 per 30 days")
            .with("limit", 3)
            .with("window_days", 30)
            .with("nested", serde_json::json!({"a": [1, 2.5, null, "x"]}));
        limited.next_allowed_at = Some(at(1_796_000_000_987_654_321));
        let with_retry = limited.clone().retry_after_from(at(1_795_999_000_000_000_000));
        vec![
            limited,
            with_retry,
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_range",
                "`from` is after `to`",
            ),
            ApiError::forbidden("the free plan has no exports").with("plan", "free"),
            ApiError::new(StatusCode::BAD_REQUEST, "conflict", "user \"ada\" exists"),
            ApiError::not_found("no token \"x\""),
            ApiError::unavailable("later").with("partition", 3),
            ApiError::unauthorized("a valid token is required"),
        ]
    }

    #[tokio::test]
    async fn errors_round_trip_to_the_same_http_answer() {
        for e in errors() {
            let back = match round_trip(&Err(e.clone())) {
                Err(back) => back,
                Ok(o) => panic!("an outcome: {o:?}"),
            };
            assert_eq!(
                (back.status, back.code, &back.message, &back.extra),
                (e.status, e.code, &e.message, &e.extra)
            );
            assert_eq!(
                (back.retry_after, back.next_allowed_at),
                (e.retry_after, e.next_allowed_at)
            );
            let (a, b) = (e.into_response(), back.into_response());
            assert_eq!(a.status(), b.status());
            assert_eq!(a.headers(), b.headers());
            let a = axum::body::to_bytes(a.into_body(), 1 << 20).await.unwrap();
            let b = axum::body::to_bytes(b.into_body(), 1 << 20).await.unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn every_known_code_round_trips() {
        for code in CODES {
            let e = ApiError::new(ApiError::status_of(code), code, "m");
            match round_trip(&Err(e)) {
                Err(back) => assert_eq!((back.code, back.status), (*code, ApiError::status_of(code))),
                Ok(o) => panic!("{o:?}"),
            }
        }
    }

    #[test]
    fn damaged_or_unknown_answers_are_refused() {
        let malformed = |bytes: &[u8]| matches!(decode(bytes), Err(AnswerError::Malformed(_)));
        assert!(malformed(b""));
        assert!(malformed(b"\xff\x00"));
        assert!(malformed(b"[1]"));
        assert!(malformed(br#"{"ok":"published"}"#));
        assert!(malformed(br#"{"v":"1","ok":"published"}"#));
        assert!(malformed(br#"{"v":1}"#));
        assert!(malformed(br#"{"v":1,"ok":"published","error":null,"x":1}"#));
        assert!(malformed(br#"{"v":1,"ok":"done"}"#));
        assert!(malformed(br#"{"v":1,"ok":{"user":{"user":"a","org":"o"}}}"#));
        assert!(malformed(br#"{"v":1,"ok":"published"} trailing"#));
        let refused = |bytes: &[u8]| decode(bytes).map(|_| ()).unwrap_err();
        assert_eq!(
            refused(br#"{"v":2,"ok":"later"}"#),
            AnswerError::UnknownVersion(2)
        );
        assert_eq!(refused(br#"{"v":0}"#), AnswerError::UnknownVersion(0));
        let error = |status: u16, code: &str| {
            format!(
                r#"{{"v":1,"error":{{"status":{status},"code":"{code}","message":"m","extra":{{}},"retry_after":null,"next_allowed_at":null}}}}"#
            )
        };
        assert!(decode(error(409, "not_ready").as_bytes()).unwrap().is_err());
        assert_eq!(
            decode(error(400, "brand_new").as_bytes()).map(|_| ()),
            Err(AnswerError::UnknownCode("brand_new".into()))
        );
        assert_eq!(
            decode(error(1000, "conflict").as_bytes()).map(|_| ()),
            Err(AnswerError::Status(1000))
        );
        let export = br#"{"v":1,"ok":{"export":{"v":1,"id":"not a uuid"}}}"#;
        assert!(matches!(decode(export), Err(AnswerError::Export(_))));
    }

    #[test]
    fn no_damage_panics() {
        let answers = [
            encode(&Ok(Outcome::Processed {
                processed: vec![request(5, true)],
                expired: vec![request(6, false)],
            }))
            .unwrap(),
            encode(&Err(errors().remove(1))).unwrap(),
        ];
        for good in answers {
            for cut in 0..good.len() {
                assert!(decode(&good[..cut]).is_err(), "a prefix of {cut} bytes decoded");
            }
            for i in 0..good.len() {
                for flip in [0x01u8, 0x20, 0x80] {
                    let mut bad = good.clone();
                    bad[i] ^= flip;
                    let _ = decode(&bad);
                }
            }
        }
    }

    #[test]
    fn the_subject() {
        let id = Uuid::parse_str("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").unwrap();
        assert_eq!(
            subject("auditstore", &id),
            "AUDIT.auditstore.answer.0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        );
    }
}
