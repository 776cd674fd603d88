//! Uploads: streamed, hashed, listed; oversized ones refused with 413 and
//! nothing left behind.

use crate::common::*;
use axum::http::StatusCode;
use hone_server::entity::file;
use sea_orm::{EntityTrait, PaginatorTrait};

#[tokio::test]
async fn upload_is_hashed_stored_and_listed() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let mut c = Client::new(&app);
        c.login("expert", PASSWORD).await;
        let data = b"{\"messages\": []}\n".repeat(1000);
        let res = c
            .upload(w.alpha_project, "r%C3%A9sum%C3%A9.jsonl", data.clone())
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        let f = res.json();
        assert_eq!(f["name"], "résumé.jsonl");
        assert_eq!(f["size"], data.len() as i64);
        let sha = f["sha256"].as_str().unwrap().to_owned();
        assert_eq!(sha.len(), 64);
        let stored = app
            .services
            .blobs
            .read(&format!("blobs/{sha}"))
            .await
            .unwrap();
        assert_eq!(stored.as_ref(), data.as_slice());

        let page = c
            .call("project", &[("id", &w.alpha_project.to_string())])
            .await
            .json();
        let listed = &page["project"]["files"][0];
        assert_eq!(listed["name"], "résumé.jsonl");
        assert_eq!(listed["uploaded_by"], "expert");
        // The dashboard lists a project's files (the project page reads as
        // the pipeline: datasets, then models).
        let html = c.get("/").await.body;
        assert!(
            html.contains("résumé.jsonl") && html.contains(&sha[..12]),
            "file not listed on the dashboard"
        );
        assert!(html.contains("16.6 KiB (17000 bytes)"), "size not shown");
    })
    .await;
}

#[tokio::test]
async fn oversized_uploads_get_413_and_leave_nothing() {
    on_each_db(|app| async move {
        let w = world(&app).await;
        let mut c = Client::new(&app);
        c.login("expert", PASSWORD).await;
        // The test app's limit is 1 MiB.
        let res = c
            .upload(w.alpha_project, "big.jsonl", vec![b'x'; 1024 * 1024 + 1])
            .await;
        assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            res.json()["message"].as_str().unwrap().contains("1.0 MiB"),
            "{}",
            res.body
        );
        assert_eq!(
            file::Entity::find().count(&app.services.db).await.unwrap(),
            0
        );
        assert!(app.services.blobs.keys("").await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn oversized_streams_without_length_are_cut_off() {
    let app = spawn_app("sqlite", 1000).await;
    let w = world(&app).await;
    let mut c = Client::new(&app);
    c.login("expert", PASSWORD).await;
    // A chunked body announces no length: the server counts as it streams.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..5).map(|_| Ok(vec![b'y'; 400])).collect();
    let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
    let res = c
        .send(
            axum::http::Request::post(format!("/api/projects/{}/files", w.alpha_project))
                .header("x-file-name", "s.jsonl"),
            body,
        )
        .await;
    assert_eq!(res.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", res.body);
    assert!(app.services.blobs.keys("").await.unwrap().is_empty());
    assert_eq!(
        file::Entity::find().count(&app.services.db).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn interrupted_uploads_leave_nothing() {
    let app = spawn_app("sqlite", 1024 * 1024).await;
    let w = world(&app).await;
    let mut c = Client::new(&app);
    c.login("expert", PASSWORD).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![
        Ok(vec![b'z'; 500]),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let body = axum::body::Body::from_stream(futures::stream::iter(chunks));
    let res = c
        .send(
            axum::http::Request::post(format!("/api/projects/{}/files", w.alpha_project))
                .header("x-file-name", "s.jsonl"),
            body,
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(app.services.blobs.keys("").await.unwrap().is_empty());
    assert_eq!(
        file::Entity::find().count(&app.services.db).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn uploads_without_a_name_are_refused() {
    let app = spawn_app("sqlite", 1024).await;
    let w = world(&app).await;
    let mut c = Client::new(&app);
    c.login("expert", PASSWORD).await;
    let res = c.upload(w.alpha_project, "%00", b"x".to_vec()).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
    assert_eq!(res.json()["code"], "invalid");
}
