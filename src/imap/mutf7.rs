//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3).
//!
//! Printable US-ASCII (0x20..=0x7e) stands for itself except "&", written "&-"; every other
//! character is UTF-16 in a modified BASE64 ("," for "/", no padding) between "&" and "-".
//! [`decode`] accepts only the canonical form, so every name has exactly one spelling on the
//! wire and in storage.

use base64::alphabet::Alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use thiserror::Error;

/// The modified BASE64 alphabet of RFC 3501: RFC 2045's, with "," in place of "/".
const ALPHABET: Alphabet =
    match Alphabet::new("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,") {
        Ok(alphabet) => alphabet,
        Err(_) => panic!("invalid modified BASE64 alphabet"),
    };

/// No padding, and non-zero bits after the last full UTF-16 unit rejected (non-canonical).
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &ALPHABET,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// Why a mailbox name is not canonical modified UTF-7. Positions are byte offsets in the name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mutf7Error {
    /// A byte outside printable US-ASCII appears outside a shift sequence.
    #[error("byte {byte:#04x} at {pos} is not printable US-ASCII")]
    NotPrintable {
        /// Offset of the byte.
        pos: usize,
        /// The byte.
        byte: u8,
    },
    /// An "&" shift sequence has no closing "-".
    #[error("shift sequence at {pos} is not terminated by '-'")]
    Unterminated {
        /// Offset of the "&".
        pos: usize,
    },
    /// A byte inside a shift sequence is not in the modified BASE64 alphabet.
    #[error("invalid modified BASE64 byte at {pos}")]
    BadBase64 {
        /// Offset of the byte.
        pos: usize,
    },
    /// The shift sequence decodes to something that is not whole, valid UTF-16.
    #[error("shift sequence at {pos} is not valid UTF-16")]
    BadUtf16 {
        /// Offset of the "&".
        pos: usize,
    },
    /// The name decodes, but is not spelled the one canonical way.
    #[error("non-canonical modified UTF-7 at {pos}: {reason}")]
    NonCanonical {
        /// Offset of the "&" of the offending shift sequence.
        pos: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

fn is_direct(c: u32) -> bool {
    (0x20..=0x7e).contains(&c)
}

/// Decodes a modified UTF-7 mailbox name, rejecting every non-canonical spelling: printable
/// ASCII inside a shift, "&" not written "&-", two shift sequences back to back, padding bits
/// that are not zero, a shift holding a partial character or an extra symbol.
pub fn decode(name: &str) -> Result<String, Mutf7Error> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    let mut pos = 0;
    // End of the last shift sequence, to catch "&AOk-&AOk-" (should be one sequence).
    let mut last_shift_end = None;
    while let Some(&b) = bytes.get(pos) {
        if b != b'&' {
            if !is_direct(u32::from(b)) {
                return Err(Mutf7Error::NotPrintable { pos, byte: b });
            }
            out.push(char::from(b));
            pos += 1;
            continue;
        }
        let start = pos;
        let Some(len) = bytes[start + 1..].iter().position(|&c| c == b'-') else {
            return Err(Mutf7Error::Unterminated { pos: start });
        };
        let run = &bytes[start + 1..start + 1 + len];
        pos = start + len + 2;
        if run.is_empty() {
            out.push('&');
            continue;
        }
        if last_shift_end == Some(start) {
            return Err(Mutf7Error::NonCanonical {
                pos: start,
                reason: "adjacent shift sequences",
            });
        }
        last_shift_end = Some(pos);
        decode_run(run, start, &mut out)?;
    }
    Ok(out)
}

/// Decodes the BASE64 between "&" (at `start`) and "-", appending the characters to `out`.
fn decode_run(run: &[u8], start: usize, out: &mut String) -> Result<(), Mutf7Error> {
    // Checked here so that '=' (padding) is reported as a bad byte, not a length problem.
    if let Some(off) = run
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'+' || c == b','))
    {
        return Err(Mutf7Error::BadBase64 {
            pos: start + 1 + off,
        });
    }
    let bytes = ENGINE.decode(run).map_err(|e| match e {
        base64::DecodeError::InvalidByte(off, _) => Mutf7Error::BadBase64 {
            pos: start + 1 + off,
        },
        base64::DecodeError::InvalidLastSymbol(..) => Mutf7Error::NonCanonical {
            pos: start,
            reason: "non-zero padding bits",
        },
        _ => Mutf7Error::NonCanonical {
            pos: start,
            reason: "shift sequence length is not whole BASE64",
        },
    })?;
    if bytes.len() % 2 != 0 {
        // A symbol beyond the last whole UTF-16 unit: either junk or a half character.
        return Err(Mutf7Error::NonCanonical {
            pos: start,
            reason: "shift sequence does not end on a UTF-16 unit",
        });
    }
    let units = bytes
        .chunks_exact(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
    for c in char::decode_utf16(units) {
        let c = c.map_err(|_| Mutf7Error::BadUtf16 { pos: start })?;
        if is_direct(u32::from(c)) {
            return Err(Mutf7Error::NonCanonical {
                pos: start,
                reason: "printable US-ASCII encoded in a shift sequence",
            });
        }
        out.push(c);
    }
    Ok(())
}

/// Encodes a mailbox name in canonical modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut run: Vec<u8> = Vec::new();
    let flush = |run: &mut Vec<u8>, out: &mut String| {
        if !run.is_empty() {
            out.push('&');
            out.push_str(&ENGINE.encode(&run[..]));
            out.push('-');
            run.clear();
        }
    };
    for c in name.chars() {
        if is_direct(u32::from(c)) {
            flush(&mut run, &mut out);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                run.extend_from_slice(&unit.to_be_bytes());
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc3501_example_round_trips() {
        let wire = "~peter/mail/&U,BTFw-/&ZeVnLIqe-";
        let name = "~peter/mail/\u{53f0}\u{5317}/\u{65e5}\u{672c}\u{8a9e}";
        assert_eq!(decode(wire).unwrap(), name);
        assert_eq!(encode(name), wire);
    }

    #[test]
    fn plain_ascii_and_ampersand() {
        assert_eq!(decode("INBOX").unwrap(), "INBOX");
        assert_eq!(encode("INBOX"), "INBOX");
        assert_eq!(decode("&-").unwrap(), "&");
        assert_eq!(decode("A&-B&-").unwrap(), "A&B&");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(decode("Tom &- Jerry").unwrap(), "Tom & Jerry");
        assert_eq!(decode("").unwrap(), "");
    }

    #[test]
    fn non_ascii_round_trips() {
        for (name, wire) in [
            ("Entw\u{fc}rfe", "Entw&APw-rfe"),
            ("\u{e9}\u{e9}", "&AOkA6Q-"),
            ("Gel\u{f6}scht & mehr", "Gel&APY-scht &- mehr"),
            // Outside the BMP: a surrogate pair.
            ("\u{1f600}", "&2D3eAA-"),
            // Control characters are not printable: they are encoded too.
            ("a\tb", "a&AAk-b"),
            ("\u{7f}", "&AH8-"),
        ] {
            assert_eq!(encode(name), wire, "encode {name:?}");
            assert_eq!(decode(wire).unwrap(), name, "decode {wire:?}");
        }
    }

    #[test]
    fn rejects_encoded_printable_ascii() {
        // "&AGE-" is 'a'; "&ACY-" is '&' (must be "&-").
        for wire in ["&AGE-", "x&ACY-", "&AOkAYQ-"] {
            assert!(
                matches!(decode(wire), Err(Mutf7Error::NonCanonical { .. })),
                "{wire}"
            );
        }
    }

    #[test]
    fn rejects_adjacent_shift_sequences() {
        assert_eq!(
            decode("&AOk-&AOk-"),
            Err(Mutf7Error::NonCanonical {
                pos: 5,
                reason: "adjacent shift sequences"
            })
        );
        assert!(matches!(
            decode("&AGE-&AGE-"),
            Err(Mutf7Error::NonCanonical { .. })
        ));
        // Separated by a literal "&-" they are fine.
        assert_eq!(decode("&AOk-&-&AOk-").unwrap(), "\u{e9}&\u{e9}");
    }

    #[test]
    fn rejects_unterminated_shift() {
        assert_eq!(decode("abc&AOk"), Err(Mutf7Error::Unterminated { pos: 3 }));
        assert_eq!(decode("&"), Err(Mutf7Error::Unterminated { pos: 0 }));
    }

    #[test]
    fn rejects_bad_base64() {
        // '/' is standard BASE64 but not modified BASE64; '=' padding is not allowed either.
        assert_eq!(decode("&U/BTFw-"), Err(Mutf7Error::BadBase64 { pos: 2 }));
        assert_eq!(decode("&AOk=-"), Err(Mutf7Error::BadBase64 { pos: 4 }));
        assert!(matches!(
            decode("&A!k-"),
            Err(Mutf7Error::BadBase64 { pos: 2 })
        ));
    }

    #[test]
    fn rejects_nonzero_padding_bits() {
        // "&AOk-" is U+00E9 with two zero padding bits; "&AOl-" sets one of them.
        assert_eq!(
            decode("&AOl-"),
            Err(Mutf7Error::NonCanonical {
                pos: 0,
                reason: "non-zero padding bits"
            })
        );
    }

    #[test]
    fn rejects_partial_or_extra_symbols() {
        // One symbol is not even one byte; "AOkA" is 3 bytes: one unit and half of another.
        for wire in ["&A-", "&AOkA-", "&AOkAAAA-"] {
            assert!(
                matches!(decode(wire), Err(Mutf7Error::NonCanonical { .. })),
                "{wire}: {:?}",
                decode(wire)
            );
        }
    }

    #[test]
    fn rejects_lone_surrogates() {
        // U+D83D alone (high surrogate, no low one).
        assert_eq!(decode("&2D0-"), Err(Mutf7Error::BadUtf16 { pos: 0 }));
    }

    #[test]
    fn rejects_unencoded_non_ascii_and_controls() {
        assert_eq!(
            decode("caf\u{e9}"),
            Err(Mutf7Error::NotPrintable { pos: 3, byte: 0xc3 })
        );
        assert_eq!(
            decode("a\tb"),
            Err(Mutf7Error::NotPrintable {
                pos: 1,
                byte: b'\t'
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn encode_then_decode_is_identity(name in "\\PC{0,24}") {
            let wire = encode(&name);
            prop_assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(&wire).unwrap(), name);
        }

        #[test]
        fn decode_accepts_only_canonical(wire in "[ -~]{0,24}") {
            // Whatever decodes must re-encode to exactly the same spelling.
            if let Ok(name) = decode(&wire) {
                prop_assert_eq!(encode(&name), wire);
            }
        }
    }
}
