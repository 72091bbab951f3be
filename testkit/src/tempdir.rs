//! Directories only their owner enters.

/// A temporary data directory only its owner enters (mode 0700): what a
/// server accepts, since it refuses one others can enter.
pub fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .expect("temp dir")
}
