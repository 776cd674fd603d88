//! Administration: people, their roles and teams.

use crate::api::{self, AdminOverview, Role, Team, UserRow};
use crate::components::{action_error, loaded, reset_on_success, FieldError, FormError};
use crate::format;
use leptos::prelude::*;

#[derive(Clone, Copy)]
struct Actions {
    create_user: ServerAction<api::CreateUser>,
    create_team: ServerAction<api::CreateTeam>,
    set_role: ServerAction<api::SetRole>,
    set_membership: ServerAction<api::SetMembership>,
    set_disabled: ServerAction<api::SetDisabled>,
    reset_password: ServerAction<api::ResetPassword>,
    purge: ServerAction<api::PurgeStorage>,
}

#[component]
pub fn AdminPage() -> impl IntoView {
    let actions = Actions {
        create_user: ServerAction::new(),
        create_team: ServerAction::new(),
        set_role: ServerAction::new(),
        set_membership: ServerAction::new(),
        set_disabled: ServerAction::new(),
        reset_password: ServerAction::new(),
        purge: ServerAction::new(),
    };
    let data = Resource::new(
        move || {
            (
                actions.create_user.version().get(),
                actions.create_team.version().get(),
                actions.set_role.version().get(),
                actions.set_membership.version().get(),
                actions.set_disabled.version().get(),
                actions.reset_password.version().get(),
                actions.purge.version().get(),
            )
        },
        |_| api::load_admin(),
    );
    loaded(data, move |d| view! { <AdminView d=d actions=actions/> })
}

#[component]
fn AdminView(d: AdminOverview, actions: Actions) -> impl IntoView {
    let role_error = action_error(actions.set_role.value());
    let member_error = action_error(actions.set_membership.value());
    let disable_error = action_error(actions.set_disabled.value());
    let reset_error = action_error(actions.reset_password.value());
    let purge_error = action_error(actions.purge.value());
    let purged = move || {
        actions.purge.value().get().and_then(|r| r.ok()).map(|p| {
            format!(
                "Purged: {} checkpoints dropped, {} stored files removed, {} freed.",
                p.checkpoints,
                p.files,
                format::bytes(i64::try_from(p.bytes).unwrap_or(i64::MAX))
            )
        })
    };
    let teams = d.teams.clone();
    let me = d.user.id;
    view! {
        <h1>"Administration"</h1>
        <super::AdminNav current="/admin"/>
        <section class="panel">
            <h2>"People"</h2>
            <p class="hint">"Disabling someone signs them out at once and stops their API keys. You can enable them again at any time. Resetting a password signs the person out everywhere."</p>
            <FormError error=role_error fields=&[]/>
            <FormError error=member_error fields=&[]/>
            <FormError error=disable_error fields=&[]/>
            <FieldError error=reset_error field="password"/>
            <FormError error=reset_error fields=&["password"]/>
            {move || matches!(actions.reset_password.value().get(), Some(Ok(()))).then(|| view! {
                <p class="ok" role="status" id="reset-ok">"Password set. Their sessions were signed out; share the new password with them privately."</p>
            })}
            <table class="users" id="users">
                <thead>
                    <tr>
                        <th scope="col">"Username"</th>
                        <th scope="col">"Role"</th>
                        <th scope="col">"Teams"</th>
                        <th scope="col">"Account"</th>
                    </tr>
                </thead>
                <tbody>
                    {d.users.into_iter().map(|u| view! { <UserRowView u=u teams=teams.clone() actions=actions me=me/> }).collect_view()}
                </tbody>
            </table>
        </section>
        <div class="columns">
            <NewUserForm teams=d.teams.clone() actions=actions/>
            <NewTeamForm actions=actions/>
        </div>
        <section class="panel" id="storage-panel">
            <h2>"Storage by team"</h2>
            <p class="hint">"Uploaded files, dataset versions, checkpoints and trained models of each team's projects. A file two teams share counts for both. "
                "Purging drops every checkpoint of the team's ended jobs (their trained models, reports and downloads stay) and removes stored files nothing has referred to for an hour."</p>
            <FormError error=purge_error fields=&[]/>
            {move || purged().map(|m| view! { <p class="ok" id="purge-result" role="status">{m}</p> })}
            <table class="storage" id="storage">
                <thead>
                    <tr>
                        <th scope="col">"Team"</th>
                        <th scope="col" class="num">"Stored"</th>
                        <th scope="col" class="num">"Files"</th>
                        <th scope="col"><span class="sr-only">"Purge"</span></th>
                    </tr>
                </thead>
                <tbody>
                    {d.storage.into_iter().map(|t| view! {
                        <tr id=format!("storage-{}", t.team_id)>
                            <th scope="row">{t.team.clone()}</th>
                            <td class="num" data-label="Stored">{format::bytes(t.bytes)}</td>
                            <td class="num" data-label="Files">{t.files}</td>
                            <td>
                                <ActionForm action=actions.purge attr:class="inline">
                                    <input type="hidden" name="team_id" value=t.team_id.to_string()/>
                                    <button type="submit" class="secondary" id=format!("purge-{}", t.team_id) aria-label=format!("Purge the storage of {}", t.team)>"Purge"</button>
                                </ActionForm>
                            </td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[component]
fn UserRowView(u: UserRow, teams: Vec<Team>, actions: Actions, me: i64) -> impl IntoView {
    let others: Vec<Team> = teams.into_iter().filter(|t| !u.teams.contains(t)).collect();
    let user_id = u.id.to_string();
    let chips = u
        .teams
        .iter()
        .map(|t| {
            let uid = user_id.clone();
            let team_id = t.id.to_string();
            let label = format!("Remove {} from {}", u.username, t.name);
            let name = t.name.clone();
            view! {
                <li>
                    {name}
                    <ActionForm action=actions.set_membership attr:class="inline">
                        <input type="hidden" name="user_id" value=uid/>
                        <input type="hidden" name="team_id" value=team_id/>
                        <input type="hidden" name="member" value="false"/>
                        <button type="submit" class="link" aria-label=label>"×"</button>
                    </ActionForm>
                </li>
            }
        })
        .collect_view();
    let add = (!others.is_empty()).then(|| {
        let uid = user_id.clone();
        let select_id = format!("add-team-{}", u.id);
        let label = format!("Add {} to team", u.username);
        view! {
            <ActionForm action=actions.set_membership attr:class="inline">
                <input type="hidden" name="user_id" value=uid/>
                <input type="hidden" name="member" value="true"/>
                <label class="sr-only" for=select_id.clone()>{label}</label>
                <select id=select_id name="team_id">
                    {others.into_iter().map(|t| view! { <option value=t.id.to_string()>{t.name}</option> }).collect_view()}
                </select>
                <button type="submit" class="secondary">"Add to team"</button>
            </ActionForm>
        }
    });
    let role_id = format!("role-{}", u.id);
    let role_label = format!("Role of {}", u.username);
    let current_role = u.role;
    let disabled = u.disabled;
    // An admin cannot lock themselves out (the server refuses it too).
    let account = if u.id == me {
        view! { <span class="hint">"You"</span> }.into_any()
    } else {
        let uid = user_id.clone();
        let (label, button_class, next) = if disabled {
            (format!("Enable {}", u.username), "secondary", "false")
        } else {
            (
                format!("Disable {}", u.username),
                "secondary danger-text",
                "true",
            )
        };
        let resetting = RwSignal::new(false);
        let reset_uid = uid.clone();
        let reset_label = format!("Reset the password of {}", u.username);
        let input_id = format!("reset-password-{}", u.id);
        let input_label = format!("New password for {}", u.username);
        view! {
            <ActionForm action=actions.set_disabled attr:class="inline">
                <input type="hidden" name="user_id" value=uid/>
                <input type="hidden" name="disabled" value=next/>
                <button type="submit" class=button_class aria-label=label>
                    {if disabled { "Enable" } else { "Disable" }}
                </button>
            </ActionForm>
            " "
            {move || if resetting.get() {
                let (uid, for_id, id, label) =
                    (reset_uid.clone(), input_id.clone(), input_id.clone(), input_label.clone());
                view! {
                    <ActionForm action=actions.reset_password attr:class="reset-password">
                        <input type="hidden" name="user_id" value=uid/>
                        <label class="sr-only" for=for_id>{label}</label>
                        <input id=id name="password" type="password" required minlength="12"
                            autocomplete="new-password" placeholder="New password"/>
                        <button type="submit" class="secondary">"Set password"</button>
                        " "
                        <button type="button" class="link" on:click=move |_| resetting.set(false)>"Cancel"</button>
                    </ActionForm>
                }.into_any()
            } else {
                view! {
                    <button type="button" class="secondary" aria-label=reset_label.clone()
                        on:click=move |_| resetting.set(true)>"Reset password"</button>
                }.into_any()
            }}
        }
        .into_any()
    };
    view! {
        <tr id=format!("user-{}", u.username) class:disabled=disabled>
            <th scope="row">
                {u.username.clone()}
                {disabled.then(|| view! { " " <span class="state state-disabled">"Disabled"</span> })}
            </th>
            <td data-label="Role">
                <ActionForm action=actions.set_role attr:class="inline">
                    <input type="hidden" name="user_id" value=user_id/>
                    <label class="sr-only" for=role_id.clone()>{role_label}</label>
                    <select id=role_id name="role">
                        {Role::ALL.into_iter().map(|r| view! {
                            <option value=r.as_str() selected={r == current_role}>{r.label()}</option>
                        }).collect_view()}
                    </select>
                    <button type="submit" class="secondary">"Set role"</button>
                </ActionForm>
            </td>
            <td data-label="Teams">
                <ul class="chips">{chips}</ul>
                {add}
            </td>
            <td data-label="Account">{account}</td>
        </tr>
    }
}

#[component]
fn NewUserForm(teams: Vec<Team>, actions: Actions) -> impl IntoView {
    let error = action_error(actions.create_user.value());
    let form = reset_on_success(actions.create_user);
    view! {
        <section class="panel">
            <h2>"Add a person"</h2>
            <ActionForm action=actions.create_user node_ref=form attr:id="new-user">
                <label for="new-username">"Username"</label>
                <input id="new-username" name="username" autocomplete="off" required/>
                <FieldError error=error field="username"/>
                <label for="new-password">"Initial password"</label>
                <input id="new-password" name="password" type="password" autocomplete="new-password" required/>
                <p class="hint">"At least 12 characters. Share it with them privately."</p>
                <FieldError error=error field="password"/>
                <label for="new-role">"Role"</label>
                <select id="new-role" name="role">
                    {Role::ALL.into_iter().map(|r| view! { <option value=r.as_str()>{r.label()}</option> }).collect_view()}
                </select>
                <FieldError error=error field="role"/>
                <label for="new-team">"Team"</label>
                <select id="new-team" name="team_id">
                    {teams.into_iter().map(|t| view! { <option value=t.id.to_string()>{t.name}</option> }).collect_view()}
                </select>
                <FieldError error=error field="team_id"/>
                <FormError error=error fields=&["username", "password", "role", "team_id"]/>
                <button type="submit" id="create-user">"Add person"</button>
                {move || matches!(actions.create_user.value().get(), Some(Ok(()))).then(|| view! {
                    <p class="ok" role="status" id="create-user-ok">"Added."</p>
                })}
            </ActionForm>
        </section>
    }
}

#[component]
fn NewTeamForm(actions: Actions) -> impl IntoView {
    let error = action_error(actions.create_team.value());
    let form = reset_on_success(actions.create_team);
    view! {
        <section class="panel">
            <h2>"New team"</h2>
            <ActionForm action=actions.create_team node_ref=form attr:id="new-team-form">
                <label for="team-name">"Team name"</label>
                <input id="team-name" name="name" required maxlength="100"/>
                <FieldError error=error field="name"/>
                <FormError error=error fields=&["name"]/>
                <button type="submit" id="create-team">"Create team"</button>
            </ActionForm>
        </section>
    }
}
