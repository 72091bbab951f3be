// The bridge between Xene's web UI (Rust, `app/src/ui/code.rs`) and
// CodeMirror 6: one `mount` that turns an element into a code editor and
// answers a handle the Rust side drives. esbuild bundles this file and
// CodeMirror into the site's `code.js`, which only pages with a code editor
// load. The Rust side keeps the text: every change typed here goes to it
// (`onChange`), and every change it makes comes back through `setText`.

import { EditorState, Annotation } from "@codemirror/state";
import {
  EditorView,
  keymap,
  lineNumbers,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  drawSelection,
} from "@codemirror/view";
import {
  StreamLanguage,
  bracketMatching,
  indentService,
  indentUnit,
  syntaxHighlighting,
} from "@codemirror/language";
import { yaml } from "@codemirror/legacy-modes/mode/yaml";
import { shell } from "@codemirror/legacy-modes/mode/shell";
import { autocompletion, completionKeymap } from "@codemirror/autocomplete";
import { search, searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { defaultKeymap, indentWithTab } from "@codemirror/commands";
import { lintGutter, setDiagnostics } from "@codemirror/lint";
import { classHighlighter } from "@lezer/highlight";

// Marks the changes the Rust side made, so they are not sent back to it.
const external = Annotation.define();

// The page's CSP nonce, which CodeMirror's own <style> needs: Leptos puts it
// on the hydration scripts (the browser hides the attribute's value from
// getAttribute, not from the `nonce` property).
function pageNonce() {
  const script = document.querySelector("script[nonce]");
  return script ? script.nonce : "";
}

// More faults than this are not marked.
const MAX_FAULTS = 200;

// YAML's indentation for a new line (Enter) or a line re-indented: that of
// the line above, one step deeper under a key that opens a block (`key:`,
// `key: |`) and inside a list item that holds a mapping (`- key: value`).
const yamlIndent = indentService.of((context, pos) => {
  const breaking = context.options.simulateBreak === pos;
  if (!breaking && (pos === 0 || context.lineAt(pos, -1).from !== pos)) return undefined;
  const above = breaking ? context.lineAt(pos, -1).text : context.lineAt(pos - 1, -1).text;
  const code = above.replace(/\s+#.*$/, "").trimEnd();
  let indent = /^ */.exec(above)[0].length;
  const item = /^( *)(- +)+/.exec(code);
  if (item) {
    const rest = code.slice(item[0].length);
    if (/^[^\s:#][^:]*:( |$)/.test(rest)) indent = item[0].length;
    else if (!/:$/.test(code)) return indent;
  }
  if (/:( +[|>][-+0-9]*)?$/.test(code)) indent += context.unit;
  return indent;
});

// Options (all but `parent` from the Rust side):
// - text: the first text; language: "yaml" or "shell"; label: the
//   accessible name; id: the content's id (a label's `for` can name it)
// - onChange(text): the text after each change typed here
// - tabIndents: Tab indents (else it moves the focus on, as in a form)
// - onBlur(): the focus left the editor
// - complete(text, offset): completions at UTF-16 `offset`, as
//   `{from, items}` (UTF-16 `from`), or null
export function mount(parent, options) {
  const language =
    options.language === "shell"
      ? StreamLanguage.define(shell)
      : [StreamLanguage.define(yaml), yamlIndent];
  const extensions = [
    lineNumbers(),
    highlightActiveLineGutter(),
    highlightSpecialChars(),
    drawSelection(),
    bracketMatching(),
    highlightActiveLine(),
    highlightSelectionMatches(),
    syntaxHighlighting(classHighlighter),
    language,
    indentUnit.of("  "),
    EditorState.tabSize.of(2),
    search({ top: true }),
    lintGutter(),
    EditorView.cspNonce.of(pageNonce()),
    EditorView.lineWrapping,
    EditorView.contentAttributes.of({
      "aria-label": options.label,
      // axe counts a contenteditable as focusable only with a tabindex:
      // without it the scroller is a "scrollable region" a keyboard
      // cannot reach.
      tabindex: "0",
      ...(options.id ? { id: options.id } : {}),
    }),
    // Undo is the page's (one history for everything it edits): the page
    // listens for Ctrl+Z itself, so no history here.
    // In a form, Tab moves on to the next field; in the YAML pane it
    // indents (Escape, then Tab, moves on).
    keymap.of([
      ...completionKeymap,
      ...searchKeymap,
      ...(options.tabIndents ? [indentWithTab] : []),
      ...defaultKeymap,
    ]),
    EditorView.updateListener.of((update) => {
      if (update.docChanged && !update.transactions.some((tr) => tr.annotation(external))) {
        options.onChange(update.state.doc.toString());
      }
    }),
    EditorView.domEventHandlers({
      blur() {
        if (options.onBlur) options.onBlur();
      },
    }),
  ];
  if (options.complete) {
    extensions.push(
      autocompletion({
        activateOnTyping: true,
        override: [
          (context) => {
            const word = context.matchBefore(/[\w.-]*/);
            if (!context.explicit && (!word || word.from === word.to)) return null;
            const found = options.complete(context.state.doc.toString(), context.pos);
            if (!found || found.items.length === 0) return null;
            return {
              from: found.from,
              options: found.items.map((label) => ({ label })),
              filter: false,
            };
          },
        ],
      }),
    );
  }
  // The server's plain text area, which this editor replaces: someone
  // typing in it keeps the focus and the caret.
  const textarea = parent.querySelector("textarea");
  const typing = textarea !== null && document.activeElement === textarea;
  const view = new EditorView({
    parent,
    state: EditorState.create({ doc: options.text, extensions }),
  });
  if (typing) {
    const caret = Math.min(textarea.selectionStart, view.state.doc.length);
    view.dispatch({ selection: { anchor: caret }, scrollIntoView: true });
    view.focus();
  }
  // The labels name the (now hidden) text area: a click on one focuses
  // the editor instead.
  const labels =
    textarea && textarea.id
      ? [...document.querySelectorAll(`label[for="${CSS.escape(textarea.id)}"]`)]
      : [];
  const focusFromLabel = (event) => {
    event.preventDefault();
    view.focus();
  };
  for (const label of labels) label.addEventListener("click", focusFromLabel);
  // Keys typed here are the editor's: the page's own shortcuts (Delete
  // removes the selected task, `?` opens the help) must not see them.
  // Chords with Ctrl or Cmd go on (undo, redo are the page's).
  parent.addEventListener("keydown", (event) => {
    if (!event.ctrlKey && !event.metaKey) event.stopPropagation();
  });

  const handle = {
    // Replaces the text with `text`, changing only the span that differs,
    // so the caret and the scroll stay where they were.
    setText(text) {
      const old = view.state.doc.toString();
      if (old === text) return;
      let start = 0;
      const shortest = Math.min(old.length, text.length);
      while (start < shortest && old.charCodeAt(start) === text.charCodeAt(start)) start++;
      let end = 0;
      while (
        end < shortest - start &&
        old.charCodeAt(old.length - 1 - end) === text.charCodeAt(text.length - 1 - end)
      ) {
        end++;
      }
      view.dispatch({
        changes: { from: start, to: old.length - end, insert: text.slice(start, text.length - end) },
        annotations: external.of(true),
      });
    },
    // Marks each fault at its line: `faults` is `[[line (1-based), message], ...]`.
    setFaults(faults) {
      const doc = view.state.doc;
      const diagnostics = faults.slice(0, MAX_FAULTS).map(([line, message]) => {
        const at = doc.line(Math.min(Math.max(line, 1), doc.lines));
        return { from: at.from, to: at.to, severity: "error", message };
      });
      view.dispatch(setDiagnostics(view.state, diagnostics));
    },
    // Selects line `line` (1-based), scrolls it into view and focuses.
    selectLine(line) {
      const doc = view.state.doc;
      const at = doc.line(Math.min(Math.max(line, 1), doc.lines));
      view.dispatch({
        selection: { anchor: at.from, head: at.to },
        scrollIntoView: true,
      });
      view.focus();
    },
    focus() {
      view.focus();
    },
    destroy() {
      for (const label of labels) label.removeEventListener("click", focusFromLabel);
      view.destroy();
    },
  };
  // For tools and tests that drive the editor from outside.
  parent.xeneCode = handle;
  return handle;
}
