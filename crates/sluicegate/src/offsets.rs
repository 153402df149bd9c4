//! Per-partition acknowledgement tracking: which offset is safe to commit.
//!
//! Pure logic, no I/O. The engine tells an [`OffsetTracker`] each offset it hands to the
//! application ([`OffsetTracker::deliver`]) and each offset the application finishes
//! ([`OffsetTracker::ack`]); the tracker answers with the committable offset: the offset after
//! the longest run of acknowledged deliveries that starts at the last commit.
//!
//! # Delivery semantics
//!
//! Acks may arrive in any order. The committable offset never passes a delivered offset that is
//! not acknowledged, so committing it is always at-least-once safe. A record that failed and was
//! handed to a failure path counts as acknowledged: the failure path owns it from then on.
//! Offsets need not be contiguous (compaction and transaction markers leave gaps); the tracker
//! only reasons about offsets it was told were delivered.

use std::collections::VecDeque;

use crate::record::Offset;

/// Why the tracker refused an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    /// `deliver` was called with an offset not above the last delivered one.
    #[error("offset {offset} delivered out of order (last delivered {last})")]
    OutOfOrderDelivery {
        /// The offending offset.
        offset: Offset,
        /// The last offset delivered before it.
        last: Offset,
    },
    /// `ack` named an offset that is not waiting for an acknowledgement.
    #[error("offset {0} is not awaiting acknowledgement (never delivered or already acked)")]
    NotOutstanding(Offset),
}

/// Tracks delivered and acknowledged offsets of one partition.
///
/// ```
/// use sluicegate::OffsetTracker;
///
/// let mut tracker = OffsetTracker::new();
/// for offset in 1..=5 {
///     tracker.deliver(offset).unwrap();
/// }
/// for offset in [5, 3, 4] {
///     tracker.ack(offset).unwrap();
/// }
/// assert_eq!(tracker.committable(), None); // 1 is still in flight
/// tracker.ack(1).unwrap();
/// assert_eq!(tracker.committable(), Some(2));
/// tracker.ack(2).unwrap();
/// assert_eq!(tracker.committable(), Some(6));
/// ```
#[derive(Debug, Default, Clone)]
pub struct OffsetTracker {
    /// Delivered offsets not yet folded into the committable offset, ascending, with their
    /// acknowledged flag. The front is always unacknowledged (acked fronts are popped).
    window: VecDeque<(Offset, bool)>,
    /// The last delivered offset, if any.
    last_delivered: Option<Offset>,
    /// The offset after the last run of acknowledged deliveries, if any delivery was folded.
    folded_up_to: Option<Offset>,
}

impl OffsetTracker {
    /// An empty tracker: nothing delivered, nothing committable.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` was handed to the application. Offsets must increase.
    pub fn deliver(&mut self, offset: Offset) -> Result<(), TrackerError> {
        if let Some(last) = self.last_delivered {
            if offset <= last {
                return Err(TrackerError::OutOfOrderDelivery { offset, last });
            }
        }
        self.last_delivered = Some(offset);
        self.window.push_back((offset, false));
        Ok(())
    }

    /// Records that `offset` is finished (processed, or handed to a failure path).
    ///
    /// Returns `true` when the ack moved the committable offset forward.
    pub fn ack(&mut self, offset: Offset) -> Result<bool, TrackerError> {
        let index = self
            .window
            .binary_search_by_key(&offset, |&(o, _)| o)
            .map_err(|_| TrackerError::NotOutstanding(offset))?;
        let slot = &mut self.window[index].1;
        if *slot {
            return Err(TrackerError::NotOutstanding(offset));
        }
        *slot = true;
        if index != 0 {
            return Ok(false);
        }
        while let Some(&(acked_offset, true)) = self.window.front() {
            self.folded_up_to = Some(acked_offset + 1);
            self.window.pop_front();
        }
        Ok(true)
    }

    /// The offset to commit now: every delivered offset below it is acknowledged.
    /// `None` until the first delivered offset is acknowledged.
    pub fn committable(&self) -> Option<Offset> {
        self.folded_up_to
    }

    /// Delivered offsets still waiting for an acknowledgement.
    pub fn in_flight(&self) -> usize {
        self.window.iter().filter(|(_, acked)| !acked).count()
    }

    /// Whether every delivered offset is acknowledged.
    pub fn is_drained(&self) -> bool {
        self.window.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn out_of_order_acks_commit_only_the_contiguous_run() {
        let mut tracker = OffsetTracker::new();
        for offset in 1..=5 {
            tracker.deliver(offset).unwrap();
        }
        for offset in [5, 3, 4] {
            assert!(!tracker.ack(offset).unwrap());
            assert_eq!(tracker.committable(), None);
        }
        assert!(tracker.ack(1).unwrap());
        assert_eq!(tracker.committable(), Some(2));
        assert!(tracker.ack(2).unwrap());
        assert_eq!(tracker.committable(), Some(6));
        assert!(tracker.is_drained());
    }

    #[test]
    fn gaps_in_delivered_offsets_do_not_block_commits() {
        let mut tracker = OffsetTracker::new();
        for offset in [10, 12, 15] {
            tracker.deliver(offset).unwrap();
        }
        tracker.ack(15).unwrap();
        tracker.ack(10).unwrap();
        assert_eq!(tracker.committable(), Some(11));
        tracker.ack(12).unwrap();
        assert_eq!(tracker.committable(), Some(16));
    }

    #[test]
    fn refuses_unknown_double_and_backward_updates() {
        let mut tracker = OffsetTracker::new();
        tracker.deliver(3).unwrap();
        assert_eq!(tracker.ack(4), Err(TrackerError::NotOutstanding(4)));
        assert_eq!(
            tracker.deliver(3),
            Err(TrackerError::OutOfOrderDelivery { offset: 3, last: 3 })
        );
        tracker.deliver(4).unwrap();
        tracker.ack(4).unwrap();
        assert_eq!(tracker.ack(4), Err(TrackerError::NotOutstanding(4)));
        tracker.ack(3).unwrap();
        assert_eq!(tracker.ack(3), Err(TrackerError::NotOutstanding(3)));
        assert_eq!(tracker.in_flight(), 0);
    }

    proptest! {
        /// Whatever the ack order, the committable offset is always the offset after the
        /// longest fully acknowledged prefix of the deliveries, and never moves backwards.
        #[test]
        fn committable_is_the_acked_prefix(
            gaps in proptest::collection::vec(1i64..4, 1..60),
            seed in any::<u64>(),
        ) {
            let mut offsets = Vec::new();
            let mut next = 0i64;
            for gap in gaps {
                next += gap;
                offsets.push(next);
            }
            let mut order: Vec<usize> = (0..offsets.len()).collect();
            // Deterministic shuffle from the seed (Fisher-Yates with an LCG).
            let mut state = seed;
            for i in (1..order.len()).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                order.swap(i, (state >> 33) as usize % (i + 1));
            }

            let mut tracker = OffsetTracker::new();
            for &offset in &offsets {
                tracker.deliver(offset).unwrap();
            }
            let mut acked = vec![false; offsets.len()];
            let mut previous = None;
            for index in order {
                tracker.ack(offsets[index]).unwrap();
                acked[index] = true;
                let prefix = acked.iter().take_while(|&&a| a).count();
                let expected = if prefix == 0 { None } else { Some(offsets[prefix - 1] + 1) };
                prop_assert_eq!(tracker.committable(), expected);
                prop_assert!(tracker.committable() >= previous);
                prop_assert_eq!(tracker.in_flight(), acked.iter().filter(|a| !**a).count());
                previous = tracker.committable();
            }
            prop_assert!(tracker.is_drained());
        }
    }
}
