//! Projects: the dashboard, creating a project, one project's page, and
//! the lookups every project-scoped route starts with (which apply
//! [`policy`] to the signed-in user's membership of the owning team).

use crate::accounts::{current, password};
use crate::entity::{file, membership, project, team, user};
use crate::error::Result;
use crate::policy::{self, Action};
use crate::state::{now, Services};
use hone_app::api::{
    AppError, Dashboard, FileSummary, ProjectPage, ProjectSummary, ProjectsBackend, RequestParts,
    Team,
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};
use std::collections::HashMap;

/// What the project lists show of a file (not an API file's findings).
#[derive(Clone, Debug, sea_orm::DerivePartialModel)]
#[sea_orm(entity = "file::Entity")]
struct FileRow {
    id: i64,
    project_id: i64,
    name: String,
    size: i64,
    sha256: String,
    uploaded_by: i64,
    created_at: i64,
}

impl Services {
    pub(crate) async fn teams_of(&self, user_id: i64) -> Result<Vec<Team>> {
        let ids: Vec<i64> = membership::Entity::find()
            .filter(membership::Column::UserId.eq(user_id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| m.team_id)
            .collect();
        Ok(team::Entity::find()
            .filter(team::Column::Id.is_in(ids))
            .order_by_asc(team::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|t| Team {
                id: t.id,
                name: t.name,
            })
            .collect())
    }

    /// The project, if `u` may do `action` to it; a project of another
    /// team is "not found" (`what` names it in that message).
    pub async fn project_with(
        &self,
        u: &user::Model,
        project_id: i64,
        action: Action,
        what: &str,
    ) -> Result<project::Model> {
        let not_found = || AppError::NotFound(what.to_owned());
        let p = project::Entity::find_by_id(project_id)
            .filter(project::Column::DeletedAt.is_null())
            .one(&self.db)
            .await?
            .ok_or_else(not_found)?;
        let member = membership::Entity::find_by_id((u.id, p.team_id))
            .one(&self.db)
            .await?
            .is_some();
        policy::check(u.role.into(), member, action, what)?;
        Ok(p)
    }

    /// The project, if `u` may read it.
    pub async fn project_for(&self, u: &user::Model, project_id: i64) -> Result<project::Model> {
        self.project_with(u, project_id, Action::Read, "that project")
            .await
    }

    /// The project, if `u` may add files and datasets to it.
    pub async fn writable_project(
        &self,
        u: &user::Model,
        project_id: i64,
    ) -> Result<project::Model> {
        self.project_with(u, project_id, Action::Write, "that project")
            .await
    }

    async fn summaries(
        &self,
        projects: Vec<project::Model>,
        teams: &[Team],
    ) -> Result<Vec<ProjectSummary>> {
        let ids: Vec<i64> = projects.iter().map(|p| p.id).collect();
        let files: Vec<FileRow> = file::Entity::find()
            .filter(file::Column::ProjectId.is_in(ids))
            .filter(file::Column::DeletedAt.is_null())
            .order_by_desc(file::Column::CreatedAt)
            .order_by_desc(file::Column::Id)
            .into_partial_model()
            .all(&self.db)
            .await?;
        let names = self.usernames(files.iter().map(|f| f.uploaded_by)).await?;
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
    pub(crate) async fn usernames(
        &self,
        ids: impl IntoIterator<Item = i64>,
    ) -> Result<HashMap<i64, String>> {
        Ok(user::Entity::find()
            .filter(user::Column::Id.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|u| (u.id, u.username))
            .collect())
    }

    async fn dashboard(&self, req: &RequestParts) -> Result<Dashboard> {
        let u = self.require_user(req).await?;
        let teams = self.teams_of(u.id).await?;
        let projects = project::Entity::find()
            .filter(project::Column::TeamId.is_in(teams.iter().map(|t| t.id)))
            .filter(project::Column::DeletedAt.is_null())
            .order_by_asc(project::Column::Name)
            .all(&self.db)
            .await?;
        let projects = self.summaries(projects, &teams).await?;
        Ok(Dashboard {
            user: current(&u),
            teams,
            projects,
            can_create_projects: policy::may(u.role.into(), Action::Write),
        })
    }

    #[tracing::instrument(skip_all, fields(team_id))]
    async fn create_project(&self, req: &RequestParts, team_id: i64, name: String) -> Result<i64> {
        let u = self.require_user(req).await?;
        if !policy::may(u.role.into(), Action::Write) {
            return Err(AppError::Forbidden.into());
        }
        let name = password::parse_name(&name, "name", "project")?;
        if !self.teams_of(u.id).await?.iter().any(|t| t.id == team_id) {
            return Err(AppError::invalid("team_id", "Choose one of your teams.").into());
        }
        let exists = project::Entity::find()
            .filter(project::Column::TeamId.eq(team_id))
            .filter(project::Column::Name.eq(name.as_str()))
            .count(&self.db)
            .await?
            > 0;
        if exists {
            return Err(AppError::invalid(
                "name",
                "This team already has a project with that name.",
            )
            .into());
        }
        let p = project::ActiveModel {
            team_id: Set(team_id),
            name: Set(name),
            created_by: Set(u.id),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(p.id)
    }

    async fn project_page(&self, req: &RequestParts, id: i64) -> Result<ProjectPage> {
        let u = self.require_user(req).await?;
        let p = self.project_for(&u, id).await?;
        let teams = self.teams_of(u.id).await?;
        let project = self
            .summaries(vec![p], &teams)
            .await?
            .pop()
            .ok_or(AppError::Internal)?;
        let datasets = self.datasets_of(project.id).await?;
        let jobs = self.jobs_of(project.id).await?;
        let versions = self.versions_of(project.id).await?;
        Ok(ProjectPage {
            user: current(&u),
            project,
            can_write: policy::may(u.role.into(), Action::Write),
            datasets,
            jobs,
            versions,
            can_train: policy::may(u.role.into(), Action::Train),
            models: crate::models::list(&self.config.models_dir),
            max_upload_bytes: self.config.max_upload_bytes,
        })
    }
}

#[async_trait::async_trait]
impl ProjectsBackend for Services {
    async fn dashboard(&self, req: &RequestParts) -> Result<Dashboard, AppError> {
        Ok(Services::dashboard(self, req).await?)
    }

    async fn create_project(
        &self,
        req: &RequestParts,
        team_id: i64,
        name: String,
    ) -> Result<i64, AppError> {
        Ok(Services::create_project(self, req, team_id, name).await?)
    }

    async fn project(&self, req: &RequestParts, id: i64) -> Result<ProjectPage, AppError> {
        Ok(self.project_page(req, id).await?)
    }

    async fn delete_project(
        &self,
        req: &RequestParts,
        id: i64,
        confirm: String,
    ) -> Result<u32, AppError> {
        let u = self.require_user(req).await?;
        Ok(Services::delete_project(self, &u, id, &confirm)
            .await?
            .blobs_freed
            .len() as u32)
    }
}
