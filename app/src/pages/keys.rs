//! Settings → API keys: a person's keys, a new one (its value shown once,
//! with how to use it from OpenAI's Python client), and revoking one.

use crate::api::{self, ApiKeyRow, KeyProject, KeysPage, NewApiKey};
use crate::components::{action_error, loaded, reset_on_success, FieldError, FormError};
use crate::format;
use leptos::prelude::*;

#[derive(Clone, Copy)]
struct Actions {
    create: ServerAction<api::CreateApiKey>,
    revoke: ServerAction<api::RevokeApiKey>,
}

#[component]
pub fn ApiKeysPage() -> impl IntoView {
    let actions = Actions {
        create: ServerAction::new(),
        revoke: ServerAction::new(),
    };
    let data = Resource::new(
        move || {
            (
                actions.create.version().get(),
                actions.revoke.version().get(),
            )
        },
        |_| api::load_keys(),
    );
    loaded(data, move |d| view! { <KeysView d=d actions=actions/> })
}

#[component]
fn KeysView(d: KeysPage, actions: Actions) -> impl IntoView {
    let revoke_error = action_error(actions.revoke.value());
    let has_projects = !d.projects.is_empty();
    let keys = d.keys.clone();
    view! {
        <h1>"API keys"</h1>
        <p class="lede">
            "An API key lets a program use Hone as you — for example a Python script written for "
            "OpenAI's fine-tuning API. Each key works in one project, with your role there: it can do "
            "what you can do, nothing more. Files and training jobs made with it appear in that project."
        </p>
        <section class="panel" id="create-key-panel">
            <h2>"Create a key"</h2>
            {if has_projects {
                view! { <NewKeyForm projects=d.projects.clone() actions=actions/> }.into_any()
            } else {
                view! {
                    <p class="hint" id="no-projects">
                        "A key belongs to a project, and you have none yet. Create a project first, "
                        "or ask an administrator to add you to a team."
                    </p>
                }
                .into_any()
            }}
            {move || match actions.create.value().get() {
                Some(Ok(new)) => {
                    let row = keys.iter().find(|k| k.id == new.id).cloned();
                    Some(view! { <NewKeyBox new=new row=row/> })
                }
                _ => None,
            }}
        </section>
        <section class="panel">
            <h2>"Your keys"</h2>
            <FormError error=revoke_error fields=&[]/>
            {if d.keys.is_empty() {
                view! { <p class="empty" id="no-keys">"You have no API keys yet."</p> }.into_any()
            } else {
                view! {
                    <table class="keys" id="keys">
                        <thead>
                            <tr>
                                <th scope="col">"Name"</th>
                                <th scope="col">"Project"</th>
                                <th scope="col">"Key"</th>
                                <th scope="col">"Created"</th>
                                <th scope="col">"Last used"</th>
                                <th scope="col">"Status"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {d.keys.into_iter().map(|k| view! { <KeyRowView k=k actions=actions/> }).collect_view()}
                        </tbody>
                    </table>
                }
                .into_any()
            }}
        </section>
    }
}

#[component]
fn NewKeyForm(projects: Vec<KeyProject>, actions: Actions) -> impl IntoView {
    let error = action_error(actions.create.value());
    let form = reset_on_success(actions.create);
    view! {
        <ActionForm action=actions.create node_ref=form attr:id="new-key-form">
            <label for="key-project">"Project"</label>
            <select id="key-project" name="project_id">
                {projects.into_iter().map(|p| view! {
                    <option value=p.id.to_string()>{format!("{} (team {})", p.name, p.team)}</option>
                }).collect_view()}
            </select>
            <FieldError error=error field="project_id"/>
            <label for="key-name">"Name"</label>
            <input id="key-name" name="name" required maxlength="100" autocomplete="off"
                placeholder="For example: support bot script"/>
            <p class="hint">"So you can tell your keys apart later, e.g. where the key is used."</p>
            <FieldError error=error field="name"/>
            <FormError error=error fields=&["project_id", "name"]/>
            <button type="submit" id="create-key">"Create key"</button>
        </ActionForm>
    }
}

/// The new key, once: Hone keeps only its hash.
#[component]
fn NewKeyBox(new: NewApiKey, row: Option<ApiKeyRow>) -> impl IntoView {
    let origin = this_origin();
    let example = format!(
        "from openai import OpenAI\n\nclient = OpenAI(\n    base_url=\"{origin}/v1\",\n    api_key=\"{}\",\n)\nprint(client.fine_tuning.jobs.list())",
        new.key
    );
    let title = match &row {
        Some(r) => format!("Your new key “{}” for {}", r.name, r.project_name),
        None => "Your new key".to_owned(),
    };
    let input = NodeRef::<leptos::html::Input>::new();
    let copied = RwSignal::new(false);
    let copy = move |_| {
        if let Some(el) = input.get_untracked() {
            copied.set(copy_from(&el));
        }
    };
    view! {
        <div class="new-key" id="new-key" role="status">
            <h3>{title}</h3>
            <p class="new-key-warning">
                <strong>"Copy it now: Hone stores only a hash and cannot show it again."</strong>
                " If you lose it, revoke it and create another."
            </p>
            <div class="key-value">
                <label class="sr-only" for="new-key-value">"The new API key"</label>
                <input id="new-key-value" readonly value=new.key.clone() node_ref=input
                    spellcheck="false" autocomplete="off"
                    on:focus=move |_| { if let Some(el) = input.get_untracked() { el.select(); } }/>
                <button type="button" id="copy-key" class="secondary" on:click=copy>
                    {move || if copied.get() { "Copied" } else { "Copy" }}
                </button>
            </div>
            <p>"To use it from Python, install OpenAI's client (" <code>"pip install openai"</code> ") and point it at Hone:"</p>
            <pre class="example" id="key-example"><code>{example}</code></pre>
            <p class="hint">"Keep the key out of shared files and chats: anyone who has it can act as you in this project."</p>
        </div>
    }
}

#[component]
fn KeyRowView(k: ApiKeyRow, actions: Actions) -> impl IntoView {
    let confirming = RwSignal::new(false);
    let id = k.id.to_string();
    let status = match k.revoked_at {
        Some(at) => view! { <span class="revoked">"Revoked" <span class="when">{format::utc(at)}</span></span> }.into_any(),
        None => {
            let label = format!("Revoke {}", k.name);
            view! {
                {move || if confirming.get() {
                    let id = id.clone();
                    view! {
                        <div class="confirm" role="alertdialog">
                            <p>"Programs using this key will stop working at once."</p>
                            <ActionForm action=actions.revoke attr:class="inline">
                                <input type="hidden" name="id" value=id/>
                                <button type="submit" class="danger">"Revoke key"</button>
                            </ActionForm>
                            " "
                            <button type="button" class="secondary" on:click=move |_| confirming.set(false)>"Keep it"</button>
                        </div>
                    }.into_any()
                } else {
                    view! {
                        <button type="button" class="secondary" aria-label=label.clone()
                            on:click=move |_| confirming.set(true)>"Revoke"</button>
                    }.into_any()
                }}
            }
            .into_any()
        }
    };
    view! {
        <tr id=format!("key-{}", k.id) class:revoked=k.revoked_at.is_some()>
            <td class="name" data-label="Name">{k.name.clone()}</td>
            <td data-label="Project"><a href=format!("/projects/{}", k.project_id)>{k.project_name.clone()}</a></td>
            <td data-label="Key"><code>{format!("{}…", k.prefix)}</code></td>
            <td data-label="Created">{format::utc(k.created_at)}</td>
            <td data-label="Last used">{k.last_used_at.map_or_else(|| "never".to_owned(), format::utc)}</td>
            <td class="status">{status}</td>
        </tr>
    }
}

/// The address this page was loaded from, for the example: what the
/// person's own browser reaches Hone at (the box only appears in the
/// browser, after "Create key").
fn this_origin() -> String {
    #[cfg(feature = "hydrate")]
    {
        if let Ok(origin) = window().location().origin() {
            return origin;
        }
    }
    "https://your-hone-server".to_owned()
}

/// Copies the input's text: the clipboard API where the page may use it
/// (HTTPS or localhost), else the selection the old way. True on success.
fn copy_from(input: &web_sys::HtmlInputElement) -> bool {
    input.select();
    #[cfg(feature = "hydrate")]
    {
        use js_sys::{Function, Reflect};
        use wasm_bindgen::{JsCast, JsValue};
        let call = |target: &JsValue, method: &str, arg: &str| -> bool {
            Reflect::get(target, &JsValue::from_str(method))
                .ok()
                .and_then(|f| f.dyn_into::<Function>().ok())
                .and_then(|f| f.call1(target, &JsValue::from_str(arg)).ok())
                .is_some_and(|r| !matches!(r.as_bool(), Some(false)))
        };
        let clipboard = Reflect::get(&window(), &JsValue::from_str("navigator"))
            .and_then(|n| Reflect::get(&n, &JsValue::from_str("clipboard")))
            .ok()
            .filter(|c| !c.is_undefined() && !c.is_null());
        if let Some(c) = clipboard {
            if call(&c, "writeText", &input.value()) {
                return true;
            }
        }
        call(&document().into(), "execCommand", "copy")
    }
    #[cfg(not(feature = "hydrate"))]
    false
}
