//! Lock-free phrase handoff between the generation worker and the audio thread.
//!
//! The worker publishes into a single slot; a newer phrase replaces an unconsumed older one,
//! which the *worker* then drops. The audio thread takes from the slot and hands phrases it
//! no longer plays to a retire queue instead of dropping them, so it never frees memory; any
//! other thread empties that queue with [`PhraseHandoff::collect_retired`]. Both queues are
//! crossbeam `ArrayQueue`s: bounded, allocation-free after construction, wait-free enough for
//! an audio callback.

use crossbeam_queue::ArrayQueue;

/// Retired phrases waiting to be dropped off the audio thread.
pub const RETIRE_CAPACITY: usize = 16;

pub struct PhraseHandoff<T> {
    incoming: ArrayQueue<T>,
    retired: ArrayQueue<T>,
}

impl<T> Default for PhraseHandoff<T> {
    fn default() -> Self {
        PhraseHandoff {
            incoming: ArrayQueue::new(1),
            retired: ArrayQueue::new(RETIRE_CAPACITY),
        }
    }
}

impl<T> PhraseHandoff<T> {
    /// Worker side: offer a phrase; returns the older one it replaced, for the caller to drop.
    pub fn publish(&self, item: T) -> Option<T> {
        self.incoming.force_push(item)
    }

    /// Audio side: the newest unconsumed phrase, if any.
    pub fn take(&self) -> Option<T> {
        self.incoming.pop()
    }

    /// Audio side: give back a phrase that is no longer played. When the queue is full the
    /// item comes back and the caller keeps it until the next block.
    pub fn retire(&self, item: T) -> Result<(), T> {
        self.retired.push(item)
    }

    /// Any non-audio thread: drop what the audio thread retired. Returns how many.
    pub fn collect_retired(&self) -> usize {
        let mut count = 0;
        while self.retired.pop().is_some() {
            count += 1;
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn newest_wins_and_retired_items_are_dropped_elsewhere() {
        let handoff = PhraseHandoff::default();
        assert!(handoff.publish(Arc::new(1)).is_none());
        let replaced = handoff
            .publish(Arc::new(2))
            .expect("the unconsumed one comes back");
        assert_eq!(*replaced, 1);
        let taken = handoff.take().unwrap();
        assert_eq!(*taken, 2);
        assert!(handoff.take().is_none());
        let weak = Arc::downgrade(&taken);
        handoff.retire(taken).unwrap();
        assert!(weak.upgrade().is_some(), "retiring does not free");
        assert_eq!(handoff.collect_retired(), 1);
        assert!(weak.upgrade().is_none());
        for i in 0..RETIRE_CAPACITY {
            handoff.retire(Arc::new(i as i32)).unwrap();
        }
        assert!(
            handoff.retire(Arc::new(99)).is_err(),
            "a full queue hands the item back"
        );
    }
}
