//! "Train a model" on one dataset version: the base model, the method,
//! the settings (prefilled from the data; every one of them under
//! "Advanced", checked in the browser against the ranges the engine
//! accepts), and before launching the two answers people need: does it
//! fit, and how long.

use crate::api::{self, AppError, DeviceOffer, LaunchCheck, LaunchPage as Data, MethodInfo};
use crate::components::{go, loaded};
use crate::format;
use hone_protocol::{settings, Kind, Method, Setting, TrainConfig};
use leptos::prelude::*;
// Leptos re-exports serde_json in both builds; the settings travel as
// JSON and are compared with the engine's defaults on either side.
use leptos::serde_json::{self, Map, Value};
use leptos_router::hooks::use_params_map;
use std::time::Duration;

/// The settings shown plainly, in this order; "Advanced" holds the rest.
const MAIN: [&str; 5] = [
    "num_train_epochs",
    "learning_rate",
    "lora_r",
    "per_device_train_batch_size",
    "max_seq_length",
];

/// How long the page waits after a change before asking the server again.
const DEBOUNCE: Duration = Duration::from_millis(300);

#[component]
pub fn LaunchPage() -> impl IntoView {
    let params = use_params_map();
    let id = move || {
        params
            .read()
            .get("dataset")
            .and_then(|s| s.parse::<i64>().ok())
    };
    let data = Resource::new(id, |id| async move {
        match id {
            Some(id) => api::load_launch_page(id).await,
            None => Err(AppError::NotFound("that dataset".into())),
        }
    });
    loaded(data, |d| view! { <LaunchView d=d/> })
}

/// `Method` as the settings name it (`"lora"`, …).
fn method_key(m: Method) -> &'static str {
    match m {
        Method::Full => "full",
        Method::Lora => "lora",
        Method::Qlora => "qlora",
    }
}

fn parse_method(s: &str) -> Option<Method> {
    [Method::Full, Method::Lora, Method::Qlora]
        .into_iter()
        .find(|m| method_key(*m) == s)
}

/// One setting's input as the person left it: the text typed (numbers),
/// `"true"`/`"false"` (switches), the value or `""` for "not set"
/// (choices), the parts' names joined by commas (model parts).
#[derive(Clone, Copy)]
struct Field {
    s: &'static Setting,
    text: RwSignal<String>,
}

/// A JSON value as a field's text.
fn text_of(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => String::new(),
    }
}

/// A field's text as the JSON value the engine reads, or what is wrong
/// with it, naming the setting and its allowed range.
fn parse(s: &Setting, text: &str) -> Result<Value, String> {
    let t = text.trim();
    let label = s.label;
    match s.kind {
        Kind::Integer | Kind::Float => {
            if t.is_empty() {
                return if s.optional {
                    Ok(Value::Null)
                } else {
                    Err(format!("{label} needs a number."))
                };
            }
            let out_of_range = |v: f64| {
                s.range
                    .filter(|r| !r.contains(v))
                    .map(|r| format!("{label} {}.", r.describe()))
            };
            if s.kind == Kind::Integer {
                if let Ok(n) = t.parse::<u64>() {
                    return match out_of_range(n as f64) {
                        Some(e) => Err(e),
                        None => Ok(Value::from(n)),
                    };
                }
                return Err(match t.parse::<f64>() {
                    Ok(v) if v.is_finite() => out_of_range(v)
                        .unwrap_or_else(|| format!("{label} must be a whole number.")),
                    _ => format!("{label} must be a whole number."),
                });
            }
            match t.parse::<f64>() {
                Ok(v) if v.is_finite() => match out_of_range(v) {
                    Some(e) => Err(e),
                    None => Ok(Value::from(v)),
                },
                _ => Err(format!("{label} must be a number, such as 0.0002 or 2e-4.")),
            }
        }
        Kind::Bool => match t {
            "" if s.optional => Ok(Value::Null),
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(format!("{label}: choose on or off.")),
        },
        Kind::Choice { values } => match t {
            "" if s.optional => Ok(Value::Null),
            v if values.contains(&v) => Ok(Value::from(v)),
            _ => Err(format!("{label} must be one of {}.", values.join(", "))),
        },
        Kind::Modules { values } => {
            let chosen: Vec<Value> = values
                .iter()
                .filter(|v| t.split(',').any(|c| c.trim() == **v))
                .map(|v| Value::from(*v))
                .collect();
            if chosen.is_empty() {
                Err(format!("{label}: pick at least one."))
            } else {
                Ok(Value::Array(chosen))
            }
        }
    }
}

/// The launch form's state.
#[derive(Clone, Copy)]
struct Form {
    model: RwSignal<String>,
    method: RwSignal<Method>,
    /// Every setting but the method, in the table's order.
    fields: StoredValue<Vec<Field>>,
    /// The engine's defaults: what the server assumes for a missing key.
    base: StoredValue<Map<String, Value>>,
    /// Each method's starting learning rate.
    rates: StoredValue<Vec<(Method, f64)>>,
    /// The person typed a learning rate: a method change keeps it.
    rate_touched: RwSignal<bool>,
}

impl Form {
    fn new(d: &Data) -> Form {
        let defaults = match serde_json::to_value(&d.defaults) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let base = match serde_json::to_value(TrainConfig::default()) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        let fields = settings()
            .iter()
            .filter(|s| s.key != "method")
            .map(|s| Field {
                s,
                text: RwSignal::new(defaults.get(s.key).map(text_of).unwrap_or_default()),
            })
            .collect();
        Form {
            model: RwSignal::new(d.default_model.clone()),
            method: RwSignal::new(d.defaults.method),
            fields: StoredValue::new(fields),
            base: StoredValue::new(base),
            rates: StoredValue::new(
                d.methods
                    .iter()
                    .map(|m| (m.method, m.learning_rate))
                    .collect(),
            ),
            rate_touched: RwSignal::new(false),
        }
    }

    fn field(&self, key: &str) -> Option<Field> {
        self.fields
            .with_value(|f| f.iter().find(|f| f.s.key == key).copied())
    }

    /// Switches the method; the learning rate follows it unless the person
    /// chose one.
    fn set_method(&self, m: Method) {
        self.method.set(m);
        if self.rate_touched.get_untracked() {
            return;
        }
        let rate = self
            .rates
            .with_value(|r| r.iter().find(|(x, _)| *x == m).map(|(_, lr)| *lr));
        if let (Some(rate), Some(f)) = (rate, self.field("learning_rate")) {
            f.text.set(text_of(&Value::from(rate)));
        }
    }

    /// The settings as the JSON object the server reads (only what differs
    /// from the engine's defaults), or `None` while one is not valid.
    fn config(&self) -> Option<String> {
        let method = self.method.get();
        let mut out = Map::new();
        out.insert("method".into(), Value::from(method_key(method)));
        let fields = self.fields.get_value();
        for f in fields.iter().filter(|f| f.s.applies_to(method)) {
            let v = parse(f.s, &f.text.get()).ok()?;
            if self.base.with_value(|b| b.get(f.s.key) != Some(&v)) {
                out.insert(f.s.key.into(), v);
            }
        }
        Some(Value::Object(out).to_string())
    }
}

#[component]
fn LaunchView(d: Data) -> impl IntoView {
    let form = Form::new(&d);
    let dataset_id = d.dataset.id;
    let project_id = d.project_id;
    // The latest answer of the server to "does it fit, how long", and its
    // latest error about a field (shown beside that field).
    let check = RwSignal::new(None::<Result<LaunchCheck, AppError>>);
    let checking = RwSignal::new(false);
    let server_error = RwSignal::new(None::<AppError>);
    let launching = RwSignal::new(false);
    let launch_error = RwSignal::new(None::<String>);
    // What would be sent: the model and the settings, when all are valid.
    let request = Memo::new(move |_| form.config().map(|c| (form.model.get(), c)));
    let timer = StoredValue::new(None::<TimeoutHandle>);
    let asked = StoredValue::new(0u64);
    // Ask again a moment after the last change (and once on load). Effects
    // run only in the browser.
    Effect::new(move |_| {
        let req = request.get();
        if let Some(t) = timer.get_value() {
            t.clear();
        }
        let Some((model, config)) = req else {
            checking.set(false);
            return;
        };
        let n = asked.get_value() + 1;
        asked.set_value(n);
        checking.set(true);
        let t = set_timeout_with_handle(
            move || {
                leptos::task::spawn_local(async move {
                    let r = api::check_launch(dataset_id, model, config).await;
                    // Only the answer to the latest question counts.
                    if asked.get_value() == n {
                        server_error.set(r.as_ref().err().cloned());
                        check.set(Some(r));
                        checking.set(false);
                    }
                });
            },
            DEBOUNCE,
        );
        timer.set_value(t.ok());
    });
    let on_launch = move |_| {
        let Some((model, config)) = request.get_untracked() else {
            launch_error.set(Some(
                "Some settings are not valid: fix the ones marked in red first.".into(),
            ));
            return;
        };
        launch_error.set(None);
        launching.set(true);
        leptos::task::spawn_local(async move {
            match api::launch_job(dataset_id, model, config).await {
                Ok(id) => go(&format!("/projects/{project_id}/jobs/{id}")),
                Err(e) => {
                    launching.set(false);
                    launch_error.set(Some(format!("Not launched: {e}")));
                    server_error.set(Some(e));
                }
            }
        });
    };
    let ds = d.dataset.clone();
    let main_fields: Vec<Field> = MAIN.iter().filter_map(|k| form.field(k)).collect();
    view! {
        <div id="launch-page">
            <p class="crumbs">
                <a href="/">"Projects"</a>" / "
                <a href=format!("/projects/{project_id}")>{d.project_name.clone()}</a>" / "
                <a href=format!("/projects/{project_id}/datasets/{}", ds.id)>{ds.name.clone()}</a>
            </p>
            <h1>"Train a model"</h1>
            <section class="panel">
                <h2>"The data"</h2>
                <p>
                    "Dataset "
                    <a href=format!("/projects/{project_id}/datasets/{}", ds.id) id="launch-dataset">{ds.name.clone()}</a>
                    {format!(" from {} ({}).", ds.source_name, ds.format)}
                </p>
                <ul class="cards">
                    <li><span class="n">{ds.examples}</span>" examples"</li>
                    <li><span class="n">{ds.counts[0]}</span>" to train on"</li>
                    <li><span class="n">{ds.counts[1]}</span>" to check progress (validation)"</li>
                    <li><span class="n">{ds.counts[2]}</span>" held back for the final test"</li>
                </ul>
            </section>
            <ModelPicker d=d.clone() form=form server_error=server_error/>
            <MethodCards methods=d.methods.clone() form=form/>
            <section class="panel">
                <h2>"Settings"</h2>
                <p class="hint">"Chosen for your data; most runs need no change."</p>
                <div class="settings-grid">
                    {main_fields.into_iter().map(|f| view! { <SettingRow f=f form=form server_error=server_error/> }).collect_view()}
                </div>
                {(!d.reasons.is_empty()).then(|| view! {
                    <div class="reasons" id="reasons">
                        <h3>"Why these settings"</h3>
                        <ul>{d.reasons.iter().map(|r| view! { <li>{r.clone()}</li> }).collect_view()}</ul>
                    </div>
                })}
                <Advanced form=form server_error=server_error/>
            </section>
            <div class="answers">
                <Fit check=check checking=checking request=request offers=d.devices.clone()/>
                <Eta check=check request=request form=form/>
            </div>
            <section class="panel launch-bar">
                <button type="button" id="launch" on:click=on_launch disabled=move || launching.get()>
                    {move || if launching.get() { "Launching…" } else { "Launch training" }}
                </button>
                <p class="hint">"The job waits in the queue until a device is free. Its page shows why it waits and, once it runs, its progress."</p>
                {move || launch_error.get().map(|m| view! { <p class="form-error" id="launch-error" role="alert">{m}</p> })}
            </section>
        </div>
    }
    .into_any()
}

#[component]
fn ModelPicker(d: Data, form: Form, server_error: RwSignal<Option<AppError>>) -> impl IntoView {
    let chosen = d.default_model.clone();
    let options = d
        .models
        .iter()
        .map(|m| {
            let label = match m.context_length {
                Some(n) => format!("{} (reads up to {n} tokens)", m.name),
                None => m.name.clone(),
            };
            view! { <option value=m.name.clone() selected=m.name == chosen>{label}</option> }
        })
        .collect_view();
    let counted = d.dataset.base_model.clone();
    view! {
        <section class="panel">
            <h2>"Base model"</h2>
            <label for="model">"Start from"</label>
            <select id="model" prop:value=move || form.model.get() on:change=move |ev| form.model.set(event_target_value(&ev))>
                {options}
            </select>
            <p class="hint">
                "Your model starts as a copy of this one and learns from your examples."
                {counted.map(|m| format!(" The dataset's tokens were counted with {m}."))}
            </p>
            {move || server_error.get().and_then(|e| e.for_field("model")).map(|m| view! {
                <p class="field-error" id="model-error" role="alert">{m}</p>
            })}
        </section>
    }
}

#[component]
fn MethodCards(methods: Vec<MethodInfo>, form: Form) -> impl IntoView {
    let initial = form.method.get_untracked();
    view! {
        <section class="panel">
            <fieldset class="methods" id="methods">
                <legend><h2>"Method"</h2></legend>
                {methods.into_iter().map(|m| {
                    let method = m.method;
                    let key = method_key(method);
                    let id = format!("method-{key}");
                    let label_for = id.clone();
                    view! {
                        <label class="method-card" class:chosen=move || form.method.get() == method for=label_for>
                            <input
                                type="radio"
                                name="method"
                                id=id
                                value=key
                                checked=initial == method
                                prop:checked=move || form.method.get() == method
                                on:change=move |_| form.set_method(method)
                            />
                            <span class="method-name">{m.label.clone()}</span>
                            <span class="method-help">{m.help.clone()}</span>
                            <span class="method-rate">{format!("Starts with learning rate {}", text_of(&Value::from(m.learning_rate)))}</span>
                        </label>
                    }
                }).collect_view()}
            </fieldset>
        </section>
    }
}

/// Every setting that is not shown above, grouped by the methods it
/// affects.
#[component]
fn Advanced(form: Form, server_error: RwSignal<Option<AppError>>) -> impl IntoView {
    let mut groups: Vec<(&'static [Method], Vec<Field>)> = Vec::new();
    for f in form.fields.get_value() {
        if MAIN.contains(&f.s.key) {
            continue;
        }
        match groups.iter_mut().find(|(m, _)| *m == f.s.methods) {
            Some((_, list)) => list.push(f),
            None => groups.push((f.s.methods, vec![f])),
        }
    }
    let method_setting = settings().iter().find(|s| s.key == "method");
    view! {
        <details class="advanced" id="advanced">
            <summary>"Advanced: every setting"</summary>
            <p class="hint">
                "The settings above, the method and the base model are all most runs need. "
                "Each one here says what it does; values outside what the engine accepts are marked at once."
            </p>
            {method_setting.map(|s| view! {
                <div class="setting">
                    <label for="setting-method">{s.label}</label>
                    <select id="setting-method" prop:value=move || method_key(form.method.get()) on:change=move |ev| {
                        if let Some(m) = parse_method(&event_target_value(&ev)) {
                            form.set_method(m);
                        }
                    }>
                        {[Method::Lora, Method::Qlora, Method::Full].into_iter().map(|m| view! {
                            <option value=method_key(m) selected=form.method.get_untracked() == m>{format::method(m)}</option>
                        }).collect_view()}
                    </select>
                    <p class="hint">{s.help}</p>
                </div>
            })}
            {groups.into_iter().map(|(methods, fields)| {
                let title = if methods.len() >= 3 {
                    "For every method".to_owned()
                } else {
                    format!("Only for {}", methods.iter().map(|m| format::method(*m)).collect::<Vec<_>>().join(" and "))
                };
                view! {
                    <fieldset class="group" hidden=move || !methods.contains(&form.method.get())>
                        <legend>{title}</legend>
                        <div class="settings-grid">
                            {fields.into_iter().map(|f| view! { <SettingRow f=f form=form server_error=server_error/> }).collect_view()}
                        </div>
                    </fieldset>
                }
            }).collect_view()}
        </details>
    }
}

/// One setting: its label, the input its kind needs, its help, and what
/// is wrong with the value (the browser's check first, then the server's).
#[component]
fn SettingRow(f: Field, form: Form, server_error: RwSignal<Option<AppError>>) -> impl IntoView {
    let s = f.s;
    let id = format!("setting-{}", s.key);
    let error_id = format!("setting-{}-error", s.key);
    let help_id = format!("setting-{}-help", s.key);
    let applies = move || s.applies_to(form.method.get());
    let error = move || match parse(s, &f.text.get()) {
        Err(e) => Some(e),
        Ok(_) => server_error.get().and_then(|e| e.for_field(s.key)),
    };
    let initial = f.text.get_untracked();
    let control = match s.kind {
        Kind::Integer | Kind::Float => {
            let integer = s.kind == Kind::Integer;
            let min = s
                .range
                .map(|r| r.min.to_string())
                .or(integer.then(|| "0".to_owned()));
            let max = s.range.map(|r| r.max.to_string());
            view! {
                <label for=id.clone()>{s.label}</label>
                <input
                    type="number"
                    id=id.clone()
                    name=s.key
                    min=min
                    max=max
                    step=if integer { "1" } else { "any" }
                    inputmode=if integer { "numeric" } else { "decimal" }
                    placeholder=s.optional.then_some("not set")
                    aria-describedby=help_id.clone()
                    aria-invalid=move || error().is_some().to_string()
                    value=initial
                    prop:value=move || f.text.get()
                    on:input=move |ev| {
                        if s.key == "learning_rate" {
                            form.rate_touched.set(true);
                        }
                        f.text.set(event_target_value(&ev));
                    }
                />
            }
            .into_any()
        }
        Kind::Bool if !s.optional => view! {
            <label class="check" for=id.clone()>
                <input
                    type="checkbox"
                    id=id.clone()
                    name=s.key
                    aria-describedby=help_id.clone()
                    checked=initial == "true"
                    prop:checked=move || f.text.get() == "true"
                    on:change=move |ev| f.text.set(event_target_checked(&ev).to_string())
                />
                {s.label}
            </label>
        }
        .into_any(),
        Kind::Bool => {
            let options = [("", "Automatic"), ("true", "On"), ("false", "Off")];
            view! {
                <label for=id.clone()>{s.label}</label>
                <select id=id.clone() name=s.key aria-describedby=help_id.clone() prop:value=move || f.text.get() on:change=move |ev| f.text.set(event_target_value(&ev))>
                    {options.into_iter().map(|(v, l)| view! { <option value=v selected=initial == v>{l}</option> }).collect_view()}
                </select>
            }
            .into_any()
        }
        Kind::Choice { values } => {
            let unset = s.optional.then(|| view! { <option value="" selected=initial.is_empty()>"Automatic (not set)"</option> });
            view! {
                <label for=id.clone()>{s.label}</label>
                <select id=id.clone() name=s.key aria-describedby=help_id.clone() prop:value=move || f.text.get() on:change=move |ev| f.text.set(event_target_value(&ev))>
                    {unset}
                    {values.iter().map(|v| view! { <option value=*v selected=initial == *v>{*v}</option> }).collect_view()}
                </select>
            }
            .into_any()
        }
        Kind::Modules { values } => {
            let has = move |text: &str, v: &str| text.split(',').any(|c| c.trim() == v);
            view! {
                <fieldset class="modules" id=id.clone() aria-describedby=help_id.clone()>
                    <legend>{s.label}</legend>
                    {values.iter().map(|v| {
                        let v: &'static str = v;
                        let box_id = format!("setting-{}-{v}", s.key);
                        let label_for = box_id.clone();
                        let toggle = move |ev: leptos::ev::Event| {
                            let on = event_target_checked(&ev);
                            f.text.update(|t| {
                                let list: Vec<&str> = values
                                    .iter()
                                    .copied()
                                    .filter(|x| if *x == v { on } else { has(t, x) })
                                    .collect();
                                *t = list.join(",");
                            });
                        };
                        view! {
                            <label class="check" for=label_for>
                                <input type="checkbox" id=box_id value=v checked=has(&initial, v) prop:checked=move || has(&f.text.get(), v) on:change=toggle/>
                                <code>{v}</code>
                            </label>
                        }
                    }).collect_view()}
                </fieldset>
            }
            .into_any()
        }
    };
    view! {
        <div class="setting" data-key=s.key hidden=move || !applies()>
            {control}
            {move || error().map(|m| view! { <p class="field-error" id=error_id.clone() role="alert">{m}</p> })}
            <p class="hint" id=help_id>{s.help}</p>
        </div>
    }
}

/// "Does it fit?": the memory the run needs against each device.
#[component]
fn Fit(
    check: RwSignal<Option<Result<LaunchCheck, AppError>>>,
    checking: RwSignal<bool>,
    request: Memo<Option<(String, String)>>,
    offers: Vec<DeviceOffer>,
) -> impl IntoView {
    let offers = StoredValue::new(offers);
    let fits = move || match (request.get(), check.get()) {
        (Some(_), Some(Ok(c))) => Some(c.devices.iter().any(|d| d.fits).to_string()),
        _ => None,
    };
    let body = move || match (request.get(), check.get()) {
        (None, _) => {
            view! { <p class="empty">"Fix the settings marked in red to see whether it fits."</p> }
                .into_any()
        }
        (_, None) => view! { <p class="empty">"Checking…"</p> }.into_any(),
        (_, Some(Err(e))) => {
            view! { <p class="form-error">{format!("Could not check: {e}")}</p> }.into_any()
        }
        (_, Some(Ok(c))) => {
            let any = c.devices.iter().any(|d| d.fits);
            let rows = c.devices.iter().map(|f| {
                let slots = offers.with_value(|o| o.iter().find(|o| o.device == f.device).map_or(1, |o| o.slots));
                let name = format::device(&f.device);
                let name = if slots > 1 { format!("{name} × {slots}") } else { name };
                view! {
                    <tr class="device" data-fits=f.fits.to_string()>
                        <td>{name}</td>
                        <td>{format::bytes(f.available_bytes.min(i64::MAX as u64) as i64)}</td>
                        <td class=if f.fits { "ok" } else { "form-error" }>{if f.fits { "✓ Fits" } else { "✗ Too small" }}</td>
                    </tr>
                }
            }).collect_view();
            let verdict = if c.devices.is_empty() {
                None
            } else if any {
                Some(
                    view! { <p class="advice ok">"Yes: it fits on a device that is available."</p> },
                )
            } else {
                Some(view! { <p class="advice stop">"No: it fits on none of the devices."</p> })
            };
            view! {
                {verdict}
                <p>"This run needs about " <strong id="fit-needed">{format::bytes(c.needed_bytes.min(i64::MAX as u64) as i64)}</strong> " of memory."</p>
                {(!c.devices.is_empty()).then(|| view! {
                    <table class="devices">
                        <thead><tr><th scope="col">"Device"</th><th scope="col">"Memory a job may use"</th><th scope="col">"This run"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                })}
                {c.suggestion.clone().map(|s| view! { <p class="advice warn" id="fit-suggestion">{s}</p> })}
            }
            .into_any()
        }
    };
    view! {
        <section class="panel answer" id="fit" data-fits=fits aria-busy=move || checking.get().to_string()>
            <h2>"Does it fit?" {move || checking.get().then(|| view! { <span class="checking">" checking…"</span> })}</h2>
            {body}
            <p class="hint">"One job runs on one device (a GPU or a CPU slot) for now, so the whole run must fit on one of them."</p>
        </section>
    }
}

/// "How long?": the estimate as a range, and what it rests on.
#[component]
fn Eta(
    check: RwSignal<Option<Result<LaunchCheck, AppError>>>,
    request: Memo<Option<(String, String)>>,
    form: Form,
) -> impl IntoView {
    let epochs = move || {
        form.field("num_train_epochs")
            .map(|f| f.text.get())
            .unwrap_or_default()
    };
    let body = move || match (request.get(), check.get()) {
        (Some(_), Some(Ok(c))) => {
            let range = match (c.eta_low_s, c.eta_high_s) {
                (Some(lo), Some(hi)) => {
                    let about = format::about(lo, hi);
                    let mut first = about.chars();
                    let about: String = first
                        .next()
                        .map(|f| f.to_uppercase().chain(first).collect())
                        .unwrap_or_default();
                    view! { <p class="eta-range" id="eta-range">{about}</p> }.into_any()
                }
                _ => view! { <p class="empty">"No estimate for these settings."</p> }.into_any(),
            };
            view! {
                {range}
                <p>{format!("Training reads {} tokens: the training examples, {} times.", format::count(c.tokens), epochs())}</p>
                <p class="hint" id="eta-basis">{c.eta_basis.clone()}</p>
            }
            .into_any()
        }
        _ => view! { <p class="empty">"Waiting for the settings to be checked."</p> }.into_any(),
    };
    view! {
        <section class="panel answer" id="eta">
            <h2>"How long?"</h2>
            {body}
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hone_protocol::settings::setting;

    fn check(key: &str, text: &str) -> Result<Value, String> {
        parse(setting(key).expect("a setting"), text)
    }

    #[test]
    fn values_outside_the_range_name_the_field_and_the_range() {
        assert_eq!(check("num_train_epochs", "3"), Ok(Value::from(3u64)));
        assert_eq!(
            check("num_train_epochs", "0"),
            Err("Epochs must be from 1 to 1000.".into())
        );
        assert_eq!(
            check("num_train_epochs", "1.5"),
            Err("Epochs must be a whole number.".into())
        );
        assert_eq!(check("learning_rate", "2e-4"), Ok(Value::from(2e-4)));
        assert_eq!(
            check("learning_rate", "5"),
            Err("Learning rate must be from 0 to 1.".into())
        );
        assert_eq!(
            check("adam_epsilon", "0"),
            Err("Adam epsilon must be above 0 and at most 0.001.".into())
        );
        assert_eq!(check("early_stopping_patience", ""), Ok(Value::Null));
        assert!(check("max_seq_length", "").is_err());
        assert_eq!(
            check("target_modules", "v_proj,q_proj"),
            Ok(serde_json::json!(["q_proj", "v_proj"]))
        );
        assert!(check("target_modules", "").is_err());
        assert_eq!(check("bf16", ""), Ok(Value::Null));
        assert_eq!(
            check("gradient_checkpointing", "true"),
            Ok(Value::Bool(true))
        );
        // A big seed keeps every digit.
        assert_eq!(
            check("seed", "18446744073709551615"),
            Ok(Value::from(u64::MAX))
        );
    }

    #[test]
    fn every_default_reads_back_as_itself() {
        let defaults = serde_json::to_value(TrainConfig::default()).expect("serialises");
        for s in settings().iter().filter(|s| s.key != "method") {
            let v = &defaults[s.key];
            assert_eq!(&check(s.key, &text_of(v)).expect(s.key), v, "{}", s.key);
        }
    }
}
