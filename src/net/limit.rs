//! Process-wide limits on what clients can make the server hold: open connections (each costs
//! a file descriptor) and the open-file limit itself.
//!
//! The connection count is process-wide, not per executor, because a connection moves to the
//! executor that owns its account after login: its [`Slot`] travels with it (inside
//! [`crate::net::Conn`] / [`crate::net::ConnParts`]) and is given back when it closes.

use std::sync::atomic::{AtomicUsize, Ordering};

static OPEN: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Connections served at once when the configuration leaves it to the server (and the
/// descriptor limit allows): each idle connection costs 20-45 KiB, so this bounds what a
/// flood of idle connections can take to well under a gigabyte.
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// File descriptors kept back for data files, the admin socket and connections in transit,
/// on top of twice what the server holds open at start-up.
const FD_RESERVE: u64 = 64;

/// One open client connection, counted until dropped.
#[derive(Debug)]
pub struct Slot(());

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a connection slot, or `None` when the limit is reached.
pub fn try_acquire() -> Option<Slot> {
    let limit = LIMIT.load(Ordering::Acquire);
    OPEN.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
        (n < limit).then_some(n + 1)
    })
    .ok()
    .map(|_| Slot(()))
}

/// Client connections open now.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::Acquire)
}

/// Sets the most client connections served at once.
pub fn set_connection_limit(n: usize) {
    LIMIT.store(n.max(1), Ordering::Release);
}

/// The connection limit in force.
pub fn connection_limit() -> usize {
    LIMIT.load(Ordering::Acquire)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (every client connection is a file
/// descriptor; distributions often start services with a soft limit of 1024). Returns the
/// soft limit in force afterwards.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if rl.rlim_cur < rl.rlim_max {
        let wanted = libc::rlimit {
            rlim_cur: rl.rlim_max,
            rlim_max: rl.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
            rl.rlim_cur = rl.rlim_max;
        }
    }
    Ok(rl.rlim_cur)
}

/// Connections the descriptor limit leaves room for, given how many descriptors are open
/// before any client connects.
pub fn connections_for_fds(fd_limit: u64, open_at_start: u64) -> usize {
    let reserve = open_at_start.saturating_mul(2).saturating_add(FD_RESERVE);
    usize::try_from(fd_limit.saturating_sub(reserve))
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Descriptors this process has open now (0 if /proc is not there).
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_budget_keeps_a_reserve() {
        assert_eq!(connections_for_fds(1024, 100), 1024 - 264);
        assert_eq!(connections_for_fds(100, 100), 1);
        assert!(connections_for_fds(u64::MAX, 10) > 1 << 40);
    }

    #[test]
    fn slots_stop_at_the_limit_and_come_back() {
        set_connection_limit(open_connections() + 2);
        let a = try_acquire().unwrap();
        let _b = try_acquire().unwrap();
        assert!(try_acquire().is_none());
        drop(a);
        assert!(try_acquire().is_some());
        set_connection_limit(usize::MAX);
    }

    #[test]
    fn raising_the_fd_limit_never_lowers_it() {
        let before = {
            let mut rl = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit writes into the struct.
            assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) }, 0);
            rl.rlim_cur
        };
        assert!(raise_fd_limit().unwrap() >= before);
    }
}
