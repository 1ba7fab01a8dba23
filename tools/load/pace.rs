//! When to stop and when to send: the shared run control (deadline, message budget, stop
//! flag) and the per-connection open-loop pacer behind `--rate`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared by every connection of the run (across executors).
#[derive(Debug)]
pub struct Control {
    /// When the run started; ticks and pacing schedules count from here.
    pub start: Instant,
    /// No new work starts after this.
    pub deadline: Instant,
    budget: Option<u64>,
    claimed: AtomicU64,
    stop: AtomicBool,
}

impl Control {
    /// A control for a run of at most `duration`, and at most `budget` units if given.
    pub fn new(start: Instant, duration: Duration, budget: Option<u64>) -> Control {
        Control {
            start,
            deadline: start + duration,
            budget,
            claimed: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether connections should wind down.
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || Instant::now() >= self.deadline
            || self
                .budget
                .is_some_and(|b| self.claimed.load(Ordering::Relaxed) >= b)
    }

    /// Takes one unit of work (a message to send, a command, a message to retrieve); false
    /// when the run is over.
    pub fn claim(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return false;
        }
        match self.budget {
            None => true,
            Some(b) => self.claimed.fetch_add(1, Ordering::Relaxed) < b,
        }
    }

    /// Asks every connection to stop (hard cap reached).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Open-loop schedule of one connection: the k-th operation is due at `first + k·interval`
/// whatever happened before, and its latency counts from then (no coordinated omission).
#[derive(Debug)]
pub struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    /// Without a rate every operation is due when it is issued. With a total `rate` (ops/s)
    /// spread over `connections`, connection `index` gets `rate / connections` and starts
    /// at its own phase so the connections do not fire together.
    pub fn new(rate: Option<f64>, connections: usize, index: usize, start: Instant) -> Pacer {
        match rate.filter(|r| *r > 0.0 && r.is_finite()) {
            None => Pacer {
                interval: None,
                next: start,
            },
            Some(rate) => {
                let conns = connections.max(1) as f64;
                let interval = Duration::from_secs_f64((conns / rate).min(3600.0));
                let phase = interval.mul_f64((index % connections.max(1)) as f64 / conns);
                Pacer {
                    interval: Some(interval),
                    next: start + phase,
                }
            }
        }
    }

    /// The time the next operation is due, advancing the schedule.
    pub fn next_due(&mut self) -> Instant {
        match self.interval {
            None => Instant::now(),
            Some(iv) => {
                let due = self.next;
                self.next += iv;
                due
            }
        }
    }

    /// Waits until the next operation is due and returns its due time.
    pub async fn wait(&mut self) -> Instant {
        let due = self.next_due();
        let now = Instant::now();
        if due > now {
            glommio::timer::sleep(due - now).await;
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_is_shared() {
        let c = Control::new(Instant::now(), Duration::from_secs(60), Some(3));
        assert!(c.claim() && c.claim() && c.claim());
        assert!(!c.claim());
        assert!(c.should_stop());
    }

    #[test]
    fn deadline_and_stop() {
        let c = Control::new(Instant::now(), Duration::ZERO, None);
        assert!(!c.claim());
        let c = Control::new(Instant::now(), Duration::from_secs(60), None);
        assert!(c.claim());
        c.stop();
        assert!(!c.claim() && c.should_stop());
    }

    #[test]
    fn open_loop_schedule_ignores_delays() {
        let start = Instant::now();
        // 100 ops/s over 4 connections: 25/s each, 40 ms apart, phases 10 ms apart.
        let mut p = Pacer::new(Some(100.0), 4, 1, start);
        assert_eq!(p.next_due(), start + Duration::from_millis(10));
        assert_eq!(p.next_due(), start + Duration::from_millis(50));
        // However late the caller is, the schedule does not slip.
        assert_eq!(p.next_due(), start + Duration::from_millis(90));
    }

    #[test]
    fn unpaced_is_now() {
        let before = Instant::now();
        let mut p = Pacer::new(None, 4, 1, before);
        assert!(p.next_due() >= before);
    }
}
