//! The server side of every page call: authentication, authorisation and
//! the database work behind `hone_app::api::Backend`.
//!
//! Authorisation rules (also in ARCHITECTURE.md):
//! - anyone: sign in; the first-run setup only while no account exists;
//! - every signed-in user: read projects of the teams they belong to;
//! - experts and admins: create projects and upload files in their teams;
//! - admins: manage people, roles and teams.
//!
//! A project outside the user's teams is "not found", never "forbidden", so
//! its existence does not leak.

use crate::auth::{self, Throttle};
use crate::config::Config;
use crate::entity::{dataset_version, file, login_throttle, membership, project, team, user};
use crate::storage::BlobStore;
use axum::extract::ConnectInfo;
use hone_app::api::{
    AdminOverview, AppError, Backend, CurrentUser, Dashboard, DatasetPage, DatasetSummary,
    FileSummary, ProjectPage, ProjectSummary, RequestParts, Role, SessionInfo, Team, UserRow,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Select, Set, TransactionTrait,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use tower_sessions::Session;

const USER_KEY: &str = "uid";

/// Shared by every request: the database, blob storage and configuration.
#[derive(Clone, Debug)]
pub struct Services {
    pub db: DatabaseConnection,
    pub blobs: BlobStore,
    pub config: Config,
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Logs a database error and hands the client only `Internal`.
pub fn internal(e: impl std::fmt::Display) -> AppError {
    tracing::error!(error = %e, "internal error");
    AppError::Internal
}

fn session_of(req: &RequestParts) -> Result<Session, AppError> {
    req.extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| internal("no session layer"))
}

fn client_ip(req: &RequestParts) -> String {
    req.extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn role_of(u: &user::Model) -> Role {
    // An unknown stored role grants nothing beyond reading.
    Role::parse(&u.role).unwrap_or(Role::Reviewer)
}

fn current(u: &user::Model) -> CurrentUser {
    CurrentUser {
        id: u.id,
        username: u.username.clone(),
        role: role_of(u),
    }
}

impl Services {
    /// The signed-in user, read fresh from the database on every request so
    /// a changed role or removed account takes effect at once.
    pub async fn user_from_session(&self, session: &Session) -> Result<user::Model, AppError> {
        let id: Option<i64> = session.get(USER_KEY).await.map_err(internal)?;
        let Some(id) = id else {
            return Err(AppError::Unauthenticated);
        };
        user::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(internal)?
            .ok_or(AppError::Unauthenticated)
    }

    async fn require_user(&self, req: &RequestParts) -> Result<user::Model, AppError> {
        self.user_from_session(&session_of(req)?).await
    }

    async fn require_admin(&self, req: &RequestParts) -> Result<user::Model, AppError> {
        let u = self.require_user(req).await?;
        if role_of(&u) == Role::Admin {
            Ok(u)
        } else {
            Err(AppError::Forbidden)
        }
    }

    async fn teams_of(&self, user_id: i64) -> Result<Vec<Team>, AppError> {
        let ids: Vec<i64> = membership::Entity::find()
            .filter(membership::Column::UserId.eq(user_id))
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|m| m.team_id)
            .collect();
        Ok(team::Entity::find()
            .filter(team::Column::Id.is_in(ids))
            .order_by_asc(team::Column::Name)
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|t| Team {
                id: t.id,
                name: t.name,
            })
            .collect())
    }

    /// The project, if `user` belongs to its team; otherwise "not found".
    /// A dataset version and its project, if `u` may read the project (the
    /// same 404 for "absent" and "not yours").
    pub async fn readable_dataset(
        &self,
        u: &user::Model,
        id: i64,
    ) -> Result<(dataset_version::Model, project::Model), AppError> {
        let row = dataset_version::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(internal)?
            .ok_or_else(|| AppError::NotFound("that dataset".into()))?;
        let p = self
            .project_for(u, row.project_id)
            .await
            .map_err(|e| match e {
                AppError::NotFound(_) => AppError::NotFound("that dataset".into()),
                other => other,
            })?;
        Ok((row, p))
    }

    pub async fn project_for(
        &self,
        u: &user::Model,
        project_id: i64,
    ) -> Result<project::Model, AppError> {
        let not_found = || AppError::NotFound("that project".into());
        let p = project::Entity::find_by_id(project_id)
            .one(&self.db)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        let member = membership::Entity::find_by_id((u.id, p.team_id))
            .one(&self.db)
            .await
            .map_err(internal)?;
        if member.is_some() {
            Ok(p)
        } else {
            Err(not_found())
        }
    }

    /// May `u` add files to `project_id`? (Upload route and pages share this.)
    pub async fn writable_project(
        &self,
        u: &user::Model,
        project_id: i64,
    ) -> Result<project::Model, AppError> {
        let p = self.project_for(u, project_id).await?;
        if role_of(u).can_write_projects() {
            Ok(p)
        } else {
            Err(AppError::Forbidden)
        }
    }

    async fn summaries(
        &self,
        projects: Vec<project::Model>,
        teams: &[Team],
    ) -> Result<Vec<ProjectSummary>, AppError> {
        let ids: Vec<i64> = projects.iter().map(|p| p.id).collect();
        let files = file::Entity::find()
            .filter(file::Column::ProjectId.is_in(ids))
            .order_by_desc(file::Column::CreatedAt)
            .order_by_desc(file::Column::Id)
            .all(&self.db)
            .await
            .map_err(internal)?;
        let uploader_ids: Vec<i64> = files.iter().map(|f| f.uploaded_by).collect();
        let names = self.usernames(uploader_ids).await?;
        let mut by_project: HashMap<i64, Vec<FileSummary>> = HashMap::new();
        for f in files {
            by_project
                .entry(f.project_id)
                .or_default()
                .push(FileSummary {
                    id: f.id,
                    name: f.name,
                    size: f.size,
                    sha256: f.sha256,
                    uploaded_by: names.get(&f.uploaded_by).cloned().unwrap_or_default(),
                    uploaded_at: f.created_at,
                });
        }
        Ok(projects
            .into_iter()
            .map(|p| ProjectSummary {
                id: p.id,
                team: teams
                    .iter()
                    .find(|t| t.id == p.team_id)
                    .cloned()
                    .unwrap_or(Team {
                        id: p.team_id,
                        name: String::new(),
                    }),
                name: p.name,
                files: by_project.remove(&p.id).unwrap_or_default(),
            })
            .collect())
    }

    /// Usernames by id, for showing who uploaded or saved something.
    async fn usernames(
        &self,
        ids: impl IntoIterator<Item = i64>,
    ) -> Result<HashMap<i64, String>, AppError> {
        Ok(user::Entity::find()
            .filter(user::Column::Id.is_in(ids))
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|u| (u.id, u.username))
            .collect())
    }

    /// The project's dataset versions, newest first.
    async fn datasets_of(&self, project_id: i64) -> Result<Vec<DatasetSummary>, AppError> {
        let rows = dataset_version::Entity::find()
            .filter(dataset_version::Column::ProjectId.eq(project_id))
            .order_by_desc(dataset_version::Column::Id)
            .all(&self.db)
            .await
            .map_err(internal)?;
        let sources: HashMap<i64, String> = file::Entity::find()
            .filter(file::Column::Id.is_in(rows.iter().map(|r| r.source_file_id)))
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|f| (f.id, f.name))
            .collect();
        let names = self.usernames(rows.iter().map(|r| r.created_by)).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let source = sources.get(&r.source_file_id).cloned().unwrap_or_default();
                let by = names.get(&r.created_by).cloned().unwrap_or_default();
                crate::datasets::summary(r, source, by)
            })
            .collect())
    }

    /// Records one failed sign-in against both keys.
    async fn record_failure(&self, keys: &[String]) -> Result<(), AppError> {
        let t = now();
        for key in keys {
            let old = login_throttle::Entity::find_by_id(key.clone())
                .one(&self.db)
                .await
                .map_err(internal)?
                .map(|r| Throttle {
                    failures: r.failures,
                    window_start: r.window_start,
                });
            let next = Throttle::after_failure(old, t);
            login_throttle::Entity::insert(login_throttle::ActiveModel {
                key: Set(key.clone()),
                failures: Set(next.failures),
                window_start: Set(next.window_start),
            })
            .on_conflict(
                OnConflict::column(login_throttle::Column::Key)
                    .update_columns([
                        login_throttle::Column::Failures,
                        login_throttle::Column::WindowStart,
                    ])
                    .to_owned(),
            )
            .exec(&self.db)
            .await
            .map_err(internal)?;
        }
        Ok(())
    }

    async fn locked_for(&self, key: &str, limit: i32) -> Result<Option<i64>, AppError> {
        Ok(login_throttle::Entity::find_by_id(key.to_owned())
            .one(&self.db)
            .await
            .map_err(internal)?
            .and_then(|r| {
                Throttle {
                    failures: r.failures,
                    window_start: r.window_start,
                }
                .locked(limit, now())
            }))
    }

    /// Starts a session for `user_id` under a new id (no session fixation).
    async fn sign_in(&self, req: &RequestParts, user_id: i64) -> Result<(), AppError> {
        let session = session_of(req)?;
        session.cycle_id().await.map_err(internal)?;
        session.insert(USER_KEY, user_id).await.map_err(internal)
    }

    /// Creates a user (and, in the same transaction, their first team
    /// membership). Used by the admin page, the first-run setup and the CLI.
    pub async fn insert_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        team_id: i64,
    ) -> Result<user::Model, AppError> {
        let username = auth::parse_username(username, "username")?;
        auth::check_new_password(password, "password")?;
        let taken = self
            .count(user::Entity::find().filter(user::Column::Username.eq(username.as_str())))
            .await?
            > 0;
        if taken {
            return Err(AppError::invalid(
                "username",
                "That username is already taken.",
            ));
        }
        let hash = hash_blocking(password.to_owned()).await?;
        let tx = self.db.begin().await.map_err(internal)?;
        let u = user::ActiveModel {
            username: Set(username),
            password_hash: Set(hash),
            role: Set(role.as_str().to_owned()),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&tx)
        .await
        .map_err(internal)?;
        membership::ActiveModel {
            user_id: Set(u.id),
            team_id: Set(team_id),
        }
        .insert(&tx)
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        Ok(u)
    }

    /// Finds the team by name, creating it if needed.
    pub async fn ensure_team(&self, name: &str) -> Result<team::Model, AppError> {
        let name = auth::parse_name(name, "team", "team")?;
        if let Some(t) = team::Entity::find()
            .filter(team::Column::Name.eq(name.as_str()))
            .one(&self.db)
            .await
            .map_err(internal)?
        {
            return Ok(t);
        }
        self.insert_team(name).await
    }

    /// Inserts a team whose (already parsed) name is known to be free.
    async fn insert_team(&self, name: String) -> Result<team::Model, AppError> {
        team::ActiveModel {
            name: Set(name),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(internal)
    }

    pub async fn user_count(&self) -> Result<u64, AppError> {
        self.count(user::Entity::find()).await
    }

    /// How many rows `query` matches.
    async fn count<E>(&self, query: Select<E>) -> Result<u64, AppError>
    where
        E: EntityTrait,
        E::Model: Sync,
    {
        query.count(&self.db).await.map_err(internal)
    }
}

async fn hash_blocking(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(internal)?
}

#[async_trait::async_trait]
impl Backend for Services {
    async fn session_info(&self, req: &RequestParts) -> Result<SessionInfo, AppError> {
        let setup_needed = self.user_count().await? == 0;
        let user = match self.require_user(req).await {
            Ok(u) => Some(current(&u)),
            Err(AppError::Unauthenticated) => None,
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
    ) -> Result<(), AppError> {
        if self.user_count().await? > 0 {
            return Err(AppError::Conflict(
                "Hone is already set up. Sign in, or ask an administrator for an account.".into(),
            ));
        }
        auth::parse_username(&username, "username")?;
        auth::check_new_password(&password, "password")?;
        let t = self.ensure_team(&team).await?;
        let u = self
            .insert_user(&username, &password, Role::Admin, t.id)
            .await?;
        tracing::info!(user = %u.username, "first administrator created");
        self.sign_in(req, u.id).await
    }

    #[tracing::instrument(skip_all)]
    async fn login(
        &self,
        req: &RequestParts,
        username: String,
        password: String,
    ) -> Result<(), AppError> {
        // The throttle keys on the name as typed (normalised), whether or not
        // such an account exists, so lockouts reveal nothing either.
        let name = username.trim().to_lowercase();
        let account_key = format!("user:{name}");
        let ip_key = format!("ip:{}", client_ip(req));
        for (key, limit) in [
            (&account_key, auth::ACCOUNT_FAILURES),
            (&ip_key, auth::IP_FAILURES),
        ] {
            if let Some(minutes) = self.locked_for(key, limit).await? {
                tracing::warn!(key = %key, "sign-in refused: throttled");
                return Err(AppError::TooManyAttempts { minutes });
            }
        }
        let found = user::Entity::find()
            .filter(user::Column::Username.eq(name.as_str()))
            .one(&self.db)
            .await
            .map_err(internal)?;
        let hash = found
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| auth::dummy_hash().to_owned());
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
            .await
            .map_err(internal)?;
        match found {
            Some(u) if ok => {
                login_throttle::Entity::delete_by_id(account_key)
                    .exec(&self.db)
                    .await
                    .map_err(internal)?;
                tracing::info!(user = %u.username, "signed in");
                self.sign_in(req, u.id).await
            }
            _ => {
                self.record_failure(&[account_key, ip_key]).await?;
                tracing::info!("sign-in failed");
                Err(AppError::BadCredentials)
            }
        }
    }

    async fn logout(&self, req: &RequestParts) -> Result<(), AppError> {
        // Deletes the stored session and expires the cookie.
        session_of(req)?.flush().await.map_err(internal)
    }

    async fn dashboard(&self, req: &RequestParts) -> Result<Dashboard, AppError> {
        let u = self.require_user(req).await?;
        let teams = self.teams_of(u.id).await?;
        let projects = project::Entity::find()
            .filter(project::Column::TeamId.is_in(teams.iter().map(|t| t.id)))
            .order_by_asc(project::Column::Name)
            .all(&self.db)
            .await
            .map_err(internal)?;
        let projects = self.summaries(projects, &teams).await?;
        Ok(Dashboard {
            user: current(&u),
            teams,
            projects,
        })
    }

    #[tracing::instrument(skip_all, fields(team_id))]
    async fn create_project(
        &self,
        req: &RequestParts,
        team_id: i64,
        name: String,
    ) -> Result<i64, AppError> {
        let u = self.require_user(req).await?;
        if !role_of(&u).can_write_projects() {
            return Err(AppError::Forbidden);
        }
        let name = auth::parse_name(&name, "name", "project")?;
        if !self.teams_of(u.id).await?.iter().any(|t| t.id == team_id) {
            return Err(AppError::invalid("team_id", "Choose one of your teams."));
        }
        let exists = self
            .count(
                project::Entity::find()
                    .filter(project::Column::TeamId.eq(team_id))
                    .filter(project::Column::Name.eq(name.as_str())),
            )
            .await?
            > 0;
        if exists {
            return Err(AppError::invalid(
                "name",
                "This team already has a project with that name.",
            ));
        }
        let p = project::ActiveModel {
            team_id: Set(team_id),
            name: Set(name),
            created_by: Set(u.id),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(internal)?;
        Ok(p.id)
    }

    async fn project(&self, req: &RequestParts, id: i64) -> Result<ProjectPage, AppError> {
        let u = self.require_user(req).await?;
        let p = self.project_for(&u, id).await?;
        let teams = self.teams_of(u.id).await?;
        let project = self
            .summaries(vec![p], &teams)
            .await?
            .pop()
            .ok_or(AppError::Internal)?;
        let datasets = self.datasets_of(project.id).await?;
        Ok(ProjectPage {
            user: current(&u),
            project,
            datasets,
            models: crate::models::list(&self.config.models_dir),
            max_upload_bytes: self.config.max_upload_bytes,
        })
    }

    async fn dataset(&self, req: &RequestParts, id: i64) -> Result<DatasetPage, AppError> {
        let u = self.require_user(req).await?;
        let (row, p) = self.readable_dataset(&u, id).await?;
        let source = file::Entity::find_by_id(row.source_file_id)
            .one(&self.db)
            .await
            .map_err(internal)?;
        let by = self.usernames([row.created_by]).await?;
        let mut finding_counts: Vec<(String, u64)> =
            serde_json::from_str::<std::collections::BTreeMap<String, u64>>(&row.finding_counts)
                .unwrap_or_default()
                .into_iter()
                .collect();
        finding_counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let stats = row
            .stats
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok());
        Ok(DatasetPage {
            user: current(&u),
            project_id: p.id,
            project_name: p.name.clone(),
            dataset: crate::datasets::summary(
                &row,
                source.as_ref().map(|f| f.name.clone()).unwrap_or_default(),
                by.get(&row.created_by).cloned().unwrap_or_default(),
            ),
            source_sha256: source.map(|f| f.sha256).unwrap_or_default(),
            split_sha256: [
                row.train_sha256.clone(),
                row.validation_sha256.clone(),
                row.test_sha256.clone(),
            ],
            errors: row.errors,
            finding_counts,
            stats,
        })
    }

    async fn admin_overview(&self, req: &RequestParts) -> Result<AdminOverview, AppError> {
        let me = self.require_admin(req).await?;
        let teams: Vec<Team> = team::Entity::find()
            .order_by_asc(team::Column::Name)
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|t| Team {
                id: t.id,
                name: t.name,
            })
            .collect();
        let members = membership::Entity::find()
            .all(&self.db)
            .await
            .map_err(internal)?;
        let users = user::Entity::find()
            .order_by_asc(user::Column::Username)
            .all(&self.db)
            .await
            .map_err(internal)?
            .into_iter()
            .map(|u| UserRow {
                id: u.id,
                role: role_of(&u),
                teams: teams
                    .iter()
                    .filter(|t| {
                        members
                            .iter()
                            .any(|m| m.user_id == u.id && m.team_id == t.id)
                    })
                    .cloned()
                    .collect(),
                username: u.username,
            })
            .collect();
        Ok(AdminOverview {
            user: current(&me),
            users,
            teams,
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
    ) -> Result<(), AppError> {
        let admin = self.require_admin(req).await?;
        let role = Role::parse(&role)
            .ok_or_else(|| AppError::invalid("role", "Choose one of the listed roles."))?;
        if team::Entity::find_by_id(team_id)
            .one(&self.db)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(AppError::invalid(
                "team_id",
                "Choose one of the listed teams.",
            ));
        }
        let u = self
            .insert_user(&username, &password, role, team_id)
            .await?;
        tracing::info!(by = %admin.username, user = %u.username, role = role.as_str(), "user created");
        Ok(())
    }

    async fn create_team(&self, req: &RequestParts, name: String) -> Result<(), AppError> {
        self.require_admin(req).await?;
        let name = auth::parse_name(&name, "name", "team")?;
        let exists = self
            .count(team::Entity::find().filter(team::Column::Name.eq(name.as_str())))
            .await?
            > 0;
        if exists {
            return Err(AppError::invalid(
                "name",
                "A team with that name already exists.",
            ));
        }
        self.insert_team(name).await?;
        Ok(())
    }

    async fn set_role(
        &self,
        req: &RequestParts,
        user_id: i64,
        role: String,
    ) -> Result<(), AppError> {
        let admin = self.require_admin(req).await?;
        let role = Role::parse(&role)
            .ok_or_else(|| AppError::invalid("role", "Choose one of the listed roles."))?;
        let target = user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await
            .map_err(internal)?
            .ok_or_else(|| AppError::NotFound("that user".into()))?;
        if role_of(&target) == Role::Admin && role != Role::Admin {
            let admins = self
                .count(user::Entity::find().filter(user::Column::Role.eq(Role::Admin.as_str())))
                .await?;
            if admins <= 1 {
                return Err(AppError::Conflict(
                    "Hone needs at least one administrator: make someone else admin first.".into(),
                ));
            }
        }
        let mut m: user::ActiveModel = target.into();
        m.role = Set(role.as_str().to_owned());
        let u = m.update(&self.db).await.map_err(internal)?;
        tracing::info!(by = %admin.username, user = %u.username, role = role.as_str(), "role changed");
        Ok(())
    }

    async fn set_membership(
        &self,
        req: &RequestParts,
        user_id: i64,
        team_id: i64,
        member: bool,
    ) -> Result<(), AppError> {
        self.require_admin(req).await?;
        if user::Entity::find_by_id(user_id)
            .one(&self.db)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(AppError::NotFound("that user".into()));
        }
        if team::Entity::find_by_id(team_id)
            .one(&self.db)
            .await
            .map_err(internal)?
            .is_none()
        {
            return Err(AppError::NotFound("that team".into()));
        }
        let existing = membership::Entity::find_by_id((user_id, team_id))
            .one(&self.db)
            .await
            .map_err(internal)?;
        match (member, existing) {
            (true, None) => {
                membership::ActiveModel {
                    user_id: Set(user_id),
                    team_id: Set(team_id),
                }
                .insert(&self.db)
                .await
                .map_err(internal)?;
            }
            (false, Some(_)) => {
                membership::Entity::delete_by_id((user_id, team_id))
                    .exec(&self.db)
                    .await
                    .map_err(internal)?;
            }
            _ => {}
        }
        Ok(())
    }
}
