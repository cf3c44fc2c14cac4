//! Exhaustive interleavings of the writer/reader publication protocol
//! (spec: STO-45) under loom: a reader never observes an end beyond the
//! bytes written.
//!
//! Run with `cargo test -p runtime --features loom --test loom_publish`.
#![cfg(feature = "loom")]

use gregor_runtime::storage::publish::PublishedEnd;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::thread;

/// Bytes per entry in the modelled segment.
const ENTRY_BYTES: usize = 1;
/// Entries the writer appends.
const ENTRIES: usize = 2;

/// A segment's bytes; each byte is a loom cell so that loom reports any
/// read that is not ordered after the write of the same byte.
struct Segment {
    bytes: Vec<UnsafeCell<u8>>,
}

impl Segment {
    fn new() -> Self {
        Self {
            bytes: (0..ENTRY_BYTES * ENTRIES)
                .map(|_| UnsafeCell::new(0))
                .collect(),
        }
    }

    /// Writes entry `k`: every byte becomes `k + 1` (never 0).
    fn write_entry(&self, k: usize) {
        for b in &self.bytes[k * ENTRY_BYTES..(k + 1) * ENTRY_BYTES] {
            // SAFETY: only the writer thread writes, and readers read only
            // bytes published before; loom checks exactly that.
            b.with_mut(|p| unsafe { *p = k as u8 + 1 });
        }
    }

    fn read(&self, i: usize) -> u8 {
        // SAFETY: see `write_entry`.
        self.bytes[i].with(|p| unsafe { *p })
    }
}

/// What a reader checks after taking a snapshot `(offset, position)`:
/// the position covers every entry below the offset, and every byte below
/// the position is written with its entry's value.
fn check_snapshot(seg: &Segment, offset: u64, position: u64) {
    assert!(
        position as usize >= offset as usize * ENTRY_BYTES,
        "end offset {offset} beyond bytes {position}"
    );
    for i in 0..position as usize {
        assert_eq!(
            seg.read(i),
            (i / ENTRY_BYTES) as u8 + 1,
            "byte {i} read before it was written"
        );
    }
}

/// Explores every interleaving with at most this many preemptions; the
/// bug patterns below need at most two.
const PREEMPTION_BOUND: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(PREEMPTION_BOUND);
    b.check(f);
}

/// The protocol as the log uses it: write, then `PublishedEnd::publish`;
/// a reader (here the main thread) takes snapshots and reads below them.
#[test]
fn reader_never_sees_unwritten_bytes() {
    model(|| {
        let seg = Arc::new(Segment::new());
        let end = Arc::new(PublishedEnd::new(0, 0));
        let writer = {
            let (seg, end) = (seg.clone(), end.clone());
            thread::spawn(move || {
                for k in 0..ENTRIES {
                    seg.write_entry(k);
                    end.publish(k as u64 + 1, ((k + 1) * ENTRY_BYTES) as u64);
                }
            })
        };
        let (o, p) = end.snapshot();
        check_snapshot(&seg, o, p);
        // A later snapshot never goes back.
        let (o2, p2) = end.snapshot();
        assert!(o2 >= o && p2 >= p);
        check_snapshot(&seg, o2, p2);
        writer.join().unwrap();
        assert_eq!(
            end.snapshot(),
            (ENTRIES as u64, (ENTRIES * ENTRY_BYTES) as u64)
        );
    });
}

/// The checker is not vacuous: publishing with `Relaxed` lets a reader see
/// the new end before the bytes, and loom finds that interleaving.
#[test]
#[should_panic]
fn relaxed_publication_is_caught() {
    model(|| {
        let seg = Arc::new(Segment::new());
        let end = Arc::new(AtomicU64::new(0));
        let writer = {
            let (seg, end) = (seg.clone(), end.clone());
            thread::spawn(move || {
                seg.write_entry(0);
                end.store(ENTRY_BYTES as u64, Ordering::Relaxed);
            })
        };
        let p = end.load(Ordering::Relaxed);
        check_snapshot(&seg, 0, p);
        writer.join().unwrap();
    });
}

/// Publishing the offset before the byte length would let a reader see an
/// offset whose bytes are not covered by the length it then loads.
#[test]
#[should_panic(expected = "beyond bytes")]
fn offset_before_length_is_caught() {
    model(|| {
        let seg = Arc::new(Segment::new());
        let offset = Arc::new(AtomicU64::new(0));
        let position = Arc::new(AtomicU64::new(0));
        let writer = {
            let (seg, offset, position) = (seg.clone(), offset.clone(), position.clone());
            thread::spawn(move || {
                seg.write_entry(0);
                offset.store(1, Ordering::Release);
                position.store(ENTRY_BYTES as u64, Ordering::Release);
            })
        };
        let o = offset.load(Ordering::Acquire);
        let p = position.load(Ordering::Acquire);
        check_snapshot(&seg, o, p);
        writer.join().unwrap();
    });
}
