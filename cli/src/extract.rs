//! Writes an artifact's files under a destination directory, from its one
//! file or its tar stream, fed chunk by chunk as they arrive: nothing of it
//! is held whole in memory. Every path is confined to the destination
//! (relative, no `..`, no link on the way, neither in the stream nor
//! already in the directory) and must be one the artifact's listing names,
//! with the size and digest it gives; anything else stops the extraction.
//! Each file is written to a temporary sibling and renamed to its name only
//! once its size and digest check out: a failed or cut-short download never
//! leaves a partial file, nor destroys the file that was there.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use xene_api::artifacts::ArtifactFile;
use xene_api::tar::{BLOCK, Decoder, MAX_EXTENSION, Step, padding};

/// Why an extraction stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    #[error("{0}")]
    Refused(String),
    #[error("{path:?}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

fn refused(message: impl Into<String>) -> ExtractError {
    ExtractError::Refused(message.into())
}

/// Where a stored path goes under `dest`: refused unless it is relative
/// and plain (no `..`, `.`, root or empty component).
pub fn confined(dest: &Path, path: &str) -> Result<PathBuf, ExtractError> {
    if path.is_empty() || path.len() > 4096 || path.contains('\0') || path.contains('\\') {
        return Err(refused(format!("{path:?} is not a path this writes")));
    }
    let mut out = dest.to_path_buf();
    // Split by hand: `Path::components` would quietly drop a `.` or an
    // empty component that the listing's path does not have.
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(refused(format!(
                "{path:?} leads out of the destination (absolute, `..`, `.` or empty): refused"
            )));
        }
        out.push(part);
    }
    Ok(out)
}

/// Creates the directories between `dest` and `target`, refusing any that
/// exists as a link (which could lead out) or as something not a directory.
fn make_parents(dest: &Path, target: &Path) -> Result<(), ExtractError> {
    let rel = target.strip_prefix(dest).expect("confined under dest");
    let mut at = dest.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refused(format!(
                    "{at:?} is a link in the destination: refused"
                )));
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(refused(format!("{at:?} exists and is not a directory")));
            }
            Err(_) => std::fs::create_dir(&at).map_err(|e| io(&at, e))?,
        }
    }
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> ExtractError {
    ExtractError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Refuses `target` if something other than a plain file is there (a link
/// or a directory): an existing file is replaced, once the new one is whole.
fn replaceable(target: &Path) -> Result<(), ExtractError> {
    match std::fs::symlink_metadata(target) {
        Ok(meta) if !meta.is_file() => Err(refused(format!(
            "{target:?} exists and is not a plain file: refused"
        ))),
        _ => Ok(()),
    }
}

/// How many temporary names are tried before giving up.
const TEMP_TRIES: u32 = 100;

/// Creates a new temporary file beside `target`, for its bytes.
fn create_temp(target: &Path) -> Result<(PathBuf, File), ExtractError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = target.parent().expect("confined under dest");
    for _ in 0..TEMP_TRIES {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(".xenectl-{}-{n}.part", std::process::id()));
        // `create_new` never follows nor reuses anything already there.
        match File::options().write(true).create_new(true).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&temp, e)),
        }
    }
    Err(refused(format!(
        "no free temporary name beside {target:?} after {TEMP_TRIES} tries"
    )))
}

/// One file being written to `temp`: checked against its listing as it
/// goes, renamed to `target` when whole; dropped unfinished, `temp` is
/// removed.
struct Writing {
    path: String,
    target: PathBuf,
    temp: PathBuf,
    file: File,
    hasher: Sha256,
    left: u64,
    expected: ArtifactFile,
}

impl Writing {
    fn start(dest: &Path, path: &str, expected: &ArtifactFile) -> Result<Self, ExtractError> {
        let target = confined(dest, path)?;
        make_parents(dest, &target)?;
        replaceable(&target)?;
        let (temp, file) = create_temp(&target)?;
        Ok(Self {
            path: path.to_string(),
            target,
            temp,
            file,
            hasher: Sha256::new(),
            left: expected.size,
            expected: expected.clone(),
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), ExtractError> {
        if data.len() as u64 > self.left {
            return Err(refused(format!(
                "{:?} is longer than its {} bytes",
                self.path, self.expected.size
            )));
        }
        self.hasher.update(data);
        self.file.write_all(data).map_err(|e| io(&self.temp, e))?;
        self.left -= data.len() as u64;
        Ok(())
    }

    /// Checks the size and digest, applies the mode and puts the file in
    /// place; on any failure the temporary file goes (by `drop`).
    fn finish(mut self) -> Result<(), ExtractError> {
        if self.left != 0 {
            return Err(refused(format!(
                "{:?} ended {} bytes short",
                self.path, self.left
            )));
        }
        let digest = format!("sha256:{:x}", std::mem::take(&mut self.hasher).finalize());
        if digest != self.expected.digest {
            return Err(refused(format!(
                "{:?} does not match its digest ({digest}, not {:?}): not written",
                self.path, self.expected.digest
            )));
        }
        use std::os::unix::fs::PermissionsExt;
        self.file
            .set_permissions(std::fs::Permissions::from_mode(self.expected.mode & 0o777))
            .map_err(|e| io(&self.temp, e))?;
        // Checked again: a link or directory may have been put there since.
        replaceable(&self.target)?;
        std::fs::rename(&self.temp, &self.target).map_err(|e| io(&self.target, e))?;
        self.temp = PathBuf::new();
        Ok(())
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

/// Writes one file's bytes (a download of a single file) under `dest`.
pub struct SingleFile(Writing);

impl SingleFile {
    pub fn new(dest: &Path, file: &ArtifactFile) -> Result<Self, ExtractError> {
        Writing::start(dest, &file.path, file).map(Self)
    }

    pub fn feed(&mut self, data: &[u8]) -> Result<(), ExtractError> {
        self.0.write(data)
    }

    pub fn finish(self) -> Result<(), ExtractError> {
        self.0.finish()
    }
}

enum State {
    /// Waiting for a header block.
    Header,
    /// An extended header's data and padding.
    Extension {
        len: usize,
        padded: usize,
    },
    /// A file's data.
    Data(Box<Writing>),
    /// Padding after a file's data.
    Skip(usize),
    Done,
}

/// Extracts a tar stream of an artifact's files under `dest`.
pub struct Untar {
    dest: PathBuf,
    decoder: Decoder,
    state: State,
    /// Bytes not yet consumed (less than a block, or an extended header).
    buf: Vec<u8>,
    /// What the listing names and the stream has not given yet.
    expected: BTreeMap<String, ArtifactFile>,
    /// The listing names every file (it shows only the first ones of a
    /// large artifact: the rest are checked against the stream's digests).
    complete: bool,
    /// Files the artifact holds.
    total: u64,
    /// Every path the stream gave, lowercased: none may come twice, nor
    /// twice in different cases (the destination may ignore case).
    seen: BTreeSet<String>,
    pub written: u64,
}

impl Untar {
    /// `files`: what the listing shows of the artifact's `total` files.
    pub fn new(dest: &Path, files: &[ArtifactFile], total: u64) -> Self {
        Self {
            dest: dest.to_path_buf(),
            decoder: Decoder::default(),
            state: State::Header,
            buf: Vec::new(),
            expected: files.iter().map(|f| (f.path.clone(), f.clone())).collect(),
            complete: files.len() as u64 >= total,
            total,
            seen: BTreeSet::new(),
            written: 0,
        }
    }

    /// Takes the next bytes of the stream.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ExtractError> {
        while !data.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Data(writing) => {
                    let n = (writing.left as usize).min(data.len());
                    writing.write(&data[..n])?;
                    data = &data[n..];
                    if writing.left == 0 {
                        let State::Data(writing) =
                            std::mem::replace(&mut self.state, State::Header)
                        else {
                            unreachable!()
                        };
                        let size = writing.expected.size;
                        writing.finish()?;
                        self.written += 1;
                        self.state = State::Skip(padding(size));
                    }
                }
                State::Skip(left) => {
                    let n = (*left).min(data.len());
                    *left -= n;
                    data = &data[n..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
                State::Header => {
                    let n = (BLOCK - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.buf.len() == BLOCK {
                        let block: [u8; BLOCK] = self.buf[..].try_into().expect("a block");
                        self.buf.clear();
                        self.state = self.next(&block)?;
                    }
                }
                State::Extension { len, padded } => {
                    let n = (*padded - self.buf.len()).min(data.len());
                    self.buf.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if self.buf.len() == *padded {
                        let len = *len;
                        self.decoder
                            .extension(&self.buf[..len])
                            .map_err(ExtractError::Refused)?;
                        self.buf.clear();
                        self.state = State::Header;
                    }
                }
            }
        }
        Ok(())
    }

    fn next(&mut self, block: &[u8; BLOCK]) -> Result<State, ExtractError> {
        match self.decoder.header(block).map_err(ExtractError::Refused)? {
            Step::End => Ok(State::Done),
            Step::Extension { len } => {
                debug_assert!(len <= MAX_EXTENSION);
                let len = len as usize;
                Ok(State::Extension {
                    len,
                    padded: len + padding(len as u64),
                })
            }
            Step::Dir { path, .. } => {
                // Directories come with their files; only the path is checked.
                confined(&self.dest, path.trim_end_matches('/'))?;
                Ok(State::Header)
            }
            Step::Other { kind, path, .. } => Err(refused(format!(
                "{path:?} is not a plain file (tar type {:?}): links and devices are refused",
                kind as char
            ))),
            Step::File {
                path,
                size,
                mode,
                digest,
            } => {
                confined(&self.dest, &path)?;
                if !self.seen.insert(path.to_lowercase()) {
                    return Err(refused(format!(
                        "{path:?} comes twice in the tar stream (perhaps in another case): refused"
                    )));
                }
                let expected = match self.expected.remove(&path) {
                    Some(listed) => {
                        if listed.size != size || digest.is_some_and(|d| d != listed.digest) {
                            return Err(refused(format!(
                                "{path:?}: the stream's size or digest is not the listing's"
                            )));
                        }
                        listed
                    }
                    None if self.complete => {
                        return Err(refused(format!(
                            "{path:?} is not a file of the artifact: refused"
                        )));
                    }
                    None => {
                        if self.written >= self.total {
                            return Err(refused(format!(
                                "the tar stream holds more than the artifact's {} files: refused",
                                self.total
                            )));
                        }
                        let Some(digest) = digest else {
                            return Err(refused(format!(
                                "{path:?} is not in the listing and the stream gives no digest: refused"
                            )));
                        };
                        ArtifactFile {
                            path: path.clone(),
                            size,
                            mode,
                            digest,
                        }
                    }
                };
                let writing = Writing::start(&self.dest, &path, &expected)?;
                if size == 0 {
                    writing.finish()?;
                    self.written += 1;
                    Ok(State::Header)
                } else {
                    Ok(State::Data(Box::new(writing)))
                }
            }
        }
    }

    /// The stream ended: it must have ended the archive with every file.
    pub fn finish(self) -> Result<u64, ExtractError> {
        if !matches!(self.state, State::Done) {
            return Err(refused("the tar stream ended before its end"));
        }
        if let Some(missing) = self.expected.keys().next() {
            return Err(refused(format!(
                "the tar stream lacks {missing:?} (and {} more)",
                self.expected.len() - 1
            )));
        }
        if self.written != self.total {
            return Err(refused(format!(
                "the tar stream gave {} of the artifact's {} files",
                self.written, self.total
            )));
        }
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xene_api::tar::{END, file_header};

    fn entry(path: &str, data: &[u8]) -> ArtifactFile {
        ArtifactFile {
            path: path.into(),
            size: data.len() as u64,
            mode: 0o755,
            digest: format!("sha256:{:x}", Sha256::digest(data)),
        }
    }

    fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, data) in files {
            let digest = entry(path, data).digest;
            out.extend(file_header(path, data.len() as u64, 0o644, Some(&digest)));
            out.extend_from_slice(data);
            out.resize(out.len() + padding(data.len() as u64), 0);
        }
        out.extend_from_slice(&END);
        out
    }

    /// A ustar header of another kind (a link), made by hand.
    fn raw_header(name: &str, kind: u8, link: &str) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000777");
        h[124..135].copy_from_slice(b"00000000000");
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        h
    }

    fn untar(
        dest: &Path,
        listing: &[ArtifactFile],
        bytes: &[u8],
        chunk: usize,
    ) -> Result<u64, ExtractError> {
        let mut untar = Untar::new(dest, listing, listing.len() as u64);
        for part in bytes.chunks(chunk) {
            untar.feed(part)?;
        }
        untar.finish()
    }

    #[test]
    fn files_land_under_the_destination_with_their_modes_in_any_chunking() {
        let big = vec![9u8; 3000];
        let files: [(&str, &[u8]); 3] = [
            ("bin/app", b"binary"),
            ("docs/a/b.txt", &big),
            ("empty", b""),
        ];
        let listing: Vec<_> = files.iter().map(|(p, d)| entry(p, d)).collect();
        for chunk in [1, 7, 512, 100_000] {
            let dir = tempfile::tempdir().unwrap();
            assert_eq!(untar(dir.path(), &listing, &tar(&files), chunk).unwrap(), 3);
            assert_eq!(std::fs::read(dir.path().join("docs/a/b.txt")).unwrap(), big);
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("bin/app"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755);
        }
    }

    #[test]
    fn paths_leading_out_links_and_strangers_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        for path in ["../escape", "/etc/passwd", "a/../../x", "./a", "a//b"] {
            let bytes = tar(&[(path, b"x")]);
            let err = untar(&dest, &[entry(path, b"x")], &bytes, 512).unwrap_err();
            assert!(err.to_string().contains("refused"), "{path}: {err}");
        }
        // A symbolic link, and a hard link, in the stream.
        for kind in [b'2', b'1'] {
            let mut bytes = raw_header("link", kind, "/etc");
            bytes.extend_from_slice(&END);
            let err = untar(&dest, &[], &bytes, 512).unwrap_err();
            assert!(
                err.to_string().contains("links and devices are refused"),
                "{err}"
            );
        }
        // A link already in the destination is not followed.
        std::os::unix::fs::symlink(outside.path(), dest.join("out")).unwrap();
        let err = untar(
            &dest,
            &[entry("out/f", b"x")],
            &tar(&[("out/f", b"x")]),
            512,
        )
        .unwrap_err();
        assert!(err.to_string().contains("is a link"), "{err}");
        std::os::unix::fs::symlink(outside.path().join("f"), dest.join("g")).unwrap();
        let err = untar(&dest, &[entry("g", b"x")], &tar(&[("g", b"x")]), 512).unwrap_err();
        assert!(err.to_string().contains("not a plain file"), "{err}");
        assert!(!outside.path().join("f").exists());
        // A file the listing does not name, or with another digest.
        let err = untar(&dest, &[], &tar(&[("x", b"x")]), 512).unwrap_err();
        assert!(
            err.to_string().contains("not a file of the artifact"),
            "{err}"
        );
        let mut wrong = entry("y", b"y");
        wrong.digest = entry("y", b"z").digest;
        let err = untar(&dest, &[wrong.clone()], &tar(&[("y", b"y")]), 512).unwrap_err();
        assert!(err.to_string().contains("not the listing's"), "{err}");
        // Without a digest in the stream, the data is checked as written.
        let mut plain = file_header("y", 1, 0o644, None);
        plain.extend_from_slice(b"y");
        plain.resize(2 * BLOCK, 0);
        plain.extend_from_slice(&END);
        let err = untar(&dest, &[wrong], &plain, 512).unwrap_err();
        assert!(
            err.to_string().contains("does not match its digest"),
            "{err}"
        );
        assert!(!dest.join("y").exists());
        // A listing that shows only the first files: the rest are checked
        // against the stream's digests.
        let files: [(&str, &[u8]); 2] = [("p", b"p"), ("q", b"q")];
        let mut partial = Untar::new(&dest, &[entry("p", b"p")], 2);
        partial.feed(&tar(&files)).unwrap();
        assert_eq!(partial.finish().unwrap(), 2);
        let mut partial = Untar::new(&dest, &[], 1);
        let err = partial.feed(&tar(&files)).unwrap_err();
        assert!(
            err.to_string().contains("more than the artifact's 1 files"),
            "{err}"
        );
        // A stream cut short: no partial file, no temporary one left.
        let bytes = tar(&[("z", b"z")]);
        let err = untar(&dest, &[entry("z", b"z")], &bytes[..BLOCK + 1], 512).unwrap_err();
        assert!(err.to_string().contains("ended before its end"), "{err}");
        assert!(!dest.join("z").exists());
        // A path twice, or twice in another case, even past the listing.
        for twin in ["p", "P"] {
            let mut twice = Untar::new(&dest, &[entry("p", b"p")], 2);
            let err = twice.feed(&tar(&[("p", b"p"), (twin, b"q")])).unwrap_err();
            assert!(err.to_string().contains("comes twice"), "{err}");
            assert_eq!(std::fs::read(dest.join("p")).unwrap(), b"p");
        }
        // A server's path is shown escaped, never raw.
        let odd = "e\x1b[2J";
        let mut listed = entry(odd, b"e");
        listed.size = 2;
        let err = untar(&dest, &[listed], &tar(&[(odd, b"e")]), 512).unwrap_err();
        assert!(err.to_string().contains("\"e\\u{1b}[2J\""), "{err}");
        let names: Vec<_> = std::fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".part")), "{names:?}");
    }
}
