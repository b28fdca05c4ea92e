//! The few small pieces both the engine (`runbook`) and the lab (`runbook-lab`) need.
//!
//! Why a crate of its own: the engine depends on the lab (`runbook lab ...` is one of its
//! commands), so the lab cannot reach back into the engine for shell quoting or the static
//! pod type. Owning them in the lab crate would put the engine's one shell quoter inside a
//! test rig; here both depend on this crate and nothing is written twice. The engine
//! re-exports `shell` and `pod` at their old paths (`crate::shell::quote`), so its code reads
//! as before.

pub mod pod;
pub mod shell;

/// RFC 1123 label: 1-63 of [a-z0-9-], starting and ending alphanumeric (node, cluster and
/// lab names).
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Lowercase hex of some bytes (digests in file names, records and messages).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_hex() {
        assert!(is_label("cp-1"));
        assert!(!is_label("cp_1"));
        assert!(!is_label("cp1;reboot"));
        assert!(!is_label("-cp"));
        assert!(!is_label(""));
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
