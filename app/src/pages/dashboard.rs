//! The signed-in user's projects, their files, and a form for a new project.

use crate::api::{self, Dashboard, FileSummary, Team};
use crate::components::{action_error, loaded, reset_on_success, FieldError, FormError};
use crate::format;
use leptos::prelude::*;

#[component]
pub fn DashboardPage() -> impl IntoView {
    let create = ServerAction::<api::CreateProject>::new();
    let data = Resource::new(move || create.version().get(), |_| api::load_dashboard());
    // Made here, beside the page's own: a resource made inside a
    // suspended view is numbered differently by the server and the
    // browser, and hydration fails.
    let awaiting = Resource::new(|| (), |_| api::load_awaiting_review());
    view! {
        <super::AwaitingReviewList data=awaiting/>
        {loaded(data, move |d| view! { <DashboardView d=d create=create/> })}
    }
}

#[component]
fn DashboardView(d: Dashboard, create: ServerAction<api::CreateProject>) -> impl IntoView {
    let can_write = d.can_create_projects;
    let teams = d.teams.clone();
    let has_teams = !teams.is_empty();
    view! {
        <h1>"Your projects"</h1>
        {if d.projects.is_empty() {
            view! { <p class="empty">"No projects yet."</p> }.into_any()
        } else {
            view! {
                <ul class="projects" id="projects">
                    {d.projects.into_iter().map(|p| view! {
                        <li class="panel project">
                            <h2><a href=format!("/projects/{}", p.id)>{p.name.clone()}</a></h2>
                            <p class="meta">"Team " {p.team.name.clone()} " · "
                                {p.files.len()} {if p.files.len() == 1 { " file" } else { " files" }}
                            </p>
                            <FileTable files=p.files/>
                        </li>
                    }).collect_view()}
                </ul>
            }.into_any()
        }}
        {(can_write && has_teams).then(|| view! { <NewProjectForm teams=teams create=create/> })}
        {(!has_teams).then(|| view! {
            <p class="hint">"You are not in any team yet. Ask an administrator to add you to one."</p>
        })}
    }
}

#[component]
fn NewProjectForm(teams: Vec<Team>, create: ServerAction<api::CreateProject>) -> impl IntoView {
    let error = action_error(create.value());
    let form = reset_on_success(create);
    view! {
        <section class="panel">
            <h2>"New project"</h2>
            <ActionForm action=create node_ref=form attr:id="new-project">
                <label for="project-name">"Project name"</label>
                <input id="project-name" name="name" required maxlength="100"/>
                <FieldError error=error field="name"/>
                <label for="project-team">"Team"</label>
                <select id="project-team" name="team_id">
                    {teams.into_iter().map(|t| view! { <option value=t.id.to_string()>{t.name}</option> }).collect_view()}
                </select>
                <FieldError error=error field="team_id"/>
                <FormError error=error fields=&["name", "team_id"]/>
                <button type="submit" id="create-project">"Create project"</button>
            </ActionForm>
        </section>
    }
}

/// `1536` bytes as "1.5 KiB (1536 bytes)".
pub fn size_label(size: i64) -> String {
    format!("{} ({size} bytes)", format::bytes(size))
}

/// The files uploaded to a project (the sources of its datasets).
#[component]
fn FileTable(files: Vec<FileSummary>) -> impl IntoView {
    view! {
        <table class="files">
            <thead>
                <tr>
                    <th scope="col">"File"</th>
                    <th scope="col">"Size"</th>
                    <th scope="col">"SHA-256"</th>
                    <th scope="col">"Uploaded by"</th>
                    <th scope="col">"When"</th>
                </tr>
            </thead>
            <tbody>
                {files.into_iter().map(|f| view! {
                    <tr class="file">
                        <td class="file-name">{f.name}</td>
                        <td class="file-size">{size_label(f.size)}</td>
                        <td><code title=f.sha256.clone()>{f.sha256.chars().take(12).collect::<String>()}</code></td>
                        <td>{f.uploaded_by}</td>
                        <td>{format::utc(f.uploaded_at)}</td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}
