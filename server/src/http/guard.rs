//! The cross-site request guard (the algorithm of Go 1.25's
//! CrossOriginProtection): state-changing requests that a browser marks as
//! coming from another site are refused.

use crate::error::refuse;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

/// Refuses state-changing requests that a browser marks as coming from
/// another site (`Sec-Fetch-Site`), or whose `Origin` is not this host.
/// Requests with neither header are not from a browser page and carry no
/// ambient cookies worth forging.
pub async fn same_origin_only(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let h = req.headers();
    let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    let cross = match site {
        Some(site) => !matches!(site, "same-origin" | "none"),
        None => match (
            h.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
            h.get(header::HOST).and_then(|v| v.to_str().ok()),
        ) {
            (Some(origin), Some(host)) => {
                origin.split_once("://").map(|(_, rest)| rest) != Some(host)
            }
            (Some(_), None) => true,
            (None, _) => false,
        },
    };
    if cross {
        tracing::warn!(path = %req.uri().path(), "cross-origin request refused");
        return refuse(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "Requests from other sites are refused.".into(),
        );
    }
    next.run(req).await
}
