//! IMAP command parsing throughput on a client-like mix of FETCH, UID FETCH and STORE.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringpost::imap::parser::parse;

const MIX: &[&[u8]] = &[
    b"a1 FETCH 1:* (FLAGS)\r\n",
    b"a2 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n",
    b"a3 UID FETCH 4821 (UID RFC822.SIZE BODY.PEEK[]<0.16384>)\r\n",
    b"a4 UID STORE 4821 +FLAGS.SILENT (\\Seen)\r\n",
    b"a5 STORE 1:5,7,9:12 -FLAGS (\\Deleted $Junk)\r\n",
    b"a6 UID FETCH 1:4821 (FLAGS) (CHANGEDSINCE 123456789)\r\n",
    b"a7 FETCH 3 (BODYSTRUCTURE ENVELOPE INTERNALDATE)\r\n",
    b"a8 UID STORE 100:200 (UNCHANGEDSINCE 42) FLAGS (\\Answered $Forwarded)\r\n",
];

fn bench_parse(c: &mut Criterion) {
    let mut all = Vec::new();
    for m in MIX {
        all.extend_from_slice(m);
    }
    let mut g = c.benchmark_group("imap_parse");
    g.throughput(Throughput::Bytes(all.len() as u64));
    g.bench_function("fetch_store_mix", |b| {
        b.iter(|| {
            let mut rest = black_box(&all[..]);
            let mut n = 0;
            while !rest.is_empty() {
                match parse(rest) {
                    Ok((cmd, used)) => {
                        black_box(&cmd);
                        rest = &rest[used..];
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            assert_eq!(n, MIX.len());
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
