//! Artifacts: the files a run's tasks published (`GET
//! /api/v1/runs/{id}/artifacts`), a workflow's artifact usage, and pinning
//! a run so retention keeps them. An artifact's files are downloaded from
//! `paths::artifact` (one file as it is, several as a tar stream, see
//! [`crate::tar`]).

use serde::{Deserialize, Serialize};

/// The artifacts a run's tasks published, by task then name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunArtifacts {
    pub artifacts: Vec<ArtifactInfo>,
}

/// One published artifact: its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactInfo {
    /// The task that published it.
    pub task: String,
    /// Its name, unique in the run's pipeline.
    pub name: String,
    /// How many files it holds.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// When it was published (UTC ms).
    pub created_at: i64,
    /// `success` (published because its task succeeded) or `always` (also
    /// from a failed attempt, as the task's `when` asked).
    pub when: String,
    /// Its files, by path.
    pub entries: Vec<ArtifactFile>,
}

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactFile {
    /// Its path in the artifact: relative, `/`-separated.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its permission bits (`0o755` for an executable).
    pub mode: u32,
    /// `sha256:` and the 64 hex digits of its content's SHA-256.
    pub digest: String,
}

/// How much artifact storage a workflow's runs hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactUsage {
    /// The workflow.
    pub workflow: String,
    /// The total size in bytes of its runs' published artifacts (a file
    /// two artifacts share is counted in each).
    pub bytes: u64,
    /// The most bytes of artifacts the workflow may keep
    /// (`--artifact-quota`); none when there is no quota.
    #[serde(default)]
    pub quota: Option<u64>,
}

/// A run's pin, as set: a pinned run's artifacts outlive retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pinned {
    /// The run.
    pub id: i64,
    /// Whether it is pinned now.
    pub pinned: bool,
}

impl ArtifactInfo {
    /// The one file a download of the whole artifact gives as it is (not
    /// as a tar): when it holds exactly one.
    pub fn single_file(&self) -> Option<&ArtifactFile> {
        match self.entries.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// A size as people read it: `512 B`, `12.3 MiB`.
pub fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A digest cut for a table or a page: `sha256:` and its first 12 hex digits.
pub fn short_digest(digest: &str) -> &str {
    let end = "sha256:".len() + 12;
    digest.get(..end).unwrap_or(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_digests_read_short() {
        assert_eq!(size_text(0), "0 B");
        assert_eq!(size_text(1023), "1023 B");
        assert_eq!(size_text(1536), "1.5 KiB");
        assert_eq!(size_text(12_900_000), "12.3 MiB");
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short_digest(&digest), "sha256:abababababab");
        assert_eq!(short_digest("odd"), "odd");
    }
}
