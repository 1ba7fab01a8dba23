//! STAND-IN so the imap branch compiles until the real modified UTF-7 module (written on the
//! `mime` branch with the same API) is merged; on conflict take the `mime` branch's file.

/// A name that is not canonical modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid modified UTF-7")]
pub struct Mutf7Error;

/// Modified UTF-7 to UTF-8 (stand-in: ASCII and `&-` only).
pub fn decode(name: &str) -> Result<String, Mutf7Error> {
    let mut out = String::new();
    let mut rest = name;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        if rest[i..].starts_with("&-") {
            out.push('&');
            rest = &rest[i + 2..];
        } else {
            return Err(Mutf7Error);
        }
    }
    out.push_str(rest);
    if !out.is_ascii() {
        return Err(Mutf7Error);
    }
    Ok(out)
}

/// UTF-8 to modified UTF-7 (stand-in: escapes `&` only).
pub fn encode(name: &str) -> String {
    name.replace('&', "&-")
}
