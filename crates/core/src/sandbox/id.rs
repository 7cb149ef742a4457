//! Sandbox (and container) IDs: 64 lowercase hex digits, like containerd's
//! CRI plugin, and the prefix lookup clients such as crictl rely on.

use crate::{Error, Result};

/// Length of an ID in characters.
pub const ID_LEN: usize = 64;

/// A new ID from 32 random bytes supplied by the caller.
pub fn new_id(random: [u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut id = String::with_capacity(ID_LEN);
    for byte in random {
        id.push(char::from(HEX[usize::from(byte >> 4)]));
        id.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    id
}

/// Whether `id` has the shape of an ID made by [`new_id`].
pub fn is_valid_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Finds the one ID among `ids` that equals or starts with `prefix`.
///
/// `Ok(None)` when nothing matches; an empty or ambiguous prefix is an
/// [`Error::InvalidArgument`] on the field `id`.
pub fn match_prefix<'a, I>(ids: I, prefix: &str) -> Result<Option<&'a str>>
where
    I: IntoIterator<Item = &'a str>,
{
    // Impossible to answer: an empty prefix matches every id and an
    // ambiguous one several (containerd's truncindex refuses both alike).
    if prefix.is_empty() {
        return Err(Error::invalid("id", "must not be empty"));
    }
    let mut found: Option<&'a str> = None;
    let mut others = 0usize;
    for id in ids {
        if id == prefix {
            return Ok(Some(id));
        }
        if !id.starts_with(prefix) {
            continue;
        }
        match found {
            None => found = Some(id),
            Some(first) if first != id => others += 1,
            Some(_) => {}
        }
    }
    if others > 0 {
        return Err(Error::invalid(
            "id",
            format!(
                "prefix {prefix:?} is ambiguous: it matches {} IDs",
                others + 1
            ),
        ));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_lowercase_hex() {
        let mut random = [0u8; 32];
        random[0] = 0xab;
        random[31] = 0x0f;
        let id = new_id(random);
        assert_eq!(id.len(), ID_LEN);
        assert!(id.starts_with("ab00"));
        assert!(id.ends_with("000f"));
        assert!(is_valid_id(&id));
        assert!(is_valid_id(&new_id([0xff; 32])));
    }

    #[test]
    fn invalid_ids() {
        let upper = "A".repeat(64);
        let short = "a".repeat(63);
        let long = "a".repeat(65);
        let slash = format!("{}/", "a".repeat(63));
        for bad in ["", upper.as_str(), short.as_str(), long.as_str(), &slash] {
            assert!(!is_valid_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn prefixes() -> Result<()> {
        let ids = ["abc123", "abd456", "ff0000"];
        let m = |p| match_prefix(ids.iter().copied(), p);
        assert_eq!(m("abc")?, Some("abc123"));
        assert_eq!(m("ff")?, Some("ff0000"));
        assert_eq!(m("abc123")?, Some("abc123"));
        assert_eq!(m("0")?, None);
        assert_eq!(m("abc1234")?, None);
        assert!(matches!(
            m("ab"),
            Err(Error::InvalidArgument { ref field, .. }) if field == "id"
        ));
        assert!(m("").is_err());
        // An exact match wins over longer IDs that share it as a prefix.
        let nested = ["abc", "abcdef"];
        assert_eq!(match_prefix(nested.iter().copied(), "abc")?, Some("abc"));
        // The same ID listed twice is not ambiguous.
        let twice = ["abc123", "abc123"];
        assert_eq!(match_prefix(twice.iter().copied(), "ab")?, Some("abc123"));
        Ok(())
    }
}
