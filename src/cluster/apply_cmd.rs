//! Applying one command to this node's store, deterministically: with the
//! command's id and instant (never this node's clock or a fresh random
//! id), so that every replica that applies the stream in order holds the
//! same state and decides a rate limit, a rule or a conflict alike.
//!
//! A refusal (`4xx`: a rate limit, a bad range, a user that exists) is the
//! command's outcome, the same on every node. A failure of this node
//! (`5xx`: I/O, corruption) is not: the applier stops and retries the
//! command from its position, as it does for a failed append of events.
//!
//! Applying the same command twice (a crash after its local change and
//! before the position was written) changes nothing: an export request or
//! a token whose id is stored is answered as stored; settings set again
//! record nothing; a processing run finds nothing left to do; a second
//! revocation or the same user again is refused, the state unchanged.

use std::sync::Arc;

use super::command::{Body, Command};
use super::partition::partition_of;
use super::ClusterError;
use crate::auth::{Auth, NewToken, Role, TokenHash, TokenScope};
use crate::export::{parse_date, Exports};
use crate::server::error::{ApiError, ApiResult};
use crate::server::replication::Outcome;
use crate::store::Store;
use crate::FixedClock;

/// Apply `cmd`, read from partition `partition` of `partitions`: its
/// outcome, or the failure that must stop the applier.
pub fn apply(
    store: &Store,
    partitions: u32,
    partition: u32,
    cmd: &Command,
) -> Result<ApiResult<Outcome>, ClusterError> {
    let at = cmd.at;
    let clock = || Arc::new(FixedClock::new(at));
    let outcome: ApiResult<Outcome> = match &cmd.body {
        Body::SetOrg(b) => (|| {
            let plan = b
                .plan
                .as_deref()
                .map(str::parse::<crate::Plan>)
                .transpose()
                .map_err(|e| ApiError::bad_request(format!("`plan`: {e}")))?;
            let s = store.set_org_as_at(&b.by, &b.org, plan, b.retention_days, at)?;
            Ok(Outcome::Settings(s))
        })(),
        Body::RequestExport(b) => (|| {
            let role = b
                .role
                .parse::<crate::export::Role>()
                .map_err(ApiError::bad_request)?;
            let date =
                |k: &str, v: &str| parse_date(v).map_err(|e| ApiError::bad_request(format!("`{k}`: {e}")));
            let (from, to) = (date("from", &b.from)?, date("to", &b.to)?);
            // Commands' instants come from different nodes' clocks and are
            // not in stream order: every request applied before this one
            // counts, whatever its stamp.
            let exports = Exports::new(store)?.with_clock(clock()).counting_later_requests();
            let request = exports.request_with_id(cmd.id, &b.org, &b.requested_by, role, from, to)?;
            Ok(Outcome::Export(request))
        })(),
        Body::Process(_) => (|| {
            let exports = Exports::new(store)?.with_clock(clock());
            let report = exports.process_where(&|org| partition_of(org, partitions) == partition)?;
            Ok(Outcome::Processed {
                processed: report.processed,
                expired: report.expired,
            })
        })(),
        Body::CreateToken(b) => (|| {
            let role: Role = b.role.parse().map_err(ApiError::bad_request)?;
            let scope = match &b.org {
                Some(org) => TokenScope::Org {
                    org: org.clone(),
                    role,
                },
                None if role == Role::Operator => TokenScope::Operator,
                None => {
                    return Err(ApiError::bad_request(
                        "a token without organization is an operator's",
                    ))
                }
            };
            let hash = TokenHash::from_hex(&b.sha256)
                .ok_or_else(|| ApiError::bad_request("`sha256` is not 64 hexadecimal digits"))?;
            let info = Auth::new(store).create_token_hashed(
                &b.token_id,
                &hash,
                scope,
                b.name.as_deref(),
                &b.by,
                at,
            )?;
            // The text is known only where the command was issued: that
            // node puts it back into its answer.
            Ok(Outcome::Token(NewToken {
                info,
                token: String::new(),
            }))
        })(),
        Body::RevokeToken(b) => Auth::new(store)
            .revoke_token_at(&b.token_id, &b.by, at)
            .map(Outcome::Revoked)
            .map_err(ApiError::from),
        Body::AddUser(b) => (|| {
            let role: Role = b.role.parse().map_err(ApiError::bad_request)?;
            let user =
                Auth::new(store).add_user_hashed(&b.user, &b.org, role, &b.password_hash, &b.by, at)?;
            Ok(Outcome::User(user))
        })(),
    };
    let counted = match &outcome {
        Ok(_) => "applied",
        Err(e) if e.status.is_server_error() => "failed",
        Err(_) => "refused",
    };
    metrics::counter!("auditstore_cluster_commands_total", "kind" => cmd.body.name(), "outcome" => counted)
        .increment(1);
    match outcome {
        Err(e) if e.status.is_server_error() => Err(ClusterError::Apply(format!(
            "command {} at {at}: {} ({})",
            cmd.id, e.message, e.code
        ))),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::command::{self, Body};
    use crate::time::Timestamp;
    use uuid::Uuid;

    fn at(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn cmd(id: u128, when: &str, body: Body) -> Command {
        Command {
            id: Uuid::from_u128(id),
            at: at(when),
            body,
        }
    }

    fn export(id: u128, when: &str) -> Command {
        cmd(
            id,
            when,
            Body::RequestExport(command::RequestExport {
                org: "org-a".into(),
                requested_by: "ann".into(),
                role: "admin".into(),
                from: "2026-08-01".into(),
                to: "2026-08-02".into(),
            }),
        )
    }

    /// The same commands applied to two stores (as two nodes would, in
    /// stream order) decide alike, whatever the stores' own clocks say.
    #[test]
    fn two_replicas_decide_alike_and_a_command_applies_once() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let stores: Vec<Store> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                // Clocks a year apart: they must not matter.
                let clock = Arc::new(FixedClock::new(at([
                    "2020-01-01T00:00:00Z",
                    "2030-01-01T00:00:00Z",
                ][i])));
                Store::open_with(
                    d.path(),
                    crate::Options {
                        clock,
                        ..crate::Options::default()
                    },
                )
                .unwrap()
            })
            .collect();
        let set = cmd(
            1,
            "2026-08-10T09:00:00Z",
            Body::SetOrg(command::SetOrg {
                org: "org-a".into(),
                by: "op".into(),
                plan: Some("scale".into()),
                retention_days: None,
            }),
        );
        // Stamped out of stream order (two nodes' clocks): the fourth in
        // the stream is the earliest, and must still count the others.
        let requests = [
            export(10, "2026-08-10T09:00:03Z"),
            export(11, "2026-08-10T09:00:01Z"),
            export(12, "2026-08-10T09:00:02Z"),
            export(13, "2026-08-10T09:00:00Z"),
        ];
        let token = crate::auth::token::generate().unwrap();
        let make = cmd(
            20,
            "2026-08-10T09:01:00Z",
            Body::CreateToken(command::CreateToken {
                token_id: Uuid::from_u128(21).to_string(),
                org: Some("org-a".into()),
                role: "admin".into(),
                name: Some("ann".into()),
                by: "op".into(),
                sha256: TokenHash::of(&token).to_hex(),
            }),
        );
        let revoke = cmd(
            22,
            "2026-08-10T09:02:00Z",
            Body::RevokeToken(command::RevokeToken {
                token_id: Uuid::from_u128(21).to_string(),
                by: "op".into(),
            }),
        );
        let mut answers = Vec::new();
        for store in &stores {
            let mut mine = Vec::new();
            assert!(matches!(
                apply(store, 4, 0, &set).unwrap(),
                Ok(Outcome::Settings(_))
            ));
            for r in &requests {
                mine.push(match apply(store, 4, 0, r).unwrap() {
                    Ok(Outcome::Export(req)) => format!("201 {} {}", req.id, req.created_at),
                    Ok(other) => panic!("{other:?}"),
                    Err(e) => format!("{} {}", e.status.as_u16(), e.code),
                });
            }
            // Applied again (a crash before the position was written):
            // the same request, nothing more counted.
            match apply(store, 4, 0, &requests[0]).unwrap() {
                Ok(Outcome::Export(req)) => assert_eq!(req.id, Uuid::from_u128(10)),
                other => panic!("{other:?}"),
            }
            let listed = Exports::new(store).unwrap().list("org-a").unwrap();
            assert_eq!(listed.len(), 3);
            assert!(matches!(
                apply(store, 4, 0, &make).unwrap(),
                Ok(Outcome::Token(_))
            ));
            let auth = Auth::new(store);
            assert_eq!(
                auth.authenticate(&token).unwrap().id,
                Uuid::from_u128(21).to_string()
            );
            assert!(matches!(
                apply(store, 4, 0, &revoke).unwrap(),
                Ok(Outcome::Revoked(_))
            ));
            assert!(auth.authenticate(&token).is_err());
            let again = apply(store, 4, 0, &revoke).unwrap();
            assert_eq!(again.map(|_| ()).unwrap_err().code, "not_found");
            answers.push(mine);
        }
        assert_eq!(answers[0], answers[1]);
        assert!(answers[0][3].starts_with("429 rate_limited"), "{:?}", answers[0]);
        assert_eq!(answers[0].iter().filter(|a| a.starts_with("201")).count(), 3);
    }

    #[test]
    fn a_bad_body_is_refused_alike() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bad = cmd(
            1,
            "2026-08-10T09:00:00Z",
            Body::SetOrg(command::SetOrg {
                org: "org-a".into(),
                by: "op".into(),
                plan: Some("gold".into()),
                retention_days: None,
            }),
        );
        let e = apply(&store, 4, 0, &bad).unwrap().unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "invalid_request"));
    }
}
