//! SASL PLAIN (RFC 4616) as carried by POP3 `AUTH` (RFC 5034): decoding the client response.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use thiserror::Error;

/// Credentials carried by a PLAIN response. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Authentication identity (the account name).
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a PLAIN response was rejected. `Display` is the text after `-ERR `.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PlainError {
    /// The response is not valid base64 (RFC 5034 requires rejecting it).
    #[error("invalid base64")]
    Base64,
    /// The decoded response is not `authzid NUL authcid NUL passwd`.
    #[error("malformed PLAIN response")]
    Malformed,
    /// A field is not UTF-8 (RFC 4616 requires UTF-8).
    #[error("PLAIN response is not UTF-8")]
    NotUtf8,
    /// The client asked to act as another user; proxy authorization is not offered.
    #[error("[AUTH] authorization identity differs from authentication identity")]
    Authzid,
}

/// Decode a base64 PLAIN response. `=` is the empty response (RFC 5034), which PLAIN rejects.
pub fn decode_plain(response: &[u8]) -> Result<PlainCredentials, PlainError> {
    let decoded = if response == b"=" {
        Vec::new()
    } else {
        STANDARD.decode(response).map_err(|_| PlainError::Base64)?
    };
    let mut fields = decoded.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(PlainError::Malformed);
    };
    // The password is the last field, so a NUL in it would make four fields: RFC 4616 forbids it.
    if authcid.is_empty() || passwd.contains(&0) {
        return Err(PlainError::Malformed);
    }
    let utf8 = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| PlainError::NotUtf8);
    let user = utf8(authcid)?;
    if !authzid.is_empty() && authzid != authcid {
        return Err(PlainError::Authzid);
    }
    Ok(PlainCredentials {
        user,
        password: utf8(passwd)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(raw: &[u8]) -> Vec<u8> {
        STANDARD.encode(raw).into_bytes()
    }

    #[test]
    fn decodes_without_authzid() {
        assert_eq!(
            decode_plain(&enc(b"\0alice\0s3cret pass")),
            Ok(PlainCredentials {
                user: "alice".into(),
                password: "s3cret pass".into()
            })
        );
    }

    #[test]
    fn authzid_equal_to_authcid_is_fine() {
        assert_eq!(
            decode_plain(&enc(b"alice\0alice\0pw")).map(|c| c.user),
            Ok("alice".to_string())
        );
        assert_eq!(
            decode_plain(&enc(b"bob\0alice\0pw")),
            Err(PlainError::Authzid)
        );
    }

    #[test]
    fn debug_hides_password() {
        let creds = decode_plain(&enc(b"\0alice\0hunter2")).unwrap();
        let shown = format!("{creds:?}");
        assert!(shown.contains("alice") && !shown.contains("hunter2"));
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(decode_plain(b"=").unwrap_err(), PlainError::Malformed);
        assert_eq!(
            decode_plain(b"not base64!").unwrap_err(),
            PlainError::Base64
        );
        assert_eq!(
            decode_plain(&enc(b"alice\0pw")).unwrap_err(),
            PlainError::Malformed
        );
        assert_eq!(
            decode_plain(&enc(b"\0\0pw")).unwrap_err(),
            PlainError::Malformed
        );
        assert_eq!(
            decode_plain(&enc(b"\0alice\0p\0w")).unwrap_err(),
            PlainError::Malformed
        );
        assert_eq!(
            decode_plain(&enc(b"\0al\xffice\0pw")).unwrap_err(),
            PlainError::NotUtf8
        );
        // A 9-byte response needs no padding; a truncated encoding is rejected.
        assert_eq!(
            decode_plain(b"AGFsaWNlAHB3").map(|c| c.password),
            Ok("pw".to_string())
        );
        assert_eq!(
            decode_plain(b"AGFsaWNlAHB").unwrap_err(),
            PlainError::Base64
        );
    }
}
