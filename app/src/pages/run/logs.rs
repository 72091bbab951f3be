//! The log pane of a run's page: one step's output for one attempt,
//! following live, with a full-screen (log-only) view.
//!
//! Lines come from the run's feed (every chunk, from the first, in order)
//! and stay in memory (`log_store`), so search reaches every line of the
//! step, not only the rendered ones; the pane renders only the rows in
//! view (fixed-height rows, a spacer for the rest), so 100,000 lines scroll
//! smoothly while the step still runs. ANSI colours are parsed by
//! `xene_core::ansi`; lines written to stderr are marked.
//!
//! Sections: a line `::group::TITLE` opens a section (shown as its title,
//! a button that folds it) and `::endgroup::` (never shown) closes it, as
//! in GitHub Actions; ended sections start collapsed, the one still open
//! stays open. Links: `#L10` or `#L10-L20` in the URL selects lines (click
//! a line number; shift-click another for a range). A task tried more than
//! once has a tab per attempt, each with its own log (`?attempt=N`).

use std::collections::BTreeMap;

use leptos::html::Div;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use xene_api::paths::{self, encode};
use xene_api::run::{RunDetail, TaskRun};
use xene_core::ansi;
use xene_core::status::TaskStatus;

#[cfg(feature = "hydrate")]
use super::fit;
use super::log_rows::{RowData, row_view};
use super::log_store::{LogStore, Marker, StepKey, StepLog, count_text, range_hash};

/// A row's height in pixels: the CSS gives `.log-line` the same.
const ROW: i32 = 20;
/// Rows rendered above and below the view.
const OVERSCAN: i32 = 30;

/// The task whose log a run page opens on: the first that failed or ended
/// `unknown` (where to look), else one running, else the first that ran.
fn default_task(tasks: &[TaskRun]) -> Option<&TaskRun> {
    tasks
        .iter()
        .find(|t| matches!(t.status, TaskStatus::Error | TaskStatus::Unknown))
        .or_else(|| tasks.iter().find(|t| t.status == TaskStatus::Running))
        .or_else(|| tasks.iter().find(|t| !t.steps.is_empty()))
}

/// A task's attempts: those the run lists and those that logged, oldest
/// first, with the status of each the run knows.
fn attempts_of(task: &TaskRun, logged: Vec<i64>) -> Vec<(i64, Option<String>)> {
    let mut all: BTreeMap<i64, Option<String>> = logged.into_iter().map(|a| (a, None)).collect();
    for a in &task.attempts {
        all.insert(a.number, Some(a.status.clone()));
    }
    all.entry(task.attempt.max(1)).or_insert(None);
    all.into_iter().collect()
}

/// The attempt shown when the URL names none: the newest that logged or
/// got past waiting, so a retry scheduled (still `ready` through its
/// backoff) does not hide the failed attempt's log.
fn default_attempt(attempts: &[(i64, Option<String>)], logged: &[i64]) -> i64 {
    attempts
        .iter()
        .rev()
        .find(|(n, status)| {
            logged.contains(n) || !matches!(status.as_deref(), Some("ready" | "placed"))
        })
        .or(attempts.first())
        .map_or(1, |a| a.0)
}

#[component]
pub fn LogPane(
    run_id: i64,
    detail: RwSignal<RunDetail>,
    logs: RwSignal<LogStore>,
) -> impl IntoView {
    let query = use_query_map();
    // The step shown: the URL's, else the first step of the URL's task,
    // else the first step of the default task; of the URL's attempt, else
    // the latest.
    let shown = Memo::new(move |_| {
        let (task, step, attempt) =
            query.with(|q| (q.get("task"), q.get("step"), q.get("attempt")));
        let (task, step, attempts) = detail.with(|d| {
            let task_run = match &task {
                Some(t) => d.tasks.iter().find(|x| &x.name == t),
                None => default_task(&d.tasks),
            }?;
            let step = match step {
                Some(s) if task_run.steps.iter().any(|x| x.name == s) => s,
                _ => task_run.steps.first()?.name.clone(),
            };
            let logged = logs.with(|l| l.attempts(&task_run.name, &step));
            let attempts = attempts_of(task_run, logged.clone());
            let latest = default_attempt(&attempts, &logged);
            Some((task_run.name.clone(), step, (attempts, latest)))
        })?;
        let (attempts, latest) = attempts;
        let attempt = attempt
            .and_then(|a| a.parse::<i64>().ok())
            .filter(|a| attempts.iter().any(|x| x.0 == *a))
            .unwrap_or(latest);
        Some(((task, step, attempt), attempts))
    });
    // The pane is drawn anew only when the step or attempt shown changes,
    // not when an attempt's status does.
    let key = Memo::new(move |_| shown.with(|s| s.as_ref().map(|(k, _)| k.clone())));
    let attempts =
        Memo::new(move |_| shown.with(|s| s.as_ref().map(|(_, a)| a.clone()).unwrap_or_default()));
    let full = RwSignal::new(false);
    #[cfg(feature = "hydrate")]
    {
        // Escape leaves full screen wherever the focus is (switching the
        // step re-draws the link that had it).
        let escape = window_event_listener(leptos::ev::keydown, move |e| {
            if e.key() == "Escape" && full.get_untracked() {
                full.set(false);
            }
        });
        on_cleanup(move || {
            escape.remove();
            fit::set_inert(false);
        });
        // Full screen is modal: the rest of the page is inert, the focus
        // goes into the log and back to the button that opened it.
        Effect::new(move |before: Option<bool>| {
            let on = full.get();
            if before.is_some() || on {
                fit::set_inert(on);
                fit::focus(if on {
                    ".log-pane .log-scroll"
                } else {
                    "#log-full"
                });
            }
            on
        });
        // The log box ends at the bottom of the window, from wherever it
        // starts: measured again when what is above it may have moved.
        let resize = window_event_listener(leptos::ev::resize, move |_| fit::fit_log());
        on_cleanup(move || resize.remove());
        Effect::new(move |_| {
            detail.track();
            attempts.track();
            key.track();
            if !full.get() {
                request_animation_frame(fit::fit_log);
            }
        });
    }
    view! {
        <section
            class=move || if full.get() { "card log-pane full" } else { "card log-pane" }
            aria-label="Log"
            role=move || full.get().then_some("dialog")
            aria-modal=move || full.get().then_some("true")
        >
            {move || match key.get() {
                None => view! {
                    <p class="empty">"No step to show yet: logs appear here as soon as a task starts."</p>
                }
                    .into_any(),
                Some(key) => view! { <StepPane run_id detail logs key attempts full /> }.into_any(),
            }}
        </section>
    }
}

/// The tabs of a task's attempts, when it had more than one.
#[component]
fn AttemptTabs(
    run_id: i64,
    key: StepKey,
    attempts: Memo<Vec<(i64, Option<String>)>>,
) -> impl IntoView {
    let (task, step, shown) = key;
    move || {
        let attempts = attempts.get();
        let latest = attempts.last().map_or(0, |a| a.0);
        (attempts.len() > 1).then(|| view! {
            <nav class="attempt-tabs" aria-label="Attempts">
                {attempts.into_iter().map(|(n, status)| {
                    let href = format!(
                        "/runs/{run_id}?task={}&step={}&attempt={n}",
                        encode(&task),
                        encode(&step)
                    );
                    let class = format!("tab status-{}", status.clone().unwrap_or_default());
                    view! {
                        <a href=href class=class data-attempt=n aria-current=(n == shown).then_some("page")>
                            "Attempt " {n}
                            {status.map(|s| view! { <span class="muted">" · " {s}</span> })}
                            {(n == latest).then(|| view! { <span class="muted">" (latest)"</span> })}
                        </a>
                    }
                }).collect_view()}
            </nav>
        })
    }
}

#[component]
fn StepPane(
    run_id: i64,
    detail: RwSignal<RunDetail>,
    logs: RwSignal<LogStore>,
    key: StepKey,
    attempts: Memo<Vec<(i64, Option<String>)>>,
    full: RwSignal<bool>,
) -> impl IntoView {
    let (task, step, attempt) = key.clone();
    let scroller = NodeRef::<Div>::new();
    let (scroll_top, set_scroll_top) = signal(0i32);
    let (view_height, set_view_height) = signal(600i32);
    let follow = RwSignal::new(!logs.with_untracked(|l| l.ended));
    let show_times = RwSignal::new(false);
    // Sections the reader folded or unfolded: title line → collapsed.
    let folded: RwSignal<BTreeMap<usize, bool>> = RwSignal::new(BTreeMap::new());
    let selection: RwSignal<Option<(usize, usize)>> = RwSignal::new(None);
    let search = RwSignal::new(String::new());
    let matches: RwSignal<(String, usize, Vec<usize>)> =
        RwSignal::new((String::new(), 0, Vec::new()));
    let current_match: RwSignal<Option<usize>> = RwSignal::new(None);

    let key_len = key.clone();
    let len = Memo::new(move |_| logs.with(|l| l.steps.get(&key_len).map_or(0, StepLog::len)));
    // Which line each row shows (`None`: every line), and each section's
    // state as shown.
    let key_rows = key.clone();
    let rows = Memo::new(move |_| {
        len.track();
        let folded = folded.get();
        logs.with_untracked(|l| {
            l.steps.get(&key_rows).and_then(|s| {
                s.rows(|start, section| folded.get(&start).copied().unwrap_or(section.closed))
            })
        })
    });
    let key_sections = key.clone();
    let collapsed_sections = Memo::new(move |_| {
        len.track();
        let folded = folded.get();
        logs.with_untracked(|l| {
            l.steps.get(&key_sections).map_or_else(BTreeMap::new, |s| {
                s.sections()
                    .iter()
                    .map(|(start, section)| {
                        let closed = folded.get(start).copied().unwrap_or(section.closed);
                        (*start, (section.end, closed))
                    })
                    .collect::<BTreeMap<usize, (usize, bool)>>()
            })
        })
    });
    let row_count = move || rows.with(|r| r.as_ref().map_or(len.get(), Vec::len));
    let row_of_line = move |line: usize| -> usize {
        rows.with_untracked(|r| match r {
            None => line,
            Some(r) => r.partition_point(|&x| (x as usize) < line),
        })
    };
    let scroll_to_line = move |line: usize| {
        let row = row_of_line(line) as i32;
        if let Some(el) = scroller.get_untracked() {
            let h = el.client_height();
            el.set_scroll_top((row * ROW - h / 3).max(0));
        }
    };
    // Opens the collapsed section a line is in.
    let reveal = move |line: usize| {
        let inside = collapsed_sections
            .get_untracked()
            .iter()
            .find(|(s, (e, closed))| *closed && **s < line && line <= *e)
            .map(|(s, _)| *s);
        if let Some(s) = inside {
            folded.update(|f| {
                f.insert(s, false);
            });
        }
    };

    // The URL's line range, once the lines are there.
    #[cfg(feature = "hydrate")]
    {
        let applied = RwSignal::new(false);
        Effect::new(move |_| {
            let n = len.get();
            if applied.get_untracked() {
                return;
            }
            let hash = window().location().hash().unwrap_or_default();
            let Some(range) = super::log_store::parse_range(&hash) else {
                applied.set(true);
                return;
            };
            selection.set(Some(range));
            if n >= range.0 {
                applied.set(true);
                follow.set(false);
                reveal(range.0 - 1);
                scroll_to_line(range.0 - 1);
            }
        });
    }

    // Follow: keep the bottom in view while new lines come.
    Effect::new(move |_| {
        len.track();
        if follow.get_untracked()
            && let Some(el) = scroller.get_untracked()
        {
            el.set_scroll_top(el.scroll_height());
        }
    });
    let on_scroll = move |_| {
        if let Some(el) = scroller.get_untracked() {
            let top = el.scroll_top();
            set_scroll_top.set(top);
            set_view_height.set(el.client_height().max(ROW));
            let at_bottom = top + el.client_height() >= el.scroll_height() - 2 * ROW;
            if follow.get_untracked() != at_bottom {
                follow.set(at_bottom);
            }
        }
    };

    let run_search = {
        let key = key.clone();
        move |forward: bool| {
            let q = search.get_untracked().to_lowercase();
            if q.is_empty() {
                matches.set((String::new(), 0, Vec::new()));
                current_match.set(None);
                return;
            }
            // Scan what is new since the last search with the same text:
            // every line of the step, rendered or not (`::endgroup::` is
            // never shown, so never found).
            logs.with_untracked(|l| {
                let Some(step) = l.steps.get(&key) else {
                    return;
                };
                matches.update(|(text, scanned, found)| {
                    if *text != q {
                        *text = q.clone();
                        *scanned = 0;
                        found.clear();
                    }
                    for i in *scanned..step.len() {
                        if let Some(line) = step.line(i)
                            && line.marker != Marker::Close
                            && ansi::plain(&line.raw).to_lowercase().contains(&q)
                        {
                            found.push(i);
                        }
                    }
                    // The unfinished line may still grow: scan it again next time.
                    *scanned = step.lines.len();
                    found.dedup();
                });
            });
            let found = matches.with_untracked(|m| m.2.clone());
            if found.is_empty() {
                current_match.set(None);
                return;
            }
            let next = match current_match.get_untracked() {
                None => 0,
                Some(c) if forward => (c + 1) % found.len(),
                Some(c) => (c + found.len() - 1) % found.len(),
            };
            current_match.set(Some(next));
            let line = found[next];
            reveal(line);
            follow.set(false);
            scroll_to_line(line);
        }
    };
    let search_prev = run_search.clone();
    let search_enter = run_search;

    let visible = {
        let key = key.clone();
        move || {
            let first = (scroll_top.get() / ROW - OVERSCAN).max(0) as usize;
            let count = (view_height.get() / ROW + 2 * OVERSCAN) as usize;
            let total = row_count();
            let last = (first + count).min(total);
            let rows_map = rows.get();
            let sel = selection.get();
            let hits = matches.with(|m| m.2.clone());
            let current = current_match.get().and_then(|c| hits.get(c).copied());
            let times = show_times.get();
            let sections = collapsed_sections.get();
            len.track();
            logs.with_untracked(|l| {
                let Some(step) = l.steps.get(&key) else {
                    return Vec::new();
                };
                (first..last)
                    .filter_map(|row| {
                        let index = rows_map.as_ref().map_or(row, |r| r[row] as usize);
                        let line = step.line(index)?;
                        let title = line.marker == Marker::Open;
                        let mut data = RowData::new(index, line);
                        data.section = title.then(|| sections.get(&index).map(|s| s.1)).flatten();
                        data.selected = sel.is_some_and(|(a, b)| a <= index + 1 && index < b);
                        data.hit = hits.binary_search(&index).is_ok();
                        data.current = current == Some(index);
                        data.times = times;
                        Some(data)
                    })
                    .collect::<Vec<_>>()
            })
        }
    };
    let first_row = move || (scroll_top.get() / ROW - OVERSCAN).max(0);

    let on_number = move |line: usize, shift: bool| {
        let n = line + 1;
        let range = match (shift, selection.get_untracked()) {
            (true, Some((a, _))) => (a.min(n), a.max(n)),
            _ => (n, n),
        };
        selection.set(Some(range));
        #[cfg(feature = "hydrate")]
        if let Ok(history) = window().history() {
            let _ = history.replace_state_with_url(
                &wasm_bindgen::JsValue::NULL,
                "",
                Some(&range_hash(range)),
            );
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = range_hash(range);
    };
    let toggle = move |line: usize| {
        let closed = collapsed_sections.with_untracked(|s| s.get(&line).is_some_and(|s| s.1));
        folded.update(|f| {
            f.insert(line, !closed);
        });
    };

    let task_for_steps = task.clone();
    let steps = move || {
        detail.with(|d| {
            d.tasks
                .iter()
                .find(|t| t.name == task_for_steps)
                .map(|t| {
                    t.steps
                        .iter()
                        .map(|s| (s.name.clone(), s.status.as_str()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
    };
    let download = paths::step_log(run_id, &task, &step, Some(attempt));
    let (task_label, step_label) = (task.clone(), step.clone());
    let task_link = task.clone();
    let step_now = step.clone();
    let key_dropped = key.clone();
    let query = use_query_map();
    // A step tab keeps the attempt only when the URL chose one: without,
    // it shows that step's default attempt.
    let pinned = move || query.with(|q| q.get("attempt").is_some());
    let several = move || attempts.with(|a| a.len() > 1);
    view! {
        <div class="log-head">
            <h2>
                "Log of " <span class="mono">{task_label}</span> " / " <span class="mono">{step_label}</span>
                {move || several().then(|| view! { <span class="muted">" · attempt " {attempt}</span> })}
            </h2>
            <nav class="step-tabs" aria-label="Steps">
                {move || steps().into_iter().map(|(name, status)| {
                    let mut href = format!(
                        "/runs/{run_id}?task={}&step={}",
                        encode(&task_link),
                        encode(&name)
                    );
                    if pinned() {
                        href.push_str(&format!("&attempt={attempt}"));
                    }
                    let current = (name == step_now).then_some("page");
                    view! {
                        <a href=href aria-current=current class=format!("tab status-{status}")>{name}</a>
                    }
                }).collect_view()}
            </nav>
            <AttemptTabs run_id key=key.clone() attempts />
            // A fixed width (CSS): a growing count never re-wraps the head.
            <span class="muted" id="line-count">{move || count_text(len.get())}</span>
        </div>
        <div class="log-tools" role="toolbar" aria-label="Log tools">
            <form class="log-search" role="search" on:submit=move |e| {
                e.prevent_default();
                search_enter(true);
            }>
                <label for="log-search" class="visually-hidden">"Search the log"</label>
                <input
                    id="log-search"
                    type="search"
                    placeholder="Search every line"
                    prop:value=move || search.get()
                    on:input=move |e| {
                        search.set(event_target_value(&e));
                        // The last search's highlights go with its text;
                        // Enter searches the new one.
                        matches.set((String::new(), 0, Vec::new()));
                        current_match.set(None);
                    }
                />
                <button type="button" id="search-prev" on:click=move |_| search_prev(false) aria-label="Previous match">"↑"</button>
                <button type="submit" id="search-next" aria-label="Next match">"↓"</button>
                <span class="muted" id="search-count" role="status">
                    {move || {
                        let (text, _, found) = matches.get();
                        if text.is_empty() {
                            String::new()
                        } else if found.is_empty() {
                            "no match".into()
                        } else {
                            format!("{} of {}", current_match.get().map_or(0, |c| c + 1), found.len())
                        }
                    }}
                </span>
            </form>
            <label class="check">
                <input type="checkbox" id="show-times" prop:checked=move || show_times.get() on:change=move |_| show_times.update(|t| *t = !*t) />
                "Timestamps"
            </label>
            <button
                type="button"
                id="follow"
                aria-pressed=move || follow.get().to_string()
                on:click=move |_| {
                    follow.set(true);
                    if let Some(el) = scroller.get_untracked() {
                        el.set_scroll_top(el.scroll_height());
                    }
                }
            >
                "Follow"
            </button>
            <a class="button" href=download download=format!("run-{run_id}-{task}-{step}-{attempt}.log")>"Download"</a>
            <button
                type="button"
                id="log-full"
                title="The log alone, over the whole window (Escape leaves it)"
                aria-pressed=move || full.get().to_string()
                on:click=move |_| full.update(|f| *f = !*f)
            >
                {move || if full.get() { "Exit full screen" } else { "Full screen" }}
            </button>
        </div>
        {move || {
            let dropped = logs.with(|l| l.steps.get(&key_dropped).map_or(0, |s| s.dropped));
            (dropped > 0).then(|| view! {
                <p class="notice small">{format!("{} more are in the raw log (Download).", count_text(dropped))}</p>
            })
        }}
        <div class="log-scroll" node_ref=scroller on:scroll=on_scroll tabindex="0" aria-label="Log lines">
            <div class="log-spacer" style=move || format!("height:{}px", row_count() as i32 * ROW)>
                <div class="log-window" style=move || format!("transform:translateY({}px)", first_row() * ROW)>
                    {move || {
                        if len.get() == 0 {
                            return view! { <p class="empty">"No output yet."</p> }.into_any();
                        }
                        visible().into_iter().map(|r| row_view(r, on_number, toggle)).collect_view().into_any()
                    }}
                </div>
            </div>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_task_is_one_that_failed_or_ended_unknown() {
        let task = |name: &str, status: TaskStatus| {
            serde_json::from_value::<TaskRun>(serde_json::json!({
                "name": name, "status": status, "attempt": 1, "depends_on": [], "output": null,
                "error": null, "started_at": null, "finished_at": null, "duration_ms": null,
                "steps": [],
            }))
            .unwrap()
        };
        let pick = |tasks: &[TaskRun]| default_task(tasks).map(|t| t.name.clone());
        // Unknown weighs like error: ahead of a task still running.
        let tasks = [
            task("ran", TaskStatus::Running),
            task("lost", TaskStatus::Unknown),
        ];
        assert_eq!(pick(&tasks).as_deref(), Some("lost"));
        let tasks = [
            task("lost", TaskStatus::Unknown),
            task("failed", TaskStatus::Error),
        ];
        assert_eq!(pick(&tasks).as_deref(), Some("lost"));
        let tasks = [task("ran", TaskStatus::Running)];
        assert_eq!(pick(&tasks).as_deref(), Some("ran"));
        // Its attempts: the listed ones and the logged ones.
        let mut t = task("retried", TaskStatus::Success);
        t.attempt = 2;
        assert_eq!(attempts_of(&t, vec![1]), [(1, None), (2, None)]);
        assert_eq!(attempts_of(&t, vec![]), [(2, None)]);
        // A retry waiting out its backoff: the failed attempt stays shown
        // until the new one logs or starts.
        let waiting = [
            (1, Some("error".to_string())),
            (2, Some("ready".to_string())),
        ];
        assert_eq!(default_attempt(&waiting, &[1]), 1);
        assert_eq!(default_attempt(&waiting, &[1, 2]), 2);
        let started = [
            (1, Some("error".to_string())),
            (2, Some("running".to_string())),
        ];
        assert_eq!(default_attempt(&started, &[1]), 2);
        // Nothing ran yet: the first.
        assert_eq!(default_attempt(&[(1, Some("ready".to_string()))], &[]), 1);
    }
}
