//! Accounts and sessions: first-run setup, sign-in, sign-out, throttling,
//! cookies, probes, 404s, cross-origin refusal and injection attempts.

use crate::common::*;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use hone_app::api::Role;
use sea_orm::EntityTrait;
use tower::ServiceExt;

#[tokio::test]
async fn first_account_becomes_admin_and_setup_closes() {
    on_each_db(|app| async move {
        let mut c = Client::new(&app);
        let info = c.call("session", &[]).await;
        assert_eq!(info.json()["setup_needed"], true, "{}", app.db_name);
        assert_eq!(c.get("/login").await.location.as_deref(), Some("/setup"));

        let short = c
            .call(
                "setup",
                &[("username", "root"), ("password", "short"), ("team", "Ops")],
            )
            .await;
        assert_eq!(short.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(short.json()["Invalid"]["field"], "password");

        let ok = c
            .call(
                "setup",
                &[
                    ("username", "Root"),
                    ("password", PASSWORD),
                    ("team", "Ops"),
                ],
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        let info = c.call("session", &[]).await.json();
        assert_eq!(info["setup_needed"], false);
        assert_eq!(info["user"]["username"], "root");
        assert_eq!(info["user"]["role"], "Admin");

        let mut other = Client::new(&app);
        let again = other
            .call(
                "setup",
                &[
                    ("username", "mallory"),
                    ("password", PASSWORD),
                    ("team", "Ops"),
                ],
            )
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT);
        assert_eq!(app.services.user_count().await.unwrap(), 1);
        assert_eq!(
            other.get("/setup").await.location.as_deref(),
            Some("/login")
        );
    })
    .await;
}

#[tokio::test]
async fn login_rotates_the_session_and_logout_ends_it() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut c = Client::new(&app);
        c.get("/login").await;
        let before = c.cookie.clone();
        let res = c.login("EXPERT", PASSWORD).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let after = c.cookie.clone().expect("a session cookie after sign-in");
        assert_ne!(
            before.as_ref(),
            Some(&after),
            "session id must change at sign-in"
        );
        assert_eq!(c.get("/").await.status, StatusCode::OK);

        let stolen = after.clone();
        assert_eq!(c.call("logout", &[]).await.status, StatusCode::OK);
        assert!(c.cookie.is_none(), "logout must expire the cookie");
        // The old cookie is dead on the server too.
        let mut replay = Client {
            app: &app,
            cookie: Some(stolen),
            peer: None,
        };
        assert_eq!(
            replay.call("dashboard", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(replay.get("/").await.location.as_deref(), Some("/login"));
    })
    .await;
}

#[tokio::test]
async fn session_cookie_is_http_only_and_lax() {
    let app = spawn_app("sqlite", 1024).await;
    world(&app).await;
    let req = Request::post("/api/login")
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(format!(
            "username=expert&password={}",
            PASSWORD.replace(' ', "+")
        )))
        .unwrap();
    let res = app.router.clone().oneshot(req).await.unwrap();
    let cookie = res
        .headers()
        .get(header::SET_COOKIE)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("hone_session="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain-HTTP deployments cannot use Secure cookies: {cookie}"
    );
}

#[tokio::test]
async fn failed_logins_say_nothing_about_accounts_and_are_throttled() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut c = Client::new(&app);
        c.peer = Some("198.51.100.1:5000".parse().unwrap());
        let wrong_password = c.login("expert", "not the password").await;
        let mut d = Client::new(&app);
        d.peer = Some("198.51.100.2:5000".parse().unwrap());
        let no_such_user = d.login("nobody-here", "not the password").await;
        assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            wrong_password.body, no_such_user.body,
            "the two failures must look the same"
        );
        // As if more failures had followed (each doubles the wait): a
        // minute's wait on both accounts and on the first client, so a slow
        // machine does not outlast the 1 s of a single failure.
        let soon = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
            + 60_000;
        hone_server::entity::login_throttle::Entity::update_many()
            .col_expr(
                hone_server::entity::login_throttle::Column::NotBeforeMs,
                sea_orm::sea_query::Expr::value(soon),
            )
            .exec(&app.services.db)
            .await
            .unwrap();
        // Within the wait even the right password waits (429 with
        // Retry-After, no password check) — for that account…
        let mut e = Client::new(&app);
        e.peer = Some("198.51.100.3:5000".parse().unwrap());
        let early = e.login("expert", PASSWORD).await;
        assert_eq!(
            early.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            early.body
        );
        assert!(early.body.contains("TooManyAttempts"), "{}", early.body);
        let wait: u64 = early.headers[header::RETRY_AFTER]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
        // …and for that client, on any account.
        assert_eq!(
            c.login("reviewer", PASSWORD).await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
        // Another account from another address is unaffected.
        assert_eq!(e.login("reviewer", PASSWORD).await.status, StatusCode::OK);
        // A non-existent account waits the same way, revealing nothing.
        assert_eq!(
            e.login("nobody-here", "x").await.status,
            StatusCode::TOO_MANY_REQUESTS
        );
    })
    .await;
}

#[tokio::test]
async fn probes_answer() {
    on_each_db(|app| async move {
        let mut c = Client::new(&app);
        assert_eq!(c.get("/healthz").await.body, "ok");
        let ready = c.get("/readyz").await;
        assert_eq!(
            (ready.status, ready.body.as_str()),
            (StatusCode::OK, "ready")
        );
    })
    .await;
}

#[tokio::test]
async fn sqlite_uses_wal_and_foreign_keys() {
    let app = spawn_app("sqlite", 1024).await;
    let db = &app.services.db;
    assert_eq!(
        hone_server::db::sqlite_pragma(db, "journal_mode")
            .await
            .unwrap(),
        "wal"
    );
    assert_eq!(
        hone_server::db::sqlite_pragma(db, "foreign_keys")
            .await
            .unwrap(),
        "1"
    );
}

#[tokio::test]
async fn unknown_pages_are_real_404s() {
    let app = spawn_app("sqlite", 1024).await;
    let res = Client::new(&app).get("/no/such/page").await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    assert!(res.body.contains("Page not found"), "{}", res.body);
}

#[tokio::test]
async fn cross_origin_writes_are_refused() {
    let app = spawn_app("sqlite", 1024).await;
    world(&app).await;
    for (fetch_site, origin) in [
        (Some("cross-site"), None),
        (None, Some("https://evil.example")),
    ] {
        let mut req = Request::post("/api/login")
            .header(header::HOST, "localhost")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(s) = fetch_site {
            req = req.header("sec-fetch-site", s);
        }
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        let body = Body::from(format!(
            "username=expert&password={}",
            PASSWORD.replace(' ', "+")
        ));
        let res = app
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(res.headers().get(header::SET_COOKIE).is_none());
    }
}

#[tokio::test]
async fn injection_attempts_are_inert() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut c = Client::new(&app);
        c.peer = Some("192.0.2.66:1".parse().unwrap());
        let sql = c.login("admin' OR '1'='1", "' OR '1'='1").await;
        assert_eq!(sql.status, StatusCode::UNAUTHORIZED);
        // (From another address: the failure makes this one wait a second.)
        c.peer = Some("192.0.2.67:1".parse().unwrap());
        assert_eq!(c.login("admin", PASSWORD).await.status, StatusCode::OK);
        let team = app.services.ensure_team("Alpha").await.unwrap();
        let name = "<script>alert('x')</script>'; DROP TABLE projects;--";
        let res = c
            .call(
                "create_project",
                &[("team_id", &team.id.to_string()), ("name", name)],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let page = c.get("/").await;
        assert!(
            !page.body.contains("<script>alert"),
            "raw HTML must be escaped"
        );
        assert!(
            page.body.contains("&lt;script&gt;alert"),
            "the name is shown, escaped"
        );
        // The table is still there.
        assert_eq!(
            c.call("dashboard", &[]).await.json()["projects"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    })
    .await;
}

#[tokio::test]
async fn last_admin_cannot_be_demoted() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut admin = Client::new(&app);
        admin.login("admin", PASSWORD).await;
        let me = admin.call("session", &[]).await.json()["user"]["id"]
            .as_i64()
            .unwrap();
        let res = admin
            .call(
                "set_role",
                &[
                    ("user_id", &me.to_string()),
                    ("role", Role::Expert.as_str()),
                ],
            )
            .await;
        assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
    })
    .await;
}

#[tokio::test]
async fn admin_form_errors_name_the_field() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut admin = Client::new(&app);
        admin.login("admin", PASSWORD).await;
        let team = app
            .services
            .ensure_team("Alpha")
            .await
            .unwrap()
            .id
            .to_string();
        let taken = admin
            .call(
                "create_user",
                &[
                    ("username", "expert"),
                    ("password", PASSWORD),
                    ("role", "expert"),
                    ("team_id", &team),
                ],
            )
            .await;
        assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(taken.json()["Invalid"]["field"], "username");
        let role = admin
            .call(
                "create_user",
                &[
                    ("username", "newbie"),
                    ("password", PASSWORD),
                    ("role", "root"),
                    ("team_id", &team),
                ],
            )
            .await;
        assert_eq!(role.json()["Invalid"]["field"], "role");
        let missing = admin.call("create_user", &[("username", "newbie")]).await;
        assert_eq!(
            missing.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            missing.body
        );
    })
    .await;
}
