//! Just enough of `sh` to see where a template stands in a step script: its
//! quoting, the command its word belongs to, heredoc bodies. From that,
//! [`Lexer::reference`] quotes a variable reference to suit the place, or
//! says why no quoting keeps a value data there.
//!
//! The reading is deliberately simple and errs towards refusing: a word
//! naming a shell anywhere in a command (`sudo sh`, `docker exec c sh`)
//! counts, and anything it cannot follow refuses the templates after it.

use crate::template::TemplateError;

/// Where a script's text stands, as far as `sh` quoting goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    Plain,
    Single,
    Double,
}

/// A program that runs the argument of one of its flags as code.
#[derive(Debug, PartialEq, Eq)]
struct Runner {
    /// The names it goes by (the last part of its path).
    names: &'static [&'static str],
    /// Short flags whose argument is code (`c` of `sh -c`, also in `-ec`).
    flags: &'static str,
    /// Long flags whose argument is code, as `--eval CODE` or `--eval=CODE`.
    long: &'static [&'static str],
}

const RUNNERS: &[Runner] = &[
    Runner {
        names: &[
            "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "fish", "csh", "tcsh",
        ],
        flags: "c",
        long: &[],
    },
    Runner {
        names: &["su", "runuser", "flock"],
        flags: "c",
        long: &["--command"],
    },
    Runner {
        names: &["python", "python2", "python3"],
        flags: "c",
        long: &[],
    },
    Runner {
        names: &["perl"],
        flags: "eE",
        long: &[],
    },
    Runner {
        names: &["ruby"],
        flags: "e",
        long: &[],
    },
    Runner {
        names: &["node", "nodejs"],
        flags: "ep",
        long: &["--eval", "--print"],
    },
    // SQL is code too.
    Runner {
        names: &["psql"],
        flags: "c",
        long: &["--command"],
    },
    Runner {
        names: &["mysql", "mariadb"],
        flags: "e",
        long: &["--execute"],
    },
];

/// A command named by an expansion (`$SHELL -c ...`): it may be a shell.
const SOME_SHELL: Runner = Runner {
    names: &["$VAR"],
    flags: "c",
    long: &[],
};

/// Short options of ssh that take an argument (from ssh(1)).
const SSH_ARG_FLAGS: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// Words that leave the next one in command position.
const PREFIXES: &[&str] = &[
    "!", "{", "}", "if", "then", "else", "elif", "do", "while", "until", "time", "command",
    "builtin", "exec",
];

/// What the words of a simple command so far make of its next word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    /// No command name yet.
    Start,
    /// Arguments are data.
    Data,
    /// Every argument is code: `eval`, `trap`.
    Code(&'static str),
    /// A runner (see [`Runner`]), before its code flag; the name it had.
    Runner(&'static Runner, &'static str),
    /// After a runner's code flag (`c`, `--eval`): the next word that is no
    /// option is code.
    CodeNext(&'static str, &'static str),
    /// ssh before its host; whether the next word is an option's argument.
    Ssh(bool),
    /// ssh after its host: every word is the command run on the host.
    SshCommand,
}

/// The simple command being read and its current word.
#[derive(Clone)]
struct Command {
    state: Cmd,
    /// The word's text without quotes, cut at [`MAX_WORD`] bytes.
    word: String,
    overflow: bool,
    /// The word has quotes (`""` is a word) or a template in it.
    quoted: bool,
    template: bool,
    /// The word before was an option, which this one may be the value of.
    after_option: bool,
}

impl Command {
    fn new() -> Self {
        Self {
            state: Cmd::Start,
            word: String::new(),
            overflow: false,
            quoted: false,
            template: false,
            after_option: false,
        }
    }
}

/// Longest word kept: command names and heredoc delimiters are short.
const MAX_WORD: usize = 256;
/// Most command substitutions open at once, and heredocs begun on one line.
const MAX_NESTING: usize = 64;

/// What a `$(...)` or backquote substitution interrupted, restored at its end.
struct Frame {
    quoting: Quoting,
    depth: u32,
    cmd: Command,
    code: Option<String>,
    backquote: bool,
}

/// Heredoc bodies being read: their delimiters in order (`None` for one too
/// long to keep, which never ends), whether tabs are stripped (`<<-`).
struct Bodies {
    delims: Vec<(Option<String>, bool)>,
    at: usize,
    line: String,
    overflow: bool,
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
    /// The two characters before, to see `$((`, `((` and `[[` coming.
    last: [char; 2],
    /// `$(` just seen: a command substitution unless `(` follows.
    dollar_paren: bool,
    /// Parentheses open in the current substitution (0 at the top).
    depth: u32,
    /// Whether the current text is inside a backquote substitution.
    backquote: bool,
    /// The substitution's text is code for another shell: why.
    code: Option<String>,
    frames: Vec<Frame>,
    cmd: Command,
    /// Unquoted `<` in a row, to see `<<` (a heredoc) but not `<<<`.
    lt_run: u8,
    /// After `<<` or `<<-`: the next word is a delimiter; strip tabs.
    delimiter_next: Option<bool>,
    pending: Vec<(Option<String>, bool)>,
    bodies: Option<Bodies>,
    /// Nested or stacked past [`MAX_NESTING`]: no longer followed.
    lost: bool,
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
            dollar_paren: false,
            depth: 0,
            backquote: false,
            code: None,
            frames: Vec::new(),
            cmd: Command::new(),
            lt_run: 0,
            delimiter_next: None,
            pending: Vec::new(),
            bodies: None,
            lost: false,
        }
    }

    pub(crate) fn push(&mut self, c: char) {
        if self.bodies.is_some() {
            self.body_char(c);
            return;
        }
        if self.dollar_paren {
            self.dollar_paren = false;
            // `$((` is arithmetic, which the check below takes.
            if c != '(' {
                self.open_frame(false);
            }
        }
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
            let heredoc = self.lt_run == 2;
            self.lt_run = 0;
            if heredoc && self.bash_test.is_none() && self.arith.is_none() {
                self.delimiter_next = Some(c == '-');
                if c == '-' {
                    return;
                }
            }
        }
        // A `#` starting a word outside quotes starts a comment, whose
        // quotes (`# don't`) mean nothing.
        if c == '#'
            && !self.escaped
            && self.quoting == Quoting::Plain
            && self.arith.is_none()
            && (last[1].is_whitespace() || matches!(last[1], ';' | '&' | '|' | '(' | ')'))
        {
            self.comment = true;
            return;
        }
        if self.escaped {
            self.escaped = false;
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
        if c == '(' && last == ['$', '('] && self.quoting != Quoting::Single {
            self.arith = Some((2, self.quoting));
            return;
        }
        if c == '(' && last[1] == '$' && self.quoting != Quoting::Single {
            self.dollar_paren = true;
            return;
        }
        if c == '`' && self.quoting != Quoting::Single {
            if self.backquote && self.quoting == Quoting::Plain {
                self.close_frame();
            } else {
                self.open_frame(true);
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
            if c == ')' && !self.frames.is_empty() && !self.backquote && self.depth == 0 {
                self.close_frame();
                return;
            }
            match c {
                '(' => self.depth += 1,
                ')' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        self.quoting = match (self.quoting, c) {
            (Quoting::Plain | Quoting::Double, '\\') => {
                self.escaped = true;
                self.quoting
            }
            (Quoting::Plain, '\'') => Quoting::Single,
            (Quoting::Plain, '"') => Quoting::Double,
            (Quoting::Single, '\'') | (Quoting::Double, '"') => Quoting::Plain,
            (q, _) => q,
        };
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
            ';' | '|' | '(' | ')' => self.end_command(),
            '&' if !matches!(last[1], '<' | '>') => self.end_command(),
            '<' => {
                self.end_word();
                self.lt_run = self.lt_run.saturating_add(1);
            }
            '>' => self.end_word(),
            _ => self.word_char(c),
        }
    }

    /// A reference to `var` as it must be written here, or why none is safe.
    pub(crate) fn reference(&mut self, var: &str) -> Result<String, TemplateError> {
        if self.dollar_paren {
            self.dollar_paren = false;
            self.open_frame(false);
        }
        if self.lt_run == 2 {
            self.delimiter_next = Some(false);
        }
        self.lt_run = 0;
        self.escaped = false;
        self.last = ['}', '}'];
        if self.bodies.is_some() || self.delimiter_next.is_some() {
            if let Some(bodies) = &mut self.bodies {
                bodies.overflow = true;
            }
            return Err(TemplateError::InHeredoc);
        }
        if self.lost {
            return Err(TemplateError::UnsafePlace(format!(
                "after more than {MAX_NESTING} nested substitutions or heredocs on a line"
            )));
        }
        if self.arith.is_some() {
            // Arithmetic evaluates a bare value as an expression (bash runs
            // `a[$(cmd)]` there): only an integer, by printf, gets in.
            return Ok(format!("$(printf '%d' \"${{{var}}}\")"));
        }
        if self.bash_test.is_some() {
            return Err(TemplateError::UnsafePlace(
                "inside bash's [[ ]] or (( ))".into(),
            ));
        }
        if self.quoting == Quoting::Single {
            // Single quotes usually hand their text to another shell (`sh
            // -c '...'`, `ssh host '...'`), which would run a value pasted
            // there: no rendering is safe both ways.
            return Err(TemplateError::UnsafePlace("inside single quotes".into()));
        }
        // The outer shell expands the variable into text another shell or
        // `eval` then reads as code: whatever the quoting, the value runs.
        if let Some(place) = self.code_place() {
            return Err(TemplateError::UnsafePlace(place));
        }
        self.cmd.template = true;
        match self.quoting {
            Quoting::Double => Ok(format!("${{{var}}}")),
            _ => Ok(format!("\"${{{var}}}\"")),
        }
    }

    /// Where the current word is code for another shell or interpreter.
    fn code_place(&self) -> Option<String> {
        if let Some(code) = &self.code {
            return Some(code.clone());
        }
        match self.cmd.state {
            Cmd::Code(name) => Some(format!("in the arguments of `{name}`")),
            Cmd::CodeNext(name, flag) if flag.starts_with('-') => {
                Some(format!("in the code `{name} {flag}` runs"))
            }
            Cmd::CodeNext(name, flag) => Some(format!("in the code `{name} -{flag}` runs")),
            Cmd::SshCommand => Some("in the command `ssh` sends to a remote shell".into()),
            Cmd::Runner(runner, name) => runner
                .long
                .iter()
                .find(|l| {
                    self.cmd
                        .word
                        .strip_prefix(**l)
                        .is_some_and(|rest| rest.starts_with('='))
                })
                .map(|l| format!("in the code `{name} {l}` runs")),
            _ => None,
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
        if cmd.word.is_empty() && !cmd.quoted && !cmd.template {
            return;
        }
        if let Some(strip) = self.delimiter_next.take() {
            let delim = (!cmd.overflow).then(|| cmd.word.clone());
            if self.pending.len() < MAX_NESTING {
                self.pending.push((delim, strip));
            } else {
                self.lost = true;
            }
        } else {
            cmd.state = next_state(cmd);
            cmd.after_option = cmd.word.starts_with('-');
        }
        cmd.word.clear();
        cmd.overflow = false;
        cmd.quoted = false;
        cmd.template = false;
    }

    fn end_command(&mut self) {
        self.end_word();
        self.cmd.state = Cmd::Start;
    }

    /// An unquoted newline ends the command and starts the bodies of the
    /// heredocs begun on its line.
    fn end_line(&mut self) {
        self.end_command();
        // `cat <<` with no word before the newline: bash refuses it.
        self.delimiter_next = None;
        if !self.pending.is_empty() {
            self.bodies = Some(Bodies {
                delims: std::mem::take(&mut self.pending),
                at: 0,
                line: String::new(),
                overflow: false,
            });
        }
    }

    fn body_char(&mut self, c: char) {
        let Some(bodies) = &mut self.bodies else {
            return;
        };
        let (delim, strip) = &bodies.delims[bodies.at];
        if c == '\n' {
            if !bodies.overflow && delim.as_deref() == Some(bodies.line.as_str()) {
                bodies.at += 1;
            }
            bodies.line.clear();
            bodies.overflow = false;
            if bodies.at == bodies.delims.len() {
                self.bodies = None;
                self.last = ['\n', '\n'];
            }
        } else if *strip && c == '\t' && bodies.line.is_empty() {
            // `<<-` strips leading tabs, from the end line too.
        } else if bodies.line.len() + c.len_utf8() > MAX_WORD {
            bodies.overflow = true;
        } else {
            bodies.line.push(c);
        }
    }

    fn open_frame(&mut self, backquote: bool) {
        if self.frames.len() >= MAX_NESTING {
            self.lost = true;
            return;
        }
        let code = self.code_place();
        self.frames.push(Frame {
            quoting: self.quoting,
            depth: self.depth,
            cmd: std::mem::replace(&mut self.cmd, Command::new()),
            code: std::mem::replace(&mut self.code, code),
            backquote: self.backquote,
        });
        self.quoting = Quoting::Plain;
        self.depth = 0;
        self.backquote = backquote;
    }

    fn close_frame(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        self.quoting = frame.quoting;
        self.depth = frame.depth;
        self.cmd = frame.cmd;
        self.code = frame.code;
        self.backquote = frame.backquote;
        // The substitution is part of the word it stood in.
        self.cmd.quoted = true;
    }
}

/// What a command's finished word makes of the words after it.
fn next_state(cmd: &Command) -> Cmd {
    let word = cmd.word.as_str();
    // A word with a template in it, or cut short, names nothing.
    let plain = !cmd.template && !cmd.overflow;
    let named = || {
        if !plain {
            return None;
        }
        let name = word.rsplit('/').next().unwrap_or(word);
        // `rsync -e ssh src host:dest` names the program rsync runs, and
        // the words after it are rsync's.
        if name == "ssh" {
            return (!cmd.after_option).then_some(Cmd::Ssh(false));
        }
        RUNNERS.iter().find_map(|r| {
            r.names
                .iter()
                .find(|n| **n == name)
                .map(|n| Cmd::Runner(r, n))
        })
    };
    let option = plain && word.len() > 1 && word.starts_with('-');
    match cmd.state {
        Cmd::Start if !plain => Cmd::Data,
        Cmd::Start if PREFIXES.contains(&word) || is_assignment(word) => Cmd::Start,
        Cmd::Start if word == "eval" || word == "trap" => {
            Cmd::Code(if word == "eval" { "eval" } else { "trap" })
        }
        Cmd::Start if word.starts_with('$') => Cmd::Runner(&SOME_SHELL, SOME_SHELL.names[0]),
        Cmd::Start | Cmd::Data => named().unwrap_or(Cmd::Data),
        Cmd::Code(name) => Cmd::Code(name),
        Cmd::SshCommand => Cmd::SshCommand,
        Cmd::CodeNext(name, flag) if option => Cmd::CodeNext(name, flag),
        Cmd::CodeNext(..) => Cmd::Data,
        Cmd::Ssh(true) => Cmd::Ssh(false),
        Cmd::Ssh(false) if option && !word.starts_with("--") => {
            // The first flag taking an argument takes the rest of the
            // word, or the next word when it ends the word.
            let flags = &word[1..];
            let takes = flags.find(|c| SSH_ARG_FLAGS.contains(c));
            Cmd::Ssh(takes.is_some_and(|i| i + 1 == flags.len()))
        }
        Cmd::Ssh(false) if option => Cmd::Ssh(false),
        Cmd::Ssh(false) => Cmd::SshCommand,
        Cmd::Runner(runner, name) => {
            if let Some(long) = runner.long.iter().find(|l| plain && **l == word) {
                return Cmd::CodeNext(name, long);
            }
            let flags = word.strip_prefix('-').filter(|f| {
                option && !f.starts_with('-') && f.chars().all(|c| c.is_ascii_alphabetic())
            });
            match flags.and_then(|f| f.chars().find_map(|c| runner.flags.find(c))) {
                Some(i) => Cmd::CodeNext(name, &runner.flags[i..i + 1]),
                None => named().unwrap_or(Cmd::Runner(runner, name)),
            }
        }
    }
}

/// `NAME=value` (or `NAME+=value`): a variable set for the command.
fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else {
        return false;
    };
    let name = name.strip_suffix('+').unwrap_or(name);
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests;
