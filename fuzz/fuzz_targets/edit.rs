//! Any text and any canvas gesture: the editor's edits never panic, and
//! what they answer parses to what the gesture means. The first three bytes
//! pick the gesture and its tasks; the rest is the YAML. A rest with two NUL
//! bytes is three texts for the editor's three-way merge instead (one target
//! rather than two: `cargo xtask test` fuzzes each target for a while).
#![no_main]

use libfuzzer_sys::fuzz_target;
use xene_core::draft::{self, Draft, Gesture};
use xene_core::edit::{self, Op, Seg, Yaml};
use xene_core::merge::{OURS_MARKER, merge3};

fuzz_target!(|data: &[u8]| {
    let [kind, a, b, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if let [base, mine, theirs] = text.splitn(3, '\0').collect::<Vec<_>>()[..] {
        merges(base, mine, theirs);
        return;
    }
    let Ok(d) = Draft::read(text) else {
        return;
    };
    let Some(p) = d.pipelines.first() else {
        // Raw ops on whatever tree there is.
        let op = Op::Set {
            path: vec![Seg::key("name"), Seg::key("x")],
            value: Yaml::str("v"),
        };
        if let Ok(out) = edit::apply(text, &op) {
            edit::tree(&out).expect("an edit's result parses");
        }
        return;
    };
    let pick = |i: u8| p.tasks.get(i as usize % p.tasks.len().max(1)).map(|t| t.name.clone());
    let (Some(x), Some(y)) = (pick(*a), pick(*b)) else {
        let _ = draft::apply(
            text,
            &Gesture::AddTask {
                pipeline: p.name.clone(),
                name: "new".into(),
            },
        );
        return;
    };
    let pipeline = p.name.clone();
    let gesture = match kind % 7 {
        0 => Gesture::AddTask { pipeline, name: format!("n{a}") },
        1 => Gesture::Connect { pipeline, from: x, to: y },
        2 => Gesture::Disconnect { pipeline, from: x, to: y },
        3 => Gesture::RemoveTask { pipeline, name: x },
        4 => Gesture::RenameTask { pipeline, from: x, to: format!("r{b}") },
        5 => Gesture::InsertBetween { pipeline, from: x, to: y, name: format!("i{a}") },
        _ => Gesture::SetTaskField {
            pipeline,
            task: x,
            field: "steps".into(),
            value: Some(Yaml::Seq(vec![Yaml::Map(vec![(
                "run".into(),
                Yaml::str(String::from_utf8_lossy(&rest[..rest.len().min(40)]).into_owned()),
            )])])),
        },
    };
    if let Ok(out) = draft::apply(text, &gesture) {
        assert_eq!(merge3(text, &out, text), (out.clone(), true));
        let after = Draft::read(&out).expect("a gesture's result parses");
        if let Gesture::Connect { from, to, .. } = &gesture {
            let t = after.pipelines[0].task(to).expect("the dependant is still there");
            assert!(t.depends_on.contains(from));
        }
    }
});

/// What the merge promises for any three texts: it never panics, a side
/// that changed nothing gives the other back, and the answer does not
/// depend on which side is mine.
fn merges(base: &str, mine: &str, theirs: &str) {
    assert_eq!(merge3(base, mine, base), (mine.to_string(), true));
    assert_eq!(merge3(base, base, theirs), (theirs.to_string(), true));
    assert_eq!(merge3(base, mine, mine), (mine.to_string(), true));
    let (merged, clean) = merge3(base, mine, theirs);
    let (swapped, swapped_clean) = merge3(base, theirs, mine);
    assert_eq!(clean, swapped_clean);
    if clean {
        assert_eq!(merged, swapped);
    } else {
        assert!(merged.contains(OURS_MARKER));
    }
}
