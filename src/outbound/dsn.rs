//! Delivery status notifications (RFC 3464): the bounce a sender gets when we give up.

/// Builds a multipart/report bounce for `failed` (recipient, reason) of the original message.
pub fn bounce(
    hostname: &str,
    sender: &str,
    failed: &[(String, String)],
    original: &[u8],
    now: &str,
) -> Vec<u8> {
    let boundary = format!("ringpost-dsn-{:016x}", rand::random::<u64>());
    let headers_end = memchr::memmem::find(original, b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(original.len());
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: <{sender}>\r\n"));
    m.push_str("Subject: Undelivered Mail Returned to Sender\r\n");
    m.push_str(&format!("Date: {now}\r\n"));
    m.push_str(&format!("Message-ID: <{}.dsn@{hostname}>\r\n", boundary));
    m.push_str("Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ));
    m.push_str(&format!("This is the mail system at {hostname}.\r\n\r\nYour message could not be delivered to:\r\n\r\n"));
    for (rcpt, why) in failed {
        m.push_str(&format!("<{rcpt}>: {why}\r\n"));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    m.push_str(&format!("Reporting-MTA: dns; {hostname}\r\n"));
    for (rcpt, why) in failed {
        let status = if why.starts_with('4') {
            "4.0.0"
        } else {
            "5.0.0"
        };
        m.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\nDiagnostic-Code: smtp; {}\r\n",
            why.replace(['\r', '\n'], " ")
        ));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut out = m.into_bytes();
    out.extend_from_slice(&original[..headers_end]);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn bounce_names_recipients_and_keeps_original_headers() {
        let b = super::bounce(
            "mx.test",
            "a@x.org",
            &[("b@y.org".into(), "550 no such user".into())],
            b"Subject: hi\r\n\r\nbody",
            "now",
        );
        let s = String::from_utf8(b).unwrap();
        assert!(s.contains("Final-Recipient: rfc822; b@y.org"));
        assert!(s.contains("Status: 5.0.0"));
        assert!(s.contains("Subject: hi\r\n"));
        assert!(
            !s.contains("body"),
            "only the original headers are returned"
        );
    }
}
