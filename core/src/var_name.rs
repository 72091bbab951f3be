//! How a name becomes the tail of a variable steps see (`XENE_PARAM_*`,
//! `XENE_OUTPUT_*`, `XENE_CACHE_*`): one rule, in a module that imports
//! nothing, so the template and cache modules share it without a circle.

/// `name` upper-cased, `-` as `_`.
pub(crate) fn suffix(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}
