//! One component per route.

mod account;
mod admin;
mod auth;
mod check;
mod dashboard;
mod dataset;
mod job;
mod keys;
mod launch;
mod project;
mod queue;
mod review;

pub use account::AccountPage;
pub use admin::AdminPage;
pub use auth::{LoginPage, SetupPage};
pub use dashboard::DashboardPage;
pub use dataset::DatasetPage;
pub use job::JobPage;
pub use keys::ApiKeysPage;
pub use launch::LaunchPage;
pub use project::ProjectPage;
pub use queue::{AdminNav, AuditLogPage, QueueAdminPage, UsagePage};
pub use review::{AwaitingReviewList, NotificationsPage, RatePage, VersionReviewPage};

use leptos::prelude::*;

/// Unknown addresses: a real 404, with the way back.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(options) = use_context::<leptos_axum::ResponseOptions>() {
        options.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <section class="panel error-panel">
            <h1>"Page not found"</h1>
            <p>"There is nothing at this address."</p>
            <p><a href="/">"Back to your projects"</a></p>
        </section>
    }
}
