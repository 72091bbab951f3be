//! Which programs run an argument, an operand or their input as code, and
//! what the words of a simple command so far make of its next word.

/// What a runner makes of its standard input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stdin {
    Data,
    /// Always code (`su`, SQL clients).
    Code,
    /// Code unless a script file is named (`bash deploy.sh`), or a flag
    /// in [`Runner::stdin_flag`] says to read it anyway (`sh -s`).
    CodeUnlessScript,
}

/// A program that runs the argument of one of its flags, one of its
/// operands or its input as code.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Runner {
    /// The names it goes by (the last part of its path; `python3.11`
    /// matches `python` too).
    pub names: &'static [&'static str],
    /// Short flags whose argument is code (`c` of `sh -c`, also in `-ec`).
    pub flags: &'static str,
    /// Whether a code flag may stand anywhere in a cluster of flags with
    /// the code in the next word (`sh -cx CODE`); otherwise the rest of
    /// the word is the code when the flag is not last (`python3 -cCODE`).
    pub cluster: bool,
    /// Long flags whose argument is code, as `--eval CODE` or `--eval=CODE`.
    pub long: &'static [&'static str],
    /// Short flags taking an argument that is not code.
    pub arg_flags: &'static str,
    /// Words taking an argument that is not code (`--interval 5`).
    pub long_args: &'static [&'static str],
    /// Flags naming a file (or module) of code: its operands are data then.
    pub file_flags: &'static str,
    /// The operand, counted from 0, that is code unless a code or file
    /// flag came first (sed's script, awk's program).
    pub program: Option<u8>,
    /// Every word from the program on is code (`watch`).
    pub rest: bool,
    pub stdin: Stdin,
    pub stdin_flag: Option<char>,
}

const NONE: Runner = Runner {
    names: &[],
    flags: "",
    cluster: false,
    long: &[],
    arg_flags: "",
    long_args: &[],
    file_flags: "",
    program: None,
    rest: false,
    stdin: Stdin::Data,
    stdin_flag: None,
};

const SHELL: Runner = Runner {
    flags: "c",
    cluster: true,
    arg_flags: "oO",
    stdin: Stdin::CodeUnlessScript,
    stdin_flag: Some('s'),
    ..NONE
};

const RUNNERS: &[Runner] = &[
    Runner {
        names: &[
            "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "yash", "fish", "csh", "tcsh",
        ],
        ..SHELL
    },
    Runner {
        names: &["su", "runuser"],
        flags: "c",
        long: &["--command"],
        arg_flags: "gGsuw",
        stdin: Stdin::Code,
        ..NONE
    },
    Runner {
        names: &["flock"],
        flags: "c",
        long: &["--command"],
        ..NONE
    },
    Runner {
        names: &["python", "python2", "python3", "pypy"],
        flags: "c",
        arg_flags: "WXQ",
        file_flags: "m",
        stdin: Stdin::CodeUnlessScript,
        ..NONE
    },
    Runner {
        names: &["perl"],
        flags: "eE",
        stdin: Stdin::CodeUnlessScript,
        ..NONE
    },
    Runner {
        names: &["ruby"],
        flags: "e",
        arg_flags: "IrC",
        stdin: Stdin::CodeUnlessScript,
        ..NONE
    },
    Runner {
        names: &["node", "nodejs"],
        flags: "ep",
        long: &["--eval", "--print"],
        arg_flags: "r",
        stdin: Stdin::CodeUnlessScript,
        ..NONE
    },
    // SQL is code too.
    Runner {
        names: &["psql"],
        flags: "c",
        long: &["--command"],
        arg_flags: "dfhpUvFPRT",
        stdin: Stdin::Code,
        ..NONE
    },
    Runner {
        names: &["mysql", "mariadb"],
        flags: "e",
        long: &["--execute"],
        arg_flags: "hPuSD",
        stdin: Stdin::Code,
        ..NONE
    },
    Runner {
        names: &["sqlite3"],
        long: &["-cmd"],
        long_args: &["-separator", "-newline", "-nullvalue", "-init"],
        program: Some(1),
        stdin: Stdin::Code,
        ..NONE
    },
    // A script or program as the first operand, or after -e.
    Runner {
        names: &["sed"],
        flags: "e",
        long: &["--expression"],
        arg_flags: "l",
        file_flags: "f",
        program: Some(0),
        ..NONE
    },
    Runner {
        names: &["awk", "gawk", "mawk", "nawk"],
        flags: "e",
        long: &["--source"],
        arg_flags: "Fvil",
        file_flags: "fE",
        program: Some(0),
        ..NONE
    },
    // Commands run by a shell.
    Runner {
        names: &["script"],
        flags: "c",
        long: &["--command"],
        ..NONE
    },
    Runner {
        names: &["watch"],
        arg_flags: "n",
        long_args: &["--interval"],
        program: Some(0),
        rest: true,
        ..NONE
    },
    // `vagrant ssh -c CMD`.
    Runner {
        names: &["vagrant"],
        flags: "c",
        long: &["--command"],
        ..NONE
    },
];

/// A command named by an expansion (`$SHELL -c ...`, `` `which sh` ``):
/// it may be a shell.
const SOME_SHELL: Runner = Runner {
    names: &["$VAR"],
    ..SHELL
};

/// The same further on in a command (`sudo $SHELL -c`), where it is more
/// likely an argument (`grep $PATTERN`): its input is not taken as code.
const SOME_ARGUMENT: Runner = Runner {
    names: &["$VAR"],
    stdin: Stdin::Data,
    stdin_flag: None,
    ..SHELL
};

/// Short options of ssh that take an argument (from ssh(1)).
const SSH_ARG_FLAGS: &str = "BbcDEeFIiJLlmOoPpQRSWw";

/// Words that leave the next one in command position.
const PREFIXES: &[&str] = &[
    "!", "{", "}", "if", "then", "else", "elif", "do", "while", "until",
];

/// Prefixes that take options (`command -p`, `time -p`).
const PREFIXES_WITH_OPTIONS: &[&str] = &["time", "command", "builtin", "exec"];

/// Builtins whose arguments are code.
const CODE_BUILTINS: &[&str] = &["eval", "trap", "alias"];

/// What the words of a simple command so far make of its next word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmd {
    /// No command name yet.
    Start,
    /// After a prefix that takes options: still no command name.
    Prefix,
    /// After `function`: the next word is a name, then a body.
    FuncName,
    /// Arguments are data.
    Data,
    /// Every argument is code: `eval`, `trap`, `alias`.
    Code(&'static str),
    /// `.` or `source`: reads a file, or its input, as code.
    Source(&'static str),
    /// A runner (see [`Runner`]), before its code flag; the name it had.
    Runner(&'static Runner, &'static str),
    /// After a runner's code flag (`c`, `--eval`): the next word that is no
    /// option is code.
    CodeNext(&'static Runner, &'static str, &'static str),
    /// ssh before its host; whether the next word is an option's argument.
    Ssh(bool),
    /// ssh after `--`: the next word is the host.
    SshHost,
    /// ssh after its host: every word is the command run on the host.
    SshCommand,
}

/// The simple command being read and its current word.
#[derive(Clone)]
pub(super) struct Command {
    pub state: Cmd,
    /// The word's text without quotes, cut at [`super::MAX_WORD`] bytes.
    pub word: String,
    pub overflow: bool,
    /// The word has quotes (`""` is a word) or a substitution, a template.
    pub quoted: bool,
    pub subst: bool,
    pub template: bool,
    /// A template stands before any `=` of the word (not an assignment's
    /// value).
    pub name_template: bool,
    /// The word is the target of a redirection, or a here-string.
    pub redirect: bool,
    pub herestring: bool,
    /// A template was in a here-string of this command.
    pub herestring_template: bool,
    /// An earlier command of the pipeline had a template (or its output).
    pub pipe_in: bool,
    /// A `>(...)` of this command runs its input as code: who.
    pub feeds_code: Option<&'static str>,
    /// The next word is the argument of a runner's option.
    pub arg_next: bool,
    /// Operands of the runner so far; its code came by a flag or file.
    pub operands: u8,
    pub program_done: bool,
    /// The runner was given a script file, or told to read its input.
    pub script: bool,
    pub stdin_flag: bool,
    /// rsync, scp or unison named: `-e ssh` names a program.
    pub rsync: bool,
    pub rsh_next: bool,
    /// xargs named, with -I (pastes its input into the command), then code.
    pub xargs: bool,
    pub xargs_replace: bool,
    pub xargs_code: bool,
}

impl Command {
    pub fn new() -> Self {
        Self {
            state: Cmd::Start,
            word: String::new(),
            overflow: false,
            quoted: false,
            subst: false,
            template: false,
            name_template: false,
            redirect: false,
            herestring: false,
            herestring_template: false,
            pipe_in: false,
            feeds_code: None,
            arg_next: false,
            operands: 0,
            program_done: false,
            script: false,
            stdin_flag: false,
            rsync: false,
            rsh_next: false,
            xargs: false,
            xargs_replace: false,
            xargs_code: false,
        }
    }

    pub fn clear_word(&mut self) {
        self.word.clear();
        self.overflow = false;
        self.quoted = false;
        self.subst = false;
        self.template = false;
        self.name_template = false;
    }

    pub fn is_empty_word(&self) -> bool {
        self.word.is_empty() && !self.quoted && !self.template
    }

    /// The program that reads this command's input as code, if any.
    pub fn input_reader(&self) -> Option<&'static str> {
        if self.xargs_replace && self.xargs_code {
            return Some("xargs");
        }
        if self.feeds_code.is_some() {
            return self.feeds_code;
        }
        match self.state {
            Cmd::Source(name) => Some(name),
            Cmd::Runner(runner, name) => match runner.stdin {
                Stdin::Code => Some(name),
                Stdin::CodeUnlessScript if !self.script || self.stdin_flag => Some(name),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether a file named next would be read as code (`source <(...)`,
    /// `bash <(...)`): by whom.
    pub fn file_reader(&self) -> Option<&'static str> {
        match self.state {
            Cmd::Source(name) => Some(name),
            Cmd::Runner(runner, name)
                if runner.stdin == Stdin::CodeUnlessScript && !self.script && !self.arg_next =>
            {
                Some(name)
            }
            _ => None,
        }
    }

    /// Where the current word is code by the command's words so far.
    pub fn code_place(&self) -> Option<String> {
        let word = self.word.as_str();
        match self.state {
            Cmd::Code(name) => Some(format!("in the arguments of `{name}`")),
            Cmd::CodeNext(_, name, flag) if flag.starts_with('-') => {
                Some(format!("in the code `{name} {flag}` runs"))
            }
            Cmd::CodeNext(_, name, flag) => Some(format!("in the code `{name} -{flag}` runs")),
            Cmd::SshCommand => Some("in the command `ssh` sends to a remote shell".into()),
            Cmd::Ssh(_) if word.is_empty() => Some(
                "at the start of a word before ssh's host (a value starting with `-` is an ssh \
                 option there, and `-oProxyCommand=...` runs a command; write `ssh -- HOST` or \
                 `user@{{ ... }}`)"
                    .into(),
            ),
            Cmd::Runner(runner, name) => {
                if let Some(long) = runner.long.iter().find(|l| {
                    word.strip_prefix(**l)
                        .is_some_and(|rest| rest.starts_with('='))
                }) {
                    return Some(format!("in the code `{name} {long}` runs"));
                }
                if let Some(flag) = attached_code_flag(runner, word) {
                    return Some(format!("in the code `{name} -{flag}` runs"));
                }
                let program = runner.program == Some(self.operands)
                    && !self.program_done
                    && !self.arg_next
                    && !word.starts_with('-');
                match program {
                    true if runner.rest => Some(format!("in the arguments of `{name}`")),
                    true => Some(format!("in the program `{name}` runs")),
                    false => None,
                }
            }
            _ => None,
        }
    }

    /// The current word is finished: what it makes of the next one.
    pub fn advance(&mut self) {
        let next = self.next_state();
        if self.xargs && matches!(next, Cmd::Code(_) | Cmd::CodeNext(..) | Cmd::SshCommand) {
            self.xargs_code = true;
        }
        self.state = next;
        let word = self.word.as_str();
        self.rsh_next = self.rsync && (word == "-e" || word == "--rsh");
    }

    fn next_state(&mut self) -> Cmd {
        let word = self.word.as_str();
        // A word with a template in it, or cut short, names nothing.
        let plain = !self.template && !self.overflow;
        let option = plain && word.len() > 1 && word.starts_with('-');
        let expansion = plain && (word.starts_with('$') || self.subst);
        let basename = word.rsplit('/').next().unwrap_or(word);
        if plain && matches!(self.state, Cmd::Start | Cmd::Prefix | Cmd::Data) {
            match basename {
                "rsync" | "scp" | "unison" => self.rsync = true,
                "xargs" => self.xargs = true,
                _ => {}
            }
        }
        if self.xargs
            && self.state == Cmd::Data
            && option
            && (word.starts_with("-I") || word.starts_with("-i") || word.starts_with("--replace"))
        {
            self.xargs_replace = true;
        }
        match self.state {
            Cmd::Prefix if option => Cmd::Prefix,
            Cmd::Start | Cmd::Prefix
                if !self.overflow && !self.name_template && is_assignment(word) =>
            {
                Cmd::Start
            }
            Cmd::Start | Cmd::Prefix if !plain => Cmd::Data,
            Cmd::Start | Cmd::Prefix if word == "function" => Cmd::FuncName,
            Cmd::Start | Cmd::Prefix if PREFIXES_WITH_OPTIONS.contains(&word) => Cmd::Prefix,
            Cmd::Start | Cmd::Prefix if PREFIXES.contains(&word) => Cmd::Start,
            Cmd::Start | Cmd::Prefix if CODE_BUILTINS.contains(&word) => Cmd::Code(
                CODE_BUILTINS
                    .iter()
                    .find(|b| **b == word)
                    .copied()
                    .unwrap_or("eval"),
            ),
            Cmd::Start | Cmd::Prefix if word == "." => Cmd::Source("."),
            Cmd::Start | Cmd::Prefix if word == "source" => Cmd::Source("source"),
            Cmd::Start | Cmd::Prefix if expansion => Cmd::Runner(&SOME_SHELL, "$VAR"),
            Cmd::Data if expansion => Cmd::Runner(&SOME_ARGUMENT, "$VAR"),
            Cmd::Start | Cmd::Prefix | Cmd::Data => self.named(plain).unwrap_or(Cmd::Data),
            Cmd::FuncName => Cmd::Start,
            Cmd::Code(name) => Cmd::Code(name),
            Cmd::Source(name) => Cmd::Source(name),
            Cmd::SshCommand => Cmd::SshCommand,
            Cmd::CodeNext(runner, name, flag) if option => Cmd::CodeNext(runner, name, flag),
            Cmd::CodeNext(runner, name, _) => self.after_code(runner, name),
            Cmd::Ssh(true) => Cmd::Ssh(false),
            Cmd::Ssh(false) if plain && word == "--" => Cmd::SshHost,
            Cmd::Ssh(false) if option && !word.starts_with("--") => {
                // The first flag taking an argument takes the rest of the
                // word, or the next word when it ends the word.
                let flags = &word[1..];
                let takes = flags.find(|c| SSH_ARG_FLAGS.contains(c));
                Cmd::Ssh(takes.is_some_and(|i| i + 1 == flags.len()))
            }
            Cmd::Ssh(false) if option => Cmd::Ssh(false),
            Cmd::Ssh(false) | Cmd::SshHost => Cmd::SshCommand,
            Cmd::Runner(runner, name) => self.runner_word(runner, name, plain, option),
        }
    }

    /// The code of a runner was given: what its other words are.
    fn after_code(&mut self, runner: &'static Runner, name: &'static str) -> Cmd {
        if runner.program.is_some() {
            // sed and awk: more -e may come, operands are files.
            self.program_done = true;
            Cmd::Runner(runner, name)
        } else {
            // sh -c CODE $0 $1...
            Cmd::Data
        }
    }

    fn runner_word(
        &mut self,
        runner: &'static Runner,
        name: &'static str,
        plain: bool,
        option: bool,
    ) -> Cmd {
        let word = self.word.as_str();
        if std::mem::take(&mut self.arg_next) {
            return Cmd::Runner(runner, name);
        }
        if plain {
            if let Some(long) = runner.long.iter().find(|l| **l == word) {
                return Cmd::CodeNext(runner, name, long);
            }
            if runner.long.iter().any(|l| {
                word.strip_prefix(*l)
                    .is_some_and(|rest| rest.starts_with('='))
            }) {
                return self.after_code(runner, name);
            }
            if runner.long_args.contains(&word) {
                self.arg_next = true;
                return Cmd::Runner(runner, name);
            }
        }
        if option && !word.starts_with("--") {
            for (i, c) in word.char_indices().skip(1) {
                if !c.is_ascii_alphanumeric() {
                    break;
                }
                let last = i + 1 == word.len();
                if let Some(at) = runner.flags.find(c) {
                    let flag = &runner.flags[at..at + 1];
                    if runner.cluster || last {
                        return Cmd::CodeNext(runner, name, flag);
                    }
                    // The rest of the word was the code.
                    return self.after_code(runner, name);
                }
                if runner.stdin_flag == Some(c) {
                    self.stdin_flag = true;
                }
                if runner.file_flags.contains(c) {
                    self.program_done = true;
                    self.script = true;
                    self.arg_next = last;
                    break;
                }
                if runner.arg_flags.contains(c) {
                    self.arg_next = last;
                    break;
                }
            }
            return Cmd::Runner(runner, name);
        }
        if option || word.starts_with("--") {
            return Cmd::Runner(runner, name);
        }
        // An operand.
        let index = self.operands;
        self.operands = self.operands.saturating_add(1);
        if runner.program == Some(index) && !self.program_done {
            if runner.rest {
                return Cmd::Code(name);
            }
            self.program_done = true;
            return Cmd::Runner(runner, name);
        }
        // `vagrant ssh -c`: ssh is vagrant's subcommand here.
        if runner.names == ["vagrant"] && word == "ssh" {
            return Cmd::Runner(runner, name);
        }
        if let Some(other) = self.named(plain) {
            return other;
        }
        if runner.stdin == Stdin::CodeUnlessScript && word != "-" {
            self.script = true;
        }
        Cmd::Runner(runner, name)
    }

    /// The runner or ssh a plain word names.
    fn named(&self, plain: bool) -> Option<Cmd> {
        if !plain {
            return None;
        }
        let word = self.word.as_str();
        let name = word.rsplit('/').next().unwrap_or(word);
        if name == "ssh" {
            // `rsync -e ssh src host:dest` names the program rsync runs,
            // and the words after it are rsync's.
            return (!self.rsh_next).then_some(Cmd::Ssh(false));
        }
        // `python3.11` is python.
        let bare = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        let find = |name: &str| {
            RUNNERS.iter().find_map(|r| {
                r.names
                    .iter()
                    .find(|n| **n == name)
                    .map(|n| Cmd::Runner(r, n))
            })
        };
        find(name).or_else(|| (!bare.is_empty()).then(|| find(bare)).flatten())
    }
}

/// A code flag with its code in the same word (`python3 -c"..."`,
/// `perl -e'...'`): the flag, when the word is one.
fn attached_code_flag(runner: &Runner, word: &str) -> Option<char> {
    if !word.starts_with('-') || word.starts_with("--") {
        return None;
    }
    for c in word.chars().skip(1) {
        if runner.flags.contains(c) {
            return Some(c);
        }
        if !c.is_ascii_alphanumeric()
            || runner.arg_flags.contains(c)
            || runner.file_flags.contains(c)
        {
            return None;
        }
    }
    None
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
