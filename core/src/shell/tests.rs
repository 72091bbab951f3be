//! Templates in code for another shell and in heredocs.

use std::collections::BTreeMap;

use crate::context::{EvalContext, TaskResult};
use crate::status::TaskStatus;
use crate::template::{TemplateError, render_script, script_fault};

fn render(script: &str) -> Result<String, TemplateError> {
    let tasks = BTreeMap::from([(
        "src".to_string(),
        TaskResult {
            status: TaskStatus::Success,
            output: Some("$(touch pwned)".into()),
        },
    )]);
    let params = BTreeMap::from([
        ("a".to_string(), "$(touch pwned)".to_string()),
        ("tag".to_string(), "v1".to_string()),
    ]);
    let ctx = EvalContext {
        tasks: &tasks,
        params: &params,
    };
    let rendered = render_script(script, &ctx);
    // Validation and rendering read a script the same way.
    assert_eq!(
        script_fault(script),
        rendered.as_ref().err().cloned(),
        "{script}"
    );
    rendered
}

/// A template in text another shell, `eval` or an interpreter runs:
/// the outer shell expands the variable into it, the inner one runs
/// the value (review M3, attack #81).
#[test]
fn templates_in_code_for_another_shell_are_refused() {
    for (script, place) in [
        ("eval \"echo {{ params.a }}\"", "in the arguments of `eval`"),
        ("sh -c \"echo {{ params.a }}\"", "in the code `sh -c` runs"),
        (
            "bash -c \"deploy {{ params.tag }}\"",
            "in the code `bash -c` runs",
        ),
        (
            "ssh host \"deploy {{ params.tag }}\"",
            "in the command `ssh` sends to a remote shell",
        ),
        (
            "eval \"x=1; {{ tasks.src.output }}\"",
            "in the arguments of `eval`",
        ),
        ("eval echo {{ params.a }}", "in the arguments of `eval`"),
        (
            "A=1 eval \"$X {{ params.a }}\"",
            "in the arguments of `eval`",
        ),
        (
            "command eval \"{{ params.a }}\"",
            "in the arguments of `eval`",
        ),
        (
            "trap \"echo {{ params.a }}\" EXIT",
            "in the arguments of `trap`",
        ),
        ("dash -c \"x {{ params.a }}\"", "in the code `dash -c` runs"),
        ("zsh -c \"x {{ params.a }}\"", "in the code `zsh -c` runs"),
        ("/bin/sh -ec {{ params.a }}", "in the code `sh -c` runs"),
        (
            "bash -o pipefail -c \"x {{ params.a }}\"",
            "in the code `bash -c` runs",
        ),
        (
            "bash -x -lc \"x {{ params.a }}\"",
            "in the code `bash -c` runs",
        ),
        ("su -c \"x {{ params.a }}\"", "in the code `su -c` runs"),
        (
            "su - deploy -c \"x {{ params.a }}\"",
            "in the code `su -c` runs",
        ),
        (
            "su deploy --command=\"x {{ params.a }}\"",
            "in the code `su --command` runs",
        ),
        (
            "runuser -u app -- sh -c \"x {{ params.a }}\"",
            "in the code `sh -c` runs",
        ),
        (
            "sudo -u app sh -c \"x {{ params.a }}\"",
            "in the code `sh -c` runs",
        ),
        (
            "timeout 5 bash -c \"x {{ params.a }}\"",
            "in the code `bash -c` runs",
        ),
        (
            "docker exec ctr sh -c \"x {{ params.a }}\"",
            "in the code `sh -c` runs",
        ),
        (
            "docker exec -it ctr bash -c \"x {{ params.a }}\"",
            "in the code `bash -c` runs",
        ),
        (
            "kubectl exec pod -c app -- sh -c \"x {{ params.a }}\"",
            "in the code `sh -c` runs",
        ),
        (
            "ssh -p 22 -i key user@host deploy {{ params.tag }}",
            "in the command `ssh`",
        ),
        (
            "ssh -oBatchMode=yes host \"deploy {{ params.tag }}\"",
            "in the command `ssh`",
        ),
        (
            "$SHELL -c \"x {{ params.a }}\"",
            "in the code `$VAR -c` runs",
        ),
        (
            "python3 -c \"print('{{ params.a }}')\"",
            "in the code `python3 -c` runs",
        ),
        (
            "perl -ne \"print '{{ params.a }}'\"",
            "in the code `perl -e` runs",
        ),
        (
            "node --eval \"f('{{ params.a }}')\"",
            "in the code `node --eval` runs",
        ),
        (
            "node --eval=\"f('{{ params.a }}')\"",
            "in the code `node --eval` runs",
        ),
        (
            "psql -h db -c \"select * from t where n = '{{ params.a }}'\"",
            "in the code `psql -c` runs",
        ),
        (
            "mysql -e \"drop table {{ params.a }}\"",
            "in the code `mysql -e` runs",
        ),
        (
            "sshpass -f pw ssh host \"deploy {{ params.a }}\"",
            "in the command `ssh`",
        ),
        // Inside substitutions, and substitutions inside code.
        (
            "x=$(sh -c \"echo {{ params.a }}\")",
            "in the code `sh -c` runs",
        ),
        (
            "echo \"$(bash -c \"echo {{ params.a }}\")\"",
            "in the code `bash -c` runs",
        ),
        (
            "echo `sh -c \"echo {{ params.a }}\"`",
            "in the code `sh -c` runs",
        ),
        (
            "sh -c \"$(echo {{ params.a }})\"",
            "in the code `sh -c` runs",
        ),
        (
            "eval \"$(printf '%s' {{ params.a }})\"",
            "in the arguments of `eval`",
        ),
        ("eval `echo {{ params.a }}`", "in the arguments of `eval`"),
        // Across lines and compound commands.
        (
            "cd /tmp\nif true; then eval \"{{ params.a }}\"; fi",
            "in the arguments of `eval`",
        ),
        (
            "echo ok && sh -c \"{{ params.a }}\" || true",
            "in the code `sh -c` runs",
        ),
    ] {
        match render(script) {
            Err(TemplateError::UnsafePlace(got)) => {
                assert!(got.starts_with(place), "{script}: {got}");
            }
            other => panic!("{script}: {other:?}"),
        }
    }
    assert_eq!(
        render("sh -c \"echo {{ params.a }}\"")
            .unwrap_err()
            .to_string(),
        "a template in the code `sh -c` runs cannot be kept from running as code: use the \
         variable it stands for instead (like \"$XENE_PARAM_NAME\" or \"$XENE_OUTPUT_TASK\"), \
         passed on through the environment"
    );
}

/// What is data stays accepted, quoted for where it stands.
#[test]
fn data_next_to_code_is_fine() {
    for (script, want) in [
        // The arguments after `sh -c`'s code are its $0, $1...
        (
            "sh -c 'echo \"$1\"' sh {{ params.a }}",
            "sh -c 'echo \"$1\"' sh \"${XENE_PARAM_A}\"",
        ),
        (
            "python3 -c 'import sys' {{ params.a }}",
            "python3 -c 'import sys' \"${XENE_PARAM_A}\"",
        ),
        (
            "rsync -a -e ssh dist/ host:/srv/{{ params.a }}",
            "rsync -a -e ssh dist/ host:/srv/\"${XENE_PARAM_A}\"",
        ),
        (
            "docker build -t app:{{ params.a }} .",
            "docker build -t app:\"${XENE_PARAM_A}\" .",
        ),
        (
            "perl -i -pe 's/x/y/' f{{ params.a }}",
            "perl -i -pe 's/x/y/' f\"${XENE_PARAM_A}\"",
        ),
        (
            "psql -f q.sql -v n={{ params.a }}",
            "psql -f q.sql -v n=\"${XENE_PARAM_A}\"",
        ),
        (
            "cat > f <<EOF\nx\nEOF\nawk -v v={{ params.a }} '{print v}' f",
            "cat > f <<EOF\nx\nEOF\nawk -v v=\"${XENE_PARAM_A}\" '{print v}' f",
        ),
        (
            "bash deploy.sh {{ params.a }}",
            "bash deploy.sh \"${XENE_PARAM_A}\"",
        ),
        (
            "python3 -m tool {{ params.a }}",
            "python3 -m tool \"${XENE_PARAM_A}\"",
        ),
        (
            "apt-get install -y bash {{ params.a }}",
            "apt-get install -y bash \"${XENE_PARAM_A}\"",
        ),
        ("grep -c x {{ params.a }}", "grep -c x \"${XENE_PARAM_A}\""),
        (
            "echo \"eval {{ params.a }}\"",
            "echo \"eval ${XENE_PARAM_A}\"",
        ),
        (
            "eval \"$X\"; echo {{ params.a }}",
            "eval \"$X\"; echo \"${XENE_PARAM_A}\"",
        ),
        (
            "sh -c \"$X\"\necho {{ params.a }}",
            "sh -c \"$X\"\necho \"${XENE_PARAM_A}\"",
        ),
        (
            "x=$(sh -c 'date'); echo {{ params.a }}",
            "x=$(sh -c 'date'); echo \"${XENE_PARAM_A}\"",
        ),
        (
            "eval $(( {{ params.a }} + 1 ))",
            "eval $(( $(printf '%d' \"${XENE_PARAM_A}\") + 1 ))",
        ),
        ("cat <<< {{ params.a }}", "cat <<< \"${XENE_PARAM_A}\""),
        (
            "echo hi # eval {{ params.a }}",
            "echo hi # eval \"${XENE_PARAM_A}\"",
        ),
        // A substitution inside double quotes has quotes of its own.
        (
            "echo \"$(echo {{ params.a }})\"",
            "echo \"$(echo \"${XENE_PARAM_A}\")\"",
        ),
        (
            "echo \"$(echo \"{{ params.a }}\")\"",
            "echo \"$(echo \"${XENE_PARAM_A}\")\"",
        ),
        (
            "echo \"$(date) {{ params.a }}\"",
            "echo \"$(date) ${XENE_PARAM_A}\"",
        ),
        (
            "echo \"$( (cd /; pwd) ) {{ params.a }}\"",
            "echo \"$( (cd /; pwd) ) ${XENE_PARAM_A}\"",
        ),
    ] {
        assert_eq!(render(script).as_deref(), Ok(want), "{script}");
    }
}

/// A heredoc's body prints `"${XENE_PARAM_A}"` with its quotes, or
/// under `<<'EOF'` the reference itself (review L9, attack #82).
#[test]
fn templates_in_heredocs_are_refused() {
    for script in [
        "cat <<EOF\nvalue: {{ params.a }}\nEOF",
        "cat <<'EOF'\n{{ params.a }}\nEOF",
        "cat <<\"EOF\" > f\n{{ params.a }}\nEOF",
        "cat <<\\EOF\n{{ params.a }}\nEOF",
        "cat <<-EOF\n\tx\n\t{{ params.a }}\n\tEOF",
        "ssh host <<EOF\ndeploy {{ params.a }}\nEOF",
        "cat <<A <<B\na\nA\n{{ params.a }}\nB",
        "x=$(cat <<EOF\n{{ params.a }}\nEOF\n)",
        "cat << {{ params.a }}",
        // Not the end line: the delimiter must be the whole line.
        "cat <<EOF\n EOF\n{{ params.a }}\nEOF",
    ] {
        assert_eq!(render(script), Err(TemplateError::InHeredoc), "{script}");
    }
    assert!(
        TemplateError::InHeredoc
            .to_string()
            .contains("write the variable it stands for instead (like $XENE_PARAM_NAME")
    );
    // After the body, the script goes on as usual.
    for (script, want) in [
        (
            "cat <<EOF\n$XENE_PARAM_A\nEOF\necho {{ params.a }}",
            "cat <<EOF\n$XENE_PARAM_A\nEOF\necho \"${XENE_PARAM_A}\"",
        ),
        (
            "cat <<-'END' | sh\n\techo \"x\"\n\tEND\necho {{ params.a }}",
            "cat <<-'END' | sh\n\techo \"x\"\n\tEND\necho \"${XENE_PARAM_A}\"",
        ),
        (
            "cat <<A <<B\na\nA\nb\nB\necho {{ params.a }}",
            "cat <<A <<B\na\nA\nb\nB\necho \"${XENE_PARAM_A}\"",
        ),
        (
            "echo $(( 1 << 2 )) {{ params.a }}",
            "echo $(( 1 << 2 )) \"${XENE_PARAM_A}\"",
        ),
    ] {
        assert_eq!(render(script).as_deref(), Ok(want), "{script}");
    }
}

/// Nesting past the bound is not followed: templates after it are
/// refused rather than guessed at.
#[test]
fn nesting_is_bounded() {
    let deep = format!("echo {}{{{{ params.a }}}}", "$(".repeat(100));
    assert!(matches!(
        render(&deep),
        Err(TemplateError::UnsafePlace(p)) if p.starts_with("after more than 64")
    ));
    let shallow = format!(
        "echo {}x{}; echo {{{{ params.a }}}}",
        "$(".repeat(60),
        ")".repeat(60)
    );
    assert!(render(&shallow).is_ok());
}

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
