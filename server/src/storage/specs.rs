//! Parsed pipelines by workflow version, so that dispatching a task never
//! parses a stored spec: a run of a thousand tasks would otherwise parse
//! its version a thousand times. Versions never change once stored, so a
//! cached one is never stale; the cache is bounded and drops the least
//! recently used version when full.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use xene_core::spec::Pipeline;

use super::{Db, StorageError, workflows};

/// Versions kept at once. A version is a few kilobytes parsed; the active
/// runs of a busy server use far fewer.
pub const CAPACITY: usize = 256;

type Pipelines = Arc<BTreeMap<String, Cached>>;

/// A parsed pipeline and what checking its templates found, once.
#[derive(Clone)]
pub struct Cached {
    pub pipeline: Arc<Pipeline>,
    /// Why the pipeline does not run: a template refused now in a version
    /// stored before the check (see `runs::RunError::unsafe_script`).
    pub fault: Option<Arc<str>>,
}

/// The cache: one per server process, shared by every controller and
/// session.
#[derive(Default)]
pub struct Specs {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (workflow, version) -> its pipelines and when they were last used.
    versions: HashMap<(String, i64), (Pipelines, u64)>,
    /// A counter standing for time, for "least recently used".
    clock: u64,
}

impl Specs {
    /// The pipeline `pipeline` of `workflow` at `version`, or `None` when
    /// the version or the pipeline is not stored.
    pub async fn pipeline(
        &self,
        db: &Db,
        workflow: &str,
        version: i64,
        pipeline: &str,
    ) -> Result<Option<Arc<Pipeline>>, StorageError> {
        Ok(self
            .checked(db, workflow, version, pipeline)
            .await?
            .map(|c| c.pipeline))
    }

    /// As `pipeline`, with the verdict of its template check.
    pub async fn checked(
        &self,
        db: &Db,
        workflow: &str,
        version: i64,
        pipeline: &str,
    ) -> Result<Option<Cached>, StorageError> {
        let pipelines = match self.cached(workflow, version) {
            Some(pipelines) => pipelines,
            None => {
                // Two misses at once both read and parse it: harmless, and
                // no lock is held across the query.
                let Some(spec) = workflows::spec_of_version(db, workflow, version).await? else {
                    // Not cached: retention may delete a version, and a
                    // missing one is rare enough to read again.
                    return Ok(None);
                };
                let pipelines = parsed(spec.pipelines);
                self.insert(workflow, version, pipelines.clone());
                pipelines
            }
        };
        Ok(pipelines.get(pipeline).cloned())
    }

    fn cached(&self, workflow: &str, version: i64) -> Option<Pipelines> {
        let mut inner = self.inner.lock().unwrap();
        inner.clock += 1;
        let now = inner.clock;
        let entry = inner.versions.get_mut(&(workflow.to_string(), version))?;
        entry.1 = now;
        Some(entry.0.clone())
    }

    fn insert(&self, workflow: &str, version: i64, pipelines: Pipelines) {
        let mut inner = self.inner.lock().unwrap();
        inner.clock += 1;
        let now = inner.clock;
        let key = (workflow.to_string(), version);
        if !inner.versions.contains_key(&key)
            && inner.versions.len() >= CAPACITY
            && let Some(oldest) = inner
                .versions
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(key, _)| key.clone())
        {
            // A scan of at most CAPACITY entries, only on a miss.
            inner.versions.remove(&oldest);
        }
        inner.versions.insert(key, (pipelines, now));
    }

    /// How many versions are cached (for tests).
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn parsed(pipelines: BTreeMap<String, Pipeline>) -> Pipelines {
    Arc::new(
        pipelines
            .into_iter()
            .map(|(name, pipeline)| {
                let fault = xene_core::template::pipeline_fault(&pipeline).map(Arc::from);
                let pipeline = Arc::new(pipeline);
                (name, Cached { pipeline, fault })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipelines(name: &str) -> Pipelines {
        let yaml = format!(
            "name: w\npipelines:\n  {name}:\n    tasks:\n      t:\n        steps: [\"true\"]\n"
        );
        parsed(xene_core::parse_workflow(&yaml).unwrap().pipelines)
    }

    #[test]
    fn keeps_at_most_capacity_and_drops_the_least_recently_used() {
        let specs = Specs::default();
        for version in 0..CAPACITY as i64 {
            specs.insert("w", version, pipelines("p"));
        }
        assert_eq!(specs.len(), CAPACITY);
        // Version 0 is used again, so version 1 is now the oldest.
        assert!(specs.cached("w", 0).is_some());
        specs.insert("w", CAPACITY as i64, pipelines("p"));
        assert_eq!(specs.len(), CAPACITY);
        assert!(specs.cached("w", 0).is_some());
        assert!(specs.cached("w", 1).is_none());
        assert!(specs.cached("w", CAPACITY as i64).is_some());
        assert!(specs.cached("other", 0).is_none());
    }
}
