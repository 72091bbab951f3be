//! The runs list: live, filtered, paged.

use std::collections::BTreeMap;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use xene_api::feed::ListFeed;
use xene_api::paths::{self, encode, with_query};
use xene_api::run::{Run, RunList};
use xene_core::duration::human;
use xene_core::status::RunStatus;

use crate::api;
use crate::ui::{ErrorBox, Status, Time, now};

const TRIGGERS: &[&str] = &["manual", "webhook", "cron"];
const PAGE: usize = 25;

#[derive(Debug, Clone, Default, PartialEq)]
struct Filters {
    workflow: String,
    pipeline: String,
    status: String,
    trigger: String,
    cursor: String,
}

impl Filters {
    fn matches(&self, run: &Run) -> bool {
        (self.workflow.is_empty() || run.workflow == self.workflow)
            && (self.pipeline.is_empty() || run.pipeline == self.pipeline)
            && (self.status.is_empty() || run.status.as_str() == self.status)
            && (self.trigger.is_empty() || run.trigger == self.trigger)
    }

    fn api_path(&self) -> String {
        let given = |value: &String| (!value.is_empty()).then(|| value.clone());
        with_query(
            paths::runs(),
            [
                ("limit", Some(PAGE.to_string())),
                ("workflow", given(&self.workflow)),
                ("pipeline", given(&self.pipeline)),
                ("status", given(&self.status)),
                ("trigger", given(&self.trigger)),
                ("cursor", given(&self.cursor)),
            ],
        )
    }

    /// This page's URL with another cursor.
    fn page_href(&self, cursor: &str) -> String {
        let mut parts = Vec::new();
        for (key, value) in [
            ("workflow", &self.workflow),
            ("pipeline", &self.pipeline),
            ("status", &self.status),
            ("trigger", &self.trigger),
        ] {
            if !value.is_empty() {
                parts.push(format!("{key}={}", encode(value)));
            }
        }
        if !cursor.is_empty() {
            parts.push(format!("cursor={}", encode(cursor)));
        }
        format!("/runs?{}", parts.join("&"))
    }
}

#[component]
pub fn RunsPage() -> impl IntoView {
    let query = use_query_map();
    let filters = Memo::new(move |_| {
        query.with(|q| {
            let get = |k: &str| q.get(k).unwrap_or_default();
            Filters {
                workflow: get("workflow"),
                pipeline: get("pipeline"),
                status: get("status"),
                trigger: get("trigger"),
                cursor: get("cursor"),
            }
        })
    });
    let page = Resource::new(
        move || filters.get(),
        |f| async move { api::get::<RunList>(f.api_path()).await },
    );
    // The rows as the feed updates them.
    let live: RwSignal<BTreeMap<i64, Run>> = RwSignal::new(BTreeMap::new());
    let (fresh, set_fresh) = signal(Vec::<Run>::new());
    // The ids of the page's runs, for the feed's handler: it runs outside
    // any <Transition>, where reading `page` itself is a hydration hazard
    // (and a warning in debug builds).
    let (listed, set_listed) = signal(Vec::<i64>::new());
    Effect::new(move |_| {
        set_listed.set(page.with(|p| {
            p.as_ref()
                .and_then(|r| r.as_ref().ok())
                .map(|l| l.runs.iter().map(|r| r.id).collect())
                .unwrap_or_default()
        }));
        live.set(BTreeMap::new());
        set_fresh.set(Vec::new());
    });
    crate::live::follow(
        paths::runs_feed,
        move |message: ListFeed| match message {
            ListFeed::Run { run } => {
                let known = listed.with_untracked(|ids| ids.contains(&run.id))
                    || fresh.with_untracked(|f| f.iter().any(|r| r.id == run.id));
                let f = filters.get_untracked();
                if known {
                    live.update(|l| {
                        l.insert(run.id, run);
                    });
                } else if f.cursor.is_empty() && f.matches(&run) {
                    set_fresh.update(|v| {
                        v.insert(0, run);
                        v.truncate(PAGE);
                    });
                }
            }
            ListFeed::Resync => page.refetch(),
        },
        || false,
    );
    let select = |name: &'static str, label: &'static str, options: Vec<&'static str>| {
        view! {
            <div class="field">
                <label for=format!("filter-{name}")>{label}</label>
                <select id=format!("filter-{name}") name=name>
                    <option value="">"any"</option>
                    {move || {
                        let current = filters.with(|f| match name {
                            "status" => f.status.clone(),
                            _ => f.trigger.clone(),
                        });
                        options
                            .iter()
                            .map(|o| {
                                view! {
                                    <option value=*o selected=current == *o>{o.replace('_', " ")}</option>
                                }
                            })
                            .collect_view()
                    }}
                </select>
            </div>
        }
    };
    view! {
        <Title text="Runs" />
        <div class="page-head">
            <h1>"Runs"</h1>
        </div>
        // A GET form: filters are part of the URL, and work without the wasm.
        <form method="get" class="filters card" action="/runs">
            <div class="field">
                <label for="filter-workflow">"Workflow"</label>
                <input id="filter-workflow" name="workflow" prop:value=move || filters.with(|f| f.workflow.clone()) />
            </div>
            <div class="field">
                <label for="filter-pipeline">"Pipeline"</label>
                <input id="filter-pipeline" name="pipeline" prop:value=move || filters.with(|f| f.pipeline.clone()) />
            </div>
            {select("status", "Status", RunStatus::ALL.iter().map(|s| s.as_str()).collect())}
            {select("trigger", "Trigger", TRIGGERS.to_vec())}
            <button type="submit">"Filter"</button>
            <a href="/runs">"Clear"</a>
        </form>
        <Transition fallback=|| view! { <p class="loading">"Loading runs…"</p> }>
            {move || {
                page.get()
                    .map(|r| match r {
                        Err(e) => view! { <ErrorBox message=e /> }.into_any(),
                        Ok(list) => {
                            let f = filters.get();
                            let mut runs: Vec<Run> = fresh.get();
                            runs.extend(list.runs.iter().filter(|r| !runs.iter().any(|x| x.id == r.id)).cloned().collect::<Vec<_>>());
                            // Runs the feed brought in since the page loaded pass the same filters.
                            runs.retain(|r| f.matches(r));
                            let next = list.next_cursor.clone();
                            if runs.is_empty() {
                                return view! {
                                    <section class="card empty-state" id="no-runs">
                                        <h2>"No runs here"</h2>
                                        <p>
                                            "Start one with the Run button of a pipeline on "
                                            <a href="/workflows">"the workflows page"</a>
                                            ", or clear the filters."
                                        </p>
                                    </section>
                                }
                                    .into_any();
                            }
                            view! {
                                <div class="table-wrap" tabindex={let narrow = crate::theme::narrow(); move || (!narrow.get()).then_some("0")} role="region" aria-label="Scrollable table">
                                    <table class="list cards" id="runs">
                                        <thead>
                                            <tr>
                                                <th scope="col">"Run"</th>
                                                <th scope="col">"Status"</th>
                                                <th scope="col">"Workflow / pipeline"</th>
                                                <th scope="col">"Trigger"</th>
                                                <th scope="col">"Requested"</th>
                                                <th scope="col">"Duration"</th>
                                            </tr>
                                        </thead>
                                        <tbody>
                                            {runs
                                                .into_iter()
                                                .map(|run| {
                                                    let id = run.id;
                                                    let current = Memo::new(move |_| {
                                                        live.with(|l| l.get(&id).cloned()).unwrap_or_else(|| run.clone())
                                                    });
                                                    view! {
                                                        <tr data-run=id>
                                                            <th scope="row"><a href=format!("/runs/{id}")>"#" {id}</a></th>
                                                            <td data-label="Status"><Status status=Signal::derive(move || current.get().status.as_str().to_string()) /></td>
                                                            <td data-label="Workflow">
                                                                {move || {
                                                                    let r = current.get();
                                                                    format!("{} / {}", r.workflow, r.pipeline)
                                                                }}
                                                            </td>
                                                            <td data-label="Trigger">{move || current.get().trigger}</td>
                                                            <td data-label="Requested"><Time ms=current.get_untracked().requested_at /></td>
                                                            <td data-label="Duration">
                                                                {move || current.get().duration_ms(now()).map(human)}
                                                            </td>
                                                        </tr>
                                                    }
                                                })
                                                .collect_view()}
                                        </tbody>
                                    </table>
                                </div>
                                <nav class="pager" aria-label="Pages">
                                    {(!f.cursor.is_empty()).then(|| view! { <a href=f.page_href("")>"Newest"</a> })}
                                    {next.map(|c| view! { <a href=f.page_href(&c) rel="next">"Older runs"</a> })}
                                </nav>
                            }
                                .into_any()
                        }
                    })
            }}
        </Transition>
    }
}
