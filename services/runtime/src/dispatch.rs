//! How a consumer hands deliveries to its workers without breaking per-key order, and which
//! offsets it may store. Both are pure data structures, tested on their own.
//!
//! - [`KeyQueue`]: one FIFO per message key. A worker takes a batch from keys nobody else is
//!   working on, in the order the keys became ready; a key's messages are handed out one batch at
//!   a time and in arrival order, so two messages of one order are never handled concurrently or
//!   out of order, while messages of different orders are.
//! - [`OffsetTracker`]: per partition, the offsets received and not yet finished. The offset that
//!   may be stored is the one just below the oldest unfinished delivery, so a crash never skips a
//!   message that was received but not finished, however the workers interleave.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::Hash;

/// Per-key FIFO queues with at most one batch of a key out at a time.
#[derive(Debug)]
pub struct KeyQueue<K, T> {
    queues: HashMap<K, VecDeque<T>>,
    /// Keys with queued items and no batch out, in the order they became ready.
    ready: VecDeque<K>,
    busy: HashSet<K>,
    len: usize,
}

impl<K: Clone + Eq + Hash, T> Default for KeyQueue<K, T> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
            ready: VecDeque::new(),
            busy: HashSet::new(),
            len: 0,
        }
    }
}

impl<K: Clone + Eq + Hash, T> KeyQueue<K, T> {
    /// Queues `item` behind the other items of `key`.
    pub fn push(&mut self, key: K, item: T) {
        let queue = self.queues.entry(key.clone()).or_default();
        let was_empty = queue.is_empty();
        queue.push_back(item);
        self.len += 1;
        if was_empty && !self.busy.contains(&key) {
            self.ready.push_back(key);
        }
    }

    /// Up to `max` items (at least one when any key is ready), grouped by key in the order of
    /// each key's queue. Their keys are busy until [`KeyQueue::done`].
    pub fn take(&mut self, max: usize) -> Vec<(K, Vec<T>)> {
        let mut out = Vec::new();
        let mut left = max.max(1);
        while left > 0 {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(queue) = self.queues.get_mut(&key) else {
                continue;
            };
            let n = queue.len().min(left);
            let items: Vec<T> = queue.drain(..n).collect();
            left -= n;
            self.len -= n;
            self.busy.insert(key.clone());
            out.push((key, items));
        }
        out
    }

    /// The batch of `key` is finished: its next items (if any) may be taken.
    pub fn done(&mut self, key: &K) {
        if !self.busy.remove(key) {
            return;
        }
        match self.queues.get(key) {
            Some(q) if !q.is_empty() => self.ready.push_back(key.clone()),
            _ => {
                self.queues.remove(key);
            }
        }
    }

    /// Items queued and not taken.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether some key has items that can be taken now.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }
}

/// Received and finished offsets per partition.
#[derive(Debug, Default)]
pub struct OffsetTracker<P> {
    partitions: BTreeMap<P, Partition>,
}

#[derive(Debug, Default)]
struct Partition {
    /// The assignment these deliveries came in (see [`OffsetTracker::received`]).
    epoch: u64,
    lowest_received: Option<i64>,
    unfinished: BTreeSet<i64>,
    highest_finished: Option<i64>,
    stored: Option<i64>,
}

impl<P: Ord + Clone> OffsetTracker<P> {
    /// A delivery of `offset` was received while the partition was held under assignment
    /// `epoch`. A new epoch (the partition was assigned again, so Kafka forgot what was stored
    /// and fetches again from the last commit) starts the partition afresh: what the old one
    /// stored is no reason not to store the same offsets again, and the old epoch's deliveries
    /// no longer move the offset (they are fetched again, and skipped as duplicates).
    pub fn received(&mut self, partition: &P, epoch: u64, offset: i64) {
        let p = self.partitions.entry(partition.clone()).or_default();
        if p.epoch != epoch {
            *p = Partition {
                epoch,
                ..Partition::default()
            };
        }
        p.lowest_received = Some(p.lowest_received.map_or(offset, |l| l.min(offset)));
        p.unfinished.insert(offset);
    }

    /// The delivery of `offset`, received in `epoch`, is finished (handled, skipped or
    /// dead-lettered, durably). Returns the offset of the last message that may now be stored as
    /// consumed, when it moved forward.
    pub fn finished(&mut self, partition: &P, epoch: u64, offset: i64) -> Option<i64> {
        let p = self
            .partitions
            .get_mut(partition)
            .filter(|p| p.epoch == epoch)?;
        p.unfinished.remove(&offset);
        p.highest_finished = Some(p.highest_finished.map_or(offset, |h| h.max(offset)));
        let safe = match p.unfinished.first() {
            // Everything below the oldest unfinished delivery is finished (offsets arrive in
            // order per partition; a gap holds no message).
            Some(oldest) => oldest - 1,
            None => p.highest_finished?,
        };
        // Nothing below the first delivery received here is ours to store.
        if p.stored.is_some_and(|s| s >= safe) || p.lowest_received.is_none_or(|l| safe < l) {
            return None;
        }
        p.stored = Some(safe);
        Some(safe)
    }

    /// Deliveries received and not finished, over all partitions.
    pub fn unfinished(&self) -> usize {
        self.partitions.values().map(|p| p.unfinished.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_key_is_handed_out_one_batch_at_a_time_in_order() {
        let mut q: KeyQueue<&str, i32> = KeyQueue::default();
        q.push("a", 1);
        q.push("b", 2);
        q.push("a", 3);
        let first = q.take(1);
        assert_eq!(first, vec![("a", vec![1])]);
        // "a" is busy: its 3 waits even though it is queued; "b" goes.
        assert_eq!(q.take(10), vec![("b", vec![2])]);
        assert!(q.take(10).is_empty());
        q.done(&"a");
        assert_eq!(q.take(10), vec![("a", vec![3])]);
        q.done(&"a");
        q.done(&"b");
        assert!(q.is_empty() && !q.has_ready());
    }

    #[test]
    fn a_batch_takes_several_keys_and_several_items_of_one_key() {
        let mut q: KeyQueue<&str, i32> = KeyQueue::default();
        for (k, v) in [("a", 1), ("a", 2), ("b", 3), ("c", 4)] {
            q.push(k, v);
        }
        assert_eq!(q.take(3), vec![("a", vec![1, 2]), ("b", vec![3])]);
        assert_eq!(q.len(), 1);
        assert_eq!(q.take(3), vec![("c", vec![4])]);
    }

    #[test]
    fn the_stored_offset_never_passes_an_unfinished_delivery() {
        let mut t: OffsetTracker<i32> = OffsetTracker::default();
        for o in 10..15 {
            t.received(&0, 0, o);
        }
        assert_eq!(t.finished(&0, 0, 12), None, "10 and 11 are not finished");
        assert_eq!(t.finished(&0, 0, 10), Some(10));
        assert_eq!(t.finished(&0, 0, 11), Some(12));
        assert_eq!(t.finished(&0, 0, 14), None, "13 is not finished");
        assert_eq!(t.finished(&0, 0, 13), Some(14));
        assert_eq!(t.unfinished(), 0);
        // A redelivery of something already stored does not move the offset back.
        t.received(&0, 0, 11);
        assert_eq!(t.finished(&0, 0, 11), None);
    }

    #[test]
    fn partitions_are_independent() {
        let mut t: OffsetTracker<i32> = OffsetTracker::default();
        t.received(&0, 0, 5);
        t.received(&1, 0, 7);
        assert_eq!(t.finished(&1, 0, 7), Some(7));
        assert_eq!(t.finished(&0, 0, 5), Some(5));
        assert_eq!(t.finished(&2, 0, 1), None, "never received");
    }

    #[test]
    fn a_partition_assigned_again_stores_its_redelivered_offsets_again() {
        let mut t: OffsetTracker<i32> = OffsetTracker::default();
        for o in 0..6 {
            t.received(&0, 1, o);
        }
        t.received(&0, 1, 6);
        for o in 0..6 {
            t.finished(&0, 1, o);
        }
        // Revoked and assigned again before 0..=5 were committed: Kafka forgot the stored 5 and
        // fetches from the last commit, 3. The redeliveries must store 5 again, or the commit
        // stays at 3 until new messages come (lag that never drains on a quiet topic).
        for o in 3..7 {
            t.received(&0, 2, o);
        }
        assert_eq!(t.finished(&0, 2, 3), Some(3));
        assert_eq!(t.finished(&0, 2, 4), Some(4));
        assert_eq!(t.finished(&0, 2, 5), Some(5));
        // 6 of the first assignment finishes late: it no longer moves the offset, its
        // redelivery (still unfinished) holds it.
        assert_eq!(t.finished(&0, 1, 6), None);
        assert_eq!(t.finished(&0, 2, 6), Some(6));
    }

    proptest! {
        /// Workers take batches and finish them in any order: every key's items come out in
        /// push order, never two batches of one key at once, and nothing is lost.
        #[test]
        fn any_interleaving_keeps_per_key_order(
            pushes in proptest::collection::vec((0u8..5, any::<bool>()), 1..120),
            max in 1usize..6,
        ) {
            let mut q: KeyQueue<u8, usize> = KeyQueue::default();
            let mut out: Vec<Vec<(u8, Vec<usize>)>> = Vec::new();
            let mut seen: HashMap<u8, Vec<usize>> = HashMap::new();
            let mut expected: HashMap<u8, Vec<usize>> = HashMap::new();
            for (i, (key, finish_one)) in pushes.iter().enumerate() {
                q.push(*key, i);
                expected.entry(*key).or_default().push(i);
                let batch = q.take(max);
                let keys: Vec<u8> = batch.iter().map(|(k, _)| *k).collect();
                for held in out.iter().flatten().map(|(k, _)| k) {
                    prop_assert!(!keys.contains(held), "key {} handed out twice", held);
                }
                if !batch.is_empty() {
                    out.push(batch);
                }
                if *finish_one && !out.is_empty() {
                    // Finish the batch at a pseudo-random position, not the oldest.
                    let at = i % out.len();
                    for (k, items) in out.remove(at) {
                        seen.entry(k).or_default().extend(items);
                        q.done(&k);
                    }
                }
            }
            loop {
                for batch in out.drain(..) {
                    for (k, items) in batch {
                        seen.entry(k).or_default().extend(items);
                        q.done(&k);
                    }
                }
                let batch = q.take(max);
                if batch.is_empty() {
                    break;
                }
                out.push(batch);
            }
            prop_assert!(q.is_empty());
            prop_assert_eq!(seen, expected);
        }

        /// Finishing offsets in any order stores, at every step, the highest offset below which
        /// everything is finished, and finally the last one.
        #[test]
        fn stored_offsets_are_safe_and_complete(order in Just((0i64..40).collect::<Vec<_>>()).prop_shuffle()) {
            let mut t: OffsetTracker<u8> = OffsetTracker::default();
            for o in 0..40 {
                t.received(&0, 0, o);
            }
            let mut finished = BTreeSet::new();
            let mut stored = None;
            for o in order {
                finished.insert(o);
                if let Some(s) = t.finished(&0, 0, o) {
                    prop_assert!((0..=s).all(|x| finished.contains(&x)), "stored {} past an unfinished one", s);
                    prop_assert!(stored.is_none_or(|p| s > p));
                    stored = Some(s);
                }
            }
            prop_assert_eq!(stored, Some(39));
        }
    }
}
