//! Multi-line responses (RFC 1939 section 3): byte-stuffing and the `.` terminator.
//!
//! Message bodies are copied exactly once, straight from the stored `Bytes` into the output
//! buffer, while the stuffing dots are inserted (memchr finds the few places that need one).

use bytes::{BufMut, BytesMut};
use memchr::memmem;

/// Append `data` byte-stuffed, end its last line with CRLF if needed, and append the `.CRLF`
/// terminator.
///
/// A line starts at the beginning of `data` and after every LF. Stored mail has CRLF line ends,
/// but a bare LF is treated as a line end too: a client that splits on LF must never see a
/// line consisting of `.` that is not the terminator, and one that splits on CRLF only loses
/// nothing from the extra dot. The stored octets are otherwise sent unchanged so that the size
/// announced by `LIST` stays exact.
pub fn write_stuffed(out: &mut BytesMut, data: &[u8]) {
    // Stuffing dots are rare; the reserve covers the usual case in one allocation.
    out.reserve(data.len() + 8);
    if data.first() == Some(&b'.') {
        out.put_u8(b'.');
    }
    let mut copied = 0;
    for lf in memmem::find_iter(data, b"\n.") {
        // Copy through the LF, add the stuffing dot; the line's own dot follows with the next
        // chunk.
        out.extend_from_slice(&data[copied..=lf]);
        out.put_u8(b'.');
        copied = lf + 1;
    }
    out.extend_from_slice(&data[copied..]);
    if !data.is_empty() && !data.ends_with(b"\r\n") {
        match data.last() {
            // A bare CR or LF at the very end: complete it to CRLF rather than adding a line.
            Some(b'\r') => out.put_u8(b'\n'),
            Some(b'\n') => {
                out.truncate(out.len() - 1);
                out.extend_from_slice(b"\r\n");
            }
            _ => out.extend_from_slice(b"\r\n"),
        }
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stuffed(data: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_stuffed(&mut out, data);
        out.to_vec()
    }

    /// What a client does: strip the terminator, then one leading dot from each line.
    fn unstuff(wire: &[u8]) -> Vec<u8> {
        let body = wire.strip_suffix(b".\r\n").expect("terminator present");
        let mut out = Vec::new();
        let mut at_line_start = true;
        let mut i = 0;
        while i < body.len() {
            let b = body[i];
            if !(at_line_start && b == b'.') {
                out.push(b);
            }
            at_line_start = b == b'\n';
            i += 1;
        }
        out
    }

    #[test]
    fn plain_body_is_unchanged() {
        assert_eq!(
            stuffed(b"Subject: x\r\n\r\nhello\r\n"),
            b"Subject: x\r\n\r\nhello\r\n.\r\n"
        );
    }

    #[test]
    fn empty_body_is_just_the_terminator() {
        assert_eq!(stuffed(b""), b".\r\n");
    }

    #[test]
    fn leading_dots_are_doubled() {
        assert_eq!(stuffed(b".\r\n"), b"..\r\n.\r\n");
        assert_eq!(stuffed(b".hidden\r\n"), b"..hidden\r\n.\r\n");
        assert_eq!(
            stuffed(b"a\r\n.\r\n..\r\nb.c\r\n"),
            b"a\r\n..\r\n...\r\nb.c\r\n.\r\n"
        );
    }

    #[test]
    fn missing_final_crlf_is_added() {
        assert_eq!(stuffed(b"no newline"), b"no newline\r\n.\r\n");
        assert_eq!(stuffed(b"a\r\n."), b"a\r\n..\r\n.\r\n");
        assert_eq!(stuffed(b"cr only\r"), b"cr only\r\n.\r\n");
        assert_eq!(stuffed(b"lf only\n"), b"lf only\r\n.\r\n");
    }

    #[test]
    fn bare_lf_starts_a_line_for_stuffing() {
        assert_eq!(stuffed(b"a\n.\r\n"), b"a\n..\r\n.\r\n");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn roundtrip_and_single_terminator(
            data in proptest::collection::vec(
                prop_oneof![Just(b'.'), Just(b'\r'), Just(b'\n'), Just(b'a')],
                0..200,
            )
        ) {
            let wire = stuffed(&data);
            prop_assert!(wire.ends_with(b".\r\n"));
            // The unstuffed wire is the data with its end completed to CRLF.
            let mut expected = data.clone();
            if !expected.is_empty() && !expected.ends_with(b"\r\n") {
                if expected.ends_with(b"\n") {
                    expected.pop();
                }
                if !expected.ends_with(b"\r") {
                    expected.push(b'\r');
                }
                expected.push(b'\n');
            }
            prop_assert_eq!(unstuff(&wire), expected);
            // No line other than the last one is a lone dot, whichever line end a client uses.
            let content = &wire[..wire.len() - 3];
            prop_assert!(content.is_empty() || content.ends_with(b"\r\n"));
            prop_assert!(memmem::find(content, b"\n.\r\n").is_none());
            prop_assert!(memmem::find(content, b"\n.\n").is_none());
            prop_assert!(!content.starts_with(b".\r\n"));
        }
    }
}
