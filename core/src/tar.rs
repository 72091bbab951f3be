//! The tar stream an artifact of several files downloads as: POSIX ustar
//! blocks, with a PAX extended header before a file whose path is longer
//! than ustar's name field or whose size does not fit its size field. The
//! server writes it on the fly ([`file_header`], [`padding`], [`END`]);
//! `xenectl` reads it block by block ([`Decoder`]), which also reads what
//! common tools write (GNU long names) and names anything else it meets
//! (links, devices) so the reader can refuse it. No I/O here.

/// A tar block.
pub const BLOCK: usize = 512;

/// Two zero blocks end an archive.
pub const END: [u8; 2 * BLOCK] = [0; 2 * BLOCK];

/// The largest extended header (PAX or GNU long name) a reader takes:
/// a path is at most a few KiB, this bounds what a hostile stream makes
/// it hold.
pub const MAX_EXTENSION: u64 = 64 * 1024;

/// The largest size ustar's 11 octal digits hold.
const USTAR_MAX_SIZE: u64 = 0o777_7777_7777;

/// The PAX key that carries a file's digest (`sha256:` and 64 hex
/// digits), so a reader checks each file, even past the first entries a
/// listing shows. POSIX's `comment`, which other readers ignore without a
/// word (GNU tar warns of a vendor key on every file).
pub const DIGEST_KEY: &str = "comment";

/// The header blocks of a regular file: a PAX extended header first when
/// the path or size needs one or a digest is given, then the ustar header.
/// Its data follows, then [`padding`] zero bytes.
pub fn file_header(path: &str, size: u64, mode: u32, digest: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(3 * BLOCK);
    let mut records = String::new();
    if let Some(digest) = digest {
        records.push_str(&pax_record(DIGEST_KEY, digest));
    }
    if path.len() > 100 || path.contains('\0') {
        records.push_str(&pax_record("path", path));
    }
    if size > USTAR_MAX_SIZE {
        records.push_str(&pax_record("size", &size.to_string()));
    }
    if !records.is_empty() {
        let header = ustar_header("PaxHeader", records.len() as u64, 0o644, b'x');
        out.extend_from_slice(&header);
        out.extend_from_slice(records.as_bytes());
        out.resize(out.len() + padding(records.len() as u64), 0);
    }
    let short = if path.len() > 100 {
        // Readers without PAX see a name cut at a character boundary.
        let mut end = 100;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        &path[..end]
    } else {
        path
    };
    out.extend_from_slice(&ustar_header(
        short,
        size.min(USTAR_MAX_SIZE),
        mode & 0o777,
        b'0',
    ));
    out
}

/// The zero bytes that fill the last block of `size` bytes of data.
pub fn padding(size: u64) -> usize {
    ((BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64) as usize
}

/// One PAX record: `<length> <key>=<value>\n`, where the length counts
/// itself.
fn pax_record(key: &str, value: &str) -> String {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len.to_string().len() + rest > len {
        len += 1;
    }
    format!("{len} {key}={value}\n")
}

fn ustar_header(name: &str, size: u64, mode: u32, kind: u8) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let name = name.as_bytes();
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 0);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is taken with its own field as spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

/// `value` in octal, zero-padded, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

/// What a header block says comes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A regular file of `size` bytes (then its padding), with the digest
    /// its extended header gave.
    File {
        /// Its path in the archive.
        path: String,
        /// Its bytes.
        size: u64,
        /// Its permission bits.
        mode: u32,
        /// `sha256:` and hex, when its extended header gave one.
        digest: Option<String>,
    },
    /// A directory.
    Dir {
        /// Its path in the archive.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// An extended header of `len` bytes (then padding): read it and give
    /// it to [`Decoder::extension`].
    Extension {
        /// Its bytes.
        len: u64,
    },
    /// Something that is neither a file nor a directory (a link, a device,
    /// a FIFO): `kind` is its type flag, `path` its name; its `size` bytes
    /// follow.
    Other {
        /// The type flag.
        kind: u8,
        /// Its path in the archive.
        path: String,
        /// The bytes that follow.
        size: u64,
    },
    /// The end of the archive (a zero block).
    End,
}

/// Reads an archive's headers one block at a time, carrying what extended
/// headers say over to the entry they precede.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The kind of the extended header announced last.
    extension: Option<u8>,
    path: Option<String>,
    size: Option<u64>,
    digest: Option<String>,
}

impl Decoder {
    /// Reads one header block.
    pub fn header(&mut self, block: &[u8; BLOCK]) -> Result<Step, String> {
        if block.iter().all(|b| *b == 0) {
            return Ok(Step::End);
        }
        let stored: u32 = parse_octal(&block[148..156])
            .ok_or("a tar header has a malformed checksum")?
            .try_into()
            .map_err(|_| "a tar header has a malformed checksum")?;
        let sum: u32 = block
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    u32::from(b' ')
                } else {
                    u32::from(*b)
                }
            })
            .sum();
        if sum != stored {
            return Err("a tar header's checksum does not match: the stream is damaged".into());
        }
        let kind = block[156];
        let own_size = parse_octal(&block[124..136]).ok_or("a tar header has a malformed size")?;
        match kind {
            b'x' | b'L' | b'g' => {
                let size = own_size;
                if size > MAX_EXTENSION {
                    return Err(format!(
                        "a tar extended header of {size} bytes is over the {MAX_EXTENSION} bytes read"
                    ));
                }
                self.extension = Some(kind);
                return Ok(Step::Extension { len: size });
            }
            _ => {}
        }
        let size = self.size.take().unwrap_or(own_size);
        let digest = self.digest.take();
        let path = match self.path.take() {
            Some(path) => path,
            None => ustar_path(block)?,
        };
        let mode = parse_octal(&block[100..108]).unwrap_or(0o644) as u32 & 0o777;
        Ok(match kind {
            b'0' | 0 | b'7' => Step::File {
                path,
                size,
                mode,
                digest,
            },
            b'5' => Step::Dir { path, mode },
            other => Step::Other {
                kind: other,
                path,
                size,
            },
        })
    }

    /// Takes the data of the extended header announced last.
    pub fn extension(&mut self, data: &[u8]) -> Result<(), String> {
        match self.extension.take() {
            Some(b'x') => {
                for (key, value) in pax_records(data)? {
                    match key {
                        "path" => self.path = Some(value.to_string()),
                        DIGEST_KEY if value.starts_with("sha256:") => {
                            self.digest = Some(value.to_string())
                        }
                        "size" => {
                            self.size = Some(
                                value
                                    .parse()
                                    .map_err(|_| format!("a PAX size {value:?} is not a number"))?,
                            )
                        }
                        // Times, owners and the like mean nothing here.
                        _ => {}
                    }
                }
            }
            Some(b'L') => {
                let name = data.split(|b| *b == 0).next().unwrap_or_default();
                self.path = Some(
                    String::from_utf8(name.to_vec())
                        .map_err(|_| "a tar long name is not UTF-8".to_string())?,
                );
            }
            // A global header applies to no entry of ours.
            _ => {}
        }
        Ok(())
    }
}

fn pax_records(mut data: &[u8]) -> Result<Vec<(&str, &str)>, String> {
    let bad = || "a PAX extended header is malformed".to_string();
    let mut out = Vec::new();
    while !data.is_empty() && data[0] != 0 {
        let space = data.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = std::str::from_utf8(&data[space + 1..len - 1]).map_err(|_| bad())?;
        let (key, value) = record.split_once('=').ok_or_else(bad)?;
        out.push((key, value));
        data = &data[len..];
    }
    Ok(out)
}

/// A ustar header's path: its prefix and name joined.
fn ustar_path(block: &[u8; BLOCK]) -> Result<String, String> {
    let field = |range: std::ops::Range<usize>| {
        let bytes = &block[range];
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8(bytes[..end].to_vec())
            .map_err(|_| "a tar entry's name is not UTF-8".to_string())
    };
    let name = field(0..100)?;
    let prefix = if &block[257..262] == b"ustar" {
        field(345..500)?
    } else {
        String::new()
    };
    Ok(if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    })
}

/// An octal field (spaces and NULs around it allowed); `None` when it is
/// not octal.
fn parse_octal(field: &[u8]) -> Option<u64> {
    // GNU's base-256 for large numbers: the high bit set.
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let text = text.trim_matches(|c| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads an archive from memory: its files with their data.
    fn read_all(mut bytes: &[u8]) -> Result<Vec<(String, u32, Vec<u8>)>, String> {
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        loop {
            let block: &[u8; BLOCK] = bytes[..BLOCK].try_into().unwrap();
            bytes = &bytes[BLOCK..];
            let (len, file) = match decoder.header(block)? {
                Step::End => return Ok(out),
                Step::Extension { len } => {
                    decoder.extension(&bytes[..len as usize])?;
                    (len, None)
                }
                Step::File {
                    path, size, mode, ..
                } => (size, Some((path, mode))),
                Step::Dir { .. } => (0, None),
                Step::Other { kind, path, .. } => {
                    return Err(format!("{path}: kind {}", kind as char));
                }
            };
            if let Some((path, mode)) = file {
                out.push((path, mode, bytes[..len as usize].to_vec()));
            }
            bytes = &bytes[len as usize + padding(len)..];
        }
    }

    fn archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (path, mode, data) in files {
            out.extend(file_header(path, data.len() as u64, *mode, None));
            out.extend_from_slice(data);
            out.resize(out.len() + padding(data.len() as u64), 0);
        }
        out.extend_from_slice(&END);
        out
    }

    #[test]
    fn what_is_written_reads_back_with_long_paths_and_modes() {
        let long = format!("{}/é/{}", "d".repeat(150), "f".repeat(200));
        let files: Vec<(&str, u32, &[u8])> = vec![
            ("bin/app", 0o755, b"#!/bin/sh\necho hi\n"),
            ("empty", 0o644, b""),
            (&long, 0o600, &[7u8; 1000]),
            ("exact", 0o644, &[1u8; 512]),
        ];
        let bytes = archive(&files);
        assert_eq!(bytes.len() % BLOCK, 0);
        let read = read_all(&bytes).unwrap();
        let want: Vec<(String, u32, Vec<u8>)> = files
            .iter()
            .map(|(p, m, d)| (p.to_string(), *m, d.to_vec()))
            .collect();
        assert_eq!(read, want);
    }

    #[test]
    fn a_pax_record_counts_its_own_length() {
        for value in ["a", &"x".repeat(91), &"y".repeat(994)] {
            let record = pax_record("path", value);
            let (len, _) = record.split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), record.len(), "{record}");
        }
    }

    #[test]
    fn a_size_over_ustar_goes_in_a_pax_record() {
        let size = USTAR_MAX_SIZE + 10;
        let digest = format!("sha256:{}", "0".repeat(64));
        let bytes = file_header("big", size, 0o644, Some(&digest));
        let mut decoder = Decoder::default();
        let block: &[u8; BLOCK] = bytes[..BLOCK].try_into().unwrap();
        let Step::Extension { len } = decoder.header(block).unwrap() else {
            panic!("no extended header");
        };
        decoder
            .extension(&bytes[BLOCK..BLOCK + len as usize])
            .unwrap();
        let block: &[u8; BLOCK] = bytes[2 * BLOCK..3 * BLOCK].try_into().unwrap();
        assert_eq!(
            decoder.header(block).unwrap(),
            Step::File {
                path: "big".into(),
                size,
                mode: 0o644,
                digest: Some(digest)
            }
        );
    }

    #[test]
    fn links_are_named_and_damage_is_found() {
        let mut link = ustar_header("evil", 0, 0o777, b'2');
        let mut decoder = Decoder::default();
        assert_eq!(
            decoder.header(&link).unwrap(),
            Step::Other {
                kind: b'2',
                path: "evil".into(),
                size: 0
            }
        );
        link[0] = b'E';
        assert!(decoder.header(&link).unwrap_err().contains("checksum"));
        let mut huge = ustar_header("PaxHeader", MAX_EXTENSION + 1, 0o644, b'x');
        huge[0] = b'P';
        assert!(
            decoder
                .header(&huge)
                .unwrap_err()
                .contains("extended header")
        );
    }
}
