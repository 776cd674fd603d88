//! Dataset versions: saving one (`create`: store and record, answering at
//! once), its check off the request (`check`: re-check, re-split, ready or
//! refused), downloading its splits (`download`), its page, and the
//! lookups other features (the project page, jobs) use.

pub mod check;
pub mod create;
pub mod download;

use crate::accounts::current;
use crate::entity::dataset_version::DatasetState as Stored;
use crate::entity::{dataset_version, file, project, user};
use crate::error::Result;
use crate::state::Services;
use hone_app::api::{
    AppError, DatasetPage, DatasetState, DatasetSummary, DatasetsBackend, Refusal, RequestParts,
};
use sea_orm::{ColumnTrait, DerivePartialModel, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::collections::{BTreeMap, HashMap};

pub use create::create;
pub use download::download;

/// What a list of versions shows of each: the columns of its summary
/// (not its statistics, findings or request, which only its page reads).
#[derive(Clone, Debug, DerivePartialModel)]
#[sea_orm(entity = "dataset_version::Entity")]
pub struct SummaryRow {
    pub id: i64,
    pub name: String,
    pub source_file_id: i64,
    pub format: String,
    pub examples: i64,
    pub rejected: i64,
    pub dropped_rejected: bool,
    pub warnings: i64,
    pub seed: String,
    pub ratios: String,
    pub train_count: i64,
    pub validation_count: i64,
    pub test_count: i64,
    pub base_model: Option<String>,
    pub created_by: i64,
    pub created_at: i64,
    pub state: Stored,
    pub check_started_at: Option<i64>,
}

impl From<&dataset_version::Model> for SummaryRow {
    fn from(r: &dataset_version::Model) -> SummaryRow {
        SummaryRow {
            id: r.id,
            name: r.name.clone(),
            source_file_id: r.source_file_id,
            format: r.format.clone(),
            examples: r.examples,
            rejected: r.rejected,
            dropped_rejected: r.dropped_rejected,
            warnings: r.warnings,
            seed: r.seed.clone(),
            ratios: r.ratios.clone(),
            train_count: r.train_count,
            validation_count: r.validation_count,
            test_count: r.test_count,
            base_model: r.base_model.clone(),
            created_by: r.created_by,
            created_at: r.created_at,
            state: r.state,
            check_started_at: r.check_started_at,
        }
    }
}

/// The state people see: a version being checked waits until a checker
/// takes it.
pub fn shown_state(state: Stored, check_started_at: Option<i64>) -> DatasetState {
    match (state, check_started_at) {
        (Stored::Checking, None) => DatasetState::Waiting,
        (Stored::Checking, Some(_)) => DatasetState::Checking,
        (Stored::Ready, _) => DatasetState::Ready,
        (Stored::Refused, _) => DatasetState::Refused,
        (Stored::Archived, _) => DatasetState::Archived,
    }
}

pub fn summary(
    row: &dataset_version::Model,
    source_name: String,
    created_by: String,
    ahead: Option<u64>,
) -> DatasetSummary {
    summary_of(&SummaryRow::from(row), source_name, created_by, ahead)
}

fn summary_of(
    row: &SummaryRow,
    source_name: String,
    created_by: String,
    ahead: Option<u64>,
) -> DatasetSummary {
    let state = shown_state(row.state, row.check_started_at);
    DatasetSummary {
        id: row.id,
        name: row.name.clone(),
        state,
        ahead: ahead.filter(|_| state == DatasetState::Waiting),
        source_name,
        format: row.format.clone(),
        examples: row.examples,
        rejected: row.rejected,
        dropped_rejected: row.dropped_rejected,
        warnings: row.warnings,
        seed: row.seed.clone(),
        ratios: row.ratios.clone(),
        counts: [row.train_count, row.validation_count, row.test_count],
        base_model: row.base_model.clone(),
        created_by,
        created_at: row.created_at,
    }
}

/// The server's statistics of a version (absent for versions saved before
/// they were kept); stored JSON that does not decode is an error.
pub fn stats_of(row: &dataset_version::Model) -> Result<Option<hone_dataset::check::Stats>> {
    Ok(match row.stats.as_deref() {
        Some(s) => Some(serde_json::from_str(s)?),
        None => None,
    })
}

impl Services {
    /// A dataset version and its project, if `u` may read the project (the
    /// same 404 for "absent" and "not yours").
    pub async fn readable_dataset(
        &self,
        u: &user::Model,
        id: i64,
    ) -> Result<(dataset_version::Model, project::Model)> {
        let what = "that dataset";
        let row = dataset_version::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AppError::NotFound(what.into()))?;
        let p = self
            .project_with(u, row.project_id, crate::policy::Action::Read, what)
            .await?;
        Ok((row, p))
    }

    /// A readable version whose check is done and which passed it: what
    /// downloads and training need. Otherwise a plain refusal saying where
    /// its check is.
    pub async fn ready_dataset(
        &self,
        u: &user::Model,
        id: i64,
    ) -> Result<(dataset_version::Model, project::Model)> {
        let (row, p) = self.readable_dataset(u, id).await?;
        match row.state {
            Stored::Ready => Ok((row, p)),
            Stored::Checking => Err(AppError::Conflict(format!(
                "The dataset {:?} is still being checked by the server: wait until its page says it is ready.",
                row.name
            ))
            .into()),
            Stored::Refused => Err(AppError::Conflict(format!(
                "The dataset {:?} was refused by the server's check: it has no files to use. Its page says why.",
                row.name
            ))
            .into()),
            Stored::Archived => Err(AppError::Conflict(format!(
                "The dataset {:?} was deleted: its files are gone.",
                row.name
            ))
            .into()),
        }
    }

    /// The project's dataset versions, newest first (only the columns a
    /// list shows).
    pub(crate) async fn datasets_of(&self, project_id: i64) -> Result<Vec<DatasetSummary>> {
        let rows: Vec<SummaryRow> = dataset_version::Entity::find()
            .filter(dataset_version::Column::ProjectId.eq(project_id))
            .filter(dataset_version::Column::State.ne(Stored::Archived))
            .order_by_desc(dataset_version::Column::Id)
            .into_partial_model()
            .all(&self.db)
            .await?;
        let sources: HashMap<i64, String> = file::Entity::find()
            .select_only()
            .column(file::Column::Id)
            .column(file::Column::Name)
            .filter(file::Column::Id.is_in(rows.iter().map(|r| r.source_file_id)))
            .into_tuple::<(i64, String)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let names = self.usernames(rows.iter().map(|r| r.created_by)).await?;
        let waiting = if rows.iter().any(|r| r.state == Stored::Checking) {
            self.waiting_checks().await?
        } else {
            Vec::new()
        };
        Ok(rows
            .iter()
            .map(|r| {
                let source = sources.get(&r.source_file_id).cloned().unwrap_or_default();
                let by = names.get(&r.created_by).cloned().unwrap_or_default();
                let ahead = waiting.iter().position(|w| *w == r.id).map(|n| n as u64);
                summary_of(r, source, by, ahead)
            })
            .collect())
    }

    async fn dataset_page(&self, req: &RequestParts, id: i64) -> Result<DatasetPage> {
        let u = self.require_user(req).await?;
        let (row, p) = self.readable_dataset(&u, id).await?;
        let source = file::Entity::find_by_id(row.source_file_id)
            .one(&self.db)
            .await?;
        let by = self.usernames([row.created_by]).await?;
        let mut finding_counts: Vec<(String, u64)> =
            serde_json::from_str::<BTreeMap<String, u64>>(&row.finding_counts)?
                .into_iter()
                .collect();
        finding_counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let stats = stats_of(&row)?;
        let refusal: Option<Refusal> = match row.refusal.as_deref() {
            Some(r) => Some(serde_json::from_str(r)?),
            None => None,
        };
        let ahead = self.checks_ahead(row.id).await?;
        Ok(DatasetPage {
            user: current(&u),
            project_id: p.id,
            project_name: p.name.clone(),
            dataset: summary(
                &row,
                source.as_ref().map(|f| f.name.clone()).unwrap_or_default(),
                by.get(&row.created_by).cloned().unwrap_or_default(),
                ahead,
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
            refusal,
        })
    }
}

#[async_trait::async_trait]
impl DatasetsBackend for Services {
    async fn dataset(&self, req: &RequestParts, id: i64) -> Result<DatasetPage, AppError> {
        Ok(self.dataset_page(req, id).await?)
    }

    async fn delete_dataset(&self, req: &RequestParts, id: i64) -> Result<u32, AppError> {
        let u = self.require_user(req).await?;
        Ok(self.delete_dataset(&u, id).await?.blobs_freed.len() as u32)
    }
}
