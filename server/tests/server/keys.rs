//! API keys on the settings page and from `hone api-key create`, and
//! disabled accounts: a key is shown once and stored as its hash, people
//! see and revoke only their own keys, and a disabled account stops at once.

use crate::common::*;
use axum::http::StatusCode;
use hone_server::entity::{api_key, user};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use sha2::{Digest, Sha256};

async fn signed_in<'a>(app: &'a TestApp, who: &str) -> Client<'a> {
    let mut c = Client::new(app);
    let res = c.login(who, PASSWORD).await;
    assert_eq!(res.status, StatusCode::OK, "{who}: {}", res.body);
    c
}

/// Creates a key as `c`; returns its id and value.
async fn create(c: &mut Client<'_>, project: i64, name: &str) -> (i64, String) {
    let res = c
        .call(
            "create_api_key",
            &[("project_id", &project.to_string()), ("name", name)],
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let v = res.json();
    (
        v["id"].as_i64().unwrap(),
        v["key"].as_str().unwrap().to_owned(),
    )
}

async fn user_id(app: &TestApp, name: &str) -> i64 {
    user::Entity::find()
        .filter(user::Column::Username.eq(name))
        .one(&app.services.db)
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn a_key_is_shown_once_and_stored_only_as_its_hash() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let mut expert = signed_in(&app, "expert").await;
        let (id, key) = create(&mut expert, w.alpha_project, "Support script").await;
        assert!(key.starts_with("sk-hone-"), "{key}");
        assert_eq!(key.len(), "sk-hone-".len() + 64, "{key}");
        assert!(key["sk-hone-".len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit()));

        // The database holds its hash and a short prefix, never the key.
        let rows = api_key::Entity::find().all(&app.services.db).await.unwrap();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.id, id);
        assert_eq!(row.secret_hash, hex::encode(Sha256::digest(key.as_bytes())));
        assert_eq!(row.prefix, key[..14]);
        let secret = &key["sk-hone-".len()..];
        let columns = [
            row.id.to_string(),
            row.user_id.to_string(),
            row.project_id.to_string(),
            row.name.clone(),
            row.prefix.clone(),
            row.secret_hash.clone(),
            row.created_at.to_string(),
            format!("{:?}", row.last_used_at),
            format!("{:?}", row.revoked_at),
        ];
        for c in &columns {
            assert!(
                !c.contains(secret),
                "{} api_keys holds the key: {c}",
                app.db_name
            );
        }
        assert_eq!(format!("{row:?}").matches(secret).count(), 0);

        // Listed with its prefix only, from then on.
        let page = expert.call("keys_page", &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(!page.body.contains(secret), "{}", page.body);
        let listed = &page.json()["keys"][0];
        assert_eq!(listed["id"], id);
        assert_eq!(listed["name"], "Support script");
        assert_eq!(listed["project_id"], w.alpha_project);
        assert_eq!(listed["project_name"], "Alpha support bot");
        assert_eq!(listed["prefix"], key[..14]);
        assert!(listed["last_used_at"].is_null());
        assert!(listed["revoked_at"].is_null());
        let html = expert.get("/settings/keys").await;
        assert_eq!(html.status, StatusCode::OK);
        assert!(html.body.contains("Support script"), "{}", html.body);
        assert!(!html.body.contains(secret));

        // Two keys never share a value.
        let (_, other) = create(&mut expert, w.alpha_project, "Another").await;
        assert_ne!(key, other);
    })
    .await;
}

#[tokio::test]
async fn the_page_offers_the_projects_of_the_users_teams() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        for who in ["expert", "reviewer", "admin"] {
            let mut c = signed_in(&app, who).await;
            let page = c.call("keys_page", &[]).await.json();
            assert_eq!(page["user"]["username"], who);
            let projects = page["projects"].as_array().unwrap();
            assert_eq!(projects.len(), 1, "{who}: {projects:?}");
            assert_eq!(projects[0]["id"], w.alpha_project);
            assert_eq!(projects[0]["name"], "Alpha support bot");
            assert_eq!(projects[0]["team"], "Alpha");
            assert_eq!(page["keys"], serde_json::json!([]));
        }
        let mut outsider = signed_in(&app, "outsider").await;
        let page = outsider.call("keys_page", &[]).await.json();
        assert_eq!(page["projects"][0]["id"], w.beta_project);
    })
    .await;
}

#[tokio::test]
async fn people_list_and_revoke_only_their_own_keys() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let mut expert = signed_in(&app, "expert").await;
        let mut admin = signed_in(&app, "admin").await;
        let (first, _) = create(&mut expert, w.alpha_project, "first").await;
        let (second, _) = create(&mut expert, w.alpha_project, "second").await;
        let (admins, _) = create(&mut admin, w.alpha_project, "admin's").await;

        // Newest first, and only the expert's own.
        let page = expert.call("keys_page", &[]).await.json();
        let ids: Vec<i64> = page["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, [second, first], "{}", app.db_name);
        let page = admin.call("keys_page", &[]).await.json();
        assert_eq!(page["keys"].as_array().unwrap().len(), 1);
        assert_eq!(page["keys"][0]["id"], admins);

        // Someone else's key is not found — even for an admin.
        for (c, id) in [(&mut expert, admins), (&mut admin, first)] {
            let res = c.call("revoke_api_key", &[("id", &id.to_string())]).await;
            assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
        }
        let res = expert.call("revoke_api_key", &[("id", "999999")]).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        let untouched = api_key::Entity::find_by_id(admins)
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        assert!(untouched.revoked_at.is_none());

        // Revoking sets the time once; again is fine and changes nothing.
        let res = expert
            .call("revoke_api_key", &[("id", &first.to_string())])
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let page = expert.call("keys_page", &[]).await.json();
        let revoked_at = page["keys"][1]["revoked_at"].as_i64().unwrap();
        assert!(page["keys"][0]["revoked_at"].is_null());
        let again = expert
            .call("revoke_api_key", &[("id", &first.to_string())])
            .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        let page = expert.call("keys_page", &[]).await.json();
        assert_eq!(page["keys"][1]["revoked_at"], revoked_at);
    })
    .await;
}

#[tokio::test]
async fn a_reviewer_may_create_a_key_on_their_project_and_only_there() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let mut reviewer = signed_in(&app, "reviewer").await;
        let (_, key) = create(&mut reviewer, w.alpha_project, "Reading jobs").await;
        assert!(key.starts_with("sk-hone-"));

        let beta = reviewer
            .call(
                "create_api_key",
                &[("project_id", &w.beta_project.to_string()), ("name", "x")],
            )
            .await;
        assert_eq!(beta.status, StatusCode::NOT_FOUND, "{}", beta.body);
        assert!(!beta.body.contains("Beta secret plans"));

        // A name is required, 1 to 100 characters.
        let long = "n".repeat(101);
        for name in ["", "   ", long.as_str()] {
            let res = reviewer
                .call(
                    "create_api_key",
                    &[("project_id", &w.alpha_project.to_string()), ("name", name)],
                )
                .await;
            assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{name:?}");
            assert_eq!(res.json()["Invalid"]["field"], "name");
        }
        let count = api_key::Entity::find().all(&app.services.db).await.unwrap();
        assert_eq!(count.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn the_cli_makes_a_key_for_a_user_and_explains_refusals() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let s = &app.services;
        let key = hone_server::cli::api_key::create(s, "Expert", w.alpha_project, "cli")
            .await
            .unwrap();
        assert!(key.starts_with("sk-hone-"), "{key}");
        let row = api_key::Entity::find().one(&s.db).await.unwrap().unwrap();
        assert_eq!(row.name, "cli");
        assert_eq!(row.user_id, user_id(&app, "expert").await);
        assert_eq!(row.secret_hash, hex::encode(Sha256::digest(key.as_bytes())));

        let unknown = hone_server::cli::api_key::create(s, "nobody", w.alpha_project, "cli")
            .await
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("no user named"), "{unknown}");
        let other_team = hone_server::cli::api_key::create(s, "expert", w.beta_project, "cli")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            other_team.contains(&format!("project {}", w.beta_project))
                && other_team.contains("not in one of expert's teams"),
            "{other_team}"
        );
        let no_name = hone_server::cli::api_key::create(s, "expert", w.alpha_project, " ")
            .await
            .unwrap_err()
            .to_string();
        assert!(no_name.contains("1 to 100 characters"), "{no_name}");

        let mut admin = signed_in(&app, "admin").await;
        let expert_id = user_id(&app, "expert").await.to_string();
        let res = admin
            .call(
                "set_disabled",
                &[("user_id", &expert_id), ("disabled", "true")],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let disabled = hone_server::cli::api_key::create(s, "expert", w.alpha_project, "cli")
            .await
            .unwrap_err()
            .to_string();
        assert!(disabled.contains("disabled"), "{disabled}");
        assert_eq!(api_key::Entity::find().all(&s.db).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_disabled_account_stops_at_once_and_cannot_sign_in() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut expert = signed_in(&app, "expert").await;
        assert_eq!(expert.call("keys_page", &[]).await.status, StatusCode::OK);
        let mut admin = signed_in(&app, "admin").await;
        let expert_id = user_id(&app, "expert").await.to_string();
        let res = admin
            .call(
                "set_disabled",
                &[("user_id", &expert_id), ("disabled", "true")],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);

        // The open session ends with the next request.
        assert_eq!(
            expert.call("dashboard", &[]).await.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            app.db_name
        );
        assert_eq!(
            expert.call("keys_page", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(expert.get("/").await.location.as_deref(), Some("/login"));
        // And signing in again is refused, with the right password too.
        let mut again = Client::new(&app);
        let res = again.login("expert", PASSWORD).await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.body);
        assert_eq!(
            again.call("dashboard", &[]).await.status,
            StatusCode::UNAUTHORIZED
        );

        // The admin page says so; enabling lets them back in.
        let overview = admin.call("admin_overview", &[]).await.json();
        let row = overview["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["username"] == "expert")
            .unwrap()
            .clone();
        assert_eq!(row["disabled"], true);
        let html = admin.get("/admin").await.body;
        assert!(html.contains("Disabled"), "{html}");
        let res = admin
            .call(
                "set_disabled",
                &[("user_id", &expert_id), ("disabled", "false")],
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        let mut back = Client::new(&app);
        assert_eq!(back.login("expert", PASSWORD).await.status, StatusCode::OK);
        assert_eq!(back.call("dashboard", &[]).await.status, StatusCode::OK);
        let overview = admin.call("admin_overview", &[]).await.json();
        assert!(overview["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["disabled"] == false));
    })
    .await;
}

#[tokio::test]
async fn an_admin_cannot_disable_themselves() {
    on_each_db(|app| async move {
        world(&app).await;
        let mut admin = signed_in(&app, "admin").await;
        let me = user_id(&app, "admin").await.to_string();
        let res = admin
            .call("set_disabled", &[("user_id", &me), ("disabled", "true")])
            .await;
        assert_eq!(res.status, StatusCode::CONFLICT, "{}", res.body);
        assert!(
            res.body.contains("You cannot disable your own account"),
            "{}",
            res.body
        );
        assert_eq!(
            admin.call("admin_overview", &[]).await.status,
            StatusCode::OK
        );
        let res = admin
            .call(
                "set_disabled",
                &[("user_id", "999999"), ("disabled", "true")],
            )
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.body);
    })
    .await;
}
