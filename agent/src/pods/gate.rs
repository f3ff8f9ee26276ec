//! The start gate: at most `limit` new pods build their sandbox and start
//! their first containers at once; the others wait in the order they came.
//! With 100 pods arriving together on a 2-CPU node, all of them starting at
//! once make each one take as long as the whole burst; in turns, the first
//! ones are done early.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::lock;

#[derive(Default)]
struct Tickets {
    /// The next ticket handed out.
    next: u64,
    /// Permits given back so far.
    released: u64,
}

pub(crate) struct StartGate {
    /// 0: no limit (no ticket is ever waited for).
    limit: u64,
    tickets: Mutex<Tickets>,
    turn: Condvar,
}

/// A turn to start; the next waiting pod goes when it is dropped.
pub(crate) struct Permit {
    gate: Arc<StartGate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        lock(&self.gate.tickets).released += 1;
        self.gate.turn.notify_all();
    }
}

impl StartGate {
    pub(crate) fn new(limit: usize) -> Arc<StartGate> {
        Arc::new(StartGate {
            limit: limit as u64,
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
        while mine >= t.released + self.limit {
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
        Some(Permit { gate: self.clone() })
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
