//! The account page (changing one's password, listing and ending one's
//! sessions), an admin's password reset, the audit log, and what storage
//! is left behind and used.

use crate::common::*;
use axum::http::StatusCode;
use hone_server::entity::audit::{self, AuditAction};
use hone_server::entity::session;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};

/// The world's own sign-ins, gone: each test counts its own sessions.
async fn no_sessions(app: &TestApp) {
    session::Entity::delete_many()
        .exec(&app.services.db)
        .await
        .unwrap();
}

async fn signed_in<'a>(app: &'a TestApp, who: &str, password: &str) -> Client<'a> {
    let mut c = Client::new(app);
    let r = c.login(who, password).await;
    assert_eq!(r.status, StatusCode::OK, "{who}: {}", r.body);
    c
}

async fn user_id(c: &mut Client<'_>) -> String {
    c.call("session", &[]).await.json()["user"]["id"]
        .as_i64()
        .unwrap()
        .to_string()
}

async fn audit_actions(app: &TestApp) -> Vec<(String, AuditAction, String)> {
    audit::Entity::find()
        .order_by_asc(audit::Column::Id)
        .all(&app.services.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.actor, e.action, e.target))
        .collect()
}

const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn changing_ones_password_needs_the_current_one_and_signs_out_the_other_sessions() {
    on_each_db(|app| async move {
        world(&app).await;
        no_sessions(&app).await;
        let mut here = signed_in(&app, "expert", PASSWORD).await;
        let mut there = signed_in(&app, "expert", PASSWORD).await;

        let wrong = here
            .call(
                "change_password",
                &[
                    ("current_password", "not my password at all"),
                    ("new_password", NEW_PASSWORD),
                ],
            )
            .await;
        assert_eq!(
            wrong.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            wrong.body
        );
        assert!(wrong.body.contains("current_password"), "{}", wrong.body);
        // A wrong current password is a failed sign-in: the next try waits.
        let soon = here
            .call(
                "change_password",
                &[
                    ("current_password", PASSWORD),
                    ("new_password", NEW_PASSWORD),
                ],
            )
            .await;
        assert_eq!(soon.status, StatusCode::TOO_MANY_REQUESTS, "{}", soon.body);
        let_time_pass(&app).await;
        let short = here
            .call(
                "change_password",
                &[("current_password", PASSWORD), ("new_password", "short")],
            )
            .await;
        assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(short.body.contains("new_password"), "{}", short.body);

        let ok = here
            .call(
                "change_password",
                &[
                    ("current_password", PASSWORD),
                    ("new_password", NEW_PASSWORD),
                ],
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(ok.json(), 1, "one other session signed out");
        assert_eq!(here.call("dashboard", &[]).await.status, StatusCode::OK);
        assert_eq!(
            there.call("dashboard", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
        let mut old = Client::new(&app);
        assert_eq!(
            old.login("expert", PASSWORD).await.status,
            StatusCode::UNAUTHORIZED
        );
        let_time_pass(&app).await;
        signed_in(&app, "expert", NEW_PASSWORD).await;
        assert!(audit_actions(&app).await.contains(&(
            "expert".into(),
            AuditAction::PasswordChanged,
            "expert".into()
        )));
    })
    .await;
}

#[tokio::test]
async fn sessions_are_listed_and_ended_by_their_owner_only() {
    on_each_db(|app| async move {
        world(&app).await;
        no_sessions(&app).await;
        let mut here = signed_in(&app, "expert", PASSWORD).await;
        let mut there = signed_in(&app, "expert", PASSWORD).await;
        let mut outsider = signed_in(&app, "outsider", PASSWORD).await;

        let page = here.call("account_page", &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let sessions = page.json()["sessions"].as_array().unwrap().clone();
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        assert_eq!(
            sessions.iter().filter(|s| s["current"] == true).count(),
            1,
            "{sessions:?}"
        );
        for s in &sessions {
            assert!(s["signed_in_at"].as_i64().is_some() && s["last_active"].as_i64().is_some());
        }
        let other = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();

        // Someone else's session is not found, and stays.
        let theirs = outsider.call("revoke_session", &[("id", &other)]).await;
        assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.body);
        assert_eq!(there.call("dashboard", &[]).await.status, StatusCode::OK);

        let ended = here.call("revoke_session", &[("id", &other)]).await;
        assert_eq!(ended.status, StatusCode::OK, "{}", ended.body);
        assert_eq!(
            there.call("dashboard", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(here.call("dashboard", &[]).await.status, StatusCode::OK);
        let again = here.call("revoke_session", &[("id", &other)]).await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        let page = here.call("account_page", &[]).await.json();
        assert_eq!(page["sessions"].as_array().unwrap().len(), 1);
        assert!(audit_actions(&app)
            .await
            .iter()
            .any(|(actor, action, _)| actor == "expert" && *action == AuditAction::SessionRevoked));
    })
    .await;
}

/// A request of a session that is ended while it is in flight saves the
/// session as it finishes: that save must not bring it back.
#[tokio::test]
async fn an_ended_session_is_not_recreated_by_a_late_save() {
    use tower_sessions::session::{Id, Record};
    use tower_sessions::SessionStore;
    on_each_db(|app| async move {
        let store = hone_server::sessions::DbSessionStore::new(app.services.db.clone());
        let mut record = Record {
            id: Id::default(),
            data: Default::default(),
            expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        store.create(&mut record).await.unwrap();
        assert!(store.load(&record.id).await.unwrap().is_some());
        session::Entity::delete_many()
            .exec(&app.services.db)
            .await
            .unwrap();
        store.save(&record).await.unwrap();
        assert!(store.load(&record.id).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn an_admin_resets_a_password_and_the_persons_sessions_end() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut expert = signed_in(&app, "expert", PASSWORD).await;
        let expert_id = user_id(&mut expert).await;
        let mut admin = signed_in(&app, "admin", PASSWORD).await;
        let admin_id = user_id(&mut admin).await;

        let short = admin
            .call(
                "reset_password",
                &[("user_id", &expert_id), ("password", "short")],
            )
            .await;
        assert_eq!(
            short.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            short.body
        );
        let own = admin
            .call(
                "reset_password",
                &[("user_id", &admin_id), ("password", NEW_PASSWORD)],
            )
            .await;
        assert_eq!(own.status, StatusCode::CONFLICT, "{}", own.body);
        let by_expert = expert
            .call(
                "reset_password",
                &[("user_id", &admin_id), ("password", NEW_PASSWORD)],
            )
            .await;
        assert_eq!(by_expert.status, StatusCode::FORBIDDEN);
        let nobody = admin
            .call(
                "reset_password",
                &[("user_id", "999999"), ("password", NEW_PASSWORD)],
            )
            .await;
        assert_eq!(nobody.status, StatusCode::NOT_FOUND);

        let ok = admin
            .call(
                "reset_password",
                &[("user_id", &expert_id), ("password", NEW_PASSWORD)],
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(
            expert.call("dashboard", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
        signed_in(&app, "expert", NEW_PASSWORD).await;
        assert!(audit_actions(&app).await.contains(&(
            "admin".into(),
            AuditAction::PasswordReset,
            "expert".into()
        )));
    })
    .await;
}

#[tokio::test]
async fn the_audit_log_records_who_did_what_and_cannot_be_changed() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let mut expert = signed_in(&app, "expert", PASSWORD).await;
        let expert_id = user_id(&mut expert).await;
        let beta = app
            .services
            .ensure_team("Beta")
            .await
            .unwrap()
            .id
            .to_string();
        let mut admin = signed_in(&app, "admin", PASSWORD).await;
        for (name, form) in [
            (
                "set_role",
                vec![("user_id", expert_id.as_str()), ("role", "reviewer")],
            ),
            // The same role again changes nothing and records nothing.
            (
                "set_role",
                vec![("user_id", expert_id.as_str()), ("role", "reviewer")],
            ),
            (
                "set_membership",
                vec![
                    ("user_id", expert_id.as_str()),
                    ("team_id", beta.as_str()),
                    ("member", "true"),
                ],
            ),
            // Added again: already a member, nothing recorded.
            (
                "set_membership",
                vec![
                    ("user_id", expert_id.as_str()),
                    ("team_id", beta.as_str()),
                    ("member", "true"),
                ],
            ),
            (
                "set_membership",
                vec![
                    ("user_id", expert_id.as_str()),
                    ("team_id", beta.as_str()),
                    ("member", "false"),
                ],
            ),
            (
                "set_disabled",
                vec![("user_id", expert_id.as_str()), ("disabled", "true")],
            ),
            (
                "set_disabled",
                vec![("user_id", expert_id.as_str()), ("disabled", "false")],
            ),
        ] {
            let r = admin.call(name, &form).await;
            assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.body);
        }
        let_time_pass(&app).await;
        let mut expert = signed_in(&app, "expert", PASSWORD).await;
        let key = expert
            .call(
                "create_api_key",
                &[
                    ("project_id", &w.alpha_project.to_string()),
                    ("name", "script"),
                ],
            )
            .await;
        assert_eq!(key.status, StatusCode::OK, "{}", key.body);
        let key_id = key.json()["id"].as_i64().unwrap().to_string();
        // Revoked twice at once: recorded once.
        let (a, b) = {
            let mut other = signed_in(&app, "expert", PASSWORD).await;
            let form = [("id", key_id.as_str())];
            let (a, b) = tokio::join!(
                expert.call("revoke_api_key", &form),
                other.call("revoke_api_key", &form)
            );
            (a.status, b.status)
        };
        assert_eq!((a, b), (StatusCode::OK, StatusCode::OK));

        let log = audit_actions(&app).await;
        let after_world: Vec<_> = log
            .iter()
            .filter(|(actor, ..)| actor != "hone")
            .filter(|(_, action, _)| *action != AuditAction::UserCreated)
            .cloned()
            .collect();
        let e = |actor: &str, action, target: &str| (actor.to_owned(), action, target.to_owned());
        assert_eq!(
            after_world,
            vec![
                e("admin", AuditAction::RoleChanged, "expert"),
                e("admin", AuditAction::MembershipAdded, "expert"),
                e("admin", AuditAction::MembershipRemoved, "expert"),
                e("admin", AuditAction::AccountDisabled, "expert"),
                e("admin", AuditAction::AccountEnabled, "expert"),
                e("expert", AuditAction::ApiKeyCreated, "script"),
                e("expert", AuditAction::ApiKeyRevoked, "script"),
            ]
        );
        // The world's users and teams were made from the command line.
        assert!(log.contains(&("hone".into(), AuditAction::UserCreated, "expert".into())));
        assert!(log.contains(&("hone".into(), AuditAction::TeamCreated, "Beta".into())));
        let role = audit::Entity::find()
            .order_by_asc(audit::Column::Id)
            .all(&app.services.db)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.action == AuditAction::RoleChanged)
            .unwrap();
        assert_eq!(role.detail, r#"{"from":"expert","to":"reviewer"}"#);

        // Append-only, by the database itself.
        let db = &app.services.db;
        for sql in [
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
        ] {
            let err = db.execute_unprepared(sql).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        assert_eq!(audit_actions(&app).await, log);
    })
    .await;
}

#[tokio::test]
async fn a_refused_save_leaves_no_unreferenced_blob_once_swept() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let s = &app.services;
        let dataset = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let kept = s.blobs.list_blobs().await.unwrap();
        assert_eq!(kept.len(), 4, "the source and three splits: {kept:?}");

        let mut c = signed_in(&app, "expert", PASSWORD).await;
        let refused = c
            .send(
                axum::http::Request::post(format!(
                    "/api/projects/{}/datasets?name=Broken&seed=42&ratios=80,10,10&expect=1,0,0",
                    w.alpha_project
                ))
                .header("x-file-name", "broken.jsonl")
                .header("sec-fetch-site", "same-origin"),
                axum::body::Body::from("{\"messages\": [}\nnot json either\n"),
            )
            .await;
        assert_eq!(refused.status, StatusCode::ACCEPTED, "{}", refused.body);
        assert_eq!(s.check_pending_datasets().await.unwrap(), 1);
        let page = c
            .call("dataset", &[("id", &refused.json()["id"].to_string())])
            .await
            .json();
        assert_eq!(page["dataset"]["state"], "refused", "{page}");
        assert_eq!(s.blobs.list_blobs().await.unwrap().len(), 5);

        // Within the grace period nothing goes (a save may be under way)…
        assert_eq!(
            s.sweep_orphans(hone_server::retention::ORPHAN_GRACE)
                .await
                .unwrap(),
            0
        );
        // …after it, the refused upload does, and only it.
        assert_eq!(s.sweep_orphans(std::time::Duration::ZERO).await.unwrap(), 1);
        let mut left = s.blobs.list_blobs().await.unwrap();
        let mut kept = kept;
        left.sort_by(|a, b| a.key.cmp(&b.key));
        kept.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(
            left.iter().map(|b| &b.key).collect::<Vec<_>>(),
            kept.iter().map(|b| &b.key).collect::<Vec<_>>()
        );

        // Admins see each team's use: Alpha holds those four blobs.
        let mut admin = signed_in(&app, "admin", PASSWORD).await;
        let overview = admin.call("admin_overview", &[]).await.json();
        let storage = overview["storage"].as_array().unwrap();
        let total: u64 = kept.iter().map(|b| b.size).sum();
        assert_eq!(storage[0]["team"], "Alpha", "{storage:?}");
        assert_eq!(storage[0]["bytes"].as_u64().unwrap(), total);
        assert_eq!(storage[0]["files"], 4);
        let beta = storage.iter().find(|t| t["team"] == "Beta").unwrap();
        assert_eq!(beta["bytes"], 0);

        // A checkpoint whose manifest cannot be read: the sweep cannot know
        // what it refers to, so it removes nothing; the admin page still works.
        let job = c
            .call(
                "launch_job",
                &[
                    ("dataset_id", &dataset.to_string()),
                    ("model", "hone-demo"),
                    ("config", "{}"),
                ],
            )
            .await;
        assert_eq!(job.status, StatusCode::OK, "{}", job.body);
        s.db.execute_unprepared(&format!(
            "INSERT INTO job_checkpoints (job_id, step, manifest, created_at) VALUES ({}, 1, 'not json', 0)",
            job.json().as_i64().unwrap()
        ))
        .await
        .unwrap();
        let orphan = s
            .blobs
            .put_stream(
                futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                    b"nobody refers to this",
                ))]),
                1024,
            )
            .await
            .unwrap();
        assert_eq!(
            s.sweep_orphans(std::time::Duration::ZERO).await.unwrap(),
            0
        );
        assert!(s.blobs.exists(&orphan.key).await.unwrap());
        assert_eq!(
            admin.call("admin_overview", &[]).await.status,
            StatusCode::OK
        );
    })
    .await;
}
