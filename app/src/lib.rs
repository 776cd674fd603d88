//! Hone's pages. The same components render on the server (feature `ssr`)
//! and hydrate in the browser (feature `hydrate`, compiled to WASM); data
//! comes only through the server functions in [`api`].

#![recursion_limit = "256"]

pub mod api;
mod components;
pub mod format;
mod pages;
#[cfg(feature = "hydrate")]
mod upload;
pub mod worker;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

/// The HTML document around the app, rendered only on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // This response's policy allows exactly the inline scripts Leptos
    // marked with this response's nonce (hydration, resources).
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(res)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        if let Ok(v) = http::HeaderValue::from_str(&content_security_policy(Some(&nonce))) {
            res.insert_header(http::header::CONTENT_SECURITY_POLICY, v);
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Hone's Content-Security-Policy: scripts only from this server (and,
/// on pages, the inline scripts carrying `nonce`), WebAssembly allowed
/// (`'wasm-unsafe-eval'`, not `eval`), no inline styles, workers from this
/// server, never framed; violations reported to `/api/csp-report`.
pub fn content_security_policy(nonce: Option<&str>) -> String {
    let scripts = match nonce {
        Some(n) => format!("'self' 'wasm-unsafe-eval' 'nonce-{n}'"),
        None => "'self' 'wasm-unsafe-eval'".to_owned(),
    };
    format!(
        "default-src 'self'; script-src {scripts}; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'; report-uri /api/csp-report"
    )
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="hone" href="/pkg/hone.css"/>
        <Title text="Hone"/>
        <Router>
            <components::Header/>
            <main id="main">
                <Routes fallback=pages::NotFound>
                    <Route path=path!("/") view=pages::DashboardPage ssr=SsrMode::Async/>
                    <Route path=path!("/login") view=pages::LoginPage ssr=SsrMode::Async/>
                    <Route path=path!("/setup") view=pages::SetupPage ssr=SsrMode::Async/>
                    <Route path=path!("/projects/:id") view=pages::ProjectPage ssr=SsrMode::Async/>
                    <Route path=path!("/projects/:id/datasets/:dataset") view=pages::DatasetPage ssr=SsrMode::Async/>
                    <Route path=path!("/projects/:id/datasets/:dataset/train") view=pages::LaunchPage ssr=SsrMode::Async/>
                    <Route path=path!("/projects/:id/jobs/:job") view=pages::JobPage ssr=SsrMode::Async/>
                    <Route path=path!("/projects/:id/versions/:number") view=pages::VersionReviewPage ssr=SsrMode::Async/>
                    <Route path=path!("/versions/:version/rate") view=pages::RatePage ssr=SsrMode::Async/>
                    <Route path=path!("/notifications") view=pages::NotificationsPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin") view=pages::AdminPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/queue") view=pages::QueueAdminPage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/usage") view=pages::UsagePage ssr=SsrMode::Async/>
                    <Route path=path!("/admin/audit") view=pages::AuditLogPage ssr=SsrMode::Async/>
                    <Route path=path!("/settings/keys") view=pages::ApiKeysPage ssr=SsrMode::Async/>
                    <Route path=path!("/settings/account") view=pages::AccountPage ssr=SsrMode::Async/>
                </Routes>
            </main>
        </Router>
    }
}

/// The browser entry point: attaches the WASM app to the server's HTML.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
    // A marker for people debugging and for the browser tests: from here on
    // the page is interactive.
    if let Some(body) = leptos::prelude::document().body() {
        let _ = body.set_attribute("data-hydrated", "true");
    }
}
