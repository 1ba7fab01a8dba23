//! Sans-IO HTTP/1.1 for the metrics listener: parse one request head, route it, build the
//! response.
//!
//! Hand-written rather than pulling in an HTTP stack: the listener serves two GET paths to
//! scrapers and closes after each response, so all it needs is a strict request-line and
//! header-syntax check (RFC 9112 §3, §5) with a size cap.

/// Largest request head accepted (request line + headers), in bytes.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// A parsed request line (headers are checked for syntax and then ignored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The method token, e.g. `GET`.
    pub method: &'a str,
    /// The request-target, e.g. `/stats.json?reset=1`.
    pub target: &'a str,
}

/// Result of feeding the bytes received so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole request head; `len` bytes of the buffer were used.
    Complete {
        /// The request.
        request: Request<'a>,
        /// Bytes consumed (the head including its final empty line).
        len: usize,
    },
    /// More bytes are needed.
    Incomplete,
}

/// Why a request head is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The request line is not `method SP target SP HTTP-version`.
    #[error("malformed request line")]
    BadRequestLine,
    /// A header field line is malformed.
    #[error("malformed header field")]
    BadHeader,
    /// An HTTP/1.1 request without exactly one Host header (RFC 9112 §3.2).
    #[error("missing or repeated Host header")]
    Host,
    /// The version is well-formed but not HTTP/1.x.
    #[error("HTTP version not supported")]
    Version,
    /// The head exceeds [`MAX_REQUEST_HEAD`].
    #[error("request head too large")]
    TooLarge,
}

impl HttpError {
    /// Status code and reason phrase to answer with.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            HttpError::BadRequestLine | HttpError::BadHeader | HttpError::Host => {
                (400, "Bad Request")
            }
            HttpError::Version => (505, "HTTP Version Not Supported"),
            HttpError::TooLarge => (431, "Request Header Fields Too Large"),
        }
    }
}

/// tchar (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a request head from `buf` (bytes received so far). Garbage is refused as soon as the
/// bytes seen can no longer start a valid request, without waiting for the end of the head.
pub fn parse_request(buf: &[u8]) -> Result<Parsed<'_>, HttpError> {
    let Some(line_end) = memchr::memchr(b'\n', buf) else {
        check_line_prefix(buf)?;
        return if buf.len() >= MAX_REQUEST_HEAD {
            Err(HttpError::TooLarge)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let (request, http11) = parse_request_line(strip_cr(buf.get(..line_end).unwrap_or_default())?)?;
    // Header fields, one per line, until an empty line.
    let mut pos = line_end + 1;
    let mut hosts = 0usize;
    loop {
        let rest = buf.get(pos..).unwrap_or_default();
        let Some(n) = memchr::memchr(b'\n', rest) else {
            return if buf.len() >= MAX_REQUEST_HEAD {
                Err(HttpError::TooLarge)
            } else {
                Ok(Parsed::Incomplete)
            };
        };
        let line = strip_cr(rest.get(..n).unwrap_or_default())?;
        pos += n + 1;
        if pos > MAX_REQUEST_HEAD {
            return Err(HttpError::TooLarge);
        }
        if line.is_empty() {
            if http11 && hosts != 1 {
                return Err(HttpError::Host);
            }
            return Ok(Parsed::Complete { request, len: pos });
        }
        if check_header(line)? {
            hosts += 1;
        }
    }
}

/// A line must end in CRLF; a bare LF is refused (RFC 9112 §2.2 allows either, strictness
/// costs scrapers nothing).
fn strip_cr(line: &[u8]) -> Result<&[u8], HttpError> {
    line.strip_suffix(b"\r").ok_or(HttpError::BadRequestLine)
}

/// Can `buf` (no LF yet) still be the start of a request line? A CR may only come last.
fn check_line_prefix(buf: &[u8]) -> Result<(), HttpError> {
    let body = buf.strip_suffix(b"\r").unwrap_or(buf);
    let method_len = body.iter().position(|&b| b == b' ').unwrap_or(body.len());
    let (method, rest) = body.split_at(method_len);
    if method.iter().all(|&b| is_tchar(b)) && rest.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(HttpError::BadRequestLine)
    }
}

/// The request and whether it is HTTP/1.1 (rather than 1.0).
fn parse_request_line(line: &[u8]) -> Result<(Request<'_>, bool), HttpError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequestLine);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadRequestLine);
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(HttpError::BadRequestLine);
    }
    let http11 = match version {
        b"HTTP/1.1" => true,
        b"HTTP/1.0" => false,
        [b'H', b'T', b'T', b'P', b'/', d1, b'.', d2]
            if d1.is_ascii_digit() && d2.is_ascii_digit() =>
        {
            return Err(HttpError::Version)
        }
        _ => return Err(HttpError::BadRequestLine),
    };
    // Only ASCII bytes were accepted above, so these conversions cannot fail.
    let method = std::str::from_utf8(method).map_err(|_| HttpError::BadRequestLine)?;
    let target = std::str::from_utf8(target).map_err(|_| HttpError::BadRequestLine)?;
    Ok((Request { method, target }, http11))
}

/// `field-name ":" OWS field-value OWS`; obs-fold (leading whitespace) is refused (RFC 9112
/// §5.2). Returns whether it is a Host field.
fn check_header(line: &[u8]) -> Result<bool, HttpError> {
    let colon = memchr::memchr(b':', line).ok_or(HttpError::BadHeader)?;
    let (name, value) = line.split_at(colon);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::BadHeader);
    }
    if !value
        .iter()
        .skip(1)
        .all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f)
    {
        return Err(HttpError::BadHeader);
    }
    Ok(name.eq_ignore_ascii_case(b"host"))
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /stats.json[?reset=1]`: the `stats --json` object.
    StatsJson {
        /// Zero the counters after reading them.
        reset: bool,
    },
    /// Unknown path: 404.
    NotFound,
    /// Not GET or HEAD: 405.
    MethodNotAllowed,
}

impl Route {
    /// Routes a request. HEAD is answered like GET without a body and never resets.
    pub fn of(req: &Request<'_>) -> (Route, bool) {
        let head = req.method == "HEAD";
        if req.method != "GET" && !head {
            return (Route::MethodNotAllowed, false);
        }
        let (path, query) = req.target.split_once('?').unwrap_or((req.target, ""));
        let route = match path {
            "/metrics" => Route::Metrics,
            "/stats.json" => Route::StatsJson {
                reset: !head
                    && query
                        .split('&')
                        .any(|kv| matches!(kv, "reset=1" | "reset=true" | "reset")),
            },
            _ => Route::NotFound,
        };
        (route, head)
    }
}

/// A complete response with `Connection: close` (one request per connection).
pub fn response(status: u16, reason: &str, content_type: &str, body: &[u8], head: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n",
        body.len()
    );
    if status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

/// A plain-text error response for a status.
pub fn error_response(status: u16, reason: &str) -> Vec<u8> {
    let body = format!("{status} {reason}\n");
    response(
        status,
        reason,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(buf: &[u8]) -> Result<Parsed<'_>, HttpError> {
        parse_request(buf)
    }

    #[test]
    fn parses_complete_and_incomplete() {
        let full = b"GET /metrics HTTP/1.1\r\nHost: x\r\nUser-Agent: Prometheus/2.0\r\n\r\nbody";
        assert_eq!(
            req(full),
            Ok(Parsed::Complete {
                request: Request {
                    method: "GET",
                    target: "/metrics"
                },
                len: full.len() - 4
            })
        );
        for cut in 0..full.len() - 4 {
            assert_eq!(req(&full[..cut]), Ok(Parsed::Incomplete), "cut {cut}");
        }
    }

    #[test]
    fn refuses_garbage_early() {
        assert_eq!(req(b"\x16\x03\x01\x02"), Err(HttpError::BadRequestLine));
        assert_eq!(req(b"hello world\r\n"), Err(HttpError::BadRequestLine));
        assert_eq!(req(b"GET /\r\n\r\n"), Err(HttpError::BadRequestLine));
        assert_eq!(
            req(b"GET  / HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequestLine)
        );
        assert_eq!(req(b"GET / HTTP/1.1\n\n"), Err(HttpError::BadRequestLine));
        assert_eq!(req(b"GET / HTTP/2.0\r\n\r\n"), Err(HttpError::Version));
        assert_eq!(req(b"GET / HTTP/1.1\r\n\r\n"), Err(HttpError::Host));
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Err(HttpError::Host)
        );
        assert!(matches!(
            req(b"GET / HTTP/1.0\r\n\r\n"),
            Ok(Parsed::Complete { .. })
        ));
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
            Err(HttpError::BadHeader)
        );
        assert_eq!(
            req(b"GET / HTTP/1.1\r\n folded: x\r\n\r\n"),
            Err(HttpError::BadHeader)
        );
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nA: \x00\r\n\r\n"),
            Err(HttpError::BadHeader)
        );
        assert_eq!(req(b"G\rET"), Err(HttpError::BadRequestLine));
        assert_eq!(req(b"GET / HTTP/1.1\r"), Ok(Parsed::Incomplete));
    }

    #[test]
    fn caps_size() {
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_REQUEST_HEAD + 10 {
            big.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(req(&big), Err(HttpError::TooLarge));
        let long_line = vec![b'a'; MAX_REQUEST_HEAD];
        assert_eq!(req(&long_line), Err(HttpError::TooLarge));
    }

    #[test]
    fn routes() {
        let r = |m, t| {
            Route::of(&Request {
                method: m,
                target: t,
            })
        };
        assert_eq!(r("GET", "/metrics"), (Route::Metrics, false));
        assert_eq!(
            r("GET", "/stats.json"),
            (Route::StatsJson { reset: false }, false)
        );
        assert_eq!(
            r("GET", "/stats.json?reset=1"),
            (Route::StatsJson { reset: true }, false)
        );
        assert_eq!(
            r("GET", "/stats.json?x=2&reset=true"),
            (Route::StatsJson { reset: true }, false)
        );
        assert_eq!(
            r("HEAD", "/stats.json?reset=1"),
            (Route::StatsJson { reset: false }, true)
        );
        assert_eq!(r("GET", "/"), (Route::NotFound, false));
        assert_eq!(r("POST", "/metrics"), (Route::MethodNotAllowed, false));
    }

    #[test]
    fn builds_responses() {
        let r = response(200, "OK", "text/plain", b"hi", false);
        assert_eq!(
            r,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
              Cache-Control: no-store\r\nConnection: close\r\n\r\nhi"
        );
        let h = response(200, "OK", "text/plain", b"hi", true);
        assert!(h.ends_with(
            b"Content-Length: 2\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
        assert!(
            String::from_utf8_lossy(&error_response(405, "Method Not Allowed"))
                .contains("Allow: GET, HEAD\r\n")
        );
    }
}
