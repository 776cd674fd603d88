//! The account page's calls: changing one's own password (the current
//! one is checked, under the sign-in throttle, so a borrowed session
//! cannot guess it), and listing and ending one's sessions.

use super::{current, password, session_of};
use crate::audit::{self, Target};
use crate::entity::audit::AuditAction;
use crate::entity::{session, user};
use crate::error::Result;
use crate::state::{now, Services};
use hone_app::api::{AccountBackend, AccountPage, AppError, RequestParts, SessionRow};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};

/// Ends `user_id`'s sessions, all of them or all but `keep` (a stored
/// key); answers how many ended. Their next request is signed out.
pub(crate) async fn end_sessions(
    db: &impl ConnectionTrait,
    user_id: i64,
    keep: Option<&str>,
) -> Result<u64> {
    let mut q = session::Entity::delete_many().filter(session::Column::UserId.eq(user_id));
    if let Some(keep) = keep {
        q = q.filter(session::Column::Id.ne(keep));
    }
    Ok(q.exec(db).await?.rows_affected)
}

/// The stored key of the request's own session, if it has one yet.
fn own_session_key(req: &RequestParts) -> Result<Option<String>> {
    Ok(session_of(req)?.id().map(|id| crate::sessions::key(&id)))
}

impl Services {
    async fn account_page(&self, req: &RequestParts) -> Result<AccountPage> {
        let u = self.require_user(req).await?;
        let mine = own_session_key(req)?;
        let idle = self.config.session_idle_hours * 3600;
        let sessions = session::Entity::find()
            .filter(session::Column::UserId.eq(u.id))
            .filter(session::Column::ExpiresAt.gt(now()))
            .order_by_desc(session::Column::CreatedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| SessionRow {
                current: mine.as_deref() == Some(s.id.as_str()),
                // The idle expiry moves with each use: the last use is
                // that long before it.
                last_active: s.expires_at - idle,
                signed_in_at: s.created_at,
                id: s.id,
            })
            .collect();
        Ok(AccountPage {
            user: current(&u),
            sessions,
            session_hours: self.config.session_hours,
            idle_hours: self.config.session_idle_hours,
        })
    }

    /// Checks the current password (a wrong one counts as a failed
    /// sign-in for the account), stores the new one and signs out every
    /// other session.
    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        req: &RequestParts,
        current_password: String,
        new_password: String,
    ) -> Result<u64> {
        let u = self.require_user(req).await?;
        if current_password.len() > password::MAX_PASSWORD_BYTES {
            return Err(AppError::invalid(
                "current_password",
                "That is not your current password.",
            )
            .into());
        }
        password::check_new_password(&new_password, "new_password")?;
        let account_key = super::throttle::account_key(&u.username);
        if let Some(wait_ms) = self.claim_attempt(&account_key).await? {
            return Err(super::throttle::too_early(wait_ms).into());
        }
        if !self
            .verify_password(current_password, u.password_hash.clone())
            .await?
        {
            tracing::info!(user = %u.username, "password change refused: wrong current password");
            return Err(AppError::invalid(
                "current_password",
                "That is not your current password.",
            )
            .into());
        }
        self.clear_throttle(&account_key).await?;
        let hash = self.hash_password(new_password).await?;
        let mine = own_session_key(req)?;
        let tx = self.db.begin().await?;
        let mut m: user::ActiveModel = u.clone().into();
        m.password_hash = Set(hash);
        m.update(&tx).await?;
        let ended = end_sessions(&tx, u.id, mine.as_deref()).await?;
        audit::record(
            &tx,
            Some(&u),
            AuditAction::PasswordChanged,
            Target::user(&u),
            serde_json::json!({ "other_sessions_ended": ended }),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user = %u.username, other_sessions_ended = ended, "password changed");
        Ok(ended)
    }

    /// Ends one of the caller's own sessions (another person's is not
    /// found). Ending the current one signs out.
    async fn revoke_session(&self, req: &RequestParts, id: String) -> Result<()> {
        let u = self.require_user(req).await?;
        let tx = self.db.begin().await?;
        let gone = session::Entity::delete_many()
            .filter(session::Column::Id.eq(id.as_str()))
            .filter(session::Column::UserId.eq(u.id))
            .exec(&tx)
            .await?;
        if gone.rows_affected == 0 {
            return Err(AppError::NotFound("that session".into()).into());
        }
        let label: String = id.chars().take(8).collect();
        audit::record(
            &tx,
            Some(&u),
            AuditAction::SessionRevoked,
            Target {
                kind: "session",
                id: None,
                label: &label,
            },
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user = %u.username, session = %label, "session signed out from the account page");
        Ok(())
    }
}

#[async_trait::async_trait]
impl AccountBackend for Services {
    async fn account_page(&self, req: &RequestParts) -> Result<AccountPage, AppError> {
        Ok(Services::account_page(self, req).await?)
    }

    async fn change_password(
        &self,
        req: &RequestParts,
        current_password: String,
        new_password: String,
    ) -> Result<u64, AppError> {
        Ok(Services::change_password(self, req, current_password, new_password).await?)
    }

    async fn revoke_session(&self, req: &RequestParts, id: String) -> Result<(), AppError> {
        Ok(Services::revoke_session(self, req, id).await?)
    }
}
