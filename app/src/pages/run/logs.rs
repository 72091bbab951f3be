//! The log pane of a run's page: one step's output, following live.
//!
//! Lines come from the run's feed (every chunk, from the first, in order)
//! and stay in memory, so search reaches every line of the step, not only
//! the rendered ones; the pane renders only the rows in view (fixed-height
//! rows, a spacer for the rest), so 100,000 lines scroll smoothly while the
//! step still runs. ANSI colours are parsed by `xene_core::ansi`.
//!
//! Sections: a line `::group::TITLE` opens a collapsible section (shown as
//! its title) and a line `::endgroup::` closes it, as in GitHub Actions.
//! Links: `#L10` or `#L10-L20` in the URL selects lines (click a line
//! number; shift-click another for a range).

use std::collections::{BTreeMap, BTreeSet};

use leptos::html::Div;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;
use xene_core::ansi::{self, Style};

use xene_core::status::TaskStatus;

use xene_api::feed::LogChunk;
use xene_api::paths::{self, encode};
use xene_api::run::{RunDetail, TaskRun};

/// A row's height in pixels: the CSS gives `.log-line` the same.
const ROW: i32 = 20;
/// Rows rendered above and below the view.
const OVERSCAN: i32 = 30;
/// Lines kept per step in the browser; the raw log (download) has the rest.
const MAX_LINES: usize = 1_000_000;
/// Bytes of an unfinished line kept before it is shown as a line anyway.
const MAX_PARTIAL: usize = 64 * 1024;

/// One line of output as it came, with the style in force where it starts.
#[derive(Debug, Clone)]
pub struct Line {
    pub raw: String,
    pub at: i64,
    style: Style,
    /// `Some(title)` for `::group::`, `Some("")`-less `None` otherwise.
    group: Marker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Open,
    Close,
}

/// One step's lines, for its latest attempt.
#[derive(Debug, Clone, Default)]
pub struct StepLog {
    pub lines: Vec<Line>,
    attempt: i64,
    partial: String,
    partial_at: i64,
    style: Style,
    pub dropped: usize,
}

impl StepLog {
    fn push(&mut self, raw: String, at: i64) {
        if self.lines.len() >= MAX_LINES {
            self.dropped += 1;
            return;
        }
        let trimmed = raw.trim_start();
        let group = if trimmed.starts_with("::group::") {
            Marker::Open
        } else if trimmed.starts_with("::endgroup::") {
            Marker::Close
        } else {
            Marker::None
        };
        let style = self.style;
        // Advance the carried style past this line.
        ansi::parse_line(&raw, &mut self.style);
        self.lines.push(Line {
            raw,
            at,
            style,
            group,
        });
    }

    fn absorb(&mut self, data: &str, at: i64) {
        let mut rest = data;
        while let Some(nl) = rest.find('\n') {
            let mut line = std::mem::take(&mut self.partial);
            line.push_str(&rest[..nl]);
            let at = if line.len() > nl { self.partial_at } else { at };
            self.push(line, at);
            rest = &rest[nl + 1..];
        }
        if !rest.is_empty() {
            if self.partial.is_empty() {
                self.partial_at = at;
            }
            self.partial.push_str(rest);
            if self.partial.len() > MAX_PARTIAL {
                let line = std::mem::take(&mut self.partial);
                self.push(line, at);
            }
        }
    }

    /// Lines plus the unfinished one.
    pub fn len(&self) -> usize {
        self.lines.len() + usize::from(!self.partial.is_empty())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn line(&self, i: usize) -> Option<(String, i64, Style, Marker)> {
        if let Some(l) = self.lines.get(i) {
            return Some((l.raw.clone(), l.at, l.style, l.group));
        }
        (i == self.lines.len() && !self.partial.is_empty()).then(|| {
            (
                self.partial.clone(),
                self.partial_at,
                self.style,
                Marker::None,
            )
        })
    }

    /// Each section's first and last line (the last line when still open).
    fn sections(&self) -> BTreeMap<usize, usize> {
        let mut out = BTreeMap::new();
        let mut open: Option<usize> = None;
        for (i, l) in self.lines.iter().enumerate() {
            match l.group {
                Marker::Open => {
                    if let Some(start) = open {
                        out.insert(start, i.saturating_sub(1));
                    }
                    open = Some(i);
                }
                Marker::Close => {
                    if let Some(start) = open.take() {
                        out.insert(start, i);
                    }
                }
                Marker::None => {}
            }
        }
        if let Some(start) = open {
            out.insert(start, self.len().saturating_sub(1));
        }
        out
    }
}

/// Every step's log of one run, filled from its feed.
#[derive(Debug, Clone, Default)]
pub struct LogStore {
    /// The last feed cursor seen: a reconnect resumes after it.
    pub cursor: i64,
    pub ended: bool,
    pub steps: BTreeMap<(String, String), StepLog>,
}

impl LogStore {
    /// Takes one log chunk of the feed.
    pub fn absorb(&mut self, chunk: &LogChunk) {
        if chunk.cursor <= self.cursor {
            return;
        }
        self.cursor = chunk.cursor;
        let attempt = chunk.attempt;
        let step = self
            .steps
            .entry((chunk.task.clone(), chunk.step.clone()))
            .or_default();
        if attempt > step.attempt {
            // A new attempt of the step: its log starts over.
            *step = StepLog {
                attempt,
                ..StepLog::default()
            };
        }
        if attempt == step.attempt {
            step.absorb(&chunk.data, chunk.at);
        }
    }
}

/// `#L10` or `#L10-L20` as 1-based inclusive line numbers.
pub fn parse_range(hash: &str) -> Option<(usize, usize)> {
    let rest = hash.trim_start_matches('#').strip_prefix('L')?;
    let (a, b) = match rest.split_once('-') {
        Some((a, b)) => (a, b.trim_start_matches('L')),
        None => (rest, rest),
    };
    let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
    (a >= 1 && b >= 1).then(|| (a.min(b), a.max(b)))
}

fn range_hash((a, b): (usize, usize)) -> String {
    if a == b {
        format!("#L{a}")
    } else {
        format!("#L{a}-L{b}")
    }
}

/// The task whose log a run page opens on: the first that failed or ended
/// `unknown` (where to look), else one running, else the first that ran.
fn default_task(tasks: &[TaskRun]) -> Option<&TaskRun> {
    tasks
        .iter()
        .find(|t| matches!(t.status, TaskStatus::Error | TaskStatus::Unknown))
        .or_else(|| tasks.iter().find(|t| t.status == TaskStatus::Running))
        .or_else(|| tasks.iter().find(|t| !t.steps.is_empty()))
}

#[component]
pub fn LogPane(
    run_id: i64,
    detail: RwSignal<RunDetail>,
    logs: RwSignal<LogStore>,
) -> impl IntoView {
    let query = use_query_map();
    // The step shown: the URL's, else the first step of the URL's task,
    // else the first step of the default task.
    let selected = Memo::new(move |_| {
        let (task, step) = query.with(|q| (q.get("task"), q.get("step")));
        detail.with(|d| {
            let tasks = &d.tasks;
            let task_run = match &task {
                Some(t) => tasks.iter().find(|x| &x.name == t),
                None => default_task(tasks),
            }?;
            let step = match step {
                Some(s) if task_run.steps.iter().any(|x| x.name == s) => s,
                _ => task_run.steps.first()?.name.clone(),
            };
            Some((task_run.name.clone(), step))
        })
    });
    view! {
        <section class="card log-pane" aria-label="Log">
            {move || match selected.get() {
                None => view! {
                    <p class="empty">"No step to show yet: logs appear here as soon as a task starts."</p>
                }
                    .into_any(),
                Some((task, step)) => view! { <StepPane run_id detail logs task step /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn StepPane(
    run_id: i64,
    detail: RwSignal<RunDetail>,
    logs: RwSignal<LogStore>,
    task: String,
    step: String,
) -> impl IntoView {
    let key = (task.clone(), step.clone());
    let scroller = NodeRef::<Div>::new();
    let (scroll_top, set_scroll_top) = signal(0i32);
    let (view_height, set_view_height) = signal(600i32);
    let follow = RwSignal::new(!logs.with_untracked(|l| l.ended));
    let show_times = RwSignal::new(false);
    let collapsed: RwSignal<BTreeSet<usize>> = RwSignal::new(BTreeSet::new());
    let selection: RwSignal<Option<(usize, usize)>> = RwSignal::new(None);
    let search = RwSignal::new(String::new());
    let matches: RwSignal<(String, usize, Vec<usize>)> =
        RwSignal::new((String::new(), 0, Vec::new()));
    let current_match: RwSignal<Option<usize>> = RwSignal::new(None);

    let key_len = key.clone();
    let len = Memo::new(move |_| logs.with(|l| l.steps.get(&key_len).map_or(0, StepLog::len)));
    let key_sections = key.clone();
    let sections = Memo::new(move |_| {
        len.track();
        logs.with_untracked(|l| {
            l.steps
                .get(&key_sections)
                .map(StepLog::sections)
                .unwrap_or_default()
        })
    });
    // Which line each row shows: all lines, less the inside of collapsed sections.
    let rows = Memo::new(move |_| {
        let n = len.get();
        let hidden = collapsed.get();
        if hidden.is_empty() {
            return None;
        }
        let sections = sections.get();
        let mut out = Vec::with_capacity(n);
        let mut i = 0;
        while i < n {
            out.push(i as u32);
            if hidden.contains(&i)
                && let Some(&end) = sections.get(&i)
            {
                i = end + 1;
            } else {
                i += 1;
            }
        }
        Some(out)
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
            let Some(range) = parse_range(&hash) else {
                applied.set(true);
                return;
            };
            selection.set(Some(range));
            if n >= range.0 {
                applied.set(true);
                follow.set(false);
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
            // every line of the step, rendered or not.
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
                        if let Some((raw, ..)) = step.line(i)
                            && ansi::plain(&raw).to_lowercase().contains(&q)
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
            // A match inside a collapsed section opens it.
            let inside = sections
                .get_untracked()
                .iter()
                .find(|(s, e)| **s < line && line <= **e)
                .map(|(s, _)| *s);
            if let Some(s) = inside {
                collapsed.update(|c| {
                    c.remove(&s);
                });
            }
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
            let hidden = collapsed.get();
            let sections = sections.get();
            len.track();
            logs.with_untracked(|l| {
                let Some(step) = l.steps.get(&key) else {
                    return Vec::new();
                };
                (first..last)
                    .filter_map(|row| {
                        let line = rows_map.as_ref().map_or(row, |r| r[row] as usize);
                        let (raw, at, style, marker) = step.line(line)?;
                        Some(RowData {
                            line,
                            raw,
                            at,
                            style,
                            section: (marker == Marker::Open && sections.contains_key(&line))
                                .then(|| hidden.contains(&line)),
                            selected: sel.is_some_and(|(a, b)| a <= line + 1 && line < b),
                            hit: hits.binary_search(&line).is_ok(),
                            current: current == Some(line),
                            times,
                        })
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
        collapsed.update(|c| {
            if !c.remove(&line) {
                c.insert(line);
            }
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
    let download = paths::step_log(run_id, &task, &step, None);
    let (task_label, step_label) = (task.clone(), step.clone());
    let task_link = task.clone();
    let step_now = step.clone();
    let key_dropped = key.clone();
    view! {
        <div class="log-head">
            <h2>
                "Log of " <span class="mono">{task_label}</span> " / " <span class="mono">{step_label}</span>
            </h2>
            <nav class="step-tabs" aria-label="Steps">
                {move || steps().into_iter().map(|(name, status)| {
                    let href = format!("/runs/{run_id}?task={}&step={}", encode(&task_link), encode(&name));
                    let current = (name == step_now).then_some("page");
                    view! {
                        <a href=href aria-current=current class=format!("tab status-{status}")>{name}</a>
                    }
                }).collect_view()}
            </nav>
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
                {move || if follow.get() { "Following" } else { "Follow" }}
            </button>
            <a class="button" href=download download=format!("run-{run_id}-{task}-{step}.log")>"Download"</a>
            <span class="muted" id="line-count">{move || format!("{} lines", len.get())}</span>
        </div>
        {move || {
            let dropped = logs.with(|l| l.steps.get(&key_dropped).map_or(0, |s| s.dropped));
            (dropped > 0).then(|| view! {
                <p class="notice small">{format!("{dropped} more lines are in the raw log (Download).")}</p>
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

struct RowData {
    line: usize,
    raw: String,
    at: i64,
    style: Style,
    /// For a section's first line: whether it is collapsed.
    section: Option<bool>,
    selected: bool,
    hit: bool,
    current: bool,
    times: bool,
}

fn row_view(
    r: RowData,
    on_number: impl Fn(usize, bool) + Copy + Send + Sync + 'static,
    toggle: impl Fn(usize) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let line = r.line;
    let n = line + 1;
    let mut style = r.style;
    let (text_view, title) = match r.section {
        Some(closed) => {
            let title = ansi::plain(&r.raw)
                .trim_start()
                .trim_start_matches("::group::")
                .to_string();
            (
                view! {
                    <button
                        class="section-toggle"
                        aria-expanded=(!closed).to_string()
                        on:click=move |_| toggle(line)
                    >
                        {if closed { "▸ " } else { "▾ " }}
                        {title}
                    </button>
                }
                .into_any(),
                true,
            )
        }
        None => (
            ansi::parse_line(&r.raw, &mut style)
                .into_iter()
                .map(|span| {
                    if span.style.is_plain() {
                        view! { <span>{span.text}</span> }.into_any()
                    } else {
                        let (class, css) = span.style.css();
                        view! { <span class=class style=css>{span.text}</span> }.into_any()
                    }
                })
                .collect_view()
                .into_any(),
            false,
        ),
    };
    let mut class = String::from("log-line");
    for (on, name) in [
        (r.selected, " selected"),
        (r.hit, " hit"),
        (r.current, " current"),
        (title, " section"),
    ] {
        if on {
            class.push_str(name);
        }
    }
    view! {
        <div class=class id=format!("L{n}") data-line=n>
            <a
                class="ln"
                href=format!("#L{n}")
                aria-label=format!("Line {n}")
                on:click=move |e| {
                    e.prevent_default();
                    on_number(line, e.shift_key());
                }
            >
                {n}
            </a>
            {r.times.then(|| view! { <span class="ts">{crate::ui::clock_text(r.at)}</span> })}
            <span class="txt">{text_view}</span>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(cursor: i64, attempt: i64, data: &str) -> LogChunk {
        LogChunk {
            cursor,
            attempt,
            task: "t".into(),
            step: "s".into(),
            stream: "stdout".into(),
            offset: 0,
            data: data.into(),
            at: 5,
        }
    }

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
    }

    #[test]
    fn chunks_become_lines_across_partial_writes() {
        let mut store = LogStore::default();
        store.absorb(&chunk(1, 1, "one\ntw"));
        store.absorb(&chunk(2, 1, "o\nthree"));
        // A resent chunk changes nothing.
        store.absorb(&chunk(2, 1, "o\nthree"));
        let step = &store.steps[&("t".to_string(), "s".to_string())];
        assert_eq!(step.lines.len(), 2);
        assert_eq!(step.lines[1].raw, "two");
        assert_eq!(step.len(), 3);
        assert_eq!(step.line(2).unwrap().0, "three");
        assert_eq!(store.cursor, 2);
        // A new attempt starts the step's log over.
        store.absorb(&chunk(3, 2, "again\n"));
        let step = &store.steps[&("t".to_string(), "s".to_string())];
        assert_eq!(step.len(), 1);
    }

    #[test]
    fn sections_and_ranges() {
        let mut step = StepLog::default();
        step.absorb(
            "a\n::group::Build\nb\nc\n::endgroup::\nd\n::group::Open\ne\n",
            0,
        );
        let s = step.sections();
        assert_eq!(s.get(&1), Some(&4));
        assert_eq!(s.get(&6), Some(&7));
        assert_eq!(parse_range("#L10"), Some((10, 10)));
        assert_eq!(parse_range("#L20-L10"), Some((10, 20)));
        assert_eq!(parse_range("#L0"), None);
        assert_eq!(parse_range("#x"), None);
        assert_eq!(range_hash((3, 7)), "#L3-L7");
    }

    #[test]
    fn colour_carries_to_the_next_line() {
        let mut step = StepLog::default();
        step.absorb("\x1b[31mred\nstill\n", 0);
        assert_eq!(step.lines[1].style.fg, Some(ansi::Color::Indexed(1)));
    }
}
