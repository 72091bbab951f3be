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
        ("a\x1b[2Jb", "control character"),
        ("a\nb", "control character"),
        ("a\u{9b}b", "control character"),
        (long_component.as_str(), "longer than 255"),
        (long_path.as_str(), "more than 1024"),
    ] {
        let error = check_stored_path(bad).unwrap_err();
        assert!(error.contains(says), "{bad:?}: {error}");
    }
    // A spec's path is refused for the same controls, so a spec never
    // passes its check only to fail at publish.
    for bad in ["out\x1b[2J", "a\nb", "dist/\u{9b}x"] {
        let error = check_spec_path(bad).unwrap_err();
        assert!(error.contains("control character"), "{bad:?}: {error}");
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

#[test]
fn names_are_plain_url_segments() {
    for good in ["binary", "a", "Report_1.xml", "v1.2-rc", &"x".repeat(64)] {
        assert_eq!(check_name(good), Ok(()), "{good}");
    }
    for bad in ["", ".", "..", ".hidden", "-x", "a/b", "a b", "é", "a%2f"] {
        assert!(
            check_name(bad)
                .unwrap_err()
                .contains("invalid artifact name"),
            "{bad}"
        );
    }
    assert!(
        check_name(&"x".repeat(65))
            .unwrap_err()
            .contains("longer than 64")
    );
}

#[test]
fn globs_match_within_and_across_components() {
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        // pattern, base, matching, not matching
        (
            "reports/*.xml",
            "reports",
            &["reports/a.xml", "reports/.x.xml"],
            &["reports/a.xm", "reports/sub/a.xml", "a.xml", "reports"],
        ),
        (
            "**/*.xml",
            "",
            &["a.xml", "x/y/z.xml"],
            &["x/y/z.xmlx", "x/y"],
        ),
        ("a/**", "a", &["a", "a/b", "a/b/c"], &["b/a"]),
        (
            "a/**/b",
            "a",
            &["a/b", "a/x/b", "a/x/y/b"],
            &["a/x/c", "a/b/c"],
        ),
        (
            "dist/app-?.[0-9]",
            "dist",
            &["dist/app-x.7"],
            &["dist/app-.7", "dist/app-xy.7", "dist/app-x.a"],
        ),
        ("x/[!a-c]*", "x", &["x/d", "x/zzz"], &["x/a", "x/cat", "x/"]),
        ("x/[]]", "x", &["x/]"], &["x/a"]),
        ("x/[a-]", "x", &["x/a", "x/-"], &["x/b"]),
        (
            "./out//*.bin/",
            "out",
            &["out/a.bin", "./out/b.bin"],
            &["out/a/b.bin"],
        ),
        (
            "a*b*c*d",
            "",
            &["abcd", "axxbyyczzd", "abcbcd"],
            &["abdc", "abc"],
        ),
        ("é/*", "é", &["é/ü"], &["e/ü"]),
    ];
    for (pattern, base, yes, no) in cases {
        let glob = Glob::parse(pattern).unwrap();
        assert_eq!(glob.base(), *base, "{pattern}");
        for path in *yes {
            assert!(glob.matches(path), "{pattern} should match {path}");
        }
        for path in *no {
            assert!(!glob.matches(path), "{pattern} should not match {path}");
        }
    }
    assert!(has_wildcard("a/*") && has_wildcard("[x]") && !has_wildcard("a/b.c"));
}

#[test]
fn bad_globs_are_refused_with_reasons() {
    for (bad, says) in [
        ("/abs/*", "absolute"),
        ("a/../*", "\"..\""),
        ("a/b**", "whole path component"),
        ("a/[abc", "not closed"),
        ("a/[z-a]", "backwards"),
        ("a\\*", "backslash"),
        ("./", "names no file"),
    ] {
        let error = Glob::parse(bad).unwrap_err();
        assert!(error.contains(says), "{bad}: {error}");
    }
    let long = format!("{}*", "a".repeat(MAX_PATH_BYTES));
    assert!(Glob::parse(&long).unwrap_err().contains("longer than"));
}

#[test]
fn worst_case_globs_stay_bounded() {
    // Many stars against a long name that fails at the end: quadratic at
    // worst in a component of at most 255 bytes, across at most 512
    // components.
    let pattern = format!("{}b", "a*".repeat(100));
    let glob = Glob::parse(&pattern).unwrap();
    assert!(!glob.matches(&"a".repeat(255)));
    let deep = Glob::parse(&"**/".repeat(300)).unwrap();
    assert!(deep.matches(&"x/".repeat(500)));
    assert!(!Glob::parse("**/y").unwrap().matches(&"x/".repeat(511)));
}

#[test]
fn a_glob_says_which_directories_can_hold_a_match() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("*.tgz", &[""], &["node_modules", "a/b"]),
        (
            "reports/*.xml",
            &["", "reports"],
            &["src", "reports/old", "other/reports"],
        ),
        (
            "a/*/c/*.txt",
            &["a", "a/x", "a/x/c"],
            &["b", "a/x/d", "a/x/c/d"],
        ),
        ("**/*.xml", &["", "a", "a/b/c"], &[]),
        (
            "src/**/gen/*.rs",
            &["src", "src/a/b", "src/gen"],
            &["lib", "lib/gen"],
        ),
        ("dist/**", &["dist", "dist/x"], &["node_modules"]),
        ("*/bin", &["", "a"], &["a/bin", "a/b/c"]),
    ];
    for (pattern, may, may_not) in cases {
        let glob = Glob::parse(pattern).unwrap();
        for dir in *may {
            assert!(
                glob.may_match_below(dir),
                "{pattern} may match below {dir:?}"
            );
        }
        for dir in *may_not {
            assert!(
                !glob.may_match_below(dir),
                "{pattern} cannot match below {dir:?}"
            );
        }
    }
}
