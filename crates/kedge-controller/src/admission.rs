//! Admission of reconcile passes: at most a fixed number run at once; the others wait their turn in the order they
//! came, except that an application marked urgent (a live edit to revert, a pushed change to apply) goes ahead of
//! the routine ones (periodic resyncs, the rest of a monorepo after a push).
//!
//! The controller runtime keeps one pass per application and starts it as soon as it is due. A pass that finds no
//! free slot does not wait in the runtime: it leaves its application in this queue and ends, and when a slot is
//! kept for the application, [`Admission::call`]'s callback asks the runtime for a pass again, which takes the slot.
//! The runtime polls every pass it holds each time any of them wakes, so thousands of passes waiting there cost it
//! more than the passes that ran. Without the urgent lane, a push to a repository of a thousand applications queues
//! a thousand passes, and the one application the push changed (or a drift to revert) waits behind all of them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// How long a slot kept for an application waits for its pass; then it goes to the next one (the application's
/// pass never came: it was deleted, or the runtime stopped).
pub const KEPT_FOR: Duration = Duration::from_secs(10);

/// Asks the controller runtime for a pass over an application (`namespace/name`).
type Call = Box<dyn Fn(&str) + Send + Sync>;

/// The admission queue. Cheap to share through an `Arc`.
pub struct Admission {
    state: Mutex<State>,
    epoch: AtomicU64,
    call: OnceLock<Call>,
    kept_for: Duration,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct State {
    free: usize,
    /// Applications waiting for a slot, in the order they came, with when they came.
    waiting: VecDeque<(String, Instant)>,
    /// The keys of `waiting`.
    queued: HashSet<String>,
    /// Slots kept for applications whose pass was asked for: when it was kept, and when the application came.
    kept: HashMap<String, (Instant, Instant)>,
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
    /// How long the application waited for this slot.
    pub waited: Duration,
}

impl Admission {
    /// An admission with `slots` concurrent passes (at least one).
    pub fn new(slots: usize) -> Arc<Self> {
        Self::keeping_for(slots, KEPT_FOR)
    }

    /// An admission with `slots` concurrent passes whose kept slots wait `kept_for` for their pass.
    fn keeping_for(slots: usize, kept_for: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                free: slots.max(1),
                waiting: VecDeque::new(),
                queued: HashSet::new(),
                kept: HashMap::new(),
                urgent: HashSet::new(),
                rolling: HashSet::new(),
            }),
            epoch: AtomicU64::new(0),
            call: OnceLock::new(),
            kept_for,
        })
    }

    /// Sets how a pass is asked for when a slot is kept for an application; once, before any pass.
    pub fn call(&self, call: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.call.set(Box::new(call));
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

    /// Keeps the urgent and rolling marks, places in the queue and kept slots only of the applications `keep` says
    /// exist.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.settle(|state| {
            state.urgent.retain(|key| keep(key));
            state.rolling.retain(|key| keep(key));
            state.queued.retain(|key| keep(key));
            state.waiting.retain(|(key, _)| keep(key));
            let kept = state.kept.len();
            state.kept.retain(|key, _| keep(key));
            state.free += kept - state.kept.len();
        });
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

    /// How many applications are waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// A slot for a pass over `key`: the one kept for it, or a free one when no application is waiting. Otherwise
    /// `None`, and the application waits in the queue (once, however many passes ask): the pass ends, and another is
    /// asked for when a slot is kept for it.
    pub fn try_turn(self: &Arc<Self>, key: &str) -> Option<Turn> {
        self.settle(|state| {
            if let Some((_, came)) = state.kept.remove(key) {
                let urgent = state.urgent.remove(key);
                Some(Turn {
                    admission: self.clone(),
                    urgent,
                    waited: came.elapsed(),
                })
            } else if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                let urgent = state.urgent.remove(key);
                Some(Turn {
                    admission: self.clone(),
                    urgent,
                    waited: Duration::ZERO,
                })
            } else {
                if state.queued.insert(key.to_owned()) {
                    state.waiting.push_back((key.to_owned(), Instant::now()));
                }
                None
            }
        })
    }

    /// Gives up the application `key`'s place in the queue, and the slot kept for it if any (it was deleted, or its
    /// pass found it is not this controller's).
    pub fn forget(&self, key: &str) {
        self.settle(|state| {
            if state.queued.remove(key) {
                state.waiting.retain(|(k, _)| k != key);
            }
            if state.kept.remove(key).is_some() {
                state.free += 1;
            }
        });
    }

    /// Hands slots kept longer than [`KEPT_FOR`] to the next applications; call it now and then, so that a slot
    /// whose pass never comes is not lost while nothing else happens.
    pub fn tick(&self) {
        self.settle(|_| {});
    }

    /// Every change to the queue goes through here: under the lock, the slots kept too long are freed, `change` is
    /// made, and each free slot is kept for the next application; then, outside the lock (the callback may take its
    /// time), their passes are asked for.
    fn settle<R>(&self, change: impl FnOnce(&mut State) -> R) -> R {
        let (result, calls) = {
            let mut state = self.lock();
            if !state.kept.is_empty() {
                let before = state.kept.len();
                state
                    .kept
                    .retain(|_, (kept, _)| kept.elapsed() < self.kept_for);
                state.free += before - state.kept.len();
            }
            let result = change(&mut state);
            (result, Self::hand_out(&mut state))
        };
        if let Some(call) = self.call.get() {
            for key in calls {
                call(&key);
            }
        }
        result
    }

    /// Keeps each free slot for the first urgent waiter, else the longest waiting one; the applications to ask
    /// passes for.
    fn hand_out(state: &mut State) -> Vec<String> {
        let mut calls = Vec::new();
        while state.free > 0 && !state.waiting.is_empty() {
            // With no urgent mark, the first waiter: no need to look at the thousands behind it.
            let next = (!state.urgent.is_empty())
                .then(|| {
                    state
                        .waiting
                        .iter()
                        .position(|(key, _)| state.urgent.contains(key))
                })
                .flatten()
                .unwrap_or(0);
            let Some((key, came)) = state.waiting.remove(next) else {
                break;
            };
            state.queued.remove(&key);
            state.free -= 1;
            state.kept.insert(key.clone(), (Instant::now(), came));
            calls.push(key);
        }
        calls
    }

    fn release(&self) {
        self.settle(|state| state.free += 1);
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

    /// An admission whose asked-for passes are recorded.
    fn recorded(slots: usize) -> (Arc<Admission>, Arc<Mutex<Vec<String>>>) {
        recorded_keeping_for(slots, KEPT_FOR)
    }

    fn recorded_keeping_for(
        slots: usize,
        kept_for: Duration,
    ) -> (Arc<Admission>, Arc<Mutex<Vec<String>>>) {
        let admission = Admission::keeping_for(slots, kept_for);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = asked.clone();
        admission.call(move |key| record.lock().expect("lock").push(key.to_owned()));
        (admission, asked)
    }

    fn take(asked: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *asked.lock().expect("lock"))
    }

    /// With the one slot held, queues a pass for each key in order and marks `urgent`; then frees the slot and runs
    /// the passes asked for, as the runtime would; returns the order in which they got the slot.
    fn order_of(keys: &[&str], urgent: &[&str]) -> Vec<String> {
        let (admission, asked) = recorded(1);
        let held = admission.try_turn("held").expect("a free slot");
        for key in keys {
            assert!(admission.try_turn(key).is_none(), "{key} waits");
        }
        assert_eq!(admission.waiting(), keys.len());
        for key in urgent {
            admission.expedite(key);
        }
        assert!(take(&asked).is_empty(), "no slot is free yet");
        drop(held);
        let mut order = Vec::new();
        loop {
            let next = take(&asked);
            let [key] = next.as_slice() else {
                assert!(
                    next.is_empty(),
                    "one slot, one pass asked for at a time: {next:?}"
                );
                break;
            };
            // Another application's pass does not take the slot kept for this one.
            assert!(admission.try_turn("newcomer").is_none());
            admission.forget("newcomer");
            let turn = admission.try_turn(key).expect("the slot kept for it");
            order.push(key.clone());
            drop(turn);
        }
        assert_eq!(admission.waiting(), 0);
        assert_eq!(admission.lock().free, 1, "the slot is back");
        order
    }

    #[test]
    fn first_come_first_served_with_urgent_ones_ahead() {
        assert_eq!(order_of(&["a", "b", "c", "d"], &[]), ["a", "b", "c", "d"]);
        assert_eq!(
            order_of(&["a", "b", "c", "d"], &["d", "c"]),
            ["c", "d", "a", "b"]
        );
    }

    #[test]
    fn an_application_waits_once_however_many_passes_ask() {
        let (admission, asked) = recorded(1);
        let held = admission.try_turn("held").expect("a free slot");
        for _ in 0..3 {
            assert!(admission.try_turn("a").is_none());
        }
        assert!(admission.try_turn("b").is_none());
        assert_eq!(admission.waiting(), 2);
        drop(held);
        assert_eq!(take(&asked), ["a"]);
        let turn = admission.try_turn("a").expect("kept for a");
        assert!(turn.waited > Duration::ZERO);
        drop(turn);
        assert_eq!(take(&asked), ["b"]);
    }

    #[test]
    fn urgency_is_spent_by_the_pass_it_speeds_up() {
        let admission = Admission::new(1);
        admission.expedite("a");
        let turn = admission.try_turn("a").expect("a free slot");
        assert!(turn.urgent);
        drop(turn);
        assert!(admission.lock().urgent.is_empty());
        assert!(
            !admission.try_turn("a").expect("free again").urgent,
            "spent"
        );
    }

    #[test]
    fn marks_places_and_kept_slots_of_applications_that_are_gone_are_forgotten() {
        let (admission, asked) = recorded(1);
        admission.expedite("ns/kept");
        admission.expedite("ns/gone");
        let held = admission.try_turn("ns/held").expect("a free slot");
        assert!(admission.try_turn("ns/gone").is_none());
        assert!(admission.try_turn("ns/kept").is_none());
        admission.retain(|key| key != "ns/gone");
        let urgent = admission.lock().urgent.clone();
        assert_eq!(urgent.into_iter().collect::<Vec<_>>(), ["ns/kept"]);
        assert_eq!(admission.waiting(), 1);
        drop(held);
        assert_eq!(take(&asked), ["ns/kept"]);
        // Deleted while its slot was kept: the slot goes to the next application at once.
        assert!(admission.try_turn("ns/next").is_none());
        admission.forget("ns/kept");
        assert_eq!(take(&asked), ["ns/next"]);
        assert!(admission.try_turn("ns/next").is_some());
    }

    #[test]
    fn a_slot_kept_for_a_pass_that_never_comes_goes_to_the_next_application() {
        let (admission, asked) = recorded_keeping_for(1, Duration::from_millis(50));
        let held = admission.try_turn("held").expect("a free slot");
        assert!(admission.try_turn("lost").is_none());
        assert!(admission.try_turn("next").is_none());
        drop(held);
        assert_eq!(take(&asked), ["lost"]);
        admission.tick();
        assert!(take(&asked).is_empty(), "kept for a while");
        // Waiting for the time the slot is kept to run out, which is what this test is about.
        std::thread::sleep(Duration::from_millis(80));
        admission.tick();
        assert_eq!(take(&asked), ["next"]);
        let next = admission.try_turn("next").expect("kept for next");
        assert!(
            admission.try_turn("lost").is_none(),
            "its slot went: it waits again"
        );
        drop(next);
        assert_eq!(take(&asked), ["lost"]);
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
}
