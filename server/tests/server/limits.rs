//! Timeouts and limits on the real accept loop (a loopback socket, not
//! `oneshot`): slow headers, idle keep-alive connections, the connection
//! cap, stalled uploads, and the uploads-at-once cap. Every wait here is
//! bounded.

use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use hone_server::http::serve::{serve, Limits};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn listen(app: &TestApp, limits: Limits) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(
        listener,
        app.router.clone(),
        limits,
        std::future::pending(),
    ));
    addr
}

/// Reads until the server closes the connection (or `bound` passes).
async fn read_to_close(s: &mut TcpStream, bound: Duration) -> Option<(Vec<u8>, Duration)> {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(bound, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, started.elapsed())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn slow_or_idle_clients_are_dropped() {
    let app = spawn_app("sqlite", 1 << 20).await;
    let addr = listen(
        &app,
        Limits {
            header_timeout: Duration::from_millis(300),
            max_connections: 16,
        },
    )
    .await;
    // Half a request line, then nothing (or one byte a second).
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let (_, after) = read_to_close(&mut slow, Duration::from_secs(10))
        .await
        .expect("a client that never finishes its headers is dropped");
    assert!(after < Duration::from_secs(10));
    // A keep-alive connection that goes quiet after a request is closed too.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = read_to_close(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_one() {
    let app = spawn_app("sqlite", 1 << 20).await;
    let addr = listen(
        &app,
        Limits {
            header_timeout: Duration::from_secs(30),
            max_connections: 2,
        },
    )
    .await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let second = TcpStream::connect(addr).await.unwrap();
    // Both slots held by connections that have sent nothing yet.
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    drop(second);
    let (got, _) = read_to_close(&mut third, Duration::from_secs(10))
        .await
        .expect("served once a slot is free");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_stalled_upload_is_dropped_and_leaves_no_temporary_file() {
    let app = spawn_app_with("sqlite", 1 << 20, |s| {
        s.blobs = s.blobs.clone().with_upload_idle(Duration::from_millis(300));
    })
    .await;
    let w = world(&app).await;
    let mut c = Client::new(&app);
    c.login("expert", PASSWORD).await;
    let stalled = futures::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from_static(
        b"{\"messages\": [",
    ))])
    .chain(futures::stream::pending());
    let started = Instant::now();
    let r = c
        .send(
            Request::post(format!("/api/projects/{}/files", w.alpha_project))
                .header("x-file-name", "slow.jsonl")
                .header("sec-fetch-site", "same-origin"),
            Body::from_stream(stalled),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("interrupted"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(app.services.blobs.keys("tmp").await.unwrap().is_empty());
}

#[tokio::test]
async fn uploads_beyond_the_cap_are_refused_with_503() {
    let app = spawn_app_with("sqlite", 1 << 20, |s| {
        s.uploads = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    })
    .await;
    let w = world(&app).await;
    let held = app.services.upload_slot().unwrap();
    let mut c = Client::new(&app);
    c.login("expert", PASSWORD).await;
    let r = c.upload(w.alpha_project, "a.jsonl", b"{}\n".to_vec()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert_eq!(r.json()["code"], "busy");
    drop(held);
    let r = c.upload(w.alpha_project, "a.jsonl", b"{}\n".to_vec()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app_with("sqlite", 1 << 20, |s| {
        s.config.public_url = "https://hone.example".into();
    })
    .await;
    world(&app).await;
    let mut c = Client::new(&app);
    c.login("expert", PASSWORD).await;
    for path in ["/", "/api/dashboard", "/healthz", "/no/such/page"] {
        let r = if path.starts_with("/api/") {
            c.call("dashboard", &[]).await
        } else {
            c.get(path).await
        };
        let h = |name: &str| {
            r.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let csp = h("content-security-policy");
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{path}: {csp}"
        );
        assert!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"),
            "{path}: {csp}"
        );
        assert_eq!(h("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(h("referrer-policy"), "same-origin", "{path}");
        assert!(
            h("strict-transport-security").starts_with("max-age="),
            "{path}"
        );
        // Signed in: nothing personal is cached.
        assert_eq!(h("cache-control"), "no-store", "{path}");
    }
    // A page's policy carries the nonce of its hydration script.
    let page = c.get("/").await;
    let csp = page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .expect("a nonce in the page's policy");
    assert!(
        page.body.contains(&format!("nonce=\"{nonce}\"")),
        "the hydration script lacks the nonce"
    );
}
