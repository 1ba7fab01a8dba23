//! The CLI: clear one-line errors, exit code 2, and a data directory left unchanged on failure.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Every file under `dir` with its contents, to prove a failed command changed nothing.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.display().to_string(),
                    std::fs::read(&p).unwrap_or_default(),
                );
            }
        }
    }
    out
}

fn assert_one_line_exit_2(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line, got: {err}"
    );
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
}

#[test]
fn duplicate_unknown_and_bad_users_fail_cleanly() {
    let s = Server::new();
    let before = tree(&s.data_dir());
    let out = s.cli_stdin(
        &["user", "add", "alice@example.org", "--password-stdin"],
        "x\n",
    );
    assert_one_line_exit_2(&out, "already exists");
    let out = s.cli(&["user", "del", "nobody@example.org"]);
    assert_one_line_exit_2(&out, "no such account");
    let out = s.cli_stdin(
        &["user", "passwd", "nobody@example.org", "--password-stdin"],
        "x\n",
    );
    assert_one_line_exit_2(&out, "no such account");
    let out = s.cli_stdin(
        &["user", "add", "zed@elsewhere.com", "--password-stdin"],
        "x\n",
    );
    assert_one_line_exit_2(&out, "not in domains.local");
    let out = s.cli_stdin(
        &["user", "add", "not an address", "--password-stdin"],
        "x\n",
    );
    assert_one_line_exit_2(&out, "not a valid address");
    let out = s.cli_stdin(
        &["user", "add", "dave@example.org", "--password-stdin"],
        "\n",
    );
    assert_one_line_exit_2(&out, "empty password");
    let out = s.cli(&["alias", "del", "nothing@example.org"]);
    assert_one_line_exit_2(&out, "no such account or alias");
    let out = s.cli(&["user", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        before,
        tree(&s.data_dir()),
        "a failed command changed the data directory"
    );
}

#[test]
fn bad_config_is_one_line_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &cfg,
        format!("[server]\ndata_dir = \"{}\"\nshards = 0\n", data.display()),
    )
    .unwrap();
    for args in [&["check"][..], &["serve"], &["user", "list"]] {
        let out = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert_one_line_exit_2(&out, "server.shards");
    }
    std::fs::write(&cfg, "[server]\nno_such_key = 1\n").unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_one_line_exit_2(&out, "no_such_key");
    let out = Command::new(bin())
        .args(["check", "--config", "/nonexistent/ringpost.toml"])
        .output()
        .unwrap();
    assert_one_line_exit_2(&out, "cannot read config");
    assert!(
        !data.exists(),
        "a failed command created the data directory"
    );
}

#[test]
fn check_names_the_postmaster_or_warns_without_one() {
    let s = Server::new();
    let out = s.cli(&["check"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "a missing postmaster is a warning: {text}"
    );
    assert!(
        text.contains("warning: no account or alias for postmaster@example.org"),
        "{text}"
    );
    assert!(s
        .cli(&["alias", "add", "postmaster@example.org", "bob@example.org"])
        .status
        .success());
    let text = String::from_utf8_lossy(&s.cli(&["check"]).stdout).to_string();
    assert!(
        text.contains("postmaster: postmaster@example.org -> bob@example.org")
            && !text.contains("warning"),
        "{text}"
    );
}

#[test]
fn users_and_aliases_round_trip() {
    let s = Server::new();
    let out = s.cli(&["user", "list"]);
    let list = String::from_utf8_lossy(&out.stdout);
    for (u, _) in USERS {
        assert!(list.contains(u), "{list}");
    }
    assert!(s
        .cli(&[
            "alias",
            "add",
            "team@example.org",
            "alice@example.org,bob@example.org"
        ])
        .status
        .success());
    assert!(s
        .cli(&["alias", "add", "@example.net", "carol@example.org"])
        .status
        .success());
    let aliases = String::from_utf8_lossy(&s.cli(&["alias", "list"]).stdout).to_string();
    assert!(
        aliases.contains("team@example.org\talice@example.org,bob@example.org"),
        "{aliases}"
    );
    assert!(
        aliases.contains("@example.net\tcarol@example.org"),
        "{aliases}"
    );
    assert!(s
        .cli(&["alias", "del", "team@example.org"])
        .status
        .success());
    assert!(s
        .cli(&["user", "del", "carol@example.org"])
        .status
        .success());
    let list = String::from_utf8_lossy(&s.cli(&["user", "list"]).stdout).to_string();
    assert!(!list.contains("carol@"), "{list}");
    let hashed = "{SHA512-CRYPT}$6$rounds=5000$saltsalt$wJ7rP3T7TA0hRXk6fGQJ.dkBwEeFj7FLQtmbUbtZ3kfh1KW.vu4JqDpuAJYMTbu6DVwdqrjWFeiSzO0LfpIzH0";
    let out = s.cli_stdin(
        &[
            "user",
            "add",
            "imported@example.org",
            "--password-stdin",
            "--hashed",
        ],
        &format!("{hashed}\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.cli(&["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn account_changes_reach_a_running_server() {
    let s = Server::new().start();
    s.python("login_check.py", &["dave@example.org", "dave-pw", "fail"]);
    let out = s.cli_stdin(
        &["user", "add", "dave@example.org", "--password-stdin"],
        "dave-pw\n",
    );
    assert!(out.status.success());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    s.python("login_check.py", &["dave@example.org", "dave-pw", "ok"]);
    let out = s.cli_stdin(
        &["user", "passwd", "dave@example.org", "--password-stdin"],
        "new-pw\n",
    );
    assert!(out.status.success());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    s.python("login_check.py", &["dave@example.org", "new-pw", "ok"]);
    assert!(s.cli(&["user", "del", "dave@example.org"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(1200));
    s.python("login_check.py", &["dave@example.org", "new-pw", "fail"]);
}

#[test]
fn a_second_server_on_the_same_ports_refuses_to_start() {
    let first = Server::new().start();
    // Another data directory, the same ports: SO_REUSEPORT would let it take half the mail.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = std::fs::read_to_string(&first.config).unwrap().replace(
        &first.data_dir().display().to_string(),
        &data.display().to_string(),
    );
    let config = dir.path().join("second.toml");
    std::fs::write(&config, cfg).unwrap();
    let log = dir.path().join("second.log");
    let mut second = std::process::Command::new(common::bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            second.kill().unwrap();
            second.wait().unwrap();
            panic!("second server on the same ports kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "second server: {err}");
    assert!(
        err.contains(&format!("127.0.0.1:{} (smtp)", first.ports.smtp)) && err.contains("in use"),
        "{err}"
    );
    assert!(!data.exists(), "a refused start created its data directory");
    // The first server still has every connection.
    for _ in 0..20 {
        let mut r = common::Raw::connect(first.ports.smtp);
        assert!(r.line().starts_with("220 mail.example.org"));
    }
}

/// CPU time (user + system, in clock ticks) the process `pid` has used so far, all threads.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// After serving mail, an idle server sleeps: its executors neither spin nor wake in a tight
/// loop. (A reactor or timer mistake shows up as an executor that never sleeps, at 100% of a
/// core: a draft reactor change once used 597 clock ticks here.)
#[test]
fn an_idle_server_sleeps() {
    let s = Server::new().start();
    s.swaks_deliver("alice@example.org", "before going idle");
    s.python("login_check.py", &["alice@example.org", "alice-pw", "ok"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pid = s.child.as_ref().expect("server runs").id();
    let before = cpu_ticks(pid);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let used = cpu_ticks(pid) - before;
    // A spinning executor alone uses about 300 ticks (100 per second); idle uses about 0.
    assert!(
        used < 30,
        "idle server used {used} clock ticks of CPU in 3 s"
    );
}
