//! Lock-free phrase handoff to the audio thread, as a pair of typed ends.
//!
//! [`channel`] makes a [`Publisher`] (any non-audio thread) and an [`Inbox`] (the audio thread).
//! The publisher offers phrases through a single slot; a newer phrase replaces an unconsumed older
//! one, which [`Publisher::publish`] hands back for its caller to drop. The audio thread takes from
//! the slot and gives phrases it no longer plays back through [`Inbox::retire`] instead of dropping
//! them, so it never frees memory; the publisher drops them on its next publish (the audio thread
//! only retires a phrase because a newer one arrived, so they never pile up beyond a few).
//! Both queues are crossbeam `ArrayQueue`s: bounded, allocation-free after construction.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// Retired phrases waiting to be dropped off the audio thread.
pub const RETIRE_CAPACITY: usize = 16;

struct Slots<T> {
    incoming: ArrayQueue<T>,
    retired: ArrayQueue<T>,
}

/// The two ends of a new handoff.
pub fn channel<T>() -> (Publisher<T>, Inbox<T>) {
    let slots = Arc::new(Slots {
        incoming: ArrayQueue::new(1),
        retired: ArrayQueue::new(RETIRE_CAPACITY),
    });
    (Publisher(slots.clone()), Inbox(slots))
}

/// The sending end; never used on the audio thread (it frees what the audio thread retired).
pub struct Publisher<T>(Arc<Slots<T>>);

/// The audio thread's end: take and retire, never free.
pub struct Inbox<T>(Arc<Slots<T>>);

impl<T> Publisher<T> {
    /// Offers `item`, first dropping what the audio thread retired; returns the older unconsumed
    /// item it replaced, for the caller to drop.
    pub fn publish(&self, item: T) -> Option<T> {
        self.collect_retired();
        self.0.incoming.force_push(item)
    }

    /// Offers `item` without dropping what the audio thread retired (for a caller that must not
    /// free memory); returns the older unconsumed item it replaced.
    pub fn publish_uncollected(&self, item: T) -> Option<T> {
        self.0.incoming.force_push(item)
    }

    /// Drops what the audio thread retired. Returns how many.
    fn collect_retired(&self) -> usize {
        let mut count = 0;
        while self.0.retired.pop().is_some() {
            count += 1;
        }
        count
    }
}

impl<T> Inbox<T> {
    /// The newest unconsumed item, if any.
    pub fn take(&self) -> Option<T> {
        self.0.incoming.pop()
    }

    /// Gives back an item that is no longer played. When the queue is full the item comes back
    /// and the caller keeps it until a later block.
    pub fn retire(&self, item: T) -> Result<(), T> {
        self.0.retired.push(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_wins_and_retired_items_are_dropped_by_the_publisher() {
        let (publisher, inbox) = channel();
        assert!(publisher.publish(Arc::new(1)).is_none());
        let replaced = publisher
            .publish(Arc::new(2))
            .expect("the unconsumed one comes back");
        assert_eq!(*replaced, 1);
        let taken = inbox.take().unwrap();
        assert_eq!(*taken, 2);
        assert!(inbox.take().is_none());
        let weak = Arc::downgrade(&taken);
        inbox.retire(taken).unwrap();
        assert!(weak.upgrade().is_some(), "retiring does not free");
        drop(publisher.publish(Arc::new(3)));
        assert!(weak.upgrade().is_none(), "the next publish frees it");
        for i in 0..RETIRE_CAPACITY {
            inbox.retire(Arc::new(i as i32)).unwrap();
        }
        assert!(
            inbox.retire(Arc::new(99)).is_err(),
            "a full queue hands the item back"
        );
        assert_eq!(publisher.collect_retired(), RETIRE_CAPACITY);
    }
}
