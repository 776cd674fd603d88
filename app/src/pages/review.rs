//! Review: a model version's page (the evaluation report with intervals,
//! the training curves, every test example side by side, the blind
//! ratings and the decision), the blind A/B rating page, the reviewer's
//! work list on the home page, and notifications.

use crate::api::{
    self, AppError, AwaitingReview, Choice, Decision, Notifications, RatingPage, VersionPage,
    WinRate,
};
use crate::components::charts::LineChart;
use crate::components::{action_error, loaded, FieldError, FormError};
use crate::format;
use hone_protocol::evaluation::{ExampleResult, Interval, Metric, Report};
use leptos::prelude::*;
use leptos_router::hooks::{use_params_map, use_query_map};

fn share(v: f64) -> String {
    format!("{:.1} %", 100.0 * v)
}

/// A metric's value as people read it: shares in per cent, the rest as
/// numbers.
fn value(m: Metric, v: f64) -> String {
    if m.lower_is_better() {
        format::number(v)
    } else {
        share(v)
    }
}

fn interval_text(m: Metric, i: &Interval) -> String {
    format!(
        "{} ({} to {})",
        value(m, i.value),
        value(m, i.low),
        value(m, i.high)
    )
}

/// `better`, `worse` or `same` for a difference's interval.
fn verdict_class(m: Metric, d: &Interval) -> &'static str {
    match (d.excludes_zero(), (d.value > 0.0) != m.lower_is_better()) {
        (false, _) => "same",
        (true, true) => "better",
        (true, false) => "worse",
    }
}

#[component]
pub fn VersionReviewPage() -> impl IntoView {
    let params = use_params_map();
    let key = move || {
        let p = params.read();
        (
            p.get("id").and_then(|s| s.parse::<i64>().ok()),
            p.get("number").and_then(|s| s.parse::<u32>().ok()),
        )
    };
    let decide = ServerAction::<api::Decide>::new();
    let delete = ServerAction::<api::DeleteVersion>::new();
    let project = move || key().0;
    Effect::new(move |_| {
        if matches!(delete.value().get(), Some(Ok(_))) {
            if let Some(p) = project() {
                crate::components::go(&format!("/projects/{p}"));
            }
        }
    });
    let data = Resource::new(
        move || (key(), decide.version().get()),
        |((id, number), _)| async move {
            match (id, number) {
                (Some(id), Some(n)) => api::load_version(id, n).await,
                _ => Err(AppError::NotFound("that model version".into())),
            }
        },
    );
    loaded(
        data,
        move |d| view! { <VersionView d=d decide=decide delete=delete/> },
    )
}

#[component]
fn VersionView(
    d: VersionPage,
    decide: ServerAction<api::Decide>,
    delete: ServerAction<api::DeleteVersion>,
) -> impl IntoView {
    let v = d.version.clone();
    let report = d.report.clone();
    let train_loss = d.train_loss.clone();
    let valid_loss = d.valid_loss.clone();
    view! {
        <div id="version-page" data-state=v.state.as_str()>
            <p class="crumbs">
                <a href="/">"Projects"</a>" / "
                <a href=format!("/projects/{}", d.project_id)>{d.project_name.clone()}</a>
                {format!(" / version {}", v.number)}
            </p>
            <h1>
                {format!("Version {} ", v.number)}
                <span class=format!("vstate vstate-{}", v.state.as_str()) id="version-state">{v.state.label()}</span>
            </h1>
            <p class="lede">
                {format!("{} on {}, trained by {} ({}). ", d.train_job.dataset_name, d.train_job.base_model, d.train_job.created_by, format::method(d.train_job.method))}
                <a href=format!("/projects/{}/jobs/{}", d.project_id, v.train_job)>"The training job"</a>
                {v.eval_job.map(|e| view! { " · " <a href=format!("/projects/{}/jobs/{e}", d.project_id)>"its evaluation"</a> })}
            </p>
            <DecisionPanel d=d.clone() decide=decide/>
            <PublishingPanel d=d.clone()/>
            <RatingsPanel d=d.clone()/>
            {match report {
                Some(r) => view! { <ReportView r=r version_id=d.version_id/> }.into_any(),
                None => view! {
                    <section class="panel"><p class="empty" id="no-report">
                        "The evaluation report appears here once the evaluation has run."
                    </p></section>
                }.into_any(),
            }}
            <TrainingCurves train=train_loss valid=valid_loss/>
            <BoundPanel bound=d.bound.clone()/>
            {d.can_delete.then(|| view! { <DeleteVersionPanel version_id=d.version_id delete=delete/> })}
        </div>
    }
    .into_any()
}

/// Deleting the version: what goes with it, the button, the refusal.
#[component]
fn DeleteVersionPanel(version_id: i64, delete: ServerAction<api::DeleteVersion>) -> impl IntoView {
    let error = crate::components::action_error(delete.value());
    view! {
        <section class="panel" id="delete-version">
            <h2>"Delete this version"</h2>
            <p class="hint">
                "Its training, evaluation and export jobs go with it: their checkpoints, trained files, reports and logs are removed from storage, and its blind ratings are dropped. "
                "The reviews stay, as the record of who decided what. An approved version cannot be deleted: a reviewer rejects it first."
            </p>
            <ActionForm action=delete attr:id="delete-version-form">
                <input type="hidden" name="version_id" value=version_id.to_string()/>
                <button type="submit" class="secondary" id="delete-version-button">"Delete version"</button>
            </ActionForm>
            {move || error.get().map(|e| view! { <p class="form-error" id="delete-version-error" role="alert">{e.to_string()}</p> })}
        </section>
    }
}

/// The downloads of an approved version, their checksums, and its card.
#[component]
fn PublishingPanel(d: VersionPage) -> impl IntoView {
    let p = d.publishing.clone();
    let approved = d.version.state == api::VersionState::Approved;
    let status = match (&p.export_job, approved) {
        (_, false) => Some("Downloads open once a reviewer approves this version.".to_owned()),
        (None, true) => Some("Approved: the downloads are being prepared.".to_owned()),
        (Some((_, api::JobState::Succeeded)), true) => None,
        (Some((id, api::JobState::Failed)), true) => Some(format!(
            "The export (job {id}) failed; its page says why. The adapter is offered once an export succeeds."
        )),
        (Some((id, state)), true) => Some(format!(
            "Exporting (job {id}, {}): the merged folder and GGUF files appear here when it is done.",
            state.label()
        )),
    };
    let job_link = p
        .export_job
        .map(|(id, _)| format!("/projects/{}/jobs/{id}", d.project_id));
    let downloads = p.downloads.clone();
    view! {
        <section class="panel" id="publishing">
            <h2>"Downloads"</h2>
            {status.map(|s| view! { <p class="hint" id="publishing-status">{s}" "{job_link.clone().map(|l| view! { <a href=l>"The export job"</a> })}</p> })}
            {(!downloads.is_empty()).then(|| view! {
                <table class="downloads stack" id="downloads">
                    <thead><tr><th>"What"</th><th>"File"</th><th>"Size"</th><th>"SHA-256"</th></tr></thead>
                    <tbody>
                        {downloads.into_iter().map(|row| view! {
                            <tr data-format=row.format.clone()>
                                <td data-label="What">{row.label()}</td>
                                <td data-label="File"><a href=row.href.clone() download=row.file_name.clone() class="download">{row.file_name.clone()}</a></td>
                                <td data-label="Size">{format::bytes(row.size as i64)}</td>
                                <td data-label="SHA-256"><code class="sha">{row.sha256.clone()}</code></td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
                <p class="hint">"Each archive holds the model card (README.md) and the files; check it with "<code>"sha256sum"</code>". Downloads resume where they stopped."</p>
            })}
            {p.gguf_refused.clone().map(|r| view! { <p class="hint" id="gguf-refused">{format!("No GGUF: {r}")}</p> })}
            {p.card.clone().map(|c| view! {
                <details class="card" open>
                    <summary>"Model card"</summary>
                    <pre id="model-card">{c}</pre>
                </details>
            })}
        </section>
    }
    .into_any()
}

#[component]
fn TrainingCurves(train: Vec<(f64, f64)>, valid: Vec<(f64, f64)>) -> impl IntoView {
    let x_max = Signal::derive(|| None);
    view! {
        <section class="panel">
            <h2>"Training"</h2>
            <div class="charts">
                <LineChart id="chart-loss" title="Training loss" y_label="Loss"
                    points=Signal::derive(move || train.clone()) x_max=x_max
                    empty=Signal::derive(|| "No training step was recorded.".to_owned())/>
                <LineChart id="chart-eval" title="Validation loss" y_label="Loss"
                    points=Signal::derive(move || valid.clone()) x_max=x_max
                    empty=Signal::derive(|| "No validation check was recorded.".to_owned())/>
            </div>
        </section>
    }
    .into_any()
}

#[component]
fn BoundPanel(bound: api::Bound) -> impl IntoView {
    view! {
        <section class="panel">
            <h2>"What a decision is bound to"</h2>
            <p class="hint">"A decision holds for exactly these: a change to any of them is a new version that needs its own review."</p>
            <dl class="facts hashes" id="bound">
                <dt>"Dataset (its splits)"</dt><dd><code>{bound.dataset_sha256}</code></dd>
                <dt>"Training settings"</dt><dd><code>{bound.settings_sha256}</code></dd>
                <dt>"Trained files"</dt><dd><code>{bound.artifact_sha256}</code></dd>
                <dt>"Evaluation report"</dt><dd><code>{bound.report_sha256.unwrap_or_else(|| "not yet".into())}</code></dd>
            </dl>
        </section>
    }
    .into_any()
}

#[component]
fn DecisionPanel(d: VersionPage, decide: ServerAction<api::Decide>) -> impl IntoView {
    let error = action_error(decide.value());
    let evaluated = d.report.is_some();
    view! {
        <section class="panel" id="decision">
            <h2>"Decision"</h2>
            {if d.reviews.is_empty() {
                view! { <p class="empty" id="no-decision">"Nobody has decided on this version yet."</p> }.into_any()
            } else {
                view! {
                    <ol class="decisions" id="decisions">
                        {d.reviews.iter().map(|r| {
                            let word = match r.decision { Decision::Approved => "approved", Decision::Rejected => "rejected" };
                            view! {
                                <li data-decision=word>
                                    <strong>{format!("{} {word}", r.reviewer)}</strong>
                                    {format!(", {}", format::utc(r.at))}
                                    {(!r.comment.is_empty()).then(|| view! { <blockquote>{r.comment.clone()}</blockquote> })}
                                </li>
                            }
                        }).collect_view()}
                    </ol>
                }.into_any()
            }}
            {d.cannot_review.clone().map(|why| view! { <p class="hint" id="cannot-review">{why}</p> })}
            {(d.can_review && evaluated).then(|| view! {
                <ActionForm action=decide attr:id="decide-form">
                    <input type="hidden" name="version_id" value=d.version_id.to_string()/>
                    <fieldset class="choices">
                        <legend>"Your decision"</legend>
                        <label><input type="radio" name="decision" value="approved" id="decide-approve" required/>" Approve: it may be published and served"</label>
                        <label><input type="radio" name="decision" value="rejected" id="decide-reject"/>" Reject: it needs more work"</label>
                    </fieldset>
                    <FieldError error=error field="decision"/>
                    <label for="decide-comment">"Comment"</label>
                    <textarea id="decide-comment" name="comment" rows="3" maxlength="4000"
                        placeholder="What you checked, and what the person who trained it should know."></textarea>
                    <FieldError error=error field="comment"/>
                    <FormError error=error fields=&["decision", "comment"]/>
                    <button type="submit" id="decide-submit">"Record decision"</button>
                </ActionForm>
            })}
        </section>
    }
    .into_any()
}

fn win_rate_text(w: &WinRate) -> String {
    match &w.rate {
        Some(r) => format!(
            "{} (95 % interval {} to {}) over {} rated: {} better, {} worse, {} ties, {} both bad",
            share(r.value),
            share(r.low),
            share(r.high),
            w.rated,
            w.wins,
            w.losses,
            w.ties,
            w.both_bad
        ),
        None if w.rated == 0 => "no example rated yet".into(),
        None => format!("{} rated, all \"both bad\"", w.rated),
    }
}

#[component]
fn RatingsPanel(d: VersionPage) -> impl IntoView {
    let r = d.ratings.clone();
    view! {
        <section class="panel" id="ratings">
            <h2>"Blind rating"</h2>
            <p class="hint">"Reviewers compare the tuned and the base model's answers without being told which is which. The win rate is the tuned model's share of wins (a tie counts half)."</p>
            <p id="win-rate"><strong>"Tuned model's win rate: "</strong>{win_rate_text(&r.overall)}</p>
            {(!r.per_reviewer.is_empty()).then(|| view! {
                <ul class="per-reviewer">
                    {r.per_reviewer.iter().map(|(name, w)| view! { <li>{format!("{name}: {}", win_rate_text(w))}</li> }).collect_view()}
                </ul>
            })}
            {r.agreement.clone().map(|a| view! {
                <p id="agreement">{format!(
                    "Reviewers agreed on {} of {} shared ratings{}.",
                    share(a.agreed), a.pairs,
                    a.kappa.map(|k| format!(" (Cohen's κ {k:.2})")).unwrap_or_default()
                )}</p>
            })}
            {(d.can_review && d.report.is_some()).then(|| view! {
                <p><a class="button" id="rate-link" href=format!("/versions/{}/rate", d.version_id)>
                    {if r.mine == 0 { "Rate answers blind".to_owned() } else { format!("Go on rating ({} done)", r.mine) }}
                </a></p>
            })}
        </section>
    }
    .into_any()
}

/// How the examples are listed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Order {
    Test,
    Improvement,
    Regression,
}

/// Tuned minus base, per example: exact match first, then token F1.
fn gain(e: &ExampleResult) -> f64 {
    match &e.base {
        Some(b) => {
            f64::from(u8::from(e.tuned.exact_match)) - f64::from(u8::from(b.exact_match))
                + (e.tuned.token_f1 - b.token_f1) / 2.0
        }
        None => 0.0,
    }
}

#[component]
fn ReportView(r: Report, version_id: i64) -> impl IntoView {
    let has_base = r.metrics.iter().any(|m| m.base.is_some());
    let fields: Vec<String> = r.fields.iter().map(|f| f.field.clone()).collect();
    let order = RwSignal::new(Order::Test);
    let worse_only = RwSignal::new(false);
    let field = RwSignal::new(String::new());
    let items = r.items.clone();
    let shown = Memo::new(move |_| {
        let f = field.get();
        let mut list: Vec<ExampleResult> = items
            .iter()
            .filter(|e| !worse_only.get() || gain(e) < 0.0)
            .filter(|e| f.is_empty() || e.tuned.fields.iter().any(|x| x.field == f))
            .cloned()
            .collect();
        match order.get() {
            Order::Test => {}
            Order::Improvement => list.sort_by(|a, b| gain(b).total_cmp(&gain(a))),
            Order::Regression => list.sort_by(|a, b| gain(a).total_cmp(&gain(b))),
        }
        list
    });
    view! {
        <section class="panel" id="metrics-panel">
            <h2>"Evaluation on the test split"</h2>
            <p class="hint">
                {format!("{} test examples, {} with an answer to score; greedy answers; 95 % intervals from {} bootstrap resamples (seed {}). ",
                    r.examples, r.answered, r.resamples, r.seed)}
                <a href=format!("/api/versions/{version_id}/report.json") id="report-json" download="">"Download the report (JSON)"</a>
            </p>
            {(!r.notes.is_empty()).then(|| view! {
                <ul class="notes" id="report-notes">{r.notes.iter().map(|n| view! { <li>{n.clone()}</li> }).collect_view()}</ul>
            })}
            <table class="metrics" id="metrics">
                <thead><tr>
                    <th scope="col">"Metric"</th>
                    {has_base.then(|| view! { <th scope="col">"Base model"</th> })}
                    <th scope="col">"Tuned model"</th>
                    {has_base.then(|| view! { <th scope="col">"Difference (tuned − base)"</th> })}
                    <th scope="col">"Examples"</th>
                </tr></thead>
                <tbody>
                    {r.metrics.iter().map(|m| {
                        let metric = m.metric;
                        let class = m.difference.as_ref().map_or("same", |d| verdict_class(metric, d));
                        view! {
                            <tr data-metric=format!("{metric:?}") class=class>
                                <th scope="row">{metric.label()}</th>
                                {has_base.then(|| view! { <td data-label="Base model">{m.base.as_ref().map(|i| interval_text(metric, i)).unwrap_or_default()}</td> })}
                                <td data-label="Tuned model">{interval_text(metric, &m.tuned)}</td>
                                {has_base.then(|| view! { <td data-label="Difference">{m.difference.as_ref().map(|i| interval_text(metric, i)).unwrap_or_default()}</td> })}
                                <td data-label="Examples">{m.examples}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            <p class="hint">"Green: the tuned model is better beyond chance (the interval leaves out zero); red: worse. Loss and perplexity: lower is better."</p>
            {(!r.fields.is_empty()).then(|| view! {
                <h3>"Accuracy per field"</h3>
                <table class="metrics" id="field-metrics">
                    <thead><tr><th scope="col">"Field"</th>
                        {has_base.then(|| view! { <th scope="col">"Base model"</th> })}
                        <th scope="col">"Tuned model"</th>
                        {has_base.then(|| view! { <th scope="col">"Difference"</th> })}
                        <th scope="col">"Examples"</th></tr></thead>
                    <tbody>
                        {r.fields.iter().map(|f| {
                            let m = Metric::ExactMatch;
                            let class = f.difference.as_ref().map_or("same", |d| verdict_class(m, d));
                            view! {
                                <tr class=class>
                                    <th scope="row">{f.field.clone()}</th>
                                    {has_base.then(|| view! { <td data-label="Base model">{f.base.as_ref().map(|i| interval_text(m, i)).unwrap_or_default()}</td> })}
                                    <td data-label="Tuned model">{interval_text(m, &f.tuned)}</td>
                                    {has_base.then(|| view! { <td data-label="Difference">{f.difference.as_ref().map(|i| interval_text(m, i)).unwrap_or_default()}</td> })}
                                    <td data-label="Examples">{f.examples}</td>
                                </tr>
                            }
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </section>
        <section class="panel" id="examples-panel">
            <h2>"Every test example"</h2>
            <div class="filters">
                <label for="example-order">"Order"</label>
                <select id="example-order" on:change=move |ev| order.set(match event_target_value(&ev).as_str() {
                    "improvement" => Order::Improvement,
                    "regression" => Order::Regression,
                    _ => Order::Test,
                })>
                    <option value="test">"As in the test split"</option>
                    <option value="improvement">"Biggest improvement first"</option>
                    <option value="regression">"Biggest regression first"</option>
                </select>
                {(!fields.is_empty()).then(|| view! {
                    <label for="example-field">"Field"</label>
                    <select id="example-field" on:change=move |ev| field.set(event_target_value(&ev))>
                        <option value="">"Any"</option>
                        {fields.iter().map(|f| view! { <option value=f.clone()>{f.clone()}</option> }).collect_view()}
                    </select>
                })}
                {has_base.then(|| view! {
                    <label class="check"><input type="checkbox" id="worse-only" on:change=move |ev| worse_only.set(event_target_checked(&ev))/>" Only where the tuned model is worse"</label>
                })}
            </div>
            <p class="hint" id="examples-count">{move || format!("{} shown", shown.with(Vec::len))}</p>
            <ol class="examples" id="examples">
                <For each=move || shown.get() key=|e| e.line let:e>
                    <ExampleCard e=e/>
                </For>
            </ol>
        </section>
    }
}

/// `text` with the words the reference does not have marked.
fn marked(text: &str, reference: &str) -> impl IntoView {
    let known: std::collections::HashSet<String> = reference
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    text.split_inclusive(char::is_whitespace)
        .map(|w| {
            if known.contains(&w.trim().to_lowercase()) {
                view! { <span>{w.to_owned()}</span> }.into_any()
            } else {
                view! { <mark>{w.to_owned()}</mark> }.into_any()
            }
        })
        .collect_view()
}

/// A model's answer with the words the reference lacks marked; an answer
/// of nothing but whitespace says so instead of showing an empty box.
#[component]
fn MarkedAnswer(text: String, reference: String) -> impl IntoView {
    if text.trim().is_empty() {
        view! {
            <pre class="blank"></pre>
            <p class="hint">"An empty answer: only spaces or line breaks."</p>
        }
        .into_any()
    } else {
        view! { <pre>{marked(&text, &reference)}</pre> }.into_any()
    }
}

#[component]
fn ExampleCard(e: ExampleResult) -> impl IntoView {
    let g = gain(&e);
    let class = if g > 0.0 {
        "example better"
    } else if g < 0.0 {
        "example worse"
    } else {
        "example"
    };
    let score = |a: &hone_protocol::evaluation::Answer| {
        let mut s = format!("F1 {:.2}", a.token_f1);
        if a.exact_match {
            s.push_str(" · exact");
        }
        if let Some(ok) = a.format_ok {
            s.push_str(if ok {
                " · format right"
            } else {
                " · format wrong"
            });
        }
        let right = a.fields.iter().filter(|f| f.right).count();
        if !a.fields.is_empty() {
            s.push_str(&format!(" · {right} of {} fields right", a.fields.len()));
        }
        s
    };
    view! {
        <li class=class data-line=e.line.to_string()>
            <p class="meta">{format!("Test line {}", e.line)}</p>
            <details><summary>"Prompt"</summary><pre class="prompt">{e.prompt.clone()}</pre></details>
            <div class="answers">
                <div><h4>"Reference"</h4><pre>{e.reference.clone()}</pre></div>
                {e.base.clone().map(|b| view! {
                    <div><h4>"Base model"</h4><MarkedAnswer text=b.text.clone() reference=e.reference.clone()/><p class="meta">{score(&b)}</p></div>
                })}
                <div><h4>"Tuned model"</h4><MarkedAnswer text=e.tuned.text.clone() reference=e.reference.clone()/><p class="meta">{score(&e.tuned)}</p></div>
            </div>
        </li>
    }
}

#[component]
pub fn RatePage() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let version = move || {
        params
            .read()
            .get("version")
            .and_then(|s| s.parse::<i64>().ok())
    };
    let line = move || {
        query
            .read()
            .get("line")
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let rate = ServerAction::<api::Rate>::new();
    let data = Resource::new(
        move || (version(), line(), rate.version().get()),
        |(v, line, done)| async move {
            match v {
                // After a rating, the next unrated pair.
                Some(v) => api::load_rating(v, if done > 0 { 0 } else { line }).await,
                None => Err(AppError::NotFound("that model version".into())),
            }
        },
    );
    loaded(data, move |d| view! { <RateView d=d rate=rate/> })
}

#[component]
fn RateView(d: RatingPage, rate: ServerAction<api::Rate>) -> impl IntoView {
    let error = action_error(rate.value());
    let back = format!("/projects/{}/versions/{}", d.project_id, d.number);
    let Some(item) = d.item.clone() else {
        return view! {
            <p class="crumbs"><a href=back.clone()>{format!("{} · version {}", d.project_name, d.number)}</a></p>
            <h1>"Blind rating"</h1>
            <section class="panel"><p id="all-rated">{format!("You have rated all {} examples. Thank you.", d.total)}</p>
            <p><a href=back>"Back to the version"</a></p></section>
        }
        .into_any();
    };
    let version_id = d.version_id;
    let line = item.line;
    let comment = RwSignal::new(item.comment.clone().unwrap_or_default());
    let send = move |choice: &'static str| {
        rate.dispatch(api::Rate {
            version_id,
            line,
            choice: choice.to_owned(),
            comment: comment.get_untracked(),
        });
    };
    // 1 / 2 / 3 / 4, or a / b / t / x: the four choices, unless typing.
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let handle = window_event_listener(leptos::ev::keydown, move |ev| {
            let typing = ev
                .target()
                .and_then(|t| t.dyn_into::<web_sys::HtmlElement>().ok())
                .is_some_and(|el| {
                    matches!(el.tag_name().as_str(), "TEXTAREA" | "INPUT" | "SELECT")
                });
            if typing || ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
                return;
            }
            let choice = match ev.key().as_str() {
                "1" | "a" => "a",
                "2" | "b" => "b",
                "3" | "t" => "tie",
                "4" | "x" => "both_bad",
                _ => return,
            };
            ev.prevent_default();
            send(choice);
        });
        on_cleanup(move || handle.remove());
    }
    let was = item.choice;
    let pressed = move |c: Choice| (was == Some(c)).then_some("true");
    view! {
        <p class="crumbs"><a href=back>{format!("{} · version {}", d.project_name, d.number)}</a></p>
        <h1>"Blind rating"</h1>
        <p class="lede" id="rate-progress">{format!("Example {} of {} · you have rated {}", item.index, d.total, d.rated)}</p>
        <section class="panel" id="rate-item" data-line=item.line.to_string()>
            <details open=true><summary>"Prompt"</summary><pre class="prompt">{item.prompt.clone()}</pre></details>
            <h3>"Reference answer"</h3>
            <pre id="rate-reference">{item.reference.clone()}</pre>
            <div class="answers two">
                <div><h3>"Answer A"</h3><BlindAnswer id="answer-a" text=item.a.clone()/></div>
                <div><h3>"Answer B"</h3><BlindAnswer id="answer-b" text=item.b.clone()/></div>
            </div>
            <label for="rate-comment">"Comment (optional)"</label>
            <textarea id="rate-comment" rows="2" maxlength="4000" prop:value=move || comment.get()
                on:input=move |ev| comment.set(event_target_value(&ev))></textarea>
            <div class="rate-buttons">
                <button type="button" id="choose-a" aria-pressed=pressed(Choice::A) on:click=move |_| send("a")>"A is better "<kbd>"1"</kbd></button>
                <button type="button" id="choose-b" aria-pressed=pressed(Choice::B) on:click=move |_| send("b")>"B is better "<kbd>"2"</kbd></button>
                <button type="button" id="choose-tie" aria-pressed=pressed(Choice::Tie) on:click=move |_| send("tie")>"Tie "<kbd>"3"</kbd></button>
                <button type="button" id="choose-both-bad" aria-pressed=pressed(Choice::BothBad) on:click=move |_| send("both_bad")>"Both bad "<kbd>"4"</kbd></button>
            </div>
            <p class="hint">"Keys 1 to 4 choose. The answers come in an order fixed for you and this example; nothing says which model wrote which."</p>
            <FieldError error=error field="line"/>
            <FormError error=error fields=&["line"]/>
        </section>
    }
    .into_any()
}

/// The reviewer's work list, on the home page (nothing when empty).
#[component]
pub fn AwaitingReviewList(data: Resource<Result<Vec<AwaitingReview>, AppError>>) -> impl IntoView {
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match data.await {
                    Ok(list) if !list.is_empty() => view! { <AwaitingView list=list/> }.into_any(),
                    _ => ().into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn AwaitingView(list: Vec<AwaitingReview>) -> impl IntoView {
    view! {
        <section class="panel" id="awaiting-review">
            <h2>"Awaiting your review"</h2>
            <ul class="awaiting">
                {list.into_iter().map(|a| view! {
                    <li>
                        <a href=format!("/projects/{}/versions/{}", a.project_id, a.number)>{format!("{} · version {}", a.project, a.number)}</a>
                        <span class="meta">{format!(" · team {} · {} by {} · waiting since {}", a.team, a.base_model, a.launched_by, format::utc(a.since))}</span>
                    </li>
                }).collect_view()}
            </ul>
        </section>
    }
}

#[component]
pub fn NotificationsPage() -> impl IntoView {
    let mark = ServerAction::<api::MarkRead>::new();
    let data = Resource::new(move || mark.version().get(), |_| api::load_notifications());
    loaded(data, move |d| view! { <NotificationsView d=d mark=mark/> })
}

#[component]
fn NotificationsView(d: Notifications, mark: ServerAction<api::MarkRead>) -> impl IntoView {
    view! {
        <h1>"Notifications"</h1>
        {(d.unread > 0).then(|| view! {
            <ActionForm action=mark attr:class="inline">
                <input type="hidden" name="id" value="0"/>
                <button type="submit" id="mark-all-read">{format!("Mark all {} as read", d.unread)}</button>
            </ActionForm>
        })}
        {if d.items.is_empty() {
            view! { <p class="empty" id="no-notifications">"Nothing yet: you hear here when a job ends, a version awaits you, or a reviewer decides."</p> }.into_any()
        } else {
            view! {
                <ul class="notifications" id="notifications">
                    {d.items.into_iter().map(|n| view! {
                        <li class=if n.read { "panel read" } else { "panel unread" } data-kind=n.kind.clone()>
                            <a href=n.link.clone()>{n.message.clone()}</a>
                            <span class="meta">{format!(" · {}", format::utc(n.at))}</span>
                        </li>
                    }).collect_view()}
                </ul>
            }.into_any()
        }}
    }
}

/// One of the two answers; an answer of nothing but whitespace says so
/// instead of showing an empty box.
#[component]
fn BlindAnswer(id: &'static str, text: String) -> impl IntoView {
    if text.trim().is_empty() {
        view! {
            <pre id=id class="blank"></pre>
            <p class="hint">"An empty answer: only spaces or line breaks."</p>
        }
        .into_any()
    } else {
        view! { <pre id=id>{text}</pre> }.into_any()
    }
}
