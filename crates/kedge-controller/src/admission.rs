//! Admission of reconcile passes: at most a fixed number run at once; the others wait their turn in the order they
//! came, except that an application marked urgent (a live edit to revert, a pushed change to apply) goes ahead of
//! the routine ones (periodic resyncs, the rest of a monorepo after a push).
//!
//! The controller runtime keeps one pass per application and starts it as soon as it is due; the pass then waits
//! here. Without the urgent lane, a push to a repository of a thousand applications queues a thousand passes, and the
//! one application the push changed (or a drift to revert) waits behind all of them.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// The admission queue. Cheap to share through an `Arc`.
#[derive(Debug)]
pub struct Admission {
    state: Mutex<State>,
    epoch: AtomicU64,
}

#[derive(Debug)]
struct State {
    free: usize,
    waiting: VecDeque<(String, oneshot::Sender<bool>)>,
    urgent: HashSet<String>,
    /// Applications waiting for their objects to become healthy, every kind of them watched.
    rolling: HashSet<String>,
}

/// A running pass's slot; dropping it hands the slot to the next waiter.
#[derive(Debug)]
pub struct Turn {
    admission: Arc<Admission>,
    /// Whether the application was marked urgent (something changed) since its previous turn.
    pub urgent: bool,
}

impl Admission {
    /// An admission with `slots` concurrent passes (at least one).
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: slots.max(1),
                waiting: VecDeque::new(),
                urgent: HashSet::new(),
                rolling: HashSet::new(),
            }),
            epoch: AtomicU64::new(0),
        })
    }

    /// Records that a watch feeding the urgent marks (re)started or failed: changes made while it was down were not
    /// marked.
    pub fn watches_restarted(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Changes with every watch (re)start or failure: a pass that saw the same epoch before and after knows no change to its
    /// objects went unmarked in between.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps the urgent and rolling marks only of the applications `keep` says exist.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut state = self.lock();
        state.urgent.retain(|key| keep(key));
        state.rolling.retain(|key| keep(key));
    }

    /// Records whether the application `key` waits for its objects to become healthy while every kind of them is
    /// watched. A change of one of those objects queues it; a watch that lists its kind anew (after an error, when a
    /// change may have gone unseen) queues every application marked here ([`Admission::rolling`]). So these
    /// applications need no timer to be looked at again, which with thousands of them waiting for their
    /// Deployments kept the workers busy finding nothing new.
    pub fn set_rolling(&self, key: &str, rolling: bool) {
        let mut state = self.lock();
        if rolling {
            if !state.rolling.contains(key) {
                state.rolling.insert(key.to_owned());
            }
        } else {
            state.rolling.remove(key);
        }
    }

    /// The applications marked by [`Admission::set_rolling`].
    pub fn rolling(&self) -> Vec<String> {
        self.lock().rolling.iter().cloned().collect()
    }

    /// Marks the application `key` (`namespace/name`) urgent: its next pass goes ahead of routine ones, also when it is
    /// already waiting.
    pub fn expedite(&self, key: &str) {
        self.lock().urgent.insert(key.to_owned());
    }

    /// How many passes are waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Waits for a slot for a pass over `key`.
    pub async fn turn(self: &Arc<Self>, key: &str) -> Turn {
        let rx = {
            let mut state = self.lock();
            if state.free > 0 {
                state.free -= 1;
                let urgent = state.urgent.remove(key);
                return Turn {
                    admission: self.clone(),
                    urgent,
                };
            }
            let (tx, rx) = oneshot::channel();
            state.waiting.push_back((key.to_owned(), tx));
            rx
        };
        // The sender is dropped only with the admission itself, which this future holds. The releaser tells whether
        // the waiter was urgent.
        let urgent = rx.await.unwrap_or(false);
        Turn {
            admission: self.clone(),
            urgent,
        }
    }

    /// Gives a freed slot to the first urgent waiter, else to the longest waiting one.
    fn release(&self) {
        let mut state = self.lock();
        loop {
            // With no urgent mark, the first waiter: no need to look at the thousands behind it.
            let next = (!state.urgent.is_empty())
                .then(|| {
                    state
                        .waiting
                        .iter()
                        .position(|(key, _)| state.urgent.contains(key))
                })
                .flatten()
                .or(if state.waiting.is_empty() {
                    None
                } else {
                    Some(0)
                });
            let Some(i) = next else {
                state.free += 1;
                return;
            };
            let Some((key, tx)) = state.waiting.remove(i) else {
                state.free += 1;
                return;
            };
            let urgent = state.urgent.remove(&key);
            // A waiter that was dropped (its pass cancelled at shutdown) cannot take the slot: try the next one.
            if tx.send(urgent).is_ok() {
                return;
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.admission.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn until_waiting(admission: &Arc<Admission>, n: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while admission.waiting() < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("queued in time");
    }

    /// With the one slot held, queues a pass for each key in order and marks `urgent`; then frees the slot and
    /// returns the order in which the passes got it.
    async fn order_of(keys: &[&str], urgent: &[&str]) -> Vec<String> {
        let admission = Admission::new(1);
        let held = admission.turn("held").await;
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        for (n, key) in keys.iter().enumerate() {
            let waiter = admission.clone();
            let done = done_tx.clone();
            let key = key.to_string();
            tokio::spawn(async move {
                let _turn = waiter.turn(&key).await;
                let _ = done.send(key);
            });
            until_waiting(&admission, n + 1).await;
        }
        drop(done_tx);
        for key in urgent {
            admission.expedite(key);
        }
        drop(held);
        let mut order = Vec::new();
        while let Some(k) = tokio::time::timeout(Duration::from_secs(5), done_rx.recv())
            .await
            .expect("in time")
        {
            order.push(k);
        }
        assert_eq!(admission.waiting(), 0);
        assert_eq!(admission.lock().free, 1, "the slot is back");
        order
    }

    #[tokio::test]
    async fn first_come_first_served_with_urgent_ones_ahead() {
        assert_eq!(
            order_of(&["a", "b", "c", "d"], &[]).await,
            ["a", "b", "c", "d"]
        );
        assert_eq!(
            order_of(&["a", "b", "c", "d"], &["d", "c"]).await,
            ["c", "d", "a", "b"]
        );
    }

    #[tokio::test]
    async fn urgency_is_spent_by_the_pass_it_speeds_up() {
        let admission = Admission::new(1);
        admission.expedite("a");
        let turn = admission.turn("a").await;
        assert!(turn.urgent);
        drop(turn);
        assert!(admission.lock().urgent.is_empty());
        assert!(!admission.turn("a").await.urgent, "spent");
    }

    #[test]
    fn urgent_marks_of_applications_that_are_gone_are_forgotten() {
        let admission = Admission::new(1);
        admission.expedite("ns/kept");
        admission.expedite("ns/gone");
        admission.retain(|key| key == "ns/kept");
        let urgent = admission.lock().urgent.clone();
        assert_eq!(urgent.into_iter().collect::<Vec<_>>(), ["ns/kept"]);
    }

    #[test]
    fn rolling_marks_follow_the_last_pass_and_go_with_the_application() {
        let admission = Admission::new(1);
        admission.set_rolling("ns/a", true);
        admission.set_rolling("ns/a", true);
        admission.set_rolling("ns/b", true);
        admission.set_rolling("ns/c", false);
        let mut rolling = admission.rolling();
        rolling.sort();
        assert_eq!(rolling, ["ns/a", "ns/b"]);
        // Healthy again: no longer looked at after a watch lists anew.
        admission.set_rolling("ns/a", false);
        assert_eq!(admission.rolling(), ["ns/b"]);
        admission.retain(|key| key != "ns/b");
        assert!(admission.rolling().is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_waiter_does_not_keep_the_slot() {
        let admission = Admission::new(1);
        let held = admission.turn("held").await;
        let cancelled = tokio::spawn({
            let admission = admission.clone();
            async move {
                let _turn = admission.turn("gone").await;
            }
        });
        until_waiting(&admission, 1).await;
        cancelled.abort();
        let _ = cancelled.await;
        drop(held);
        let again = tokio::time::timeout(Duration::from_secs(5), admission.turn("next"))
            .await
            .expect("the slot came back");
        drop(again);
        assert_eq!(admission.lock().free, 1);
    }
}
