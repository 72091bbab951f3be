//! `xenectl logs`: what is stored (paged), or with `-f` the live feed to
//! the run's end, resuming after a dropped connection from the last cursor.

use std::io::Write;

use xene_api::feed::RunFeed;
use xene_api::paths;
use xene_api::run::LogPage;

use super::Ctx;
use crate::error::Exit;
use crate::feed;
use crate::output;

pub struct Options {
    pub task: Option<String>,
    pub step: Option<String>,
    pub timestamps: bool,
    /// Only lines written at or after this (UTC ms). The API cannot filter
    /// by time, so lines are read and dropped here.
    pub since_ms: Option<i64>,
}

pub async fn logs(ctx: &Ctx, id: i64, follow: bool, options: &Options) -> anyhow::Result<Exit> {
    if follow {
        feed::follow(&ctx.client, id, |message| {
            if let RunFeed::Log(chunk) = message
                && wanted(options, &chunk.task, &chunk.step)
                && options.since_ms.is_none_or(|since| chunk.at >= since)
            {
                let mut out = std::io::stdout().lock();
                for line in chunk.data.lines() {
                    print_line(
                        &mut out,
                        ctx,
                        options,
                        &chunk.task,
                        &chunk.step,
                        &chunk.stream,
                        chunk.at,
                        line,
                    )?;
                }
                out.flush()?;
            }
            Ok(())
        })
        .await?;
        return Ok(Exit::Ok);
    }
    let mut after = 0i64;
    loop {
        let path = paths::with_query(
            paths::run_logs(id),
            [
                ("after", Some(after.to_string())),
                ("limit", Some("5000".to_string())),
                ("task", options.task.clone()),
                ("step", options.step.clone()),
            ],
        );
        let page: LogPage = ctx.client.get(&path).await?;
        let next = page.next_offset;
        let mut out = std::io::stdout().lock();
        for line in &page.lines {
            if options.since_ms.is_some_and(|since| line.at < since) {
                continue;
            }
            print_line(
                &mut out,
                ctx,
                options,
                &line.task,
                &line.step,
                &line.stream,
                line.at,
                &line.data,
            )?;
        }
        out.flush()?;
        if page.lines.is_empty() || next <= after {
            return Ok(Exit::Ok);
        }
        after = next;
    }
}

fn wanted(options: &Options, task: &str, step: &str) -> bool {
    options.task.as_deref().is_none_or(|t| t == task)
        && options.step.as_deref().is_none_or(|s| s == step)
}

/// One line, prefixed by its task and step (unless one step was asked
/// for) and its time when asked; the line's own colours pass through on a
/// terminal. JSON output gives one object per line.
#[allow(clippy::too_many_arguments)]
fn print_line(
    out: &mut impl Write,
    ctx: &Ctx,
    options: &Options,
    task: &str,
    step: &str,
    stream: &str,
    at: i64,
    line: &str,
) -> std::io::Result<()> {
    if !ctx.format.is_table() {
        let value = serde_json::json!({"task": task, "step": step, "stream": stream, "at": at, "data": line});
        return match ctx.format {
            crate::args::Format::Yaml => write!(out, "---\n{}", output::yaml(&value)),
            _ => writeln!(out, "{value}"),
        };
    }
    let mut prefix = String::new();
    if options.timestamps {
        prefix.push_str(&output::timestamp(at));
        prefix.push(' ');
    }
    if options.step.is_none() {
        let label = format!("[{task}/{step}]");
        let code = if stream == "stderr" { "31" } else { "36" };
        prefix.push_str(&output::paint(ctx.colour, code, &label));
        prefix.push(' ');
    }
    let line = if ctx.colour {
        line.to_string()
    } else {
        strip_escapes(line)
    };
    writeln!(out, "{prefix}{line}")
}

/// A line without its colour escapes, for a file or a pipe.
fn strip_escapes(line: &str) -> String {
    if !line.contains('\x1b') {
        return line.to_string();
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_stripped() {
        assert_eq!(strip_escapes("\x1b[31mred\x1b[0m text"), "red text");
        assert_eq!(strip_escapes("plain"), "plain");
    }
}
