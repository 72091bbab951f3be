//! Artifacts on the agent: an attempt's `needs` fetched into its workspace
//! before its first step, and its `publish` collected, hashed, uploaded and
//! committed after its main steps, all through a [`FileChannel`] (the
//! server's, or [`local::LocalStore`]'s for `xene-agent run`).
//!
//! Bytes on their way pass through a spool directory of the attempt under
//! the agent's work root: blobs downloaded before they are checked and
//! placed, and files read out of a container before they are uploaded.

mod archive;
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

pub use channel::FileChannel;
pub use local::LocalStore;
use xene_core::spec::{Need, Publish, PublishWhen};

use crate::runtime::TaskContext;

/// An attempt's artifacts: what it needs and publishes, and how.
pub(crate) struct Staging {
    channel: Arc<dyn FileChannel>,
    needs: Vec<Need>,
    publish: Vec<Publish>,
    spool: Spool,
}

impl Staging {
    /// `spool`: a directory of the attempt's own, made on first use and
    /// removed with this.
    pub(crate) fn new(
        channel: Arc<dyn FileChannel>,
        needs: Vec<Need>,
        publish: Vec<Publish>,
        spool: PathBuf,
    ) -> Self {
        Self {
            channel,
            needs,
            publish,
            spool: Spool::new(spool),
        }
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
        self.spool.make()?;
        for need in &self.needs {
            let line = fetch::fetch(&*self.channel, ctx.workspace(), need, &self.spool).await?;
            log.push(line);
            self.spool.empty();
        }
        Ok(())
    }

    /// Publishes what the main steps' end calls for: every artifact after
    /// a success, those with `when: always` after a failure.
    pub(crate) async fn publish(
        &self,
        ctx: &mut dyn TaskContext,
        succeeded: bool,
        log: &mut Vec<String>,
    ) -> Result<(), String> {
        let due: Vec<&Publish> = self
            .publish
            .iter()
            .filter(|p| succeeded || p.when == PublishWhen::Always)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        self.spool.make()?;
        for publish in due {
            let line =
                publish::publish(&*self.channel, ctx.workspace(), publish, &self.spool).await?;
            log.push(line);
            self.spool.empty();
        }
        Ok(())
    }

    pub(crate) fn has_needs(&self) -> bool {
        !self.needs.is_empty()
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&*self.spool.dir);
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
    fn make(&self) -> Result<(), String> {
        make_private_dir(&self.dir)
            .map_err(|e| format!("creating the spool {}: {e}", self.dir.display()))
    }

    /// Removes what one artifact left, so the spool never holds more than
    /// one artifact's bytes.
    fn empty(&self) {
        let _ = std::fs::remove_dir_all(&*self.dir);
        let _ = make_private_dir(&self.dir);
    }
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
