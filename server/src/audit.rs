//! The audit log: who did what to what, and when. Each entry is written
//! in the same transaction as the change it records, so the log and the
//! data cannot disagree; the table is append-only (migration 7's
//! triggers refuse updates and deletes).

use crate::entity::audit::{self, AuditAction};
use crate::entity::user;
use crate::error::Result;
use crate::state::now;
use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};

/// What an entry is about: a kind (`user`, `team`, `api_key`,
/// `session`), its id where it has one, and a label people recognise
/// (a username, a key's name), kept as it was at the time.
pub struct Target<'a> {
    pub kind: &'static str,
    pub id: Option<i64>,
    pub label: &'a str,
}

impl<'a> Target<'a> {
    pub fn user(u: &'a user::Model) -> Self {
        Target {
            kind: "user",
            id: Some(u.id),
            label: &u.username,
        }
    }
}

/// Appends one entry. `actor` is `None` for the command line and for
/// Hone itself.
pub async fn record(
    db: &impl ConnectionTrait,
    actor: Option<&user::Model>,
    action: AuditAction,
    target: Target<'_>,
    detail: serde_json::Value,
) -> Result<()> {
    audit::ActiveModel {
        at: Set(now()),
        actor_id: Set(actor.map(|a| a.id)),
        actor: Set(actor.map_or_else(|| "hone".to_owned(), |a| a.username.clone())),
        action: Set(action),
        target_kind: Set(target.kind.to_owned()),
        target_id: Set(target.id),
        target: Set(target.label.to_owned()),
        detail: Set(detail.to_string()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
