//! Templates in code for another shell and in heredocs.

use std::collections::BTreeMap;

use crate::context::{EvalContext, TaskResult};
use crate::status::TaskStatus;
use crate::template::{TemplateError, render_script, script_fault};

fn render(script: &str) -> Result<String, TemplateError> {
    let tasks = BTreeMap::from([(
        "src".to_string(),
        TaskResult {
            caches: Default::default(),
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

/// Cases from the review of the first version (m3-l5).
mod review;
