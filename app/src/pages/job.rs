//! One training job: its state in words (why it waits, why it failed and
//! what to do), its progress and curves growing live over Server-Sent
//! Events, the files it produced, cancelling, and every setting it used.

use crate::api::{self, AppError, JobEvent, JobEventBody, JobPage as Data, JobState};
use crate::components::charts::LineChart;
use crate::components::loaded;
use crate::format;
use hone_protocol::{settings, Cause, Event};
use leptos::prelude::*;
use leptos::serde_json::{self, Value};
use leptos_router::hooks::use_params_map;

#[component]
pub fn JobPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("job").and_then(|s| s.parse::<i64>().ok());
    let data = Resource::new(id, |id| async move {
        match id {
            Some(id) => api::load_job(id).await,
            None => Err(AppError::NotFound("that job".into())),
        }
    });
    // The events live above the view, which is drawn again whenever the
    // page's data reloads (after each state change).
    let live = Live::new();
    #[cfg(feature = "hydrate")]
    stream::follow_while_running(data, live);
    // While it waits, its reason and place change without an event (the
    // scheduler rewrites them): ask again now and then (browser only).
    Effect::new(move |_| {
        let waiting = data.get().is_some_and(|d| {
            d.is_ok_and(|d| matches!(d.job.state, JobState::Queued | JobState::Paused))
        });
        if waiting {
            set_timeout(move || data.refetch(), WAITING_EVERY);
        }
    });
    loaded(data, move |d| view! { <JobView d=d live=live data=data/> })
}

/// How often a waiting job's page asks for its reason again.
const WAITING_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether the page gets new events.
// Only the browser's stream moves it off `Off`.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Updates {
    /// Not following (yet): the job had ended when the page loaded.
    Off,
    Live,
    /// The connection dropped; the browser tries again by itself.
    Retrying,
    /// The server refused or closed the stream for good.
    Lost,
}

/// Everything recorded about the job so far, and the stream that adds to it.
#[derive(Clone, Copy)]
struct Live {
    events: RwSignal<Vec<JobEvent>>,
    updates: RwSignal<Updates>,
    /// The open `EventSource` with its callbacks (browser only: a value
    /// made during server rendering could be dropped on another thread).
    #[cfg(feature = "hydrate")]
    source: StoredValue<Option<stream::Source>, LocalStorage>,
}

impl Live {
    fn new() -> Live {
        Live {
            events: RwSignal::new(Vec::new()),
            updates: RwSignal::new(Updates::Off),
            #[cfg(feature = "hydrate")]
            source: StoredValue::new_local(None),
        }
    }

    /// Adds the events not shown yet (ids only grow); whether any was new.
    fn merge(&self, new: &[JobEvent]) -> bool {
        let last = self
            .events
            .with_untracked(|e| e.last().map_or(i64::MIN, |e| e.id));
        let fresh: Vec<JobEvent> = new.iter().filter(|e| e.id > last).cloned().collect();
        if fresh.is_empty() {
            return false;
        }
        self.events.update(|e| e.extend(fresh));
        true
    }
}

/// What the events say, worked out once per change.
#[derive(Clone, Debug, Default, PartialEq)]
struct Progress {
    /// The latest state change and its note.
    state: Option<(JobState, Option<String>)>,
    total_steps: Option<u64>,
    /// `(step, training loss)`, `(step, learning rate)`, `(step, validation loss)`.
    loss: Vec<(f64, f64)>,
    rate: Vec<(f64, f64)>,
    eval: Vec<(f64, f64)>,
    /// The latest step's numbers.
    step: Option<u64>,
    epoch: Option<f64>,
    tokens_per_s: Option<f64>,
    eta_s: Option<f64>,
    best_eval_loss: Option<f64>,
    /// The engine's own words when it could not finish.
    engine_failure: Option<(String, Cause)>,
    /// Milliseconds from the first start to the latest event.
    elapsed_ms: Option<i64>,
    /// Milliseconds spent running (all attempts together).
    device_ms: i64,
}

fn progress(events: &[JobEvent]) -> Progress {
    let mut p = Progress::default();
    let mut started_at: Option<i64> = None;
    let mut running_since: Option<i64> = None;
    for e in events {
        match &e.body {
            JobEventBody::State { state, note } => {
                let running = matches!(state, JobState::Running | JobState::Cancelling);
                match (running, running_since) {
                    (true, None) => running_since = Some(e.at_ms),
                    (false, Some(since)) => {
                        p.device_ms += e.at_ms - since;
                        running_since = None;
                    }
                    _ => {}
                }
                if *state == JobState::Running && started_at.is_none() {
                    started_at = Some(e.at_ms);
                }
                p.state = Some((*state, note.clone()));
            }
            JobEventBody::Engine { event } => match event {
                Event::Started { total_steps, .. } => p.total_steps = Some(*total_steps),
                Event::Step {
                    step,
                    epoch,
                    loss,
                    learning_rate,
                    tokens_per_s,
                    eta_s,
                    ..
                } => {
                    let x = *step as f64;
                    p.loss.push((x, *loss));
                    p.rate.push((x, *learning_rate));
                    p.step = Some(*step);
                    p.epoch = Some(*epoch);
                    p.tokens_per_s = Some(*tokens_per_s).filter(|v| v.is_finite());
                    p.eta_s = Some(*eta_s).filter(|v| v.is_finite());
                }
                Event::Eval { step, loss, .. } => p.eval.push((*step as f64, *loss)),
                Event::Finished {
                    step,
                    best_eval_loss,
                    ..
                } => {
                    p.step = Some(*step);
                    p.best_eval_loss = *best_eval_loss;
                }
                Event::Failed { reason, cause } => {
                    p.engine_failure = Some((reason.clone(), *cause));
                }
                Event::Evaluating { done, total } => {
                    p.step = Some(*done);
                    p.total_steps = Some(*total);
                }
                Event::Checkpoint { .. } | Event::Resumed { .. } => {}
            },
        }
    }
    let last = events.last().map(|e| e.at_ms);
    if let (Some(since), Some(last)) = (running_since, last) {
        p.device_ms += last - since;
    }
    if let (Some(start), Some(last)) = (started_at, last) {
        p.elapsed_ms = Some(last - start);
    }
    if p.best_eval_loss.is_none() {
        p.best_eval_loss = p
            .eval
            .iter()
            .map(|e| e.1)
            .filter(|v| v.is_finite())
            .reduce(f64::min);
    }
    p
}

/// Who can fix a failure, in words.
fn cause_words(c: Cause) -> &'static str {
    match c {
        Cause::User => "The cause is in the data or the settings: you can fix it.",
        Cause::System => {
            "The cause is the system, not your data: an administrator can look into it."
        }
    }
}

#[component]
fn JobView(d: Data, live: Live, data: Resource<Result<Data, AppError>>) -> impl IntoView {
    live.merge(&d.events);
    let p = Memo::new(move |_| live.events.with(|e| progress(e)));
    let initial_state = d.job.state;
    let state = Memo::new(move |_| p.with(|p| p.state.as_ref().map_or(initial_state, |s| s.0)));
    let job = d.job.clone();
    let total = job.total_steps;
    let total_steps = Memo::new(move |_| p.with(|p| p.total_steps).or(total));
    // A running job's charts span the whole run, so the lines grow across
    // them; an ended one's span what it did.
    let x_max = Signal::derive(move || {
        total_steps
            .get()
            .filter(|_| !state.get().is_final())
            .map(|t| t as f64)
    });
    let empty = move |first: String| {
        Signal::derive(move || {
            if state.get().is_final() {
                "The run ended before the first point.".to_owned()
            } else {
                first.clone()
            }
        })
    };
    let logging = d.config.logging_steps;
    let eval_every = d.config.eval_steps;
    let dataset_href = job
        .dataset_id
        .map(|id| format!("/projects/{}/datasets/{id}", d.project_id));
    let device = d.device.as_ref().map_or_else(
        || "Not chosen yet: a device is picked when the job starts.".to_owned(),
        format::device,
    );
    let waiting = job.waiting_reason.clone();
    let failure = job.failure.clone();
    let evaluates = job.evaluates;
    let step_text = move || {
        let step = p.with(|p| p.step).or(job.step);
        if evaluates.is_some() {
            return match (step, total_steps.get()) {
                (Some(s), Some(t)) => format!("{s} of {t} test examples scored"),
                _ if state.get().is_final() => "No test example was scored.".to_owned(),
                _ => "Not started yet".to_owned(),
            };
        }
        match (step, total_steps.get()) {
            (Some(s), Some(t)) => format!("Step {s} of {t}"),
            (Some(s), None) => format!("Step {s}"),
            (None, _) if state.get().is_final() => "No training step was run.".to_owned(),
            (None, Some(t)) => format!("Step 0 of {t}"),
            (None, None) => "Not started yet".to_owned(),
        }
    };
    let fraction = move || {
        let step = p.with(|p| p.step).or(job.step)?;
        let t = total_steps.get().filter(|t| *t > 0)?;
        Some((step as f64 / t as f64).min(1.0))
    };
    let updates = live.updates;
    view! {
        <div id="job-page">
            <p class="crumbs">
                <a href="/">"Projects"</a>" / "
                <a href=format!("/projects/{}", d.project_id)>{d.project_name.clone()}</a>" / models"
            </p>
            <h1>{match evaluates {
                Some(t) => format!("Evaluation of job {t}: {} on {}", d.job.dataset_name, d.job.base_model),
                None => format!("{} on {}", d.job.dataset_name, d.job.base_model),
            }}</h1>
            <section class="panel" id="job-status">
                <p class="state-line">
                    <span
                        id="job-state"
                        class=move || format!("state state-{}", state.get().as_str())
                        data-state=move || state.get().as_str()
                    >
                        {move || state.get().label()}
                    </span>
                    {move || p
                        .with(|p| p.state.as_ref().and_then(|s| s.1.clone()))
                        // A failure's note is its reason, shown below in full.
                        .filter(|_| state.get() != JobState::Failed)
                        .map(|n| view! { <span class="note" id="state-note">{n}</span> })}
                    {move || match updates.get() {
                        Updates::Live => Some(view! { <span class="live" id="live">"● updating live"</span> }.into_any()),
                        Updates::Retrying => Some(view! { <span class="live lost">"reconnecting…"</span> }.into_any()),
                        Updates::Lost => Some(view! { <span class="live lost">"Live updates stopped: reload the page to see the latest."</span> }.into_any()),
                        Updates::Off => None,
                    }}
                </p>
                {move || matches!(state.get(), JobState::Queued | JobState::Paused).then(|| view! {
                    <p class="advice warn" id="waiting-reason">
                        {waiting.clone().unwrap_or_else(|| "Waiting for a free device.".into())}
                    </p>
                })}
                {move || (state.get() == JobState::Failed).then(|| {
                    let engine = p.with(|p| p.engine_failure.clone());
                    let note = p.with(|p| p.state.as_ref().and_then(|s| s.1.clone()));
                    let (reason, cause, advice) = match (&failure, engine) {
                        (Some(f), _) => (f.reason.clone(), Some(f.cause), Some(f.advice.clone()).filter(|a| !a.is_empty())),
                        (None, Some((r, c))) => (r, Some(c), None),
                        (None, None) => (note.unwrap_or_else(|| "The job failed.".into()), None, None),
                    };
                    view! {
                        <div class="advice stop" id="failure" data-cause=cause.map(|c| match c { Cause::User => "user", Cause::System => "system" })>
                            <p><strong>"Why it failed: "</strong>{reason}</p>
                            {cause.map(|c| view! { <p id="failure-cause">{cause_words(c)}</p> })}
                            {advice.map(|a| view! { <p id="failure-advice"><strong>"What to do: "</strong>{a}</p> })}
                        </div>
                    }
                })}
                <div class="job-progress">
                    <p id="step">{step_text}</p>
                    {move || fraction().map(|f| view! {
                        <progress max="100" value=format!("{:.1}", 100.0 * f) aria-labelledby="step"></progress>
                    })}
                </div>
                <ul class="cards" id="job-numbers">
                    {move || p.with(|p| p.epoch).map(|e| view! { <li><span class="n" id="epoch">{format!("{e:.2}")}</span>" epochs done"</li> })}
                    {move || p.with(|p| p.tokens_per_s).map(|t| view! { <li><span class="n" id="tokens-per-s">{format!("{t:.0}")}</span>" tokens/s"</li> })}
                    {move || p.with(|p| p.elapsed_ms).filter(|ms| *ms >= 1000).map(|ms| view! { <li><span class="n" id="elapsed">{format::duration(ms as f64 / 1000.0)}</span>" elapsed"</li> })}
                    {move || p.with(|p| p.eta_s).filter(|_| !state.get().is_final()).map(|s| view! { <li><span class="n" id="eta">{format::duration(s)}</span>" left (estimate)"</li> })}
                    {move || p.with(|p| (p.device_ms >= 1000).then_some(p.device_ms)).map(|ms| view! { <li><span class="n" id="device-time">{format::duration(ms as f64 / 1000.0)}</span>" of device time"</li> })}
                </ul>
                <CancelButton id=d.job.id can_cancel=d.can_cancel state=state data=data/>
                <DeleteJobButton id=d.job.id project_id=d.project_id can_delete=d.can_delete state=state/>
            </section>
            <section class="panel">
                <h2>"What is trained"</h2>
                <dl class="facts" id="job-facts">
                    <dt>"Base model"</dt><dd id="job-model">{d.job.base_model.clone()}</dd>
                    <dt>"Method"</dt><dd id="job-method">{format::method(d.job.method)}</dd>
                    <dt>"Dataset"</dt><dd>{match dataset_href {
                        Some(href) => view! { <a href=href id="job-dataset">{d.job.dataset_name.clone()}</a> }.into_any(),
                        None => view! { <span id="job-dataset">{d.job.dataset_name.clone()}</span> }.into_any(),
                    }}</dd>
                    <dt>"Device"</dt><dd id="job-device">{device}</dd>
                    <dt>"Launched"</dt><dd>{format!("by {}, {}", d.job.created_by, format::utc(d.job.created_at))}</dd>
                </dl>
            </section>
            <section class="panel" hidden=evaluates.is_some()>
                <h2>"Progress"</h2>
                <div class="charts">
                    <LineChart
                        id="chart-loss"
                        title="Training loss"
                        y_label="Loss"
                        points=Signal::derive(move || p.with(|p| p.loss.clone()))
                        x_max=x_max
                        empty=empty(format!("First point after step {logging}."))
                    />
                    <LineChart
                        id="chart-eval"
                        title="Validation loss"
                        y_label="Loss"
                        points=Signal::derive(move || p.with(|p| p.eval.clone()))
                        x_max=x_max
                        empty=empty(format!("First check after step {eval_every}."))
                    />
                    <LineChart
                        id="chart-lr"
                        title="Learning rate"
                        y_label="Learning rate"
                        from_zero=true
                        points=Signal::derive(move || p.with(|p| p.rate.clone()))
                        x_max=x_max
                        empty=empty(format!("First point after step {logging}."))
                    />
                </div>
                <p class="hint">
                    "Lower loss is better. The validation loss is measured on examples the model does not train on: "
                    "when it stops falling while the training loss still falls, the model has started to memorise. "
                    "The learning rate is the size of each correction."
                </p>
            </section>
            {move || (state.get() == JobState::Succeeded && evaluates.is_none()).then(|| view! { <Results p=p/> })}
            <Artifacts artifacts=d.artifacts.clone() evaluation=evaluates.is_some()/>
            <SettingsList config=d.config.clone()/>
        </div>
    }
    .into_any()
}

/// The final numbers of a finished run.
#[component]
fn Results(p: Memo<Progress>) -> impl IntoView {
    let last_loss = move || p.with(|p| p.loss.iter().rev().map(|l| l.1).find(|v| v.is_finite()));
    view! {
        <section class="panel" id="results">
            <h2>"Result"</h2>
            <ul class="cards">
                <li><span class="n" id="final-loss">{move || last_loss().map_or("—".into(), format::number)}</span>" final training loss"</li>
                <li><span class="n" id="best-eval-loss">{move || p.with(|p| p.best_eval_loss).map_or("—".into(), format::number)}</span>" best validation loss"</li>
            </ul>
            <p class="hint">"The validation loss is measured on examples the model never trained on: when it stops falling, more training would only memorise."</p>
        </section>
    }
}

/// The files of the model version the job produced.
#[component]
fn Artifacts(artifacts: Vec<api::Artifact>, evaluation: bool) -> impl IntoView {
    let (title, hint) = if evaluation {
        (
            "The evaluation report",
            "The report the engine wrote; a reviewer's decision is bound to this SHA-256.",
        )
    } else {
        (
            "The model's files",
            "Downloads come once a reviewer approves this model version. The SHA-256 pins each file's exact content.",
        )
    };
    (!artifacts.is_empty()).then(|| {
        view! {
            <section class="panel">
                <h2>{title}</h2>
                <p class="hint">{hint}</p>
                <table class="files" id="artifacts">
                    <thead><tr><th scope="col">"File"</th><th scope="col">"Size"</th><th scope="col">"SHA-256"</th></tr></thead>
                    <tbody>
                        {artifacts.into_iter().map(|a| view! {
                            <tr class="artifact">
                                <td><code>{a.path}</code></td>
                                <td>{format::bytes(a.size)}</td>
                                <td><code class="hash">{a.sha256}</code></td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            </section>
        }
    })
}

/// Every setting the run uses, for the curious and for repeating it.
#[component]
fn SettingsList(config: hone_protocol::TrainConfig) -> impl IntoView {
    let method = config.method;
    let values = serde_json::to_value(&config).unwrap_or(Value::Null);
    let rows = settings()
        .iter()
        .filter(|s| s.applies_to(method))
        .map(|s| {
            let v = match values.get(s.key) {
                None | Some(Value::Null) => "automatic".to_owned(),
                Some(Value::Bool(b)) => if *b { "on" } else { "off" }.to_owned(),
                Some(Value::String(t)) => t.clone(),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
                Some(other) => other.to_string(),
            };
            view! { <dt>{s.label}" "<code class="key">{s.key}</code></dt><dd data-key=s.key>{v}</dd> }
        })
        .collect_view();
    view! {
        <details class="panel job-settings" id="job-settings">
            <summary>"Settings"</summary>
            <dl class="facts">{rows}</dl>
        </details>
    }
}

/// "Delete", with a confirmation, once a training job failed or was
/// cancelled: its checkpoints, files and log leave storage; then the
/// project's page.
#[component]
fn DeleteJobButton(
    id: i64,
    project_id: i64,
    can_delete: bool,
    state: Memo<JobState>,
) -> impl IntoView {
    let confirming = RwSignal::new(false);
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let deletable =
        move || can_delete && matches!(state.get(), JobState::Failed | JobState::Cancelled);
    let confirm = move |_| {
        sending.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            let r = api::delete_job(id).await;
            sending.set(false);
            confirming.set(false);
            match r {
                Ok(_) => crate::components::go(&format!("/projects/{project_id}")),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        {move || deletable().then(|| view! {
            <div class="cancel" id="delete-job">
                {move || if confirming.get() {
                    view! {
                        <div class="confirm" role="alertdialog" aria-labelledby="delete-job-question">
                            <p id="delete-job-question">
                                "Delete this job? Its checkpoints, files and log are removed from storage for good. The device time it used stays in the team's usage."
                            </p>
                            <button type="button" id="delete-job-confirm" class="danger" on:click=confirm disabled=move || sending.get()>
                                {move || if sending.get() { "Deleting…" } else { "Yes, delete it" }}
                            </button>
                            " "
                            <button type="button" id="delete-job-keep" class="secondary" on:click=move |_| confirming.set(false)>"Keep it"</button>
                        </div>
                    }.into_any()
                } else {
                    view! { <button type="button" id="delete-job-button" class="secondary" on:click=move |_| confirming.set(true)>"Delete job"</button> }.into_any()
                }}
                {move || error.get().map(|e| view! { <p class="form-error" id="delete-job-error" role="alert">{e}</p> })}
            </div>
        })}
    }
}

/// "Cancel", with a confirmation: a running job checkpoints, then stops.
#[component]
fn CancelButton(
    id: i64,
    can_cancel: bool,
    state: Memo<JobState>,
    data: Resource<Result<Data, AppError>>,
) -> impl IntoView {
    let confirming = RwSignal::new(false);
    let sending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let cancellable = move || {
        can_cancel
            && matches!(
                state.get(),
                JobState::ValidatingFiles | JobState::Queued | JobState::Running
            )
    };
    let confirm = move |_| {
        sending.set(true);
        error.set(None);
        leptos::task::spawn_local(async move {
            let r = api::cancel_job(id).await;
            sending.set(false);
            confirming.set(false);
            match r {
                // The state change arrives as an event too; reloading also
                // covers a page whose live updates stopped.
                Ok(()) => data.refetch(),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    view! {
        {move || cancellable().then(|| view! {
            <div class="cancel">
                {move || if confirming.get() {
                    view! {
                        <div class="confirm" role="alertdialog" aria-labelledby="cancel-question">
                            <p id="cancel-question">
                                {if state.get() == JobState::Running {
                                    "Stop this training? The run saves a checkpoint, then stops."
                                } else {
                                    "Cancel this job? It has not started, so it simply leaves the queue."
                                }}
                            </p>
                            <button type="button" id="cancel-confirm" class="danger" on:click=confirm disabled=move || sending.get()>
                                {move || if sending.get() { "Stopping…" } else { "Yes, stop it" }}
                            </button>
                            " "
                            <button type="button" id="cancel-keep" class="secondary" on:click=move |_| confirming.set(false)>"Keep it"</button>
                        </div>
                    }.into_any()
                } else {
                    view! { <button type="button" id="cancel" class="secondary" on:click=move |_| confirming.set(true)>"Cancel"</button> }.into_any()
                }}
            </div>
        })}
        {move || error.get().map(|e| view! { <p class="form-error" id="cancel-error" role="alert">{e}</p> })}
    }
}

/// The browser's side of `GET /api/jobs/{id}/events`.
#[cfg(feature = "hydrate")]
mod stream {
    use super::{Data, Live, Updates};
    use crate::api::{AppError, JobEvent, JobEventBody};
    use leptos::prelude::*;
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;
    use web_sys::{Event, EventSource, MessageEvent};

    /// An open stream and the callbacks it calls; dropping it closes it.
    pub struct Source {
        source: EventSource,
        _on_message: Closure<dyn FnMut(MessageEvent)>,
        _on_open: Closure<dyn FnMut(Event)>,
        _on_error: Closure<dyn FnMut(Event)>,
    }

    impl Drop for Source {
        fn drop(&mut self) {
            self.source.close();
        }
    }

    /// Opens the stream once the page knows the job has not ended, and
    /// closes it when the page goes away.
    pub fn follow_while_running(data: Resource<Result<Data, AppError>>, live: Live) {
        let ended = StoredValue::new(false);
        Effect::new(move |_| {
            let Some(Ok(d)) = data.get() else { return };
            let open = live.source.with_value(Option::is_some);
            if d.job.state.is_final() || open || ended.get_value() {
                return;
            }
            if let Some(s) = open_source(d.job.id, live, data, ended) {
                live.source.set_value(Some(s));
            }
        });
        on_cleanup(move || live.source.set_value(None));
    }

    fn open_source(
        job: i64,
        live: Live,
        data: Resource<Result<Data, AppError>>,
        ended: StoredValue<bool>,
    ) -> Option<Source> {
        let Ok(source) = EventSource::new(&format!("/api/jobs/{job}/events")) else {
            live.updates.set(Updates::Lost);
            return None;
        };
        // Dropping the callbacks inside their own call is not allowed:
        // closing happens at once, freeing them a moment later.
        let finish = move |source: &EventSource| {
            source.close();
            ended.set_value(true);
            leptos::task::spawn_local(async move { live.source.set_value(None) });
        };
        let stream = source.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            let Some(text) = e.data().as_string() else {
                return;
            };
            let Ok(event) = serde_json::from_str::<JobEvent>(&text) else {
                return;
            };
            // The stream starts from the beginning; what the page already
            // shows is skipped.
            let fresh = live.merge(std::slice::from_ref(&event));
            if let JobEventBody::State { state, .. } = &event.body {
                if state.is_final() {
                    live.updates.set(Updates::Off);
                    finish(&stream);
                }
                // The page's facts (device, why it waits, failure advice,
                // files) change with the state: read them again.
                if fresh {
                    data.refetch();
                }
            }
        });
        let on_open = Closure::<dyn FnMut(Event)>::new(move |_| live.updates.set(Updates::Live));
        let watched = source.clone();
        let on_error = Closure::<dyn FnMut(Event)>::new(move |_| {
            // CLOSED: refused for good (signed out, no access); otherwise
            // the browser reconnects with Last-Event-ID by itself.
            if watched.ready_state() == EventSource::CLOSED {
                live.updates.set(Updates::Lost);
            } else if !ended.get_value() {
                live.updates.set(Updates::Retrying);
            }
        });
        source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        Some(Source {
            source,
            _on_message: on_message,
            _on_open: on_open,
            _on_error: on_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: i64, at_ms: i64, body: JobEventBody) -> JobEvent {
        JobEvent { id, at_ms, body }
    }

    fn state(s: JobState) -> JobEventBody {
        JobEventBody::State {
            state: s,
            note: None,
        }
    }

    fn step(step: u64, loss: f64) -> JobEventBody {
        JobEventBody::Engine {
            event: Event::Step {
                step,
                epoch: step as f64 / 10.0,
                loss,
                learning_rate: 1e-4,
                grad_norm: 1.0,
                tokens_per_s: 500.0,
                eta_s: 30.0,
            },
        }
    }

    #[test]
    fn progress_follows_the_events() {
        let events = [
            at(1, 0, state(JobState::Queued)),
            at(2, 1_000, state(JobState::Running)),
            at(
                3,
                2_000,
                JobEventBody::Engine {
                    event: Event::Started {
                        total_steps: 20,
                        examples: 8,
                        trainable_params: 10,
                        truncated: 0,
                        compute_dtype: hone_protocol::ComputeDtype::Float32,
                    },
                },
            ),
            at(4, 3_000, step(1, 2.5)),
            at(5, 4_000, step(2, f64::NAN)),
            at(
                6,
                5_000,
                JobEventBody::Engine {
                    event: Event::Eval {
                        step: 2,
                        loss: 2.0,
                        perplexity: 7.4,
                    },
                },
            ),
            at(7, 11_000, state(JobState::Succeeded)),
        ];
        let p = progress(&events);
        assert_eq!(p.state, Some((JobState::Succeeded, None)));
        assert_eq!(p.total_steps, Some(20));
        assert_eq!(p.loss.len(), 2);
        assert_eq!(p.step, Some(2));
        assert_eq!(p.eval, [(2.0, 2.0)]);
        assert_eq!(p.best_eval_loss, Some(2.0));
        assert_eq!(p.elapsed_ms, Some(10_000));
        assert_eq!(p.device_ms, 10_000);
        // Not running yet: no device time.
        assert_eq!(progress(&events[..1]).device_ms, 0);
    }
}
