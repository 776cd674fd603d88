//! One project: its files and the upload form with a progress bar.

use super::dashboard::size_label;
use crate::api::{self, AppError, FileSummary, ProjectPage as Data};
use crate::components::loaded;
use crate::format;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

#[component]
pub fn ProjectPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    // Bumped after each upload so the file list reloads. The upload state
    // lives here, above the reloading part, so it survives the reload.
    let uploads = RwSignal::new(0u32);
    let state = UploadState {
        uploads,
        progress: RwSignal::new(None),
        message: RwSignal::new(None),
    };
    let check = super::check::CheckState::new();
    let data = Resource::new(
        move || (id(), uploads.get()),
        |(id, _)| async move {
            match id {
                Some(id) => api::project(id).await,
                None => Err(AppError::NotFound("that project".into())),
            }
        },
    );
    loaded(
        data,
        move |d| view! { <ProjectView d=d state=state check=check/> },
    )
}

#[component]
fn ProjectView(d: Data, state: UploadState, check: super::check::CheckState) -> impl IntoView {
    let can_write = d.can_write;
    let project_id = d.project.id;
    let max = d.max_upload_bytes;
    view! {
        <p class="crumbs"><a href="/">"Projects"</a> " / " {d.project.team.name.clone()}</p>
        <h1 id="project-name">{d.project.name.clone()}</h1>
        <super::check::DatasetCheck project_id=project_id can_write=can_write saved=state.uploads state=check models=d.models.clone()/>
        <DatasetList project_id=project_id datasets=d.datasets.clone()/>
        {can_write.then(|| view! { <UploadForm project_id=project_id max=max state=state/> })}
        <section class="panel">
            <h2>"Files"</h2>
            {if d.project.files.is_empty() {
                view! { <p class="empty">"No files uploaded yet."</p> }.into_any()
            } else {
                view! { <FileTable files=d.project.files/> }.into_any()
            }}
        </section>
    }
}

#[component]
fn DatasetList(project_id: i64, datasets: Vec<api::DatasetSummary>) -> impl IntoView {
    (!datasets.is_empty()).then(|| {
        view! {
            <section class="panel">
                <h2>"Datasets"</h2>
                <table class="datasets" id="datasets">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Examples"</th>
                            <th scope="col">"Train · validation · test"</th>
                            <th scope="col">"Split"</th>
                            <th scope="col">"Source"</th>
                            <th scope="col">"Saved"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {datasets.into_iter().map(|d| {
                            let left_out = d.dropped_rejected.then(|| format!(" ({} with errors left out)", d.rejected));
                            view! {
                                <tr class="dataset" data-name=d.name.clone()>
                                    <td><a href=format!("/projects/{}/datasets/{}", project_id, d.id)>{d.name.clone()}</a></td>
                                    <td>{d.examples}{left_out}</td>
                                    <td class="split-counts">{format!("{} · {} · {}", d.counts[0], d.counts[1], d.counts[2])}</td>
                                    <td>{format!("{}% · seed {}", d.ratios.replace(',', "/"), d.seed)}</td>
                                    <td>{format!("{} ({})", d.source_name, d.format)}</td>
                                    <td>{format!("{}, {}", d.created_by, format::utc(d.created_at))}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            </section>
        }
    })
}

#[component]
pub fn FileTable(files: Vec<FileSummary>) -> impl IntoView {
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

/// An upload in progress and the outcome of the last one.
#[derive(Clone, Copy)]
struct UploadState {
    /// Completed uploads (the file list reloads on change).
    uploads: RwSignal<u32>,
    /// Percent done while an upload runs.
    progress: RwSignal<Option<f64>>,
    /// `(succeeded, message)` of the last attempt.
    message: RwSignal<Option<(bool, String)>>,
}

#[component]
fn UploadForm(project_id: i64, max: u64, state: UploadState) -> impl IntoView {
    let input = NodeRef::<leptos::html::Input>::new();
    let UploadState {
        uploads,
        progress,
        message,
    } = state;
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            let Some(file) = input.get().and_then(|i| i.files()).and_then(|f| f.get(0)) else {
                message.set(Some((false, "Choose a file first.".into())));
                return;
            };
            if file.size() as u64 > max {
                message.set(Some((
                    false,
                    format!(
                        "{} is {}, over the {} limit.",
                        file.name(),
                        format::bytes(file.size() as i64),
                        format::bytes(max as i64)
                    ),
                )));
                return;
            }
            message.set(None);
            progress.set(Some(0.0));
            crate::upload::send(
                &format!("/api/projects/{project_id}/files"),
                file,
                move |pct| progress.set(Some(pct)),
                move |result| {
                    progress.set(None);
                    match result {
                        Ok(name) => {
                            message.set(Some((true, format!("Uploaded {name}."))));
                            if let Some(i) = input.get() {
                                i.set_value("");
                            }
                            uploads.update(|n| *n += 1);
                        }
                        Err(e) => message.set(Some((false, e))),
                    }
                },
            );
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (project_id, max, uploads, input);
    };
    view! {
        <section class="panel">
            <h2>"Upload a file"</h2>
            <form id="upload-form" on:submit=on_submit>
                <label for="upload-file">"File"</label>
                <input id="upload-file" type="file" node_ref=input required/>
                <p class="hint">"Up to " {format::bytes(max as i64)} "."</p>
                <button type="submit" id="upload-button" disabled=move || progress.get().is_some()>
                    "Upload"
                </button>
                {move || progress.get().map(|p| view! {
                    <div class="progress">
                        <progress id="upload-progress" max="100" value=p.to_string()></progress>
                        <span>{format!("{p:.0}%")}</span>
                    </div>
                })}
                {move || message.get().map(|(ok, m)| view! {
                    <p id="upload-message" class={if ok { "ok" } else { "form-error" }} role="status">{m}</p>
                })}
            </form>
        </section>
    }
    .into_any()
}
