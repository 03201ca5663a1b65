//! The argument rules every backend shares: what a key may be, how a range is cut at an object's
//! end, and the escaping that turns any key into a safe file or object name.

use std::ops::Range;

use crate::RemoteError;

/// The longest key, in bytes of UTF-8, that every backend accepts (S3's own limit).
pub const KEY_BYTES_MAX: usize = 1024;

/// Checks `key` against the rules of [`ExternalStore`](crate::ExternalStore): non-empty, at most
/// [`KEY_BYTES_MAX`] bytes.
pub(crate) fn check_key(key: &str) -> Result<(), RemoteError> {
    if key.is_empty() {
        return Err(RemoteError::Invalid("the key is empty".into()));
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(RemoteError::Invalid(format!(
            "the key is {} bytes long, over the limit of {KEY_BYTES_MAX}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks that `range` is not inverted.
pub(crate) fn check_range(range: &Range<u64>) -> Result<(), RemoteError> {
    if range.start > range.end {
        return Err(RemoteError::Invalid(format!("the range {}..{} is inverted", range.start, range.end)));
    }
    Ok(())
}

/// `key` and `range` checked together, as every `get` starts.
pub(crate) fn check_get(key: &str, range: &Range<u64>) -> Result<(), RemoteError> {
    check_key(key)?;
    check_range(range)
}

/// `range` cut at an object of `len` bytes: a start past the end gives an empty range at the end.
pub(crate) fn cut(range: &Range<u64>, len: u64) -> Range<u64> {
    let start = range.start.min(len);
    start..range.end.clamp(start, len)
}

/// [`cut`] as indices into a buffer of `len` bytes.
pub(crate) fn cut_usize(range: &Range<u64>, len: usize) -> Range<usize> {
    let cut = cut(range, len as u64);
    // The cut range lies within `len`, which is a usize.
    cut.start as usize..cut.end as usize
}

/// `key` with every byte but ASCII letters, digits, `_`, `-` and a `.` that is not first written
/// as `%XX`: a name with no `/`, never `.` or `..`, never starting with `.`, one to one with keys.
pub(crate) fn escape(key: &str) -> String {
    let mut name = String::with_capacity(key.len());
    for (i, &byte) in key.as_bytes().iter().enumerate() {
        let plain = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || (byte == b'.' && i > 0);
        if plain {
            name.push(char::from(byte));
        } else {
            name.push_str(&format!("%{byte:02X}"));
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_stops_at_the_end() {
        assert_eq!(cut(&(2..10), 5), 2..5);
        assert_eq!(cut(&(7..10), 5), 5..5);
        assert_eq!(cut(&(0..u64::MAX), 5), 0..5);
        assert_eq!(cut(&(1..3), 5), 1..3);
        assert_eq!(cut(&(3..3), 5), 3..3);
    }

    #[test]
    fn escape_is_one_to_one_and_safe() {
        let keys = ["a/b", "a%2Fb", "a%252Fb", ".", "..", ".x", "x.", "a b", "ü", "%"];
        let names: Vec<String> = keys.iter().map(|k| escape(k)).collect();
        for (i, a) in names.iter().enumerate() {
            assert!(!a.contains('/') && !a.starts_with('.'), "{a}");
            for b in &names[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(escape("seg-0001.log"), "seg-0001.log");
        assert_eq!(escape("a/b"), "a%2Fb");
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(KEY_BYTES_MAX)).is_ok());
        assert!(check_key(&"k".repeat(KEY_BYTES_MAX + 1)).is_err());
        #[expect(clippy::reversed_empty_ranges, reason = "an inverted range is what is checked")]
        let inverted = 3..2;
        assert!(check_range(&inverted).is_err());
    }
}
