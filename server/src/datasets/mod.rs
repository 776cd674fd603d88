//! Dataset versions: saving one (`create`: re-check, re-split, store,
//! record), downloading its splits (`download`), its page, and the lookups
//! other features (the project page, jobs) use.

pub mod create;
pub mod download;

use crate::accounts::current;
use crate::entity::{dataset_version, file, project, user};
use crate::error::Result;
use crate::state::Services;
use hone_app::api::{AppError, DatasetPage, DatasetSummary, DatasetsBackend, RequestParts};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use std::collections::{BTreeMap, HashMap};

pub use create::create;
pub use download::download;

pub fn summary(
    row: &dataset_version::Model,
    source_name: String,
    created_by: String,
) -> DatasetSummary {
    DatasetSummary {
        id: row.id,
        name: row.name.clone(),
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

    /// The project's dataset versions, newest first.
    pub(crate) async fn datasets_of(&self, project_id: i64) -> Result<Vec<DatasetSummary>> {
        let rows = dataset_version::Entity::find()
            .filter(dataset_version::Column::ProjectId.eq(project_id))
            .order_by_desc(dataset_version::Column::Id)
            .all(&self.db)
            .await?;
        let sources: HashMap<i64, String> = file::Entity::find()
            .filter(file::Column::Id.is_in(rows.iter().map(|r| r.source_file_id)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|f| (f.id, f.name))
            .collect();
        let names = self.usernames(rows.iter().map(|r| r.created_by)).await?;
        Ok(rows
            .iter()
            .map(|r| {
                let source = sources.get(&r.source_file_id).cloned().unwrap_or_default();
                let by = names.get(&r.created_by).cloned().unwrap_or_default();
                summary(r, source, by)
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
        Ok(DatasetPage {
            user: current(&u),
            project_id: p.id,
            project_name: p.name.clone(),
            dataset: summary(
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
}

#[async_trait::async_trait]
impl DatasetsBackend for Services {
    async fn dataset(&self, req: &RequestParts, id: i64) -> Result<DatasetPage, AppError> {
        Ok(self.dataset_page(req, id).await?)
    }
}
