//! `{{ ... }}` templates in step scripts, env values and images:
//! `{{ tasks.NAME.output }}` and `{{ params.NAME }}`, whitespace inside the
//! braces optional. A literal `{{` is written `{{ "{{" }}`.
//!
//! Anything else between braces is an error rather than passed through, so a
//! typo fails validation instead of reaching a shell as `{{ taks.x.output }}`.
//!
//! Values never become script text: [`render_script`] turns a reference into
//! a quoted reference to the environment variable that carries the value;
//! [`render`] (env values, images) pastes values where no shell reads them.

use crate::context::EvalContext;
use crate::shell::{Lexer, Unsafe};
use crate::var_name;

/// A value a template or a condition reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// `tasks.NAME.output`.
    TaskOutput(String),
    /// `tasks.NAME.status`.
    TaskStatus(String),
    /// `params.NAME`.
    Param(String),
    /// `tasks.NAME.caches.CACHE` (conditions only): what the restore of
    /// cache CACHE of task NAME found.
    TaskCache(String, String),
}

impl Reference {
    /// The task this reference needs to have finished, if any.
    pub fn task(&self) -> Option<&str> {
        match self {
            Self::TaskOutput(t) | Self::TaskStatus(t) | Self::TaskCache(t, _) => Some(t),
            Self::Param(_) => None,
        }
    }
}

/// A template in a script or an `env` value that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{{` without its `}}`.
    #[error("unclosed \"{{{{\" at column {column}")]
    Unclosed {
        /// 1-based column of the `{{`.
        column: usize,
    },
    /// Braces around something that is not a reference.
    #[error(
        "unknown template expression {expr:?} at column {column}: expected tasks.NAME.output or params.NAME"
    )]
    UnknownExpression {
        /// The text between the braces.
        expr: String,
        /// 1-based column of the `{{`.
        column: usize,
    },
    /// A reference to a task the pipeline does not have.
    #[error("unknown task {0:?} in template")]
    UnknownTask(String),
    /// A reference to a param the pipeline does not declare.
    #[error("unknown param {0:?} in template")]
    UnknownParam(String),
    /// A reference in a script where no quoting keeps its value data:
    /// where it stands.
    #[error(
        "a template {0} cannot be kept from running as code: use the variable it stands for instead \
         (like \"$XENE_PARAM_NAME\" or \"$XENE_OUTPUT_TASK\"), passed on through the environment"
    )]
    UnsafePlace(String),
    /// A reference in a heredoc's body (or its delimiter), where it would
    /// print with quotes around it, or as the variable's name.
    #[error(
        "a template inside a heredoc prints its value in quotes, or the variable's name under <<'EOF': \
         write the variable it stands for instead (like $XENE_PARAM_NAME or $XENE_OUTPUT_TASK), \
         which an unquoted heredoc expands"
    )]
    InHeredoc,
}

impl From<Unsafe> for TemplateError {
    fn from(e: Unsafe) -> Self {
        match e {
            Unsafe::Place(place) => TemplateError::UnsafePlace(place),
            Unsafe::Heredoc => TemplateError::InHeredoc,
        }
    }
}

enum Piece<'a> {
    Text(&'a str),
    Ref(Reference),
}

/// Splits a template into text and references; `column` counts characters
/// from 1 on the template's line, for the error messages.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut consumed = 0;
    while let Some(open) = rest.find("{{") {
        out.push(Piece::Text(&rest[..open]));
        // The column is only worked out for an error: computing it for
        // every `{{` rescanned the line each time, quadratic in its length.
        let start = consumed + open;
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| TemplateError::Unclosed {
            column: column_of(text, start),
        })?;
        let expr = after[..close].trim();
        match expression(expr) {
            Some(Ok(r)) => out.push(Piece::Ref(r)),
            Some(Err(literal)) => out.push(Piece::Text(literal)),
            None => {
                return Err(TemplateError::UnknownExpression {
                    expr: shorten(expr),
                    column: column_of(text, start),
                });
            }
        }
        let used = open + 2 + close + 2;
        rest = &rest[used..];
        consumed += used;
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// An expression as quoted in an error: a huge one is cut, so one
/// message cannot be as large as the spec.
fn shorten(expr: &str) -> String {
    const MAX: usize = 80;
    match expr.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &expr[..cut]),
        None => expr.to_string(),
    }
}

fn column_of(text: &str, byte: usize) -> usize {
    let line_start = text[..byte].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..byte].chars().count() + 1
}

/// `Ok` for a reference, `Err` for a string literal (the escape for `{{`),
/// `None` when the expression is not understood.
fn expression(expr: &str) -> Option<Result<Reference, &str>> {
    for quote in ['"', '\''] {
        if expr.len() >= 2 && expr.starts_with(quote) && expr.ends_with(quote) {
            let inner = &expr[1..expr.len() - 1];
            return (!inner.contains(quote)).then_some(Err(inner));
        }
    }
    let parts: Vec<&str> = expr.split('.').collect();
    match parts.as_slice() {
        ["tasks", name, "output"] if is_ident(name) => {
            Some(Ok(Reference::TaskOutput(name.to_string())))
        }
        ["params", name] if is_ident(name) => Some(Ok(Reference::Param(name.to_string()))),
        _ => None,
    }
}

/// Characters a task or param name may use; the spec checks the exact rules.
pub(crate) fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Every value `text` reads, in order of appearance, for validation.
pub fn references(text: &str) -> Result<Vec<Reference>, TemplateError> {
    Ok(pieces(text)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Expands `text`. A task that finished without writing an output reads as
/// the empty string; a task or param missing from `ctx` is an error, since a
/// validated spec only references upstream tasks and declared params.
pub fn render(text: &str, ctx: &EvalContext) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    for piece in pieces(text)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(
                Reference::TaskOutput(name)
                | Reference::TaskStatus(name)
                | Reference::TaskCache(name, _),
            ) => {
                let result = ctx
                    .tasks
                    .get(&name)
                    .ok_or(TemplateError::UnknownTask(name))?;
                out.push_str(result.output.as_deref().unwrap_or(""));
            }
            Piece::Ref(Reference::Param(name)) => {
                let value = ctx
                    .params
                    .get(&name)
                    .ok_or(TemplateError::UnknownParam(name))?;
                out.push_str(value);
            }
        }
    }
    Ok(out)
}

/// The environment variable that carries param `name` to every step:
/// `XENE_PARAM_` and the name in upper case.
pub fn param_var(name: &str) -> String {
    format!("XENE_PARAM_{}", var_name::suffix(name))
}

/// The environment variable that carries task `task`'s output to the steps
/// of the tasks that read it: `XENE_OUTPUT_` and the name in upper case,
/// `-` as `_`.
pub fn output_var(task: &str) -> String {
    format!("XENE_OUTPUT_{}", var_name::suffix(task))
}

/// Expands a step script: every reference becomes a reference to the
/// environment variable that carries its value (see [`param_var`] and
/// [`output_var`]), never the value itself, so a value from outside the
/// spec (a param, a webhook field, another task's output) cannot become
/// shell code whatever it holds. The reference is quoted to suit where it
/// stands: `"${VAR}"` in plain text, `${VAR}` inside double quotes, so the
/// script sees the value as one word as it would have seen a pasted one;
/// inside `$(( ))`, where a shell would evaluate a value as an expression,
/// `$(printf '%d' "${VAR}")`, the value as an integer only. Inside single
/// quotes (text usually meant for another shell) and bash's `[[ ]]` and
/// `(( ))` (which evaluate quoted values as arithmetic) no form is safe,
/// nor in text the script hands to another shell or interpreter as code
/// (the arguments of `eval`, the code of `sh -c "..."`, `su -c`, `ssh host
/// "..."`, `python -c`, the program of sed or awk), where the outer shell
/// expands the variable and the inner one runs the value, nor where the
/// value reaches through a pipe or a here-string a program that reads its
/// input as code (`echo "{{ x }}" | sh`, `bash <<< ...`, `source <(...)`);
/// a heredoc's body would print the reference with its quotes. Those are
/// errors, found when the workflow is applied (the `shell` module reads
/// the script).
///
/// A reference to a task or param missing from `ctx` is an error, as in
/// [`render`].
pub fn render_script(text: &str, ctx: &EvalContext) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(text.len());
    let mut lexer = Lexer::new();
    for piece in pieces(text)? {
        let var = match piece {
            Piece::Text(t) => {
                t.chars().for_each(|c| lexer.push(c));
                out.push_str(t);
                continue;
            }
            Piece::Ref(
                Reference::TaskOutput(name)
                | Reference::TaskStatus(name)
                | Reference::TaskCache(name, _),
            ) => {
                if !ctx.tasks.contains_key(&name) {
                    return Err(TemplateError::UnknownTask(name));
                }
                output_var(&name)
            }
            Piece::Ref(Reference::Param(name)) => {
                if !ctx.params.contains_key(&name) {
                    return Err(TemplateError::UnknownParam(name));
                }
                param_var(&name)
            }
        };
        out.push_str(&lexer.reference(&var)?);
    }
    lexer.finish()?;
    Ok(out)
}

/// Why a script's templates cannot all be rendered safely, if they cannot
/// (see [`render_script`]): checked when a workflow is applied.
pub fn script_fault(text: &str) -> Option<TemplateError> {
    let mut lexer = Lexer::new();
    for piece in pieces(text).ok()? {
        match piece {
            Piece::Text(t) => t.chars().for_each(|c| lexer.push(c)),
            Piece::Ref(_) => {
                if let Err(e) = lexer.reference("V") {
                    return Some(e.into());
                }
            }
        }
    }
    lexer.finish().err().map(TemplateError::from)
}

/// The first step script of `pipeline` whose templates cannot be rendered
/// safely (see [`script_fault`]), as `task T, step S: the fault`. A version
/// stored before a check was added may hold one: its runs are refused at
/// start with this, as applying it now would be.
pub fn pipeline_fault(pipeline: &crate::spec::Pipeline) -> Option<String> {
    pipeline.tasks.iter().find_map(|(task, t)| {
        t.steps.iter().chain(&t.post).find_map(|step| {
            script_fault(&step.run).map(|e| format!("task {task:?}, step {:?}: {e}", step.name))
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::context::TaskResult;
    use crate::status::TaskStatus;

    fn ctx_maps() -> (BTreeMap<String, TaskResult>, BTreeMap<String, String>) {
        let mut tasks = BTreeMap::new();
        tasks.insert(
            "build".to_string(),
            TaskResult {
                caches: Default::default(),
                status: TaskStatus::Success,
                output: Some("v1.2".into()),
            },
        );
        tasks.insert(
            "lint".to_string(),
            TaskResult {
                caches: Default::default(),
                status: TaskStatus::Skipped,
                output: None,
            },
        );
        let params = BTreeMap::from([("version".to_string(), "1.0".to_string())]);
        (tasks, params)
    }

    #[test]
    fn renders_outputs_and_params() {
        let (tasks, params) = ctx_maps();
        let ctx = EvalContext {
            tasks: &tasks,
            params: &params,
        };
        let out = render(
            "a {{tasks.build.output}} b {{ params.version }} c{{ tasks.lint.output }}",
            &ctx,
        );
        assert_eq!(out.unwrap(), "a v1.2 b 1.0 c");
        assert_eq!(render("no braces", &ctx).unwrap(), "no braces");
        assert_eq!(
            render("{{ \"{{\" }} .Names }}", &ctx).unwrap(),
            "{{ .Names }}"
        );
    }

    #[test]
    fn render_fails_on_missing_values() {
        let (tasks, params) = ctx_maps();
        let ctx = EvalContext {
            tasks: &tasks,
            params: &params,
        };
        assert_eq!(
            render("{{ tasks.x.output }}", &ctx),
            Err(TemplateError::UnknownTask("x".into()))
        );
        assert_eq!(
            render("{{ params.y }}", &ctx),
            Err(TemplateError::UnknownParam("y".into()))
        );
    }

    #[test]
    fn scripts_refer_to_variables_quoted_for_where_they_stand() {
        let (tasks, params) = ctx_maps();
        let ctx = EvalContext {
            tasks: &tasks,
            params: &params,
        };
        let out = render_script(
            "echo {{ params.version }} \"v={{params.version}}\" 'x' \\'{{ params.version }}",
            &ctx,
        )
        .unwrap();
        assert_eq!(
            out,
            "echo \"${XENE_PARAM_VERSION}\" \"v=${XENE_PARAM_VERSION}\" 'x' \\'\"${XENE_PARAM_VERSION}\""
        );
        // Where no quoting keeps a value data: refused, when applied too.
        for unsafe_place in [
            "sh -c 'echo {{ params.version }}'",
            "[[ {{ params.version }} -eq 1 ]]",
            "if (( {{ params.version }} > 1 )); then :; fi",
            "[[ -n x ]] && (( 1 + {{ params.version }} ))",
        ] {
            assert!(
                matches!(
                    render_script(unsafe_place, &ctx),
                    Err(TemplateError::UnsafePlace(_))
                ),
                "{unsafe_place}"
            );
            assert!(script_fault(unsafe_place).is_some(), "{unsafe_place}");
        }
        for fine in [
            "# don't worry\necho {{ params.version }}",
            "echo a#b {{ params.version }}",
            "[[ -n x ]] && echo {{ params.version }}",
            "(cd /tmp && echo {{ params.version }})",
            "f() { echo {{ params.version }}; }",
        ] {
            assert!(script_fault(fine).is_none(), "{fine}");
            assert!(render_script(fine, &ctx).is_ok(), "{fine}");
        }
        assert_eq!(
            render_script("{{ \"{{\" }} .Names }}", &ctx).unwrap(),
            "{{ .Names }}"
        );
        assert_eq!(
            render_script(
                "n=$(( {{ params.version }} + (2 * 3) )); echo {{ params.version }}",
                &ctx
            )
            .unwrap(),
            "n=$(( $(printf '%d' \"${XENE_PARAM_VERSION}\") + (2 * 3) )); echo \"${XENE_PARAM_VERSION}\""
        );
        assert_eq!(
            render_script(
                "echo \"$(( {{ params.version }} ))\" {{ params.version }}",
                &ctx
            )
            .unwrap(),
            "echo \"$(( $(printf '%d' \"${XENE_PARAM_VERSION}\") ))\" \"${XENE_PARAM_VERSION}\""
        );
        assert_eq!(
            render_script("{{ params.y }}", &ctx),
            Err(TemplateError::UnknownParam("y".into()))
        );
        assert_eq!(output_var("build-all_2"), "XENE_OUTPUT_BUILD_ALL_2");
        assert_eq!(param_var("tag"), "XENE_PARAM_TAG");
    }

    #[test]
    fn lists_references() {
        let refs = references("{{ tasks.a-1.output }}{{params.p}}{{ 'x' }}").unwrap();
        assert_eq!(
            refs,
            vec![
                Reference::TaskOutput("a-1".into()),
                Reference::Param("p".into())
            ]
        );
    }

    #[test]
    fn rejects_unknown_expressions() {
        assert_eq!(
            references("echo\n  {{ taks.a.output }}"),
            Err(TemplateError::UnknownExpression {
                expr: "taks.a.output".into(),
                column: 3
            })
        );
        assert!(matches!(
            references("{{ tasks.a.status }}"),
            Err(TemplateError::UnknownExpression { .. })
        ));
        assert!(matches!(
            references("{{ .Names }}"),
            Err(TemplateError::UnknownExpression { .. })
        ));
        assert_eq!(
            references("x {{ params.a"),
            Err(TemplateError::Unclosed { column: 3 })
        );
    }

    /// Every `{{` worked out its column by scanning back to the start of
    /// its line, so one long line of templates took time in the square of
    /// its length (a megabyte: minutes).
    #[test]
    fn many_templates_on_one_line_are_linear() {
        let line = "{{ params.p }}".repeat(70_000);
        assert_eq!(references(&line).unwrap().len(), 70_000);
        let bad = format!("{line}{{{{ x }}}}");
        assert_eq!(
            references(&bad),
            Err(TemplateError::UnknownExpression {
                expr: "x".into(),
                column: 70_000 * 14 + 1
            })
        );
    }
}
