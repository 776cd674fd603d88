//! Evaluation and review: a job's kind (training, or the evaluation of a
//! trained model, which points at its training job); model versions (one
//! per successful training job, numbered per project, with the hashes a
//! review is bound to); reviewers' decisions, each bound to the hashes it
//! saw; blind A/B ratings of test examples; in-app notifications.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum Jobs {
    Table,
    Id,
    Kind,
    SourceJobId,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden, Clone, Copy)]
enum ModelVersions {
    Table,
    Id,
    ProjectId,
    Number,
    TrainJobId,
    EvalJobId,
    DatasetVersionId,
    DatasetSha256,
    SettingsSha256,
    ArtifactSha256,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Reviews {
    Table,
    Id,
    VersionId,
    ReviewerId,
    Decision,
    Comment,
    DatasetSha256,
    SettingsSha256,
    ArtifactSha256,
    ReportSha256,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Ratings {
    Table,
    Id,
    VersionId,
    ReviewerId,
    Line,
    TunedFirst,
    Choice,
    Comment,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum Notifications {
    Table,
    Id,
    UserId,
    Kind,
    Message,
    Link,
    CreatedAt,
    ReadAt,
}

fn fk(
    from: (impl IntoIden, impl IntoIden),
    to: (impl IntoIden, impl IntoIden),
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(from.0, from.1)
        .to(to.0, to.1)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for mut c in [
            // `train` or `evaluate`.
            ColumnDef::new(Jobs::Kind)
                .string()
                .not_null()
                .default("train")
                .to_owned(),
            // An evaluation's training job.
            ColumnDef::new(Jobs::SourceJobId)
                .big_integer()
                .null()
                .to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Jobs::Table)
                    .add_column(&mut c)
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(ModelVersions::Table)
                .col(big_pk_auto(ModelVersions::Id))
                .col(big_integer(ModelVersions::ProjectId))
                // 1, 2, … within the project.
                .col(integer(ModelVersions::Number))
                .col(big_integer(ModelVersions::TrainJobId).unique_key())
                .col(big_integer_null(ModelVersions::EvalJobId).unique_key())
                .col(big_integer(ModelVersions::DatasetVersionId))
                // What a review is bound to: the data trained on, every
                // setting, the weights trained.
                .col(string(ModelVersions::DatasetSha256))
                .col(string(ModelVersions::SettingsSha256))
                .col(string(ModelVersions::ArtifactSha256))
                .col(big_integer(ModelVersions::CreatedAt))
                .foreign_key(&mut fk(
                    (ModelVersions::Table, ModelVersions::ProjectId),
                    (Projects::Table, Projects::Id),
                ))
                .foreign_key(&mut fk(
                    (ModelVersions::Table, ModelVersions::TrainJobId),
                    (Jobs::Table, Jobs::Id),
                ))
                .foreign_key(&mut fk(
                    (ModelVersions::Table, ModelVersions::EvalJobId),
                    (Jobs::Table, Jobs::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Reviews::Table)
                .col(big_pk_auto(Reviews::Id))
                .col(big_integer(Reviews::VersionId))
                .col(big_integer(Reviews::ReviewerId))
                // `approved` or `rejected`.
                .col(string(Reviews::Decision))
                .col(text(Reviews::Comment))
                .col(string(Reviews::DatasetSha256))
                .col(string(Reviews::SettingsSha256))
                .col(string(Reviews::ArtifactSha256))
                .col(string(Reviews::ReportSha256))
                .col(big_integer(Reviews::CreatedAt))
                .foreign_key(&mut fk(
                    (Reviews::Table, Reviews::VersionId),
                    (ModelVersions::Table, ModelVersions::Id),
                ))
                .foreign_key(&mut fk(
                    (Reviews::Table, Reviews::ReviewerId),
                    (Users::Table, Users::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Ratings::Table)
                .col(big_pk_auto(Ratings::Id))
                .col(big_integer(Ratings::VersionId))
                .col(big_integer(Ratings::ReviewerId))
                // The test example's line in the test split.
                .col(integer(Ratings::Line))
                // What the reviewer was shown: the tuned answer as A.
                .col(boolean(Ratings::TunedFirst))
                // `a`, `b`, `tie` or `both_bad`.
                .col(string(Ratings::Choice))
                .col(text_null(Ratings::Comment))
                .col(big_integer(Ratings::CreatedAt))
                .col(big_integer(Ratings::UpdatedAt))
                .foreign_key(&mut fk(
                    (Ratings::Table, Ratings::VersionId),
                    (ModelVersions::Table, ModelVersions::Id),
                ))
                .foreign_key(&mut fk(
                    (Ratings::Table, Ratings::ReviewerId),
                    (Users::Table, Users::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Notifications::Table)
                .col(big_pk_auto(Notifications::Id))
                .col(big_integer(Notifications::UserId))
                .col(string(Notifications::Kind))
                .col(text(Notifications::Message))
                .col(string(Notifications::Link))
                .col(big_integer(Notifications::CreatedAt))
                .col(big_integer_null(Notifications::ReadAt))
                .foreign_key(&mut fk(
                    (Notifications::Table, Notifications::UserId),
                    (Users::Table, Users::Id),
                ))
                .to_owned(),
        )
        .await?;
        let indexes: [(&str, DynIden, Vec<DynIden>, bool); 5] = [
            (
                "jobs_source_job",
                Jobs::Table.into_iden(),
                vec![Jobs::SourceJobId.into_iden()],
                false,
            ),
            (
                "model_versions_project_number",
                ModelVersions::Table.into_iden(),
                vec![
                    ModelVersions::ProjectId.into_iden(),
                    ModelVersions::Number.into_iden(),
                ],
                true,
            ),
            (
                "reviews_version",
                Reviews::Table.into_iden(),
                vec![Reviews::VersionId.into_iden()],
                false,
            ),
            (
                "ratings_version_reviewer_line",
                Ratings::Table.into_iden(),
                vec![
                    Ratings::VersionId.into_iden(),
                    Ratings::ReviewerId.into_iden(),
                    Ratings::Line.into_iden(),
                ],
                true,
            ),
            (
                "notifications_user",
                Notifications::Table.into_iden(),
                vec![
                    Notifications::UserId.into_iden(),
                    Notifications::CreatedAt.into_iden(),
                ],
                false,
            ),
        ];
        for (name, table, cols, unique) in indexes {
            let mut i = Index::create();
            i.name(name).table(table);
            for c in cols {
                i.col(c);
            }
            if unique {
                i.unique();
            }
            m.create_index(i.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("jobs_source_job")
                .table(Jobs::Table)
                .to_owned(),
        )
        .await?;
        for t in [
            Notifications::Table.into_iden(),
            Ratings::Table.into_iden(),
            Reviews::Table.into_iden(),
            ModelVersions::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).to_owned()).await?;
        }
        for c in [Jobs::SourceJobId, Jobs::Kind] {
            m.alter_table(Table::alter().table(Jobs::Table).drop_column(c).to_owned())
                .await?;
        }
        Ok(())
    }
}
