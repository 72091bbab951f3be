//! Caches: `caches ls WORKFLOW` (a workflow's saved entries, the most
//! recently used first, and its usage against its quota) and `caches rm
//! WORKFLOW ID`.

use xene_api::artifacts::size_text;
use xene_api::caches::CacheList;
use xene_api::paths;

use super::Ctx;
use crate::error::Exit;
use crate::output;

pub async fn list(ctx: &Ctx, workflow: &str) -> anyhow::Result<Exit> {
    let Some(list) = ctx
        .get_for_table::<CacheList>(&paths::workflow_caches(workflow))
        .await?
    else {
        return Ok(Exit::Ok);
    };
    let rows: Vec<Vec<String>> = list
        .entries
        .iter()
        .map(|e| {
            vec![
                e.id.to_string(),
                e.name.clone(),
                e.key.clone(),
                e.files.to_string(),
                size_text(e.bytes).replace(' ', ""),
                output::time(Some(e.used_at)),
                output::time(Some(e.created_at)),
            ]
        })
        .collect();
    output::table(
        &["ID", "NAME", "KEY", "FILES", "SIZE", "USED", "CREATED"],
        &rows,
    );
    // The totals go to stderr: stdout stays the table a script reads.
    let quota = if list.quota == 0 {
        "saving caches is off (--cache-quota 0)".to_string()
    } else {
        format!("quota {}", size_text(list.quota))
    };
    if list.total == 0 {
        eprintln!("workflow {workflow} has no caches; {quota}");
    } else {
        let noun = if list.total == 1 { "entry" } else { "entries" };
        let shown = if list.total > list.entries.len() as u64 {
            format!("{} of {} {noun}", list.entries.len(), list.total)
        } else {
            format!("{} {noun}", list.total)
        };
        eprintln!("{shown}, {} in all; {quota}", size_text(list.bytes));
    }
    Ok(Exit::Ok)
}

/// Removes one entry: the next restore of its key misses.
pub async fn remove(ctx: &Ctx, workflow: &str, id: i64) -> anyhow::Result<Exit> {
    ctx.client
        .delete(&paths::workflow_cache(workflow, id))
        .await?;
    println!("cache/{id} of workflow/{workflow} deleted");
    Ok(Exit::Ok)
}
