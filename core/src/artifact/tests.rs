use super::*;

const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn entry(path: &str) -> ManifestEntry {
    ManifestEntry {
        path: path.into(),
        size: 3,
        mode: 0o755,
        digest: Digest::parse(&format!("sha256:{HEX}")).unwrap(),
    }
}

#[test]
fn digests_are_sha256_and_64_lowercase_hex() {
    let digest = Digest::parse(&format!("sha256:{HEX}")).unwrap();
    assert_eq!(digest.hex(), HEX);
    assert_eq!(digest.as_str(), format!("sha256:{HEX}"));
    for bad in [
        HEX.to_string(),
        format!("sha1:{HEX}"),
        format!("sha256:{}", HEX.to_uppercase()),
        format!("sha256:{}", &HEX[1..]),
        format!("sha256:{HEX}0"),
        format!("sha256:{}/..", &HEX[4..]),
        String::new(),
    ] {
        assert!(Digest::parse(&bad).is_err(), "{bad}");
        // The wire refuses it too.
        assert!(
            serde_json::from_str::<Digest>(&format!("{bad:?}")).is_err(),
            "{bad}"
        );
    }
    let mut bytes = [0u8; 32];
    bytes[0] = 0xab;
    bytes[31] = 0x0f;
    let made = Digest::from_sha256(&bytes);
    assert_eq!(Digest::parse(made.as_str()).unwrap(), made);
    assert!(made.hex().starts_with("ab00") && made.hex().ends_with("000f"));
    let json = serde_json::to_string(&entry("bin/app")).unwrap();
    assert_eq!(
        json,
        format!(r#"{{"path":"bin/app","size":3,"mode":493,"digest":"sha256:{HEX}"}}"#)
    );
    assert_eq!(
        serde_json::from_str::<ManifestEntry>(&json).unwrap(),
        entry("bin/app")
    );
}

#[test]
fn stored_paths_are_relative_and_plain() {
    for good in [
        "a",
        "bin/app",
        "a.b/c-d_e/.hidden",
        "..a/b..",
        &"x".repeat(255),
    ] {
        assert_eq!(check_stored_path(good), Ok(()), "{good}");
    }
    let long_component = "x".repeat(256);
    let long_path = "ab/".repeat(400);
    for (bad, says) in [
        ("", "empty"),
        ("/etc/passwd", "absolute"),
        ("../up", "\"..\" component"),
        ("a/../../b", "\"..\" component"),
        ("./a", "\".\" component"),
        ("a//b", "empty component"),
        ("a/", "empty component"),
        ("a\\..\\b", "backslash"),
        ("a\0b", "NUL"),
        (long_component.as_str(), "longer than 255"),
        (long_path.as_str(), "more than 1024"),
    ] {
        let error = check_stored_path(bad).unwrap_err();
        assert!(error.contains(says), "{bad:?}: {error}");
    }
}

#[test]
fn manifests_are_bounded_unique_and_placeable() {
    let good = [
        entry("a"),
        entry("a-b/c"),
        entry("a.c"),
        entry("b/a/c"),
        entry("b/b"),
    ];
    assert_eq!(check_manifest(&good), Ok(()));
    assert_eq!(check_manifest(&[]), Ok(()));

    let error = check_manifest(&[entry("x"), entry("y"), entry("x")]).unwrap_err();
    assert!(error.contains("\"x\" is listed twice"), "{error}");
    // A file that is also another file's directory, whatever sorts between.
    let error = check_manifest(&[entry("a/b/c"), entry("a-z"), entry("a/b")]).unwrap_err();
    assert!(
        error.contains("\"a/b\" is a file and also the directory of \"a/b/c\""),
        "{error}"
    );
    let error = check_manifest(&[entry("../x")]).unwrap_err();
    assert!(error.contains("\"..\""), "{error}");
    let mut setuid = entry("x");
    setuid.mode = 0o4755;
    assert!(
        check_manifest(&[setuid])
            .unwrap_err()
            .contains("permission bits")
    );

    let many: Vec<_> = (0..=MAX_FILES).map(|i| entry(&format!("f{i}"))).collect();
    assert!(check_manifest(&many[..MAX_FILES]).is_ok());
    let error = check_manifest(&many).unwrap_err();
    assert!(
        error.contains("10001 files, more than the 10000"),
        "{error}"
    );
}
