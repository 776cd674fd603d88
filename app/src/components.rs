//! Pieces every page uses: the header, form error messages, navigation,
//! and (in `charts`) line charts.

pub mod charts;

use crate::api::{self, AppError, Role};
use leptos::prelude::*;
use leptos_router::components::Redirect;

/// The site header: who is signed in, where they can go, and sign-out.
#[component]
pub fn Header() -> impl IntoView {
    let info = Resource::new(|| (), |_| api::load_session());
    // The badge's count, asked again on each navigation. Both resources
    // are made here, not inside the view: made inside a suspended view,
    // the server and the browser number them differently and hydration
    // fails.
    let location = leptos_router::hooks::use_location();
    let unread = Resource::new(
        move || location.pathname.get(),
        |_| api::load_unread_notifications(),
    );
    let logout = ServerAction::<api::Logout>::new();
    Effect::new(move |_| {
        if matches!(logout.value().get(), Some(Ok(()))) {
            go("/login");
        }
    });
    view! {
        <header class="site-header">
            <a class="brand" href="/">"Hone"</a>
            // A transition, not a suspense: a new count keeps the header
            // on screen while it loads.
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let unread = unread.await.unwrap_or(0);
                    match info.await {
                        Ok(api::SessionInfo { user: Some(user), .. }) => {
                            let is_admin = user.role == Role::Admin;
                            view! {
                                <nav aria-label="Main">
                                    <a href="/">"Projects"</a>
                                    <NotificationsLink unread=unread/>
                                    <a href="/settings/keys">"API keys"</a>
                                    <a href="/settings/account">"Account"</a>
                                    {is_admin.then(|| view! { <a href="/admin">"Admin"</a> })}
                                </nav>
                                <span class="who" id="who">
                                    {user.username.clone()} " · " {user.role.label()}
                                </span>
                                <ActionForm action=logout attr:class="inline">
                                    <button type="submit" id="sign-out">"Sign out"</button>
                                </ActionForm>
                            }
                                .into_any()
                        }
                        _ => ().into_any(),
                    }
                })}
            </Transition>
        </header>
    }
}

/// "Notifications", with the number unread as a badge.
#[component]
fn NotificationsLink(unread: u32) -> impl IntoView {
    view! {
        <a href="/notifications" id="notifications-link">
            "Notifications"
            {(unread > 0).then(|| view! {
                " " <span class="badge" id="unread" aria-label=format!("{unread} unread")>{unread}</span>
            })}
        </a>
    }
}

/// The latest error of an action, for the messages below.
pub fn action_error<S, T>(value: S) -> Signal<Option<AppError>>
where
    S: Get<Value = Option<Result<T, AppError>>> + Send + Sync + 'static,
    T: 'static,
{
    Signal::derive(move || value.get().and_then(Result::err))
}

/// The message for one form field, shown next to it.
#[component]
pub fn FieldError(error: Signal<Option<AppError>>, field: &'static str) -> impl IntoView {
    move || {
        error.get().and_then(|e| e.for_field(field)).map(|m| {
            view! { <p class="field-error" id=format!("{field}-error") role="alert">{m}</p> }
        })
    }
}

/// A message for errors that are not about one of `fields`.
#[component]
pub fn FormError(
    error: Signal<Option<AppError>>,
    fields: &'static [&'static str],
) -> impl IntoView {
    move || {
        error
            .get()
            .filter(|e| !fields.iter().any(|f| e.for_field(f).is_some()))
            .map(|e| view! { <p class="form-error" role="alert">{e.to_string()}</p> })
    }
}

/// What a page shows when its data could not be loaded.
#[component]
pub fn ErrorPanel(error: AppError) -> impl IntoView {
    let title = match &error {
        AppError::Forbidden => "Access denied",
        AppError::NotFound(_) => "Not found",
        _ => "Something went wrong",
    };
    view! {
        <section class="panel error-panel">
            <h1>{title}</h1>
            <p>{error.to_string()}</p>
            <p><a href="/">"Back to your projects"</a></p>
        </section>
    }
}

/// A form that empties itself after its action succeeds, ready for the next
/// entry. Pass the returned `NodeRef` to the `ActionForm`.
pub fn reset_on_success<S>(action: ServerAction<S>) -> NodeRef<leptos::html::Form>
where
    S: leptos::server_fn::ServerFn + Clone + Send + Sync + 'static,
    S::Output: Send + Sync + 'static,
    S::Error: Send + Sync + 'static,
{
    let form = NodeRef::<leptos::html::Form>::new();
    Effect::new(move |_| {
        if action.value().with(|v| matches!(v, Some(Ok(_)))) {
            if let Some(f) = form.get_untracked() {
                f.reset();
            }
        }
    });
    form
}

/// A page's body once its data is in: `render(data)`, a redirect to sign-in
/// for signed-out visitors, or the error in words. The previous content stays
/// on screen while data reloads (a `Transition`).
pub fn loaded<T, V, F>(data: Resource<Result<T, AppError>>, render: F) -> impl IntoView
where
    T: Clone + Send + Sync + serde::Serialize + serde::de::DeserializeOwned + 'static,
    V: IntoView + 'static,
    F: Fn(T) -> V + Clone + Send + Sync + 'static,
{
    view! {
        <Transition fallback=|| view! { <p>"Loading…"</p> }>
            {move || {
                let render = render.clone();
                Suspend::new(async move {
                    match data.await {
                        Ok(d) => render(d).into_any(),
                        Err(AppError::Unauthenticated) => view! { <Redirect path="/login"/> }.into_any(),
                        Err(error) => view! { <ErrorPanel error=error/> }.into_any(),
                    }
                })
            }}
        </Transition>
    }
}

/// A full page load: the server renders the next page with the new session.
pub fn go(path: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = window().location().set_href(path);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = path;
}
