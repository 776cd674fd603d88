//! The authorisation matrix: every role against every route, plus another
//! team's project and a disabled account's session. Denials are
//! 401/403/404 (never a page with the data). The matrix must name every
//! page, server function and plain route the server has: one added
//! without a row here fails the test.

use crate::common::*;
use axum::http::StatusCode;

const ANON: &str = "anonymous";
/// `disabled`: an expert of team Alpha who signed in, then was disabled
/// by an admin — their session is as good as none.
const ROLES: [&str; 6] = [ANON, "expert", "reviewer", "admin", "outsider", "disabled"];

/// What each caller gets, in the order of `ROLES`.
type Row = [u16; 6];

/// Anyone may call these (signing in, the first-run setup, who am I);
/// their behaviour is `hardening.rs`'s and `flows.rs`'s.
const PUBLIC_FUNCTIONS: [&str; 4] = ["session", "login", "logout", "setup"];
/// Pages anyone may open.
const PUBLIC_PAGES: [&str; 2] = ["/login", "/setup"];
/// Plain routes anyone may call: probes and the browser's CSP reports.
const PUBLIC_ROUTES: [&str; 3] = ["/healthz", "/readyz", "/api/csp-report"];

/// A signed-in session of the `disabled` caller, made before the
/// account was disabled.
static DISABLED_COOKIE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// A server function, its form fields, and the expected statuses.
type Call<'a> = (&'a str, Vec<(&'a str, String)>, Row);

async fn client_for<'a>(app: &'a TestApp, who: &str) -> Client<'a> {
    let mut c = Client::new(app);
    if who == "disabled" {
        c.cookie = DISABLED_COOKIE.lock().unwrap().clone();
        assert!(c.cookie.is_some());
    } else if who != ANON {
        let res = c.login(who, PASSWORD).await;
        assert_eq!(res.status, StatusCode::OK, "{who}: {}", res.body);
    }
    c
}

/// The paths of the `.route("…", …)` calls in a router's source.
pub fn declared_routes(source: &str) -> Vec<String> {
    source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start().strip_prefix('"')?;
            Some(rest[..rest.find('"')?].to_owned())
        })
        .collect()
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
        // An evaluated model version in Alpha, trained by the expert.
        let (version, number, _) = evaluated_version(&app, w.alpha_project, "expert").await;
        let (version, number) = (version.to_string(), number.to_string());
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

        // The disabled caller: signed in while enabled, then disabled.
        let gone = app
            .services
            .insert_user(
                "gone",
                PASSWORD,
                hone_app::api::Role::Expert,
                alpha_team.parse().unwrap(),
            )
            .await
            .unwrap();
        {
            let mut c = Client::new(&app);
            assert_eq!(c.login("gone", PASSWORD).await.status, StatusCode::OK);
            *DISABLED_COOKIE.lock().unwrap() = c.cookie.clone();
            let mut admin = client_for(&app, "admin").await;
            let r = admin
                .call(
                    "set_disabled",
                    &[("user_id", &gone.id.to_string()), ("disabled", "true")],
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }

        // Pages (server-rendered): anonymous visitors are sent to sign in.
        // Each with its route's template, to check that every page is here.
        let pages: Vec<(&str, String, Row)> = vec![
            ("/", "/".into(), [302, 200, 200, 200, 200, 302]),
            ("/admin", "/admin".into(), [302, 403, 403, 200, 403, 302]),
            (
                "/admin/queue",
                "/admin/queue".into(),
                [302, 403, 403, 200, 403, 302],
            ),
            (
                "/admin/usage",
                "/admin/usage".into(),
                [302, 403, 403, 200, 403, 302],
            ),
            (
                "/admin/audit",
                "/admin/audit".into(),
                [302, 403, 403, 200, 403, 302],
            ),
            (
                "/settings/keys",
                "/settings/keys".into(),
                [302, 200, 200, 200, 200, 302],
            ),
            (
                "/settings/account",
                "/settings/account".into(),
                [302, 200, 200, 200, 200, 302],
            ),
            (
                "/projects/{id}",
                format!("/projects/{alpha}"),
                [302, 200, 200, 200, 404, 302],
            ),
            (
                "/projects/{id}",
                format!("/projects/{beta}"),
                [302, 404, 404, 404, 200, 302],
            ),
            (
                "/projects/{id}",
                "/projects/999999".into(),
                [302, 404, 404, 404, 404, 302],
            ),
            (
                "/projects/{id}/datasets/{dataset}",
                format!("/projects/{alpha}/datasets/{alpha_data}"),
                [302, 200, 200, 200, 404, 302],
            ),
            (
                "/projects/{id}/datasets/{dataset}",
                format!("/projects/{beta}/datasets/{beta_data}"),
                [302, 404, 404, 404, 200, 302],
            ),
            (
                "/projects/{id}/datasets/{dataset}/train",
                format!("/projects/{alpha}/datasets/{alpha_data}/train"),
                [302, 200, 403, 200, 404, 302],
            ),
            (
                "/projects/{id}/datasets/{dataset}/train",
                format!("/projects/{beta}/datasets/{beta_data}/train"),
                [302, 404, 404, 404, 200, 302],
            ),
            (
                "/projects/{id}/jobs/{job}",
                format!("/projects/{alpha}/jobs/{alpha_job}"),
                [302, 200, 200, 200, 404, 302],
            ),
            (
                "/projects/{id}/versions/{number}",
                format!("/projects/{alpha}/versions/{number}"),
                [302, 200, 200, 200, 404, 302],
            ),
            (
                "/versions/{version}/rate",
                format!("/versions/{version}/rate"),
                [302, 403, 200, 200, 404, 302],
            ),
            (
                "/notifications",
                "/notifications".into(),
                [302, 200, 200, 200, 200, 302],
            ),
        ];
        // Every page of the app is in the matrix (or public).
        let templates: std::collections::BTreeSet<String> = pages
            .iter()
            .map(|(t, ..)| (*t).to_owned())
            .chain(PUBLIC_PAGES.iter().map(|p| (*p).to_owned()))
            .collect();
        for route in leptos_axum::generate_route_list(hone_app::App) {
            assert!(
                templates.contains(route.path()),
                "the page {} has no row in the authorisation matrix",
                route.path()
            );
        }
        let pages: Vec<(String, Row)> = pages.into_iter().map(|(_, p, r)| (p, r)).collect();
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
            ("dashboard", vec![], [401, 200, 200, 200, 200, 401]),
            (
                "project",
                vec![("id", alpha.clone())],
                [401, 200, 200, 200, 404, 401],
            ),
            (
                "project",
                vec![("id", beta.clone())],
                [401, 404, 404, 404, 200, 401],
            ),
            ("admin_overview", vec![], [401, 403, 403, 200, 403, 401]),
            (
                "create_team",
                vec![("name", "Gamma {who}".into())],
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "create_user",
                vec![
                    ("username", "new-{who}".into()),
                    ("password", PASSWORD.into()),
                    ("role", "expert".into()),
                    ("team_id", alpha_team.clone()),
                ],
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "set_role",
                vec![("user_id", expert_id.clone()), ("role", "expert".into())],
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "set_membership",
                vec![
                    ("user_id", expert_id.clone()),
                    ("team_id", beta_team.clone()),
                    ("member", "false".into()),
                ],
                [401, 403, 403, 200, 403, 401],
            ),
            // Enabling (not disabling), so the expert can still sign in below.
            (
                "set_disabled",
                vec![("user_id", expert_id.clone()), ("disabled", "false".into())],
                [401, 403, 403, 200, 403, 401],
            ),
            // Keys: anyone signed in, for a project they may read; their own only.
            ("keys_page", vec![], [401, 200, 200, 200, 200, 401]),
            (
                "create_api_key",
                vec![("project_id", alpha.clone()), ("name", "K {who}".into())],
                [401, 200, 200, 200, 404, 401],
            ),
            (
                "create_api_key",
                vec![("project_id", beta.clone()), ("name", "K {who}".into())],
                [401, 404, 404, 404, 200, 401],
            ),
            (
                "revoke_api_key",
                vec![("id", expert_key.clone())],
                [401, 200, 404, 404, 404, 401],
            ),
            (
                "revoke_api_key",
                vec![("id", "999999".into())],
                [401, 404, 404, 404, 404, 401],
            ),
            (
                "create_project",
                vec![("team_id", alpha_team.clone()), ("name", "P {who}".into())],
                [401, 200, 403, 200, 422, 401],
            ),
            (
                "create_project",
                vec![("team_id", beta_team.clone()), ("name", "Q {who}".into())],
                [401, 422, 403, 422, 200, 401],
            ),
            (
                "launch_page",
                vec![("dataset_id", alpha_data.clone())],
                [401, 200, 403, 200, 404, 401],
            ),
            (
                "launch_page",
                vec![("dataset_id", beta_data.clone())],
                [401, 404, 404, 404, 200, 401],
            ),
            (
                "check_launch",
                vec![
                    ("dataset_id", alpha_data.clone()),
                    ("model", "hone-demo".into()),
                    ("config", "{}".into()),
                ],
                [401, 200, 403, 200, 404, 401],
            ),
            (
                "launch_job",
                vec![
                    ("dataset_id", beta_data.clone()),
                    ("model", "hone-demo".into()),
                    ("config", "{}".into()),
                ],
                [401, 404, 404, 404, 200, 401],
            ),
            (
                "launch_job",
                vec![
                    ("dataset_id", alpha_data.clone()),
                    ("model", "hone-demo".into()),
                    ("config", "{}".into()),
                ],
                [401, 200, 403, 200, 404, 401],
            ),
            (
                "job",
                vec![("id", alpha_job.clone())],
                [401, 200, 200, 200, 404, 401],
            ),
            (
                "job",
                vec![("id", "999999".into())],
                [401, 404, 404, 404, 404, 401],
            ),
            (
                "cancel_job",
                vec![("id", "999999".into())],
                [401, 404, 404, 404, 404, 401],
            ),
            (
                "dataset",
                vec![("id", alpha_data.clone())],
                [401, 200, 200, 200, 404, 401],
            ),
            (
                "dataset",
                vec![("id", beta_data.clone())],
                [401, 404, 404, 404, 200, 401],
            ),
            // Deleting: who may and may not is in lifecycle.rs (a real
            // deletion here would take the data the rows below read).
            (
                "delete_dataset",
                vec![("id", "999999".into())],
                [401, 404, 404, 404, 404, 401],
            ),
            (
                "delete_job",
                vec![("id", "999999".into())],
                [401, 404, 404, 404, 404, 401],
            ),
            // Not ended yet: refused to those who may delete it.
            (
                "delete_job",
                vec![("id", alpha_job.clone())],
                [401, 409, 403, 409, 404, 401],
            ),
            (
                "delete_version",
                vec![("version_id", "999999".into())],
                [401, 404, 404, 404, 404, 401],
            ),
            // The name not typed: refused to those who may delete it.
            (
                "delete_project",
                vec![("id", alpha.clone()), ("confirm", "not its name".into())],
                [401, 422, 403, 422, 404, 401],
            ),
            (
                "delete_project",
                vec![("id", "999999".into()), ("confirm", "".into())],
                [401, 404, 404, 404, 404, 401],
            ),
            // Purging a team's storage: admins only.
            (
                "purge_storage",
                vec![("team_id", alpha_team.clone())],
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "purge_storage",
                vec![("team_id", "999999".into())],
                [401, 403, 403, 404, 403, 401],
            ),
            // The account page: one's own, for anyone signed in.
            ("account_page", vec![], [401, 200, 200, 200, 200, 401]),
            // Too short a new password: refused before the current one is
            // checked (which would make the next sign-in wait).
            (
                "change_password",
                vec![
                    ("current_password", PASSWORD.into()),
                    ("new_password", "short".into()),
                ],
                [401, 422, 422, 422, 422, 401],
            ),
            (
                "revoke_session",
                vec![("id", "not-a-session".into())],
                [401, 404, 404, 404, 404, 401],
            ),
            // Scheduling: admins only, whatever the team.
            ("queue", vec![], [401, 403, 403, 200, 403, 401]),
            (
                "set_quota",
                vec![
                    ("team_id", alpha_team.clone()),
                    ("guaranteed_devices", "1".into()),
                    ("month_hours", "".into()),
                    ("per_person", "".into()),
                ],
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "set_device_weight",
                vec![("name", "CPU".into()), ("weight", "1".into())],
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "set_job_priority",
                vec![("id", alpha_job.clone()), ("priority", "0".into())],
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "pause_job",
                vec![("id", "999999".into())],
                [401, 403, 403, 404, 403, 401],
            ),
            (
                "resume_job",
                vec![("id", "999999".into())],
                [401, 403, 403, 404, 403, 401],
            ),
            (
                "admin_cancel_job",
                vec![("id", "999999".into())],
                [401, 403, 403, 404, 403, 401],
            ),
            (
                "usage_report",
                vec![("from", "".into()), ("to", "".into())],
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "audit_log",
                vec![
                    ("person", "".into()),
                    ("team", "".into()),
                    ("action", "".into()),
                ],
                [401, 403, 403, 200, 403, 401],
            ),
            // Admins only; the expert's password set to what it was.
            (
                "reset_password",
                vec![("user_id", expert_id.clone()), ("password", PASSWORD.into())],
                [401, 403, 403, 200, 403, 401],
            ),
            // Model versions: members read; reviewers and admins rate and
            // decide (never experts); another team's is not found.
            (
                "version",
                vec![("project_id", alpha.clone()), ("number", number.clone())],
                [401, 200, 200, 200, 404, 401],
            ),
            (
                "version",
                vec![("project_id", alpha.clone()), ("number", "99".into())],
                [401, 404, 404, 404, 404, 401],
            ),
            (
                "rating",
                vec![("version_id", version.clone()), ("line", "0".into())],
                [401, 403, 200, 200, 404, 401],
            ),
            (
                "rate",
                vec![
                    ("version_id", version.clone()),
                    ("line", "1".into()),
                    ("choice", "a".into()),
                    ("comment", "".into()),
                ],
                [401, 403, 200, 200, 404, 401],
            ),
            // A rating on an example that does not exist.
            (
                "rate",
                vec![
                    ("version_id", version.clone()),
                    ("line", "99".into()),
                    ("choice", "a".into()),
                    ("comment", "".into()),
                ],
                [401, 403, 422, 422, 404, 401],
            ),
            (
                "decide",
                vec![
                    ("version_id", version.clone()),
                    ("decision", "rejected".into()),
                    ("comment", "Not yet: too few examples.".into()),
                ],
                [401, 403, 200, 200, 404, 401],
            ),
            (
                "decide",
                vec![
                    ("version_id", "999999".into()),
                    ("decision", "approved".into()),
                    ("comment", "".into()),
                ],
                [401, 404, 404, 404, 404, 401],
            ),
            ("awaiting_review", vec![], [401, 200, 200, 200, 200, 401]),
            ("notifications", vec![], [401, 200, 200, 200, 200, 401]),
            ("unread_notifications", vec![], [401, 200, 200, 200, 200, 401]),
            ("mark_read", vec![("id", "0".into())], [401, 200, 200, 200, 200, 401]),
            (
                "mark_read",
                vec![("id", "999999".into())],
                [401, 404, 404, 404, 404, 401],
            ),
        ];
        // Every server function is in the matrix (or public).
        let named: std::collections::BTreeSet<&str> = calls
            .iter()
            .map(|(n, ..)| *n)
            .chain(PUBLIC_FUNCTIONS)
            .collect();
        for (path, _) in leptos::server_fn::axum::server_fn_paths() {
            let name = path.trim_start_matches("/api/");
            assert!(
                named.contains(name),
                "the server function {path} has no row in the authorisation matrix"
            );
        }
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
                [401, 200, 200, 200, 404, 401],
            ),
            ("/api/jobs/999999/events".into(), [401, 404, 404, 404, 404, 401]),
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
            (&alpha, [401, 201, 403, 201, 404, 401]),
            (&beta, [401, 404, 404, 404, 201, 401]),
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

        // Saving a dataset version: allowed callers' saves are accepted
        // for checking (202; these counts are wrong on purpose, so the
        // check refuses them later).
        let saves: Vec<(&String, Row)> = vec![
            (&alpha, [401, 202, 403, 202, 404, 401]),
            (&beta, [401, 404, 404, 404, 202, 401]),
        ];
        for (project, expected) in saves {
            for (who, want) in ROLES.iter().zip(expected) {
                let mut c = client_for(&app, who).await;
                let res = c
                    .send(
                        axum::http::Request::post(format!(
                            "/api/projects/{project}/datasets?name=X&seed=42&ratios=80,10,10&expect=0,0,0"
                        ))
                        .header("x-file-name", "x.jsonl")
                        .header("sec-fetch-site", "same-origin"),
                        axum::body::Body::from(chat_examples(10)),
                    )
                    .await;
                assert_eq!(
                    res.status.as_u16(),
                    want,
                    "{} dataset save to {project} as {who}: {}",
                    app.db_name,
                    res.body
                );
            }
        }

        // Downloads and the tokenizer the browser counts with (plain GETs).
        let gets: Vec<(&str, String, Row)> = vec![
            (
                "/api/datasets/{id}/{file}",
                format!("/api/datasets/{alpha_data}/train.jsonl"),
                [401, 200, 200, 200, 404, 401],
            ),
            (
                "/api/datasets/{id}/{file}",
                format!("/api/datasets/{beta_data}/test.jsonl"),
                [401, 404, 404, 404, 200, 401],
            ),
            (
                "/api/models/{name}/tokenizer",
                "/api/models/hone-demo/tokenizer".into(),
                [401, 200, 200, 200, 200, 401],
            ),
            (
                "/api/admin/usage.csv",
                "/api/admin/usage.csv".into(),
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "/api/admin/audit.csv",
                "/api/admin/audit.csv?team=Alpha".into(),
                [401, 403, 403, 200, 403, 401],
            ),
            (
                "/api/versions/{id}/report.json",
                format!("/api/versions/{version}/report.json"),
                [401, 200, 200, 200, 404, 401],
            ),
            // Not approved: refused to the team, hidden from others.
            (
                "/api/versions/{id}/downloads/{format}",
                format!("/api/versions/{version}/downloads/adapter"),
                [401, 403, 403, 403, 404, 401],
            ),
        ];
        for (_, path, expected) in &gets {
            for (who, want) in ROLES.iter().zip(expected) {
                let mut c = client_for(&app, who).await;
                let res = c
                    .send(axum::http::Request::get(path.as_str()), axum::body::Body::empty())
                    .await;
                assert_eq!(
                    res.status.as_u16(),
                    *want,
                    "{} GET {path} as {who}: {}",
                    app.db_name,
                    res.body
                );
            }
        }

        // Every plain route the server declares is above (the `/v1` API's
        // are `authz_api.rs`'s).
        let covered: Vec<&str> = gets
            .iter()
            .map(|(t, ..)| *t)
            .chain([
                "/api/projects/{id}/files",
                "/api/projects/{id}/datasets",
                "/api/jobs/{id}/events",
            ])
            .chain(PUBLIC_ROUTES)
            .collect();
        for route in declared_routes(include_str!("../../src/lib.rs")) {
            assert!(
                covered.contains(&route.as_str()),
                "the route {route} has no row in the authorisation matrix"
            );
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
