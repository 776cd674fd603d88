//! Reviewing a model version through the server functions the pages call:
//! blind ratings (the order fixed per reviewer and example, choices read
//! in that order, win rates and agreement), decisions bound to what was
//! reviewed (refused to experts and to the version's launcher, a second
//! approval recorded once however many arrive at once, a rejection undone
//! only with a new comment), the audit log, the reviewers' work list and
//! the notifications. (The engine's report and the pages run in the e2e
//! tests.)

use crate::common::*;
use axum::http::StatusCode;
use hone_server::entity::audit::{self, AuditAction};
use hone_server::entity::{model_version, rating, review};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};

async fn signed_in<'a>(app: &'a TestApp, who: &str) -> Client<'a> {
    let mut c = Client::new(app);
    let r = c.login(who, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{who}: {}", r.body);
    c
}

/// The pair shown for `line`: `(tuned answer shown as A, page)`. The tuned
/// answers of [`small_report`] are the references; the base's are not.
async fn pair(c: &mut Client<'_>, version: i64, line: u32) -> (bool, serde_json::Value) {
    let r = c
        .call(
            "rating",
            &[
                ("version_id", &version.to_string()),
                ("line", &line.to_string()),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let page = r.json();
    let item = &page["item"];
    assert_eq!(item["line"], line, "{page}");
    let tuned_a = item["a"] == item["reference"];
    assert_ne!(tuned_a, item["b"] == item["reference"], "{page}");
    (tuned_a, page)
}

async fn rate(c: &mut Client<'_>, version: i64, line: u32, choice: &str, comment: &str) -> Resp {
    c.call(
        "rate",
        &[
            ("version_id", &version.to_string()),
            ("line", &line.to_string()),
            ("choice", choice),
            ("comment", comment),
        ],
    )
    .await
}

async fn decide(c: &mut Client<'_>, version: i64, decision: &str, comment: &str) -> Resp {
    c.call(
        "decide",
        &[
            ("version_id", &version.to_string()),
            ("decision", decision),
            ("comment", comment),
        ],
    )
    .await
}

async fn page(c: &mut Client<'_>, project: i64, number: u32) -> serde_json::Value {
    let r = c
        .call(
            "version",
            &[
                ("project_id", &project.to_string()),
                ("number", &number.to_string()),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

async fn audited(app: &TestApp, action: AuditAction) -> Vec<audit::Model> {
    audit::Entity::find()
        .filter(audit::Column::Action.eq(action))
        .all(&app.services.db)
        .await
        .unwrap()
}

/// `(kind, message)` of `c`'s notifications, newest first.
async fn notifications(c: &mut Client<'_>) -> (u64, Vec<(String, String)>) {
    let n = c.call("notifications", &[]).await.json();
    let items = n["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap().to_owned(),
                i["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (n["unread"].as_u64().unwrap(), items)
}

#[tokio::test]
async fn blind_ratings_keep_their_order_and_add_up_per_reviewer() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (version, number, _) = evaluated_version(&app, w.alpha_project, "expert").await;
        let mut reviewer = signed_in(&app, "reviewer").await;
        let mut admin = signed_in(&app, "admin").await;

        // The order is the same every time it is asked for, and the first
        // unrated pair comes when no line is asked for.
        let mut shown = Vec::new();
        for line in 1..=3 {
            let (first, _) = pair(&mut reviewer, version, line).await;
            assert_eq!(pair(&mut reviewer, version, line).await.0, first);
            shown.push(first);
        }
        let (_, first) = pair(&mut reviewer, version, 1).await;
        assert_eq!(first["rated"], 0);
        assert_eq!(first["total"], 3);

        // The reviewer prefers the tuned answer each time, whichever letter
        // it has; the admin on two examples, and calls the third a tie.
        for (line, tuned_a) in (1..=3).zip(&shown) {
            let choice = if *tuned_a { "a" } else { "b" };
            let r = rate(&mut reviewer, version, line, choice, "").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        for line in 1..=3 {
            let (tuned_a, _) = pair(&mut admin, version, line).await;
            let choice = match (line, tuned_a) {
                (3, _) => "tie",
                (_, true) => "a",
                (_, false) => "b",
            };
            let r = rate(&mut admin, version, line, choice, "close call").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        // Rating again replaces the earlier choice (and keeps the order).
        let r = rate(&mut admin, version, 3, "tie", "a tie, on reflection").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let stored = rating::Entity::find()
            .filter(rating::Column::VersionId.eq(version))
            .all(&app.services.db)
            .await
            .unwrap();
        assert_eq!(stored.len(), 6, "one rating per reviewer and example");
        let again = pair(&mut admin, version, 3).await.1;
        assert_eq!(again["item"]["choice"], "tie");
        assert_eq!(again["item"]["comment"], "a tie, on reflection");
        assert_eq!(again["rated"], 3);
        // Every pair rated: nothing left to show.
        let done = reviewer
            .call(
                "rating",
                &[("version_id", &version.to_string()), ("line", "0")],
            )
            .await
            .json();
        assert!(done["item"].is_null(), "{done}");

        let p = page(&mut reviewer, w.alpha_project, number).await;
        let r = &p["ratings"];
        assert_eq!(r["mine"], 3);
        assert_eq!(
            (
                &r["overall"]["rated"],
                &r["overall"]["wins"],
                &r["overall"]["ties"]
            ),
            (&6.into(), &5.into(), &1.into())
        );
        // Wins count one, ties a half: 5.5 of 6.
        let rate_value = r["overall"]["rate"]["value"].as_f64().unwrap();
        assert!((rate_value - 5.5 / 6.0).abs() < 1e-9, "{r}");
        let low = r["overall"]["rate"]["low"].as_f64().unwrap();
        assert!(low <= rate_value && low > 0.0, "{r}");
        let per: Vec<(String, u64)> = r["per_reviewer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                (
                    x[0].as_str().unwrap().to_owned(),
                    x[1]["wins"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(per, [("admin".into(), 2), ("reviewer".into(), 3)]);
        // They agreed on two of the three examples both rated.
        assert_eq!(r["agreement"]["pairs"], 3);
        let agreed = r["agreement"]["agreed"].as_f64().unwrap();
        assert!((agreed - 2.0 / 3.0).abs() < 1e-9, "{r}");
        // The win rate and its interval are the same on every reading.
        assert_eq!(
            page(&mut admin, w.alpha_project, number).await["ratings"]["overall"],
            r["overall"]
        );

        // Each rating is in the audit log, by who rated it.
        let log = audited(&app, AuditAction::VersionRated).await;
        assert_eq!(log.len(), 7, "six ratings and one re-rating");
        assert_eq!(log.iter().filter(|e| e.actor == "reviewer").count(), 3);
    })
    .await;
}

#[tokio::test]
async fn approval_is_refused_to_experts_and_launchers_and_recorded_once() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        // The admin launched this one: another reviewer decides.
        let (version, number, _) = evaluated_version(&app, w.alpha_project, "admin").await;
        let mut admin = signed_in(&app, "admin").await;
        let mut expert = signed_in(&app, "expert").await;
        let mut reviewer = signed_in(&app, "reviewer").await;

        // The reviewer was told, and finds it in their list.
        let (unread, said) = notifications(&mut reviewer).await;
        assert_eq!(unread, 1, "{said:?}");
        assert_eq!(said[0].0, "review_requested", "{said:?}");
        let list = reviewer.call("awaiting_review", &[]).await.json();
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["number"], number);
        assert_eq!(list[0]["launched_by"], "admin");
        // Not in the launcher's: they cannot decide on it.
        let theirs = admin.call("awaiting_review", &[]).await.json();
        assert_eq!(theirs, serde_json::json!([]));

        let mine = decide(&mut admin, version, "approved", "looks good").await;
        assert_eq!(mine.status, StatusCode::FORBIDDEN, "{}", mine.body);
        let p = page(&mut admin, w.alpha_project, number).await;
        assert_eq!(p["can_review"], false);
        assert!(p["cannot_review"].as_str().unwrap().contains("launched"));
        let rated = rate(&mut admin, version, 1, "a", "").await;
        assert_eq!(rated.status, StatusCode::FORBIDDEN, "{}", rated.body);
        let experts = decide(&mut expert, version, "approved", "").await;
        assert_eq!(experts.status, StatusCode::FORBIDDEN, "{}", experts.body);
        assert!(review::Entity::find()
            .all(&app.services.db)
            .await
            .unwrap()
            .is_empty());

        // Five identical approvals at once: recorded once.
        let mut clients = Vec::new();
        for _ in 0..5 {
            clients.push(signed_in(&app, "reviewer").await);
        }
        let results = futures::future::join_all(
            clients
                .iter_mut()
                .map(|c| decide(c, version, "approved", "Checked all three answers.")),
        )
        .await;
        for r in &results {
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        }
        let decisions = review::Entity::find().all(&app.services.db).await.unwrap();
        assert_eq!(decisions.len(), 1, "{}: {decisions:?}", app.db_name);
        assert_eq!(audited(&app, AuditAction::VersionApproved).await.len(), 1);
        let again = decide(
            &mut reviewer,
            version,
            "approved",
            "Checked all three answers.",
        )
        .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.body);
        assert_eq!(
            review::Entity::find()
                .all(&app.services.db)
                .await
                .unwrap()
                .len(),
            1
        );

        // Bound to what was reviewed, and shown so.
        let d = &decisions[0];
        let v = model_version::Entity::find_by_id(version)
            .one(&app.services.db)
            .await
            .unwrap()
            .unwrap();
        let p = page(&mut expert, w.alpha_project, number).await;
        assert_eq!(p["version"]["state"], "approved");
        assert_eq!(p["bound"]["report_sha256"], d.report_sha256.as_str());
        assert_eq!(
            (&d.dataset_sha256, &d.settings_sha256, &d.artifact_sha256),
            (&v.dataset_sha256, &v.settings_sha256, &v.artifact_sha256)
        );
        assert!(app.services.approved(&v).await.unwrap());
        // The launcher hears of it; the list no longer has it.
        let (_, said) = notifications(&mut admin).await;
        assert!(
            said.iter().any(|(k, m)| k == "approved"
                && m.contains("reviewer approved version")
                && m.contains("Checked all three answers.")),
            "{said:?}"
        );
        let list = reviewer.call("awaiting_review", &[]).await.json();
        assert_eq!(list, serde_json::json!([]));

        // What was approved changes (its files, say): the approval no
        // longer holds, and the version awaits a review again.
        let mut changed = v.clone().into_active_model();
        changed.artifact_sha256 = Set("0".repeat(64));
        let changed = changed.update(&app.services.db).await.unwrap();
        assert!(!app.services.approved(&changed).await.unwrap());
        let p = page(&mut expert, w.alpha_project, number).await;
        assert_eq!(p["version"]["state"], "awaiting_review");
    })
    .await;
}

#[tokio::test]
async fn a_rejection_is_undone_only_with_a_new_comment() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let (version, number, _) = evaluated_version(&app, w.alpha_project, "expert").await;
        let mut reviewer = signed_in(&app, "reviewer").await;
        let mut expert = signed_in(&app, "expert").await;

        let silent = decide(&mut reviewer, version, "rejected", "  ").await;
        assert_eq!(
            silent.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            silent.body
        );
        assert!(silent.body.contains("comment"), "{}", silent.body);
        let bad = decide(&mut reviewer, version, "maybe", "hmm").await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
        let why = "Line 2 is wrong: it should be 3.";
        let r = decide(&mut reviewer, version, "rejected", why).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(
            page(&mut expert, w.alpha_project, number).await["version"]["state"],
            "rejected"
        );
        let (_, said) = notifications(&mut expert).await;
        assert!(
            said.iter().any(|(k, m)| k == "rejected" && m.contains(why)),
            "{said:?}"
        );

        for comment in ["", why] {
            let r = decide(&mut reviewer, version, "approved", comment).await;
            assert_eq!(
                r.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{comment:?}: {}",
                r.body
            );
            assert!(r.body.contains("new comment"), "{}", r.body);
        }
        assert_eq!(
            page(&mut expert, w.alpha_project, number).await["version"]["state"],
            "rejected"
        );
        let r = decide(
            &mut reviewer,
            version,
            "approved",
            "Fixed upstream: line 2 was a typo in the data.",
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let p = page(&mut expert, w.alpha_project, number).await;
        assert_eq!(p["version"]["state"], "approved");
        let words: Vec<&str> = p["reviews"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["decision"].as_str().unwrap())
            .collect();
        assert_eq!(words, ["rejected", "approved"]);
        assert_eq!(audited(&app, AuditAction::VersionRejected).await.len(), 1);
        let approvals = audited(&app, AuditAction::VersionApproved).await;
        assert_eq!(approvals.len(), 1);
        assert_eq!(approvals[0].actor, "reviewer");
    })
    .await;
}
