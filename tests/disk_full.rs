//! A full disk, for real: the data directory on a small tmpfs. Mounting needs root (CI runs as
//! root); elsewhere the test says so and passes, and storage's unit tests still cover the
//! logic with injected ENOSPC.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn count(s: &Server) -> usize {
    let out = s.python("disk_full.py", &["count"]);
    let n = out.lines().find_map(|l| l.strip_prefix("count "));
    n.and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count in {out}"))
}

#[test]
fn a_full_disk_refuses_mail_with_452_and_takes_it_again_once_space_is_freed() {
    let mut s = Server::new();
    let mnt = s.dir.path().join("small");
    let Some(_tmpfs) = Tmpfs::mount(&mnt, "24m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs here (not root?)");
        return;
    };
    // The data directory moves onto the tmpfs, with 1 MiB log segments.
    let data = mnt.join("data");
    let cfg = std::fs::read_to_string(&s.config)
        .unwrap()
        .replace(
            &s.data_dir().display().to_string(),
            &data.display().to_string(),
        )
        .replace("executors = 2\n", "executors = 2\nsegment_size = 1048576\n");
    std::fs::write(&s.config, cfg).unwrap();
    for (u, p) in USERS {
        let out = s.cli_stdin(&["user", "add", u, "--password-stdin"], &format!("{p}\n"));
        assert!(out.status.success(), "user add {u}");
    }
    // Space that can be handed back later.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![7u8; 6 << 20]).unwrap();
    s.spawn();

    let out = s.python("disk_full.py", &["fill"]);
    let accepted: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("accepted "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        accepted > 5,
        "only {accepted} messages before the disk filled"
    );
    assert!(s.log_text().contains("cannot make a new log segment"));

    std::fs::remove_file(&filler).unwrap();
    s.python("disk_full.py", &["resume"]);
    assert!(s.log_text().contains("accepting changes again"));
    // Everything that got 250 (and the APPEND that got OK) is there, also after a kill -9.
    assert_eq!(count(&s), accepted + 2);
    s.kill9();
    s.spawn();
    assert_eq!(count(&s), accepted + 2);
}
