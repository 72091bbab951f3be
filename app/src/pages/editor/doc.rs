//! The document every part of the editor works on: the text (the one source
//! of truth), the drawing's layout, one undo history for both, the parse of
//! the text, the pipeline shown, what is selected, and what the editor says.
//! `Editor` makes one and provides it through context; the parts take it
//! with [`use_doc`] and change the text only through its methods.

use leptos::prelude::*;
use xene_core::draft::{self, Draft, EditorLayout, Gesture, PipelineDraft};
use xene_core::edit::{self, Op, Yaml};
use xene_core::parse::Diagnostic;

use super::Loaded;

/// Undo steps kept; the oldest go first.
const MAX_HISTORY: usize = 500;
/// Typing within this many milliseconds of the last keystroke is one undo step.
const TYPING_GROUP_MS: f64 = 1_000.0;
/// Undo keeps texts up to this many bytes in all.
const MAX_HISTORY_BYTES: usize = 32 << 20;

/// One undoable state.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Snapshot {
    text: String,
    layout: EditorLayout,
}

/// What is selected on the canvas.
#[derive(Debug, Clone, PartialEq, Default)]
pub(super) enum Selection {
    #[default]
    None,
    Task(String),
    Edge(String, String),
}

/// What the dialog over the editor is showing.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Dialog {
    Closed,
    /// The diff against the current version, before saving.
    Review {
        current: String,
    },
    /// Someone saved meanwhile.
    Conflict {
        version: i64,
        source: String,
    },
    /// The keyboard shortcuts.
    Help,
}

/// The shared state of one editor (signals only, so it is `Copy`).
#[derive(Clone, Copy)]
pub(super) struct Doc {
    /// The workflow's YAML.
    pub text: RwSignal<String>,
    /// Where the nodes were dragged, and the drawing's direction.
    pub layout: RwSignal<EditorLayout>,
    pub undo: RwSignal<Vec<Snapshot>>,
    pub redo: RwSignal<Vec<Snapshot>>,
    /// When the last keystroke in the YAML view was (ms), to group typing.
    last_typing: StoredValue<f64>,
    /// Completion in the YAML view: where the word starts, the choices, the
    /// highlighted one. Made for one text: every change of it closes them.
    pub completions: RwSignal<(usize, Vec<String>, usize)>,
    /// The draft of the last text that parsed: the canvas keeps it while
    /// the YAML has a fault.
    pub good: RwSignal<Draft>,
    /// The tree of the last text that parsed, for the panels' fields.
    pub good_tree: RwSignal<Option<Yaml>>,
    /// Why the text does not parse as YAML, if it does not.
    pub yaml_fault: Memo<Option<String>>,
    /// What the spec's checks find.
    pub faults: Memo<Vec<Diagnostic>>,
    /// The pipeline shown.
    pub pipeline: RwSignal<String>,
    /// The shown pipeline's draft.
    pub current: Memo<PipelineDraft>,
    pub selected: RwSignal<Selection>,
    /// The last refused edit or failed request.
    pub message: RwSignal<Option<String>>,
    /// What the last save, merge or reload did.
    pub notice: RwSignal<Option<String>>,
    pub dialog: RwSignal<Dialog>,
    /// The names in the secret store, for the panel and completion.
    pub secrets: StoredValue<Vec<String>>,
}

/// The editor's document, from context.
pub(super) fn use_doc() -> Doc {
    use_context::<Doc>().expect("the editor provides its document")
}

impl Doc {
    /// The document of what the page loaded, following its text.
    pub fn new(loaded: &Loaded) -> Doc {
        let text = RwSignal::new(loaded.source.clone());
        let initial = Draft::read(&loaded.source).unwrap_or_default();
        let good = RwSignal::new(initial.clone());
        let good_tree = RwSignal::new(edit::tree(&loaded.source).ok());
        // One parse of the YAML per change, shared by the canvas and the fault.
        let parsed = Memo::new(move |_| text.with(|t| edit::tree(t).map_err(|e| e.0)));
        let yaml_fault = Memo::new(move |_| parsed.with(|p| p.as_ref().err().cloned()));
        Effect::new(move |_| {
            if let Ok(tree) = parsed.get() {
                good.set(Draft::from_tree(&tree));
                good_tree.set(Some(tree));
            }
        });
        let faults: Memo<Vec<Diagnostic>> = Memo::new(move |_| {
            text.with(|t| match xene_core::parse_workflow(t) {
                Ok(_) => Vec::new(),
                Err(d) => d.0,
            })
        });
        let pipeline = RwSignal::new(
            initial
                .pipelines
                .first()
                .map(|p| p.name.clone())
                .unwrap_or_else(|| "main".into()),
        );
        // A pipeline renamed or removed in the YAML: show the first one.
        Effect::new(move |_| {
            let d = good.get();
            let current = pipeline.get_untracked();
            if d.pipeline(&current).is_none()
                && let Some(first) = d.pipelines.first()
            {
                pipeline.set(first.name.clone());
            }
        });
        let current = Memo::new(move |_| {
            let p = pipeline.get();
            good.with(|d| d.pipeline(&p).cloned().unwrap_or_default())
        });
        Doc {
            text,
            layout: RwSignal::new(loaded.layout.clone()),
            undo: RwSignal::new(Vec::new()),
            redo: RwSignal::new(Vec::new()),
            last_typing: StoredValue::new(0.0),
            completions: RwSignal::new((0, Vec::new(), 0)),
            good,
            good_tree,
            yaml_fault,
            faults,
            pipeline,
            current,
            selected: RwSignal::new(Selection::None),
            message: RwSignal::new(None),
            notice: RwSignal::new(None),
            dialog: RwSignal::new(Dialog::Closed),
            secrets: StoredValue::new(loaded.secrets.clone()),
        }
    }

    /// A new text and layout, as one undo step. One history for everything.
    pub fn commit(self, new_text: String, new_layout: EditorLayout) {
        let Doc {
            text,
            layout,
            undo,
            redo,
            last_typing,
            completions,
            ..
        } = self;
        let old = Snapshot {
            text: text.get_untracked(),
            layout: layout.get_untracked(),
        };
        if old.text == new_text && old.layout == new_layout {
            return;
        }
        undo.update(|u| {
            u.push(old);
            // Bounded in steps and in bytes: a 1 MiB spec keeps fewer.
            let mut bytes: usize = u.iter().map(|s| s.text.len()).sum();
            while u.len() > MAX_HISTORY || (bytes > MAX_HISTORY_BYTES && u.len() > 1) {
                bytes -= u.remove(0).text.len();
            }
        });
        redo.set(Vec::new());
        last_typing.set_value(0.0);
        completions.set((0, Vec::new(), 0));
        text.set(new_text);
        layout.set(new_layout);
    }

    /// A text typed in the YAML view at `now` (ms): keystrokes close
    /// together are one undo step.
    pub fn typed(self, value: String, now: f64) {
        // A refusal is about the gesture before: it goes with the next edit.
        self.message.set(None);
        let grouped = now - self.last_typing.get_value() < TYPING_GROUP_MS;
        if grouped {
            // Part of the same burst of typing: one undo step.
            self.redo.set(Vec::new());
            self.text.set(value);
        } else {
            self.commit(value, self.layout.get_untracked());
        }
        self.last_typing.set_value(now);
    }

    /// A gesture on the canvas or in the panel, as an edit of the text;
    /// says whether it was made (else why not is the message).
    pub fn gesture(self, g: Gesture) -> bool {
        let Doc {
            text,
            layout,
            selected,
            message,
            ..
        } = self;
        match draft::apply(&text.get_untracked(), &g) {
            Ok(t) => {
                message.set(None);
                // A placed node keeps its place under its new name, and goes
                // with its task.
                let mut l = layout.get_untracked();
                match &g {
                    Gesture::RenameTask { pipeline, from, to } => {
                        if let Some(m) = l.positions.get_mut(pipeline)
                            && let Some(at) = m.remove(from)
                        {
                            m.insert(to.clone(), at);
                        }
                    }
                    Gesture::RemoveTask { pipeline, name } => {
                        if let Some(m) = l.positions.get_mut(pipeline) {
                            m.remove(name);
                        }
                    }
                    _ => {}
                }
                self.commit(t, l);
                // The selection follows its task.
                match &g {
                    Gesture::RenameTask { from, to, .. }
                        if selected.get_untracked() == Selection::Task(from.clone()) =>
                    {
                        selected.set(Selection::Task(to.clone()))
                    }
                    Gesture::RemoveTask { name, .. }
                        if selected.get_untracked() == Selection::Task(name.clone()) =>
                    {
                        selected.set(Selection::None)
                    }
                    _ => {}
                }
                true
            }
            Err(e) => {
                message.set(Some(e.0));
                false
            }
        }
    }

    /// An edit of the tree (a panel's field), as an edit of the text.
    pub fn apply(self, op: &Op) {
        match edit::apply(&self.text.get_untracked(), op) {
            Ok(t) => self.commit(t, self.layout.get_untracked()),
            Err(e) => self.message.set(Some(e.0)),
        }
    }

    pub fn undo(self) {
        self.step_history(true);
    }

    pub fn redo(self) {
        self.step_history(false);
    }

    fn step_history(self, back: bool) {
        let Doc {
            text,
            layout,
            undo,
            redo,
            last_typing,
            completions,
            ..
        } = self;
        let (from, to) = if back { (undo, redo) } else { (redo, undo) };
        let Some(snap) = from.try_update(|s| s.pop()).flatten() else {
            return;
        };
        to.update(|s| {
            s.push(Snapshot {
                text: text.get_untracked(),
                layout: layout.get_untracked(),
            })
        });
        last_typing.set_value(0.0);
        completions.set((0, Vec::new(), 0));
        text.set(snap.text);
        layout.set(snap.layout);
    }

    /// Removes the selected task or dependency.
    pub fn remove_selected(self) {
        let Doc {
            pipeline, selected, ..
        } = self;
        match selected.get_untracked() {
            Selection::Task(name) => {
                if self.gesture(Gesture::RemoveTask {
                    pipeline: pipeline.get_untracked(),
                    name,
                }) {
                    selected.set(Selection::None);
                }
            }
            Selection::Edge(from, to) => {
                if self.gesture(Gesture::Disconnect {
                    pipeline: pipeline.get_untracked(),
                    from,
                    to,
                }) {
                    selected.set(Selection::None);
                }
            }
            Selection::None => {}
        }
    }

    /// Adds a task to the shown pipeline and selects it: waiting for
    /// `after` when given, placed at `at` when given (else where the layout
    /// puts it). Answers its name.
    pub fn add_task(self, after: Option<String>, at: Option<(i32, i32)>) -> Option<String> {
        let Doc {
            layout,
            current,
            selected,
            ..
        } = self;
        let p = current.get_untracked();
        let name = p.fresh_name("task");
        let gesture = match after {
            Some(after) => Gesture::AddTaskAfter {
                pipeline: p.name.clone(),
                after,
                name: name.clone(),
            },
            None => Gesture::AddTask {
                pipeline: p.name.clone(),
                name: name.clone(),
            },
        };
        if !self.gesture(gesture) {
            return None;
        }
        if let Some((x, y)) = at {
            let mut l = layout.get_untracked();
            l.positions
                .entry(p.name.clone())
                .or_default()
                .insert(name.clone(), (x, y));
            // The position belongs to the same undo step as the task.
            layout.set(l);
        }
        selected.set(Selection::Task(name.clone()));
        Some(name)
    }
}
