//! The `if` expression language.
//!
//! Operands: `tasks.NAME.status`, `tasks.NAME.output`,
//! `tasks.NAME.caches.CACHE` (`hit`, `partial`, `miss`), `params.NAME`, string
//! literals in single or double quotes, `true`, `false`. Operators: `==`,
//! `!=`, `&&`, `||`, `!`, parentheses, and `contains(haystack, needle)`.
//!
//! Expressions are typed (string or boolean) when parsed, so `params.x && true`
//! or a comparison of a status with a misspelt status name fails validation
//! instead of silently evaluating to false at run time.
//!
//! Semantics, enforced by the executor: a task without `if` runs only when all
//! its dependencies succeeded, else it is `not_executed`; a task with `if`
//! waits until all its dependencies have finished, whatever their status, and
//! runs iff the condition is true, else it is `skipped`.

use crate::context::EvalContext;
use crate::status::TaskStatus;
use crate::template::{Reference, is_ident};

/// Longer conditions are refused: a condition is a line of logic, and the
/// parser and evaluator work in time and stack proportional to its length.
pub const MAX_CONDITION_CHARS: usize = 4096;
/// Deepest nesting of `(`, `!` and `contains(`: the parser recurses once per
/// level, so without a bound a run of `!` or `(` overflows the stack.
pub const MAX_NESTING: usize = 32;

/// The statuses a finished task can be compared with.
pub const STATUS_NAMES: &[&str] = &["success", "error", "skipped", "not_executed", "cancelled"];

/// An `if` condition that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}")]
pub struct ConditionError {
    /// Counted in characters from 1.
    pub column: usize,
    /// What is wrong, with the column where it is.
    pub message: String,
}

/// A parsed, type-checked condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Str(String),
    Bool(bool),
    Ref(Reference),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    Contains(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Str,
    Bool,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Str => "a string",
            Type::Bool => "a boolean",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Str(String),
    Word(String),
    Eq,
    Ne,
    And,
    Or,
    Not,
    LParen,
    RParen,
    Comma,
    End,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Word(w) => format!("{w:?}"),
        Tok::Eq => "\"==\"".into(),
        Tok::Ne => "\"!=\"".into(),
        Tok::And => "\"&&\"".into(),
        Tok::Or => "\"||\"".into(),
        Tok::Not => "\"!\"".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::End => "the end of the condition".into(),
    }
}

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, ConditionError> {
    Err(ConditionError {
        column,
        message: message.into(),
    })
}

/// Tokens with their 1-based character columns.
fn lex(text: &str) -> Result<Vec<(Tok, usize)>, ConditionError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        let next = chars.get(i + 1).copied();
        let (tok, len) = match c {
            _ if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '=' if next == Some('=') => (Tok::Eq, 2),
            '!' if next == Some('=') => (Tok::Ne, 2),
            '!' => (Tok::Not, 1),
            '&' if next == Some('&') => (Tok::And, 2),
            '|' if next == Some('|') => (Tok::Or, 2),
            '=' => return err(col, "unexpected \"=\", did you mean \"==\"?"),
            '&' => return err(col, "unexpected \"&\", did you mean \"&&\"?"),
            '|' => return err(col, "unexpected \"|\", did you mean \"||\"?"),
            '\'' | '"' => {
                let end = chars[i + 1..].iter().position(|&d| d == c);
                let Some(end) = end else {
                    return err(col, "unterminated string");
                };
                let s: String = chars[i + 1..i + 1 + end].iter().collect();
                (Tok::Str(s), end + 2)
            }
            _ if c.is_ascii_alphanumeric() || c == '_' => {
                let len = chars[i..]
                    .iter()
                    .position(|&d| !(d.is_ascii_alphanumeric() || matches!(d, '_' | '-' | '.')))
                    .unwrap_or(chars.len() - i);
                (Tok::Word(chars[i..i + len].iter().collect()), len)
            }
            _ => return err(col, format!("unexpected character {c:?}")),
        };
        out.push((tok, col));
        i += len;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Levels of `(`, `!` and `contains(` open at `pos`.
    depth: usize,
}

impl Parser {
    fn enter(&mut self, column: usize) -> Result<(), ConditionError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return err(
                column,
                format!("nested more than {MAX_NESTING} levels deep"),
            );
        }
        Ok(())
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn column(&self) -> usize {
        self.toks[self.pos].1
    }

    fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn expect(&mut self, tok: Tok) -> Result<(), ConditionError> {
        if *self.peek() == tok {
            self.bump();
            Ok(())
        } else {
            err(
                self.column(),
                format!(
                    "expected {}, found {}",
                    describe(&tok),
                    describe(self.peek())
                ),
            )
        }
    }

    fn or(&mut self) -> Result<(Expr, Type), ConditionError> {
        self.binary(Tok::Or, Self::and, Expr::Or)
    }

    fn and(&mut self) -> Result<(Expr, Type), ConditionError> {
        self.binary(Tok::And, Self::unary, Expr::And)
    }

    /// A left-associative chain of `op`; operands must be booleans once an
    /// operator joins them, a lone operand keeps its type.
    fn binary(
        &mut self,
        op: Tok,
        next: fn(&mut Self) -> Result<(Expr, Type), ConditionError>,
        join: fn(Box<Expr>, Box<Expr>) -> Expr,
    ) -> Result<(Expr, Type), ConditionError> {
        let column = self.column();
        let (mut left, mut ty) = next(self)?;
        while *self.peek() == op {
            if ty != Type::Bool {
                return err(column, not_bool_message(&left));
            }
            self.bump();
            let right = self.bool_operand(next)?;
            left = join(Box::new(left), Box::new(right));
            ty = Type::Bool;
        }
        Ok((left, ty))
    }

    fn bool_operand(
        &mut self,
        next: fn(&mut Self) -> Result<(Expr, Type), ConditionError>,
    ) -> Result<Expr, ConditionError> {
        let column = self.column();
        let (expr, ty) = next(self)?;
        if ty != Type::Bool {
            return err(column, not_bool_message(&expr));
        }
        Ok(expr)
    }

    fn unary(&mut self) -> Result<(Expr, Type), ConditionError> {
        if *self.peek() == Tok::Not {
            let (_, column) = self.bump();
            self.enter(column)?;
            let inner = self.bool_operand(Self::unary)?;
            self.depth -= 1;
            return Ok((Expr::Not(Box::new(inner)), Type::Bool));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<(Expr, Type), ConditionError> {
        let left_col = self.column();
        let (left, left_ty) = self.primary()?;
        let op = self.peek().clone();
        if op != Tok::Eq && op != Tok::Ne {
            return Ok((left, left_ty));
        }
        self.bump();
        let right_col = self.column();
        let (right, right_ty) = self.primary()?;
        if left_ty != right_ty {
            return err(
                right_col,
                format!("cannot compare {} with {}", left_ty.name(), right_ty.name()),
            );
        }
        check_status_literal(&left, &right, right_col)?;
        check_status_literal(&right, &left, left_col)?;
        let (l, r) = (Box::new(left), Box::new(right));
        let expr = if op == Tok::Eq {
            Expr::Eq(l, r)
        } else {
            Expr::Ne(l, r)
        };
        Ok((expr, Type::Bool))
    }

    fn primary(&mut self) -> Result<(Expr, Type), ConditionError> {
        let (tok, col) = self.bump();
        match tok {
            Tok::Str(s) => Ok((Expr::Str(s), Type::Str)),
            Tok::LParen => {
                self.enter(col)?;
                let inner = self.or()?;
                self.expect(Tok::RParen)?;
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Word(w) if w == "true" => Ok((Expr::Bool(true), Type::Bool)),
            Tok::Word(w) if w == "false" => Ok((Expr::Bool(false), Type::Bool)),
            Tok::Word(w) if w == "contains" => {
                self.enter(col)?;
                self.expect(Tok::LParen)?;
                let haystack = self.string_operand()?;
                self.expect(Tok::Comma)?;
                let needle = self.string_operand()?;
                self.expect(Tok::RParen)?;
                self.depth -= 1;
                Ok((
                    Expr::Contains(Box::new(haystack), Box::new(needle)),
                    Type::Bool,
                ))
            }
            Tok::Word(w) => match path(&w) {
                Some(r) => Ok((Expr::Ref(r), Type::Str)),
                None => err(
                    col,
                    format!(
                        "unknown value {w:?}: expected tasks.NAME.status, tasks.NAME.output, tasks.NAME.caches.CACHE, params.NAME, a quoted string, true or false"
                    ),
                ),
            },
            other => err(col, format!("expected a value, found {}", describe(&other))),
        }
    }

    fn string_operand(&mut self) -> Result<Expr, ConditionError> {
        let column = self.column();
        let (expr, ty) = self.or()?;
        if ty != Type::Str {
            return err(column, "contains() takes strings");
        }
        Ok(expr)
    }
}

fn not_bool_message(expr: &Expr) -> String {
    match expr {
        Expr::Ref(Reference::TaskStatus(t)) => {
            format!(
                "expected a boolean, found a string: compare it, as in tasks.{t}.status == 'success'"
            )
        }
        Expr::Ref(Reference::Param(p)) => {
            format!("expected a boolean, found a string: compare it, as in params.{p} == 'true'")
        }
        _ => "expected a boolean, found a string".into(),
    }
}

/// What a cache operand can be compared with, besides `''` (no result).
pub const CACHE_HIT_NAMES: &[&str] = &["hit", "partial", "miss"];

/// `tasks.a.status == 'sucess'` can never be true: say so now (and the
/// same of a cache's `hitt`).
fn check_status_literal(side: &Expr, other: &Expr, column: usize) -> Result<(), ConditionError> {
    let (what, names, empty) = match side {
        Expr::Ref(Reference::TaskStatus(_)) => ("status", STATUS_NAMES, false),
        Expr::Ref(Reference::TaskCache(..)) => ("cache result", CACHE_HIT_NAMES, true),
        _ => return Ok(()),
    };
    if let Expr::Str(s) = other
        && !names.contains(&s.as_str())
        && !(empty && s.is_empty())
    {
        return err(
            column,
            format!("unknown {what} {s:?}: expected one of {}", names.join(", ")),
        );
    }
    Ok(())
}

fn path(word: &str) -> Option<Reference> {
    let parts: Vec<&str> = word.split('.').collect();
    match parts.as_slice() {
        ["tasks", name, "status"] if is_ident(name) => {
            Some(Reference::TaskStatus(name.to_string()))
        }
        ["tasks", name, "output"] if is_ident(name) => {
            Some(Reference::TaskOutput(name.to_string()))
        }
        ["tasks", name, "caches", cache] if is_ident(name) && is_ident(cache) => {
            Some(Reference::TaskCache(name.to_string(), cache.to_string()))
        }
        ["params", name] if is_ident(name) => Some(Reference::Param(name.to_string())),
        _ => None,
    }
}

impl Condition {
    /// Parses an `if` condition, like `tasks.build.status == 'success'`.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        if text.chars().nth(MAX_CONDITION_CHARS).is_some() {
            return err(
                MAX_CONDITION_CHARS + 1,
                format!("the condition is longer than {MAX_CONDITION_CHARS} characters"),
            );
        }
        let toks = lex(text)?;
        if toks.len() == 1 {
            return err(1, "empty condition");
        }
        let mut parser = Parser {
            toks,
            pos: 0,
            depth: 0,
        };
        let expr = parser.bool_operand(Parser::or)?;
        if *parser.peek() != Tok::End {
            return err(
                parser.column(),
                format!("expected an operator, found {}", describe(parser.peek())),
            );
        }
        Ok(Condition { expr })
    }

    /// Every value the condition reads, each once, in order of appearance.
    pub fn references(&self) -> Vec<Reference> {
        let mut out = Vec::new();
        collect(&self.expr, &mut out);
        let mut seen = std::collections::HashSet::new();
        out.retain(|r| seen.insert(r.clone()));
        out
    }

    /// A task absent from `ctx` reads as status `pending` with an empty
    /// output, a param absent as the empty string; validation makes both
    /// impossible for a spec that passed `parse_workflow`.
    pub fn eval(&self, ctx: &EvalContext) -> bool {
        truthy(&self.expr, ctx)
    }
}

fn collect(expr: &Expr, out: &mut Vec<Reference>) {
    match expr {
        Expr::Ref(r) => out.push(r.clone()),
        Expr::Str(_) | Expr::Bool(_) => {}
        Expr::Not(e) => collect(e, out),
        Expr::And(a, b)
        | Expr::Or(a, b)
        | Expr::Eq(a, b)
        | Expr::Ne(a, b)
        | Expr::Contains(a, b) => {
            collect(a, out);
            collect(b, out);
        }
    }
}

enum Value {
    Str(String),
    Bool(bool),
}

fn value(expr: &Expr, ctx: &EvalContext) -> Value {
    match expr {
        Expr::Str(s) => Value::Str(s.clone()),
        Expr::Bool(b) => Value::Bool(*b),
        Expr::Ref(Reference::TaskStatus(t)) => {
            let status = ctx.tasks.get(t).map_or(TaskStatus::Pending, |r| r.status);
            Value::Str(status.as_str().to_string())
        }
        Expr::Ref(Reference::TaskOutput(t)) => Value::Str(
            ctx.tasks
                .get(t)
                .and_then(|r| r.output.clone())
                .unwrap_or_default(),
        ),
        Expr::Ref(Reference::Param(p)) => {
            Value::Str(ctx.params.get(p).cloned().unwrap_or_default())
        }
        Expr::Ref(Reference::TaskCache(t, c)) => Value::Str(
            ctx.tasks
                .get(t)
                .and_then(|r| r.caches.get(c))
                .map_or("", |h| h.as_str())
                .to_string(),
        ),
        _ => Value::Bool(truthy(expr, ctx)),
    }
}

fn string(expr: &Expr, ctx: &EvalContext) -> String {
    match value(expr, ctx) {
        Value::Str(s) => s,
        Value::Bool(b) => b.to_string(),
    }
}

fn truthy(expr: &Expr, ctx: &EvalContext) -> bool {
    match expr {
        Expr::Bool(b) => *b,
        Expr::Not(e) => !truthy(e, ctx),
        Expr::And(a, b) => truthy(a, ctx) && truthy(b, ctx),
        Expr::Or(a, b) => truthy(a, ctx) || truthy(b, ctx),
        Expr::Eq(a, b) => string(a, ctx) == string(b, ctx),
        Expr::Ne(a, b) => string(a, ctx) != string(b, ctx),
        Expr::Contains(a, b) => string(a, ctx).contains(&string(b, ctx)),
        // Type checking at parse time keeps strings out of boolean positions.
        Expr::Str(_) | Expr::Ref(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::context::TaskResult;

    fn eval(text: &str) -> bool {
        let tasks = BTreeMap::from([
            (
                "build".to_string(),
                TaskResult {
                    status: TaskStatus::Success,
                    output: Some("v1.2".into()),
                    caches: [("cargo-home".to_string(), crate::cache::CacheHit::Partial)].into(),
                },
            ),
            (
                "lint".to_string(),
                TaskResult {
                    status: TaskStatus::Error,
                    output: None,
                    caches: BTreeMap::new(),
                },
            ),
        ]);
        let params = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        let ctx = EvalContext {
            tasks: &tasks,
            params: &params,
        };
        Condition::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .eval(&ctx)
    }

    #[test]
    fn evaluates() {
        assert!(eval(
            "tasks.build.status == 'success' && tasks.build.output != ''"
        ));
        assert!(eval("tasks.lint.status == \"error\""));
        assert!(!eval("tasks.lint.status == 'success'"));
        assert!(eval("!(tasks.lint.status == 'success') || false"));
        assert!(eval("true"));
        assert!(!eval("!true"));
        assert!(eval(
            "params.env == 'prod' && contains(tasks.build.output, '1.')"
        ));
        assert!(!eval("contains(tasks.lint.output, 'x')"));
        assert!(eval("false || true && true"));
        assert!(!eval("(false || true) && false"));
        assert!(eval("tasks.other.status != 'success'"));
        // A cache's result; "" when the task restored no such cache.
        assert!(eval("tasks.build.caches.cargo-home == 'partial'"));
        assert!(!eval("tasks.build.caches.cargo-home == 'hit'"));
        assert!(eval("tasks.build.caches.other == ''"));
        assert!(eval("tasks.lint.caches.cargo-home != 'miss'"));
    }

    #[test]
    fn lists_references_once() {
        let c = Condition::parse(
            "tasks.a.status == 'success' && tasks.a.status != params.p || tasks.b.output == '' || tasks.b.caches.c == 'hit'",
        )
        .unwrap();
        assert_eq!(
            c.references(),
            vec![
                Reference::TaskStatus("a".into()),
                Reference::Param("p".into()),
                Reference::TaskOutput("b".into()),
                Reference::TaskCache("b".into(), "c".into())
            ]
        );
    }

    #[test]
    fn errors_have_columns() {
        let cases = [
            ("", "empty condition at column 1"),
            (
                "tasks.a.status = 'x'",
                "unexpected \"=\", did you mean \"==\"? at column 16",
            ),
            (
                "tasks.a.status == 'sucess'",
                "unknown status \"sucess\": expected one of success, error, skipped, not_executed, cancelled at column 19",
            ),
            (
                "params.p",
                "expected a boolean, found a string: compare it, as in params.p == 'true' at column 1",
            ),
            (
                "true && 'x'",
                "expected a boolean, found a string at column 9",
            ),
            (
                "true == 'x'",
                "cannot compare a boolean with a string at column 9",
            ),
            (
                "(true",
                "expected \")\", found the end of the condition at column 6",
            ),
            (
                "true true",
                "expected an operator, found \"true\" at column 6",
            ),
            (
                "task.a.status == 'x'",
                "unknown value \"task.a.status\": expected tasks.NAME.status, tasks.NAME.output, tasks.NAME.caches.CACHE, params.NAME, a quoted string, true or false at column 1",
            ),
            (
                "tasks.a.caches.c == 'hitt'",
                "unknown cache result \"hitt\": expected one of hit, partial, miss at column 21",
            ),
            (
                "tasks.a.caches.c",
                "expected a boolean, found a string at column 1",
            ),
            ("'abc", "unterminated string at column 1"),
            ("a # b", "unexpected character '#' at column 3"),
        ];
        for (text, want) in cases {
            assert_eq!(
                Condition::parse(text).unwrap_err().to_string(),
                want,
                "{text}"
            );
        }
    }

    /// A long run of `!` or `(` recursed once per character and overflowed
    /// the stack, aborting the whole server on one request.
    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        for text in [
            "!".repeat(4000) + "true",
            "(".repeat(4000) + "true" + &")".repeat(4000),
            "contains(".repeat(400) + "'a'",
            "!".repeat(1 << 20) + "true",
        ] {
            let e = Condition::parse(&text).unwrap_err();
            assert!(
                e.message.contains("nested more than 32 levels deep")
                    || e.message.contains("longer than 4096 characters"),
                "{e}"
            );
        }
        let deepest = "(".repeat(MAX_NESTING) + "true" + &")".repeat(MAX_NESTING);
        assert!(Condition::parse(&deepest).is_ok());
        assert_eq!(
            Condition::parse(&("!".repeat(MAX_NESTING + 1) + "true"))
                .unwrap_err()
                .to_string(),
            "nested more than 32 levels deep at column 33"
        );
    }

    /// Each reference was checked against every earlier one: a long chain
    /// of distinct references took time in the square of its length.
    #[test]
    fn long_conditions_are_refused_and_references_are_deduplicated_in_linear_time() {
        let chain: Vec<String> = (0..200).map(|i| format!("params.p{i} == ''")).collect();
        let text = chain.join(" || ");
        assert!(text.chars().count() < MAX_CONDITION_CHARS);
        let refs = Condition::parse(&text).unwrap().references();
        assert_eq!(refs.len(), 200);
        let too_long = format!("{text} || {text}");
        assert_eq!(
            Condition::parse(&too_long).unwrap_err().to_string(),
            "the condition is longer than 4096 characters at column 4097"
        );
    }
}
