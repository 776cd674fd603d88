//! Upgrading a database that has data: every migration after the first
//! release keeps what is there. The API migration rebuilds `jobs` on
//! SQLite (it cannot alter a column), so a job with its events and
//! checkpoint goes in before it and must come out whole.

use crate::common::databases;
use hone_migrations::{Migrator, MigratorTrait};
use hone_server::entity::{job, job_checkpoint, job_event};
use sea_orm::{ActiveModelTrait, ConnectionTrait, Database, EntityTrait, Set};

/// Rows as migration 4 (the jobs) left the schema.
const BEFORE_API: &[&str] = &[
    "INSERT INTO users (id, username, password_hash, role, created_at) VALUES (1, 'ada', 'x', 'expert', 10)",
    "INSERT INTO teams (id, name, created_at) VALUES (1, 'Ops', 10)",
    "INSERT INTO team_members (user_id, team_id) VALUES (1, 1)",
    "INSERT INTO projects (id, team_id, name, created_by, created_at) VALUES (1, 1, 'P', 1, 10)",
    "INSERT INTO files (id, project_id, name, size, sha256, storage_key, uploaded_by, created_at) VALUES (1, 1, 'f.jsonl', 3, 'h', 'k', 1, 10)",
    "INSERT INTO dataset_versions (id, project_id, name, source_file_id, format, examples, rejected, dropped_rejected, errors, warnings, finding_counts, seed, ratios, train_count, validation_count, test_count, train_key, validation_key, test_key, train_sha256, validation_sha256, test_sha256, created_by, created_at) VALUES (1, 1, 'v', 1, 'chat', 10, 0, false, 0, 0, '{}', '42', '80,10,10', 8, 1, 1, 'a', 'b', 'c', 'a', 'b', 'c', 1, 10)",
    "INSERT INTO jobs (id, project_id, dataset_version_id, created_by, base_model, method, spec, state, attempts, max_attempts, worker_id, lease_expires_ms, device, step, total_steps, checkpoint_step, failure_cause, failure_reason, outcome, tokens_per_s, created_at, queued_at, started_at, finished_at, updated_at) VALUES (7, 1, 1, 1, 'hone-demo', 'lora', '{}', 'succeeded', 1, 3, 'w1', 99, '{\"kind\":\"cpu\"}', 30, 30, 30, NULL, NULL, '{}', 1234.5, 11, 12, 13, 14, 15)",
    "INSERT INTO job_events (id, job_id, at_ms, body) VALUES (1, 7, 11000, '{}')",
    "INSERT INTO job_checkpoints (id, job_id, step, manifest, created_at) VALUES (1, 7, 30, '[]', 13)",
];

#[tokio::test]
async fn jobs_keep_every_field_through_the_api_migration() {
    for db in databases() {
        let dir = tempfile::tempdir().unwrap();
        let url = match db {
            "sqlite" => format!("sqlite://{}?mode=rwc", dir.path().join("hone.db").display()),
            _ => {
                let admin_url = std::env::var("HONE_TEST_POSTGRES").unwrap();
                let admin = Database::connect(admin_url.as_str()).await.unwrap();
                let name = format!("hone_test_{}", uuid::Uuid::new_v4().simple());
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0)
            }
        };
        {
            let old = Database::connect(url.as_str()).await.unwrap();
            Migrator::up(&old, Some(4)).await.unwrap();
            for sql in BEFORE_API {
                old.execute_unprepared(sql).await.unwrap();
            }
            old.close().await.unwrap();
        }
        let conn = hone_server::db::connect(Some(&url), dir.path())
            .await
            .unwrap();
        let j = job::Entity::find_by_id(7)
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(j.dataset_version_id, Some(1), "{db}");
        assert_eq!(j.worker_id.as_deref(), Some("w1"));
        assert_eq!(j.tokens_per_s, Some(1234.5));
        assert_eq!(
            (
                j.created_at,
                j.queued_at,
                j.started_at,
                j.finished_at,
                j.updated_at
            ),
            (11, Some(12), Some(13), Some(14), 15)
        );
        assert_eq!(j.training_file_id, None);
        // A version saved before checks ran off the request was checked
        // during its save: it is ready, its keys kept.
        let v = hone_server::entity::dataset_version::Entity::find_by_id(1)
            .one(&conn)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (v.state, v.train_key.as_str(), v.check_started_at, v.refusal),
            (
                hone_server::entity::dataset_version::DatasetState::Ready,
                "a",
                None,
                None
            ),
            "{db}"
        );
        assert_eq!(job_event::Entity::find().all(&conn).await.unwrap().len(), 1);
        assert_eq!(
            job_checkpoint::Entity::find().all(&conn).await.unwrap()[0].job_id,
            7
        );
        // The new shape: a job may wait without a dataset version…
        let mut waiting: job::ActiveModel = j.clone().into();
        waiting.id = sea_orm::ActiveValue::NotSet;
        waiting.dataset_version_id = Set(None);
        waiting.training_file_id = Set(Some(1));
        waiting.insert(&conn).await.unwrap();
        // …and references are still enforced after the rebuild.
        let mut broken: job::ActiveModel = j.into();
        broken.id = sea_orm::ActiveValue::NotSet;
        broken.dataset_version_id = Set(Some(999));
        assert!(
            broken.insert(&conn).await.is_err(),
            "{db}: a dangling reference was accepted"
        );
    }
}
