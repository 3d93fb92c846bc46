//! A bounded single-producer single-consumer ring, for handing frames between two workers:
//! allocated once, then push and pop are a slot write or read, with no lock and no system
//! call. Indices are published in batches (`publish` after pushes, `release` after pops: one
//! release store per batch, not per frame), and each side caches the other's index and
//! reloads it only when the ring looks full (or empty), so the two cores share the index
//! cache lines once per batch.

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Keeps the two indices on separate cache lines.
#[repr(align(64))]
struct Padded(AtomicUsize);

struct Shared<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Next slot the consumer reads (written by the consumer only).
    head: Padded,
    /// Next slot the producer writes (written by the producer only).
    tail: Padded,
}

// SAFETY: a slot is written only by the producer while it is outside [head, tail) and read only
// by the consumer while it is inside; the release stores of the indices and the acquire loads on
// the other side order the slot accesses. Values of T move between threads, so T: Send.
unsafe impl<T: Send> Sync for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let (head, tail) = (*self.head.0.get_mut(), *self.tail.0.get_mut());
        for i in head..tail {
            // SAFETY: slots in [head, tail) hold values pushed and not popped; both sides are
            // gone (this is the last reference), so each is dropped exactly once here.
            unsafe { (*self.slots[i & self.mask].get()).assume_init_drop() };
        }
    }
}

/// The writing end.
pub struct Producer<T> {
    ring: Arc<Shared<T>>,
    tail: usize,
    head_seen: usize,
}

/// The reading end.
pub struct Consumer<T> {
    ring: Arc<Shared<T>>,
    head: usize,
    tail_seen: usize,
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("tail", &self.tail).finish()
    }
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("head", &self.head).finish()
    }
}

/// A ring of `capacity` slots (rounded up to a power of two).
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let slots = (0..cap).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
    let ring =
        Arc::new(Shared { slots, mask: cap - 1, head: Padded(AtomicUsize::new(0)), tail: Padded(AtomicUsize::new(0)) });
    (Producer { ring: Arc::clone(&ring), tail: 0, head_seen: 0 }, Consumer { ring, head: 0, tail_seen: 0 })
}

impl<T> Producer<T> {
    fn cap(&self) -> usize {
        self.ring.mask + 1
    }

    /// Whether a push would fail now.
    pub fn is_full(&mut self) -> bool {
        if self.tail - self.head_seen < self.cap() {
            return false;
        }
        self.head_seen = self.ring.head.0.load(Ordering::Acquire);
        self.tail - self.head_seen >= self.cap()
    }

    /// Adds `v`; gives it back when the ring is full. The consumer sees it after `publish`.
    pub fn push(&mut self, v: T) -> Result<(), T> {
        if self.is_full() {
            return Err(v);
        }
        // SAFETY: the slot at `tail` is outside [head, tail) (the ring is not full), so the
        // consumer does not touch it until `publish` stores a tail past it.
        unsafe { (*self.ring.slots[self.tail & self.ring.mask].get()).write(v) };
        self.tail += 1;
        Ok(())
    }

    /// Makes every value pushed so far visible to the consumer.
    pub fn publish(&mut self) {
        self.ring.tail.0.store(self.tail, Ordering::Release);
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Values pushed and never published are still the ring's to drop.
        self.publish();
    }
}

impl<T> Consumer<T> {
    /// Whether a pop would find nothing now.
    pub fn is_empty(&mut self) -> bool {
        if self.head != self.tail_seen {
            return false;
        }
        self.tail_seen = self.ring.tail.0.load(Ordering::Acquire);
        self.head == self.tail_seen
    }

    /// Takes the oldest value. Its slot goes back to the producer after `release`.
    pub fn pop(&mut self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        // SAFETY: the slot at `head` is inside [head, tail): the producer wrote it before its
        // release store of `tail`, which the acquire load in `is_empty` saw; it will not write
        // it again until `release` hands the slot back.
        let v = unsafe { (*self.ring.slots[self.head & self.ring.mask].get()).assume_init_read() };
        self.head += 1;
        Some(v)
    }

    /// Gives the slots of every value popped so far back to the producer.
    pub fn release(&mut self) {
        self.ring.head.0.store(self.head, Ordering::Release);
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // Values popped are gone: the ring must not drop them again.
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_bounded() {
        let (mut p, mut c) = ring::<u32>(3);
        for i in 0..4 {
            assert!(p.push(i).is_ok());
        }
        assert_eq!(p.push(9), Err(9));
        assert_eq!(c.pop(), None, "nothing published yet");
        p.publish();
        assert_eq!(c.pop(), Some(0));
        assert_eq!(p.push(4), Err(4), "the slot is not released yet");
        c.release();
        assert!(p.push(4).is_ok());
        p.publish();
        let got: Vec<u32> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert!(c.is_empty());
    }

    #[test]
    fn values_left_in_the_ring_are_dropped() {
        let v = Arc::new(());
        let (mut p, mut c) = ring(4);
        for _ in 0..3 {
            p.push(Arc::clone(&v)).unwrap();
        }
        p.publish();
        drop(c.pop());
        p.push(Arc::clone(&v)).unwrap(); // never published
        assert_eq!(Arc::strong_count(&v), 4);
        drop((p, c));
        assert_eq!(Arc::strong_count(&v), 1);
    }

    #[test]
    fn across_threads_in_order() {
        const N: u64 = 200_000;
        let (mut p, mut c) = ring::<u64>(64);
        let t = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                if p.push(i).is_ok() {
                    i += 1;
                    if i % 7 == 0 {
                        p.publish();
                    }
                } else {
                    p.publish();
                    std::hint::spin_loop();
                }
            }
            p.publish();
        });
        let mut want = 0;
        while want < N {
            match c.pop() {
                Some(v) => {
                    assert_eq!(v, want);
                    want += 1;
                    if want % 5 == 0 {
                        c.release();
                    }
                }
                None => {
                    c.release();
                    std::hint::spin_loop();
                }
            }
        }
        t.join().unwrap();
    }
}
