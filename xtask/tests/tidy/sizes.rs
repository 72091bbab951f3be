//! No source file longer than one person can hold: 800 lines. The list
//! below held the files that were longer when the rule came in, each with a
//! ceiling that could only come down; it is empty now and stays so.

use crate::{relative, root, rust_files};

const MOST_LINES: usize = 800;

/// Files allowed past [`MOST_LINES`], each with its ceiling.
const LONGER: &[(&str, usize)] = &[];

#[test]
fn no_source_file_is_longer_than_800_lines() {
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    let mut faults = Vec::new();
    for file in &files {
        let name = relative(file);
        let lines = std::fs::read_to_string(file).unwrap().lines().count();
        match LONGER.iter().find(|(listed, _)| *listed == name) {
            Some((_, ceiling)) if lines > *ceiling => faults.push(format!(
                "{name}: {lines} lines, above its ceiling of {ceiling}: split it instead"
            )),
            Some((_, ceiling)) if lines <= MOST_LINES => faults.push(format!(
                "{name}: {lines} lines now fits; take it off LONGER (ceiling {ceiling})"
            )),
            Some(_) => {}
            None if lines > MOST_LINES => faults.push(format!(
                "{name}: {lines} lines, over {MOST_LINES}: split it along its seams"
            )),
            None => {}
        }
    }
    for (listed, _) in LONGER {
        if !files.iter().any(|f| relative(f) == *listed) {
            faults.push(format!("{listed} is gone; take it off LONGER"));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}
