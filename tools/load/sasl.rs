//! SASL PLAIN (RFC 4616) as used by SMTP AUTH, IMAP AUTHENTICATE and POP3 AUTH.

use base64::Engine;

/// The base64 initial response for PLAIN: `\0user\0password` (no authorization identity).
pub fn plain(user: &str, password: &str) -> String {
    let mut raw = Vec::with_capacity(user.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_matches_rfc4616_example() {
        // RFC 4616 §4 uses "tim" / "tanstaaftanstaaf" (with an authzid); without one:
        assert_eq!(
            super::plain("tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
    }
}
