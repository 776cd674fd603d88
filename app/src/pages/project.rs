//! One project, read top to bottom as the pipeline: "1 · Data" (check a
//! file in the browser, save it as a dataset version) and "2 · Models"
//! (the training jobs launched from those versions, each successful one a
//! model version with its evaluation and review state).

use crate::api::{
    self, AppError, DatasetState, DatasetSummary, JobState, JobSummary, ProjectPage as Data,
    VersionRow, VersionState,
};
use crate::components::loaded;
use crate::format;
use hone_protocol::Cause;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

#[component]
pub fn ProjectPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").and_then(|s| s.parse::<i64>().ok());
    // Bumped after each saved dataset so the lists reload. The check's
    // state lives here, above the reloading part, so it survives the reload.
    let saved = RwSignal::new(0u32);
    let check = super::check::CheckState::new();
    // Created here, not under the Suspense the view renders in.
    let delete = ServerAction::<api::DeleteProject>::new();
    Effect::new(move |_| {
        if matches!(delete.value().get(), Some(Ok(_))) {
            crate::components::go("/");
        }
    });
    let data = Resource::new(
        move || (id(), saved.get()),
        |(id, _)| async move {
            match id {
                Some(id) => api::project(id).await,
                None => Err(AppError::NotFound("that project".into())),
            }
        },
    );
    loaded(
        data,
        move |d| view! { <ProjectView d=d saved=saved check=check delete=delete/> },
    )
}

#[component]
fn ProjectView(
    d: Data,
    saved: RwSignal<u32>,
    check: super::check::CheckState,
    delete: ServerAction<api::DeleteProject>,
) -> impl IntoView {
    let project_id = d.project.id;
    let name = d.project.name.clone();
    view! {
        <p class="crumbs"><a href="/">"Projects"</a> " / " {d.project.team.name.clone()}</p>
        <h1 id="project-name">{d.project.name.clone()}</h1>
        <section class="stage" id="stage-data" aria-labelledby="stage-data-title">
            <h2 class="stage-title" id="stage-data-title"><span class="stage-n">"1"</span>" · Data"</h2>
            <super::check::DatasetCheck project_id=project_id can_write=d.can_write saved=saved state=check models=d.models.clone()/>
            <DatasetList project_id=project_id datasets=d.datasets.clone() can_train=d.can_train/>
        </section>
        <section class="stage" id="stage-models" aria-labelledby="stage-models-title">
            <h2 class="stage-title" id="stage-models-title"><span class="stage-n">"2"</span>" · Models"</h2>
            <JobList project_id=project_id jobs=d.jobs.clone() versions=d.versions.clone() can_train=d.can_train has_data=d.datasets.iter().any(|d| d.state == DatasetState::Ready)/>
        </section>
        {d.can_write.then(|| view! { <DeleteProjectPanel project_id=project_id name=name delete=delete/> })}
    }
}

/// Deleting the whole project, its name typed to confirm.
#[component]
fn DeleteProjectPanel(
    project_id: i64,
    name: String,
    delete: ServerAction<api::DeleteProject>,
) -> impl IntoView {
    let error = crate::components::action_error(delete.value());
    view! {
        <details class="panel danger-zone" id="delete-project">
            <summary>"Delete this project"</summary>
            <p class="hint">
                "Every dataset, job and model version in it is deleted and its files are removed from storage; its API keys stop working. "
                "It cannot be deleted while a job in it is running or queued, or while a version is approved."
            </p>
            <ActionForm action=delete attr:id="delete-project-form">
                <input type="hidden" name="id" value=project_id.to_string()/>
                <label for="delete-project-confirm">{format!("Type the project's name, {name}, to confirm")}</label>
                <input type="text" name="confirm" id="delete-project-confirm" autocomplete="off" required/>
                <button type="submit" class="danger" id="delete-project-button">"Delete project"</button>
            </ActionForm>
            {move || error.get().map(|e| view! { <p class="form-error" id="delete-project-error" role="alert">{e.to_string()}</p> })}
        </details>
    }
}

#[component]
fn DatasetList(project_id: i64, datasets: Vec<DatasetSummary>, can_train: bool) -> impl IntoView {
    // The list follows versions the server is still checking: it asks
    // again every moment until none is (browser only: effects do not run
    // on the server). Only the list reloads, not the page above it.
    let list = RwSignal::new(datasets);
    Effect::new(move |_| {
        if list.with(|l| l.iter().any(|d| d.state.pending())) {
            set_timeout(
                move || {
                    leptos::task::spawn_local(async move {
                        match api::project(project_id).await {
                            Ok(p) => {
                                let _ = list.try_set(p.datasets);
                            }
                            // Ask again after the next interval.
                            Err(_) => {
                                let _ = list.try_update(|_| ());
                            }
                        }
                    })
                },
                super::dataset::FOLLOW_EVERY,
            );
        }
    });
    move || {
        let datasets = list.get();
        if datasets.is_empty() {
            return view! {
                <section class="panel">
                    <h3>"Datasets"</h3>
                    <p class="empty" id="no-datasets">"No datasets yet. Check a file above, then save it as a dataset."</p>
                </section>
            }
            .into_any();
        }
        view! {
            <section class="panel">
                <h3>"Datasets"</h3>
                <table class="datasets" id="datasets">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Examples"</th>
                            <th scope="col">"Train · validation · test"</th>
                            <th scope="col">"Split"</th>
                            <th scope="col">"Source"</th>
                            <th scope="col">"Saved"</th>
                            <th scope="col">"Next step"</th>
                        </tr>
                    </thead>
                    <tbody>
                        {datasets.into_iter().map(|d| dataset_row(project_id, d, can_train)).collect_view()}
                    </tbody>
                </table>
            </section>
        }
        .into_any()
    }
}

/// One version of the list; its figures once the server's check is done.
fn dataset_row(project_id: i64, d: DatasetSummary, can_train: bool) -> impl IntoView {
    let href = format!("/projects/{}/datasets/{}", project_id, d.id);
    let ready = d.state == DatasetState::Ready;
    let (examples, counts, source) = if ready {
        let left_out = if d.dropped_rejected {
            format!(" ({} with errors left out)", d.rejected)
        } else {
            String::new()
        };
        (
            format!("{}{left_out}", d.examples),
            format!("{} · {} · {}", d.counts[0], d.counts[1], d.counts[2]),
            format!("{} ({})", d.source_name, d.format),
        )
    } else {
        ("—".into(), "—".into(), d.source_name.clone())
    };
    let next = match d.state {
        DatasetState::Ready if can_train => view! {
            <a class="train-link button-link" href=format!("/projects/{project_id}/datasets/{}/train", d.id)>
                "Train a model"
            </a>
        }
        .into_any(),
        DatasetState::Ready => view! { <span class="state state-succeeded">"Ready"</span> }.into_any(),
        DatasetState::Waiting => view! {
            <span class="state state-queued">{match d.ahead {
                Some(n) if n > 0 => format!("Waiting to be checked ({n} ahead)"),
                _ => "Waiting to be checked".to_owned(),
            }}</span>
        }
        .into_any(),
        DatasetState::Checking => view! { <span class="state state-running">"Being checked…"</span> }.into_any(),
        DatasetState::Refused => view! {
            <a class="state state-failed" href=href.clone()>"Refused: see why"</a>
        }
        .into_any(),
        DatasetState::Archived => view! { <span class="state state-cancelled">"Deleted"</span> }.into_any(),
    };
    view! {
        <tr class="dataset" data-name=d.name.clone() data-state=format!("{:?}", d.state).to_lowercase()>
            <td class="name"><a href=href>{d.name.clone()}</a></td>
            <td data-label="Examples">{examples}</td>
            <td data-label="Train · validation · test" class="split-counts">{counts}</td>
            <td data-label="Split">{format!("{}% · seed {}", d.ratios.replace(',', "/"), d.seed)}</td>
            <td data-label="Source">{source}</td>
            <td data-label="Saved">{format!("{}, {}", d.created_by, format::utc(d.created_at))}</td>
            <td class="next" data-label="Next step">{next}</td>
        </tr>
    }
}

#[component]
fn JobList(
    project_id: i64,
    jobs: Vec<JobSummary>,
    versions: Vec<VersionRow>,
    can_train: bool,
    has_data: bool,
) -> impl IntoView {
    if jobs.is_empty() {
        let hint = match (can_train, has_data) {
            (true, true) => {
                "No models yet. Click “Train a model” beside a dataset above to start one."
            }
            (true, false) => {
                "No models yet. Save a dataset above, then click “Train a model” beside it."
            }
            (false, _) => "No models have been trained in this project yet.",
        };
        return view! { <section class="panel"><p class="empty" id="no-jobs">{hint}</p></section> }
            .into_any();
    }
    view! {
        <ul class="jobs" id="jobs">
            {jobs
                .into_iter()
                .map(|j| {
                    let version = versions.iter().find(|v| v.train_job == j.id).cloned();
                    view! { <JobRow project_id=project_id j=j version=version/> }
                })
                .collect_view()}
        </ul>
    }
    .into_any()
}

/// A job's state as a coloured badge.
#[component]
fn StateBadge(state: JobState) -> impl IntoView {
    view! { <span class=format!("state state-{}", state.as_str())>{state.label()}</span> }
}

#[component]
fn JobRow(project_id: i64, j: JobSummary, version: Option<VersionRow>) -> impl IntoView {
    let href = format!("/projects/{project_id}/jobs/{}", j.id);
    let version = version.map(|v| {
        let progress = match (v.state, v.progress) {
            (VersionState::Evaluating, Some((done, total))) => {
                format!(" · {done} of {total} test examples")
            }
            _ => String::new(),
        };
        let link = v.eval_job.map(|e| {
            view! {
                " · "
                <a class="eval-link" href=format!("/projects/{project_id}/jobs/{e}")>"evaluation"</a>
            }
        });
        view! {
            <p class="version" data-version=v.number.to_string() data-version-state=v.state.as_str()>
                <a class=format!("vstate vstate-{}", v.state.as_str()) href=format!("/projects/{project_id}/versions/{}", v.number)>
                    {format!("Version {}: {}", v.number, v.state.label())}
                </a>
                {progress}
                {link}
            </p>
        }
    });
    let progress = match (j.step, j.total_steps) {
        (Some(s), Some(t)) => format!("step {s} of {t}"),
        (Some(s), None) => format!("step {s}"),
        (None, Some(t)) => format!("{t} steps planned"),
        (None, None) => "not started".to_owned(),
    };
    let why = match (j.state, &j.waiting_reason, &j.failure) {
        (JobState::Queued | JobState::Paused, Some(r), _) => {
            Some(view! { <p class="why waiting">{r.clone()}</p> }.into_any())
        }
        (JobState::Failed, _, Some(f)) => {
            let who = match f.cause {
                Cause::User => "Something in the data or the settings:",
                Cause::System => "A problem with the system, not your data:",
            };
            Some(view! { <p class="why failed">{who}" "{f.reason.clone()}</p> }.into_any())
        }
        _ => None,
    };
    view! {
        <li class="panel job" data-job=j.id.to_string() data-state=j.state.as_str()>
            <div class="job-head">
                <StateBadge state=j.state/>
                <a class="job-link" href=href>{format!("{} on {}", j.dataset_name, j.base_model)}</a>
            </div>
            <p class="meta">
                {format::method(j.method)}" · "{progress}" · launched by "{j.created_by.clone()}", "{format::utc(j.created_at)}
            </p>
            {why}
            {version}
        </li>
    }
}
