//! Table names. A name becomes a file name inside the rootpath, so the rules are
//! what keeps every request inside it: 1 to 64 ASCII letters, digits, `_` or `-`,
//! starting with a letter, digit or `_`. That excludes separators, `..`, control
//! characters and anything a file system could read as a path. Names are compared
//! without case and stored in lower case.

use crate::error::{Error, Result};

/// Longest table name.
pub const MAX_TABLE_NAME: usize = 64;

/// Checks a table name; returns its canonical (lower-case) form.
///
/// ```
/// use raiz_engine::validate_table_name;
/// assert_eq!(validate_table_name("SX3010").unwrap(), "sx3010");
/// assert!(validate_table_name("../etc/passwd").is_err());
/// ```
pub fn validate_table_name(name: &str) -> Result<String> {
    let reject = |reason| {
        Err(Error::InvalidName {
            what: "table",
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return reject("it is empty");
    }
    if name.len() > MAX_TABLE_NAME {
        return reject("it is longer than 64 bytes");
    }
    if name.contains("..") {
        return reject("it contains \"..\"");
    }
    if name.bytes().any(|b| b == b'/' || b == b'\\') {
        return reject("it contains a path separator");
    }
    if name.bytes().any(|b| b.is_ascii_control()) {
        return reject("it contains a control character");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return reject("only ASCII letters, digits, _ and - are allowed");
    }
    if name.starts_with('-') {
        return reject("it starts with -");
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "SX3010", "sa1_010", "x-y", "_t"] {
            assert!(validate_table_name(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            "a.b",
            "-a",
            "é",
            long.as_str(),
            "/abs",
        ] {
            assert!(validate_table_name(bad).is_err(), "{bad:?}");
        }
    }
}
