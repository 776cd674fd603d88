//! Accounts and sessions: who is signed in (read fresh from the database
//! on every request, so a changed role or removed account applies at
//! once), the first-run setup, sign-in and sign-out, and creating users.

pub mod password;
pub mod settings;
pub mod throttle;

use crate::audit::{self, Target};
use crate::entity::audit::AuditAction;
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

/// The session's user id…
pub(crate) const USER_KEY: &str = "uid";
/// …and when they signed in (Unix seconds): a session ends
/// `HONE_SESSION_HOURS` after it, however busy.
pub(crate) const SIGNED_IN_KEY: &str = "signed_in_at";

fn session_of(req: &RequestParts) -> Result<Session> {
    req.extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| Error::internal("no session layer"))
}

impl Services {
    /// The client's address (through trusted proxies), for throttling.
    fn client_ip(&self, req: &RequestParts) -> String {
        let peer = req
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = req
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        crate::http::client::client_ip(peer, forwarded, &self.config.trusted_proxies)
            .map_or_else(|| "unknown".into(), |ip| ip.to_string())
    }

    /// Checks a password against a hash, under the hashing limit.
    pub async fn verify_password(&self, password: String, hash: String) -> Result<bool> {
        let _slot = self
            .hashing
            .acquire()
            .await
            .map_err(|_| Error::internal("the hashing limit closed"))?;
        self.password_checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(
            tokio::task::spawn_blocking(move || password::verify_password(&password, &hash))
                .await?,
        )
    }

    /// Hashes a new password, under the hashing limit.
    pub async fn hash_password(&self, password: String) -> Result<String> {
        let _slot = self
            .hashing
            .acquire()
            .await
            .map_err(|_| Error::internal("the hashing limit closed"))?;
        Ok(tokio::task::spawn_blocking(move || password::hash_password(&password)).await??)
    }
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
        let since: Option<i64> = session.get(SIGNED_IN_KEY).await?;
        let lifetime = self.config.session_hours * 3600;
        if since.is_none_or(|t| now() - t >= lifetime) {
            // Past its absolute lifetime: signed out, however busy.
            session.flush().await?;
            return Err(AppError::Unauthenticated.into());
        }
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
        session.insert(SIGNED_IN_KEY, now()).await?;
        Ok(())
    }

    /// Creates a user (and, in the same transaction, their first team
    /// membership). Used by the command line and tests; the admin page
    /// uses [`Services::insert_user_by`] to record who did it.
    pub async fn insert_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        team_id: i64,
    ) -> Result<user::Model> {
        self.insert_user_by(None, username, password, role, team_id)
            .await
    }

    /// [`Services::insert_user`], recorded in the audit log as `actor`'s.
    pub async fn insert_user_by(
        &self,
        actor: Option<&user::Model>,
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
        let hash = self.hash_password(password.to_owned()).await?;
        let tx = self.db.begin().await?;
        let u = user::ActiveModel {
            username: Set(username),
            password_hash: Set(hash),
            role: Set(role.into()),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&tx)
        .await
        .map_err(|e| match e.sql_err() {
            // Two creations of one name at once: the second is told, not 500.
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => {
                AppError::invalid("username", "That username is already taken.").into()
            }
            _ => Error::from(e),
        })?;
        membership::ActiveModel {
            user_id: Set(u.id),
            team_id: Set(team_id),
        }
        .insert(&tx)
        .await?;
        audit::record(
            &tx,
            actor,
            AuditAction::UserCreated,
            Target::user(&u),
            serde_json::json!({ "role": role.as_str(), "team_id": team_id }),
        )
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
        self.insert_team(None, name).await
    }

    /// Inserts a team whose (already parsed) name is known to be free.
    pub(crate) async fn insert_team(
        &self,
        actor: Option<&user::Model>,
        name: String,
    ) -> Result<team::Model> {
        let tx = self.db.begin().await?;
        let t = team::ActiveModel {
            name: Set(name),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&tx)
        .await?;
        audit::record(
            &tx,
            actor,
            AuditAction::TeamCreated,
            Target {
                kind: "team",
                id: Some(t.id),
                label: &t.name,
            },
            serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(t)
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
        Ok(SessionInfo {
            setup_needed,
            setup_token_required: setup_needed && self.setup_token.is_some(),
            user,
        })
    }

    /// The first administrator. The "nobody yet" check, the marker that
    /// setup happened (a unique key: a second setup at the same moment
    /// fails on it) and the account are one transaction, so two
    /// concurrent setups make one admin. Beyond loopback the setup token
    /// from the server's log is required.
    #[tracing::instrument(skip_all)]
    async fn setup_admin(
        &self,
        req: &RequestParts,
        username: String,
        password: String,
        team: String,
        token: String,
    ) -> Result<()> {
        let done = || {
            Error::from(AppError::Conflict(
                "Hone is already set up. Sign in, or ask an administrator for an account.".into(),
            ))
        };
        if self.user_count().await? > 0 {
            return Err(done());
        }
        if let Some(expected) = &self.setup_token {
            // Compared as hashes: the time taken says nothing about the token.
            let digest = |t: &str| <sha2::Sha256 as sha2::Digest>::digest(t.as_bytes());
            if digest(expected) != digest(token.trim()) {
                tracing::warn!("first-run setup refused: wrong or missing setup token");
                return Err(AppError::invalid(
                    "token",
                    "Enter the setup token printed in the server's log when it started (this server is reachable from other machines, so setup needs it).",
                )
                .into());
            }
        }
        let username = password::parse_username(&username, "username")?;
        password::check_new_password(&password, "password")?;
        let team = password::parse_name(&team, "team", "team")?;
        let hash = self.hash_password(password).await?;
        let t = now();
        let tx = self.db.begin().await?;
        let marker = crate::entity::instance::ActiveModel {
            key: Set("setup".into()),
            value: Set(username.clone()),
            created_at: Set(t),
        }
        .insert(&tx)
        .await;
        if let Err(e) = marker {
            return match e.sql_err() {
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Err(done()),
                _ => Err(e.into()),
            };
        }
        if user::Entity::find().count(&tx).await? > 0 {
            return Err(done());
        }
        let team_row = match team::Entity::find()
            .filter(team::Column::Name.eq(team.as_str()))
            .one(&tx)
            .await?
        {
            Some(existing) => existing,
            None => {
                team::ActiveModel {
                    name: Set(team),
                    created_at: Set(t),
                    ..Default::default()
                }
                .insert(&tx)
                .await?
            }
        };
        let u = user::ActiveModel {
            username: Set(username),
            password_hash: Set(hash),
            role: Set(Role::Admin.into()),
            created_at: Set(t),
            ..Default::default()
        }
        .insert(&tx)
        .await?;
        membership::ActiveModel {
            user_id: Set(u.id),
            team_id: Set(team_row.id),
        }
        .insert(&tx)
        .await?;
        audit::record(
            &tx,
            Some(&u),
            AuditAction::InstanceSetUp,
            Target::user(&u),
            serde_json::json!({ "team": team_row.name }),
        )
        .await?;
        tx.commit().await.map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => done(),
            _ => Error::from(e),
        })?;
        tracing::info!(user = %u.username, "first administrator created");
        self.sign_in(req, u.id).await
    }

    /// Sign-in. Each key (the account name, the client's address) is
    /// claimed first — recorded as a failure in one statement, or refused
    /// with the wait left ([`throttle`]) — and only then is the password
    /// checked, under the hashing limit. A correct password forgives the
    /// account's failures.
    #[tracing::instrument(skip_all)]
    async fn login(&self, req: &RequestParts, username: String, password: String) -> Result<()> {
        let name = username.trim().to_lowercase();
        // Checked before anything is stored: throttle keys stay small.
        if name.is_empty()
            || name.len() > password::MAX_USERNAME_BYTES
            || password.len() > password::MAX_PASSWORD_BYTES
        {
            return Err(AppError::BadCredentials.into());
        }
        // The throttle keys on the name as typed (normalised), whether or not
        // such an account exists, so waits reveal nothing either.
        let account_key = throttle::account_key(&name);
        let ip_key = format!("ip:{}", self.client_ip(req));
        let too_early = |key: &str, wait_ms: i64| {
            tracing::warn!(key = %key, wait_ms, "sign-in refused: too early after a failure");
            Error::from(throttle::too_early(wait_ms))
        };
        if let Some(wait_ms) = self.wait_for(&ip_key).await? {
            return Err(too_early(&ip_key, wait_ms));
        }
        if let Some(wait_ms) = self.claim_attempt(&account_key).await? {
            return Err(too_early(&account_key, wait_ms));
        }
        let found = user::Entity::find()
            .filter(user::Column::Username.eq(name.as_str()))
            .one(&self.db)
            .await?;
        let hash = found
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| password::dummy_hash().to_owned());
        let ok = self.verify_password(password, hash).await?;
        match found {
            Some(u) if ok && u.disabled_at.is_some() => {
                // The password was right: no wait for when it is enabled.
                self.clear_throttle(&account_key).await?;
                tracing::info!(user = %u.username, "sign-in refused: account disabled");
                Err(AppError::Forbidden.into())
            }
            Some(u) if ok => {
                self.clear_throttle(&account_key).await?;
                tracing::info!(user = %u.username, "signed in");
                self.sign_in(req, u.id).await
            }
            _ => {
                self.charge_failure(&ip_key).await?;
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
        token: String,
    ) -> Result<(), AppError> {
        Ok(Services::setup_admin(self, req, username, password, team, token).await?)
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
