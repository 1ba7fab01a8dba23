//! Generated test messages: RFC 5322 headers and a plain-text body of lines at most 78
//! characters long, padded to the requested size, plus SMTP dot-stuffing.

use rand::Rng;

/// Body text is drawn from these words so messages look like mail (and compress like it).
const WORDS: &[&str] = &[
    "the",
    "quarterly",
    "report",
    "is",
    "attached",
    "please",
    "review",
    "before",
    "our",
    "meeting",
    "on",
    "thursday",
    "and",
    "send",
    "comments",
    "to",
    "the",
    "team",
    "thanks",
    "for",
    "your",
    "help",
    "with",
    "migration",
    "server",
    "mailbox",
    "delivery",
    "schedule",
    "budget",
    "project",
    "update",
    "invoice",
    "lunch",
    "tomorrow",
    "regards",
    "question",
    "about",
    "latest",
    "draft",
    "numbers",
    "look",
    "good",
    "let",
    "me",
    "know",
    "if",
    "anything",
    "changes",
    "ringpost",
    "load",
    "test",
    "message",
    "body",
    "line",
];

/// Longest body line, excluding CRLF (RFC 5322 §2.1.1 recommends 78).
pub const MAX_LINE: usize = 78;

/// The envelope-independent parts of a message for one connection: the body is made once,
/// headers change per message.
#[derive(Debug, Clone)]
pub struct Template {
    from: String,
    size: usize,
    /// Body lines, each ending in CRLF; never starts with '.', so it needs no dot-stuffing.
    body: Vec<u8>,
    /// End offset of each body line.
    line_ends: Vec<usize>,
}

/// The per-message header values.
#[derive(Debug, Clone, Copy)]
pub struct Headers<'a> {
    /// Recipients shown in `To:`.
    pub to: &'a [&'a str],
    /// Unique id put in `Message-ID` and `X-Load-Id`.
    pub id: &'a str,
    /// RFC 5322 date-time.
    pub date: &'a str,
}

impl Template {
    /// A template whose messages are `size` bytes long (or header block + 3 bytes, if more).
    pub fn new(from: &str, size: usize, rng: &mut impl Rng) -> Template {
        // Headers are about 300 bytes; the body is cut to fit when the message is built.
        let mut body = Vec::with_capacity(size + MAX_LINE + 2);
        let mut line_ends = Vec::new();
        while body.len() < size {
            let mut line = String::with_capacity(MAX_LINE);
            loop {
                let w = WORDS[rng.gen_range(0..WORDS.len())];
                if line.len() + w.len() + 1 > MAX_LINE {
                    break;
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(w);
            }
            body.extend_from_slice(line.as_bytes());
            body.extend_from_slice(b"\r\n");
            line_ends.push(body.len());
        }
        Template {
            from: from.to_string(),
            size,
            body,
            line_ends,
        }
    }

    /// Writes the complete message (headers, blank line, body) into `out`.
    pub fn write_message(&self, h: &Headers<'_>, out: &mut Vec<u8>) {
        let start = out.len();
        let to = if h.to.is_empty() {
            "undisclosed-recipients:;".to_string()
        } else {
            h.to.join(", ")
        };
        let header = format!(
            "From: Load Generator <{from}>\r\nTo: {to}\r\nSubject: ringpost-load test message {id}\r\n\
             Date: {date}\r\nMessage-ID: <{id}@ringpost-load.invalid>\r\nX-Load-Id: {id}\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
            from = self.from,
            id = h.id,
            date = h.date,
        );
        out.extend_from_slice(header.as_bytes());
        let want = self.size.saturating_sub(header.len()).max(3);
        // Whole template lines that fit; `line_ends[i]` is the end of line i.
        let mut taken = match self.line_ends.binary_search(&want) {
            Ok(i) => self.line_ends[i],
            Err(0) => 0,
            Err(i) => self.line_ends[i - 1],
        };
        let mut rest = want - taken;
        if (1..3).contains(&rest) {
            // Too little for a line of its own: give back the last whole line.
            let prev = self
                .line_ends
                .iter()
                .rev()
                .find(|&&e| e < taken)
                .copied()
                .unwrap_or(0);
            rest += taken - prev;
            taken = prev;
        }
        out.extend_from_slice(&self.body[..taken]);
        fill_lines(rest, out);
        debug_assert_eq!(out.len() - start, header.len() + want);
    }
}

/// Appends filler lines (CRLF included) totalling exactly `n` bytes; `n` is 0 or at least 3.
fn fill_lines(mut n: usize, out: &mut Vec<u8>) {
    const FILLER: &[u8] =
        b"padding padding padding padding padding padding padding padding padding padding";
    while n > 0 {
        let len = if n <= MAX_LINE + 2 {
            n.saturating_sub(2).max(1)
        } else if n >= MAX_LINE + 5 {
            MAX_LINE
        } else {
            // Leave room for a last 3-byte line.
            n - 5
        };
        out.extend_from_slice(&FILLER[..len]);
        out.extend_from_slice(b"\r\n");
        n = n.saturating_sub(len + 2);
    }
}

/// Appends `msg` to `out` with SMTP dot-stuffing (RFC 5321 §4.5.2) and the `.` terminator.
/// `msg` must end in CRLF.
pub fn dot_stuff_into(msg: &[u8], out: &mut Vec<u8>) {
    let mut at_line_start = true;
    let mut last = 0;
    for (i, &b) in msg.iter().enumerate() {
        if at_line_start && b == b'.' {
            out.extend_from_slice(&msg[last..i]);
            out.push(b'.');
            last = i;
        }
        at_line_start = b == b'\n';
    }
    out.extend_from_slice(&msg[last..]);
    if !msg.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// The current time as an RFC 5322 date-time, e.g. `Tue, 25 Nov 2025 12:00:00 +0000`.
pub fn rfc5322_now() -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(size: usize) -> Vec<u8> {
        let t = Template::new("load@example.org", size, &mut rand::thread_rng());
        let mut out = Vec::new();
        t.write_message(
            &Headers {
                to: &["a@example.org", "b@example.org"],
                id: "run1-0-1",
                date: "Tue, 25 Nov 2025 12:00:00 +0000",
            },
            &mut out,
        );
        out
    }

    #[test]
    fn messages_have_requested_size_and_short_lines() {
        for size in [400, 1000, 2048, 2049, 2050, 10_000, 100_000] {
            let m = build(size);
            assert_eq!(m.len(), size, "size {size}");
            assert!(m.ends_with(b"\r\n"));
            for line in m.split(|&b| b == b'\n') {
                assert!(line.len() <= MAX_LINE + 1, "line too long: {}", line.len());
                if !line.is_empty() {
                    assert_eq!(line.last(), Some(&b'\r'));
                }
            }
            let text = String::from_utf8(m).unwrap();
            assert!(text.contains("\r\nMessage-ID: <run1-0-1@ringpost-load.invalid>\r\n"));
            assert!(text.contains("\r\nX-Load-Id: run1-0-1\r\n"));
            assert!(text.contains("\r\n\r\n"));
        }
    }

    #[test]
    fn tiny_sizes_still_make_a_valid_message() {
        let m = build(10);
        assert!(m.len() > 10);
        assert!(m.ends_with(b"\r\n\r\np\r\n"));
    }

    #[test]
    fn dot_stuffing() {
        let mut out = Vec::new();
        dot_stuff_into(b".a\r\nb.\r\n.\r\n", &mut out);
        assert_eq!(out, b"..a\r\nb.\r\n..\r\n.\r\n");
        let mut out = Vec::new();
        dot_stuff_into(b"no end", &mut out);
        assert_eq!(out, b"no end\r\n.\r\n");
    }

    #[test]
    fn date_format() {
        let d = rfc5322_now();
        assert_eq!(d.len(), 31, "{d}");
        assert!(d.ends_with(" +0000"));
    }
}
