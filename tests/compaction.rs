//! Deleted mail gives its disk space back: with small log segments, mail delivered and then
//! deleted over POP3 leaves segments that compaction empties and deletes, while the mail that
//! stays reads back byte-exact, before and after a kill -9.

mod common;
use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest number of segment files any shard has.
fn most_segments(data: &Path) -> usize {
    std::fs::read_dir(data.join("shards"))
        .unwrap()
        .map(|d| {
            std::fs::read_dir(d.unwrap().path())
                .unwrap()
                .filter(|e| {
                    let name = e.as_ref().unwrap().file_name();
                    name.to_string_lossy().ends_with(".seg")
                })
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn deleted_mail_gives_its_disk_space_back() {
    let mut s = Server::with_small_segments();
    s.spawn();
    s.python("compaction.py", &["fill", "300"]);
    let full = most_segments(&s.data_dir());
    assert!(
        full >= 15,
        "300 messages of 4 KB fill {full} segments of 64 KiB"
    );
    s.python("compaction.py", &["drain"]);
    // Sealing new segments is what sets compaction off, in the background.
    s.python("compaction.py", &["more", "60"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while most_segments(&s.data_dir()) > full / 2 {
        assert!(
            Instant::now() < deadline,
            "still {} segments of {full} after 30 s:\n{}",
            most_segments(&s.data_dir()),
            tail(&s.log_text(), 20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("segments: {full} -> {}", most_segments(&s.data_dir()));
    assert!(s.log_text().contains("segment compacted"));
    let stats = String::from_utf8_lossy(&s.cli(&["stats"]).stdout).to_string();
    assert!(
        stats.lines().any(|l| l.starts_with("storage.compaction")),
        "stats show compaction passes:\n{stats}"
    );
    s.python("compaction.py", &["check", "60"]);
    s.kill9();
    s.spawn();
    s.python("compaction.py", &["check", "60"]);
}
