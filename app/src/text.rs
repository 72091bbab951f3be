//! Offsets in text as the browser counts them (UTF-16 code units, in a
//! textarea's selection) and as Rust does (bytes).

/// Byte offset of a UTF-16 offset (what the browser's selection counts).
pub fn byte_of_utf16(text: &str, units: u32) -> usize {
    let mut seen = 0u32;
    for (i, c) in text.char_indices() {
        if seen >= units {
            return i;
        }
        seen += c.len_utf16() as u32;
    }
    text.len()
}

/// UTF-16 offset of a byte offset (what the browser's selection takes).
pub fn utf16_of_byte(text: &str, byte: usize) -> u32 {
    text[..byte.min(text.len())]
        .chars()
        .map(|c| c.len_utf16() as u32)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf16_offsets() {
        let t = "é😀x";
        assert_eq!(byte_of_utf16(t, 1), 2);
        assert_eq!(byte_of_utf16(t, 3), 6);
        assert_eq!(utf16_of_byte(t, 6), 3);
    }
}
