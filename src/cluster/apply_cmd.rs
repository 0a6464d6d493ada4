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
            // not in stream order: a request applied after another but
            // stamped earlier would not count it (the rate limit counts
            // the requests made up to "now"). So "now" is never earlier
            // than the organization's newest request: derived from the
            // state, the same on every replica.
            let newest = Exports::new(store)?
                .with_clock(clock())
                .list(&b.org)?
                .iter()
                .map(|r| r.created_at)
                .max();
            let now = newest.map_or(at, |n| n.max(at));
            let exports = Exports::new(store)?.with_clock(Arc::new(FixedClock::new(now)));
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
    match outcome {
        Err(e) if e.status.is_server_error() => Err(ClusterError::Apply(format!(
            "command {} at {at}: {} ({})",
            cmd.id, e.message, e.code
        ))),
        other => Ok(other),
    }
}
