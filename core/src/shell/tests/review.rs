//! Places the first reader missed (review m3-l5), each with its scripts.

use super::render;
use crate::template::TemplateError;

/// Asserts every script is refused with a place starting as given.
fn assert_refused(cases: &[(&str, &str)]) {
    let mut wrong = Vec::new();
    for (script, place) in cases {
        match render(script) {
            Err(TemplateError::UnsafePlace(got)) if got.starts_with(place) => {}
            other => wrong.push(format!("{script:?}: {other:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused as expected:\n{}",
        wrong.join("\n")
    );
}

/// Code read from stdin, a here-string or a process substitution: the
/// value reaches a shell or `source` (review m3-l5 item 1).
#[test]
fn templates_fed_to_a_shell_as_its_input_are_refused() {
    assert_refused(&[
        ("bash <<< \"{{ params.a }}\"", "in the input of `bash`"),
        ("sh -s <<< \"{{ params.a }}\"", "in the input of `sh`"),
        (
            "python3 - <<< \"{{ params.a }}\"",
            "in the input of `python3`",
        ),
        (". /dev/stdin <<< \"{{ params.a }}\"", "in the input of `.`"),
        (
            "source <(echo \"{{ params.a }}\")",
            "in the code `source` reads",
        ),
        (
            "bash <(echo \"{{ params.a }}\")",
            "in the code `bash` reads",
        ),
        ("echo \"{{ params.a }}\" | sh", "in the input of `sh`"),
        (
            "echo \"{{ params.a }}\" | tr a b | bash -s",
            "in the input of `bash`",
        ),
        (
            "echo \"$(echo {{ params.a }})\" | sh",
            "in the input of `sh`",
        ),
        (
            "echo \"{{ params.a }}\" | xargs -I% sh -c 'echo %'",
            "in the input of `xargs`",
        ),
        (
            "echo \"{{ params.a }}\" | tee >(sh)",
            "in the input of `sh`",
        ),
        ("x=$(echo \"{{ params.a }}\" | sh)", "in the input of `sh`"),
    ]);
    // Data on stdin of a program that reads its input as data, or of a
    // script run from its file; a pipe ends at `;`, `&&`, `||`, a newline.
    for (script, want) in [
        (
            "cat <<< {{ params.a }} | grep x",
            "cat <<< \"${XENE_PARAM_A}\" | grep x",
        ),
        (
            "echo {{ params.a }} | bash deploy.sh",
            "echo \"${XENE_PARAM_A}\" | bash deploy.sh",
        ),
        (
            "echo {{ params.a }}; sh -c 'date' | sh",
            "echo \"${XENE_PARAM_A}\"; sh -c 'date' | sh",
        ),
        (
            "echo {{ params.a }} || sh x.sh",
            "echo \"${XENE_PARAM_A}\" || sh x.sh",
        ),
        (
            "echo {{ params.a }}\necho date | sh",
            "echo \"${XENE_PARAM_A}\"\necho date | sh",
        ),
        (
            "echo {{ params.a }} | xargs rm",
            "echo \"${XENE_PARAM_A}\" | xargs rm",
        ),
        (
            "diff <(echo {{ params.a }}) f",
            "diff <(echo \"${XENE_PARAM_A}\") f",
        ),
        (
            "tee >(sh) <<< date; echo {{ params.a }}",
            "tee >(sh) <<< date; echo \"${XENE_PARAM_A}\"",
        ),
    ] {
        assert_eq!(render(script).as_deref(), Ok(want), "{script}");
    }
}

/// Only `rsync -e` and the like name ssh as a program; after any other
/// option ssh is the command (review m3-l5 item 2).
#[test]
fn ssh_after_another_option_runs_its_command() {
    assert_refused(&[
        (
            "sshpass -e ssh user@host \"deploy {{ params.tag }}\"",
            "in the command `ssh`",
        ),
        (
            "sudo -E ssh host \"{{ params.a }}\"",
            "in the command `ssh`",
        ),
        (
            "timeout --foreground ssh host \"{{ params.a }}\"",
            "in the command `ssh`",
        ),
    ]);
    for (script, want) in [
        (
            "rsync --rsh ssh dist/ host:/{{ params.a }}",
            "rsync --rsh ssh dist/ host:/\"${XENE_PARAM_A}\"",
        ),
        (
            "rsync -av -e ssh d/ h:/{{ params.a }}",
            "rsync -av -e ssh d/ h:/\"${XENE_PARAM_A}\"",
        ),
    ] {
        assert_eq!(render(script).as_deref(), Ok(want), "{script}");
    }
}

/// A value starting a word before ssh's host can be an option:
/// `-oProxyCommand=...` runs locally (review m3-l5 item 3).
#[test]
fn templates_before_the_ssh_host_are_refused() {
    assert_refused(&[
        (
            "ssh {{ params.a }} uptime",
            "at the start of a word before ssh's host",
        ),
        (
            "ssh -p {{ params.a }} host uptime",
            "at the start of a word before ssh's host",
        ),
        (
            "ssh -i k \"{{ params.a }}\" uptime",
            "at the start of a word before ssh's host",
        ),
    ]);
    for (script, want) in [
        (
            "ssh user@{{ params.a }} uptime",
            "ssh user@\"${XENE_PARAM_A}\" uptime",
        ),
        (
            "ssh -- {{ params.a }} uptime",
            "ssh -- \"${XENE_PARAM_A}\" uptime",
        ),
        (
            "ssh -p 22 -- {{ params.a }} uptime",
            "ssh -p 22 -- \"${XENE_PARAM_A}\" uptime",
        ),
    ] {
        assert_eq!(render(script).as_deref(), Ok(want), "{script}");
    }
}

/// sed and awk programs, and tools that hand their arguments to a shell
/// or SQL (review m3-l5 item 4).
#[test]
fn templates_in_programs_of_sed_awk_and_the_like_are_refused() {
    assert_refused(&[
        (
            "sed -i \"s/__VERSION__/{{ params.a }}/\" f",
            "in the program `sed` runs",
        ),
        (
            "sed -n -e \"s/x/{{ params.a }}/p\" f",
            "in the code `sed -e` runs",
        ),
        (
            "sed -e 's/a/b/' -e \"s/x/{{ params.a }}/\" f",
            "in the code `sed -e` runs",
        ),
        (
            "sed --expression=\"s/{{ params.a }}//\" f",
            "in the code `sed --expression` runs",
        ),
        (
            "awk \"BEGIN{print \\\"{{ params.a }}\\\"}\"",
            "in the program `awk` runs",
        ),
        (
            "gawk -F: \"{print \\\"{{ params.a }}\\\"}\" f",
            "in the program `gawk` runs",
        ),
        (
            "mawk -v x=1 \"{print {{ params.a }}}\"",
            "in the program `mawk` runs",
        ),
        (
            "script -qc \"deploy {{ params.a }}\" /dev/null",
            "in the code `script -c` runs",
        ),
        (
            "watch -n 5 \"kubectl get {{ params.a }}\"",
            "in the arguments of `watch`",
        ),
        (
            "sqlite3 db.sqlite \"select '{{ params.a }}'\"",
            "in the program `sqlite3` runs",
        ),
        (
            "sqlite3 -cmd \"{{ params.a }}\" db",
            "in the code `sqlite3 -cmd` runs",
        ),
        (
            "vagrant ssh -c \"deploy {{ params.a }}\"",
            "in the code `vagrant -c` runs",
        ),
    ]);
    for (script, want) in [
        (
            "sed -f prog.sed {{ params.a }}",
            "sed -f prog.sed \"${XENE_PARAM_A}\"",
        ),
        (
            "sed 's/x/y/' {{ params.a }}",
            "sed 's/x/y/' \"${XENE_PARAM_A}\"",
        ),
        (
            "sed -e 's/x/y/' {{ params.a }}",
            "sed -e 's/x/y/' \"${XENE_PARAM_A}\"",
        ),
        (
            "awk -f p.awk {{ params.a }}",
            "awk -f p.awk \"${XENE_PARAM_A}\"",
        ),
        (
            "awk -v v={{ params.a }} '{print v}'",
            "awk -v v=\"${XENE_PARAM_A}\" '{print v}'",
        ),
        (
            "sqlite3 {{ params.a }} .tables",
            "sqlite3 \"${XENE_PARAM_A}\" .tables",
        ),
        (
            "vagrant up {{ params.a }}",
            "vagrant up \"${XENE_PARAM_A}\"",
        ),
    ] {
        assert_eq!(render(script).as_deref(), Ok(want), "{script}");
    }
}

/// Runner names with versions, named by an expansion, and code stuck to
/// its flag (review m3-l5 item 5).
#[test]
fn runner_names_and_attached_code_flags_are_seen() {
    assert_refused(&[
        (
            "python3.11 -c \"print('{{ params.a }}')\"",
            "in the code `python -c` runs",
        ),
        (
            "/usr/bin/python3.12 -c \"x {{ params.a }}\"",
            "in the code `python -c` runs",
        ),
        (
            "pypy3 -c \"x {{ params.a }}\"",
            "in the code `pypy -c` runs",
        ),
        (
            "sudo $SHELL -c \"x {{ params.a }}\"",
            "in the code `$VAR -c` runs",
        ),
        (
            "sudo $(command -v bash) -c \"x {{ params.a }}\"",
            "in the code `$VAR -c` runs",
        ),
        (
            "`which sh` -c \"x {{ params.a }}\"",
            "in the code `$VAR -c` runs",
        ),
        (
            "python3 -c\"print('{{ params.a }}')\"",
            "in the code `python3 -c` runs",
        ),
        ("su -c\"x {{ params.a }}\"", "in the code `su -c` runs"),
        (
            "mysql -e\"drop table {{ params.a }}\"",
            "in the code `mysql -e` runs",
        ),
        (
            "perl -e\"print '{{ params.a }}'\"",
            "in the code `perl -e` runs",
        ),
        ("bash -xc\"x {{ params.a }}\"", "in the code `bash -c` runs"),
    ]);
    for (script, want) in [
        (
            "mysql -p{{ params.a }} db",
            "mysql -p\"${XENE_PARAM_A}\" db",
        ),
        (
            "python3.11 tool.py {{ params.a }}",
            "python3.11 tool.py \"${XENE_PARAM_A}\"",
        ),
    ] {
        assert_eq!(render(script).as_deref(), Ok(want), "{script}");
    }
}

/// An alias's text is code, which dash expands in scripts (review m3-l5
/// item 6).
#[test]
fn templates_in_aliases_are_refused() {
    assert_refused(&[(
        "alias k=\"kubectl --context {{ params.a }}\"\nk get pods",
        "in the arguments of `alias`",
    )]);
}

/// Command positions after `function NAME`, redirections, prefixes'
/// options and assignments holding a template (review m3-l5 item 8).
#[test]
fn commands_after_functions_redirections_and_prefixes_are_seen() {
    assert_refused(&[
        (
            "function f { eval \"{{ params.a }}\"; }",
            "in the arguments of `eval`",
        ),
        (
            "2>/dev/null eval \"{{ params.a }}\"",
            "in the arguments of `eval`",
        ),
        (
            "> log eval \"{{ params.a }}\"",
            "in the arguments of `eval`",
        ),
        (
            "command -p eval \"{{ params.a }}\"",
            "in the arguments of `eval`",
        ),
        (
            "time -p eval \"{{ params.a }}\"",
            "in the arguments of `eval`",
        ),
        (
            "X={{ params.a }} eval \"{{ params.tag }}\"",
            "in the arguments of `eval`",
        ),
        (
            "echo x 2>&1 | sh -c \"{{ params.a }}\"",
            "in the code `sh -c` runs",
        ),
    ]);
    for (script, want) in [
        (
            "echo 2>/dev/null {{ params.a }}",
            "echo 2>/dev/null \"${XENE_PARAM_A}\"",
        ),
        ("cat > {{ params.a }}.txt", "cat > \"${XENE_PARAM_A}\".txt"),
        ("X={{ params.a }} make", "X=\"${XENE_PARAM_A}\" make"),
    ] {
        assert_eq!(render(script).as_deref(), Ok(want), "{script}");
    }
}

/// Where the reader and sh disagreed about quoting, comments, `case` and
/// heredocs (review m3-l5 item 7).
#[test]
fn reader_follows_sh_on_case_comments_ansi_quotes_and_backquotes() {
    assert_refused(&[
        (
            "echo \"$(case $E in a) eval {{ params.a }};; esac)\"",
            "in the arguments of `eval`",
        ),
        (
            "echo x\\ #\"\necho \"; eval {{ params.a }} #\"",
            "in the arguments of `eval`",
        ),
        (
            "echo x\u{a0}#\"\necho \"; eval {{ params.a }} #\"",
            "in the arguments of `eval`",
        ),
        (
            "echo $'\\'' '\"' ; eval {{ params.a }} #\"",
            "in the arguments of `eval`",
        ),
        ("echo $'{{ params.a }}'", "inside $'...' quotes"),
        (
            "echo `echo \\`eval {{ params.a }}\\``",
            "in the arguments of `eval`",
        ),
    ]);
    // `\` at a body line's end joins the next line: `x\` + `EOF` is no end.
    assert_eq!(
        render("cat <<EOF | sh\nx\\\nEOF\necho {{ params.a }}\nEOF"),
        Err(TemplateError::InHeredoc)
    );
    for (script, want) in [
        (
            "cat <<'EOF'\nx\\\nEOF\necho {{ params.a }}",
            "cat <<'EOF'\nx\\\nEOF\necho \"${XENE_PARAM_A}\"",
        ),
        (
            "echo \"$(case $E in (a) echo 1;; esac)\" {{ params.a }}",
            "echo \"$(case $E in (a) echo 1;; esac)\" \"${XENE_PARAM_A}\"",
        ),
        (
            "echo \"$(case $E in a) echo 1;; esac)\" {{ params.a }}",
            "echo \"$(case $E in a) echo 1;; esac)\" \"${XENE_PARAM_A}\"",
        ),
        (
            "echo x #\"\necho {{ params.a }}",
            "echo x #\"\necho \"${XENE_PARAM_A}\"",
        ),
        (
            "echo $'a\\'b' {{ params.a }}",
            "echo $'a\\'b' \"${XENE_PARAM_A}\"",
        ),
        (
            "echo \\$'x' {{ params.a }}",
            "echo \\$'x' \"${XENE_PARAM_A}\"",
        ),
    ] {
        assert_eq!(render(script).as_deref(), Ok(want), "{script}");
    }
}

/// Scripts of shell punctuation, words and templates in any order: the
/// reader never panics, and validation and rendering agree (`render`
/// asserts it).
#[test]
fn any_script_is_read_without_panic() {
    const PIECES: &[&str] = &[
        " ",
        "\n",
        "\t",
        "\\",
        "'",
        "\"",
        "$",
        "(",
        ")",
        "`",
        "<",
        ">",
        "|",
        "&",
        ";",
        "#",
        "-",
        "=",
        "{",
        "}",
        "[[",
        "]]",
        "$'",
        "<<",
        "<<<",
        "EOF",
        "sh",
        "-c",
        "eval",
        "ssh",
        "sed",
        "case",
        "esac",
        "in",
        "a)",
        "xargs",
        "-I%",
        "source",
        "--",
        "\u{a0}",
        "é",
        "{{ params.a }}",
    ];
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = next() % 24;
        let script: String = (0..len)
            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
            .collect();
        if crate::template::references(&script).is_ok() {
            let _ = render(&script);
        }
    }
}
