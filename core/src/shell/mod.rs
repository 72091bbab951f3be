//! Just enough of `sh` to see where a template stands in a step script: its
//! quoting, the command its word belongs to, what reads the command's input,
//! heredoc bodies. From that, [`Lexer::reference`] quotes a variable
//! reference to suit the place, or says why no quoting keeps a value data
//! there; [`Lexer::finish`] says whether a value reached, through a pipe or
//! a here-string, a program that reads its input as code.
//!
//! The reading is deliberately simple and errs towards refusing: a word
//! naming a shell anywhere in a command (`sudo sh`, `docker exec c sh`)
//! counts, and anything it cannot follow refuses the templates after it.
//! One pass, a character at a time; every buffer and nesting is bounded.

mod commands;

use commands::Command;

/// Why no quoting keeps a reference's value data where it stands; the
/// template module words it for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unsafe {
    /// Where it stands (e.g. "inside single quotes").
    Place(String),
    /// In a heredoc's body or its delimiter.
    Heredoc,
}

/// Where a script's text stands, as far as `sh` quoting goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Plain,
    Single,
    Double,
    /// bash's `$'...'`, in which `\` escapes (`\'` too).
    Ansi,
}

impl Quoting {
    /// No expansion inside.
    fn literal(self) -> bool {
        matches!(self, Quoting::Single | Quoting::Ansi)
    }
}

/// What opened a nested text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nested {
    /// `$(...)`.
    Dollar,
    /// Backquotes, and `\`` nested in them (level 2).
    Backquote(u8),
    /// `<(...)`: its output is read as a file.
    Input,
    /// `>(...)`: its input is what the command writes there.
    Output,
}

/// Longest word kept: command names and heredoc delimiters are short.
const MAX_WORD: usize = 256;
/// Most substitutions open at once, and heredocs begun on one line.
const MAX_NESTING: usize = 64;

/// What a nested text interrupted, restored at its end.
struct Frame {
    nested: Option<Nested>,
    quoting: Quoting,
    depth: u32,
    cases: u32,
    cmd: Command,
    code: Option<String>,
    pipeline: bool,
    templates: bool,
}

/// A heredoc's end line (`None` for one too long to keep, which never
/// ends), whether tabs are stripped (`<<-`), whether the delimiter was
/// quoted (then `\` at a line's end is text).
struct Delim {
    end: Option<String>,
    strip: bool,
    quoted: bool,
}

/// Heredoc bodies being read.
struct Bodies {
    delims: Vec<Delim>,
    at: usize,
    line: String,
    overflow: bool,
    /// The line ends in an odd run of `\`.
    odd: bool,
}

/// Follows a script a character at a time; templates are passed to
/// [`Lexer::reference`] where they stand.
pub(crate) struct Lexer {
    quoting: Quoting,
    escaped: bool,
    /// Inside `$(( ))`: the parentheses open, and the quoting around it.
    arith: Option<(u32, Quoting)>,
    /// Inside bash's `(( ))` or `[[ ]]`, which evaluate even a quoted value
    /// as arithmetic (`-eq`, array subscripts): the parentheses open for
    /// `((`, 0 for `[[`.
    bash_test: Option<u32>,
    /// In a `#` comment, to the end of its line.
    comment: bool,
    /// The two characters before, to see `((` and `[[` coming.
    last: [char; 2],
    /// The character before was a `$` that expands (to see `$(`, `$'`).
    dollar: bool,
    /// The character before was this unquoted operator (`<`, `>`, `|`).
    op: char,
    /// `$(` just seen: a command substitution unless `(` follows.
    dollar_paren: bool,
    /// What the current text is nested in (`None` at the top).
    nested: Option<Nested>,
    /// Parentheses open in the current nested text.
    depth: u32,
    /// `case` commands open in it, whose patterns end with `)`.
    cases: u32,
    /// The nested text is code for another shell: why.
    code: Option<String>,
    /// A template stood in the current pipeline, or in the nested text.
    pipeline: bool,
    templates: bool,
    frames: Vec<Frame>,
    cmd: Command,
    /// Unquoted `<` in a row, to see `<<` (a heredoc) and `<<<`.
    lt_run: u8,
    /// After `<<` or `<<-`: the next word is a delimiter; strip tabs.
    delimiter_next: Option<bool>,
    pending: Vec<Delim>,
    bodies: Option<Bodies>,
    /// Nested or stacked past [`MAX_NESTING`]: no longer followed.
    lost: bool,
    /// A template already read reaches code: why (see [`Lexer::finish`]).
    refused: Option<String>,
}

impl Lexer {
    pub(crate) fn new() -> Self {
        Self {
            quoting: Quoting::Plain,
            escaped: false,
            arith: None,
            bash_test: None,
            comment: false,
            last: ['\n', '\n'],
            dollar: false,
            op: '\0',
            dollar_paren: false,
            nested: None,
            depth: 0,
            cases: 0,
            code: None,
            pipeline: false,
            templates: false,
            frames: Vec::new(),
            cmd: Command::new(),
            lt_run: 0,
            delimiter_next: None,
            pending: Vec::new(),
            bodies: None,
            lost: false,
            refused: None,
        }
    }

    pub(crate) fn push(&mut self, c: char) {
        if self.bodies.is_some() {
            self.body_char(c);
            return;
        }
        let dollar_paren = std::mem::take(&mut self.dollar_paren);
        // `$((` is arithmetic, which the check below takes.
        if dollar_paren && c != '(' {
            self.open_frame(Nested::Dollar);
        }
        let after_dollar = std::mem::take(&mut self.dollar);
        let op = std::mem::replace(&mut self.op, '\0');
        let last = self.last;
        self.last = [last[1], c];
        if self.comment {
            if c == '\n' {
                self.comment = false;
                self.end_line();
            }
            return;
        }
        if self.lt_run > 0 && !(c == '<' && self.quoting == Quoting::Plain && !self.escaped) {
            let run = std::mem::take(&mut self.lt_run);
            if self.bash_test.is_none() && self.arith.is_none() {
                if run == 2 {
                    self.delimiter_next = Some(c == '-');
                    if c == '-' {
                        return;
                    }
                } else if run == 3 {
                    self.cmd.herestring = true;
                }
            }
        }
        // A `#` starting a word outside quotes starts a comment, whose
        // quotes (`# don't`) mean nothing. Not after an escaped or a
        // non-ASCII space, which are part of a word.
        if c == '#'
            && !self.escaped
            && self.quoting == Quoting::Plain
            && self.arith.is_none()
            && match self.bash_test {
                Some(_) => matches!(last[1], ' ' | '\t' | '\n'),
                None => self.cmd.is_empty_word(),
            }
        {
            self.comment = true;
            return;
        }
        if self.escaped {
            self.escaped = false;
            // In backquotes, `\`` opens and closes a nested substitution.
            if c == '`' && self.quoting != Quoting::Ansi {
                match self.nested {
                    Some(Nested::Backquote(1)) => return self.open_frame(Nested::Backquote(2)),
                    Some(Nested::Backquote(_)) => return self.close_frame(),
                    _ => {}
                }
            }
            // `\` and a newline join lines; anything else escaped is text.
            if c != '\n' {
                self.word_char(c);
            }
            return;
        }
        if let Some((depth, outer)) = &mut self.arith {
            match c {
                '(' => *depth += 1,
                ')' => {
                    *depth -= 1;
                    if *depth == 0 {
                        self.quoting = *outer;
                        self.arith = None;
                    }
                }
                _ => {}
            }
            return;
        }
        if c == '(' && dollar_paren && !self.quoting.literal() {
            self.arith = Some((2, self.quoting));
            return;
        }
        if c == '(' && after_dollar && !self.quoting.literal() {
            self.dollar_paren = true;
            return;
        }
        if c == '(' && matches!(op, '<' | '>') && self.bash_test.is_none() {
            // `<(...)` and `>(...)` stand for a file name, not a redirection.
            self.cmd.redirect = false;
            let nested = if op == '<' {
                Nested::Input
            } else {
                Nested::Output
            };
            return self.open_frame(nested);
        }
        if c == '`' && !self.quoting.literal() {
            if matches!(self.nested, Some(Nested::Backquote(_))) && self.quoting == Quoting::Plain {
                self.close_frame();
            } else {
                self.open_frame(Nested::Backquote(1));
            }
            return;
        }
        let plain = self.quoting == Quoting::Plain;
        if plain {
            match (&mut self.bash_test, c) {
                (Some(0), ']') if last[1] == ']' => self.bash_test = None,
                (Some(depth), '(') if *depth > 0 => *depth += 1,
                (Some(depth), ')') if *depth > 0 => {
                    *depth -= 1;
                    if *depth == 0 {
                        self.bash_test = None;
                    }
                }
                (None, '[') if last[1] == '[' => self.bash_test = Some(0),
                (None, '(') if last[1] == '(' && last[0] != '$' => self.bash_test = Some(2),
                _ => {}
            }
            if c == ')' && self.bash_test.is_none() {
                // `esac` before it ends the `case`.
                self.end_word();
                let substitution = !matches!(self.nested, None | Some(Nested::Backquote(_)));
                if substitution && self.depth == 0 && self.cases == 0 {
                    self.close_frame();
                    return;
                }
            }
            match c {
                '(' => self.depth += 1,
                ')' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        let before = self.quoting;
        self.quoting = match (self.quoting, c) {
            (Quoting::Plain | Quoting::Double | Quoting::Ansi, '\\') => {
                self.escaped = true;
                self.quoting
            }
            (Quoting::Plain, '\'') if after_dollar => Quoting::Ansi,
            (Quoting::Plain, '\'') => Quoting::Single,
            (Quoting::Plain, '"') => Quoting::Double,
            (Quoting::Single | Quoting::Ansi, '\'') | (Quoting::Double, '"') => Quoting::Plain,
            (q, _) => q,
        };
        if c == '$' && matches!(before, Quoting::Plain | Quoting::Double) {
            self.dollar = true;
        }
        if self.escaped
            || (plain && self.quoting != Quoting::Plain)
            || (!plain && self.quoting == Quoting::Plain)
        {
            // A quote or a backslash: part of the word, not of its text.
            self.cmd.quoted = true;
            return;
        }
        if !plain || self.bash_test.is_some() {
            self.word_char(c);
            return;
        }
        match c {
            ' ' | '\t' => self.end_word(),
            '\n' => self.end_line(),
            ';' => self.end_list(),
            // `>&2`, `<&0`: a file descriptor, part of the target.
            '&' if matches!(op, '<' | '>') => self.word_char(c),
            // bash's `|&` is a pipe too.
            '&' if op == '|' => {}
            '&' => self.end_list(),
            // `>|` overwrites a file.
            '|' if op == '>' => {}
            // `||`: the first `|` began a pipe, which this one undoes.
            '|' if op == '|' => {
                self.pipeline = false;
                self.cmd.pipe_in = false;
            }
            '|' => {
                self.end_command(true);
                self.op = '|';
            }
            // A subshell's input is its command's.
            '(' => {
                let pipe_in = self.cmd.pipe_in;
                self.end_command(false);
                self.cmd.pipe_in = pipe_in;
            }
            ')' => self.end_command(false),
            '<' | '>' => {
                // `2>`: the number is the descriptor, not a word.
                let cmd = &self.cmd;
                if !cmd.quoted
                    && !cmd.template
                    && !cmd.word.is_empty()
                    && cmd.word.bytes().all(|b| b.is_ascii_digit())
                {
                    self.cmd.clear_word();
                } else {
                    self.end_word();
                }
                self.cmd.redirect = true;
                self.op = c;
                if c == '<' {
                    self.lt_run = self.lt_run.saturating_add(1);
                }
            }
            _ => self.word_char(c),
        }
    }

    /// A reference to `var` as it must be written here, or why none is safe.
    pub(crate) fn reference(&mut self, var: &str) -> Result<String, Unsafe> {
        if let Some(why) = &self.refused {
            return Err(Unsafe::Place(why.clone()));
        }
        if std::mem::take(&mut self.dollar_paren) {
            self.open_frame(Nested::Dollar);
        }
        if self.lt_run == 2 {
            self.delimiter_next = Some(false);
        } else if self.lt_run == 3 {
            self.cmd.herestring = true;
        }
        self.lt_run = 0;
        self.escaped = false;
        self.dollar = false;
        self.op = '\0';
        self.last = ['}', '}'];
        if self.bodies.is_some() || self.delimiter_next.is_some() {
            if let Some(bodies) = &mut self.bodies {
                bodies.overflow = true;
            }
            return Err(Unsafe::Heredoc);
        }
        if self.lost {
            return Err(Unsafe::Place(format!(
                "after more than {MAX_NESTING} nested substitutions or heredocs on a line"
            )));
        }
        if self.arith.is_some() {
            // Arithmetic evaluates a bare value as an expression (bash runs
            // `a[$(cmd)]` there): only an integer, by printf, gets in.
            return Ok(format!("$(printf '%d' \"${{{var}}}\")"));
        }
        if self.bash_test.is_some() {
            return Err(Unsafe::Place("inside bash's [[ ]] or (( ))".into()));
        }
        match self.quoting {
            // Single quotes usually hand their text to another shell (`sh
            // -c '...'`, `ssh host '...'`), which would run a value pasted
            // there: no rendering is safe both ways.
            Quoting::Single => {
                return Err(Unsafe::Place("inside single quotes".into()));
            }
            Quoting::Ansi => {
                return Err(Unsafe::Place("inside $'...' quotes".into()));
            }
            _ => {}
        }
        // The outer shell expands the variable into text another shell or
        // `eval` then reads as code: whatever the quoting, the value runs.
        if let Some(place) = self.code_place() {
            return Err(Unsafe::Place(place));
        }
        let cmd = &mut self.cmd;
        cmd.template = true;
        cmd.name_template |= !cmd.word.contains('=');
        cmd.herestring_template |= cmd.herestring;
        self.pipeline = true;
        self.templates = true;
        match self.quoting {
            Quoting::Double => Ok(format!("${{{var}}}")),
            _ => Ok(format!("\"${{{var}}}\"")),
        }
    }

    /// The end of the script: whether a template reached code through a
    /// command's input (a pipe, a here-string), found only once the
    /// command reading it was read.
    pub(crate) fn finish(mut self) -> Result<(), Unsafe> {
        if self.bodies.is_none() && !self.comment {
            self.end_command(false);
        }
        while !self.frames.is_empty() && self.refused.is_none() {
            self.close_frame();
        }
        match self.refused {
            Some(why) => Err(Unsafe::Place(why)),
            None => Ok(()),
        }
    }

    /// Where the current word is code for another shell or interpreter.
    fn code_place(&self) -> Option<String> {
        match &self.code {
            Some(code) => Some(code.clone()),
            None => self.cmd.code_place(),
        }
    }

    fn word_char(&mut self, c: char) {
        if self.cmd.word.len() + c.len_utf8() > MAX_WORD {
            self.cmd.overflow = true;
        } else {
            self.cmd.word.push(c);
        }
    }

    fn end_word(&mut self) {
        let cmd = &mut self.cmd;
        if cmd.is_empty_word() {
            return;
        }
        if let Some(strip) = self.delimiter_next.take() {
            let end = (!cmd.overflow).then(|| cmd.word.clone());
            if self.pending.len() < MAX_NESTING {
                self.pending.push(Delim {
                    end,
                    strip,
                    quoted: cmd.quoted,
                });
            } else {
                self.lost = true;
            }
            cmd.redirect = false;
        } else if std::mem::take(&mut cmd.redirect) {
            // A file or a here-string: no word of the command.
            cmd.herestring = false;
        } else {
            if matches!(cmd.state, commands::Cmd::Start | commands::Cmd::Prefix) && !cmd.quoted {
                match cmd.word.as_str() {
                    "case" => self.cases = self.cases.saturating_add(1),
                    "esac" => self.cases = self.cases.saturating_sub(1),
                    _ => {}
                }
            }
            cmd.advance();
        }
        cmd.clear_word();
    }

    /// The command ends; whether a pipe goes on to the next one.
    fn end_command(&mut self, pipe: bool) {
        self.end_word();
        self.check_input();
        self.cmd = Command::new();
        self.cmd.pipe_in = pipe && self.pipeline;
    }

    /// A command ends with `;`, `&` or a newline: so does its pipeline.
    fn end_list(&mut self) {
        self.end_command(false);
        self.pipeline = false;
    }

    /// Whether a template reached the command's input, read as code.
    fn check_input(&mut self) {
        if !(self.cmd.pipe_in || self.cmd.herestring_template) || self.refused.is_some() {
            return;
        }
        if let Some(reader) = self.cmd.input_reader() {
            self.refused = Some(format!(
                "in the input of `{reader}` (which runs what it reads)"
            ));
        }
    }

    /// An unquoted newline ends the command and starts the bodies of the
    /// heredocs begun on its line.
    fn end_line(&mut self) {
        self.end_list();
        // `cat <<` with no word before the newline: bash refuses it.
        self.delimiter_next = None;
        if !self.pending.is_empty() {
            self.bodies = Some(Bodies {
                delims: std::mem::take(&mut self.pending),
                at: 0,
                line: String::new(),
                overflow: false,
                odd: false,
            });
        }
    }

    fn body_char(&mut self, c: char) {
        let Some(bodies) = &mut self.bodies else {
            return;
        };
        let odd = bodies.odd;
        bodies.odd = c == '\\' && !odd;
        let delim = &bodies.delims[bodies.at];
        if c == '\n' {
            if odd && !delim.quoted {
                // `\` and a newline join lines: the next line is no end.
                if !bodies.overflow {
                    bodies.line.pop();
                }
                return;
            }
            if !bodies.overflow && delim.end.as_deref() == Some(bodies.line.as_str()) {
                bodies.at += 1;
            }
            bodies.line.clear();
            bodies.overflow = false;
            if bodies.at == bodies.delims.len() {
                self.bodies = None;
                self.last = ['\n', '\n'];
            }
        } else if delim.strip && c == '\t' && bodies.line.is_empty() {
            // `<<-` strips leading tabs, from the end line too.
        } else if bodies.line.len() + c.len_utf8() > MAX_WORD {
            bodies.overflow = true;
        } else {
            bodies.line.push(c);
        }
    }

    fn open_frame(&mut self, nested: Nested) {
        if self.frames.len() >= MAX_NESTING {
            self.lost = true;
            return;
        }
        let code = match nested {
            // `source <(...)`, `bash <(...)` run what it prints.
            Nested::Input => self.code.clone().or_else(|| {
                self.cmd
                    .file_reader()
                    .map(|reader| format!("in the code `{reader}` reads"))
            }),
            _ => self.code_place(),
        };
        let mut inner = Command::new();
        let mut pipeline = false;
        if nested == Nested::Output {
            // What the command writes there is the input of `>(...)`.
            inner.pipe_in = self.cmd.pipe_in || self.cmd.herestring_template;
            pipeline = inner.pipe_in;
        }
        self.frames.push(Frame {
            nested: self.nested,
            quoting: self.quoting,
            depth: self.depth,
            cases: std::mem::take(&mut self.cases),
            cmd: std::mem::replace(&mut self.cmd, inner),
            code: std::mem::replace(&mut self.code, code),
            pipeline: std::mem::replace(&mut self.pipeline, pipeline),
            templates: std::mem::take(&mut self.templates),
        });
        self.nested = Some(nested);
        self.quoting = Quoting::Plain;
        self.depth = 0;
    }

    fn close_frame(&mut self) {
        if self.frames.is_empty() {
            return;
        }
        self.end_word();
        self.check_input();
        let reader = self.cmd.input_reader();
        let output = self.nested == Some(Nested::Output);
        let templates = self.templates;
        let Some(frame) = self.frames.pop() else {
            return;
        };
        self.nested = frame.nested;
        self.quoting = frame.quoting;
        self.depth = frame.depth;
        self.cases = frame.cases;
        self.cmd = frame.cmd;
        self.code = frame.code;
        self.pipeline = frame.pipeline || templates;
        self.templates = frame.templates || templates;
        // The substitution is part of the word it stood in.
        self.cmd.quoted = true;
        self.cmd.subst = true;
        if output && reader.is_some() {
            self.cmd.feeds_code = reader;
        }
    }
}

#[cfg(test)]
mod tests;
