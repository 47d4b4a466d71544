//! `admin user …` and `admin token …`: users (access key / secret key, super or normal,
//! enabled or disabled), their policies and bearer tokens, through each target broker's
//! `AccessAdmin` service (docs/security.md).
//!
//! Invariants: a change goes to every target broker (users live on each broker until
//! replication copies them), and the answer shown is the first broker's; a secret is never
//! printed, a token only once, when issued. Policies are read from JSON in core's format
//! (`[{"resources": ["Topic:orders*"], "actions": ["Pub"], "decision": "Allow", "sources": []}]`)
//! and checked here before anything is sent.
//!
//! Owns these commands only; calls go through `target.rs`, rendering through `output.rs`.

use std::path::PathBuf;

use rocketgate_core::auth::{Decision, PolicyEntry};
use rocketgate_proto::cluster::v1 as pb;
use serde::Serialize;

use super::error::{AdminError, Op};
use super::output::{render, table, time_cell, Doc};
use super::target::{self, AccessClient, Ctx};
use super::Outcome;

/// User commands.
#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user.
    Create {
        /// Access key (the user's name).
        access_key: String,
        /// Secret key, 8..=256 printable characters (prefer `--secret-env`).
        #[arg(long, conflicts_with = "secret_env")]
        secret: Option<String>,
        /// Read the secret key from this environment variable.
        #[arg(long, value_name = "VAR")]
        secret_env: Option<String>,
        /// A super user (may do everything, including managing users).
        #[arg(long = "super")]
        superuser: bool,
    },
    /// Change a user's secret, kind or status.
    Update {
        /// Access key.
        access_key: String,
        /// A new secret key.
        #[arg(long, conflicts_with = "secret_env")]
        secret: Option<String>,
        /// Read the new secret key from this environment variable.
        #[arg(long, value_name = "VAR")]
        secret_env: Option<String>,
        /// Make it a super user.
        #[arg(long = "super", conflicts_with = "normal")]
        superuser: bool,
        /// Make it a normal user.
        #[arg(long)]
        normal: bool,
        /// Enable it.
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Disable it (its secret and tokens are refused).
        #[arg(long)]
        disable: bool,
    },
    /// Delete a user with its policy and tokens.
    Delete {
        /// Access key.
        access_key: String,
    },
    /// Every user.
    List,
    /// Show a user's policy.
    Policy {
        /// Access key.
        access_key: String,
    },
    /// Replace a user's policy with the JSON entries of a file (`-` for stdin).
    SetPolicy {
        /// Access key.
        access_key: String,
        /// The policy file.
        #[arg(long)]
        file: PathBuf,
    },
}

/// Token commands.
#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Issue a bearer token for a user (printed once).
    Issue {
        /// Access key.
        access_key: String,
        /// Lifetime (`30m`, `24h`); default the broker's `auth.token_ttl_ms`.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<std::time::Duration>,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (from `token list`).
        id: String,
    },
    /// Tokens (ids, owners, expiry; never the tokens).
    List {
        /// Only this user's.
        access_key: Option<String>,
    },
}

#[derive(Debug, Serialize)]
struct UserView {
    access_key: String,
    kind: &'static str,
    status: &'static str,
    created_ms: i64,
}

fn user_view(u: &pb::User) -> UserView {
    UserView {
        access_key: u.access_key.clone(),
        kind: match pb::UserKind::try_from(u.kind) {
            Ok(pb::UserKind::Super) => "super",
            _ => "normal",
        },
        status: match pb::UserStatus::try_from(u.status) {
            Ok(pb::UserStatus::Disabled) => "disabled",
            _ => "enabled",
        },
        created_ms: u.created_ms,
    }
}

fn users_doc(users: &[pb::User]) -> Doc {
    let views: Vec<UserView> = users.iter().map(user_view).collect();
    let mut t = table(&["ACCESS KEY", "KIND", "STATUS", "CREATED"], &[]);
    for v in &views {
        t.add_row(vec![
            v.access_key.clone(),
            v.kind.into(),
            v.status.into(),
            time_cell(v.created_ms),
        ]);
    }
    Doc::new(
        &serde_json::json!({ "users": views }),
        render(&t, "no users"),
    )
}

#[derive(Debug, Serialize)]
struct TokenView {
    id: String,
    access_key: String,
    created_ms: i64,
    expires_ms: i64,
}

fn tokens_doc(tokens: &[pb::Token]) -> Doc {
    let views: Vec<TokenView> = tokens
        .iter()
        .map(|t| TokenView {
            id: t.id.clone(),
            access_key: t.access_key.clone(),
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
        })
        .collect();
    let mut t = table(&["ID", "ACCESS KEY", "CREATED", "EXPIRES"], &[]);
    for v in &views {
        t.add_row(vec![
            v.id.clone(),
            v.access_key.clone(),
            time_cell(v.created_ms),
            time_cell(v.expires_ms),
        ]);
    }
    Doc::new(
        &serde_json::json!({ "tokens": views }),
        render(&t, "no tokens"),
    )
}

fn policy_doc(p: &pb::Policy) -> Doc {
    let entries: Vec<serde_json::Value> = p
        .entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "resources": e.resources,
                "actions": e.actions,
                "decision": match pb::Decision::try_from(e.decision) {
                    Ok(pb::Decision::Deny) => "Deny",
                    _ => "Allow",
                },
                "sources": e.sources,
            })
        })
        .collect();
    let mut t = table(&["DECISION", "ACTIONS", "RESOURCES", "SOURCES"], &[]);
    for e in &entries {
        let join = |k: &str| {
            e[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default()
        };
        t.add_row(vec![
            e["decision"].as_str().unwrap_or("").to_owned(),
            join("actions"),
            join("resources"),
            join("sources"),
        ]);
    }
    Doc::new(
        &serde_json::json!({ "access_key": p.access_key, "entries": entries }),
        render(
            &t,
            "no policy entries (everything is denied to a normal user)",
        ),
    )
}

fn secret(value: Option<String>, env: Option<String>) -> Result<Option<String>, AdminError> {
    match (value, env) {
        (Some(s), _) => Ok(Some(s)),
        (None, Some(var)) => std::env::var(&var)
            .map(Some)
            .map_err(|_| AdminError::Usage(format!("the environment variable {var} is not set"))),
        (None, None) => Ok(None),
    }
}

fn read_policy(file: &PathBuf) -> Result<Vec<pb::PolicyEntry>, AdminError> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|e| AdminError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let entries: Vec<PolicyEntry> = serde_json::from_str(&text)
        .map_err(|e| AdminError::Usage(format!("{}: not a policy: {e}", file.display())))?;
    Ok(entries
        .into_iter()
        .map(|e| pb::PolicyEntry {
            resources: e.resources.iter().map(ToString::to_string).collect(),
            actions: e.actions.iter().map(ToString::to_string).collect(),
            decision: match e.decision {
                Decision::Allow => pb::Decision::Allow,
                Decision::Deny => pb::Decision::Deny,
            } as i32,
            sources: e.sources.iter().map(ToString::to_string).collect(),
        })
        .collect())
}

/// Runs `f` on every target broker; the first answer, rendered, and every error.
async fn each<T, F, Fut>(
    ctx: &Ctx,
    op: &str,
    f: F,
    render: impl FnOnce(&T) -> Doc,
) -> Result<Outcome, AdminError>
where
    F: Fn(AccessClient) -> Fut + Clone,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let targets = ctx.targets().await?;
    let op = Op::new(op);
    let mut first = None;
    let mut errors = Vec::new();
    for broker in &targets.brokers {
        match target::call_access(broker, ctx.timeout, &op, f.clone()).await {
            Ok(v) => {
                first.get_or_insert(v);
            }
            Err(e) => errors.push(e),
        }
    }
    Ok(Outcome::partial(
        first.as_ref().map(render),
        errors,
        targets.brokers.len(),
    ))
}

/// Runs a user command.
pub async fn run_user(cmd: UserCommand, ctx: &Ctx) -> Result<Outcome, AdminError> {
    match cmd {
        UserCommand::Create {
            access_key,
            secret: value,
            secret_env,
            superuser,
        } => {
            let secret_key = secret(value, secret_env)?
                .ok_or_else(|| AdminError::Usage("give --secret or --secret-env".into()))?;
            let req = pb::CreateUserRequest {
                access_key,
                secret_key,
                kind: if superuser {
                    pb::UserKind::Super
                } else {
                    pb::UserKind::Normal
                } as i32,
            };
            each(
                ctx,
                "user create",
                |mut c| {
                    let req = req.clone();
                    async move { Ok(c.create_user(req).await?.into_inner()) }
                },
                |u| users_doc(std::slice::from_ref(u)),
            )
            .await
        }
        UserCommand::Update {
            access_key,
            secret: value,
            secret_env,
            superuser,
            normal,
            enable,
            disable,
        } => {
            let req = pb::UpdateUserRequest {
                access_key,
                secret_key: secret(value, secret_env)?.unwrap_or_default(),
                kind: if superuser {
                    pb::UserKind::Super
                } else if normal {
                    pb::UserKind::Normal
                } else {
                    pb::UserKind::Unspecified
                } as i32,
                status: if enable {
                    pb::UserStatus::Enabled
                } else if disable {
                    pb::UserStatus::Disabled
                } else {
                    pb::UserStatus::Unspecified
                } as i32,
            };
            each(
                ctx,
                "user update",
                |mut c| {
                    let req = req.clone();
                    async move { Ok(c.update_user(req).await?.into_inner()) }
                },
                |u| users_doc(std::slice::from_ref(u)),
            )
            .await
        }
        UserCommand::Delete { access_key } => {
            let req = pb::DeleteUserRequest {
                access_key: access_key.clone(),
            };
            each(
                ctx,
                "user delete",
                |mut c| {
                    let req = req.clone();
                    async move { Ok(c.delete_user(req).await?.into_inner()) }
                },
                |_| {
                    Doc::new(
                        &serde_json::json!({ "deleted": access_key }),
                        format!("user {access_key} deleted\n"),
                    )
                },
            )
            .await
        }
        UserCommand::List => each(
            ctx,
            "user list",
            |mut c| async move { Ok(c.list_users(pb::ListUsersRequest {}).await?.into_inner()) },
            |r| users_doc(&r.users),
        )
        .await,
        UserCommand::Policy { access_key } => {
            let req = pb::GetPolicyRequest { access_key };
            each(
                ctx,
                "user policy",
                |mut c| {
                    let req = req.clone();
                    async move { Ok(c.get_policy(req).await?.into_inner()) }
                },
                policy_doc,
            )
            .await
        }
        UserCommand::SetPolicy { access_key, file } => {
            let req = pb::SetPolicyRequest {
                access_key,
                entries: read_policy(&file)?,
            };
            each(
                ctx,
                "user set-policy",
                |mut c| {
                    let req = req.clone();
                    async move { Ok(c.set_policy(req).await?.into_inner()) }
                },
                policy_doc,
            )
            .await
        }
    }
}

/// Runs a token command.
pub async fn run_token(cmd: TokenCommand, ctx: &Ctx) -> Result<Outcome, AdminError> {
    match cmd {
        TokenCommand::Issue { access_key, ttl } => {
            let targets = ctx.targets().await?;
            // A token is the hash one broker keeps: issue it on the first target only.
            let Some(broker) = targets.brokers.first() else {
                return Err(AdminError::Usage("no target broker".into()));
            };
            let req = pb::IssueTokenRequest {
                access_key,
                ttl_ms: ttl.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            let r = target::call_access(
                broker,
                ctx.timeout,
                &Op::new("token issue"),
                |mut c| async move { Ok(c.issue_token(req).await?.into_inner()) },
            )
            .await?;
            let info = r.info.unwrap_or_default();
            Ok(Outcome::done(Doc::new(
                &serde_json::json!({
                    "token": r.token,
                    "id": info.id,
                    "access_key": info.access_key,
                    "expires_ms": info.expires_ms,
                    "broker": broker,
                }),
                format!(
                    "{}\n(id {}, for {}, expires {}; shown once — keep it secret)\n",
                    r.token,
                    info.id,
                    info.access_key,
                    time_cell(info.expires_ms)
                ),
            )))
        }
        TokenCommand::Revoke { id } => {
            let req = pb::RevokeTokenRequest { id: id.clone() };
            each(
                ctx,
                "token revoke",
                |mut c| {
                    let req = req.clone();
                    async move { Ok(c.revoke_token(req).await?.into_inner()) }
                },
                |_| {
                    Doc::new(
                        &serde_json::json!({ "revoked": id }),
                        format!("token {id} revoked\n"),
                    )
                },
            )
            .await
        }
        TokenCommand::List { access_key } => {
            let req = pb::ListTokensRequest {
                access_key: access_key.unwrap_or_default(),
            };
            each(
                ctx,
                "token list",
                |mut c| {
                    let req = req.clone();
                    async move { Ok(c.list_tokens(req).await?.into_inner()) }
                },
                |r| tokens_doc(&r.tokens),
            )
            .await
        }
    }
}
