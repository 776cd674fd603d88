//! "Check training data": a Web Worker reads the chosen file in slices
//! (`File.slice`, never whole) and runs `hone-dataset`'s checks on it with
//! the chosen base model's tokenizer — the same code the server and the
//! command line run. Nothing is uploaded until the person saves.

use hone_dataset::check::Verdict;
use hone_dataset::{Report, Severity};
use leptos::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Progress {
    done: f64,
    total: f64,
    mb_per_s: f64,
}

/// The check's state. It lives above the project view, so a reload of the
/// project (after saving) keeps the report and the message on screen.
#[derive(Clone, Copy)]
pub struct CheckState {
    progress: RwSignal<Option<Progress>>,
    report: RwSignal<Option<(String, Report)>>,
    /// The checked file, kept for saving it as a dataset. Browser-only: a
    /// thread-local value made during server rendering would be dropped on
    /// another thread (a panic), so it does not exist there.
    #[cfg(feature = "hydrate")]
    file: StoredValue<Option<web_sys::File>, LocalStorage>,
    /// `(succeeded, message)` of the last save.
    message: RwSignal<Option<(bool, String)>>,
    /// Percent of the save's upload done.
    saving: RwSignal<Option<f64>>,
    /// CSV/TSV columns chosen by the person (when the names said nothing).
    columns: RwSignal<Option<hone_dataset::Columns>>,
    /// The base model whose tokenizer counts tokens.
    model: RwSignal<String>,
    /// The running check's worker (terminated when another check starts).
    #[cfg(feature = "hydrate")]
    worker: StoredValue<Option<RunningWorker>, LocalStorage>,
}

/// A worker and the callbacks that must live as long as it does.
#[cfg(feature = "hydrate")]
pub struct RunningWorker {
    worker: web_sys::Worker,
    _on_message: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::MessageEvent)>,
    _on_error: wasm_bindgen::closure::Closure<dyn FnMut(web_sys::Event)>,
}

#[cfg(feature = "hydrate")]
impl Drop for RunningWorker {
    fn drop(&mut self) {
        self.worker.terminate();
    }
}

impl CheckState {
    pub fn new() -> CheckState {
        CheckState {
            progress: RwSignal::new(None),
            report: RwSignal::new(None),
            #[cfg(feature = "hydrate")]
            file: StoredValue::new_local(None),
            message: RwSignal::new(None),
            saving: RwSignal::new(None),
            columns: RwSignal::new(None),
            model: RwSignal::new(String::from("hone-demo")),
            #[cfg(feature = "hydrate")]
            worker: StoredValue::new_local(None),
        }
    }
}

#[component]
pub fn DatasetCheck(
    project_id: i64,
    can_write: bool,
    saved: RwSignal<u32>,
    state: CheckState,
    models: Vec<crate::api::ModelInfo>,
) -> impl IntoView {
    let CheckState {
        progress,
        report,
        message,
        columns,
        model,
        ..
    } = state;
    let start = move |file: Option<web_sys::File>| {
        #[cfg(feature = "hydrate")]
        if let Some(file) = file {
            columns.set(None);
            state.file.set_value(Some(file.clone()));
            leptos::task::spawn_local(run(file, state));
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (file, columns);
    };
    let on_model = move |ev: leptos::ev::Event| {
        model.set(event_target_value(&ev));
        // A new model counts differently: check the same file again.
        #[cfg(feature = "hydrate")]
        if let Some(file) = state.file.get_value() {
            leptos::task::spawn_local(run(file, state));
        }
    };
    let model_options = models
        .iter()
        .map(|m| {
            let label = match m.context_length {
                Some(n) => format!("{} (reads up to {n} tokens)", m.name),
                None => m.name.clone(),
            };
            view! { <option value=m.name.clone() selected=m.name == model.get_untracked()>{label}</option> }
        })
        .collect_view();
    let on_change = move |ev: leptos::ev::Event| {
        let file = event_target::<web_sys::HtmlInputElement>(&ev)
            .files()
            .and_then(|f| f.get(0));
        start(file);
    };
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        start(
            ev.data_transfer()
                .and_then(|d| d.files())
                .and_then(|f| f.get(0)),
        );
    };
    view! {
        <section
            class="panel drop-zone"
            id="dataset-check"
            on:dragover=|ev: leptos::ev::DragEvent| ev.prevent_default()
            on:drop=on_drop
        >
            <h2>"Check training data"</h2>
            <p class="hint">
                "Drop a file here or choose one. It is checked in your browser; nothing is uploaded. "
                "Accepted: JSON Lines (OpenAI chat, Alpaca or ShareGPT), a JSON array, CSV or TSV with a header row."
            </p>
            <label for="check-model">"Base model (counts tokens as it will)"</label>
            <select id="check-model" on:change=on_model>{model_options}</select>
            <label for="check-file">"Training data file"</label>
            <input id="check-file" type="file" accept=".jsonl,.json,.csv,.tsv,.txt" on:change=on_change/>
            {move || progress.get().map(|p| view! {
                <div class="progress">
                    <progress id="check-progress" max="100" value=(100.0 * p.done / p.total.max(1.0)).to_string()></progress>
                    <span>{format!("{} of {} · {:.1} MB/s", crate::format::bytes(p.done as i64), crate::format::bytes(p.total as i64), p.mb_per_s)}</span>
                </div>
            })}
            {move || report.get().map(|(name, r)| {
                let save = (can_write && r.examples > 0).then(|| {
                    view! { <SaveForm project_id=project_id file_name=name.clone() r=r.clone() saved=saved state=state/> }
                });
                let pick = r
                    .columns
                    .clone()
                    .filter(|_| r.counts.contains_key(&hone_dataset::Code::CsvColumns))
                    .map(|names| view! { <ColumnPicker names=names state=state/> });
                view! { {pick} <ReportView name=name r=r/> {save} }
            })}
            {move || message.get().map(|(ok, m)| view! {
                <p id="save-message" class={if ok { "ok" } else { "form-error" }} role="status">{m}</p>
            })}
        </section>
    }
    // Erased: keeps the page's view type shallow enough for the compiler.
    .into_any()
}

/// Starts checking `file` in a Web Worker with the chosen model's
/// tokenizer; progress and the report arrive as messages.
#[cfg(feature = "hydrate")]
async fn run(file: web_sys::File, state: CheckState) {
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;

    // A new check replaces a running one.
    state.worker.set_value(None);
    state.report.set(None);
    state.message.set(None);
    let total = file.size();
    state.progress.set(Some(Progress {
        done: 0.0,
        total,
        mb_per_s: 0.0,
    }));
    // Ends the worker after the callback that calls this has returned (its
    // closures must outlive their own call).
    let stop = move || leptos::task::spawn_local(async move { state.worker.set_value(None) });
    let fail = move |text: String| {
        state.progress.set(None);
        stop();
        state.message.set(Some((false, text)));
    };
    let model = state.model.get_untracked();
    let tokenizer = match fetch_tokenizer(&model).await {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let mut options = match state.columns.get_untracked() {
        Some(c) => hone_dataset::Options::default().with_columns(c),
        None => hone_dataset::Options::default(),
    };
    options.max_tokens = tokenizer.context_length;
    let request = crate::worker::Request {
        options,
        tokenizer: Some(tokenizer),
    };
    let Ok(request) = serde_json::to_string(&request) else {
        return fail("Could not prepare the check.".into());
    };

    let options = web_sys::WorkerOptions::new();
    options.set_type(web_sys::WorkerType::Module);
    let worker = match web_sys::Worker::new_with_options("/pkg/check-worker.js", &options) {
        Ok(w) => w,
        Err(_) => {
            return fail(
                "This browser cannot run the check in the background (Web Workers).".into(),
            )
        }
    };
    let began = js_sys::Date::now();
    let name = file.name();
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
            let data = e.data();
            let field = |k: &str| {
                js_sys::Reflect::get(&data, &k.into()).unwrap_or(wasm_bindgen::JsValue::UNDEFINED)
            };
            match field("kind").as_string().as_deref() {
                Some("progress") => {
                    let done = field("done").as_f64().unwrap_or(0.0);
                    let secs = ((js_sys::Date::now() - began) / 1000.0).max(1e-3);
                    state.progress.set(Some(Progress {
                        done,
                        total,
                        mb_per_s: done / 1e6 / secs,
                    }));
                }
                Some("done") => {
                    let result = field("result");
                    let part = |k: &str| js_sys::Reflect::get(&result, &k.into()).ok();
                    let report = part("report")
                        .and_then(|r| r.as_string())
                        .and_then(|json| serde_json::from_str::<Report>(&json).ok());
                    let items = part("items")
                        .and_then(|i| i.dyn_into::<js_sys::Uint32Array>().ok())
                        .map(|i| crate::worker::unpack_items(&i.to_vec()));
                    match (report, items) {
                        (Some(mut report), Some(items)) => {
                            report.items = items;
                            state.progress.set(None);
                            state.report.set(Some((name.clone(), report)));
                            stop();
                        }
                        _ => fail(
                            "The check sent back a report this page cannot read. Reload the page."
                                .into(),
                        ),
                    }
                }
                _ => fail(format!(
                    "The check stopped: {}",
                    field("message").as_string().unwrap_or_default()
                )),
            }
        });
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_e: web_sys::Event| {
        fail("The check could not start in this browser. Reload the page and try again.".into());
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    let message = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&message, &"file".into(), &file);
    let _ = js_sys::Reflect::set(&message, &"request".into(), &request.into());
    if worker.post_message(&message).is_err() {
        return fail("Could not hand the file to the check.".into());
    }
    state.worker.set_value(Some(RunningWorker {
        worker,
        _on_message: on_message,
        _on_error: on_error,
    }));
}

/// `GET /api/models/{name}/tokenizer`.
#[cfg(feature = "hydrate")]
async fn fetch_tokenizer(model: &str) -> Result<crate::api::TokenizerFiles, String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let failed =
        || format!("Could not load the tokenizer of {model}. Check your connection and try again.");
    let window = web_sys::window().ok_or_else(failed)?;
    let url = format!(
        "/api/models/{}/tokenizer",
        js_sys::encode_uri_component(model)
    );
    let response: web_sys::Response = JsFuture::from(window.fetch_with_str(&url))
        .await
        .map_err(|_| failed())?
        .dyn_into()
        .map_err(|_| failed())?;
    if !response.ok() {
        return Err(format!(
            "The server has no tokenizer for {model} (HTTP {}).",
            response.status()
        ));
    }
    let text = JsFuture::from(response.text().map_err(|_| failed())?)
        .await
        .map_err(|_| failed())?
        .as_string()
        .ok_or_else(failed)?;
    serde_json::from_str(&text).map_err(|_| failed())
}

/// The column-mapping step: when a CSV/TSV header names no prompt and
/// response column, the person picks them and the file is checked again.
#[component]
fn ColumnPicker(names: Vec<String>, state: CheckState) -> impl IntoView {
    let prompt = RwSignal::new(names.first().cloned().unwrap_or_default());
    let response = RwSignal::new(names.get(1).cloned().unwrap_or_default());
    let category = RwSignal::new(String::new());
    let options = move |with_none: bool| {
        let mut list: Vec<(String, String)> =
            names.iter().map(|n| (n.clone(), n.clone())).collect();
        if with_none {
            list.insert(0, (String::new(), "(none)".into()));
        }
        list.into_iter()
            .map(|(v, l)| view! { <option value=v>{l}</option> })
            .collect_view()
    };
    let (prompt_options, response_options, category_options) =
        (options(false), options(false), options(true));
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let chosen = hone_dataset::Columns {
            prompt: prompt.get_untracked(),
            response: response.get_untracked(),
            category: Some(category.get_untracked()).filter(|c| !c.is_empty()),
        };
        state.columns.set(Some(chosen));
        #[cfg(feature = "hydrate")]
        if let Some(file) = state.file.get_value() {
            leptos::task::spawn_local(run(file, state));
        }
    };
    view! {
        <form class="columns-picker" id="column-picker" on:submit=on_submit>
            <h4>"Which columns hold what?"</h4>
            <div class="split">
                <div>
                    <label for="column-prompt">"Prompt (what the user asks)"</label>
                    <select id="column-prompt" prop:value=move || prompt.get() on:change=move |ev| prompt.set(event_target_value(&ev))>{prompt_options}</select>
                </div>
                <div>
                    <label for="column-response">"Response (what the model should answer)"</label>
                    <select id="column-response" prop:value=move || response.get() on:change=move |ev| response.set(event_target_value(&ev))>{response_options}</select>
                </div>
                <div>
                    <label for="column-category">"Category (optional)"</label>
                    <select id="column-category" on:change=move |ev| category.set(event_target_value(&ev))>{category_options}</select>
                </div>
            </div>
            <button type="submit" id="check-with-columns">"Check again with these columns"</button>
        </form>
    }
}

/// Split settings and "Save dataset": the file goes to the server, which
/// checks and splits it again and must arrive at the same counts.
#[component]
fn SaveForm(
    project_id: i64,
    file_name: String,
    r: Report,
    saved: RwSignal<u32>,
    state: CheckState,
) -> impl IntoView {
    let stem = file_name
        .rsplit_once('.')
        .map_or(file_name.clone(), |(s, _)| s.to_owned());
    let name = RwSignal::new(stem);
    let train = RwSignal::new(String::from("80"));
    let validation = RwSignal::new(String::from("10"));
    let test = RwSignal::new(String::from("10"));
    let seed = RwSignal::new(String::from("42"));
    let drop_rejected = RwSignal::new(false);
    let rejected = r.rejected;
    let has_errors = r.has_errors();
    let report = StoredValue::new(r);
    // Ratios and seed as typed values, or the reason they are not valid.
    let settings = Memo::new(move |_| -> Result<(hone_dataset::Ratios, u64), String> {
        let pct = |s: RwSignal<String>| {
            s.get()
                .trim()
                .parse::<u32>()
                .map_err(|_| "Percentages are whole numbers.".to_string())
        };
        let ratios = hone_dataset::Ratios::new(pct(train)?, pct(validation)?, pct(test)?)
            .map_err(|e| format!("Split: {e}."))?;
        let seed = seed
            .get()
            .trim()
            .parse::<u64>()
            .map_err(|_| "The seed is a whole number (0 or more).".to_string())?;
        Ok((ratios, seed))
    });
    let counts = Memo::new(move |_| {
        settings.get().ok().map(|(ratios, seed)| {
            report.with_value(|r| Report::split_counts(&r.plan(seed, ratios)))
        })
    });
    let blocked = move || {
        settings.get().is_err()
            || (has_errors && !drop_rejected.get())
            || state.saving.get().is_some()
    };
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            let (Ok((ratios, seed)), Some(c)) = (settings.get_untracked(), counts.get_untracked())
            else {
                return;
            };
            let Some(file) = state.file.get_value() else {
                return;
            };
            let enc = |s: &str| String::from(js_sys::encode_uri_component(s));
            let r = ratios.0;
            let mut url = format!(
                "/api/projects/{project_id}/datasets?name={}&seed={seed}&ratios={},{},{}&drop_rejected={}&expect={},{},{}&model={}",
                enc(&name.get_untracked()), r[0], r[1], r[2], drop_rejected.get_untracked(), c[0], c[1], c[2],
                enc(&state.model.get_untracked())
            );
            if let Some(cols) = state.columns.get_untracked() {
                url.push_str(&format!(
                    "&prompt_column={}&response_column={}",
                    enc(&cols.prompt),
                    enc(&cols.response)
                ));
                if let Some(cat) = &cols.category {
                    url.push_str(&format!("&category_column={}", enc(cat)));
                }
            }
            state.message.set(None);
            state.saving.set(Some(0.0));
            let label = name.get_untracked();
            crate::upload::send(
                &url,
                file,
                move |pct| state.saving.set(Some(pct)),
                move |result| {
                    state.saving.set(None);
                    match result {
                        Ok(_) => {
                            state.message.set(Some((
                                true,
                                format!("Saved the dataset \"{label}\". The server is checking and splitting it again; it is listed below and is ready in a moment."),
                            )));
                            saved.update(|n| *n += 1);
                        }
                        Err(e) => state.message.set(Some((false, e))),
                    }
                },
            );
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (project_id, saved, name, drop_rejected);
    };
    view! {
        <form class="save-dataset" id="save-dataset" on:submit=on_submit>
            <h4>"Save as a dataset"</h4>
            <label for="dataset-name">"Dataset name"</label>
            <input id="dataset-name" required maxlength="100" prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev))/>
            <fieldset class="split">
                <legend>"Split (percent)"</legend>
                <div><label for="split-train">"Train"</label><input id="split-train" inputmode="numeric" prop:value=move || train.get() on:input=move |ev| train.set(event_target_value(&ev))/></div>
                <div><label for="split-validation">"Validation"</label><input id="split-validation" inputmode="numeric" prop:value=move || validation.get() on:input=move |ev| validation.set(event_target_value(&ev))/></div>
                <div><label for="split-test">"Test"</label><input id="split-test" inputmode="numeric" prop:value=move || test.get() on:input=move |ev| test.set(event_target_value(&ev))/></div>
                <div><label for="split-seed">"Seed"</label><input id="split-seed" inputmode="numeric" prop:value=move || seed.get() on:input=move |ev| seed.set(event_target_value(&ev))/></div>
            </fieldset>
            <p class="hint">"The same file, percentages and seed always give the same split. Repeated examples stay in one part."</p>
            {move || match (settings.get(), counts.get()) {
                (Err(e), _) => view! { <p class="form-error" id="split-error">{e}</p> }.into_any(),
                (_, Some(c)) => view! { <p id="split-counts">{format!("Train {} · validation {} · test {} examples", c[0], c[1], c[2])}</p> }.into_any(),
                _ => ().into_any(),
            }}
            {(rejected > 0).then(|| view! {
                <label class="check">
                    <input type="checkbox" id="drop-rejected" on:change=move |ev| drop_rejected.set(event_target_checked(&ev))/>
                    {format!(" Leave out the {rejected} examples with errors")}
                </label>
            })}
            <button type="submit" id="save-dataset-button" disabled=blocked>"Save dataset"</button>
            {move || state.saving.get().map(|p| view! {
                <div class="progress"><progress max="100" value=p.to_string()></progress><span>{format!("{p:.0}%")}</span></div>
            })}
        </form>
    }
}

#[component]
fn ReportView(name: String, r: Report) -> impl IntoView {
    let severity = RwSignal::new(String::from("all"));
    let code = RwSignal::new(String::from("all"));
    let codes: Vec<&'static str> = r.counts.keys().map(|c| c.as_str()).collect();
    let findings = StoredValue::new(r.findings.clone());
    let rows = move || {
        let (sev, code) = (severity.get(), code.get());
        findings.with_value(|all| {
            all.iter()
                .filter(|f| sev == "all" || (sev == "error") == (f.severity == Severity::Error))
                .filter(|f| code == "all" || f.code.as_str() == code)
                .take(200)
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    let advice_class = match r.advice.verdict {
        Verdict::GoodToTrain => "advice ok",
        Verdict::MayBeWeak => "advice warn",
        Verdict::TryPromptingFirst => "advice stop",
    };
    let format = r.format.map_or("unknown", |f| f.label());
    let unit = match r.stats.unit {
        Some(hone_dataset::check::Unit::Tokens) => "tokens",
        _ => "characters",
    };
    view! {
        <div class="report" id="check-report">
            <h3>{name}</h3>
            <ul class="cards">
                <li><span class="n" id="card-examples">{r.examples}</span>" usable examples"</li>
                <li><span class="n" id="card-rejected">{r.rejected}</span>" rejected"</li>
                <li><span class="n" id="card-errors">{r.errors}</span>" errors"</li>
                <li><span class="n" id="card-warnings">{r.warnings}</span>" warnings"</li>
                <li><span class="n">{format}</span>" format"</li>
            </ul>
            <p class=advice_class id="advice">{r.advice.message.clone()}</p>
            <Histogram bins=r.stats.length.histogram.clone() unit=unit/>
            {(!r.stats.categories.is_empty()).then(|| view! { <CategoryChart categories=r.stats.categories.clone()/> })}
            <h4>"Findings"</h4>
            <div class="filters">
                <label for="filter-severity">"Show"</label>
                <select id="filter-severity" on:change=move |ev| severity.set(event_target_value(&ev))>
                    <option value="all">"errors and warnings"</option>
                    <option value="error">"errors only"</option>
                    <option value="warning">"warnings only"</option>
                </select>
                <label for="filter-code">"Kind"</label>
                <select id="filter-code" on:change=move |ev| code.set(event_target_value(&ev))>
                    <option value="all">"all kinds"</option>
                    {codes.into_iter().map(|c| view! { <option value=c>{c}</option> }).collect_view()}
                </select>
            </div>
            <table class="findings" id="findings">
                <thead>
                    <tr><th scope="col">"Line"</th><th scope="col">"Problem"</th><th scope="col">"How to fix it"</th></tr>
                </thead>
                <tbody>
                    {move || rows().into_iter().map(finding_row).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// One finding as a row of a findings table (line, problem, fix).
pub(super) fn finding_row(f: hone_dataset::Finding) -> impl IntoView {
    view! {
        <tr class=format!("finding {}", f.code.as_str()) data-code=f.code.as_str()>
            <td data-label="Line" class:blank=f.line.is_none()>{f.line.map(|l| l.to_string()).unwrap_or_default()}</td>
            <td>
                <strong>{if f.severity == Severity::Error { "Error: " } else { "Warning: " }}</strong>
                {f.message.clone()}
                {f.excerpt.clone().map(|e| view! { <code class="excerpt">{e}</code> })}
            </td>
            <td data-label="How to fix it">{f.fix.clone()}</td>
        </tr>
    }
}

/// Examples per category as horizontal SVG bars, largest first.
#[component]
fn CategoryChart(categories: std::collections::BTreeMap<String, u64>) -> impl IntoView {
    let mut rows: Vec<(String, u64)> = categories.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    rows.truncate(20);
    let max = rows.first().map_or(1, |r| r.1.max(1)) as f64;
    let height = rows.len() as f64 * 10.0;
    view! {
        <figure class="categories" id="category-chart">
            <svg viewBox=format!("0 0 100 {height}") role="img" aria-label="Examples per category">
                {rows.into_iter().enumerate().map(|(i, (name, n))| {
                    let y = i as f64 * 10.0;
                    let w = 60.0 * n as f64 / max;
                    view! {
                        <g>
                            <text x="0" y=format!("{:.1}", y + 6.5) font-size="4">{name.clone()}</text>
                            <rect x="30" y=format!("{:.1}", y + 2.0) width=format!("{w:.2}") height="6"><title>{format!("{name}: {n}")}</title></rect>
                            <text x=format!("{:.1}", 31.0 + w) y=format!("{:.1}", y + 6.5) font-size="4">{n.to_string()}</text>
                        </g>
                    }
                }).collect_view()}
            </svg>
            <figcaption>"Examples per category"</figcaption>
        </figure>
    }
}

/// Example lengths as an SVG bar chart.
#[component]
pub(super) fn Histogram(bins: Vec<hone_dataset::stats::Bin>, unit: &'static str) -> impl IntoView {
    let max = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let n = bins.len().max(1) as f64;
    let width = 100.0 / n;
    let title = format!("Length of each example in {unit}");
    view! {
        <figure class="histogram">
            <svg viewBox="0 0 100 40" preserveAspectRatio="none" role="img" aria-label=title.clone()>
                {bins.iter().enumerate().map(|(i, b)| {
                    let h = 38.0 * b.count as f64 / max;
                    view! {
                        <rect x=format!("{:.2}", i as f64 * width + 0.2) y=format!("{:.2}", 40.0 - h)
                            width=format!("{:.2}", (width - 0.4).max(0.1)) height=format!("{h:.2}")>
                            <title>{format!("{}–{} {unit}: {} examples", b.from, b.to, b.count)}</title>
                        </rect>
                    }
                }).collect_view()}
            </svg>
            <figcaption>{title}</figcaption>
        </figure>
    }
}
