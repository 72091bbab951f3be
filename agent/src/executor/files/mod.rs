//! Artifacts and caches on the agent: an attempt's `needs` fetched into its
//! workspace before its first step, and its `publish` collected, hashed,
//! uploaded and committed after its main steps; its `caches` restored and
//! saved (`cache`); all through a [`FileChannel`] (the server's, or
//! [`local::LocalStore`]'s for `xene-agent run`).
//!
//! Bytes on their way pass through a spool directory of the attempt under
//! the agent's work root: blobs downloaded before they are checked and
//! placed, and files read out of a container before they are uploaded.

mod archive;
mod cache;
pub mod channel;
mod collect;
mod fetch;
pub mod local;
mod publish;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use cache::{RenderedCache, Restored};
pub use channel::FileChannel;
pub use local::LocalStore;
use tokio_util::sync::CancellationToken;
use xene_core::cache::CacheHit;
use xene_core::spec::{Need, Publish, PublishWhen};

use crate::runtime::{TaskContext, Workspace};

/// An attempt's artifacts and caches: what it needs, publishes and
/// caches, and how.
pub(crate) struct Staging {
    channel: Arc<dyn FileChannel>,
    needs: Vec<Need>,
    publish: Vec<Publish>,
    caches: Vec<RenderedCache>,
    /// The attempt may save caches (its dispatch said so).
    cache_save: bool,
    spool: Spool,
}

impl Staging {
    /// `spool`: a directory of the attempt's own, made on first use and
    /// removed with this.
    pub(crate) fn new(
        channel: Arc<dyn FileChannel>,
        needs: Vec<Need>,
        publish: Vec<Publish>,
        caches: Vec<RenderedCache>,
        cache_save: bool,
        spool: PathBuf,
    ) -> Self {
        Self {
            channel,
            needs,
            publish,
            caches,
            cache_save,
            spool: Spool::new(spool),
        }
    }

    pub(crate) fn has_caches(&self) -> bool {
        !self.caches.is_empty()
    }

    /// The caches `restored` lacks (their `after` step did not succeed,
    /// or the attempt ended before), as misses under their rendered keys
    /// (the full key is computed only when a restore is due): what post
    /// steps see of them.
    pub(crate) fn not_restored(&self, restored: &[Restored]) -> Vec<Restored> {
        self.caches
            .iter()
            .filter(|c| !restored.iter().any(|r| r.name == c.name))
            .map(|c| Restored {
                name: c.name.clone(),
                hit: CacheHit::Miss,
                key: c.key.clone(),
                matched: None,
            })
            .collect()
    }

    /// Restores the caches whose `after` is `after` (None: before the
    /// first step, after needs). Never fails the task: an error is a
    /// warning line and a miss. Log lines go to `log`. Once `cancel` fires
    /// it returns soon, nothing left running in the workspace.
    pub(crate) async fn restore(
        &self,
        ctx: &mut dyn TaskContext,
        after: Option<&str>,
        log: &mut Vec<String>,
        cancel: &CancellationToken,
    ) -> Vec<Restored> {
        cache::restore_all(
            &*self.channel,
            ctx.workspace(),
            &self.caches,
            after,
            &self.spool,
            log,
            cancel,
        )
        .await
    }

    /// After the main steps succeeded: saves each restored cache that was
    /// not a `Hit`, when `cache_save`. Never fails the task (warnings).
    pub(crate) async fn save(
        &self,
        ctx: &mut dyn TaskContext,
        restored: &[Restored],
        log: &mut Vec<String>,
    ) {
        cache::save_all(
            &*self.channel,
            ctx.workspace(),
            &self.caches,
            self.cache_save,
            restored,
            &self.spool,
            log,
        )
        .await
    }

    /// Fetches every need into the context's workspace; each artifact's log
    /// line goes to `log` as it is done.
    pub(crate) async fn fetch(
        &self,
        ctx: &mut dyn TaskContext,
        log: &mut Vec<String>,
    ) -> Result<(), String> {
        if self.needs.is_empty() {
            return Ok(());
        }
        self.spool.make().await?;
        fetch::fetch_all(
            &*self.channel,
            ctx.workspace(),
            &self.needs,
            &self.spool,
            log,
        )
        .await
    }

    /// Publishes what the main steps' end calls for: every artifact after
    /// a success, those with `when: always` after a failure. The names
    /// staged that are not `when: always` go to `staged`, failure or not
    /// (a failure of the attempt drops them).
    pub(crate) async fn publish(
        &self,
        ctx: &mut dyn TaskContext,
        succeeded: bool,
        log: &mut Vec<String>,
        staged: &mut Vec<String>,
    ) -> Result<(), String> {
        publish_all(
            &*self.channel,
            ctx.workspace(),
            &self.publish,
            succeeded,
            &self.spool,
            log,
            staged,
        )
        .await
    }

    pub(crate) fn has_needs(&self) -> bool {
        !self.needs.is_empty()
    }
}

/// Publishes each of `publish` that is due; after a failure, only the
/// `when: always` ones still go (they are meant to survive one), and the
/// first error is the one returned. `staged` gets the names staged that
/// are not `when: always`.
pub(crate) async fn publish_all(
    channel: &dyn FileChannel,
    workspace: Workspace<'_>,
    publish: &[Publish],
    succeeded: bool,
    spool: &Spool,
    log: &mut Vec<String>,
    staged: &mut Vec<String>,
) -> Result<(), String> {
    let due: Vec<&Publish> = publish
        .iter()
        .filter(|p| succeeded || p.when == PublishWhen::Always)
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    spool.make().await?;
    let mut first_error: Option<String> = None;
    for publish in due {
        if first_error.is_some() && publish.when != PublishWhen::Always {
            continue;
        }
        let done = publish::publish(channel, reborrow(&workspace), publish, spool).await;
        let emptied = spool.empty().await;
        match done.and_then(|line| emptied.map(|()| line)) {
            Ok(line) => {
                log.push(line);
                if publish.when != PublishWhen::Always {
                    staged.push(publish.name.clone());
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The same workspace again (`Workspace` is neither `Copy` nor `Clone`).
fn reborrow<'a>(workspace: &Workspace<'a>) -> Workspace<'a> {
    match workspace {
        Workspace::Dir { root, owner } => Workspace::Dir {
            root,
            owner: *owner,
        },
        Workspace::Archive(archive) => Workspace::Archive(*archive),
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let dir = self.spool.dir.clone();
        let remove = move || {
            let _ = std::fs::remove_dir_all(&*dir);
        };
        // Off the async workers when there are some; a drop outside a
        // runtime (a test, a shutdown) removes it here.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(remove)),
            Err(_) => remove(),
        }
    }
}

/// Files of the attempt's spool directory, each name used once.
#[derive(Clone)]
pub(crate) struct Spool {
    dir: Arc<PathBuf>,
    next: Arc<AtomicU64>,
}

impl Spool {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self {
            dir: Arc::new(dir),
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("f{n}"))
    }

    /// Creates the directory, private (the steps' user never reads it).
    pub(crate) async fn make(&self) -> Result<(), String> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || make_private_dir(&dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("creating the spool {}: {e}", self.dir.display()))
    }

    /// Removes what one artifact left, so the spool never holds more than
    /// one artifact's bytes. The directory itself stays: made again, it
    /// could be taken in between by another user of a shared temp dir.
    pub(crate) async fn empty(&self) -> Result<(), String> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || empty_dir(&dir))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("emptying the spool {}: {e}", self.dir.display()))
    }
}

/// Removes everything inside `dir`, never following a link.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// The spool may sit in a shared temp dir (`xene-agent run`'s default
/// root): it must be a real directory of this user, closed to others.
fn make_private_dir(dir: &Path) -> std::io::Result<()> {
    crate::runtime::shell::ensure_private_dir(dir)
}

/// `12.3 MiB`, `512 B`.
pub(crate) fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
