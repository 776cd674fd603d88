//! The authorisation matrix of the `/v1` API (the pages' and server
//! functions' is in `authz.rs`): every route against no key, a revoked
//! key, a key of each role in team Alpha's project and a key of team
//! Beta's. A key acts as its owner, with the owner's role, in its own
//! project only: what belongs elsewhere is "not found".

use crate::common::*;
use crate::openai::{examples, job_request, key_for, send, upload};
use axum::body::Body;
use axum::http::{header, Method, Request};
use hone_server::entity::api_key;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

/// Callers, in the order of each row.
/// `disabled`: a key of an expert of Alpha whose account an admin
/// disabled after the key was made.
const CALLERS: [&str; 7] = [
    "no key", "revoked", "expert", "reviewer", "admin", "outsider", "disabled",
];

type Row = [u16; 7];

/// Whether `path` is an instance of the route `template` (`{x}` stands
/// for one segment).
fn instance_of(template: &str, path: &str) -> bool {
    let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

/// A request body: its content type and bytes.
type Payload = Option<(String, Vec<u8>)>;

/// A route: method, path, body, and what each caller gets.
type Route = (Method, String, Payload, Row);

fn id_of(a: &crate::openai::Answer) -> String {
    a.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", a.body))
        .to_owned()
}

#[tokio::test]
async fn every_key_against_every_v1_route() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (revoked_id, revoked) = key_for(&app, "expert", w.alpha_project).await;
        api_key::Entity::update_many()
            .col_expr(
                api_key::Column::RevokedAt,
                sea_orm::sea_query::Expr::value(1),
            )
            .filter(api_key::Column::Id.eq(revoked_id))
            .exec(&app.services.db)
            .await
            .unwrap();
        let mut keys = vec![None, Some(revoked)];
        for (who, project) in [
            ("expert", w.alpha_project),
            ("reviewer", w.alpha_project),
            ("admin", w.alpha_project),
            ("outsider", w.beta_project),
        ] {
            keys.push(Some(key_for(&app, who, project).await.1));
        }
        let gone = app
            .services
            .insert_user(
                "gone",
                PASSWORD,
                hone_app::api::Role::Expert,
                app.services.ensure_team("Alpha").await.unwrap().id,
            )
            .await
            .unwrap();
        keys.push(Some(key_for(&app, "gone", w.alpha_project).await.1));
        hone_server::entity::user::Entity::update_many()
            .col_expr(
                hone_server::entity::user::Column::DisabledAt,
                sea_orm::sea_query::Expr::value(1),
            )
            .filter(hone_server::entity::user::Column::Id.eq(gone.id))
            .exec(&app.services.db)
            .await
            .unwrap();
        let expert = keys[2].clone().unwrap();
        let outsider = keys[5].clone().unwrap();
        // A file and a job in each project.
        let alpha_file = id_of(&upload(&app, &expert, "fine-tune", &examples(20)).await);
        let beta_file = id_of(&upload(&app, &outsider, "fine-tune", &examples(20)).await);
        app.services.check_pending_files().await.unwrap();
        let made = |key: String, file: String| {
            let app = &app;
            async move {
                let r = send(
                    app,
                    Some(&key),
                    Request::post("/v1/fine_tuning/jobs")
                        .header(header::CONTENT_TYPE, "application/json"),
                    Body::from(job_request(&file).to_string()),
                )
                .await;
                id_of(&r)
            }
        };
        let alpha_job = made(expert.clone(), alpha_file.clone()).await;
        let beta_job = made(outsider.clone(), beta_file.clone()).await;
        let job_body = job_request(&alpha_file).to_string();
        let file_body = crate::openai::multipart("fine-tune", "more.jsonl", &examples(3));

        let get = |path: String, row: Row| (Method::GET, path, Payload::None, row);
        let routes: Vec<Route> = vec![
            get("/v1/models".into(), [401, 401, 200, 200, 200, 200, 401]),
            get(
                "/v1/models/hone-demo".into(),
                [401, 401, 200, 200, 200, 200, 401],
            ),
            get("/v1/files".into(), [401, 401, 200, 200, 200, 200, 401]),
            get(
                format!("/v1/files/{alpha_file}"),
                [401, 401, 200, 200, 200, 404, 401],
            ),
            get(
                format!("/v1/files/{beta_file}"),
                [401, 401, 404, 404, 404, 200, 401],
            ),
            get(
                format!("/v1/files/{alpha_file}/content"),
                [401, 401, 200, 200, 200, 404, 401],
            ),
            get(
                format!("/v1/files/{beta_file}/content"),
                [401, 401, 404, 404, 404, 200, 401],
            ),
            (
                Method::POST,
                "/v1/files".into(),
                Some((
                    "multipart/form-data; boundary=hone-test-boundary".into(),
                    file_body,
                )),
                [401, 401, 200, 403, 200, 200, 401],
            ),
            // In use by a job: refused (409) to those who may delete.
            (
                Method::DELETE,
                format!("/v1/files/{alpha_file}"),
                None,
                [401, 401, 409, 403, 409, 404, 401],
            ),
            (
                Method::DELETE,
                "/v1/files/file-999999".into(),
                None,
                [401, 401, 404, 403, 404, 404, 401],
            ),
            get(
                "/v1/fine_tuning/jobs".into(),
                [401, 401, 200, 200, 200, 200, 401],
            ),
            get(
                format!("/v1/fine_tuning/jobs/{alpha_job}"),
                [401, 401, 200, 200, 200, 404, 401],
            ),
            get(
                format!("/v1/fine_tuning/jobs/{beta_job}"),
                [401, 401, 404, 404, 404, 200, 401],
            ),
            get(
                format!("/v1/fine_tuning/jobs/{alpha_job}/events"),
                [401, 401, 200, 200, 200, 404, 401],
            ),
            get(
                format!("/v1/fine_tuning/jobs/{beta_job}/events"),
                [401, 401, 404, 404, 404, 200, 401],
            ),
            get(
                format!("/v1/fine_tuning/jobs/{alpha_job}/checkpoints"),
                [401, 401, 200, 200, 200, 404, 401],
            ),
            get(
                format!("/v1/fine_tuning/jobs/{beta_job}/checkpoints"),
                [401, 401, 404, 404, 404, 200, 401],
            ),
            (
                Method::POST,
                "/v1/fine_tuning/jobs".into(),
                Some(("application/json".into(), job_body.into_bytes())),
                // The outsider's key cannot name Alpha's file: not found.
                [401, 401, 200, 403, 200, 404, 401],
            ),
            (
                Method::POST,
                "/v1/fine_tuning/jobs/ftjob-999999/cancel".into(),
                None,
                [401, 401, 404, 404, 404, 404, 401],
            ),
            // Pausing and resuming are an admin's: another team's job is
            // not found, the outsider (an expert) may not.
            (
                Method::POST,
                "/v1/fine_tuning/jobs/ftjob-999999/pause".into(),
                None,
                [401, 401, 404, 404, 404, 404, 401],
            ),
            (
                Method::POST,
                format!("/v1/fine_tuning/jobs/{beta_job}/pause"),
                None,
                [401, 401, 404, 404, 404, 403, 401],
            ),
            (
                Method::POST,
                format!("/v1/fine_tuning/jobs/{beta_job}/resume"),
                None,
                [401, 401, 404, 404, 404, 403, 401],
            ),
            (
                Method::POST,
                format!("/v1/fine_tuning/jobs/{beta_job}/cancel"),
                None,
                [401, 401, 404, 404, 404, 200, 401],
            ),
            // Chat: a model that is not an approved version of the key's
            // project is not found, for every key (approved ones are in
            // e2e/tests/openai.rs, with the real engine).
            (
                Method::POST,
                "/v1/chat/completions".into(),
                Some((
                    "application/json".into(),
                    br#"{"model":"ft:hone-demo:none","messages":[{"role":"user","content":"Hi"}]}"#
                        .to_vec(),
                )),
                [401, 401, 404, 404, 404, 404, 401],
            ),
        ];
        // Every route of the `/v1` router is in the matrix.
        for template in crate::authz::declared_routes(include_str!("../../src/openai/mod.rs")) {
            let template = format!("/v1{template}");
            assert!(
                routes
                    .iter()
                    .any(|(_, path, ..)| instance_of(&template, path)),
                "the route {template} has no row in the API's authorisation matrix"
            );
        }
        for (method, path, body, expected) in &routes {
            for ((who, key), want) in CALLERS.iter().zip(&keys).zip(expected) {
                let mut req = Request::builder().method(method.clone()).uri(path);
                let payload = match body {
                    Some((kind, bytes)) => {
                        req = req.header(header::CONTENT_TYPE, kind);
                        Body::from(bytes.clone())
                    }
                    None => Body::empty(),
                };
                let r = send(&app, key.as_deref(), req, payload).await;
                assert_eq!(
                    r.status.as_u16(),
                    *want,
                    "{} {method} {path} with {who}'s key: {}",
                    app.db_name,
                    r.body
                );
                if *want >= 400 {
                    assert!(r.json()["error"]["message"].is_string(), "{}", r.body);
                    assert!(
                        !r.body.contains("Beta secret plans")
                            && !r.body.contains("Alpha support bot")
                    );
                }
            }
        }
        // Cancelling Alpha's job: the reviewer may not, the outsider cannot
        // see it, the expert does, and then it is over for the admin.
        for (who, want) in [
            ("reviewer", 403),
            ("outsider", 404),
            ("expert", 200),
            ("admin", 409),
        ] {
            let key = keys[CALLERS.iter().position(|c| *c == who).unwrap()].clone();
            let r = send(
                &app,
                key.as_deref(),
                Request::post(format!("/v1/fine_tuning/jobs/{alpha_job}/cancel")),
                Body::from(json!({}).to_string()),
            )
            .await;
            assert_eq!(r.status.as_u16(), want, "cancel as {who}: {}", r.body);
        }
    })
    .await;
}
