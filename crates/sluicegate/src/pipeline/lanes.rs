//! Key ordering as pure logic: one lane per key, at most one item of a lane running, the
//! rest waiting in arrival order.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

/// The lane of a record in key mode. Keys are hashed: two keys that collide share a lane,
/// which only costs concurrency, never order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// Records without a key are ordered among themselves, by partition.
    Unkeyed,
    /// Records with this key hash.
    Keyed(u64),
}

impl Lane {
    pub fn of(key: Option<&[u8]>, hasher: &impl BuildHasher) -> Self {
        match key {
            None => Self::Unkeyed,
            Some(key) => Self::Keyed(hasher.hash_one(key)),
        }
    }
}

/// The lanes of one partition. A lane exists while one of its items runs.
#[derive(Debug)]
pub(crate) struct KeyLanes<T> {
    waiting: HashMap<Lane, VecDeque<T>>,
}

impl<T> Default for KeyLanes<T> {
    fn default() -> Self {
        Self {
            waiting: HashMap::new(),
        }
    }
}

impl<T> KeyLanes<T> {
    /// Admits an item: returns it to start now when its lane is idle, otherwise queues it
    /// behind the lane's running and waiting items.
    pub fn admit(&mut self, lane: Lane, item: T) -> Option<T> {
        match self.waiting.get_mut(&lane) {
            Some(queue) => {
                queue.push_back(item);
                None
            }
            None => {
                self.waiting.insert(lane, VecDeque::new());
                Some(item)
            }
        }
    }

    /// The running item of `lane` finished: returns the lane's next item to start, if any.
    pub fn finish(&mut self, lane: Lane) -> Option<T> {
        let queue = self.waiting.get_mut(&lane)?;
        let next = queue.pop_front();
        if next.is_none() {
            self.waiting.remove(&lane);
        }
        next
    }

    /// Drops every waiting item (the running ones keep their lanes); returns how many.
    pub fn drop_waiting(&mut self) -> usize {
        self.waiting
            .values_mut()
            .map(|queue| {
                let dropped = queue.len();
                queue.clear();
                dropped
            })
            .sum()
    }

    /// True when nothing runs and nothing waits.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_item_per_lane_runs_and_the_rest_wait_in_order() {
        let mut lanes = KeyLanes::default();
        let (a, b) = (Lane::Keyed(1), Lane::Keyed(2));
        assert_eq!(lanes.admit(a, 0), Some(0));
        assert_eq!(lanes.admit(a, 1), None);
        assert_eq!(lanes.admit(b, 2), Some(2));
        assert_eq!(lanes.admit(a, 3), None);
        assert_eq!(lanes.finish(a), Some(1));
        assert_eq!(lanes.finish(b), None);
        assert_eq!(lanes.finish(a), Some(3));
        assert!(!lanes.is_idle());
        assert_eq!(lanes.finish(a), None);
        assert!(lanes.is_idle());
    }

    #[test]
    fn dropping_the_waiting_items_keeps_the_running_lanes() {
        let mut lanes = KeyLanes::default();
        let (a, b) = (Lane::Keyed(1), Lane::Keyed(2));
        assert_eq!(lanes.admit(a, 0), Some(0));
        assert_eq!(lanes.admit(a, 1), None);
        assert_eq!(lanes.admit(a, 2), None);
        assert_eq!(lanes.admit(b, 3), Some(3));
        assert_eq!(lanes.drop_waiting(), 2);
        assert_eq!(lanes.admit(a, 4), None, "a's first item still runs");
        assert_eq!(lanes.finish(a), Some(4));
        assert_eq!(lanes.finish(b), None);
        assert_eq!(lanes.finish(a), None);
        assert!(lanes.is_idle());
    }

    proptest! {
        /// Whatever order running items finish in, each lane's items start in arrival order
        /// and never two at once.
        #[test]
        fn lanes_keep_arrival_order(keys in proptest::collection::vec(0u64..6, 1..200), picks in proptest::collection::vec(any::<usize>(), 200)) {
            let mut lanes = KeyLanes::default();
            let mut running: Vec<(Lane, usize)> = Vec::new();
            let mut started: HashMap<Lane, Vec<usize>> = HashMap::new();
            for (index, key) in keys.iter().enumerate() {
                let lane = Lane::Keyed(*key);
                if let Some(item) = lanes.admit(lane, index) {
                    prop_assert!(running.iter().all(|(busy, _)| *busy != lane));
                    running.push((lane, item));
                    started.entry(lane).or_default().push(item);
                }
            }
            let mut pick = picks.iter().cycle();
            while !running.is_empty() {
                let (lane, _) = running.swap_remove(pick.next().unwrap() % running.len());
                if let Some(item) = lanes.finish(lane) {
                    prop_assert!(running.iter().all(|(busy, _)| *busy != lane));
                    running.push((lane, item));
                    started.entry(lane).or_default().push(item);
                }
            }
            prop_assert!(lanes.is_idle());
            for (lane, order) in started {
                let Lane::Keyed(key) = lane else { unreachable!() };
                let expected: Vec<usize> = keys.iter().enumerate().filter(|(_, k)| **k == key).map(|(i, _)| i).collect();
                prop_assert_eq!(order, expected);
            }
        }
    }
}
