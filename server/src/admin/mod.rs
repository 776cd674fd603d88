//! The admin page's calls: people, roles and teams. Admins only
//! ([`policy::Action::Administer`]). The queue, quotas, usage and audit
//! pages are in [`queue`].

pub mod queue;

use crate::accounts::{current, password};
use crate::audit::{self, Target};
use crate::entity::audit::AuditAction;
use crate::entity::user::StoredRole;
use crate::entity::{membership, team, user};
use crate::error::Result;
use crate::policy::{self, Action};
use crate::state::{now, Services};
use hone_app::api::{
    AdminBackend, AdminOverview, AppError, PurgeResult, RequestParts, Role, Team, TeamStorage,
    UserRow,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
    TransactionTrait,
};

/// Locks every administrator who can sign in, for the rest of `tx`, and
/// counts them: two admins demoting (or disabling) each other at once
/// then run one after the other, and the second sees the first's change.
/// The no-op update is the lock: PostgreSQL locks the rows it touches and
/// re-reads them once a concurrent holder commits; SQLite takes its one
/// write lock.
async fn lock_admins(tx: &sea_orm::DatabaseTransaction) -> Result<u64> {
    use sea_orm::sea_query::Expr;
    user::Entity::update_many()
        .col_expr(user::Column::Role, Expr::col(user::Column::Role))
        .filter(user::Column::Role.eq(StoredRole::Admin))
        .filter(user::Column::DisabledAt.is_null())
        .exec(tx)
        .await?;
    Ok(user::Entity::find()
        .filter(user::Column::Role.eq(StoredRole::Admin))
        .filter(user::Column::DisabledAt.is_null())
        .count(tx)
        .await?)
}

fn parse_role(role: &str) -> Result<Role> {
    Ok(Role::parse(role)
        .ok_or_else(|| AppError::invalid("role", "Choose one of the listed roles."))?)
}

impl Services {
    async fn require_admin(&self, req: &RequestParts) -> Result<user::Model> {
        let u = self.require_user(req).await?;
        policy::check(u.role.into(), false, Action::Administer, "that page")?;
        Ok(u)
    }

    async fn admin_overview(&self, req: &RequestParts) -> Result<AdminOverview> {
        let me = self.require_admin(req).await?;
        let teams: Vec<Team> = team::Entity::find()
            .order_by_asc(team::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|t| Team {
                id: t.id,
                name: t.name,
            })
            .collect();
        let members = membership::Entity::find().all(&self.db).await?;
        let users = user::Entity::find()
            .order_by_asc(user::Column::Username)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|u| UserRow {
                id: u.id,
                role: u.role.into(),
                teams: teams
                    .iter()
                    .filter(|t| {
                        members
                            .iter()
                            .any(|m| m.user_id == u.id && m.team_id == t.id)
                    })
                    .cloned()
                    .collect(),
                disabled: u.disabled_at.is_some(),
                username: u.username,
            })
            .collect();
        let storage = self
            .storage_use()
            .await?
            .into_iter()
            .map(|t| TeamStorage {
                team_id: t.team_id,
                team: t.team,
                bytes: i64::try_from(t.bytes).unwrap_or(i64::MAX),
                files: i64::try_from(t.blobs).unwrap_or(i64::MAX),
            })
            .collect();
        Ok(AdminOverview {
            user: current(&me),
            users,
            teams,
            storage,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn create_user(
        &self,
        req: &RequestParts,
        username: String,
        password: String,
        role: String,
        team_id: i64,
    ) -> Result<()> {
        let admin = self.require_admin(req).await?;
        let role = parse_role(&role)?;
        if team::Entity::find_by_id(team_id)
            .one(&self.db)
            .await?
            .is_none()
        {
            return Err(AppError::invalid("team_id", "Choose one of the listed teams.").into());
        }
        let u = self
            .insert_user_by(Some(&admin), &username, &password, role, team_id)
            .await?;
        tracing::info!(by = %admin.username, user = %u.username, role = role.as_str(), "user created");
        Ok(())
    }

    async fn create_team(&self, req: &RequestParts, name: String) -> Result<()> {
        let admin = self.require_admin(req).await?;
        let name = password::parse_name(&name, "name", "team")?;
        let exists = team::Entity::find()
            .filter(team::Column::Name.eq(name.as_str()))
            .count(&self.db)
            .await?
            > 0;
        if exists {
            return Err(AppError::invalid("name", "A team with that name already exists.").into());
        }
        self.insert_team(Some(&admin), name).await?;
        Ok(())
    }

    async fn set_role(&self, req: &RequestParts, user_id: i64, role: String) -> Result<()> {
        let admin = self.require_admin(req).await?;
        let role = parse_role(&role)?;
        let target = user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound("that user".into()))?;
        let tx = self.db.begin().await?;
        let target = user::Entity::find_by_id(target.id)
            .one(&tx)
            .await?
            .ok_or_else(|| AppError::NotFound("that user".into()))?;
        if target.role == StoredRole::Admin
            && target.disabled_at.is_none()
            && role != Role::Admin
            && lock_admins(&tx).await? <= 1
        {
            return Err(AppError::Conflict(
                "Hone needs at least one administrator: make someone else admin first.".into(),
            )
            .into());
        }
        let from: Role = target.role.into();
        let mut m: user::ActiveModel = target.into();
        m.role = Set(role.into());
        let u = m.update(&tx).await?;
        if from != role {
            audit::record(
                &tx,
                Some(&admin),
                AuditAction::RoleChanged,
                Target::user(&u),
                serde_json::json!({ "from": from.as_str(), "to": role.as_str() }),
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(by = %admin.username, user = %u.username, role = role.as_str(), "role changed");
        Ok(())
    }

    async fn set_membership(
        &self,
        req: &RequestParts,
        user_id: i64,
        team_id: i64,
        member: bool,
    ) -> Result<()> {
        let admin = self.require_admin(req).await?;
        let Some(target) = user::Entity::find_by_id(user_id).one(&self.db).await? else {
            return Err(AppError::NotFound("that user".into()).into());
        };
        let Some(t) = team::Entity::find_by_id(team_id).one(&self.db).await? else {
            return Err(AppError::NotFound("that team".into()).into());
        };
        let tx = self.db.begin().await?;
        let changed = if member {
            // Inserted unless there: two adds at once make one membership.
            let added = membership::Entity::insert(membership::ActiveModel {
                user_id: Set(user_id),
                team_id: Set(team_id),
            })
            .on_conflict(
                OnConflict::columns([membership::Column::UserId, membership::Column::TeamId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&tx)
            .await?;
            added > 0
        } else {
            membership::Entity::delete_by_id((user_id, team_id))
                .exec(&tx)
                .await?
                .rows_affected
                > 0
        };
        if changed {
            audit::record(
                &tx,
                Some(&admin),
                if member {
                    AuditAction::MembershipAdded
                } else {
                    AuditAction::MembershipRemoved
                },
                Target::user(&target),
                serde_json::json!({ "team_id": t.id, "team": t.name }),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets a new password for someone else (they forgot theirs): their
    /// sessions end, so whoever had them must sign in with the new one.
    /// One's own password is changed on the account page, which asks for
    /// the current one.
    #[tracing::instrument(skip_all, fields(user_id))]
    async fn reset_password(
        &self,
        req: &RequestParts,
        user_id: i64,
        password: String,
    ) -> Result<()> {
        let admin = self.require_admin(req).await?;
        let target = user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound("that user".into()))?;
        if target.id == admin.id {
            return Err(AppError::Conflict(
                "Change your own password under Account, with your current one.".into(),
            )
            .into());
        }
        password::check_new_password(&password, "password")?;
        let hash = self.hash_password(password).await?;
        let tx = self.db.begin().await?;
        let mut m: user::ActiveModel = target.clone().into();
        m.password_hash = Set(hash);
        m.update(&tx).await?;
        let ended = crate::accounts::settings::end_sessions(&tx, target.id, None).await?;
        audit::record(
            &tx,
            Some(&admin),
            AuditAction::PasswordReset,
            Target::user(&target),
            serde_json::json!({ "sessions_ended": ended }),
        )
        .await?;
        tx.commit().await?;
        // Waits from failed guesses no longer apply to the new password.
        self.clear_throttle(&crate::accounts::throttle::account_key(&target.username))
            .await?;
        tracing::info!(by = %admin.username, user = %target.username, sessions_ended = ended, "password reset");
        Ok(())
    }

    /// Disables an account (no sign-in, its sessions and API keys stop at
    /// once: both are checked against `disabled_at` on every request) or
    /// enables it again.
    async fn set_disabled(&self, req: &RequestParts, user_id: i64, disabled: bool) -> Result<()> {
        let admin = self.require_admin(req).await?;
        let target = user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound("that user".into()))?;
        if disabled && target.id == admin.id {
            return Err(AppError::Conflict(
                "You cannot disable your own account. Ask another administrator.".into(),
            )
            .into());
        }
        if target.disabled_at.is_some() == disabled {
            return Ok(());
        }
        let tx = self.db.begin().await?;
        if disabled && target.role == StoredRole::Admin && lock_admins(&tx).await? <= 1 {
            return Err(AppError::Conflict(
                "Hone needs at least one administrator who can sign in: make someone else admin first.".into(),
            )
            .into());
        }
        let mut m: user::ActiveModel = target.into();
        m.disabled_at = Set(disabled.then(now));
        let u = m.update(&tx).await?;
        audit::record(
            &tx,
            Some(&admin),
            if disabled {
                AuditAction::AccountDisabled
            } else {
                AuditAction::AccountEnabled
            },
            Target::user(&u),
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(by = %admin.username, user = %u.username, disabled, "account disabled or enabled");
        Ok(())
    }
}

#[async_trait::async_trait]
impl AdminBackend for Services {
    async fn admin_overview(&self, req: &RequestParts) -> Result<AdminOverview, AppError> {
        Ok(Services::admin_overview(self, req).await?)
    }

    async fn create_user(
        &self,
        req: &RequestParts,
        username: String,
        password: String,
        role: String,
        team_id: i64,
    ) -> Result<(), AppError> {
        Ok(Services::create_user(self, req, username, password, role, team_id).await?)
    }

    async fn create_team(&self, req: &RequestParts, name: String) -> Result<(), AppError> {
        Ok(Services::create_team(self, req, name).await?)
    }

    async fn set_role(
        &self,
        req: &RequestParts,
        user_id: i64,
        role: String,
    ) -> Result<(), AppError> {
        Ok(Services::set_role(self, req, user_id, role).await?)
    }

    async fn set_membership(
        &self,
        req: &RequestParts,
        user_id: i64,
        team_id: i64,
        member: bool,
    ) -> Result<(), AppError> {
        Ok(Services::set_membership(self, req, user_id, team_id, member).await?)
    }

    async fn set_disabled(
        &self,
        req: &RequestParts,
        user_id: i64,
        disabled: bool,
    ) -> Result<(), AppError> {
        Ok(Services::set_disabled(self, req, user_id, disabled).await?)
    }

    async fn reset_password(
        &self,
        req: &RequestParts,
        user_id: i64,
        password: String,
    ) -> Result<(), AppError> {
        Ok(Services::reset_password(self, req, user_id, password).await?)
    }

    async fn purge_storage(
        &self,
        req: &RequestParts,
        team_id: i64,
    ) -> Result<PurgeResult, AppError> {
        let admin = self.require_admin(req).await?;
        let p = self.purge_team(&admin, team_id).await?;
        Ok(PurgeResult {
            team_id,
            checkpoints: p.checkpoints,
            files: p.blobs,
            bytes: p.bytes,
        })
    }
}
