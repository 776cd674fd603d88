//! Security headers on every response: a Content-Security-Policy (pages
//! set their own, with the nonce Leptos puts on the hydration script; the
//! rest get the same policy without one), `nosniff`, a referrer policy,
//! no framing, HSTS over HTTPS, and `Cache-Control: no-store` on anything
//! answered to a signed-in person or an API key (a shared cache or the
//! browser's back button never shows one person's data to another).
//! `POST /api/csp-report` receives the browsers' violation reports and
//! logs them.

use crate::state::Services;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

pub async fn security_headers(
    State(s): State<Arc<Services>>,
    req: Request,
    next: Next,
) -> Response {
    let personal = req.headers().contains_key(header::COOKIE)
        || req.headers().contains_key(header::AUTHORIZATION);
    let asset = req.uri().path().starts_with("/pkg/");
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        if let Ok(v) = HeaderValue::from_str(&hone_app::content_security_policy(None)) {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if s.config.secure_cookies() {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    if personal && !asset {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A browser's CSP violation report (`application/csp-report`): logged as
/// a warning with what was blocked and by which directive.
pub async fn csp_report(body: Bytes) -> StatusCode {
    let report: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let r = &report["csp-report"];
    let text = |k: &str| {
        r[k].as_str()
            .unwrap_or("?")
            .chars()
            .take(200)
            .collect::<String>()
    };
    tracing::warn!(
        page = %text("document-uri"),
        blocked = %text("blocked-uri"),
        directive = %text("violated-directive"),
        "Content-Security-Policy violation"
    );
    StatusCode::NO_CONTENT
}
