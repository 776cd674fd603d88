//! One dataset version: what was checked, how it was split, the hashes that
//! pin its files, and the split files to download. Versions never change
//! once the server's check is done; until then the page follows the check
//! (waiting, checking) to ready or to the findings that refused it.

use super::check::{finding_row, Histogram};
use crate::api::{self, AppError, DatasetPage as Data, DatasetState};
use crate::components::loaded;
use crate::format;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

#[component]
pub fn DatasetPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("dataset")
            .and_then(|s| s.parse::<i64>().ok())
    };
    let data = Resource::new(id, |id| async move {
        match id {
            Some(id) => api::dataset(id).await,
            None => Err(AppError::NotFound("that dataset".into())),
        }
    });
    // While the server checks it, ask again every moment (browser only:
    // effects do not run on the server).
    Effect::new(move |_| {
        let pending = data
            .get()
            .is_some_and(|d| d.is_ok_and(|d| d.dataset.state.pending()));
        if pending {
            set_timeout(move || data.refetch(), FOLLOW_EVERY);
        }
    });
    // Created here, not under the Suspense the view renders in.
    let delete = ServerAction::<api::DeleteDataset>::new();
    Effect::new(move |_| {
        if matches!(delete.value().get(), Some(Ok(_))) {
            data.refetch();
        }
    });
    loaded(data, move |d| view! { <DatasetView d=d delete=delete/> })
}

/// Deleting the version: what it does, the button, the refusal.
#[component]
fn DeletePanel(d: Data, delete: ServerAction<api::DeleteDataset>) -> impl IntoView {
    let error = crate::components::action_error(delete.value());
    view! {
        <section class="panel" id="delete-dataset">
            <h2>"Delete this dataset"</h2>
            <p class="hint">
                "Its source file and splits are removed from storage (a file shared with another dataset stays for that one). "
                "Its name, counts and hashes stay, for the jobs and model cards that cite it. "
                "It cannot be deleted while a job that has not ended, or an approved model version, uses it."
            </p>
            <ActionForm action=delete attr:id="delete-form">
                <input type="hidden" name="id" value=d.dataset.id.to_string()/>
                <button type="submit" class="secondary" id="delete-dataset-button">"Delete dataset"</button>
            </ActionForm>
            {move || error.get().map(|e| view! { <p class="form-error" id="delete-error" role="alert">{e.to_string()}</p> })}
        </section>
    }
}

/// How often a page asks again while a version is being checked.
pub(super) const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(1000);

/// Where the check is, for a version that is not ready.
#[component]
fn CheckStatus(d: Data) -> impl IntoView {
    let ds = d.dataset.clone();
    match ds.state {
        DatasetState::Waiting => view! {
            <p class="check-status" id="dataset-state" role="status">
                {match ds.ahead {
                    Some(0) | None => "Waiting for the server to check it: it is next.".to_owned(),
                    Some(n) => format!("Waiting for the server to check it: {n} saved datasets are ahead of it."),
                }}
                " This page follows it."
            </p>
        }
        .into_any(),
        DatasetState::Checking => view! {
            <p class="check-status" id="dataset-state" role="status">
                "The server is checking and splitting it again, with the same checks your browser ran. This page follows it."
            </p>
        }
        .into_any(),
        DatasetState::Archived => view! {
            <p class="check-status" id="dataset-state" role="status">
                "This dataset was deleted: its files are gone from storage. Its name, counts and hashes stay, for the jobs and model cards that cite it."
            </p>
        }
        .into_any(),
        DatasetState::Refused => {
            let r = d.refusal.clone();
            let message = r.as_ref().map(|r| r.message.clone()).unwrap_or_default();
            let findings = r.map(|r| r.findings).unwrap_or_default();
            view! {
                <p class="form-error" id="dataset-state" role="status">
                    "The server's check refused this dataset: " {message}
                    " Nothing can be trained on it: fix the file, check it again on the project's page and save it."
                </p>
                {(!findings.is_empty()).then(|| view! {
                    <table class="findings" id="refusal-findings">
                        <thead>
                            <tr><th scope="col">"Line"</th><th scope="col">"Problem"</th><th scope="col">"How to fix it"</th></tr>
                        </thead>
                        <tbody>{findings.into_iter().map(finding_row).collect_view()}</tbody>
                    </table>
                })}
            }
            .into_any()
        }
        DatasetState::Ready => ().into_any(),
    }
}

/// The crumbs back to the project and the version's name.
#[component]
fn Heading(d: Data) -> impl IntoView {
    view! {
        <p class="crumbs">
            <a href="/">"Projects"</a>" / "
            <a href=format!("/projects/{}", d.project_id)>{d.project_name.clone()}</a>" / datasets"
        </p>
        <h1 id="dataset-name">{d.dataset.name.clone()}</h1>
    }
}

#[component]
fn DatasetView(d: Data, delete: ServerAction<api::DeleteDataset>) -> impl IntoView {
    let ds = d.dataset.clone();
    let deletable = ds.state != DatasetState::Archived;
    if ds.state != DatasetState::Ready {
        let source = ds.source_name.clone();
        return view! {
            <Heading d=d.clone()/>
            <section class="panel" id="dataset-detail">
                <CheckStatus d=d.clone()/>
                <dl class="facts">
                    <dt>"Source file"</dt><dd>{source}</dd>
                    <dt>"Split"</dt><dd id="detail-split">{format!("{}% · seed {}", ds.ratios.replace(',', "/"), ds.seed)}</dd>
                    <dt>"Saved"</dt><dd>{format!("by {}, {}", ds.created_by, format::utc(ds.created_at))}</dd>
                </dl>
            </section>
            {deletable.then(|| view! { <DeletePanel d=d.clone() delete=delete/> })}
        }
        .into_any();
    }
    let splits = ["train", "validation", "test"];
    let unit = match d.stats.as_ref().and_then(|s| s.unit) {
        Some(hone_dataset::check::Unit::Tokens) => "tokens",
        _ => "characters",
    };
    let model = ds
        .base_model
        .clone()
        .unwrap_or_else(|| "none (characters)".into());
    let left_out = if ds.dropped_rejected {
        format!("{} examples with errors were left out.", ds.rejected)
    } else {
        "No examples were left out.".to_owned()
    };
    view! {
        <Heading d=d.clone()/>
        <section class="panel" id="dataset-detail">
            <ul class="cards">
                <li><span class="n" id="detail-examples">{ds.examples}</span>" examples"</li>
                <li><span class="n">{ds.counts[0]}</span>" train"</li>
                <li><span class="n">{ds.counts[1]}</span>" validation"</li>
                <li><span class="n">{ds.counts[2]}</span>" test"</li>
                <li><span class="n">{ds.warnings}</span>" warnings"</li>
            </ul>
            <p>{left_out}</p>
            <dl class="facts">
                <dt>"Source file"</dt><dd>{format!("{} ({})", ds.source_name, ds.format)}</dd>
                <dt>"Source SHA-256"</dt><dd><code>{d.source_sha256.clone()}</code></dd>
                <dt>"Split"</dt><dd id="detail-split">{format!("{}% · seed {}", ds.ratios.replace(',', "/"), ds.seed)}</dd>
                <dt>"Tokens counted with"</dt><dd id="detail-model">{model}</dd>
                <dt>"Saved"</dt><dd>{format!("by {}, {}", ds.created_by, format::utc(ds.created_at))}</dd>
            </dl>
            <h2>"Files"</h2>
            <table class="files" id="split-files">
                <thead><tr><th scope="col">"Split"</th><th scope="col">"Examples"</th><th scope="col">"SHA-256"</th></tr></thead>
                <tbody>
                    {splits.iter().enumerate().map(|(i, name)| view! {
                        <tr data-split=*name>
                            <td><a href=format!("/api/datasets/{}/{name}.jsonl", ds.id) download="" rel="external">{format!("{name}.jsonl")}</a></td>
                            <td>{ds.counts[i]}</td>
                            <td><code>{d.split_sha256[i].clone()}</code></td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
            {d.stats.clone().map(|s| {
                let l = s.length.clone();
                let a = s.assistant_length.clone();
                view! {
                    <h2>"Lengths"</h2>
                    <p id="detail-lengths">{format!(
                        "Per example ({unit}): min {} · median {} · mean {:.0} · p5 {} · p95 {} · max {}. Assistant {unit}: median {} · max {}.",
                        l.min, l.median, l.mean, l.p5, l.p95, l.max, a.median, a.max
                    )}</p>
                    <Histogram bins=s.length.histogram.clone() unit=unit/>
                }
            })}
            <h2>"Findings when saved"</h2>
            {if d.finding_counts.is_empty() {
                view! { <p class="empty">"None."</p> }.into_any()
            } else {
                view! {
                    <table class="findings" id="detail-findings">
                        <thead><tr><th scope="col">"Kind"</th><th scope="col">"Count"</th></tr></thead>
                        <tbody>
                            {d.finding_counts.iter().map(|(code, n)| view! {
                                <tr data-code=code.clone()><td data-label="Kind">{code.clone()}</td><td data-label="Count">{*n}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <DeletePanel d=d.clone() delete=delete/>
    }
    .into_any()
}
