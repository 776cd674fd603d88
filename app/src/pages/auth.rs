//! Sign-in and the first-run admin setup.

use crate::api::{self, AppError};
use crate::components::{action_error, go, FieldError, FormError};
use leptos::prelude::*;
use leptos_router::components::Redirect;

#[component]
pub fn LoginPage() -> impl IntoView {
    let info = Resource::new(|| (), |_| api::load_session());
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match info.await {
                    Ok(i) if i.setup_needed => view! { <Redirect path="/setup"/> }.into_any(),
                    Ok(i) if i.user.is_some() => view! { <Redirect path="/"/> }.into_any(),
                    _ => view! { <LoginForm/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn LoginForm() -> impl IntoView {
    let action = ServerAction::<api::Login>::new();
    let error = action_error(action.value());
    // After a failure the server asks for a short wait (1 s, doubling):
    // the button says so and comes back by itself.
    let waiting = RwSignal::new(false);
    Effect::new(move |_| match action.value().get() {
        Some(Ok(())) => go("/"),
        Some(Err(AppError::TooManyAttempts { seconds })) => {
            waiting.set(true);
            set_timeout(
                move || waiting.set(false),
                std::time::Duration::from_secs(seconds.max(1) as u64),
            );
        }
        _ => {}
    });
    view! {
        <section class="panel narrow">
            <h1>"Sign in to Hone"</h1>
            <ActionForm action=action attr:id="login-form">
                <label for="username">"Username"</label>
                <input id="username" name="username" autocomplete="username" required/>
                <PasswordField id="password" name="password" autocomplete="current-password"/>
                <FormError error=error fields=&[]/>
                <button
                    type="submit"
                    id="sign-in"
                    disabled=move || waiting.get() || action.pending().get()
                    data-waiting=move || waiting.get().then_some("true")
                >
                    {move || if waiting.get() { "Wait a moment…" } else { "Sign in" }}
                </button>
            </ActionForm>
        </section>
    }
}

/// A password input with a show/hide toggle (works once the page is hydrated).
#[component]
fn PasswordField(
    id: &'static str,
    name: &'static str,
    autocomplete: &'static str,
) -> impl IntoView {
    let shown = RwSignal::new(false);
    view! {
        <label for=id>"Password"</label>
        <div class="password-row">
            <input
                id=id
                name=name
                type=move || if shown.get() { "text" } else { "password" }
                autocomplete=autocomplete
                required
            />
            <button
                type="button"
                class="secondary"
                id=format!("{id}-toggle")
                aria-pressed=move || shown.get().to_string()
                on:click=move |_| shown.update(|s| *s = !*s)
            >
                {move || if shown.get() { "Hide" } else { "Show" }}
            </button>
        </div>
    }
}

#[component]
pub fn SetupPage() -> impl IntoView {
    let info = Resource::new(|| (), |_| api::load_session());
    view! {
        <Suspense fallback=|| view! { <p>"Loading…"</p> }>
            {move || Suspend::new(async move {
                match info.await {
                    Ok(i) if i.setup_needed => {
                        view! { <SetupForm token_required=i.setup_token_required/> }.into_any()
                    }
                    _ => view! { <Redirect path="/login"/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn SetupForm(token_required: bool) -> impl IntoView {
    // The link the server prints carries the token (`/setup?token=…`).
    let given = leptos_router::hooks::use_query_map()
        .get_untracked()
        .get("token")
        .unwrap_or_default();
    let action = ServerAction::<api::SetupAdmin>::new();
    let error: Signal<Option<AppError>> = action_error(action.value());
    Effect::new(move |_| {
        if matches!(action.value().get(), Some(Ok(()))) {
            go("/");
        }
    });
    view! {
        <section class="panel narrow">
            <h1>"Welcome to Hone"</h1>
            <p>
                "Create the first account. It becomes the administrator, who adds "
                "everyone else and sets up teams."
            </p>
            <ActionForm action=action attr:id="setup-form">
                <label for="username">"Your username"</label>
                <input id="username" name="username" autocomplete="username" required/>
                <FieldError error=error field="username"/>
                <PasswordField id="password" name="password" autocomplete="new-password"/>
                <p class="hint">"At least 12 characters."</p>
                <FieldError error=error field="password"/>
                <label for="team">"Your first team"</label>
                <input id="team" name="team" placeholder="e.g. Support" required/>
                <FieldError error=error field="team"/>
                {if token_required {
                    view! {
                        <label for="token">"Setup token"</label>
                        <input id="token" name="token" value=given autocomplete="off" required/>
                        <p class="hint">"This server can be reached from other machines, so setting it up needs the token printed in its log when it started."</p>
                        <FieldError error=error field="token"/>
                    }
                    .into_any()
                } else {
                    view! { <input type="hidden" name="token" value=""/> }.into_any()
                }}
                <FormError error=error fields=&["username", "password", "team", "token"]/>
                <button type="submit" id="create-admin">"Create administrator"</button>
            </ActionForm>
        </section>
    }
}
