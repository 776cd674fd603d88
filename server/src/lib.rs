//! The Hone web server as a library: [`router`] builds the whole app from
//! its services, so tests drive it without a socket and `main` serves it.

pub mod accounts;
pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod datasets;
pub mod db;
pub mod entity;
pub mod error;
pub mod evaluations;
pub mod http;
pub mod jobs;
pub mod keys;
pub mod lifecycle;
pub mod models;
pub mod openai;
pub mod policy;
pub mod projects;
pub mod publishing;
pub mod retention;
pub mod reviews;
pub mod serving;
pub mod sessions;
pub mod state;
pub mod storage;
pub mod supervisor;

use axum::extract::FromRef;
use axum::routing::{get, post};
use axum::Router;
use hone_app::api::{AdminBackend, DatasetsBackend, JobsBackend, ProjectsBackend, SessionBackend};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use state::Services;
use std::sync::Arc;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

#[derive(Clone)]
struct AppState {
    leptos: LeptosOptions,
    services: Arc<Services>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(s: &AppState) -> Self {
        s.leptos.clone()
    }
}

impl FromRef<AppState> for Arc<Services> {
    fn from_ref(s: &AppState) -> Self {
        s.services.clone()
    }
}

/// Server functions' request bodies are small forms: 64 KiB is plenty.
const FORM_LIMIT: usize = 64 * 1024;

/// Every route: pages, server functions, uploads, health probes, static files.
pub fn router(services: Arc<Services>) -> Router {
    let leptos = LeptosOptions::builder()
        .output_name("hone")
        .site_root(services.config.site_root.display().to_string())
        .site_pkg_dir("pkg")
        .build();
    // Each feature's backend, as the server functions look them up.
    let context = {
        let s = services.clone();
        move || {
            provide_context::<Arc<dyn SessionBackend>>(s.clone());
            provide_context::<Arc<dyn ProjectsBackend>>(s.clone());
            provide_context::<Arc<dyn DatasetsBackend>>(s.clone());
            provide_context::<Arc<dyn AdminBackend>>(s.clone());
            provide_context::<Arc<dyn hone_app::api::QueueBackend>>(s.clone());
            provide_context::<Arc<dyn JobsBackend>>(s.clone());
            provide_context::<Arc<dyn hone_app::api::KeysBackend>>(s.clone());
            provide_context::<Arc<dyn hone_app::api::AccountBackend>>(s.clone());
            provide_context::<Arc<dyn hone_app::api::ReviewsBackend>>(s.clone());
        }
    };
    let shell_options = leptos.clone();
    let state = AppState {
        leptos,
        services: services.clone(),
    };
    let routes = generate_route_list(hone_app::App);

    // Over HTTPS the cookie is `Secure` and `__Host-` prefixed (browsers
    // then refuse it from any other host or path, or without TLS). It ends
    // after `session_idle_hours` unused; `accounts` ends it `session_hours`
    // after sign-in however busy.
    let secure = services.config.secure_cookies();
    let sessions = SessionManagerLayer::new(sessions::DbSessionStore::new(services.db.clone()))
        .with_name(if secure {
            "__Host-hone_session"
        } else {
            "hone_session"
        })
        .with_path("/")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_expiry(Expiry::OnInactivity(time::Duration::hours(
            services.config.session_idle_hours,
        )));

    let pages = Router::new()
        .leptos_routes_with_context(&state, routes, context.clone(), move || {
            hone_app::shell(shell_options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(context, hone_app::shell))
        // Server functions take small forms; 413 past this.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(FORM_LIMIT));

    // Ordinary requests end with 408 past the request timeout; uploads
    // (an idle timeout between chunks instead), downloads and event
    // streams (kept alive) are not bounded by it.
    let timeout = std::time::Duration::from_secs(services.config.request_timeout_secs);
    let timed = Router::new()
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/api/models/{name}/tokenizer", get(models::tokenizer_route))
        .route(
            "/api/csp-report",
            post(http::headers::csp_report).layer(axum::extract::DefaultBodyLimit::max(16 * 1024)),
        )
        .merge(pages)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));

    Router::new()
        // The upload route streams and counts bytes itself (and answers 413).
        .route("/api/projects/{id}/files", post(http::upload))
        .route("/api/projects/{id}/datasets", post(datasets::create))
        .route("/api/datasets/{id}/{file}", get(datasets::download))
        .route("/api/jobs/{id}/events", get(jobs::events::stream))
        .route("/api/versions/{id}/report.json", get(reviews::report_json))
        .route(
            "/api/versions/{id}/downloads/{format}",
            get(publishing::download_route),
        )
        .route("/api/admin/usage.csv", get(admin::queue::usage_csv))
        .route("/api/admin/audit.csv", get(admin::queue::audit_csv))
        // The OpenAI-compatible API: API keys, OpenAI's shapes and errors.
        .nest("/v1", openai::router(timeout))
        .merge(timed)
        .layer(axum::middleware::from_fn(http::same_origin_only))
        .layer(axum::middleware::from_fn_with_state(
            services.clone(),
            http::headers::security_headers,
        ))
        .layer(sessions)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
