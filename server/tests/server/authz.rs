//! The authorisation matrix: every role against every route, plus another
//! team's project. Denials are 401/403/404 (never a page with the data).

use crate::common::*;
use axum::http::StatusCode;

const ANON: &str = "anonymous";
const ROLES: [&str; 5] = [ANON, "expert", "reviewer", "admin", "outsider"];

/// What each caller gets, in the order of `ROLES`.
type Row = [u16; 5];

/// A server function, its form fields, and the expected statuses.
type Call<'a> = (&'a str, Vec<(&'a str, String)>, Row);

async fn client_for<'a>(app: &'a TestApp, who: &str) -> Client<'a> {
    let mut c = Client::new(app);
    if who != ANON {
        let res = c.login(who, PASSWORD).await;
        assert_eq!(res.status, StatusCode::OK, "{who}: {}", res.body);
    }
    c
}

#[tokio::test]
async fn every_role_against_every_route() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let alpha = w.alpha_project.to_string();
        let beta = w.beta_project.to_string();
        let alpha_team = app
            .services
            .ensure_team("Alpha")
            .await
            .unwrap()
            .id
            .to_string();
        let beta_team = app
            .services
            .ensure_team("Beta")
            .await
            .unwrap()
            .id
            .to_string();
        // A dataset and a job in each team, for the jobs' routes.
        let alpha_data = save_dataset(&app, "expert", w.alpha_project, chat_examples(30)).await;
        let beta_data = save_dataset(&app, "outsider", w.beta_project, chat_examples(30)).await;
        let alpha_job = {
            let mut c = client_for(&app, "expert").await;
            let r = c
                .call(
                    "launch_job",
                    &[
                        ("dataset_id", &alpha_data.to_string()),
                        ("model", "hone-demo"),
                        ("config", "{}"),
                    ],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.json().as_i64().unwrap().to_string()
        };
        let (alpha_data, beta_data) = (alpha_data.to_string(), beta_data.to_string());
        let expert_id = {
            let mut c = client_for(&app, "expert").await;
            c.call("session", &[]).await.json()["user"]["id"]
                .as_i64()
                .unwrap()
                .to_string()
        };

        // An API key of the expert's, for revoking.
        let expert_key = {
            let mut c = client_for(&app, "expert").await;
            let r = c
                .call(
                    "create_api_key",
                    &[("project_id", &alpha), ("name", "expert's key")],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.json()["id"].as_i64().unwrap().to_string()
        };

        // Pages (server-rendered): anonymous visitors are sent to sign in.
        let pages: Vec<(String, Row)> = vec![
            ("/".into(), [302, 200, 200, 200, 200]),
            ("/admin".into(), [302, 403, 403, 200, 403]),
            ("/settings/keys".into(), [302, 200, 200, 200, 200]),
            (format!("/projects/{alpha}"), [302, 200, 200, 200, 404]),
            (format!("/projects/{beta}"), [302, 404, 404, 404, 200]),
            ("/projects/999999".into(), [302, 404, 404, 404, 404]),
            (
                format!("/projects/{alpha}/datasets/{alpha_data}/train"),
                [302, 200, 403, 200, 404],
            ),
            (
                format!("/projects/{beta}/datasets/{beta_data}/train"),
                [302, 404, 404, 404, 200],
            ),
            (
                format!("/projects/{alpha}/jobs/{alpha_job}"),
                [302, 200, 200, 200, 404],
            ),
        ];
        for (path, expected) in &pages {
            for (who, want) in ROLES.iter().zip(expected) {
                let mut c = client_for(&app, who).await;
                let res = c.get(path).await;
                assert_eq!(
                    res.status.as_u16(),
                    *want,
                    "{} GET {path} as {who}",
                    app.db_name
                );
                if *want == 302 {
                    assert_eq!(res.location.as_deref(), Some("/login"));
                }
                if *want == 404 || *want == 403 {
                    assert!(
                        !res.body.contains("Alpha support bot")
                            && !res.body.contains("Beta secret plans"),
                        "{path} as {who} leaked a project name"
                    );
                }
            }
        }

        // Server functions: each call with the arguments it needs.
        let calls: Vec<Call> = vec![
            ("dashboard", vec![], [401, 200, 200, 200, 200]),
            (
                "project",
                vec![("id", alpha.clone())],
                [401, 200, 200, 200, 404],
            ),
            (
                "project",
                vec![("id", beta.clone())],
                [401, 404, 404, 404, 200],
            ),
            ("admin_overview", vec![], [401, 403, 403, 200, 403]),
            (
                "create_team",
                vec![("name", "Gamma {who}".into())],
                [401, 403, 403, 200, 403],
            ),
            (
                "create_user",
                vec![
                    ("username", "new-{who}".into()),
                    ("password", PASSWORD.into()),
                    ("role", "expert".into()),
                    ("team_id", alpha_team.clone()),
                ],
                [401, 403, 403, 200, 403],
            ),
            (
                "set_role",
                vec![("user_id", expert_id.clone()), ("role", "expert".into())],
                [401, 403, 403, 200, 403],
            ),
            (
                "set_membership",
                vec![
                    ("user_id", expert_id.clone()),
                    ("team_id", beta_team.clone()),
                    ("member", "false".into()),
                ],
                [401, 403, 403, 200, 403],
            ),
            // Enabling (not disabling), so the expert can still sign in below.
            (
                "set_disabled",
                vec![("user_id", expert_id.clone()), ("disabled", "false".into())],
                [401, 403, 403, 200, 403],
            ),
            // Keys: anyone signed in, for a project they may read; their own only.
            ("keys_page", vec![], [401, 200, 200, 200, 200]),
            (
                "create_api_key",
                vec![("project_id", alpha.clone()), ("name", "K {who}".into())],
                [401, 200, 200, 200, 404],
            ),
            (
                "create_api_key",
                vec![("project_id", beta.clone()), ("name", "K {who}".into())],
                [401, 404, 404, 404, 200],
            ),
            (
                "revoke_api_key",
                vec![("id", expert_key.clone())],
                [401, 200, 404, 404, 404],
            ),
            (
                "revoke_api_key",
                vec![("id", "999999".into())],
                [401, 404, 404, 404, 404],
            ),
            (
                "create_project",
                vec![("team_id", alpha_team.clone()), ("name", "P {who}".into())],
                [401, 200, 403, 200, 422],
            ),
            (
                "create_project",
                vec![("team_id", beta_team.clone()), ("name", "Q {who}".into())],
                [401, 422, 403, 422, 200],
            ),
            (
                "launch_page",
                vec![("dataset_id", alpha_data.clone())],
                [401, 200, 403, 200, 404],
            ),
            (
                "launch_page",
                vec![("dataset_id", beta_data.clone())],
                [401, 404, 404, 404, 200],
            ),
            (
                "check_launch",
                vec![
                    ("dataset_id", alpha_data.clone()),
                    ("model", "hone-demo".into()),
                    ("config", "{}".into()),
                ],
                [401, 200, 403, 200, 404],
            ),
            (
                "launch_job",
                vec![
                    ("dataset_id", beta_data.clone()),
                    ("model", "hone-demo".into()),
                    ("config", "{}".into()),
                ],
                [401, 404, 404, 404, 200],
            ),
            (
                "launch_job",
                vec![
                    ("dataset_id", alpha_data.clone()),
                    ("model", "hone-demo".into()),
                    ("config", "{}".into()),
                ],
                [401, 200, 403, 200, 404],
            ),
            (
                "job",
                vec![("id", alpha_job.clone())],
                [401, 200, 200, 200, 404],
            ),
            (
                "job",
                vec![("id", "999999".into())],
                [401, 404, 404, 404, 404],
            ),
            (
                "cancel_job",
                vec![("id", "999999".into())],
                [401, 404, 404, 404, 404],
            ),
        ];
        for (name, args, expected) in &calls {
            for (who, want) in ROLES.iter().zip(expected) {
                let mut c = client_for(&app, who).await;
                let args: Vec<(&str, String)> = args
                    .iter()
                    .map(|(k, v)| (*k, v.replace("{who}", who)))
                    .collect();
                let form: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let res = c.call(name, &form).await;
                assert_eq!(
                    res.status.as_u16(),
                    *want,
                    "{} /api/{name} as {who}: {}",
                    app.db_name,
                    res.body
                );
            }
        }

        // Cancelling: a reviewer may not, another team cannot see it, and
        // once the expert has, the job is over (409 for the admin after).
        let cancels: [(&str, u16); 5] = [
            (ANON, 401),
            ("reviewer", 403),
            ("outsider", 404),
            ("expert", 200),
            ("admin", 409),
        ];
        for (who, want) in cancels {
            let mut c = client_for(&app, who).await;
            let res = c.call("cancel_job", &[("id", &alpha_job)]).await;
            assert_eq!(
                res.status.as_u16(),
                want,
                "{} cancel_job as {who}: {}",
                app.db_name,
                res.body
            );
        }

        // The job's event stream (plain HTTP route, Server-Sent Events).
        // Headers come at once: the stream of a finished job ends after its
        // last event.
        let streams: Vec<(String, Row)> = vec![
            (
                format!("/api/jobs/{alpha_job}/events"),
                [401, 200, 200, 200, 404],
            ),
            ("/api/jobs/999999/events".into(), [401, 404, 404, 404, 404]),
        ];
        for (path, expected) in &streams {
            for (who, want) in ROLES.iter().zip(expected) {
                let mut c = client_for(&app, who).await;
                let res = c.get(path).await;
                assert_eq!(
                    res.status.as_u16(),
                    *want,
                    "{} GET {path} as {who}",
                    app.db_name
                );
                if *want == 200 {
                    assert!(res.body.contains("\"state\":\"cancelled\""), "{}", res.body);
                }
            }
        }

        // Uploads (plain HTTP route).
        let uploads: Vec<(&String, Row)> = vec![
            (&alpha, [401, 201, 403, 201, 404]),
            (&beta, [401, 404, 404, 404, 201]),
        ];
        for (project, expected) in uploads {
            for (who, want) in ROLES.iter().zip(expected) {
                let mut c = client_for(&app, who).await;
                let res = c
                    .upload(project.parse().unwrap(), "data.jsonl", b"{}\n".to_vec())
                    .await;
                assert_eq!(
                    res.status.as_u16(),
                    want,
                    "{} upload to {project} as {who}: {}",
                    app.db_name,
                    res.body
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn removing_someone_from_a_team_revokes_access_at_once() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let mut expert = client_for(&app, "expert").await;
        let path = format!("/projects/{}", w.alpha_project);
        assert_eq!(expert.get(&path).await.status, StatusCode::OK);
        let expert_id = expert.call("session", &[]).await.json()["user"]["id"]
            .as_i64()
            .unwrap()
            .to_string();
        let alpha = app
            .services
            .ensure_team("Alpha")
            .await
            .unwrap()
            .id
            .to_string();
        let mut admin = client_for(&app, "admin").await;
        let res = admin
            .call(
                "set_membership",
                &[
                    ("user_id", &expert_id),
                    ("team_id", &alpha),
                    ("member", "false"),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        assert_eq!(expert.get(&path).await.status, StatusCode::NOT_FOUND);
        // And a role change applies to the next request.
        admin
            .call("set_role", &[("user_id", &expert_id), ("role", "admin")])
            .await;
        assert_eq!(expert.get("/admin").await.status, StatusCode::OK);
    })
    .await;
}
