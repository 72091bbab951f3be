//! Flags for artifacts and caches: where their blobs are stored, how long
//! the URLs agents get stay valid, how long artifacts are kept, and what
//! each workflow may keep.

use std::time::Duration;

use clap::{Args, ValueEnum};

/// Where blobs are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    // Files under the data directory, served by this server.
    Local,
    // An S3-compatible store, which agents reach by presigned URLs.
    S3,
}

/// The most a transfer URL may stay valid: a leaked URL must die soon.
pub const MAX_URL_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Args)]
pub struct ArtifactArgs {
    /// Where artifacts' files are stored: `local` (under the data
    /// directory, in `artifacts/`) or `s3` (an S3-compatible store, set by
    /// the --s3-* flags).
    #[arg(long, env = "XENE_ARTIFACT_STORE", value_enum, default_value = "local")]
    pub artifact_store: StoreKind,

    /// The S3 endpoint (like https://s3.eu-west-1.amazonaws.com or
    /// http://minio:9000). Default: AWS S3 of --s3-region.
    #[arg(long, env = "XENE_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// The bucket artifacts go to (needed with `--artifact-store s3`).
    #[arg(long, env = "XENE_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// The bucket's region.
    #[arg(long, env = "XENE_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,

    /// The access key id of the S3 credential.
    #[arg(long, env = "XENE_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// The secret access key of the S3 credential. Prefer the environment
    /// variable: a flag's value shows in the process list.
    #[arg(long, env = "XENE_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// How long an upload or download URL handed to an agent stays valid
    /// (like 10m; at most 1h).
    #[arg(long, env = "XENE_ARTIFACT_URL_TTL", default_value = "10m", value_parser = parse_ttl)]
    pub artifact_url_ttl: Duration,

    /// Artifacts of runs older than this are deleted, unless the run is
    /// pinned; 0 keeps them forever.
    #[arg(long, env = "XENE_ARTIFACT_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub artifact_retention: Duration,

    /// The most bytes of caches each workflow keeps (like 512MiB, 10GiB;
    /// KB, MB, GB, TB mean KiB, MiB, GiB, TiB; whole numbers): past it the
    /// least recently used entries are evicted, and an entry larger is not
    /// saved; 0 saves no caches.
    #[arg(long, env = "XENE_CACHE_QUOTA", default_value = "10GiB", value_parser = parse_size)]
    pub cache_quota: u64,

    /// The most bytes of artifacts each workflow keeps (like 512MiB,
    /// 10GiB; KB, MB, GB, TB mean KiB, MiB, GiB, TiB; whole numbers),
    /// published and being published: a publish past it fails its task; 0
    /// refuses every artifact that holds a byte. Default: no quota.
    #[arg(long, env = "XENE_ARTIFACT_QUOTA", value_parser = parse_size)]
    pub artifact_quota: Option<u64>,
}

impl ArtifactArgs {
    /// What each workflow may keep.
    pub fn quotas(&self) -> crate::storage::caches::Quotas {
        crate::storage::caches::Quotas {
            cache_bytes: self.cache_quota,
            artifact_bytes: self.artifact_quota,
        }
    }
}

impl Default for ArtifactArgs {
    fn default() -> Self {
        Self {
            artifact_store: StoreKind::Local,
            s3_endpoint: None,
            s3_bucket: None,
            s3_region: "us-east-1".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            artifact_url_ttl: Duration::from_secs(600),
            artifact_retention: Duration::from_secs(30 * 24 * 3600),
            cache_quota: crate::storage::caches::quota::DEFAULT_CACHE_QUOTA,
            artifact_quota: None,
        }
    }
}

fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = xene_core::duration::parse(text).map_err(|e| e.to_string())?;
    if ttl < Duration::from_secs(10) || ttl > MAX_URL_TTL {
        return Err("from 10s to 1h".into());
    }
    Ok(ttl)
}

/// A size as people write it: `512MiB`, `10GiB`, `1TiB`, or bytes; `KB`,
/// `MB`, ... are binary units too (what people mean by a quota's `10GB`).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "size {text:?} has a fraction: write a whole number of a smaller unit, like 1536MiB for 1.5GiB"
        ));
    }
    let number: u64 = number
        .parse()
        .map_err(|_| format!("bad size {text:?}: expected like 512MiB, 10GiB or bytes"))?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        "TiB" | "T" | "TB" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?}: use KiB, MiB, GiB or TiB"
            ));
        }
    };
    number
        .checked_mul(scale)
        .filter(|n| i64::try_from(*n).is_ok())
        .ok_or_else(|| format!("size {text:?} is too large"))
}

fn parse_retention(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    xene_core::duration::parse(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ttls_are_minutes_at_most_an_hour() {
        assert_eq!(parse_ttl("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_ttl("2h").is_err());
        assert!(parse_ttl("1s").is_err());
        assert_eq!(parse_retention("0").unwrap(), Duration::ZERO);
    }

    #[test]
    fn quotas_are_sizes_as_people_write_them() {
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        for bad in ["", "ten", "5 parsecs", "-1", "99999999999TiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let fraction = parse_size("1.5GiB").unwrap_err();
        assert!(fraction.contains("has a fraction"), "{fraction}");
        assert!(fraction.contains("1536MiB"), "{fraction}");
        use clap::Parser as _;
        let args = crate::config::Args::try_parse_from(["xene", "--artifact-quota", "2GiB"]);
        let quotas = args.unwrap().artifacts.quotas();
        assert_eq!(quotas.artifact_bytes, Some(2 << 30));
        assert_eq!(quotas.cache_bytes, 10 << 30);
    }

    #[test]
    fn the_s3_secret_is_never_printed_and_refused_on_the_command_line() {
        let argv = ["xene", "--s3-secret-access-key", "hunter2-s3"];
        let printed = crate::settings::print_config(argv).unwrap();
        assert!(!printed.contains("hunter2-s3"), "{printed}");
        assert!(
            printed.contains("s3-secret-access-key = \"REDACTED\""),
            "{printed}"
        );
        let flagged = crate::config::secret_flags(argv);
        assert!(
            flagged[0].starts_with("--s3-secret-access-key"),
            "{flagged:?}"
        );
    }
}
