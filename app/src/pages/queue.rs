//! The admin's scheduling pages: the queue with its devices, quotas and
//! weights (`/admin/queue`), the usage report (`/admin/usage`) and the
//! audit log (`/admin/audit`).

use crate::api::{
    self, AuditPage, JobState, QueuePage, QueueRow, TeamQuota, UsageReport, WorkerRow,
};
use crate::components::charts::{Series, UsageChart};
use crate::components::{action_error, loaded, FieldError, FormError};
use crate::format;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

/// The admin section's tabs.
#[component]
pub fn AdminNav(current: &'static str) -> impl IntoView {
    let tab = move |href: &'static str, label: &'static str| {
        let here = href == current;
        view! { <a href=href aria-current=here.then_some("page") class:current=here>{label}</a> }
    };
    view! {
        <nav class="tabs" aria-label="Administration">
            {tab("/admin", "People")}
            {tab("/admin/queue", "Queue and devices")}
            {tab("/admin/usage", "Usage")}
            {tab("/admin/audit", "Audit log")}
        </nav>
    }
}

#[derive(Clone, Copy)]
struct Actions {
    quota: ServerAction<api::SetQuota>,
    weight: ServerAction<api::SetDeviceWeight>,
    priority: ServerAction<api::SetJobPriority>,
    pause: ServerAction<api::PauseJob>,
    resume: ServerAction<api::ResumeJob>,
    cancel: ServerAction<api::AdminCancelJob>,
}

#[component]
pub fn QueueAdminPage() -> impl IntoView {
    let a = Actions {
        quota: ServerAction::new(),
        weight: ServerAction::new(),
        priority: ServerAction::new(),
        pause: ServerAction::new(),
        resume: ServerAction::new(),
        cancel: ServerAction::new(),
    };
    let data = Resource::new(
        move || {
            (
                a.quota.version().get(),
                a.weight.version().get(),
                a.priority.version().get(),
                a.pause.version().get(),
                a.resume.version().get(),
                a.cancel.version().get(),
            )
        },
        |_| api::load_queue(),
    );
    loaded(data, move |d| view! { <QueueView d=d a=a/> })
}

fn hours(h: f64) -> String {
    if h < 0.1 {
        format!("{:.0} min", h * 60.0)
    } else {
        format!("{h:.1} h")
    }
}

#[component]
fn QueueView(d: QueuePage, a: Actions) -> impl IntoView {
    let quota_error = action_error(a.quota.value());
    let weight_error = action_error(a.weight.value());
    let job_errors = [
        action_error(a.priority.value()),
        action_error(a.pause.value()),
        action_error(a.resume.value()),
        action_error(a.cancel.value()),
    ];
    view! {
        <h1>"Administration"</h1>
        <AdminNav current="/admin/queue"/>
        <section class="panel" id="devices-panel">
            <h2>"Devices"</h2>
            <p class="hint">"Every worker slot and its device. A worker that stopped reporting is lost: its job goes back to the queue and continues elsewhere from its last checkpoint."</p>
            <table class="devices stack" id="devices">
                <thead><tr>
                    <th scope="col">"Device"</th>
                    <th scope="col">"Worker"</th>
                    <th scope="col">"Status"</th>
                    <th scope="col">"Running"</th>
                    <th scope="col" class="num">"Memory"</th>
                    <th scope="col" class="num">"Utilisation"</th>
                    <th scope="col" class="num">"Last report"</th>
                </tr></thead>
                <tbody>
                    {d.workers.into_iter().map(|w| view! { <WorkerLine w=w/> }).collect_view()}
                </tbody>
            </table>
        </section>
        <section class="panel" id="quotas-panel">
            <h2>"Team quotas"</h2>
            <p class="hint">"Guaranteed devices are a team's to keep: beyond them it may borrow idle ones, and gives them back (after a checkpoint) when a team within its guarantee needs them. The month's budget is in weighted device-hours (UTC calendar months); a job does not start if it could pass it, and a running job is never stopped for it. Leave a field empty for no limit. Changes apply at the next scheduling decision."</p>
            <FormError error=quota_error fields=&["guaranteed_devices", "month_hours", "per_person"]/>
            <FieldError error=quota_error field="guaranteed_devices"/>
            <FieldError error=quota_error field="month_hours"/>
            <FieldError error=quota_error field="per_person"/>
            <table class="quotas stack" id="quotas">
                <thead><tr>
                    <th scope="col">"Team"</th>
                    <th scope="col">"Running / waiting"</th>
                    <th scope="col">"Used this month"</th>
                    <th scope="col">"Quota"</th>
                </tr></thead>
                <tbody>
                    {d.teams.into_iter().map(|t| view! { <QuotaLine t=t a=a/> }).collect_view()}
                </tbody>
            </table>
        </section>
        <section class="panel" id="weights-panel">
            <h2>"Device weights"</h2>
            <p class="hint">"How many times an hour on a device counts against budgets: an hour on a large GPU may count more than one on a small one. 1 unless set."</p>
            <FormError error=weight_error fields=&["weight", "name"]/>
            <FieldError error=weight_error field="weight"/>
            <table class="weights stack" id="weights">
                <thead><tr>
                    <th scope="col">"Device"</th>
                    <th scope="col" class="num">"Reporting"</th>
                    <th scope="col">"Weight"</th>
                </tr></thead>
                <tbody>
                    {d.weights.into_iter().map(|w| {
                        let id = format!("weight-{}", w.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
                        let label = format!("Weight of {}", w.name);
                        view! {
                            <tr>
                                <th scope="row">{w.name.clone()}</th>
                                <td class="num" data-label="Reporting">{w.devices}</td>
                                <td data-label="Weight">
                                    <ActionForm action=a.weight attr:class="inline">
                                        <input type="hidden" name="name" value=w.name.clone()/>
                                        <label class="sr-only" for=id.clone()>{label}</label>
                                        <input id=id name="weight" inputmode="decimal" size="6" value=w.weight.to_string() required/>
                                        <button type="submit" class="secondary">"Set"</button>
                                    </ActionForm>
                                </td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </section>
        <section class="panel" id="queue-panel">
            <h2>"Jobs"</h2>
            <p class="hint">"Running jobs first, then waiting ones in the order they will start, with why they wait. Pausing a running job saves a checkpoint first; a paused job keeps its place and continues from there when resumed. Higher priority goes first."</p>
            {job_errors.into_iter().map(|e| view! { <FormError error=e fields=&[]/> <FieldError error=e field="priority"/> }).collect_view()}
            <table class="queue stack" id="queue">
                <thead><tr>
                    <th scope="col">"Job"</th>
                    <th scope="col">"Team"</th>
                    <th scope="col">"State"</th>
                    <th scope="col">"Device"</th>
                    <th scope="col" class="num">"Device time"</th>
                    <th scope="col">"Priority"</th>
                    <th scope="col">"Actions"</th>
                </tr></thead>
                <tbody>
                    {d.jobs.into_iter().map(|r| view! { <JobLine r=r a=a/> }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[component]
fn WorkerLine(w: WorkerRow) -> impl IntoView {
    let status = if w.lost {
        "Lost".to_owned()
    } else if w.status == "ready" {
        "Ready".to_owned()
    } else {
        w.status.clone()
    };
    let memory = match &w.live {
        Some(l) => format!(
            "{} free of {}",
            format::bytes(l.memory_free_bytes as i64),
            format::bytes(l.memory_total_bytes as i64)
        ),
        None => format::bytes(w.device.memory_bytes as i64),
    };
    let busy = w.live.as_ref().map_or_else(
        || "—".to_owned(),
        |l| format!("{} %", l.utilisation_percent),
    );
    let running = match w.running {
        Some((p, j)) => {
            view! { <a href=format!("/projects/{p}/jobs/{j}")>{format!("Job {j}")}</a> }.into_any()
        }
        None => view! { "idle" }.into_any(),
    };
    view! {
        <tr class:lost=w.lost data-worker=w.id.clone()>
            <th scope="row">{format::device(&w.device)}</th>
            <td data-label="Worker">{w.host}</td>
            <td data-label="Status"><span class=if w.lost { "state state-failed" } else { "state" }>{status}</span></td>
            <td data-label="Running">{running}</td>
            <td class="num" data-label="Memory">{memory}</td>
            <td class="num" data-label="Utilisation">{busy}</td>
            <td class="num" data-label="Last report">{format::duration(w.heartbeat_age_ms as f64 / 1000.0)} " ago"</td>
        </tr>
    }
}

#[component]
fn QuotaLine(t: TeamQuota, a: Actions) -> impl IntoView {
    let team_id = t.team_id;
    let id = move |f: &str| format!("quota-{team_id}-{f}");
    let budget = t
        .month_hours
        .map_or_else(|| "no budget".to_owned(), |b| format!("of {b:.1} h"));
    view! {
        <tr id=format!("team-quota-{}", t.team_id)>
            <th scope="row">{t.team.clone()}</th>
            <td data-label="Running / waiting">{format!("{} / {}", t.running, t.waiting)}</td>
            <td data-label="Used this month">{format!("{:.2} h ", t.used_month_hours)}{budget}</td>
            <td data-label="Quota">
                <ActionForm action=a.quota attr:class="quota-form">
                    <input type="hidden" name="team_id" value=t.team_id.to_string()/>
                    <label for=id("guaranteed")>"Guaranteed devices"</label>
                    <input id=id("guaranteed") name="guaranteed_devices" inputmode="numeric" size="4" value=t.guaranteed_devices.to_string() required/>
                    <label for=id("hours")>"Device-hours a month"</label>
                    <input id=id("hours") name="month_hours" inputmode="decimal" size="6" value=t.month_hours.map(|h| h.to_string()).unwrap_or_default() placeholder="no limit"/>
                    <label for=id("person")>"Jobs per person"</label>
                    <input id=id("person") name="per_person" inputmode="numeric" size="4" value=t.per_person.map(|p| p.to_string()).unwrap_or_default() placeholder="no limit"/>
                    <button type="submit" class="secondary">"Save quota"</button>
                </ActionForm>
            </td>
        </tr>
    }
}

#[component]
fn JobLine(r: QueueRow, a: Actions) -> impl IntoView {
    let j = r.job;
    let id = j.id.to_string();
    let (id_priority, id_pause, id_resume) = (id.clone(), id.clone(), id.clone());
    let state = j.state;
    let waiting = j.waiting_reason.clone();
    let position = j.queue_position.map(|p| format!(" (position {})", p + 1));
    let pausable = matches!(state, JobState::Queued | JobState::Running);
    let resumable = state == JobState::Paused;
    let cancellable = !state.is_final() && state != JobState::Cancelling;
    let prio_id = format!("priority-{}", j.id);
    let prio_label = format!("Priority of job {}", j.id);
    view! {
        <tr id=format!("queue-job-{}", j.id) data-state=state.as_str()>
            <th scope="row">
                <a href=format!("/projects/{}/jobs/{}", j.project_id, j.id)>{format!("Job {}", j.id)}</a>
                <div class="hint">{match j.evaluates {
                    Some(t) => format!("evaluates job {t} · {} · {}", j.base_model, j.created_by),
                    None => format!("{} · {}", j.base_model, j.created_by),
                }}</div>
            </th>
            <td data-label="Team">{r.team}</td>
            <td data-label="State">
                <span class=format!("state state-{}", state.as_str())>{state.label()}</span>
                {r.preemptible.then(|| view! { " " <span class="state">"borrowed"</span> })}
                {waiting.map(|w| view! { <div class="hint waiting">{w}{position}</div> })}
            </td>
            <td data-label="Device">{r.device.unwrap_or_else(|| "—".into())}</td>
            <td class="num" data-label="Device time">{hours(r.hours)}</td>
            <td data-label="Priority">
                {(!state.is_final()).then(|| view! {
                    <ActionForm action=a.priority attr:class="inline">
                        <input type="hidden" name="id" value=id_priority/>
                        <label class="sr-only" for=prio_id.clone()>{prio_label.clone()}</label>
                        <input id=prio_id.clone() name="priority" inputmode="numeric" size="4" value=j.priority.to_string()/>
                        <button type="submit" class="secondary">"Set"</button>
                    </ActionForm>
                })}
            </td>
            <td data-label="Actions" class="actions">
                {pausable.then(|| view! {
                    <ActionForm action=a.pause attr:class="inline">
                        <input type="hidden" name="id" value=id_pause/>
                        <button type="submit" class="secondary">"Pause"</button>
                    </ActionForm>
                })}
                {resumable.then(|| view! {
                    <ActionForm action=a.resume attr:class="inline">
                        <input type="hidden" name="id" value=id_resume/>
                        <button type="submit" class="secondary">"Resume"</button>
                    </ActionForm>
                })}
                {cancellable.then(|| view! {
                    <ActionForm action=a.cancel attr:class="inline">
                        <input type="hidden" name="id" value=id/>
                        <button type="submit" class="secondary danger">"Cancel"</button>
                    </ActionForm>
                })}
            </td>
        </tr>
    }
}

/// A query parameter, or empty.
fn query(name: &'static str) -> Memo<String> {
    let q = use_query_map();
    Memo::new(move |_| q.with(|q| q.get(name).unwrap_or_default()))
}

#[component]
pub fn UsagePage() -> impl IntoView {
    let (from, to) = (query("from"), query("to"));
    let data = Resource::new(
        move || (from.get(), to.get()),
        |(f, t)| api::load_usage(f, t),
    );
    loaded(data, move |d| view! { <UsageView d=d/> })
}

#[component]
fn UsageView(d: UsageReport) -> impl IntoView {
    let csv = format!("/api/admin/usage.csv?from={}&to={}", d.from, d.to);
    let series: Vec<Series> = d
        .teams
        .iter()
        .map(|t| Series {
            label: t.team.clone(),
            values: t.hours.clone(),
            // A month's budget as an even share per day.
            limit: t.month_hours.map(|b| b / 30.0),
        })
        .collect();
    let total: Vec<(String, f64)> = d
        .teams
        .iter()
        .map(|t| (t.team.clone(), t.hours.iter().sum()))
        .collect();
    view! {
        <h1>"Administration"</h1>
        <AdminNav current="/admin/usage"/>
        <section class="panel" id="usage-panel">
            <h2>"Device-hours per team"</h2>
            <form method="get" action="/admin/usage" class="inline period">
                <label for="usage-from">"From"</label>
                <input id="usage-from" name="from" type="date" value=d.from.clone()/>
                <label for="usage-to">"To"</label>
                <input id="usage-to" name="to" type="date" value=d.to.clone()/>
                <button type="submit" class="secondary">"Show"</button>
                " "
                <a href=csv id="usage-csv" download>"Download as CSV"</a>
            </form>
            <p class="hint">"Weighted device-hours each team's jobs held per day (UTC). The dashed lines are each team's monthly budget shared evenly over 30 days."</p>
            <UsageChart id="usage-chart" title="Device-hours per day" days=d.days.clone() series=series/>
            <table class="usage stack" id="usage-totals">
                <thead><tr><th scope="col">"Team"</th><th scope="col" class="num">"Device-hours in the period"</th></tr></thead>
                <tbody>
                    {total.into_iter().map(|(t, h)| view! {
                        <tr><th scope="row">{t}</th><td class="num" data-label="Device-hours">{format!("{h:.2}")}</td></tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[component]
pub fn AuditLogPage() -> impl IntoView {
    let (person, team, action) = (query("person"), query("team"), query("action"));
    let data = Resource::new(
        move || (person.get(), team.get(), action.get()),
        |(p, t, a)| api::load_audit(p, t, a),
    );
    loaded(
        data,
        move |d| view! { <AuditView d=d person=person.get_untracked() team=team.get_untracked() action=action.get_untracked()/> },
    )
}

#[component]
fn AuditView(d: AuditPage, person: String, team: String, action: String) -> impl IntoView {
    let csv = format!(
        "/api/admin/audit.csv?person={}&team={}&action={}",
        format::url_component(&person),
        format::url_component(&team),
        format::url_component(&action)
    );
    let select = move |id: &'static str,
                       name: &'static str,
                       label: &'static str,
                       all: &'static str,
                       choices: Vec<String>,
                       chosen: String| {
        view! {
            <label for=id>{label}</label>
            <select id=id name=name>
                <option value="">{all}</option>
                {choices.into_iter().map(|c| {
                    let selected = c == chosen;
                    view! { <option value=c.clone() selected=selected>{c.clone()}</option> }
                }).collect_view()}
            </select>
        }
    };
    view! {
        <h1>"Administration"</h1>
        <AdminNav current="/admin/audit"/>
        <section class="panel" id="audit-panel">
            <h2>"Audit log"</h2>
            <form method="get" action="/admin/audit" class="inline filters">
                {select("audit-person", "person", "Person", "Everyone", d.people.clone(), person.clone())}
                {select("audit-team", "team", "Team", "Every team", d.teams.clone(), team.clone())}
                {select("audit-action", "action", "Action", "Every action", d.actions.clone(), action.clone())}
                <button type="submit" class="secondary">"Filter"</button>
                " "
                <a href=csv id="audit-csv" download>"Download as CSV"</a>
            </form>
            <p class="hint">"Who changed what, newest first (at most 500 shown; the CSV has the same). Entries cannot be edited or deleted."</p>
            <table class="audit stack" id="audit">
                <thead><tr>
                    <th scope="col">"When (UTC)"</th>
                    <th scope="col">"Who"</th>
                    <th scope="col">"Action"</th>
                    <th scope="col">"On"</th>
                    <th scope="col">"Team"</th>
                    <th scope="col">"Details"</th>
                </tr></thead>
                <tbody>
                    {d.entries.into_iter().map(|e| view! {
                        <tr data-action=e.action.clone()>
                            <th scope="row">{format::utc(e.at)}</th>
                            <td data-label="Who">{e.actor}</td>
                            <td data-label="Action">{e.action.replace('_', " ")}</td>
                            <td data-label="On">{format!("{} {}", e.target_kind, e.target)}</td>
                            <td data-label="Team">{e.team.unwrap_or_default()}</td>
                            <td data-label="Details"><code class="detail">{e.detail}</code></td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}
