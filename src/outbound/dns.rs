//! MX resolution (RFC 5321 §5.1) with hickory-proto messages over UDP to the system resolver.
//! Blocking: callers run it on a blocking thread.

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// Why a domain could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The domain does not exist or publishes a null MX (RFC 7505): permanent.
    #[error("{0}: domain does not accept mail")]
    NoMail(String),
    /// The resolver failed or timed out: try again later.
    #[error("{domain}: DNS lookup failed: {message}")]
    Temporary {
        /// The domain.
        domain: String,
        /// What failed.
        message: String,
    },
}

/// The first nameserver in /etc/resolv.conf (127.0.0.53 style stubs included).
fn nameserver() -> SocketAddr {
    let conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 53)))
}

/// Mail exchangers for `domain`, best first; the domain itself when it has no MX (implicit MX).
pub fn mail_exchangers(domain: &str) -> Result<Vec<String>, DnsError> {
    let temp = |m: String| DnsError::Temporary {
        domain: domain.into(),
        message: m,
    };
    let name = Name::from_ascii(format!("{}.", domain.trim_end_matches('.')))
        .map_err(|e| DnsError::NoMail(format!("{domain} ({e})")))?;
    let mut msg = Message::new();
    msg.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, RecordType::MX));
    let wire = msg.to_vec().map_err(|e| temp(e.to_string()))?;
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| temp(e.to_string()))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| temp(e.to_string()))?;
    let ns = nameserver();
    let mut buf = [0u8; 4096];
    let mut last = String::from("no answer");
    for _ in 0..3 {
        if let Err(e) = sock.send_to(&wire, ns) {
            last = e.to_string();
            continue;
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let answer = match Message::from_vec(&buf[..n]) {
            Ok(a) if a.id() == msg.id() => a,
            Ok(_) => continue,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        return match answer.response_code() {
            ResponseCode::NXDomain => Err(DnsError::NoMail(domain.into())),
            ResponseCode::NoError => {
                let mut mx: Vec<(u16, String)> = answer
                    .answers()
                    .iter()
                    .filter_map(|r| match r.data() {
                        Some(RData::MX(m)) => Some((m.preference(), m.exchange().to_ascii())),
                        _ => None,
                    })
                    .collect();
                mx.sort();
                if mx.len() == 1 && mx[0].1 == "." {
                    return Err(DnsError::NoMail(domain.into()));
                }
                if mx.is_empty() {
                    return Ok(vec![domain.to_string()]);
                }
                Ok(mx
                    .into_iter()
                    .map(|(_, h)| h.trim_end_matches('.').to_string())
                    .collect())
            }
            code => Err(temp(format!("resolver answered {code}"))),
        };
    }
    Err(temp(last))
}
