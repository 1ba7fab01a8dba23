//! SMTP hot paths: parsing a pipelined command batch, the DATA reader's throughput, and a whole
//! transaction through the session.
//!
//! Run: `cargo bench --bench smtp_parse`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringpost::smtp::data::{DataLimits, DataReader, DataStatus, Framing};
use ringpost::smtp::envelope::QueueIdGenerator;
use ringpost::smtp::parser::{parse, Parsed};
use ringpost::smtp::session::{
    Action, Directory, ListenerKind, Resolution, Session, SessionConfig,
};

fn pipelined_batch() -> Vec<u8> {
    let mut v = b"EHLO client.example.net\r\nMAIL FROM:<sender.name@example.net> SIZE=48213 BODY=8BITMIME\r\n".to_vec();
    for i in 0..20 {
        v.extend_from_slice(
            format!("RCPT TO:<recipient{i}@example.org> NOTIFY=FAILURE\r\n").as_bytes(),
        );
    }
    v.extend_from_slice(b"DATA\r\n");
    v
}

/// A message of about `size` octets in 72-column lines, with a few lines needing dot-stuffing.
fn message(size: usize) -> Vec<u8> {
    let mut v = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: benchmark\r\n\r\n".to_vec();
    let mut n = 0;
    while v.len() < size {
        if n % 50 == 0 {
            v.extend_from_slice(b"..a stuffed line\r\n");
        } else {
            v.extend_from_slice(&[b'x'; 70]);
            v.extend_from_slice(b"\r\n");
        }
        n += 1;
    }
    v.extend_from_slice(b".\r\n");
    v
}

fn bench_parse(c: &mut Criterion) {
    let batch = pipelined_batch();
    let mut g = c.benchmark_group("smtp_parse");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("pipelined_batch_23_commands", |b| {
        b.iter(|| {
            let mut rest: &[u8] = black_box(&batch);
            let mut n = 0;
            while let Parsed::Complete { command, len } = parse(rest, 1000) {
                black_box(&command);
                rest = &rest[len..];
                n += 1;
            }
            n
        })
    });
    g.finish();
}

fn bench_data(c: &mut Criterion) {
    let mut g = c.benchmark_group("smtp_data_reader");
    for (name, size) in [("2KiB", 2 * 1024), ("1MiB", 1024 * 1024)] {
        let msg = message(size);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut r = DataReader::new(
                    Framing::DotStuffed,
                    DataLimits::default(),
                    Some(msg.len() as u64),
                );
                // Feed in 16 KiB reads, as a socket would deliver them.
                for chunk in black_box(&msg).chunks(16 * 1024) {
                    if let DataStatus::Complete { .. } = r.feed(chunk) {
                        break;
                    }
                }
                r.finish().map(|b| b.len())
            })
        });
    }
    g.finish();
}

struct AllLocal;

impl Directory for AllLocal {
    fn resolve(&self, addr: &str) -> Resolution {
        Resolution::Local(vec![addr.to_owned()])
    }
    fn may_send_as(&self, _account: &str, _from: &str) -> bool {
        true
    }
}

fn bench_session(c: &mut Criterion) {
    let cfg = Arc::new(SessionConfig::new(
        "mx.example.org",
        ListenerKind::Mx,
        Arc::new(QueueIdGenerator::new(0)),
    ));
    let mut input = pipelined_batch();
    input.extend_from_slice(&message(2 * 1024));
    input.extend_from_slice(b"QUIT\r\n");
    let mut g = c.benchmark_group("smtp_session");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("transaction_20_rcpts_2KiB", |b| {
        b.iter(|| {
            let mut s = Session::new(cfg.clone(), IpAddr::V4(Ipv4Addr::LOCALHOST), false);
            s.greeting();
            let mut rest: &[u8] = black_box(&input);
            loop {
                let p = s.feed(rest, &AllLocal);
                rest = &rest[p.consumed..];
                match p.action {
                    Some(Action::Deliver(env)) => {
                        black_box(&env);
                        s.delivery_result(Ok(()));
                    }
                    Some(_) => unreachable!("no TLS or AUTH in this script"),
                    None => break,
                }
            }
            s.take_output().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse, bench_data, bench_session);
criterion_main!(benches);
