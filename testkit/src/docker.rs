//! The image Docker tests run their steps in.

use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The test image's name.
pub const IMAGE: &str = "xene-test/busybox:latest";

/// Builds the test image once per test process: Debian's static busybox in
/// an image `FROM scratch` (there is no registry to pull from).
pub fn busybox_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let context = tempfile::tempdir().expect("temp dir");
        std::fs::copy("/usr/bin/busybox", context.path().join("busybox"))
            .expect("copying /usr/bin/busybox (apt-get install busybox-static)");
        std::fs::write(
            context.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .expect("writing the Dockerfile");
        let status = Command::new("docker")
            .args(["build", "-q", "-t", IMAGE])
            .arg(context.path())
            .stdout(Stdio::null())
            .status()
            .expect("running docker build");
        assert!(status.success(), "docker build of {IMAGE} failed");
    });
    IMAGE
}
