//! Caches: directories a task keeps across runs of its workflow, under a
//! key. What the spec says, the agent computes and the server stores share
//! these names and bounds. No I/O here.

use serde::{Deserialize, Serialize};

/// What a cache's restore found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheHit {
    /// The entry of the full key.
    Hit,
    /// An entry found by one of the restore keys.
    Partial,
    /// Nothing.
    Miss,
}

impl CacheHit {
    /// The word steps (`XENE_CACHE_<NAME>`) and `if` conditions see.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheHit::Hit => "hit",
            CacheHit::Partial => "partial",
            CacheHit::Miss => "miss",
        }
    }

    /// Every value.
    pub const ALL: [CacheHit; 3] = [CacheHit::Hit, CacheHit::Partial, CacheHit::Miss];
}

/// A word that is not one of `hit`, `partial`, `miss`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cache result {0:?}: expected hit, partial or miss")]
pub struct UnknownCacheHit(pub String);

impl std::str::FromStr for CacheHit {
    type Err = UnknownCacheHit;

    /// The inverse of [`CacheHit::as_str`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| UnknownCacheHit(s.chars().take(64).collect()))
    }
}

/// Most caches of one task.
pub const MAX_CACHES: usize = 8;
/// Most restore keys of one cache.
pub const MAX_RESTORE_KEYS: usize = 8;
/// The longest key (and restore key), in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// The longest cache name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;
/// Most files in one entry.
pub const MAX_CACHE_FILES: usize = 100_000;
/// Most bytes in one entry.
pub const MAX_CACHE_BYTES: u64 = crate::artifact::MAX_ARTIFACT_BYTES;
/// A chunk (a tar file of the entry) is closed once it holds this much.
pub const CHUNK_BYTES: u64 = 64 * 1024 * 1024;
/// Most chunks in one entry.
pub const MAX_CHUNKS: usize = 1024;
/// Hex digits of the `hash_files` hash appended to a key.
pub const HASH_HEX: usize = 32;

/// The environment variable that tells steps what the restore found:
/// `XENE_CACHE_` and the name upper-cased, `-` as `_`.
pub fn env_name(cache: &str) -> String {
    format!("XENE_CACHE_{}", crate::var_name::suffix(cache))
}

/// Checks a cache's name: 1 to 64 ASCII letters, digits, `_` and `-`.
pub fn check_name(name: &str) -> Result<(), String> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > MAX_NAME_BYTES || !plain {
        return Err(format!(
            "invalid cache name {name:?}: use 1 to {MAX_NAME_BYTES} letters, digits, \"_\" and \"-\""
        ));
    }
    Ok(())
}

/// Checks a key or a restore key (rendered, or as written): not empty, at
/// most `MAX_KEY_BYTES`, no control character.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("a cache key is empty".into());
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "a cache key is {} bytes, more than {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(format!("cache key {key:?} holds a control character"));
    }
    Ok(())
}

/// The key an entry is saved under: the rendered key, then, when the cache
/// hashes files, `-` and the first `HASH_HEX` digits of their hash.
pub fn full_key(rendered: &str, files_hash_hex: Option<&str>) -> String {
    match files_hash_hex {
        Some(hex) => format!("{rendered}-{}", hex.get(..HASH_HEX).unwrap_or(hex)),
        None => rendered.to_string(),
    }
}

/// The path of chunk `i` of an entry: `00000.tar`, `00001.tar`, ...
pub fn chunk_name(i: usize) -> String {
    format!("{i:05}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_upper_case_with_underscores() {
        assert_eq!(env_name("cargo-home_2"), "XENE_CACHE_CARGO_HOME_2");
        assert_eq!(env_name("a-b"), env_name("A_b"));
    }

    #[test]
    fn names_are_plain_and_bounded() {
        assert!(check_name("cargo-home_2").is_ok());
        assert!(check_name(&"a".repeat(64)).is_ok());
        for bad in ["", "a.b", "a b", "é", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_non_empty_bounded_and_printable() {
        assert!(check_key("cargo-stable").is_ok());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(MAX_KEY_BYTES + 1)).is_err());
        assert!(check_key("a\nb").is_err());
        assert!(check_key("a\u{1b}[31m").is_err());
    }

    #[test]
    fn a_full_key_takes_the_first_hex_digits_of_the_hash() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(full_key("cargo", None), "cargo");
        assert_eq!(
            full_key("cargo", Some(&hex)),
            "cargo-0123456789abcdef0123456789abcdef"
        );
        assert_eq!(full_key("cargo", Some("ab")), "cargo-ab");
    }

    #[test]
    fn chunks_are_numbered_in_order() {
        assert_eq!(chunk_name(0), "00000.tar");
        assert_eq!(chunk_name(1023), "01023.tar");
        assert!(chunk_name(9) < chunk_name(10));
    }

    #[test]
    fn hits_travel_as_their_words() {
        for hit in CacheHit::ALL {
            let json = serde_json::to_string(&hit).unwrap();
            assert_eq!(json, format!("\"{}\"", hit.as_str()));
            assert_eq!(serde_json::from_str::<CacheHit>(&json).unwrap(), hit);
            assert_eq!(hit.as_str().parse::<CacheHit>(), Ok(hit));
        }
        for bad in ["", "Hit", "hitt", "partial "] {
            assert_eq!(
                bad.parse::<CacheHit>(),
                Err(UnknownCacheHit(bad.to_string()))
            );
        }
    }
}
