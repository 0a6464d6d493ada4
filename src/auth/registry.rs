//! Tokens and users in `meta.redb`, and the own events that record their
//! changes.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{password, token, AuthError, NewToken, Role, TokenHash, TokenInfo, TokenScope, User};
use crate::event::Event;
use crate::export::validate_user;
use crate::org::validate_org_name;
use crate::store::own_events::{own_event, own_event_id, stage, Actor};
use crate::store::Store;
use crate::time::Timestamp;

/// Token id -> [`StoredToken`] as JSON (revoked ones stay, marked).
const TOKENS: TableDefinition<&str, &str> = TableDefinition::new("auth_tokens");
/// SHA-256 of a live token's text -> its id.
const TOKEN_HASHES: TableDefinition<&[u8; 32], &str> = TableDefinition::new("auth_token_hashes");
/// User name -> [`StoredUser`] as JSON.
const USERS: TableDefinition<&str, &str> = TableDefinition::new("auth_users");

/// Longest token name, in bytes.
pub const MAX_TOKEN_NAME_LEN: usize = 256;

#[derive(Serialize, Deserialize)]
struct StoredToken {
    #[serde(flatten)]
    info: TokenInfo,
    sha256: String,
    revoked_at: Option<Timestamp>,
}

#[derive(Serialize, Deserialize)]
struct StoredUser {
    #[serde(flatten)]
    user: User,
    password: String,
    created_at: Timestamp,
}

/// The tokens and users of one store.
#[derive(Debug, Clone, Copy)]
pub struct Auth<'s> {
    store: &'s Store,
}

fn bad_record(what: &str, key: &str, e: impl std::fmt::Display) -> crate::Error {
    crate::Error::Metadata(format!("{what} {key:?}: {e}"))
}

impl<'s> Auth<'s> {
    pub fn new(store: &'s Store) -> Self {
        Auth { store }
    }

    fn now(&self) -> Timestamp {
        self.store.clock().now()
    }

    /// Make a token; `by` is who made it (for the organization's log).
    pub fn create_token(
        &self,
        scope: TokenScope,
        name: Option<&str>,
        by: &str,
    ) -> Result<NewToken, AuthError> {
        self.store.refuse_if_read_only()?;
        check_token_request(&scope, name, by)?;
        let text = token::generate().map_err(|e| crate::Error::io("make a token", e))?;
        let id = Uuid::new_v4().hyphenated().to_string();
        let info = self.create_token_hashed(&id, &TokenHash::of(&text), scope, name, by, self.now())?;
        Ok(NewToken { info, token: text })
    }

    /// Store a token made elsewhere, known only by its hash, with the id
    /// and instant given: how a replicated deployment applies the same
    /// token on every replica (the secret text never leaves the node that
    /// made it). A token id already stored answers that token as stored
    /// (applying the same command twice changes nothing).
    pub fn create_token_hashed(
        &self,
        id: &str,
        hash: &TokenHash,
        scope: TokenScope,
        name: Option<&str>,
        by: &str,
        at: Timestamp,
    ) -> Result<TokenInfo, AuthError> {
        self.store.refuse_if_read_only()?;
        let (org, role) = check_token_request(&scope, name, by)?;
        if Uuid::parse_str(id).is_err() {
            return Err(AuthError::Invalid {
                what: "token id",
                reason: format!("{id:?} is not a UUID"),
            });
        }
        if let Some(stored) = self.stored_token(id)? {
            return Ok(stored.info);
        }
        let info = TokenInfo {
            id: id.to_owned(),
            org,
            role,
            name: name.map(str::to_owned),
            created_at: at,
        };
        let stored = StoredToken {
            info: info.clone(),
            sha256: hash.to_hex(),
            revoked_at: None,
        };
        let json = serde_json::to_string(&stored).map_err(|e| bad_record("token", &info.id, e))?;
        let event = match &info.org {
            Some(org) => Some((
                org.clone(),
                token_event(TOKEN_CREATE, &info, by, info.created_at)?,
            )),
            None => None,
        };
        self.store.meta().write(|tx| -> Result<(), crate::Error> {
            tx.open_table(TOKENS)?.insert(info.id.as_str(), json.as_str())?;
            tx.open_table(TOKEN_HASHES)?.insert(&hash.0, info.id.as_str())?;
            if let Some((org, event)) = &event {
                stage(tx, org, event)?;
            }
            Ok(())
        })?;
        self.store.record_staged_events()?;
        Ok(info)
    }

    /// The token `id` as stored (live or revoked), if any.
    fn stored_token(&self, id: &str) -> Result<Option<StoredToken>, AuthError> {
        self.store.meta().read(|tx| -> Result<_, AuthError> {
            let table = match tx.open_table(TOKENS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(crate::Error::from(e).into()),
            };
            let found = table.get(id).map_err(crate::Error::from)?;
            match found {
                Some(v) => Ok(Some(
                    serde_json::from_str(v.value()).map_err(|e| bad_record("token", id, e))?,
                )),
                None => Ok(None),
            }
        })
    }

    /// The live token `id`, if any (without its secret).
    pub fn token(&self, id: &str) -> Result<Option<TokenInfo>, AuthError> {
        Ok(self
            .stored_token(id)?
            .filter(|t| t.revoked_at.is_none())
            .map(|t| t.info))
    }

    /// The live tokens, of one organization or all, oldest first.
    pub fn list_tokens(&self, org: Option<&str>) -> Result<Vec<TokenInfo>, AuthError> {
        let mut out: Vec<TokenInfo> = self.store.meta().read(|tx| -> Result<_, crate::Error> {
            let mut out = Vec::new();
            let table = match tx.open_table(TOKENS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            for item in table.iter()? {
                let (k, v) = item?;
                let stored: StoredToken =
                    serde_json::from_str(v.value()).map_err(|e| bad_record("token", k.value(), e))?;
                if stored.revoked_at.is_none() && (org.is_none() || stored.info.org.as_deref() == org) {
                    out.push(stored.info);
                }
            }
            Ok(out)
        })?;
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Revoke a token: refused from the next authentication on.
    pub fn revoke_token(&self, id: &str, by: &str) -> Result<TokenInfo, AuthError> {
        self.revoke_token_at(id, by, self.now())
    }

    /// [`Auth::revoke_token`], recorded as made at `now` (a replicated
    /// deployment's command instant).
    pub fn revoke_token_at(&self, id: &str, by: &str, now: Timestamp) -> Result<TokenInfo, AuthError> {
        self.store.refuse_if_read_only()?;
        validate_user(by)?;
        let info = self.store.meta().write(|tx| -> Result<TokenInfo, AuthError> {
            let mut tokens = tx.open_table(TOKENS).map_err(crate::Error::from)?;
            let not_found = || AuthError::NotFound {
                what: "token",
                id: id.to_owned(),
            };
            let mut stored: StoredToken = match tokens.get(id).map_err(crate::Error::from)? {
                Some(v) => serde_json::from_str(v.value()).map_err(|e| bad_record("token", id, e))?,
                None => return Err(not_found()),
            };
            if stored.revoked_at.is_some() {
                return Err(not_found());
            }
            stored.revoked_at = Some(now);
            let json = serde_json::to_string(&stored).map_err(|e| bad_record("token", id, e))?;
            tokens.insert(id, json.as_str()).map_err(crate::Error::from)?;
            if let Some(hash) = TokenHash::from_hex(&stored.sha256) {
                tx.open_table(TOKEN_HASHES)
                    .map_err(crate::Error::from)?
                    .remove(&hash.0)
                    .map_err(crate::Error::from)?;
            }
            if let Some(org) = &stored.info.org {
                stage(tx, org, &token_event(TOKEN_REVOKE, &stored.info, by, now)?)?;
            }
            Ok(stored.info)
        })?;
        self.store.record_staged_events()?;
        Ok(info)
    }

    /// The token whose text this is, if it is live.
    pub fn authenticate(&self, text: &str) -> Result<TokenInfo, AuthError> {
        if !token::is_well_formed(text) {
            return Err(AuthError::Unauthorized("not a token"));
        }
        let hash = TokenHash::of(text);
        self.store.meta().read(|tx| -> Result<TokenInfo, AuthError> {
            let unknown = AuthError::Unauthorized("unknown or revoked token");
            let id = match tx.open_table(TOKEN_HASHES) {
                Ok(t) => match t.get(&hash.0).map_err(crate::Error::from)? {
                    Some(id) => id.value().to_owned(),
                    None => return Err(unknown),
                },
                Err(redb::TableError::TableDoesNotExist(_)) => return Err(unknown),
                Err(e) => return Err(crate::Error::from(e).into()),
            };
            let tokens = tx.open_table(TOKENS).map_err(crate::Error::from)?;
            let Some(v) = tokens.get(id.as_str()).map_err(crate::Error::from)? else {
                return Err(unknown);
            };
            let stored: StoredToken =
                serde_json::from_str(v.value()).map_err(|e| bad_record("token", &id, e))?;
            let matches = TokenHash::from_hex(&stored.sha256).is_some_and(|h| h.ct_eq(&hash));
            if !matches || stored.revoked_at.is_some() {
                return Err(unknown);
            }
            Ok(stored.info)
        })
    }

    /// Add a web user of `org` with role member or admin.
    pub fn add_user(
        &self,
        name: &str,
        org: &str,
        role: Role,
        pass: &str,
        by: &str,
    ) -> Result<User, AuthError> {
        self.store.refuse_if_read_only()?;
        check_user_request(name, org, role, by)?;
        let hashed = password::hash(pass)?;
        self.add_user_hashed(name, org, role, &hashed, by, self.now())
    }

    /// Check what [`Auth::add_user`] checks before the password is hashed
    /// (a replicated deployment refuses a bad request before publishing).
    pub fn check_user(name: &str, org: &str, role: Role, by: &str) -> Result<(), AuthError> {
        check_user_request(name, org, role, by)
    }

    /// Add a user whose password is already hashed (the argon2id PHC
    /// string of [`password::hash`]), at `now`: how a replicated deployment
    /// applies the same user on every replica (the password itself never
    /// leaves the node that hashed it).
    pub fn add_user_hashed(
        &self,
        name: &str,
        org: &str,
        role: Role,
        hashed: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<User, AuthError> {
        self.store.refuse_if_read_only()?;
        check_user_request(name, org, role, by)?;
        let hashed = hashed.to_owned();
        let user = User {
            user: name.to_owned(),
            org: org.to_owned(),
            role,
        };
        let stored = StoredUser {
            user: user.clone(),
            password: hashed,
            created_at: now,
        };
        let json = serde_json::to_string(&stored).map_err(|e| bad_record("user", name, e))?;
        let nanos = now.as_nanos().to_string();
        let event = own_event(
            org,
            USER_CREATE,
            own_event_id(&[USER_CREATE, org, name, &nanos]),
            now,
            Actor::user(by),
            (name, "user"),
            serde_json::json!({"role": role}),
        )?;
        self.store.meta().write(|tx| -> Result<(), AuthError> {
            let mut users = tx.open_table(USERS).map_err(crate::Error::from)?;
            if users.get(name).map_err(crate::Error::from)?.is_some() {
                return Err(AuthError::Conflict(format!("user {name:?} already exists")));
            }
            users.insert(name, json.as_str()).map_err(crate::Error::from)?;
            stage(tx, org, &event)?;
            Ok(())
        })?;
        self.store.record_staged_events()?;
        Ok(user)
    }

    /// The user named `name`, if any.
    pub fn user(&self, name: &str) -> Result<Option<User>, AuthError> {
        Ok(self.stored_user(name)?.map(|s| s.user))
    }

    fn stored_user(&self, name: &str) -> Result<Option<StoredUser>, AuthError> {
        self.store.meta().read(|tx| -> Result<_, AuthError> {
            let users = match tx.open_table(USERS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(crate::Error::from(e).into()),
            };
            let found = users.get(name).map_err(crate::Error::from)?;
            match found {
                Some(v) => Ok(Some(
                    serde_json::from_str(v.value()).map_err(|e| bad_record("user", name, e))?,
                )),
                None => Ok(None),
            }
        })
    }

    /// Check a user's password (an unknown user costs the same argon2
    /// check) and record the sign-in as `user.logged_in` in their
    /// organization's log.
    pub fn sign_in(&self, name: &str, pass: &str) -> Result<User, AuthError> {
        let stored = self.stored_user(name)?;
        let phc = stored.as_ref().map_or(password::decoy(), |s| s.password.as_str());
        let ok = password::verify(pass, phc);
        let Some(stored) = stored.filter(|_| ok) else {
            return Err(AuthError::Unauthorized("unknown user or wrong password"));
        };
        let now = self.now();
        let user = stored.user;
        let nanos = now.as_nanos().to_string();
        let event = own_event(
            &user.org,
            USER_LOGGED_IN,
            own_event_id(&[USER_LOGGED_IN, &user.org, &user.user, &nanos]),
            now,
            Actor::user(&user.user),
            (&user.user, "user"),
            serde_json::json!({"via": "web"}),
        )?;
        if !self.store.is_read_only() {
            self.store.record_own_event(&user.org, &event)?;
        }
        Ok(user)
    }
}

/// What a token request must be: a valid maker, name and scope; the
/// token's (organization, role).
fn check_token_request(
    scope: &TokenScope,
    name: Option<&str>,
    by: &str,
) -> Result<(Option<String>, Role), AuthError> {
    validate_user(by)?;
    if let Some(n) = name {
        if n.is_empty() || n.len() > MAX_TOKEN_NAME_LEN || n.chars().any(char::is_control) {
            return Err(AuthError::Invalid {
                what: "token name",
                reason: format!("1 to {MAX_TOKEN_NAME_LEN} bytes without control characters"),
            });
        }
    }
    match scope {
        TokenScope::Operator => Ok((None, Role::Operator)),
        TokenScope::Org {
            role: Role::Operator, ..
        } => Err(AuthError::Invalid {
            what: "role",
            reason:
                "an organization's token is ingest, member or admin; operator tokens have no organization"
                    .into(),
        }),
        TokenScope::Org { org, role } => {
            validate_org_name(org)?;
            Ok((Some(org.clone()), *role))
        }
    }
}

fn check_user_request(name: &str, org: &str, role: Role, by: &str) -> Result<(), AuthError> {
    validate_user(name)?;
    validate_user(by)?;
    validate_org_name(org)?;
    if !matches!(role, Role::Member | Role::Admin) {
        return Err(AuthError::Invalid {
            what: "role",
            reason: "a user is a member or an admin of their organization".into(),
        });
    }
    Ok(())
}

const TOKEN_CREATE: &str = "api_token.create";
const TOKEN_REVOKE: &str = "api_token.revoke";
const USER_CREATE: &str = "user.create";
const USER_LOGGED_IN: &str = "user.logged_in";

/// The own event of a token's creation or revocation.
fn token_event(action: &str, info: &TokenInfo, by: &str, at: Timestamp) -> Result<Event, crate::Error> {
    let org = info.org.as_deref().unwrap_or_default();
    own_event(
        org,
        action,
        own_event_id(&[action, org, &info.id]),
        at,
        Actor::user(by),
        (&info.id, "api_token"),
        serde_json::json!({"role": info.role, "name": info.name}),
    )
}
