//! Caches: the files a workflow's tasks keep for its later runs (`GET
//! /api/v1/workflows/{name}/caches`), and removing one entry (`DELETE
//! /api/v1/workflows/{name}/caches/{id}`).

use serde::{Deserialize, Serialize};

/// A workflow's saved cache entries, the most recently used first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheList {
    /// At most 200 entries, the most recently used first.
    pub entries: Vec<CacheEntry>,
    /// How many entries the workflow keeps.
    pub total: u64,
    /// Their total size in bytes (a chunk two entries share is counted in each).
    pub bytes: u64,
    /// The workflow's cache quota in bytes (`--cache-quota`): past it, the
    /// least recently used entries are removed; `0` saves none.
    pub quota: u64,
}

/// One saved cache entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CacheEntry {
    /// Its id, for removing it.
    pub id: i64,
    /// The cache's name in its task (`caches: - name:`).
    pub name: String,
    /// Its full key: the rendered `key`, and the files' hash when the
    /// cache has `hash_files`.
    pub key: String,
    /// How many files it holds.
    pub files: u64,
    /// The size in bytes of its chunks.
    pub bytes: u64,
    /// When it was saved (UTC ms).
    pub created_at: i64,
    /// When a restore last used it, or when it was saved (UTC ms).
    pub used_at: i64,
}
