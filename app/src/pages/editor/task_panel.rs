//! The panel of one task: its name, image, dependencies, condition,
//! timeout, retries, agent selector, environment, secrets, the artifacts
//! it publishes and needs, steps and post steps.

use leptos::prelude::*;
use xene_core::draft::{self, Gesture, PipelineDraft};
use xene_core::edit::{Op, Seg, Yaml};
use xene_core::parse::Diagnostic;
use xene_core::yaml::ScalarKind;

use super::fields::{Field, lines_map, map_lines, text_of};
use crate::ui::code::CodeField;

/// The params a task's templates and conditions read.
fn collect_params(value: &Yaml, out: &mut std::collections::BTreeSet<String>) {
    match value {
        Yaml::Scalar(text, _) => {
            if let Ok(refs) = xene_core::template::references(text) {
                for r in refs {
                    if let xene_core::template::Reference::Param(p) = r {
                        out.insert(p);
                    }
                }
            }
            // Conditions name params without braces.
            for word in
                text.split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
            {
                if let Some(p) = word.strip_prefix("params.")
                    && !p.is_empty()
                {
                    out.insert(p.to_string());
                }
            }
        }
        Yaml::Seq(items) => items.iter().for_each(|i| collect_params(i, out)),
        Yaml::Map(entries) => entries.iter().for_each(|(_, v)| collect_params(v, out)),
    }
}

/// Every field of one task.
#[component]
pub(super) fn TaskPanel(
    pipeline: String,
    task: String,
    tree: RwSignal<Option<Yaml>>,
    draft: Memo<PipelineDraft>,
    secrets: Vec<String>,
    on_gesture: Callback<Gesture>,
    on_op: Callback<Op>,
    faults: Memo<Vec<Diagnostic>>,
) -> impl IntoView {
    let path = draft::task_path(&pipeline, &task, None);
    // This task's faults, where its fields are.
    let mine = {
        let (pipeline, task) = (pipeline.clone(), task.clone());
        move || {
            faults.with(|f| {
                f.iter()
                    .filter(|d| {
                        draft::fault_target(d).is_some_and(|(p, t)| {
                            p == pipeline && t.as_deref() == Some(task.as_str())
                        })
                    })
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
            })
        }
    };
    // The params its templates read.
    let params_used = {
        let path = path.clone();
        move || {
            let mut used = std::collections::BTreeSet::new();
            tree.with(|t| {
                if let Some(task) = t.as_ref().and_then(|t| t.get(&path)) {
                    collect_params(task, &mut used);
                }
            });
            used.into_iter().collect::<Vec<_>>().join(", ")
        }
    };
    let field = {
        let path = path.clone();
        move |name: &'static str| {
            let mut p = path.clone();
            p.push(Seg::key(name));
            Signal::derive(move || tree.with(|t| t.as_ref().and_then(|t| t.get(&p).cloned())))
        }
    };
    let set = {
        let (pipeline, task) = (pipeline.clone(), task.clone());
        move |name: &'static str, value: Option<Yaml>| {
            on_gesture.run(Gesture::SetTaskField {
                pipeline: pipeline.clone(),
                task: task.clone(),
                field: name.into(),
                value,
            })
        }
    };
    let scalar_field = {
        let set = set.clone();
        move |name: &'static str| {
            let set = set.clone();
            Callback::new(move |v: String| {
                set(name, (!v.trim().is_empty()).then(|| Yaml::str(v.trim())))
            })
        }
    };
    let image = field("image");
    let cond = field("if");
    let timeout = field("timeout");
    let retries = field("retries");
    let env = field("env");
    let secrets_now = field("secrets");
    let id = |f: &str| format!("task-{f}");
    let rename = {
        let (pipeline, task) = (pipeline.clone(), task.clone());
        Callback::new(move |to: String| {
            on_gesture.run(Gesture::RenameTask {
                pipeline: pipeline.clone(),
                from: task.clone(),
                to: to.trim().to_string(),
            })
        })
    };
    let name_value = Signal::derive({
        let task = task.clone();
        move || task.clone()
    });
    let set_retries = {
        let set = set.clone();
        move |count: Option<String>, backoff: Option<String>| {
            let now = retries.get_untracked();
            let count = count
                .unwrap_or_else(|| text_of(now.as_ref().and_then(|r| r.get(&[Seg::key("count")]))));
            let backoff = backoff.unwrap_or_else(|| {
                text_of(now.as_ref().and_then(|r| r.get(&[Seg::key("backoff")])))
            });
            let mut entries = Vec::new();
            if let Ok(n) = count.trim().parse::<i64>() {
                entries.push(("count".to_string(), Yaml::int(n)));
            }
            if !backoff.trim().is_empty() {
                entries.push(("backoff".to_string(), Yaml::str(backoff.trim())));
            }
            set(
                "retries",
                (!entries.is_empty()).then_some(Yaml::Map(entries)),
            )
        }
    };
    let set_retries2 = set_retries.clone();
    // Dependencies as checkboxes: the keyboard's way to draw edges.
    let deps = {
        let (pipeline, task) = (pipeline.clone(), task.clone());
        move || {
            let p = draft.get();
            let mine = p
                .task(&task)
                .map(|t| t.depends_on.clone())
                .unwrap_or_default();
            p.tasks
                .iter()
                .filter(|t| t.name != task)
                .map(|t| {
                    let other = t.name.clone();
                    let checked = mine.contains(&other);
                    let (pl, me, o) = (pipeline.clone(), task.clone(), other.clone());
                    view! {
                        <label class="check">
                            <input type="checkbox" checked=checked on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                on_gesture.run(if on {
                                    Gesture::Connect { pipeline: pl.clone(), from: o.clone(), to: me.clone() }
                                } else {
                                    Gesture::Disconnect { pipeline: pl.clone(), from: o.clone(), to: me.clone() }
                                });
                            } />
                            {other}
                        </label>
                    }
                })
                .collect_view()
        }
    };
    let secret_boxes = {
        let set = set.clone();
        move || {
            let named: Vec<String> = match secrets_now.get() {
                Some(Yaml::Seq(items)) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            };
            let mut all = secrets.clone();
            all.extend(named.iter().cloned());
            all.sort();
            all.dedup();
            if all.is_empty() {
                return view! { <p class="muted">"No secrets in the store yet."</p> }.into_any();
            }
            all.into_iter()
                .map(|s| {
                    let checked = named.contains(&s);
                    let (named, s2, set) = (named.clone(), s.clone(), set.clone());
                    view! {
                        <label class="check">
                            <input type="checkbox" checked=checked on:change=move |ev| {
                                let mut list = named.clone();
                                if event_target_checked(&ev) {
                                    list.push(s2.clone());
                                } else {
                                    list.retain(|x| *x != s2);
                                }
                                set("secrets", (!list.is_empty()).then(|| Yaml::strs(&list)));
                            } />
                            <code>{s}</code>
                        </label>
                    }
                })
                .collect_view()
                .into_any()
        }
    };
    let set_env = set.clone();
    let set_sel = set.clone();
    let selector = field("selector");
    view! {
        <h2>"Task " <code>{task.clone()}</code></h2>
        {move || {
            let m = mine();
            (!m.is_empty()).then(|| view! {
                <ul class="task-faults error" role="alert">
                    {m.into_iter().map(|f| view! { <li>{f}</li> }).collect_view()}
                </ul>
            })
        }}
        <p class="muted params-used">"Params used: " {move || {
            let p = params_used();
            if p.is_empty() { "none".to_string() } else { p }
        }}</p>
        <Field id=id("name") label="Name" value=name_value on_change=rename />
        <Field id=id("image") label="Image" value=Signal::derive(move || text_of(image.get().as_ref()))
            on_change=scalar_field("image") placeholder="none: steps run as processes on the agent" />
        <fieldset>
            <legend>"Waits for"</legend>
            {deps}
        </fieldset>
        <Field id=id("if") label="Runs if" value=Signal::derive(move || text_of(cond.get().as_ref()))
            on_change=scalar_field("if") placeholder="tasks.build.status == 'success'" />
        <Field id=id("timeout") label="Timeout" value=Signal::derive(move || text_of(timeout.get().as_ref()))
            on_change=scalar_field("timeout") placeholder="10m" />
        <div class="row">
            <Field id=id("retries") label="Retries" value=Signal::derive(move || text_of(retries.get().as_ref().and_then(|r| r.get(&[Seg::key("count")]))))
                on_change=Callback::new(move |v| set_retries(Some(v), None)) placeholder="0" />
            <Field id=id("backoff") label="Backoff" value=Signal::derive(move || text_of(retries.get().as_ref().and_then(|r| r.get(&[Seg::key("backoff")]))))
                on_change=Callback::new(move |v| set_retries2(None, Some(v))) placeholder="10s" />
        </div>
        <Field id=id("selector") label="Agent selector" multiline=true hint="label=value, one per line, over the pipeline's"
            value=Signal::derive(move || map_lines(selector.get().as_ref()))
            on_change=Callback::new(move |v: String| set_sel("selector", lines_map(&v))) />
        <Field id=id("env") label="Environment" multiline=true hint="KEY=VALUE, one per line"
            value=Signal::derive(move || map_lines(env.get().as_ref()))
            on_change=Callback::new(move |v: String| set_env("env", lines_map(&v))) />
        <fieldset>
            <legend>"Secrets"</legend>
            {secret_boxes}
        </fieldset>
        <Publishes field=field("publish") set=set.clone() />
        <Needs field=field("needs") set=set.clone() />
        <Steps list="steps" title="Steps" path=draft::task_path(&pipeline, &task, Some("steps")) field=field("steps") set=set.clone() on_op />
        <Steps list="post" title="Post steps (always run)" path=draft::task_path(&pipeline, &task, Some("post")) field=field("post") set=set.clone() on_op />
    }
}

/// A task's `steps` or `post`: each step's name and script.
#[component]
fn Steps<F>(
    list: &'static str,
    title: &'static str,
    /// The list's own path, for edits of one step's field.
    path: Vec<Seg>,
    field: Signal<Option<Yaml>>,
    set: F,
    on_op: Callback<Op>,
) -> impl IntoView
where
    F: Fn(&'static str, Option<Yaml>) + Clone + Send + Sync + 'static,
{
    let steps = move || match field.get() {
        Some(Yaml::Seq(items)) => items,
        _ => Vec::new(),
    };
    let count = Memo::new(move |_| steps().len());
    let write = {
        let set = set.clone();
        move |items: Vec<Yaml>| set(list, (!items.is_empty()).then_some(Yaml::Seq(items)))
    };
    let rows = {
        let write = write.clone();
        move || {
            (0..count.get())
                .map(|i| {
                    let get = move |key: &'static str| {
                        Signal::derive(move || {
                            let s = steps();
                            match s.get(i) {
                                // A step written as a plain string is its script.
                                Some(Yaml::Scalar(t, _)) if key == "run" => t.clone(),
                                st => text_of(st.and_then(|st| st.get(&[Seg::key(key)]))),
                            }
                        })
                    };
                    let update = {
                        let write = write.clone();
                        let path = path.clone();
                        move |key: &'static str, value: String| {
                            let mut items = steps();
                            let mut at = path.clone();
                            at.push(Seg::Index(i));
                            at.push(Seg::key(key));
                            match items.get(i) {
                                // One field of one step: only its lines change.
                                Some(Yaml::Map(_)) if value.is_empty() && key == "name" => {
                                    on_op.run(Op::Remove { path: at });
                                    return;
                                }
                                Some(Yaml::Map(_)) => {
                                    on_op.run(Op::Set { path: at, value: Yaml::str(value) });
                                    return;
                                }
                                Some(Yaml::Scalar(..)) => {
                                    items[i] = Yaml::Map(vec![("run".into(), Yaml::str(""))]);
                                }
                                _ => return,
                            }
                            let Some(Yaml::Map(entries)) = items.get_mut(i) else {
                                return;
                            };
                            match (entries.iter().position(|(k, _)| k == key), value.is_empty() && key == "name") {
                                (Some(p), true) => {
                                    entries.remove(p);
                                }
                                (Some(p), false) => entries[p].1 = Yaml::str(value),
                                (None, true) => {}
                                (None, false) => entries.insert(0, (key.to_string(), Yaml::str(value))),
                            }
                            write(items);
                        }
                    };
                    let (u1, u2) = (update.clone(), update);
                    let remove = {
                        let write = write.clone();
                        move |_| {
                            let mut items = steps();
                            if i < items.len() {
                                items.remove(i);
                            }
                            write(items);
                        }
                    };
                    view! {
                        <div class="step">
                            <Field id=format!("{list}-{i}-name") label=format!("Step {} name", i + 1) value=get("name")
                                on_change=Callback::new(move |v: String| u1("name", v.trim().to_string())) placeholder="optional" />
                            <CodeField id=format!("{list}-{i}-run") label="Script" language="shell" rows=4 value=get("run")
                                on_change=Callback::new(move |v: String| {
                                    let v = if v.contains('\n') && !v.ends_with('\n') { format!("{v}\n") } else { v };
                                    u2("run", v)
                                }) />
                            <button class="remove-step" on:click=remove>"Remove step " {i + 1}</button>
                        </div>
                    }
                })
                .collect_view()
        }
    };
    let add = move |_| {
        let mut items = steps();
        items.push(Yaml::Map(vec![("run".into(), Yaml::str("echo hello"))]));
        write(items);
    };
    view! {
        <fieldset class="steps">
            <legend>{title}</legend>
            {rows}
            <button class="add-step" on:click=add>"Add a step"</button>
        </fieldset>
    }
}

/// One entry of a task's `publish`, as the panel edits it.
#[derive(Debug, Clone, Default, PartialEq)]
struct PublishRow {
    name: String,
    paths: Vec<String>,
    optional: bool,
    always: bool,
}

fn read_publish(item: &Yaml) -> PublishRow {
    let get = |key: &str| item.get(&[Seg::key(key)]);
    let paths = match (get("path"), get("paths")) {
        (Some(one), _) if one.as_str().is_some() => vec![text_of(Some(one))],
        (_, Some(Yaml::Seq(many))) => many.iter().map(|p| text_of(Some(p))).collect(),
        _ => Vec::new(),
    };
    PublishRow {
        name: text_of(get("name")),
        paths,
        optional: text_of(get("optional")) == "true",
        always: text_of(get("when")) == "always",
    }
}

/// The entry as written: `path` for one path, `paths` for several; the
/// defaults left out.
fn publish_entry(row: &PublishRow) -> Yaml {
    let mut entries = vec![("name".to_string(), Yaml::str(row.name.trim()))];
    match row.paths.as_slice() {
        [one] => entries.push(("path".into(), Yaml::str(one))),
        many => entries.push(("paths".into(), Yaml::strs(many))),
    }
    if row.optional {
        entries.push((
            "optional".into(),
            Yaml::Scalar("true".into(), ScalarKind::Bool),
        ));
    }
    if row.always {
        entries.push(("when".into(), Yaml::str("always")));
    }
    Yaml::Map(entries)
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// A task's `publish`: each artifact's name, paths (one a line, globs
/// allowed) and whether a failed attempt publishes it too, or it may match
/// nothing.
#[component]
fn Publishes<F>(field: Signal<Option<Yaml>>, set: F) -> impl IntoView
where
    F: Fn(&'static str, Option<Yaml>) + Clone + Send + Sync + 'static,
{
    // Read from the tree each time; only the count is a memo (a new memo
    // type costs the editor's page bytes).
    let read = move |list: Option<Yaml>| match list {
        Some(Yaml::Seq(items)) => items.iter().map(read_publish).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let count = Memo::new(move |_| {
        field.with(|f| match f {
            Some(Yaml::Seq(items)) => items.len(),
            _ => 0,
        })
    });
    let write = move |rows: Vec<PublishRow>| {
        let items: Vec<Yaml> = rows.iter().map(publish_entry).collect();
        set("publish", (!items.is_empty()).then_some(Yaml::Seq(items)))
    };
    let change = {
        let write = write.clone();
        move |i: usize, edit: &dyn Fn(&mut PublishRow)| {
            let mut all = read(field.get_untracked());
            if let Some(row) = all.get_mut(i) {
                edit(row);
                write(all);
            }
        }
    };
    let list = {
        let (write, change) = (write.clone(), change.clone());
        move || {
            (0..count.get())
                .map(|i| {
                    let row = move || read(field.get()).get(i).cloned().unwrap_or_default();
                    let (c1, c2, c3, c4) = (change.clone(), change.clone(), change.clone(), change.clone());
                    let write = write.clone();
                    view! {
                        <div class="artifact-entry">
                            <Field id=format!("publish-{i}-name") label=format!("Artifact {} name", i + 1)
                                value=Signal::derive(move || row().name) placeholder="binary"
                                on_change=Callback::new(move |v: String| c1(i, &|r| r.name = v.trim().to_string())) />
                            <Field id=format!("publish-{i}-paths") label="Paths" multiline=true
                                hint="one a line, relative to the workspace; globs like dist/*.tar"
                                value=Signal::derive(move || row().paths.join("\n"))
                                on_change=Callback::new(move |v: String| c2(i, &|r| r.paths = lines(&v))) />
                            <label class="check">
                                <input type="checkbox" id=format!("publish-{i}-always") prop:checked=move || row().always
                                    on:change=move |ev| { let on = event_target_checked(&ev); c3(i, &|r| r.always = on) } />
                                "Also when the task fails"
                            </label>
                            <label class="check">
                                <input type="checkbox" id=format!("publish-{i}-optional") prop:checked=move || row().optional
                                    on:change=move |ev| { let on = event_target_checked(&ev); c4(i, &|r| r.optional = on) } />
                                "May match nothing"
                            </label>
                            <button class="remove-artifact" on:click=move |_| {
                                let mut all = read(field.get_untracked());
                                if i < all.len() {
                                    all.remove(i);
                                }
                                write(all);
                            }>"Remove artifact " {i + 1}</button>
                        </div>
                    }
                })
                .collect_view()
        }
    };
    let add = move |_| {
        let mut all = read(field.get_untracked());
        let taken: Vec<String> = all.iter().map(|r| r.name.clone()).collect();
        let name = (1..)
            .map(|n| {
                if n == 1 {
                    "files".to_string()
                } else {
                    format!("files-{n}")
                }
            })
            .find(|n| !taken.contains(n))
            .expect("a free name");
        all.push(PublishRow {
            name,
            paths: vec!["dist".into()],
            ..Default::default()
        });
        write(all);
    };
    view! {
        <fieldset class="publish">
            <legend>"Publishes"</legend>
            {list}
            <button class="add-artifact" on:click=add>"Add an artifact"</button>
        </fieldset>
    }
}

/// A need as the panel edits it: the artifact's name and the directory
/// its files go under (empty: the workspace).
fn read_need(item: &Yaml) -> (String, String) {
    match item {
        Yaml::Map(_) => (
            text_of(item.get(&[Seg::key("name")])),
            text_of(item.get(&[Seg::key("path")])),
        ),
        other => (text_of(Some(other)), String::new()),
    }
}

/// The short form for the workspace itself, else `{name, path}`.
fn need_entry(name: &str, path: &str) -> Yaml {
    let (name, path) = (name.trim(), path.trim());
    if path.is_empty() {
        Yaml::str(name)
    } else {
        Yaml::Map(vec![
            ("name".into(), Yaml::str(name)),
            ("path".into(), Yaml::str(path)),
        ])
    }
}

/// A task's `needs`: artifacts of tasks upstream of it, each put under a
/// directory of its workspace before its first step.
#[component]
fn Needs<F>(field: Signal<Option<Yaml>>, set: F) -> impl IntoView
where
    F: Fn(&'static str, Option<Yaml>) + Clone + Send + Sync + 'static,
{
    // Read from the tree each time; only the count is a memo (a new memo
    // type costs the editor's page bytes).
    let read = move |list: Option<Yaml>| match list {
        Some(Yaml::Seq(items)) => items.iter().map(read_need).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    let count = Memo::new(move |_| {
        field.with(|f| match f {
            Some(Yaml::Seq(items)) => items.len(),
            _ => 0,
        })
    });
    let write = move |rows: Vec<(String, String)>| {
        let items: Vec<Yaml> = rows.iter().map(|(n, p)| need_entry(n, p)).collect();
        set("needs", (!items.is_empty()).then_some(Yaml::Seq(items)))
    };
    let list = {
        let write = write.clone();
        move || {
            (0..count.get())
                .map(|i| {
                    let row = move || read(field.get()).get(i).cloned().unwrap_or_default();
                    let (w1, w2, w3) = (write.clone(), write.clone(), write.clone());
                    let edit = move |name: Option<String>, path: Option<String>, write: &dyn Fn(Vec<(String, String)>)| {
                        let mut all = read(field.get_untracked());
                        if let Some(r) = all.get_mut(i) {
                            if let Some(n) = name {
                                r.0 = n;
                            }
                            if let Some(p) = path {
                                r.1 = p;
                            }
                            write(all);
                        }
                    };
                    view! {
                        <div class="artifact-entry">
                            <div class="field">
                                <label for=format!("needs-{i}-name")>{format!("Need {} artifact", i + 1)}</label>
                                <input id=format!("needs-{i}-name") placeholder="an artifact a task upstream publishes"
                                    prop:value=move || row().0
                                    on:change=move |ev| edit(Some(event_target_value(&ev)), None, &w1) />
                            </div>
                            <Field id=format!("needs-{i}-path") label="Put under"
                                value=Signal::derive(move || row().1) placeholder="the workspace"
                                on_change=Callback::new(move |v: String| edit(None, Some(v), &w2)) />
                            <button class="remove-need" on:click=move |_| {
                                let mut all = read(field.get_untracked());
                                if i < all.len() {
                                    all.remove(i);
                                }
                                w3(all);
                            }>"Remove need " {i + 1}</button>
                        </div>
                    }
                })
                .collect_view()
        }
    };
    let add = move |_| {
        let mut all = read(field.get_untracked());
        all.push(("files".into(), String::new()));
        write(all);
    };
    view! {
        <fieldset class="needs">
            <legend>"Needs"</legend>
            {list}
            <button class="add-need" on:click=add>"Add a need"</button>
        </fieldset>
    }
}
