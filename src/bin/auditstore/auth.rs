//! `token create|list|revoke`, `user add` (contract: `shared/spec/http.md`,
//! "Who may do what").

use std::io::{Read, Write};
use std::process::ExitCode;

use auditstore::auth::{Auth, AuthError, Role, TokenInfo, TokenScope};
use clap::Subcommand;
use serde_json::{json, Value};

use auditstore::server::replication::{Command, Outcome};

use crate::ctx::{outln, parse_org, parse_user, table, CliError, CliResult, Ctx};
use crate::remote;

fn unexpected(other: &Outcome) -> CliError {
    CliError::new("io", format!("the cluster answered {other:?}"))
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make an API token (shown once).
    Create {
        /// The organization the token belongs to.
        #[arg(long, value_parser = parse_org, required_unless_present = "operator", conflicts_with = "operator")]
        org: Option<String>,
        /// What the token may do in its organization.
        #[arg(long, value_parser = ["ingest", "member", "admin"], required_unless_present = "operator", conflicts_with = "operator")]
        role: Option<String>,
        /// A token for every organization, with organization settings.
        #[arg(long)]
        operator: bool,
        /// A name for the token (an export's requester when it makes one).
        #[arg(long)]
        name: Option<String>,
        /// Who makes it, for the organization's log [default: the
        /// operating system's user name].
        #[arg(long, value_parser = parse_user)]
        user: Option<String>,
    },
    /// The live tokens (without their secret text).
    List {
        #[arg(long, value_parser = parse_org)]
        org: Option<String>,
    },
    /// Revoke a token: it stops working at once.
    Revoke {
        id: String,
        /// Who revokes it [default: the operating system's user name].
        #[arg(long, value_parser = parse_user)]
        user: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum UserCommand {
    /// Add a person who signs in to the web page.
    Add {
        #[arg(long, value_parser = parse_org)]
        org: String,
        #[arg(long, value_parser = ["member", "admin"])]
        role: String,
        /// The user name to sign in with.
        #[arg(value_parser = parse_user)]
        name: String,
        /// Read the password from stdin (all of it, without a trailing
        /// newline).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Who adds them [default: the operating system's user name].
        #[arg(long, value_parser = parse_user)]
        user: Option<String>,
    },
}

impl From<AuthError> for CliError {
    fn from(e: AuthError) -> Self {
        match e {
            // A bad name or password is the request's fault, not a range's
            // (the store's own mapping of `invalid_argument`).
            AuthError::Store(e @ auditstore::Error::InvalidArgument { .. }) => {
                CliError::new("invalid_request", e.to_string())
            }
            AuthError::Store(e) => e.into(),
            other => CliError::new(other.code(), other.to_string()),
        }
    }
}

fn token_json(t: &TokenInfo) -> Value {
    json!({"id": t.id, "org": t.org, "role": t.role, "name": t.name, "created_at": t.created_at})
}

fn token_rows(tokens: &[TokenInfo]) -> Vec<Vec<String>> {
    tokens
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.org.clone().unwrap_or_else(|| "*".into()),
                t.role.to_string(),
                t.name.clone().unwrap_or_default(),
                t.created_at.to_rfc3339(),
            ]
        })
        .collect()
}

const TOKEN_HEADERS: [&str; 5] = ["id", "org", "role", "name", "created_at"];

pub fn token(ctx: &Ctx, cmd: TokenCommand) -> CliResult<ExitCode> {
    match cmd {
        TokenCommand::Create {
            org,
            role,
            operator,
            name,
            user,
        } => {
            let scope = match (operator, org, role) {
                (true, _, _) => TokenScope::Operator,
                (false, Some(org), Some(role)) => TokenScope::Org {
                    org,
                    role: role
                        .parse::<Role>()
                        .map_err(|e| CliError::new("invalid_request", e))?,
                },
                _ => {
                    return Err(CliError::new(
                        "invalid_request",
                        "give --org and --role, or --operator",
                    ))
                }
            };
            let by = user.unwrap_or_else(|| ctx.user());
            let command = Command::CreateToken {
                scope: scope.clone(),
                name: name.clone(),
                by: by.clone(),
            };
            let made = match remote::through_cluster(ctx, command) {
                Some(Ok(Outcome::Token(made))) => made,
                Some(Ok(other)) => return Err(unexpected(&other)),
                Some(Err(e)) => return Err(e),
                None => {
                    let store = ctx.open_store(true)?;
                    Auth::new(&store).create_token(scope, name.as_deref(), &by)?
                }
            };
            if ctx.json {
                let mut v = token_json(&made.info);
                v["token"] = json!(made.token);
                ctx.print_json(&v)?;
            } else {
                print!(
                    "{}",
                    table(&TOKEN_HEADERS, &token_rows(std::slice::from_ref(&made.info)))
                );
                println!("token (shown once, keep it secret): {}", made.token);
            }
        }
        TokenCommand::List { org } => {
            let store = ctx.open_store(false)?;
            let tokens = Auth::new(&store).list_tokens(org.as_deref())?;
            if ctx.json {
                ctx.print_json(&Value::Array(tokens.iter().map(token_json).collect()))?;
            } else if tokens.is_empty() {
                outln!(ctx, "no tokens")?;
            } else {
                ctx.print(&table(&TOKEN_HEADERS, &token_rows(&tokens)))?;
            }
        }
        TokenCommand::Revoke { id, user } => {
            let by = user.unwrap_or_else(|| ctx.user());
            let command = Command::RevokeToken {
                id: id.clone(),
                by: by.clone(),
            };
            let revoked = match remote::through_cluster(ctx, command) {
                Some(Ok(Outcome::Revoked(info))) => info,
                Some(Ok(other)) => return Err(unexpected(&other)),
                Some(Err(e)) => return Err(e),
                None => {
                    let store = ctx.open_store(true)?;
                    Auth::new(&store).revoke_token(&id, &by)?
                }
            };
            if ctx.json {
                ctx.print_json(&json!({"revoked": revoked.id}))?;
            } else {
                outln!(ctx, "revoked {}", revoked.id)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn user(ctx: &Ctx, cmd: UserCommand) -> CliResult<ExitCode> {
    let UserCommand::Add {
        org,
        role,
        name,
        password_stdin: _,
        user,
    } = cmd;
    let role: Role = role
        .parse()
        .map_err(|e: String| CliError::new("invalid_request", e))?;
    let mut password = String::new();
    ctx.console
        .stdin()
        .read_to_string(&mut password)
        .map_err(|e| CliError::new("io", format!("read the password from stdin: {e}")))?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if !password.is_empty() && password.chars().count() < auditstore::auth::password::RECOMMENDED_MIN_CHARS {
        let mut err = ctx.err();
        let _ = writeln!(
            err,
            "auditstore: warning: a password shorter than {} characters is easy to guess",
            auditstore::auth::password::RECOMMENDED_MIN_CHARS
        );
    }
    let by = user.unwrap_or_else(|| ctx.user());
    let added = if ctx.shared.is_some() && remote::CLUSTER_HOOK.get().is_some() {
        // Through the cluster: checked, then hashed here; only the hash
        // travels.
        Auth::check_user(&name, &org, role, &by)?;
        let password_hash = auditstore::auth::password::hash(password).map_err(AuthError::from)?;
        let command = Command::AddUser {
            name: name.clone(),
            org: org.clone(),
            role,
            password_hash,
            by: by.clone(),
        };
        match remote::through_cluster(ctx, command) {
            Some(Ok(Outcome::User(user))) => user,
            Some(Ok(other)) => return Err(unexpected(&other)),
            Some(Err(e)) => return Err(e),
            None => return Err(CliError::new("unavailable", "the cluster is not reachable")),
        }
    } else {
        let store = ctx.open_store(true)?;
        Auth::new(&store).add_user(&name, &org, role, password, &by)?
    };
    if ctx.json {
        ctx.print_json(&json!({"user": added.user, "org": added.org, "role": added.role}))?;
    } else {
        outln!(ctx, "added {} ({} of {})", added.user, added.role, added.org)?;
    }
    Ok(ExitCode::SUCCESS)
}
