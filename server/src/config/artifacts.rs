//! Flags for artifacts: where their blobs are stored, how long the URLs
//! agents get stay valid, and how long artifacts are kept.

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
