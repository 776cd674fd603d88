//! Sign-in, setup, accounts and sessions under a hostile or careless
//! crowd: parallel guesses, concurrent setups and sign-ups, waits that
//! double, trusted proxies, sessions past their lifetime.

use crate::common::*;
use axum::http::{header, StatusCode};
use hone_server::entity::{login_throttle, session, user};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use std::sync::atomic::Ordering;

fn peer(n: u8) -> Option<std::net::SocketAddr> {
    Some(format!("198.51.100.{n}:4000").parse().unwrap())
}

#[tokio::test]
async fn parallel_wrong_guesses_are_checked_one_by_one() {
    on_each_db(|app| async move {
        world(&app).await;
        let before = app.services.password_checks.load(Ordering::Relaxed);
        let guesses = (0..200u32).map(|i| {
            let app = &app;
            async move {
                let mut c = Client::new(app);
                // From many addresses: only the account's key holds them.
                c.peer = Some(
                    format!("203.0.113.{}:{}", i % 250, 1000 + i)
                        .parse()
                        .unwrap(),
                );
                c.login("admin", &format!("guess number {i}")).await.status
            }
        });
        let statuses = futures::future::join_all(guesses).await;
        let checked = app.services.password_checks.load(Ordering::Relaxed) - before;
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert!(
            (1..=5).contains(&checked),
            "{}: {checked} of 200 parallel guesses were checked",
            app.db_name
        );
        assert_eq!(refused as u64 + checked, 200, "{statuses:?}");
        // The admin is not locked out: once the (1 s) wait is over, the
        // right password works and forgives the failures.
        let_time_pass(&app).await;
        let mut admin = Client::new(&app);
        admin.peer = peer(1);
        assert_eq!(admin.login("admin", PASSWORD).await.status, StatusCode::OK);
        assert_eq!(
            login_throttle::Entity::find_by_id("user:admin".to_owned())
                .one(&app.services.db)
                .await
                .unwrap(),
            None
        );
    })
    .await;
}

#[tokio::test]
async fn each_failure_doubles_the_wait() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut waits = Vec::new();
        for i in 0..12u8 {
            let mut c = Client::new(&app);
            c.peer = peer(10 + i);
            assert_eq!(
                c.login("expert", "wrong").await.status,
                StatusCode::UNAUTHORIZED
            );
            let row = login_throttle::Entity::find_by_id("user:expert".to_owned())
                .one(&app.services.db)
                .await
                .unwrap()
                .unwrap();
            waits.push(row.not_before_ms - row.updated_ms);
            let_time_pass(&app).await;
        }
        assert_eq!(
            waits,
            [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 512000, 900000, 900000]
        );
    })
    .await;
}

#[tokio::test]
async fn names_are_length_checked_before_anything_is_stored() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut c = Client::new(&app);
        let huge = "a".repeat(10_000);
        assert_eq!(c.login(&huge, "x").await.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            login_throttle::Entity::find()
                .count(&app.services.db)
                .await
                .unwrap(),
            0
        );
        // Old rows are purged.
        c.peer = peer(2);
        c.login("expert", "wrong").await;
        login_throttle::Entity::update_many()
            .col_expr(login_throttle::Column::UpdatedMs, Expr::value(0))
            .exec(&app.services.db)
            .await
            .unwrap();
        assert_eq!(app.services.purge_throttle().await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let app = spawn_app_with("sqlite", 1 << 20, |s| {
        s.config.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
    })
    .await;
    world(&app).await;
    let through = |peer: &str, forwarded: &str| {
        let app = &app;
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        let forwarded = forwarded.to_owned();
        async move {
            let mut c = Client::new(app);
            c.peer = Some(peer);
            c.send(
                axum::http::Request::post("/api/login")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header("x-forwarded-for", forwarded)
                    .header("sec-fetch-site", "same-origin"),
                axum::body::Body::from("username=expert&password=wrong"),
            )
            .await
        }
    };
    through("10.1.1.1:1", "198.51.100.7").await;
    let_time_pass(&app).await;
    through("192.0.2.1:1", "198.51.100.8").await;
    let keys: Vec<String> = login_throttle::Entity::find()
        .all(&app.services.db)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert!(keys.contains(&"ip:198.51.100.7".to_owned()), "{keys:?}");
    assert!(
        keys.contains(&"ip:192.0.2.1".to_owned()),
        "an untrusted peer's header was believed: {keys:?}"
    );
}

#[tokio::test]
async fn two_setups_at_once_make_one_admin() {
    on_each_db(|app| async move {
        let setups = (0..8).map(|i| {
            let app = &app;
            async move {
                let mut c = Client::new(app);
                let name = format!("first{i}");
                c.call(
                    "setup",
                    &[("username", &name), ("password", PASSWORD), ("team", "Ops")],
                )
                .await
                .status
            }
        });
        let statuses = futures::future::join_all(setups).await;
        let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(ok, 1, "{}: {statuses:?}", app.db_name);
        assert!(
            statuses
                .iter()
                .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
            "{statuses:?}"
        );
        assert_eq!(app.services.user_count().await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn setup_beyond_loopback_needs_the_token_from_the_log() {
    let app = spawn_app_with("sqlite", 1 << 20, |s| {
        s.setup_token = Some("t0ken-from-the-log".into())
    })
    .await;
    let mut c = Client::new(&app);
    assert_eq!(
        c.call("session", &[]).await.json()["setup_token_required"],
        true
    );
    let form = |token: &'static str| {
        vec![
            ("username", "root"),
            ("password", PASSWORD),
            ("team", "Ops"),
            ("token", token),
        ]
    };
    for wrong in ["", "guess"] {
        let r = c.call("setup", &form(wrong)).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        assert_eq!(r.json()["Invalid"]["field"], "token");
    }
    assert_eq!(app.services.user_count().await.unwrap(), 0);
    let r = c.call("setup", &form("t0ken-from-the-log")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn one_username_created_twice_at_once_is_one_account_and_a_clear_refusal() {
    on_each_db(|app| async move {
        world(&app).await;
        let team = app
            .services
            .ensure_team("Alpha")
            .await
            .unwrap()
            .id
            .to_string();
        // Six admin sessions, signed in one after the other (at once, all
        // but the first would be asked to wait a second).
        let mut admins = Vec::new();
        for _ in 0..6 {
            let mut admin = Client::new(&app);
            assert_eq!(admin.login("admin", PASSWORD).await.status, StatusCode::OK);
            admins.push(admin);
        }
        let creations = admins.iter_mut().map(|admin| {
            let team = team.clone();
            async move {
                let r = admin
                    .call(
                        "create_user",
                        &[
                            ("username", "twin"),
                            ("password", PASSWORD),
                            ("role", "expert"),
                            ("team_id", &team),
                        ],
                    )
                    .await;
                (r.status, r.body)
            }
        });
        let results = futures::future::join_all(creations).await;
        let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!(ok, 1, "{}: {results:?}", app.db_name);
        for (s, body) in &results {
            if *s != StatusCode::OK {
                assert_eq!(*s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
                assert!(body.contains("already taken"), "{body}");
            }
        }
        let twins = user::Entity::find()
            .filter(user::Column::Username.eq("twin"))
            .count(&app.services.db)
            .await
            .unwrap();
        assert_eq!(twins, 1);
    })
    .await;
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_busy() {
    on_each_db(|app| async move {
        world(&app).await;
        session::Entity::delete_many()
            .exec(&app.services.db)
            .await
            .unwrap();
        let mut c = Client::new(&app);
        c.peer = peer(3);
        assert_eq!(c.login("expert", PASSWORD).await.status, StatusCode::OK);
        assert_eq!(c.call("dashboard", &[]).await.status, StatusCode::OK);
        // The session knows its user and its start.
        let rows = session::Entity::find().all(&app.services.db).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].user_id.is_some() && rows[0].created_at.is_some());
        // Signed in longer ago than HONE_SESSION_HOURS (1 h here).
        let old = rows[0].data.replace(
            &format!("\"signed_in_at\":{}", rows[0].created_at.unwrap()),
            "\"signed_in_at\":1000",
        );
        assert_ne!(old, rows[0].data, "{}", rows[0].data);
        session::Entity::update_many()
            .col_expr(session::Column::Data, Expr::value(old))
            .exec(&app.services.db)
            .await
            .unwrap();
        assert_eq!(
            c.call("dashboard", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            session::Entity::find()
                .count(&app.services.db)
                .await
                .unwrap(),
            0
        );
    })
    .await;
}

#[tokio::test]
async fn over_https_the_cookie_is_secure_and_host_prefixed() {
    let app = spawn_app_with("sqlite", 1 << 20, |s| {
        s.config.public_url = "https://hone.example".into()
    })
    .await;
    world(&app).await;
    let mut c = Client::new(&app);
    let r = c.login("expert", PASSWORD).await;
    let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-hone_session="), "{cookie}");
    assert!(
        cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains("Domain"), "{cookie}");
}

#[tokio::test]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    on_each_db(|app| async move {
        world(&app).await;
        let alpha = app.services.ensure_team("Alpha").await.unwrap();
        app.services
            .insert_user("second", PASSWORD, hone_app::api::Role::Admin, alpha.id)
            .await
            .unwrap();
        let id_of = |name: &'static str| {
            let app = &app;
            async move {
                user::Entity::find()
                    .filter(user::Column::Username.eq(name))
                    .one(&app.services.db)
                    .await
                    .unwrap()
                    .unwrap()
                    .id
                    .to_string()
            }
        };
        let (first_id, second_id) = (id_of("admin").await, id_of("second").await);
        let mut first = Client::new(&app);
        first.login("admin", PASSWORD).await;
        let mut second = Client::new(&app);
        second.login("second", PASSWORD).await;
        for round in 0..5 {
            for (what, action) in [("role", "expert"), ("disabled", "true")] {
                let name = if what == "role" {
                    "set_role"
                } else {
                    "set_disabled"
                };
                let form_a = [("user_id", second_id.as_str()), (what, action)];
                let form_b = [("user_id", first_id.as_str()), (what, action)];
                let (a, b) = futures::join!(first.call(name, &form_a), second.call(name, &form_b));
                let live_admins = user::Entity::find()
                    .filter(user::Column::Role.eq(hone_server::entity::user::StoredRole::Admin))
                    .filter(user::Column::DisabledAt.is_null())
                    .count(&app.services.db)
                    .await
                    .unwrap();
                assert_eq!(
                    live_admins, 1,
                    "{} round {round} {what}: {} / {}",
                    app.db_name, a.body, b.body
                );
                let mut statuses = [a.status, b.status];
                statuses.sort();
                assert!(
                    statuses == [StatusCode::OK, StatusCode::CONFLICT]
                        || statuses == [StatusCode::OK, StatusCode::UNAUTHORIZED]
                        || statuses == [StatusCode::OK, StatusCode::FORBIDDEN],
                    "{statuses:?}: {} / {}",
                    a.body,
                    b.body
                );
                // Back to two live admins for the next round.
                user::Entity::update_many()
                    .col_expr(user::Column::Role, Expr::value("admin"))
                    .col_expr(user::Column::DisabledAt, Expr::value(Option::<i64>::None))
                    .filter(user::Column::Username.is_in(["admin", "second"]))
                    .exec(&app.services.db)
                    .await
                    .unwrap();
                // A demoted or disabled admin's session may be gone: sign in again.
                first = Client::new(&app);
                first.login("admin", PASSWORD).await;
                second = Client::new(&app);
                second.login("second", PASSWORD).await;
            }
        }
    })
    .await;
}
