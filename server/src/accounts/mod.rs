//! Accounts and sessions: who is signed in (read fresh from the database
//! on every request, so a changed role or removed account applies at
//! once), the first-run setup, sign-in and sign-out, and creating users.

pub mod password;
pub mod throttle;

use crate::entity::{membership, team, user};
use crate::error::{Error, Result};
use crate::state::{now, Services};
use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use hone_app::api::{AppError, CurrentUser, RequestParts, Role, SessionBackend, SessionInfo};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set, TransactionTrait,
};
use std::net::SocketAddr;
use std::sync::Arc;
use tower_sessions::Session;

const USER_KEY: &str = "uid";

fn session_of(req: &RequestParts) -> Result<Session> {
    req.extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| Error::internal("no session layer"))
}

fn client_ip(req: &RequestParts) -> String {
    req.extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// The page's view of a user.
pub fn current(u: &user::Model) -> CurrentUser {
    CurrentUser {
        id: u.id,
        username: u.username.clone(),
        role: u.role.into(),
    }
}

/// The signed-in user, for plain HTTP routes (`401` without one).
#[derive(Clone, Debug)]
pub struct SignedIn(pub user::Model);

impl<S> FromRequestParts<S> for SignedIn
where
    S: Send + Sync,
    Arc<Services>: FromRef<S>,
{
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let services = Arc::<Services>::from_ref(state);
        services.require_user(parts).await.map(SignedIn)
    }
}

impl Services {
    /// The signed-in user of `session`, read fresh from the database.
    pub async fn user_from_session(&self, session: &Session) -> Result<user::Model> {
        let id: Option<i64> = session.get(USER_KEY).await?;
        let Some(id) = id else {
            return Err(AppError::Unauthenticated.into());
        };
        // A disabled account's sessions end at once, like a removed one's.
        user::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .filter(|u| u.disabled_at.is_none())
            .ok_or_else(|| AppError::Unauthenticated.into())
    }

    pub async fn require_user(&self, req: &RequestParts) -> Result<user::Model> {
        self.user_from_session(&session_of(req)?).await
    }

    /// Starts a session for `user_id` under a new id (no session fixation).
    async fn sign_in(&self, req: &RequestParts, user_id: i64) -> Result<()> {
        let session = session_of(req)?;
        session.cycle_id().await?;
        session.insert(USER_KEY, user_id).await?;
        Ok(())
    }

    /// Creates a user (and, in the same transaction, their first team
    /// membership). Used by the admin page, the first-run setup and the CLI.
    pub async fn insert_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        team_id: i64,
    ) -> Result<user::Model> {
        let username = password::parse_username(username, "username")?;
        password::check_new_password(password, "password")?;
        let taken = user::Entity::find()
            .filter(user::Column::Username.eq(username.as_str()))
            .count(&self.db)
            .await?
            > 0;
        if taken {
            return Err(AppError::invalid("username", "That username is already taken.").into());
        }
        let owned = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || password::hash_password(&owned)).await??;
        let tx = self.db.begin().await?;
        let u = user::ActiveModel {
            username: Set(username),
            password_hash: Set(hash),
            role: Set(role.into()),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&tx)
        .await?;
        membership::ActiveModel {
            user_id: Set(u.id),
            team_id: Set(team_id),
        }
        .insert(&tx)
        .await?;
        tx.commit().await?;
        Ok(u)
    }

    /// Finds the team by name, creating it if needed.
    pub async fn ensure_team(&self, name: &str) -> Result<team::Model> {
        let name = password::parse_name(name, "team", "team")?;
        if let Some(t) = team::Entity::find()
            .filter(team::Column::Name.eq(name.as_str()))
            .one(&self.db)
            .await?
        {
            return Ok(t);
        }
        self.insert_team(name).await
    }

    /// Inserts a team whose (already parsed) name is known to be free.
    pub(crate) async fn insert_team(&self, name: String) -> Result<team::Model> {
        Ok(team::ActiveModel {
            name: Set(name),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?)
    }

    pub async fn user_count(&self) -> Result<u64> {
        Ok(user::Entity::find().count(&self.db).await?)
    }

    async fn session_info(&self, req: &RequestParts) -> Result<SessionInfo> {
        let setup_needed = self.user_count().await? == 0;
        let user = match self.require_user(req).await {
            Ok(u) => Some(current(&u)),
            Err(Error::App(AppError::Unauthenticated)) => None,
            Err(e) => return Err(e),
        };
        Ok(SessionInfo { setup_needed, user })
    }

    #[tracing::instrument(skip_all)]
    async fn setup_admin(
        &self,
        req: &RequestParts,
        username: String,
        password: String,
        team: String,
    ) -> Result<()> {
        if self.user_count().await? > 0 {
            return Err(AppError::Conflict(
                "Hone is already set up. Sign in, or ask an administrator for an account.".into(),
            )
            .into());
        }
        password::parse_username(&username, "username")?;
        password::check_new_password(&password, "password")?;
        let t = self.ensure_team(&team).await?;
        let u = self
            .insert_user(&username, &password, Role::Admin, t.id)
            .await?;
        tracing::info!(user = %u.username, "first administrator created");
        self.sign_in(req, u.id).await
    }

    #[tracing::instrument(skip_all)]
    async fn login(&self, req: &RequestParts, username: String, password: String) -> Result<()> {
        // The throttle keys on the name as typed (normalised), whether or not
        // such an account exists, so lockouts reveal nothing either.
        let name = username.trim().to_lowercase();
        let account_key = format!("user:{name}");
        let ip_key = format!("ip:{}", client_ip(req));
        for (key, limit) in [
            (&account_key, throttle::ACCOUNT_FAILURES),
            (&ip_key, throttle::IP_FAILURES),
        ] {
            if let Some(minutes) = self.locked_for(key, limit).await? {
                tracing::warn!(key = %key, "sign-in refused: throttled");
                return Err(AppError::TooManyAttempts { minutes }.into());
            }
        }
        let found = user::Entity::find()
            .filter(user::Column::Username.eq(name.as_str()))
            .one(&self.db)
            .await?;
        let hash = found
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| password::dummy_hash().to_owned());
        let ok = tokio::task::spawn_blocking(move || password::verify_password(&password, &hash))
            .await?;
        match found {
            Some(u) if ok && u.disabled_at.is_some() => {
                tracing::info!(user = %u.username, "sign-in refused: account disabled");
                Err(AppError::Forbidden.into())
            }
            Some(u) if ok => {
                self.clear_throttle(account_key).await?;
                tracing::info!(user = %u.username, "signed in");
                self.sign_in(req, u.id).await
            }
            _ => {
                self.record_failure(&[account_key, ip_key]).await?;
                tracing::info!("sign-in failed");
                Err(AppError::BadCredentials.into())
            }
        }
    }

    async fn logout(&self, req: &RequestParts) -> Result<()> {
        // Deletes the stored session and expires the cookie.
        session_of(req)?.flush().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl SessionBackend for Services {
    async fn session_info(&self, req: &RequestParts) -> Result<SessionInfo, AppError> {
        Ok(Services::session_info(self, req).await?)
    }

    async fn setup_admin(
        &self,
        req: &RequestParts,
        username: String,
        password: String,
        team: String,
    ) -> Result<(), AppError> {
        Ok(Services::setup_admin(self, req, username, password, team).await?)
    }

    async fn login(
        &self,
        req: &RequestParts,
        username: String,
        password: String,
    ) -> Result<(), AppError> {
        Ok(Services::login(self, req, username, password).await?)
    }

    async fn logout(&self, req: &RequestParts) -> Result<(), AppError> {
        Ok(Services::logout(self, req).await?)
    }
}
