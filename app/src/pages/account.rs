//! Settings → Account: change your password, and see where you are
//! signed in (sign out any of those sessions).

use crate::api::{self, AccountPage, SessionRow};
use crate::components::{action_error, go, loaded, reset_on_success, FieldError, FormError};
use crate::format;
use leptos::prelude::*;

#[derive(Clone, Copy)]
struct Actions {
    change: ServerAction<api::ChangePassword>,
    revoke: ServerAction<api::RevokeSession>,
    logout: ServerAction<api::Logout>,
}

#[component]
pub fn AccountPage() -> impl IntoView {
    let actions = Actions {
        change: ServerAction::new(),
        revoke: ServerAction::new(),
        logout: ServerAction::new(),
    };
    let data = Resource::new(
        move || {
            (
                actions.change.version().get(),
                actions.revoke.version().get(),
            )
        },
        |_| api::load_account(),
    );
    loaded(data, move |d| view! { <AccountView d=d actions=actions/> })
}

#[component]
fn AccountView(d: AccountPage, actions: Actions) -> impl IntoView {
    let revoke_error = action_error(actions.revoke.value());
    // This browser's own session is signed out the ordinary way.
    Effect::new(move |_| {
        if matches!(actions.logout.value().get(), Some(Ok(()))) {
            go("/login");
        }
    });
    let others = d.sessions.iter().filter(|s| !s.current).count();
    view! {
        <h1>"Your account"</h1>
        <p class="lede">"Signed in as " <strong>{d.user.username.clone()}</strong> " (" {d.user.role.label()} ")."</p>
        <section class="panel" id="password-panel">
            <h2>"Change your password"</h2>
            <PasswordForm actions=actions/>
        </section>
        <section class="panel" id="sessions-panel">
            <h2>"Where you are signed in"</h2>
            <p class="hint">
                {format!(
                    "A session ends {} hours after you sign in, or after {} hours without use. \
                     If you see one you do not recognise, sign it out and change your password.",
                    d.session_hours, d.idle_hours
                )}
            </p>
            <FormError error=revoke_error fields=&[]/>
            <table class="sessions" id="sessions">
                <thead>
                    <tr>
                        <th scope="col">"Signed in"</th>
                        <th scope="col">"Last used"</th>
                        <th scope="col">"Session"</th>
                        <th scope="col"><span class="sr-only">"Sign out"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {d.sessions.into_iter().map(|s| view! { <SessionRowView s=s actions=actions/> }).collect_view()}
                </tbody>
            </table>
            {(others == 0).then(|| view! { <p class="hint" id="no-other-sessions">"You are signed in nowhere else."</p> })}
        </section>
    }
}

#[component]
fn PasswordForm(actions: Actions) -> impl IntoView {
    let error = action_error(actions.change.value());
    let form = reset_on_success(actions.change);
    view! {
        <ActionForm action=actions.change node_ref=form attr:id="password-form">
            <label for="current-password">"Current password"</label>
            <input id="current-password" name="current_password" type="password"
                autocomplete="current-password" required/>
            <FieldError error=error field="current_password"/>
            <label for="new-password">"New password"</label>
            <input id="new-password" name="new_password" type="password"
                autocomplete="new-password" required minlength="12"/>
            <p class="hint">"At least 12 characters. Your other sessions are signed out."</p>
            <FieldError error=error field="new_password"/>
            <FormError error=error fields=&["current_password", "new_password"]/>
            <button type="submit" id="change-password">"Change password"</button>
            {move || match actions.change.value().get() {
                Some(Ok(ended)) => Some(view! {
                    <p class="ok" role="status" id="password-changed">
                        {match ended {
                            0 => "Password changed.".to_owned(),
                            1 => "Password changed. Your 1 other session was signed out.".to_owned(),
                            n => format!("Password changed. Your {n} other sessions were signed out."),
                        }}
                    </p>
                }),
                _ => None,
            }}
        </ActionForm>
    }
}

#[component]
fn SessionRowView(s: SessionRow, actions: Actions) -> impl IntoView {
    let label = if s.current {
        "Sign out this session".to_owned()
    } else {
        format!(
            "Sign out the session from {}",
            s.signed_in_at
                .map_or_else(|| "earlier".to_owned(), format::utc)
        )
    };
    let short: String = s.id.chars().take(8).collect();
    let row_id = format!("session-{short}");
    view! {
        <tr class:current=s.current id=row_id>
            <td data-label="Signed in">{s.signed_in_at.map_or_else(|| "—".to_owned(), format::utc)}</td>
            <td data-label="Last used">{format::utc(s.last_active)}</td>
            <td data-label="Session">
                <code>{short}</code>
                {s.current.then(|| view! { " " <span class="state state-current">"This browser"</span> })}
            </td>
            <td class="status">
                {if s.current {
                    view! {
                        <ActionForm action=actions.logout attr:class="inline">
                            <button type="submit" class="secondary" aria-label=label>"Sign out"</button>
                        </ActionForm>
                    }.into_any()
                } else {
                    view! {
                        <ActionForm action=actions.revoke attr:class="inline">
                            <input type="hidden" name="id" value=s.id.clone()/>
                            <button type="submit" class="secondary" aria-label=label>"Sign out"</button>
                        </ActionForm>
                    }.into_any()
                }}
            </td>
        </tr>
    }
}
