//! POP3 hot paths: parsing pipelined commands, and RETR byte-stuffing throughput.
//!
//! Run: `cargo bench --bench pop3_parse`.

use std::hint::black_box;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringpost::pop3::multiline::write_stuffed;
use ringpost::pop3::{
    parse_command, Action, Event, Maildrop, MaildropEntry, Parse, Pop3Config, Session, Transport,
};

/// A client's pipelined batch: what a POP3 downloader sends after STAT/UIDL.
fn pipelined(n: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    for i in 1..=n {
        buf.extend_from_slice(
            format!("LIST {i}\r\nUIDL {i}\r\nTOP {i} 10\r\nRETR {i}\r\nDELE {i}\r\n").as_bytes(),
        );
    }
    buf.extend_from_slice(b"STAT\r\nNOOP\r\nQUIT\r\n");
    buf
}

fn bench_parse(c: &mut Criterion) {
    let buf = pipelined(200);
    let mut g = c.benchmark_group("pop3_parse");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("pipelined_1003_commands", |b| {
        b.iter(|| {
            let mut rest = black_box(&buf[..]);
            let mut n = 0usize;
            while let Parse::Line { len, value } = parse_command(rest) {
                n += usize::from(value.is_ok());
                rest = &rest[len..];
            }
            n
        })
    });
    g.finish();
}

/// A plausible message of about `size` bytes: headers, then 76-column lines, some of them
/// starting with a dot (which must be stuffed).
fn message(size: usize) -> Bytes {
    let mut m = b"Return-Path: <a@example.org>\r\nFrom: a@example.org\r\nTo: b@example.org\r\n\
Subject: benchmark\r\nMessage-ID: <1@example.org>\r\n\r\n"
        .to_vec();
    let mut i = 0usize;
    while m.len() < size {
        if i.is_multiple_of(40) {
            m.extend_from_slice(b".a line that starts with a dot\r\n");
        } else {
            m.extend_from_slice(&[b'x'; 74]);
            m.extend_from_slice(b"\r\n");
        }
        i += 1;
    }
    m.truncate(size);
    Bytes::from(m)
}

fn bench_stuffing(c: &mut Criterion) {
    let mut g = c.benchmark_group("pop3_retr_stuffing");
    for size in [2 * 1024, 1024 * 1024] {
        let body = message(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            let mut out = BytesMut::with_capacity(size + size / 16);
            b.iter(|| {
                out.clear();
                write_stuffed(&mut out, black_box(body));
                out.len()
            })
        });
    }
    g.finish();
}

/// RETR through the session: command parse, Fetch action, stuffing, output hand-off.
fn bench_session_retr(c: &mut Criterion) {
    let mut g = c.benchmark_group("pop3_session_retr");
    for size in [2 * 1024, 1024 * 1024] {
        let body = message(size);
        let mut session = Session::new(
            Arc::new(Pop3Config {
                allow_plaintext_auth: true,
                ..Pop3Config::default()
            }),
            Transport::Plaintext,
        );
        login(&mut session, size as u64);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| {
                let p = session.process(b"RETR 1\r\n");
                assert!(matches!(p.event, Event::Action(Action::Fetch { uid: 1 })));
                session.body_result(Ok(body.clone())).ok();
                let _ = session.process(b"");
                session.take_output().len()
            })
        });
    }
    g.finish();
}

fn login(session: &mut Session, size: u64) {
    session.take_output();
    let _ = session.process(b"USER a\r\n");
    let _ = session.process(b"PASS b\r\n");
    session.auth_result(Some("a".into())).ok();
    let _ = session.process(b"");
    session
        .maildrop_result(Ok(Maildrop {
            uidvalidity: 1,
            entries: vec![MaildropEntry { uid: 1, size }],
        }))
        .ok();
    let _ = session.process(b"");
    assert!(session.is_authenticated());
    session.take_output();
}

criterion_group!(benches, bench_parse, bench_stuffing, bench_session_retr);
criterion_main!(benches);
