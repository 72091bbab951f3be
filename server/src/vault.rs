//! The master keys that encrypt secrets at rest, and the sealing itself:
//! XChaCha20-Poly1305 with a random nonce per value, the secret's scope and
//! name as associated data, so a ciphertext moved to another row (or a
//! tampered one) fails to open instead of giving a wrong value.
//!
//! Keys come from a file (one base64 key of 32 bytes per line) or from
//! `XENE_SECRETS_KEY`. The first key seals; all of them open, which is what
//! makes rotation work across replicas: put a new key first in every
//! replica's file (keeping the old one below it), then re-encrypt with
//! `POST /api/v1/secrets/rotate-key`, then drop the old line. A file is read
//! again when a value names a key this process does not have yet.
//!
//! No SQL here: `storage::secrets` stores what this seals, and keeps the
//! key check that proves at start that the keys match the database.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// The name of the key file the embedded default makes in the data directory.
pub const DEFAULT_KEY_FILE: &str = "secrets.key";

const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
/// More keys than anyone rotates through: a bound on a hostile file.
const MAX_KEYS: usize = 16;
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("reading the secrets key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing a new secrets key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the secrets key file {0} is missing, and this database's secrets were sealed with a key: \
         restore the file, or give this server the key the others use (--secrets-key-file or XENE_SECRETS_KEY)"
    )]
    Lost(PathBuf),
    #[error(
        "the secrets key file {path} is open to other users (mode {mode:04o}), and the key opens every secret \
         and the token signing key: run `chmod 600 {path}` (and consider the key read: rotate it) and start again"
    )]
    OpenKeyFile { path: PathBuf, mode: u32 },
    #[error("the secrets key {what}: {why}")]
    BadKey { what: String, why: String },
    #[error(
        "this database's secrets were encrypted with the master key {0}, which is not among the configured keys \
         (set --secrets-key-file or XENE_SECRETS_KEY to the key the database was first started with)"
    )]
    UnknownKey(String),
    #[error(
        "a secret does not decrypt: it was changed or moved in the database, or the key with its id is not the one that sealed it"
    )]
    Tampered,
}

/// Where the keys come from.
#[derive(Clone)]
pub enum KeySource {
    File(PathBuf),
    /// The text of `XENE_SECRETS_KEY` (it cannot be read again).
    Env(String),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Env(_) => f.write_str("Env(***)"),
        }
    }
}

struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The configured master keys, the first one sealing.
pub struct Vault {
    source: KeySource,
    keys: RwLock<Vec<MasterKey>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("primary", &self.primary_id())
            .finish_non_exhaustive()
    }
}

impl Vault {
    /// Loads the keys; with `create`, a missing file is made with one fresh
    /// key, readable by this user only.
    pub fn load(source: KeySource, create: bool) -> Result<Self, VaultError> {
        if let (KeySource::File(path), true) = (&source, create)
            && !path.exists()
        {
            create_key_file(path)?;
        }
        let keys = read_keys(&source)?;
        Ok(Self {
            source,
            keys: RwLock::new(keys),
        })
    }

    /// A vault with one given key, for tests and benchmarks.
    pub fn with_key(key: [u8; KEY_BYTES]) -> Self {
        let text = STANDARD.encode(key);
        Self::load(KeySource::Env(text), false).expect("a 32-byte key always parses")
    }

    /// The id of the key that seals: a fingerprint, never the key.
    pub fn primary_id(&self) -> String {
        self.keys.read().unwrap()[0].id.clone()
    }

    /// Reads the key file again (a rotation added a key).
    pub fn reload(&self) -> Result<(), VaultError> {
        let keys = read_keys(&self.source)?;
        *self.keys.write().unwrap() = keys;
        Ok(())
    }

    /// Seals `value` for the row (`scope`, `name`): the primary key's id and
    /// the base64 of nonce || ciphertext.
    pub fn seal(&self, scope: &str, name: &str, value: &[u8]) -> (String, String) {
        let keys = self.keys.read().unwrap();
        (keys[0].id.clone(), seal_under(&keys[0], scope, name, value))
    }

    /// Seals under the key with this id (the one the database says is
    /// current), which may not be this process's first.
    pub fn seal_with(
        &self,
        key_id: &str,
        scope: &str,
        name: &str,
        value: &[u8],
    ) -> Result<String, VaultError> {
        let keys = self.keys.read().unwrap();
        let key = keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        Ok(seal_under(key, scope, name, value))
    }

    /// Opens what `seal` made for the same row.
    pub fn open(
        &self,
        scope: &str,
        name: &str,
        key_id: &str,
        ciphertext: &str,
    ) -> Result<Vec<u8>, VaultError> {
        if !self.has_key(key_id) {
            // Another replica may have re-encrypted under a key that was
            // added to our file after we read it.
            if let KeySource::File(_) = self.source {
                self.reload()?;
            }
            if !self.has_key(key_id) {
                return Err(VaultError::UnknownKey(key_id.to_string()));
            }
        }
        let bytes = STANDARD
            .decode(ciphertext)
            .map_err(|_| VaultError::Tampered)?;
        if bytes.len() < NONCE_BYTES {
            return Err(VaultError::Tampered);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let keys = self.keys.read().unwrap();
        let key = keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_string()))?;
        let aad = associated_data(scope, name, key_id);
        key.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::Tampered)
    }

    pub fn has_key(&self, key_id: &str) -> bool {
        self.keys.read().unwrap().iter().any(|k| k.id == key_id)
    }
}

fn seal_under(key: &MasterKey, scope: &str, name: &str, value: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::fill(&mut nonce).expect("the OS has randomness");
    let aad = associated_data(scope, name, &key.id);
    let sealed = key
        .cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: value,
                aad: &aad,
            },
        )
        .expect("sealing a bounded value does not fail");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    STANDARD.encode(out)
}

/// Binds a ciphertext to its row and key; the NULs keep (`a`, `b\0c`) apart
/// from (`a\0b`, `c`), and names cannot hold a NUL.
fn associated_data(scope: &str, name: &str, key_id: &str) -> Vec<u8> {
    format!("xene-secret\0{scope}\0{name}\0{key_id}").into_bytes()
}

fn key_id(key: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"xene secrets key id\0")
        .chain_update(key)
        .finalize();
    hex::encode(&digest[..8])
}

fn read_keys(source: &KeySource) -> Result<Vec<MasterKey>, VaultError> {
    let (text, what) = match source {
        KeySource::File(path) => (read_key_file(path)?, format!("file {}", path.display())),
        KeySource::Env(text) => (text.clone(), "in XENE_SECRETS_KEY".to_string()),
    };
    let bad = |why: String| VaultError::BadKey {
        what: what.clone(),
        why,
    };
    let mut keys = Vec::new();
    let entries = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|l| !l.is_empty());
    for (i, line) in entries.enumerate() {
        let key = STANDARD
            .decode(line)
            .ok()
            .filter(|k| k.len() == KEY_BYTES)
            .ok_or_else(|| {
                bad(format!(
                    "entry {} is not the base64 of {KEY_BYTES} bytes (make one with `head -c 32 /dev/urandom | base64`)",
                    i + 1
                ))
            })?;
        if keys.len() == MAX_KEYS {
            return Err(bad(format!("it holds more than {MAX_KEYS} keys")));
        }
        keys.push(MasterKey {
            id: key_id(&key),
            cipher: XChaCha20Poly1305::new_from_slice(&key).expect("32 bytes"),
        });
    }
    if keys.is_empty() {
        return Err(bad("it holds no key".into()));
    }
    Ok(keys)
}

/// Reads a key file that only its owner can read: the key opens every
/// secret and the token signing key. Mode and size are those of the file
/// read (`fstat`), not of whatever the path named a moment before.
fn read_key_file(path: &Path) -> Result<String, VaultError> {
    use std::io::Read;
    let read = |source| VaultError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let meta = file.metadata().map_err(read)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(VaultError::OpenKeyFile {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(VaultError::BadKey {
            what: format!("file {}", path.display()),
            why: format!("it is larger than {MAX_KEY_FILE_BYTES} bytes"),
        });
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(read)?;
    Ok(text)
}

/// Makes a key file with one fresh key, mode 0600 from its creation on.
fn create_key_file(path: &Path) -> Result<(), VaultError> {
    let write = |source| VaultError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let mut key = [0u8; KEY_BYTES];
    getrandom::fill(&mut key).expect("the OS has randomness");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(write)?;
    let text = format!(
        "# Xene's master key for secrets at rest. Keep it: without it no secret can be read.\n\
         # One base64 key per line; the first encrypts, the others only decrypt (for rotation).\n{}\n",
        STANDARD.encode(key)
    );
    file.write_all(text.as_bytes()).map_err(write)?;
    file.sync_all().map_err(write)?;
    tracing::info!(path = %path.display(), "made a new master key for secrets");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let vault = Vault::with_key([7; 32]);
        let (id, sealed) = vault.seal("", "TOKEN", b"hunter22");
        assert_eq!(vault.open("", "TOKEN", &id, &sealed).unwrap(), b"hunter22");
        // Another row, scope or key id: refused.
        assert!(matches!(
            vault.open("", "OTHER", &id, &sealed),
            Err(VaultError::Tampered)
        ));
        assert!(matches!(
            vault.open("wf", "TOKEN", &id, &sealed),
            Err(VaultError::Tampered)
        ));
        // Any flipped byte: refused.
        let mut bytes = STANDARD.decode(&sealed).unwrap();
        for i in [0, NONCE_BYTES, bytes.len() - 1] {
            bytes[i] ^= 1;
            let flipped = STANDARD.encode(&bytes);
            assert!(matches!(
                vault.open("", "TOKEN", &id, &flipped),
                Err(VaultError::Tampered)
            ));
            bytes[i] ^= 1;
        }
        // A different key under the same id cannot exist; a wrong key is unknown.
        let other = Vault::with_key([8; 32]);
        assert!(matches!(
            other.open("", "TOKEN", &id, &sealed),
            Err(VaultError::UnknownKey(_))
        ));
        // Nonces differ: the same value seals differently each time.
        assert_ne!(vault.seal("", "TOKEN", b"hunter22").1, sealed);
    }

    #[test]
    fn every_key_opens_and_the_first_seals() {
        let old = STANDARD.encode([1u8; 32]);
        let new = STANDARD.encode([2u8; 32]);
        let before = Vault::load(KeySource::Env(old.clone()), false).unwrap();
        let (old_id, sealed) = before.seal("", "A_B", b"value");
        let after = Vault::load(KeySource::Env(format!("{new}\n{old}")), false).unwrap();
        assert_ne!(after.primary_id(), old_id);
        assert_eq!(after.open("", "A_B", &old_id, &sealed).unwrap(), b"value");
    }

    #[test]
    fn key_files_are_made_private_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secrets.key");
        let vault = Vault::load(KeySource::File(path.clone()), true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Loading again gives the same key.
        let again = Vault::load(KeySource::File(path.clone()), true).unwrap();
        assert_eq!(vault.primary_id(), again.primary_id());

        for bad in ["", "# only a comment\n", "not base64!", "c2hvcnQ="] {
            std::fs::write(&path, bad).unwrap();
            let err = Vault::load(KeySource::File(path.clone()), false).unwrap_err();
            assert!(matches!(err, VaultError::BadKey { .. }), "{bad:?}: {err}");
        }
        let missing = dir.path().join("missing.key");
        assert!(matches!(
            Vault::load(KeySource::File(missing), false),
            Err(VaultError::Read { .. })
        ));
    }
}
