//! Artifacts: files a task publishes for the tasks downstream of it, as one
//! manifest of content-addressed blobs. This module is the part every side
//! agrees on (what a digest, a stored path and a manifest may be, and what
//! a `publish` path matches); the agent collects and places the files, the
//! server stores them.

use serde::{Deserialize, Serialize};

mod glob;

pub use glob::{Glob, has_wildcard};

/// The most files one artifact holds.
pub const MAX_FILES: usize = 10_000;
/// The most bytes of one stored path (and of a path in the spec).
pub const MAX_PATH_BYTES: usize = 1024;
/// The most bytes of one component of a stored path (common file systems'
/// limit on a file name).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// The most bytes of one artifact's files, summed: what an agent reads,
/// spools and uploads for it. 16 GiB holds any real build output while a
/// sparse or looping file cannot fill an agent's disk.
pub const MAX_ARTIFACT_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// The size of each part of a multipart upload.
pub const PART_SIZE: u64 = 64 * 1024 * 1024;
/// Files up to this size go up in one PUT; larger ones in parts.
pub const SINGLE_PUT_MAX: u64 = PART_SIZE;

/// The SHA-256 of a file's bytes, written `sha256:` and 64 lowercase hex
/// digits. Decoding checks the form, so a digest that came over the wire
/// is safe to put in an object key or a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

const DIGEST_PREFIX: &str = "sha256:";

impl Digest {
    /// Reads `sha256:<64 lowercase hex>`.
    pub fn parse(text: &str) -> Result<Digest, String> {
        let hex = text
            .strip_prefix(DIGEST_PREFIX)
            .ok_or_else(|| format!("a digest starts with \"{DIGEST_PREFIX}\": {}", shown(text)))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!(
                "a digest is \"{DIGEST_PREFIX}\" and 64 lowercase hex digits: {}",
                shown(text)
            ));
        }
        Ok(Digest(text.to_string()))
    }

    /// The digest of a SHA-256 hash's 32 bytes.
    pub fn from_sha256(bytes: &[u8; 32]) -> Digest {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = String::with_capacity(DIGEST_PREFIX.len() + 64);
        text.push_str(DIGEST_PREFIX);
        for byte in bytes {
            text.push(HEX[usize::from(byte >> 4)] as char);
            text.push(HEX[usize::from(byte & 0xf)] as char);
        }
        Digest(text)
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits alone.
    pub fn hex(&self) -> &str {
        &self.0[DIGEST_PREFIX.len()..]
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Digest::parse(&text)
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> String {
        digest.0
    }
}

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Where it goes, relative to the place the artifact is put
    /// (`check_stored_path`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its permission bits (`& 0o777`): an executable stays executable.
    pub mode: u32,
    /// The hash of its bytes, which names its blob.
    pub digest: Digest,
}

/// The longest artifact name, in bytes.
pub const MAX_NAME_BYTES: usize = 64;

/// Checks an artifact's name: 1 to 64 of ASCII letters, digits, `_`, `.`
/// and `-`, starting with a letter or digit (so it is a plain URL path
/// segment and file name, never `.` or `..`).
pub fn check_name(name: &str) -> Result<(), String> {
    let plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if name.is_empty() || !plain || !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!(
            "invalid artifact name {}: use letters, digits, \"_\", \".\" and \"-\", starting with a letter or digit",
            shown(name)
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "artifact name {} is longer than {MAX_NAME_BYTES} characters",
            shown(name)
        ));
    }
    Ok(())
}

/// Checks a path as an artifact stores it: relative, `/`-separated, every
/// component a real name (no empty, `.` or `..` one), no NUL or backslash,
/// no control character, and within the bounds.
pub fn check_stored_path(path: &str) -> Result<(), String> {
    check_path(path, "file path")
}

/// Checks a path a spec writes under `publish` or `needs` (after a
/// trailing `/` is dropped): as a stored path, wildcards aside.
pub fn check_spec_path(path: &str) -> Result<(), String> {
    check_path(path, "path")?;
    if has_wildcard(path) {
        Glob::parse(path)?;
    }
    Ok(())
}

fn check_path(path: &str, what: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err(format!("a {what} is empty"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "a {what} is {} bytes, more than {MAX_PATH_BYTES}: {}",
            path.len(),
            shown(path)
        ));
    }
    if path.starts_with('/') {
        return Err(format!(
            "{what} {} is absolute: paths are relative to the workspace",
            shown(path)
        ));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(format!("{what} {} holds a NUL or a backslash", shown(path)));
    }
    // A C0 or C1 control (an escape sequence, a newline) in a name would
    // reach terminals raw wherever a path is shown; refused in the spec
    // too, so a spec never passes its check only to fail at publish.
    if path.chars().any(char::is_control) {
        return Err(format!("{what} {} holds a control character", shown(path)));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(format!("{what} {} has an empty component", shown(path))),
            "." => return Err(format!("{what} {} has a \".\" component", shown(path))),
            ".." => {
                return Err(format!(
                    "{what} {} has a \"..\" component: paths stay inside the workspace",
                    shown(path)
                ));
            }
            _ if component.len() > MAX_COMPONENT_BYTES => {
                return Err(format!(
                    "{what} {} has a name longer than {MAX_COMPONENT_BYTES} bytes",
                    shown(path)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Checks a whole manifest: at most `MAX_FILES` entries, each path valid,
/// no path twice, and no path that is also a directory of another (a file
/// `a` beside a file `a/b` could not both be placed).
pub fn check_manifest(entries: &[ManifestEntry]) -> Result<(), String> {
    if entries.len() > MAX_FILES {
        return Err(format!(
            "{} files, more than the {MAX_FILES} an artifact may hold",
            entries.len()
        ));
    }
    for entry in entries {
        check_stored_path(&entry.path)?;
        if entry.mode & !0o777 != 0 {
            return Err(format!(
                "file {} has mode {:o}: only permission bits (0o777) are kept",
                shown(&entry.path),
                entry.mode
            ));
        }
    }
    // Sorted, a directory `a` comes right before the first of its files
    // `a/...` except for names that sort between (`a-b`, `a.c`), so each
    // path is looked up as a prefix in the set of all paths instead.
    let mut paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    paths.sort_unstable();
    if let Some(pair) = paths.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("file {} is listed twice", shown(pair[0])));
    }
    for path in &paths {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let dir = &path[..end + slash];
            if paths.binary_search(&dir).is_ok() {
                return Err(format!(
                    "{} is a file and also the directory of {}",
                    shown(dir),
                    shown(path)
                ));
            }
            end += slash + 1;
        }
    }
    Ok(())
}

/// A path as an error shows it: quoted, and cut short when long.
fn shown(text: &str) -> String {
    const MAX: usize = 120;
    if text.len() <= MAX {
        return format!("{text:?}");
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}...", &text[..end])
}

#[cfg(test)]
mod tests;
