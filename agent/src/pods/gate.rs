//! The start gate: at most `limit` new pods build their sandbox and start
//! their first containers at once; the others wait in the order they came.
//! With 100 pods arriving together on a 2-CPU node, all of them starting at
//! once make each one take as long as the whole burst; in turns, the first
//! ones are done early.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::lock;

/// A start that holds its turn longer than this (a shim that does not
/// answer, an image pull) no longer counts against the limit: the gate
/// makes bursts faster, it must not stop the node behind one stuck pod.
const STALE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Tickets {
    /// The next ticket handed out.
    next: u64,
    /// Permits given back so far.
    released: u64,
    /// Permits out now: ticket and when it was given.
    held: Vec<(u64, Instant)>,
}

impl Tickets {
    fn stale(&self, after: Duration) -> u64 {
        self.held
            .iter()
            .filter(|(_, t)| t.elapsed() > after)
            .count() as u64
    }
}

pub(crate) struct StartGate {
    /// 0: no limit (no ticket is ever waited for).
    limit: u64,
    stale_after: Duration,
    tickets: Mutex<Tickets>,
    turn: Condvar,
}

/// A turn to start; the next waiting pod goes when it is dropped.
pub(crate) struct Permit {
    gate: Arc<StartGate>,
    ticket: u64,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut t = lock(&self.gate.tickets);
        t.released += 1;
        t.held.retain(|(id, _)| *id != self.ticket);
        drop(t);
        self.gate.turn.notify_all();
    }
}

impl StartGate {
    pub(crate) fn new(limit: usize) -> Arc<StartGate> {
        Self::with_stale(limit, STALE)
    }

    fn with_stale(limit: usize, stale_after: Duration) -> Arc<StartGate> {
        Arc::new(StartGate {
            limit: limit as u64,
            stale_after,
            tickets: Mutex::new(Tickets::default()),
            turn: Condvar::new(),
        })
    }

    /// Wait for a turn (first come, first served); None when there is no
    /// limit or `cancelled` turned true while waiting.
    pub(crate) fn enter(self: &Arc<Self>, cancelled: impl Fn() -> bool) -> Option<Permit> {
        if self.limit == 0 {
            return None;
        }
        let mut t = lock(&self.tickets);
        let mine = t.next;
        t.next += 1;
        while mine >= t.released + self.limit + t.stale(self.stale_after) {
            if cancelled() {
                // Our ticket still counts: give it back as if used (one
                // more pod may then be inside until the next one leaves).
                t.released += 1;
                drop(t);
                self.turn.notify_all();
                return None;
            }
            t = self
                .turn
                .wait_timeout(t, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        t.held.push((mine, Instant::now()));
        Some(Permit {
            gate: self.clone(),
            ticket: mine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn at_most_limit_inside_and_in_arrival_order() {
        let gate = StartGate::new(2);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = gate.enter(|| false).expect("a permit");
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let (gate, inside, most, order) =
                    (gate.clone(), inside.clone(), most.clone(), order.clone());
                // Arrive one after the other.
                std::thread::sleep(Duration::from_millis(20));
                std::thread::spawn(move || {
                    let _p = gate.enter(|| false).expect("a permit");
                    let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    lock(&order).push(i);
                    std::thread::sleep(Duration::from_millis(30));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        drop(first);
        for t in threads {
            t.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert_eq!(*lock(&order), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_stuck_start_stops_counting_after_a_while() {
        let gate = StartGate::with_stale(1, Duration::from_millis(200));
        let stuck = gate.enter(|| false).expect("a permit");
        let t = Instant::now();
        let next = gate.enter(|| false).expect("a permit");
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        drop((stuck, next));
    }

    #[test]
    fn no_limit_and_cancelled_waits_take_no_turn() {
        assert!(StartGate::new(0).enter(|| false).is_none());
        let gate = StartGate::new(1);
        let held = gate.enter(|| false).expect("a permit");
        assert!(gate.enter(|| true).is_none());
        drop(held);
        // The cancelled ticket was given back: the gate still opens.
        assert!(gate.enter(|| false).is_some());
    }
}
