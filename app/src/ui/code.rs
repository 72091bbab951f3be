//! A code editor for YAML and shell scripts: CodeMirror 6 (line numbers,
//! colours, faults marked at their lines, auto-indent, completion at the
//! caret, search with Ctrl+F) through the small bridge in `web/src/code.js`,
//! which `cargo xtask site` bundles into the site's `code.js`. Only a page
//! showing one loads that file, the first time one is shown.
//!
//! The server renders a plain `<textarea>` holding the text: it works
//! before the bundle loads (and if it cannot), and stays, hidden, as the
//! text's value for tools and tests once CodeMirror has taken its place.

use leptos::prelude::*;
use xene_core::complete::Completions;

/// A code editor over `text`.
#[component]
pub fn CodeEditor(
    /// The text, both ways: a change of it shows in the editor, and what is
    /// typed goes into it (or to `on_input`, when given).
    text: RwSignal<String>,
    /// Faults to mark at their lines: (line, 1-based; message).
    #[prop(optional, into)]
    faults: Signal<Vec<(u32, String)>>,
    /// `"yaml"` or `"shell"`: the colours and the indentation.
    language: &'static str,
    /// What may go at a byte offset of a text (offered as typed and on
    /// Ctrl+Space); a choice replaces `text[start..offset]`.
    #[prop(optional)]
    complete: Option<Callback<(String, usize), Completions>>,
    /// The editor's accessible name.
    #[prop(into)]
    label: String,
    /// The height, in lines.
    rows: u32,
    /// The id of the text (the `<textarea>`), for a `<label for>`.
    #[prop(optional, into)]
    id: String,
    /// Called with the new text on each change typed, instead of setting
    /// `text` (for an owner that records an undo step first).
    #[prop(optional)]
    on_input: Option<Callback<String>>,
    /// Called with the text when the focus leaves the editor (or the
    /// plain text area changes), for owners that apply a field once.
    #[prop(optional)]
    on_blur: Option<Callback<String>>,
    /// A field in a form: Tab moves on to the next field instead of
    /// indenting.
    #[prop(optional)]
    field: bool,
) -> impl IntoView {
    let host = NodeRef::<leptos::html::Div>::new();
    let mounted = RwSignal::new(false);
    let typed = move |value: String| match on_input {
        Some(cb) => cb.run(value),
        None => text.set(value),
    };
    #[cfg(feature = "hydrate")]
    bridge::attach(bridge::Attach {
        host,
        mounted,
        text,
        faults,
        language,
        complete,
        label: label.clone(),
        typed: Callback::new(typed),
        on_blur,
        tab_indents: !field,
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (faults, complete, host, field);
    view! {
        <div
            class="code-editor"
            class:mounted=move || mounted.get()
            data-language=language
            style=format!("--rows: {rows}")
            node_ref=host
        >
            <textarea
                id=(!id.is_empty()).then_some(id)
                class="code-text mono"
                rows=rows
                aria-label=label
                spellcheck="false"
                autocomplete="off"
                prop:value=move || text.get()
                on:input=move |ev| typed(event_target_value(&ev))
                on:change=move |ev| {
                    if let Some(cb) = on_blur {
                        cb.run(event_target_value(&ev));
                    }
                }
            >
                // The server's page holds the text (`prop:value` is set only
                // in the browser); the property follows it from then on.
                {text.get_untracked()}
            </textarea>
        </div>
    }
}

/// A form field holding code (a step's script): a label over a code editor
/// whose text is applied with `on_change` when the focus leaves it, like a
/// text field's.
#[component]
pub fn CodeField(
    #[prop(into)] id: String,
    #[prop(into)] label: String,
    /// The value applied; a change of it replaces what the field shows.
    #[prop(into)]
    value: Signal<String>,
    on_change: Callback<String>,
    language: &'static str,
    rows: u32,
) -> impl IntoView {
    let text = RwSignal::new(value.get_untracked());
    // Only a new value replaces the text: unrelated edits elsewhere must
    // not wipe what is being typed here.
    Effect::new(move |last: Option<String>| {
        let v = value.get();
        if last.as_ref().is_some_and(|l| *l != v) {
            text.set(v.clone());
        }
        v
    });
    let apply = Callback::new(move |t: String| {
        if t != value.get_untracked() {
            on_change.run(t);
        }
    });
    view! {
        <div class="field">
            <label for=id.clone()>{label.clone()}</label>
            <CodeEditor text language label rows id on_blur=apply field=true />
        </div>
    }
}

/// Selects line `line` (1-based) of the code editor whose text has id `id`,
/// scrolled into view and focused (the plain text area's, before the
/// editor has loaded).
pub fn select_line(id: &str, line: u32) {
    #[cfg(feature = "hydrate")]
    bridge::select_line(id, line);
    #[cfg(not(feature = "hydrate"))]
    let _ = (id, line);
}

#[cfg(feature = "hydrate")]
mod bridge {
    use leptos::prelude::*;
    use wasm_bindgen::JsCast;
    use wasm_bindgen::prelude::*;
    use xene_core::complete::Completions;

    use crate::text::{byte_of_utf16, utf16_of_byte};

    // The site's `code.js` sits two folders above wasm-bindgen's snippets
    // (`snippets/CRATE/inline0.js`), beside `xene.js`; a dynamic import
    // fetches it only when a code editor is first shown.
    #[wasm_bindgen(inline_js = "export function load_code() { \
        return import(new URL('../../code.js', import.meta.url).href); }")]
    extern "C" {
        #[wasm_bindgen(catch)]
        fn load_code() -> Result<js_sys::Promise, JsValue>;
    }

    #[wasm_bindgen]
    extern "C" {
        /// The module `code.js`.
        type Module;
        #[wasm_bindgen(method, catch)]
        fn mount(
            this: &Module,
            parent: &web_sys::Element,
            options: &JsValue,
        ) -> Result<Handle, JsValue>;

        /// One mounted editor.
        pub type Handle;
        #[wasm_bindgen(method, js_name = setText)]
        fn set_text(this: &Handle, text: &str);
        #[wasm_bindgen(method, js_name = setFaults)]
        fn set_faults(this: &Handle, faults: &JsValue);
        #[wasm_bindgen(method, js_name = selectLine)]
        fn select_line(this: &Handle, line: u32);
        #[wasm_bindgen(method)]
        fn destroy(this: &Handle);
    }

    /// What a mounted editor holds: its handle and the closures it calls.
    struct Live {
        handle: Handle,
        _on_change: Closure<dyn Fn(String)>,
        _on_blur: Closure<dyn Fn()>,
        _complete: Option<Closure<dyn Fn(String, u32) -> JsValue>>,
    }

    pub(super) struct Attach {
        pub host: NodeRef<leptos::html::Div>,
        pub mounted: RwSignal<bool>,
        pub text: RwSignal<String>,
        pub faults: Signal<Vec<(u32, String)>>,
        pub language: &'static str,
        pub complete: Option<Callback<(String, usize), Completions>>,
        pub label: String,
        pub typed: Callback<String>,
        pub on_blur: Option<Callback<String>>,
        pub tab_indents: bool,
    }

    /// Loads `code.js` once the host element is in the page and mounts
    /// CodeMirror in it; keeps it in step with `text` and `faults`.
    pub(super) fn attach(a: Attach) {
        let live = StoredValue::new_local(None::<Live>);
        let Attach {
            host,
            mounted,
            text,
            faults,
            ..
        } = a;
        let a = StoredValue::new_local(Some(a));
        Effect::new(move |_| {
            let Some(el) = host.get() else { return };
            let Some(a) = a.try_update_value(Option::take).flatten() else {
                return;
            };
            wasm_bindgen_futures::spawn_local(async move {
                let module = match load_code() {
                    Ok(p) => wasm_bindgen_futures::JsFuture::from(p).await,
                    Err(e) => Err(e),
                };
                let module: Module = match module {
                    Ok(m) => m.unchecked_into(),
                    Err(e) => {
                        // The plain text area stays, and works.
                        leptos::logging::warn!("the code editor did not load: {e:?}");
                        return;
                    }
                };
                // The page may have moved on meanwhile.
                if live.try_with_value(|_| ()).is_none() || !el.is_connected() {
                    return;
                }
                match mount(&module, &el, a, text.get_untracked()) {
                    Ok(l) => {
                        live.set_value(Some(l));
                        mounted.set(true);
                    }
                    Err(e) => leptos::logging::warn!("the code editor did not start: {e:?}"),
                }
            });
        });
        Effect::new(move |_| {
            let t = text.get();
            live.with_value(|l| {
                if let Some(l) = l {
                    l.handle.set_text(&t);
                }
            });
        });
        Effect::new(move |_| {
            if !mounted.get() {
                return;
            }
            let list = js_sys::Array::new();
            for (line, message) in faults.get() {
                let pair = js_sys::Array::new();
                pair.push(&JsValue::from(line));
                pair.push(&JsValue::from_str(&message));
                list.push(&pair);
            }
            live.with_value(|l| {
                if let Some(l) = l {
                    l.handle.set_faults(&list);
                }
            });
        });
        on_cleanup(move || {
            if let Some(Some(l)) = live.try_update_value(Option::take) {
                l.handle.destroy();
            }
        });
    }

    fn mount(
        module: &Module,
        el: &web_sys::Element,
        a: Attach,
        first: String,
    ) -> Result<Live, JsValue> {
        let Attach {
            text,
            language,
            complete,
            label,
            typed,
            on_blur,
            tab_indents,
            ..
        } = a;
        let on_change = Closure::<dyn Fn(String)>::new(move |t: String| typed.run(t));
        let blur = Closure::<dyn Fn()>::new(move || {
            if let Some(cb) = on_blur {
                cb.run(text.get_untracked());
            }
        });
        let complete = complete.map(|cb| {
            Closure::<dyn Fn(String, u32) -> JsValue>::new(move |t: String, at: u32| {
                let at = byte_of_utf16(&t, at);
                let found = cb.run((t.clone(), at));
                if found.items.is_empty() || found.start > at || !t.is_char_boundary(found.start) {
                    return JsValue::NULL;
                }
                let items: js_sys::Array =
                    found.items.iter().map(|i| JsValue::from_str(i)).collect();
                let out = js_sys::Object::new();
                let _ = js_sys::Reflect::set(
                    &out,
                    &"from".into(),
                    &utf16_of_byte(&t, found.start).into(),
                );
                let _ = js_sys::Reflect::set(&out, &"items".into(), &items);
                out.into()
            })
        });
        let options = js_sys::Object::new();
        let set = |k: &str, v: &JsValue| js_sys::Reflect::set(&options, &k.into(), v).map(|_| ());
        set("text", &first.into())?;
        set("language", &language.into())?;
        set("label", &label.into())?;
        set("tabIndents", &tab_indents.into())?;
        set("onChange", on_change.as_ref())?;
        set("onBlur", blur.as_ref())?;
        if let Some(c) = &complete {
            set("complete", c.as_ref())?;
        }
        let handle = module.mount(el, &options)?;
        Ok(Live {
            handle,
            _on_change: on_change,
            _on_blur: blur,
            _complete: complete,
        })
    }

    pub(super) fn select_line(id: &str, line: u32) {
        let Some(ta) = document().get_element_by_id(id) else {
            return;
        };
        let handle = ta
            .parent_element()
            .and_then(|host| js_sys::Reflect::get(&host, &"xeneCode".into()).ok())
            .filter(|h| h.is_object());
        // `code.js` sets `xeneCode` once the editor is mounted.
        match handle {
            Some(h) => {
                h.unchecked_into::<Handle>().select_line(line);
            }
            _ => {
                let Ok(ta) = ta.dyn_into::<web_sys::HtmlTextAreaElement>() else {
                    return;
                };
                let t = ta.value();
                let start: usize = t
                    .split_inclusive('\n')
                    .take((line as usize).saturating_sub(1))
                    .map(str::len)
                    .sum();
                let start = start.min(t.len());
                let end = start + t[start..].find('\n').unwrap_or(t.len() - start);
                let _ = ta.focus();
                let _ = ta.set_selection_range(utf16_of_byte(&t, start), utf16_of_byte(&t, end));
            }
        }
    }
}
