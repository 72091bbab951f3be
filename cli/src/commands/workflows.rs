//! Workflows: `validate` (offline, with `core`), `apply` with a diff,
//! `get workflows|pipelines`, `describe workflow`, `delete workflow`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use xene_api::error::ErrorBody;
use xene_api::hooks::HookInfo;
use xene_api::paths;
use xene_api::run::RunList;
use xene_api::workflows::{
    Applied, Approved, PipelineState, Revoked, WorkflowDetail, WorkflowList, trigger_kind,
};

use super::Ctx;
use crate::client::Body;
use crate::error::{Exit, fail};
use crate::output;
use crate::sent;

/// The most files one `apply` takes from a directory.
const MAX_FILES: usize = 1000;

/// A workflow file's text and how to name it in messages.
struct Source {
    label: String,
    text: String,
}

fn read(path: &Path) -> anyhow::Result<Source> {
    let limit = xene_core::parse::MAX_SPEC_BYTES as u64 + 1;
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .take(limit)
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
        return Ok(Source {
            label: "<stdin>".into(),
            text,
        });
    }
    std::fs::File::open(path)
        .and_then(|f| f.take(limit).read_to_string(&mut text))
        .map_err(|e| fail(Exit::Usage, format!("cannot read {}: {e}", path.display())))?;
    Ok(Source {
        label: path.display().to_string(),
        text,
    })
}

/// A file, the workflow files of a directory (sorted), or stdin.
fn sources(path: &Path) -> anyhow::Result<Vec<Source>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| fail(Exit::Usage, format!("cannot read {}: {e}", path.display())))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(fail(
                Exit::Usage,
                format!("{} holds no .yaml, .yml or .json file", path.display()),
            ));
        }
        if files.len() > MAX_FILES {
            return Err(fail(
                Exit::Usage,
                format!("{} holds more than {MAX_FILES} files", path.display()),
            ));
        }
        return files.iter().map(|p| read(p)).collect();
    }
    Ok(vec![read(path)?])
}

/// Prints every fault of a file with its path and line.
fn report(label: &str, faults: &xene_core::Diagnostics) {
    for fault in faults.iter() {
        eprintln!("{label}: {fault}");
    }
    eprintln!("{label}: {} fault(s)", faults.len());
}

pub fn validate(path: &Path) -> anyhow::Result<Exit> {
    let source = read(path)?;
    match xene_core::parse_workflow(&source.text) {
        Ok(workflow) => {
            println!(
                "{}: workflow {:?} is valid ({} pipeline(s))",
                source.label,
                workflow.name,
                workflow.pipelines.len()
            );
            Ok(Exit::Ok)
        }
        Err(faults) => {
            report(&source.label, &faults);
            Ok(Exit::Usage)
        }
    }
}

/// How `apply` stores what it reads.
#[derive(Debug, Clone, Copy)]
pub struct ApplyHow {
    pub dry_run: bool,
    /// Approve the versions applied for protected secrets (admins).
    pub approve: bool,
    pub accept_run_time_choices: bool,
}

pub async fn apply(ctx: &Ctx, path: &Path, how: ApplyHow) -> anyhow::Result<Exit> {
    let dry_run = how.dry_run;
    let mut exit = Exit::Ok;
    if dry_run {
        eprintln!("dry run: the server validates; nothing is applied");
    }
    let yes = |asked: bool| asked.then(|| "true".to_string());
    let target = paths::with_query(
        paths::workflows(),
        [
            ("dry_run", yes(dry_run)),
            ("approve", yes(how.approve)),
            ("accept_run_time_choices", yes(how.accept_run_time_choices)),
        ],
    );
    for source in sources(path)? {
        // The diff needs the name; the server's checks decide the rest and
        // answer with every fault.
        if let Ok(workflow) = xene_core::parse_workflow(&source.text) {
            show_diff(ctx, &workflow.name, &source).await?;
        }
        let answer = ctx
            .client
            .send(
                Method::POST,
                &target,
                Some(Body::Text(source.text.clone())),
                &[StatusCode::UNPROCESSABLE_ENTITY],
            )
            .await?;
        if answer.status == StatusCode::UNPROCESSABLE_ENTITY {
            let refusal: ErrorBody = answer.read()?;
            match &refusal.diagnostics {
                Some(faults) => {
                    for fault in faults {
                        eprintln!("{}: {fault}", source.label);
                    }
                }
                None => eprintln!("{}: {}", source.label, refusal.error),
            }
            exit = Exit::Usage;
            continue;
        }
        let applied: Applied = answer.read()?;
        let (name, version) = (&applied.name, applied.version);
        for warning in &applied.warnings {
            eprintln!("{}: warning: {}", source.label, output::text(Some(warning)));
        }
        match (dry_run, applied.changed) {
            (false, true) => println!("workflow/{name} applied: version {version}"),
            (false, false) => println!("workflow/{name} unchanged: version {version}"),
            (true, true) => println!("workflow/{name} would be applied: version {version}"),
            (true, false) => println!("workflow/{name} unchanged: version {version}"),
        }
        if how.approve && !dry_run {
            println!("workflow/{name} version {version} approved for protected secrets");
        }
    }
    Ok(exit)
}

/// Prints a unified diff of the current version against the file.
async fn show_diff(ctx: &Ctx, name: &str, source: &Source) -> anyhow::Result<()> {
    let answer = ctx
        .client
        .send(
            Method::GET,
            &paths::workflow(name),
            None,
            &[StatusCode::NOT_FOUND],
        )
        .await?;
    if answer.status == StatusCode::NOT_FOUND {
        eprintln!("workflow/{name} is new");
        return Ok(());
    }
    let current = answer.read::<WorkflowDetail>()?.current;
    let old = current.source.as_str();
    if old == source.text {
        return Ok(());
    }
    let diff = similar::TextDiff::from_lines(old, &source.text);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(
            &format!("{name} (version {})", current.version),
            &source.label,
        )
        .to_string();
    for line in text.lines() {
        let code = match line.as_bytes().first() {
            _ if line.starts_with("+++") || line.starts_with("---") => "1",
            Some(b'+') => "32",
            Some(b'-') => "31",
            Some(b'@') => "36",
            _ => "0",
        };
        println!("{}", output::paint(ctx.colour && code != "0", code, line));
    }
    Ok(())
}

pub async fn list(ctx: &Ctx) -> anyhow::Result<Exit> {
    let Some(list) = ctx
        .get_for_table::<WorkflowList>(&paths::workflows())
        .await?
    else {
        return Ok(Exit::Ok);
    };
    let rows: Vec<Vec<String>> = list
        .workflows
        .iter()
        .map(|w| {
            vec![
                w.name.clone(),
                w.version.to_string(),
                output::list(&w.pipelines),
                output::time(Some(w.updated_at)),
                output::text(Some(&w.description)),
            ]
        })
        .collect();
    output::table(
        &["NAME", "VERSION", "PIPELINES", "UPDATED", "DESCRIPTION"],
        &rows,
    );
    Ok(Exit::Ok)
}

pub async fn pipelines(ctx: &Ctx) -> anyhow::Result<Exit> {
    let list: WorkflowList = ctx.client.get(&paths::workflows()).await?;
    // Each pipeline's state with its workflow's name, as read (for the
    // table) and as sent with the name added (for `-o json|yaml`).
    let mut all: Vec<(String, PipelineState)> = Vec::new();
    let mut listed: Vec<Value> = Vec::new();
    for workflow in list.workflows {
        let detail = ctx.client.answer(&paths::workflow(&workflow.name)).await?;
        for (state, as_sent) in sent::items::<PipelineState>(&detail.json(), "pipelines")? {
            listed.push(sent::with_field(
                as_sent,
                "workflow",
                workflow.name.as_str(),
            ));
            all.push((workflow.name.clone(), state));
        }
    }
    if output::structured(ctx.format, &json!({ "pipelines": listed })) {
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|(workflow, p)| {
            vec![
                workflow.clone(),
                p.name.clone(),
                output::text(Some(&p.trigger)),
                output::text(Some(&p.scheduler_status)),
                output::text(p.scheduler_reason.as_deref()),
            ]
        })
        .collect();
    output::table(
        &["WORKFLOW", "PIPELINE", "TRIGGER", "SCHEDULER", "REASON"],
        &rows,
    );
    Ok(Exit::Ok)
}

pub async fn describe(ctx: &Ctx, name: &str) -> anyhow::Result<Exit> {
    let Some(detail) = ctx
        .get_for_table::<WorkflowDetail>(&paths::workflow(name))
        .await?
    else {
        return Ok(Exit::Ok);
    };
    let current = &detail.current;
    println!("Name:        {}", current.name);
    println!("Version:     {}", current.version);
    println!("Applied:     {}", output::time(Some(current.created_at)));
    let protected: Vec<String> = current
        .protected_secrets
        .iter()
        .map(|s| output::text(Some(s)))
        .collect();
    if !protected.is_empty() {
        println!("Protected:   {}", protected.join(", "));
        match &current.approved_by {
            Some(by) => println!("Approved:    {} by {by}", output::time(current.approved_at)),
            None => println!(
                "Approved:    no: its runs are refused until an admin runs `xenectl approve {name} --version {}`",
                current.version
            ),
        }
    }
    if !current.spec.description.is_empty() {
        println!("Description: {}", current.spec.description);
    }
    println!("Pipelines:");
    let rows: Vec<Vec<String>> = detail
        .pipelines
        .iter()
        .map(|p| {
            vec![
                format!("  {}", p.name),
                output::text(Some(&p.trigger)),
                output::time(p.next_fires.first().copied()),
                output::text(Some(&p.scheduler_status)),
                output::text(p.scheduler_reason.as_deref()),
            ]
        })
        .collect();
    output::table(
        &[
            "  NAME",
            "TRIGGER",
            "NEXT FIRE (UTC)",
            "SCHEDULER",
            "REASON",
        ],
        &rows,
    );
    let recent = paths::with_query(
        paths::runs(),
        [
            ("workflow", Some(name.to_string())),
            ("limit", Some("5".to_string())),
        ],
    );
    let runs: RunList = ctx.client.get(&recent).await?;
    if !runs.runs.is_empty() {
        println!("Recent runs:");
        let rows: Vec<Vec<String>> = runs
            .runs
            .iter()
            .map(|r| {
                vec![
                    format!("  {}", r.id),
                    r.pipeline.clone(),
                    output::status(ctx.colour, r.status.as_str()),
                    output::time(Some(r.requested_at)),
                ]
            })
            .collect();
        output::table(&["  ID", "PIPELINE", "STATUS", "REQUESTED"], &rows);
    }
    Ok(Exit::Ok)
}

/// Approves a version for the protected secrets it uses.
pub async fn approve(ctx: &Ctx, name: &str, version: i64, accept: bool) -> anyhow::Result<Exit> {
    let path = paths::with_query(
        paths::approval(name, version),
        [(
            "accept_run_time_choices",
            accept.then(|| "true".to_string()),
        )],
    );
    let answer = ctx.client.post(&path, &json!({})).await?;
    let Some(approved) = ctx.for_table::<Approved>(&answer)? else {
        return Ok(Exit::Ok);
    };
    let secrets: Vec<String> = approved
        .protected_secrets
        .iter()
        .map(|s| output::text(Some(s)))
        .collect();
    let uses = if secrets.is_empty() {
        "it uses no protected secret now".to_string()
    } else {
        format!("protected secrets: {}", secrets.join(", "))
    };
    for warning in &approved.warnings {
        eprintln!("warning: {}", output::text(Some(warning)));
    }
    if approved.changed {
        println!("workflow/{name} version {version} approved ({uses})");
    } else {
        println!(
            "workflow/{name} version {version} was approved already by {} at {} ({uses})",
            output::text(Some(&approved.approved_by)),
            output::time(Some(approved.approved_at))
        );
    }
    Ok(Exit::Ok)
}

/// Withdraws a version's approval.
pub async fn revoke(ctx: &Ctx, name: &str, version: i64) -> anyhow::Result<Exit> {
    let answer = ctx
        .client
        .send(Method::DELETE, &paths::approval(name, version), None, &[])
        .await?;
    let Some(revoked) = ctx.for_table::<Revoked>(&answer)? else {
        return Ok(Exit::Ok);
    };
    if revoked.changed {
        println!(
            "workflow/{name} version {version}: approval revoked; its runs are refused protected secrets"
        );
    } else {
        println!("workflow/{name} version {version} was not approved");
    }
    Ok(Exit::Ok)
}

pub async fn delete(ctx: &Ctx, name: &str) -> anyhow::Result<Exit> {
    ctx.client.delete(&paths::workflow(name)).await?;
    println!("workflow/{name} deleted");
    Ok(Exit::Ok)
}

/// One pipeline: its trigger and next fires, params with their types, its
/// tasks with what they depend on, and its hook's URL.
pub async fn describe_pipeline(ctx: &Ctx, target: &str) -> anyhow::Result<Exit> {
    let Some((workflow, pipeline)) = target.split_once('/') else {
        return Err(crate::error::fail(
            Exit::Usage,
            format!("{target:?} is not WORKFLOW/PIPELINE"),
        ));
    };
    let body = ctx.client.answer(&paths::workflow(workflow)).await?.json();
    let detail: WorkflowDetail = sent::read(&body)?;
    let states = sent::items::<PipelineState>(&body, "pipelines")?;
    let (state, state_as_sent) = match states.into_iter().find(|(p, _)| p.name == pipeline) {
        Some((state, as_sent)) => (Some(state), as_sent),
        None => (None, Value::Null),
    };
    let Some(spec) = detail.current.spec.pipelines.get(pipeline) else {
        return Err(crate::error::fail(
            Exit::NotFound,
            format!("workflow {workflow:?} has no pipeline {pipeline:?}"),
        ));
    };
    let state = state.as_ref();
    // No hook yet is a 404, and a normal state here.
    let hook_as_sent = if state.is_some_and(|s| s.trigger == "webhook") {
        match ctx
            .client
            .answer(&paths::pipeline_hook(workflow, pipeline))
            .await
        {
            Ok(answer) => answer.json(),
            Err(_) => Value::Null,
        }
    } else {
        Value::Null
    };
    let hook = sent::read::<HookInfo>(&hook_as_sent).ok();
    let whole = json!({
        "spec": sent::part(&body, &["spec", "pipelines", pipeline]),
        "state": state_as_sent,
        "hook": hook_as_sent,
    });
    if output::structured(ctx.format, &whole) {
        return Ok(Exit::Ok);
    }
    println!("Pipeline:   {target} (version {})", detail.current.version);
    println!("Trigger:    {}", trigger_kind(&spec.trigger));
    let fires = state.map_or(&[][..], |s| s.next_fires.as_slice());
    for (i, fire) in fires.iter().enumerate() {
        let label = if i == 0 { "Next fires:" } else { "" };
        println!("{label:<11} {} UTC", output::time(Some(*fire)));
    }
    if let Some(hook) = &hook {
        println!("Hook URL:   {}", ctx.client.url(&hook.path));
    }
    println!(
        "Scheduler:  {}",
        output::text(state.map(|s| s.scheduler_status.as_str()))
    );
    if !spec.params.is_empty() {
        println!("Params:");
        let rows: Vec<Vec<String>> = spec
            .params
            .iter()
            .map(|(name, p)| {
                let default = if p.required {
                    "(required)".to_string()
                } else {
                    output::text(p.default.as_deref())
                };
                vec![format!("  {name}"), p.kind.to_string(), default]
            })
            .collect();
        output::table(&["  NAME", "TYPE", "DEFAULT"], &rows);
    }
    println!("Tasks:");
    let rows: Vec<Vec<String>> = spec
        .tasks
        .iter()
        .map(|(name, t)| {
            vec![
                format!("  {name}"),
                t.image.as_deref().unwrap_or("shell").to_string(),
                t.steps.len().to_string(),
                output::list(&t.depends_on),
            ]
        })
        .collect();
    output::table(&["  NAME", "RUNTIME", "STEPS", "DEPENDS ON"], &rows);
    Ok(Exit::Ok)
}
