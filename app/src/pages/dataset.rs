//! One dataset version: what was checked, how it was split, the hashes that
//! pin its files, and the split files to download. Versions never change.

use super::check::Histogram;
use crate::api::{self, AppError, DatasetPage as Data};
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
    loaded(data, |d| view! { <DatasetView d=d/> })
}

#[component]
fn DatasetView(d: Data) -> impl IntoView {
    let ds = d.dataset.clone();
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
        <p class="crumbs">
            <a href="/">"Projects"</a>" / "
            <a href=format!("/projects/{}", d.project_id)>{d.project_name.clone()}</a>" / datasets"
        </p>
        <h1 id="dataset-name">{ds.name.clone()}</h1>
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
                                <tr data-code=code.clone()><td>{code.clone()}</td><td>{*n}</td></tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
    .into_any()
}
